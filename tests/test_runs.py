"""Run folders, the launcher's guards and promotion: no TensorFlow, no training."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fakes import write_served_model

from fer_core import run_layout
from fer_core.errors import DatasetError
from fer_core.files import write_json_atomically
from fer_core.model_store import describe_model, resolve_model_path
from fer_core.serving import checked_lite_model, served_files
from fer_core.settings import promoted_model_path
from training import cli, launcher, promote, runs
from training.config import TrainConfig
from training.records import History
from training.splits import check_training_labels, held_out_counts
from training.trainer import create_run, failure_message


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def fake_keras_file(path: Path, note: str = "stand-in") -> None:
    """A file that passes for a .keras model until Keras opens it: a zip archive with a config.json."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"note": note}))


def make_run(runs_dir: Path, state: str, **status: object) -> runs.Run:
    run_dir = create_run(TrainConfig(data="demo", arch="tiny", epochs=3, runs_dir=str(runs_dir)))
    runs.update_status(run_dir, state=state, **status)
    return runs.Run(run_dir)


def test_create_run_writes_config_and_a_queued_status(isolated_runs_dir: Path) -> None:
    run = runs.Run(create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir))))
    assert run.config().settings.arch == "tiny"
    assert run.status().state == "queued"
    assert runs.active_run(isolated_runs_dir) == run  # queued by a live process counts as active


def test_running_status_of_a_dead_trainer_is_reported_failed(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "running", pid=dead_pid())
    status = run.status()
    assert status.state == "failed"
    assert status.error is not None and "killed or crashed" in status.error
    assert runs.active_run(isolated_runs_dir) is None


def test_queued_run_whose_trainer_never_started_is_failed(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "queued", pid=dead_pid())
    assert run.status().state == "failed"


def test_dead_trainer_that_was_asked_to_stop_is_reported_stopped(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "running", pid=dead_pid())
    run.request_stop()
    assert run.status().state == "stopped"


def test_failure_reason_names_the_error_never_the_traceback(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "running", pid=dead_pid())
    (run.path / run_layout.LOG_FILE).write_text(
        'Epoch 1/3\nTraceback (most recent call last):\n  File "trainer.py", line 3, in <module>\n'
        "    raise ValueError('boom')\nValueError: the data went missing\n"
    )
    error = run.status().error or ""
    assert "ValueError: the data went missing" in error
    assert "Traceback" not in error and "File " not in error


def test_a_pid_reused_by_another_process_does_not_keep_a_dead_run_running(isolated_runs_dir: Path) -> None:
    # After a restart the dead trainer's pid may belong to some other process: alive, but started later.
    started = runs.process_start_ticks(os.getpid())
    assert started is not None  # Linux: /proc is there
    reused = make_run(isolated_runs_dir, "running", pid=os.getpid(), pid_started=started - 1)
    assert reused.status().state == "failed"
    assert runs.active_run(isolated_runs_dir) is None
    same = make_run(isolated_runs_dir, "running", **runs.process_identity(os.getpid()))
    assert same.status().state == "running"


def test_live_trainer_is_the_active_run(isolated_runs_dir: Path) -> None:
    make_run(isolated_runs_dir, "finished", pid=dead_pid())
    live = make_run(isolated_runs_dir, "running", pid=os.getpid())
    assert runs.active_run(isolated_runs_dir) == live


def test_second_training_is_refused_while_one_is_active(isolated_runs_dir: Path) -> None:
    live = make_run(isolated_runs_dir, "running", pid=os.getpid(), epoch=2, epochs=3)
    with pytest.raises(launcher.TrainingBusyError, match=rf"{live.name} is still training \(epoch 2/3\)"):
        launcher.start_training(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    assert len(runs.list_runs(isolated_runs_dir)) == 1  # no second folder was made


def test_stopping_an_in_process_trainer_only_raises_the_flag(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "running", pid=os.getpid())
    launcher.stop_run(run)  # must not SIGTERM the test process itself
    assert (run.path / run_layout.STOP_FLAG).exists()


def test_status_updates_merge_instead_of_overwriting(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "running", pid=os.getpid())
    runs.update_status(run.path, epoch=2)
    runs.update_status(run.path, pid=os.getpid(), launched_at=1.0)
    status = run.status()
    assert (status.state, status.epoch, status.launched_at) == ("running", 2, 1.0)
    assert not [path for path in run.path.iterdir() if ".tmp" in path.name]


def test_resume_starts_after_the_epoch_the_checkpoint_holds(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "failed")
    history = {
        "epochs": [{"epoch": 1, "val_accuracy": 0.2}, {"epoch": 2, "val_accuracy": 0.3}],
        "batches": [{"epoch": 0.5}, {"epoch": 1.0}, {"epoch": 1.5}, {"epoch": 2.0}],
    }
    write_json_atomically(run.path / run_layout.HISTORY_JSON, history)
    fake_keras_file(run.path / run_layout.LAST_CHECKPOINT)
    write_json_atomically(run.path / run_layout.CHECKPOINT_INFO, {"epoch": 1})  # killed between history and checkpoint
    start = run.resume_point()
    assert (start.checkpoint, start.epoch, start.note) == (run.path / run_layout.LAST_CHECKPOINT, 1, None)
    assert [row["epoch"] for row in start.history.epochs] == [1]
    assert [point["epoch"] for point in start.history.batches] == [0.5, 1.0]


def test_resume_point_without_a_checkpoint_starts_over(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "stopped")
    assert run.resume_point() == (None, 0, History(), None)


def test_promote_copies_the_model_where_the_app_loads_it(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "finished", pid=dead_pid())
    (run.path / run_layout.BEST_CHECKPOINT).write_bytes(b"best")
    with pytest.raises(ValueError, match=r"no model the app can serve yet.*python -m training export"):
        promote.promote_run(run)  # a model without its LiteRT copy: nothing the app could load
    write_served_model(run.path / run_layout.EXPORTED_MODEL, b"float32 export")
    destination = promote.promote_run(run)
    assert destination == promoted_model_path() == isolated_runs_dir / "promoted.keras"
    assert destination.read_bytes() == b"float32 export"
    assert checked_lite_model(destination)[0] == b"litert copy of float32 export"  # copied with its record
    card = promote.promoted_info()
    assert card is not None and card.run == run.name and not card.provisional
    assert resolve_model_path() == destination
    assert describe_model(destination).card.run == run.name  # the card the Live page shows
    promote.unpromote()
    assert promote.promoted_info() is None
    assert not any(path.exists() for path in served_files(destination))


def test_promoting_an_unfinished_run_marks_the_model_provisional(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "stopped", pid=dead_pid())
    write_served_model(run.path / run_layout.BEST_CHECKPOINT, b"best so far")
    promote.promote_run(run)
    card = promote.promoted_info()
    assert card is not None and card.provisional and "stopped" in (card.note or "")
    assert promoted_model_path().read_bytes() == b"best so far"


def test_promote_without_a_model_says_so(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, "running", pid=os.getpid())
    with pytest.raises(ValueError, match="has no model yet"):
        promote.promote_run(run)


def test_runs_command_lists_runs_as_json(isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(isolated_runs_dir, "finished", pid=dead_pid())
    assert cli.main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["run"], row["state"], row["arch"]) for row in rows] == [(run.name, "finished", "tiny")]


@pytest.mark.parametrize(("make", "problem"), [(None, "does not exist"), ("file", "is not a folder")])
def test_runs_command_says_a_run_dir_that_is_no_folder_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str | None, problem: str
) -> None:
    where = tmp_path / "runs"
    if make == "file":
        where.write_text("not a folder")
    for extra in ([], ["--json"]):
        assert cli.main(["runs", "--run-dir", str(where), *extra]) == 1
        captured = capsys.readouterr()
        assert f"error: {where} {problem}" in captured.err and "no runs yet" not in captured.out
    where.unlink(missing_ok=True)
    where.mkdir()
    assert cli.main(["runs", "--run-dir", str(where)]) == 0  # an empty runs folder has no runs yet
    assert "no runs yet" in capsys.readouterr().out


def test_the_command_line_refuses_a_second_training_in_the_same_runs_folder(
    isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = make_run(isolated_runs_dir, "running", pid=os.getpid(), epoch=2, epochs=3)
    arguments = ["train", "--data", "demo", "--arch", "tiny", "--run-dir", str(isolated_runs_dir)]
    assert cli.main(arguments) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert f"{live.name} is still training (epoch 2/3)" in error and "--allow-concurrent" in error
    assert runs.list_runs(isolated_runs_dir) == [live]  # no second folder was made
    config = TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir))
    second = cli._new_run_folder(config, allow_concurrent=True)  # what --allow-concurrent does
    assert run_layout.is_run_folder(second) and len(runs.list_runs(isolated_runs_dir)) == 2
    runs.update_status(second, state="stopped")
    assert cli.main(["resume", str(second)]) == cli.EXIT_USAGE  # resuming another run waits its turn too
    assert f"{live.name} is still training" in capsys.readouterr().err


def test_a_run_can_be_deleted_but_never_while_it_trains_nor_the_promoted_models_own(
    isolated_runs_dir: Path,
) -> None:
    training = make_run(isolated_runs_dir, "running", pid=os.getpid())
    with pytest.raises(ValueError, match="is training: stop it first"):
        launcher.delete_run(training)
    promoted = make_run(isolated_runs_dir, "finished", pid=dead_pid())
    write_served_model(promoted.path / run_layout.EXPORTED_MODEL, b"float32 export")
    promote.promote_run(promoted)
    with pytest.raises(ValueError, match="is where the model the app uses comes from"):
        launcher.delete_run(promoted)
    finished = make_run(isolated_runs_dir, "failed", pid=dead_pid())
    launcher.delete_run(finished)
    assert not finished.path.exists()
    assert {run.name for run in runs.list_runs(isolated_runs_dir)} == {training.name, promoted.name}
    with pytest.raises(ValueError, match="is not a run folder"):
        launcher.delete_run(runs.Run(isolated_runs_dir))


def test_a_run_whose_files_cannot_all_be_removed_is_gone_from_the_runs_and_the_failure_named(
    isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = make_run(isolated_runs_dir, "finished", pid=dead_pid())
    (stuck.path / "snapshots").mkdir()
    (stuck.path / "snapshots" / "epoch-003.keras").write_bytes(b"kept by the file system")
    kept = make_run(isolated_runs_dir / "other", "finished", pid=dead_pid())
    real_unlink = os.unlink

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        if os.fspath(path).endswith("epoch-003.keras"):  # as a folder without write permission would
            raise PermissionError(errno.EACCES, "Permission denied", path)
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(launcher.PartialDeleteError) as raised:
        launcher.delete_run(stuck)
    message = str(raised.value)
    assert f"run {stuck.name} is deleted, but " in message and "epoch-003.keras could not be removed" in message
    assert "Permission denied" in message
    assert not stuck.path.exists() and runs.list_runs(isolated_runs_dir) == []  # listed whole or gone
    (trash,) = isolated_runs_dir.glob(f"{run_layout.TRASH_PREFIX}*")
    assert str(trash) in message and not (trash / run_layout.CONFIG_FILE).exists()

    monkeypatch.setattr(os, "unlink", real_unlink)
    other = make_run(isolated_runs_dir, "failed", pid=dead_pid())
    launcher.delete_run(other)  # the next delete clears what the last one left
    assert list(isolated_runs_dir.glob(f"{run_layout.TRASH_PREFIX}*")) == [] and not other.path.exists()
    assert kept.path.exists()


def test_a_run_that_cannot_be_moved_away_stays_whole_and_the_error_names_it(
    isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(isolated_runs_dir, "finished", pid=dead_pid())

    def refuse(self: Path, target: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(OSError) as raised:
        launcher.delete_run(run)
    assert str(raised.value) == f"could not delete run {run.name}: {run.path}: Permission denied"
    assert [listed.name for listed in runs.list_runs(isolated_runs_dir)] == [run.name]
    assert (run.path / run_layout.CONFIG_FILE).is_file()


def finished_run_with_accuracy(runs_dir: Path, data: str, accuracy: float) -> runs.Run:
    run_dir = create_run(TrainConfig(data=data, arch="tiny", epochs=3, runs_dir=str(runs_dir)))
    runs.update_status(run_dir, state="finished")
    write_json_atomically(run_dir / run_layout.METRICS_FILE, {"accuracy": accuracy, "macro_f1": accuracy, "n": 100})
    return runs.Run(run_dir)


def test_promotion_concerns_name_the_demo_set_and_a_far_weaker_model(isolated_runs_dir: Path, tmp_path: Path) -> None:
    shipped = promote.shipped_card().accuracy
    assert shipped is not None and shipped > 0.6  # models/fer_default.json
    demo = finished_run_with_accuracy(isolated_runs_dir, "demo", 0.9)
    assert any("demo set" in concern for concern in promote.promotion_concerns(demo))
    weak = finished_run_with_accuracy(isolated_runs_dir / "weak", str(tmp_path), shipped - 0.2)
    (concern,) = promote.promotion_concerns(weak)
    assert f"far below the shipped model's ({shipped:.1%})" in concern
    close = finished_run_with_accuracy(isolated_runs_dir / "close", str(tmp_path), shipped - 0.01)
    assert promote.promotion_concerns(close) == []


@pytest.mark.parametrize(
    ("labels", "val_size", "message"),
    [
        ([3, 3, 3, 3], 1, "every training face is happy: a classifier needs faces of at least two emotions"),
        ([0, 1, 2, 3, 4, 5, 6], 0, "no faces are left for validation"),
        ([], 0, "the train split holds no faces"),
    ],
)
def test_faces_that_cannot_train_a_classifier_are_refused_saying_why(
    labels: list[int], val_size: int, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        check_training_labels(np.array(labels, dtype=np.int64), val_size)


def test_one_face_per_class_leaves_no_validation_faces() -> None:
    assert held_out_counts(np.arange(7, dtype=np.int64), 0.1).sum() == 0
    assert list(held_out_counts(np.array([0, 0, 1, 1, 1], dtype=np.int64), 0.1)[:2]) == [1, 1]


def test_a_full_disk_is_said_plainly(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / ".best.tmp.keras"))
    message, explained = failure_message(full, tmp_path / "run")
    assert explained and message.startswith(f"the disk is full: no space was left to write in {tmp_path / 'run'}")
    try:  # as Keras may raise it: wrapped in an error of its own
        try:
            raise full
        except OSError as error:
            raise RuntimeError("could not save the model") from error
    except RuntimeError as wrapped:
        assert failure_message(wrapped, tmp_path)[0].startswith("the disk is full")
    assert failure_message(ValueError("bad"), tmp_path) == ("ValueError: bad", False)


def test_a_run_folder_is_named_by_the_moment_given_and_a_second_run_in_that_second_gets_a_suffix(
    tmp_path: Path,
) -> None:
    moment = time.mktime((2026, 12, 5, 6, 7, 8, 0, 0, -1))
    first = runs.new_run_dir(tmp_path, "tiny", now=moment)
    second = runs.new_run_dir(tmp_path, "tiny", now=moment)
    assert (first.name, second.name) == ("20261205-060708-tiny", "20261205-060708-tiny-1")
    assert [run.name for run in runs.list_runs(tmp_path)] == []  # no config.json yet: not runs
