"""Make the served form of a Keras model: its LiteRT copy, checked against it, and the record of the check.

    python -m training export models/fer_default.keras --data <fer2013>   # also fits the temperature

The app, ``fer_core.load_predictor()`` and the CLIs run models through LiteRT only (see
:mod:`fer_core.serving`): this is where a ``.keras`` file becomes servable. The trainer calls it for every
run's export, ``promote`` copies its output, ``average`` calls it for the averaged model. Converting
needs TensorFlow, so it runs in the trainer or CLI process, never in the app server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from fer_core.errors import FileWriteError, ModelLoadError
from fer_core.files import replace_atomically, temporary_path
from fer_core.inference import EmotionClassifier
from fer_core.labels import NUM_CLASSES
from fer_core.preprocess import FACE_SIZE, face_batch
from fer_core.serving import (
    DYNAMIC,
    FLOAT32,
    MIN_QUANTIZED_CHECK_FACES,
    QUANTIZATIONS,
    TOLERANCE,
    ServingRecord,
    lite_path,
    served_files,
    sha256_of,
    write_serving_record,
)
from training.model_files import load_keras_model

CHECK_FACES = 64  # random faces, plus the real ones given, on which the copy must agree


def convert_to_tflite(model: Any, quantization: str = FLOAT32) -> bytes:
    """A LiteRT flatbuffer of a Keras model taking (N, 48, 48, 1) faces: float32, or with ``DYNAMIC``
    quantization (the converter's post-training dynamic-range quantization: int8 weights, activations
    quantized per batch at run time, float32 in and out; no representative data is needed).

    The graph is frozen first (variables become constants), so the converter sees the weights and folds
    batch normalisation into the convolutions; nothing is written to disk or stdout.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    forward = tf.function(
        lambda faces: model(faces, training=False),
        input_signature=[tf.TensorSpec([None, FACE_SIZE, FACE_SIZE, 1], tf.float32)],
    )
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}; got {quantization!r}")
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    with _quiet_logger("absl"), _quiet_logger("tensorflow"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        if quantization == DYNAMIC:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return bytes(converter.convert())


def as_float32(model: Any) -> Any:
    """The same model computing in float32 (a mixed-precision checkpoint's weights in a float32 build);
    a model that already is float32 is returned as it is."""
    import keras

    from training.architectures import architectures, build_model

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        clean = build_model(model.name) if model.name in architectures() else keras.models.clone_model(model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clean.set_weights(model.get_weights())
    return clean


def lite_probabilities(
    flatbuffer: bytes, faces: npt.NDArray[np.float32], batch_size: int = 256
) -> npt.NDArray[np.float32]:
    """The LiteRT copy's probabilities, run as the app serves it (one interpreter, ``batch_size`` at a time)."""
    classifier = EmotionClassifier(flatbuffer, "the LiteRT copy")
    chunks = [classifier.forward(faces[start : start + batch_size]) for start in range(0, len(faces), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, NUM_CLASSES), np.float32)


def export_tflite(
    model_path: Path,
    *,
    temperature: float = 1.0,
    check_faces: npt.NDArray[np.uint8] | None = None,
    model: Any = None,
    quantization: str = FLOAT32,
    check_labels: npt.NDArray[np.int64] | None = None,
) -> Path:
    """Write ``model_path``'s LiteRT copy (``x.tflite``) and its record (``x.tflite.json``); returns the copy.

    A float32 copy must give the probabilities of the Keras model within ``TOLERANCE`` on ``CHECK_FACES``
    random faces and on ``check_faces`` (real ones, when given). A quantized copy (``quantization``
    ``DYNAMIC``) is measured on every one of ``check_faces`` with their ``check_labels`` (validation
    faces, required): how often its top emotion is the Keras model's and how much accuracy it loses
    (see :class:`fer_core.serving.ServingRecord`). Otherwise nothing is written and
    :class:`ModelLoadError` says what differs. ``model`` is the loaded ``model_path``, if the caller
    has it already.
    """
    keras_model = as_float32(model if model is not None else load_keras_model(model_path))
    input_shape, output_shape = tuple(keras_model.input_shape), tuple(keras_model.output_shape)
    if input_shape[1:] != (FACE_SIZE, FACE_SIZE, 1) or output_shape[-1:] != (NUM_CLASSES,):
        raise ModelLoadError(
            f"{model_path.name} takes {input_shape} and gives {output_shape}; a FER model takes (None, 48, 48, 1) "
            "and gives 7 scores"
        )
    if quantization != FLOAT32:
        labelled = 0 if check_faces is None or check_labels is None else min(len(check_faces), len(check_labels))
        if labelled < MIN_QUANTIZED_CHECK_FACES:
            raise ModelLoadError(
                f"a quantized copy is checked on labelled validation faces (at least {MIN_QUANTIZED_CHECK_FACES}); "
                f"{labelled} were given: pass the data the model was trained on (--data)"
            )
    flatbuffer = convert_to_tflite(keras_model, quantization)
    if quantization != FLOAT32:
        assert check_faces is not None and check_labels is not None  # checked above
        record = quantized_record(keras_model, flatbuffer, check_faces, check_labels, model_path.name)
        problem = record.problem()
        if problem is not None:
            raise ModelLoadError(f"the {quantization} LiteRT copy of {model_path.name} {problem}: not exported")
    else:
        record = float32_record(keras_model, flatbuffer, check_faces, model_path.name)
        if not record.max_difference <= TOLERANCE:
            raise ModelLoadError(
                f"the LiteRT copy of {model_path.name} differs from it by {record.max_difference:.2g} (at most "
                f"{TOLERANCE:g} is allowed): not exported"
            )
    return _write_copy(model_path, flatbuffer, record, temperature)


def float32_record(
    keras_model: Any, flatbuffer: bytes, check_faces: npt.NDArray[np.uint8] | None = None, name: str = "the model"
) -> ServingRecord:
    """How far a float32 copy's probabilities are from its Keras model's on ``CHECK_FACES`` random faces
    and the first 256 of ``check_faces`` (hashes left empty)."""
    faces = np.random.default_rng(0).integers(0, 256, (CHECK_FACES, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    if check_faces is not None and len(check_faces):
        faces = np.concatenate([faces, check_faces[:256]])
    batch = face_batch(faces)
    expected = np.asarray(keras_model(batch, training=False), np.float32)
    if not np.isfinite(expected).all():
        raise ModelLoadError(f"{name} gives non-finite outputs (NaN or infinite weights?): not exported")
    difference = float(np.abs(lite_probabilities(flatbuffer, batch) - expected).max())
    return ServingRecord(
        keras_sha256="", tflite_sha256="", max_difference=difference, tolerance=TOLERANCE, check_faces=len(faces)
    )


def quantized_record(
    keras_model: Any,
    flatbuffer: bytes,
    faces: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    name: str = "the model",
) -> ServingRecord:
    """What a quantized copy does on labelled faces against its Keras model (hashes left empty)."""
    from training.finish import predict_probabilities

    expected = predict_probabilities(keras_model, faces)
    if not np.isfinite(expected).all():
        raise ModelLoadError(f"{name} gives non-finite outputs (NaN or infinite weights?): not exported")
    served = lite_probabilities(flatbuffer, face_batch(faces))
    expected_top, served_top = expected.argmax(axis=1), served.argmax(axis=1)
    return ServingRecord(
        keras_sha256="",
        tflite_sha256="",
        max_difference=float(np.abs(served - expected).max()),
        tolerance=TOLERANCE,
        check_faces=len(faces),
        quantization=DYNAMIC,
        agreement=float(np.mean(served_top == expected_top)),
        accuracy_delta=float(np.mean(served_top == labels) - np.mean(expected_top == labels)),
    )


def _write_copy(model_path: Path, flatbuffer: bytes, record: ServingRecord, temperature: float) -> Path:
    import tensorflow as tf

    destination = lite_path(model_path)
    replace_atomically(destination, lambda temporary: temporary.write_bytes(flatbuffer))
    write_serving_record(
        model_path,
        dataclasses.replace(
            record,
            keras_sha256=sha256_of(model_path),
            tflite_sha256=sha256_of(destination),
            temperature=float(temperature),
            converter=f"tensorflow {tf.__version__}",
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ),
    )
    return destination


Exported = TypeVar("Exported")


def save_served(model: Any, destination: Path, export: Callable[[Path], Exported]) -> Exported:
    """Save ``model`` at ``destination`` with its served copy, all or nothing: the ``.keras`` file is saved
    under a temporary name beside it and ``export`` (e.g. :func:`export_tflite` with a temperature) makes
    its LiteRT copy and record there; only when every check has passed are the three moved into place.
    A refused model leaves nothing behind, and an earlier file at ``destination`` stays as it was."""
    temporary = temporary_path(destination)
    staged = served_files(temporary)
    try:
        model.save(temporary)
        result = export(temporary)
        for source, target in zip(staged[1:], served_files(destination)[1:], strict=True):  # copy and record
            os.replace(source, target)
        os.replace(temporary, destination)  # last: meanwhile a reader finds the copy stale, never serves a mismatch
    except OSError as error:  # named for the file being written, never its temporary name
        raise FileWriteError(error.errno, f"cannot write {destination}: {error.strerror or error}") from error
    finally:
        for path in staged:
            path.unlink(missing_ok=True)
    return result


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)
