"""Stand-ins for the video, live and run-folder tests: a classifier with fixed answers, one that fails, a
detector that finds the white square in a frame, and stand-in files of a served model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fer_core.detect import Box, Detection, DetectionPreset
from fer_core.labels import EMOTIONS, NUM_CLASSES
from fer_core.serving import ServingRecord, write_serving_record

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
SQUARE = Box(235, 155, 170, 170)


class FixedClassifier:
    """Always the same probabilities."""

    def __init__(self, emotion: str = "happy", confidence: float = 0.9) -> None:
        rest = (1.0 - confidence) / (NUM_CLASSES - 1)
        self.scores = np.full(NUM_CLASSES, rest, np.float32)
        self.scores[EMOTIONS.index(emotion)] = confidence
        self.calls = 0

    def classify_batch(self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False) -> npt.NDArray[np.float32]:
        self.calls += 1
        return np.tile(self.scores, (len(gray_faces), 1))


class BrokenClassifier:
    def classify_batch(self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False) -> npt.NDArray[np.float32]:
        raise RuntimeError("the model exploded")


class BrightSquareDetector:
    """Finds the white square; records the shapes it was shown."""

    def __init__(self, preset: DetectionPreset | None = None) -> None:
        self.preset = preset
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        self.shapes.append(image.shape)
        gray = image if image.ndim == 2 else image.min(axis=2)
        ys, xs = np.nonzero(gray > 200)  # white, also after lossy video compression
        if len(xs) == 0:
            return []
        box = Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        return [Detection(box, 0.99)]


def square_frame(box: Box = SQUARE, *, background: int = 100) -> npt.NDArray[np.uint8]:
    frame = np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), background, np.uint8)
    frame[box.y : box.y + box.height, box.x : box.x + box.width] = 255
    return frame


def write_served_model(path: Path, content: bytes) -> Path:
    """Stand-in files for a model and its LiteRT copy, with a record whose hashes match them: enough for
    everything that copies or checks served models without running them (promotion, the runs table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.with_suffix(".tflite").write_bytes(b"litert copy of " + content)
    write_serving_record(
        path,
        ServingRecord(
            keras_sha256=hashlib.sha256(content).hexdigest(),
            tflite_sha256=hashlib.sha256(b"litert copy of " + content).hexdigest(),
            max_difference=0.0,
            tolerance=1e-4,
            check_faces=1,
        ),
    )
    return path
