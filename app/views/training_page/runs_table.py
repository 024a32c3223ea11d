"""The runs table: every run in one row, the promoted model above it, and the curves of the selected
runs overlaid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from app.access import admin_button, require_admin
from app.charts.training import compare_runs_figure
from app.format import PERCENT_FORMAT, duration_text, percent, percent_points
from app.views.training_page.common import (
    BEST_EPOCH_HELP,
    STATE_LABELS,
    VAL_ACCURACY_HELP,
    VIEWED_RUN_KEY,
    moment,
)
from app.views.training_page.run_details import run_details_ui
from fer_core.records import RecordError
from training import promote
from training.runs import UNREADABLE, RunSnapshot


def runs_section(snapshots: Sequence[RunSnapshot], runs_dir: Path) -> None:
    st.header("Runs")
    promoted_ui()
    if not snapshots:
        st.info(f"No runs in `{runs_dir}` yet.")
        return
    st.caption("Select runs to compare their validation curves; the first selected opens below.")
    event = st.dataframe(
        runs_table(snapshots),
        key="runs_table",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        width="stretch",
        column_config={
            "Run": st.column_config.TextColumn(width="medium"),
            "Status": st.column_config.TextColumn(width="small"),
            "Architecture": st.column_config.TextColumn(width="small"),
            "Data": st.column_config.TextColumn(width="small"),
            "Epochs": st.column_config.TextColumn(width="small"),
            "Val acc": st.column_config.ProgressColumn(
                format=PERCENT_FORMAT, min_value=0, max_value=100, width="small", help=VAL_ACCURACY_HELP
            ),
            "Best epoch val": st.column_config.ProgressColumn(
                format=PERCENT_FORMAT, min_value=0, max_value=100, width="small", help=BEST_EPOCH_HELP
            ),
            "Test acc": st.column_config.ProgressColumn(
                format=PERCENT_FORMAT, min_value=0, max_value=100, width="small"
            ),
            "Duration": st.column_config.TextColumn(width="small"),
            "Started": st.column_config.DatetimeColumn(format="MMM D, HH:mm", width="small"),
        },
    )
    selected = [snapshots[row] for row in event.selection.rows if row < len(snapshots)]
    if selected:
        curves = {snapshot.name: [dict(row) for row in snapshot.history.epochs] for snapshot in selected}
        st.plotly_chart(compare_runs_figure(curves), key="compare-runs")

    names = [snapshot.name for snapshot in snapshots]
    wanted = selected[0].name if selected else st.session_state.get(VIEWED_RUN_KEY)
    opened = st.selectbox("Open run", names, index=names.index(wanted) if wanted in names else 0)
    if opened:
        run_details_ui(snapshots[names.index(opened)])


def runs_table(snapshots: Sequence[RunSnapshot]) -> pd.DataFrame:
    summaries = [snapshot.summary for snapshot in snapshots]
    return pd.DataFrame(
        {
            "Run": [summary.name for summary in summaries],
            "Status": [
                f"{STATE_LABELS[UNREADABLE]}: {summary.problem}"
                if summary.problem
                else STATE_LABELS.get(summary.state, summary.state)
                for summary in summaries
            ],
            "Architecture": [summary.arch for summary in summaries],
            "Data": [
                None if summary.data is None else "demo" if summary.data == "demo" else Path(summary.data).name
                for summary in summaries
            ],
            "Epochs": [
                None if summary.problem else f"{summary.epochs_done} / {summary.epochs}" for summary in summaries
            ],
            "Val acc": [percent_points(summary.val_accuracy) for summary in summaries],
            "Best epoch val": [percent_points(summary.best_val_accuracy) for summary in summaries],
            "Test acc": [percent_points(summary.test_accuracy) for summary in summaries],
            "Duration": [duration_text(summary.duration_s) for summary in summaries],
            "Started": [moment(summary.started_at) for summary in summaries],
        }
    )


def promoted_ui() -> None:
    try:
        card = promote.promoted_info()
    except RecordError as error:
        st.warning(
            f"The Live, Photos and Video pages use a promoted model, but its card cannot be read ({error}).",
            icon=":material/warning:",
        )
        unpromote_button()
        return
    if card is None:
        st.caption(
            "Live uses the **shipped fast model**; Photos, Video and Batch the **shipped quality model**. "
            "Promote a run's model below to use it on every page."
        )
        return
    promoted_at = moment(card.promoted_at)
    when = promoted_at.strftime("%Y-%m-%d %H:%M") if promoted_at else "?"
    st.success(
        f"The Live, Photos and Video pages use the model of run **{card.run or '?'}** "
        f"({card.split or 'test'} accuracy {percent(card.accuracy)}), promoted {when}."
        + (f" Note: {card.note}." if card.note else ""),
        icon=":material/verified:",
    )
    unpromote_button()


def unpromote_button() -> None:
    if admin_button(
        "Go back to the shipped model",
        key="unpromote",
        icon=":material/undo:",
        help="The Live, Photos and Video pages use the model that comes with the app again.",
    ):
        require_admin("change the model the pages use")
        promote.unpromote()
        st.rerun()
