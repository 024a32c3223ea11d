"""Run files parsed into typed records: a broken or wrong-typed file makes its run "unreadable",
never a traceback, and never hides the other runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fer_core import run_layout
from fer_core.files import write_json_atomically
from fer_core.records import ModelCard, RecordError
from training import cli, promote, runs
from training.config import TrainConfig
from training.records import CheckpointInfo, History, RunConfig, RunMetrics, RunState, RunStatus
from training.trainer import create_run

# (file, how to break it, what the reason says): the cases the hardening trial found, and a few more.
BROKEN_FILES = [
    (run_layout.STATUS_FILE, {"pid": "abc"}, "status.json: pid must be an integer, got 'abc' (text)"),
    (run_layout.STATUS_FILE, {"started_at": "yesterday"}, "status.json: started_at must be a number, got 'yesterday'"),
    (run_layout.STATUS_FILE, {"elapsed_s": "long"}, "status.json: elapsed_s must be a number, got 'long' (text)"),
    (run_layout.STATUS_FILE, {"state": {}}, "status.json: state must be text, got {} (a table)"),
    (run_layout.STATUS_FILE, {"state": "sleeping"}, "status.json: state must be one of queued, running"),
    (run_layout.STATUS_FILE, {"pid": -1}, "status.json: pid must be an integer of at least 1, got -1"),
    (run_layout.HISTORY_JSON, {"epochs": 5}, "history.json: epochs must be a list, got 5 (an integer)"),
    (
        run_layout.HISTORY_JSON,
        {"epochs": [{"epoch": 1, "val_accuracy": "high"}]},
        "history.json: epochs[0]: val_accuracy must be a number, got 'high' (text)",
    ),
    (run_layout.CONFIG_FILE, {"settings": [1, 2]}, "config.json: settings: the settings must be a table"),
    (run_layout.CONFIG_FILE, {"settings": {"epochs": "x"}}, "config.json: settings: epochs must be an integer"),
    (run_layout.METRICS_FILE, {"accuracy": "x", "macro_f1": 0.5, "n": 3}, "metrics.json: accuracy must be a number"),
    (run_layout.CHECKPOINT_INFO, {"epoch": "two"}, "checkpoint.json: epoch must be an integer"),
]


def make_run(runs_dir: Path, **status: Any) -> runs.Run:
    run_dir = create_run(TrainConfig(data="demo", arch="tiny", epochs=3, runs_dir=str(runs_dir)))
    runs.update_status(run_dir, **{"state": "finished", **status})
    return runs.Run(run_dir)


def break_file(run: runs.Run, name: str, change: dict[str, Any]) -> None:
    path = run.path / name
    data = json.loads(path.read_text()) if path.is_file() else {}
    write_json_atomically(path, {**data, **change})


@pytest.mark.parametrize(("name", "change", "reason"), BROKEN_FILES)
def test_a_wrong_typed_run_file_makes_that_run_unreadable_and_no_other(
    isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str], name: str, change: dict[str, Any], reason: str
) -> None:
    good = make_run(isolated_runs_dir)
    broken = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir / "x")))
    broken = broken.rename(isolated_runs_dir / f"{good.name}-broken")  # a second run beside the good one
    runs.update_status(broken, state="finished")
    break_file(runs.Run(broken), name, change)

    summary = runs.Run(broken).summary()
    assert summary.state == runs.UNREADABLE and reason in (summary.problem or ""), summary.problem
    assert summary.state_text.startswith("unreadable: ")
    assert runs.Run(good.path).summary().state == "finished"

    assert cli.main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert f"{broken.name}" in listing and f"unreadable: {reason}" in listing, listing
    assert good.name in listing and "finished" in listing
    assert cli.main(["runs", "--json"]) == 0
    rows = {row["run"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[good.name]["state"] == "finished" and rows[broken.name]["state"] == "unreadable"
    assert reason in rows[broken.name]["problem"]


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_status_file_that_is_not_a_json_object_is_unreadable(isolated_runs_dir: Path, content: bytes) -> None:
    run = make_run(isolated_runs_dir)
    (run.path / run_layout.STATUS_FILE).write_bytes(content)
    with pytest.raises(RecordError, match=r"status\.json"):
        run.status()
    assert run.summary().state == runs.UNREADABLE
    assert not run.is_active and runs.active_run(isolated_runs_dir) is None


def test_a_broken_promoted_card_is_an_error_that_names_the_key() -> None:
    promote.promoted_model_path().parent.mkdir(parents=True, exist_ok=True)
    promote.promoted_model_path().write_bytes(b"a model")
    write_json_atomically(promote.promoted_info_path(), {"run": "r", "promoted_at": "yesterday"})
    with pytest.raises(RecordError, match=r"promoted\.json: promoted_at must be a number, got 'yesterday'"):
        promote.promoted_info()
    promote.promoted_info_path().unlink()
    assert promote.promoted_info() == ModelCard()  # no card: a promoted model we know nothing about


def test_records_keep_what_the_trainer_writes() -> None:
    status = RunStatus.from_json({"state": "running", "pid": 12, "epoch": 2, "epochs": 3, "versions": {"keras": "3"}})
    assert (status.state, status.pid, status.epoch, status.is_active) == ("running", 12, 2, True)
    history = History.from_json(
        {"epochs": [{"epoch": 1, "val_accuracy": 0.2}, {"epoch": 2, "val_accuracy": 0.5, "loss": None}]}
    )
    assert history.best_val_accuracy == 0.5 and [row["epoch"] for row in history.up_to(1).epochs] == [1]
    metrics = RunMetrics.from_json(
        {
            "accuracy": 0.5,
            "macro_f1": 0.4,
            "n": 2,
            "labels": ["a", "b"],
            "confusion": [[1, 0], [1, 0]],
            "per_class": {"a": {"precision": 0.5, "recall": 1.0, "f1": 0.67, "support": 1}},
        }
    )
    assert metrics.per_class["a"].support == 1 and metrics.split == "test"
    with pytest.raises(RecordError, match="confusion must be a square table"):
        RunMetrics.from_json({"accuracy": 0.5, "macro_f1": 0.4, "n": 2, "labels": ["a"], "confusion": [[1, 2]]})
    with pytest.raises(RecordError, match="true or false"):
        RunStatus.from_json({"diverged": "yes"})


def test_negative_or_zero_pids_never_count_as_a_live_trainer(isolated_runs_dir: Path) -> None:
    # os.kill(-1, SIGTERM) would reach every process: a status must never lead there. (Only signal 0,
    # which sends nothing, is tried here, so that this test is safe to run against older code too.)
    assert not runs.pid_alive(-1) and not runs.pid_alive(0)
    run = make_run(isolated_runs_dir, state="running", pid=os.getpid())
    write_json_atomically(run.path / run_layout.STATUS_FILE, {"state": "running", "pid": -1})
    assert not run.is_active and runs.active_run(isolated_runs_dir) is None


def test_times_that_are_not_times_do_not_break_the_training_page(isolated_runs_dir: Path) -> None:
    """status.json with NaN elapsed time and a start time past year 9999 (Python's json reads NaN):
    the runs table shows "-" and no date for that run, and the page does not raise."""
    from streamlit.testing.v1 import AppTest

    good = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    odd = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    runs.update_status(good, state="stopped", started_at=1.7e9, elapsed_s=30.0)
    status = json.loads((odd / run_layout.STATUS_FILE).read_text())
    status.update(state="stopped", started_at=1e300, elapsed_s=float("nan"))
    (odd / run_layout.STATUS_FILE).write_text(json.dumps(status))
    at = AppTest.from_file("../app/main.py", default_timeout=60)
    at.run()
    at.switch_page("views/training.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table["Run"]) == {good.name, odd.name}


def test_a_status_update_naming_no_status_field_is_refused_and_writes_nothing(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir)
    before = (run.path / run_layout.STATUS_FILE).read_text()
    with pytest.raises(TypeError, match=r"status\.json has no field epoch_count"):
        runs.update_status(run.path, epoch_count=3)
    with pytest.raises(ValueError, match="'sleeping' is not a run state"):
        runs.update_status(run.path, state="sleeping")
    assert (run.path / run_layout.STATUS_FILE).read_text() == before


def test_records_written_with_to_json_read_back_the_same(isolated_runs_dir: Path) -> None:
    run = make_run(isolated_runs_dir, epoch=2, versions={"keras": "3"}, diverged=True)
    status = run.status()
    assert RunStatus.from_json(status.to_json()) == status and status.state == RunState.FINISHED
    config = run.config()
    assert RunConfig.from_json(config.to_json()) == config
    info = CheckpointInfo(epoch=3, best_val_accuracy=0.5, best_epoch=2, saved_at=1.0)
    assert CheckpointInfo.from_json(info.to_json()) == info
    card = ModelCard(run="r", accuracy=0.7, provisional=True, note="not finished")
    assert ModelCard.from_json(card.to_json(), "card") == card and "split" not in card.to_json()
    report = {
        "n": 2,
        "accuracy": 0.5,
        "macro_f1": 0.4,
        "per_class": {"happy": {"precision": 1.0, "recall": 0.5, "f1": 0.6, "support": 2}},
        "confusion": [[1, 0], [1, 0]],
        "labels": ["angry", "happy"],
        "split": "test",
        "best_epoch": 2,
        "batch_norm_recalibration": {"kept": True, "val_accuracy_before": 0.4, "val_accuracy_after": 0.5},
        "calibration": {"temperature": 1.2, "ece_before": 0.1, "ece_after": 0.05, "faces": 2, "nll_before": 1.0},
        "served": {"runtime": "LiteRT", "file": "model.tflite", "tta": False},
    }
    metrics = RunMetrics.from_json(report)
    assert metrics.to_json() == {
        **report,
        "calibration": {**report["calibration"], "bins_before": [], "bins_after": []},
    }
