"""What pages share: the data-set choice and confidence threshold (remembered for the session), and every
Streamlit cache of the app (data sets and their statistics, models, face detectors), with the one guard
that turns a failed load into an ``st.error`` and a stopped page (:func:`or_stop`).

Streamlit caching lives here and nowhere else; fer_core stays free of Streamlit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import streamlit as st

from app.access import is_admin
from fer_core.batch import read_faces, read_files, read_tracks
from fer_core.data import FaceDataset
from fer_core.datasets import DEMO_SOURCE, resolve_dataset
from fer_core.detect import DetectionPreset, FaceDetector, make_detector
from fer_core.errors import FerError
from fer_core.inference import EmotionClassifier, load_classifier
from fer_core.labels import DEFAULT_THRESHOLD
from fer_core.quality import MeanFaces, QualityReport, analyze_quality, mean_faces, pixel_histogram
from fer_core.settings import allowed_data_roots, fer2013_location, is_allowed_data_path

SOURCE_KEY = "data_source"
LOCATION_KEY = "data_source_location"  # the text typed under "Another location..."
THRESHOLD_KEY = "confidence_threshold"  # percent; shared by Photos and Live
DEFAULT_THRESHOLD_PERCENT = round(100 * DEFAULT_THRESHOLD)
DEMO_LABEL = "Demo set (synthetic, built in)"
OTHER_LABEL = "Another location..."


T = TypeVar("T")


def or_stop(load: Callable[[], T], what: str) -> T:
    """``load()``; if it fails on bad input, an ``st.error`` naming ``what`` and the problem, and a stopped page."""
    try:
        return load()
    except FerError as error:
        st.error(printable(f"Could not load {what}: {error}"))
        st.stop()
    except OSError as error:
        st.error(printable(f"Could not read {what}: {error.strerror or error}"))
        st.stop()


# --- caches: data sets and what the Dataset page computes from them


@st.cache_resource(show_spinner="Loading faces...", max_entries=3)
def cached_dataset(source: str) -> FaceDataset:
    return resolve_dataset(source)


# A FaceDataset is not hashable by Streamlit, so the functions below take it as an underscore argument
# (left out of the cache key) beside a cheap content token.


def dataset_token(source: str, dataset: FaceDataset) -> str:
    digest = hashlib.blake2b(f"{source}|{dataset.name}|{len(dataset)}".encode(), digest_size=16)
    digest.update(dataset.labels.tobytes())
    digest.update(dataset.splits.tobytes())
    digest.update(np.ascontiguousarray(dataset.images[:: max(1, len(dataset) // 512)]).tobytes())
    return digest.hexdigest()


@st.cache_resource(show_spinner="Checking data quality...", max_entries=3)
def cached_quality_report(token: str, _dataset: FaceDataset) -> QualityReport:
    return analyze_quality(_dataset)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_mean_faces(token: str, split: str | None, _dataset: FaceDataset) -> MeanFaces:
    return mean_faces(_dataset, split=split)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_pixel_histogram(
    token: str, split: str | None, emotion: str | None, _dataset: FaceDataset
) -> npt.NDArray[np.int64]:
    indices = _dataset.indices(split=split, emotion=emotion)
    return pixel_histogram(_dataset.images if len(indices) == len(_dataset) else _dataset.images[indices])


# --- caches: models and face detectors


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def cached_classifier(model_path: str, version: tuple[float, ...]) -> EmotionClassifier:
    """The served (LiteRT) classifier of a model; ``version`` (the files' modification times) is only
    part of the key, so a model replaced on disk (a new promotion) is loaded afresh. Thread-safe."""
    return load_classifier(model_path)


@st.cache_resource(max_entries=8)
def cached_detector(preset: DetectionPreset) -> FaceDetector:
    """A detector shared by the sessions of a page (it serialises its scans, so threads may share it)."""
    return make_detector(preset)


# --- caches: batch results


@st.cache_resource(show_spinner="Reading the results...", max_entries=2)  # a long job's faces are large
def cached_batch_tables(results_dir: str, version: tuple[Any, ...]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A batch job's files, faces and tracks tables (:mod:`fer_core.batch`); ``version`` (the parts folder's
    modification time and the job's state) is only part of the key, so a job that advanced is read afresh.
    The frames are shared between sessions: read them, never change them in place."""
    return read_files(results_dir), read_faces(results_dir), read_tracks(results_dir)


def printable(text: str) -> str:
    """``text`` as the browser can receive it: the bytes of a file name that are not UTF-8 (which
    Python keeps as lone surrogates, e.g. ``bad\\udcff.jpg``) become U+FFFD replacement characters."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that does not stand for a byte
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def escape_markdown(text: str) -> str:
    """``text`` shown as typed inside markdown: a file name like ``[x](http://y)`` stays plain text."""
    for character in "\\`*_[]<>#|~$!{}()":
        text = text.replace(character, f"\\{character}")
    return text


def default_data_source() -> str:
    """The data set a new session starts on: the FER2013 copy when one is found, else the demo set."""
    detected = fer2013_location()
    return DEMO_SOURCE if detected is None else str(detected)


def data_source_ui() -> str:
    """Sidebar choice of data set, remembered for the session. Returns ``"demo"`` or a path.

    A new session starts on the detected FER2013 copy, if any (:func:`default_data_source`). A typed
    location must lie under the allowed data roots (``FER_DATA_ROOTS``), so a deployed app does not
    let visitors list the server's folders; anything else is refused and the demo set is used.
    """
    detected = fer2013_location()
    may_type = is_admin()  # a visitor never gets a typed location, even one forced into the session state
    options = _source_options(detected, may_type)
    current = _remembered_source(detected, options, may_type)
    with st.sidebar:
        st.subheader("Data set")
        index = _option_index(current, detected, options)
        choice = st.radio("Faces to use", options, index=index, key="data_source_choice", label_visibility="collapsed")
        if choice == DEMO_LABEL:
            source = DEMO_SOURCE
        elif choice == OTHER_LABEL and may_type:
            source = _typed_source_ui(current)
        elif detected is not None:
            source = str(detected)
        else:
            source = DEMO_SOURCE
        if detected is None:
            st.caption(
                "No FER2013 copy found: name it in fer_studio.toml (applies on the next page load) or set "
                "FER2013_DIR before starting the app (see README)."
            )
    st.session_state[SOURCE_KEY] = source
    return source


def _source_options(detected: Path | None, may_type: bool) -> list[str]:
    """The demo set, the detected FER2013 copy (if any), and a typed location (for an admin)."""
    options = [DEMO_LABEL]
    if detected is not None:
        options.append(f"FER2013 at {printable(str(detected))}")
    if may_type:
        options.append(OTHER_LABEL)
    return options


def _remembered_source(detected: Path | None, options: list[str], may_type: bool) -> str:
    """The session's data source; for a visitor, only the demo set or the detected copy (anything else
    in the session state, a remembered choice among them, is dropped)."""
    current: str = st.session_state.get(SOURCE_KEY, default_data_source())
    if not may_type:
        if current not in (DEMO_SOURCE, str(detected)):
            current = default_data_source()
        if st.session_state.get("data_source_choice") not in options:
            st.session_state.pop("data_source_choice", None)
    return current


def _option_index(current: str, detected: Path | None, options: list[str]) -> int:
    if current == DEMO_SOURCE:
        return 0
    if detected is not None and current == str(detected):
        return 1
    return len(options) - 1


def _typed_source_ui(current: str) -> str:
    """The typed FER2013 location, or the demo set (with a note saying why) while it is empty or refused."""
    allowed = ", ".join(str(root) for root in allowed_data_roots())
    if LOCATION_KEY not in st.session_state:  # a key, not a value: the typed text survives reruns
        st.session_state[LOCATION_KEY] = "" if current == DEMO_SOURCE else printable(current)
    typed = st.text_input(
        "FER2013 location",
        key=LOCATION_KEY,
        placeholder="/data/fer2013 or /data/fer2013.csv",
        help="A Kaggle-layout folder (train/ and test/ with class folders), a folder of class "
        "folders, or the original fer2013.csv. Allowed under: " + allowed,
    ).strip()
    if not typed:
        st.info("Type a location, or pick the demo set.")
        return DEMO_SOURCE
    if "\x00" in typed:
        st.error(
            "That location contains a NUL character (\\x00), which no file or folder name can hold. "
            "Type the path again, without it."
        )
        return DEMO_SOURCE
    if not is_allowed_data_path(typed):
        st.error(
            f"{typed} is outside the folders this app may read. Allowed: {allowed}. Set FER_DATA_ROOTS to change that."
        )
        return DEMO_SOURCE
    return str(Path(typed).expanduser())


def load_dataset_or_stop(source: str) -> FaceDataset:
    """The cached data set, or an ``st.error`` naming the problem and a stopped page."""
    return or_stop(lambda: cached_dataset(source), "that data set")


def synthetic_banner(dataset: FaceDataset) -> None:
    if dataset.synthetic:
        st.info(
            "You are looking at the **built-in demo set**: synthetic cartoon faces drawn by "
            "`fer_core.demo`, not real people. Point the sidebar at FER2013 (see README: Kaggle "
            "`msambare/fer2013` folders or the original `fer2013.csv`) to see real data.",
            icon=":material/info:",
        )


def confidence_threshold_ui(widget_key: str) -> float:
    """The confidence threshold, one setting for the session: set on one of Photos, Video and Live, it
    applies on the others too.

    The value lives under a plain session key. Each page has its own slider (``widget_key``), seeded
    from that value whenever the page shows it afresh: Streamlit drops a widget's state when a page
    without it runs, and one widget key shared by two pages resets when switching straight between
    them. Returns a probability (0-1).
    """
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state.get(THRESHOLD_KEY, DEFAULT_THRESHOLD_PERCENT)
    percent = st.slider(
        "Confidence threshold",
        min_value=0,
        max_value=100,
        step=5,
        format="%d%%",
        key=widget_key,
        help='A face whose most likely emotion is below this probability is labelled "uncertain". '
        "The same setting applies on the Photos, Video and Live pages.",
    )
    st.session_state[THRESHOLD_KEY] = percent
    return percent / 100
