"""One analysis of an image, shared by the CLI, its JSON and CSV, and the Photos page.

    predictor = fer_core.load_predictor()
    analysis = analyze_image(fer_core.read_image("group.jpg"), predictor)
    rows = face_records(analysis, "group.jpg", threshold=0.4)     # one FaceRecord per face
    print(records_to_csv(rows))               # fer_core.face_table's: the columns of every face table

When no face is found, the whole image is also classified as one face (``analysis.whole_image``): small
images are often face crops already (FER2013's own are 48x48), and the caller decides whether to use it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.face_table import FACE_COLUMNS, PHOTO, FaceRecord
from fer_core.inference import FacePrediction, Predictor

SMALL_IMAGE_SIDE = 160  # at most this big, an image with no face found is probably a face crop
CSV_COLUMNS = FACE_COLUMNS  # one face table for photos and video frames (fer_core.face_table)


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
) -> FaceRecord:
    """One face of a photo as the shared :class:`~fer_core.face_table.FaceRecord` (frame 0, time 0): where
    it is, its label at ``threshold``, the detector's confidence and landmarks, all seven probabilities."""
    return FaceRecord(
        time_s=0.0,
        frame=0,
        face=number,
        box=face.box,
        label=face.label(threshold),
        emotion=face.emotion,
        confidence=face.confidence,
        scores=face.scores,
        detection_score=face.detection_score,
        landmarks=face.landmarks,
        file=file,
        kind=PHOTO,
        whole_image=whole_image,
    )


def face_records(
    analysis: ImageAnalysis, file: str, *, threshold: float = 0.0, whole_image: bool | None = None
) -> list[FaceRecord]:
    """One record per face used (see :meth:`ImageAnalysis.faces_used`), numbered from 1 left to right."""
    used_whole = not analysis.faces
    return [
        face_record(face, number, file=file, threshold=threshold, whole_image=used_whole)
        for number, face in enumerate(analysis.faces_used(whole_image), start=1)
    ]


def records_to_json(records: Sequence[FaceRecord]) -> str:
    return json.dumps([record.as_dict() for record in records], indent=2)
