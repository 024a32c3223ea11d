"""Face detection behind a small interface, with OpenCV's Haar cascades as the default.

The cascades ship inside the ``opencv-python(-headless)`` 4.x wheels (``cv2.data.haarcascades``);
OpenCV 5.0 dropped both them and ``CascadeClassifier``, hence the pin in requirements.txt.
Detection dominates the per-frame cost, so it runs on a downscaled copy of the image.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.errors import ModelLoadError
from fer_core.images import rescale

FRONTAL_CASCADE = "haarcascade_frontalface_default.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"


class Box(NamedTuple):
    """A face box in image pixels."""

    x: int
    y: int
    width: int
    height: int

    def iou(self, other: Box) -> float:
        left, top = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        intersection = max(0, right - left) * max(0, bottom - top)
        union = self.width * self.height + other.width * other.height - intersection
        return intersection / union if union else 0.0


class FaceDetector(Protocol):
    def detect(self, gray_image: npt.NDArray[np.uint8]) -> list[Box]: ...


def cascade_path(name: str) -> Path:
    data = getattr(cv2, "data", None)
    if data is None or not hasattr(cv2, "CascadeClassifier"):
        raise ModelLoadError(
            f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them): "
            "install opencv-python-headless 4.x as pinned in requirements.txt"
        )
    return Path(data.haarcascades) / name


def load_cascade(name: str) -> cv2.CascadeClassifier:
    path = cascade_path(name)
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ModelLoadError(f"could not load the face detector {path}")
    return cascade


class HaarFaceDetector:
    """Frontal faces (and, optionally, turned ones via the profile cascade on both sides).

    ``max_side`` bounds the longer side of the image the cascade scans; ``min_face_size`` is in the
    original image's pixels. Boxes come back in original pixels, sorted left to right.

    An OpenCV cascade keeps per-image buffers, so one detector scans one image at a time (a lock);
    give each busy thread its own detector if they must not wait for each other.
    """

    def __init__(
        self,
        *,
        min_face_size: int = 40,
        max_side: int = 640,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        include_profiles: bool = False,
    ) -> None:
        if min_face_size < 8:
            raise ValueError(f"min_face_size must be at least 8 pixels, got {min_face_size}")
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {max_side}")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self._frontal = load_cascade(FRONTAL_CASCADE)
        self._profile = load_cascade(PROFILE_CASCADE) if include_profiles else None
        self._lock = threading.Lock()

    def detect(self, gray_image: npt.NDArray[np.uint8]) -> list[Box]:
        height, width = gray_image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = gray_image if scale == 1.0 else rescale(gray_image, scale)
        small = cv2.equalizeHist(small)
        min_size = max(12, round(self.min_face_size * scale))
        boxes = self._scan(self._frontal, small, min_size)
        if self._profile is not None:
            boxes += self._scan(self._profile, small, min_size)
            flipped = self._scan(self._profile, cv2.flip(small, 1), min_size)
            boxes += [(small.shape[1] - x - w, y, w, h) for x, y, w, h in flipped]
        found = [Box(*(round(v / scale) for v in box)) for box in boxes]
        return sorted(suppress_overlaps(found), key=lambda box: (box.x, box.y))

    def _scan(
        self, cascade: cv2.CascadeClassifier, gray: npt.NDArray[np.uint8], min_size: int
    ) -> list[tuple[int, int, int, int]]:
        with self._lock:
            found = cascade.detectMultiScale(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_size, min_size)
            )
        return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]


def suppress_overlaps(boxes: list[Box], threshold: float = 0.3) -> list[Box]:
    """Keep the larger of any two boxes overlapping by more than ``threshold`` IoU (or nested)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b.width * b.height, reverse=True):
        if all(box.iou(other) <= threshold and not _inside(box, other) for other in kept):
            kept.append(box)
    return kept


def _inside(inner: Box, outer: Box) -> bool:
    cx, cy = inner.x + inner.width / 2, inner.y + inner.height / 2
    return outer.x <= cx <= outer.x + outer.width and outer.y <= cy <= outer.y + outer.height
