"""Dataset: what the faces look like, how the classes are balanced, and what is wrong with the data."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import cast

import cv2  # untyped here (pyproject.toml): cast() states the array each call returns
import numpy as np
import numpy.typing as npt
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app.charts.dataset import SPLIT_TITLES, class_counts_figure, pixel_histogram_figure
from app.format import CHART_CONFIG, plural
from app.state import (
    cached_mean_faces,
    cached_pixel_histogram,
    cached_quality_report,
    data_source_ui,
    dataset_token,
    escape_markdown,
    load_dataset_or_stop,
    printable,
    synthetic_banner,
)
from fer_core.data import FaceDataset, LoadReport
from fer_core.labels import EMOTIONS
from fer_core.quality import (
    NEAR_BLANK_MAX_STD,
    NEAR_BLANK_MIN_DOMINANT,
    DuplicateGroup,
    QualityReport,
    class_imbalance,
)
from fer_core.settings import allowed_data_roots, fer2013_location

TILE_SIZE = 144  # 48x48 faces upscaled 3x: big enough to read an expression
TILE_FRAME = 96  # gray level of the tile outline
GROUP_TILE_SIZE = 96
MEAN_FACE_SIZE = 112
TILES_PER_PAGE = 24
GROUPS_PER_PAGE = 6
ALL = "all"
SHUFFLE_SEED = 48
BREAK = "\u200b"  # zero-width space
SPLIT_KEY = "dataset_split"
CLASS_KEY = "dataset_class"


# Small helpers


def chosen(option: str) -> str | None:
    """A split or class picked on the page, as the core's filters take it: None for "all"."""
    return None if option == ALL else option


def shuffled(indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The same mixed order on every rerun, so paging back and forth shows the same faces."""
    return indices[np.random.default_rng(SHUFFLE_SEED).permutation(len(indices))]


def split_title(split: str) -> str:
    return "all splits" if split == ALL else SPLIT_TITLES.get(split, split)


def face_tile(gray_face: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """The face upscaled to ``size`` pixels, framed by a 1-pixel gray line so black faces stay visible."""
    tile = cast("npt.NDArray[np.uint8]", cv2.resize(gray_face, (size, size), interpolation=cv2.INTER_CUBIC))
    tile[[0, -1], :] = TILE_FRAME
    tile[:, [0, -1]] = TILE_FRAME
    return tile


def stretch_contrast(gray_face: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Spread the values over 0-255: an average of many faces is a low-contrast blur otherwise."""
    low, high = int(gray_face.min()), int(gray_face.max())
    if high <= low:
        return gray_face
    return ((gray_face.astype(np.float32) - low) * (255 / (high - low))).round().astype(np.uint8)


def dataset_face_caption(dataset: FaceDataset, index: int, *, with_split: bool = False) -> str:
    """Label (and split) on the first line, the file name (or CSV line) on the second."""
    file_name = escape_markdown(printable(str(dataset.source_ids[index]).rsplit("/", 1)[-1]))
    emotion = EMOTIONS[int(dataset.labels[index])]
    prefix = f"{split_title(str(dataset.splits[index]))} · " if with_split else ""
    # A zero-width space after each underscore lets a long name wrap there instead of mid-word.
    return f"{prefix}**{emotion}**  \n{file_name.replace('_', '_' + BREAK)}"


def show_faces(
    dataset: FaceDataset, indices: npt.NDArray[np.int64] | list[int], *, size: int = TILE_SIZE, with_split: bool = False
) -> None:
    tiles = [face_tile(dataset.images[index], size) for index in indices]
    captions = [dataset_face_caption(dataset, int(index), with_split=with_split) for index in indices]
    st.image(tiles, caption=captions, width=size)


def paged(count: int, per_page: int, *, key: str, noun: str, row: DeltaGenerator | None = None) -> slice:
    """A pagination row ("Faces 25-48 of 3,995") and the slice of items the chosen page shows."""
    pages = max(1, math.ceil(count / per_page))
    with row or st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        summary = st.empty()
        page = st.pagination(pages, key=key, width="stretch") if pages > 1 else 1
    start = (page - 1) * per_page
    stop = min(start + per_page, count)
    summary.caption(f"{noun} {start + 1:,}–{stop:,} of {count:,} · page {page:,} of {pages:,}")
    return slice(start, stop)


# Sections


def what_is_shown(source: str, dataset: FaceDataset) -> None:
    source = printable(source)
    sizes = " · ".join(f"{split_title(name)} {int((dataset.splits == name).sum()):,}" for name in dataset.split_names)
    if dataset.synthetic:
        st.markdown(
            f"Showing the **built-in demo set**: {len(dataset):,} synthetic 48×48 cartoon faces ({sizes}), "
            "drawn from a fixed seed so every machine has the same ones."
        )
    elif source == printable(str(fer2013_location())):
        st.markdown(f"Showing **FER2013** from `{source}`: {len(dataset):,} grayscale 48×48 faces ({sizes}).")
        return
    else:
        st.markdown(
            f"Showing **{escape_markdown(printable(dataset.name))}** from `{source}`, read as FER2013: "
            f"{len(dataset):,} grayscale 48×48 faces ({sizes})."
        )
    roots = ", ".join(f"`{root}`" for root in allowed_data_roots())
    with st.expander("How to point this page at the real FER2013"):
        st.markdown(
            "1. Get FER2013: the Kaggle folder layout (`msambare/fer2013`: `train/<class>/*.jpg` and "
            "`test/<class>/*.jpg`) or the original challenge `fer2013.csv` (`emotion,pixels,Usage`).\n"
            '2. Tell the app where it is: write `fer2013 = "/path/to/fer2013"` in `fer_studio.toml` at the '
            "project root, or copy it to `data/fer2013` in the project; either appears as a choice in the "
            "sidebar on the next page load. Setting `FER2013_DIR=/path/to/fer2013` works too, but only "
            "for an app started after it was set.\n"
            f"3. Or pick **Another location...** in the sidebar and type a path under one of: {roots} "
            "(set `FER_DATA_ROOTS` to allow more).\n\n"
            "Folder names may be any case and common aliases (`anger`, `sadness`, ...) are understood; "
            "folders FER2013 has no class for, such as `contempt`, are skipped and listed under *Data quality*."
        )


def imbalance_sentence(split_name: str, per_class: dict[str, int]) -> str:
    total = sum(per_class.values())
    imbalance = class_imbalance(per_class)
    title = f"**{split_title(split_name)}** ({total:,} faces)"
    if imbalance.ratio < 1.2:
        if imbalance.most_count == imbalance.least_count:
            sentence = f"{title}: balanced, every class has {imbalance.most_count:,} faces."
        else:
            sentence = (
                f"{title}: roughly balanced, from {imbalance.least_count:,} ({imbalance.least_common}) "
                f"to {imbalance.most_count:,} ({imbalance.most_common}) faces per class."
            )
    else:
        sentence = (
            f"{title}: **{imbalance.least_common}** is **{imbalance.ratio:.1f}x rarer** than "
            f"**{imbalance.most_common}** ({imbalance.least_count:,} vs {imbalance.most_count:,} faces, "
            f"{imbalance.least_count / total:.1%} vs {imbalance.most_count / total:.1%} of the split)."
        )
    if imbalance.missing:
        sentence += f" No faces at all for: {', '.join(imbalance.missing)}."
    return sentence


def class_balance_section(dataset: FaceDataset) -> None:
    counts = dataset.class_counts()
    view = st.segmented_control(
        "Bar height", ["Faces", "Share of split"], default="Faces", required=True, key="dataset_balance_view"
    )
    st.plotly_chart(
        class_counts_figure(counts, EMOTIONS, share=view == "Share of split"),
        key="dataset_class_chart",
        config=CHART_CONFIG,
    )
    st.markdown("\n".join(f"- {imbalance_sentence(name, per_class)}" for name, per_class in counts.items()))
    if any(class_imbalance(per_class).ratio >= 2 for per_class in counts.values()):
        st.caption(
            "With classes this uneven, overall accuracy hides the rare ones: read per-class recall on the "
            "Training page, and consider class weights."
        )
    with st.expander("Counts as a table"):
        table = pd.DataFrame(counts, index=list(EMOTIONS)).rename(columns=split_title)
        table.loc["total"] = table.sum()
        st.dataframe(
            table,
            width="content",
            column_config={column: st.column_config.NumberColumn(format="localized") for column in table.columns},
        )


def browse_section(dataset: FaceDataset, token: str) -> None:
    split_options = [ALL, *dataset.split_names]
    if st.session_state.get(SPLIT_KEY) not in split_options:
        st.session_state[SPLIT_KEY] = ALL  # a split of the previously shown data set
    with st.container(horizontal=True, gap="medium"):
        split = st.segmented_control("Split", split_options, format_func=split_title, required=True, key=SPLIT_KEY)
        emotion = st.segmented_control(
            "Class",
            [ALL, *EMOTIONS],
            format_func=lambda option: "all classes" if option == ALL else option,
            default=ALL,
            required=True,
            key=CLASS_KEY,
        )
    split = split or ALL
    emotion = emotion or ALL
    indices = dataset.indices(split=chosen(split), emotion=chosen(emotion))
    if len(indices) == 0:
        st.info(f"No {emotion} faces in {split_title(split)}.")
    else:
        row = st.container(horizontal=True, vertical_alignment="center", gap="medium")
        if row.toggle("Shuffle", value=True, key="dataset_shuffle", help="Off: file order (split, class, name)."):
            indices = shuffled(indices)
        shown = paged(len(indices), TILES_PER_PAGE, key=f"dataset_page_{split}_{emotion}", noun="Faces", row=row)
        show_faces(dataset, indices[shown], with_split=split == ALL)

    st.subheader("Mean face per class", anchor=False)
    st.caption(
        f"The pixel-wise average of every face of a class in {split_title(split)} (contrast stretched), "
        "with how many faces went into it."
    )
    faces, counts = cached_mean_faces(token, chosen(split), dataset)
    st.image(
        [face_tile(stretch_contrast(face), MEAN_FACE_SIZE) for face in faces],
        caption=[f"**{emotion_name}** · {count:,}" for emotion_name, count in zip(EMOTIONS, counts, strict=True)],
        width=MEAN_FACE_SIZE,
    )

    st.subheader("Pixel intensities", anchor=False)
    label = f"{'all classes' if emotion == ALL else emotion} in {split_title(split)}"
    st.caption(f"How often each gray level occurs across the pixels of {label}.")
    histogram = cached_pixel_histogram(token, chosen(split), chosen(emotion), dataset)
    st.plotly_chart(pixel_histogram_figure(histogram, label=label), key="dataset_pixel_histogram", config=CHART_CONFIG)


def group_summary(group: DuplicateGroup) -> str:
    labels = Counter(EMOTIONS[label] for label in group.labels)
    splits = Counter(split_title(split) for split in group.splits)
    label_text = ", ".join(f"{name} ×{count}" for name, count in labels.most_common())
    split_text = ", ".join(f"{name} ×{count}" for name, count in splits.most_common())
    return f"**{len(group.indices)} copies** · labels: {label_text} · splits: {split_text}"


def show_groups(dataset: FaceDataset, groups: tuple[DuplicateGroup, ...], *, key: str) -> None:
    shown = paged(len(groups), GROUPS_PER_PAGE, key=key, noun="Groups")
    for group in groups[shown]:
        with st.container(border=True):
            st.markdown(group_summary(group))
            show_faces(dataset, list(group.indices), size=GROUP_TILE_SIZE, with_split=True)


def show_names(names: tuple[str, ...], column: str) -> None:
    st.dataframe(pd.DataFrame({column: [printable(name) for name in names]}), hide_index=True, width="stretch")


def quality_metrics(report: QualityReport) -> None:
    """The row of counts above the tabs."""
    load = report.load_report
    columns = st.columns(5)
    columns[0].metric("Near-blank images", f"{len(report.near_blank):,}", border=True)
    columns[1].metric(
        "Conflicting labels",
        f"{len(report.conflicting_groups):,}",
        help="Groups of identical images filed under different emotions.",
        border=True,
    )
    columns[2].metric(
        "Duplicate groups",
        f"{len(report.duplicate_groups):,}",
        help=f"{report.duplicate_images:,} images; {report.redundant_copies:,} could go, keeping one of each group.",
        border=True,
    )
    columns[3].metric(
        "Across splits",
        f"{len(report.cross_split_groups):,}",
        help="Duplicate groups with copies in more than one split (e.g. the same face in train and test).",
        border=True,
    )
    columns[4].metric(
        "Load problems",
        f"{load.problem_count + len(load.resized):,}",
        help="Unreadable files and folders, images that were not 48x48, skipped CSV rows and skipped folders.",
        border=True,
    )


def near_blank_tab(dataset: FaceDataset, report: QualityReport) -> None:
    st.caption(
        f"Pixel standard deviation under {NEAR_BLANK_MAX_STD:g} gray levels, or at least "
        f"{NEAR_BLANK_MIN_DOMINANT:.0%} of the pixels on one gray level: blank frames and placeholders "
        '("image moved or deleted"), not faces. Worth dropping before training.'
    )
    if len(report.near_blank) == 0:
        st.success("No near-blank images.")
        return
    shown = paged(len(report.near_blank), TILES_PER_PAGE, key="quality_blank_page", noun="Images")
    show_faces(dataset, report.near_blank[shown], with_split=True)


def conflicting_tab(dataset: FaceDataset, report: QualityReport) -> None:
    st.caption(
        "Byte-identical images filed under different emotions: at most one of the labels is right, and "
        "the model is trained to give two answers to one face."
    )
    if report.conflicting_groups:
        show_groups(dataset, report.conflicting_groups, key="quality_conflict_page")
    else:
        st.success("No image appears under two different emotions.")


def duplicates_tab(dataset: FaceDataset, report: QualityReport) -> None:
    cross_split = report.cross_split_groups
    if not report.duplicate_groups:
        st.caption("Images whose pixels are byte-identical to another image's.")
        st.success("No duplicates.")
        return
    st.caption(duplicates_sentence(report.duplicate_images, len(report.duplicate_groups), len(cross_split)))
    only_cross = st.toggle("Only groups that span splits", key="quality_cross_split_only")
    groups = cross_split if only_cross else report.duplicate_groups
    if groups:
        show_groups(dataset, groups, key=f"quality_duplicate_page_{only_cross}")
    else:
        st.success("No duplicate spans two splits.")


def duplicates_sentence(images: int, groups: int, cross_split: int) -> str:
    """What the duplicate groups mean, in words that agree with the counts."""
    sentence = f"{images:,} images in {plural(groups, 'group')} of byte-identical pixels"
    if cross_split == 0:
        return sentence + "; none spans more than one split."
    spans = "spans" if cross_split == 1 else "span"
    return (
        f"{sentence}; {cross_split:,} of them {spans} more than one split, so the test set holds faces the "
        "model was trained on."
    )


def resized_tab(dataset: FaceDataset, report: QualityReport) -> None:
    st.caption("Images stored at another size, converted to 48×48 grayscale on load (shown converted).")
    if len(report.resized) == 0:
        st.success("Every image was already 48×48.")
        return
    shown = paged(len(report.resized), TILES_PER_PAGE, key="quality_resized_page", noun="Images")
    show_faces(dataset, report.resized[shown], with_split=True)


def unreadable_tab(load: LoadReport) -> None:
    st.caption(
        "Files in class folders that could not be decoded as images (empty, damaged, not images, or a "
        "format this app does not read), and folders that could not be opened (no permission, a symbolic "
        "link loop): their faces are not loaded."
    )
    if load.unreadable_folders:
        show_names(load.unreadable_folders, "folder: reason")
    if load.unreadable:
        show_names(load.unreadable, "file")
    if not load.unreadable and not load.unreadable_folders:
        st.success("Every file and folder could be read.")


def bad_rows_tab(load: LoadReport, *, from_csv: bool) -> None:
    st.caption("Rows of a FER2013 CSV that were malformed and left out, with the reason.")
    if load.bad_rows:
        show_names(load.bad_rows, "row")
    else:
        st.success("No CSV rows were skipped." if from_csv else "Not loaded from a CSV: nothing to skip.")


def skipped_folders_tab(load: LoadReport) -> None:
    st.caption("Folders whose name is not a FER2013 class (e.g. `contempt`): their images are not loaded.")
    if load.skipped_folders:
        show_names(load.skipped_folders, "folder")
    else:
        st.success("Every folder is a FER2013 class.")


def quality_section(dataset: FaceDataset, report: QualityReport, *, from_csv: bool) -> None:
    load = report.load_report
    quality_metrics(report)
    tabs: list[tuple[str, Callable[[], None]]] = [
        (f"Near-blank ({len(report.near_blank):,})", partial(near_blank_tab, dataset, report)),
        (f"Conflicting labels ({len(report.conflicting_groups):,})", partial(conflicting_tab, dataset, report)),
        (f"Duplicates ({len(report.duplicate_groups):,})", partial(duplicates_tab, dataset, report)),
        (f"Not 48×48 ({len(load.resized):,})", partial(resized_tab, dataset, report)),
        (f"Unreadable ({len(load.unreadable) + len(load.unreadable_folders):,})", partial(unreadable_tab, load)),
        (f"Skipped CSV rows ({len(load.bad_rows):,})", partial(bad_rows_tab, load, from_csv=from_csv)),
        (f"Skipped folders ({len(load.skipped_folders):,})", partial(skipped_folders_tab, load)),
    ]
    for tab, (_, render) in zip(st.tabs([label for label, _ in tabs]), tabs, strict=True):
        with tab:
            render()


def unreadable_folders_warning(load: LoadReport) -> None:
    """Folders the loader had to skip, named at the top: their faces are missing from every section."""
    if load.unreadable_folders:
        count = len(load.unreadable_folders)
        names = "; ".join(printable(problem) for problem in load.unreadable_folders[:3])
        more = f" and {count - 3} more" if count > 3 else ""
        st.warning(
            f"{plural(count, 'folder')} could not be read, so {'their' if count != 1 else 'its'} "
            f"faces are left out: {escape_markdown(names)}{more}. See *Data quality* → *Unreadable*.",
            icon=":material/folder_off:",
        )


def main() -> None:
    st.title("Dataset")
    source = data_source_ui()
    dataset = load_dataset_or_stop(source)
    synthetic_banner(dataset)
    what_is_shown(source, dataset)
    unreadable_folders_warning(dataset.report)
    token = dataset_token(source, dataset)
    report = cached_quality_report(token, dataset)

    balance_tab, browse_tab, quality_tab = st.tabs(["Class balance", "Browse faces", "Data quality"])
    with balance_tab:
        class_balance_section(dataset)
    with browse_tab:
        browse_section(dataset, token)
    with quality_tab:
        quality_section(dataset, report, from_csv=source.lower().endswith(".csv"))


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
