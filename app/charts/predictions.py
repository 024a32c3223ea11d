"""Charts of one face's prediction. Builders take plain data and return a plotly figure; no ``st``."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from fer_core.labels import EMOTION_COLORS_RGB, EMOTIONS, rgb_css


def probability_chart(
    scores: Mapping[str, float], *, threshold: float | None = None, title: str | None = None, height: int = 240
) -> go.Figure:
    """Horizontal bars of the seven probabilities in the FER2013 order, each in its emotion's colour.

    The most probable class is drawn solid and the others faded; ``threshold`` adds a dashed line at
    the confidence below which the app calls a face "uncertain".
    """
    missing = [emotion for emotion in EMOTIONS if emotion not in scores]
    if missing:
        raise ValueError(f"scores lack {', '.join(missing)}; expected one score per emotion in {EMOTIONS}")
    values = [float(scores[emotion]) for emotion in EMOTIONS]
    best = max(range(len(values)), key=values.__getitem__)
    colors = [
        rgb_css(EMOTION_COLORS_RGB[emotion], 1.0 if index == best else 0.45) for index, emotion in enumerate(EMOTIONS)
    ]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=list(EMOTIONS),
            orientation="h",
            marker={"color": colors},
            text=[f"{value:.0%}" for value in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    if threshold is not None and threshold > 0:
        figure.add_vline(x=threshold, line={"dash": "dash", "width": 1, "color": "gray"})
    figure.update_layout(
        title={"text": title, "font": {"size": 14}} if title else None,
        height=height,
        margin={"l": 10, "r": 40, "t": 36 if title else 8, "b": 8},
        showlegend=False,
        bargap=0.25,
    )
    figure.update_xaxes(range=[0, 1.0], tickformat=".0%", showgrid=True, fixedrange=True)
    figure.update_yaxes(autorange="reversed", fixedrange=True)
    return figure
