"""Live: the webcam, classified in real time.

The browser sends the camera over WebRTC (streamlit-webrtc); this server analyses the frames in
:class:`app.live_session.LiveSession` (one per browser session, kept in ``st.session_state``) with
:mod:`fer_core.video` and sends them back annotated. Beside the video, a panel that the page refreshes
once a second (a fragment, not the video thread) shows the speed, the largest face's probabilities and
a timeline.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from app.charts.predictions import probability_chart
from app.charts.timelines import live_timeline_figure
from app.format import CHART_CONFIG
from app.ice import ICE_SERVERS_ENV, rtc_configuration
from app.limits import LIVE_STREAMS
from app.live_session import TIMELINE_SECONDS, LiveSession, main_face
from app.model_picker import (
    classifier_or_stop,
    detection_ui,
    landmarks_ui,
    model_caption_ui,
    model_picker_ui,
    smoothing_ui,
)
from app.state import confidence_threshold_ui, or_stop
from fer_core.detect import VIDEO_PRESET, check_detector
from fer_core.inference import EmotionClassifier
from fer_core.labels import EMOTIONS, label_text
from fer_core.video import VideoSettings

SESSION_KEY = "live_session"
STREAMER_KEY = "live-camera"
PANEL_REFRESH_S = 1.0
CONNECT_TIMEOUT_S = 20.0  # START pressed and no video after this long: say why it may be, not only spin
CONNECTING_SINCE_KEY = "live_connecting_since"
MEDIA_STREAM_CONSTRAINTS = {
    # The camera's own rate up to 30 fps: the fast model analyses a face in about a millisecond.
    "video": {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"ideal": 30, "max": 30}},
    "audio": False,
}


def settings_ui() -> VideoSettings:
    with st.sidebar:
        st.subheader("Live")
        threshold = confidence_threshold_ui("live_threshold")
        smoothing = smoothing_ui("live")
        mirror = st.toggle("Mirror view", value=True, key="live_mirror", help="Flip the video left to right.")
    preset = detection_ui("live", VIDEO_PRESET)
    landmarks = landmarks_ui("live", preset)
    return VideoSettings(preset=preset, smoothing=smoothing, threshold=threshold, mirror=mirror, landmarks=landmarks)


def session_for(classifier: EmotionClassifier, settings: VideoSettings) -> LiveSession:
    """This browser session's LiveSession: made on its first run, kept in st.session_state."""
    session: LiveSession | None = st.session_state.get(SESSION_KEY)
    if session is None:
        session = LiveSession(classifier, settings, slots=LIVE_STREAMS)
        st.session_state[SESSION_KEY] = session
    else:
        session.configure(settings, classifier)
    return session


def rtc_configuration_or_warn() -> dict[str, object]:
    # st.secrets is read only when a secrets file exists: reading it starts threads that poll the
    # secrets files five times a second for the life of the server.
    has_secrets = any(Path(path).expanduser().exists() for path in st.get_option("secrets.files"))
    try:
        return rtc_configuration(secrets=st.secrets if has_secrets else None)
    except ValueError as error:
        st.warning(f"Ignoring the STUN/TURN setting: {error}. Using no ICE servers (fine on localhost).")
        return {"iceServers": []}


def speed_ui(session: LiveSession, playing: bool) -> None:
    stats = session.snapshot().stats
    if stats is None:
        return
    if not playing:
        st.caption(":material/stop_circle: **Stopped.** The speed and results below are from when the camera last ran.")
    analysed, timing, dropped = st.columns(3)
    analysed.metric("Analysed fps", stats.analysed_text, help="Frames analysed per second, over the last 3 seconds.")
    timing.metric(
        "ms per frame",
        stats.timing_text,
        help="Median time to analyse one frame: find, classify and follow the faces, and draw them.",
    )
    dropped.metric(
        "Dropped",
        stats.dropped_text,
        help="Camera frames skipped because the previous one was still being analysed "
        f"(the camera delivers {stats.camera_fps:.1f} fps).",
    )


def panel(session: LiveSession, playing: bool, threshold: float) -> None:
    snapshot = session.snapshot()
    if session.is_busy():
        st.warning(LIVE_STREAMS.busy_message(), icon=":material/hourglass_top:")
    if snapshot.error:
        st.error(f"Frames could not be processed: {snapshot.error}. The video is shown without annotations.")
    if snapshot.stats is None:
        st.info(
            "Press **START** and allow the camera. The largest face's probabilities and an emotion "
            "timeline appear here.",
            icon=":material/videocam:",
        )
        return
    speed_ui(session, playing)
    face = main_face(snapshot.faces)
    if face is None:
        st.markdown("**No face in view**")
    else:
        st.markdown(f"**Face #{face.face}: {label_text(face.label, face.emotion, face.confidence)}**")
        scores = dict(zip(EMOTIONS, face.scores.tolist(), strict=True))
        st.plotly_chart(
            probability_chart(scores, threshold=threshold, height=230), key="live_probabilities", config=CHART_CONFIG
        )
    st.markdown(f"**Emotion timeline** (last {TIMELINE_SECONDS:.0f} s)")
    st.plotly_chart(
        live_timeline_figure(session.timeline(TIMELINE_SECONDS), session.now_s()),
        key="live_timeline",
        config=CHART_CONFIG,
    )
    state = "Streaming" if playing else "Stopped"
    results = session.result_count()
    st.caption(f"{state} · {snapshot.stats.frames:,} frames analysed this session · {results:,} face records")
    download_column, clear_column = st.columns([3, 2])
    download_column.download_button(
        "Download session (CSV)",
        data=session.session_csv,
        file_name="fer_live_session.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        disabled=results == 0,
        help="Every face in every analysed frame of this session: time, face, label, box and the seven probabilities.",
    )
    clear_column.button(
        "Clear results", icon=":material/delete:", disabled=playing, key="live_clear", on_click=session.clear
    )


def connecting_since(connecting: bool) -> float | None:
    """When this session's camera connection started negotiating (None when it is not negotiating)."""
    if not connecting:
        st.session_state.pop(CONNECTING_SINCE_KEY, None)
        return None
    return float(st.session_state.setdefault(CONNECTING_SINCE_KEY, time.time()))


def connection_ui(since: float, has_ice_servers: bool) -> None:
    """While the connection negotiates (a fragment, re-run every second): after CONNECT_TIMEOUT_S, why."""
    waited = time.time() - since
    if waited < CONNECT_TIMEOUT_S:
        return
    if has_ice_servers:
        why = (
            "the STUN/TURN servers configured for this app "
            f"(`{ICE_SERVERS_ENV}` or `ice_servers` in secrets.toml) refused the connection or could not be "
            "reached: check their addresses, user name and password"
        )
    else:
        why = f"off localhost they need a STUN/TURN server, and none is configured (`{ICE_SERVERS_ENV}`)"
    st.error(
        f"The camera connection has not completed after {waited:.0f} s: the browser and this server could not "
        f"reach each other. Likely {why}. Press STOP, then START to try again.",
        icon=":material/wifi_off:",
    )


def main() -> None:
    st.title("Live")
    st.markdown("Your camera, classified as you watch: each face gets a box, its emotion and a confidence bar.")
    info = model_picker_ui("live")
    settings = settings_ui()
    classifier, info = classifier_or_stop(info)
    model_caption_ui(info)
    or_stop(lambda: check_detector(settings.preset), "the face detector")  # a clear error, not a traceback
    session = or_stop(lambda: session_for(classifier, settings), "the face detector")

    if LIVE_STREAMS.full_for(session):  # every slot taken by other streams: no camera to start here
        st.warning(LIVE_STREAMS.busy_message(), icon=":material/hourglass_top:")
        st.button("Try again", key="live_try_again", icon=":material/refresh:")
        st.stop()
    rtc_config = rtc_configuration_or_warn()
    video_column, panel_column = st.columns([3, 2], gap="large")
    with video_column:
        context = webrtc_streamer(
            key=STREAMER_KEY,
            mode=WebRtcMode.SENDRECV,
            rtc_configuration=rtc_config,
            media_stream_constraints=MEDIA_STREAM_CONSTRAINTS,
            queued_video_frames_callback=session.queued_frames_callback,
            on_video_ended=session.stream_ended,
            async_processing=True,
        )
        playing = bool(context.state.playing)
        if not playing:
            session.release_stream()
        since = connecting_since(bool(context.state.signalling) and not playing)
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
        if since is not None:
            st.fragment(connection_ui, run_every=PANEL_REFRESH_S)(since, bool(rtc_config["iceServers"]))
        st.fragment(panel, run_every=PANEL_REFRESH_S if playing else None)(session, playing, settings.threshold)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
