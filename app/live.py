"""The live webcam path: one :class:`LiveProcessor` per browser session turns each video frame into
an annotated frame and a few small result records.

streamlit-webrtc calls :meth:`LiveProcessor.video_frame_callback` on its own worker thread, once per
frame. The callback never touches ``st`` and never raises: on an error it logs and returns the frame
unannotated. The page reads the results through :meth:`LiveProcessor.snapshot` and
:meth:`LiveProcessor.timeline`, which copy them under a lock.

The model (an :class:`~fer_core.inference.EmotionClassifier`, whose compiled forward pass is safe to
share between threads) is shared by every session; everything else (OpenCV's cascades, which are not
thread-safe, the face tracks, the results) belongs to one session's processor.

Chart builders and the ICE-server configuration for deployments live here too; none call ``st``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Box, FaceDetector, HaarFaceDetector
from fer_core.draw import face_caption, label_color_rgb
from fer_core.inference import UNCERTAIN, FacePrediction, Predictor
from fer_core.labels import EMOTIONS
from fer_core.preprocess import to_gray
from fer_core.tracking import DEFAULT_SMOOTHING, FaceFinder, FaceTracker, TrackedFace

if TYPE_CHECKING:
    import av
    import plotly.graph_objects as go

LOGGER = logging.getLogger(__name__)

HISTORY_LIMIT = 30_000  # result records kept per session (about half an hour of one face at 15 fps)
TIMELINE_SECONDS = 60.0
ICE_SERVERS_ENV = "FER_ICE_SERVERS"
ICE_SERVERS_SECRET = "ice_servers"
DETECTOR_WINDOW = 28  # pixels the smallest wanted face spans in the image the cascade scans
FULL_MIN_NEIGHBORS = 5  # OpenCV's default, as on the Photos page
SEARCH_MIN_FACE = 40  # the cascade's minimum inside a search window, where the face is about 64 pixels
SEARCH_MIN_NEIGHBORS = 3  # a face is expected there: accept weaker evidence than a full-frame scan
MEDIA_STREAM_CONSTRAINTS: dict[str, Any] = {
    "video": {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"ideal": 15, "max": 30}},
    "audio": False,
}


class Classifier(Protocol):
    def classify_batch(self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = ...) -> npt.NDArray[np.float32]: ...


class DetectorFactory(Protocol):
    """Makes a face detector; :class:`~fer_core.detect.HaarFaceDetector` is one (tests pass fakes)."""

    def __call__(self, *, min_face_size: int, max_side: int, min_neighbors: int) -> FaceDetector: ...


@dataclass(frozen=True)
class LiveSettings:
    min_face_size: int = 48  # pixels, in the camera's frame
    smoothing: float = DEFAULT_SMOOTHING  # weight of the past in each face's moving average
    threshold: float = 0.4  # below this confidence the label reads "uncertain"
    mirror: bool = True  # flip the video left-right, like a mirror
    redetect_every: int = 6  # frames between full-frame detections (1 = every frame): 0.4 s at 15 fps

    def __post_init__(self) -> None:
        if self.min_face_size < 16:
            raise ValueError(f"min_face_size must be at least 16 pixels, got {self.min_face_size}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.redetect_every < 1:
            raise ValueError(f"redetect_every must be 1 or more, got {self.redetect_every}")


class LiveResult(NamedTuple):
    """One face in one processed frame."""

    timestamp: float  # seconds since the epoch
    track_id: int
    box: Box  # in the frame as shown (mirrored when the mirror view is on)
    label: str  # the smoothed emotion, or "uncertain" below the threshold
    scores: npt.NDArray[np.float32]  # smoothed probabilities in EMOTIONS order
    processing_ms: float  # this frame's processing time
    fps: float  # frames processed per second, recently

    @property
    def emotion(self) -> str:
        """The most probable emotion, even when the label says "uncertain"."""
        return EMOTIONS[int(np.argmax(self.scores))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.scores))

    @property
    def area(self) -> int:
        return self.box.width * self.box.height


class FrameStats(NamedTuple):
    timestamp: float
    frames: int  # frames processed in this session
    faces: int  # faces shown in the latest frame
    processing_ms: float
    fps: float


class LiveSnapshot(NamedTuple):
    stats: FrameStats | None  # None until the first frame
    faces: list[LiveResult]  # the latest frame's faces, largest first
    error: str | None  # the latest processing error, until a frame succeeds again


def label_for(emotion: str, confidence: float, threshold: float) -> str:
    """The label to show: the emotion, or "uncertain" when the model is less sure than ``threshold``
    (the rule of :meth:`fer_core.inference.FacePrediction.label`, which the Photos page uses)."""
    return emotion if confidence >= threshold else UNCERTAIN


class LiveProcessor:
    """Frames in, annotated frames and results out, for one browser session."""

    def __init__(
        self,
        classifier: Classifier,
        settings: LiveSettings | None = None,
        *,
        detector_factory: DetectorFactory = HaarFaceDetector,
    ) -> None:
        self._lock = threading.Lock()
        self._detector_factory = detector_factory
        self._classifier = classifier
        self._settings = settings or LiveSettings()
        self._records: deque[LiveResult] = deque(maxlen=HISTORY_LIMIT)
        self._latest: list[LiveResult] = []
        self._stats: FrameStats | None = None
        self._error: str | None = None
        self._errors_logged = 0
        self._frame_times: deque[float] = deque(maxlen=30)
        self._frames = 0
        # Used only by the thread that processes frames.
        self._tracker = FaceTracker(smoothing=self._settings.smoothing)
        self._pipeline_key: tuple[Any, ...] | None = None
        self._finder: FaceFinder | None = None
        self._predictor: Predictor | None = None
        self._pipeline_for((480, 640), self._settings, classifier)  # load the cascades now, not on frame one

    # --- called by the page

    @property
    def settings(self) -> LiveSettings:
        with self._lock:
            return self._settings

    def configure(self, settings: LiveSettings) -> None:
        """New settings, applied from the next frame on."""
        with self._lock:
            self._settings = settings

    def set_classifier(self, classifier: Classifier) -> None:
        """Switch models; face tracks restart, since two models' probabilities do not mix."""
        with self._lock:
            self._classifier = classifier

    @property
    def classifier(self) -> Classifier:
        with self._lock:
            return self._classifier

    def snapshot(self) -> LiveSnapshot:
        with self._lock:
            return LiveSnapshot(self._stats, list(self._latest), self._error)

    def timeline(self, seconds: float = TIMELINE_SECONDS, now: float | None = None) -> list[LiveResult]:
        """Records of the last ``seconds``, oldest first."""
        start = (time.time() if now is None else now) - seconds
        with self._lock:
            recent: list[LiveResult] = []
            for record in reversed(self._records):
                if record.timestamp < start:
                    break
                recent.append(record)
        recent.reverse()
        return recent

    def history(self) -> list[LiveResult]:
        with self._lock:
            return list(self._records)

    def result_count(self) -> int:
        with self._lock:
            return len(self._records)

    def session_csv(self) -> bytes:
        """The whole session's records as CSV (for the download button; callable with no arguments)."""
        return records_to_csv(self.history())

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._latest = []
            self._stats = None
            self._error = None

    # --- called by streamlit-webrtc, on its worker thread

    def video_frame_callback(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Annotate one frame. Never raises: on any error, logs it and returns ``frame`` as it came."""
        import av

        try:
            bgr_frame = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            annotated = self.process(bgr_frame)
            return av.VideoFrame.from_ndarray(annotated, format="bgr24")
        except Exception as error:
            self._report_error(error)
            return frame

    def process(self, bgr_frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """Detect, classify, track and draw on one BGR frame; returns the annotated frame."""
        started = time.perf_counter()
        with self._lock:
            settings, classifier = self._settings, self._classifier
        bgr_frame = cv2.flip(bgr_frame, 1) if settings.mirror else np.ascontiguousarray(bgr_frame)
        gray_frame = to_gray(bgr_frame)
        finder, predictor = self._pipeline_for(gray_frame.shape[:2], settings, classifier)
        self._tracker.smoothing = settings.smoothing
        boxes = finder.find(gray_frame, self._tracker.boxes())
        predictions = predictor.classify_boxes(gray_frame, boxes)
        faces = self._tracker.update([p.box for p in predictions], [p.scores for p in predictions])
        now = time.time()
        self._frame_times.append(time.perf_counter())
        fps = _rate(self._frame_times)
        processing_ms = (time.perf_counter() - started) * 1000.0
        draw_faces(bgr_frame, faces, settings.threshold)
        draw_stats(bgr_frame, fps, processing_ms)
        self._record(now, faces, settings.threshold, processing_ms, fps)
        return bgr_frame

    # --- internals

    def _pipeline_for(
        self, frame_shape: tuple[int, ...], settings: LiveSettings, classifier: Classifier
    ) -> tuple[FaceFinder, Predictor]:
        key = (frame_shape, settings.min_face_size, settings.redetect_every, id(classifier))
        if key != self._pipeline_key or self._finder is None or self._predictor is None:
            detector = self._detector_factory(
                min_face_size=settings.min_face_size,
                max_side=detection_side(frame_shape, settings.min_face_size),
                min_neighbors=FULL_MIN_NEIGHBORS,
            )
            search_detector = self._detector_factory(
                min_face_size=SEARCH_MIN_FACE, max_side=4096, min_neighbors=SEARCH_MIN_NEIGHBORS
            )
            self._finder = FaceFinder(
                detector,
                redetect_every=settings.redetect_every,
                search_detector=search_detector,
                min_face_size=settings.min_face_size,
            )
            self._predictor = Predictor(classifier, detector)  # type: ignore[arg-type]
            if self._pipeline_key is not None and self._pipeline_key[3] != key[3]:
                self._tracker.reset()
            self._pipeline_key = key
        return self._finder, self._predictor

    def _record(
        self, now: float, faces: Sequence[TrackedFace], threshold: float, processing_ms: float, fps: float
    ) -> None:
        largest_first = sorted(faces, key=lambda face: face.area, reverse=True)
        results = [
            LiveResult(
                timestamp=now,
                track_id=face.track_id,
                box=face.box,
                label=label_for(face.emotion, face.confidence, threshold),
                scores=face.scores,
                processing_ms=processing_ms,
                fps=fps,
            )
            for face in largest_first
        ]
        seen_now = [result for result, face in zip(results, largest_first, strict=True) if face.missed == 0]
        with self._lock:
            self._frames += 1
            self._latest = results
            self._stats = FrameStats(now, self._frames, len(results), processing_ms, fps)
            self._records.extend(seen_now)
            self._error = None

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


def detection_side(frame_shape: tuple[int, ...], min_face_size: int) -> int:
    """The longer side of the image the full-frame cascade scans: just large enough that the smallest
    wanted face still spans ``DETECTOR_WINDOW`` pixels. Bigger minimum faces make detection cheaper."""
    longer = max(frame_shape[:2])
    scale = min(1.0, DETECTOR_WINDOW / min_face_size)
    return max(64, round(longer * scale))


def _rate(times: deque[float]) -> float:
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


# --- drawing (in place, on BGR frames)

FONT = cv2.FONT_HERSHEY_SIMPLEX
BAR_HEIGHT = 7
NO_FACE_CROP = np.zeros((0, 0), np.uint8)


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


def draw_faces(bgr_frame: npt.NDArray[np.uint8], faces: Sequence[TrackedFace], threshold: float) -> None:
    """For each face: a box and a caption (``#track emotion 87%``, as on the Photos page) in its
    emotion's colour, and a bar under the box as long as the confidence."""
    height, width = bgr_frame.shape[:2]
    for face in faces:
        prediction = as_prediction(face)
        color = _bgr(label_color_rgb(prediction.label(threshold)))
        x, y, w, h = face.box
        cv2.rectangle(bgr_frame, (x, y), (x + w, y + h), color, 2 if face.missed == 0 else 1, cv2.LINE_AA)
        caption = face_caption(prediction, threshold, face.track_id)
        (text_width, text_height), baseline = cv2.getTextSize(caption, FONT, 0.55, 1)
        label_height = text_height + baseline + 6
        left = min(max(0, x), max(0, width - text_width - 8))
        top = y - label_height if y - label_height >= 0 else y  # no room above the box: just inside it
        cv2.rectangle(bgr_frame, (left, top), (left + text_width + 8, top + label_height), color, cv2.FILLED)
        red, green, blue = label_color_rgb(prediction.label(threshold))
        text_color = (20, 20, 20) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)
        cv2.putText(bgr_frame, caption, (left + 4, top + text_height + 3), FONT, 0.55, text_color, 1, cv2.LINE_AA)
        bar_top = min(y + h + 4, height - BAR_HEIGHT - 1)
        bar_left, bar_right = max(0, x), min(x + w, width - 1)
        cv2.rectangle(bgr_frame, (bar_left, bar_top), (bar_right, bar_top + BAR_HEIGHT), (45, 45, 45), cv2.FILLED)
        filled = bar_left + round((bar_right - bar_left) * face.confidence)
        cv2.rectangle(bgr_frame, (bar_left, bar_top), (filled, bar_top + BAR_HEIGHT), color, cv2.FILLED)


def as_prediction(face: TrackedFace) -> FacePrediction:
    """A tracked face in the form the rest of the app draws and captions."""
    return FacePrediction(face.box, face.emotion, face.confidence, face.scores, NO_FACE_CROP)


def draw_stats(bgr_frame: npt.NDArray[np.uint8], fps: float, processing_ms: float) -> None:
    """Frame rate and per-frame processing time in the top-left corner, on a dark strip."""
    text = f"{fps:4.1f} fps  {processing_ms:4.0f} ms/frame"
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, 0.5, 1)
    corner = bgr_frame[0 : text_height + baseline + 10, 0 : text_width + 12]
    corner[:] = (corner * 0.35).astype(np.uint8)
    cv2.putText(bgr_frame, text, (6, text_height + 5), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


# --- records for the page


def records_to_csv(records: Sequence[LiveResult]) -> bytes:
    """timestamp (UTC, ISO 8601), seconds since the first record, track, label, confidence, the box,
    then one probability column per emotion."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["timestamp", "seconds", "track", "label", "confidence", "x", "y", "width", "height", *EMOTIONS])
    start = records[0].timestamp if records else 0.0
    for record in records:
        writer.writerow(
            [
                datetime.fromtimestamp(record.timestamp, UTC).isoformat(timespec="milliseconds"),
                f"{record.timestamp - start:.3f}",
                record.track_id,
                record.label,
                f"{record.confidence:.4f}",
                *record.box,
                *(f"{score:.4f}" for score in record.scores),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def main_face(faces: Sequence[LiveResult]) -> LiveResult | None:
    """The largest face: the one the panel describes."""
    return max(faces, key=lambda face: face.area, default=None)


# --- charts (plain data in, plotly figure out)


def timeline_figure(records: Sequence[LiveResult], now: float, seconds: float = TIMELINE_SECONDS) -> go.Figure:
    """Each face's label over the last ``seconds``: one row per emotion, one line per face."""
    import plotly.graph_objects as go

    figure = go.Figure()
    track_ids = sorted({record.track_id for record in records})
    for track_id in track_ids:
        points = _thinned([record for record in records if record.track_id == track_id])
        figure.add_trace(
            go.Scatter(
                x=[record.timestamp - now for record in points],
                y=[record.label for record in points],
                mode="lines+markers",
                name=f"face {track_id}",
                line={"color": "rgba(120,120,120,0.35)", "shape": "hv", "width": 1},
                marker={"color": [_css(label_color_rgb(record.label)) for record in points], "size": 7},
                customdata=[f"{record.confidence:.0%}" for record in points],
                hovertemplate=f"face {track_id}<br>%{{y}} %{{customdata}}<br>%{{x:.1f}} s<extra></extra>",
            )
        )
    span = now - min((record.timestamp for record in records), default=now - seconds)
    shown = min(seconds, max(10.0, span * 1.05))  # a new session's first seconds are not squeezed to the edge
    figure.update_layout(
        height=280,
        margin={"l": 0, "r": 10, "t": 10, "b": 0},
        xaxis={"range": [-shown, 0], "title": "seconds ago", "fixedrange": True, "ticksuffix": " s"},
        yaxis={
            "categoryorder": "array",
            "categoryarray": [*EMOTIONS, UNCERTAIN],
            "range": [-0.5, len(EMOTIONS) + 0.5],
            "fixedrange": True,
        },
        showlegend=len(track_ids) > 1,
        legend={"orientation": "h", "y": 1.12},
    )
    return figure


def _thinned(records: Sequence[LiveResult], per_second: float = 4.0) -> list[LiveResult]:
    """At most ``per_second`` points per second, always keeping label changes."""
    kept: list[LiveResult] = []
    for record in records:
        if not kept or record.label != kept[-1].label or record.timestamp - kept[-1].timestamp >= 1.0 / per_second:
            kept.append(record)
    if records and kept[-1] is not records[-1]:
        kept.append(records[-1])
    return kept


def _css(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


# --- WebRTC configuration


def ice_servers(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """STUN/TURN servers for the WebRTC connection: ``$FER_ICE_SERVERS`` (a JSON list), else
    ``ice_servers`` in ``.streamlit/secrets.toml``, else none, which is all localhost needs.

        FER_ICE_SERVERS='[{"urls": ["stun:stun.example.org:3478"]},
                          {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]'

    Raises ``ValueError`` naming the problem when the setting is not a list of ``{"urls": ...}``.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(ICE_SERVERS_ENV, "").strip()
    if raw:
        try:
            servers = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"{ICE_SERVERS_ENV} is not valid JSON ({error.msg} at character {error.pos})") from None
        return _checked_servers(servers, ICE_SERVERS_ENV)
    if secrets is not None:
        try:
            configured = secrets.get(ICE_SERVERS_SECRET)
        except Exception:  # st.secrets raises when there is no secrets file; that means "not configured"
            configured = None
        if configured:
            return _checked_servers(_plain(configured), f"{ICE_SERVERS_SECRET} in secrets.toml")
    return []


def rtc_configuration(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {"iceServers": ice_servers(environ, secrets)}


def _plain(value: Any) -> Any:
    """st.secrets hands out its own mapping type: turn it into plain lists and dicts."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _checked_servers(servers: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(servers, list):
        raise ValueError(f"{source} must be a list of servers, got {type(servers).__name__}")
    for index, server in enumerate(servers):
        if not isinstance(server, dict) or "urls" not in server:
            raise ValueError(f'{source}: server {index + 1} must be an object with "urls"')
        urls = server["urls"]
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not url_list or not all(isinstance(url, str) for url in url_list):
            raise ValueError(f'{source}: server {index + 1} "urls" must be a URL or a list of URLs')
        bad = [url for url in url_list if not url.startswith(("stun:", "turn:", "turns:"))]
        if bad:
            raise ValueError(f"{source}: {bad[0]!r} is not a stun:, turn: or turns: URL")
    return servers
