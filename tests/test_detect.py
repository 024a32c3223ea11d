"""Face detection: the cascades ship with OpenCV 4.x, real FER2013 faces are found where they were
pasted, the minimum face size and the downscaled scan behave, and boxes come back left to right."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from photo_samples import detectable_faces, fer_faces, group_photo, textured_background

from fer_core.detect import FRONTAL_CASCADE, PROFILE_CASCADE, Box, HaarFaceDetector, cascade_path, suppress_overlaps
from fer_core.preprocess import to_gray


@pytest.fixture(scope="module")
def found_faces(fer2013_dir) -> list[np.ndarray]:
    return detectable_faces(fer_faces(fer2013_dir), size=120, count=5)


def test_opencv_is_the_pinned_4x_with_cascade_files() -> None:
    assert cv2.__version__.startswith("4."), f"OpenCV {cv2.__version__}: requirements.txt pins 4.x for the cascades"
    for name in (FRONTAL_CASCADE, PROFILE_CASCADE):
        path = cascade_path(name)
        assert path.is_file() and path.stat().st_size > 100_000, path


def test_detector_loads_both_cascades() -> None:
    detector = HaarFaceDetector(include_profiles=True)
    assert detector.detect(np.full((120, 160), 128, np.uint8)) == []


def test_blank_and_textured_images_have_no_faces() -> None:
    detector = HaarFaceDetector()
    assert detector.detect(np.zeros((480, 640), np.uint8)) == []
    assert detector.detect(to_gray(textured_background(480, 640, seed=3))) == []


def test_tiny_image_is_not_an_error() -> None:
    assert HaarFaceDetector().detect(np.full((5, 7), 200, np.uint8)) == []


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (2, 6000)])
def test_a_very_thin_image_is_not_an_error(shape: tuple[int, int]) -> None:
    # Scaled to max_side, the short side rounds to zero: cv2.resize would fail on it.
    assert HaarFaceDetector(max_side=1280).detect(np.full(shape, 200, np.uint8)) == []


@pytest.mark.fer2013
def test_pasted_fer2013_faces_are_found_where_they_are(found_faces) -> None:
    bgr_image, boxes = group_photo(found_faces)
    found = HaarFaceDetector().detect(to_gray(bgr_image))
    assert len(found) == len(boxes)
    for box in boxes:
        assert max(candidate.iou(box) for candidate in found) > 0.5, (box, found)
    assert [box.x for box in found] == sorted(box.x for box in found)


@pytest.mark.fer2013
def test_detection_on_a_downscaled_copy_returns_boxes_in_original_pixels(found_faces) -> None:
    bgr_image, boxes = group_photo(found_faces, size=240, width=1800, height=800)
    detector = HaarFaceDetector(max_side=640)  # scans a 640x284 copy
    found = detector.detect(to_gray(bgr_image))
    for box in boxes:
        assert max(candidate.iou(box) for candidate in found) > 0.5, (box, found)


@pytest.mark.fer2013
def test_minimum_face_size_skips_smaller_faces(found_faces) -> None:
    bgr_image, boxes = group_photo(found_faces[:3], size=100, width=600)
    gray_image = to_gray(bgr_image)
    found = HaarFaceDetector(min_face_size=40).detect(gray_image)
    assert all(max(candidate.iou(box) for candidate in found) > 0.5 for box in boxes)
    assert HaarFaceDetector(min_face_size=160).detect(gray_image) == []


@pytest.mark.fer2013
def test_a_detector_can_be_shared_between_threads(found_faces) -> None:
    bgr_image, _ = group_photo(found_faces)
    gray_image = to_gray(bgr_image)
    detector = HaarFaceDetector()
    expected = detector.detect(gray_image)
    results: list[list[Box]] = []
    threads = [threading.Thread(target=lambda: results.append(detector.detect(gray_image))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


@pytest.mark.parametrize(("option", "value"), [("min_face_size", 4), ("max_side", 32)])
def test_nonsense_settings_are_refused(option: str, value: int) -> None:
    with pytest.raises(ValueError, match=option):
        HaarFaceDetector(**{option: value})


def test_overlapping_boxes_keep_the_larger() -> None:
    big, inside, apart = Box(10, 10, 100, 100), Box(30, 30, 50, 50), Box(300, 10, 80, 80)
    assert sorted(suppress_overlaps([inside, big, apart])) == sorted([big, apart])


def test_iou() -> None:
    assert Box(0, 0, 10, 10).iou(Box(0, 0, 10, 10)) == 1.0
    assert Box(0, 0, 10, 10).iou(Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert Box(0, 0, 10, 10).iou(Box(20, 20, 5, 5)) == 0.0
