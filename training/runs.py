"""The run folder: one per training run, readable while the trainer writes it.

Every file is written atomically (temporary file, then ``os.replace``), so a reader polling
during training never sees half a file. A run whose trainer process is gone while its status
still says running is reported as failed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

try:  # POSIX: status updates from the launcher and the trainer are serialised with flock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from fer_core.errors import ModelLoadError
from fer_core.files import write_json_atomically
from fer_core.records import RecordError, read_record
from fer_core.run_layout import (
    BEST_CHECKPOINT,
    CHECKPOINT_INFO,
    CONFIG_FILE,
    HISTORY_JSON,
    LAST_CHECKPOINT,
    LOG_FILE,
    METRICS_FILE,
    MISCLASSIFIED_FILE,
    MODEL_FILES,
    STATUS_FILE,
    STATUS_LOCK,
    STOP_FLAG,
    SUMMARY_FILE,
    TRASH_PREFIX,
)
from training.model_files import check_keras_file
from training.records import (
    CheckpointInfo,
    History,
    Mistakes,
    RunConfig,
    RunMetrics,
    RunPhase,
    RunState,
    RunStatus,
    check_status_changes,
)

UNREADABLE = "unreadable"  # the state shown for a run whose files are broken or of the wrong type


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, held on ``path`` (created if missing) for the block."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def status_lock(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise read-modify-write of status.json between processes (the launcher and the trainer)."""
    return file_lock(run_dir / STATUS_LOCK)


def update_status(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into status.json (atomically, under the status lock). Returns the new status.
    Each change names a :class:`~training.records.RunStatus` field (another raises ``TypeError``); None
    clears one."""
    check_status_changes(changes)
    with status_lock(run_dir):
        status = _read_or_empty(run_dir / STATUS_FILE)
        status.update(changes, updated_at=time.time())
        write_json_atomically(run_dir / STATUS_FILE, status)
    return status


@contextlib.contextmanager
def phase(run_dir: Path, name: RunPhase, **facts: Any) -> Iterator[None]:
    """A step of the run: its status says ``name`` (and ``facts``, more status fields) while it runs,
    so the Training page can say what the trainer is doing."""
    update_status(run_dir, phase=name, **facts)
    yield


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class ProcessIdentity(TypedDict):
    pid: int
    pid_started: int | None


def process_identity(pid: int) -> ProcessIdentity:
    """Status fields that name a process: its pid, and its start time, which a reused pid does not share."""
    return {"pid": pid, "pid_started": process_start_ticks(pid)}


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether process ``pid`` runs; with ``started`` (from :func:`process_identity`), whether it is
    still the same process, not a later one that was given the same pid (after a restart, say)."""
    if not pid or pid < 1:  # 0 and negative pids name process groups, never one trainer
        return False
    if started is not None and process_start_ticks(pid) not in (None, started):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class ResumePoint(NamedTuple):
    """Where a resumed run starts: the checkpoint to load (None: from scratch), the epochs it holds,
    the history cut back to them, and what to tell the user when it is not the last epoch's."""

    checkpoint: Path | None
    epoch: int
    history: History
    note: str | None = None


@dataclass(frozen=True)
class Run:
    """A read-only view of one run folder. Each reader parses its file into a typed record and
    raises :class:`~training.records.RecordError` when the file is broken or of the wrong type;
    :meth:`summary` never raises (it says "unreadable" instead)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> RunConfig:
        data = read_record(self.path / CONFIG_FILE)
        if data is None:
            raise RecordError(f"{self.path} is not a run folder (no {CONFIG_FILE})")
        return RunConfig.from_json(data)

    def status(self) -> RunStatus:
        """The status, with a dead trainer's "queued"/"running" turned into "failed" (with the reason),
        or into "stopped" when a stop had been asked for (a SIGTERM that came before the trainer was
        ready to handle it ends the process at once)."""
        data = read_record(self.path / STATUS_FILE)
        status = RunStatus() if data is None else RunStatus.from_json(data)
        if status.is_active and not pid_alive(status.pid, status.pid_started):
            if (self.path / STOP_FLAG).exists():
                reason = status.stop_reason or "stopped before training began"
                return dataclasses.replace(status, state=RunState.STOPPED, stop_reason=reason)
            reason = status.error or (
                f"the trainer process (pid {status.pid}) ended without finishing: it was killed or crashed"
            )
            last_error = _last_error_line(self.path / LOG_FILE)
            if last_error and last_error not in reason:
                reason += f" ({last_error})"
            return dataclasses.replace(status, state=RunState.FAILED, error=reason)
        return status

    @property
    def is_active(self) -> bool:
        """Whether its trainer is alive (a run whose status cannot be read is not)."""
        try:
            return self.status().is_active
        except RecordError:
            return False

    def history(self) -> History:
        data = read_record(self.path / HISTORY_JSON)
        return History() if data is None else History.from_json(data)

    def metrics(self) -> RunMetrics | None:
        """The held-out evaluation, or None before the run has finished."""
        data = read_record(self.path / METRICS_FILE)
        return None if data is None else RunMetrics.from_json(data)

    def model_path(self) -> Path | None:
        """The model to use from this run: the float32 export, else the best checkpoint (a new best
        checkpoint removes the export, so the export is never older than it)."""
        for name in MODEL_FILES:
            if (self.path / name).is_file():
                return self.path / name
        return None

    def checkpoint_info(self) -> CheckpointInfo:
        """Which epoch last.keras holds and the best so far (epoch 0 before any checkpoint)."""
        data = read_record(self.path / CHECKPOINT_INFO)
        return CheckpointInfo() if data is None else CheckpointInfo.from_json(data)

    def request_stop(self) -> None:
        (self.path / STOP_FLAG).touch()

    def stop_requested_at(self) -> float | None:
        """When a stop was asked for (the STOP flag's time), or None: none asked for, or the trainer
        has taken the request already."""
        try:
            return (self.path / STOP_FLAG).stat().st_mtime
        except FileNotFoundError:
            return None

    def mistakes(self) -> Mistakes | None:
        """The held-out faces its model got most confidently wrong, or None before the run has been
        evaluated; a file that cannot be used raises :class:`~fer_core.records.RecordError`."""
        path = self.path / MISCLASSIFIED_FILE
        return Mistakes.from_npz(path) if path.is_file() else None

    def model_summary(self) -> str | None:
        """The network's layers as Keras prints them, or None before the model is built."""
        try:
            return (self.path / SUMMARY_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:  # not written yet, or unreadable: nothing to show
            return None

    @property
    def log_path(self) -> Path:
        """The trainer's output (stdout and stderr of its process)."""
        return self.path / LOG_FILE

    def can_resume(self) -> bool:
        """Whether the run has a checkpoint of a completed epoch to go on from."""
        return (self.path / LAST_CHECKPOINT).is_file()

    def resume_point(self) -> ResumePoint:
        """Where ``resume`` starts: the last epoch's checkpoint, with the history cut back to the epochs it
        holds (a crash between the history write and the checkpoint write leaves history one epoch
        ahead). When last.keras is unreadable (truncated, say), best.keras and its epoch, and a note that
        says so. Neither usable raises :class:`~fer_core.errors.ModelLoadError` saying what to do."""
        last = self.path / LAST_CHECKPOINT
        if not last.exists():
            return ResumePoint(None, 0, History())
        history = self.history()
        info = self.checkpoint_info()
        try:
            check_keras_file(last)
        except ModelLoadError as last_problem:
            return self._best_resume_point(last_problem, history, info)
        done = info.epoch or len(history.epochs)
        return ResumePoint(last, done, history.up_to(done))

    def _best_resume_point(self, last_problem: ModelLoadError, history: History, info: CheckpointInfo) -> ResumePoint:
        best = self.path / BEST_CHECKPOINT
        try:
            check_keras_file(best)
        except ModelLoadError as best_problem:
            raise ModelLoadError(
                f"cannot resume run {self.name}: {last_problem}, and the best checkpoint cannot be used "
                f"either ({best_problem}). Start a new run (its settings can be copied from this one)"
            ) from None
        if not info.best_epoch:
            raise ModelLoadError(
                f"cannot resume run {self.name}: {last_problem}, and {CHECKPOINT_INFO} does not say "
                "which epoch best.keras holds. Start a new run"
            ) from None
        note = (
            f"{LAST_CHECKPOINT} is unreadable ({last_problem}); resumed from {BEST_CHECKPOINT}, "
            f"the best epoch ({info.best_epoch}), instead of epoch {info.epoch or len(history.epochs)}"
        )
        return ResumePoint(best, info.best_epoch, history.up_to(info.best_epoch), note)

    def elapsed_seconds(self) -> float:
        """Seconds this run has spent in a trainer, over all its sessions (a resumed run adds up)."""
        status = self.status()
        session = time.time() - (status.session_started_at or time.time())
        return round((status.elapsed_before_s or 0.0) + session, 1)

    def snapshot(self) -> RunSnapshot:
        """Every file of the run read once, at one moment: what a page shows in all its panels, so
        that they agree. Never raises: a broken file gives a snapshot whose ``problem`` says why."""
        try:
            return RunSnapshot(
                run=self,
                status=self.status(),
                config=self.config(),
                history=self.history(),
                metrics=self.metrics(),
                checkpoint=self.checkpoint_info(),
            )
        except RecordError as error:
            return RunSnapshot(run=self, problem=str(error))

    def summary(self) -> RunSummary:
        """One row of the runs table; a run whose files are broken gives an "unreadable" row with the
        reason. Never raises."""
        return self.snapshot().summary


@dataclass(frozen=True)
class RunSnapshot:
    """A run's files as read at one moment (see :meth:`Run.snapshot`). When ``problem`` is set, the
    run is unreadable and the records hold their empty defaults."""

    run: Run
    status: RunStatus = dataclasses.field(default_factory=RunStatus)
    config: RunConfig | None = None
    history: History = dataclasses.field(default_factory=History)
    metrics: RunMetrics | None = None
    checkpoint: CheckpointInfo = dataclasses.field(default_factory=CheckpointInfo)
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def is_active(self) -> bool:
        return self.problem is None and self.status.is_active

    @property
    def epochs_done(self) -> int:
        """Completed epochs: the history's, or the status's while training (written after the history)."""
        done = len(self.history.epochs)
        if self.status.is_active and self.status.epochs_done is not None:
            done = max(done, self.status.epochs_done)
        return done

    @property
    def summary(self) -> RunSummary:
        if self.problem is not None or self.config is None:
            return RunSummary.unreadable(self.name, self.problem or f"no {CONFIG_FILE}")
        settings, status = self.config.settings, self.status
        return RunSummary(
            name=self.name,
            state=status.state,
            arch=settings.arch,
            data=settings.data,
            epochs_done=self.epochs_done,
            epochs=settings.epochs,
            best_val_accuracy=_best(self.history.best_val_accuracy, status.best_val_accuracy),
            val_accuracy=self.metrics.kept_val_accuracy if self.metrics else None,
            test_accuracy=self.metrics.accuracy if self.metrics else None,
            duration_s=status.duration_s,
            started_at=status.started_at or status.created_at,
            error=status.error,
            diverged=status.diverged,
        )


def _best(*values: float | None) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs table (the CLI's ``runs`` and the Training page)."""

    name: str
    state: str  # a run state, "unknown", or "unreadable" (``problem`` says why)
    arch: str | None = None
    data: str | None = None
    epochs_done: int = 0
    epochs: int | None = None
    best_val_accuracy: float | None = None  # the best epoch's, as measured while training
    val_accuracy: float | None = None  # the kept model's (after batch-norm re-estimation), once finished
    test_accuracy: float | None = None
    duration_s: float | None = None
    started_at: float | None = None
    error: str | None = None
    diverged: bool = False
    problem: str | None = None  # why the run's files cannot be read

    @classmethod
    def unreadable(cls, name: str, problem: str) -> RunSummary:
        return cls(name=name, state=UNREADABLE, problem=problem)

    @property
    def state_text(self) -> str:
        """``finished``, or ``unreadable: <reason>``."""
        return f"{UNREADABLE}: {self.problem}" if self.problem else self.state


def _read_or_empty(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` for a read-modify-write (anything else: start afresh)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# "SomeError: message" from a traceback, or "error: message" from the command line
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b|error: ).*")


def _last_error_line(path: Path, max_bytes: int = 20_000) -> str | None:
    """The last ``SomeError: message`` line of a log (never the traceback around it), if any."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.strip().splitlines()):
        if _ERROR_LINE.match(line.strip()):
            return line.strip()[:300]
    return None


def list_runs(runs_dir: Path) -> list[Run]:
    """Every run folder (one holding a config.json), newest first."""
    try:
        children = list(runs_dir.iterdir())
    except OSError:  # no runs folder yet, or one that cannot be listed
        return []
    runs = [
        Run(child)
        for child in children
        if not child.name.startswith(TRASH_PREFIX) and (child / CONFIG_FILE).is_file()  # not one being deleted
    ]
    return sorted(runs, key=lambda run: run.name, reverse=True)


def active_run(runs_dir: Path) -> Run | None:
    """The run whose trainer is alive, if any (one training at a time on a 2-core machine). A run
    whose status cannot be read is not active."""
    for run in list_runs(runs_dir):
        if run.is_active:
            return run
    return None


def new_run_dir(runs_dir: Path, arch: str, *, now: float | None = None) -> Path:
    """A new, empty folder for a run of ``arch``, named by the moment ``now`` (the clock's time when
    None) to the second, with a suffix when another run took that second."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    for suffix in range(100):
        candidate = runs_dir / f"{stamp}-{arch}" if suffix == 0 else runs_dir / f"{stamp}-{arch}-{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a new run folder in {runs_dir}")


def snapshot_epochs(folder: Path) -> dict[int, Path]:
    """The ``epoch-NNN.keras`` snapshots in ``folder`` (a run's snapshots/), by epoch, oldest first."""
    found: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for path in folder.glob("epoch-*.keras"):
            number = path.stem.removeprefix("epoch-")
            if number.isdigit():
                found[int(number)] = path
    return dict(sorted(found.items()))


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``: counts as the CLI and the page write them."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def history_to_csv(epochs: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in epochs:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(epochs)
    return buffer.getvalue()
