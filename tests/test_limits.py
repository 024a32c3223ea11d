"""Limits per visitor (app/limits.py): the cap on concurrent Live streams, with the LiveSession frame
callbacks called as streamlit-webrtc's worker threads would (no browser), and one video analysis at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
import streamlit_webrtc
from conftest import PROJECT_ROOT
from fakes import SQUARE, BrightSquareDetector, FixedClassifier, square_frame
from streamlit.testing.v1 import AppTest

import app.access
from app.limits import LIVE_STREAMS, VIDEO_ANALYSES, OneAtATime, StreamSlots
from app.live_session import LiveSession
from fer_core import settings
from fer_core.video import AnnotatedVideoWriter, VideoSettings


class Clock:
    """A clock the test moves by hand: no waiting, no timing."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_over_the_cap_is_refused_until_one_stops_or_goes_quiet() -> None:
    clock = Clock()
    slots = StreamSlots(2, idle_s=5.0, clock=clock)
    first, second, third = object(), object(), object()
    assert slots.acquire(first) and slots.acquire(second)
    assert not slots.acquire(third) and slots.full_for(third) and not slots.full_for(first)
    assert slots.acquire(first)  # a stream keeps its slot frame after frame
    slots.release(second)  # stopped: free at once
    assert slots.acquire(third) and slots.in_use() == 2
    clock.now += 4.0
    assert slots.acquire(third)  # still sending
    clock.now += 2.0  # first has sent nothing for 6 s: its tab was closed, say
    assert not slots.holds(first) and slots.acquire(second)
    assert "all 2 live streams" in slots.busy_message() and "Try again" in slots.busy_message()


def test_the_cap_comes_from_the_settings_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fer_studio.toml"
    path.write_text("max_live_streams = 1\n")
    monkeypatch.setenv(settings.SETTINGS_FILE_ENV, str(path))
    clear = getattr(settings._read_settings_file, "cache_clear", None)
    if clear is not None:
        clear()
    try:
        slots = StreamSlots()
        assert slots.capacity == 1
        assert slots.acquire("a") and not slots.acquire("b")
        assert "the live stream" in slots.busy_message()
    finally:
        if clear is not None:
            clear()


def live_session(slots: StreamSlots) -> LiveSession:
    return LiveSession(
        FixedClassifier(),  # type: ignore[arg-type]
        VideoSettings(),
        detector_factory=BrightSquareDetector,
        slots=slots,
    )


def send_frame(session: LiveSession) -> np.ndarray:
    """One camera frame through the session's callback, as streamlit-webrtc sends it; the frame returned."""
    frame = av.VideoFrame.from_ndarray(square_frame(SQUARE), format="bgr24")
    [returned] = asyncio.run(session.queued_frames_callback([frame]))
    return np.asarray(returned.to_ndarray(format="bgr24"))


def test_the_stream_over_the_cap_gets_its_frames_back_unanalysed_with_a_busy_notice() -> None:
    slots = StreamSlots(2, clock=Clock())
    first, second, third = live_session(slots), live_session(slots), live_session(slots)
    send_frame(first)
    send_frame(second)
    refused = send_frame(third)
    assert third.is_busy() and third.snapshot().stats is None  # not analysed: no CPU spent on it
    assert third.result_count() == 0
    plain = square_frame(SQUARE)
    assert np.abs(refused[:20, :200].astype(int) - plain[:20, :200].astype(int)).max() > 40  # the notice
    assert first.snapshot().stats is not None and first.result_count() == 1 and not first.is_busy()
    first.release_stream()  # its visitor pressed STOP
    send_frame(third)
    assert not third.is_busy() and third.result_count() == 1


def not_playing_streamer(calls: list[str]) -> Any:
    def streamer(key: str, **kwargs: Any) -> SimpleNamespace:
        calls.append(key)
        return SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False))

    return streamer


def test_the_live_page_says_busy_and_offers_no_camera_when_every_slot_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", not_playing_streamer(calls))
    page = str(PROJECT_ROOT / "app" / "views" / "live.py")
    for _ in range(LIVE_STREAMS.capacity):  # other visitors' streams
        assert LIVE_STREAMS.acquire(object())
    at = AppTest.from_file(page, default_timeout=60)
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    assert any("The server is busy" in warning.value and "Try again" in warning.value for warning in at.warning)
    assert calls == []  # no START button to press
    LIVE_STREAMS.clear()  # they stopped
    at.button(key="live_try_again").click().run()
    assert not at.exception and not at.warning and calls == ["live-camera"]


def test_one_task_at_a_time_per_key() -> None:
    tasks = OneAtATime()
    assert tasks.try_start("browser:a") and not tasks.try_start("browser:a") and tasks.try_start("browser:b")
    tasks.finish("browser:a")
    assert tasks.try_start("browser:a")


def tiny_clip(path: Path) -> bytes:
    with AnnotatedVideoWriter(path, 160, 120, 10.0) as writer:
        for index in range(4):
            writer.write(np.full((120, 160, 3), 60 + 20 * index, np.uint8))
    return path.read_bytes()


def test_a_second_video_analysis_of_the_same_visitor_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.access, "visitor_key", lambda: "browser:test")  # AppTest has no browser cookie
    data = tiny_clip(tmp_path / "clip.mp4")
    at = AppTest.from_file(str(PROJECT_ROOT / "app" / "views" / "video.py"), default_timeout=120)
    at.run()
    assert VIDEO_ANALYSES.try_start("browser:test")  # the same visitor's clip, running in another tab
    try:
        at.file_uploader(key="video_upload").set_value([("clip.mp4", data, "video/mp4")]).run()
        assert not at.exception, [exception.value for exception in at.exception]
        assert any("still being analysed" in warning.value for warning in at.warning)
        assert not at.get("video")
    finally:
        VIDEO_ANALYSES.finish("browser:test")
    at.run()  # that one finished: this clip is analysed now, and the slot is free again afterwards
    assert not at.exception, [exception.value for exception in at.exception]
    assert at.get("video") and not VIDEO_ANALYSES.running("browser:test")
