"""Finding faces: YuNet (a small CNN with five landmarks per face) by default, Haar cascades as an option,
behind one interface, and the detection presets every caller uses.

    detector = make_detector(PHOTO_PRESET)                 # or VIDEO_PRESET, or a preset of your own
    for detection in detector.detect(bgr_image):
        print(detection.box, detection.score, detection.landmarks)

YuNet (Shiqi Yu's libfacedetection, published in the OpenCV Zoo; WIDER Face AP 0.88 / 0.87 / 0.75 on
easy / medium / hard) runs through ONNX Runtime (:mod:`fer_core.yunet`: the faces ``cv2.FaceDetectorYN``
finds, 2.3x faster). No wheel ships its weights, so the project
commits them (``models/face_detection_yunet_2026may.onnx``, MIT, licence beside it) and checks their
SHA-256 on load. Haar cascades ship inside the ``opencv-python(-headless)`` 4.x wheels; OpenCV 5.0
dropped them, hence the pin in requirements.txt.

Both scan a downscaled copy of the image, sized so that the smallest wanted face still spans what the
detector needs: detection dominates the cost of a photo or a video frame.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Protocol, cast

import cv2  # untyped here (pyproject.toml): cast() states the array each call returns
import numpy as np
import numpy.typing as npt

from fer_core.errors import ModelLoadError
from fer_core.images import rescale
from fer_core.settings import PROJECT_ROOT

FRONTAL_CASCADE = "haarcascade_frontalface_default.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
YUNET_PATH = PROJECT_ROOT / "models" / "face_detection_yunet_2026may.onnx"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
DETECTORS = ("yunet", "haar")
MIN_FACE_RANGE = (16, 400)  # the smallest-face settings the pages and CLIs offer, in image pixels


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

    def scaled(self, factor: float) -> Box:
        return Box(*(round(value * factor) for value in self))


Point = tuple[float, float]


class Landmarks(NamedTuple):
    """Five points of a face, in image pixels. "Right" is the person's right: in a frontal face their
    right eye is on the image's left."""

    right_eye: Point
    left_eye: Point
    nose: Point
    mouth_right: Point
    mouth_left: Point

    def scaled(self, factor: float) -> Landmarks:
        return Landmarks(*((x * factor, y * factor) for x, y in self))

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-ready: each point's name and its [x, y], to a tenth of a pixel."""
        return {name: [round(x, 1), round(y, 1)] for name, (x, y) in self._asdict().items()}


LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in Landmarks._fields for axis in ("x", "y"))  # CSV columns


class Detection(NamedTuple):
    """One face found by a detector."""

    box: Box
    score: float | None = None  # the detector's confidence, 0-1 (YuNet); None where it gives none (Haar)
    landmarks: Landmarks | None = None  # YuNet's five points; None for Haar
    framing: float = 1.1  # the side of the FER2013-like square crop, relative to the box height

    def scaled(self, factor: float) -> Detection:
        landmarks = self.landmarks.scaled(factor) if self.landmarks is not None else None
        return self._replace(box=self.box.scaled(factor), landmarks=landmarks)


class FaceDetector(Protocol):
    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        """Every face in a BGR or gray image, left to right."""
        ...


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


def _gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if image.ndim == 2:
        return image
    return cast(
        "npt.NDArray[np.uint8]", cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    )


def _bgr(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if image.ndim == 2:
        return cast("npt.NDArray[np.uint8]", cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    if image.shape[2] == 4:
        return cast("npt.NDArray[np.uint8]", cv2.cvtColor(image, cv2.COLOR_BGRA2BGR))
    return image


class HaarFaceDetector:
    """Frontal faces (and, optionally, turned ones via the profile cascade on both sides).

    ``max_side`` bounds the longer side of the image the cascade scans; ``min_face_size`` is in the
    original image's pixels. An OpenCV cascade keeps per-image buffers, so one detector scans one image
    at a time (a lock).
    """

    FRAMING = 1.1  # FER2013's crop is about 1.1 times a Haar box (measured on pasted training faces)

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

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        gray_image = _gray(image)
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
        found = [Detection(Box(*(round(v / scale) for v in box)), framing=self.FRAMING) for box in boxes]
        return _left_to_right(suppress_overlaps(found))

    def _scan(
        self, cascade: cv2.CascadeClassifier, gray: npt.NDArray[np.uint8], min_size: int
    ) -> list[tuple[int, int, int, int]]:
        with self._lock:
            found = cascade.detectMultiScale(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_size, min_size)
            )
        return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]


@lru_cache(maxsize=1)
def checked_yunet_path(path: Path = YUNET_PATH, sha256: str = YUNET_SHA256) -> Path:
    """The YuNet weights, after checking they are the committed file (a missing, truncated or replaced
    file is a :class:`ModelLoadError` saying which)."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise ModelLoadError(f"the face detector's weights are missing: {path} (they ship with FER Studio)") from None
    except OSError as error:
        raise ModelLoadError(f"cannot read the face detector's weights {path}: {error.strerror or error}") from None
    if digest != sha256:
        raise ModelLoadError(
            f"{path.name} is not the YuNet file FER Studio ships (SHA-256 {digest[:12]}..., expected "
            f"{sha256[:12]}...): restore it from the repository"
        )
    return path


class YuNetFaceDetector:
    """YuNet (:mod:`fer_core.yunet`): a box, a confidence and five landmarks per face.

    The image is scanned at the scale where a face of ``min_face_size`` pixels spans ``scan_face`` pixels
    (by default its own size: no downscaling), and never with a longer side above ``max_side``.
    Scanning smaller is faster (the cost grows with the pixels scanned) but finds fewer small or blurry
    faces: on pasted FER2013 faces of 40-80 pixels, a copy where they span 20 pixels found 6 of 20 and
    the full-size image 17 of 20. ``score_threshold`` is the least confidence kept. A detector holds no
    per-image state: several threads may use one at once.
    """

    FRAMING = 1.0  # FER2013's crop is a square about as tall as a YuNet box (measured on pasted training faces)

    def __init__(
        self,
        *,
        min_face_size: int = 40,
        max_side: int = 1280,
        score_threshold: float = 0.6,
        scan_face: int | None = None,
        nms_threshold: float = 0.3,
        model_path: Path = YUNET_PATH,
    ) -> None:
        from fer_core.yunet import YuNetNetwork

        if min_face_size < 8:
            raise ValueError(f"min_face_size must be at least 8 pixels, got {min_face_size}")
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {max_side}")
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be between 0 and 1, got {score_threshold}")
        if scan_face is not None and scan_face < 12:
            raise ValueError(f"scan_face must be at least 12 pixels, got {scan_face}")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.scan_face = scan_face if scan_face is not None else min_face_size
        self._network = YuNetNetwork(checked_yunet_path(model_path))

    def scan_scale(self, height: int, width: int) -> float:
        """The factor the image is resized by before the scan."""
        return min(1.0, self.scan_face / self.min_face_size, self.max_side / max(height, width))

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        height, width = image.shape[:2]
        if min(height, width) < 0.8 * self.min_face_size:  # no wanted face fits (and YuNet misbehaves on slivers)
            return []
        scale = self.scan_scale(height, width)
        small = _bgr(image if scale == 1.0 else rescale(image, scale))
        rows = self._network.detect(small, score_threshold=self.score_threshold, nms_threshold=self.nms_threshold)
        detections = []
        for row in rows:
            if not np.isfinite(row).all():
                continue
            x, y, w, h = (float(v) / scale for v in row[:4])
            box = _clipped(x, y, w, h, width, height)
            if box is None or not is_big_enough(box, self.min_face_size):
                continue
            points = row[4:14].reshape(5, 2) / scale
            landmarks = Landmarks(*(tuple(float(v) for v in point) for point in points))  # type: ignore[arg-type]
            detections.append(Detection(box, float(row[14]), landmarks, self.FRAMING))
        return _left_to_right(suppress_overlaps(detections))


def is_big_enough(box: Box, min_face_size: int) -> bool:
    """Whether a box is a face of at least ``min_face_size`` pixels (its height, with 20% slack: boxes
    of one face differ by that much from frame to frame and between detectors)."""
    return box.height >= 0.8 * min_face_size


def _clipped(x: float, y: float, w: float, h: float, width: int, height: int) -> Box | None:
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(width, round(x + w)), min(height, round(y + h))
    if right - left < 2 or bottom - top < 2:
        return None
    return Box(left, top, right - left, bottom - top)


def suppress_overlaps(detections: list[Detection], threshold: float = 0.3) -> list[Detection]:
    """Keep the larger of any two detections overlapping by more than ``threshold`` IoU (or nested)."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: d.box.width * d.box.height, reverse=True):
        if all(detection.box.iou(other.box) <= threshold and not _inside(detection.box, other.box) for other in kept):
            kept.append(detection)
    return kept


def _inside(inner: Box, outer: Box) -> bool:
    cx, cy = inner.x + inner.width / 2, inner.y + inner.height / 2
    return outer.x <= cx <= outer.x + outer.width and outer.y <= cy <= outer.y + outer.height


def _left_to_right(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda detection: (detection.box.x, detection.box.y))


@dataclass(frozen=True)
class DetectionPreset:
    """How to find faces in one kind of input: which detector, the smallest face, how finely to scan.

    ``PHOTO_PRESET`` and ``VIDEO_PRESET`` are the only definitions: the CLIs, ``load_predictor()``, the
    Photos, Live and Video pages and :mod:`fer_core.video` start from them, and a user's choices
    replace single fields (:meth:`with_options`).
    """

    detector: str = "yunet"  # "yunet" or "haar"
    min_face_size: int = 40  # pixels in the image: smaller faces are not looked for
    max_side: int = 1280  # the longest side scanned
    scan_face: int = 40  # YuNet: pixels the smallest face spans in the scanned copy (bigger faces: a smaller scan)
    score_threshold: float = 0.6  # YuNet's least confidence
    align: bool = True  # turn each face upright by its landmarks before classifying (YuNet)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.scan_face < 12:
            raise ValueError(f"scan_face must be at least 12 pixels, got {self.scan_face}")
        low, high = MIN_FACE_RANGE
        if not low <= self.min_face_size <= high:
            raise ValueError(f"the smallest face must be {low}-{high} pixels, got {self.min_face_size}")

    def with_options(
        self, *, detector: str | None = None, min_face_size: int | None = None, align: bool | None = None
    ) -> DetectionPreset:
        """This preset with the settings a user chose (None keeps the preset's)."""
        return replace(
            self,
            detector=self.detector if detector is None else detector,
            min_face_size=self.min_face_size if min_face_size is None else min_face_size,
            align=self.align if align is None else align,
        )


# Photos are not real time: faces from 40 pixels, scanned where they span 40 (full size for the default
# smallest face; a larger smallest face scans a smaller copy), up to 1280 pixels a side. Video frames
# (webcam, clips) are: faces from 48 pixels, scanned where they span 24 (a 640x480 frame becomes 320x240,
# about 3x faster), since a camera's faces are large and sharp. Chosen on scenes of FER2013 *training*
# faces (scripts/bench_detection.py --split train); the README reports test faces.
PHOTO_PRESET = DetectionPreset(detector="yunet", min_face_size=40, max_side=1280, scan_face=40)
VIDEO_PRESET = DetectionPreset(detector="yunet", min_face_size=48, max_side=640, scan_face=24)


def make_detector(preset: DetectionPreset = PHOTO_PRESET, *, yunet_path: Path | None = None) -> FaceDetector:
    """The detector a preset describes. ``yunet_path``: YuNet's weights from elsewhere than the project's
    ``models/`` (a batch worker on another machine writes the bytes it was sent); they are checked the same."""
    if preset.detector == "haar":
        # Photos are scanned finer than OpenCV's default (1.1 / 5): on pasted FER2013 faces 1.05 / 6 finds
        # more at ~3x the time; video frames keep the default.
        fine = preset.max_side > 640
        return HaarFaceDetector(
            min_face_size=preset.min_face_size,
            max_side=preset.max_side,
            scale_factor=1.05 if fine else 1.1,
            min_neighbors=6 if fine else 5,
        )
    return YuNetFaceDetector(
        min_face_size=preset.min_face_size,
        max_side=preset.max_side,
        score_threshold=preset.score_threshold,
        scan_face=preset.scan_face,
        model_path=yunet_path or YUNET_PATH,
    )


def check_detector(preset: DetectionPreset = PHOTO_PRESET) -> None:
    """Raise :class:`ModelLoadError` saying why the preset's detector could not be made (missing or replaced
    YuNet weights, no ONNX Runtime, an OpenCV without Haar cascades), without making one: cheap enough for a page
    to call on every run before it starts work."""
    if preset.detector == "haar":
        path = cascade_path(FRONTAL_CASCADE)
        if not path.is_file():
            raise ModelLoadError(f"the face detector's cascade is missing: {path}")
        return
    checked_yunet_path(YUNET_PATH)
    if importlib.util.find_spec("onnxruntime") is None:
        raise ModelLoadError("the YuNet face detector needs onnxruntime: pip install -r requirements.txt")


def face_square(detection: Detection) -> tuple[float, float, float]:
    """The centre and side of the square a FER2013-like crop takes around a detection."""
    box = detection.box
    return box.x + box.width / 2, box.y + box.height / 2, detection.framing * box.height
