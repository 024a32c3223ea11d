"""Live: the webcam, classified in real time.

The browser sends the camera over WebRTC (streamlit-webrtc); this server annotates each frame in
:class:`app.live.LiveProcessor` (one per browser session, created here and kept in
``st.session_state``) and sends it back. Beside the video, a panel that the page refreshes twice a
second (a fragment, not the video thread) shows the largest face's probabilities and a timeline.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from app.charts.predictions import probability_chart
from app.live import (
    ICE_SERVERS_ENV,
    MEDIA_STREAM_CONSTRAINTS,
    TIMELINE_SECONDS,
    Classifier,
    LiveProcessor,
    LiveSettings,
    main_face,
    rtc_configuration,
    timeline_figure,
)
from app.models import cached_classifier, current_model, model_caption, model_version
from app.state import confidence_threshold_ui
from fer_core import run_layout
from fer_core.errors import FerError
from fer_core.inference import UNCERTAIN, describe_model, resolve_model_path
from fer_core.labels import EMOTIONS
from fer_core.settings import SHIPPED_MODEL_PATH, default_runs_dir

PROCESSOR_KEY = "live_processor"
STREAMER_KEY = "live-camera"
PANEL_REFRESH_S = 0.5
CHART_CONFIG = {"displayModeBar": False, "staticPlot": False}


def model_choices() -> dict[str, Path]:
    """Labels to model files: the current model first (the promoted one, else the shipped default),
    then the shipped default and every run that has saved a model, newest first."""
    current = current_model()
    choices = {f"Current: {_model_label(current.path)}": current.path}
    if SHIPPED_MODEL_PATH.is_file() and current.path.resolve() != SHIPPED_MODEL_PATH.resolve():
        choices["Shipped default"] = SHIPPED_MODEL_PATH
    runs_dir = default_runs_dir()
    run_folders = sorted((config.parent for config in runs_dir.glob(f"*/{run_layout.CONFIG_FILE}")), reverse=True)
    for run_folder in run_folders:
        try:
            path = resolve_model_path(run_folder)  # its exported model, else its best checkpoint
        except FerError:
            continue  # a run that has not saved a model yet
        if path.resolve() != current.path.resolve():
            choices[f"Run {run_folder.name}"] = path
    return choices


def _model_label(path: Path) -> str:
    info = describe_model(path)
    if info.kind == "promoted":
        return f"promoted run {info.details['run']}" if info.details.get("run") else "promoted model"
    if info.kind == "shipped":
        return "shipped default"
    return path.name


def settings_ui() -> tuple[Path, LiveSettings]:
    with st.sidebar:
        st.subheader("Live")
        try:
            choices = model_choices()
        except FerError as error:
            st.error(f"No model to run: {error}. Train one on the Training page and promote it.")
            st.stop()
        choice = st.selectbox(
            "Model",
            list(choices),
            key="live_model",
            help="The current model is the one promoted on the Training page, else the shipped default.",
        )
        threshold = confidence_threshold_ui("live_threshold")
        smoothing = st.slider(
            "Smoothing",
            min_value=0.0,
            max_value=0.95,
            value=0.6,
            step=0.05,
            key="live_smoothing",
            help="How much of each face's earlier probabilities carries over to the next frame. "
            "0 shows every frame as it comes (jumpy); 0.9 is steady but slow to follow a change.",
        )
        min_face_size = st.slider(
            "Minimum face size",
            min_value=24,
            max_value=240,
            value=48,
            step=8,
            format="%d px",
            key="live_min_face",
            help="Faces narrower than this, in camera pixels, are ignored. Larger values also make detection faster.",
        )
        mirror = st.toggle("Mirror view", value=True, key="live_mirror", help="Flip the video left to right.")
    settings = LiveSettings(min_face_size=min_face_size, smoothing=smoothing, threshold=threshold, mirror=mirror)
    return choices[choice], settings


def classifier_or_stop(model_path: Path) -> Classifier:
    try:
        return cached_classifier(str(model_path), model_version(model_path))
    except FerError as error:
        st.error(f"Could not load the model {model_path.name}: {error}")
        st.stop()
    except OSError as error:
        st.error(f"Could not read the model file {model_path}: {error.strerror or error}")
        st.stop()
    raise AssertionError("unreachable")


def session_processor(classifier: Classifier, settings: LiveSettings) -> LiveProcessor:
    """This browser session's processor: made on its first run, kept in st.session_state."""
    processor: LiveProcessor | None = st.session_state.get(PROCESSOR_KEY)
    if processor is None:
        processor = LiveProcessor(classifier, settings)
        st.session_state[PROCESSOR_KEY] = processor
    else:
        if processor.classifier is not classifier:
            processor.set_classifier(classifier)
        processor.configure(settings)
    return processor


def rtc_configuration_or_warn() -> dict[str, object]:
    try:
        return rtc_configuration(secrets=st.secrets)
    except ValueError as error:
        st.warning(f"Ignoring the STUN/TURN setting: {error}. Using no ICE servers (fine on localhost).")
        return {"iceServers": []}


def panel(processor: LiveProcessor, playing: bool, threshold: float) -> None:
    snapshot = processor.snapshot()
    if snapshot.error:
        st.error(f"Frames could not be processed: {snapshot.error}. The video is shown without annotations.")
    stats = snapshot.stats
    if stats is None:
        st.info(
            "Press **START** and allow the camera. The largest face's probabilities and an emotion "
            "timeline appear here.",
            icon=":material/videocam:",
        )
        return
    faces_column, rate_column, time_column = st.columns(3)
    faces_column.metric("Faces", stats.faces)
    rate_column.metric("Frame rate", f"{stats.fps:.1f} fps")
    time_column.metric("Processing", f"{stats.processing_ms:.0f} ms", help="Per frame: detect, classify, draw.")
    face = main_face(snapshot.faces)
    if face is None:
        st.markdown("**No face in view**")
    else:
        if face.label == UNCERTAIN:
            st.markdown(f"**Face #{face.track_id}: uncertain** (most likely {face.emotion}, {face.confidence:.0%})")
        else:
            st.markdown(f"**Face #{face.track_id}: {face.label}** ({face.confidence:.0%})")
        scores = dict(zip(EMOTIONS, face.scores.tolist(), strict=True))
        st.plotly_chart(
            probability_chart(scores, threshold=threshold, height=230), key="live_probabilities", config=CHART_CONFIG
        )
    records = processor.timeline(TIMELINE_SECONDS)
    st.markdown(f"**Emotion timeline** (last {TIMELINE_SECONDS:.0f} s)")
    st.plotly_chart(timeline_figure(records, time.time()), key="live_timeline", config=CHART_CONFIG)
    state = "Streaming" if playing else "Stopped"
    results = processor.result_count()
    st.caption(f"{state} · {stats.frames:,} frames processed this session · {results:,} results")
    download_column, clear_column = st.columns([3, 2])
    download_column.download_button(
        "Download session (CSV)",
        data=processor.session_csv,
        file_name="fer_live_session.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        disabled=results == 0,
        help="Every face in every frame of this session: time, track, label, box and the seven probabilities.",
    )
    clear_column.button(
        "Clear results", icon=":material/delete:", disabled=playing, key="live_clear", on_click=processor.clear
    )


model_path, settings = settings_ui()
classifier = classifier_or_stop(model_path)
processor = session_processor(classifier, settings)

st.title("Live")
st.markdown("Your camera, classified as you watch: each face gets a box, its emotion and a confidence bar.")
st.caption(model_caption(describe_model(model_path)))

video_column, panel_column = st.columns([3, 2], gap="large")
with video_column:
    context = webrtc_streamer(
        key=STREAMER_KEY,
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=rtc_configuration_or_warn(),
        media_stream_constraints=MEDIA_STREAM_CONSTRAINTS,
        video_frame_callback=processor.video_frame_callback,
        async_processing=True,
    )
    playing = bool(context.state.playing)
    with st.expander("Camera does not start?", icon=":material/help:"):
        st.markdown(
            "- Allow the camera when the browser asks (or in the address bar's site settings), and close "
            "other apps that use it.\n"
            "- Browsers give the camera only to `localhost` or `https://` pages.\n"
            "- On a server behind NAT or a firewall, WebRTC needs STUN/TURN servers: set "
            f"`{ICE_SERVERS_ENV}` (a JSON list) or `ice_servers` in `.streamlit/secrets.toml`, e.g. "
            '`[{"urls": ["stun:stun.example.org:3478"]}]`.\n'
            "- Frames are processed on this server and sent back; nothing is stored but this session's "
            "results, which **Download session** saves as CSV."
        )

with panel_column:
    st.fragment(panel, run_every=PANEL_REFRESH_S if playing else None)(processor, playing, settings.threshold)
