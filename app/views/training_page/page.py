"""The Training page: one fragment that reads every run folder once per refresh and draws the form,
the progress panel, the runs table and the opened run from that one reading, so they always agree."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from app.state import data_source_ui
from app.views.training_page.common import IDLE_REFRESH_S, LIVE_KEY, REFRESH_S, VIEWED_RUN_KEY
from app.views.training_page.form import new_run_ui
from app.views.training_page.progress import progress_ui
from app.views.training_page.runs_table import runs_section
from fer_core.settings import default_runs_dir
from training import runs
from training.runs import RunSnapshot


def read_snapshots(runs_dir: Path) -> list[RunSnapshot]:
    """Every run, newest first, each read once for this refresh."""
    return [run.snapshot() for run in runs.list_runs(runs_dir)]


def current_snapshot(snapshots: Sequence[RunSnapshot]) -> RunSnapshot | None:
    """What the progress panel shows: the active run (whoever started it), else the run last started
    or opened in this session, else the newest run."""
    active = next((snapshot for snapshot in snapshots if snapshot.is_active), None)
    if active is not None:
        return active
    viewed = st.session_state.get(VIEWED_RUN_KEY)
    return next((snapshot for snapshot in snapshots if snapshot.name == viewed), snapshots[0] if snapshots else None)


def live_key(snapshot: RunSnapshot | None) -> tuple[str, str] | None:
    return (snapshot.name, snapshot.status.state) if snapshot is not None else None


def training_page(source: str, runs_dir: Path) -> None:
    """The whole page body, read from one snapshot of the runs and refreshed as one fragment."""
    snapshots = read_snapshots(runs_dir)
    current = current_snapshot(snapshots)
    if live_key(current) != st.session_state.get(LIVE_KEY):
        st.session_state[LIVE_KEY] = live_key(current)
        if st.session_state.get("training_fragment_ran"):
            st.rerun()  # a run started, ended or appeared: the refresh interval changes too
    st.session_state["training_fragment_ran"] = True
    settings_column, progress_column = st.columns([2, 3], gap="large")
    with settings_column, st.container(border=True):
        new_run_ui(source, snapshots)
    with progress_column:
        progress_ui(current)
    st.divider()
    runs_section(snapshots, runs_dir)


def main() -> None:
    st.title("Training")
    st.caption(
        "Train a model on the chosen faces and watch it learn. Runs keep their settings, curves and best "
        "model in their own folder; compare them below and put the best one to work on the Live, Photos and Video pages."
    )
    data_source = data_source_ui()
    runs_folder = default_runs_dir()
    st.session_state["training_fragment_ran"] = False
    refresh = REFRESH_S if runs.active_run(runs_folder) is not None else IDLE_REFRESH_S
    st.fragment(run_every=refresh)(training_page)(data_source, runs_folder)
