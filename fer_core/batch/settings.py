"""A batch's settings (:class:`BatchSettings`), its error and the job folder's names and columns."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from fer_core.detect import MIN_FACE_RANGE, PHOTO_PRESET, VIDEO_PRESET, DetectionPreset
from fer_core.errors import FerError
from fer_core.face_table import FACE_COLUMNS
from fer_core.images import MAX_PIXELS
from fer_core.labels import DEFAULT_THRESHOLD, EMOTIONS, UNCERTAIN
from fer_core.tracking import DEFAULT_SMOOTHING

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
LOCAL_PHOTOS_PER_CALL = 4  # photos per call to a local worker (the job's process handles a quarter of the calls)
CALLS_PER_WORKER = 2  # calls in flight per worker: the next is there when one ends
HEARTBEAT_S = 2.0  # job.json's updated_at advances at least this often while the job runs
# job.json follows the results at most this often (each result is in parts/ at once; a job.json rewrite and
# a memory reading per result cost the job's process 1-2 ms, a tenth of a photo's work)
RESULTS_WRITE_S = 0.25
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
