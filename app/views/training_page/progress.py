"""The progress panel: the active run's epoch, step and time left with Stop, or how the run shown
ended, with Resume."""

from __future__ import annotations

import time

import streamlit as st

from app.access import admin_button, require_admin
from app.charts.training import learning_curves_figure
from app.format import duration_text, percent, plural
from app.views.training_page.common import (
    FORCE_STOP_AFTER_S,
    PHASE_TEXT,
    STATE_BADGES,
    VIEWED_RUN_KEY,
    first_line,
    settings_caption,
)
from fer_core.errors import ModelLoadError
from fer_core.run_layout import LAST_CHECKPOINT
from training import launcher
from training.records import FINISH_PHASES, RunState
from training.runs import Run, RunSnapshot


def progress_ui(snapshot: RunSnapshot | None) -> None:
    if snapshot is None:
        st.subheader("Progress")
        st.info("No runs yet. Choose the settings and press **Start training**; its progress appears here.")
        return
    status = snapshot.status
    title, badge = st.columns([4, 1], vertical_alignment="center")
    title.subheader(f"Run {snapshot.name}")
    if snapshot.problem:
        st.error(f"This run cannot be read: {snapshot.problem}", icon=":material/error:")
        return
    with badge:
        st.badge(status.state, color=STATE_BADGES.get(status.state, "gray"))
    st.caption(settings_caption(snapshot))
    if status.is_active:
        active_progress_ui(snapshot)
    elif status.state == RunState.FINISHED and snapshot.metrics is not None:
        st.success(
            f"Finished in {duration_text(status.duration_s)}: {snapshot.metrics.split} accuracy "
            f"**{percent(snapshot.metrics.accuracy)}**, macro-F1 {snapshot.metrics.macro_f1:.3f}. "
            "Details and **Use this model** are below.",
            icon=":material/check_circle:",
        )
    elif status.state == RunState.STOPPED:
        stopped_ui(snapshot)
    elif status.state == RunState.FAILED:
        failed_ui(snapshot)
    if status.resume_note:
        st.info(f"Resumed: {status.resume_note}.", icon=":material/info:")
    epochs = snapshot.config.settings.epochs if snapshot.config else None
    st.plotly_chart(
        learning_curves_figure(snapshot.history.to_json(), epochs=epochs), key=f"live-curves-{snapshot.name}"
    )


def active_progress_ui(snapshot: RunSnapshot) -> None:
    status = snapshot.status
    epochs = status.epochs or (snapshot.config.settings.epochs if snapshot.config else 1)
    if status.state == RunState.QUEUED or status.phase in PHASE_TEXT:
        done = 1.0 if status.phase in FINISH_PHASES else 0.0
        st.progress(done, text=PHASE_TEXT.get(str(status.phase), "Waiting for the trainer to start..."))
    else:
        epoch = status.epoch or 1
        step, steps = status.step or 0, status.steps or 1
        fraction = min(1.0, ((epoch - 1) + step / steps) / epochs)
        eta_text = f" · about {duration_text(status.eta_s)} left" if status.eta_s is not None else ""
        st.progress(fraction, text=f"Epoch {epoch}/{epochs} · step {step}/{steps} · {fraction:.0%}{eta_text}")
    top = st.columns(2)
    top[0].metric("Epochs done", f"{snapshot.epochs_done} / {epochs}")
    estimate = status.epoch_time_estimate_s
    top[1].metric(
        "Time per epoch",
        f"≈ {duration_text(estimate)}" if estimate is not None else "-",
        help="Measured from the steps so far (the first, which compiles the model, left out) and the last "
        "validation; it shows once a few steps have run.",
    )
    bottom = st.columns(2)
    bottom[0].metric("Time left", duration_text(status.eta_s))
    bottom[1].metric(
        "Best epoch's val acc",
        percent(status.best_val_accuracy),
        help=f"Reached in epoch {status.best_epoch}; that checkpoint is the one kept." if status.best_epoch else None,
    )
    stop_ui(snapshot.run)


def stop_ui(run: Run) -> None:
    asked_at = run.stop_requested_at()
    if asked_at is not None:
        waited = time.time() - asked_at
        st.warning(f"Stopping after the current step... ({duration_text(waited)})", icon=":material/pending:")
        if waited > FORCE_STOP_AFTER_S and admin_button(
            "Force stop", key=f"kill-{run.name}", help="Kill the trainer now; the best checkpoint so far is kept."
        ):
            require_admin("stop a training")
            launcher.stop_run(run, force=True)
            st.rerun()
    elif admin_button(
        "Stop",
        icon=":material/stop_circle:",
        key=f"stop-{run.name}",
        help="End the run after the current step. The best checkpoint is kept and the run can be resumed.",
    ):
        require_admin("stop a training")
        launcher.stop_run(run)
        st.toast(f"Stopping {run.name} after the current step.")
        st.rerun()


def stopped_ui(snapshot: RunSnapshot) -> None:
    best = "" if snapshot.run.model_path() is None else " The best checkpoint so far is kept."
    reason = snapshot.status.stop_reason or "stop requested"
    st.warning(
        f"Stopped after {plural(len(snapshot.history.epochs), 'complete epoch')} ({reason}).{best}",
        icon=":material/stop_circle:",
    )
    resume_button(snapshot)


def failed_ui(snapshot: RunSnapshot) -> None:
    st.error(f"This run failed: {first_line(snapshot.status.error)}", icon=":material/error:")
    st.caption(f"The trainer's log is in `{snapshot.run.log_path}`.")
    if snapshot.run.can_resume() and not snapshot.status.diverged:
        resume_button(snapshot)


def resume_button(snapshot: RunSnapshot) -> None:
    """Resume from where the trainer will: the last epoch's checkpoint, or the best one when the last
    cannot be read (:meth:`Run.resume_point`); a run with neither usable cannot be resumed."""
    run = snapshot.run
    try:
        point = run.resume_point()
    except ModelLoadError as error:
        admin_button("Resume", icon=":material/resume:", key=f"resume-{run.name}", disabled=True, help=str(error))
        return
    label = f"Resume from epoch {point.epoch + 1}"
    note = f" {LAST_CHECKPOINT} cannot be read, so it resumes from the best checkpoint." if point.note else ""
    if not admin_button(
        label,
        icon=":material/resume:",
        key=f"resume-{run.name}",
        help="Continue with the same settings from the last completed epoch." + note,
    ):
        return
    require_admin("resume a training")
    try:
        launcher.resume_training(run)
    except (ValueError, OSError) as error:
        st.error(f"Could not resume: {error}")
        return
    st.session_state[VIEWED_RUN_KEY] = run.name
    st.rerun()
