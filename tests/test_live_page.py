"""The Live page through Streamlit's AppTest, with streamlit-webrtc's ``webrtc_streamer`` replaced by
a fake that can feed frames to the page's callback as the real one would from its worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import streamlit_webrtc
from browser_support import detectable_faces, frame_with_faces
from conftest import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

import app.model_picker
from app.live_session import LiveSession
from fer_core.detect import VIDEO_PRESET, Box
from fer_core.labels import EMOTIONS, NUM_CLASSES

PAGE = str(PROJECT_ROOT / "app" / "views" / "live.py")
FACE_BOX = Box(235, 155, 170, 170)


class FakeStreamer:
    """Stands in for ``webrtc_streamer``: records its arguments, feeds ``frames`` to the callback."""

    def __init__(self, playing: bool = False, frames: list[npt.NDArray[np.uint8]] | None = None) -> None:
        self.playing = playing
        self.frames = frames or []
        self.calls: list[dict[str, Any]] = []
        self.returned: list[av.VideoFrame] = []

    def __call__(self, key: str, **kwargs: Any) -> SimpleNamespace:
        self.calls.append({"key": key, **kwargs})
        callback: Callable[[list[av.VideoFrame]], Any] = kwargs["queued_video_frames_callback"]
        for bgr_frame in self.frames:  # as streamlit-webrtc's worker thread: one frame per call here
            self.returned += asyncio.run(callback([av.VideoFrame.from_ndarray(bgr_frame, format="bgr24")]))
        self.frames = []  # like a camera: each frame arrives once
        return SimpleNamespace(
            state=SimpleNamespace(playing=self.playing, signalling=False),
            video_processor=None,
            audio_processor=None,
            video_receiver=None,
        )


class FixedClassifier:
    def __init__(self, emotion: str = "happy", confidence: float = 0.7) -> None:
        self.scores = np.full(NUM_CLASSES, (1 - confidence) / (NUM_CLASSES - 1), np.float32)
        self.scores[EMOTIONS.index(emotion)] = confidence

    def classify_batch(self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False) -> npt.NDArray[np.float32]:
        return np.tile(self.scores, (len(gray_faces), 1))


@pytest.fixture
def fake_streamer(monkeypatch: pytest.MonkeyPatch) -> FakeStreamer:
    streamer = FakeStreamer()
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", streamer)  # the name the page imports
    return streamer


@pytest.fixture
def fixed_classifier(monkeypatch: pytest.MonkeyPatch) -> FixedClassifier:
    classifier = FixedClassifier()
    monkeypatch.setattr(app.model_picker, "cached_classifier", lambda path, mtime: classifier)
    return classifier


def run_page(timeout: float = 60) -> AppTest:
    page = AppTest.from_file(PAGE, default_timeout=timeout)
    page.run()
    assert not page.exception, page.exception
    return page


def all_text(page: AppTest) -> str:
    parts = [
        getattr(element, "value", "")
        for kind in ("markdown", "caption", "info", "error", "warning")
        for element in page.get(kind)
    ]
    return "\n".join(str(part) for part in parts)


def test_page_shows_the_settings_and_waits_for_the_camera(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier
) -> None:
    page = run_page()
    assert page.title[0].value == "Live"
    # Live's default is the shipped fast model; the quality one is offered beside it
    assert str(page.sidebar.selectbox(key="live_model").value).startswith("Current: shipped fast model")
    assert page.sidebar.selectbox(key="live_model").options[:2] == ["✓ Shipped fast model", "Shipped quality model"]
    assert page.sidebar.slider(key="live_threshold").value == 40
    assert page.sidebar.slider(key="live_smoothing").value == pytest.approx(0.6)
    assert page.sidebar.slider(key="live_min_face").value == VIDEO_PRESET.min_face_size  # from the preset
    assert page.sidebar.selectbox(key="live_detector").value == VIDEO_PRESET.detector
    assert page.sidebar.toggle(key="live_mirror").value is True
    assert page.sidebar.toggle(key="live_landmarks").value is False  # drawn only when asked for
    assert "Press **START**" in all_text(page)
    [call] = fake_streamer.calls
    assert call["rtc_configuration"] == {"iceServers": []}  # localhost needs no STUN/TURN
    assert call["media_stream_constraints"]["audio"] is False
    assert callable(call["queued_video_frames_callback"])
    assert page.get("download_button") == []  # nothing to download before a session


@pytest.mark.fer2013
def test_panel_shows_the_largest_face_while_playing(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier, fer2013_dir: Path
) -> None:
    [face] = detectable_faces(fer2013_dir, 1)
    fake_streamer.playing = True
    fake_streamer.frames = [frame_with_faces([face], [FACE_BOX], seed=index % 2) for index in range(4)]
    page = run_page()
    text = all_text(page)
    assert "Face #1: happy" in text
    assert "Streaming · 4 frames analysed" in text
    assert "Stopped" not in text
    assert [metric.label for metric in page.metric] == ["Analysed fps", "ms per frame", "Dropped"]
    stats = page.session_state["live_session"].snapshot().stats  # what the video's overlay line shows
    assert [metric.value for metric in page.metric] == [stats.analysed_text, stats.timing_text, stats.dropped_text]
    assert all(metric.value in stats.status_line() for metric in page.metric)
    assert page.metric[2].value == "0"
    assert len(page.get("plotly_chart")) == 2  # probabilities and timeline
    assert all(returned.width == 640 for returned in fake_streamer.returned)
    assert [getattr(button, "label", None) for button in page.get("download_button")] == ["Download session (CSV)"]


def test_clear_results_empties_the_panel(fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier) -> None:
    fake_streamer.frames = [np.zeros((480, 640, 3), np.uint8)]
    page = run_page()
    assert "frames analysed" in all_text(page)
    assert "**Stopped.**" in all_text(page)  # the metrics are the last stream's, not live
    assert [metric.label for metric in page.metric] == ["Analysed fps", "ms per frame", "Dropped"]
    page.button(key="live_clear").click().run()
    assert not page.exception
    assert "Press **START**" in all_text(page)


@pytest.mark.fer2013
def test_a_face_below_the_threshold_is_called_uncertain_with_its_best_guess(
    fake_streamer: FakeStreamer, monkeypatch: pytest.MonkeyPatch, fer2013_dir: Path
) -> None:
    monkeypatch.setattr(app.model_picker, "cached_classifier", lambda path, mtime: FixedClassifier("sad", 0.3))
    [face] = detectable_faces(fer2013_dir, 1)
    fake_streamer.playing = True
    fake_streamer.frames = [frame_with_faces([face], [FACE_BOX])]
    page = run_page()
    assert "**Face #1: uncertain (sad 30%)**" in all_text(page)  # as on Photos, Video and the CLIs


def test_settings_reach_this_sessions_processor(fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier) -> None:
    page = run_page()
    page.sidebar.slider(key="live_threshold").set_value(70)
    page.sidebar.slider(key="live_smoothing").set_value(0.2)
    page.sidebar.slider(key="live_min_face").set_value(96)
    page.sidebar.toggle(key="live_mirror").set_value(False)
    page.sidebar.toggle(key="live_landmarks").set_value(True)
    page.run()
    assert not page.exception
    session: LiveSession = page.session_state["live_session"]
    settings = session.settings
    assert (settings.threshold, settings.smoothing, settings.preset.min_face_size, settings.mirror) == (
        0.7,
        0.2,
        96,
        False,
    )
    assert settings.landmarks is True
    assert session.classifier is fixed_classifier
    assert fake_streamer.calls[-1]["queued_video_frames_callback"] == session.queued_frames_callback
    assert fake_streamer.calls[-1]["on_video_ended"] == session.stream_ended  # tracks restart on the stream's end


def test_each_browser_session_gets_its_own_processor_sharing_one_model(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier
) -> None:
    first, second = run_page(), run_page()
    first_session, second_session = first.session_state["live_session"], second.session_state["live_session"]
    assert first_session is not second_session
    assert first_session.classifier is second_session.classifier is fixed_classifier


def test_processing_errors_show_in_the_panel(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LiveSession, "process", _raise)
    fake_streamer.playing = True
    fake_streamer.frames = [np.zeros((480, 640, 3), np.uint8)]
    page = run_page()
    assert "Frames could not be processed" in page.error[0].value
    assert fake_streamer.returned and fake_streamer.returned[0].width == 640  # the frame, unannotated


def test_a_bad_ice_server_setting_warns_and_falls_back_to_none(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FER_ICE_SERVERS", "not json")
    page = run_page()
    assert "FER_ICE_SERVERS is not valid JSON" in page.warning[0].value
    assert fake_streamer.calls[-1]["rtc_configuration"] == {"iceServers": []}


def test_ice_servers_from_the_environment_reach_the_streamer(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FER_ICE_SERVERS", '[{"urls": ["stun:stun.example.org:3478"]}]')
    run_page()
    assert fake_streamer.calls[-1]["rtc_configuration"] == {"iceServers": [{"urls": ["stun:stun.example.org:3478"]}]}


def test_a_missing_model_stops_the_page_with_an_error(
    fake_streamer: FakeStreamer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fer_core.errors import ModelLoadError

    def no_model(path: str, mtime: float) -> None:
        raise ModelLoadError("the file is damaged")

    monkeypatch.setattr(app.model_picker, "cached_classifier", no_model)
    page = run_page()
    assert "Could not load the model" in page.error[0].value
    assert fake_streamer.calls == []


@pytest.mark.slow
def test_page_runs_with_the_real_model(fake_streamer: FakeStreamer) -> None:
    page = run_page(timeout=180)
    session: LiveSession = page.session_state["live_session"]
    assert type(session.classifier).__name__ == "EmotionClassifier"
    assert "Model:" in all_text(page)


def _raise(self: LiveSession, bgr_frame: npt.NDArray[np.uint8], *, dropped: int = 0) -> npt.NDArray[np.uint8]:
    raise RuntimeError("the model is broken")


def test_the_confidence_threshold_set_on_photos_applies_on_live(
    fake_streamer: FakeStreamer, fixed_classifier: FixedClassifier
) -> None:
    app_test = AppTest.from_file(str(PROJECT_ROOT / "app" / "main.py"), default_timeout=120).run()
    app_test.switch_page("views/photos.py").run()
    app_test.sidebar.slider(key="photos_threshold").set_value(75).run()
    app_test.switch_page("views/live.py").run()
    assert not app_test.exception, app_test.exception
    assert app_test.sidebar.slider(key="live_threshold").value == 75
    assert app_test.session_state["confidence_threshold"] == 75


def test_the_sidebar_model_choices_are_short_enough_to_show_a_runs_whole_name() -> None:
    from app.model_picker import short_model_label

    assert short_model_label("Current: promoted run 20261204-153724-fernet") == "✓ 20261204-153724-fernet"
    assert short_model_label("Current: shipped fast model") == "✓ Shipped fast model"
    assert short_model_label("Run 20261204-153724-tiny") == "20261204-153724-tiny"
    assert short_model_label("Shipped quality model") == "Shipped quality model"
