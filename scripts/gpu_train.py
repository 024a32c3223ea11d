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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACK_DIR = ROOT / ".gpu"
FACES_FILE = PACK_DIR / "faces.npy.xz"
TEACHERS_FILE = PACK_DIR / "teachers.npz"
WHEELS_DIR = PACK_DIR / "wheels"
WHEELS = ("keras==3.15.1", "namex==0.1.0", "optree==0.20.0")
VAL_FRACTION = 0.1
SEED = 42
QUALITY: dict[str, Any] = {
    "arch": "vgg40",
    "views": "crops",
    "batch_size": 256,
    "lr": 3e-3,
    "mixup": 0.2,
    "erasing": 0.25,
}
FAST: dict[str, Any] = {
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
def pack(data: str, val_faces: int = 0, teachers: Path | None = None) -> None:
    from fer_core.data import load_dataset
    from training.splits import split_for_training

    dataset = load_dataset(data)
    train, val = split_for_training(dataset, VAL_FRACTION, SEED)
    val_images, val_labels = val.images, val.labels
    if val_faces and val_faces < len(val):  # the validation faces only watch: a subset leaves room
        keep = np.sort(np.random.default_rng(SEED).choice(len(val), val_faces, replace=False))
        val_images, val_labels = val_images[keep], val_labels[keep]
    PACK_DIR.mkdir(exist_ok=True)
    with lzma.open(FACES_FILE, "wb", preset=9 | lzma.PRESET_EXTREME) as handle:
        for array in (train.images, train.labels.astype(np.uint8), val_images, val_labels.astype(np.uint8)):
            np.save(handle, array)
    if teachers is not None:
        pack_teachers(teachers)
    print(
        f"{FACES_FILE.relative_to(ROOT)}: {len(train)} training + {len(val)} validation faces, "
        f"{FACES_FILE.stat().st_size / 1e6:.1f} MB"
    )
    if val_faces:
        print(f"(of the {len(val)} validation faces, {len(val_images)} travel, to watch training)")
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
    print(device_command() if teachers is None else parallel_command(PARALLEL_JOBS))


def pack_teachers(model_path: Path) -> None:
    """The trunks of a served ensemble (``models/fer_default.keras``: views around one or more trunks) as
    float16 weight arrays in ``.gpu/teachers.npz``, for distillation there: half the bytes of the
    ``.keras`` file, and the trunks are rebuilt from their architecture on the other side."""
    from training.model_files import load_keras_model

    served = load_keras_model(model_path)
    trunks = [layer for layer in served.layers if hasattr(layer, "layers")] or [served]
    arrays: dict[str, np.ndarray] = {}
    names = []
    for index, trunk in enumerate(trunks):
        width = next(layer.filters for layer in trunk.layers if hasattr(layer, "filters"))
        names.append(f"{trunk.name}:{width}")  # vgg40_seed42:48
        for number, weight in enumerate(trunk.get_weights()):
            arrays[f"t{index}_{number:03d}"] = weight.astype(np.float16)
    arrays["members"] = np.array(names)
    np.savez(TEACHERS_FILE, **arrays)
    print(f"{TEACHERS_FILE.relative_to(ROOT)}: {', '.join(names)}, {TEACHERS_FILE.stat().st_size / 2**20:.1f} MiB")


def load_teachers(path: Path) -> tuple[list[Any], list[str]]:
    """The trunks :func:`pack_teachers` saved, rebuilt (float32 weights) and frozen, and their names."""
    from training.architectures import build_model

    with np.load(path) as saved:
        teachers, names = [], []
        for index, member in enumerate(saved["members"]):
            name, width = str(member).split(":")
            names.append(name)
            trunk = build_model(name.split("_seed")[0], width=int(width))
            count = len(trunk.get_weights())
            trunk.set_weights([saved[f"t{index}_{number:03d}"].astype(np.float32) for number in range(count)])
            trunk.trainable = False
            teachers.append(trunk)
    return teachers, names


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


# One GPU runs several small trainings at once (each is bound by dispatch, not by the chip): each job is
# (folder under $OUT, the remote's arguments). Two more quality trunks and two longer distillations of the
# fast model from the shipped quality ensemble.
PARALLEL_JOBS = (
    ("q3", "--phases quality --seed 3"),
    ("q11", "--phases quality --seed 11"),
    ("f42", "--phases distill --seed 42"),
    ("f5", "--phases distill --seed 5"),
)


def parallel_command(jobs: Sequence[tuple[str, str]], budget_s: int = 500) -> str:
    """The device command for ``jobs`` side by side on one GPU, each with its share of the GPU's memory;
    the models come back in one folder per job, the reports and logs in one ``meta.tgz`` (a call brings
    back at most 8 files)."""
    fraction = round(0.9 / len(jobs), 2)
    faces = shlex.quote(str(FACES_FILE.relative_to(ROOT)))
    teachers = shlex.quote(str(TEACHERS_FILE.relative_to(ROOT)))
    launches = " ".join(
        f'mkdir -p "$OUT/{name}"; python3 scripts/gpu_train.py remote --faces {faces} --teachers {teachers} '
        f'--out "$OUT/{name}" --budget {budget_s} {arguments} > "$OUT/{name}/remote.log" 2>&1 &'
        for name, arguments in jobs
    )
    return (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
        ".gpu/wheels/*.whl && export PYTHONPATH=/tmp/site:. || exit 1; "
        f"export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION={fraction}; nvidia-smi -L; "
        f'{launches} wait; tail -n 4 "$OUT"/*/remote.log; '
        'cd "$OUT" && tar czf meta.tgz */report.json */remote.log && rm -f */report.json */remote.log; ls -la "$OUT"/*'
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
    teachers: Path | None = None,
) -> None:
    """Train on the GPU machine. ``phases``: ``quality`` (a ``vgg40`` trunk), ``quality,fast`` (then the
    fast model distilled online from it) or ``distill`` (the fast model alone, distilled from the frozen
    trunks in ``teachers``, as :func:`pack_teachers` wrote them)."""
    import keras

    from training.neutral import (
        build_augmenter,
        build_training_model,
        class_weight_vector,
        face_batches,
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
    if phases == "distill":
        phase_budgets = {"fast": budget_s}

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

    from training.architectures import build_model

    if phases == "distill":
        if teachers is None:
            raise SystemExit("--phases distill needs --teachers (pack --teachers MODEL writes them)")
        frozen, names = load_teachers(teachers)
        centre = val_x[:, 4:44, 4:44]  # the 40x40 centre crop the trunks take
        for trunk, name in zip(frozen, names, strict=True):  # a wrong weight order would show here
            agreement = float(np.mean(np.argmax(trunk.predict(centre, verbose=0), axis=1) == val_labels))
            print(f"teacher {name}: validation accuracy {agreement:.4f} (centre crop)")
        distill(run_phase, frozen, names, seed)
        report["total_seconds"] = round(time.monotonic() - started, 1)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        print(f"done in {report['total_seconds']} s")
        return
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
    distill(run_phase, [quality], [QUALITY["arch"]], seed)
    report["total_seconds"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"done in {report['total_seconds']} s")


def distill(run_phase: Any, teachers: list[Any], teacher_names: list[str], seed: int) -> None:
    """The fast model, distilled online from ``teachers`` (both see the same augmented faces)."""
    from training.architectures import build_model
    from training.neutral import build_augmenter, build_distillation_model, distillation_loss, student_accuracy

    fast = build_model(FAST["arch"], width=FAST["width"])
    distiller = build_distillation_model(fast, teachers, build_augmenter(seed + 10, erasing=FAST["erasing"]))
    run_phase(
        "fast",
        {
            **FAST,
            "distilled_from": " + ".join(teacher_names),
            "temperature": DISTILL_TEMPERATURE,
            "label_weight": DISTILL_LABEL_WEIGHT,
        },
        distiller,
        distillation_loss(DISTILL_TEMPERATURE, DISTILL_LABEL_WEIGHT),
        [student_accuracy()],
        fast,
    )


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
    pack_parser.add_argument(
        "--val-faces", type=int, default=0, help="carry only N of the validation faces (they only watch training)"
    )
    pack_parser.add_argument(
        "--teachers", type=Path, default=None, help="a served model whose trunks the fast model is distilled from"
    )
    remote_parser = commands.add_parser("remote", help="train on the GPU machine (Keras on JAX)")
    remote_parser.add_argument("--faces", type=Path, default=FACES_FILE)
    remote_parser.add_argument("--out", type=Path, required=True)
    remote_parser.add_argument("--budget", type=float, default=470, help="seconds of training in all")
    remote_parser.add_argument("--max-faces", type=int, default=0, help="train on the first N faces only (checks)")
    remote_parser.add_argument("--max-epochs", type=int, default=400)
    remote_parser.add_argument(
        "--phases", default="quality,fast", help="quality, quality,fast (distilled from it) or distill (--teachers)"
    )
    remote_parser.add_argument("--teachers", type=Path, default=None, help="the teachers.npz that pack wrote")
    remote_parser.add_argument("--seed", type=int, default=SEED)
    unpack_parser = commands.add_parser("unpack", help="make run folders of what came back")
    unpack_parser.add_argument("folders", type=Path, nargs="+", help="the folders the device calls brought back")
    unpack_parser.add_argument("--data", required=True)
    unpack_parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.val_faces, args.teachers)
    elif args.command == "remote":
        remote(
            args.faces, args.out, args.budget, args.max_faces, args.max_epochs, args.phases, args.seed, args.teachers
        )
    else:
        from training.gpu_runs import unpack_gpu_results

        for run_dir in unpack_gpu_results(args.folders, args.data, args.run_dir):
            print(f"run: {run_dir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
