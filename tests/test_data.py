"""The data layer: every layout the loader understands, bad input, the disk cache, the demo set, FER2013."""

from __future__ import annotations

import csv
import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from fer_core import data
from fer_core.data import FaceDataset, load_dataset
from fer_core.datasets import DEMO_SOURCE, describe_source, resolve_dataset
from fer_core.demo import DEMO_SEED, draw_face
from fer_core.errors import DatasetError
from fer_core.labels import EMOTIONS

FER2013_COUNTS = {
    "train": {
        "angry": 3995,
        "disgust": 436,
        "fear": 4097,
        "happy": 7215,
        "sad": 4830,
        "surprise": 3171,
        "neutral": 4965,
    },
    "test": {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "sad": 653, "surprise": 415, "neutral": 607},
}


def random_faces(count: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 48, 48), dtype=np.uint8)


def write_image(path: Path, image: npt.NDArray[np.uint8]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_class_folders(folder: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """PNG faces (lossless, so pixels survive) under ``folder/<class>/``."""
    for offset, (class_name, count) in enumerate(per_class.items()):
        for index, gray_face in enumerate(random_faces(count, seed=seed * 100 + offset)):
            write_image(folder / class_name / f"{class_name}_{index:03d}.png", gray_face)


def write_csv(
    path: Path, rows: list[tuple[str, str, str]], header: tuple[str, ...] = ("emotion", "pixels", "Usage")
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def pixels_text(gray_face: npt.NDArray[np.uint8]) -> str:
    return " ".join(str(value) for value in gray_face.ravel())


def load(path: Path, tmp_path: Path, *, split: str | None = None, use_cache: bool = True) -> FaceDataset:
    return load_dataset(path, split=split, cache_dir=tmp_path / "cache", use_cache=use_cache)


# Layouts


def test_kaggle_layout_loads_every_split_and_class(tmp_path: Path) -> None:
    root = tmp_path / "fer2013"
    write_class_folders(root / "train", dict.fromkeys(EMOTIONS, 3), seed=1)
    write_class_folders(root / "test", dict.fromkeys(EMOTIONS, 2), seed=2)
    write_class_folders(root / "val", {"happy": 1, "sad": 1}, seed=3)

    dataset = load(root, tmp_path)

    assert len(dataset) == 7 * 3 + 7 * 2 + 2
    assert dataset.split_names == ["train", "val", "test"]
    assert dataset.class_counts()["train"] == dict.fromkeys(EMOTIONS, 3)
    assert dataset.class_counts()["test"] == dict.fromkeys(EMOTIONS, 2)
    assert dataset.class_counts()["val"]["happy"] == 1
    assert dataset.images.shape[1:] == (48, 48)
    assert dataset.images.dtype == np.uint8
    assert "train/happy/happy_000.png" in dataset.source_ids.tolist()
    assert dataset.name == "fer2013"
    assert not dataset.synthetic
    assert dataset.report.problem_count == 0


def test_labels_follow_the_folder_names(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces" / "train", {"surprise": 2, "angry": 1})
    dataset = load(tmp_path / "faces", tmp_path)
    for label, source_id in zip(dataset.labels, dataset.source_ids, strict=True):
        assert source_id.split("/")[1] == EMOTIONS[label]


def test_flat_class_folders_load_as_the_split_asked_for(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2, "neutral": 2})

    assert load(tmp_path / "faces", tmp_path).split_names == ["train"]
    assert load(tmp_path / "faces", tmp_path, split="test").split_names == ["test"]
    assert load(tmp_path / "faces", tmp_path, split="PublicTest").split_names == ["test"]


def test_a_flat_folder_named_test_is_the_test_split(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "test", {"fear": 2})
    dataset = load(tmp_path / "test", tmp_path)
    assert dataset.split_names == ["test"]
    assert dataset.source_ids.tolist() == ["fear/fear_000.png", "fear/fear_001.png"]


def test_csv_usage_column_maps_to_splits(tmp_path: Path) -> None:
    faces = random_faces(4)
    rows = [
        ("3", pixels_text(faces[0]), "Training"),
        ("0", pixels_text(faces[1]), "PublicTest"),
        ("6", pixels_text(faces[2]), "PrivateTest"),
        ("1", pixels_text(faces[3]), "Training"),
    ]
    write_csv(tmp_path / "fer2013.csv", rows)

    dataset = load(tmp_path / "fer2013.csv", tmp_path)

    assert dataset.splits.tolist() == ["train", "test", "private_test", "train"]
    assert dataset.labels.tolist() == [3, 0, 6, 1]
    assert np.array_equal(dataset.images, faces)
    assert dataset.source_ids.tolist() == ["fer2013.csv:2", "fer2013.csv:3", "fer2013.csv:4", "fer2013.csv:5"]
    assert dataset.split_names == ["train", "test", "private_test"]


def test_csv_without_usage_is_all_train(tmp_path: Path) -> None:
    write_csv(tmp_path / "faces.csv", [("2", pixels_text(random_faces(1)[0]))], header=("emotion", "pixels"))
    assert load(tmp_path / "faces.csv", tmp_path).split_names == ["train"]


def test_folder_aliases_are_accepted_in_any_case(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"Anger": 1, "SADNESS": 1, "Happy": 1, "surprised": 1})
    counts = load(tmp_path / "faces", tmp_path).class_counts()["train"]
    assert counts == {"angry": 1, "disgust": 0, "fear": 0, "happy": 1, "sad": 1, "surprise": 1, "neutral": 0}


def test_unknown_class_folders_are_skipped_and_reported(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces" / "train", {"happy": 2, "contempt": 3, "unknown": 1})
    dataset = load(tmp_path / "faces", tmp_path)
    assert len(dataset) == 2
    assert dataset.report.skipped_folders == ("train/contempt", "train/unknown")
    assert dataset.report.problem_count == 2


# Odd files


def test_an_image_that_is_not_48x48_is_resized_and_reported(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    bgr_big = np.full((96, 80, 3), 200, dtype=np.uint8)
    write_image(tmp_path / "faces" / "happy" / "big.jpg", bgr_big)

    dataset = load(tmp_path / "faces", tmp_path)

    assert len(dataset) == 3
    assert dataset.report.resized == ("happy/big.jpg",)
    big = dataset.images[dataset.source_ids.tolist().index("happy/big.jpg")]
    assert big.shape == (48, 48)
    assert abs(int(big.mean()) - 200) <= 2


def test_files_that_are_not_images_are_reported_and_the_rest_still_load(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"sad": 3})
    (tmp_path / "faces" / "sad" / "notes.txt").write_text("not a face")
    (tmp_path / "faces" / "sad" / "empty.jpg").write_bytes(b"")
    (tmp_path / "faces" / "sad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "faces" / "sad" / ".DS_Store").write_bytes(b"hidden files are ignored")

    dataset = load(tmp_path / "faces", tmp_path)

    assert len(dataset) == 3
    assert sorted(dataset.report.unreadable) == ["sad/broken.png", "sad/empty.jpg", "sad/notes.txt"]
    assert dataset.report.problem_count == 3


def test_a_float_tiff_face_loads_with_its_pixels_scaled(tmp_path: Path) -> None:
    from PIL import Image

    write_class_folders(tmp_path / "faces", {"happy": 1})
    values = np.linspace(0, 1, 48 * 48, dtype=np.float32).reshape(48, 48)  # float pixels from 0 to 1
    Image.fromarray(values, mode="F").save(tmp_path / "faces" / "happy" / "float.tif", format="TIFF")

    dataset = load(tmp_path / "faces", tmp_path)

    assert dataset.report.unreadable == ()
    float_face = dataset.images[dataset.source_ids.tolist().index("happy/float.tif")]
    np.testing.assert_array_equal(float_face, np.round(values * 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("sun-raster.png", cv2.imencode(".ras", random_faces(1)[0])[1].tobytes()),
        ("radiance.jpg", cv2.imencode(".hdr", np.ones((48, 48, 3), np.float32))[1].tobytes()),
        ("pfm.png", b"Pf\n48 48\n-1.0\n" + np.ones((48, 48), "<f4").tobytes()),
        ("eps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 48\n%%EndComments\nshowpage\n"),
        ("psd.jpg", b"8BPS\x00\x01" + bytes(32)),
    ],
)
def test_a_file_of_a_format_the_app_does_not_accept_is_not_decoded(tmp_path: Path, name: str, data: bytes) -> None:
    write_class_folders(tmp_path / "faces", {"sad": 2})
    (tmp_path / "faces" / "sad" / name).write_bytes(data)

    dataset = load(tmp_path / "faces", tmp_path)

    assert len(dataset) == 2
    assert dataset.report.unreadable == (f"sad/{name}",)


def test_a_folder_of_only_unreadable_files_raises(tmp_path: Path) -> None:
    (tmp_path / "faces" / "happy").mkdir(parents=True)
    (tmp_path / "faces" / "happy" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="could be read as an image"):
        load(tmp_path / "faces", tmp_path)


# Folders that cannot be read


def refuse_to_list(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> None:
    """Make ``os.scandir`` fail on ``folders`` with "Permission denied", as for a folder the user
    may not read (chmod 000 does not stop root, so the tests do not rely on it)."""
    real_scandir = os.scandir
    refused = {str(folder) for folder in folders}

    def scandir(path: Any) -> Any:
        if os.fspath(path) in refused:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_symlink_loop_in_a_data_folder_is_skipped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "faces"
    write_class_folders(root / "train", {"happy": 2, "sad": 1})
    write_class_folders(root / "test", {"happy": 1})
    (root / "selfloop").symlink_to("selfloop")  # ln -s selfloop faces/selfloop
    (root / "train" / "angry").symlink_to("angry")  # a loop where a class folder would be
    (root / "train" / "happy" / "loop.png").symlink_to("loop.png")  # a loop where a face would be

    dataset = load(root, tmp_path)

    assert len(dataset) == 4
    assert dataset.report.unreadable_folders == (
        "selfloop: a symbolic link loop",
        "train/angry: a symbolic link loop",
        "train/happy/loop.png: a symbolic link loop",
    )
    assert dataset.report.problem_count == 3
    assert "train/angry: a symbolic link loop" in caplog.text  # what the training CLI prints
    assert load(root, tmp_path).report == dataset.report  # and again from the cache


def test_a_symlink_loop_in_a_flat_class_folder_layout_is_skipped(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"fear": 2})
    (tmp_path / "faces" / "selfloop").symlink_to("selfloop")
    dataset = load(tmp_path / "faces", tmp_path)
    assert len(dataset) == 2
    assert dataset.report.unreadable_folders == ("selfloop: a symbolic link loop",)


def test_a_location_that_is_a_symlink_loop_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "selfloop").symlink_to("selfloop")
    with pytest.raises(DatasetError, match="symbolic link loop"):
        load(tmp_path / "selfloop", tmp_path)


def test_a_class_folder_that_cannot_be_read_is_skipped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "faces"
    write_class_folders(root / "train", {"happy": 2, "sad": 3})
    write_class_folders(root / "test", {"sad": 1})
    refuse_to_list(monkeypatch, root / "train" / "sad")

    dataset = load(root, tmp_path)

    assert dataset.class_counts()["train"]["happy"] == 2
    assert dataset.class_counts()["train"]["sad"] == 0
    assert dataset.class_counts()["test"]["sad"] == 1
    assert dataset.report.unreadable_folders == ("train/sad: permission denied",)
    assert "train/sad: permission denied" in caplog.text


def test_a_split_folder_that_cannot_be_read_is_skipped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "faces"
    write_class_folders(root / "train", {"happy": 2})
    write_class_folders(root / "test", {"happy": 1})
    refuse_to_list(monkeypatch, root / "test")

    dataset = load(root, tmp_path)

    assert dataset.split_names == ["train"]
    assert dataset.report.unreadable_folders == ("test: permission denied",)


def test_when_every_class_folder_is_unreadable_the_error_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    refuse_to_list(monkeypatch, tmp_path / "faces" / "happy")
    with pytest.raises(DatasetError, match="Could not read: happy: permission denied"):
        load(tmp_path / "faces", tmp_path)


def test_a_data_folder_that_cannot_be_read_is_a_dataset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    refuse_to_list(monkeypatch, tmp_path / "faces")
    with pytest.raises(DatasetError, match=r"cannot read the folder .*faces: permission denied"):
        load(tmp_path / "faces", tmp_path)


def test_a_csv_that_cannot_be_read_is_a_dataset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_path = tmp_path / "faces.csv"
    write_csv(csv_path, [("4", pixels_text(random_faces(1)[0]), "Training")])
    real_open = Path.open

    def open_unless_csv(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == csv_path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_unless_csv)
    with pytest.raises(DatasetError, match=r"cannot read .*faces\.csv: permission denied"):
        load(csv_path, tmp_path)


# Bad locations


def test_a_missing_path_raises_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load(tmp_path / "nowhere", tmp_path)


@pytest.mark.parametrize("location", ["data/\x00", "\x00"])
def test_a_location_with_a_nul_character_is_a_dataset_error(tmp_path: Path, location: str) -> None:
    with pytest.raises(DatasetError, match="NUL character"):
        load_dataset(location, cache_dir=tmp_path / "cache")


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


def test_a_folder_without_class_folders_explains_the_expected_layout(tmp_path: Path) -> None:
    (tmp_path / "photos" / "holiday").mkdir(parents=True)
    write_image(tmp_path / "photos" / "loose.png", random_faces(1)[0])
    with pytest.raises(DatasetError, match=r"no images in class folders.*train/<class>.*angry, disgust"):
        load(tmp_path / "photos", tmp_path)


def test_a_folder_with_only_unknown_classes_names_them(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"contempt": 2})
    with pytest.raises(DatasetError, match="not FER2013 classes: contempt"):
        load(tmp_path / "faces", tmp_path)


def test_an_empty_split_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "fer" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        load(tmp_path / "fer", tmp_path)


def test_a_file_that_is_not_a_csv_raises(tmp_path: Path) -> None:
    (tmp_path / "faces.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"not a \.csv"):
        load(tmp_path / "faces.zip", tmp_path)


def test_a_csv_missing_a_column_names_it(tmp_path: Path) -> None:
    write_csv(tmp_path / "faces.csv", [("3", "Training")], header=("emotion", "Usage"))
    with pytest.raises(DatasetError, match=r"lacks the column\(s\) pixels \(found: emotion, Usage\)"):
        load(tmp_path / "faces.csv", tmp_path)


def test_a_csv_with_no_valid_rows_raises(tmp_path: Path) -> None:
    write_csv(tmp_path / "faces.csv", [("9", "1 2 3", "Training")])
    with pytest.raises(DatasetError, match="no valid rows"):
        load(tmp_path / "faces.csv", tmp_path)


@pytest.mark.parametrize(
    ("emotion", "pixels", "reason"),
    [
        ("3", " ".join(["7"] * 2303), "2303 pixel values, expected 2304"),
        ("3", " ".join(["7"] * 2303 + ["x"]), "not all integers"),
        ("3", " ".join(["7"] * 2303 + ["256"]), "outside 0-255"),
        ("9", " ".join(["7"] * 2304), "emotion 9 is outside 0-6"),
        ("happy", " ".join(["7"] * 2304), "not an integer"),
        ("3", " ".join(["7"] * 2303 + ["9" * 30]), "not all integers"),  # too large even for int64
    ],
)
def test_malformed_csv_rows_are_skipped_with_their_line_number(
    tmp_path: Path, emotion: str, pixels: str, reason: str
) -> None:
    good = random_faces(2)
    rows = [
        ("0", pixels_text(good[0]), "Training"),
        (emotion, pixels, "Training"),
        ("5", pixels_text(good[1]), "PublicTest"),
    ]
    write_csv(tmp_path / "faces.csv", rows)

    dataset = load(tmp_path / "faces.csv", tmp_path)

    assert len(dataset) == 2
    assert np.array_equal(dataset.images, good)
    assert dataset.labels.tolist() == [0, 5]
    assert len(dataset.report.bad_rows) == 1
    assert dataset.report.bad_rows[0].startswith("line 3: ")  # the header is line 1
    assert reason in dataset.report.bad_rows[0]


@pytest.mark.parametrize("bad_row", ["3,7 7 \udcff 7,Training", f"3,{' '.join(['7'] * 2304)},Train\udcffing"])
def test_a_row_with_a_byte_that_is_not_utf8_is_skipped_not_fatal(tmp_path: Path, bad_row: str) -> None:
    good = random_faces(2)
    text = "emotion,pixels,Usage\n"
    text += f"0,{pixels_text(good[0])},Training\n"
    text += bad_row + "\n"  # its stray byte is written below as raw 0xFF
    text += f"5,{pixels_text(good[1])},PublicTest\n"
    (tmp_path / "faces.csv").write_bytes(text.encode("utf-8", "surrogateescape"))

    dataset = load(tmp_path / "faces.csv", tmp_path)

    assert dataset.labels.tolist() == [0, 5] and np.array_equal(dataset.images, good)
    assert len(dataset.report.bad_rows) == 1 and dataset.report.bad_rows[0].startswith("line 3: ")


def test_an_unclosed_quote_is_a_clear_error(tmp_path: Path) -> None:
    text = "emotion,pixels,Usage\n" + '3,"7 7 7,Training\n' + ("7 " * 70_000) + "\n"
    (tmp_path / "faces.csv").write_text(text)
    with pytest.raises(DatasetError, match=r"faces\.csv is not readable as CSV near line \d+"):
        load(tmp_path / "faces.csv", tmp_path)


def test_csv_and_folders_holding_the_same_faces_load_identically(tmp_path: Path) -> None:
    faces = random_faces(14, seed=7)
    labels = [index % 7 for index in range(14)]
    usages = ["Training" if index < 10 else "PublicTest" for index in range(14)]
    write_csv(
        tmp_path / "fer2013.csv",
        [(str(label), pixels_text(face), usage) for face, label, usage in zip(faces, labels, usages, strict=True)],
    )
    for index, (face, label, usage) in enumerate(zip(faces, labels, usages, strict=True)):
        split = "train" if usage == "Training" else "test"
        write_image(tmp_path / "folders" / split / EMOTIONS[label] / f"{index:03d}.png", face)

    from_csv = load(tmp_path / "fer2013.csv", tmp_path)
    from_folders = load(tmp_path / "folders", tmp_path)
    # Folder order is split/class/name; put it back in row order using the file names.
    row_of = np.array([int(Path(source_id).stem) for source_id in from_folders.source_ids])
    order = np.argsort(row_of)

    assert np.array_equal(from_folders.images[order], from_csv.images)
    assert np.array_equal(from_folders.labels[order], from_csv.labels)
    assert from_folders.splits[order].tolist() == from_csv.splits.tolist()


# Cache


def cache_entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("dataset-*"))


def test_a_second_load_comes_from_the_cache_and_is_equal(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces" / "train", {"happy": 3, "contempt": 1})
    (tmp_path / "faces" / "train" / "happy" / "bad.jpg").write_bytes(b"")

    first = load(tmp_path / "faces", tmp_path)
    assert len(cache_entries(tmp_path)) == 1
    second = load(tmp_path / "faces", tmp_path)

    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels)
    assert first.splits.tolist() == second.splits.tolist()
    assert first.source_ids.tolist() == second.source_ids.tolist()
    assert first.report == second.report
    assert second.name == "faces"


def test_the_cache_is_what_a_second_load_reads(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    load(tmp_path / "faces", tmp_path)
    (entry,) = cache_entries(tmp_path)
    stored = np.load(entry / "images.npy")
    np.save(entry / "images.npy", 255 - stored)  # other pixels, stored as a load would store them
    meta = json.loads((entry / "meta.json").read_text())
    meta["sha256"]["images"] = data._array_digest(255 - stored)
    (entry / "meta.json").write_text(json.dumps(meta))

    assert np.array_equal(load(tmp_path / "faces", tmp_path).images, 255 - stored)


@pytest.mark.parametrize(
    ("array_name", "edit"),
    [
        pytest.param("labels", lambda labels: labels[::-1].copy(), id="labels-permuted"),
        pytest.param("images", lambda images: 255 - images, id="pixels-inverted"),
        pytest.param("splits", lambda splits: np.full_like(splits, "test"), id="splits-valid-but-other"),
    ],
)
def test_a_csv_cache_edited_within_valid_values_fails_its_checksum_and_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, array_name: str, edit: Callable[[Any], Any]
) -> None:
    faces = random_faces(3)
    rows = [(str(label), pixels_text(face), "Training") for label, face in zip((0, 3, 6), faces, strict=True)]
    write_csv(tmp_path / "faces.csv", rows)
    first = load(tmp_path / "faces.csv", tmp_path)
    (entry,) = cache_entries(tmp_path)
    edited = edit(np.load(entry / f"{array_name}.npy"))
    assert not np.array_equal(edited, np.load(entry / f"{array_name}.npy"))  # the edit changes something
    np.save(entry / f"{array_name}.npy", edited)

    second = load(tmp_path / "faces.csv", tmp_path)

    assert np.array_equal(second.images, first.images) and second.labels.tolist() == [0, 3, 6]
    assert second.splits.tolist() == ["train"] * 3
    assert f"{array_name}.npy does not match its checksum in meta.json" in caplog.text
    assert np.array_equal(np.load(entry / f"{array_name}.npy"), getattr(first, array_name))  # written afresh


def test_changing_a_file_invalidates_the_cache(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    first = load(tmp_path / "faces", tmp_path)
    changed = tmp_path / "faces" / "happy" / "happy_000.png"
    stat = changed.stat()
    write_image(changed, np.zeros((48, 48), np.uint8))
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    second = load(tmp_path / "faces", tmp_path)

    assert first.images[0].any()
    assert not second.images[0].any()
    assert len(cache_entries(tmp_path)) == 1  # the stale entry was replaced


def test_adding_a_file_invalidates_the_cache(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    assert len(load(tmp_path / "faces", tmp_path)) == 2
    write_image(tmp_path / "faces" / "happy" / "new.png", random_faces(1)[0])
    assert len(load(tmp_path / "faces", tmp_path)) == 3


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    first = load(tmp_path / "faces", tmp_path)
    (entry,) = cache_entries(tmp_path)
    (entry / "labels.npy").write_bytes(b"not numpy")

    second = load(tmp_path / "faces", tmp_path)

    assert np.array_equal(first.labels, second.labels)
    assert np.load(entry / "labels.npy").tolist() == first.labels.tolist()


@pytest.mark.parametrize(
    ("array_name", "edit"),
    [
        pytest.param("labels", lambda labels: labels + 7, id="labels-out-of-range"),
        pytest.param("labels", lambda labels: labels - 1, id="labels-negative"),
        pytest.param("labels", lambda labels: 6 - labels, id="labels-in-range-but-not-the-folders"),
        pytest.param("labels", lambda labels: labels.astype(np.float64), id="labels-float"),
        pytest.param("labels", lambda labels: labels[:-1], id="labels-one-short"),
        pytest.param("labels", lambda labels: labels.reshape(-1, 1), id="labels-2d"),
        pytest.param("splits", lambda splits: np.full_like(splits, "test"), id="splits-not-the-folders"),
        pytest.param("splits", lambda splits: np.full(len(splits), "Bogus Split"), id="splits-unknown"),
        pytest.param("splits", lambda splits: np.zeros(len(splits), dtype=np.int64), id="splits-numbers"),
        pytest.param(
            "source_ids", lambda source_ids: np.array(["train/happy/x.png"] * len(source_ids)), id="source-ids-unlisted"
        ),
        pytest.param("images", lambda images: images[:, :, :47], id="images-47-wide"),
        pytest.param("images", lambda images: images.astype(np.float32), id="images-float"),
    ],
)
def test_an_edited_cache_is_detected_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, array_name: str, edit: Callable[[Any], Any]
) -> None:
    write_class_folders(tmp_path / "faces" / "train", {"angry": 2, "happy": 3})
    first = load(tmp_path / "faces", tmp_path)
    (entry,) = cache_entries(tmp_path)
    np.save(entry / f"{array_name}.npy", edit(np.load(entry / f"{array_name}.npy")))

    second = load(tmp_path / "faces", tmp_path)

    assert np.array_equal(second.images, first.images)
    assert second.labels.tolist() == first.labels.tolist()
    assert second.splits.tolist() == first.splits.tolist()
    assert second.source_ids.tolist() == first.source_ids.tolist()
    assert "is invalid" in caplog.text
    assert np.load(entry / "labels.npy").tolist() == first.labels.tolist()  # the entry was written afresh


def test_an_edited_csv_cache_with_labels_out_of_range_is_rebuilt(tmp_path: Path) -> None:
    write_csv(tmp_path / "faces.csv", [("4", pixels_text(random_faces(1)[0]), "Training")])
    load(tmp_path / "faces.csv", tmp_path)
    (entry,) = cache_entries(tmp_path)
    np.save(entry / "labels.npy", np.array([42], dtype=np.int64))
    assert load(tmp_path / "faces.csv", tmp_path).labels.tolist() == [4]


@pytest.mark.parametrize(
    "meta",
    [
        {"name": 5, "synthetic": False, "report": {}},
        {"name": "faces", "synthetic": "no", "report": {}},
        {"name": "faces", "synthetic": False, "report": {"unreadable": "x"}},
        {"name": "faces", "synthetic": False, "report": {"surprise": []}},
        {"name": "faces", "synthetic": False, "report": {"unreadable": [1]}},
        ["not", "a", "table"],
    ],
)
def test_a_cache_with_bad_metadata_is_rebuilt(tmp_path: Path, meta: Any) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    first = load(tmp_path / "faces", tmp_path)
    (entry,) = cache_entries(tmp_path)
    (entry / "meta.json").write_text(json.dumps(meta))

    second = load(tmp_path / "faces", tmp_path)

    assert second.name == "faces" and second.report == first.report
    assert json.loads((entry / "meta.json").read_text())["name"] == "faces"


@pytest.mark.parametrize("labels", [[0, 7], [-1, 0], [0.0, 1.0]])
def test_a_face_dataset_refuses_labels_that_are_not_emotion_codes(labels: list[float]) -> None:
    with pytest.raises(ValueError, match="labels must be"):
        FaceDataset(
            images=random_faces(2),
            labels=np.array(labels),
            splits=np.array(["train", "train"]),
            source_ids=np.array(["a", "b"]),
            name="faces",
        )


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    load(tmp_path / "faces", tmp_path, use_cache=False)
    assert cache_entries(tmp_path) == []


def test_a_csv_is_cached_too(tmp_path: Path) -> None:
    write_csv(tmp_path / "faces.csv", [("4", pixels_text(random_faces(1)[0]), "Training"), ("4", "1 2", "Training")])
    first = load(tmp_path / "faces.csv", tmp_path)
    second = load(tmp_path / "faces.csv", tmp_path)
    assert len(cache_entries(tmp_path)) == 1
    assert second.report.bad_rows == first.report.bad_rows == ("line 3: 2 pixel values, expected 2304",)


# FaceDataset


def test_asking_for_a_missing_split_lists_the_present_ones(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "faces", {"happy": 2})
    dataset = load(tmp_path / "faces", tmp_path)
    assert len(dataset.split("Training")) == 2
    with pytest.raises(DatasetError, match="has no 'test' split; it has: train"):
        dataset.split("test")


# Demo set


def test_the_demo_set_is_the_same_every_time_it_is_drawn() -> None:
    def first_faces(count: int) -> npt.NDArray[np.uint8]:
        rng = np.random.default_rng(DEMO_SEED)  # demo_dir draws train/angry first, in index order
        return np.stack([draw_face("angry", rng) for _ in range(count)])

    dataset = resolve_dataset(DEMO_SOURCE)
    on_disk = [
        dataset.source_ids.tolist().index(f"train/angry/demo_train_angry_{index:04d}.png") for index in range(20)
    ]

    assert np.array_equal(first_faces(20), first_faces(20))
    assert np.array_equal(dataset.images[on_disk], first_faces(20))


def test_the_demo_set_has_every_class_in_train_and_test_and_is_marked_synthetic() -> None:
    dataset = resolve_dataset(DEMO_SOURCE)
    assert dataset.synthetic
    assert "synthetic" in dataset.name
    assert dataset.split_names == ["train", "test"]
    for split_name, counts in dataset.class_counts().items():
        assert set(counts) == set(EMOTIONS)
        assert min(counts.values()) > 0, split_name
    assert dataset.report.problem_count == 0


@pytest.mark.slow
def test_a_tiny_model_learns_the_demo_set() -> None:
    import keras

    from fer_core.preprocess import face_batch
    from training.architectures import build_model

    keras.utils.set_random_seed(0)
    dataset = resolve_dataset(DEMO_SOURCE)
    train, test = dataset.split("train"), dataset.split("test")
    model = build_model("tiny")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(face_batch(train.images), train.labels, epochs=12, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(face_batch(test.images), test.labels, verbose=0)
    assert accuracy > 0.5, f"test accuracy {accuracy:.2f} (chance is {1 / len(EMOTIONS):.2f})"


# Real FER2013


@pytest.mark.fer2013
def test_fer2013_counts_match_the_published_ones(fer2013_dir: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    cold = load_dataset(fer2013_dir, cache_dir=tmp_path / "cache")
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    cached = load_dataset(fer2013_dir, cache_dir=tmp_path / "cache")
    cached_seconds = time.perf_counter() - started
    print(f"FER2013 {len(cold):,} faces: cold load {cold_seconds:.2f} s, cached load {cached_seconds:.2f} s")

    for dataset in (cold, cached):
        assert dataset.class_counts() == FER2013_COUNTS
        assert len(dataset) == 28_709 + 3_589
        assert dataset.report.problem_count == 0
    assert np.array_equal(cold.images, cached.images)


@pytest.mark.parametrize("location", ["selfloop", "selfloop/train", "data/\x00"])
def test_describing_a_location_that_cannot_be_resolved_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str
) -> None:
    (tmp_path / "selfloop").symlink_to("selfloop")
    monkeypatch.chdir(tmp_path)
    assert describe_source(location) == location  # what a run's config.json records before the load fails
    with pytest.raises(DatasetError):
        resolve_dataset(location)
