"""The New run form: each setting's widget from its declaration in TrainConfig, the data set check,
the quick demo, copying an earlier run's settings, and Start."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from app.access import admin_only_note, is_admin, require_admin
from app.state import cached_dataset
from app.views.training_page.common import FORM_PREFIX, VIEWED_RUN_KEY, sentence
from fer_core.datasets import DEMO_SOURCE
from fer_core.errors import FerError
from fer_core.model_store import describe_model
from fer_core.settings import SHIPPED_FAST_MODEL_PATH, SHIPPED_MODEL_PATH
from training import launcher
from training.architectures import architectures
from training.config import ARCH_LEARNING_RATES, FIELDS, TrainConfig, kind_of, option
from training.runs import RunSnapshot
from training.splits import check_training_labels, held_out_counts

INIT_FROM_KEY = "train_init_from"
BASIC_SETTINGS = ("epochs", "batch_size", "lr", "augment", "class_weights", "label_smoothing", "patience")
ADVANCED_SETTINGS = tuple(
    name for name in FIELDS if option(name).advanced and option(name).label and name not in BASIC_SETTINGS
)
FORM_SETTINGS = ("arch", *BASIC_SETTINGS, *ADVANCED_SETTINGS)
RANDOM_START = "Random weights"
SHIPPED_START = "Shipped fast model"  # the shipped models a run of their architecture can start from
SHIPPED_STARTS = {"Shipped quality model": SHIPPED_MODEL_PATH, SHIPPED_START: SHIPPED_FAST_MODEL_PATH}
DEFAULT_SETTINGS = "Default settings"
SETTINGS_SOURCE_KEY = "train_settings_source"

# A run on the demo set that visibly learns in about a minute: the shipped fast model's trunk fine-tuned
# (measured: validation 47% -> 70% -> 83% over the 3 epochs, test 92%, 29 s on 2 CPU cores). The README
# suggests it too.
QUICK_DEMO_ARCH = "vgg40"  # the architecture of the shipped fast model's one vgg40 trunk, the demo's start

QUICK_DEMO_SETTINGS: dict[str, Any] = {"epochs": 3, "batch_size": 64, "lr": None, "max_steps_per_epoch": 8}


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


def init_form(snapshots: Sequence[RunSnapshot]) -> None:
    """Fill in the form's widgets that have no value yet (a first visit, or back from another page,
    which drops widget values) from the last settings used."""
    missing = {
        key: value
        for key, value in form_values(remembered_settings(snapshots), snapshots).items()
        if key not in st.session_state
    }
    st.session_state.update(missing)


def remembered_settings(snapshots: Sequence[RunSnapshot]) -> TrainConfig:
    """The settings the form opens with: those of the newest run (the last used), else the defaults."""
    return next((snapshot.config.settings for snapshot in snapshots if snapshot.config is not None), TrainConfig())


def form_values(config: TrainConfig, snapshots: Sequence[RunSnapshot]) -> dict[str, Any]:
    """The form's widget values (by key) that show ``config``."""
    values: dict[str, Any] = {FORM_PREFIX + name: getattr(config, name) for name in FORM_SETTINGS}
    starts = {path: label for label, path in start_choices(config.arch, snapshots).items()}
    values[INIT_FROM_KEY] = starts.get(config.init_from, RANDOM_START)
    return values


def start_choices(arch: str, snapshots: Sequence[RunSnapshot]) -> dict[str, str]:
    """Models a new ``arch`` run may start from: random weights, a shipped model with exactly one trunk
    of that architecture (the run starts from that trunk) and every run of the same architecture that
    has saved a model (label -> path, "" for random)."""
    choices = {RANDOM_START: ""}
    for label, shipped in SHIPPED_STARTS.items():
        if shipped.is_file() and describe_model(shipped).card.trunk_archs.count(arch) == 1:
            choices[label] = str(shipped)
    for snapshot in snapshots:  # newest first
        model_path = snapshot.run.model_path()
        usable = snapshot.config is not None and not snapshot.status.diverged
        if model_path is not None and usable and snapshot.config.settings.arch == arch:  # type: ignore[union-attr]
            choices[f"Run {snapshot.name}"] = str(model_path)
    return choices


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


def copy_settings(sources: dict[str, TrainConfig], snapshots: Sequence[RunSnapshot]) -> None:
    """The Copy button's callback: put the chosen settings into the form (callbacks run before the
    widgets exist, so they may set their values)."""
    config = sources.get(st.session_state.get(SETTINGS_SOURCE_KEY, DEFAULT_SETTINGS), TrainConfig())
    st.session_state.update(form_values(config, snapshots))


def quick_demo_ui(source: str, snapshots: Sequence[RunSnapshot]) -> None:
    """On the demo set: a button that fills the form with a run that visibly learns in about a minute
    (fine-tuning the shipped model; from random weights, a short run on the demo set stays near chance)."""
    shipped_fast = SHIPPED_START in start_choices(QUICK_DEMO_ARCH, snapshots)
    if source != DEMO_SOURCE or not shipped_fast:
        return
    info, button = st.columns([3, 1], vertical_alignment="center")
    info.caption(
        f"**Quick demo**: fine-tune the shipped fast model for {QUICK_DEMO_SETTINGS['epochs']} short epochs "
        f"({QUICK_DEMO_SETTINGS['max_steps_per_epoch']} steps each, about a minute on a laptop): validation accuracy "
        "rises from about 50% to over 80%. From random weights a short run stays near chance (14%)."
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


def arch_ui() -> str:
    names = list(architectures())
    if st.session_state.get(FORM_PREFIX + "arch") not in names:
        st.session_state[FORM_PREFIX + "arch"] = names[0]
    arch = str(setting_ui("arch"))
    st.caption(architectures()[arch])
    return arch


def settings_grid_ui(names: Sequence[str]) -> dict[str, Any]:
    """The widgets of ``names``, two to a row; returns setting -> value."""
    values = {}
    for start in range(0, len(names), 2):
        columns = st.columns(2)
        for column, name in zip(columns, names[start : start + 2], strict=False):
            values[name] = setting_ui(name, column)
    return values


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
    if kind == "int | None":  # split_seed, the one such setting: empty means the seed's value
        help_text += " Leave it empty to use Seed's value."
    if kind == "bool":
        return container.toggle(declared.label, key=key, help=help_text)
    if declared.allowed():
        return container.selectbox(declared.label, declared.allowed(), key=key, help=help_text)
    if kind == "str":
        return container.text_input(declared.label, key=key, help=help_text, placeholder=declared.default_text or None)
    if kind in ("int", "int | None"):
        return container.number_input(
            declared.label,
            min_value=int(declared.minimum or 0),
            max_value=int(declared.maximum or 0),
            step=int(declared.step or 1),
            key=key,
            help=help_text,
            placeholder="as Seed" if kind == "int | None" else None,
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
        "random ones (with a lower learning rate, e.g. half the default). A shipped model that averages "
        "several trunks is offered for an architecture it holds one trunk of: the run starts from that trunk.",
    )
    return starts[str(label)]


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
