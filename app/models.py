"""The model the pages use, cached once per process: the one place that holds Streamlit caches of
classifiers and face detectors (fer_core stays free of Streamlit).

The cache is keyed by the model file's path and modification time, so promoting another run (which
replaces ``promoted.keras``) loads the new model on the next rerun without a restart.

    classifier, info = load_model_or_stop()          # promoted model, else the shipped default
    predictor = cached_predictor(str(info.path), model_version(info.path), min_face_size=60)
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fer_core.datasets import DEMO_SOURCE
from fer_core.detect import HaarFaceDetector
from fer_core.errors import FerError
from fer_core.inference import (
    EmotionClassifier,
    ModelInfo,
    Predictor,
    describe_model,
    load_classifier,
    resolve_model_path,
)
from fer_core.serving import served_files
from fer_core.settings import PROJECT_ROOT

# Photos are not real time: scan them larger and finer than webcam frames. On FER2013 faces pasted on
# a plain canvas, scale 1.05 / 6 neighbours finds 84 of 120 against 69 for OpenCV's 1.1 / 5, at ~3x
# the time; "Smallest face" in the page trims the extra background detections it may bring.
PHOTO_MAX_SIDE = 1280
PHOTO_SCALE_FACTOR = 1.05
PHOTO_MIN_NEIGHBORS = 6


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def cached_classifier(model_path: str, version: tuple[float, ...]) -> EmotionClassifier:
    """The served (LiteRT) classifier for ``model_path``; ``version`` (see :func:`model_version`) is
    only part of the cache key, so a model replaced on disk is loaded afresh."""
    return load_classifier(model_path)


@st.cache_resource(max_entries=8)
def cached_detector(
    min_face_size: int,
    max_side: int = PHOTO_MAX_SIDE,
    include_profiles: bool = False,
    scale_factor: float = PHOTO_SCALE_FACTOR,
    min_neighbors: int = PHOTO_MIN_NEIGHBORS,
) -> HaarFaceDetector:
    """A shared Haar detector (it serialises its scans, so threads may share it)."""
    return HaarFaceDetector(
        min_face_size=min_face_size,
        max_side=max_side,
        include_profiles=include_profiles,
        scale_factor=scale_factor,
        min_neighbors=min_neighbors,
    )


def cached_predictor(
    model_path: str,
    version: tuple[float, ...],
    *,
    min_face_size: int = 40,
    max_side: int = PHOTO_MAX_SIDE,
    include_profiles: bool = False,
    scale_factor: float = PHOTO_SCALE_FACTOR,
    min_neighbors: int = PHOTO_MIN_NEIGHBORS,
) -> Predictor:
    """The cached classifier behind a cached detector with the given settings (cheap to build)."""
    detector = cached_detector(min_face_size, max_side, include_profiles, scale_factor, min_neighbors)
    return Predictor(cached_classifier(model_path, version), detector)


def current_model() -> ModelInfo:
    """The model the pages use now: the promoted one, else the shipped default (``ModelLoadError`` if neither)."""
    return describe_model(resolve_model_path())


def model_version(path: Path) -> tuple[float, ...]:
    """The modification times of a model's files (.keras, .tflite, record): a new value for a new model."""
    return tuple(file.stat().st_mtime if file.exists() else 0.0 for file in served_files(path))


def predictor_or_stop(
    info: ModelInfo, *, min_face_size: int = 40, max_side: int = PHOTO_MAX_SIDE, include_profiles: bool = False
) -> Predictor:
    """The cached predictor for ``info``'s model, or an ``st.error`` naming the problem and a stopped page."""
    try:
        return cached_predictor(
            str(info.path),
            model_version(info.path),
            min_face_size=min_face_size,
            max_side=max_side,
            include_profiles=include_profiles,
        )
    except FerError as error:
        st.error(f"Could not load the model {info.path.name}: {error}")
        st.stop()
    except OSError as error:
        st.error(f"Could not read the model file {info.path}: {error.strerror or error}")
        st.stop()
    raise AssertionError("unreachable")


def load_model_or_stop() -> tuple[EmotionClassifier, ModelInfo]:
    """The current model's cached classifier and what it is, or an ``st.error`` and a stopped page."""
    try:
        info = current_model()
        return cached_classifier(str(info.path), model_version(info.path)), info
    except FerError as error:
        st.error(f"No model to run: {error}. Train one on the Training page and promote it.")
        st.stop()
    except OSError as error:
        st.error(f"Could not read the model file: {error.strerror or error}")
        st.stop()
    raise AssertionError("unreachable")


def model_caption(info: ModelInfo, arch: str | None = None) -> str:
    """One markdown line: which model (promoted run, shipped default, provisional) and what it learnt from."""
    details = info.details
    arch = details.get("arch") or arch
    if info.kind == "promoted":
        run = details.get("run")
        who = f"**promoted run** `{run}`" if run else "**promoted model**"
    elif info.kind == "shipped":
        who = "**provisional shipped default**" if info.provisional else "**shipped default**"
        who += f" (`{_display_path(info.path)}`)"
    else:
        who = f"`{_display_path(info.path)}`"
    parts = [f"Model: {who}" + (f", {arch}" if arch else "")]
    data_path = details.get("data_source") or details.get("data")
    if details.get("trained_on"):
        parts.append(f"trained on {details['trained_on']}")
    elif data_path == DEMO_SOURCE:
        parts.append("trained on the **synthetic demo set**: expect poor results on real faces")
    elif data_path:
        parts.append(f"trained on {_describe_data(str(data_path))}")
    else:
        parts.append("training data not recorded")
    accuracy = details.get("test_accuracy", details.get("accuracy"))
    if isinstance(accuracy, int | float):
        split = details.get("split", "test")
        parts.append(f"{split} accuracy {accuracy:.1%}")
    elif isinstance(details.get("best_val_accuracy"), int | float):
        parts.append(f"validation accuracy {details['best_val_accuracy']:.1%}")
    if details.get("note"):
        parts.append(str(details["note"]))
    return " · ".join(parts)


def current_model_ui(arch: str | None = None) -> ModelInfo:
    """Show which model the page uses (a caption); stop the page with an error when there is none."""
    try:
        info = current_model()
    except FerError as error:
        st.error(f"No model to run: {error}. Train one on the Training page and promote it.")
        st.stop()
    st.caption(model_caption(info, arch), help=_caption_help(info))
    return info


def _caption_help(info: ModelInfo) -> str:
    if info.kind == "promoted":
        return "The model promoted on the Training page (Use this model). Remove the promotion there to go back to the shipped default."
    if info.kind == "shipped":
        text = "The model that ships with FER Studio. Train a model and promote it on the Training page to use yours."
        if info.provisional:
            text += " This default is provisional: a stand-in until the final trained model ships."
        return text
    return "A model chosen by path."


def _describe_data(source: str) -> str:
    return f"FER2013 (`{source}`)" if "fer2013" in source.lower() else f"`{source}`"


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
