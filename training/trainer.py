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
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fer_core import run_layout
from fer_core.datasets import describe_source
from fer_core.errors import ModelLoadError
from fer_core.files import write_json_atomically, write_text_atomically
from fer_core.labels import EMOTIONS
from fer_core.records import RecordError
from training import runs
from training.config import CROP_ARCHITECTURES, TrainConfig
from training.errors import StopRequested, TrainingDiverged, TrainingFailed
from training.finish import export_stopped, finish, finish_in_tensorflow
from training.model_files import check_finite_weights, check_keras_file, load_keras_model
from training.records import History, RunConfig, RunPhase, RunState, RunStatus
from training.runs import ResumePoint
from training.splits import TrainingData, load_training_data


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


def create_run(config: TrainConfig, command: str | None = None, *, now: float | None = None) -> Path:
    """Make the run folder with its config.json and a ``queued`` status. Returns its path. ``now``:
    the moment the run is created (the clock's time when None), which names its folder."""
    now = time.time() if now is None else now
    run_dir = runs.new_run_dir(config.runs_path, config.arch, now=now)
    run_config = RunConfig(
        settings=config,
        learning_rate=config.learning_rate,
        data_source=describe_source(config.data),
        command=command or " ".join([Path(sys.executable).name, "-m", "training", *sys.argv[1:]]),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
    )
    write_json_atomically(run_dir / run_layout.CONFIG_FILE, run_config.to_json())
    status = RunStatus(state=RunState.QUEUED, created_at=now, **runs.process_identity(os.getpid()))
    write_json_atomically(run_dir / run_layout.STATUS_FILE, status.to_json())
    return run_dir


@contextmanager
def _stop_on_signals(run_dir: Path) -> Iterator[None]:
    """SIGTERM/SIGINT raise the STOP flag (the batch callback ends the run after the current step).
    Signal handlers can only be set from the main thread; elsewhere only the flag file works."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: Any) -> None:
        (run_dir / run_layout.STOP_FLAG).touch()

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
        state=RunState.RUNNING,
        phase=RunPhase.STARTING,
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
    runs.update_status(run_dir, elapsed_s=runs.Run(run_dir).elapsed_seconds())
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
            state=RunState.FAILED,
            phase=None,
            error=message,
            traceback=traceback.format_exc(),
            finished_at=time.time(),
            elapsed_s=runs.Run(run_dir).elapsed_seconds(),
            diverged=diverged or None,
        )
    except OSError as error:
        print(f"could not record the failure in {run_dir}: {error}", file=sys.stderr)


class TrainingInputs(NamedTuple):
    """What ``model.fit`` takes: the training batches (a tf.data pipeline, or numpy batches with Keras
    augmentation layers on the neutral path), the validation faces, and the steps of an epoch."""

    train: Any
    val: Any
    steps_per_epoch: int


def _train(config: TrainConfig, run_dir: Path, *, resume: bool) -> None:
    import keras

    keras.utils.set_random_seed(config.seed)
    precision = choose_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    if config.init_from and not resume:  # named before minutes of loading data
        check_initial_model(config.init_from)

    with runs.phase(run_dir, RunPhase.LOADING_DATA):
        data = load_training_data(config)  # checked: faces a classifier cannot learn from are refused here
        inputs = make_inputs(config, data)

    with runs.phase(run_dir, RunPhase.BUILDING_MODEL):
        strategy = _strategy(config.strategy) if config.backend == "tensorflow" else _SingleDevice()
        start = runs.Run(run_dir).resume_point() if resume else ResumePoint(None, 0, History())
        if start.note:
            print(start.note, flush=True)
        with strategy.scope():
            model = _load_or_build_model(config, run_dir, start, inputs.steps_per_epoch)
        _write_summary(model, run_dir)

    facts = _training_facts(config, data, inputs, start, precision=precision, devices=strategy.num_replicas_in_sync)
    with runs.phase(run_dir, RunPhase.TRAINING, **facts):
        stopped = _fit(model, config, run_dir, inputs, start)

    if keras.backend.backend() != "tensorflow":  # converting to LiteRT needs TensorFlow
        finish_in_tensorflow(run_dir, stopped)
    elif stopped is not None:
        export_stopped(run_dir, config, data.val)
    else:
        finish(run_dir, data.dataset, config)
    (run_dir / run_layout.STOP_FLAG).unlink(missing_ok=True)
    if stopped is not None:
        runs.update_status(run_dir, state=RunState.STOPPED, phase=None, stop_reason=stopped, finished_at=time.time())


def make_inputs(config: TrainConfig, data: TrainingData) -> TrainingInputs:
    """The batches ``model.fit`` trains and validates on, for this run's path (see :func:`uses_neutral_path`)."""
    from training.neutral import class_weight_vector

    train_set, val_set = data.train, data.val
    if uses_neutral_path(config):  # numpy batches + Keras layers: any backend
        from training.neutral import face_batches

        train_batches = face_batches(
            train_set.images,
            train_set.labels,
            batch_size=config.batch_size,
            seed=config.seed,
            label_smoothing=config.label_smoothing,
            class_weights=class_weight_vector(train_set.labels) if config.class_weights else None,
            mixup=config.mixup,
        )
        val_faces = (
            val_set.images.astype(np.float32)[..., None],
            np.eye(len(EMOTIONS), dtype=np.float32)[val_set.labels],
        )
        steps_per_epoch = len(train_batches)
        if config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
        return TrainingInputs(train_batches, val_faces, steps_per_epoch)

    from training.pipeline import make_dataset  # tf.data (the TensorFlow backend's default path)

    sample_weights = class_weight_vector(train_set.labels)[train_set.labels] if config.class_weights else None
    train_pipeline = make_dataset(
        train_set.images,
        train_set.labels,
        batch_size=config.batch_size,
        training=True,
        augment=config.augment,
        seed=config.seed,
        sample_weights=sample_weights,
    )
    val_pipeline = make_dataset(val_set.images, val_set.labels, batch_size=256, training=False)
    steps_per_epoch = max(1, len(train_set) // config.batch_size)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
        train_pipeline = train_pipeline.repeat()
    if config.strategy == "mirrored":
        train_pipeline = train_pipeline.with_options(_data_options())
    return TrainingInputs(train_pipeline, val_pipeline, steps_per_epoch)


def _load_or_build_model(config: TrainConfig, run_dir: Path, start: ResumePoint, steps_per_epoch: int) -> Any:
    """The compiled model to train: the resume checkpoint, or a new network (from the initial weights
    when asked for). Called in the distribution strategy's scope."""
    import keras

    from training.architectures import build_model

    neutral = uses_neutral_path(config)
    if start.checkpoint is not None:
        if neutral:
            from training.neutral import custom_objects

            custom_objects()  # the distillation loss and metric, registered before a checkpoint loads
        return load_keras_model(start.checkpoint, compile=True)
    if neutral:
        model, loss, metrics = _neutral_model(config, run_dir)
        model.compile(optimizer=_optimizer(config, steps_per_epoch), loss=loss, metrics=metrics)
        return model
    model = build_model(config.arch)
    if config.init_from:
        with runs.phase(run_dir, RunPhase.LOADING_INITIAL_WEIGHTS):
            load_initial_weights(model, config.init_from)
    model.compile(
        optimizer=_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def _training_facts(
    config: TrainConfig, data: TrainingData, inputs: TrainingInputs, start: ResumePoint, *, precision: str, devices: int
) -> dict[str, Any]:
    """The status fields that say how the run trains (the Training page shows them beside its settings)."""
    return {
        "precision": precision,
        "strategy": config.strategy,
        "devices": devices,
        "train_size": len(data.train),
        "val_size": len(data.val),
        "epoch": start.epoch,
        "epochs": config.epochs,
        "steps": inputs.steps_per_epoch,
        "epochs_done": start.epoch,
        "versions": environment_versions(),
        "resume_note": start.note,
    }


def _fit(model: Any, config: TrainConfig, run_dir: Path, inputs: TrainingInputs, start: ResumePoint) -> str | None:
    """Train from the epoch after ``start`` to the last, recording and checkpointing as it goes. Returns
    why it stopped early when a stop was asked for (None when it ran its course or early stopping ended it)."""
    import keras

    from training.callbacks import AtomicCheckpoint, RunRecorder

    if start.epoch >= config.epochs:
        return None
    callbacks = [
        RunRecorder(run_dir, config.epochs, inputs.steps_per_epoch, start.history),  # history first: see
        AtomicCheckpoint(  # Run.resume_point for a crash between the two writes
            run_dir, start.history.best_val_accuracy, epochs=config.epochs, keep_last=config.keep_last
        ),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience),
    ]
    try:
        model.fit(
            inputs.train,
            validation_data=inputs.val,
            epochs=config.epochs,
            initial_epoch=start.epoch,
            steps_per_epoch=inputs.steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline and the neutral batches shuffle
            verbose=2,
        )
    except StopRequested as stop:
        return str(stop)
    return None


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
            path = path / run_layout.EXPORTED_MODEL
        check_keras_file(path)
        paths.append(path)
    return paths


def _neutral_model(config: TrainConfig, run_dir: Path) -> tuple[Any, Any, list[Any]]:
    """The training graph of the neutral path (augmentation, crop, network, and the teachers when
    distilling), its loss and its metrics."""
    import keras

    from fer_core.preprocess import FACE_SIZE
    from training.architectures import build_model
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
        with runs.phase(run_dir, RunPhase.LOADING_INITIAL_WEIGHTS):
            load_initial_weights(network, config.init_from)
    augmenter = build_augmenter(config.seed, erasing=config.erasing) if config.augment else None
    if config.distill_from:
        with runs.phase(run_dir, RunPhase.LOADING_TEACHERS):
            teachers = [load_keras_model(path) for path in teacher_paths(config.distill_from)]
        return build_distillation_model(network, teachers, augmenter), distillation_loss(), [student_accuracy()]
    loss = keras.losses.CategoricalCrossentropy()  # the targets come smoothed (face_batches)
    return build_training_model(network, augmenter), loss, [keras.metrics.CategoricalAccuracy(name="accuracy")]


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
    which must have the same architecture: the model itself, or the one trunk of that architecture in a
    served model that averages several (:func:`training.views.with_views`)."""
    path = check_initial_model(source)
    try:
        initial = load_keras_model(path)
    except ModelLoadError as error:
        raise ModelLoadError(f"cannot start from that model: {error}") from None
    from training.served_choice import trunks_of

    expected = [tuple(weight.shape) for weight in model.get_weights()]
    matching = [
        candidate
        for candidate in dict.fromkeys([initial, *trunks_of(initial)])  # a served model wraps its trunks in views
        if [tuple(weight.shape) for weight in candidate.get_weights()] == expected
    ]
    if len(matching) > 1 and matching[0] is not initial:
        raise ValueError(
            f"{path} averages {len(matching)} trunks of the architecture being trained ({model.name}); "
            "--init-from needs one: start from the run folder of the trunk you mean"
        )
    if matching:
        model.set_weights(matching[0].get_weights())
        return
    raise ValueError(
        f"{path} ({initial.name}, {initial.count_params():,} parameters) does not match the architecture "
        f"being trained ({model.name}, {model.count_params():,} parameters); --init-from needs the same one"
    )


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
    write_text_atomically(run_dir / run_layout.SUMMARY_FILE, "\n".join(lines) + "\n")


def resume(run_dir: Path, *, launched: bool = False) -> Path:
    """Continue a stopped or failed run from its last completed epoch, with its own settings.

    ``launched``: started by :func:`training.launcher.resume_training`, which marks the run queued
    (so that no second training starts meanwhile) before this process runs.
    """
    run = runs.Run(run_dir)
    try:
        settings = run.config().settings
        status = run.status()
    except RecordError as error:
        raise RecordError(f"cannot resume run {run_dir.name}: {error}") from None
    if status.is_active and not (launched and status.state == RunState.QUEUED):
        raise ValueError(f"{run_dir.name} is still running (pid {status.pid})")
    if status.state == RunState.FINISHED:
        raise ValueError(f"{run_dir.name} has already finished; start a new run to train further")
    (run_dir / run_layout.STOP_FLAG).unlink(missing_ok=True)
    return train(settings, run_dir, resume=True)
