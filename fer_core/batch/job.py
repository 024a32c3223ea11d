"""A job seen from outside: ``job.json`` as a :class:`JobRecord`, the progress a caller is sent and the
summary it gets back, the lock that says a job runs in a folder, the STOP request, the command line that
starts a job, and the fingerprint that says whether an earlier run's parts still hold."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fer_core.batch.settings import JOB_FILE, LOCK_FILE, STATES, STOP_FILE, BatchError, BatchSettings, ModelFiles
from fer_core.errors import FerError


@dataclass(frozen=True)
class JobRecord:
    """``job.json`` as a typed record (see :mod:`fer_core.batch` for the file)."""

    state: str
    error: str | None = None
    message: str | None = None
    pid: int | None = None
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    inputs: tuple[str, ...] = ()
    engine: str = "local"
    workers: int = 1
    address: str | None = None
    settings: BatchSettings = field(default_factory=BatchSettings)
    fingerprint: str = ""
    model_path: str = ""
    model_sha256: str = ""
    detector_sha256: str = ""
    files_total: int = 0
    files_done: int = 0
    files_errors: int = 0
    files_skipped: int = 0
    units_total: int = 0
    units_done: int = 0
    frames: int = 0
    faces: int = 0
    work_total: float = 0.0
    work_done: float = 0.0
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    teardown_s: float = 0.0  # stopping a Ray this job started (ray.shutdown)
    job_peak_rss_mb: float = 0.0  # the job process's peak resident memory
    worker_peak_rss_mb: float = 0.0  # the largest worker's (local processes or Ray actors), as they report it
    frames_per_s: float = 0.0
    photos_per_s: float = 0.0
    eta_s: float | None = None

    @property
    def progress(self) -> float:
        """0-1, by work (a photo counts 1, a video segment its frames to analyse)."""
        return (
            min(1.0, self.work_done / self.work_total)
            if self.work_total
            else (1.0 if self.state == "finished" else 0.0)
        )

    @classmethod
    def from_json(cls, data: Any, where: str = JOB_FILE) -> JobRecord:
        from fer_core.records import Fields, RecordError

        job = Fields(data, where)
        state = job.text("state") or "running"
        if state not in STATES:
            raise RecordError(f"{where}: state must be one of {', '.join(STATES)}, got {state!r}")
        model = Fields(job.data.get("model") or {}, f"{where}: model")
        detector = Fields(job.data.get("detector") or {}, f"{where}: detector")
        files = Fields(job.data.get("files") or {}, f"{where}: files")
        units = Fields(job.data.get("units") or {}, f"{where}: units")
        work = Fields(job.data.get("work") or {}, f"{where}: work")
        timings = Fields(job.data.get("timings") or {}, f"{where}: timings")
        memory = Fields(job.data.get("memory") or {}, f"{where}: memory")
        try:
            settings = BatchSettings.from_json(job.data.get("settings") or {})
        except (FerError, TypeError) as error:
            raise RecordError(f"{where}: settings: {error}") from None
        return cls(
            state=state,
            error=job.text("error"),
            message=job.text("message"),
            pid=job.integer("pid"),
            started_at=job.number("started_at"),
            updated_at=job.number("updated_at"),
            finished_at=job.number("finished_at"),
            inputs=tuple(str(item) for item in job.rows("inputs")),
            engine=job.text("engine") or "local",
            workers=job.integer("workers") or 1,
            address=job.text("address"),
            settings=settings,
            fingerprint=job.text("fingerprint") or "",
            model_path=model.text("path") or "",
            model_sha256=model.text("sha256") or "",
            detector_sha256=detector.text("sha256") or "",
            files_total=files.integer("total") or 0,
            files_done=files.integer("done") or 0,
            files_errors=files.integer("errors") or 0,
            files_skipped=files.integer("skipped") or 0,
            units_total=units.integer("total") or 0,
            units_done=units.integer("done") or 0,
            frames=job.integer("frames") or 0,
            faces=job.integer("faces") or 0,
            work_total=work.number("total") or 0.0,
            work_done=work.number("done") or 0.0,
            elapsed_s=timings.number("elapsed_s") or 0.0,
            startup_s=timings.number("startup_s") or 0.0,
            teardown_s=timings.number("teardown_s") or 0.0,
            frames_per_s=timings.number("frames_per_s") or 0.0,
            photos_per_s=timings.number("photos_per_s") or 0.0,
            eta_s=timings.number("eta_s"),
            job_peak_rss_mb=memory.number("job_peak_rss_mb") or 0.0,
            worker_peak_rss_mb=memory.number("worker_peak_rss_mb") or 0.0,
        )


class BatchProgress(NamedTuple):
    """What the ``progress`` callback of :func:`analyze_batch` receives after each unit and at the end."""

    state: str  # "running", "finished", "stopped"
    files_total: int
    files_done: int  # skipped ones included
    files_errors: int
    units_total: int
    units_done: int
    frames: int
    faces: int
    elapsed_s: float
    frames_per_s: float
    eta_s: float | None
    last_file: str | None


class BatchSummary(NamedTuple):
    """What :func:`analyze_batch` returns."""

    out_dir: Path
    state: str  # "finished" or "stopped"
    files_total: int
    files_ok: int
    files_errors: int
    files_skipped: int  # done by an earlier run of the same job
    frames: int
    faces: int
    elapsed_s: float
    message: str | None  # e.g. "settings changed since the last run: redoing all 12 files"


def read_job(out_dir: str | os.PathLike[str]) -> JobRecord | None:
    """The job in ``out_dir`` (None when there is none yet); :class:`~fer_core.records.RecordError` when
    its ``job.json`` is unreadable. Safe while the job runs (the file is replaced atomically)."""
    from fer_core.records import read_record

    path = Path(out_dir) / JOB_FILE
    data = read_record(path)
    return None if data is None else JobRecord.from_json(data, str(path))


_HELD: set[Path] = set()  # the job folders this process runs a job into


def is_job_running(out_dir: str | os.PathLike[str]) -> bool:
    """Whether a process holds the job folder's lock. It is a POSIX record lock: owned by the job's
    process alone (its forked workers do not inherit it) and released when that process ends, even by
    kill -9."""
    import fcntl

    path = Path(out_dir) / LOCK_FILE
    if path.resolve().parent in _HELD:
        return True
    if not path.exists():
        return False
    with path.open("a+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return False


def request_stop(out_dir: str | os.PathLike[str]) -> None:
    """Ask the job in ``out_dir`` to stop: a STOP file it checks twice a second, and SIGTERM to its process.
    It drops the units in flight and ends with state ``stopped``; running the same job again resumes it."""
    folder = Path(out_dir)
    (folder / STOP_FILE).write_text("stop\n", encoding="utf-8")
    job = read_job(folder)
    if job is not None and job.pid and is_job_running(folder):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(job.pid, signal.SIGTERM)


def batch_command(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings,
    *,
    workers: int | None = None,
    engine: str = "local",
    address: str | None = None,
    csv: bool = False,
) -> list[str]:
    """The ``python -m fer_core batch`` command line for this job (what the Batch page starts)."""
    command = [sys.executable, "-m", "fer_core", "batch", *map(str, inputs), "--out", str(out_dir)]
    command += ["--engine", engine, "--detector", settings.detector, "--threshold", repr(settings.threshold)]
    command += ["--smoothing", repr(settings.smoothing), "--segment-seconds", repr(settings.segment_s)]
    command += ["--max-pixels", str(settings.max_pixels)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if address is not None:
        command += ["--address", address]
    if settings.model is not None:
        command += ["--model", settings.model]
    if settings.min_face is not None:
        command += ["--min-face", str(settings.min_face)]
    if not settings.align:
        command.append("--no-align")
    if settings.fps is not None:
        command += ["--fps", repr(settings.fps)]
    elif settings.every != 1:
        command += ["--every", str(settings.every)]
    if csv:
        command.append("--csv")
    return command


@contextlib.contextmanager
def _job_lock(folder: Path) -> Iterator[None]:
    import fcntl

    if folder.resolve() in _HELD:
        raise BatchError(f"a batch job is already running into {folder}: stop it or wait for it")
    with (folder / LOCK_FILE).open("a+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BatchError(f"a batch job is already running into {folder}: stop it or wait for it") from None
        _HELD.add(folder.resolve())
        try:
            yield
        finally:
            _HELD.discard(folder.resolve())
            fcntl.lockf(handle, fcntl.LOCK_UN)


def _fingerprint(settings: BatchSettings, model: ModelFiles) -> str:
    analysis = {key: value for key, value in settings.to_json().items() if key != "model"}  # the model: by its hash
    text = json.dumps({"settings": analysis, "model": model.sha256, "detector": model.detector_sha256}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _what_changed(previous: JobRecord | None, settings: BatchSettings, model: ModelFiles) -> str:
    """Why an earlier run's parts cannot be kept, in words."""
    if previous is None or not previous.fingerprint:
        return "the job folder has results but no readable job.json"
    changes = []
    if previous.model_sha256 != model.sha256:
        changes.append("the model")
    if previous.detector_sha256 != model.detector_sha256:
        changes.append("the detector")
    old, new = previous.settings.to_json(), settings.to_json()
    names = [name for name in new if name != "model" and old.get(name) != new[name]]
    if names:
        changes.append("the settings (" + ", ".join(names) + ")")
    return (" and ".join(changes) or "the settings") + " changed"
