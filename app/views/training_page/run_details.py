"""One opened run: its headline numbers, and tabs for the learning curves, the confusion matrix, the
per-class scores, calibration, the most confident mistakes and the settings."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.charts.training import confusion_figure, learning_curves_figure, per_class_f1_figure, reliability_figure
from app.format import PERCENT_FORMAT, duration_text, percent, percent_points
from app.views.training_page.actions import delete_ui, promote_button, promote_confirmation_ui
from app.views.training_page.common import (
    BEST_EPOCH_HELP,
    GALLERY_SIZE,
    VAL_ACCURACY_HELP,
    first_line,
    settings_caption,
)
from fer_core.labels import EMOTIONS
from fer_core.records import RecordError
from training.records import RunMetrics, RunState
from training.runs import Run, RunSnapshot


def run_details_ui(snapshot: RunSnapshot) -> None:
    with st.container(border=True):
        title, action = st.columns([3, 1], vertical_alignment="center")
        title.subheader(snapshot.name)
        if snapshot.problem:
            st.error(f"This run cannot be read: {snapshot.problem}", icon=":material/error:")
            delete_ui(snapshot)
            return
        title.caption(settings_caption(snapshot))
        with action:
            promote_button(snapshot)
        promote_confirmation_ui(snapshot)
        summary, metrics = snapshot.summary, snapshot.metrics
        first, second = st.columns(3), st.columns(3)
        first[0].metric("Status", summary.state)
        first[1].metric("Test accuracy", percent(summary.test_accuracy))
        first[2].metric("Macro-F1", f"{metrics.macro_f1:.3f}" if metrics else "-")
        second[0].metric("Val accuracy", percent(summary.val_accuracy), help=VAL_ACCURACY_HELP)
        best_epoch = f" (epoch {metrics.best_epoch})" if metrics and metrics.best_epoch else ""
        second[1].metric(f"Best epoch{best_epoch}", percent(summary.best_val_accuracy), help=BEST_EPOCH_HELP)
        second[2].metric("Duration", duration_text(summary.duration_s))
        recalibration_caption(metrics)
        if summary.state == RunState.FAILED:
            st.error(f"This run failed: {first_line(summary.error)}", icon=":material/error:")
        elif summary.state == RunState.STOPPED:
            st.warning(f"Stopped: {snapshot.status.stop_reason or 'stop requested'}.", icon=":material/stop_circle:")

        curves_tab, confusion_tab, classes_tab, calibration_tab, mistakes_tab, settings_tab = st.tabs(
            ["Learning curves", "Confusion matrix", "Per class", "Calibration", "Most confident mistakes", "Settings"]
        )
        with curves_tab:
            epochs = snapshot.config.settings.epochs if snapshot.config else None
            st.plotly_chart(
                learning_curves_figure(snapshot.history.to_json(), epochs=epochs), key=f"curves-{snapshot.name}"
            )
        with confusion_tab:
            if metrics is not None and metrics.confusion:
                st.caption(
                    f"{metrics.split.capitalize()} split, {metrics.n:,} faces. "
                    "Rows are the true emotion; colour is the share of that row."
                )
                st.plotly_chart(
                    confusion_figure([list(row) for row in metrics.confusion], metrics.labels),
                    key=f"confusion-{snapshot.name}",
                )
            else:
                st.info("The confusion matrix appears when the run has finished and been evaluated.")
        with classes_tab:
            per_class_ui(metrics)
        with calibration_tab:
            calibration_ui(snapshot.name, metrics)
        with mistakes_tab:
            mistakes_ui(snapshot.run)
        with settings_tab:
            run_settings_ui(snapshot)
        delete_ui(snapshot)


def recalibration_caption(metrics: RunMetrics | None) -> None:
    """What re-estimating the batch-norm statistics on clean training faces did for this run."""
    recalibration = metrics.recalibration if metrics else None
    if recalibration is None:
        return
    if recalibration.error:
        st.caption(f"Batch-norm re-estimation was skipped ({first_line(recalibration.error, 200)}).")
        return
    if recalibration.val_accuracy_before is None:
        return
    outcome = "kept" if recalibration.kept else "not kept: no better"
    st.caption(
        f"Batch-norm statistics re-estimated on the clean training faces after training: validation accuracy "
        f"{percent(recalibration.val_accuracy_before)} → {percent(recalibration.val_accuracy_after)} ({outcome})."
    )


def per_class_ui(metrics: RunMetrics | None) -> None:
    if metrics is None or not metrics.per_class:
        st.info("Per-class scores appear when the run has finished and been evaluated.")
        return
    table = pd.DataFrame(
        [
            {
                "Emotion": emotion,
                "Precision": percent_points(scores.precision),
                "Recall": percent_points(scores.recall),
                "F1": percent_points(scores.f1),
                "Faces": scores.support,
            }
            for emotion, scores in metrics.per_class.items()
        ]
    )
    left, right = st.columns([3, 2])
    left.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={  # one decimal for every share, as elsewhere on this page
            "Precision": st.column_config.NumberColumn(format=PERCENT_FORMAT),
            "Recall": st.column_config.NumberColumn(format=PERCENT_FORMAT),
            "F1": st.column_config.ProgressColumn(format=PERCENT_FORMAT, min_value=0, max_value=100),
        },
    )
    per_class = {
        emotion: {"precision": scores.precision, "recall": scores.recall, "f1": scores.f1, "support": scores.support}
        for emotion, scores in metrics.per_class.items()
    }
    right.plotly_chart(per_class_f1_figure(per_class), key="per-class-f1")


def calibration_ui(name: str, metrics: RunMetrics | None) -> None:
    """The reliability diagram of the run's served model on the held-out faces, before and after the
    temperature fitted on its validation faces."""
    calibration = metrics.calibration if metrics else None
    if metrics is None or calibration is None:
        st.info("The reliability diagram appears when the run has finished and its served model was evaluated.")
        return
    st.caption(
        f"{metrics.split.capitalize()} split, {metrics.n:,} faces. Expected calibration error "
        f"{calibration.ece_before:.3f} as trained, {calibration.ece_after:.3f} with the temperature "
        f"{calibration.temperature:.2f} fitted on the validation faces (0 means a confidence of 70% is right "
        "70% of the time). The app shows the calibrated probabilities."
    )
    st.plotly_chart(
        reliability_figure(calibration.bins_before, calibration.bins_after, calibration.temperature),
        key=f"reliability-{name}",
    )


def mistakes_ui(run: Run) -> None:
    try:
        mistakes = run.mistakes()
    except RecordError as error:
        st.warning(f"The saved mistakes could not be read: {error}.")
        return
    if mistakes is None:
        st.info("The gallery of mistakes appears when the run has finished and been evaluated.")
        return
    images, labels, predicted, confidence = mistakes.images, mistakes.labels, mistakes.predicted, mistakes.confidence
    if len(images) == 0:
        st.success("No mistakes on the held-out faces.")
        return
    st.caption("The held-out faces the model got wrong with the most confidence: true emotion → prediction.")
    shown = min(GALLERY_SIZE, len(images))
    per_row = 8
    for start in range(0, shown, per_row):
        columns = st.columns(per_row)
        for column, index in zip(columns, range(start, min(start + per_row, shown)), strict=False):
            face = np.repeat(np.repeat(images[index], 2, axis=0), 2, axis=1)
            column.image(
                face,
                caption=f"{EMOTIONS[labels[index]]} → {EMOTIONS[predicted[index]]} ({confidence[index]:.0%})",
                width=96,
            )


def run_settings_ui(snapshot: RunSnapshot) -> None:
    if snapshot.config is None:
        return
    settings: dict[str, Any] = dataclasses.asdict(snapshot.config.settings)
    settings["learning_rate (peak)"] = snapshot.config.learning_rate
    status = snapshot.status
    for key in ("precision", "strategy", "devices", "train_size", "val_size"):
        if getattr(status, key) is not None:
            settings[key] = getattr(status, key)
    rows = [{"Setting": key, "Value": str(value)} for key, value in settings.items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=35 * (len(rows) + 1) + 3)
    st.caption(f"Run folder: `{snapshot.run.path}`")
    model_summary = snapshot.run.model_summary()
    if model_summary is None:  # not written yet, or unreadable: nothing to show
        return
    with st.expander("Model summary"):
        st.code(model_summary, language=None)
