"""Charts of a batch job's results, for the Batch page. Builders take plain data and return a plotly
figure; no ``st``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from fer_core.labels import EMOTIONS, UNCERTAIN, label_color_rgb, rgb_css

LABELS = (*EMOTIONS, UNCERTAIN)


def emotion_distribution_figure(counts: Mapping[str, int]) -> go.Figure:
    """How many faces got each label, in the FER2013 order with "uncertain" last; bars show the share."""
    total = sum(counts.values()) or 1
    values = [int(counts.get(label, 0)) for label in LABELS]
    figure = go.Figure(
        go.Bar(
            x=list(LABELS),
            y=values,
            marker={"color": [rgb_css(label_color_rgb(label)) for label in LABELS]},
            text=[f"{value / total:.0%}" if value else "" for value in values],
            textposition="outside",
            customdata=[value / total for value in values],
            hovertemplate="%{x}: %{y:,} faces (%{customdata:.1%})<extra></extra>",
        )
    )
    figure.update_layout(
        height=320,
        margin={"l": 0, "r": 10, "t": 30, "b": 0},
        xaxis={"fixedrange": True},
        yaxis={"title": "faces", "fixedrange": True, "rangemode": "tozero"},
        showlegend=False,
    )
    return figure


def thinned(points: Sequence[tuple[float, str]], per_second: float = 4.0) -> list[tuple[float, str]]:
    """At most ``per_second`` (time, label) points a second, always keeping label changes and the last
    point: an hour-long clip stays a chart a browser can draw."""
    kept: list[tuple[float, str]] = []
    for point in points:
        if not kept or point[1] != kept[-1][1] or point[0] - kept[-1][0] >= 1.0 / per_second:
            kept.append(point)
    if points and kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


def video_timeline_figure(
    times_s: Sequence[float], tracks: Sequence[str], labels: Sequence[str], duration_s: float | None
) -> go.Figure:
    """Each face track's label through one clip of a batch: one row per emotion, one line per track
    (``tracks`` names each point's track, e.g. "face 2" or "segment 2 face 1")."""
    figure = go.Figure()
    by_track: dict[str, list[tuple[float, str]]] = {}
    for time_s, name, label in zip(times_s, tracks, labels, strict=True):
        by_track.setdefault(name, []).append((time_s, label))
    for track, track_points in by_track.items():
        points = thinned(track_points)
        figure.add_trace(
            go.Scatter(
                x=[time_s for time_s, _ in points],
                y=[label for _, label in points],
                mode="lines+markers",
                name=track,
                line={"color": "rgba(120,120,120,0.35)", "shape": "hv", "width": 1},
                marker={"color": [rgb_css(label_color_rgb(label)) for _, label in points], "size": 6},
                hovertemplate=f"{track}<br>%{{y}}<br>%{{x:.1f}} s<extra></extra>",
            )
        )
    end = max([duration_s or 0.0, *times_s, 0.1])
    figure.update_layout(
        height=320,
        margin={"l": 0, "r": 10, "t": 10, "b": 0},
        xaxis={"range": [0, end], "title": "time in the clip", "ticksuffix": " s"},
        yaxis={
            "categoryorder": "array",
            "categoryarray": list(LABELS),
            "range": [-0.5, len(EMOTIONS) + 0.5],
            "fixedrange": True,
        },
        showlegend=len(set(tracks)) > 1,
        legend={"orientation": "h", "y": 1.12},
    )
    return figure
