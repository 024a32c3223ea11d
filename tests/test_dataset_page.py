"""The Dataset page, headless through AppTest: renders, filters, pages, and refuses bad locations."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from app.state import DEMO_LABEL, OTHER_LABEL
from app.views.dataset import duplicates_sentence
from fer_core import settings

MAIN_SCRIPT = str(PROJECT_ROOT / "app" / "main.py")
GRID_PAGE_KEY = "dataset_page_{split}_{emotion}"


def open_dataset_page() -> AppTest:
    at = AppTest.from_file(MAIN_SCRIPT, default_timeout=60)
    at.run()
    at.switch_page("views/dataset.py")
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def grid_captions(at: AppTest) -> list[str]:
    """Captions of the face grid: the first image list on the page (the Browse tab comes before Quality)."""
    return list(at.image[0].captions)


def shown_files(at: AppTest) -> list[str]:
    """File names under the grid's faces, with the caption's Markdown escapes and break hints removed."""
    return [caption.split("\n")[-1].replace("\\", "").replace("\u200b", "") for caption in grid_captions(at)]


def shown_labels(at: AppTest) -> set[str]:
    return {caption.split("**")[1] for caption in grid_captions(at)}


def choose_location(at: AppTest, location: str | Path) -> AppTest:
    at.sidebar.radio(key="data_source_choice").set_value(OTHER_LABEL).run()
    at.sidebar.text_input[0].input(str(location)).run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def write_faces(folder: Path, count: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, gray_face in enumerate(np.random.default_rng(seed).integers(0, 256, (count, 48, 48), dtype=np.uint8)):
        cv2.imwrite(str(folder / f"face_{seed}_{index}.png"), gray_face)


# The demo set


def test_the_page_renders_the_demo_set() -> None:
    at = open_dataset_page()

    assert not at.error
    assert at.title[0].value == "Dataset"
    assert any("built-in demo set" in info.value for info in at.info)
    assert any("Showing the **built-in demo set**" in markdown.value for markdown in at.markdown)
    assert any("balanced, every class has 240 faces" in markdown.value for markdown in at.markdown)
    assert len(grid_captions(at)) == 24
    assert len(at.get("plotly_chart")) == 2  # class counts and pixel histogram
    assert [metric.label for metric in at.metric][:2] == ["Near-blank images", "Conflicting labels"]
    assert at.metric[0].value == "0"


def test_choosing_a_class_shows_only_that_class() -> None:
    at = open_dataset_page()
    at.button_group(key="dataset_class").set_value("happy").run()

    assert shown_labels(at) == {"happy"}
    assert all("_happy_" in name for name in shown_files(at))
    assert any("Faces 1–24 of 300" in caption.value for caption in at.caption)


def test_choosing_a_split_shows_only_that_split() -> None:
    at = open_dataset_page()
    at.button_group(key="dataset_split").set_value("test").run()

    assert all(name.startswith("demo_test_") for name in shown_files(at))
    assert any("of 420" in caption.value for caption in at.caption)

    at.button_group(key="dataset_class").set_value("sad").run()
    assert all(name.startswith("demo_test_sad_") for name in shown_files(at))
    assert any("of 60" in caption.value for caption in at.caption)


def test_the_next_page_shows_other_faces() -> None:
    at = open_dataset_page()
    first_page = shown_files(at)
    at.pagination(key=GRID_PAGE_KEY.format(split="all", emotion="all")).set_value(2).run()
    second_page = shown_files(at)

    assert len(second_page) == 24
    assert not set(first_page) & set(second_page)
    assert any("Faces 25–48 of 2,100 · page 2 of 88" in caption.value for caption in at.caption)


def test_without_shuffle_the_faces_come_in_file_order() -> None:
    at = open_dataset_page()
    at.toggle(key="dataset_shuffle").set_value(False).run()
    assert shown_files(at)[:2] == ["demo_test_angry_0000.png", "demo_test_angry_0001.png"]


# Bad locations


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("FER_DATA_ROOTS", str(root))
    return root


def test_a_missing_location_shows_an_error_and_the_page_stays_up(data_root: Path) -> None:
    at = choose_location(open_dataset_page(), data_root / "no-such-folder")

    assert len(at.error) == 1
    assert "does not exist" in at.error[0].value
    assert at.title[0].value == "Dataset"
    assert at.sidebar.radio(key="data_source_choice").value == OTHER_LABEL

    at.sidebar.radio(key="data_source_choice").set_value(DEMO_LABEL).run()  # and it recovers
    assert not at.error
    assert len(grid_captions(at)) == 24


def test_a_folder_without_class_folders_explains_the_layout(data_root: Path) -> None:
    (data_root / "holiday-photos").mkdir()
    at = choose_location(open_dataset_page(), data_root / "holiday-photos")

    assert len(at.error) == 1
    assert "no images in class folders" in at.error[0].value
    assert "train/<class>" in at.error[0].value


def test_a_location_outside_the_allowed_roots_is_refused(data_root: Path) -> None:
    at = choose_location(open_dataset_page(), PROJECT_ROOT)

    assert any("outside the folders this app may read" in error.value for error in at.error)
    assert any("Showing the **built-in demo set**" in markdown.value for markdown in at.markdown)
    assert len(grid_captions(at)) == 24


# A typed location with known problems


def test_quality_findings_of_a_typed_location_are_listed(data_root: Path) -> None:
    root = data_root / "faces"
    write_faces(root / "train" / "happy", 5, seed=1)
    write_faces(root / "train" / "sad", 3, seed=2)
    write_faces(root / "test" / "happy", 2, seed=3)
    write_faces(root / "train" / "contempt", 2, seed=4)
    cv2.imwrite(str(root / "train" / "sad" / "blank.png"), np.zeros((48, 48), np.uint8))
    cv2.imwrite(str(root / "train" / "sad" / "large.png"), np.full((96, 96), 90, np.uint8))
    (root / "train" / "sad" / "notes.txt").write_text("not a face")
    happy_copy = cv2.imread(str(root / "train" / "happy" / "face_1_0.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "train" / "sad" / "copy.png"), happy_copy)  # same pixels, other label

    at = choose_location(open_dataset_page(), root)

    assert not at.error
    assert any(f"from `{root}`" in markdown.value for markdown in at.markdown)
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Near-blank images"] == "2"  # the black square and the flat 96x96 one
    assert metrics["Conflicting labels"] == "1"
    assert metrics["Duplicate groups"] == "1"
    assert any(
        caption.value == "2 images in 1 group of byte-identical pixels; none spans more than one split."
        for caption in at.caption
    )
    assert metrics["Load problems"] == "3"  # notes.txt, large.png resized, contempt skipped
    labels = [tab.label for tab in at.tabs]
    assert "Unreadable (1)" in labels
    assert "Skipped folders (1)" in labels
    assert "Not 48×48 (1)" in labels
    tables = [frame.value for frame in at.dataframe]
    assert any(table.iloc[:, 0].tolist() == ["train/sad/notes.txt"] for table in tables)
    assert any(table.iloc[:, 0].tolist() == ["train/contempt"] for table in tables)
    captions = [caption for image in at.image for caption in image.captions]
    assert any("copy.png" in caption.replace("\\", "").replace("\u200b", "") for caption in captions)


def test_a_broken_settings_file_is_named_in_the_sidebar_and_the_page_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "fer_studio.toml"
    broken.write_text("data_roots = [\n")
    monkeypatch.setenv(settings.SETTINGS_FILE_ENV, str(broken))

    at = open_dataset_page()

    assert any(str(broken) in warning.value and "defaults apply" in warning.value for warning in at.sidebar.warning)
    assert grid_captions(at)  # the demo set is still browsable


@pytest.mark.parametrize("line", ["data_roots = 5", "data_roots = [1, 2]", 'runs_dir = ["a"]', "fer2013 = 3"])
def test_a_setting_of_the_wrong_type_gets_one_sidebar_warning_and_the_page_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    settings_file = tmp_path / "fer_studio.toml"
    settings_file.write_text(line + "\n")
    monkeypatch.setenv(settings.SETTINGS_FILE_ENV, str(settings_file))
    monkeypatch.delenv("FER_DATA_ROOTS", raising=False)

    at = open_dataset_page()

    key = line.split(" = ")[0]
    assert len(at.sidebar.warning) == 1
    assert f"{key} = " in at.sidebar.warning[0].value and "ignored" in at.sidebar.warning[0].value
    assert not at.error
    assert grid_captions(at)  # the demo set is still browsable


# A FER2013 copy on this machine


def small_fer2013(folder: Path) -> Path:
    write_faces(folder / "train" / "happy", 3, seed=5)
    write_faces(folder / "train" / "sad", 2, seed=6)
    write_faces(folder / "test" / "happy", 1, seed=7)
    return folder


def test_a_found_fer2013_copy_is_the_data_set_a_new_session_starts_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fer2013 = small_fer2013(tmp_path / "fer2013")
    monkeypatch.setenv("FER2013_DIR", str(fer2013))

    at = open_dataset_page()

    assert at.sidebar.radio(key="data_source_choice").value == f"FER2013 at {fer2013}"
    assert any(f"Showing **FER2013** from `{fer2013}`" in markdown.value for markdown in at.markdown)
    assert not any("built-in demo set" in info.value for info in at.info)
    assert len(grid_captions(at)) == 6

    at.sidebar.radio(key="data_source_choice").set_value(DEMO_LABEL).run()  # a choice made sticks
    at.switch_page("views/home.py").run()
    at.switch_page("views/dataset.py").run()
    assert at.sidebar.radio(key="data_source_choice").value == DEMO_LABEL


def test_the_training_page_starts_on_the_found_fer2013_copy_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fer2013 = small_fer2013(tmp_path / "fer2013")
    monkeypatch.setenv("FER2013_DIR", str(fer2013))

    at = AppTest.from_file(MAIN_SCRIPT, default_timeout=60)
    at.run()
    at.switch_page("views/training.py").run()

    assert not at.exception, [exception.value for exception in at.exception]
    assert at.sidebar.radio(key="data_source_choice").value == f"FER2013 at {fer2013}"


def sidebar_captions(at: AppTest) -> list[str]:
    return [caption.value for caption in at.sidebar.caption]


def test_the_how_to_find_fer2013_hint_shows_only_while_no_copy_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_dataset_page()
    assert any("No FER2013 copy found" in caption for caption in sidebar_captions(at))

    monkeypatch.setenv("FER2013_DIR", str(small_fer2013(tmp_path / "fer2013")))
    at = open_dataset_page()
    assert at.sidebar.radio(key="data_source_choice").value.startswith("FER2013 at ")
    assert not any("FER2013" in caption for caption in sidebar_captions(at))


def test_a_fer2013_copy_written_into_fer_studio_toml_is_offered_on_the_next_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file = tmp_path / "fer_studio.toml"
    monkeypatch.setenv(settings.SETTINGS_FILE_ENV, str(settings_file))
    at = open_dataset_page()
    assert at.sidebar.radio(key="data_source_choice").options == [DEMO_LABEL, OTHER_LABEL]

    fer2013 = small_fer2013(tmp_path / "fer2013")
    settings_file.write_text(f'fer2013 = "{fer2013}"\n')  # while the app is running
    at.run()

    choice = at.sidebar.radio(key="data_source_choice")
    assert choice.options == [DEMO_LABEL, f"FER2013 at {fer2013}", OTHER_LABEL]
    assert choice.value == DEMO_LABEL  # the session's choice stays until the user picks the copy
    choice.set_value(f"FER2013 at {fer2013}").run()
    assert any(f"Showing **FER2013** from `{fer2013}`" in markdown.value for markdown in at.markdown)


# Bad names and folders in a typed location


@pytest.mark.parametrize("typed", ["data/\x00", "\x00", "/tmp/\x00/fer2013"])
def test_a_nul_byte_in_a_typed_location_is_a_clear_error(data_root: Path, typed: str) -> None:
    at = choose_location(open_dataset_page(), typed)

    assert len(at.error) == 1
    assert "NUL character" in at.error[0].value
    assert any("Showing the **built-in demo set**" in markdown.value for markdown in at.markdown)

    at.run()  # and again on the next rerun: the same message, no exception
    assert not at.exception and "NUL character" in at.error[0].value


def test_a_file_name_that_is_not_utf8_is_shown_with_replacement_characters(data_root: Path) -> None:
    root = data_root / "faces"
    write_faces(root / "happy", 2, seed=8)
    gray_face = np.random.default_rng(9).integers(0, 256, (48, 48), dtype=np.uint8)
    with open(os.path.join(os.fsencode(root / "happy"), b"bad\xff\xfe.png"), "wb") as handle:
        handle.write(cv2.imencode(".png", gray_face)[1].tobytes())
    with open(os.path.join(os.fsencode(root / "happy"), b"notes\xff.txt"), "wb") as handle:
        handle.write(b"not a face")

    at = choose_location(open_dataset_page(), root)

    assert not at.error
    assert "bad\ufffd\ufffd.png" in shown_files(at)
    tables = [frame.value for frame in at.dataframe]
    assert any(table.iloc[:, 0].tolist() == ["happy/notes\ufffd.txt"] for table in tables)


def refuse_to_list(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``os.scandir`` fails on ``folder`` as on one the user may not read (chmod 000 does not stop root)."""
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if os.fspath(path) == str(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_class_folder_that_cannot_be_read_is_skipped_and_named(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = data_root / "faces"
    write_faces(root / "train" / "happy", 3, seed=10)
    write_faces(root / "train" / "sad", 2, seed=11)
    refuse_to_list(monkeypatch, root / "train" / "sad")

    at = choose_location(open_dataset_page(), root)

    assert not at.error
    assert any("1 folder could not be read" in warning.value and "train/sad" in warning.value for warning in at.warning)
    assert shown_labels(at) == {"happy"}
    assert "Unreadable (1)" in [tab.label for tab in at.tabs]
    tables = [frame.value for frame in at.dataframe]
    assert any(table.iloc[:, 0].tolist() == ["train/sad: permission denied"] for table in tables)


def test_a_symlink_loop_in_a_typed_location_is_skipped_and_named(data_root: Path) -> None:
    root = data_root / "faces"
    write_faces(root / "happy", 3, seed=12)
    (root / "selfloop").symlink_to("selfloop")

    at = choose_location(open_dataset_page(), root)

    assert not at.error
    assert len(grid_captions(at)) == 3
    assert any("selfloop: a symbolic link loop" in warning.value for warning in at.warning)


def test_duplicate_counts_read_as_sentences_that_agree_with_them() -> None:
    assert (
        duplicates_sentence(4, 2, 0) == "4 images in 2 groups of byte-identical pixels; none spans more than one split."
    )
    assert duplicates_sentence(2, 1, 1).startswith("2 images in 1 group of byte-identical pixels; 1 of them spans ")
    assert "3 of them span more than one split, so the test set holds faces" in duplicates_sentence(1_200, 500, 3)


def large_pager() -> None:
    from app.views.dataset import paged

    paged(32_298, 24, key="pager", noun="Faces")


def test_a_pager_of_a_thousand_pages_has_thousands_separators() -> None:
    at = AppTest.from_function(large_pager)
    at.run()
    assert not at.exception, at.exception
    assert at.caption[0].value == "Faces 1–24 of 32,298 · page 1 of 1,346"
