"""From an image to emotions: detect faces, crop them the way training saw faces, classify them
all in one compiled model call.

    predictor = fer_core.load_predictor()          # promoted model, else the shipped default
    for face in predictor.predict(bgr_image):
        print(face.box, face.emotion, face.confidence)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Box, FaceDetector, HaarFaceDetector
from fer_core.errors import ModelLoadError
from fer_core.labels import EMOTIONS, NUM_CLASSES
from fer_core.preprocess import FACE_SIZE, face_batch, to_gray, to_gray48
from fer_core.settings import SHIPPED_MODEL_PATH, promoted_model_path

DEFAULT_MARGIN = 0.1  # each side of the detector's box, as a share of its size
WARMUP_BATCH_SIZES = (1, 2, 4, 8)


class FacePrediction(NamedTuple):
    box: Box  # x, y, width, height in image pixels
    emotion: str  # the most probable class
    confidence: float  # its probability
    scores: npt.NDArray[np.float32]  # one per class in EMOTIONS order, sums to 1
    gray_face: npt.NDArray[np.uint8]  # the 48x48 crop the model saw

    def scores_by_emotion(self) -> dict[str, float]:
        return {emotion: float(score) for emotion, score in zip(EMOTIONS, self.scores, strict=True)}


def crop_face(gray_image: npt.NDArray[np.uint8], box: Box, margin: float = DEFAULT_MARGIN) -> npt.NDArray[np.uint8]:
    """The 48x48 face for ``box``, grown by ``margin`` on each side (edges replicated past the image)."""
    pad_x, pad_y = round(box.width * margin), round(box.height * margin)
    left, top = box.x - pad_x, box.y - pad_y
    right, bottom = box.x + box.width + pad_x, box.y + box.height + pad_y
    height, width = gray_image.shape[:2]
    border = max(0, -left, -top, right - width, bottom - height)
    if border:
        gray_image = cv2.copyMakeBorder(gray_image, border, border, border, border, cv2.BORDER_REPLICATE)
        left, top, right, bottom = left + border, top + border, right + border, bottom + border
    return to_gray48(gray_image[top:bottom, left:right])


class EmotionClassifier:
    """A FER model with a compiled forward pass, warmed up on load and safe to share between threads."""

    def __init__(self, model: Any, source: str = "") -> None:
        import tensorflow as tf

        input_shape = tuple(model.input_shape)
        output_shape = tuple(model.output_shape)
        if input_shape[1:] != (FACE_SIZE, FACE_SIZE, 1) or output_shape[-1] != NUM_CLASSES:
            raise ModelLoadError(
                f"{source or 'the model'} takes {input_shape} and gives {output_shape}; "
                f"a FER model takes (None, 48, 48, 1) and gives 7 scores"
            )
        self.model = model
        self.source = source
        self._forward = tf.function(
            lambda faces: model(faces, training=False),
            input_signature=[tf.TensorSpec([None, FACE_SIZE, FACE_SIZE, 1], tf.float32)],
            reduce_retracing=True,
        )
        for batch_size in WARMUP_BATCH_SIZES:
            self._forward(np.zeros((batch_size, FACE_SIZE, FACE_SIZE, 1), np.float32))

    def classify_batch(
        self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False, batch_size: int = 512
    ) -> npt.NDArray[np.float32]:
        """Probabilities (N, 7) for 48x48 uint8 faces; ``tta`` averages with the mirrored faces."""
        faces = face_batch(gray_faces)
        outputs = []
        for start in range(0, len(faces), batch_size):
            chunk = faces[start : start + batch_size]
            if tta:
                both = np.concatenate([chunk, chunk[:, :, ::-1]])
                scores = np.asarray(self._forward(both), np.float32)
                outputs.append((scores[: len(chunk)] + scores[len(chunk) :]) / 2)
            else:
                outputs.append(np.asarray(self._forward(chunk), np.float32))
        return np.concatenate(outputs) if outputs else np.zeros((0, NUM_CLASSES), np.float32)


class Predictor:
    """Detector + classifier. ``predict`` finds every face and classifies all of them in one call."""

    def __init__(
        self, classifier: EmotionClassifier, detector: FaceDetector | None = None, *, margin: float = DEFAULT_MARGIN
    ) -> None:
        self.classifier = classifier
        self.detector = detector if detector is not None else HaarFaceDetector()
        self.margin = margin

    def predict(self, bgr_image: npt.NDArray[np.uint8], *, tta: bool = False) -> list[FacePrediction]:
        gray_image = to_gray(bgr_image)
        boxes = self.detector.detect(gray_image)
        return self.classify_boxes(gray_image, boxes, tta=tta)

    def classify_boxes(
        self, gray_image: npt.NDArray[np.uint8], boxes: list[Box], *, tta: bool = False
    ) -> list[FacePrediction]:
        if not boxes:
            return []
        faces = np.stack([crop_face(gray_image, box, self.margin) for box in boxes])
        scores = self.classifier.classify_batch(faces, tta=tta)
        predictions = [_prediction(box, face, score) for box, face, score in zip(boxes, faces, scores, strict=True)]
        return sorted(predictions, key=lambda p: (p.box.x, p.box.y))

    def predict_whole_image(self, bgr_image: npt.NDArray[np.uint8], *, tta: bool = False) -> FacePrediction:
        """Classify the whole image as one face (for images that already are face crops)."""
        gray_image = to_gray(bgr_image)
        height, width = gray_image.shape[:2]
        face = to_gray48(gray_image)
        scores = self.classifier.classify_batch(face[None], tta=tta)[0]
        return _prediction(Box(0, 0, width, height), face, scores)


def _prediction(box: Box, face: npt.NDArray[np.uint8], scores: npt.NDArray[np.float32]) -> FacePrediction:
    best = int(np.argmax(scores))
    return FacePrediction(
        box=box, emotion=EMOTIONS[best], confidence=float(scores[best]), scores=scores, gray_face=face
    )


def resolve_model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """An explicit model file or run folder; else the promoted model; else the shipped default."""
    if path is not None:
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            for name in ("model.keras", "best.keras"):
                if (candidate / name).is_file():
                    return candidate / name
            raise ModelLoadError(f"{candidate} holds no model.keras or best.keras")
        if not candidate.is_file():
            raise ModelLoadError(f"no model file at {candidate}")
        return candidate
    promoted = promoted_model_path()
    if promoted.is_file():
        return promoted
    if SHIPPED_MODEL_PATH.is_file():
        return SHIPPED_MODEL_PATH
    raise ModelLoadError(f"no model found: neither a promoted model ({promoted}) nor the shipped {SHIPPED_MODEL_PATH}")


def load_classifier(path: str | os.PathLike[str] | None = None) -> EmotionClassifier:
    import keras

    model_path = resolve_model_path(path)
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; all mean the same to a user
        raise ModelLoadError(f"could not load {model_path.name}: {error}") from None
    return EmotionClassifier(model, source=str(model_path))


def load_predictor(
    path: str | os.PathLike[str] | None = None, *, detector: FaceDetector | None = None, margin: float = DEFAULT_MARGIN
) -> Predictor:
    """The documented entry point: ``load_predictor()`` for the default model, or a model path."""
    return Predictor(load_classifier(path), detector, margin=margin)
