"""One analysis of an image, shared by the CLI, its JSON and CSV, and the Photos page.

    predictor = fer_core.load_predictor()
    analysis = analyze_image(fer_core.read_image("group.jpg"), predictor)
    rows = face_records(analysis, "group.jpg", threshold=0.4)     # one dict per face
    print(records_to_csv(rows))

When no face is found, the whole image is also classified as one face (``analysis.whole_image``): small
images are often face crops already (FER2013's own are 48x48), and the caller decides whether to use it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.detect import LANDMARK_COLUMNS, Landmarks
from fer_core.inference import FacePrediction, Predictor
from fer_core.labels import EMOTIONS

SMALL_IMAGE_SIDE = 160  # at most this big, an image with no face found is probably a face crop
CSV_COLUMNS = (
    "file",
    "face",
    "x",
    "y",
    "width",
    "height",
    "label",
    "emotion",
    "confidence",
    "detection_score",
    "whole_image",
    *LANDMARK_COLUMNS,
    *EMOTIONS,
)


class ImageAnalysis(NamedTuple):
    size: tuple[int, int]  # width, height
    faces: tuple[FacePrediction, ...]  # left to right, boxes in image pixels
    whole_image: FacePrediction | None  # the whole image as one face, when no face was found

    @property
    def is_small(self) -> bool:
        """Small enough that an image without a found face is probably a face crop."""
        return max(self.size) <= SMALL_IMAGE_SIDE

    def faces_used(self, whole_image: bool | None = None) -> list[FacePrediction]:
        """The faces found; with none, the whole image as one face when ``whole_image`` says so (None:
        when the image is small, see :attr:`is_small`)."""
        if self.faces:
            return list(self.faces)
        use_whole = self.is_small if whole_image is None else whole_image
        return [self.whole_image] if use_whole and self.whole_image is not None else []


def analyze_image(bgr_image: npt.NDArray[np.uint8], predictor: Predictor, *, tta: bool = False) -> ImageAnalysis:
    """Find and classify every face; with none found, also classify the whole image as one face."""
    height, width = bgr_image.shape[:2]
    faces = tuple(predictor.predict(bgr_image, tta=tta))
    whole_image = None if faces else predictor.predict_whole_image(bgr_image, tta=tta)
    return ImageAnalysis((width, height), faces, whole_image)


def face_record(
    face: FacePrediction, number: int, *, file: str = "", threshold: float = 0.0, whole_image: bool = False
) -> dict[str, Any]:
    """One face as a plain record (JSON-ready): where it is, its label at ``threshold``, the detector's
    confidence and landmarks (None where the detector gives none), and all seven probabilities."""
    return {
        "file": file,
        "face": number,
        "box": [int(value) for value in face.box],
        "label": face.label(threshold),
        "emotion": face.emotion,
        "confidence": round(face.confidence, 6),
        "detection_score": round(face.detection_score, 4) if face.detection_score is not None else None,
        "whole_image": whole_image,
        "landmarks": face.landmarks.as_dict() if face.landmarks is not None else None,
        "scores": {emotion: round(score, 6) for emotion, score in face.scores_by_emotion().items()},
    }


def face_records(
    analysis: ImageAnalysis, file: str, *, threshold: float = 0.0, whole_image: bool | None = None
) -> list[dict[str, Any]]:
    """One record per face used (see :meth:`ImageAnalysis.faces_used`), numbered from 1 left to right."""
    used_whole = not analysis.faces
    return [
        face_record(face, number, file=file, threshold=threshold, whole_image=used_whole)
        for number, face in enumerate(analysis.faces_used(whole_image), start=1)
    ]


def records_to_csv(records: Sequence[dict[str, Any]]) -> str:
    """The records as CSV: one row per face, the box, landmark coordinates and probabilities in columns."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        x, y, width, height = record["box"]
        row = {key: record[key] for key in ("file", "face", "label", "emotion", "confidence", "whole_image")}
        row.update(x=x, y=y, width=width, height=height, detection_score=record["detection_score"])
        landmarks = record["landmarks"] or {}
        for name in Landmarks._fields:
            point = landmarks.get(name)
            row[f"{name}_x"], row[f"{name}_y"] = (point[0], point[1]) if point else ("", "")
        row.update(record["scores"])
        writer.writerow(row)
    return buffer.getvalue()


def records_to_json(records: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(records), indent=2)
