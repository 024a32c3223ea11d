"""The trainer: one call trains one run into its own folder (see :mod:`training.runs`).

While it trains, the run folder always holds a consistent picture: history and status are
rewritten (atomically) after every epoch and every few seconds within one, checkpoints are
saved to a temporary file and moved into place. A stop request (the STOP flag file, SIGTERM or
SIGINT) ends the run after the current step; the best checkpoint is kept and ``resume`` goes
on from the last completed epoch.
"""

from __future__ import annotations

import errno
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.data import FaceDataset
from fer_core.datasets import describe_source, resolve_dataset
from fer_core.errors import DatasetError, ModelLoadError
from fer_core.labels import EMOTIONS
from fer_core.metrics import classification_report
from training import runs
from training.config import TrainConfig
from training.errors import StopRequested, TrainingDiverged, TrainingFailed
from training.model_files import check_finite_weights, check_keras_file, load_keras_model, save_model_atomic
from training.records import History

MISCLASSIFIED_COUNT = 48


@dataclass(frozen=True)
class TrainingData:
    """The faces a run trains and validates on, checked (see :func:`check_training_split`)."""

    dataset: FaceDataset
    train: FaceDataset
    val: FaceDataset


def split_for_training(dataset: FaceDataset, val_fraction: float, seed: int) -> tuple[FaceDataset, FaceDataset]:
    """Train and validation sets: the data's own ``val`` split if it has one, else a stratified
    ``val_fraction`` of train (see :func:`held_out_counts`). The test split is never touched here."""
    train = dataset.split("train")
    if "val" in dataset.split_names:
        return train, dataset.split("val")
    rng = np.random.default_rng(seed)
    counts = held_out_counts(train.labels, val_fraction)
    val_mask = np.zeros(len(train), dtype=bool)
    for label in np.unique(train.labels):
        members = np.flatnonzero(train.labels == label)
        val_mask[rng.choice(members, size=int(counts[label]), replace=False)] = True
    return train.subset(~val_mask), train.subset(val_mask)


def held_out_counts(train_labels: npt.NDArray[np.int64], val_fraction: float) -> npt.NDArray[np.int64]:
    """Faces of each class held out of train for validation: ``val_fraction`` of them, at least one,
    and none of a class with a single face (it is needed for training)."""
    members = np.bincount(train_labels, minlength=len(EMOTIONS))
    share = np.maximum(1, np.round(members * val_fraction)).astype(np.int64)
    return np.where(members > 1, share, 0)


def choose_precision(requested: str) -> str:
    """``auto``: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AVX512-BF16/AMX, else float32."""
    if requested != "auto":
        return requested
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return "mixed_float16"
    elif keras.backend.backend() == "jax":
        import jax

        if any(device.platform == "gpu" for device in jax.devices()):
            return "mixed_bfloat16"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def environment_versions() -> dict[str, str]:
    import importlib

    import keras

    backend = keras.backend.backend()
    return {
        "python": platform.python_version(),
        backend: str(getattr(importlib.import_module(backend), "__version__", "")),
        "keras": keras.__version__,
        "keras_backend": backend,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
    }


def elapsed_seconds(run_dir: Path) -> float:
    """Seconds this run has spent in a trainer, over all its sessions (a resumed run adds up)."""
    status = runs.Run(run_dir).status()
    session = time.time() - (status.session_started_at or time.time())
    return round((status.elapsed_before_s or 0.0) + session, 1)


def make_recorder(run_dir: Path, epochs: int, steps_per_epoch: int, history: History) -> Any:
    """The callback that writes the run's history and status as it trains (see training.callbacks)."""
    from training.callbacks import RunRecorder

    return RunRecorder(run_dir, epochs, steps_per_epoch, history)


def make_checkpointer(run_dir: Path, best_so_far: float | None, *, epochs: int = 0, keep_last: int = 0) -> Any:
    """The callback that saves last.keras, best.keras and snapshots atomically (see training.callbacks)."""
    from training.callbacks import AtomicCheckpoint

    return AtomicCheckpoint(run_dir, best_so_far, epochs=epochs, keep_last=keep_last)


def create_run(config: TrainConfig, command: str | None = None) -> Path:
    """Make the run folder with its config.json and a ``queued`` status. Returns its path."""
    run_dir = runs.new_run_dir(config.runs_path, config.arch)
    runs.write_json(
        run_dir / runs.CONFIG_FILE,
        {
            "settings": config.to_dict(),
            "learning_rate": config.learning_rate,
            "data_source": describe_source(config.data),
            "command": command or " ".join([Path(sys.executable).name, "-m", "training", *sys.argv[1:]]),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    runs.write_json(
        run_dir / runs.STATUS_FILE, {"state": "queued", "created_at": time.time(), **runs.process_identity(os.getpid())}
    )
    return run_dir


@contextmanager
def _stop_on_signals(run_dir: Path) -> Iterator[None]:
    """SIGTERM/SIGINT raise the STOP flag (the batch callback ends the run after the current step).
    Signal handlers can only be set from the main thread; elsewhere only the flag file works."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: Any) -> None:
        (run_dir / runs.STOP_FLAG).touch()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _restored_precision_policy() -> Iterator[None]:
    """Training sets Keras's global precision policy; put the caller's back afterwards."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def train(config: TrainConfig, run_dir: Path | None = None, *, resume: bool = False) -> Path:
    """Train into ``run_dir`` (a new folder under ``config.runs_path`` when None). Returns the folder.

    The run's status ends as ``finished``, ``stopped`` (a stop request: the best checkpoint is kept)
    or ``failed`` (with the error). A failure whose message says it all (the loss diverged, the disk
    is full) is raised as :class:`TrainingFailed`; any other is re-raised as it came.
    """
    run_dir = run_dir or create_run(config)
    status = runs.Run(run_dir).status()
    now = time.time()
    runs.update_status(
        run_dir,
        state="running",
        phase="starting",
        **runs.process_identity(os.getpid()),
        started_at=status.started_at or now,
        resumed_at=now if resume else None,
        session_started_at=now,
        elapsed_before_s=status.elapsed_s or 0.0,
        error=None,
        traceback=None,
        stop_reason=None,
        finished_at=None,
        diverged=None,
        resume_note=None,
    )
    try:
        with _stop_on_signals(run_dir), _restored_precision_policy():
            _train(config, run_dir, resume=resume)
    except BaseException as error:
        message, explained = failure_message(error, run_dir)
        _record_failure(run_dir, message, diverged=isinstance(error, TrainingDiverged))
        if explained:
            raise TrainingFailed(message) from None
        raise
    runs.update_status(run_dir, elapsed_s=elapsed_seconds(run_dir))
    return run_dir


DISK_FULL_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})


def failure_message(error: BaseException, run_dir: Path) -> tuple[str, bool]:
    """What a failed run's status says, and whether that says it all (no traceback is of use)."""
    if isinstance(error, TrainingDiverged):
        return str(error), True
    disk_error = _disk_full_cause(error)
    if disk_error is not None:
        folder = Path(disk_error.filename).parent if disk_error.filename else run_dir
        return (
            f"the disk is full: no space was left to write in {folder}. Free some space, then resume the run "
            f"(python -m training resume {run_dir})",
            True,
        )
    return f"{type(error).__name__}: {error}".strip()[:2000], False


def _disk_full_cause(error: BaseException) -> OSError | None:
    """The "no space left on device" error behind ``error`` (Keras may wrap the one it met), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRORS:
            return current
        current = current.__cause__ or current.__context__
    return None


def _record_failure(run_dir: Path, message: str, *, diverged: bool) -> None:
    """Mark the run failed; if even that cannot be written (a full disk), the status stays "running"
    and readers report the dead trainer as failed with the last error line of its log."""
    try:
        runs.update_status(
            run_dir,
            state="failed",
            phase=None,
            error=message,
            traceback=traceback.format_exc(),
            finished_at=time.time(),
            elapsed_s=elapsed_seconds(run_dir),
            diverged=diverged or None,
        )
    except OSError as error:
        print(f"could not record the failure in {run_dir}: {error}", file=sys.stderr)


class ResumePoint(NamedTuple):
    """Where a resumed run starts: the checkpoint to load (None: from scratch), the epochs it holds,
    the history cut back to them, and what to tell the user when it is not the last epoch's."""

    checkpoint: Path | None
    epoch: int
    history: History
    note: str | None = None


def _resume_point(run_dir: Path) -> ResumePoint:
    """The last epoch's checkpoint, with the history cut back to the epochs it holds (a crash between
    the history write and the checkpoint write leaves history one epoch ahead). When last.keras is
    unreadable (truncated, say), best.keras and its epoch, and a note that says so."""
    run = runs.Run(run_dir)
    last = run_dir / runs.LAST_CHECKPOINT
    if not last.exists():
        return ResumePoint(None, 0, History())
    history = run.history()
    info = run.checkpoint_info()
    try:
        check_keras_file(last)
    except ModelLoadError as last_problem:
        best = run_dir / runs.BEST_CHECKPOINT
        try:
            check_keras_file(best)
        except ModelLoadError as best_problem:
            raise ModelLoadError(
                f"cannot resume run {run_dir.name}: {last_problem}, and the best checkpoint cannot be used "
                f"either ({best_problem}). Start a new run (its settings can be copied from this one)"
            ) from None
        if not info.best_epoch:
            raise ModelLoadError(
                f"cannot resume run {run_dir.name}: {last_problem}, and {runs.CHECKPOINT_INFO} does not say "
                "which epoch best.keras holds. Start a new run"
            ) from None
        note = (
            f"{runs.LAST_CHECKPOINT} is unreadable ({last_problem}); resumed from {runs.BEST_CHECKPOINT}, "
            f"the best epoch ({info.best_epoch}), instead of epoch {info.epoch or len(history.epochs)}"
        )
        return ResumePoint(best, info.best_epoch, history.up_to(info.best_epoch), note)
    done = info.epoch or len(history.epochs)
    return ResumePoint(last, done, history.up_to(done))


def check_training_split(train_set: FaceDataset, val_set: FaceDataset) -> None:
    """Refuse faces a classifier cannot be trained and validated on, saying why (``DatasetError``)."""
    check_training_labels(train_set.labels, len(val_set))


def check_training_labels(train_labels: npt.NDArray[np.int64], val_size: int) -> None:
    """:func:`check_training_split` from the training labels and the validation size alone (the
    Training page checks a data set this way before it offers to start)."""
    if len(train_labels) == 0:
        raise DatasetError("the train split holds no faces")
    classes = np.unique(train_labels)
    if len(classes) < 2:
        raise DatasetError(
            f"every training face is {EMOTIONS[int(classes[0])]}: a classifier needs faces of at least two "
            "emotions to learn to tell them apart"
        )
    if val_size == 0:
        raise DatasetError(
            "no faces are left for validation: a face is only held out of an emotion with at least two "
            "training faces. Add faces, or give the data set a val/ split of its own"
        )


def load_training_data(config: TrainConfig) -> TrainingData:
    """The run's faces, split into train and validation, and checked: before a training starts."""
    dataset = resolve_dataset(config.data)
    train_set, val_set = split_for_training(dataset, config.val_fraction, config.seed)
    check_training_split(train_set, val_set)
    return TrainingData(dataset, train_set, val_set)


def _train(config: TrainConfig, run_dir: Path, *, resume: bool) -> None:
    import keras

    from fer_core.models import build_model
    from training.neutral import class_weight_vector

    if not uses_neutral_path(config):
        from training.pipeline import make_dataset

    keras.utils.set_random_seed(config.seed)
    precision = choose_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)

    if config.init_from and not resume:  # named before minutes of loading data
        check_initial_model(config.init_from)
    runs.update_status(run_dir, phase="loading data")
    data = load_training_data(config)  # checked: faces a classifier cannot learn from are refused here
    train_set, val_set = data.train, data.val
    neutral = uses_neutral_path(config)
    if neutral:  # numpy batches + Keras layers: any backend
        from training.neutral import face_batches

        train_data: Any = face_batches(
            train_set.images,
            train_set.labels,
            batch_size=config.batch_size,
            seed=config.seed,
            label_smoothing=config.label_smoothing,
            class_weights=class_weight_vector(train_set.labels) if config.class_weights else None,
            mixup=config.mixup,
        )
        val_data: Any = (
            val_set.images.astype(np.float32)[..., None],
            np.eye(len(EMOTIONS), dtype=np.float32)[val_set.labels],
        )
        steps_per_epoch = len(train_data)
        if config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    else:  # tf.data (the TensorFlow backend's default path)
        sample_weights = None
        if config.class_weights:
            sample_weights = class_weight_vector(train_set.labels)[train_set.labels]
        train_data = make_dataset(
            train_set.images,
            train_set.labels,
            batch_size=config.batch_size,
            training=True,
            augment=config.augment,
            seed=config.seed,
            sample_weights=sample_weights,
        )
        val_data = make_dataset(val_set.images, val_set.labels, batch_size=256, training=False)
        steps_per_epoch = max(1, len(train_set) // config.batch_size)
        if config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
            train_data = train_data.repeat()

    runs.update_status(run_dir, phase="building model")
    strategy = _strategy(config.strategy) if config.backend == "tensorflow" else _SingleDevice()
    start = _resume_point(run_dir) if resume else ResumePoint(None, 0, History())
    if start.note:
        print(start.note, flush=True)
    with strategy.scope():
        if start.checkpoint is not None:
            if neutral:
                from training.neutral import custom_objects

                custom_objects()  # the distillation loss and metric, registered before a checkpoint loads
            model = load_keras_model(start.checkpoint, compile=True)
        elif neutral:
            model, loss, metrics = _neutral_model(config, run_dir)
            model.compile(optimizer=_optimizer(config, steps_per_epoch), loss=loss, metrics=metrics)
        else:
            model = build_model(config.arch)
            if config.init_from:
                runs.update_status(run_dir, phase="loading initial weights")
                load_initial_weights(model, config.init_from)
            model.compile(
                optimizer=_optimizer(config, steps_per_epoch),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
    _write_summary(model, run_dir)
    runs.update_status(
        run_dir,
        phase="training",
        precision=precision,
        strategy=config.strategy,
        devices=strategy.num_replicas_in_sync,
        train_size=len(train_set),
        val_size=len(val_set),
        epoch=start.epoch,
        epochs=config.epochs,
        steps=steps_per_epoch,
        epochs_done=start.epoch,
        versions=environment_versions(),
        resume_note=start.note,
    )

    recorder = make_recorder(run_dir, config.epochs, steps_per_epoch, start.history)
    callbacks = [
        recorder,  # history first: a crash before the checkpoint write is cut back by _resume_point
        make_checkpointer(run_dir, start.history.best_val_accuracy, epochs=config.epochs, keep_last=config.keep_last),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience),
    ]
    stopped: str | None = None
    if start.epoch < config.epochs:
        try:
            model.fit(
                train_data.with_options(_data_options())
                if config.strategy == "mirrored" and not neutral
                else train_data,
                validation_data=val_data,
                epochs=config.epochs,
                initial_epoch=start.epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                shuffle=False,  # the tf.data pipeline shuffles
                verbose=2,
            )
        except StopRequested as stop:
            stopped = str(stop)
    if keras.backend.backend() != "tensorflow":
        # Converting to LiteRT needs TensorFlow: the finish steps run in a TensorFlow process.
        _finish_in_tensorflow(run_dir, stopped)
    elif stopped is not None:
        _export_stopped(run_dir, config, val_set)
    else:
        _finish(run_dir, data.dataset, config)
    (run_dir / runs.STOP_FLAG).unlink(missing_ok=True)
    if stopped is not None:
        runs.update_status(run_dir, state="stopped", phase=None, stop_reason=stopped, finished_at=time.time())


def _export_stopped(run_dir: Path, config: TrainConfig, val_set: FaceDataset) -> None:
    """A stopped run's best checkpoint, exported and served like a finished one's (not evaluated)."""
    if (run_dir / runs.BEST_CHECKPOINT).is_file():
        runs.update_status(run_dir, phase="exporting")
        export_model(run_dir / runs.BEST_CHECKPOINT, run_dir / runs.EXPORTED_MODEL, config.arch, tta=config.tta)
        export_served(run_dir / runs.EXPORTED_MODEL, val_set)


def finish_run(run_dir: Path, *, stopped: bool = False) -> None:
    """The finish steps of a run trained under another Keras backend, in this (TensorFlow) process:
    ``python -m training finish RUN`` (the trainer calls it; see :func:`_finish_in_tensorflow`)."""
    config = runs.Run(run_dir).config().settings
    data = load_training_data(config)
    if stopped:
        _export_stopped(run_dir, config, data.val)
    else:
        _finish(run_dir, data.dataset, config)


def _finish_in_tensorflow(run_dir: Path, stopped: str | None) -> None:
    import subprocess

    command = [
        sys.executable,
        "-m",
        "training",
        "finish",
        str(run_dir),
        *(["--stopped"] if stopped is not None else []),
    ]
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(command, env=environment, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the finish steps (export to LiteRT, evaluation) failed: exit status {result.returncode}")


def uses_neutral_path(config: TrainConfig) -> bool:
    """Whether a run trains on numpy batches with Keras augmentation layers (:mod:`training.neutral`):
    under JAX, and for the settings only that path has (training crops, mixup, erasing, distillation)."""
    from fer_core.preprocess import FACE_SIZE

    return (
        config.backend != "tensorflow"
        or config.crop != FACE_SIZE
        or config.mixup > 0
        or config.erasing > 0
        or bool(config.distill_from)
        or config.arch in CROP_ARCHITECTURES
    )


CROP_ARCHITECTURES = ("fernet40", "vgg40")  # trained on 40x40 crops of the 48x48 faces


class _SingleDevice:
    """The strategy of a backend without tf.distribute: one device, a scope that does nothing."""

    num_replicas_in_sync = 1

    @contextmanager
    def scope(self) -> Iterator[None]:
        yield


def teacher_paths(distill_from: str) -> list[Path]:
    """The model files named by ``--distill-from`` (comma-separated .keras files or run folders, whose
    exported model is used); a missing one raises :class:`ModelLoadError` naming it."""
    paths = []
    for entry in (part.strip() for part in distill_from.split(",")):
        if not entry:
            continue
        path = Path(entry).expanduser()
        if path.is_dir():
            path = path / runs.EXPORTED_MODEL
        check_keras_file(path)
        paths.append(path)
    return paths


def _neutral_model(config: TrainConfig, run_dir: Path) -> tuple[Any, Any, list[Any]]:
    """The training graph of the neutral path (augmentation, crop, network, and the teachers when
    distilling), its loss and its metrics."""
    import keras

    from fer_core.models import build_model
    from fer_core.preprocess import FACE_SIZE
    from training.neutral import (
        build_augmenter,
        build_distillation_model,
        build_training_model,
        distillation_loss,
        student_accuracy,
    )

    options = {"input_size": config.crop} if config.crop != FACE_SIZE else {}
    network = build_model(config.arch, **options)
    if config.init_from:
        runs.update_status(run_dir, phase="loading initial weights")
        load_initial_weights(network, config.init_from)
    augmenter = build_augmenter(config.seed, erasing=config.erasing) if config.augment else None
    if config.distill_from:
        runs.update_status(run_dir, phase="loading teachers")
        teachers = [load_keras_model(path) for path in teacher_paths(config.distill_from)]
        return build_distillation_model(network, teachers, augmenter), distillation_loss(), [student_accuracy()]
    loss = keras.losses.CategoricalCrossentropy()  # the targets come smoothed (face_batches)
    return build_training_model(network, augmenter), loss, [keras.metrics.CategoricalAccuracy(name="accuracy")]


def _finish(run_dir: Path, dataset: FaceDataset, config: TrainConfig) -> None:
    """Export the best checkpoint as a float32 model and its served (LiteRT) copy, calibrated on the
    validation faces, and evaluate the served copy on the held-out split: the path the app runs."""
    runs.update_status(run_dir, phase="exporting")
    model_path = run_dir / runs.EXPORTED_MODEL
    export_model(run_dir / runs.BEST_CHECKPOINT, model_path, config.arch, tta=config.tta)
    runs.update_status(run_dir, phase="recalibrating")
    train, val = split_for_training(dataset, config.val_fraction, config.seed)
    try:
        recalibration = recalibrate_if_better(model_path, train, val)
    except Exception as error:  # an optional polish: the run and its plain export still stand
        print(f"batch-norm recalibration skipped: {type(error).__name__}: {error}", file=sys.stderr)
        recalibration = {"error": f"{type(error).__name__}: {error}", "kept": False}
    runs.update_status(run_dir, phase="exporting")
    export_served(model_path, val)
    runs.update_status(run_dir, phase="evaluating")
    eval_split = "test" if "test" in dataset.split_names else "val"
    held_out = dataset.split("test") if eval_split == "test" else val
    report, probabilities = evaluate_served(model_path, held_out)
    report["split"] = eval_split
    report["best_epoch"] = runs.Run(run_dir).checkpoint_info().best_epoch
    report["batch_norm_recalibration"] = recalibration
    runs.write_json(run_dir / runs.METRICS_FILE, report)
    save_misclassified(run_dir, held_out, probabilities)
    runs.update_status(run_dir, state="finished", phase=None, finished_at=time.time(), test_accuracy=report["accuracy"])


def export_served(model_path: Path, val: FaceDataset, quantization: str = "float32") -> float:
    """Fit the calibration temperature on the validation faces and write the model's LiteRT copy with
    it (:func:`training.export.export_tflite`, checked on those faces too; ``quantization`` ``dynamic``
    makes an int8-weight copy). Returns the temperature."""
    from fer_core.calibration import fit_temperature
    from training.export import export_tflite

    model = load_keras_model(model_path)
    temperature = fit_temperature(predict_probabilities(model, val.images), val.labels) if len(val) else 1.0
    export_tflite(
        model_path,
        temperature=temperature,
        check_faces=val.images,
        check_labels=val.labels,
        model=model,
        quantization=quantization,
    )
    return temperature


def evaluate_served(
    model_path: Path, dataset: FaceDataset, *, tta: bool = False
) -> tuple[dict[str, Any], npt.NDArray[np.float32]]:
    """Evaluate the served (LiteRT, calibrated) copy of a model, as the app runs it: the classification
    report with its calibration (expected calibration error before and after the temperature, and
    reliability tables), and the served probabilities."""
    from fer_core.calibration import apply_temperature, calibration_report
    from fer_core.inference import EmotionClassifier
    from fer_core.serving import checked_lite_model

    flatbuffer, record = checked_lite_model(model_path)
    uncalibrated = EmotionClassifier(flatbuffer, str(model_path), num_threads=os.cpu_count() or 1)
    raw = uncalibrated.classify_batch(dataset.images, tta=tta)
    probabilities = apply_temperature(raw, record.temperature)
    report = classification_report(dataset.labels, probabilities.argmax(axis=1))
    report["calibration"] = calibration_report(raw, dataset.labels, record.temperature)
    report["served"] = {"runtime": "LiteRT", "file": model_path.with_suffix(".tflite").name, "tta": tta}
    return report, probabilities


def recalibrate_if_better(model_path: Path, train: FaceDataset, val: FaceDataset) -> dict[str, Any]:
    """Re-estimate the batch-norm statistics of the model at ``model_path`` on the clean ``train``
    faces (see :mod:`training.averaging`) and keep the result if it is more accurate on ``val``.
    Returns both validation accuracies and whether the recalibrated model was kept."""
    from training.averaging import recalibrate_batch_norm

    model = load_keras_model(model_path)
    before = accuracy_on(model, val)
    if not recalibrate_batch_norm(model, train.images):
        return {"val_accuracy_before": before, "val_accuracy_after": before, "kept": False}
    after = accuracy_on(model, val)
    if after > before:
        save_model_atomic(model, model_path)
    return {"val_accuracy_before": before, "val_accuracy_after": after, "kept": after > before}


def check_initial_model(source: str | Path) -> Path:
    """The model file to start a training from (a ``.keras`` file, or a run folder: its exported model,
    else its best checkpoint), after checking it without TensorFlow: a file that is missing, not a
    Keras model, or holds NaN or infinite weights (which would make the run diverge at its first
    step) raises :class:`ModelLoadError` naming it."""
    given = Path(source)
    path = runs.Run(given).model_path() if given.is_dir() else given
    if path is None or not path.exists():
        raise ModelLoadError(f"no model to start from at {source}")
    try:
        check_keras_file(path)
        check_finite_weights(path)
    except ModelLoadError as error:
        raise ModelLoadError(f"cannot start from that model: {error}") from None
    return path


def load_initial_weights(model: Any, source: str | Path) -> None:
    """Copy the weights of the model at ``source`` (see :func:`check_initial_model`) into ``model``,
    which must have the same architecture."""
    path = check_initial_model(source)
    try:
        initial = load_keras_model(path)
    except ModelLoadError as error:
        raise ModelLoadError(f"cannot start from that model: {error}") from None
    weights = initial.get_weights()
    expected = [tuple(weight.shape) for weight in model.get_weights()]
    if [tuple(weight.shape) for weight in weights] != expected:
        raise ValueError(
            f"{path} ({initial.name}, {initial.count_params():,} parameters) does not match the architecture "
            f"being trained ({model.name}, {model.count_params():,} parameters); --init-from needs the same one"
        )
    model.set_weights(weights)


def export_model(checkpoint: Path, destination: Path, arch: str, *, tta: str = "none") -> None:
    """Rebuild ``arch`` in float32 and copy the trained network's weights in (inference never runs bf16).
    A network trained on crops, or with test-time views asked for, is served wrapped in its views
    (:func:`training.views.with_views`): 48x48 faces in, the views' mean probabilities out."""
    import keras

    from fer_core.models import build_model
    from fer_core.preprocess import FACE_SIZE
    from training.neutral import custom_objects, trained_backbone
    from training.views import with_views

    custom_objects()
    network = trained_backbone(load_keras_model(checkpoint))
    size = int(network.input_shape[1])
    keras.mixed_precision.set_global_policy("float32")
    options: dict[str, Any] = {"input_size": size}
    widths = [layer.filters for layer in network.layers if hasattr(layer, "filters")]
    if arch in CROP_ARCHITECTURES or arch == "fernet":
        options["width"] = widths[0]
    clean = build_model(arch, **options)
    clean.set_weights(network.get_weights())
    if tta == "none" and size == FACE_SIZE:
        save_model_atomic(clean, destination)
    else:
        # named arch_views, not arch: `average` rebuilds a model named after a registered architecture
        save_model_atomic(with_views(clean, "center" if tta == "none" else tta), destination)


def predict_probabilities(model: Any, images: npt.NDArray[np.uint8], batch_size: int = 512) -> npt.NDArray[np.float32]:
    from fer_core.preprocess import face_batch

    outputs = [
        np.asarray(model(face_batch(images[start : start + batch_size]), training=False), dtype=np.float32)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, 7), np.float32)


def accuracy_on(model: Any, dataset: FaceDataset) -> float:
    return float((predict_probabilities(model, dataset.images).argmax(axis=1) == dataset.labels).mean())


def save_misclassified(
    run_dir: Path, dataset: FaceDataset, probabilities: npt.NDArray[np.float32], count: int = MISCLASSIFIED_COUNT
) -> None:
    """The most confidently wrong held-out faces, for the Training page's gallery."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != dataset.labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    destination = run_dir / runs.MISCLASSIFIED_FILE
    temporary = runs.temporary_path(destination)
    try:
        np.savez_compressed(
            temporary,
            images=dataset.images[order],
            labels=dataset.labels[order],
            predicted=predicted[order],
            confidence=probabilities[order, predicted[order]],
            source_ids=dataset.source_ids[order],
        )
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> Any:
    import keras

    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(2 * steps_per_epoch, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate * 0.1,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=config.learning_rate,
        warmup_steps=warmup_steps,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)


def _strategy(name: str) -> Any:
    import tensorflow as tf

    if name == "mirrored":
        devices = [device.name for device in tf.config.list_logical_devices("GPU")]
        devices = devices or [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def _data_options() -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _write_summary(model: Any, run_dir: Path) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    runs.write_atomic(run_dir / runs.SUMMARY_FILE, "\n".join(lines) + "\n")


def resume(run_dir: Path, *, launched: bool = False) -> Path:
    """Continue a stopped or failed run from its last completed epoch, with its own settings.

    ``launched``: started by :func:`training.launcher.resume_training`, which marks the run queued
    (so that no second training starts meanwhile) before this process runs.
    """
    run = runs.Run(run_dir)
    try:
        settings = run.config().settings
        status = run.status()
    except runs.RecordError as error:
        raise runs.RecordError(f"cannot resume run {run_dir.name}: {error}") from None
    if status.is_active and not (launched and status.state == "queued"):
        raise ValueError(f"{run_dir.name} is still running (pid {status.pid})")
    if status.state == "finished":
        raise ValueError(f"{run_dir.name} has already finished; start a new run to train further")
    (run_dir / runs.STOP_FLAG).unlink(missing_ok=True)
    return train(settings, run_dir, resume=True)
