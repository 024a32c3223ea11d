"""Data-quality checks: near-blank images, exact duplicates, conflicting labels, class imbalance."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fer_core.data import FaceDataset, LoadReport, load_dataset
from fer_core.quality import (
    analyze_quality,
    class_imbalance,
    find_duplicate_groups,
    find_near_blank,
    mean_faces,
    pixel_histogram,
    pixel_stats,
)


def random_faces(count: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 48, 48), dtype=np.uint8)


def make_dataset(images: npt.NDArray[np.uint8], labels: list[int], splits: list[str]) -> FaceDataset:
    return FaceDataset(
        images=images,
        labels=np.array(labels, dtype=np.int64),
        splits=np.array(splits),
        source_ids=np.array([f"face_{index}.png" for index in range(len(images))]),
        name="fixture",
    )


# Near-blank


def test_pixel_stats_match_numpy() -> None:
    images = random_faces(5000, seed=1)  # more than one chunk
    images[3] = 7
    stats = pixel_stats(images)
    flat = images.reshape(len(images), -1)
    assert np.allclose(stats.std, flat.std(axis=1))
    assert stats.dominant_fraction[3] == 1.0
    expected_dominant = [np.bincount(row, minlength=256).max() / row.size for row in flat[:50]]
    assert np.allclose(stats.dominant_fraction[:50], expected_dominant)


def test_pixel_histogram_counts_every_pixel() -> None:
    images = random_faces(2500, seed=2)  # more than one chunk
    assert pixel_histogram(images).tolist() == np.bincount(images.ravel(), minlength=256).tolist()
    assert pixel_histogram(np.zeros((0, 48, 48), np.uint8)).sum() == 0


def test_flat_and_nearly_single_valued_images_are_near_blank() -> None:
    images = random_faces(6)
    images[1] = 0  # all black
    images[2] = 200 + (np.arange(48 * 48).reshape(48, 48) % 2).astype(np.uint8)  # std 0.5: flat
    images[4] = 255  # a white placeholder with a little "text"
    images[4, 20:24, 5:30] = 0  # 100 of 2304 pixels: 95.7% stay white

    assert find_near_blank(images).tolist() == [1, 2, 4]


def test_faces_with_contrast_are_not_near_blank() -> None:
    gradient = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))
    images = np.stack([gradient, random_faces(1)[0]])
    assert find_near_blank(images).size == 0


def test_near_blank_thresholds_are_adjustable() -> None:
    images = random_faces(2)
    images[0, :24] = 128  # half the pixels on one value
    assert find_near_blank(images).size == 0
    assert find_near_blank(images, min_dominant_fraction=0.5).tolist() == [0]
    with pytest.raises(ValueError, match="min_dominant_fraction"):
        find_near_blank(images, min_dominant_fraction=0)


def test_pixel_stats_refuse_non_uint8_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        pixel_stats(np.zeros((2, 48, 48), dtype=np.float32))  # type: ignore[arg-type]


# Duplicates


def test_no_duplicates_in_distinct_images() -> None:
    images = random_faces(50)
    assert find_duplicate_groups(images, np.zeros(50, np.int64), np.array(["train"] * 50)) == ()


def test_identical_images_are_grouped_with_their_labels_and_splits() -> None:
    images = random_faces(8)
    images[5] = images[1]
    images[7] = images[1]
    images[6] = images[2]
    labels = np.array([0, 3, 4, 0, 0, 3, 4, 3])
    splits = np.array(["train"] * 7 + ["test"])

    groups = find_duplicate_groups(images, labels, splits)

    assert [group.indices for group in groups] == [(1, 5, 7), (2, 6)]  # largest first
    assert groups[0].labels == (3, 3, 3)
    assert groups[0].splits == ("train", "train", "test")
    assert not groups[0].conflicting
    assert groups[0].cross_split
    assert not groups[1].conflicting
    assert not groups[1].cross_split


def test_the_same_image_under_two_labels_is_a_conflict() -> None:
    images = random_faces(4)
    images[3] = images[0]
    groups = find_duplicate_groups(images, np.array([2, 1, 1, 5]), np.array(["train"] * 4))
    assert len(groups) == 1
    assert groups[0].conflicting
    assert groups[0].labels == (2, 5)


def test_images_differing_in_one_pixel_are_not_duplicates() -> None:
    images = np.repeat(random_faces(1), 3, axis=0)
    images[1, 47, 47] ^= 1
    groups = find_duplicate_groups(images, np.zeros(3, np.int64), np.array(["train"] * 3))
    assert [group.indices for group in groups] == [(0, 2)]


def test_duplicate_search_checks_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        find_duplicate_groups(random_faces(3), np.zeros(2, np.int64), np.array(["train"] * 3))


# The whole report


def test_analyze_quality_collects_every_finding() -> None:
    images = random_faces(6)
    images[0] = 0
    images[4] = images[2]
    images[5] = images[2]
    dataset = make_dataset(images, [0, 1, 2, 3, 2, 6], ["train", "train", "train", "test", "test", "train"])
    dataset = FaceDataset(
        images=dataset.images,
        labels=dataset.labels,
        splits=dataset.splits,
        source_ids=dataset.source_ids,
        name=dataset.name,
        report=LoadReport(resized=("face_3.png",), unreadable=("bad.jpg",), skipped_folders=("train/contempt",)),
    )

    report = analyze_quality(dataset)

    assert report.near_blank.tolist() == [0]
    assert [group.indices for group in report.duplicate_groups] == [(2, 4, 5)]
    assert [group.indices for group in report.conflicting_groups] == [(2, 4, 5)]
    assert [group.indices for group in report.cross_split_groups] == [(2, 4, 5)]
    assert report.duplicate_images == 3
    assert report.redundant_copies == 2
    assert report.resized.tolist() == [3]
    assert report.load_report.unreadable == ("bad.jpg",)
    assert report.load_report.skipped_folders == ("train/contempt",)


def test_a_clean_data_set_has_an_empty_report() -> None:
    report = analyze_quality(make_dataset(random_faces(10), [0] * 10, ["train"] * 10))
    assert report.near_blank.size == 0
    assert report.duplicate_groups == ()
    assert report.resized.size == 0


# Mean faces and selections


def test_mean_faces_average_each_class_and_leave_empty_classes_mid_gray() -> None:
    images = np.stack([np.full((48, 48), value, np.uint8) for value in (10, 20, 31, 200, 90)])
    dataset = make_dataset(images, [3, 3, 3, 0, 3], ["train", "train", "test", "train", "test"])

    every_split = mean_faces(dataset)
    assert every_split.counts == (1, 0, 0, 4, 0, 0, 0)
    assert every_split.faces.shape == (7, 48, 48) and every_split.faces.dtype == np.uint8
    assert (every_split.faces[3] == 38).all()  # (10 + 20 + 31 + 90) / 4 = 37.75, rounded
    assert (every_split.faces[0] == 200).all()
    assert (every_split.faces[1] == 128).all()  # no disgust faces: mid-gray

    test_only = mean_faces(dataset, split="test")
    assert test_only.counts == (0, 0, 0, 2, 0, 0, 0)
    assert (test_only.faces[3] == 60).all()  # (31 + 90) / 2 = 60.5, rounded to even
    assert (test_only.faces[0] == 128).all()


def test_indices_select_by_split_and_emotion() -> None:
    dataset = make_dataset(random_faces(6), [3, 4, 3, 3, 0, 4], ["train", "train", "test", "train", "test", "test"])

    assert dataset.indices().tolist() == [0, 1, 2, 3, 4, 5]
    assert dataset.indices(split="train").tolist() == [0, 1, 3]
    assert dataset.indices(emotion="happy").tolist() == [0, 2, 3]
    assert dataset.indices(split="test", emotion="sad").tolist() == [5]
    assert dataset.indices(split="val").tolist() == []
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        dataset.indices(emotion="joy")


# Class imbalance


def test_class_imbalance_names_the_extremes() -> None:
    imbalance = class_imbalance({"angry": 3995, "disgust": 436, "happy": 7215, "fear": 0})
    assert (imbalance.most_common, imbalance.least_common) == ("happy", "disgust")
    assert imbalance.ratio == pytest.approx(16.55, abs=0.01)
    assert imbalance.missing == ("fear",)


def test_a_balanced_split_has_ratio_one() -> None:
    assert class_imbalance({"angry": 5, "happy": 5}).ratio == 1.0


def test_class_imbalance_needs_some_faces() -> None:
    with pytest.raises(ValueError, match="no class"):
        class_imbalance({"angry": 0})


# Real FER2013


@pytest.mark.fer2013
def test_fer2013_has_duplicates_conflicts_and_blank_images(fer2013_dir: Path) -> None:
    dataset = load_dataset(fer2013_dir)
    started = time.perf_counter()
    report = analyze_quality(dataset)
    seconds = time.perf_counter() - started
    print(
        f"FER2013 quality in {seconds:.2f} s: {len(report.near_blank)} near-blank, "
        f"{len(report.duplicate_groups)} duplicate groups ({report.duplicate_images} images), "
        f"{len(report.conflicting_groups)} with conflicting labels, {len(report.cross_split_groups)} across splits"
    )
    assert len(report.duplicate_groups) > 100
    assert report.conflicting_groups
    assert report.cross_split_groups
    assert len(report.near_blank) >= 10  # FER2013 has a dozen all-black images
    assert seconds < 5
