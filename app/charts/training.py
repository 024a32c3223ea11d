"""Training charts: learning curves, run comparison, confusion matrix, per-class scores.

Plain data in (a run's history and metrics as :mod:`training.runs` reads them), plotly figure out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fer_core.calibration import ReliabilityBin
from fer_core.labels import label_color_rgb, rgb_css

TRAIN_COLOR = "#3a86ff"
VAL_COLOR = "#fb5607"
BATCH_COLOR = "rgba(58, 134, 255, 0.35)"
RUN_COLORS = ("#3a86ff", "#fb5607", "#8338ec", "#06a77d", "#ffbe0b", "#ff006e", "#6c757d", "#118ab2")
FONT = {"size": 13}
EMPTY_LOSS_RANGE = 2.5  # a 7-class model starts near ln 7 = 1.95


def _points(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None and row.get("epoch") is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _gapped_by_epoch(x: list[float], y: list[float]) -> tuple[list[float | None], list[float | None]]:
    """Within-epoch running averages restart every epoch: break the line there instead of joining."""
    gapped_x: list[float | None] = []
    gapped_y: list[float | None] = []
    for index, (epoch, value) in enumerate(zip(x, y, strict=True)):
        if index and math.ceil(epoch) != math.ceil(x[index - 1]):
            gapped_x.append(None)
            gapped_y.append(None)
        gapped_x.append(epoch)
        gapped_y.append(value)
    return gapped_x, gapped_y


def epoch_axis_end(
    epochs_rows: Sequence[Mapping[str, Any]], batches: Sequence[Mapping[str, Any]], planned_epochs: int | None
) -> float:
    """The end of the epoch axis: the last epoch begun, rounded up to a whole epoch (at least 1), and
    no further than the planned epochs unless a history goes past them."""
    latest = max((float(row["epoch"]) for row in [*epochs_rows, *batches] if row.get("epoch") is not None), default=0.0)
    whole = max(1.0, float(math.ceil(latest)))
    return min(whole, float(planned_epochs)) if planned_epochs and latest <= planned_epochs else whole


def learning_curves_figure(
    history: Mapping[str, Sequence[Mapping[str, Any]]], *, height: int = 360, epochs: int | None = None
) -> go.Figure:
    """Loss and accuracy side by side: train within epochs (faint, batch-level running averages),
    train per epoch and validation per epoch. X is the epoch, fractional within an epoch.

    Accuracy is drawn on 0-100%. The epoch axis spans the whole epochs begun so far (at least the
    first, at most the ``epochs`` planned), so it does not shrink to the first few steps at the start of
    a run and grows one epoch at a time. Before the first point, loss runs from 0 to a little above a
    7-class guess's."""
    epochs_rows = history.get("epochs", [])
    batches = history.get("batches", [])
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.09)
    for column, metric in ((1, "loss"), (2, "accuracy")):
        show_legend = column == 1  # one legend entry per line, for both panels
        figure.add_trace(_within_epoch_trace(batches, metric, show_legend), row=1, col=column)
        figure.add_trace(_epoch_trace(epochs_rows, metric, "train", TRAIN_COLOR, show_legend), row=1, col=column)
        figure.add_trace(
            _epoch_trace(epochs_rows, f"val_{metric}", "validation", VAL_COLOR, show_legend), row=1, col=column
        )
    figure.update_xaxes(title_text="epoch", range=[0, epoch_axis_end(epochs_rows, batches, epochs)])
    figure.update_yaxes(tickformat=".0%", range=[0, 1], row=1, col=2)
    if not epochs_rows and not batches:
        _show_waiting(figure)
    figure.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": -0.32, "x": 0},
        font=FONT,
        hovermode="x unified",
    )
    return figure


def _within_epoch_trace(batches: Sequence[Mapping[str, Any]], metric: str, show_legend: bool) -> go.Scatter:
    """The faint line of running averages within each epoch, broken where an epoch starts."""
    batch_x, batch_y = _gapped_by_epoch(*_points(batches, metric))
    return go.Scatter(
        x=batch_x,
        y=batch_y,
        mode="lines",
        name="train (within epoch)",
        line={"color": BATCH_COLOR, "width": 1.5},
        legendgroup="batches",
        showlegend=show_legend,
        hovertemplate="epoch %{x:.2f}<br>%{y:.3f}<extra>train, running</extra>",
    )


def _epoch_trace(rows: Sequence[Mapping[str, Any]], key: str, name: str, color: str, show_legend: bool) -> go.Scatter:
    """One point per epoch of ``key`` (``loss``, ``val_accuracy``...)."""
    x, y = _points(rows, key)
    return go.Scatter(
        x=x,
        y=y,
        mode="lines+markers",
        name=name,
        line={"color": color, "width": 2.5, "dash": "solid"},
        marker={"size": 7},
        cliponaxis=False,  # the last epoch's marker sits on the axis end: draw it whole
        legendgroup=name,
        showlegend=show_legend,
        hovertemplate=f"epoch %{{x}}<br>%{{y:.3f}}<extra>{name}</extra>",
    )


def _show_waiting(figure: go.Figure) -> None:
    """Before the first point: loss from 0 to a little above a 7-class guess's, and a note."""
    figure.update_yaxes(range=[0, EMPTY_LOSS_RANGE], row=1, col=1)
    figure.add_annotation(
        text="Waiting for the first training steps...",
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 15, "color": "#6c757d"},
    )


def compare_runs_figure(
    curves: Mapping[str, Sequence[Mapping[str, Any]]], *, metric: str = "val_accuracy"
) -> go.Figure:
    """One line per run (name -> its per-epoch history rows) of ``metric`` against the epoch."""
    figure = go.Figure()
    for index, (name, rows) in enumerate(curves.items()):
        x, y = _points(rows, metric)
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=name,
                line={"color": RUN_COLORS[index % len(RUN_COLORS)], "width": 2},
                marker={"size": 6},
                hovertemplate=f"epoch %{{x}}<br>%{{y:.3f}}<extra>{name}</extra>",
            )
        )
    accuracy = "accuracy" in metric
    figure.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="epoch",
        yaxis_title=metric.replace("val_", "validation ").replace("_", " "),
        yaxis_tickformat=".0%" if accuracy else None,
        yaxis_range=[0, 1] if accuracy else None,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        font=FONT,
    )
    return figure


def confusion_figure(confusion: Sequence[Sequence[int]], labels: Sequence[str], *, normalize: bool = True) -> go.Figure:
    """Rows true class, columns predicted. Colour is the share of each true class (row-normalised,
    so rare classes are readable); the text shows the share and the count."""
    counts = np.asarray(confusion, dtype=np.float64)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    values = shares if normalize else counts
    text = [
        [f"{shares[i, j]:.0%}<br>{int(counts[i, j])}" if counts[i, j] else "" for j in range(len(labels))]
        for i in range(len(labels))
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=list(labels),
            y=list(labels),
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalize else None,
            colorbar={"title": "share" if normalize else "count", "tickformat": ".0%" if normalize else None},
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    figure.update_layout(
        height=440,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "predicted", "side": "bottom"},
        yaxis={"title": "true", "autorange": "reversed"},
        font=FONT,
    )
    return figure


def per_class_f1_figure(per_class: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """F1 per emotion, in each emotion's colour, with precision and recall on hover."""
    names = list(per_class)
    figure = go.Figure(
        go.Bar(
            x=names,
            y=[per_class[name]["f1"] for name in names],
            marker_color=[_rgb(name) for name in names],
            customdata=[
                [per_class[name]["precision"], per_class[name]["recall"], per_class[name]["support"]] for name in names
            ],
            hovertemplate="%{x}<br>F1 %{y:.3f}<br>precision %{customdata[0]:.3f}<br>"
            "recall %{customdata[1]:.3f}<br>%{customdata[2]} faces<extra></extra>",
        )
    )
    figure.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"title": "F1", "range": [0, 1], "tickformat": ".0%"},
        font=FONT,
    )
    return figure


def _rgb(emotion: str) -> str:
    return rgb_css(label_color_rgb(emotion))


def reliability_figure(
    bins_before: Sequence[ReliabilityBin], bins_after: Sequence[ReliabilityBin], temperature: float
) -> go.Figure:
    """A reliability diagram: for faces grouped by their top probability, how often that top emotion was
    right, before and after calibration. On the diagonal, a confidence of 70% is right 70% of the time."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", line={"dash": "dash", "color": "gray"}
        )
    )
    for name, bins, color in (
        ("as trained", bins_before, VAL_COLOR),
        (f"calibrated (T = {temperature:.2f})", bins_after, TRAIN_COLOR),
    ):
        shown = [row for row in bins if row.faces > 0]
        figure.add_trace(
            go.Scatter(
                x=[row.confidence for row in shown],
                y=[row.accuracy for row in shown],
                mode="lines+markers",
                name=name,
                line={"color": color},
                marker={"size": [6 + 14 * math.sqrt(row.faces / max(1, max(r.faces for r in shown))) for row in shown]},
                customdata=[row.faces for row in shown],
                hovertemplate="confidence %{x:.0%}: right %{y:.0%} of %{customdata} faces<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        font=FONT,
        legend={"orientation": "h", "y": -0.2},
        xaxis={"title": "confidence (top probability)", "range": [0, 1], "tickformat": ".0%", "fixedrange": True},
        yaxis={"title": "accuracy", "range": [0, 1], "tickformat": ".0%", "fixedrange": True},
    )
    return figure
