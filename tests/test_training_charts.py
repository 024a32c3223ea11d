"""Training chart builders: plain data in, plotly figure out."""

from __future__ import annotations

import numpy as np

from app.charts.training import compare_runs_figure, confusion_figure, learning_curves_figure, per_class_f1_figure
from fer_core.labels import EMOTIONS

HISTORY = {
    "epochs": [
        {"epoch": 1, "loss": 1.8, "accuracy": 0.3, "val_loss": 1.7, "val_accuracy": 0.35},
        {"epoch": 2, "loss": 1.5, "accuracy": 0.45, "val_loss": 1.6, "val_accuracy": 0.4},
    ],
    "batches": [{"epoch": 0.5, "loss": 1.9, "accuracy": 0.25}, {"epoch": 1.5, "loss": 1.6, "accuracy": 0.4}],
}


def test_learning_curves_show_train_validation_and_within_epoch_points() -> None:
    figure = learning_curves_figure(HISTORY)
    by_name: dict[str, int] = {}
    for trace in figure.data:
        by_name[trace.name] = by_name.get(trace.name, 0) + sum(x is not None for x in trace.x)
    assert by_name == {"train (within epoch)": 4, "train": 4, "validation": 4}


def test_within_epoch_line_breaks_where_the_running_average_restarts() -> None:
    figure = learning_curves_figure(HISTORY)
    within_epoch = next(trace for trace in figure.data if trace.name == "train (within epoch)")
    assert list(within_epoch.x) == [0.5, None, 1.5]


def test_empty_history_says_it_is_waiting() -> None:
    figure = learning_curves_figure({"epochs": [], "batches": []})
    assert any("Waiting" in annotation.text for annotation in figure.layout.annotations)


def test_missing_values_are_left_out_not_plotted_as_zero() -> None:
    figure = learning_curves_figure({"epochs": [{"epoch": 1, "loss": 1.0, "val_loss": None}], "batches": []})
    validation_loss = next(trace for trace in figure.data if trace.name == "validation" and trace.xaxis == "x")
    assert len(validation_loss.x) == 0


def test_compare_runs_draws_one_line_per_run() -> None:
    figure = compare_runs_figure({"run-a": HISTORY["epochs"], "run-b": HISTORY["epochs"][:1]})
    assert [(trace.name, len(trace.x)) for trace in figure.data] == [("run-a", 2), ("run-b", 1)]


def test_confusion_colours_are_shares_of_each_true_class() -> None:
    confusion = np.diag([10, 0, 5, 20, 4, 3, 8]).tolist()
    confusion[0][3] = 10  # half of the angry faces taken for happy
    figure = confusion_figure(confusion, EMOTIONS)
    shares = np.asarray(figure.data[0].z)
    assert shares[0, 0] == shares[0, 3] == 0.5
    assert shares[1].sum() == 0  # no disgust faces: an empty row, not a division by zero
    assert "50%<br>10" in figure.data[0].text[0][0]


def test_per_class_bars_follow_the_label_order() -> None:
    per_class = {emotion: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3} for emotion in EMOTIONS}
    assert list(per_class_f1_figure(per_class).data[0].x) == list(EMOTIONS)


def test_placeholder_axes_are_those_the_first_epoch_will_have() -> None:
    figure = learning_curves_figure({"epochs": [], "batches": []}, epochs=30)
    layout = figure.layout
    assert tuple(layout.xaxis.range) == tuple(layout.xaxis2.range) == (0, 1)  # the first epoch
    assert tuple(layout.yaxis2.range) == (0, 1)  # accuracy: 0 to 100%, not -100% to 400%
    assert layout.yaxis.range[0] == 0 and 1.95 < layout.yaxis.range[1] < 5  # loss: 0 to above ln 7


def test_accuracy_stays_on_a_0_to_100_percent_axis() -> None:
    assert tuple(learning_curves_figure(HISTORY).layout.yaxis2.range) == (0, 1)
    assert tuple(compare_runs_figure({"run-a": HISTORY["epochs"]}).layout.yaxis.range) == (0, 1)


def test_the_reliability_diagram_shows_the_diagonal_and_both_curves() -> None:
    from app.charts.training import reliability_figure
    from fer_core.calibration import ReliabilityBin

    before = [ReliabilityBin(0.5, 0.6, 10, 0.55, 0.7), ReliabilityBin(0.9, 1.0, 0, 0.0, 0.0)]
    after = [ReliabilityBin(0.6, 0.7, 10, 0.66, 0.7)]
    figure = reliability_figure(before, after, temperature=0.8)
    diagonal, as_trained, calibrated = figure.data
    assert list(diagonal.x) == [0, 1] and list(as_trained.x) == [0.55]  # empty bins are left out
    assert "T = 0.80" in calibrated.name and list(calibrated.y) == [0.7]


def test_the_epoch_axis_spans_whole_epochs_not_the_first_few_steps() -> None:
    first_steps = {"epochs": [], "batches": [{"epoch": 0.04, "loss": 1.95, "accuracy": 0.14}]}
    layout = learning_curves_figure(first_steps, epochs=30).layout
    assert tuple(layout.xaxis.range) == tuple(layout.xaxis2.range) == (0, 1)  # not 0-0.04
    assert tuple(learning_curves_figure(HISTORY, epochs=30).layout.xaxis.range) == (0, 2)  # grows by epochs
    assert tuple(learning_curves_figure(HISTORY, epochs=2).layout.xaxis.range) == (0, 2)
    assert tuple(learning_curves_figure(first_steps, epochs=None).layout.xaxis.range) == (0, 1)
