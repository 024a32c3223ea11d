"""The run folder: one per training run, readable while the trainer writes it.

Every file is written atomically (temporary file, then ``os.replace``), so a reader polling
during training never sees half a file. A run whose trainer process is gone while its status
still says running is reported as failed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
SUMMARY_FILE = "model_summary.txt"
METRICS_FILE = "metrics.json"
BEST_CHECKPOINT = "best.keras"
LAST_CHECKPOINT = "last.keras"
EXPORTED_MODEL = "model.keras"
STOP_FLAG = "STOP"
LOG_FILE = "train.log"

ACTIVE_STATES = frozenset({"queued", "running"})
FINAL_STATES = frozenset({"finished", "failed", "stopped"})


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def pid_alive(pid: int | None) -> bool:
    if not pid:
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
        """The status, with a dead trainer's "running" turned into "failed" (and the reason)."""
        status = _read_or_empty(self.path / STATUS_FILE) or {"state": "unknown"}
        if status.get("state") == "running" and not pid_alive(status.get("pid")):
            status = {
                **status,
                "state": "failed",
                "error": status.get("error")
                or f"the trainer process (pid {status.get('pid')}) ended without finishing: killed or crashed"
                + _log_tail(self.path / LOG_FILE),
            }
        return status

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
        """The model to use from this run: the float32 export, else the best checkpoint."""
        for name in (EXPORTED_MODEL, BEST_CHECKPOINT):
            if (self.path / name).is_file():
                return self.path / name
        return None

    def request_stop(self) -> None:
        (self.path / STOP_FLAG).touch()


def _read_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("; last log lines: " + " | ".join(tail)) if tail else ""


def list_runs(runs_dir: Path) -> list[Run]:
    """Every run folder (one holding a config.json), newest first."""
    if not runs_dir.is_dir():
        return []
    runs = [Run(child) for child in runs_dir.iterdir() if (child / CONFIG_FILE).is_file()]
    return sorted(runs, key=lambda run: run.name, reverse=True)


def active_run(runs_dir: Path) -> Run | None:
    """The run whose trainer is alive, if any (one training at a time on a 2-core machine)."""
    for run in list_runs(runs_dir):
        if run.status().get("state") in ACTIVE_STATES:
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
