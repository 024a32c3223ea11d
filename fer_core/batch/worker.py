"""A worker: the model files it is sent, the predictor it builds once, and the summary of each unit it
analyses (a photo, or a video segment sampled by :class:`FrameSampler`)."""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_core.batch.inputs import Unit, UnitResult
from fer_core.batch.settings import ERROR, LABELS, BatchSettings, ModelFiles
from fer_core.batch.tables import faces_file, faces_table
from fer_core.errors import FerError
from fer_core.face_table import PHOTO, VIDEO, FaceRecord

if TYPE_CHECKING:
    from fer_core.detect import FaceDetector
    from fer_core.inference import EmotionClassifier


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
        self._warm_up()

    def _warm_up(self) -> None:
        """Take a blank frame through the whole path once (detectors, classifier, the face table), so that
        first-call costs belong to the worker's start-up, not to its first file: the first table imports
        pandas through pyarrow (0.3 s), the first inferences set up their buffers (30 ms)."""
        import numpy as np

        from fer_core.analysis import analyze_image, face_records

        blank = np.zeros((480, 640, 3), np.uint8)
        self.video_detector.detect(blank)
        faces_file(faces_table(face_records(analyze_image(blank, self.photo_predictor), "", whole_image=True)))

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
        faces = faces_file(faces_table(records, unit.segment)) if records else None
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
        from fer_core.video import (
            DecodeReport,
            VideoAnalyzer,
            VideoSettings,
            probe_video,
            read_indexed_frames,
            summarize,
        )

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
        frames_read = read_indexed_frames(
            unit.path,
            keep=lambda index, time_s: time_s >= unit.start_s and sampler.take(index, time_s),
            max_seconds=unit.end_s,
            info=info,
            report=report,
            threads=1,  # one decoding thread, as one OpenCV thread: the workers are the parallelism
        )
        for index, time_s, bgr_frame in frames_read:
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
