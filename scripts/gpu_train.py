"""Train the quality and fast models on a lent GPU machine (Keras 3 on JAX), then bring them home as runs.

The GPU machine has JAX, numpy and OpenCV but no TensorFlow and no Keras, and it is reached with at most
64 MiB of carried files and results of at most 16 MiB each. So:

    python scripts/gpu_train.py pack --data ../shared/fer2013     # here: faces + wheels under .gpu/
    # prints the `device` command to run (at most 9 minutes, results under $OUT)
    python scripts/gpu_train.py remote --faces .gpu/faces.npy.xz --out $OUT   # there (the printed command)
    python scripts/gpu_train.py unpack FOLDER --data ../shared/fer2013        # here: run folders, exported,
                                                                              # calibrated, evaluated

``pack`` holds out the validation faces exactly as the trainer does (a stratified 10 % of ``train/``, seed
42) and carries only the rest: the test split never leaves this machine and is read once, by ``unpack``'s
final evaluation. ``remote`` trains, within a wall-time budget, the quality model (``vgg40``: a VGG trunk on
random 40x40 crops with mixup and random erasing) and then the fast model (``fernet40`` at width 24),
distilled online from the quality model; each schedule is one warm-up and one cosine decay fitted into its
share of the budget after three epochs, and the model kept is the last epoch's (a rule fixed in advance:
validation is only watched). ``unpack`` makes normal run folders of them, which ``python -m training
export``/``evaluate`` and the Training page treat like any other: the served model wraps the trunk in its
test-time views (:mod:`training.views`), batch-norm statistics are re-estimated on clean training faces and
kept if validation accuracy rises, the temperature is fitted on validation, then the LiteRT copy is checked
and evaluated on test.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACK_DIR = ROOT / ".gpu"
FACES_FILE = PACK_DIR / "faces.npy.xz"
WHEELS_DIR = PACK_DIR / "wheels"
WHEELS = ("keras==3.15.1", "namex==0.1.0", "optree==0.20.0")
VAL_FRACTION = 0.1
SEED = 42
QUALITY = {"arch": "vgg40", "views": "crops", "batch_size": 256, "lr": 3e-3, "mixup": 0.2, "erasing": 0.25}
FAST = {
    "arch": "fernet40",
    "width": 24,
    "views": "center",
    "batch_size": 256,
    "lr": 3e-3,
    "mixup": 0.0,
    "erasing": 0.25,
}
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
DISTILL_TEMPERATURE = 4.0
DISTILL_LABEL_WEIGHT = 0.3


# ---------------------------------------------------------------- here: pack
def pack(data: str) -> None:
    from fer_core.data import load_dataset
    from training.trainer import split_for_training

    dataset = load_dataset(data)
    train, val = split_for_training(dataset, VAL_FRACTION, SEED)
    PACK_DIR.mkdir(exist_ok=True)
    with lzma.open(FACES_FILE, "wb", preset=9 | lzma.PRESET_EXTREME) as handle:
        for array in (train.images, train.labels.astype(np.uint8), val.images, val.labels.astype(np.uint8)):
            np.save(handle, array)
    print(
        f"{FACES_FILE.relative_to(ROOT)}: {len(train)} training + {len(val)} validation faces, "
        f"{FACES_FILE.stat().st_size / 1e6:.1f} MB"
    )
    WHEELS_DIR.mkdir(exist_ok=True)
    platforms = [
        f"--platform={tag}" for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(WHEELS_DIR),
            *WHEELS,
        ],
        check=True,
    )
    size = sum(path.stat().st_size for path in PACK_DIR.rglob("*") if path.is_file())
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tracked = sum(
        (ROOT / name).stat().st_size for name in listed.decode().split("\0") if name and (ROOT / name).is_file()
    )
    total = (size + tracked) / 2**20
    print(f".gpu/ holds {size / 2**20:.1f} MiB and the tracked files {tracked / 2**20:.1f} MiB: {total:.1f} MiB travel")
    if total > 63:
        print("warning: over the 64 MiB a device call carries: move models/ out of the tree for the call")
    print("Run on the device (carry .gpu), at most 9 minutes:")
    print(device_command())


def device_command(budget_s: int = 470) -> str:
    return (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
        ".gpu/wheels/*.whl && export PYTHONPATH=/tmp/site:. || exit 1; "
        # JAX when it sees the GPU, else PyTorch (Keras runs on either)
        "python3 -c 'import jax, sys; sys.exit(all(d.platform != \"gpu\" for d in jax.devices()))' "
        "&& export KERAS_BACKEND=jax || export KERAS_BACKEND=torch; nvidia-smi -L; "
        f"PYTHONUNBUFFERED=1 python3 scripts/gpu_train.py remote --faces {shlex.quote(str(FACES_FILE.relative_to(ROOT)))} "
        f'--out "$OUT" --budget {budget_s} 2>&1 | tee "$OUT/remote.log"'
    )


# ---------------------------------------------------------------- there: remote
def read_faces(path: Path) -> tuple[np.ndarray, ...]:
    with lzma.open(path, "rb") as handle:
        return tuple(np.load(handle) for _ in range(4))


def remote(
    faces: Path,
    out: Path,
    budget_s: float,
    max_faces: int = 0,
    max_epochs: int = 400,
    phases: str = "quality,fast",
    seed: int = SEED,
) -> None:
    import keras

    from training.neutral import (
        build_augmenter,
        build_distillation_model,
        build_training_model,
        class_weight_vector,
        distillation_loss,
        face_batches,
        student_accuracy,
        time_budget_callback,
    )

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    train_images, train_labels, val_images, val_labels = read_faces(faces)
    train_labels, val_labels = train_labels.astype(np.int64), val_labels.astype(np.int64)
    if max_faces:
        train_images, train_labels = train_images[:max_faces], train_labels[:max_faces]
    print(
        f"backend {keras.backend.backend()}, devices {_devices()}, {len(train_images)} train / {len(val_images)} val faces"
    )
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if _on_gpu() else "float32")
    weights = class_weight_vector(train_labels)
    val_x = val_images.astype(np.float32)[..., None]
    val_y = np.eye(7, dtype=np.float32)[val_labels]
    report: dict[str, Any] = {"versions": _versions(), "devices": _devices(), "phases": {}}
    phase_budgets = {"quality": 0.6 * budget_s, "fast": 0.4 * budget_s} if "fast" in phases else {"quality": budget_s}

    def run_phase(name: str, recipe: dict[str, Any], model: Any, loss: Any, metrics: list[Any], backbone: Any) -> None:
        phase_start = time.monotonic()
        remaining = budget_s - (phase_start - started)
        budget = min(phase_budgets[name], remaining - 15)
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=recipe["lr"], weight_decay=WEIGHT_DECAY),
            loss=loss,
            metrics=metrics,
            jit_compile=keras.backend.backend() == "jax",
        )
        batches = face_batches(
            train_images,
            train_labels,
            batch_size=recipe["batch_size"],
            seed=seed,
            label_smoothing=LABEL_SMOOTHING,
            class_weights=weights,
            mixup=recipe["mixup"],
        )
        timer = time_budget_callback(budget, recipe["lr"], max_epochs)
        history = model.fit(batches, validation_data=(val_x, val_y), epochs=max_epochs, callbacks=[timer], verbose=2)
        path = out / f"{recipe['arch']}-seed{seed}.keras"
        backbone.save(path)
        report["phases"][name] = {
            **recipe,
            "epochs": len(history.history["loss"]),
            "planned_epochs": timer.planned,
            "seconds": round(time.monotonic() - phase_start, 1),
            "median_epoch_s": float(np.median(timer.epoch_times[1:] or [0])),
            "history": {key: [float(value) for value in values] for key, values in history.history.items()},
            "file": path.name,
            "train_faces": len(train_images),
        }
        (out / "report.json").write_text(json.dumps(report, indent=1))

    from fer_core.models import build_model

    quality = build_model(QUALITY["arch"])
    augmenter = build_augmenter(seed, erasing=QUALITY["erasing"])
    run_phase(
        "quality",
        QUALITY,
        build_training_model(quality, augmenter),
        keras.losses.CategoricalCrossentropy(),
        [keras.metrics.CategoricalAccuracy(name="accuracy")],
        quality,
    )
    if "fast" not in phases:
        return
    fast = build_model(FAST["arch"], width=FAST["width"])
    distiller = build_distillation_model(fast, [quality], build_augmenter(seed + 10, erasing=FAST["erasing"]))
    run_phase(
        "fast",
        {
            **FAST,
            "distilled_from": QUALITY["arch"],
            "temperature": DISTILL_TEMPERATURE,
            "label_weight": DISTILL_LABEL_WEIGHT,
        },
        distiller,
        distillation_loss(DISTILL_TEMPERATURE, DISTILL_LABEL_WEIGHT),
        [student_accuracy],
        fast,
    )
    report["total_seconds"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"done in {report['total_seconds']} s")


def _on_gpu() -> bool:
    return any("cuda" in device.lower() or "gpu" in device.lower() for device in _devices())


def _devices() -> list[str]:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return [f"cuda:{index} {torch.cuda.get_device_name(index)}" for index in range(torch.cuda.device_count())] or [
            "cpu"
        ]
    try:
        import jax

        return [f"{device.platform}:{device.id}" for device in jax.devices()]
    except ImportError:
        return []


def _versions() -> dict[str, str]:
    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    try:
        import jax

        versions["jax"] = jax.__version__
    except ImportError:
        pass
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack_parser = commands.add_parser("pack", help="pack the training faces and the wheels under .gpu/")
    pack_parser.add_argument("--data", required=True, help="the FER2013 folder (only train/ is packed)")
    remote_parser = commands.add_parser("remote", help="train on the GPU machine (Keras on JAX)")
    remote_parser.add_argument("--faces", type=Path, default=FACES_FILE)
    remote_parser.add_argument("--out", type=Path, required=True)
    remote_parser.add_argument("--budget", type=float, default=470, help="seconds of training in all")
    remote_parser.add_argument("--max-faces", type=int, default=0, help="train on the first N faces only (checks)")
    remote_parser.add_argument("--max-epochs", type=int, default=400)
    remote_parser.add_argument("--phases", default="quality,fast", help="quality, or quality,fast (distilled)")
    remote_parser.add_argument("--seed", type=int, default=SEED)
    unpack_parser = commands.add_parser("unpack", help="make run folders of what came back")
    unpack_parser.add_argument("folders", type=Path, nargs="+", help="the folders the device calls brought back")
    unpack_parser.add_argument("--data", required=True)
    unpack_parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.data)
    elif args.command == "remote":
        remote(args.faces, args.out, args.budget, args.max_faces, args.max_epochs, args.phases, args.seed)
    else:
        from training.gpu_runs import unpack_gpu_results

        for run_dir in unpack_gpu_results(args.folders, args.data, args.run_dir):
            print(f"run: {run_dir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
