"""The trainer's Keras callbacks: the run recorder and the atomic checkpointer.

This module imports Keras; :mod:`training.trainer` imports it only when a training starts, so that
the launcher and the app can import the trainer without TensorFlow. It imports nothing of the trainer.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras

from fer_core import run_layout
from fer_core.files import write_json_atomically, write_text_atomically
from fer_core.serving import served_files
from training import runs
from training.errors import StopRequested, TrainingDiverged
from training.model_files import save_model_atomic
from training.records import CheckpointInfo, History, RunPhase, RunState

PROGRESS_INTERVAL_S = 2.0  # history/status rewrites within an epoch, at most this often
POINTS_PER_EPOCH = 25  # batch-level history points kept per epoch (for the live chart)


class Clock:
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


def progress_estimate(
    seconds_per_step: float | None, validation_s: float, *, steps_per_epoch: int, epochs_left: int, steps_left: int
) -> dict[str, float | None]:
    """The status fields of the ETA: seconds per step, per epoch (with validation), and left."""
    if seconds_per_step is None:
        return {"seconds_per_step": None, "epoch_time_estimate_s": None, "eta_s": None}
    return {
        "seconds_per_step": round(seconds_per_step, 4),
        "epoch_time_estimate_s": round(seconds_per_step * steps_per_epoch + validation_s, 1),
        "eta_s": round(steps_left * seconds_per_step + epochs_left * validation_s, 1),
    }


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float (None if it is not a number); NaN and infinity are kept, for the check."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RunRecorder(keras.callbacks.Callback):
    """Writes history.json/.csv and status.json after every epoch and every few seconds within one;
    ends training after the current step when a stop is requested (STOP flag), and at the first
    step whose loss is NaN or infinite (:class:`TrainingDiverged`)."""

    def __init__(self, run_dir: Path, epochs: int, steps_per_epoch: int, history: History) -> None:
        super().__init__()
        self.run_dir, self.epochs, self.steps_per_epoch = run_dir, epochs, steps_per_epoch
        self.epochs_log = [dict(row) for row in history.epochs]
        self.batches_log = [dict(point) for point in history.batches]
        self.clock = Clock()
        self.last_write = 0.0
        self.epoch = 0
        self.step = 0
        self.point_every = max(1, steps_per_epoch // POINTS_PER_EPOCH)
        self.epoch_started = time.monotonic()
        self.stop_reason: str | None = None

    def check_stop(self) -> None:
        if (self.run_dir / run_layout.STOP_FLAG).exists():
            self.stop_reason = self.stop_reason or "stop requested"
            raise StopRequested(self.stop_reason)

    def check_finite(self, logs: dict[str, Any], *keys: str) -> None:
        for key in keys:
            value = finite_or_none(logs.get(key))
            if value is not None and not math.isfinite(value):
                self._write()  # the history up to here, for the page and for `runs`
                raise TrainingDiverged(self.epoch + 1, self.step, value)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.check_stop()
        self.epoch = epoch
        self.step = 0
        self.epoch_started = time.monotonic()
        self.clock.start_epoch()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.clock.step_done()
        self.step = batch + 1
        self.check_finite(logs, "loss")
        first_step = not self.epochs_log and not self.batches_log
        if self.step % self.point_every == 0 or first_step:
            self.batches_log.append(
                {
                    "epoch": round(self.epoch + self.step / self.steps_per_epoch, 4),
                    "loss": finite_or_none(logs.get("loss")),
                    "accuracy": finite_or_none(logs.get("accuracy")),
                }
            )
        if first_step or time.monotonic() - self.last_write >= PROGRESS_INTERVAL_S:
            self._write()
        self.check_stop()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.clock.epoch_done()
        self.check_finite(logs, "loss", "val_loss")
        row = {"epoch": epoch + 1, **{key: finite_or_none(value) for key, value in logs.items()}}
        row["lr"] = finite_or_none(self.model.optimizer.learning_rate)
        row["epoch_time_s"] = round(time.monotonic() - self.epoch_started, 2)
        self.epochs_log.append(row)
        self.step = self.steps_per_epoch
        self._write(epoch_done=True)

    def _write(self, epoch_done: bool = False) -> None:
        self.last_write = time.monotonic()
        write_json_atomically(
            self.run_dir / run_layout.HISTORY_JSON, {"epochs": self.epochs_log, "batches": self.batches_log}
        )
        if epoch_done:
            write_text_atomically(self.run_dir / run_layout.HISTORY_CSV, runs.history_to_csv(self.epochs_log))
        epochs_left = self.epochs - self.epoch - (1 if epoch_done else 0)
        progress = progress_estimate(
            self.clock.seconds_per_step,
            self.clock.validation_s or 0.0,
            steps_per_epoch=self.steps_per_epoch,
            epochs_left=epochs_left,
            steps_left=max(0, epochs_left * self.steps_per_epoch - (0 if epoch_done else self.step)),
        )
        runs.update_status(
            self.run_dir,
            state=RunState.RUNNING,
            phase=RunPhase.TRAINING,
            epoch=self.epoch + 1,
            epochs=self.epochs,
            step=self.step,
            steps=self.steps_per_epoch,
            epochs_done=len(self.epochs_log),
            elapsed_s=runs.Run(self.run_dir).elapsed_seconds(),
            **progress,
        )


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves last.keras after every epoch and best.keras when val_accuracy improves, both atomically,
    then checkpoint.json saying which epoch they hold (what ``resume`` starts from). With
    ``keep_last``, the models of the last ``keep_last`` epochs trained are kept as
    ``snapshots/epoch-NNN.keras``, for weight averaging (``python -m training average``): every epoch
    is saved and older snapshots removed, so a run that early stopping ends keeps its last ones too."""

    def __init__(self, run_dir: Path, best_so_far: float | None, *, epochs: int = 0, keep_last: int = 0) -> None:
        super().__init__()
        self.run_dir, self.epochs, self.keep_last = run_dir, epochs, keep_last
        self.best = best_so_far
        self.best_epoch = runs.Run(run_dir).checkpoint_info().best_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = finite_or_none((logs or {}).get("val_accuracy"))
        if value is not None and (self.best is None or value > self.best):
            save_model_atomic(self.model, self.run_dir / run_layout.BEST_CHECKPOINT)
            # An export from before a resume is now an older model: without it, the run's model is
            # the new best (Run.model_path) until the run exports again when it stops or finishes.
            for path in served_files(self.run_dir / run_layout.EXPORTED_MODEL):  # with its LiteRT copy and record
                path.unlink(missing_ok=True)
            self.best, self.best_epoch = value, epoch + 1
        if self.keep_last:
            self._snapshot(epoch + 1)
        save_model_atomic(self.model, self.run_dir / run_layout.LAST_CHECKPOINT)
        info = CheckpointInfo(
            epoch=epoch + 1, best_val_accuracy=self.best, best_epoch=self.best_epoch, saved_at=time.time()
        )
        write_json_atomically(self.run_dir / run_layout.CHECKPOINT_INFO, info.to_json())
        runs.update_status(self.run_dir, best_val_accuracy=self.best, best_epoch=self.best_epoch)

    def _snapshot(self, epoch: int) -> None:
        """Save ``snapshots/epoch-NNN.keras`` for ``epoch`` (from 1), then remove the snapshots that are no
        longer among the last ``keep_last`` (and any of later epochs: a resume from an earlier epoch)."""
        folder = self.run_dir / run_layout.SNAPSHOTS_DIR
        folder.mkdir(exist_ok=True)
        save_model_atomic(self.model, folder / f"epoch-{epoch:03d}.keras")
        for number, path in runs.snapshot_epochs(folder).items():
            if not epoch - self.keep_last < number <= epoch:
                path.unlink(missing_ok=True)
