"""How fast a stream is analysed: frames analysed per second, frames arriving per second, and the median
time one analysed frame takes, over the last few seconds.

    meter = FrameRateMeter()
    for frame in stream:
        started = time.perf_counter()
        ...  # analyse and draw
        rates = meter.add(started, time.perf_counter() - started, dropped=skipped)
        print(f"{rates.analysed_fps:.1f} fps, {rates.processing_ms:.0f} ms")
    meter.reset()  # the stream ended: the next one is measured afresh
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import NamedTuple

RATE_WINDOW_S = 3.0  # the frame rates are measured over this many seconds
TIMING_FRAMES = 30  # the processing time is the median over this many analysed frames


class FrameRates(NamedTuple):
    analysed_fps: float  # frames analysed per second, over the window
    arrived_fps: float  # frames that arrived per second (analysed + dropped), same window
    processing_ms: float  # median time per analysed frame


class FrameRateMeter:
    """Frame rates over the last ``window_s`` seconds and the median processing time over the last
    ``timing_frames`` analysed frames. Times are any monotonic clock's seconds (``time.perf_counter``).
    For one thread (the caller locks if it shares one)."""

    def __init__(self, window_s: float = RATE_WINDOW_S, timing_frames: int = TIMING_FRAMES) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if timing_frames < 1:
            raise ValueError(f"timing_frames must be at least 1, got {timing_frames}")
        self.window_s = window_s
        self._analysed: deque[float] = deque()  # when each analysed frame started
        self._arrived: deque[float] = deque()  # the same, once more per frame dropped before it
        self._timings: deque[float] = deque(maxlen=timing_frames)

    def add(self, started: float, processing_s: float, *, dropped: int = 0) -> FrameRates:
        """One analysed frame that started at ``started`` and took ``processing_s``, with ``dropped``
        frames that arrived before it and were not analysed. Returns the rates now."""
        if dropped < 0:
            raise ValueError(f"dropped must be at least 0, got {dropped}")
        self._timings.append(processing_s * 1000.0)
        self._analysed.append(started)
        self._arrived.extend([started] * (dropped + 1))
        for times in (self._analysed, self._arrived):
            while times and started - times[0] > self.window_s:
                times.popleft()
        return FrameRates(
            analysed_fps=self._rate(len(self._analysed)),
            arrived_fps=self._rate(len(self._arrived)),
            processing_ms=statistics.median(self._timings),
        )

    def reset(self) -> None:
        """Forget every frame (the stream ended; the next one starts a new measurement)."""
        self._analysed.clear()
        self._arrived.clear()
        self._timings.clear()

    def _rate(self, count: int) -> float:
        """Events per second: ``count`` events over the span of the analysed frames' times."""
        if len(self._analysed) < 2:
            return 0.0
        span = self._analysed[-1] - self._analysed[0]
        return (count - 1) / span if span > 0 else 0.0
