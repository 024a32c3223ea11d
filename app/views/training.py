"""Training: start a run, watch it learn, compare runs, look into one and put its model to work.

The trainer runs as its own process (training.launcher); this page only reads the run folders, so
a reload or a second tab finds the running job again, and a crashed trainer never takes the app down.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.charts.training import compare_runs_figure, confusion_figure, learning_curves_figure, per_class_f1_figure
from app.state import cached_dataset, data_source_ui
from fer_core.errors import FerError
from fer_core.inference import describe_model
from fer_core.labels import EMOTIONS
from fer_core.models import architectures
from fer_core.settings import SHIPPED_MODEL_PATH, default_runs_dir
from training import launcher, promote, runs
from training.config import ARCH_LEARNING_RATES, TrainConfig

REFRESH_S = 2.0  # while a run is active
IDLE_REFRESH_S = 10.0  # otherwise: notices a run started from another tab or the command line
TABLE_REFRESH_S = 10.0  # the runs table while a run is active
FORCE_STOP_AFTER_S = 30.0
GALLERY_SIZE = 24
VIEWED_RUN_KEY = "training_viewed_run"
LIVE_KEY = "training_live_key"
STATE_LABELS = {  # the table shows plain text: symbols every font has, not emoji
    "queued": "… queued",
    "running": "▶ running",
    "finished": "✓ finished",
    "stopped": "■ stopped",
    "failed": "✗ failed",
}
STATE_BADGES = {"queued": "gray", "running": "blue", "finished": "green", "stopped": "orange", "failed": "red"}
PHASE_TEXT = {
    "starting": "Starting the trainer...",
    "loading data": "Loading the faces...",
    "building model": "Building the model...",
    "exporting": "Saving the best model...",
    "recalibrating": "Re-estimating batch-norm statistics on the clean training faces...",
    "evaluating": "Evaluating the best model on the held-out faces...",
}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def first_line(text: str | None, limit: int = 400) -> str:
    """An error as one readable line (TensorFlow messages can run over many)."""
    line = (text or "unknown error").strip().splitlines()[0] if (text or "").strip() else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def current_run(runs_dir: Path) -> runs.Run | None:
    """What the live panel shows: the active run (whoever started it), else the run last started or
    opened in this session, else the newest run."""
    active = runs.active_run(runs_dir)
    if active is not None:
        return active
    viewed = st.session_state.get(VIEWED_RUN_KEY)
    if viewed and (runs_dir / viewed / runs.CONFIG_FILE).is_file():
        return runs.Run(runs_dir / viewed)
    all_runs = runs.list_runs(runs_dir)
    return all_runs[0] if all_runs else None


def live_key(run: runs.Run | None) -> tuple[str, str] | None:
    return (run.name, str(run.status().get("state"))) if run is not None else None


def settings_caption(settings: dict[str, Any], status: dict[str, Any]) -> str:
    parts = [
        f"**{settings.get('arch', '?')}**",
        "demo set" if settings.get("data") == "demo" else f"`{settings.get('data')}`",
        f"{settings.get('epochs', '?')} epochs",
        f"batch {settings.get('batch_size', '?')}",
    ]
    if status.get("precision"):
        parts.append(str(status["precision"]))
    if (status.get("devices") or 1) > 1:
        parts.append(f"{status['devices']} devices")
    return " · ".join(parts)


# ---------------------------------------------------------------- new run


RANDOM_START = "Random weights"


def start_choices(arch: str, runs_dir: Path) -> dict[str, str]:
    """Models a new ``arch`` run may start from: random weights, the shipped default and every run
    of the same architecture that has saved a model (label -> path, "" for random)."""
    choices = {RANDOM_START: ""}
    if SHIPPED_MODEL_PATH.is_file() and describe_model(SHIPPED_MODEL_PATH).details.get("arch") == arch:
        choices["Shipped default model"] = str(SHIPPED_MODEL_PATH)
    for run in runs.list_runs(runs_dir):  # newest first
        model_path = run.model_path()
        if model_path is not None and (run.config().get("settings") or {}).get("arch") == arch:
            choices[f"Run {run.name}"] = str(model_path)
    return choices


def new_run_ui(source: str, busy: runs.Run | None) -> None:
    st.subheader("New run")
    dataset_ok = data_summary_ui(source)
    defaults = TrainConfig()
    names = list(architectures())
    arch = st.selectbox(
        "Architecture",
        names,
        index=names.index(defaults.arch) if defaults.arch in names else 0,
        key="train_arch",
        help="\n\n".join(f"**{name}**: {description}" for name, description in architectures().items()),
    )
    st.caption(architectures()[arch])
    left, right = st.columns(2)
    epochs = left.number_input(
        "Epochs", 1, 500, defaults.epochs, key="train_epochs", help="Passes over the training faces."
    )
    batch_size = right.selectbox(
        "Batch size",
        [16, 32, 64, 128, 256],
        index=2,
        key="train_batch_size",
        help="Faces per step. Larger is faster per face; the learning rate suits 64.",
    )
    lr = st.number_input(
        "Peak learning rate",
        min_value=1e-5,
        max_value=0.5,
        value=None,
        step=1e-4,
        format="%.5f",
        key="train_lr",
        placeholder=f"{arch}'s default: {ARCH_LEARNING_RATES.get(arch, 1e-3):g}",
        help="AdamW with a short warm-up and cosine decay. Leave empty for the architecture's own default.",
    )
    left, right = st.columns(2)
    augment = left.toggle(
        "Augmentation",
        defaults.augment,
        key="train_augment",
        help="Random flips, small shifts, rotations, zoom, brightness and contrast changes of the training faces.",
    )
    class_weights = right.toggle(
        "Class weights",
        defaults.class_weights,
        key="train_class_weights",
        help="Weigh rare emotions (disgust) up, softened (square root of inverse frequency).",
    )
    left, right = st.columns(2)
    label_smoothing = left.slider(
        "Label smoothing",
        0.0,
        0.3,
        defaults.label_smoothing,
        0.05,
        key="train_label_smoothing",
        help="Soften the one-hot targets: helps with FER2013's noisy labels.",
    )
    patience = right.number_input(
        "Patience",
        1,
        200,
        defaults.patience,
        key="train_patience",
        help="Stop early after this many epochs without a better validation accuracy.",
    )
    with st.expander("Advanced"):
        max_steps = st.number_input(
            "Max steps per epoch",
            0,
            100_000,
            defaults.max_steps_per_epoch,
            key="train_max_steps",
            help="0: the whole training split every epoch. A small number makes a quick trial run.",
        )
        left, right = st.columns(2)
        seed = left.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="train_seed")
        val_fraction = right.number_input(
            "Validation share",
            0.05,
            0.45,
            defaults.val_fraction,
            0.05,
            key="train_val_fraction",
            help="Carved out of train (stratified) when the data set has no val split of its own.",
        )
        weight_decay = left.number_input(
            "Weight decay", 0.0, 1.0, defaults.weight_decay, 0.01, key="train_weight_decay", help="AdamW, decoupled."
        )
        precision = right.selectbox(
            "Precision",
            ["auto", "float32", "mixed_bfloat16", "mixed_float16"],
            key="train_precision",
            help="auto: float16 on a GPU, bfloat16 on CPUs that have it, else float32. The saved model is float32.",
        )
        strategy = st.selectbox(
            "Devices",
            ["default", "mirrored"],
            key="train_strategy",
            format_func=lambda name: {"default": "one device", "mirrored": "all devices (MirroredStrategy)"}[name],
        )
        starts = start_choices(arch, default_runs_dir())
        start_from = st.selectbox(
            "Start from",
            list(starts),
            key="train_init_from",
            help="Fine-tune: begin with the weights of a trained model of the same architecture instead of "
            "random ones (with a lower learning rate, e.g. half the default).",
        )

    if busy is not None:
        st.info(f"Run **{busy.name}** is training. One training at a time: stop it or wait for it to finish.")
    start = st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        disabled=busy is not None or not dataset_ok,
        width="stretch",
        key="train_start",
    )
    if not start:
        return
    try:
        config = TrainConfig(
            data=source,
            arch=arch,
            epochs=int(epochs),
            batch_size=int(batch_size),
            lr=float(lr) if lr is not None else None,
            weight_decay=float(weight_decay),
            augment=bool(augment),
            class_weights=bool(class_weights),
            label_smoothing=float(label_smoothing),
            patience=int(patience),
            val_fraction=float(val_fraction),
            seed=int(seed),
            strategy=str(strategy),
            precision=str(precision),
            max_steps_per_epoch=int(max_steps),
            init_from=starts.get(str(start_from), ""),
        )
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
    """One line on the chosen faces; False (with the reason shown) when they cannot be loaded."""
    try:
        dataset = cached_dataset(source)
    except (FerError, OSError) as error:
        st.error(f"Cannot train on that data set: {error}")
        return False
    counts = {name: int((dataset.splits == name).sum()) for name in dataset.split_names}
    if "val" in counts:
        parts = [f"{counts.get('train', 0):,} train", f"{counts['val']:,} validation"]
    else:
        share = float(st.session_state.get("train_val_fraction", TrainConfig().val_fraction))
        held_out = round(counts.get("train", 0) * share)
        parts = [f"{counts.get('train', 0) - held_out:,} train", f"{held_out:,} validation (held out of train)"]
    parts += [f"{count:,} {name.replace('_', ' ')}" for name, count in counts.items() if name not in ("train", "val")]
    label = "Demo set (synthetic faces)" if dataset.synthetic else dataset.name
    st.caption(f"**{label}**: " + " · ".join(parts))
    if "train" not in counts:
        st.error("This data set has no train split: point the sidebar at a folder with train/ in it.")
        return False
    return True


# ---------------------------------------------------------------- live panel


def live_panel(runs_dir: Path) -> None:
    run = current_run(runs_dir)
    st.session_state[LIVE_KEY] = live_key(run)
    interval = REFRESH_S if run is not None and run.is_active else IDLE_REFRESH_S
    st.fragment(run_every=interval)(live_fragment)(runs_dir)


def live_fragment(runs_dir: Path) -> None:
    run = current_run(runs_dir)
    if live_key(run) != st.session_state.get(LIVE_KEY):
        st.rerun()  # a run started, ended or appeared: the form and the table change too
    if run is None:
        st.subheader("Progress")
        st.info("No runs yet. Choose the settings and press **Start training**; its progress appears here.")
        return
    run_progress_ui(run)


def run_progress_ui(run: runs.Run) -> None:
    status = run.status()
    state = str(status.get("state"))
    title, badge = st.columns([4, 1], vertical_alignment="center")
    title.subheader(f"Run {run.name}")
    with badge:
        st.badge(state, color=STATE_BADGES.get(state, "gray"))
    st.caption(settings_caption(run.config().get("settings", {}), status))
    history = run.history()

    if state in runs.ACTIVE_STATES:
        active_progress_ui(run, status)
    elif state == "finished":
        metrics = run.metrics()
        st.success(
            f"Finished in {duration_text(status.get('elapsed_s'))}: "
            f"{metrics.get('split', 'test')} accuracy **{percent(metrics.get('accuracy'))}**, "
            f"macro-F1 {metrics.get('macro_f1', 0):.3f}. Details and **Use this model** are below.",
            icon=":material/check_circle:",
        )
    elif state == "stopped":
        stopped_ui(run, status)
    elif state == "failed":
        failed_ui(run, status)
    st.plotly_chart(learning_curves_figure(history), key=f"live-curves-{run.name}")


def active_progress_ui(run: runs.Run, status: dict[str, Any]) -> None:
    phase = status.get("phase")
    epochs = int(status.get("epochs") or run.config().get("settings", {}).get("epochs") or 1)
    if status.get("state") == "queued" or phase in PHASE_TEXT:
        done = 1.0 if phase in ("exporting", "recalibrating", "evaluating") else 0.0
        st.progress(done, text=PHASE_TEXT.get(str(phase), "Waiting for the trainer to start..."))
    else:
        epoch = int(status.get("epoch") or 1)
        step, steps = int(status.get("step") or 0), int(status.get("steps") or 1)
        fraction = min(1.0, ((epoch - 1) + step / steps) / epochs)
        eta = status.get("eta_s")
        eta_text = f" · about {duration_text(eta)} left" if eta is not None else ""
        st.progress(fraction, text=f"Epoch {epoch}/{epochs} · step {step}/{steps} · {fraction:.0%}{eta_text}")
    columns = st.columns(4)
    columns[0].metric("Epochs done", f"{status.get('epochs_done', 0)} / {epochs}")
    estimate = status.get("epoch_time_estimate_s")
    columns[1].metric(
        "Time per epoch",
        f"≈ {duration_text(estimate)}" if estimate is not None else "measuring...",
        help="From the steps so far (the first, which compiles the model, left out) and the last validation.",
    )
    columns[2].metric("Time left", duration_text(status.get("eta_s")) if status.get("eta_s") is not None else "-")
    best_epoch = status.get("best_epoch")
    columns[3].metric(
        "Best val acc",
        percent(status.get("best_val_accuracy")),
        help=f"Reached in epoch {best_epoch}; that checkpoint is the one kept." if best_epoch else None,
    )
    try:
        waited: float | None = time.time() - (run.path / runs.STOP_FLAG).stat().st_mtime
    except FileNotFoundError:  # no stop requested, or the trainer has just taken the request
        waited = None
    if waited is not None:
        st.warning(f"Stopping after the current step... ({duration_text(waited)})", icon=":material/pending:")
        if waited > FORCE_STOP_AFTER_S and st.button(
            "Force stop", key=f"kill-{run.name}", help="Kill the trainer now; the best checkpoint so far is kept."
        ):
            launcher.stop_run(run, force=True)
            st.rerun()
    elif st.button(
        "Stop",
        icon=":material/stop_circle:",
        key=f"stop-{run.name}",
        help="End the run after the current step. The best checkpoint is kept and the run can be resumed.",
    ):
        launcher.stop_run(run)
        st.toast(f"Stopping {run.name} after the current step.")
        st.rerun()


def stopped_ui(run: runs.Run, status: dict[str, Any]) -> None:
    epochs = len(run.history()["epochs"])
    best = "" if run.model_path() is None else " The best checkpoint so far is kept."
    st.warning(
        f"Stopped after {epochs} complete epoch(s) ({status.get('stop_reason') or 'stop requested'}).{best}",
        icon=":material/stop_circle:",
    )
    resume_button(run)


def failed_ui(run: runs.Run, status: dict[str, Any]) -> None:
    st.error(f"This run failed: {first_line(status.get('error'))}", icon=":material/error:")
    st.caption(f"The trainer's log is in `{run.path / runs.LOG_FILE}`.")
    if (run.path / runs.LAST_CHECKPOINT).is_file():
        resume_button(run)


def resume_button(run: runs.Run) -> None:
    done = run.checkpoint_info().get("epoch", 0)
    if not st.button(
        f"Resume from epoch {done + 1}",
        icon=":material/resume:",
        key=f"resume-{run.name}",
        help="Continue with the same settings from the last completed epoch.",
    ):
        return
    try:
        launcher.resume_training(run)
    except (ValueError, OSError) as error:
        st.error(f"Could not resume: {error}")
        return
    st.session_state[VIEWED_RUN_KEY] = run.name
    st.rerun()


# ---------------------------------------------------------------- runs table and details


def runs_section(runs_dir: Path) -> None:
    st.header("Runs")
    promoted_ui()
    all_runs = runs.list_runs(runs_dir)
    if not all_runs:
        st.info(f"No runs in `{runs_dir}` yet.")
        return
    summaries = [run.summary() for run in all_runs]
    table = pd.DataFrame(
        {
            "Run": [summary.name for summary in summaries],
            "Status": [STATE_LABELS.get(summary.state, summary.state) for summary in summaries],
            "Architecture": [summary.arch for summary in summaries],
            "Data": ["demo" if summary.data == "demo" else Path(str(summary.data)).name for summary in summaries],
            "Epochs": [f"{summary.epochs_done} / {summary.epochs}" for summary in summaries],
            "Best val acc": [summary.best_val_accuracy for summary in summaries],
            "Test acc": [summary.test_accuracy for summary in summaries],
            "Duration": [duration_text(summary.duration_s) for summary in summaries],
            "Started": [
                datetime.fromtimestamp(summary.started_at) if summary.started_at else None for summary in summaries
            ],
        }
    )
    st.caption("Select runs to compare their validation curves; the first selected opens below.")
    event = st.dataframe(
        table,
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
            "Best val acc": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1, width="small"),
            "Test acc": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1, width="small"),
            "Duration": st.column_config.TextColumn(width="small"),
            "Started": st.column_config.DatetimeColumn(format="MMM D, HH:mm", width="small"),
        },
    )
    selected = [summaries[row].name for row in event.selection.rows if row < len(summaries)]
    by_name = {run.name: run for run in all_runs}
    if selected:
        curves = {name: by_name[name].history()["epochs"] for name in selected}
        st.plotly_chart(compare_runs_figure(curves), key="compare-runs")

    names = [summary.name for summary in summaries]
    wanted = selected[0] if selected else st.session_state.get(VIEWED_RUN_KEY)
    opened = st.selectbox(
        "Open run",
        names,
        index=names.index(wanted) if wanted in names else 0,
    )
    if opened:
        run_details_ui(by_name[opened])


def promoted_ui() -> None:
    info = promote.promoted_info()
    if info is None:
        st.caption("The Live and Photos pages use the **shipped default model**. Promote a run's model below.")
        return
    when = datetime.fromtimestamp(info["promoted_at"]).strftime("%Y-%m-%d %H:%M") if info.get("promoted_at") else "?"
    text, button = st.columns([5, 1], vertical_alignment="center")
    text.success(
        f"The Live and Photos pages use the model of run **{info.get('run', '?')}** "
        f"({info.get('split') or 'test'} accuracy {percent(info.get('accuracy'))}), promoted {when}."
        + (f" Note: {info['note']}." if info.get("note") else ""),
        icon=":material/verified:",
    )
    if button.button("Use the shipped model", key="unpromote", help="Go back to the model that comes with the app."):
        promote.unpromote()
        st.rerun()


def run_details_ui(run: runs.Run) -> None:
    status = run.status()
    summary = run.summary()
    metrics = run.metrics()
    with st.container(border=True):
        title, action = st.columns([3, 1], vertical_alignment="center")
        title.subheader(run.name)
        title.caption(settings_caption(run.config().get("settings", {}), status))
        with action:
            promote_button(run)
        columns = st.columns(5)
        columns[0].metric("Status", summary.state)
        columns[1].metric("Test accuracy", percent(summary.test_accuracy))
        columns[2].metric("Macro-F1", f"{metrics['macro_f1']:.3f}" if metrics else "-")
        columns[3].metric("Best val accuracy", percent(summary.best_val_accuracy))
        columns[4].metric("Duration", duration_text(summary.duration_s))
        recalibration_caption(metrics.get("batch_norm_recalibration"))
        if summary.state == "failed":
            st.error(f"This run failed: {first_line(summary.error)}", icon=":material/error:")
        elif summary.state == "stopped":
            st.warning(f"Stopped: {status.get('stop_reason') or 'stop requested'}.", icon=":material/stop_circle:")

        curves_tab, confusion_tab, classes_tab, mistakes_tab, settings_tab = st.tabs(
            ["Learning curves", "Confusion matrix", "Per class", "Most confident mistakes", "Settings"]
        )
        with curves_tab:
            st.plotly_chart(learning_curves_figure(run.history()), key=f"curves-{run.name}")
        with confusion_tab:
            if metrics.get("confusion"):
                st.caption(
                    f"{metrics.get('split', 'test').capitalize()} split, {metrics.get('n', 0):,} faces. "
                    "Rows are the true emotion; colour is the share of that row."
                )
                st.plotly_chart(confusion_figure(metrics["confusion"], metrics["labels"]), key=f"confusion-{run.name}")
            else:
                st.info("The confusion matrix appears when the run has finished and been evaluated.")
        with classes_tab:
            per_class_ui(metrics)
        with mistakes_tab:
            mistakes_ui(run)
        with settings_tab:
            settings_ui(run)


def recalibration_caption(recalibration: Any) -> None:
    """What re-estimating the batch-norm statistics on clean training faces did for this run."""
    if not isinstance(recalibration, dict):
        return
    if recalibration.get("error"):
        st.caption(f"Batch-norm re-estimation was skipped ({first_line(str(recalibration['error']), 200)}).")
        return
    if recalibration.get("val_accuracy_before") is None:
        return
    before, after = recalibration["val_accuracy_before"], recalibration.get("val_accuracy_after")
    outcome = "kept" if recalibration.get("kept") else "not kept: no better"
    st.caption(
        f"Batch-norm statistics re-estimated on the clean training faces after training: validation accuracy "
        f"{percent(before)} → {percent(after)} ({outcome})."
    )


def promote_button(run: runs.Run) -> None:
    info = promote.promoted_info() or {}
    in_use = info.get("run") == run.name
    has_model = run.model_path() is not None
    clicked = st.button(
        "In use" if in_use else "Use this model",
        type="primary",
        icon=":material/check:" if in_use else ":material/rocket_launch:",
        key=f"promote-{run.name}",
        disabled=not has_model,
        width="stretch",
        help="Copy this run's model to where the Live and Photos pages load it from."
        if has_model
        else "This run has no model yet: it appears after the first epoch.",
    )
    if not clicked:
        return
    try:
        destination = promote.promote_run(run)
    except (ValueError, OSError) as error:
        st.error(f"Could not promote: {error}")
        return
    st.toast(f"Live and Photos now use {run.name}'s model ({destination.name}).", icon=":material/rocket_launch:")
    st.rerun()


def per_class_ui(metrics: dict[str, Any]) -> None:
    per_class = metrics.get("per_class")
    if not per_class:
        st.info("Per-class scores appear when the run has finished and been evaluated.")
        return
    table = pd.DataFrame(
        [
            {
                "Emotion": emotion,
                "Precision": scores["precision"],
                "Recall": scores["recall"],
                "F1": scores["f1"],
                "Faces": scores["support"],
            }
            for emotion, scores in per_class.items()
        ]
    )
    left, right = st.columns([3, 2])
    left.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "Precision": st.column_config.NumberColumn(format="percent"),
            "Recall": st.column_config.NumberColumn(format="percent"),
            "F1": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
        },
    )
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


def settings_ui(run: runs.Run) -> None:
    config = run.config()
    status = run.status()
    settings = dict(config.get("settings", {}))
    settings["learning_rate (peak)"] = config.get("learning_rate")
    rows = [{"Setting": key, "Value": str(value)} for key, value in settings.items()]
    for key in ("precision", "strategy", "devices", "train_size", "val_size"):
        if status.get(key) is not None:
            rows.append({"Setting": key, "Value": str(status[key])})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=35 * (len(rows) + 1) + 3)
    st.caption(f"Run folder: `{run.path}`")
    summary_file = run.path / runs.SUMMARY_FILE
    if summary_file.is_file():
        with st.expander("Model summary"):
            st.code(summary_file.read_text(encoding="utf-8", errors="replace"), language=None)


# ---------------------------------------------------------------- page

st.title("Training")
st.caption(
    "Train a model on the chosen faces and watch it learn. Runs keep their settings, curves and best "
    "model in their own folder; compare them below and put the best one to work on the Live and Photos pages."
)
data_source = data_source_ui()
runs_folder = default_runs_dir()
active = runs.active_run(runs_folder)

settings_column, live_column = st.columns([2, 3], gap="large")
with settings_column, st.container(border=True):
    new_run_ui(data_source, active)
with live_column:
    live_panel(runs_folder)
st.divider()
# While a run trains, the table (its epochs, accuracy, duration) follows it, more slowly than the live panel.
st.fragment(run_every=TABLE_REFRESH_S if active is not None else None)(runs_section)(runs_folder)
