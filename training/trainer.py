"""The trainer: one call trains one run into its own folder (see :mod:`training.runs`).

While it trains, the run folder always holds a consistent picture: history and status are
rewritten (atomically) after every epoch and every few seconds within one, checkpoints are
saved to a temporary file and moved into place. A stop request (the STOP flag file, SIGTERM or
SIGINT) ends the run after the current step; the best checkpoint is kept and ``resume`` goes
on from the last completed epoch.
"""

from __future__ import annotations

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
from typing import Any

import numpy as np
import numpy.typing as npt

from fer_core.data import FaceDataset
from fer_core.datasets import describe_source, resolve_dataset
from fer_core.metrics import classification_report
from training import runs
from training.config import TrainConfig, config_from_mapping

PROGRESS_INTERVAL_S = 2.0  # history/status rewrites within an epoch, at most this often
POINTS_PER_EPOCH = 25  # batch-level history points kept per epoch (for the live chart)
MISCLASSIFIED_COUNT = 48


class StopRequested(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised from a batch callback so that ``fit`` ends right after the current step."""


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


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` into a temporary file beside ``path``, then ``os.replace``: a reader never
    opens a half-written ``.keras`` file."""
    temporary = runs.temporary_path(path)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class _Clock:
    """Seconds per training step (the first step, which traces the graph, left out) and the time
    validation takes at the end of an epoch: the basis of the ETA."""

    def __init__(self) -> None:
        self.step_seconds = 0.0
        self.timed_steps = 0
        self.validation_s: float | None = None
        self.mark = time.monotonic()
        self.seen_first_step = False

    def start_epoch(self) -> None:
        self.mark = time.monotonic()

    def step_done(self) -> None:
        now = time.monotonic()
        if self.seen_first_step:
            self.step_seconds += now - self.mark
            self.timed_steps += 1
        self.seen_first_step = True
        self.mark = now

    def epoch_done(self) -> None:
        self.validation_s = time.monotonic() - self.mark

    @property
    def seconds_per_step(self) -> float | None:
        return self.step_seconds / self.timed_steps if self.timed_steps else None


def make_recorder(run_dir: Path, epochs: int, steps_per_epoch: int, initial_history: dict[str, Any]) -> Any:
    import keras

    class RunRecorder(keras.callbacks.Callback):
        """Writes history.json/.csv and status.json after every epoch and every few seconds within
        one, and ends training after the current step when a stop is requested (STOP flag)."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs_log: list[dict[str, Any]] = list(initial_history.get("epochs", []))
            self.batches_log: list[dict[str, Any]] = list(initial_history.get("batches", []))
            self.clock = _Clock()
            self.last_write = 0.0
            self.epoch = 0
            self.step = 0
            self.point_every = max(1, steps_per_epoch // POINTS_PER_EPOCH)
            self.epoch_started = time.monotonic()
            self.stop_reason: str | None = None

        def check_stop(self) -> None:
            if (run_dir / runs.STOP_FLAG).exists():
                self.stop_reason = self.stop_reason or "stop requested"
                raise StopRequested(self.stop_reason)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.check_stop()
            self.epoch = epoch
            self.step = 0
            self.epoch_started = time.monotonic()
            self.clock.start_epoch()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.clock.step_done()
            self.step = batch + 1
            first_step = not self.epochs_log and not self.batches_log
            if self.step % self.point_every == 0 or first_step:
                logs = logs or {}
                self.batches_log.append(
                    {
                        "epoch": round(self.epoch + self.step / steps_per_epoch, 4),
                        "loss": _float(logs.get("loss")),
                        "accuracy": _float(logs.get("accuracy")),
                    }
                )
            if first_step or time.monotonic() - self.last_write >= PROGRESS_INTERVAL_S:
                self._write()
            self.check_stop()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.clock.epoch_done()
            row = {"epoch": epoch + 1, **{key: _float(value) for key, value in (logs or {}).items()}}
            row["lr"] = _float(self.model.optimizer.learning_rate)
            row["epoch_time_s"] = round(time.monotonic() - self.epoch_started, 2)
            self.epochs_log.append(row)
            self.step = steps_per_epoch
            self._write(epoch_done=True)

        def _write(self, epoch_done: bool = False) -> None:
            self.last_write = time.monotonic()
            runs.write_json(run_dir / runs.HISTORY_JSON, {"epochs": self.epochs_log, "batches": self.batches_log})
            if epoch_done:
                runs.write_atomic(run_dir / runs.HISTORY_CSV, runs.history_to_csv(self.epochs_log))
            seconds_per_step = self.clock.seconds_per_step
            validation_s = self.clock.validation_s or 0.0
            epochs_left = epochs - self.epoch - (1 if epoch_done else 0)
            steps_left = max(0, epochs_left * steps_per_epoch - (0 if epoch_done else self.step))
            progress: dict[str, Any] = {"seconds_per_step": None, "epoch_time_estimate_s": None, "eta_s": None}
            if seconds_per_step is not None:
                progress = {
                    "seconds_per_step": round(seconds_per_step, 4),
                    "epoch_time_estimate_s": round(seconds_per_step * steps_per_epoch + validation_s, 1),
                    "eta_s": round(steps_left * seconds_per_step + epochs_left * validation_s, 1),
                }
            runs.update_status(
                run_dir,
                state="running",
                phase="training",
                epoch=self.epoch + 1,
                epochs=epochs,
                step=self.step,
                steps=steps_per_epoch,
                epochs_done=len(self.epochs_log),
                elapsed_s=_elapsed(run_dir),
                **progress,
            )

    return RunRecorder()


def make_checkpointer(run_dir: Path, best_so_far: float | None, *, epochs: int = 0, keep_last: int = 0) -> Any:
    """Saves last.keras after every epoch and best.keras when val_accuracy improves, both atomically,
    then checkpoint.json saying which epoch they hold (what ``resume`` starts from). With
    ``keep_last``, each of the last ``keep_last`` of ``epochs`` epochs is also kept as
    ``snapshots/epoch-NNN.keras``, for weight averaging (``python -m training average``)."""
    import keras

    class AtomicCheckpoint(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            info = runs.Run(run_dir).checkpoint_info()
            self.best = best_so_far
            self.best_epoch: int | None = info.get("best_epoch")

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = _float((logs or {}).get("val_accuracy"))
            if value is not None and (self.best is None or value > self.best):
                save_model_atomic(self.model, run_dir / runs.BEST_CHECKPOINT)
                # An export from before a resume is now an older model: without it, the run's model is
                # the new best (Run.model_path) until the run exports again when it stops or finishes.
                (run_dir / runs.EXPORTED_MODEL).unlink(missing_ok=True)
                self.best, self.best_epoch = value, epoch + 1
            if keep_last and epoch + 1 > epochs - keep_last:
                (run_dir / runs.SNAPSHOTS_DIR).mkdir(exist_ok=True)
                save_model_atomic(self.model, run_dir / runs.SNAPSHOTS_DIR / f"epoch-{epoch + 1:03d}.keras")
            save_model_atomic(self.model, run_dir / runs.LAST_CHECKPOINT)
            runs.write_json(
                run_dir / runs.CHECKPOINT_INFO,
                {
                    "epoch": epoch + 1,
                    "best_val_accuracy": self.best,
                    "best_epoch": self.best_epoch,
                    "saved_at": time.time(),
                },
            )
            runs.update_status(run_dir, best_val_accuracy=self.best, best_epoch=self.best_epoch)

    return AtomicCheckpoint()


def _elapsed(run_dir: Path) -> float:
    """Seconds this run has spent in a trainer, over all its sessions (a resumed run adds up)."""
    status = runs.Run(run_dir).status()
    session = time.time() - float(status.get("session_started_at") or time.time())
    return round(float(status.get("elapsed_before_s") or 0.0) + session, 1)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
    or ``failed`` (with the error); the exception of a failure is re-raised for the caller.
    """
    run_dir = run_dir or create_run(config)
    status = runs.Run(run_dir).status()
    now = time.time()
    runs.update_status(
        run_dir,
        state="running",
        phase="starting",
        **runs.process_identity(os.getpid()),
        started_at=status.get("started_at") or now,
        resumed_at=now if resume else None,
        session_started_at=now,
        elapsed_before_s=float(status.get("elapsed_s") or 0.0),
        error=None,
        traceback=None,
        stop_reason=None,
        finished_at=None,
    )
    try:
        with _stop_on_signals(run_dir), _restored_precision_policy():
            _train(config, run_dir, resume=resume)
    except BaseException as error:
        runs.update_status(
            run_dir,
            state="failed",
            phase=None,
            error=f"{type(error).__name__}: {error}".strip()[:2000],
            traceback=traceback.format_exc(),
            finished_at=time.time(),
            elapsed_s=_elapsed(run_dir),
        )
        raise
    runs.update_status(run_dir, elapsed_s=_elapsed(run_dir))
    return run_dir


def _resume_point(run_dir: Path) -> tuple[int, dict[str, Any]]:
    """Completed epochs held by last.keras, and the history cut back to them (a crash between the
    history write and the checkpoint write leaves history one epoch ahead)."""
    run = runs.Run(run_dir)
    if not (run_dir / runs.LAST_CHECKPOINT).is_file():
        return 0, {"epochs": [], "batches": []}
    history = run.history()
    done = int(run.checkpoint_info().get("epoch", len(history["epochs"])))
    return done, {
        "epochs": [row for row in history["epochs"] if row.get("epoch", 0) <= done],
        "batches": [point for point in history["batches"] if point.get("epoch", 0) <= done],
    }


def _train(config: TrainConfig, run_dir: Path, *, resume: bool) -> None:
    import keras

    from fer_core.models import build_model
    from training.pipeline import class_weight_vector, make_dataset

    keras.utils.set_random_seed(config.seed)
    precision = choose_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)

    runs.update_status(run_dir, phase="loading data")
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

    runs.update_status(run_dir, phase="building model")
    strategy = _strategy(config.strategy)
    initial_epoch, history = _resume_point(run_dir) if resume else (0, {"epochs": [], "batches": []})
    with strategy.scope():
        if initial_epoch > 0:
            model = keras.models.load_model(run_dir / runs.LAST_CHECKPOINT)
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
        epoch=initial_epoch,
        epochs=config.epochs,
        steps=steps_per_epoch,
        epochs_done=initial_epoch,
        versions=environment_versions(),
    )

    best_so_far = max(
        (row["val_accuracy"] for row in history["epochs"] if row.get("val_accuracy") is not None), default=None
    )
    recorder = make_recorder(run_dir, config.epochs, steps_per_epoch, history)
    callbacks = [
        recorder,  # history first: a crash before the checkpoint write is cut back by _resume_point
        make_checkpointer(run_dir, best_so_far, epochs=config.epochs, keep_last=config.keep_last),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience),
    ]
    stopped: str | None = None
    if initial_epoch < config.epochs:
        try:
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
        except StopRequested as stop:
            stopped = str(stop)
    if stopped is not None:
        if (run_dir / runs.BEST_CHECKPOINT).is_file():
            runs.update_status(run_dir, phase="exporting")
            export_model(run_dir / runs.BEST_CHECKPOINT, run_dir / runs.EXPORTED_MODEL, config.arch)
            export_served(run_dir / runs.EXPORTED_MODEL, val_set)
        (run_dir / runs.STOP_FLAG).unlink(missing_ok=True)
        runs.update_status(run_dir, state="stopped", phase=None, stop_reason=stopped, finished_at=time.time())
        return
    _finish(run_dir, dataset, config)
    (run_dir / runs.STOP_FLAG).unlink(missing_ok=True)


def _finish(run_dir: Path, dataset: FaceDataset, config: TrainConfig) -> None:
    """Export the best checkpoint as a float32 model and its served (LiteRT) copy, calibrated on the
    validation faces, and evaluate the served copy on the held-out split: the path the app runs."""
    runs.update_status(run_dir, phase="exporting")
    model_path = run_dir / runs.EXPORTED_MODEL
    export_model(run_dir / runs.BEST_CHECKPOINT, model_path, config.arch)
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
    report["best_epoch"] = runs.Run(run_dir).checkpoint_info().get("best_epoch")
    report["batch_norm_recalibration"] = recalibration
    runs.write_json(run_dir / runs.METRICS_FILE, report)
    save_misclassified(run_dir, held_out, probabilities)
    runs.update_status(run_dir, state="finished", phase=None, finished_at=time.time(), test_accuracy=report["accuracy"])


def export_served(model_path: Path, val: FaceDataset) -> float:
    """Fit the calibration temperature on the validation faces and write the model's LiteRT copy with
    it (:func:`training.export.export_tflite`, checked on those faces too). Returns the temperature."""
    from fer_core.calibration import fit_temperature
    from training.export import export_tflite, load_keras_model

    model = load_keras_model(model_path)
    temperature = fit_temperature(predict_probabilities(model, val.images), val.labels) if len(val) else 1.0
    export_tflite(model_path, temperature=temperature, check_faces=val.images, model=model)
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
    import keras

    from training.averaging import recalibrate_batch_norm

    model = keras.models.load_model(model_path, compile=False)
    before = accuracy_on(model, val)
    if not recalibrate_batch_norm(model, train.images):
        return {"val_accuracy_before": before, "val_accuracy_after": before, "kept": False}
    after = accuracy_on(model, val)
    if after > before:
        save_model_atomic(model, model_path)
    return {"val_accuracy_before": before, "val_accuracy_after": after, "kept": after > before}


def load_initial_weights(model: Any, source: str | Path) -> None:
    """Copy the weights of the model at ``source`` (a ``.keras`` file, or a run folder: its exported
    model, else its best checkpoint) into ``model``, which must have the same architecture."""
    import keras

    given = Path(source)
    path = runs.Run(given).model_path() if given.is_dir() else given
    if path is None or not path.is_file():
        raise FileNotFoundError(f"no model to start from at {source}")
    try:
        initial = keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(f"could not load {path} to start from: {error}") from error
    weights = initial.get_weights()
    expected = [tuple(weight.shape) for weight in model.get_weights()]
    if [tuple(weight.shape) for weight in weights] != expected:
        raise ValueError(
            f"{path} ({initial.name}, {initial.count_params():,} parameters) does not match the architecture "
            f"being trained ({model.name}, {model.count_params():,} parameters); --init-from needs the same one"
        )
    model.set_weights(weights)


def export_model(checkpoint: Path, destination: Path, arch: str) -> None:
    """Rebuild ``arch`` in float32 and copy the checkpoint's weights in: inference never runs bf16."""
    import keras

    from fer_core.models import build_model

    trained = keras.models.load_model(checkpoint, compile=False)
    keras.mixed_precision.set_global_policy("float32")
    clean = build_model(arch)
    clean.set_weights(trained.get_weights())
    save_model_atomic(clean, destination)


def predict_probabilities(model: Any, images: npt.NDArray[np.uint8], batch_size: int = 512) -> npt.NDArray[np.float32]:
    from fer_core.preprocess import face_batch

    outputs = [
        np.asarray(model(face_batch(images[start : start + batch_size]), training=False), dtype=np.float32)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, 7), np.float32)


def accuracy_on(model: Any, dataset: FaceDataset) -> float:
    return float((predict_probabilities(model, dataset.images).argmax(axis=1) == dataset.labels).mean())


def evaluate(model: Any, dataset: FaceDataset) -> dict[str, Any]:
    probabilities = predict_probabilities(model, dataset.images)
    return classification_report(dataset.labels, probabilities.argmax(axis=1))


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
    settings = run.config().get("settings")
    if not settings:
        raise ValueError(f"{run_dir} is not a run folder (no config.json with settings)")
    status = run.status()
    if status.get("state") in runs.ACTIVE_STATES and not (launched and status.get("state") == "queued"):
        raise ValueError(f"{run_dir.name} is still running (pid {status.get('pid')})")
    if status.get("state") == "finished":
        raise ValueError(f"{run_dir.name} has already finished; start a new run to train further")
    (run_dir / runs.STOP_FLAG).unlink(missing_ok=True)
    return train(config_from_mapping(settings), run_dir, resume=True)
