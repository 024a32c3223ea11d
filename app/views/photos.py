"""Photos: upload photos (or take one with the camera); every face is found, boxed, labelled and
shown with its seven probabilities and the 48x48 crop the model saw. Results download as an
annotated PNG per photo and one CSV or JSON row per face.

Reading a photo never stops the page: a file that cannot be used gets an ``st.error`` naming it and
the problem, and the other photos of the same upload are still shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, cast

import cv2  # untyped here (pyproject.toml): cast() states the array each call returns
import numpy as np
import numpy.typing as npt
import streamlit as st

from app.charts.predictions import probability_chart
from app.format import CHART_CONFIG, file_stem, plural, upload_types_text
from app.model_picker import classifier_or_stop, detection_ui, model_caption_ui, model_picker_ui, model_version
from app.state import cached_detector, confidence_threshold_ui, escape_markdown, or_stop, printable
from fer_core.analysis import ImageAnalysis, analyze_image, face_records
from fer_core.detect import PHOTO_PRESET, DetectionPreset
from fer_core.draw import draw_predictions, face_caption, scale_predictions
from fer_core.errors import InvalidImageError
from fer_core.face_table import FaceRecord, records_to_csv
from fer_core.file_types import IMAGE_SUFFIXES
from fer_core.images import MAX_BYTES, MAX_PIXELS, decode_checked_image, decode_image, encode_png, rescale
from fer_core.inference import FacePrediction, Predictor

# What the browser gets (the PNG download keeps the full resolution): no wider than st.image's widest
# (1,460 px), so Streamlit never resizes it again; its resize floors a thin image's height to 0 and fails.
DISPLAY_MAX_SIDE = 1400
DISPLAY_MIN_SIDE = 360  # tiny images (face crops) are enlarged so their label can be read
CROP_ZOOM = 3  # the 48x48 crops are shown at 144x144, pixels kept sharp
FACE_COLUMNS = 2
EXPANDED_FACE_LIMIT = 6  # photos with more faces show their face cards folded
MEMO_KEY = "photos_results"
CAMERA_NAME = "camera photo.jpg"


class UploadedPhoto(Protocol):
    """What the page needs from ``st.file_uploader``/``st.camera_input`` results (and test doubles)."""

    name: str

    def getvalue(self) -> bytes: ...


class PhotoResult(NamedTuple):
    name: str
    digest: str  # sha1 of the file's bytes
    error: str | None  # why the file could not be used, else None
    analysis: ImageAnalysis | None = None  # the faces found (fer_core.analysis), None on error
    display_bgr: npt.NDArray[np.uint8] | None = None  # at most DISPLAY_MAX_SIDE on its longer side
    display_scale: float = 1.0  # display pixels per image pixel
    warning: str | None = None  # the file decoded but is damaged (a cut or corrupted JPEG): shown beside it


class PhotoSettings(NamedTuple):
    threshold: float
    preset: DetectionPreset
    tta: bool


class PhotoRow(NamedTuple):
    """A face record of the photo downloads, with how its photo's annotated PNG is scaled (JSON only)."""

    record: FaceRecord
    png_scale: int


def settings_ui() -> PhotoSettings:
    with st.sidebar:
        st.subheader("Photos")
        threshold = confidence_threshold_ui("photos_threshold")
        tta = st.toggle(
            "Average with the mirrored face",
            value=False,
            key="photos_tta",
            help="Test-time augmentation: classify each face and its mirror image and average the two.",
        )
    preset = detection_ui("photos", PHOTO_PRESET)
    return PhotoSettings(threshold, preset, tta)


def photos_ui() -> list[UploadedPhoto]:
    source = st.segmented_control(
        "Photos from", ["Upload", "Camera"], default="Upload", required=True, key="photos_source"
    )
    if source == "Camera":
        photo = st.camera_input("Take a photo", key="photos_camera")
        return [photo] if photo is not None else []
    limit_mb = min(MAX_BYTES // 2**20, int(st.get_option("server.maxUploadSize")))
    uploaded = st.file_uploader(
        "Photos",
        type=list(IMAGE_SUFFIXES),
        accept_multiple_files=True,
        key="photos_upload",
        help=f"{upload_types_text(IMAGE_SUFFIXES)}, up to {limit_mb} MB and {MAX_PIXELS / 1e6:.0f} megapixels each. "
        "Several at once are fine.",
    )
    return list(uploaded or [])


def analyse_photo(name: str, data: bytes, predictor: Predictor, *, tta: bool = False) -> PhotoResult:
    """Decode, find and classify every face; an unusable file gives a result with ``error`` set."""
    digest = hashlib.sha1(data).hexdigest()
    try:
        bgr_image, damage = decode_checked_image(data)
    except InvalidImageError as error:
        return PhotoResult(name, digest, str(error))
    height, width = bgr_image.shape[:2]
    try:
        analysis = analyze_image(bgr_image, predictor, tta=tta)
        display_bgr, display_scale = _display_copy(bgr_image)
    except cv2.error as error:  # a shape OpenCV cannot work with: this photo fails, the others go on
        return PhotoResult(name, digest, f"the image could not be processed ({width}x{height}): {error.err}")
    return PhotoResult(name, digest, None, analysis, display_bgr, display_scale, damage)


def process_uploads(
    files: Sequence[UploadedPhoto],
    predictor: Predictor,
    *,
    tta: bool = False,
    settings_key: tuple[Any, ...] = (),
    memo: dict[tuple[Any, ...], PhotoResult] | None = None,
) -> list[PhotoResult]:
    """One result per file, in upload order. Results are remembered in ``memo`` (by default, for the
    session), keyed by the file's bytes and ``settings_key`` (what decides the result: the model file and
    its version, the detection preset), so moving the threshold slider does not run detection again;
    results of files no longer uploaded are dropped."""
    if memo is None:
        memo = st.session_state.setdefault(MEMO_KEY, {})
    settings_key = (*settings_key, tta)
    results, used = [], set()
    for file in files:
        data = file.getvalue()
        key = (hashlib.sha1(data).hexdigest(), *settings_key)
        if key not in memo:
            memo[key] = analyse_photo(file.name, data, predictor, tta=tta)
        results.append(memo[key]._replace(name=file.name))
        used.add(key)
    for stale in set(memo) - used:
        del memo[stale]
    return results


def png_scale(image_size: tuple[int, int]) -> int:
    """How many times the annotated PNG of an image of ``image_size`` (width, height) is enlarged: 1
    (drawn at the original size, the CSV/JSON boxes' pixels), or the whole factor that brings a small
    image (a face crop) to DISPLAY_MIN_SIDE, so its labels can be read."""
    longer = max(image_size)
    return 1 if longer >= DISPLAY_MIN_SIDE else int(np.ceil(DISPLAY_MIN_SIDE / max(1, longer)))


def annotated_png(data: bytes, faces: Sequence[FacePrediction], threshold: float) -> Callable[[], bytes]:
    """The full-resolution annotated PNG, made only when its download button is clicked (in a thread of
    Streamlit's, so it decodes the upload again rather than keep every full-size image in memory).
    Drawn at the original size, except a small image, enlarged :func:`png_scale` times."""

    def build() -> bytes:
        bgr_image = decode_image(data)
        height, width = bgr_image.shape[:2]
        scale = png_scale((width, height))
        if scale > 1:
            bgr_image = cv2.resize(bgr_image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        return encode_png(draw_predictions(bgr_image, scale_predictions(faces, scale), threshold))

    return build


def render_photo(position: int, result: PhotoResult, data: bytes, settings: PhotoSettings) -> list[PhotoRow]:
    """One photo's section; returns its face records for the downloads, each with its annotated PNG's scale."""
    key = f"{position}-{result.digest[:12]}"
    name = escape_markdown(printable(result.name))  # a file name is shown as typed, never as markdown
    if result.error is not None or result.analysis is None or result.display_bgr is None:
        st.error(
            f"Could not use **{name}**: {printable(result.error or 'unknown error')}.", icon=":material/broken_image:"
        )
        return []
    analysis = result.analysis
    with st.container(border=True):
        width, height = analysis.size
        st.markdown(f"#### {name}")
        if result.warning:
            st.warning(
                f"**{name}** is damaged: {printable(result.warning)}. The faces below were found in what could "
                "be decoded and may be wrong; use an undamaged copy if you have one.",
                icon=":material/broken_image:",
            )
        whole_image = _no_face_ui(analysis, name, key) if not analysis.faces else False
        faces = analysis.faces_used(whole_image)
        if analysis.faces:
            st.caption(f"{width} x {height} pixels · {plural(len(faces), 'face')}")
        # A landscape photo (a group, most often) gets the page's whole width, its faces table below it;
        # a portrait one sits beside its table, so it does not run several screens tall.
        if width >= height:
            image_column, table_column = st.container(), st.container()
        else:
            image_column, table_column = st.columns([3, 2], gap="medium")
        scale = png_scale((width, height))
        with image_column:
            st.image(_annotated_display(result, faces, settings.threshold), channels="BGR")
            st.download_button(
                "Annotated image (PNG)",
                data=annotated_png(data, faces, settings.threshold),
                file_name=f"{file_stem(result.name, 'photo')}-annotated{f'-{scale}x' if scale > 1 else ''}.png",
                mime="image/png",
                icon=":material/download:",
                on_click="ignore",
                key=f"png-{key}",
                help="Drawn at the photo's own size: the boxes match the CSV and JSON."
                if scale == 1
                else f"Drawn {scale}x enlarged ({width} x {height} → {scale * width} x {scale * height} pixels) so "
                f"its labels can be read; the CSV and JSON boxes are in the original pixels (annotated_png_scale "
                f"= {scale} in the JSON).",
            )
        if faces:
            with table_column:
                st.dataframe(
                    _face_table(faces, settings.threshold),
                    hide_index=True,
                    width="stretch",
                    column_config={
                        "confidence": st.column_config.ProgressColumn(
                            "confidence", format="%d%%", min_value=0, max_value=100
                        )
                    },
                )
            with st.expander(
                "Each face: the 48x48 crop the model saw and its probabilities",
                expanded=len(faces) <= EXPANDED_FACE_LIMIT,
            ):
                _face_cards(faces, settings.threshold, key)
    records = face_records(analysis, printable(result.name), threshold=settings.threshold, whole_image=whole_image)
    # The JSON says how the annotated PNG relates to the boxes (the CSV keeps its columns).
    return [PhotoRow(record, scale) for record in records]


def _no_face_ui(analysis: ImageAnalysis, name: str, key: str) -> bool:
    width, height = analysis.size
    hint = (
        "It is small, so it may already be a face crop."
        if analysis.is_small
        else "Try a smaller *Smallest face*, or the other *Face detector*, in the sidebar."
    )
    st.warning(f"No face found in **{name}** ({width} x {height} pixels). {hint}")
    return st.toggle(
        "Classify the whole image as one face",
        value=analysis.is_small,
        key=f"whole-{key}",
        help="For images that already are a face crop, such as FER2013's 48x48 faces.",
    )


def _face_table(faces: Sequence[FacePrediction], threshold: float) -> list[dict[str, Any]]:
    return [
        {"face": f"#{number}", "label": face.label(threshold), "confidence": round(100 * face.confidence)}
        for number, face in enumerate(faces, start=1)
    ]


def _face_cards(faces: Sequence[FacePrediction], threshold: float, key: str) -> None:
    for start in range(0, len(faces), FACE_COLUMNS):
        columns = st.columns(FACE_COLUMNS)
        for column, number in zip(columns, range(start, min(start + FACE_COLUMNS, len(faces))), strict=False):
            face = faces[number]
            with column.container(border=True):
                crop_column, chart_column = st.columns([1, 2], vertical_alignment="center")
                crop_column.image(_zoomed_crop(face.gray_face), caption=face_caption(face, threshold, number + 1))
                chart_column.plotly_chart(
                    probability_chart(face.scores_by_emotion(), threshold=threshold, height=220),
                    key=f"chart-{key}-{number}",
                    config=CHART_CONFIG,
                )


def _display_copy(bgr_image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], float]:
    longer = max(bgr_image.shape[:2])
    if longer > DISPLAY_MAX_SIDE:
        scale = DISPLAY_MAX_SIDE / longer
        return rescale(bgr_image, scale), scale
    if longer < DISPLAY_MIN_SIDE:
        factor = int(np.ceil(DISPLAY_MIN_SIDE / longer))
        return cv2.resize(bgr_image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST), float(factor)
    return bgr_image, 1.0


def _annotated_display(result: PhotoResult, faces: Sequence[FacePrediction], threshold: float) -> npt.NDArray[np.uint8]:
    if result.display_bgr is None:
        raise ValueError(f"{result.name} has no image to show")
    return draw_predictions(result.display_bgr, scale_predictions(faces, result.display_scale), threshold)


def _zoomed_crop(gray_face: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return cast(
        "npt.NDArray[np.uint8]",
        cv2.resize(gray_face, None, fx=CROP_ZOOM, fy=CROP_ZOOM, interpolation=cv2.INTER_NEAREST),
    )


def _summary_ui(container: Any, results: Sequence[PhotoResult], photo_rows: Sequence[PhotoRow]) -> None:
    rows = [row.record for row in photo_rows]
    json_rows = [{**row.record.as_dict(), "annotated_png_scale": row.png_scale} for row in photo_rows]
    failed = sum(result.error is not None for result in results)
    with container:
        first, second, third, downloads = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
        first.metric("Photos", len(results))
        second.metric("Faces", len(rows))
        third.metric("Unreadable", failed)
        with downloads:
            left, right = st.columns(2)
            left.download_button(
                "All faces (CSV)",
                data=records_to_csv(rows),
                file_name="fer-faces.csv",
                mime="text/csv",
                icon=":material/table:",
                on_click="ignore",
                disabled=not rows,
                width="stretch",
            )
            right.download_button(
                "All faces (JSON)",
                data=json.dumps(json_rows, indent=2),
                file_name="fer-faces.json",
                mime="application/json",
                icon=":material/data_object:",
                on_click="ignore",
                disabled=not rows,
                width="stretch",
            )


def main() -> None:
    st.title("Photos")
    st.write(
        "Upload photos, or take one with your camera: every face is found, boxed and labelled with its "
        "most likely emotion. Below each photo, each face shows the 48x48 grayscale crop the model "
        "actually saw and its seven probabilities."
    )
    info = model_picker_ui("photos")
    settings = settings_ui()
    files = photos_ui()
    if not files:
        model_caption_ui(info)
        st.info(
            "Add one or more photos to start. Faces should be roughly frontal and at least "
            f"{settings.preset.min_face_size} pixels wide; group photos work too.",
            icon=":material/add_a_photo:",
        )
        st.stop()
    classifier, info = classifier_or_stop(info)
    model_caption_ui(info)
    detector = or_stop(lambda: cached_detector(settings.preset), "the face detector")
    predictor = Predictor(classifier, detector, align=settings.preset.align)
    summary = st.container()
    with st.spinner("Finding and classifying faces..."):
        model_key = (str(info.path), model_version(info.path), settings.preset)
        results = process_uploads(files, predictor, tta=settings.tta, settings_key=model_key)
    rows: list[PhotoRow] = []
    for position, (file, result) in enumerate(zip(files, results, strict=True)):
        rows += render_photo(position, result, file.getvalue(), settings)
    _summary_ui(summary, results, rows)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
