"""The Training page through AppTest: a real short run from the page, and the guards around it."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fakes import write_served_model
from streamlit.testing.v1 import AppTest

from app.state import DEMO_LABEL
from fer_core import run_layout
from fer_core.files import write_json_atomically
from fer_core.labels import EMOTIONS
from fer_core.settings import SHIPPED_FAST_MODEL_PATH
from training import cli as training_cli
from training import promote, runs
from training.config import ARCH_LEARNING_RATES, TrainConfig
from training.records import ACTIVE_STATES
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
    at.sidebar.radio(key="data_source_choice").set_value(DEMO_LABEL).run()  # not a FER2013 copy found nearby
    # The quick demo the page offers on the demo set: the shipped model fine-tuned for 3 short epochs,
    # long enough (several seconds) for the page to be seen mid-run on a fast, quiet machine too.
    at.button(key="train_quick_demo").click().run()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    (run,) = runs.list_runs(isolated_runs_dir)
    settings = run.config().settings
    assert (settings.arch, settings.epochs, settings.max_steps_per_epoch) == ("vgg40", 3, 8)
    assert settings.init_from == str(SHIPPED_FAST_MODEL_PATH)

    observed: list[tuple[str, int]] = []
    deadline = time.monotonic() + 300  # a cap for a stuck run; a busy machine takes 2-3 minutes
    while time.monotonic() < deadline:
        # The state is read before the page renders, so the page shows this state or a later one: read
        # after, a run that ends mid-render would be "finished" here while the page still showed it running.
        state = run.status().state
        at.run()
        assert not at.exception, at.exception
        observed.append((state, point_count(chart_spec(at, "live-curves"))))
        if state not in ACTIVE_STATES:
            break
        if run.status().is_active:  # still active after the render, so during it too
            assert at.button(key="train_start").disabled  # one training at a time
        time.sleep(0.7)
    assert observed[-1][0] == "finished", (observed, (run.path / run_layout.LOG_FILE).read_text()[-2000:])
    val_accuracies = [row["val_accuracy"] for row in run.history().epochs]
    assert len(val_accuracies) == 3 and max(val_accuracies) > 0.5  # it visibly learns: chance is 14%
    counts = [count for _, count in observed]
    assert counts == sorted(counts) and counts[-1] > counts[0], observed  # the chart grew while it ran
    assert any(state == "running" and count > 0 for state, count in observed), observed

    assert any("Finished" in element.value for element in at.success)
    table = at.dataframe[0].value
    assert list(table["Run"]) == [run.name] and "finished" in table["Status"][0]
    assert point_count(chart_spec(at, "confusion")) > 0
    assert any("Batch-norm statistics re-estimated" in caption.value for caption in at.caption)
    assert point_count(chart_spec(at, "reliability")) > 2  # the served model's calibration, before and after
    assert any("Expected calibration error" in caption.value for caption in at.caption)
    assert not at.button(key="train_start").disabled
    assert f"Run {run.name}" in at.selectbox(key="train_init_from").options  # later runs may start from it

    at.button(key=f"promote-{run.name}").click().run()
    assert any("demo set" in element.value for element in at.warning)  # asks first: a demo-set model
    at.button(key=f"promote-anyway-{run.name}").click().run()
    assert not at.exception, at.exception
    promoted = isolated_runs_dir / "promoted.keras"
    assert promoted.is_file() and promoted.read_bytes() == (run.path / run_layout.EXPORTED_MODEL).read_bytes()
    assert any(run.name in element.value for element in at.success)


def test_start_is_refused_while_another_run_trains(isolated_runs_dir: Path) -> None:
    busy = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    runs.update_status(busy, state="running", pid=os.getpid(), epoch=1, epochs=60, step=3, steps=20)
    at = open_page()
    assert at.button(key="train_start").disabled
    assert any(busy.name in element.value and "One training at a time" in element.value for element in at.info)
    assert any("Epoch 1/60" in str(element.proto.text) for element in at.get("progress"))
    at.button(key=f"stop-{busy.name}").click().run()  # an in-process "trainer": only the flag is raised
    assert (busy / run_layout.STOP_FLAG).exists()
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
    # the shipped fast model averages a vgg40 and a fernet40 trunk: a start for both; the quality model
    # averages three vgg40 trunks and one fernet40: a start for fernet40 only
    at.selectbox(key="train_arch").set_value("vgg40").run()
    assert at.selectbox(key="train_init_from").options == ["Random weights", "Shipped fast model"]
    at.selectbox(key="train_arch").set_value("fernet40").run()
    assert at.selectbox(key="train_init_from").options == [
        "Random weights",
        "Shipped quality model",
        "Shipped fast model",
    ]
    at.selectbox(key="train_arch").set_value("tiny").run()
    assert at.selectbox(key="train_init_from").options == ["Random weights"]


def test_a_shipped_ensemble_is_a_start_for_each_architecture_it_holds_one_trunk_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.views.training_page import form

    shipped = {}
    for label, arch in (("Pair", "vgg40+fernet40"), ("Twins", "vgg40+vgg40"), ("Plain", "fernet40")):
        path = tmp_path / f"{label}.keras"
        path.write_bytes(b"model")
        (tmp_path / f"{label}.json").write_text(json.dumps({"arch": arch}))
        shipped[label] = path
    monkeypatch.setattr(form, "SHIPPED_STARTS", shipped)
    # two vgg40 trunks: which one to start from is not the page's guess
    assert list(form.start_choices("vgg40", [])) == ["Random weights", "Pair"]
    assert list(form.start_choices("fernet40", [])) == ["Random weights", "Pair", "Plain"]
    assert list(form.start_choices("tiny", [])) == ["Random weights"]


def test_empty_runs_folder_invites_a_first_run() -> None:
    at = open_page()
    assert any("No runs yet" in element.value for element in at.info)
    assert not at.button(key="train_start").disabled


def finished_fake_run(runs_dir: Path, val_accuracies: list[float], *, minutes_ago: float = 0) -> runs.Run:
    """A finished run folder written by hand: history, metrics and mistakes, no model training. Created
    ``minutes_ago`` (its folder is named by that moment)."""
    from fer_core.metrics import classification_report

    config = TrainConfig(data="demo", arch="tiny", epochs=len(val_accuracies), runs_dir=str(runs_dir))
    run_dir = create_run(config, now=time.time() - 60 * minutes_ago)
    history = [
        {"epoch": index + 1, "loss": 1.5, "accuracy": 0.5, "val_accuracy": value}
        for index, value in enumerate(val_accuracies)
    ]
    write_json_atomically(run_dir / run_layout.HISTORY_JSON, {"epochs": history, "batches": []})
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 50)
    predicted = np.where(rng.random(50) < 0.6, labels, rng.integers(0, 7, 50))
    write_json_atomically(
        run_dir / run_layout.METRICS_FILE, {**classification_report(labels, predicted), "split": "test"}
    )
    wrong = np.flatnonzero(predicted != labels)
    np.savez_compressed(
        run_dir / run_layout.MISCLASSIFIED_FILE,
        images=rng.integers(0, 255, (len(wrong), 48, 48), dtype=np.uint8),
        labels=labels[wrong],
        predicted=predicted[wrong],
        confidence=rng.random(len(wrong)).astype(np.float32),
        source_ids=np.array([f"face-{index}" for index in wrong]),
    )
    runs.update_status(run_dir, state="finished", started_at=time.time() - 60, finished_at=time.time(), elapsed_s=60.0)
    return runs.Run(run_dir)


def test_selected_runs_are_overlaid_and_the_first_opens_with_its_results(isolated_runs_dir: Path) -> None:
    older = finished_fake_run(isolated_runs_dir, [0.3, 0.4, 0.45], minutes_ago=5)
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
    assert len(at.get("image")) == min(24, int(np.load(older.path / run_layout.MISCLASSIFIED_FILE)["labels"].size))


def test_an_unreadable_run_is_listed_as_such_beside_the_good_ones(isolated_runs_dir: Path) -> None:
    good = finished_fake_run(isolated_runs_dir, [0.3, 0.4], minutes_ago=5)
    broken = finished_fake_run(isolated_runs_dir, [0.2])
    write_json_atomically(broken.path / run_layout.STATUS_FILE, {"state": "finished", "pid": "abc"})
    at = open_page()
    table = at.dataframe[0].value
    statuses = dict(zip(table["Run"], table["Status"], strict=True))
    assert "finished" in statuses[good.name]
    assert "unreadable: status.json: pid must be an integer, got 'abc'" in statuses[broken.name]
    assert any("cannot be read: status.json: pid must be an integer" in element.value for element in at.error)
    next(box for box in at.selectbox if box.label == "Open run").set_value(good.name).run()  # opens as before
    assert not at.exception, at.exception
    assert point_count(chart_spec(at, f"confusion-{good.name}")) > 0


def test_a_broken_promoted_card_is_a_warning_not_an_exception(isolated_runs_dir: Path) -> None:
    write_served_model(isolated_runs_dir / "promoted.keras", b"a model")
    write_json_atomically(isolated_runs_dir / "promoted.json", {"run": "r", "promoted_at": "yesterday"})
    at = open_page()
    assert any("promoted_at must be a number" in element.value for element in at.warning)
    at.button(key="unpromote").click().run()
    assert not at.exception and not (isolated_runs_dir / "promoted.keras").exists()


def test_promoting_a_model_trained_on_the_demo_set_asks_first_and_says_why(isolated_runs_dir: Path) -> None:
    run = finished_fake_run(isolated_runs_dir, [0.3, 0.4])
    write_served_model(run.path / run_layout.EXPORTED_MODEL, b"float32 export")
    at = open_page()
    at.button(key=f"promote-{run.name}").click().run()
    assert not at.exception, at.exception
    assert any("Use this model anyway?" in element.value and "demo set" in element.value for element in at.warning)
    assert not (isolated_runs_dir / "promoted.keras").exists()  # nothing happened yet
    at.button(key=f"promote-cancel-{run.name}").click().run()
    assert not any("Use this model anyway?" in element.value for element in at.warning)
    at.button(key=f"promote-{run.name}").click().run()
    (warning,) = [element.value for element in at.warning if "Use this model anyway?" in element.value]
    assert "; " not in warning and warning.endswith(".")  # one sentence per reason, not "faces; Its test..."
    at.button(key=f"promote-anyway-{run.name}").click().run()
    assert not at.exception, at.exception
    assert (isolated_runs_dir / "promoted.keras").read_bytes() == b"float32 export"
    in_use = at.button(key=f"promote-{run.name}")
    assert in_use.label == "In use"
    assert "use this run's model now" in in_use.help and "Copy this run's model" not in in_use.help


def test_the_form_explains_the_architecture_and_the_learning_rates_default(isolated_runs_dir: Path) -> None:
    at = open_page()
    arch = at.selectbox(key="train_arch")
    assert all(name in arch.help for name in arch.options)  # not just "The architecture."
    learning_rate = at.number_input(key="train_lr")
    assert learning_rate.value is None  # empty: the architecture's own
    default = ARCH_LEARNING_RATES[arch.value]
    assert learning_rate.proto.placeholder == "auto"  # short enough to show whole in its narrow field
    assert f"Leave it empty (auto) for {arch.value}'s own default, {default:g}" in learning_rate.help


def test_a_run_is_deleted_only_after_confirmation_and_never_while_it_trains(isolated_runs_dir: Path) -> None:
    old = finished_fake_run(isolated_runs_dir, [0.3])
    at = open_page()
    at.button(key=f"delete-{old.name}").click().run()
    assert any("cannot be undone" in element.value for element in at.warning)
    assert old.path.exists()
    at.button(key=f"delete-yes-{old.name}").click().run()
    assert not at.exception, at.exception
    assert not old.path.exists()

    busy = create_run(TrainConfig(data="demo", arch="tiny", runs_dir=str(isolated_runs_dir)))
    runs.update_status(busy, state="running", pid=os.getpid(), epoch=1, epochs=60, step=3, steps=20)
    at = open_page()
    assert at.button(key=f"delete-{busy.name}").disabled


def test_a_run_deleted_only_in_part_leaves_the_table_and_says_which_file_stayed(
    isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = finished_fake_run(isolated_runs_dir, [0.3])
    (run.path / "locked.bin").write_bytes(b"cannot be removed")
    real_unlink = os.unlink

    def unlink(path: str, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path).endswith("locked.bin"):
            raise PermissionError(13, "Permission denied", path)
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    at = open_page()
    at.button(key=f"delete-{run.name}").click().run()
    at.button(key=f"delete-yes-{run.name}").click().run()
    assert not at.exception, at.exception
    assert not at.error
    assert any("locked.bin could not be removed: Permission denied" in toast.value for toast in at.toast)
    assert f"delete-{run.name}" not in [button.key for button in at.button] and not run.path.exists()


def test_the_form_opens_with_the_last_settings_used_and_copies_an_earlier_runs(isolated_runs_dir: Path) -> None:
    older_config = TrainConfig(data="demo", arch="tiny", epochs=7, patience=3, runs_dir=str(isolated_runs_dir))
    older = create_run(older_config, now=time.time() - 300)  # five minutes before the newest
    newest = TrainConfig(
        data="demo",
        arch="tiny",
        epochs=9,
        augment=False,
        lr=0.001,
        seed=11,
        split_seed=42,
        runs_dir=str(isolated_runs_dir),
    )
    create_run(newest)
    at = open_page()
    assert at.selectbox(key="train_arch").value == "tiny"
    assert at.number_input(key="train_epochs").value == 9
    assert (at.number_input(key="train_seed").value, at.number_input(key="train_split_seed").value) == (11, 42)
    assert at.number_input(key="train_lr").value == 0.001
    assert at.toggle(key="train_augment").value is False

    at.selectbox(key="train_settings_source").set_value(f"Run {older.name}")
    at.button(key="train_copy_settings").click().run()
    assert not at.exception, at.exception
    assert (at.number_input(key="train_epochs").value, at.number_input(key="train_patience").value) == (7, 3)
    assert at.toggle(key="train_augment").value is True
    assert at.number_input(key="train_split_seed").value is None  # that run's split came from its seed

    at.selectbox(key="train_settings_source").set_value("Default settings")
    at.button(key="train_copy_settings").click().run()
    assert at.number_input(key="train_epochs").value == TrainConfig().epochs
    assert at.number_input(key="train_lr").value is None


def test_while_a_run_trains_the_table_and_the_panels_show_one_reading(isolated_runs_dir: Path) -> None:
    busy = create_run(TrainConfig(data="demo", arch="tiny", epochs=3, runs_dir=str(isolated_runs_dir)))
    history = [{"epoch": epoch, "loss": 1.5, "accuracy": 0.5, "val_accuracy": 0.4} for epoch in (1, 2)]
    write_json_atomically(busy / run_layout.HISTORY_JSON, {"epochs": history, "batches": [{"epoch": 2.5, "loss": 1.4}]})
    # The status is written after the history: it may already say the third epoch is done.
    runs.update_status(
        busy, state="running", phase="training", pid=os.getpid(), epoch=3, epochs=3, step=5, steps=5, epochs_done=3
    )
    at = open_page()
    assert list(at.dataframe[0].value["Epochs"]) == ["3 / 3"]
    assert {metric.label: metric.value for metric in at.metric}["Epochs done"] == "3 / 3"
    live, details = chart_spec(at, "live-curves"), chart_spec(at, f"curves-{busy.name}")
    assert point_count(live) == point_count(details) > 0  # the same history in both panels


def test_labels_fit_and_say_counts_and_shares_properly(isolated_runs_dir: Path) -> None:
    run = finished_fake_run(isolated_runs_dir, [0.3])  # one epoch
    runs.update_status(run.path, state="stopped", stop_reason="stop requested")
    at = open_page()
    assert any("Stopped after 1 complete epoch (" in element.value for element in at.warning)
    assert any("1 epoch · batch" in element.value for element in at.caption)
    assert not any("epoch(s)" in text or "1 epochs" in text for text in [all_text(at)])
    runs_table, per_class = (json.loads(at.dataframe[index].proto.columns) for index in (0, 1))
    formats = {per_class[name]["type_config"]["format"] for name in ("Precision", "Recall", "F1")}
    formats |= {runs_table[name]["type_config"]["format"] for name in ("Val acc", "Best epoch val", "Test acc")}
    assert formats == {"%.1f%%"}  # one decimal everywhere: not "20%" beside "3.33%"

    busy = create_run(TrainConfig(data="demo", arch="tiny", epochs=3, runs_dir=str(isolated_runs_dir)))
    runs.update_status(busy, state="running", phase="training", pid=os.getpid(), epoch=1, epochs=3, step=1, steps=5)
    at = open_page()
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Time per epoch"] == "-"  # short values: "measuring..." was cut to "meas…"
    assert all(len(value) <= 12 for value in metrics.values()), metrics


def test_the_button_back_to_the_shipped_model_has_the_full_width_for_its_label(isolated_runs_dir: Path) -> None:
    run = finished_fake_run(isolated_runs_dir, [0.3])
    write_served_model(run.path / run_layout.EXPORTED_MODEL, b"float32 export")
    promote.promote_run(run)
    at = open_page()
    assert at.button(key="unpromote").label == "Go back to the shipped model"
    in_columns = {getattr(node, "key", None) for column in at.columns for node in column}
    assert "unpromote" not in in_columns  # in a 1/6-wide column it showed as "Use the shipped m..."


def test_data_a_classifier_cannot_learn_from_is_refused_before_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    faces = tmp_path / "faces"
    (faces / "train" / "happy").mkdir(parents=True)
    for index in range(5):
        cv2.imwrite(str(faces / "train" / "happy" / f"{index}.png"), np.full((48, 48), 40 * index, np.uint8))
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    at = open_page()
    at.radio(key="data_source_choice").set_value("Another location...").run()
    at.sidebar.text_input[0].set_value(str(faces)).run()
    assert not at.exception, at.exception
    assert any("Cannot train on these faces: every training face is happy" in element.value for element in at.error), (
        all_text(at)
    )
    assert at.button(key="train_start").disabled


def test_saved_mistakes_with_unknown_emotion_codes_are_a_warning_not_an_exception(isolated_runs_dir: Path) -> None:
    run = finished_fake_run(isolated_runs_dir, [0.3])
    with np.load(run.path / run_layout.MISCLASSIFIED_FILE) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["labels"] = arrays["labels"] + 50  # edited by hand, or from another label set
    np.savez_compressed(run.path / run_layout.MISCLASSIFIED_FILE, **arrays)
    at = open_page()
    assert not at.exception, at.exception
    assert any("saved mistakes could not be read" in element.value for element in at.warning)


def test_the_kept_models_validation_accuracy_is_the_headline_with_the_best_epochs_beside_it(
    isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in a demo-set fernet run: the best epoch scored 14.3%, the kept model (its batch-norm
    statistics re-estimated) 20.2% on the same validation faces."""
    run = finished_fake_run(isolated_runs_dir, [0.100, 0.143, 0.120])
    metrics = json.loads((run.path / run_layout.METRICS_FILE).read_text())
    metrics.update(
        best_epoch=2, batch_norm_recalibration={"val_accuracy_before": 0.143, "val_accuracy_after": 0.202, "kept": True}
    )
    write_json_atomically(run.path / run_layout.METRICS_FILE, metrics)

    at = open_page()

    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["Val accuracy"] == "20.2%"
    assert shown["Best epoch (epoch 2)"] == "14.3%"
    table = at.dataframe[0].value
    assert list(table["Val acc"]) == [pytest.approx(20.2)] and list(table["Best epoch val"]) == [pytest.approx(14.3)]

    assert training_cli.main(["runs"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[-4:] == ["val", "best", "epoch", "test"]
    assert "0.2020" in row and "0.1430" in row
    assert row.index("0.2020") < row.index("0.1430")  # the kept model's first, as on the page


def test_on_the_demo_set_a_quick_demo_fills_the_form_with_a_run_that_learns_in_a_minute(
    isolated_runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for emotion in ("happy", "sad"):  # a FER2013 copy, to switch to
        (tmp_path / "fer2013" / "train" / emotion).mkdir(parents=True)
        for index in range(3):
            cv2.imwrite(
                str(tmp_path / "fer2013" / "train" / emotion / f"{index}.png"), np.full((48, 48), index, np.uint8)
            )
    monkeypatch.setenv("FER2013_DIR", str(tmp_path / "fer2013"))
    at = open_page()
    at.sidebar.radio(key="data_source_choice").set_value(DEMO_LABEL).run()
    assert any("**Quick demo**" in caption.value for caption in at.caption)
    at.button(key="train_quick_demo").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_arch").value == "vgg40"
    assert at.number_input(key="train_epochs").value == 3
    assert at.number_input(key="train_max_steps_per_epoch").value == 8
    assert at.selectbox(key="train_init_from").value == "Shipped fast model"

    at.sidebar.radio(key="data_source_choice").set_value(f"FER2013 at {tmp_path / 'fer2013'}").run()
    assert not at.exception, at.exception  # offered on the demo set only:
    assert not any("**Quick demo**" in caption.value for caption in at.caption)


def test_the_page_has_words_for_every_phase_and_state_the_trainer_writes() -> None:
    from app.views.training_page.common import PHASE_TEXT, STATE_BADGES, STATE_LABELS
    from training.records import RUN_STATES, RunPhase

    assert set(PHASE_TEXT) == set(RunPhase) - {RunPhase.TRAINING}  # training shows epochs and steps instead
    assert set(RUN_STATES) <= set(STATE_LABELS) and set(RUN_STATES) == set(STATE_BADGES)
