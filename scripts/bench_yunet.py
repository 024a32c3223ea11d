"""Benchmark: YuNet through ONNX Runtime (fer_core.yunet, what FER Studio runs) against OpenCV's own
``cv2.FaceDetectorYN``, on the same images, one thread each, in one process.

The images are the scans the presets make: a 640x480 photo at full size (PHOTO_PRESET) and a 640x480
video frame at half size (VIDEO_PRESET: 320x240), each a textured scene with two FER2013 faces pasted in
(or a textured scene alone without FER2013). Reported: the median milliseconds of one ``detect`` call
over ``--repeats`` calls, the ratio, and whether both found the same faces.

    python scripts/bench_yunet.py                 # the README's numbers
    python scripts/bench_yunet.py --repeats 20    # a quick look

Not a test (timings on a shared machine are noisy; compare the ratio): tests/test_detect.py checks that
both find the same faces.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import numpy as np
from scenes import load_faces, paste, textured_background

from fer_core.detect import YUNET_PATH, Box
from fer_core.settings import fer2013_location
from fer_core.yunet import YuNetNetwork

SCORE, NMS = 0.6, 0.3


def scene(width: int, height: int, fer2013: Path | None) -> np.ndarray:
    rng = np.random.default_rng(7)
    frame = textured_background(rng)
    if fer2013 is not None and (fer2013 / "test").is_dir():
        for index, (face, _label) in enumerate(load_faces(fer2013, "test", per_class=1, seed=7)[:2]):
            paste(frame, face, Box(60 + 300 * index, 120, 180, 180))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def median_ms(call: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 (Kaggle layout)")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    ours = YuNetNetwork(YUNET_PATH)
    print("| scan | OpenCV ms | ONNX Runtime ms | speed-up | faces (OpenCV / ours) |\n|---|---|---|---|---|")
    for name, (width, height) in {"photo 640x480": (640, 480), "video frame, half size": (320, 240)}.items():
        image = scene(width, height, args.data)
        reference = cv2.FaceDetectorYN.create(str(YUNET_PATH), "", (width, height), SCORE, NMS, 5000)
        opencv_ms = median_ms(lambda: reference.detect(image), args.repeats)  # noqa: B023 (called in the loop)
        ours_ms = median_ms(lambda: ours.detect(image, score_threshold=SCORE, nms_threshold=NMS), args.repeats)  # noqa: B023
        rows = reference.detect(image)[1]
        found = (0 if rows is None else len(rows), len(ours.detect(image, score_threshold=SCORE, nms_threshold=NMS)))
        print(f"| {name} | {opencv_ms:.2f} | {ours_ms:.2f} | {opencv_ms / ours_ms:.2f}x | {found[0]} / {found[1]} |")


if __name__ == "__main__":
    main()
