"""The run folder: one per training run, readable while the trainer writes it.

Every file is written atomically (temporary file, then ``os.replace``), so a reader polling
during training never sees half a file. A run whose trainer process is gone while its status
still says running is reported as failed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # POSIX: status updates from the launcher and the trainer are serialised with flock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from fer_core.run_layout import (  # noqa: F401  (the names are part of this module's interface)
    BEST_CHECKPOINT,
    CHECKPOINT_INFO,
    CONFIG_FILE,
    EXPORTED_MODEL,
    HISTORY_CSV,
    HISTORY_JSON,
    LAST_CHECKPOINT,
    LOG_FILE,
    METRICS_FILE,
    MISCLASSIFIED_FILE,
    MODEL_FILES,
    SNAPSHOTS_DIR,
    STATUS_FILE,
    STATUS_LOCK,
    STOP_FLAG,
    SUMMARY_FILE,
)

ACTIVE_STATES = frozenset({"queued", "running"})
FINAL_STATES = frozenset({"finished", "failed", "stopped"})


def temporary_path(path: Path) -> Path:
    """A private name beside ``path`` (same folder, so ``os.replace`` is atomic), keeping its suffix."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")


def write_atomic(path: Path, text: str) -> None:
    temporary = temporary_path(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str))


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
    """Merge ``changes`` into status.json (atomically, under the status lock). Returns the new status."""
    with status_lock(run_dir):
        status = _read_or_empty(run_dir / STATUS_FILE)
        status.update(changes, updated_at=time.time())
        write_json(run_dir / STATUS_FILE, status)
    return status


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_identity(pid: int) -> dict[str, Any]:
    """Status fields that name a process: its pid, and its start time, which a reused pid does not share."""
    return {"pid": pid, "pid_started": process_start_ticks(pid)}


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether process ``pid`` runs; with ``started`` (from :func:`process_identity`), whether it is
    still the same process, not a later one that was given the same pid (after a restart, say)."""
    if not pid:
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


@dataclass(frozen=True)
class Run:
    """A read-only view of one run folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> dict[str, Any]:
        return _read_or_empty(self.path / CONFIG_FILE)

    def status(self) -> dict[str, Any]:
        """The status, with a dead trainer's "queued"/"running" turned into "failed" (with the reason),
        or into "stopped" when a stop had been asked for (a SIGTERM that came before the trainer was
        ready to handle it ends the process at once)."""
        status = _read_or_empty(self.path / STATUS_FILE) or {"state": "unknown"}
        if status.get("state") in ACTIVE_STATES and not pid_alive(status.get("pid"), status.get("pid_started")):
            if (self.path / STOP_FLAG).exists():
                reason = status.get("stop_reason") or "stopped before training began"
                return {**status, "state": "stopped", "stop_reason": reason}
            reason = status.get("error") or (
                f"the trainer process (pid {status.get('pid')}) ended without finishing: it was killed or crashed"
            )
            last_error = _last_error_line(self.path / LOG_FILE)
            if last_error and last_error not in reason:
                reason += f" ({last_error})"
            return {**status, "state": "failed", "error": reason}
        return status

    @property
    def is_active(self) -> bool:
        return self.status().get("state") in ACTIVE_STATES

    def history(self) -> dict[str, Any]:
        """``{"epochs": [{epoch, loss, accuracy, val_loss, val_accuracy, lr, ...}], "batches": [...]}``."""
        history = _read_or_empty(self.path / HISTORY_JSON)
        return {"epochs": history.get("epochs", []), "batches": history.get("batches", [])}

    def metrics(self) -> dict[str, Any]:
        return _read_or_empty(self.path / METRICS_FILE)

    def best_val_accuracy(self) -> float | None:
        values = [row["val_accuracy"] for row in self.history()["epochs"] if row.get("val_accuracy") is not None]
        return max(values) if values else None

    def model_path(self) -> Path | None:
        """The model to use from this run: the float32 export, else the best checkpoint (a new best
        checkpoint removes the export, so the export is never older than it)."""
        for name in MODEL_FILES:
            if (self.path / name).is_file():
                return self.path / name
        return None

    def checkpoint_info(self) -> dict[str, Any]:
        """``{"epoch": epochs held by last.keras, "best_val_accuracy", "best_epoch"}`` (empty before any)."""
        return _read_or_empty(self.path / CHECKPOINT_INFO)

    def request_stop(self) -> None:
        (self.path / STOP_FLAG).touch()

    def summary(self) -> RunSummary:
        status = self.status()
        config = self.config()
        settings = config.get("settings", {})
        history = self.history()
        metrics = self.metrics()
        started = status.get("started_at")
        duration = status.get("elapsed_s")
        if duration is None and started is not None:
            duration = (status.get("finished_at") or status.get("updated_at") or started) - started
        return RunSummary(
            name=self.name,
            state=str(status.get("state", "unknown")),
            arch=settings.get("arch"),
            data=settings.get("data"),
            epochs_done=len(history["epochs"]),
            epochs=settings.get("epochs"),
            best_val_accuracy=self.best_val_accuracy(),
            test_accuracy=metrics.get("accuracy"),
            duration_s=float(duration) if duration is not None else None,
            started_at=started or status.get("created_at"),
            error=status.get("error"),
        )


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs table (the CLI's ``runs`` and the Training page)."""

    name: str
    state: str
    arch: str | None
    data: str | None
    epochs_done: int
    epochs: int | None
    best_val_accuracy: float | None
    test_accuracy: float | None
    duration_s: float | None
    started_at: float | None
    error: str | None


def _read_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


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
    if not runs_dir.is_dir():
        return []
    runs = [Run(child) for child in runs_dir.iterdir() if (child / CONFIG_FILE).is_file()]
    return sorted(runs, key=lambda run: run.name, reverse=True)


def active_run(runs_dir: Path) -> Run | None:
    """The run whose trainer is alive, if any (one training at a time on a 2-core machine)."""
    for run in list_runs(runs_dir):
        if run.is_active:
            return run
    return None


def new_run_dir(runs_dir: Path, arch: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(100):
        candidate = runs_dir / f"{stamp}-{arch}" if suffix == 0 else runs_dir / f"{stamp}-{arch}-{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a new run folder in {runs_dir}")


def history_to_csv(epochs: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in epochs:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(epochs)
    return buffer.getvalue()
