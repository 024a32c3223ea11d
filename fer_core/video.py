"""Faces through video: every face of every frame found, classified, followed and recorded.

One :class:`VideoAnalyzer` follows one stream of BGR frames (a clip, a webcam): it finds the faces of
each frame (the video preset: YuNet on a half-size copy), classifies them in one call, and keeps each
face's track id and smoothed probabilities (:class:`~fer_core.tracking.FaceTracker`) so labels do not
flicker. Each frame gives a
:class:`FrameResult` with typed :class:`FaceRecord` rows; :func:`records_to_csv` writes them.

    classifier = fer_core.inference.load_classifier()
    for result in analyze_video("clip.mp4", classifier, annotated_path="clip-annotated.mp4"):
        for record in result.records:
            print(record.time_s, record.face, record.label, round(record.confidence, 2))

Files are read and written with PyAV (FFmpeg). The annotated copy is H.264 in MP4, which browsers
play, with the clip's frame rate and frame count.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.detect import (
    LANDMARK_COLUMNS,
    VIDEO_PRESET,
    Box,
    DetectionPreset,
    FaceDetector,
    Landmarks,
    make_detector,
)
from fer_core.draw import draw_tracked_faces
from fer_core.errors import InvalidVideoError
from fer_core.inference import EmotionClassifier, Predictor
from fer_core.labels import DEFAULT_THRESHOLD, EMOTIONS
from fer_core.tracking import DEFAULT_SMOOTHING, FaceTracker, TrackedFace

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")


@dataclass(frozen=True)
class VideoSettings:
    """How a stream is analysed. ``preset`` says how faces are found (its ``min_face_size`` is in frame
    pixels); the rest is about following them."""

    preset: DetectionPreset = VIDEO_PRESET
    smoothing: float = DEFAULT_SMOOTHING  # weight of the past in each face's moving average (0: none)
    threshold: float = DEFAULT_THRESHOLD  # below this confidence a face's label is "uncertain"
    mirror: bool = False  # flip frames left-right first (a webcam shown as a mirror)

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


class FaceRecord(NamedTuple):
    """One face in one analysed frame: a row of the CSV."""

    time_s: float  # seconds from the start of the clip (or of the live session)
    frame: int  # the frame's index, from 0
    face: int  # the track id: the same person keeps it while they stay in view
    box: Box  # in the frame as analysed (mirrored when the settings mirror)
    label: str  # the smoothed emotion, or "uncertain" below the threshold
    emotion: str  # the most probable smoothed emotion, even when the label says "uncertain"
    confidence: float
    scores: npt.NDArray[np.float32]  # smoothed probabilities in EMOTIONS order
    detection_score: float | None = None  # the detector's confidence in this frame (YuNet)
    landmarks: Landmarks | None = None  # eyes, nose tip, mouth corners in this frame (YuNet)

    def as_dict(self) -> dict[str, Any]:
        return {
            "time_s": round(self.time_s, 3),
            "frame": self.frame,
            "face": self.face,
            "box": [int(value) for value in self.box],
            "label": self.label,
            "emotion": self.emotion,
            "confidence": round(self.confidence, 6),
            "detection_score": round(self.detection_score, 4) if self.detection_score is not None else None,
            "landmarks": self.landmarks.as_dict() if self.landmarks is not None else None,
            "scores": {emotion: round(float(score), 6) for emotion, score in zip(EMOTIONS, self.scores, strict=True)},
        }


class FrameResult(NamedTuple):
    frame: int  # the frame's index, from 0
    time_s: float
    faces: list[TrackedFace]  # every live track: seen in this frame, or held for a few frames unseen
    records: list[FaceRecord]  # the faces seen in this frame, largest first
    processing_ms: float  # find + classify + track


class VideoAnalyzer:
    """Frames in, tracked and classified faces out, for one stream. Not for two threads at once.

    ``detector_factory`` makes the detectors from the preset (tests pass fakes).
    """

    def __init__(
        self,
        classifier: EmotionClassifier,
        settings: VideoSettings | None = None,
        *,
        detector_factory: Callable[[DetectionPreset], FaceDetector] = make_detector,
    ) -> None:
        self._detector_factory = detector_factory
        self._settings = settings or VideoSettings()
        self._classifier = classifier
        self._tracker = FaceTracker(smoothing=self._settings.smoothing)
        self._frames = 0
        self._predictor = self._make_predictor(classifier, self._settings)

    @property
    def settings(self) -> VideoSettings:
        return self._settings

    @property
    def classifier(self) -> EmotionClassifier:
        return self._classifier

    def configure(self, settings: VideoSettings | None = None, classifier: EmotionClassifier | None = None) -> None:
        """New settings or a new model from the next frame on. A new model or detector restarts the tracks
        (two models' probabilities do not mix)."""
        new_settings = settings or self._settings
        new_classifier = classifier or self._classifier
        restart = new_classifier is not self._classifier or new_settings.preset != self._settings.preset
        # Built before anything changes: a detector that cannot be made leaves the analyzer as it was.
        predictor = self._make_predictor(new_classifier, new_settings) if restart else self._predictor
        self._settings, self._classifier, self._predictor = new_settings, new_classifier, predictor
        self._tracker.smoothing = new_settings.smoothing
        if restart:
            self._tracker.reset()

    def _make_predictor(self, classifier: EmotionClassifier, settings: VideoSettings) -> Predictor:
        preset = settings.preset
        return Predictor(classifier, self._detector_factory(preset), align=preset.align)

    def analyze(self, bgr_frame: npt.NDArray[np.uint8], time_s: float, index: int | None = None) -> FrameResult:
        """Find, classify and track the faces of one frame. ``bgr_frame`` is mirrored in place first when
        the settings say so (the caller then draws on what was analysed)."""
        started = time.perf_counter()
        settings = self._settings
        if settings.mirror:
            bgr_frame[:] = bgr_frame[:, ::-1]
        predictions = self._predictor.predict(bgr_frame)
        faces = self._tracker.update([p.box for p in predictions], [p.scores for p in predictions])
        frame_index = self._frames if index is None else index
        self._frames = frame_index + 1
        seen = sorted((face for face in faces if face.missed == 0), key=lambda face: face.area, reverse=True)
        found = {prediction.box: prediction for prediction in predictions}  # a seen track holds its frame's box
        records = [
            FaceRecord(
                time_s=time_s,
                frame=frame_index,
                face=face.track_id,
                box=face.box,
                label=face.label(settings.threshold),
                emotion=face.emotion,
                confidence=face.confidence,
                scores=face.scores,
                detection_score=found[face.box].detection_score if face.box in found else None,
                landmarks=found[face.box].landmarks if face.box in found else None,
            )
            for face in seen
        ]
        processing_ms = (time.perf_counter() - started) * 1000.0
        return FrameResult(frame_index, time_s, faces, records, processing_ms)

    def reset(self) -> None:
        """Forget the faces (a new clip or a restarted camera); track ids keep counting up."""
        self._tracker.reset()


# --- video files


class VideoInfo(NamedTuple):
    path: Path
    width: int
    height: int
    fps: float  # average frames per second
    frame_count: int | None  # None when the container does not say
    duration_s: float | None
    codec: str


def probe_video(path: str | Path) -> VideoInfo:
    """What a video file holds; :class:`InvalidVideoError` when it is not a video this build can read."""
    import av

    file = Path(path)
    if not file.is_file():
        raise InvalidVideoError(f"{file} does not exist or is not a file")
    try:
        with av.open(str(file)) as container:
            if not container.streams.video:
                raise InvalidVideoError(f"{file.name} has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if not (stream.codec_context.width and stream.codec_context.height):
                raise InvalidVideoError(f"{file.name} is not a video file, or it is damaged (no picture size)")
            rate = stream.average_rate or stream.guessed_rate
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            if duration is None and container.duration:
                duration = container.duration / 1_000_000
            return VideoInfo(
                path=file,
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(rate) if rate else 0.0,
                frame_count=int(stream.frames) or None,
                duration_s=duration,
                codec=codec,
            )
    except InvalidVideoError:
        raise
    except (av.FFmpegError, ValueError, OSError) as error:
        raise InvalidVideoError(_video_error(file, error)) from None


def _video_error(file: Path, error: Exception) -> str:
    text = str(error)
    if "Invalid data" in text or "moov atom" in text:
        return f"{file.name} is not a video file, or it is damaged or truncated"
    if "decoder" in text.lower() or "codec" in text.lower():
        return f"{file.name} uses a codec this build cannot decode ({text})"
    return f"{file.name} cannot be read as a video ({text})"


def read_frames(
    path: str | Path, *, max_seconds: float | None = None, info: VideoInfo | None = None
) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """``(time_s, bgr_frame)`` for each frame of a video file, up to ``max_seconds``. A file that breaks
    off partway raises :class:`InvalidVideoError` there (after the frames before it)."""
    import av

    file = Path(path)
    info = info or probe_video(file)
    try:
        with av.open(str(file)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start: float | None = None
            for index, frame in enumerate(container.decode(stream)):
                stamp = float(frame.time) if frame.time is not None else index / (info.fps or 25.0)
                start = stamp if start is None else start
                time_s = stamp - start  # from the first frame: some clips' timestamps do not start at 0
                if max_seconds is not None and time_s >= max_seconds:
                    return
                yield time_s, np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
    except (av.FFmpegError, ValueError, OSError) as error:
        raise InvalidVideoError(_video_error(file, error)) from None


class AnnotatedVideoWriter:
    """Frames into an H.264 MP4 (yuv420p, so browsers play it) at a given frame rate. Odd sizes are
    padded by one pixel (H.264 in 4:2:0 needs even ones). Use as a context manager."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = width + width % 2, height + height % 2
        self._container = av.open(str(self.path), "w")
        try:
            rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
            self._stream.options = {"crf": "23", "preset": "veryfast"}
        except BaseException:
            self._container.close()
            raise
        self.frames = 0

    def write(self, bgr_frame: npt.NDArray[np.uint8]) -> None:
        import av

        height, width = bgr_frame.shape[:2]
        if (width, height) != (self.width, self.height):
            padded = np.zeros((self.height, self.width, 3), np.uint8)
            padded[: min(height, self.height), : min(width, self.width)] = bgr_frame[: self.height, : self.width]
            bgr_frame = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr_frame), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def analyze_video(
    path: str | Path,
    classifier: EmotionClassifier,
    settings: VideoSettings | None = None,
    *,
    annotated_path: str | Path | None = None,
    max_seconds: float | None = None,
    detector_factory: Callable[[DetectionPreset], FaceDetector] = make_detector,
    info: VideoInfo | None = None,
) -> Iterator[FrameResult]:
    """One :class:`FrameResult` per frame of a video file (up to ``max_seconds``), and, when
    ``annotated_path`` is given, an H.264 MP4 copy with every face drawn (same frame rate and count).
    ``info`` is the file's :func:`probe_video`, if the caller has it already."""
    info = info or probe_video(path)
    analyzer = VideoAnalyzer(classifier, settings, detector_factory=detector_factory)
    threshold = analyzer.settings.threshold
    writer = AnnotatedVideoWriter(annotated_path, info.width, info.height, info.fps) if annotated_path else None
    try:
        for index, (time_s, bgr_frame) in enumerate(read_frames(path, max_seconds=max_seconds, info=info)):
            result = analyzer.analyze(bgr_frame, time_s, index)
            if writer is not None:
                draw_tracked_faces(bgr_frame, result.faces, threshold)
                writer.write(bgr_frame)
            yield result
    finally:
        if writer is not None:
            writer.close()


# --- records


CSV_COLUMNS = (
    "time_s",
    "frame",
    "face",
    "label",
    "emotion",
    "confidence",
    "x",
    "y",
    "width",
    "height",
    "detection_score",
    *LANDMARK_COLUMNS,
    *EMOTIONS,
)


def records_to_csv(records: Iterable[FaceRecord]) -> str:
    """One row per face per analysed frame: time, frame, track id, label, emotion, confidence, the box, the
    detector's score and the five landmarks (empty where the detector gives none), then one probability
    column per emotion."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow(
            [
                f"{record.time_s:.3f}",
                record.frame,
                record.face,
                record.label,
                record.emotion,
                f"{record.confidence:.4f}",
                *record.box,
                "" if record.detection_score is None else f"{record.detection_score:.4f}",
                *(
                    [f"{value:.1f}" for point in record.landmarks for value in point]
                    if record.landmarks is not None
                    else [""] * len(LANDMARK_COLUMNS)
                ),
                *(f"{float(score):.4f}" for score in record.scores),
            ]
        )
    return buffer.getvalue()


@dataclass
class FaceSummary:
    """How one face (track) spent its time on screen."""

    face: int
    frames: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    seconds_by_label: dict[str, float] = field(default_factory=dict)

    @property
    def dominant(self) -> str:
        """The label it showed longest (ties: the first in EMOTIONS order, "uncertain" last)."""
        order = [*EMOTIONS, "uncertain"]
        return max(self.seconds_by_label, key=lambda label: (self.seconds_by_label[label], -order.index(label)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "face": self.face,
            "frames": self.frames,
            "first_s": round(self.first_s, 3),
            "last_s": round(self.last_s, 3),
            "dominant": self.dominant,
            "seconds_by_label": {label: round(seconds, 3) for label, seconds in self.seconds_by_label.items()},
        }


def summarize(records: Sequence[FaceRecord], frame_interval_s: float) -> list[FaceSummary]:
    """Per face, in order of appearance (faces that appear in the same frame: by number): frames seen,
    first and last time, and the seconds spent under each label (each analysed frame counts
    ``frame_interval_s``)."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    summaries: dict[int, FaceSummary] = {}
    for record in records:
        summary = summaries.setdefault(record.face, FaceSummary(record.face, first_s=record.time_s))
        summary.frames += 1
        summary.last_s = record.time_s
        counts[record.face][record.label] += 1
    for face, summary in summaries.items():
        summary.seconds_by_label = {label: count * frame_interval_s for label, count in counts[face].most_common()}
    return sorted(summaries.values(), key=lambda summary: (summary.first_s, summary.face))


def records_to_json(
    records: Sequence[FaceRecord], summaries: Sequence[FaceSummary], info: VideoInfo | None = None
) -> str:
    """The clip, the per-face summary and every record, as one JSON object."""
    clip = None
    if info is not None:
        clip = {
            "file": info.path.name,
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 3),
            "frames": info.frame_count,
            "duration_s": info.duration_s,
        }
    return json.dumps(
        {
            "clip": clip,
            "faces": [summary.as_dict() for summary in summaries],
            "records": [record.as_dict() for record in records],
        }
    )
