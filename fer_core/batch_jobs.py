"""The app's batch jobs: each job a folder in the jobs folder, started as ``python -m fer_core batch`` in
the background (as a training is started), so it outlives a reload of the page and the page only reads
its files. One job runs at a time.

    job = start_job(["/data/sessions"], BatchSettings(fps=5), workers=2)   # a new folder, a started process
    job.status()              # "starting", "running", "finished", "stopped", "failed", "interrupted"
    stop_job(job); resume_job(job); delete_job(job)

A job folder::

    jobs/20261204-161500-sessions/
      launch.json     what was started: the inputs, the settings, the workers, the process (pid, time)
      batch.log       the command's output (its last ``error:`` line says why a job could not start)
      input/          uploaded files, extracted safely (:func:`save_uploads`); absent for a folder input
      results/        the batch job folder of :mod:`fer_core.batch` (job.json, parts/, *.parquet)

The jobs folder is ``$FER_JOBS_DIR``, else ``jobs/`` beside the runs folder. Nothing here imports
Streamlit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_core.batch import (
    STOP_FILE,
    BatchError,
    BatchSettings,
    JobRecord,
    batch_command,
    is_job_running,
    read_job,
    request_stop,
)
from fer_core.errors import FerError
from fer_core.files import write_text_atomically
from fer_core.settings import PROJECT_ROOT, default_runs_dir

JOBS_ENV = "FER_JOBS_DIR"
LAUNCH_FILE = "launch.json"
LOG_FILE = "batch.log"
INPUT_DIR = "input"
RESULTS_DIR = "results"
LAUNCH_LOCK = ".launch.lock"
TRASH_PREFIX = ".trash-"
MAX_UPLOAD_FILES = 20_000  # files one upload (several files, or a zip's members) may bring
MAX_UPLOAD_BYTES = 4 * 1024**3  # bytes they may add up to, once extracted
ACTIVE_STATES = ("starting", "running")


class JobBusyError(BatchError):
    """A batch job is already running: one at a time."""


class UploadError(FerError):
    """Uploaded files that cannot be used (an unsafe or damaged zip, too many files, too large)."""


def default_jobs_dir() -> Path:
    """``$FER_JOBS_DIR``, else ``jobs/`` beside the runs folder."""
    configured = os.environ.get(JOBS_ENV)
    return Path(configured).expanduser() if configured else default_runs_dir().parent / "jobs"


@dataclass(frozen=True)
class Job:
    """A job folder of the jobs folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def results(self) -> Path:
        return self.path / RESULTS_DIR

    @property
    def inputs_dir(self) -> Path:
        return self.path / INPUT_DIR

    def launch(self) -> dict[str, Any]:
        """launch.json ({} when it cannot be read)."""
        try:
            data = json.loads((self.path / LAUNCH_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record(self) -> JobRecord | None:
        """The batch's job.json (None before the process has written it); RecordError when damaged."""
        return read_job(self.results)

    def status(self) -> str:
        """``starting`` (launched, no job.json yet), ``running``, ``finished``, ``stopped``, ``failed`` or
        ``interrupted`` (job.json says running, but no process holds the job: killed, or the machine stopped)."""
        from fer_core.records import RecordError

        if is_job_running(self.results):
            return "running"
        try:
            record = self.record()
        except RecordError:
            record = None
        launch = self.launch()
        launched_at = float(launch.get("launched_at") or 0.0)
        if record is not None and record.state != "running" and (record.updated_at or 0.0) >= launched_at:
            return record.state  # ended after the last launch (its process may still be exiting)
        if _process_alive(launch.get("pid")):
            return "starting"  # launched; not holding the job yet (listing the inputs, loading the model)
        if record is not None:
            return "interrupted" if record.state == "running" else record.state
        if (self.results / STOP_FILE).exists():
            return "stopped"  # stopped while starting, before it wrote job.json (the command clears STOP then)
        return "failed"

    def log_error(self) -> str | None:
        """The last ``error: ...`` line of batch.log (why the command refused to start), else None."""
        try:
            lines = (self.path / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
        if errors:
            return errors[-1]
        tail = [line for line in lines if line.strip() and not line.startswith("$ ")]
        return tail[-1].strip() if tail else None

    @property
    def is_active(self) -> bool:
        return self.status() in ACTIVE_STATES


def list_jobs(jobs_dir: Path | None = None) -> list[Job]:
    """The jobs of ``jobs_dir``, newest first (folders with a launch.json)."""
    folder = jobs_dir or default_jobs_dir()
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    jobs = [Job(child) for child in children if not child.name.startswith(".") and (child / LAUNCH_FILE).is_file()]
    return sorted(jobs, key=lambda job: job.name, reverse=True)


def active_job(jobs_dir: Path | None = None) -> Job | None:
    return next((job for job in list_jobs(jobs_dir) if job.is_active), None)


@contextlib.contextmanager
def launch_lock(jobs_dir: Path) -> Iterator[None]:
    """Held while checking that no job runs and starting one (or deleting one)."""
    import fcntl

    jobs_dir.mkdir(parents=True, exist_ok=True)
    with (jobs_dir / LAUNCH_LOCK).open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_job(label: str, jobs_dir: Path | None = None) -> Job:
    """A new, empty job folder named by the time and ``label`` (letters, digits, ``-_``)."""
    folder = jobs_dir or default_jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:40] or "job"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        path = folder / (f"{stamp}-{slug}" if suffix == 0 else f"{stamp}-{slug}-{suffix}")
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            return Job(path)
    raise BatchError(f"could not create a new job folder in {folder}")


def start_job(
    job: Job, inputs: Sequence[str | os.PathLike[str]], settings: BatchSettings, *, workers: int | None = None
) -> Job:
    """Start ``python -m fer_core batch INPUTS --out JOB/results`` in the background for ``job`` (a folder
    from :func:`new_job`, its uploads already saved). Raises :class:`JobBusyError` while another job runs."""
    with launch_lock(job.path.parent):
        busy = next((other for other in list_jobs(job.path.parent) if other != job and other.is_active), None)
        if busy is not None:
            raise JobBusyError(f"job {busy.name} is still running. One job at a time: stop it or wait for it to end")
        _write_launch(
            job, {"inputs": [str(item) for item in inputs], "settings": settings.to_json(), "workers": workers}
        )
        _spawn(job)
    return job


def resume_job(job: Job) -> Job:
    """Run a stopped, failed or interrupted job again: what is done is kept, the rest is analysed."""
    launch = job.launch()
    if not launch.get("inputs"):
        raise BatchError(f"job {job.name} cannot be resumed: its {LAUNCH_FILE} cannot be read")
    with launch_lock(job.path.parent):
        busy = next((other for other in list_jobs(job.path.parent) if other.is_active), None)
        if busy is not None:
            raise JobBusyError(f"job {busy.name} is still running. One job at a time: stop it or wait for it to end")
        if job.status() == "finished":
            raise BatchError(f"job {job.name} has already finished")
        _spawn(job)
    return job


def job_command(job: Job) -> list[str]:
    launch = job.launch()
    settings = BatchSettings.from_json(launch.get("settings") or {})
    return batch_command(launch["inputs"], job.results, settings, workers=launch.get("workers"))


def _spawn(job: Job) -> None:
    job.results.mkdir(parents=True, exist_ok=True)
    (job.results / STOP_FILE).unlink(missing_ok=True)
    command = job_command(job)
    environment = dict(os.environ)
    paths = [str(PROJECT_ROOT), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment["PYTHONUNBUFFERED"] = "1"
    with (job.path / LOG_FILE).open("ab") as log:
        log.write(("$ " + " ".join(command) + "\n").encode("utf-8", "replace"))
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl+C or crash of the app does not reach the job
        )
    threading.Thread(target=process.wait, name=f"reap-batch-{process.pid}", daemon=True).start()
    _write_launch(job, {**job.launch(), "pid": process.pid, "launched_at": time.time()})


def _write_launch(job: Job, data: dict[str, Any]) -> None:
    write_text_atomically(job.path / LAUNCH_FILE, json.dumps(data, indent=2))


def _process_alive(pid: Any) -> bool:
    """Whether ``pid`` is a live ``fer_core`` process (not a zombie, not an unrelated process given the pid)."""
    if not isinstance(pid, int) or pid < 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            if handle.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"fer_core" in handle.read()
    except (OSError, IndexError):
        return True


def stop_job(job: Job) -> None:
    """Ask the job to stop (it drops the units in flight; Resume carries on from there)."""
    job.results.mkdir(parents=True, exist_ok=True)
    request_stop(job.results)
    pid = job.launch().get("pid")
    if isinstance(pid, int) and not is_job_running(job.results) and _process_alive(pid):
        # Still starting: it clears an old STOP file when it takes the job, so it is told by signal, which
        # the command turns into a clean stop (job.json "stopped").
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


def delete_job(job: Job) -> None:
    """Delete the job folder (its uploads and results; never a folder input). Refused while it runs."""
    if job.path.is_symlink() or not (job.path / LAUNCH_FILE).is_file():
        raise BatchError(f"{job.path} is not a job folder")
    with launch_lock(job.path.parent):
        if job.is_active:
            raise BatchError(f"job {job.name} is running: stop it first")
        trash = job.path.with_name(f"{TRASH_PREFIX}{job.name}-{time.time_ns()}")
        job.path.rename(trash)  # atomic: the job is listed whole or gone
    shutil.rmtree(trash, ignore_errors=True)


# --- uploads


def safe_name(name: str) -> str:
    """A file name from an upload (any folders in it dropped): letters, digits, ``-_.`` and spaces kept."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^\w\-. ]", "_", base, flags=re.ASCII).strip(" .")
    return cleaned[:120] or "file"


def save_uploads(uploads: Iterable[tuple[str, bytes]], folder: Path) -> list[Path]:
    """Write uploaded files into ``folder``; a ``.zip`` is extracted into a subfolder of its name.
    Refuses (:class:`UploadError`, naming the file) zip members with absolute paths or ``..``, links,
    more than :data:`MAX_UPLOAD_FILES` files or :data:`MAX_UPLOAD_BYTES` bytes in all. Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    budget = [MAX_UPLOAD_BYTES]
    for name, data in uploads:
        if name.lower().endswith(".zip"):
            written += _extract_zip(name, data, _unique(folder / Path(safe_name(name)).stem), budget, len(written))
        else:
            _spend(budget, len(data), name)
            target = _unique(folder / safe_name(name))
            target.write_bytes(data)
            written.append(target)
        if len(written) > MAX_UPLOAD_FILES:
            raise UploadError(f"more than {MAX_UPLOAD_FILES:,} files were uploaded: upload fewer, or use a folder")
    return written


def _spend(budget: list[int], size: int, name: str) -> None:
    budget[0] -= size
    if budget[0] < 0:
        raise UploadError(
            f"{name}: the upload adds up to more than {MAX_UPLOAD_BYTES / 1024**3:.0f} GB once extracted; "
            "analyse such data from a folder under the data roots instead"
        )


def _unique(path: Path) -> Path:
    candidate, number = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
    return candidate


def _extract_zip(name: str, data: bytes, target: Path, budget: list[int], count: int) -> list[Path]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as error:
        raise UploadError(f"{name} is not a zip file that can be read ({error})") from None
    written: list[Path] = []
    with archive:
        members = [member for member in archive.infolist() if not member.is_dir()]
        if count + len(members) > MAX_UPLOAD_FILES:
            raise UploadError(f"{name} holds {len(members):,} files; at most {MAX_UPLOAD_FILES:,} may be uploaded")
        for member in members:
            parts = member.filename.replace("\\", "/").split("/")
            if member.filename.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", member.filename):
                raise UploadError(f"{name}: the member {member.filename!r} points outside the zip's folder; refused")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise UploadError(f"{name}: the member {member.filename!r} is a symbolic link; refused")
            if any(part.startswith(".") for part in parts if part) or parts[0] == "__MACOSX":
                continue  # hidden files and macOS resource forks: not data
            _spend(budget, member.file_size, name)
            destination = target.joinpath(*(safe_name(part) for part in parts if part))
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as source, destination.open("wb") as sink:
                    copied = 0
                    while chunk := source.read(1 << 20):
                        copied += len(chunk)
                        if copied > member.file_size:  # more than it declared: refused as damaged
                            raise UploadError(f"{name}: the member {member.filename!r} is larger than it says")
                        sink.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as error:
                raise UploadError(f"{name}: the member {member.filename!r} cannot be extracted ({error})") from None
            written.append(destination)
    return written
