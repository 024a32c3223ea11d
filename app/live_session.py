"""The Live page's adapter between streamlit-webrtc and :mod:`fer_core.video`: one :class:`LiveSession` per
browser session, holding its analyzer, its records and its speed figures behind a lock.

streamlit-webrtc calls :meth:`LiveSession.queued_frames_callback` on its worker thread with every camera
frame that arrived since the previous call. The newest is analysed and drawn
(:meth:`fer_core.video.VideoAnalyzer.analyze_and_draw`); the others are counted as dropped (analysis was
slower than the camera). The callback never touches ``st`` and never raises: on an error it logs and
returns the frame unannotated. When the stream ends, streamlit-webrtc calls :meth:`LiveSession.stream_ended`
(its ``on_video_ended``): the next stream's faces are tracked and its speed measured afresh. The page reads
:meth:`LiveSession.snapshot` and :meth:`LiveSession.timeline`, which copy under the lock.

The speed figures mean the same on the video and in the panel: frames analysed per second over the last
few seconds, the median processing time per analysed frame (find, classify, track, draw), and the camera
frames dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from fer_core.detect import DetectionPreset, FaceDetector, make_detector
from fer_core.draw import draw_status
from fer_core.face_table import FaceRecord, records_to_csv
from fer_core.frame_rate import FrameRateMeter
from fer_core.inference import EmotionClassifier
from fer_core.video import VideoAnalyzer, VideoSettings

if TYPE_CHECKING:
    import av

    from app.limits import StreamSlots

LOGGER = logging.getLogger(__name__)

HISTORY_LIMIT = 30_000  # records kept per session (about half an hour of one face at 15 fps)
TIMELINE_SECONDS = 60.0
BUSY_TEXT = "Server busy: too many live streams. Try again in a minute."  # drawn on a refused stream


class LiveStats(NamedTuple):
    frames: int  # frames analysed this session
    dropped: int  # camera frames not analysed because the previous one was still being processed
    faces: int  # faces in the latest analysed frame
    analysed_fps: float  # frames analysed per second, over the last few seconds (fer_core.frame_rate)
    camera_fps: float  # frames the camera delivered per second (analysed + dropped), same window
    processing_ms: float  # median time per analysed frame: find, classify, track, draw

    @property
    def analysed_text(self) -> str:
        return f"{self.analysed_fps:.1f}"

    @property
    def timing_text(self) -> str:
        return f"{self.processing_ms:.0f}"

    @property
    def dropped_text(self) -> str:
        return f"{self.dropped:,}"

    def status_line(self) -> str:
        """The line drawn on the video: the panel's figures, formatted by the same properties."""
        return f"{self.analysed_text} fps analysed  {self.timing_text} ms/frame  {self.dropped_text} dropped"


class LiveSnapshot(NamedTuple):
    stats: LiveStats | None  # None until the first frame
    faces: list[FaceRecord]  # the latest frame's faces, largest first
    error: str | None  # the latest processing error, until a frame succeeds again


class LiveSession:
    """Frames in, annotated frames and records out, for one browser session."""

    def __init__(
        self,
        classifier: EmotionClassifier,
        settings: VideoSettings | None = None,
        *,
        detector_factory: Callable[[DetectionPreset], FaceDetector] = make_detector,
        slots: StreamSlots | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._slots = slots  # the server's cap on concurrent streams (None: no cap)
        self._busy = False
        self._analyzer = VideoAnalyzer(classifier, settings, detector_factory=detector_factory)  # frame thread only
        self._wanted = (self._analyzer.settings, classifier)  # the page's choice; the frame thread applies it
        self._stream_ended = False  # the stream ended: the next frame starts new tracks
        self._meter = FrameRateMeter()
        self._records: deque[FaceRecord] = deque(maxlen=HISTORY_LIMIT)
        self._latest: list[FaceRecord] = []
        self._stats: LiveStats | None = None
        self._frames = 0
        self._dropped = 0
        self._error: str | None = None
        self._errors_logged = 0
        self._started: float | None = None  # perf_counter of the session's first frame
        self._converter: Any = None  # av's VideoReformatter, made on the first frame (frame thread only)

    # --- called by the page

    @property
    def settings(self) -> VideoSettings:
        with self._lock:
            return self._wanted[0]

    @property
    def classifier(self) -> EmotionClassifier:
        with self._lock:
            return self._wanted[1]

    def configure(self, settings: VideoSettings, classifier: EmotionClassifier | None = None) -> None:
        """New settings (and model), applied from the next frame on."""
        with self._lock:
            self._wanted = (settings, classifier or self._wanted[1])

    def snapshot(self) -> LiveSnapshot:
        with self._lock:
            return LiveSnapshot(self._stats, list(self._latest), self._error)

    def is_busy(self) -> bool:
        """Whether the latest frames were refused: the server's other streams hold every slot."""
        with self._lock:
            return self._busy

    def release_stream(self) -> None:
        """The stream stopped: its slot is free for another visitor now (not only once its frames stop)."""
        if self._slots is not None:
            self._slots.release(self)
        with self._lock:
            self._busy = False

    def now_s(self) -> float:
        """Seconds since the session's first frame (the records' time axis)."""
        with self._lock:
            return 0.0 if self._started is None else time.perf_counter() - self._started

    def timeline(self, seconds: float = TIMELINE_SECONDS) -> list[FaceRecord]:
        """Records of the last ``seconds``, oldest first."""
        start = self.now_s() - seconds
        with self._lock:
            recent: list[FaceRecord] = []
            for record in reversed(self._records):
                if record.time_s < start:
                    break
                recent.append(record)
        recent.reverse()
        return recent

    def history(self) -> list[FaceRecord]:
        with self._lock:
            return list(self._records)

    def result_count(self) -> int:
        with self._lock:
            return len(self._records)

    def session_csv(self) -> bytes:
        """The whole session's records as CSV (for the download button: callable with no arguments)."""
        return records_to_csv(self.history()).encode("utf-8")

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._latest = []
            self._stats = None
            self._error = None

    # --- called by streamlit-webrtc, on its worker threads

    def stream_ended(self) -> None:
        """streamlit-webrtc's ``on_video_ended``: the camera stopped. Its slot is freed, and the next
        stream's faces are new tracks and its speed a new measurement (the tracks are reset by the frame
        thread, on the next frame)."""
        self.release_stream()
        with self._lock:
            self._stream_ended = True
            self._meter.reset()

    async def queued_frames_callback(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """Analyse the newest of the frames that arrived; the older ones are dropped (counted)."""
        if not frames:
            return []
        if self._slots is not None and not self._slots.acquire(self):
            with self._lock:
                self._busy = True
            return [self.busy_frame(frames[-1])]
        with self._lock:
            self._busy = False
        return [self.video_frame_callback(frames[-1], dropped=len(frames) - 1)]

    def busy_frame(self, frame: av.VideoFrame) -> av.VideoFrame:
        """A refused stream's frame, not analysed, with :data:`BUSY_TEXT` on it. Never raises."""
        try:
            bgr_frame = self._to_bgr(frame)
            draw_status(bgr_frame, BUSY_TEXT)
            return self._to_video_frame(bgr_frame)
        except Exception as error:
            self._report_error(error)
            return frame

    def video_frame_callback(self, frame: av.VideoFrame, *, dropped: int = 0) -> av.VideoFrame:
        """Annotate one frame. Never raises: on any error, logs it and returns ``frame`` as it came."""
        try:
            annotated = self.process(self._to_bgr(frame), dropped=dropped)
            return self._to_video_frame(annotated)
        except Exception as error:
            self._report_error(error)
            return frame

    # One reused converter each way: PyAV's to_ndarray(format=...) and the VP8 encoder's reformat make a
    # new one per frame, 3x slower for the same pixels (1.5 ms of a 640x480 frame's 8). The annotated frame
    # goes back as yuv420p, which the encoders take as it is.

    def _reformat(self, frame: av.VideoFrame, pixel_format: str) -> av.VideoFrame:
        if self._converter is None:
            from av.video.reformatter import VideoReformatter

            self._converter = VideoReformatter()
        return cast("av.VideoFrame", self._converter.reformat(frame, format=pixel_format))

    def _to_bgr(self, frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
        return np.array(self._reformat(frame, "bgr24").to_ndarray(), dtype=np.uint8)

    def _to_video_frame(self, bgr_frame: npt.NDArray[np.uint8]) -> av.VideoFrame:
        import av

        return self._reformat(av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr_frame), format="bgr24"), "yuv420p")

    def process(self, bgr_frame: npt.NDArray[np.uint8], *, dropped: int = 0) -> npt.NDArray[np.uint8]:
        """Find, classify, track and draw on one BGR frame (in place); returns it."""
        started = time.perf_counter()
        with self._lock:
            if self._started is None:
                self._started = started
            time_s = started - self._started
            (settings, classifier), ended = self._wanted, self._stream_ended
            self._stream_ended = False
        analyzer = self._analyzer
        if ended:  # the camera was stopped and started again: these are not the same faces' next frames
            analyzer.reset()
        if settings != analyzer.settings or classifier is not analyzer.classifier:
            analyzer.configure(settings, classifier)  # raises (and is tried again next frame) if it cannot be applied
        result = analyzer.analyze_and_draw(bgr_frame, time_s)
        stats = self._update_stats(started, dropped, len(result.records), time.perf_counter() - started)
        draw_status(bgr_frame, stats.status_line())
        with self._lock:
            self._latest = result.records
            self._records.extend(result.records)
            self._error = None
        return bgr_frame

    # --- internals

    def _update_stats(self, started: float, dropped: int, faces: int, seconds: float) -> LiveStats:
        with self._lock:
            self._frames += 1
            self._dropped += dropped
            rates = self._meter.add(started, seconds, dropped=dropped)
            self._stats = LiveStats(
                frames=self._frames,
                dropped=self._dropped,
                faces=faces,
                analysed_fps=rates.analysed_fps,
                camera_fps=rates.arrived_fps,
                processing_ms=rates.processing_ms,
            )
            return self._stats

    def _report_error(self, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        with self._lock:
            self._error = message
            self._errors_logged += 1
            count = self._errors_logged
        # The first error with its traceback, then one line now and then: frames come 15 times a second.
        if count == 1:
            LOGGER.exception("live frame processing failed; returning frames unannotated")
        elif count % 100 == 0:
            LOGGER.error("live frame processing has failed %d times; latest: %s", count, message)


def main_face(faces: Sequence[FaceRecord]) -> FaceRecord | None:
    """The largest face: the one the panel describes."""
    return max(faces, key=lambda face: face.box.width * face.box.height, default=None)
