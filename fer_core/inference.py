"""From an image to emotions: detect faces, crop them the way training saw faces (aligned by their
landmarks), classify them all in one LiteRT call.

    predictor = fer_core.load_predictor()          # promoted model, else the shipped default
    for face in predictor.predict(bgr_image):
        print(face.box, face.emotion, face.confidence)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.align import face_crop
from fer_core.calibration import apply_temperature
from fer_core.detect import PHOTO_PRESET, Box, Detection, DetectionPreset, FaceDetector, Landmarks, make_detector
from fer_core.errors import ModelLoadError
from fer_core.labels import EMOTIONS, NUM_CLASSES, UNCERTAIN
from fer_core.model_store import resolve_model_path
from fer_core.native_log import filtered_stderr
from fer_core.preprocess import FACE_SIZE, face_batch, to_gray, to_gray48
from fer_core.serving import checked_lite_model, export_hint, lite_path

WARMUP_BATCH_SIZES = (8, 4, 2, 1)  # ends at batch 1, the usual size (the interpreter resizes on a change)

LOGGER = logging.getLogger(__name__)


class FacePrediction(NamedTuple):
    box: Box  # x, y, width, height in image pixels
    emotion: str  # the most probable class
    confidence: float  # its probability
    scores: npt.NDArray[np.float32]  # one per class in EMOTIONS order, sums to 1
    gray_face: npt.NDArray[np.uint8]  # the 48x48 crop the model saw
    detection_score: float | None = None  # the detector's confidence (YuNet); None for Haar or a whole image
    landmarks: Landmarks | None = None  # eyes, nose tip, mouth corners in image pixels (YuNet)

    def scores_by_emotion(self) -> dict[str, float]:
        return {emotion: float(score) for emotion, score in zip(EMOTIONS, self.scores, strict=True)}

    def label(self, threshold: float = 0.0) -> str:
        """The emotion, or ``"uncertain"`` when the confidence is below ``threshold``."""
        return self.emotion if self.confidence >= threshold else UNCERTAIN


class EmotionClassifier:
    """A FER model run by LiteRT, warmed up on load and safe to share between threads.

    It runs the ``.tflite`` copy that ``training.export`` converted from the Keras model and checked
    against it (see :mod:`fer_core.serving`): XNNPACK kernels with batch normalisation folded into the
    convolutions, and no TensorFlow in the process. ``temperature`` calibrates the probabilities
    (:mod:`fer_core.calibration`); it never changes which emotion wins. One interpreter runs one batch
    at a time (a lock), resized to each batch size it is given.
    """

    def __init__(self, flatbuffer: bytes, source: str = "", *, temperature: float = 1.0, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.source = source
        self.temperature = float(temperature)
        self.num_threads = num_threads
        name = _served_name(source)
        try:
            self._interpreter = Interpreter(model_content=flatbuffer, num_threads=num_threads)
            input_details = self._interpreter.get_input_details()
            output_details = self._interpreter.get_output_details()
        except (ValueError, RuntimeError) as error:
            fix = f"; {export_hint(source)}" if Path(source).suffix == ".keras" else ""
            raise ModelLoadError(f"{name} is not a model LiteRT can run ({str(error)[:200]}){fix}") from None
        input_shape = tuple(int(v) for v in input_details[0]["shape_signature"]) if input_details else ()
        output_shape = tuple(int(v) for v in output_details[0]["shape_signature"]) if output_details else ()
        if (
            len(input_details) != 1
            or input_shape[1:] != (FACE_SIZE, FACE_SIZE, 1)
            or output_shape[-1:] != (NUM_CLASSES,)
        ):
            raise ModelLoadError(
                f"{name} takes {input_shape} and gives {output_shape}; a FER model takes (N, 48, 48, 1) "
                "and gives 7 scores"
            )
        self._input = input_details[0]["index"]
        self._output = output_details[0]["index"]
        self._batch_size = -1
        self._lock = threading.Lock()
        check_faces = np.random.default_rng(0).integers(0, 256, (4, FACE_SIZE, FACE_SIZE, 1)).astype(np.float32)
        with filtered_stderr():  # the first run applies XNNPACK, and LiteRT says so ("INFO: Created ...")
            check = self.forward(check_faces)
        if not np.isfinite(check).all():
            raise ModelLoadError(f"{name} gives non-finite outputs (NaN or infinite weights?), so it is not used")
        if not np.allclose(check.sum(axis=1), 1.0, atol=1e-3) or (check < 0).any():
            raise ModelLoadError(
                f"{name} does not end in a softmax (its outputs are not probabilities), so it is not used"
            )
        for batch_size in WARMUP_BATCH_SIZES:
            self.forward(np.zeros((batch_size, FACE_SIZE, FACE_SIZE, 1), np.float32))

    def forward(self, faces: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's own probabilities (no temperature, no TTA) for float faces of shape (N, 48, 48, 1),
        0-255: one interpreter call, resized to the batch."""
        faces = np.ascontiguousarray(faces, np.float32)
        with self._lock:
            if len(faces) != self._batch_size:
                self._interpreter.resize_tensor_input(self._input, faces.shape)
                self._interpreter.allocate_tensors()
                self._batch_size = len(faces)
            self._interpreter.set_tensor(self._input, faces)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output), np.float32)

    def classify_batch(
        self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False, batch_size: int = 256
    ) -> npt.NDArray[np.float32]:
        """Calibrated probabilities (N, 7) for 48x48 uint8 faces; ``tta`` averages with the mirrored faces."""
        faces = face_batch(gray_faces)
        outputs: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(faces), batch_size):
            chunk = faces[start : start + batch_size]
            if tta:
                both = self.forward(np.concatenate([chunk, chunk[:, :, ::-1]]))
                scores = ((both[: len(chunk)] + both[len(chunk) :]) / 2).astype(np.float32)
            else:
                scores = self.forward(chunk)
            outputs.append(apply_temperature(scores, self.temperature))
        return np.concatenate(outputs) if outputs else np.zeros((0, NUM_CLASSES), np.float32)


def _served_name(source: str) -> str:
    """How errors name the file a classifier runs: the LiteRT copy, also when ``source`` is its ``.keras``."""
    if not source:
        return "the model"
    path = Path(source)
    if path.suffix == ".keras":
        return f"{lite_path(path).name} (the LiteRT copy of {path.name})"
    return path.name


class Predictor:
    """Detector + classifier. ``predict`` finds every face and classifies all of them in one call.

    ``align`` turns each face upright by its landmarks before classifying (see :mod:`fer_core.align`).
    """

    def __init__(
        self, classifier: EmotionClassifier, detector: FaceDetector | None = None, *, align: bool = True
    ) -> None:
        self.classifier = classifier
        self.detector = detector if detector is not None else make_detector(PHOTO_PRESET)
        self.align = align

    def predict(self, bgr_image: npt.NDArray[np.uint8], *, tta: bool = False) -> list[FacePrediction]:
        detections = self.detector.detect(bgr_image)
        return self.classify_detections(to_gray(bgr_image), detections, tta=tta)

    def classify_detections(
        self, gray_image: npt.NDArray[np.uint8], detections: Sequence[Detection], *, tta: bool = False
    ) -> list[FacePrediction]:
        """Classify the given faces of ``gray_image`` in one model call, left to right."""
        if not detections:
            return []
        faces = np.stack([face_crop(gray_image, detection, align=self.align) for detection in detections])
        scores = self.classifier.classify_batch(faces, tta=tta)
        predictions = [
            _prediction(detection.box, face, score, detection)
            for detection, face, score in zip(detections, faces, scores, strict=True)
        ]
        return sorted(predictions, key=lambda p: (p.box.x, p.box.y))

    def predict_whole_image(self, bgr_image: npt.NDArray[np.uint8], *, tta: bool = False) -> FacePrediction:
        """Classify the whole image as one face (for images that already are face crops)."""
        gray_image = to_gray(bgr_image)
        height, width = gray_image.shape[:2]
        face = to_gray48(gray_image)
        scores = self.classifier.classify_batch(face[None], tta=tta)[0]
        return _prediction(Box(0, 0, width, height), face, scores)


def _prediction(
    box: Box, face: npt.NDArray[np.uint8], scores: npt.NDArray[np.float32], detection: Detection | None = None
) -> FacePrediction:
    best = int(np.argmax(scores))
    return FacePrediction(
        box=box,
        emotion=EMOTIONS[best],
        confidence=float(scores[best]),
        scores=scores,
        gray_face=face,
        detection_score=detection.score if detection is not None else None,
        landmarks=detection.landmarks if detection is not None else None,
    )


def load_classifier(path: str | os.PathLike[str] | None = None, *, num_threads: int = 1) -> EmotionClassifier:
    """The served (LiteRT) form of a model: an explicit ``.keras``/``.tflite`` file or run folder, else the
    promoted model, else the shipped default. Raises :class:`ModelLoadError` saying what is wrong."""
    model_path = resolve_model_path(path)
    flatbuffer, record = checked_lite_model(model_path)
    return EmotionClassifier(flatbuffer, str(model_path), temperature=record.temperature, num_threads=num_threads)


def load_predictor(
    path: str | os.PathLike[str] | None = None,
    *,
    preset: DetectionPreset = PHOTO_PRESET,
    detector: FaceDetector | None = None,
) -> Predictor:
    """The documented entry point: ``load_predictor()`` for the default model and photo preset, or a
    model path, another preset (``VIDEO_PRESET``, or ``PHOTO_PRESET.with_options(detector="haar")``) or
    a detector of your own."""
    return Predictor(load_classifier(path), detector or make_detector(preset), align=preset.align)
