"""Benchmark: the photo path (detect + classify one 640x480 textured frame with one face) against the PyPI
`fer` library's pipeline, in one process, on the same frames.

    ours          fer_core.load_predictor().predict: PHOTO_PRESET (YuNet at full size, every face from
                  40 px), each face aligned by its landmarks and classified by LiteRT
    ours (video)  the same with VIDEO_PRESET (a half-size scan, faces from 48 px), as Live and Video run
    fer           fer.FER().detect_emotions with its defaults (fer_pipeline.py)

Each round times every frame for each pipeline (the order alternates between rounds). The ratios are
fer's time over ours, per round, on medians. Not a test: timings are noisy; compare ratios.

    python scripts/bench_photo.py --fer-dir /tmp/ferpkg/unpacked/fer/data     # or set FER_LIB_DIR
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

import numpy as np
import numpy.typing as npt
from fer_pipeline import DEFAULT_FER_DIR, FerPipeline, fer_dir_or_exit
from scenes import load_faces, matches, paste, textured_background

from fer_core.detect import PHOTO_PRESET, VIDEO_PRESET, Box
from fer_core.inference import load_classifier, load_predictor
from fer_core.settings import fer2013_location

FACE_SIZE = 170


def frames_with_a_face(fer2013: Path, count: int) -> list[tuple[npt.NDArray[np.uint8], Box]]:
    faces = load_faces(fer2013, "test", per_class=max(1, count // 7 + 1), seed=3)[:count]
    rng = np.random.default_rng(3)
    frames = []
    for gray_face, _ in faces:
        frame = textured_background(rng)
        box = Box(int(rng.integers(0, 640 - FACE_SIZE)), int(rng.integers(0, 480 - FACE_SIZE)), FACE_SIZE, FACE_SIZE)
        paste(frame, gray_face, box)
        frames.append((frame, box))
    return frames


def time_round(
    process: Callable[[npt.NDArray[np.uint8]], list[Box]], frames: Sequence[tuple[npt.NDArray[np.uint8], Box]]
) -> tuple[list[float], int]:
    times, found = [], 0
    for frame, box in frames:
        work = frame.copy()
        start = time.perf_counter()
        boxes = process(work)
        times.append((time.perf_counter() - start) * 1000)
        found += any(matches(found_box, box) for found_box in boxes)
    return times, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer-dir", type=Path, default=DEFAULT_FER_DIR, help="fer's files (see fer_pipeline.py)")
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 folder (its test/ faces)")
    parser.add_argument("--model", type=Path, help="our model (default: promoted, else shipped)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fer = FerPipeline(fer_dir_or_exit(args.fer_dir))
    if args.data is None or not (args.data / "test").is_dir():
        parser.error("FER2013 (Kaggle folder layout, with test/) not found: pass --data or set FER2013_DIR")
    classifier = load_classifier(args.model)
    photo = load_predictor(args.model, preset=PHOTO_PRESET)
    video = load_predictor(args.model, preset=VIDEO_PRESET)
    pipelines: dict[str, Callable[[npt.NDArray[np.uint8]], list[Box]]] = {
        "ours": lambda frame: [p.box for p in photo.predict(frame)],
        "ours (video preset)": lambda frame: [p.box for p in video.predict(frame)],
        "fer": lambda frame: [box for box, _ in fer.detect_emotions(frame)],
    }
    frames = frames_with_a_face(args.data, args.frames)
    for process in pipelines.values():
        time_round(process, frames[:5])  # warm-up
    medians: dict[str, list[float]] = {name: [] for name in pipelines}
    all_times: dict[str, list[float]] = {name: [] for name in pipelines}
    found: dict[str, int] = dict.fromkeys(pipelines, 0)
    names = list(pipelines)
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            times, hits = time_round(pipelines[name], frames)
            medians[name].append(statistics.median(times))
            all_times[name] += times
            found[name] += hits
    print(f"model: {classifier.source} (LiteRT, temperature {classifier.temperature:.3f})")
    print(f"{len(frames)} frames of 640x480, one {FACE_SIZE}px FER2013 test face each; {args.rounds} rounds\n")
    print("| pipeline | median ms/photo | mean ms/photo | face found |")
    print("|---|---:|---:|---:|")
    for name in names:
        print(
            f"| {name} | {statistics.median(all_times[name]):.1f} | {statistics.fmean(all_times[name]):.1f} | "
            f"{found[name]}/{len(frames) * args.rounds} |"
        )
    print()
    for name in names[:2]:
        ratios = [theirs / mine for theirs, mine in zip(medians["fer"], medians[name], strict=True)]
        print(f"fer / {name}: {statistics.median(ratios):.2f}x (per round: {', '.join(f'{r:.2f}x' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
