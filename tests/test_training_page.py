"""The Training page through AppTest: a real short run from the page, and the guards around it."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.labels import EMOTIONS
from fer_core.settings import SHIPPED_MODEL_PATH
from training import runs
from training.config import TrainConfig
from training.trainer import create_run

PAGE = "views/training.py"


def open_page() -> AppTest:
    at = AppTest.from_file("../app/main.py", default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def chart_spec(at: AppTest, key_prefix: str) -> dict[str, Any]:
    for element in at.get("plotly_chart"):
        if element.key and element.key.startswith(key_prefix):
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart with a key starting {key_prefix!r}")


def point_count(spec: dict[str, Any]) -> int:
    """Points in every trace; plotly may encode arrays as base64 typed arrays."""
    total = 0
    for trace in spec["data"]:
        x = trace.get("x", [])
        if isinstance(x, dict) and "bdata" in x:
            total += len(base64.b64decode(x["bdata"])) // np.dtype(x["dtype"]).itemsize
        else:
            total += len(x)
    return total


def all_text(at: AppTest) -> str:
    parts = [
        str(element.value)
        for kind in ("markdown", "caption", "error", "warning", "info", "success")
        for element in at.get(kind)
    ]
    return "\n".join(parts)


@pytest.mark.slow
def test_page_trains_a_short_run_shows_it_growing_and_promotes_it(isolated_runs_dir: Path) -> None:
    at = open_page()
    # Long enough (several seconds) for the page to be seen mid-run on a fast, quiet machine too.
    at.selectbox(key="train_arch").set_value("fernet")
    at.number_input(key="train_epochs").set_value(6)
    at.selectbox(key="train_batch_size").set_value(32)
    at.number_input(key="train_max_steps").set_value(8)
    at.selectbox(key="train_init_from").set_value("Shipped default model")  # fine-tune the shipped model
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    (run,) = runs.list_runs(isolated_runs_dir)
    assert run.config()["settings"]["max_steps_per_epoch"] == 8
    assert run.config()["settings"]["init_from"] == str(SHIPPED_MODEL_PATH)

    observed: list[tuple[str, int]] = []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        # The state is read before the page renders, so the page shows this state or a later one: read
        # after, a run that ends mid-render would be "finished" here while the page still showed it running.
        state = run.status()["state"]
        at.run()
        assert not at.exception, at.exception
        observed.append((state, point_count(chart_spec(at, "live-curves"))))
        if state not in runs.ACTIVE_STATES:
            break
        if run.status()["state"] in runs.ACTIVE_STATES:  # still active after the render, so during it too
            assert at.button(key="train_start").disabled  # one training at a time
        time.sleep(0.7)
    assert observed[-1][0] == "finished", (observed, (run.path / runs.LOG_FILE).read_text()[-2000:])
    counts = [count for _, count in observed]
    assert counts == sorted(counts) and counts[-1] > counts[0], observed  # the chart grew while it ran
    assert any(state == "running" and count > 0 for state, count in observed), observed

    assert any("Finished" in element.value for element in at.success)
    table = at.dataframe[0].value
    assert list(table["Run"]) == [run.name] and "finished" in table["Status"][0]
    assert point_count(chart_spec(at, "confusion")) > 0
    assert any("Batch-norm statistics re-estimated" in caption.value for caption in at.caption)
    assert not at.button(key="train_start").disabled
    assert f"Run {run.name}" in at.selectbox(key="train_init_from").options  # later runs may start from it

    at.button(key=f"promote-{run.name}").click().run()
    assert not at.exception, at.exception
    promoted = isolated_runs_dir / "promoted.keras"
    assert promoted.is_file() and promoted.read_bytes() == (run.path / runs.EXPORTED_MODEL).read_bytes()
    assert any(run.name in element.value for element in at.success)


def test_start_is_refused_while_another_run_trains(isolated_runs_dir: Path) -> None:
    busy = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    runs.update_status(busy, state="running", pid=os.getpid(), epoch=1, epochs=60, step=3, steps=20)
    at = open_page()
    assert at.button(key="train_start").disabled
    assert any(busy.name in element.value and "One training at a time" in element.value for element in at.info)
    assert any("Epoch 1/60" in str(element.proto.text) for element in at.get("progress"))
    at.button(key=f"stop-{busy.name}").click().run()  # an in-process "trainer": only the flag is raised
    assert (busy / runs.STOP_FLAG).exists()
    assert not at.exception


def test_a_failed_run_shows_its_error_and_no_traceback(isolated_runs_dir: Path) -> None:
    failed = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    runs.update_status(
        failed,
        state="failed",
        error="DatasetError: /data/fer2013 does not exist",
        traceback='Traceback (most recent call last):\n  File "trainer.py", line 1\nDatasetError: ...',
    )
    at = open_page()
    assert any("This run failed: DatasetError: /data/fer2013 does not exist" in element.value for element in at.error)
    assert "Traceback" not in all_text(at)
    assert not at.exception


def test_only_models_of_the_chosen_architecture_are_offered_to_start_from() -> None:
    at = open_page()
    at.selectbox(key="train_arch").set_value("fernet").run()
    assert at.selectbox(key="train_init_from").options == ["Random weights", "Shipped default model"]
    at.selectbox(key="train_arch").set_value("tiny").run()
    assert at.selectbox(key="train_init_from").options == ["Random weights"]  # the shipped model is a fernet


def test_empty_runs_folder_invites_a_first_run() -> None:
    at = open_page()
    assert any("No runs yet" in element.value for element in at.info)
    assert not at.button(key="train_start").disabled


def finished_fake_run(runs_dir: Path, val_accuracies: list[float]) -> runs.Run:
    """A finished run folder written by hand: history, metrics and mistakes, no model training."""
    from fer_core.metrics import classification_report

    run_dir = create_run(TrainConfig(data="demo", arch="tiny", epochs=len(val_accuracies), runs_dir=str(runs_dir)))
    history = [
        {"epoch": index + 1, "loss": 1.5, "accuracy": 0.5, "val_accuracy": value}
        for index, value in enumerate(val_accuracies)
    ]
    runs.write_json(run_dir / runs.HISTORY_JSON, {"epochs": history, "batches": []})
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 50)
    predicted = np.where(rng.random(50) < 0.6, labels, rng.integers(0, 7, 50))
    runs.write_json(run_dir / runs.METRICS_FILE, {**classification_report(labels, predicted), "split": "test"})
    wrong = np.flatnonzero(predicted != labels)
    np.savez_compressed(
        run_dir / runs.MISCLASSIFIED_FILE,
        images=rng.integers(0, 255, (len(wrong), 48, 48), dtype=np.uint8),
        labels=labels[wrong],
        predicted=predicted[wrong],
        confidence=rng.random(len(wrong)).astype(np.float32),
        source_ids=np.array([f"face-{index}" for index in wrong]),
    )
    runs.update_status(run_dir, state="finished", started_at=time.time() - 60, finished_at=time.time(), elapsed_s=60.0)
    return runs.Run(run_dir)


def test_selected_runs_are_overlaid_and_the_first_opens_with_its_results(isolated_runs_dir: Path) -> None:
    older = finished_fake_run(isolated_runs_dir, [0.3, 0.4, 0.45])
    time.sleep(1.1)  # run folders are named by the second
    newer = finished_fake_run(isolated_runs_dir, [0.2, 0.5])
    at = open_page()
    at.session_state["runs_table"] = {"selection": {"rows": [1, 0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    compare = chart_spec(at, "compare-runs")
    assert [trace["name"] for trace in compare["data"]] == [older.name, newer.name]
    assert [box.value for box in at.selectbox if box.label == "Open run"] == [older.name]
    assert point_count(chart_spec(at, f"confusion-{older.name}")) > 0
    per_class = at.dataframe[1].value
    assert list(per_class["Emotion"]) == list(EMOTIONS)
    assert len(at.get("image")) == min(24, int(np.load(older.path / runs.MISCLASSIFIED_FILE)["labels"].size))
