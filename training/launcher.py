"""Start and stop trainers as separate processes, so the app stays responsive and outlives a crash.

    run = start_training(TrainConfig(data="demo", arch="tiny", epochs=3))
    ...                       # run.status(), run.history() while it trains
    stop_run(run)             # STOP flag + SIGTERM: ends after the current step
    delete_run(run)           # never the running run, nor the one whose model is promoted

The run folder is created here, before the trainer starts, so the caller knows it at once. Only
one training runs at a time per runs folder: a second start raises :class:`TrainingBusyError`.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fer_core import run_layout
from fer_core.errors import FileWriteError
from fer_core.records import RecordError
from fer_core.settings import PROJECT_ROOT
from training import runs
from training.config import TrainConfig
from training.records import RunState

LAUNCH_LOCK = ".launch.lock"


class TrainingBusyError(ValueError):
    """A training is already running in this runs folder."""

    def __init__(self, run: runs.Run) -> None:
        try:
            status = run.status()
            where = f"epoch {status.epoch}/{status.epochs}" if status.epoch else status.state
        except RecordError:
            where = "status unreadable"
        super().__init__(
            f"run {run.name} is still training ({where}). One training at a time: "
            "stop it or wait for it to finish, then start the next."
        )
        self.run = run


def launch_lock(runs_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Held while checking that no training runs and starting one (or deleting a run): two clicks on
    Start in two tabs, or the app and the command line, at the same moment: only one finds it idle."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    return runs.file_lock(runs_dir / LAUNCH_LOCK)


def trainer_environment() -> dict[str, str]:
    """The child's environment: ours, with the project importable and quieter TensorFlow logs."""
    environment = dict(os.environ)
    paths = [str(PROJECT_ROOT), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment["PYTHONUNBUFFERED"] = "1"  # train.log follows the run as it goes
    return environment


def _spawn(arguments: list[str], run_dir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "training", *arguments]
    with (run_dir / run_layout.LOG_FILE).open("ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=trainer_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl+C or crash of the app does not reach the trainer
        )
    # Reap the child when it ends, so it does not linger as a zombie of the app's process.
    threading.Thread(target=process.wait, name=f"reap-trainer-{process.pid}", daemon=True).start()
    return process


def start_training(config: TrainConfig) -> runs.Run:
    """Create the run folder and start ``python -m training train --into RUN_DIR`` in the background."""
    from training.trainer import check_initial_model, create_run

    if config.init_from:  # a model that cannot be started from is refused before a run folder is made
        check_initial_model(config.init_from)
    runs_dir = config.runs_path
    with launch_lock(runs_dir):
        busy = runs.active_run(runs_dir)
        if busy is not None:
            raise TrainingBusyError(busy)

        command = f"python -m training train --into <run folder>  # started from the app, {_describe(config)}"
        run_dir = create_run(config, command=command)
        _launch(["train", "--into", str(run_dir)], run_dir)
    return runs.Run(run_dir)


def resume_training(run: runs.Run) -> runs.Run:
    """Continue a stopped or failed run in the background (``python -m training resume RUN_DIR``)."""
    if run.status().state == RunState.FINISHED:
        raise ValueError(f"run {run.name} has already finished; start a new run to train further")
    with launch_lock(run.path.parent):
        busy = runs.active_run(run.path.parent)
        if busy is not None:
            raise TrainingBusyError(busy)
        (run.path / run_layout.STOP_FLAG).unlink(missing_ok=True)
        runs.update_status(
            run.path, state=RunState.QUEUED, **runs.process_identity(os.getpid()), error=None, stop_reason=None
        )
        _launch(["resume", str(run.path), "--launched"], run.path)
    return run


def _launch(arguments: list[str], run_dir: Path) -> None:
    try:
        process = _spawn(arguments, run_dir)
    except OSError as error:
        runs.update_status(run_dir, state=RunState.FAILED, error=f"could not start the trainer: {error}")
        raise
    # The status names the child from now on; a child that dies before it says "running" is
    # then reported as failed rather than staying queued.
    runs.update_status(run_dir, **runs.process_identity(process.pid), launched_at=time.time())


def _describe(config: TrainConfig) -> str:
    return f"data={config.data} arch={config.arch} epochs={config.epochs} batch_size={config.batch_size}"


def _is_trainer(pid: int) -> bool:
    """Whether ``pid`` still is a trainer (a pid may have been reused by an unrelated process)."""
    if pid == os.getpid():
        return False  # an in-process trainer (tests): the flag file is the only way to stop it
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"training" in handle.read()
    except OSError:
        return runs.pid_alive(pid)  # no /proc: trust the pid


def stop_run(run: runs.Run, *, force: bool = False) -> None:
    """Ask the trainer to stop after its current step (STOP flag and SIGTERM); the best checkpoint
    is kept. ``force`` kills it at once (SIGKILL): for a trainer that no longer responds."""
    run.request_stop()
    try:
        status = run.status()
    except RecordError:
        return  # no pid to trust: the STOP flag alone asks the trainer to stop
    pid = status.pid
    if pid is None or not runs.pid_alive(pid, status.pid_started) or not _is_trainer(pid):
        return
    if force:
        runs.update_status(run.path, stop_reason="force-stopped: the trainer was killed")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)


class PartialDeleteError(OSError):
    """A deleted run is gone from the runs, but some of its files could not be removed."""


def delete_run(run: runs.Run) -> None:
    """Delete a run folder and everything in it. Refused (``ValueError``) for a run that trains, for
    the run whose model the app uses (promoted), and for anything that is not a run folder.

    The folder is first renamed to a trash name beside it (atomic), so the run is either listed whole
    or gone; then its files are removed. A file that cannot be removed leaves the rest of the trash
    folder for the next delete to clear, and raises :class:`PartialDeleteError` naming that file. A
    rename that fails (``OSError`` naming the folder) leaves the run as it was."""
    from training import promote

    path = run.path
    if path.is_symlink() or not run_layout.is_run_folder(path):
        raise ValueError(f"{path} is not a run folder")
    with launch_lock(path.parent):
        if run.is_active:
            raise ValueError(f"run {run.name} is training: stop it first")
        try:
            card = promote.promoted_info()
        except RecordError:
            card = None
        if card is not None and card.run == run.name:
            raise ValueError(
                f"run {run.name} is where the model the app uses comes from: go back to the shipped model "
                "(or promote another run) first"
            )
        _empty_trash(path.parent)  # left by an earlier delete that could not finish
        trash = path.with_name(f"{run_layout.TRASH_PREFIX}{path.name}-{os.getpid()}-{time.time_ns()}")
        try:
            path.rename(trash)
        except OSError as error:
            raise FileWriteError(error.errno, f"could not delete run {run.name}: {path}: {error.strerror}") from None
        failed = _remove_tree(trash)
    if failed:
        where, reason = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise PartialDeleteError(
            f"run {run.name} is deleted, but {where} could not be removed: {reason}{more}. What is left is in "
            f"{trash}, removed at the next delete (or remove it yourself)"
        )


def _remove_tree(path: Path) -> list[tuple[str, str]]:
    """Remove ``path`` and everything under it, as far as possible: the paths that could not be
    removed, each with the reason. Its config.json goes first, so it is no run folder anywhere."""
    failed: list[tuple[str, str]] = []

    def note(_function: object, failed_path: str, excinfo: tuple[type, BaseException, object]) -> None:
        error = excinfo[1]
        failed.append((failed_path, getattr(error, "strerror", None) or str(error)))

    with contextlib.suppress(OSError):
        (path / run_layout.CONFIG_FILE).unlink()
    shutil.rmtree(path, onerror=note)
    return failed


def _empty_trash(runs_dir: Path) -> None:
    """Remove what earlier deletes left in ``runs_dir``'s trash folders (what still cannot be removed stays)."""
    try:
        leftovers = [child for child in runs_dir.iterdir() if child.name.startswith(run_layout.TRASH_PREFIX)]
    except OSError:
        return
    for leftover in leftovers:
        if leftover.is_dir() and not leftover.is_symlink():
            _remove_tree(leftover)
