"""The trainer: one call trains one run into its own folder (see :mod:`training.runs`)."""

from __future__ import annotations

import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fer_core.data import FaceDataset
from fer_core.datasets import describe_source, resolve_dataset
from fer_core.metrics import classification_report
from training import runs
from training.config import TrainConfig, config_from_mapping

PROGRESS_INTERVAL_S = 2.0


def split_for_training(dataset: FaceDataset, val_fraction: float, seed: int) -> tuple[FaceDataset, FaceDataset]:
    """Train and validation sets: the data's own ``val`` split if it has one, else a stratified
    ``val_fraction`` of train. The test split is never touched here."""
    train = dataset.split("train")
    if "val" in dataset.split_names:
        return train, dataset.split("val")
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(train), dtype=bool)
    for label in np.unique(train.labels):
        members = np.flatnonzero(train.labels == label)
        count = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val_mask[rng.choice(members, size=count, replace=False)] = True
    return train.subset(~val_mask), train.subset(val_mask)


def choose_precision(requested: str) -> str:
    """``auto``: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AVX512-BF16/AMX, else float32."""
    if requested != "auto":
        return requested
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def environment_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
    }


def make_recorder(run_dir: Path, epochs: int, steps_per_epoch: int, initial_history: dict[str, Any]) -> Any:
    import keras

    class RunRecorder(keras.callbacks.Callback):
        """Writes history.json/.csv and status.json after every epoch and every few seconds within one,
        and ends training after the current step when a stop is requested."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs_log: list[dict[str, Any]] = list(initial_history.get("epochs", []))
            self.batches_log: list[dict[str, Any]] = list(initial_history.get("batches", []))
            self.started = time.monotonic()
            self.last_write = 0.0
            self.epoch = 0
            self.steps_done = 0
            self.stop_reason: str | None = None
            self.status: dict[str, Any] = runs.read_json(run_dir / runs.STATUS_FILE)

        def request_stop(self, reason: str) -> None:
            self.stop_reason = reason

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch = epoch
            self.epoch_started = time.monotonic()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.steps_done += 1
            if (run_dir / runs.STOP_FLAG).exists() and self.stop_reason is None:
                self.stop_reason = "stop requested"
            if self.stop_reason is not None:
                self.model.stop_training = True
            now = time.monotonic()
            if now - self.last_write >= PROGRESS_INTERVAL_S:
                logs = logs or {}
                self.batches_log.append(
                    {
                        "epoch": self.epoch + (batch + 1) / steps_per_epoch,
                        "loss": _float(logs.get("loss")),
                        "accuracy": _float(logs.get("accuracy")),
                    }
                )
                self._write(step=batch + 1)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            row = {"epoch": epoch + 1, **{key: _float(value) for key, value in (logs or {}).items()}}
            row["lr"] = _float(self.model.optimizer.learning_rate)
            row["epoch_time_s"] = round(time.monotonic() - self.epoch_started, 2)
            self.epochs_log.append(row)
            self._write(step=steps_per_epoch, epoch_done=True)

        def _write(self, step: int, epoch_done: bool = False) -> None:
            self.last_write = time.monotonic()
            history = {"epochs": self.epochs_log, "batches": self.batches_log}
            runs.write_json(run_dir / runs.HISTORY_JSON, history)
            if epoch_done:
                runs.write_atomic(run_dir / runs.HISTORY_CSV, runs.history_to_csv(self.epochs_log))
            elapsed = time.monotonic() - self.started
            steps_left = (epochs - self.epoch - 1) * steps_per_epoch + (steps_per_epoch - step)
            seconds_per_step = elapsed / max(self.steps_done, 1)
            self.status.update(
                state="running",
                epoch=self.epoch + 1,
                epochs=epochs,
                step=step,
                steps=steps_per_epoch,
                seconds_per_step=round(seconds_per_step, 4),
                eta_s=round(steps_left * seconds_per_step, 1),
                updated_at=time.time(),
            )
            runs.write_json(run_dir / runs.STATUS_FILE, self.status)

    return RunRecorder()


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _set_status(run_dir: Path, **changes: Any) -> None:
    path = run_dir / runs.STATUS_FILE
    status = runs.read_json(path) if path.exists() else {}
    status.update(changes, updated_at=time.time())
    runs.write_json(path, status)


def create_run(config: TrainConfig) -> Path:
    """Make the run folder with its config.json and a ``queued`` status. Returns its path."""
    run_dir = runs.new_run_dir(config.runs_path, config.arch)
    runs.write_json(
        run_dir / runs.CONFIG_FILE,
        {
            "settings": config.to_dict(),
            "learning_rate": config.learning_rate,
            "data_source": describe_source(config.data),
            "command": " ".join([Path(sys.executable).name, "-m", "training", *sys.argv[1:]]),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    runs.write_json(run_dir / runs.STATUS_FILE, {"state": "queued", "created_at": time.time(), "pid": os.getpid()})
    return run_dir


def train(config: TrainConfig, run_dir: Path | None = None, *, resume: bool = False) -> Path:
    """Train into ``run_dir`` (a new folder under ``config.runs_path`` when None). Returns the folder.

    The run's status ends as ``finished``, ``stopped`` (a stop request: the best checkpoint is kept)
    or ``failed`` (with the error); the exception of a failure is re-raised for the caller.
    """
    run_dir = run_dir or create_run(config)
    _set_status(run_dir, state="running", pid=os.getpid(), started_at=time.time(), error=None)
    stop_requested: dict[str, str | None] = {"reason": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop_requested["reason"] = f"stopped by signal {signal.Signals(signum).name}"
        (run_dir / runs.STOP_FLAG).touch()

    previous_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _train(config, run_dir, resume=resume)
    except BaseException as error:
        _set_status(run_dir, state="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        raise
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return run_dir


def _train(config: TrainConfig, run_dir: Path, *, resume: bool) -> None:
    import keras

    from fer_core.models import build_model
    from training.pipeline import class_weight_vector, make_dataset

    keras.utils.set_random_seed(config.seed)
    precision = choose_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)

    dataset = resolve_dataset(config.data)
    train_set, val_set = split_for_training(dataset, config.val_fraction, config.seed)
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

    strategy = _strategy(config.strategy)
    history = runs.Run(run_dir).history() if resume else {"epochs": [], "batches": []}
    initial_epoch = len(history["epochs"]) if resume else 0
    with strategy.scope():
        last_checkpoint = run_dir / runs.LAST_CHECKPOINT
        if resume and last_checkpoint.exists():
            model = keras.models.load_model(last_checkpoint)
        else:
            initial_epoch, history = 0, {"epochs": [], "batches": []}
            model = build_model(config.arch)
            model.compile(
                optimizer=_optimizer(config, steps_per_epoch),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
    _write_summary(model, run_dir)
    _set_status(
        run_dir,
        precision=precision,
        strategy=config.strategy,
        devices=strategy.num_replicas_in_sync,
        train_size=len(train_set),
        val_size=len(val_set),
        epoch=initial_epoch,
        epochs=config.epochs,
        versions=environment_versions(),
    )

    recorder = make_recorder(run_dir, config.epochs, steps_per_epoch, history)
    best_so_far = max((row.get("val_accuracy") or 0.0 for row in history["epochs"]), default=None)
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        run_dir / runs.BEST_CHECKPOINT,
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        initial_value_threshold=best_so_far,
    )
    callbacks = [
        recorder,
        best_checkpoint,
        keras.callbacks.ModelCheckpoint(last_checkpoint, save_best_only=False),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience),
    ]
    if initial_epoch < config.epochs:
        model.fit(
            train_data.with_options(_data_options()) if config.strategy == "mirrored" else train_data,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=2,
        )
    (run_dir / runs.STOP_FLAG).unlink(missing_ok=True)
    if recorder.stop_reason is not None:
        _set_status(run_dir, state="stopped", error=None, stop_reason=recorder.stop_reason, finished_at=time.time())
        return
    _finish(run_dir, dataset, config)


def _finish(run_dir: Path, dataset: FaceDataset, config: TrainConfig) -> None:
    """Export the best checkpoint as a float32 model and evaluate it on the held-out split."""
    import keras

    _set_status(run_dir, state="running", phase="evaluating")
    export_model(run_dir / runs.BEST_CHECKPOINT, run_dir / runs.EXPORTED_MODEL, config.arch)
    model = keras.models.load_model(run_dir / runs.EXPORTED_MODEL)
    eval_split = "test" if "test" in dataset.split_names else "val"
    if eval_split == "val":
        _, held_out = split_for_training(dataset, config.val_fraction, config.seed)
    else:
        held_out = dataset.split("test")
    report = evaluate(model, held_out)
    report["split"] = eval_split
    runs.write_json(run_dir / runs.METRICS_FILE, report)
    save_misclassified(run_dir, model, held_out)
    _set_status(run_dir, state="finished", phase=None, finished_at=time.time(), test_accuracy=report["accuracy"])


def export_model(checkpoint: Path, destination: Path, arch: str) -> None:
    """Rebuild ``arch`` in float32 and copy the checkpoint's weights in: inference never runs bf16."""
    import keras

    from fer_core.models import build_model

    trained = keras.models.load_model(checkpoint, compile=False)
    keras.mixed_precision.set_global_policy("float32")
    clean = build_model(arch)
    clean.set_weights(trained.get_weights())
    clean.save(destination)


def predict_probabilities(model: Any, images: npt.NDArray[np.uint8], batch_size: int = 512) -> npt.NDArray[np.float32]:
    from fer_core.preprocess import face_batch

    outputs = [
        np.asarray(model(face_batch(images[start : start + batch_size]), training=False), dtype=np.float32)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, 7), np.float32)


def evaluate(model: Any, dataset: FaceDataset) -> dict[str, Any]:
    probabilities = predict_probabilities(model, dataset.images)
    return classification_report(dataset.labels, probabilities.argmax(axis=1))


def save_misclassified(run_dir: Path, model: Any, dataset: FaceDataset, count: int = 48) -> None:
    """The most confidently wrong held-out faces, for the Training page's gallery."""
    probabilities = predict_probabilities(model, dataset.images)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != dataset.labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    np.savez_compressed(
        run_dir / "misclassified.npz",
        images=dataset.images[order],
        labels=dataset.labels[order],
        predicted=predicted[order],
        confidence=probabilities[order, predicted[order]],
        source_ids=dataset.source_ids[order],
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
    runs.write_atomic(run_dir / runs.SUMMARY_FILE, "\n".join(lines) + "\n")


def resume(run_dir: Path) -> Path:
    """Continue a stopped or failed run from its last epoch checkpoint, with its own settings."""
    run = runs.Run(run_dir)
    settings = run.config().get("settings")
    if not settings:
        raise ValueError(f"{run_dir} is not a run folder (no config.json with settings)")
    if run.status().get("state") in runs.ACTIVE_STATES:
        raise ValueError(f"{run_dir.name} is still running (pid {run.status().get('pid')})")
    config = config_from_mapping(settings)
    return train(replace(config, runs_dir=str(run_dir.parent)), run_dir, resume=True)
