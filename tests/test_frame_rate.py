"""The frame-rate meter behind the Live page's speed figures: rates over a window, the median time."""

from __future__ import annotations

import pytest

from fer_core.frame_rate import FrameRateMeter, FrameRates


def test_steady_frames_give_their_rate_and_median_time() -> None:
    meter = FrameRateMeter(window_s=3.0)
    for index in range(10):
        rates = meter.add(index * 0.1, 0.02 if index != 5 else 0.5)  # one slow frame does not move the median
    assert rates == FrameRates(analysed_fps=pytest.approx(10.0), arrived_fps=pytest.approx(10.0), processing_ms=20.0)


def test_dropped_frames_count_as_arrived_not_analysed() -> None:
    meter = FrameRateMeter()
    for index in range(5):
        rates = meter.add(index * 0.2, 0.01, dropped=1)
    assert rates.analysed_fps == pytest.approx(5.0)
    assert rates.arrived_fps == pytest.approx(9 / 0.8)  # 10 frames arrived, over the analysed frames' span


def test_only_the_window_counts() -> None:
    meter = FrameRateMeter(window_s=1.0)
    for index in range(5):
        meter.add(index * 0.5, 0.01)  # 2 fps
    for index in range(11):
        rates = meter.add(10.0 + index * 0.1, 0.01)  # then 10 fps: the old frames fall out of the window
    assert rates.analysed_fps == pytest.approx(10.0)


def test_reset_starts_a_new_measurement() -> None:
    meter = FrameRateMeter()
    for index in range(5):
        meter.add(index * 0.1, 0.5)
    meter.reset()
    assert meter.add(0.6, 0.01) == FrameRates(0.0, 0.0, 10.0)  # one frame: no rate yet, its own time


@pytest.mark.parametrize(
    ("options", "match"),
    [({"window_s": 0}, "window_s must be positive"), ({"timing_frames": 0}, "timing_frames must be at least 1")],
)
def test_nonsense_settings_are_refused(options: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FrameRateMeter(**options)  # type: ignore[arg-type]


def test_a_negative_drop_count_is_refused() -> None:
    with pytest.raises(ValueError, match="dropped must be at least 0"):
        FrameRateMeter().add(0.0, 0.01, dropped=-1)
