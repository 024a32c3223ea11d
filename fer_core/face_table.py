"""One record for a face, whether it was found in a photo or in a video frame, and its columns.

The Photos page, the Video and Live pages, ``python -m fer_core predict|video|batch`` and
:mod:`fer_core.batch` all hand on :class:`FaceRecord` rows and write them with the same columns
(:data:`FACE_COLUMNS`), so a photo's CSV, a clip's CSV and a batch's Parquet file line up:

    file, kind, frame, time_s, face, x, y, w, h, detection_score, whole_image,
    right_eye_x ... mouth_left_y (the five landmarks), emotion, label, confidence, p_angry ... p_neutral

A photo's face has ``kind="photo"``, ``frame=0`` and ``time_s=0``; its ``face`` numbers the faces from 1
left to right. A video face has ``kind="video"``; its ``face`` is the track id, which the same person
keeps while they stay in view. ``emotion`` is the most probable class, ``label`` the same or
``"uncertain"`` below the confidence threshold. ``whole_image`` marks a photo classified as one face
(a face crop in which no face was found). Empty cells (CSV) or nulls (Parquet) where the detector
gives no score or landmarks (Haar, a whole image).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.detect import LANDMARK_COLUMNS, Box, Landmarks
from fer_core.labels import EMOTIONS

PHOTO = "photo"
VIDEO = "video"
PROBABILITY_COLUMNS = tuple(f"p_{emotion}" for emotion in EMOTIONS)
FACE_COLUMNS = (
    "file",
    "kind",
    "frame",
    "time_s",
    "face",
    "x",
    "y",
    "w",
    "h",
    "detection_score",
    "whole_image",
    *LANDMARK_COLUMNS,
    "emotion",
    "label",
    "confidence",
    *PROBABILITY_COLUMNS,
)


class FaceRecord(NamedTuple):
    """One face in one photo or one analysed video frame: a row of every face table."""

    time_s: float  # seconds from the start of the clip (or of the live session); 0 for a photo
    frame: int  # the frame's index, from 0; 0 for a photo
    face: int  # video: the track id (the same person keeps it while in view); photo: 1, 2, ... left to right
    box: Box  # in the image or frame as analysed (mirrored when a live view mirrors)
    label: str  # the (smoothed) emotion, or "uncertain" below the threshold
    emotion: str  # the most probable (smoothed) emotion, even when the label says "uncertain"
    confidence: float
    scores: npt.NDArray[np.float32]  # (smoothed) probabilities in EMOTIONS order
    detection_score: float | None = None  # the detector's confidence (YuNet); None for Haar or a whole image
    landmarks: Landmarks | None = None  # eyes, nose tip, mouth corners (YuNet)
    file: str = ""  # the photo's or the clip's name, as the caller gives it
    kind: str = VIDEO  # "photo" or "video"
    whole_image: bool = False  # a photo classified as one face (no face found in a face crop)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the box as [x, y, w, h], the landmarks by name, the probabilities by emotion."""
        return {
            "file": self.file,
            "kind": self.kind,
            "frame": self.frame,
            "time_s": round(self.time_s, 3),
            "face": self.face,
            "box": [int(value) for value in self.box],
            "label": self.label,
            "emotion": self.emotion,
            "confidence": round(float(self.confidence), 6),
            "detection_score": round(self.detection_score, 4) if self.detection_score is not None else None,
            "whole_image": self.whole_image,
            "landmarks": self.landmarks.as_dict() if self.landmarks is not None else None,
            "scores": {emotion: round(float(score), 6) for emotion, score in zip(EMOTIONS, self.scores, strict=True)},
        }

    def as_row(self) -> dict[str, Any]:
        """One value per :data:`FACE_COLUMNS` name (None where there is none), for tables."""
        landmarks = (
            [float(value) for point in self.landmarks for value in point]
            if self.landmarks is not None
            else [None] * len(LANDMARK_COLUMNS)
        )
        return {
            "file": self.file,
            "kind": self.kind,
            "frame": int(self.frame),
            "time_s": float(self.time_s),
            "face": int(self.face),
            "x": int(self.box.x),
            "y": int(self.box.y),
            "w": int(self.box.width),
            "h": int(self.box.height),
            "detection_score": None if self.detection_score is None else float(self.detection_score),
            "whole_image": bool(self.whole_image),
            **dict(zip(LANDMARK_COLUMNS, landmarks, strict=True)),
            "emotion": self.emotion,
            "label": self.label,
            "confidence": float(self.confidence),
            **{column: float(score) for column, score in zip(PROBABILITY_COLUMNS, self.scores, strict=True)},
        }


def records_to_csv(records: Iterable[FaceRecord]) -> str:
    """One row per face (per analysed frame), in :data:`FACE_COLUMNS`: times to the millisecond,
    probabilities to four places, landmarks to a tenth of a pixel, empty cells where there is nothing."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FACE_COLUMNS)
    for record in records:
        writer.writerow(
            [
                record.file,
                record.kind,
                record.frame,
                f"{record.time_s:.3f}",
                record.face,
                *record.box,
                "" if record.detection_score is None else f"{record.detection_score:.4f}",
                record.whole_image,
                *(
                    [f"{value:.1f}" for point in record.landmarks for value in point]
                    if record.landmarks is not None
                    else [""] * len(LANDMARK_COLUMNS)
                ),
                record.emotion,
                record.label,
                f"{record.confidence:.4f}",
                *(f"{float(score):.4f}" for score in record.scores),
            ]
        )
    return buffer.getvalue()
