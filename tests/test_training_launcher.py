"""Trainers started by the launcher as their own processes: stopped with SIGTERM, killed with -9."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fer_core import run_layout
from fer_core.files import write_json_atomically
from training import launcher, runs
from training.config import TrainConfig

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def long_tiny_run(runs_dir: Path) -> TrainConfig:
    return TrainConfig(
        data="demo", arch="tiny", epochs=50, batch_size=32, max_steps_per_epoch=15, runs_dir=str(runs_dir)
    )


def log_of(run: runs.Run) -> str:
    return (run.path / run_layout.LOG_FILE).read_text(errors="replace")[-3000:]


def test_a_killed_trainer_is_reported_failed_and_blocks_nothing(isolated_runs_dir: Path) -> None:
    run = launcher.start_training(long_tiny_run(isolated_runs_dir))
    assert run.status().is_active  # the folder exists before the trainer is up
    with pytest.raises(launcher.TrainingBusyError, match="One training at a time"):
        launcher.start_training(long_tiny_run(isolated_runs_dir))
    try:
        wait_for(lambda: (run.status().step or 0) >= 1, STARTUP_TIMEOUT_S, "the first training step")
    except AssertionError:
        launcher.stop_run(run, force=True)
        raise AssertionError(log_of(run)) from None
    pid = run.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not runs.pid_alive(pid), 30, "the trainer to die")

    status = run.status()
    assert status.state == "failed"
    assert "killed or crashed" in (status.error or "")
    assert runs.active_run(isolated_runs_dir) is None  # the next training may start


def test_sigterm_stops_a_launched_run_which_resume_then_continues(isolated_runs_dir: Path) -> None:
    run = launcher.start_training(long_tiny_run(isolated_runs_dir))
    try:
        wait_for(lambda: (run.status().epochs_done or 0) >= 1, STARTUP_TIMEOUT_S, "the first epoch")
    except AssertionError:
        launcher.stop_run(run, force=True)
        raise AssertionError(log_of(run)) from None
    pid = run.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # no STOP flag: the signal alone must do it
    wait_for(lambda: not run.is_active, 60, "the trainer to stop")

    status = run.status()
    assert status.state == "stopped", (status, log_of(run))
    assert 1 <= len(run.history().epochs) < 50
    assert (run.path / run_layout.BEST_CHECKPOINT).is_file() and (run.path / run_layout.EXPORTED_MODEL).is_file()
    assert "stopped after" in log_of(run)

    # Resume it in the background, one epoch further than it got: the epochs carry on from there.
    done = len(run.history().epochs)
    config = runs.read_json(run.path / run_layout.CONFIG_FILE)
    config["settings"]["epochs"] = done + 1
    write_json_atomically(run.path / run_layout.CONFIG_FILE, config)
    launcher.resume_training(run)
    assert run.is_active
    wait_for(lambda: not run.is_active, STARTUP_TIMEOUT_S, "the resumed run to finish")
    assert run.status().state == "finished", log_of(run)
    assert [row["epoch"] for row in run.history().epochs] == list(range(1, done + 2))
