"""What one visitor may take of the server at once: a cap on concurrent Live streams (for the whole server)
and one video analysis at a time per visitor. Plain objects with an injectable clock, so the caps are
tested without a browser and without waiting.

    LIVE_STREAMS.acquire(session)      # on every frame: True while the stream holds a slot
    with video_analysis_slot(): ...    # the Video page: an st.warning and a stopped run when one is running
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

import streamlit as st

from fer_core.settings import max_live_streams

STREAM_IDLE_S = 5.0  # a stream whose frames stopped this long ago has ended: its slot is free again


class StreamSlots:
    """A cap on streams analysed at once. A stream holds a slot from its first frame for as long as its
    frames keep coming; one that sends nothing for ``idle_s`` (stopped, tab closed, network gone) frees
    it without being told, so a lost stream never keeps a slot. Thread-safe (frames arrive on worker threads)."""

    def __init__(
        self,
        capacity: Callable[[], int] | int = max_live_streams,
        *,
        idle_s: float = STREAM_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self._idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_seen: dict[Hashable, float] = {}

    @property
    def capacity(self) -> int:
        return self._capacity() if callable(self._capacity) else self._capacity

    def acquire(self, owner: Hashable) -> bool:
        """Whether ``owner``'s stream may be analysed now: it holds a slot, or takes a free one."""
        with self._lock:
            now = self._clock()
            self._forget_idle(now)
            if owner not in self._last_seen and len(self._last_seen) >= self.capacity:
                return False
            self._last_seen[owner] = now
            return True

    def release(self, owner: Hashable) -> None:
        with self._lock:
            self._last_seen.pop(owner, None)

    def holds(self, owner: Hashable) -> bool:
        with self._lock:
            self._forget_idle(self._clock())
            return owner in self._last_seen

    def in_use(self) -> int:
        with self._lock:
            self._forget_idle(self._clock())
            return len(self._last_seen)

    def full_for(self, owner: Hashable) -> bool:
        """Whether a new stream of ``owner`` would be refused now."""
        with self._lock:
            self._forget_idle(self._clock())
            return owner not in self._last_seen and len(self._last_seen) >= self.capacity

    def clear(self) -> None:
        """Free every slot (a test's fresh start; a server never needs it)."""
        with self._lock:
            self._last_seen.clear()

    def busy_message(self) -> str:
        capacity = self.capacity
        streams = "the live stream" if capacity == 1 else f"all {capacity} live streams"
        return f"The server is busy: {streams} it can analyse at once are in use. Try again in a minute."

    def _forget_idle(self, now: float) -> None:
        for owner in [owner for owner, seen in self._last_seen.items() if now - seen > self._idle_s]:
            del self._last_seen[owner]


class OneAtATime:
    """At most one running task per key (a visitor): :meth:`try_start` is False while the key's task runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()

    def try_start(self, key: str) -> bool:
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
            return True

    def finish(self, key: str) -> None:
        with self._lock:
            self._running.discard(key)

    def running(self, key: str) -> bool:
        with self._lock:
            return key in self._running


LIVE_STREAMS = StreamSlots()  # the whole server's Live streams (max_live_streams in fer_studio.toml)
VIDEO_ANALYSES = OneAtATime()  # the Video page: one clip analysed at a time per visitor


@contextmanager
def video_analysis_slot(key: str) -> Iterator[None]:
    """Around a clip's analysis: for a visitor (``key``, from ``app.access.visitor_key``) whose other
    analysis still runs, an ``st.warning`` and a stopped run; otherwise the slot, freed however it ends."""
    if not VIDEO_ANALYSES.try_start(key):
        st.warning(
            "A clip of yours is still being analysed (in this or another tab): wait for it to finish, "
            "then try again. One clip is analysed at a time per visitor.",
            icon=":material/hourglass_top:",
        )
        st.stop()
    try:
        yield
    finally:
        VIDEO_ANALYSES.finish(key)
