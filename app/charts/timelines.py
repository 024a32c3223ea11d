"""Charts of faces over time, for the Live and Video pages. Builders take plain records and return a
plotly figure; no ``st``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go

from fer_core.face_table import FaceRecord
from fer_core.labels import EMOTIONS, UNCERTAIN, label_color_rgb, rgb_css
from fer_core.video import FaceSummary


def live_timeline_figure(records: Sequence[FaceRecord], now_s: float, seconds: float = 60.0) -> go.Figure:
    """Each face's label over the last ``seconds`` before ``now_s``: one row per emotion, one line per face."""
    span = now_s - min((record.time_s for record in records), default=now_s - seconds)
    shown = min(seconds, max(10.0, span * 1.05))  # a new session's first seconds are not squeezed to the edge
    axis = {"range": [-shown, 0], "title": "seconds ago", "ticksuffix": " s"}
    return _timeline(records, lambda record: record.time_s - now_s, axis, height=280)


def clip_timeline_figure(records: Sequence[FaceRecord], duration_s: float) -> go.Figure:
    """Each face's label through a clip: one row per emotion, one line per face."""
    axis = {"range": [0, max(duration_s, 0.1)], "title": "time in the clip", "ticksuffix": " s"}
    return _timeline(records, lambda record: record.time_s, axis, height=320)


def _timeline(
    records: Sequence[FaceRecord], x_of: Callable[[FaceRecord], float], x_axis: dict[str, Any], *, height: int
) -> go.Figure:
    figure = go.Figure()
    faces = sorted({record.face for record in records})
    for face in faces:
        points = _thinned([record for record in records if record.face == face])
        figure.add_trace(
            go.Scatter(
                x=[x_of(record) for record in points],
                y=[record.label for record in points],
                mode="lines+markers",
                name=f"face {face}",
                line={"color": "rgba(120,120,120,0.35)", "shape": "hv", "width": 1},
                marker={"color": [rgb_css(label_color_rgb(record.label)) for record in points], "size": 7},
                customdata=[f"{record.confidence:.0%}" for record in points],
                hovertemplate=f"face {face}<br>%{{y}} %{{customdata}}<br>%{{x:.1f}} s<extra></extra>",
            )
        )
    figure.update_layout(
        height=height,
        margin={"l": 0, "r": 10, "t": 10, "b": 0},
        xaxis={**x_axis, "fixedrange": True},
        yaxis={
            "categoryorder": "array",
            "categoryarray": [*EMOTIONS, UNCERTAIN],
            "range": [-0.5, len(EMOTIONS) + 0.5],
            "fixedrange": True,
        },
        showlegend=len(faces) > 1,
        legend={"orientation": "h", "y": 1.12},
    )
    return figure


def _thinned(records: Sequence[FaceRecord], per_second: float = 4.0) -> list[FaceRecord]:
    """At most ``per_second`` points per second, always keeping label changes."""
    kept: list[FaceRecord] = []
    for record in records:
        if not kept or record.label != kept[-1].label or record.time_s - kept[-1].time_s >= 1.0 / per_second:
            kept.append(record)
    if records and kept[-1] is not records[-1]:
        kept.append(records[-1])
    return kept


def time_by_emotion_figure(summaries: Sequence[FaceSummary]) -> go.Figure:
    """Seconds each face spent under each label: one stacked bar per face."""
    figure = go.Figure()
    for label in [*EMOTIONS, UNCERTAIN]:
        seconds = [summary.seconds_by_label.get(label, 0.0) for summary in summaries]
        if not any(seconds):
            continue
        figure.add_trace(
            go.Bar(
                x=seconds,
                y=[f"face {summary.face}" for summary in summaries],
                name=label,
                orientation="h",
                marker={"color": rgb_css(label_color_rgb(label))},
                hovertemplate=f"%{{y}}: {label} %{{x:.1f}} s<extra></extra>",
            )
        )
    figure.update_layout(
        barmode="stack",
        showlegend=True,  # plotly hides the legend of a single trace: one emotion would go unnamed
        height=max(200, 110 + 40 * len(summaries)),
        margin={"l": 0, "r": 10, "t": 40, "b": 0},
        xaxis={"title": "seconds", "fixedrange": True, "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "fixedrange": True},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "traceorder": "normal"},
    )
    return figure
