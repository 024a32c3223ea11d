"""Batch analysis: folders of photos and hours of video, resumable, on this machine or a Ray cluster.

    from fer_core.batch import BatchSettings, analyze_batch, read_faces, read_job
    summary = analyze_batch(["sessions/", "extra.jpg"], "results/job1", BatchSettings(fps=5), workers=2)
    faces = read_faces("results/job1")          # one row per face, photos and video frames alike
    job = read_job("results/job1")              # state, counts, timings: also while the job runs

or from a shell (what the app's Batch page starts in the background)::

    python -m fer_core batch sessions/ extra.jpg --out results/job1 --workers 2 --fps 5 --csv

**Inputs** are files, folders (read recursively; hidden files skipped), glob patterns, or a manifest CSV
with a ``path`` column (relative paths are relative to the CSV's folder). Whether a file is a photo or a
video is told from its content, as the Photos and Video pages do; anything else becomes an ``error`` row.

**Settings** (:class:`BatchSettings`) are the pages': the detector, the smallest face, alignment, the
confidence threshold, the smoothing of video tracks, and the model. Photos use ``PHOTO_PRESET`` and video
frames ``VIDEO_PRESET`` with those choices. ``every`` (analyse every Nth frame) or ``fps`` (at most F frames a
second) thin out video frames. Frames or photos larger than ``max_pixels`` (40 MP, the photos' limit) are
refused.

**Work units** are photos and video *segments*: a video longer than ``segment_s`` (300 s) is cut into
segments of that length, analysed independently, possibly by different workers. Face track ids therefore
restart at 1 in each segment (the ``segment`` column tells them apart) and smoothing starts afresh at a
segment's start. A worker decodes a segment from the clip's start and skips earlier frames (decoding is
cheap next to detection).

**Engines**: ``local`` (default) is a pool of ``workers`` processes (default: the CPU count); ``ray`` runs one
actor per worker on a Ray cluster (``address``: None starts a local Ray, ``"auto"`` joins the running one,
``"ray://host:10001"`` a remote one). The local engine starts its workers from a clean ``forkserver``
process, so a script that calls :func:`analyze_batch` needs Python's usual ``if __name__ == "__main__":``
guard. Each worker builds one predictor (a LiteRT interpreter and the two
detectors) once, from the model's bytes it is sent (the object store, for Ray), never per file. Both
engines give the same records.

The job folder (``out_dir``)
----------------------------
::

    out_dir/
      job.json          the job: state, settings, model and detector SHA-256, counts, timings (rewritten
                        atomically as the job advances: another process may read it at any time)
      parts/            one finished work unit each: KEY.json (its file summary) and, when it found faces,
                        KEY.parquet (its face rows). The .json is written last; a unit without it is not done.
      faces.parquet     at the end: every face row (FACE_COLUMNS + segment), files in input order
      files.parquet     at the end: one row per input file (FILE_COLUMNS): status ok/error and message, a
                        warning for damaged data that still decoded,
                        faces, frames analysed, the dominant label and the share of each label
      tracks.parquet    at the end: one row per face track (TRACK_COLUMNS), photos' faces included
      faces.csv, files.csv, tracks.csv     the same, when ``csv=True``
      .lock             held by the running job (:func:`is_job_running`)
      STOP              written by :func:`request_stop`; the job stops after the units in flight are dropped

``job.json`` (read it with :func:`read_job`, which gives a :class:`JobRecord`)::

    {"version": 1, "state": "running" | "finished" | "stopped" | "failed", "error": null, "message": "...",
     "pid": 1234, "started_at": 1.7e9, "updated_at": 1.7e9, "finished_at": null,
     "inputs": ["sessions/"], "engine": "local", "workers": 2, "address": null,
     "settings": {...BatchSettings...}, "fingerprint": "sha256 of settings + model + detector",
     "model": {"path": "...", "sha256": "(LiteRT copy)", "keras_sha256": "...", "temperature": 1.2},
     "detector": {"name": "yunet", "sha256": "..."},
     "files": {"total": 40, "done": 12, "errors": 1, "skipped": 10},   # skipped: done by an earlier run
     "units": {"total": 44, "done": 13},
     "frames": 5120, "faces": 6003,
     "work": {"total": 9000.0, "done": 3000.0},   # ETA inputs: a photo is 1, a video segment its frames to analyse
     "timings": {"elapsed_s": 30.2, "startup_s": 1.1, "teardown_s": 0.0, "frames_per_s": 170.0, "photos_per_s": 20.0,
                 "eta_s": 60.5},
     "memory": {"job_peak_rss_mb": 180.0, "worker_peak_rss_mb": 172.0}}   # peaks so far, each worker's as it reports

Resuming: running the same job again (same ``out_dir``) skips the units already done, redoes the files
whose size or modification time changed, and redoes everything when the model, the detector or the
settings changed (``job.json``'s ``message`` says which). A job killed (even ``kill -9``) loses only
the units in flight: every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fer_core.detect import LANDMARK_COLUMNS, MIN_FACE_RANGE, PHOTO_PRESET, VIDEO_PRESET, DetectionPreset
from fer_core.errors import FerError
from fer_core.face_table import FACE_COLUMNS, PHOTO, PROBABILITY_COLUMNS, VIDEO, FaceRecord
from fer_core.files import is_temporary, replace_atomically
from fer_core.images import MAX_PIXELS
from fer_core.labels import DEFAULT_THRESHOLD, EMOTIONS, UNCERTAIN
from fer_core.tracking import DEFAULT_SMOOTHING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from fer_core.detect import FaceDetector
    from fer_core.inference import EmotionClassifier

JOB_VERSION = 1
JOB_FILE = "job.json"
PARTS_DIR = "parts"
FACES_FILE = "faces.parquet"
FILES_FILE = "files.parquet"
TRACKS_FILE = "tracks.parquet"
LOCK_FILE = ".lock"
STOP_FILE = "STOP"
ENGINES = ("local", "ray")
STATES = ("running", "finished", "stopped", "failed")
ERROR = "error"  # a file's kind when it is neither a photo nor a video this build reads
DEFAULT_SEGMENT_S = 300.0
RAY_PHOTOS_PER_CALL = 8  # photos per Ray actor call (one call per photo left Ray at half the local rate)
HEARTBEAT_S = 2.0  # job.json's updated_at advances at least this often while the job runs
LABELS = (*EMOTIONS, UNCERTAIN)
SHARE_COLUMNS = tuple(f"share_{label}" for label in LABELS)
BATCH_FACE_COLUMNS = (*FACE_COLUMNS, "segment")
FILE_COLUMNS = (
    "file",
    "kind",
    "status",
    "error",
    "warning",
    "faces",
    "frames",
    "segments",
    "duration_s",
    "width",
    "height",
    "fps",
    "size",
    "seconds",
    "dominant",
    *SHARE_COLUMNS,
)
TRACK_COLUMNS = ("file", "kind", "segment", "face", "frames", "first_s", "last_s", "dominant", *SHARE_COLUMNS)
RAY_MISSING = (
    "the ray engine needs Ray, which is not installed: `pip install -r requirements-ray.txt` (or use --engine local)"
)


class BatchError(FerError):
    """A batch that cannot start: no inputs, an output inside an input, a job already running there."""


# --- settings


@dataclass(frozen=True)
class BatchSettings:
    """How every file of a batch is analysed. ``min_face`` None keeps each preset's own smallest face
    (photos 40, video 48 pixels). ``every`` and ``fps`` are exclusive."""

    model: str | None = None  # a model file or run folder; None: promoted, else shipped (as the pages)
    detector: str = PHOTO_PRESET.detector
    min_face: int | None = None
    align: bool = True
    threshold: float = DEFAULT_THRESHOLD
    smoothing: float = DEFAULT_SMOOTHING
    every: int = 1  # analyse every Nth video frame
    fps: float | None = None  # or: at most this many video frames a second
    max_pixels: int = MAX_PIXELS  # larger photos or video frames are refused
    segment_s: float = DEFAULT_SEGMENT_S  # longer videos are cut into segments this long (0: never)

    def __post_init__(self) -> None:
        # The presets check the detector and the smallest face.
        self.photo_preset()
        if self.min_face is not None and not MIN_FACE_RANGE[0] <= self.min_face <= MIN_FACE_RANGE[1]:
            raise BatchError(f"the smallest face must be {MIN_FACE_RANGE[0]}-{MIN_FACE_RANGE[1]} pixels")
        if not 0.0 <= self.threshold <= 1.0:
            raise BatchError(f"the threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.smoothing < 1.0:
            raise BatchError(f"the smoothing must be in [0, 1), got {self.smoothing}")
        if self.every < 1:
            raise BatchError(f"--every must be at least 1, got {self.every}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise BatchError(f"--fps must be a positive number, got {self.fps}")
        if self.fps is not None and self.every != 1:
            raise BatchError("choose either --every or --fps, not both")
        if self.max_pixels < 1:
            raise BatchError(f"the pixel cap must be positive, got {self.max_pixels}")
        if not (math.isfinite(self.segment_s) and self.segment_s >= 0):
            raise BatchError(
                f"the segment length must be 0 (none) or a positive number of seconds, got {self.segment_s}"
            )

    def photo_preset(self) -> DetectionPreset:
        try:
            return PHOTO_PRESET.with_options(detector=self.detector, min_face_size=self.min_face, align=self.align)
        except ValueError as error:
            raise BatchError(str(error)) from None

    def video_preset(self) -> DetectionPreset:
        try:
            return VIDEO_PRESET.with_options(detector=self.detector, min_face_size=self.min_face, align=self.align)
        except ValueError as error:
            raise BatchError(str(error)) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> BatchSettings:
        if not isinstance(data, dict):
            raise BatchError("job.json: settings must be a table")
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


# --- inputs


class InputFile(NamedTuple):
    path: Path  # as found (what the records' ``file`` column shows)
    resolved: Path


def collect_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[InputFile]:
    """Every file the inputs name, in order, each once: files, folders (recursive, hidden files skipped),
    glob patterns and manifest CSVs (a ``path`` column). Raises :class:`BatchError` for an input that
    does not exist or a manifest without a ``path`` column."""
    found: dict[Path, InputFile] = {}
    for item in inputs:
        for path in _expand(str(item)):
            resolved = path.resolve()
            found.setdefault(resolved, InputFile(path, resolved))
    return list(found.values())


def _expand(item: str) -> list[Path]:
    path = Path(item).expanduser()
    if path.is_dir():
        return sorted(
            file
            for file in path.rglob("*")
            if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts)
        )
    if path.is_file():
        return _manifest(path) if _is_manifest(path) else [path]
    if glob.has_magic(item):
        # glob.glob, not Path.glob: the pattern may be absolute or start with ../
        matches = sorted(Path(match) for match in glob.glob(str(path), recursive=True))  # noqa: PTH207
        files = [match for match in matches if match.is_file()]
        if not files:
            raise BatchError(f"the pattern {item} matches no file")
        return files
    raise BatchError(f"{item} does not exist: give files, folders, glob patterns or a manifest CSV")


def _is_manifest(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    with contextlib.suppress(OSError, UnicodeDecodeError), path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
        return "path" in [column.strip() for column in header]
    return False


def _manifest(path: Path) -> list[Path]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = []
    for number, row in enumerate(rows, start=2):
        value = (row.get("path") or "").strip()
        if not value:
            raise BatchError(f"{path.name}, line {number}: the path is empty")
        entry = Path(value).expanduser()
        files.append(entry if entry.is_absolute() else path.parent / entry)
    return files


def check_output(
    out_dir: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], files: Sequence[InputFile]
) -> None:
    """Refuse an output folder that is an input, lies inside an input folder, or holds an input file:
    the job would read its own outputs."""
    out = Path(out_dir).expanduser().resolve()
    for item in inputs:
        text = str(item)
        if glob.has_magic(text) and not Path(text).expanduser().exists():
            if "**" not in text:
                continue  # a pattern reads one folder level: the input files' own check below suffices
            prefix = re.split(r"[*?\[]", text, maxsplit=1)[0]
            path = Path(prefix or ".").expanduser() if prefix.endswith(os.sep) or not prefix else Path(prefix).parent
        else:
            path = Path(text).expanduser()
        resolved = path.resolve()
        if resolved.is_dir() and (out == resolved or resolved in out.parents):
            raise BatchError(
                f"the output folder {out_dir} lies inside the input folder {item}, which is being read: "
                "choose an output folder outside it"
            )
        if out == resolved:
            raise BatchError(f"the output folder {out_dir} is an input: choose another output folder")
    for file in files:
        if out in file.resolved.parents:
            raise BatchError(
                f"the input {file.path} lies inside the output folder {out_dir}: choose an output folder "
                "that holds no input"
            )


# --- work units


class Unit(NamedTuple):
    """One piece of work: a photo, or one segment of a video."""

    key: str  # unique in the job; the name of its part files
    file: str  # as the records show it
    path: str  # resolved
    kind: str  # "photo", "video" or "error"
    segment: int
    segments: int
    start_s: float
    end_s: float | None  # None: to the end
    size: int
    mtime_ns: int
    work: float  # ETA weight: 1 for a photo, the frames to analyse for a video segment
    error: str | None = None  # for kind "error": why the file cannot be analysed


def _file_key(resolved: Path) -> str:
    return hashlib.sha256(str(resolved).encode()).hexdigest()[:16]


def plan_units(files: Sequence[InputFile], settings: BatchSettings) -> list[Unit]:
    """The work units of the files, in order: a photo or unreadable file is one, a video one per segment."""
    units = []
    for file in files:
        key = _file_key(file.resolved)
        try:
            stat = file.resolved.stat()
        except OSError as error:
            units.append(_error_unit(key, file, 0, 0, f"cannot read {file.path}: {error.strerror or error}"))
            continue
        kind, duration, fps, problem = _sniff(file.resolved)
        if kind == ERROR:
            units.append(_error_unit(key, file, stat.st_size, stat.st_mtime_ns, problem or "unreadable"))
            continue
        if kind == PHOTO:
            units.append(
                Unit(
                    f"{key}-0",
                    str(file.path),
                    str(file.resolved),
                    PHOTO,
                    0,
                    1,
                    0.0,
                    None,
                    stat.st_size,
                    stat.st_mtime_ns,
                    1.0,
                )
            )
            continue
        length = duration or 0.0
        count = max(1, math.ceil(length / settings.segment_s)) if settings.segment_s > 0 and length > 0 else 1
        rate = settings.fps if settings.fps is not None else (fps or 25.0) / settings.every
        for segment in range(count):
            start = segment * settings.segment_s if count > 1 else 0.0
            end = (segment + 1) * settings.segment_s if segment < count - 1 else None
            seconds = (end if end is not None else length) - start
            units.append(
                Unit(
                    f"{key}-{segment}",
                    str(file.path),
                    str(file.resolved),
                    VIDEO,
                    segment,
                    count,
                    start,
                    end,
                    stat.st_size,
                    stat.st_mtime_ns,
                    max(1.0, seconds * rate),
                )
            )
    return units


def _error_unit(key: str, file: InputFile, size: int, mtime_ns: int, message: str) -> Unit:
    return Unit(f"{key}-0", str(file.path), str(file.resolved), ERROR, 0, 1, 0.0, None, size, mtime_ns, 1.0, message)


def _sniff(path: Path) -> tuple[str, float | None, float | None, str | None]:
    """(kind, duration, fps, problem): a photo by its first bytes, else a video if PyAV can open it."""
    from fer_core.images import image_format
    from fer_core.video import probe_video

    try:
        with path.open("rb") as handle:
            head = handle.read(32)
    except OSError as error:
        return ERROR, None, None, f"cannot read {path.name}: {error.strerror or error}"
    if not head:
        return ERROR, None, None, f"{path.name} is empty"
    if image_format(head) is not None:
        return PHOTO, None, None, None
    try:
        info = probe_video(path)
    except FerError as error:
        return ERROR, None, None, f"{path.name} is neither a photo nor a video this build can read ({error})"
    return VIDEO, info.duration_s, info.fps, None


# --- workers


class ModelFiles(NamedTuple):
    """What a worker needs to build its predictor, as bytes (sent to each worker, never read from a
    shared disk): the LiteRT model and the YuNet weights (None for Haar, which ships with OpenCV)."""

    flatbuffer: bytes
    temperature: float
    source: str
    sha256: str
    keras_sha256: str
    detector: str
    detector_bytes: bytes | None
    detector_sha256: str


def load_model_files(settings: BatchSettings) -> ModelFiles:
    """The model and detector of ``settings``, checked (the served-model check; YuNet's hash)."""
    from fer_core.detect import FRONTAL_CASCADE, cascade_path, checked_yunet_path
    from fer_core.model_store import resolve_model_path
    from fer_core.serving import checked_lite_model

    model_path = resolve_model_path(settings.model)
    flatbuffer, record = checked_lite_model(model_path)
    yunet = checked_yunet_path().read_bytes() if settings.detector == "yunet" else None
    detector_sha = hashlib.sha256(
        yunet if yunet is not None else cascade_path(FRONTAL_CASCADE).read_bytes()
    ).hexdigest()
    return ModelFiles(
        flatbuffer=flatbuffer,
        temperature=record.temperature,
        source=str(model_path),
        sha256=hashlib.sha256(flatbuffer).hexdigest(),
        keras_sha256=record.keras_sha256,
        detector=settings.detector,
        detector_bytes=yunet,
        detector_sha256=detector_sha,
    )


class UnitResult(NamedTuple):
    """A finished unit: its face rows (an Arrow table, None for none) and its summary (a files-row part)."""

    unit: Unit
    faces: pa.Table | None
    summary: dict[str, Any]
    worker_peak_rss_mb: float = 0.0  # the peak resident memory of the worker that ran it, so far


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux and macOS: ``ru_maxrss``)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere


class BatchWorker:
    """One worker's predictor, built once: the classifier, a photo detector and a video detector. Runs
    units one at a time; a bad file becomes an error summary, never an exception."""

    def __init__(self, model: ModelFiles, settings: BatchSettings) -> None:
        import importlib

        import cv2

        from fer_core.detect import make_detector
        from fer_core.inference import EmotionClassifier, Predictor

        cv2.setNumThreads(1)  # the workers are the parallelism: one thread each scales with their number
        for module in ("fer_core.analysis", "fer_core.images", "fer_core.video"):
            importlib.import_module(module)  # now, so that the first unit's time is its own
        self.settings = settings
        self._weights_dir: tempfile.TemporaryDirectory[str] | None = None
        yunet_path = None
        if model.detector_bytes is not None:
            self._weights_dir = tempfile.TemporaryDirectory(prefix="fer-batch-")
            yunet_path = Path(self._weights_dir.name) / "yunet.onnx"
            yunet_path.write_bytes(model.detector_bytes)
        self.classifier: EmotionClassifier = EmotionClassifier(
            model.flatbuffer, model.source, temperature=model.temperature
        )
        photo_preset, video_preset = settings.photo_preset(), settings.video_preset()
        self.photo_predictor = Predictor(
            self.classifier, make_detector(photo_preset, yunet_path=yunet_path), align=photo_preset.align
        )
        self.video_detector: FaceDetector = make_detector(video_preset, yunet_path=yunet_path)
        self.units = 0

    def run(self, unit: Unit) -> UnitResult:
        started = time.perf_counter()
        self.units += 1
        summary = _summary(unit)
        records: list[FaceRecord] = []
        try:
            if unit.kind == ERROR:
                raise FerError(unit.error or "unreadable")
            records = self._photo(unit, summary) if unit.kind == PHOTO else self._video(unit, summary)
        except FerError as error:
            summary.update(status=ERROR, error=str(error))
        except Exception as error:  # a decoder's or the model's failure on one file must not stop the batch
            summary.update(status=ERROR, error=f"{type(error).__name__}: {error}")
        summary["seconds"] = time.perf_counter() - started
        _count_labels(summary, records)
        faces = faces_table(records, unit.segment) if records else None
        return UnitResult(unit, faces, summary, peak_rss_mb())

    def _photo(self, unit: Unit, summary: dict[str, Any]) -> list[FaceRecord]:
        from fer_core.analysis import analyze_image, face_records
        from fer_core.images import read_checked_image

        bgr_image, warning = read_checked_image(unit.path)
        summary["warning"] = warning  # damage in data that still decoded: the faces are kept, with this
        height, width = bgr_image.shape[:2]
        summary.update(width=width, height=height)
        if width * height > self.settings.max_pixels:
            raise FerError(
                f"{unit.file} has {width * height / 1e6:.1f} megapixels; the cap is {self.settings.max_pixels / 1e6:.1f}"
            )
        analysis = analyze_image(bgr_image, self.photo_predictor)
        records = face_records(analysis, unit.file, threshold=self.settings.threshold)
        summary.update(frames=1, faces=len(records), tracks=[_photo_track(record) for record in records])
        return records

    def _video(self, unit: Unit, summary: dict[str, Any]) -> list[FaceRecord]:
        from fer_core.video import DecodeReport, VideoAnalyzer, VideoSettings, probe_video, read_frames, summarize

        info = probe_video(unit.path)
        summary.update(width=info.width, height=info.height, fps=info.fps, duration_s=info.duration_s)
        if info.width * info.height > self.settings.max_pixels:
            raise FerError(
                f"{unit.file}'s frames are {info.width} x {info.height} ({info.width * info.height / 1e6:.1f} "
                f"megapixels); the cap is {self.settings.max_pixels / 1e6:.1f}"
            )
        video_settings = VideoSettings(
            preset=self.settings.video_preset(), smoothing=self.settings.smoothing, threshold=self.settings.threshold
        )
        detector = self.video_detector
        analyzer = VideoAnalyzer(self.classifier, video_settings, detector_factory=lambda _preset: detector)
        sampler = FrameSampler(self.settings.every, self.settings.fps)
        records: list[FaceRecord] = []
        frames = 0
        report = DecodeReport()
        frames_read = read_frames(unit.path, max_seconds=unit.end_s, info=info, report=report)
        for index, (time_s, bgr_frame) in enumerate(frames_read):
            if time_s < unit.start_s or not sampler.take(index, time_s):
                continue
            result = analyzer.analyze(bgr_frame, time_s, index)
            frames += 1
            records.extend(record._replace(file=unit.file, kind=VIDEO) for record in result.records)
        summary["warning"] = report.warning()
        if frames == 0 and unit.segment == 0:
            raise FerError(f"{unit.file} has no frames that could be decoded")
        interval = sampler.interval(info.fps)
        tracks = summarize(records, interval)
        summary.update(
            frames=frames,
            faces=len(tracks),
            tracks=[
                {
                    "face": track.face,
                    "frames": track.frames,
                    "first_s": track.first_s,
                    "last_s": track.last_s,
                    "labels": {label: round(seconds / interval) for label, seconds in track.seconds_by_label.items()}
                    if interval > 0
                    else {},
                }
                for track in tracks
            ],
        )
        return records

    def close(self) -> None:
        if self._weights_dir is not None:
            self._weights_dir.cleanup()


class FrameSampler:
    """Which frames of a clip to analyse: every Nth (by index), or the first of each 1/F-second slot
    (by timestamp, so the choice does not depend on where a segment starts)."""

    def __init__(self, every: int = 1, fps: float | None = None) -> None:
        self.every = every
        self.fps = fps
        self._last_slot: int | None = None

    def take(self, index: int, time_s: float) -> bool:
        if self.fps is None:
            return index % self.every == 0
        slot = math.floor(time_s * self.fps + 1e-6)
        if slot == self._last_slot:
            return False
        self._last_slot = slot
        return True

    def interval(self, clip_fps: float) -> float:
        """Seconds each analysed frame stands for."""
        if self.fps is not None:
            return 1.0 / self.fps if not clip_fps else max(1.0 / self.fps, 1.0 / clip_fps)
        return self.every / (clip_fps or 25.0)


def _summary(unit: Unit) -> dict[str, Any]:
    return {
        "key": unit.key,
        "file": unit.file,
        "path": unit.path,
        "kind": unit.kind,
        "segment": unit.segment,
        "segments": unit.segments,
        "status": "ok",
        "error": None,
        "warning": None,
        "retry": False,
        "size": unit.size,
        "mtime_ns": unit.mtime_ns,
        "faces": 0,
        "frames": 0,
        "width": None,
        "height": None,
        "fps": None,
        "duration_s": None,
        "seconds": 0.0,
        "labels": {},
        "tracks": [],
    }


def _photo_track(record: FaceRecord) -> dict[str, Any]:
    return {"face": record.face, "frames": 1, "first_s": 0.0, "last_s": 0.0, "labels": {record.label: 1}}


def _count_labels(summary: dict[str, Any], records: Sequence[FaceRecord]) -> None:
    counts = Counter(record.label for record in records)
    summary["labels"] = {label: counts[label] for label in LABELS if counts[label]}


def dominant_label(counts: dict[str, int | float]) -> str | None:
    """The label counted most (ties: the first in EMOTIONS order, "uncertain" last); None for none."""
    present = {label: count for label, count in counts.items() if count}
    if not present:
        return None
    return max(present, key=lambda label: (present[label], -LABELS.index(label) if label in LABELS else -99))


def _shares(counts: dict[str, int | float]) -> dict[str, float]:
    total = sum(counts.values())
    return {f"share_{label}": (counts.get(label, 0) / total if total else 0.0) for label in LABELS}


# --- tables


def _face_schema() -> pa.Schema:
    import pyarrow as pa

    types: dict[str, pa.DataType] = {
        "file": pa.string(),
        "kind": pa.string(),
        "frame": pa.int64(),
        "time_s": pa.float64(),
        "face": pa.int64(),
        "x": pa.int64(),
        "y": pa.int64(),
        "w": pa.int64(),
        "h": pa.int64(),
        "detection_score": pa.float64(),
        "whole_image": pa.bool_(),
        **dict.fromkeys(LANDMARK_COLUMNS, pa.float64()),
        "emotion": pa.string(),
        "label": pa.string(),
        "confidence": pa.float64(),
        **dict.fromkeys(PROBABILITY_COLUMNS, pa.float64()),
        "segment": pa.int64(),
    }
    return pa.schema([(name, types[name]) for name in BATCH_FACE_COLUMNS])


def _files_schema() -> pa.Schema:
    import pyarrow as pa

    integer, number, text = pa.int64(), pa.float64(), pa.string()
    types = {
        "faces": integer,
        "frames": integer,
        "segments": integer,
        "width": integer,
        "height": integer,
        "size": integer,
        "duration_s": number,
        "fps": number,
        "seconds": number,
        **dict.fromkeys(SHARE_COLUMNS, number),
    }
    return pa.schema([(name, types.get(name, text)) for name in FILE_COLUMNS])


def _tracks_schema() -> pa.Schema:
    import pyarrow as pa

    types = {
        "segment": pa.int64(),
        "face": pa.int64(),
        "frames": pa.int64(),
        "first_s": pa.float64(),
        "last_s": pa.float64(),
    }
    types.update(dict.fromkeys(SHARE_COLUMNS, pa.float64()))
    return pa.schema([(name, types.get(name, pa.string())) for name in TRACK_COLUMNS])


def faces_table(records: Sequence[FaceRecord], segment: int = 0) -> pa.Table:
    """The records as an Arrow table with :data:`BATCH_FACE_COLUMNS`."""
    import pyarrow as pa

    rows = [{**record.as_row(), "segment": segment} for record in records]
    return pa.Table.from_pylist(rows, schema=_face_schema())


# --- the job folder


def _write_json(path: Path, data: Any) -> None:
    replace_atomically(
        path, lambda temporary: temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    )


def _write_parquet(path: Path, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    replace_atomically(path, lambda temporary: pq.write_table(table, temporary))


def write_part(out_dir: Path, result: UnitResult) -> None:
    """A finished unit's files: the faces first, then the summary that says the unit is done."""
    parts = out_dir / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    faces_path = parts / f"{result.unit.key}.parquet"
    if result.faces is not None:
        _write_parquet(faces_path, result.faces)
    else:
        faces_path.unlink(missing_ok=True)
    _write_json(parts / f"{result.unit.key}.json", result.summary)


def read_parts(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The summaries of the finished units, by key (unreadable ones are left out: they will be redone)."""
    parts = Path(out_dir) / PARTS_DIR
    summaries: dict[str, dict[str, Any]] = {}
    for path in sorted(parts.glob("*.json")) if parts.is_dir() else []:
        if path.name.startswith("."):
            continue
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("key") == path.stem:
                summaries[path.stem] = data
    return summaries


@dataclass(frozen=True)
class JobRecord:
    """``job.json`` as a typed record (see the module's docstring for the file)."""

    state: str
    error: str | None = None
    message: str | None = None
    pid: int | None = None
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    inputs: tuple[str, ...] = ()
    engine: str = "local"
    workers: int = 1
    address: str | None = None
    settings: BatchSettings = field(default_factory=BatchSettings)
    fingerprint: str = ""
    model_path: str = ""
    model_sha256: str = ""
    detector_sha256: str = ""
    files_total: int = 0
    files_done: int = 0
    files_errors: int = 0
    files_skipped: int = 0
    units_total: int = 0
    units_done: int = 0
    frames: int = 0
    faces: int = 0
    work_total: float = 0.0
    work_done: float = 0.0
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    teardown_s: float = 0.0  # stopping a Ray this job started (ray.shutdown)
    job_peak_rss_mb: float = 0.0  # the job process's peak resident memory
    worker_peak_rss_mb: float = 0.0  # the largest worker's (local processes or Ray actors), as they report it
    frames_per_s: float = 0.0
    photos_per_s: float = 0.0
    eta_s: float | None = None

    @property
    def progress(self) -> float:
        """0-1, by work (a photo counts 1, a video segment its frames to analyse)."""
        return (
            min(1.0, self.work_done / self.work_total)
            if self.work_total
            else (1.0 if self.state == "finished" else 0.0)
        )

    @classmethod
    def from_json(cls, data: Any, where: str = JOB_FILE) -> JobRecord:
        from fer_core.records import Fields, RecordError

        job = Fields(data, where)
        state = job.text("state") or "running"
        if state not in STATES:
            raise RecordError(f"{where}: state must be one of {', '.join(STATES)}, got {state!r}")
        model = Fields(job.data.get("model") or {}, f"{where}: model")
        detector = Fields(job.data.get("detector") or {}, f"{where}: detector")
        files = Fields(job.data.get("files") or {}, f"{where}: files")
        units = Fields(job.data.get("units") or {}, f"{where}: units")
        work = Fields(job.data.get("work") or {}, f"{where}: work")
        timings = Fields(job.data.get("timings") or {}, f"{where}: timings")
        memory = Fields(job.data.get("memory") or {}, f"{where}: memory")
        try:
            settings = BatchSettings.from_json(job.data.get("settings") or {})
        except (FerError, TypeError) as error:
            raise RecordError(f"{where}: settings: {error}") from None
        return cls(
            state=state,
            error=job.text("error"),
            message=job.text("message"),
            pid=job.integer("pid"),
            started_at=job.number("started_at"),
            updated_at=job.number("updated_at"),
            finished_at=job.number("finished_at"),
            inputs=tuple(str(item) for item in job.rows("inputs")),
            engine=job.text("engine") or "local",
            workers=job.integer("workers") or 1,
            address=job.text("address"),
            settings=settings,
            fingerprint=job.text("fingerprint") or "",
            model_path=model.text("path") or "",
            model_sha256=model.text("sha256") or "",
            detector_sha256=detector.text("sha256") or "",
            files_total=files.integer("total") or 0,
            files_done=files.integer("done") or 0,
            files_errors=files.integer("errors") or 0,
            files_skipped=files.integer("skipped") or 0,
            units_total=units.integer("total") or 0,
            units_done=units.integer("done") or 0,
            frames=job.integer("frames") or 0,
            faces=job.integer("faces") or 0,
            work_total=work.number("total") or 0.0,
            work_done=work.number("done") or 0.0,
            elapsed_s=timings.number("elapsed_s") or 0.0,
            startup_s=timings.number("startup_s") or 0.0,
            teardown_s=timings.number("teardown_s") or 0.0,
            frames_per_s=timings.number("frames_per_s") or 0.0,
            photos_per_s=timings.number("photos_per_s") or 0.0,
            eta_s=timings.number("eta_s"),
            job_peak_rss_mb=memory.number("job_peak_rss_mb") or 0.0,
            worker_peak_rss_mb=memory.number("worker_peak_rss_mb") or 0.0,
        )


def read_job(out_dir: str | os.PathLike[str]) -> JobRecord | None:
    """The job in ``out_dir`` (None when there is none yet); :class:`~fer_core.records.RecordError` when
    its ``job.json`` is unreadable. Safe while the job runs (the file is replaced atomically)."""
    from fer_core.records import read_record

    path = Path(out_dir) / JOB_FILE
    data = read_record(path)
    return None if data is None else JobRecord.from_json(data, str(path))


_HELD: set[Path] = set()  # the job folders this process runs a job into


def is_job_running(out_dir: str | os.PathLike[str]) -> bool:
    """Whether a process holds the job folder's lock. It is a POSIX record lock: owned by the job's
    process alone (its forked workers do not inherit it) and released when that process ends, even by
    kill -9."""
    import fcntl

    path = Path(out_dir) / LOCK_FILE
    if path.resolve().parent in _HELD:
        return True
    if not path.exists():
        return False
    with path.open("a+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return False


def request_stop(out_dir: str | os.PathLike[str]) -> None:
    """Ask the job in ``out_dir`` to stop: a STOP file it checks twice a second, and SIGTERM to its process.
    It drops the units in flight and ends with state ``stopped``; running the same job again resumes it."""
    folder = Path(out_dir)
    (folder / STOP_FILE).write_text("stop\n", encoding="utf-8")
    job = read_job(folder)
    if job is not None and job.pid and is_job_running(folder):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(job.pid, signal.SIGTERM)


def batch_command(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings,
    *,
    workers: int | None = None,
    engine: str = "local",
    address: str | None = None,
    csv: bool = False,
) -> list[str]:
    """The ``python -m fer_core batch`` command line for this job (what the Batch page starts)."""
    command = [sys.executable, "-m", "fer_core", "batch", *map(str, inputs), "--out", str(out_dir)]
    command += ["--engine", engine, "--detector", settings.detector, "--threshold", repr(settings.threshold)]
    command += ["--smoothing", repr(settings.smoothing), "--segment-seconds", repr(settings.segment_s)]
    command += ["--max-pixels", str(settings.max_pixels)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if address is not None:
        command += ["--address", address]
    if settings.model is not None:
        command += ["--model", settings.model]
    if settings.min_face is not None:
        command += ["--min-face", str(settings.min_face)]
    if not settings.align:
        command.append("--no-align")
    if settings.fps is not None:
        command += ["--fps", repr(settings.fps)]
    elif settings.every != 1:
        command += ["--every", str(settings.every)]
    if csv:
        command.append("--csv")
    return command


def _frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as pandas, integers that may be missing as nullable Int64 (not floats)."""
    import pandas as pd

    return table.to_pandas(types_mapper={pa_type: pd.Int64Dtype() for pa_type in [_int64()]}.get)


def _int64() -> Any:
    import pyarrow as pa

    return pa.int64()


def read_faces(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every face row of the job (:data:`BATCH_FACE_COLUMNS`): ``faces.parquet`` when the job has
    finished, else the finished parts so far (a running or stopped job)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(out_dir)
    final = folder / FACES_FILE
    job = read_job(folder)
    if final.is_file() and job is not None and job.state == "finished":
        return _frame(pq.read_table(final))
    tables = [
        pq.read_table(path)
        for key in read_parts(folder)
        for path in [folder / PARTS_DIR / f"{key}.parquet"]
        if path.is_file()
    ]
    return _frame(pa.concat_tables(tables) if tables else _face_schema().empty_table())


def read_files(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per input file done so far (:data:`FILE_COLUMNS`), from the finished parts."""
    import pyarrow as pa

    return _frame(pa.Table.from_pylist(file_rows(read_parts(out_dir).values()), schema=_files_schema()))


def read_tracks(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per face track (photos: per face) done so far (:data:`TRACK_COLUMNS`)."""
    import pyarrow as pa

    return _frame(pa.Table.from_pylist(track_rows(read_parts(out_dir).values()), schema=_tracks_schema()))


def file_rows(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Files-table rows from unit summaries: a video's segments add up (faces: tracks over segments)."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        by_file.setdefault(summary["path"], []).append(summary)
    rows = []
    for parts in by_file.values():
        parts.sort(key=lambda part: part["segment"])
        first = parts[0]
        errors = [part["error"] for part in parts if part["status"] == ERROR]
        counts: Counter[str] = Counter()
        for part in parts:
            counts.update(part.get("labels") or {})
        rows.append(
            {
                "file": first["file"],
                "kind": first["kind"],
                "status": ERROR if errors else "ok",
                "error": "; ".join(dict.fromkeys(errors)) if errors else None,
                "warning": "; ".join(dict.fromkeys(part["warning"] for part in parts if part.get("warning"))) or None,
                "faces": sum(part["faces"] for part in parts),
                "frames": sum(part["frames"] for part in parts),
                "segments": first["segments"],
                "duration_s": first.get("duration_s"),
                "width": first.get("width"),
                "height": first.get("height"),
                "fps": first.get("fps"),
                "size": first["size"],
                "seconds": sum(part["seconds"] for part in parts),
                "dominant": dominant_label(dict(counts)),
                **_shares(dict(counts)),
            }
        )
    return rows


def track_rows(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for summary in sorted(summaries, key=lambda part: (part["path"], part["segment"])):
        for track in summary.get("tracks") or []:
            labels = track.get("labels") or {}
            rows.append(
                {
                    "file": summary["file"],
                    "kind": summary["kind"],
                    "segment": summary["segment"],
                    "face": track["face"],
                    "frames": track["frames"],
                    "first_s": track["first_s"],
                    "last_s": track["last_s"],
                    "dominant": dominant_label(labels),
                    **_shares(labels),
                }
            )
    return rows


# --- progress


class BatchProgress(NamedTuple):
    """What the ``progress`` callback of :func:`analyze_batch` receives after each unit and at the end."""

    state: str  # "running", "finished", "stopped"
    files_total: int
    files_done: int  # skipped ones included
    files_errors: int
    units_total: int
    units_done: int
    frames: int
    faces: int
    elapsed_s: float
    frames_per_s: float
    eta_s: float | None
    last_file: str | None


class BatchSummary(NamedTuple):
    """What :func:`analyze_batch` returns."""

    out_dir: Path
    state: str  # "finished" or "stopped"
    files_total: int
    files_ok: int
    files_errors: int
    files_skipped: int  # done by an earlier run of the same job
    frames: int
    faces: int
    elapsed_s: float
    message: str | None  # e.g. "settings changed since the last run: redoing all 12 files"


# --- the job


def analyze_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings | None = None,
    *,
    workers: int | None = None,
    engine: str = "local",
    address: str | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    csv: bool = False,
    stop: threading.Event | None = None,
) -> BatchSummary:
    """Analyse every file of ``inputs`` into the job folder ``out_dir`` (see the module's docstring),
    resuming what an earlier run of the same job did. ``stop`` (or a STOP file, :func:`request_stop`)
    ends the job early with state ``stopped``. Raises :class:`BatchError` when the job cannot start
    (no inputs, an output inside an input, a job already running there, Ray missing)."""
    settings = settings or BatchSettings()
    if engine not in ENGINES:
        raise BatchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise BatchError(f"workers must be at least 1, got {workers}")
    if engine == "ray":
        _import_ray()
    if not inputs:
        raise BatchError("no inputs: give files, folders, glob patterns or a manifest CSV")
    files = collect_inputs(inputs)
    if not files:
        raise BatchError(f"no files found in {', '.join(map(str, inputs))}")
    folder = Path(out_dir).expanduser()
    check_output(folder, inputs, files)
    if folder.exists() and not folder.is_dir():
        raise BatchError(f"the output {out_dir} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with _job_lock(folder):
        return _Job(
            folder, list(map(str, inputs)), files, settings, workers, engine, address, progress, csv, stop
        ).run()


@contextlib.contextmanager
def _job_lock(folder: Path) -> Iterator[None]:
    import fcntl

    if folder.resolve() in _HELD:
        raise BatchError(f"a batch job is already running into {folder}: stop it or wait for it")
    with (folder / LOCK_FILE).open("a+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BatchError(f"a batch job is already running into {folder}: stop it or wait for it") from None
        _HELD.add(folder.resolve())
        try:
            yield
        finally:
            _HELD.discard(folder.resolve())
            fcntl.lockf(handle, fcntl.LOCK_UN)


class _Job:
    def __init__(
        self,
        folder: Path,
        inputs: list[str],
        files: list[InputFile],
        settings: BatchSettings,
        workers: int | None,
        engine: str,
        address: str | None,
        progress: Callable[[BatchProgress], None] | None,
        csv: bool,
        stop: threading.Event | None,
    ) -> None:
        self.folder, self.inputs, self.files, self.settings = folder, inputs, files, settings
        self.workers, self.engine, self.address = workers, engine, address
        self.progress, self.csv, self.stop = progress, csv, stop or threading.Event()
        self.started = time.time()
        self.job: dict[str, Any] = {}
        self.last_write = 0.0

    def run(self) -> BatchSummary:
        (self.folder / STOP_FILE).unlink(missing_ok=True)
        for stale in (self.folder / PARTS_DIR).glob(".*") if (self.folder / PARTS_DIR).is_dir() else []:
            if is_temporary(stale):
                stale.unlink(missing_ok=True)
        try:
            model = load_model_files(self.settings)
        except FerError as error:  # said in job.json too, for a page that started this job in the background
            _write_json(
                self.folder / JOB_FILE,
                {"version": JOB_VERSION, "state": "failed", "error": str(error), "pid": os.getpid(),
                 "started_at": self.started, "updated_at": time.time(), "inputs": self.inputs,
                 "settings": self.settings.to_json()},
            )  # fmt: skip
            raise
        fingerprint = _fingerprint(self.settings, model)
        units = plan_units(self.files, self.settings)
        done, message = self._resume(units, fingerprint, model)
        todo = [unit for unit in units if unit.key not in done]
        self.done: dict[str, dict[str, Any]] = done
        self.units = units
        self.units_run = 0
        self.frames_run = 0
        self.photos_run = 0
        self.work_run = 0.0
        self.worker_peak_rss_mb = 0.0  # the largest worker's peak memory (job.json: memory)
        self.work_todo = sum(unit.work for unit in todo)
        self.skipped_files = len({summary["path"] for summary in done.values()} - {unit.path for unit in todo})
        self._tally_all()
        workers = self.workers or (os.cpu_count() or 1)
        self.job = {
            "version": JOB_VERSION,
            "state": "running",
            "error": None,
            "message": message,
            "pid": os.getpid(),
            "started_at": self.started,
            "updated_at": self.started,
            "finished_at": None,
            "inputs": self.inputs,
            "engine": self.engine,
            "workers": workers,
            "address": self.address,
            "settings": self.settings.to_json(),
            "fingerprint": fingerprint,
            "model": {
                "path": model.source,
                "sha256": model.sha256,
                "keras_sha256": model.keras_sha256,
                "temperature": model.temperature,
            },
            "detector": {"name": model.detector, "sha256": model.detector_sha256},
        }
        self._update(last_file=None, force=True)
        engine_timings: dict[str, Any] = {}  # the Ray engine's teardown
        try:
            if self.engine == "local":
                startup = _run_local(todo, model, self.settings, workers, self._on_result, self._should_stop)
            else:
                startup = _run_ray(
                    todo,
                    model,
                    self.settings,
                    self.workers,
                    self.address,
                    self._on_result,
                    self._should_stop,
                    engine_timings,
                )
        except BaseException as error:
            state = "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
            self.job.update(state=state, error=None if state == "stopped" else f"{type(error).__name__}: {error}")
            self._update(last_file=None, force=True)
            raise
        self.job.setdefault("timings", {}).update(engine_timings, startup_s=startup)
        stopped = self._should_stop() and len(self.done) < len(units)
        if stopped:
            self.job.update(state="stopped")
        else:
            self._finish()
            self.job.update(state="finished", finished_at=time.time())
        self._update(last_file=None, force=True)
        (self.folder / STOP_FILE).unlink(missing_ok=True)
        counts = self._counts()
        return BatchSummary(
            self.folder,
            self.job["state"],
            counts["files_total"],
            counts["files_done"] - counts["files_errors"],
            counts["files_errors"],
            self.skipped_files,
            self.job["frames"],
            self.job["faces"],
            time.time() - self.started,
            message,
        )

    def _resume(
        self, units: Sequence[Unit], fingerprint: str, model: ModelFiles
    ) -> tuple[dict[str, dict[str, Any]], str | None]:
        """The units already done by an earlier run that still hold, and what the resume says."""
        previous = None
        with contextlib.suppress(FerError):
            previous = read_job(self.folder)
        parts = read_parts(self.folder)
        for name in (FACES_FILE, FILES_FILE, TRACKS_FILE):  # outputs of an earlier finish are rebuilt at the end
            (self.folder / name).unlink(missing_ok=True)
        if not parts:
            return {}, None
        if previous is None or previous.fingerprint != fingerprint:
            changed = _what_changed(previous, self.settings, model)
            _clear_parts(self.folder)
            return {}, f"{changed} since the last run: redoing all {len(self.files)} files"
        wanted = {unit.key: unit for unit in units}
        done: dict[str, dict[str, Any]] = {}
        changed_files = set()
        for key, summary in parts.items():
            unit = wanted.get(key)
            if unit is None:
                continue  # a file no longer among the inputs, or cut into other segments: not reported
            if summary.get("size") != unit.size or summary.get("mtime_ns") != unit.mtime_ns:
                changed_files.add(unit.path)
                continue
            if summary.get("retry"):
                continue
            done[key] = summary
        for key in [key for key, summary in done.items() if summary["path"] in changed_files]:
            del done[key]
        # Parts not kept are removed, so the final tables hold only this job's current units.
        for key in set(parts) - set(done):
            for suffix in (".json", ".parquet"):
                (self.folder / PARTS_DIR / f"{key}{suffix}").unlink(missing_ok=True)
        message = f"resuming: {len({summary['path'] for summary in done.values()})} files already done"
        if changed_files:
            message += f", {len(changed_files)} changed since the last run and redone"
        return done, message

    def _should_stop(self) -> bool:
        if not self.stop.is_set() and (self.folder / STOP_FILE).exists():
            self.stop.set()
        if time.time() - self.last_write >= HEARTBEAT_S and self.job:
            self._update(last_file=None)
        return self.stop.is_set()

    def _on_result(self, result: UnitResult) -> None:
        write_part(self.folder, result)
        again = result.unit.key in self.done
        self.done[result.unit.key] = result.summary
        if again:  # a unit done twice in one run (never expected): count everything afresh
            self._tally_all()
        else:
            self._tally(result.summary)
        self.units_run += 1
        self.work_run += result.unit.work
        self.frames_run += result.summary["frames"] if result.unit.kind == VIDEO else 0
        self.photos_run += result.unit.kind == PHOTO
        self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, result.worker_peak_rss_mb)
        self._update(last_file=result.unit.file, force=True)

    def _tally_all(self) -> None:
        """The counts of the finished units, from scratch (then :meth:`_tally` keeps them per result, so a
        result costs the same whether it is the 10th or the 100,000th)."""
        self.segments = Counter(unit.path for unit in self.units)
        self.parts_by_path: dict[str, list[dict[str, Any]]] = {}
        self.files_done = self.files_errors = self.frames_done = self.faces_done = 0
        for summary in self.done.values():
            self._tally(summary)

    def _tally(self, summary: dict[str, Any]) -> None:
        parts = self.parts_by_path.setdefault(summary["path"], [])
        parts.append(summary)
        if len(parts) == self.segments[summary["path"]]:  # the file's last segment: the file is done
            self.files_done += 1
            self.files_errors += any(part["status"] == ERROR for part in parts)
        self.frames_done += summary["frames"] if summary["kind"] == VIDEO else 0
        self.faces_done += sum((summary.get("labels") or {}).values())

    def _counts(self) -> dict[str, int]:
        return {"files_total": len(self.files), "files_done": self.files_done, "files_errors": self.files_errors}

    def _update(self, *, last_file: str | None, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_write < HEARTBEAT_S:
            return
        elapsed = now - self.started
        counts = self._counts()
        rate = self.work_run / elapsed if elapsed > 0 and self.work_run else 0.0
        remaining = max(0.0, self.work_todo - self.work_run)
        eta = remaining / rate if rate > 0 else None
        self.job.update(
            updated_at=now,
            files={
                "total": counts["files_total"],
                "done": counts["files_done"],
                "errors": counts["files_errors"],
                "skipped": self.skipped_files,
            },
            units={"total": len(self.units), "done": len(self.done)},
            frames=self.frames_done,
            faces=self.faces_done,
            work={"total": self.work_todo, "done": self.work_run},
            memory={
                "job_peak_rss_mb": round(peak_rss_mb(), 1),
                "worker_peak_rss_mb": round(self.worker_peak_rss_mb, 1),
            },
            timings={
                **self.job.get("timings", {}),
                "elapsed_s": round(elapsed, 3),
                "frames_per_s": round(self.frames_run / elapsed, 3) if elapsed > 0 else 0.0,
                "photos_per_s": round(self.photos_run / elapsed, 3) if elapsed > 0 else 0.0,
                "eta_s": None if eta is None or self.job.get("state") != "running" else round(eta, 1),
            },
        )
        _write_json(self.folder / JOB_FILE, self.job)
        self.last_write = now
        if self.progress is not None:
            self.progress(
                BatchProgress(
                    state=self.job["state"],
                    files_total=counts["files_total"],
                    files_done=counts["files_done"],
                    files_errors=counts["files_errors"],
                    units_total=len(self.units),
                    units_done=len(self.done),
                    frames=self.job["frames"],
                    faces=self.job["faces"],
                    elapsed_s=elapsed,
                    frames_per_s=self.job["timings"]["frames_per_s"],
                    eta_s=self.job["timings"]["eta_s"],
                    last_file=last_file,
                )
            )

    def _finish(self) -> None:
        """faces.parquet (part by part: bounded memory), files.parquet, tracks.parquet, and the CSVs."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _face_schema()
        ordered = [self.done[unit.key] for unit in self.units if unit.key in self.done]

        def write_faces(temporary: Path) -> None:
            with pq.ParquetWriter(temporary, schema) as writer:
                for summary in ordered:
                    part = self.folder / PARTS_DIR / f"{summary['key']}.parquet"
                    if part.is_file():
                        writer.write_table(pq.read_table(part).cast(schema))

        replace_atomically(self.folder / FACES_FILE, write_faces)
        files = pa.Table.from_pylist(file_rows(ordered), schema=_files_schema())
        tracks = pa.Table.from_pylist(track_rows(ordered), schema=_tracks_schema())
        _write_parquet(self.folder / FILES_FILE, files)
        _write_parquet(self.folder / TRACKS_FILE, tracks)
        if self.csv:
            import pyarrow.csv as pacsv

            def write_faces_csv(temporary: Path) -> None:
                with pacsv.CSVWriter(temporary, schema) as writer:
                    for batch in pq.ParquetFile(self.folder / FACES_FILE).iter_batches():
                        writer.write_batch(batch)

            replace_atomically(self.folder / "faces.csv", write_faces_csv)
            replace_atomically(self.folder / "files.csv", lambda temporary: pacsv.write_csv(files, temporary))
            replace_atomically(self.folder / "tracks.csv", lambda temporary: pacsv.write_csv(tracks, temporary))


def _fingerprint(settings: BatchSettings, model: ModelFiles) -> str:
    analysis = {key: value for key, value in settings.to_json().items() if key != "model"}  # the model: by its hash
    text = json.dumps({"settings": analysis, "model": model.sha256, "detector": model.detector_sha256}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _what_changed(previous: JobRecord | None, settings: BatchSettings, model: ModelFiles) -> str:
    """Why an earlier run's parts cannot be kept, in words."""
    if previous is None or not previous.fingerprint:
        return "the job folder has results but no readable job.json"
    changes = []
    if previous.model_sha256 != model.sha256:
        changes.append("the model")
    if previous.detector_sha256 != model.detector_sha256:
        changes.append("the detector")
    old, new = previous.settings.to_json(), settings.to_json()
    names = [name for name in new if name != "model" and old.get(name) != new[name]]
    if names:
        changes.append("the settings (" + ", ".join(names) + ")")
    return (" and ".join(changes) or "the settings") + " changed"


def _clear_parts(folder: Path) -> None:
    parts = folder / PARTS_DIR
    for path in parts.iterdir() if parts.is_dir() else []:
        path.unlink(missing_ok=True)


# --- engines

# An engine runs ``units`` on ``workers`` workers, hands each result to ``on_result`` (in this process),
# calls ``should_stop`` at least twice a second and returns when done or told to stop, with its start-up
# time in seconds (until the first worker was ready).

_WORKER: BatchWorker | None = None
RETRYABLE = "the worker analysing it died (crashed or killed); the next run of the job retries it"


def _init_local_worker(model: ModelFiles, settings: BatchSettings, job_pid: int) -> None:
    global _WORKER
    _die_with_job(job_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's process stops the pool; a Ctrl+C reaches it alone
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WORKER = BatchWorker(model, settings)


def _die_with_job(job_pid: int) -> None:
    """End this worker as soon as the job's process is gone (kill -9 included), so that no orphan goes on
    analysing: a daemon thread looks once a second (the worker's parent is the forkserver, not the job)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(job_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="fer-batch-watch-job", daemon=True).start()


def _run_local_unit(unit: Unit) -> UnitResult:
    if _WORKER is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("the worker was not initialised")
    return _WORKER.run(unit)


def _run_local(
    units: Sequence[Unit],
    model: ModelFiles,
    settings: BatchSettings,
    workers: int,
    on_result: Callable[[UnitResult], None],
    should_stop: Callable[[], bool],
) -> float:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    started = time.perf_counter()
    startup = 0.0
    crashes: Counter[str] = Counter()
    remaining = list(units)
    # forkserver: workers forked from a clean, single-threaded server, never from this process, whose
    # threads (OpenCV's pool, FFmpeg's decoders, a caller's) a fork would copy mid-lock and hang on
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fer_core.batch", "fer_core.inference", "fer_core.video"])
    while remaining and not should_stop():
        executor = ProcessPoolExecutor(
            max_workers=min(workers, len(remaining)),
            mp_context=context,
            initializer=_init_local_worker,
            initargs=(model, settings, os.getpid()),
        )
        broken: list[Unit] = []
        try:
            pending: dict[Future[UnitResult], Unit] = {
                executor.submit(_run_local_unit, unit): unit for unit in remaining
            }
            remaining = []
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(unit)
                        continue
                    # start-up: until the first worker was ready (its first unit's own time taken off)
                    startup = startup or max(0.0, time.perf_counter() - started - result.summary["seconds"])
                    on_result(result)
                if should_stop():
                    return startup
        finally:
            _stop_pool(executor)
        for unit in broken:
            crashes[unit.key] += 1
            if crashes[unit.key] >= 2:
                summary = {**_summary(unit), "status": ERROR, "error": RETRYABLE, "retry": True}
                on_result(UnitResult(unit, None, summary))
            else:
                remaining.append(unit)
    return startup


def _stop_pool(executor: Any) -> None:
    """Shut the pool down now: pending units cancelled, the workers (which ignore SIGTERM) killed."""
    processes = list(getattr(executor, "_processes", {}).values())  # the executor has no public terminate
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            if process.is_alive():
                process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BatchError(RAY_MISSING) from None
    return ray


class RayBatchWorker:
    """The Ray actor: one :class:`BatchWorker`, built once from the model bytes the object store sends."""

    def __init__(self, model: ModelFiles, settings: BatchSettings) -> None:
        self.worker = BatchWorker(model, settings)

    def ready(self) -> bool:
        return True

    def run(self, units: list[Unit]) -> list[UnitResult]:
        return [self.worker.run(unit) for unit in units]


def ray_calls(units: Sequence[Unit], photos_per_call: int = RAY_PHOTOS_PER_CALL) -> list[list[Unit]]:
    """The units grouped into actor calls: photos ``photos_per_call`` at a time (a call costs Ray about as
    much as a small photo's analysis), every video segment and error on its own."""
    calls: list[list[Unit]] = []
    for unit in units:
        if unit.kind == PHOTO and calls and calls[-1][0].kind == PHOTO and len(calls[-1]) < photos_per_call:
            calls[-1].append(unit)
        else:
            calls.append([unit])
    return calls


def ray_runtime_env() -> dict[str, Any]:
    """What Ray ships to each worker: the fer_core package (code only; the model and the detector's weights
    go through the object store). A caller that starts Ray itself passes it: ``ray.init(...,
    runtime_env=ray_runtime_env())`` (Ray uploads local folders only at that level)."""
    return {"py_modules": [str(Path(__file__).resolve().parent)]}


def _run_ray(
    units: Sequence[Unit],
    model: ModelFiles,
    settings: BatchSettings,
    workers: int | None,
    address: str | None,
    on_result: Callable[[UnitResult], None],
    should_stop: Callable[[], bool],
    timings: dict[str, Any] | None = None,
) -> float:
    """Run the units on Ray actors; returns the start-up seconds. Stopping a Ray started here is timed
    into ``timings["teardown_s"]`` (about a second and a half on 2 cores)."""
    ray = _import_ray()
    started = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, runtime_env=ray_runtime_env(), logging_level="WARNING", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise BatchError(f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {error}") from None
    actors: list[Any] = []
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        count = max(1, min(count, len(units)))
        if not units:
            return 0.0
        model_ref = ray.put(model)
        actor_class = ray.remote(num_cpus=1)(RayBatchWorker)
        actors = [actor_class.remote(model_ref, settings) for _ in range(count)]
        ray.get([actor.ready.remote() for actor in actors])
        startup = time.perf_counter() - started
        queue = ray_calls(units)
        dead: list[Any] = []
        idle = [*actors, *actors]  # two calls queued per actor: the next units are there when one ends
        pending: dict[Any, tuple[Any, list[Unit]]] = {}
        while queue or pending:
            while idle and queue:
                actor, call = idle.pop(), queue.pop(0)
                pending[actor.run.remote(call)] = (actor, call)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for reference in ready:
                actor, call = pending.pop(reference)
                try:
                    results = ray.get(reference)
                    idle.append(actor)
                except ray.exceptions.RayError as error:
                    reason = f"{RETRYABLE} ({type(error).__name__}: {str(error)[:300]})"
                    results = [
                        UnitResult(unit, None, {**_summary(unit), "status": ERROR, "error": reason, "retry": True})
                        for unit in call
                    ]
                    if actor not in dead:  # its other queued call fails too: one replacement per actor
                        dead.append(actor)
                        with contextlib.suppress(Exception):
                            ray.kill(actor)
                        replacement = actor_class.remote(model_ref, settings)
                        actors.append(replacement)
                        idle += [replacement, replacement]
                for result in results:
                    on_result(result)
            if should_stop():
                break
        return startup
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started_here:
            stopping = time.perf_counter()
            ray.shutdown()
            if timings is not None:
                timings["teardown_s"] = round(time.perf_counter() - stopping, 3)
