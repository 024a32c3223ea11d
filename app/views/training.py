"""Training: start a run, watch it learn, compare runs, look into one and put its model to work.

The trainer runs as its own process (training.launcher); this page only reads the run folders, so
a reload or a second tab finds the running job again, and a crashed trainer never takes the app down.
Each refresh reads every run folder once (``Run.snapshot``) and draws the progress panel, the runs
table and the opened run from that one reading, so they always agree.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.access import admin_button, admin_only_note, is_admin, require_admin
from app.charts.training import (
    compare_runs_figure,
    confusion_figure,
    learning_curves_figure,
    per_class_f1_figure,
    reliability_figure,
)
from app.state import cached_dataset, data_source_ui
from fer_core.datasets import DEMO_SOURCE
from fer_core.errors import FerError
from fer_core.labels import EMOTIONS
from fer_core.model_store import describe_model
from fer_core.settings import SHIPPED_FAST_MODEL_PATH, SHIPPED_MODEL_PATH, default_runs_dir
from training import launcher, promote, runs
from training.architectures import architectures
from training.config import ARCH_LEARNING_RATES, FIELDS, TrainConfig, kind_of, option
from training.model_files import check_keras_file
from training.records import RunMetrics
from training.runs import RunSnapshot, plural
from training.trainer import check_training_labels, held_out_counts

REFRESH_S = 2.0  # while a run is active
IDLE_REFRESH_S = 10.0  # otherwise: notices a run started from another tab or the command line
FORCE_STOP_AFTER_S = 30.0
GALLERY_SIZE = 24
VIEWED_RUN_KEY = "training_viewed_run"
LIVE_KEY = "training_live_key"
FORM_PREFIX = "train_"  # the form's widget keys: train_<setting>
INIT_FROM_KEY = "train_init_from"
BASIC_SETTINGS = ("epochs", "batch_size", "lr", "augment", "class_weights", "label_smoothing", "patience")
ADVANCED_SETTINGS = tuple(
    name for name in FIELDS if option(name).advanced and option(name).label and name not in BASIC_SETTINGS
)
FORM_SETTINGS = ("arch", *BASIC_SETTINGS, *ADVANCED_SETTINGS)
STATE_LABELS = {  # the table shows plain text: symbols every font has, not emoji
    "queued": "… queued",
    "running": "▶ running",
    "finished": "✓ finished",
    "stopped": "■ stopped",
    "failed": "✗ failed",
    runs.UNREADABLE: "⚠ unreadable",
}
STATE_BADGES = {"queued": "gray", "running": "blue", "finished": "green", "stopped": "orange", "failed": "red"}
PHASE_TEXT = {
    "starting": "Starting the trainer...",
    "loading data": "Loading the faces...",
    "building model": "Building the model...",
    "loading initial weights": "Loading the weights to start from...",
    "exporting": "Saving the best model...",
    "recalibrating": "Re-estimating batch-norm statistics on the clean training faces...",
    "evaluating": "Evaluating the best model on the held-out faces...",
}
PERCENT_FORMAT = "%.1f%%"  # tables show shares of 0-100 with one decimal, as percent() does
RANDOM_START = "Random weights"
SHIPPED_START = "Shipped fast model"  # the shipped models a run of their architecture can start from
SHIPPED_STARTS = {"Shipped quality model": SHIPPED_MODEL_PATH, SHIPPED_START: SHIPPED_FAST_MODEL_PATH}
DEFAULT_SETTINGS = "Default settings"
SETTINGS_SOURCE_KEY = "train_settings_source"
# A run on the demo set that visibly learns in about a minute: the shipped model fine-tuned (measured:
# validation 74% -> 87% over the 3 epochs, test 92%, 83 s on 2 busy CPU cores). The README suggests it too.
QUICK_DEMO_ARCH = "fernet40"  # the shipped fast model's architecture
QUICK_DEMO_SETTINGS: dict[str, Any] = {"epochs": 3, "batch_size": 64, "lr": None, "max_steps_per_epoch": 8}
VAL_ACCURACY_HELP = (
    "Validation accuracy of the model this run kept, the one Use this model serves: the best epoch's "
    "weights, with their batch-norm statistics re-estimated when that scored higher. Shown once the run finished."
)
BEST_EPOCH_HELP = (
    "The best validation accuracy measured during training, at the end of an epoch; its checkpoint is "
    "the one kept. Re-estimating batch-norm statistics afterwards can raise it (Val acc)."
)


def duration_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def moment(timestamp: float | None) -> datetime | None:
    """A run file's time as a datetime; None when there is none or it is not a time (NaN, 1e300)."""
    if timestamp is None:
        return None
    try:
        return datetime.fromtimestamp(timestamp)
    except (OverflowError, OSError, ValueError):
        return None


def percent(value: float | None) -> str:
    """One decimal everywhere on this page: 65.0%, 3.3%."""
    return "-" if value is None else f"{value:.1%}"


def percent_points(value: float | None) -> float | None:
    """A share (0-1) as percentage points, for the tables' PERCENT_FORMAT columns."""
    return None if value is None else 100 * value


def first_line(text: str | None, limit: int = 400) -> str:
    """An error as one readable line (TensorFlow messages can run over many)."""
    line = (text or "unknown error").strip().splitlines()[0] if (text or "").strip() else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def sentence(text: str) -> str:
    """A declaration's help (a lower-case phrase) as the sentence a tooltip shows."""
    return text[:1].upper() + text[1:] + "."


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


def settings_caption(snapshot: RunSnapshot) -> str:
    if snapshot.config is None:
        return ""
    settings, status = snapshot.config.settings, snapshot.status
    parts = [
        f"**{settings.arch}**",
        "demo set" if settings.data == "demo" else f"`{settings.data}`",
        plural(settings.epochs, "epoch"),
        f"batch {settings.batch_size}",
    ]
    if status.precision:
        parts.append(status.precision)
    if (status.devices or 1) > 1:
        parts.append(f"{status.devices} devices")
    return " · ".join(parts)


# ---------------------------------------------------------------- new run


def start_choices(arch: str, snapshots: Sequence[RunSnapshot]) -> dict[str, str]:
    """Models a new ``arch`` run may start from: random weights, the shipped default and every run
    of the same architecture that has saved a model (label -> path, "" for random)."""
    choices = {RANDOM_START: ""}
    for label, shipped in SHIPPED_STARTS.items():
        if shipped.is_file() and describe_model(shipped).card.arch == arch:
            choices[label] = str(shipped)
    for snapshot in snapshots:  # newest first
        model_path = snapshot.run.model_path()
        usable = snapshot.config is not None and not snapshot.status.diverged
        if model_path is not None and usable and snapshot.config.settings.arch == arch:  # type: ignore[union-attr]
            choices[f"Run {snapshot.name}"] = str(model_path)
    return choices


def form_values(config: TrainConfig, snapshots: Sequence[RunSnapshot]) -> dict[str, Any]:
    """The form's widget values (by key) that show ``config``."""
    values: dict[str, Any] = {FORM_PREFIX + name: getattr(config, name) for name in FORM_SETTINGS}
    starts = {path: label for label, path in start_choices(config.arch, snapshots).items()}
    values[INIT_FROM_KEY] = starts.get(config.init_from, RANDOM_START)
    return values


def remembered_settings(snapshots: Sequence[RunSnapshot]) -> TrainConfig:
    """The settings the form opens with: those of the newest run (the last used), else the defaults."""
    return next((snapshot.config.settings for snapshot in snapshots if snapshot.config is not None), TrainConfig())


def init_form(snapshots: Sequence[RunSnapshot]) -> None:
    """Fill in the form's widgets that have no value yet (a first visit, or back from another page,
    which drops widget values) from the last settings used."""
    missing = {
        key: value
        for key, value in form_values(remembered_settings(snapshots), snapshots).items()
        if key not in st.session_state
    }
    st.session_state.update(missing)


def copy_settings(sources: dict[str, TrainConfig], snapshots: Sequence[RunSnapshot]) -> None:
    """The Copy button's callback: put the chosen settings into the form (callbacks run before the
    widgets exist, so they may set their values)."""
    config = sources.get(st.session_state.get(SETTINGS_SOURCE_KEY, DEFAULT_SETTINGS), TrainConfig())
    st.session_state.update(form_values(config, snapshots))


def setting_ui(name: str, container: Any = st) -> Any:
    """The widget of one setting, from its declaration in TrainConfig; returns its value."""
    declared = option(name)
    key = FORM_PREFIX + name
    kind = kind_of(name)
    help_text = sentence(declared.help)
    if name == "arch":  # each architecture in a line of its own (the menu shows only names)
        help_text = "The network to train:\n\n" + "\n".join(
            f"- **{arch}**: {description}" for arch, description in architectures().items()
        )
    if kind == "float | None":  # empty: the architecture's own value
        arch = st.session_state.get(FORM_PREFIX + "arch", TrainConfig().arch)
        help_text += (
            f" Leave it empty (auto) for {arch}'s own default, {ARCH_LEARNING_RATES.get(arch, 1e-3):g}; "
            "type a value to override it."
        )
    if kind == "bool":
        return container.toggle(declared.label, key=key, help=help_text)
    if declared.allowed():
        return container.selectbox(declared.label, declared.allowed(), key=key, help=help_text)
    if kind == "str":
        return container.text_input(declared.label, key=key, help=help_text, placeholder=declared.default_text or None)
    if kind == "int":
        return container.number_input(
            declared.label,
            min_value=int(declared.minimum or 0),
            max_value=int(declared.maximum or 0),
            step=int(declared.step or 1),
            key=key,
            help=help_text,
        )
    return container.number_input(
        declared.label,
        min_value=float(declared.minimum or 0.0),
        max_value=float(declared.maximum or 0.0),
        step=float(declared.step or 0.01),
        format="%g",  # 0.05, 0.001, 1e-05: as many decimals as the value has
        key=key,
        help=help_text,
        placeholder="auto" if kind == "float | None" else None,  # short: the field is narrow
    )


def settings_grid_ui(names: Sequence[str]) -> dict[str, Any]:
    """The widgets of ``names``, two to a row; returns setting -> value."""
    values = {}
    for start in range(0, len(names), 2):
        columns = st.columns(2)
        for column, name in zip(columns, names[start : start + 2], strict=False):
            values[name] = setting_ui(name, column)
    return values


def arch_ui() -> str:
    names = list(architectures())
    if st.session_state.get(FORM_PREFIX + "arch") not in names:
        st.session_state[FORM_PREFIX + "arch"] = names[0]
    arch = str(setting_ui("arch"))
    st.caption(architectures()[arch])
    return arch


def start_from_ui(arch: str, snapshots: Sequence[RunSnapshot]) -> str:
    """Random weights, or the path of a model of ``arch`` to fine-tune."""
    starts = start_choices(arch, snapshots)
    if st.session_state.get(INIT_FROM_KEY) not in starts:
        st.session_state[INIT_FROM_KEY] = RANDOM_START
    label = st.selectbox(
        "Start from",
        list(starts),
        key=INIT_FROM_KEY,
        help="Fine-tune: begin with the weights of a trained model of the same architecture instead of "
        "random ones (with a lower learning rate, e.g. half the default).",
    )
    return starts[str(label)]


def copy_settings_ui(snapshots: Sequence[RunSnapshot]) -> None:
    """Put an earlier run's settings (or the defaults) into the form."""
    sources = {DEFAULT_SETTINGS: TrainConfig()}
    sources.update(
        {f"Run {snapshot.name}": snapshot.config.settings for snapshot in snapshots if snapshot.config is not None}
    )
    choice, button = st.columns([3, 1], vertical_alignment="bottom")
    choice.selectbox(
        "Settings",
        list(sources),
        key=SETTINGS_SOURCE_KEY,
        help="The form opens with the settings of the newest run. Copy another run's settings, or the defaults.",
    )
    button.button(
        "Copy",
        key="train_copy_settings",
        on_click=copy_settings,
        args=(sources, snapshots),
        width="stretch",
        help="Fill the form with these settings (the data set stays the one chosen in the sidebar).",
    )


def quick_demo_ui(source: str, snapshots: Sequence[RunSnapshot]) -> None:
    """On the demo set: a button that fills the form with a run that visibly learns in about a minute
    (fine-tuning the shipped model; from random weights, a short run on the demo set stays near chance)."""
    shipped_fast = SHIPPED_START in start_choices(QUICK_DEMO_ARCH, snapshots)
    if source != DEMO_SOURCE or not shipped_fast:
        return
    info, button = st.columns([3, 1], vertical_alignment="center")
    info.caption(
        f"**Quick demo**: fine-tune the shipped fast model for {QUICK_DEMO_SETTINGS['epochs']} short epochs "
        f"({QUICK_DEMO_SETTINGS['max_steps_per_epoch']} steps each, about a minute on a laptop): the curves rise "
        "from about 70% to about 90%. From random weights a short run stays near chance (14%)."
    )
    button.button(
        "Fill in",
        key="train_quick_demo",
        on_click=fill_quick_demo,
        width="stretch",
        help="Put the quick demo's settings into the form; Start training runs it.",
    )


def fill_quick_demo() -> None:
    """The quick demo button's callback (it runs before the widgets exist, so it may set their values)."""
    st.session_state.update({FORM_PREFIX + name: value for name, value in QUICK_DEMO_SETTINGS.items()})
    st.session_state[FORM_PREFIX + "arch"] = QUICK_DEMO_ARCH
    st.session_state[INIT_FROM_KEY] = SHIPPED_START


def new_run_ui(source: str, snapshots: Sequence[RunSnapshot]) -> None:
    st.subheader("New run")
    if not is_admin():
        admin_only_note("start, stop, resume, delete or promote runs")
        return
    init_form(snapshots)
    dataset_ok = data_summary_ui(source)
    quick_demo_ui(source, snapshots)
    copy_settings_ui(snapshots)
    arch = arch_ui()
    values = settings_grid_ui(BASIC_SETTINGS)
    with st.expander("Advanced"):
        values.update(settings_grid_ui(ADVANCED_SETTINGS))
        init_from = start_from_ui(arch, snapshots)
    busy = next((snapshot for snapshot in snapshots if snapshot.is_active), None)
    if start_button_ui(busy, dataset_ok):
        start_run({**values, "data": source, "arch": arch, "init_from": init_from})


def start_button_ui(busy: RunSnapshot | None, dataset_ok: bool) -> bool:
    if busy is not None:
        st.info(f"Run **{busy.name}** is training. One training at a time: stop it or wait for it to finish.")
    return st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        disabled=busy is not None or not dataset_ok,
        width="stretch",
        key="train_start",
    )


def start_run(values: dict[str, Any]) -> None:
    """Check the settings, start the trainer and show its run; a refusal is shown as an error."""
    require_admin("start a training")
    try:
        config = TrainConfig(**values)
        run = launcher.start_training(config)
    except launcher.TrainingBusyError as error:
        st.error(f"Not started: {error}")
        return
    except (ValueError, OSError) as error:
        st.error(f"Could not start the training: {error}")
        return
    st.session_state[VIEWED_RUN_KEY] = run.name
    st.rerun()


def data_summary_ui(source: str) -> bool:
    """One line on the chosen faces; False (with the reason shown) when they cannot be trained on."""
    try:
        dataset = cached_dataset(source)
    except (FerError, OSError) as error:
        st.error(f"Cannot train on that data set: {error}")
        return False
    counts = {name: int((dataset.splits == name).sum()) for name in dataset.split_names}
    train_labels = dataset.labels[dataset.splits == "train"]
    if "val" in counts:
        val_size = counts["val"]
        parts = [f"{counts.get('train', 0):,} train", f"{val_size:,} validation"]
    else:
        share = float(st.session_state.get(FORM_PREFIX + "val_fraction", TrainConfig().val_fraction))
        val_size = int(held_out_counts(train_labels, share).sum())
        parts = [f"{len(train_labels) - val_size:,} train", f"{val_size:,} validation (held out of train)"]
    parts += [f"{count:,} {name.replace('_', ' ')}" for name, count in counts.items() if name not in ("train", "val")]
    label = "Demo set (synthetic faces)" if dataset.synthetic else dataset.name
    st.caption(f"**{label}**: " + " · ".join(parts))
    if "train" not in counts:
        st.error("This data set has no train split: point the sidebar at a folder with train/ in it.")
        return False
    try:
        check_training_labels(train_labels, val_size)
    except FerError as error:
        st.error(f"Cannot train on these faces: {error}.")
        return False
    return True


# ---------------------------------------------------------------- progress panel


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
    elif status.state == "finished" and snapshot.metrics is not None:
        st.success(
            f"Finished in {duration_text(status.duration_s)}: {snapshot.metrics.split} accuracy "
            f"**{percent(snapshot.metrics.accuracy)}**, macro-F1 {snapshot.metrics.macro_f1:.3f}. "
            "Details and **Use this model** are below.",
            icon=":material/check_circle:",
        )
    elif status.state == "stopped":
        stopped_ui(snapshot)
    elif status.state == "failed":
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
    if status.state == "queued" or status.phase in PHASE_TEXT:
        done = 1.0 if status.phase in ("exporting", "recalibrating", "evaluating") else 0.0
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


def stop_ui(run: runs.Run) -> None:
    try:
        waited: float | None = time.time() - (run.path / runs.STOP_FLAG).stat().st_mtime
    except FileNotFoundError:  # no stop requested, or the trainer has just taken the request
        waited = None
    if waited is not None:
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
    st.caption(f"The trainer's log is in `{snapshot.run.path / runs.LOG_FILE}`.")
    if (snapshot.run.path / runs.LAST_CHECKPOINT).is_file() and not snapshot.status.diverged:
        resume_button(snapshot)


def resume_button(snapshot: RunSnapshot) -> None:
    """Resume from the last epoch's checkpoint, or from the best one when the last cannot be read."""
    run, checkpoint = snapshot.run, snapshot.checkpoint
    label, note = f"Resume from epoch {checkpoint.epoch + 1}", ""
    if (run.path / runs.LAST_CHECKPOINT).is_file():
        try:
            check_keras_file(run.path / runs.LAST_CHECKPOINT)
        except FerError as error:
            label = f"Resume from epoch {(checkpoint.best_epoch or 0) + 1}"
            note = f" {runs.LAST_CHECKPOINT} cannot be read ({error}), so it resumes from the best checkpoint."
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


# ---------------------------------------------------------------- runs table and details


def runs_table(snapshots: Sequence[RunSnapshot]) -> pd.DataFrame:
    summaries = [snapshot.summary for snapshot in snapshots]
    return pd.DataFrame(
        {
            "Run": [summary.name for summary in summaries],
            "Status": [
                f"{STATE_LABELS[runs.UNREADABLE]}: {summary.problem}"
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


def promoted_ui() -> None:
    try:
        card = promote.promoted_info()
    except runs.RecordError as error:
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
        if summary.state == "failed":
            st.error(f"This run failed: {first_line(summary.error)}", icon=":material/error:")
        elif summary.state == "stopped":
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
            settings_ui(snapshot)
        delete_ui(snapshot)


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


def promoted_run_name() -> str | None:
    try:
        card = promote.promoted_info()
    except runs.RecordError:
        return None
    return card.run if card is not None else None


def confirm_key(action: str, snapshot: RunSnapshot) -> str:
    return f"confirm-{action}-{snapshot.name}"


def promote_button(snapshot: RunSnapshot) -> None:
    in_use = promoted_run_name() == snapshot.name
    has_model = snapshot.run.model_path() is not None
    if snapshot.status.diverged:
        why_not = "This run diverged (its loss became NaN or infinite): its model is not usable."
    elif not has_model:
        why_not = "This run has no model yet: it appears after the first epoch."
    else:
        why_not = ""
    clicked = admin_button(
        "In use" if in_use else "Use this model",
        type="primary",
        icon=":material/check:" if in_use else ":material/rocket_launch:",
        key=f"promote-{snapshot.name}",
        disabled=bool(why_not),
        width="stretch",
        help=why_not
        or (
            "Live, Photos and Video use this run's model now. Click to copy it there again (after the run "
            "was resumed, say); **Go back to the shipped model** undoes it."
            if in_use
            else "Copy this run's model to where the Live, Photos and Video pages load it from."
        ),
    )
    if not clicked:
        return
    if promote.promotion_concerns(snapshot.run):
        st.session_state[confirm_key("promote", snapshot)] = True  # asked below, with the reasons
        return
    promote_run(snapshot)


def promote_confirmation_ui(snapshot: RunSnapshot) -> None:
    """Ask before promoting a model that may make the Live, Photos and Video pages worse, and say why."""
    key = confirm_key("promote", snapshot)
    if not st.session_state.get(key) or not is_admin():
        return
    concerns = promote.promotion_concerns(snapshot.run)
    st.warning(
        "Use this model anyway? " + " ".join(concern[:1].upper() + concern[1:] + "." for concern in concerns),
        icon=":material/warning:",
    )
    yes, no = st.columns(2)
    if yes.button("Use it anyway", key=f"promote-anyway-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        promote_run(snapshot)
    if no.button("Keep the current model", key=f"promote-cancel-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        st.rerun()


def promote_run(snapshot: RunSnapshot) -> None:
    require_admin("change the model the pages use")
    try:
        destination = promote.promote_run(snapshot.run)
    except (ValueError, OSError) as error:
        st.error(f"Could not promote: {error}")
        return
    st.toast(
        f"Live, Photos and Video now use {snapshot.name}'s model ({destination.name}).", icon=":material/rocket_launch:"
    )
    st.rerun()


def delete_ui(snapshot: RunSnapshot) -> None:
    """Delete the run folder, after a confirmation; never the training run or the promoted model's."""
    if not is_admin():
        return
    if snapshot.is_active:
        why_not = "A run that trains cannot be deleted: stop it first."
    elif promoted_run_name() == snapshot.name:
        why_not = "The Live, Photos and Video pages use this run's model: go back to the shipped model first."
    else:
        why_not = ""
    key = confirm_key("delete", snapshot)
    if not st.session_state.get(key):
        if st.button(
            "Delete run",
            icon=":material/delete:",
            key=f"delete-{snapshot.name}",
            disabled=bool(why_not),
            help=why_not or "Delete this run's folder: its settings, curves and models.",
        ):
            st.session_state[key] = True
            st.rerun()
        return
    st.warning(f"Delete run **{snapshot.name}** and everything in its folder? This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button("Delete for good", type="primary", key=f"delete-yes-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        require_admin("delete runs")
        try:
            launcher.delete_run(snapshot.run)
        except launcher.PartialDeleteError as error:  # gone from the runs; some files were left behind
            st.toast(str(error), icon=":material/warning:", duration="long")
            st.rerun()
        except (ValueError, OSError) as error:
            st.error(f"Could not delete: {error}")
            return
        st.toast(f"Deleted run {snapshot.name}.", icon=":material/delete:")
        st.rerun()
    if no.button("Keep it", key=f"delete-no-{snapshot.name}", width="stretch"):
        st.session_state.pop(key, None)
        st.rerun()


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


def mistakes_ui(run: runs.Run) -> None:
    path = run.path / runs.MISCLASSIFIED_FILE
    if not path.is_file():
        st.info("The gallery of mistakes appears when the run has finished and been evaluated.")
        return
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
            predicted, confidence = stored["predicted"], stored["confidence"]
    except (OSError, ValueError, KeyError):
        st.warning("The saved mistakes could not be read.")
        return
    if not (len(images) == len(labels) == len(predicted) == len(confidence)) or not all(
        np.all((codes >= 0) & (codes < len(EMOTIONS))) for codes in (labels, predicted)
    ):
        st.warning("The saved mistakes could not be read: they do not match the emotions this app knows.")
        return
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


def settings_ui(snapshot: RunSnapshot) -> None:
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
    try:
        model_summary = (snapshot.run.path / runs.SUMMARY_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:  # not written yet, or unreadable: nothing to show
        return
    with st.expander("Model summary"):
        st.code(model_summary, language=None)


# ---------------------------------------------------------------- page


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


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
