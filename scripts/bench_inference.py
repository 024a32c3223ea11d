"""Inference timings (a benchmark, not a test): per-face classification at batch 1 and 8 for each way
of running the model (the served LiteRT copy against TensorFlow's), and face detection on a 640x480
frame with a textured background for each detector and smallest face.

    python scripts/bench_inference.py                      # the promoted model, else the shipped one
    python scripts/bench_inference.py --model runs/X/model.keras --runs 500

Every variant is timed in the same process, alternating, so background load hits them alike. Medians
over many runs; the table also gives the 90th percentile. Results agree with the Keras model to the
printed maximum difference. ``EmotionClassifier`` is what the app serves (LiteRT, one thread, the
calibration temperature applied); "+ flip TTA" classifies each face and its mirror image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fer_core.detect import PHOTO_PRESET, make_detector  # noqa: E402
from fer_core.inference import EmotionClassifier, load_classifier  # noqa: E402
from fer_core.model_store import resolve_model_path  # noqa: E402
from fer_core.preprocess import FACE_SIZE  # noqa: E402
from fer_core.serving import checked_lite_model  # noqa: E402
from training.model_files import load_keras_model  # noqa: E402

Forward = Callable[[np.ndarray], np.ndarray]


def time_calls(function: Callable[[], Any], runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def summary_ms(times: list[float], per: int = 1) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1e3 / per, ordered[int(len(ordered) * 0.9)] * 1e3 / per


def classification_variants(model: Any, flatbuffer: bytes, threads: int) -> dict[str, Forward]:
    import tensorflow as tf

    spec = [tf.TensorSpec([None, FACE_SIZE, FACE_SIZE, 1], tf.float32)]
    graph = tf.function(lambda faces: model(faces, training=False), input_signature=spec, reduce_retracing=True)
    variants: dict[str, Forward] = {
        "tf.function (baseline)": lambda faces: np.asarray(graph(faces)),
        "keras model(faces)": lambda faces: np.asarray(model(faces, training=False)),
        "LiteRT, 1 thread": EmotionClassifier(flatbuffer, num_threads=1).forward,
    }
    if threads > 1:
        variants[f"LiteRT, {threads} threads"] = EmotionClassifier(flatbuffer, num_threads=threads).forward
    return variants


def multiply_accumulates(model: Any) -> int:
    """Multiply-accumulates per face in the convolution and dense layers (the bulk of the work)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_height, kernel_width, channels, _ = layer.kernel.shape
            total += height * width * filters * kernel_height * kernel_width * channels
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return int(total)


def textured_frame(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    blotches = cv2.resize(rng.uniform(60, 200, (height // 40 + 2, width // 40 + 2, 3)), (width, height))
    grain = rng.normal(0, 12, (height, width, 3))
    stripes = 15 * np.sin(np.arange(width) / 7.0)[None, :, None]
    return np.clip(blotches + grain + stripes, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a .keras model or run folder (default: promoted, else shipped)")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per measurement (default 300)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="TFLite threads to compare")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    model_path = resolve_model_path(args.model)
    classifier = load_classifier(model_path)
    model = load_keras_model(model_path)
    macs = multiply_accumulates(model)
    print(
        f"model: {model_path} ({model.name}, {model.count_params():,} parameters, "
        f"{macs / 1e6:.0f} M multiply-accumulates per face; served copy {model_path.with_suffix('.tflite').name}, "
        f"{model_path.with_suffix('.tflite').stat().st_size / 2**20:.1f} MB)"
    )
    print(f"CPU cores: {os.cpu_count()}, load average: {', '.join(f'{v:.1f}' for v in os.getloadavg())}\n")

    rng = np.random.default_rng(0)
    batches = {size: rng.integers(0, 256, (size, FACE_SIZE, FACE_SIZE, 1)).astype(np.float32) for size in (1, 8)}
    variants = classification_variants(model, checked_lite_model(model_path)[0], args.threads)
    raw = load_classifier(model_path)
    raw.temperature = 1.0  # the same probabilities as the others, to compare
    variants["EmotionClassifier (served)"] = lambda faces: raw.classify_batch(faces[..., 0])
    variants["EmotionClassifier + flip TTA"] = lambda faces: classifier.classify_batch(faces[..., 0], tta=True)
    reference = {size: np.asarray(variants["tf.function (baseline)"](faces)) for size, faces in batches.items()}
    times: dict[tuple[str, int], list[float]] = {(name, size): [] for name in variants for size in batches}
    rounds = 5  # interleave the variants so background load is shared fairly
    for _ in range(rounds):
        for name, forward in variants.items():
            for size, faces in batches.items():
                times[(name, size)] += time_calls(partial(forward, faces), args.runs // rounds, warmup=3)

    print("per-face classification, ms (median / p90)")
    print(f"{'variant':34s} {'batch 1':>16s} {'batch 8 (per face)':>20s} {'max |diff|':>11s}")
    for name, forward in variants.items():
        if "TTA" in name:  # other numbers by design: the mean with the mirrored face
            difference = float("nan")
        else:
            difference = max(float(np.abs(forward(faces) - reference[size]).max()) for size, faces in batches.items())
        one = summary_ms(times[(name, 1)])
        eight = summary_ms(times[(name, 8)], per=8)
        print(f"{name:34s} {one[0]:7.2f} / {one[1]:6.2f} {eight[0]:11.2f} / {eight[1]:6.2f} {difference:11.1e}")

    frame = textured_frame()
    print("\nface detection on a 640x480 textured frame, ms (median / p90)")
    for detector_name in ("yunet", "haar"):
        for min_face in (40, 48, 80):
            preset = PHOTO_PRESET.with_options(detector=detector_name, min_face_size=min_face)
            scans = {"full-size scan": preset}
            if detector_name == "yunet":
                scans["half-size scan"] = replace(preset, scan_face=min_face // 2)  # as VIDEO_PRESET does
            for label, chosen in scans.items():
                detector = make_detector(chosen)
                median, p90 = summary_ms(time_calls(partial(detector.detect, frame), max(20, args.runs // 5)))
                print(f"  {detector_name:5s} {label:15s} min face {min_face:3d} px {median:9.1f} / {p90:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
