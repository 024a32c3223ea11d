"""What the Live, Photos and Video pages share about models and face detection: one model picker, one
caption saying which model runs and what it learnt from, and the detection settings, all starting from
the presets in :mod:`fer_core.detect`. The caches behind them live in :mod:`app.state`.

    info = model_picker_ui("photos")                   # sidebar: the promoted model, else the shipped one
    classifier = classifier_or_stop(info)              # cached; a broken promoted model falls back
    preset = detection_ui("photos", PHOTO_PRESET)      # sidebar: detector, smallest face, alignment
    smoothing = smoothing_ui("live")                   # sidebar: Live and Video follow faces over frames
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.state import cached_classifier, or_stop, printable
from fer_core import run_layout
from fer_core.datasets import DEMO_SOURCE
from fer_core.demo import DEMO_NAME
from fer_core.detect import DETECTORS, MIN_FACE_RANGE, DetectionPreset
from fer_core.errors import FerError
from fer_core.inference import EmotionClassifier
from fer_core.model_store import ModelInfo, describe_model, resolve_model_path
from fer_core.serving import served_files
from fer_core.settings import PROJECT_ROOT, SHIPPED_FAST_MODEL_PATH, SHIPPED_MODEL_PATH, default_runs_dir
from fer_core.tracking import DEFAULT_SMOOTHING

DETECTOR_LABELS = {"yunet": "YuNet (default)", "haar": "Haar cascades (2001)"}


CURRENT_PREFIX = "Current: "  # the choice of the model the pages use unless another is picked


def model_version(path: Path) -> tuple[float, ...]:
    """The modification times of a model's files (.keras, .tflite, record): a new value for a new model."""
    return tuple(file.stat().st_mtime if file.exists() else 0.0 for file in served_files(path))


FAST_PAGES = ("live",)  # pages whose default is the fast model (a frame budget), not the quality one


def current_model(page: str = "photos") -> ModelInfo:
    """The model ``page`` uses by default: the promoted one, else the shipped model for that page (the fast
    one on Live, the quality one elsewhere); ``ModelLoadError`` if none."""
    return describe_model(resolve_model_path(fast=page in FAST_PAGES))


def model_choices(page: str = "photos") -> dict[str, Path]:
    """Labels to model files: the current model first (the promoted one, else the page's shipped model),
    then the shipped quality and fast models and every run with an exported model the app can serve,
    newest first."""
    current = current_model(page)
    choices = {f"{CURRENT_PREFIX}{_model_label(current)}": current.path}
    for label, shipped in (
        ("Shipped quality model", SHIPPED_MODEL_PATH),
        ("Shipped fast model", SHIPPED_FAST_MODEL_PATH),
    ):
        if shipped.is_file() and current.path.resolve() != shipped.resolve():
            choices[label] = shipped
    runs_dir = default_runs_dir()
    folders = sorted((path.parent for path in runs_dir.glob(f"*/{run_layout.CONFIG_FILE}")), reverse=True)
    for folder in folders:
        exported = folder / run_layout.EXPORTED_MODEL
        servable = exported.is_file() and exported.with_suffix(".tflite").is_file()
        if servable and exported.resolve() != current.path.resolve():
            choices[f"Run {folder.name}"] = exported
    return choices


def short_model_label(choice: str) -> str:
    """A choice of :func:`model_choices` as the narrow sidebar shows it, so a run's name is not cut:
    ``✓ 20261204-153724-fernet`` for the current model, ``20261204-153724-tiny`` for a run."""
    if choice.startswith(CURRENT_PREFIX):
        current = choice.removeprefix(CURRENT_PREFIX)
        current = current.removeprefix("promoted run ")
        return f"✓ {current[:1].upper()}{current[1:]}"
    return choice.removeprefix("Run ")


def _model_label(info: ModelInfo) -> str:
    if info.kind == "promoted":
        return f"promoted run {info.card.run}" if info.card.run else "promoted model"
    if info.kind == "shipped":
        return shipped_name(info)
    return info.path.name


def model_picker_ui(page: str) -> ModelInfo:
    """The sidebar's model choice for ``page`` (its own widget key); stops the page when there is no model."""
    choices = or_stop(lambda: model_choices(page), "the list of models")
    choice = st.sidebar.selectbox(
        "Model",
        list(choices),
        key=f"{page}_model",
        format_func=short_model_label,
        help="✓ marks the current model: the one promoted on the Training page, else the shipped one (the fast "
        "model on Live, the quality model on the other pages). Finished runs (by name) can be tried here "
        "without promoting them.",
    )
    return describe_model(choices[choice])


def classifier_or_stop(info: ModelInfo) -> tuple[EmotionClassifier, ModelInfo]:
    """The cached classifier of ``info``'s model and the model it really is. A promoted model that cannot
    be loaded falls back to the shipped default with a warning naming the file; any other failure stops
    the page with an error."""
    try:
        return cached_classifier(str(info.path), model_version(info.path)), info
    except (FerError, OSError) as error:
        if info.kind != "promoted" or not SHIPPED_MODEL_PATH.is_file():
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            st.error(printable(f"Could not load the model {info.path.name}: {reason}"))
            st.stop()
        st.warning(
            printable(f"The promoted model {info.path} cannot be used ({error}). Using the shipped default instead."),
            icon=":material/warning:",
        )
    shipped = describe_model(SHIPPED_MODEL_PATH)
    classifier = or_stop(lambda: cached_classifier(str(shipped.path), model_version(shipped.path)), "the shipped model")
    return classifier, shipped


def detection_ui(page: str, preset: DetectionPreset) -> DetectionPreset:
    """Sidebar settings for finding faces, starting from ``preset``: the detector, the smallest face and
    whether faces are aligned. Returns the preset with the user's choices."""
    low, high = MIN_FACE_RANGE
    detector = st.sidebar.selectbox(
        "Face detector",
        DETECTORS,
        index=DETECTORS.index(preset.detector),
        format_func=DETECTOR_LABELS.__getitem__,
        key=f"{page}_detector",
        help="YuNet, a small neural network, finds faces at more angles and sizes and gives five landmarks "
        "(eyes, nose, mouth corners). Haar cascades are the classic OpenCV detector, kept for comparison.",
    )
    min_face_size = st.sidebar.slider(
        "Smallest face",
        min_value=low,
        max_value=high,
        value=preset.min_face_size,
        step=4,
        format="%d px",
        key=f"{page}_min_face",
        help="Faces smaller than this, in pixels of the image, are not looked for. Raising it skips tiny false "
        "detections in the background and makes detection faster; lower it for group photos.",
    )
    align = st.sidebar.toggle(
        "Align faces",
        value=preset.align,
        key=f"{page}_align",
        disabled=detector != "yunet",
        help="Turn each face upright by its eyes before classifying, as FER2013's faces are (needs YuNet's landmarks).",
    )
    return preset.with_options(detector=detector, min_face_size=min_face_size, align=align and detector == "yunet")


def landmarks_ui(page: str, preset: DetectionPreset) -> bool:
    """Whether to draw each face's five landmarks (off by default; YuNet finds them, Haar does not)."""
    return st.sidebar.toggle(
        "Show landmarks",
        value=False,
        key=f"{page}_landmarks",
        disabled=preset.detector != "yunet",
        help="Draw the five points the face detector finds on each face (eyes, nose tip, mouth corners), "
        "as OpenCV's face detection demo does.",
    )


def smoothing_ui(page: str) -> float:
    """The sidebar's smoothing of each face's probabilities over frames (Live and Video)."""
    return float(
        st.sidebar.slider(
            "Smoothing",
            min_value=0.0,
            max_value=0.95,
            value=DEFAULT_SMOOTHING,
            step=0.05,
            key=f"{page}_smoothing",
            help="How much of each face's earlier probabilities carries over to the next frame. "
            "0 shows every frame as it comes (jumpy); 0.9 is steady but slow to follow a change.",
        )
    )


def shipped_name(info: ModelInfo) -> str:
    """``shipped fast model`` or ``shipped quality model``."""
    fast = info.path.resolve() == SHIPPED_FAST_MODEL_PATH.resolve()
    return "shipped fast model" if fast else "shipped quality model"


def model_caption(info: ModelInfo) -> str:
    """One markdown line: which model (promoted run, shipped default, a run) and what it learnt from."""
    card = info.card
    if info.kind == "promoted":
        who = f"**promoted run** `{card.run}`" if card.run else "**promoted model**"
    elif info.kind == "shipped":
        who = f"**provisional {shipped_name(info)}**" if info.provisional else f"**{shipped_name(info)}**"
        who += f" (`{_display_path(info.path)}`)"
    else:
        who = f"`{_display_path(info.path)}`"
    parts = [f"Model: {who}" + (f", {card.arch}" if card.arch else "")]
    if card.trained_on:
        parts.append(f"trained on {card.trained_on}")
    elif card.data_source in (DEMO_SOURCE, DEMO_NAME) or (card.data_source or "").startswith("demo"):
        parts.append("trained on the **synthetic demo set**: expect poor results on real faces")
    elif card.data_source:
        parts.append(f"trained on {_describe_data(card.data_source)}")
    else:
        parts.append("training data not recorded")
    if card.accuracy is not None:
        parts.append(f"{card.split or 'test'} accuracy {card.accuracy:.1%}")
    elif card.best_val_accuracy is not None:
        parts.append(f"validation accuracy {card.best_val_accuracy:.1%}")
    if card.note:
        parts.append(card.note)
    return printable(" · ".join(parts))


def model_caption_ui(info: ModelInfo) -> None:
    st.caption(model_caption(info), help=_caption_help(info))


def _caption_help(info: ModelInfo) -> str:
    if info.kind == "promoted":
        return "The model promoted on the Training page (Use this model). Remove the promotion there to go back to the shipped default."
    if info.kind == "shipped":
        text = "The model that ships with FER Studio. Train a model and promote it on the Training page to use yours."
        if info.provisional:
            text += " This default is provisional: a stand-in until the final trained model ships."
        return text
    return "A model chosen in the sidebar."


def _describe_data(source: str) -> str:
    return f"FER2013 (`{source}`)" if "fer2013" in source.lower() else f"`{source}`"


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
