"""Training throughput: images per second for ``seed`` and ``fernet`` on the same in-memory faces.

    python scripts/bench_training.py             # a proper measurement (a few minutes on a CPU)
    python scripts/bench_training.py --quick     # a smoke run (well under a minute)

Each architecture is built and compiled exactly as the trainer does (optimizer, loss, augmentation,
class weights) and measured under the same precision policies: float32, and the one ``--precision
auto`` picks on this machine. After warm-up steps, several windows of training steps are timed and
the median images/second reported, with one FER2013 training epoch extrapolated from it. Other
processes using the CPU (a training in the background) make the numbers lower: the load is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FER2013_TRAIN_IMAGES = 28_709  # the Kaggle train split; the trainer holds out val_fraction of it


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["seed", "fernet"], help="architectures (default: seed fernet)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    parser.add_argument("--window-steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny windows: checks that it runs, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.warmup_steps, args.windows, args.window_steps = 2, 2, 3
    return args


def measure(arch: str, precision: str, args: argparse.Namespace, images: Any, labels: Any) -> list[float]:
    """Images/second of each timed window, for one architecture under one precision policy."""
    import keras

    from training.architectures import build_model
    from training.config import TrainConfig
    from training.pipeline import class_weight_vector, make_dataset
    from training.trainer import _optimizer

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    config = TrainConfig(arch=arch, batch_size=args.batch_size)
    total_steps = args.warmup_steps + args.windows * args.window_steps
    data = make_dataset(
        images,
        labels,
        batch_size=args.batch_size,
        training=True,
        augment=config.augment,
        seed=0,
        sample_weights=class_weight_vector(labels)[labels],
    ).repeat()
    model = build_model(arch)
    model.compile(
        optimizer=_optimizer(config, total_steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    stamps: list[float] = []

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            stamps.append(time.perf_counter())

    model.fit(data, epochs=1, steps_per_epoch=total_steps, callbacks=[StepClock()], shuffle=False, verbose=0)
    rates = []
    for window in range(args.windows):
        start = args.warmup_steps - 1 + window * args.window_steps
        seconds = stamps[start + args.window_steps] - stamps[start]
        rates.append(args.window_steps * args.batch_size / seconds)
    return rates


def duration_text(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def main() -> int:
    args = parse_args()
    import tensorflow as tf

    from fer_core.datasets import resolve_dataset
    from training.config import TrainConfig
    from training.trainer import choose_precision

    train = resolve_dataset("demo").split("train")  # the same faces in memory for every model
    images, labels = train.images, train.labels
    policies = list(dict.fromkeys(["float32", choose_precision("auto")]))
    epoch_images = round(FER2013_TRAIN_IMAGES * (1 - TrainConfig().val_fraction))
    devices = ", ".join(device.name for device in tf.config.list_physical_devices()) or "?"
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"TensorFlow {tf.__version__} on {os.cpu_count()} CPU(s); devices: {devices}; load average {load}")
    print(
        f"batch {args.batch_size}, {args.warmup_steps} warm-up steps, median of {args.windows} windows of "
        f"{args.window_steps} steps; FER2013 epoch = {epoch_images:,} images"
        + ("  [--quick: not a measurement]" if args.quick else "")
    )
    print(f"\n{'arch':<8}{'precision':<16}{'images/s':>10}{'range':>18}{'FER2013 epoch':>16}")
    for precision in policies:
        for arch in args.archs:
            rates = measure(arch, precision, args, images, labels)
            median = statistics.median(rates)
            spread = f"{min(rates):.0f}-{max(rates):.0f}"
            print(f"{arch:<8}{precision:<16}{median:>10.1f}{spread:>18}{duration_text(epoch_images / median):>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
