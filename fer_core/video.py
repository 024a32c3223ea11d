"""Faces through video: every face of every frame found, classified, followed and recorded.

One :class:`VideoAnalyzer` follows one stream of BGR frames (a clip, a webcam): it finds the faces of
each frame (the video preset: YuNet on a half-size copy), classifies them in one call, and keeps each
face's track id and smoothed probabilities (:class:`~fer_core.tracking.FaceTracker`) so labels do not
flicker. Each frame gives a
:class:`FrameResult` with typed :class:`~fer_core.face_table.FaceRecord` rows, the record photos use
too; :func:`~fer_core.face_table.records_to_csv` writes them with the shared face-table columns.
:meth:`VideoAnalyzer.analyze_and_draw` also draws them on the frame: the annotated copy of a clip and the
Live page's frames are drawn by it.

    classifier = fer_core.inference.load_classifier()
    for result in analyze_video("clip.mp4", classifier, annotated_path="clip-annotated.mp4"):
        for record in result.records:
            print(record.time_s, record.face, record.label, round(record.confidence, 2))

Files are read and written with PyAV (FFmpeg). The annotated copy is H.264 in MP4, which browsers
play, with the clip's frame rate and frame count.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.detect import VIDEO_PRESET, DetectionPreset, FaceDetector, make_detector
from fer_core.draw import draw_landmarks, draw_tracked_faces
from fer_core.errors import InvalidVideoError
from fer_core.face_table import FACE_COLUMNS, FaceRecord
from fer_core.images import MAX_PIXELS
from fer_core.inference import EmotionClassifier, Predictor
from fer_core.labels import DEFAULT_THRESHOLD, EMOTIONS
from fer_core.tracking import DEFAULT_SMOOTHING, FaceTracker, TrackedFace

# FFmpeg's threads each hold frames (one per decoding thread; x264 a lookahead per thread): a few threads
# keep memory a few frames deep on any machine, where one per core held gigabytes of a large clip.
CODEC_THREADS = min(4, os.cpu_count() or 1)
DECODER_PIXELS = 4 * 3840 * 2160  # frames the decoder's threads may hold at once: fewer threads for huge frames
TIME_BASE_HZ = 90_000  # the annotated copy's clock (MPEG's): frames keep their clip's times to 11 us


@dataclass(frozen=True)
class VideoSettings:
    """How a stream is analysed. ``preset`` says how faces are found (its ``min_face_size`` is in frame
    pixels); the rest is about following them."""

    preset: DetectionPreset = VIDEO_PRESET
    smoothing: float = DEFAULT_SMOOTHING  # weight of the past in each face's moving average (0: none)
    threshold: float = DEFAULT_THRESHOLD  # below this confidence a face's label is "uncertain"
    mirror: bool = False  # flip frames left-right first (a webcam shown as a mirror)
    landmarks: bool = False  # draw the five landmarks of each face seen (YuNet finds them; Haar does not)

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


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

    def analyze_and_draw(
        self, bgr_frame: npt.NDArray[np.uint8], time_s: float, index: int | None = None
    ) -> FrameResult:
        """:meth:`analyze` one frame, then draw on it in place what was found: each tracked face's box,
        caption and confidence bar, and with the settings' ``landmarks`` the five points of each face seen."""
        result = self.analyze(bgr_frame, time_s, index)
        settings = self._settings
        draw_tracked_faces(bgr_frame, result.faces, settings.threshold)
        if settings.landmarks:
            for record in result.records:
                if record.landmarks is not None:
                    draw_landmarks(bgr_frame, record.landmarks)
        return result

    def reset(self) -> None:
        """Forget the faces (a new clip or a restarted camera); track ids keep counting up."""
        self._tracker.reset()


# --- video files


class VideoInfo(NamedTuple):
    path: Path
    width: int  # as shown: a phone clip stored on its side (display matrix) is turned upright
    height: int
    fps: float  # average frames per second, as the container says (times come from the frames' own stamps)
    frame_count: int | None  # None when the container does not say
    duration_s: float | None
    codec: str
    rotation: int = 0  # degrees counter-clockwise the stored frames are turned to be shown upright


@dataclass
class DecodeReport:
    """What reading a clip met, counted as its frames are read: pass one to :func:`read_frames` or
    :func:`analyze_video`, and read it after the last frame.

    ``decode_errors`` are packets the decoder refused and ``skipped_frames`` frames of the file that never
    came out of the decoder (known once the clip is read to its end); neither is analysed.
    ``damaged_frames`` came out flagged as damaged (parts of them are the decoder's guesses) and are
    analysed. ``bad_timestamps`` are frames whose timestamp was missing, went backwards or lay past the
    clip's end: they are placed one frame interval after the previous frame.
    """

    frames: int = 0  # frames given out
    decode_errors: int = 0
    skipped_frames: int = 0
    damaged_frames: int = 0
    bad_timestamps: int = 0
    rotation: int = 0  # degrees counter-clockwise applied to the stored frames
    mirrored: bool = False  # and then mirrored left-right
    end_s: float = 0.0  # where the last frame given out ends (its time plus its duration)

    @property
    def lost_frames(self) -> int:
        return max(self.decode_errors, self.skipped_frames)

    def warning(self) -> str | None:
        """One sentence on the damage met, or None for a clean clip."""
        problems = []
        if self.lost_frames:
            problems.append(f"{self.lost_frames} frame{_s(self.lost_frames)} could not be decoded and were skipped")
        if self.damaged_frames:
            problems.append(
                f"{self.damaged_frames} frame{_s(self.damaged_frames)} were damaged (partly guessed by the decoder)"
            )
        if self.bad_timestamps:
            problems.append(f"{self.bad_timestamps} frame{_s(self.bad_timestamps)} had broken timestamps")
        if not problems:
            return None
        return "the clip is damaged: " + ", ".join(problems) + "; results around those frames are less reliable"

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "duration_s": round(self.end_s, 3),
            "decode_errors": self.decode_errors,
            "skipped_frames": self.lost_frames,
            "damaged_frames": self.damaged_frames,
            "bad_timestamps": self.bad_timestamps,
            "rotation": self.rotation,
            "mirrored": self.mirrored,
            "warning": self.warning(),
        }


def _s(count: int) -> str:
    return "" if count == 1 else "s"


# Read from the display matrix's 2x2 part: (swap the axes, flip the rows, flip the columns).
Orientation = tuple[bool, bool, bool]
UPRIGHT: Orientation = (False, False, False)


def _orientation(frame: Any) -> Orientation:
    """How to turn a decoded frame as its display matrix says (phone clips are stored on their side).

    The matrix maps a stored pixel (x, y) to (a x + c y, b x + d y) as shown. For a quarter turn a = d = 0:
    the axes swap, and b, c say which to flip; otherwise b = c = 0 and a, d say which to flip. This gives
    PyAV's ``frame.rotation`` (counter-clockwise) for plain turns, and the mirror images besides.

    Reading ``frame.side_data`` ties the frame into a reference cycle that only the garbage collector
    frees: done for every frame of a large clip it held hundreds of megabytes, so it is read once a clip.
    """
    from av.sidedata.sidedata import Type

    side_data = frame.side_data.get(Type.DISPLAYMATRIX)
    if side_data is None:
        return UPRIGHT
    raw = bytes(side_data)
    if len(raw) < 36:
        return UPRIGHT
    a, b, _, c, d = np.frombuffer(raw[:20], dtype=np.int32)
    if abs(int(a)) + abs(int(d)) < abs(int(b)) + abs(int(c)):  # mostly a quarter turn
        return True, b < 0, c < 0
    return False, d < 0, a < 0


def _turn(bgr_frame: npt.NDArray[np.uint8], orientation: Orientation) -> npt.NDArray[np.uint8]:
    if orientation == UPRIGHT:
        return bgr_frame
    swap, flip_rows, flip_columns = orientation
    turned = bgr_frame.transpose(1, 0, 2) if swap else bgr_frame
    return np.ascontiguousarray(turned[:: -1 if flip_rows else 1, :: -1 if flip_columns else 1])


def _rotation(orientation: Orientation) -> tuple[int, bool]:
    """Degrees counter-clockwise, and whether the picture is then mirrored left-right, for reports."""
    swap, flip_rows, flip_columns = orientation
    if swap:
        return (90 if flip_rows else -90), flip_rows == flip_columns
    return (180 if flip_rows else 0), flip_rows != flip_columns


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
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            if width * height > MAX_PIXELS:  # from the header, before any frame is decoded
                raise InvalidVideoError(
                    f"{file.name} has frames of {width}x{height} ({width * height / 1e6:.0f} megapixels); the "
                    f"limit is {MAX_PIXELS / 1e6:.0f} megapixels a frame: scale the clip down first (to 1920x1080, say)"
                )
            orientation = _first_orientation(container, stream)
            if orientation[0]:
                width, height = height, width
            rate = stream.average_rate or stream.guessed_rate
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            if duration is None and container.duration:
                duration = container.duration / 1_000_000
            return VideoInfo(
                path=file,
                width=width,
                height=height,
                fps=float(rate) if rate else 0.0,
                frame_count=int(stream.frames) or None,
                duration_s=duration,
                codec=codec,
                rotation=_rotation(orientation)[0],
            )
    except InvalidVideoError:
        raise
    except (av.FFmpegError, ValueError, OSError) as error:
        raise InvalidVideoError(_video_error(file, error)) from None


def _first_orientation(container: Any, stream: Any) -> Orientation:
    """The display matrix of the clip's first frame (the header's size is checked before this decode)."""
    import av

    try:
        for packet in itertools.islice(container.demux(stream), 64):
            for frame in packet.decode():
                return _orientation(frame)
    except av.FFmpegError:  # a damaged start: read_frames counts it
        pass
    return UPRIGHT


def _video_error(file: Path, error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)  # FFmpeg's words, without the file's full path
    if "Invalid data" in text or "moov atom" in text:
        return f"{file.name} is not a video file, or it is damaged or truncated"
    if "decoder" in text.lower() or "codec" in text.lower():
        return f"{file.name} uses a codec this build cannot decode ({text})"
    return f"{file.name} cannot be read as a video ({text})"


def read_frames(
    path: str | Path,
    *,
    max_seconds: float | None = None,
    info: VideoInfo | None = None,
    max_frames: int | None = None,
    report: DecodeReport | None = None,
    threads: int | None = None,
) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """``(time_s, bgr_frame)`` for each frame of a video file, up to ``max_seconds`` and ``max_frames``.
    ``threads``: FFmpeg's decoding threads (default: a few, fewer for huge frames); a batch worker, one
    of a pool as large as the cores, asks for one.

    Frames are turned upright as the clip's display matrix says (phone clips), and ``time_s`` is the
    frame's own timestamp (pts x time base) from the first frame, so a variable frame rate keeps its real
    times. Frames are decoded one at a time and never kept: memory stays a few frames deep whatever the
    clip's length. Packets the decoder refuses are skipped and counted in ``report`` with the other damage
    met; a file that breaks off partway raises :class:`InvalidVideoError` there (after the frames before it).
    """
    frames = read_indexed_frames(
        path, max_seconds=max_seconds, info=info, max_frames=max_frames, report=report, threads=threads
    )
    for _index, time_s, bgr_frame in frames:
        yield time_s, bgr_frame


def read_indexed_frames(
    path: str | Path,
    *,
    keep: Callable[[int, float], bool] | None = None,
    max_seconds: float | None = None,
    info: VideoInfo | None = None,
    max_frames: int | None = None,
    report: DecodeReport | None = None,
    threads: int | None = None,
) -> Iterator[tuple[int, float, npt.NDArray[np.uint8]]]:
    """:func:`read_frames` with each frame's index (from 0, in display order), for the frames that
    ``keep(index, time_s)`` wants (default all). The others are decoded, as the frames after them need,
    but never converted to BGR, which costs several times the decoding (a sampled clip, or a segment of a
    long one, skips most frames). Conversion goes through one reused converter: 3x faster than a new one
    per frame (PyAV's ``to_ndarray(format=...)``), the same pixels."""
    import av
    from av.video.reformatter import VideoReformatter

    file = Path(path)
    info = info or probe_video(file)
    report = report if report is not None else DecodeReport()
    converter = VideoReformatter()
    try:
        with av.open(str(file)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            most = CODEC_THREADS if threads is None else threads
            stream.codec_context.thread_count = max(1, min(most, DECODER_PIXELS // (info.width * info.height)))
            # A damaged packet is an error to count, not a frame of the decoder's guesses to analyse.
            stream.codec_context.options = {"err_detect": "explode"}
            clock = _FrameClock(info, report)
            orientation: Orientation | None = None
            packets = 0
            for packet in container.demux(stream):
                packets += packet.size > 0
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    report.decode_errors += 1
                    continue
                for frame in frames:
                    if max_frames is not None and report.frames >= max_frames:
                        return
                    time_s = clock.time_of(frame)
                    if max_seconds is not None and time_s >= max_seconds:
                        return
                    if orientation is None:  # one matrix for the stream; read once (see _orientation)
                        orientation = _orientation(frame)
                        report.rotation, report.mirrored = _rotation(orientation)
                    report.damaged_frames += bool(frame.is_corrupt)
                    index = report.frames
                    report.frames += 1
                    if keep is None or keep(index, time_s):
                        bgr_frame = converter.reformat(frame, format="bgr24").to_ndarray()
                        yield index, time_s, _turn(np.ascontiguousarray(bgr_frame), orientation)
            report.skipped_frames = max(0, packets - report.frames)
    except (av.FFmpegError, ValueError, OSError) as error:
        raise InvalidVideoError(_video_error(file, error)) from None


class _FrameClock:
    """Each frame's time from its own timestamp (pts x time base), from the first frame; a missing stamp,
    one that goes backwards or one past the clip's end is counted and replaced by the previous frame's time
    plus the usual interval. Keeps ``report.end_s`` (the last frame's time plus its duration)."""

    def __init__(self, info: VideoInfo, report: DecodeReport) -> None:
        self._report = report
        self._start: float | None = None
        self._last: float | None = None
        self._intervals: list[float] = []  # the last few gaps between frames
        self._default_interval = 1.0 / info.fps if info.fps and math.isfinite(info.fps) and info.fps > 0 else 0.04
        self._limit = info.duration_s + 1.0 if info.duration_s else None

    @property
    def interval(self) -> float:
        return statistics.median(self._intervals) if self._intervals else self._default_interval

    def time_of(self, frame: Any) -> float:
        stamp = float(frame.time) if frame.time is not None else None
        if stamp is not None and self._start is None:
            self._start = stamp
        time_s = stamp - self._start if stamp is not None and self._start is not None else math.nan
        broken = (
            not math.isfinite(time_s)
            or (self._last is not None and time_s <= self._last)
            or (self._limit is not None and time_s > self._limit)
        )
        if broken:
            self._report.bad_timestamps += 1
            time_s = 0.0 if self._last is None else self._last + self.interval
        if self._last is not None and not broken:
            self._intervals = [*self._intervals[-15:], time_s - self._last]
        self._last = time_s
        own = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
        self._report.end_s = time_s + (own if 0 < own <= 4 * self.interval else self.interval)
        return time_s


class AnnotatedVideoWriter:
    """Frames into an H.264 MP4 (yuv420p, so browsers play it) at a given frame rate. Odd sizes are
    padded by one pixel (H.264 in 4:2:0 needs even ones). Use as a context manager."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = width + width % 2, height + height % 2
        with self._os_errors():
            self._container = av.open(str(self.path), "w")
        try:
            rate = Fraction(fps).limit_denominator(1001) if fps > 0 and math.isfinite(fps) else Fraction(25)
            self._rate = rate
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.codec_context.time_base = Fraction(1, TIME_BASE_HZ)  # frames carry their own times
            self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
            # zerolatency: each frame is encoded as it comes (no lookahead, no B-frames, slice threads), so
            # the encoder holds no frames; the copy is a little larger for its quality.
            self._stream.options = {"crf": "23", "preset": "veryfast", "tune": "zerolatency"}
            self._stream.codec_context.thread_count = CODEC_THREADS
        except BaseException:
            self._container.close()
            raise
        self.frames = 0  # frames given
        self._last_pts = self._next_pts = 0
        self.packets = 0  # encoded frames written to the file so far

    def write(self, bgr_frame: npt.NDArray[np.uint8], time_s: float | None = None) -> None:
        """Add a frame, shown at ``time_s`` (seconds from the start; by default one frame interval after
        the previous frame), so a variable frame rate plays at its own pace."""
        import av

        height, width = bgr_frame.shape[:2]
        if (width, height) != (self.width, self.height):
            padded = np.zeros((self.height, self.width, 3), np.uint8)
            padded[: min(height, self.height), : min(width, self.width)] = bgr_frame[: self.height, : self.width]
            bgr_frame = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr_frame), format="bgr24")
        step = round(TIME_BASE_HZ / self._rate)
        pts = self._next_pts if time_s is None or not math.isfinite(time_s) else round(time_s * TIME_BASE_HZ)
        pts = max(pts, self._next_pts if self.frames == 0 else self._last_pts + 1)  # strictly increasing
        frame.pts, frame.time_base = pts, Fraction(1, TIME_BASE_HZ)
        self._last_pts, self._next_pts = pts, pts + step
        with self._os_errors():
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
                self.packets += 1
        self.frames += 1

    def close(self) -> None:
        with self._os_errors():
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            finally:
                self._container.close()

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        """FFmpeg's failures to write (a full disk: ENOSPC) as the ``OSError`` they are, naming the file."""
        import av

        try:
            yield
        except av.FFmpegError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from None

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
    max_frames: int | None = None,
    report: DecodeReport | None = None,
) -> Iterator[FrameResult]:
    """One :class:`FrameResult` per frame of a video file (up to ``max_seconds`` and ``max_frames``), and, when
    ``annotated_path`` is given, an H.264 MP4 copy with every face drawn (upright, with the frames' own
    times and count). ``info`` is the file's :func:`probe_video`, if the caller has it already; ``report``
    counts the damage met (:class:`DecodeReport`)."""
    info = info or probe_video(path)
    analyzer = VideoAnalyzer(classifier, settings, detector_factory=detector_factory)
    writer = AnnotatedVideoWriter(annotated_path, info.width, info.height, info.fps) if annotated_path else None
    try:
        frames = read_frames(path, max_seconds=max_seconds, info=info, max_frames=max_frames, report=report)
        for index, (time_s, bgr_frame) in enumerate(frames):
            if writer is None:
                result = analyzer.analyze(bgr_frame, time_s, index)
            else:
                result = analyzer.analyze_and_draw(bgr_frame, time_s, index)
                writer.write(bgr_frame, time_s)
            yield result
    finally:
        if writer is not None:
            writer.close()


# --- records

CSV_COLUMNS = FACE_COLUMNS


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


def summarize(
    records: Sequence[FaceRecord],
    frame_interval_s: float = 0.0,
    *,
    frame_times: Sequence[float] | None = None,
    end_s: float | None = None,
) -> list[FaceSummary]:
    """Per face, in order of appearance (faces that appear in the same frame: by number): frames seen,
    first and last time, and the seconds spent under each label. With ``frame_times`` (each analysed frame's time, by frame index) and ``end_s`` (where the
    last one ends), a frame counts until the next one: the clip's own pace, variable frame rates included.
    Without them each frame counts ``frame_interval_s``."""
    durations = frame_durations(frame_times, end_s) if frame_times is not None else None
    seconds: dict[int, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    summaries: dict[int, FaceSummary] = {}
    for record in records:
        summary = summaries.setdefault(record.face, FaceSummary(record.face, first_s=record.time_s))
        summary.frames += 1
        summary.last_s = record.time_s
        in_times = durations is not None and 0 <= record.frame < len(durations)
        seconds[record.face][record.label] += durations[record.frame] if durations and in_times else frame_interval_s
    for face, summary in summaries.items():
        by_label = seconds[face]
        summary.seconds_by_label = {label: by_label[label] for label in sorted(by_label, key=lambda k: -by_label[k])}
    return sorted(summaries.values(), key=lambda summary: (summary.first_s, summary.face))


def frame_durations(frame_times: Sequence[float], end_s: float | None = None) -> list[float]:
    """How long each frame is shown: until the next frame, and the last one until ``end_s``."""
    if not frame_times:
        return []
    ends = [*frame_times[1:], frame_times[-1] if end_s is None else end_s]
    return [max(0.0, end - start) for start, end in zip(frame_times, ends, strict=True)]


def records_to_json(
    records: Sequence[FaceRecord],
    summaries: Sequence[FaceSummary],
    info: VideoInfo | None = None,
    report: DecodeReport | None = None,
) -> str:
    """The clip, what decoding it met (``decoding``: frames, duration, damage, rotation, a warning or
    null), the per-face summary and every record, as one JSON object."""
    clip = None
    if info is not None:
        clip = {
            "file": info.path.name,
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 3),
            "frames": info.frame_count,
            "duration_s": info.duration_s,
            "rotation": info.rotation,
        }
    return json.dumps(
        {
            "clip": clip,
            "decoding": report.as_dict() if report is not None else None,
            "faces": [summary.as_dict() for summary in summaries],
            "records": [record.as_dict() for record in records],
        }
    )
