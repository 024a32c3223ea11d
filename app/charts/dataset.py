"""Figures for the Dataset page: class balance per split and pixel-intensity histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SPLIT_COLORS: dict[str, str] = {
    "train": "#3a86ff",
    "val": "#8338ec",
    "test": "#fb5607",
    "private_test": "#ffbe0b",
}
SPLIT_TITLES: dict[str, str] = {"train": "train", "val": "val", "test": "test", "private_test": "private test"}
_FALLBACK_COLORS = ("#2a9d8f", "#e76f51", "#264653")
HISTOGRAM_COLOR = "#8ecae6"
MEAN_COLOR = "#ffbe0b"


def class_counts_figure(
    counts: Mapping[str, Mapping[str, int]], emotions: Sequence[str], *, share: bool = False
) -> go.Figure:
    """Grouped bars: one group per emotion, one bar per split.

    ``counts`` is ``{split: {emotion: count}}``. With ``share`` the bars show each class's share of its
    split (so a small test split can be compared with train); hover always gives both numbers.
    """
    figure = go.Figure()
    for position, (split_name, per_class) in enumerate(counts.items()):
        values = np.array([per_class.get(emotion, 0) for emotion in emotions], dtype=np.float64)
        total = values.sum()
        shares = values / total * 100 if total else np.zeros_like(values)
        figure.add_bar(
            name=f"{SPLIT_TITLES.get(split_name, split_name)} ({int(total):,})",
            x=list(emotions),
            y=shares if share else values,
            text=[f"{value:.1f}%" for value in shares] if share else [f"{int(value):,}" for value in values],
            textposition="outside",
            cliponaxis=False,
            customdata=np.stack([values, shares], axis=1),
            hovertemplate=f"<b>%{{x}}</b> in {split_name}<br>%{{customdata[0]:,}} faces<br>"
            "%{customdata[1]:.1f}% of the split<extra></extra>",
            marker_color=SPLIT_COLORS.get(split_name, _FALLBACK_COLORS[position % len(_FALLBACK_COLORS)]),
        )
    figure.update_layout(
        barmode="group",
        bargap=0.25,
        bargroupgap=0.05,
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.02,
            "x": 0,
            "title": {"text": "Split ", "side": "left"},
        },
        yaxis_title="share of the split (%)" if share else "faces",
        xaxis_title=None,
        uniformtext={"minsize": 9, "mode": "hide"},
    )
    return figure


def pixel_histogram_figure(histogram: npt.NDArray[np.integer], *, label: str) -> go.Figure:
    """Share of pixels at each gray level 0-255, over a strip that shows what each level looks like."""
    counts = np.asarray(histogram, dtype=np.float64)
    if counts.shape != (256,):
        raise ValueError(f"expected 256 bins, got shape {counts.shape}")
    total = counts.sum()
    shares = counts / total * 100 if total else counts
    levels = np.arange(256)
    mean = float((levels * counts).sum() / total) if total else 0.0
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.92, 0.08], vertical_spacing=0.02)
    figure.add_bar(
        x=levels,
        y=shares,
        marker={"color": HISTOGRAM_COLOR, "line": {"width": 0}},
        hovertemplate="gray level %{x}<br>%{y:.2f}% of pixels<extra></extra>",
        name=label,
        row=1,
        col=1,
    )
    figure.add_heatmap(
        x=levels, z=[levels], colorscale="gray", showscale=False, hoverinfo="skip", zmin=0, zmax=255, row=2, col=1
    )
    figure.add_vline(
        x=mean,
        line_dash="dash",
        line_color=MEAN_COLOR,
        annotation_text=f"mean {mean:.0f}",
        annotation_font_color=MEAN_COLOR,
        row=1,
        col=1,
    )
    figure.update_layout(height=300, bargap=0, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    figure.update_yaxes(title_text="% of pixels", row=1, col=1)
    # Saturated pixels (pure black or white) can tower over the rest; clip the axis rather than the story.
    interior_peak = float(shares[1:255].max()) if total else 0.0
    if interior_peak > 0 and max(shares[0], shares[255]) > 2 * interior_peak:
        ceiling = interior_peak * 1.6
        figure.update_yaxes(range=[0, ceiling], row=1, col=1)
        for level in (0, 255):
            if shares[level] > ceiling:
                figure.add_annotation(
                    x=level,
                    y=ceiling,
                    text=f"{level}: {shares[level]:.1f}% (off the scale)",
                    showarrow=False,
                    xanchor="left" if level == 0 else "right",
                    yanchor="top",
                    row=1,
                    col=1,
                )
    figure.update_yaxes(visible=False, row=2, col=1)
    figure.update_xaxes(range=[-0.5, 255.5])
    figure.update_xaxes(title_text="gray level (0 black, 255 white)", row=2, col=1)
    return figure
