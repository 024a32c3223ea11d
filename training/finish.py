"""The finish steps of a run, after its epochs: export the best checkpoint as a float32 model,
re-estimate its batch-norm statistics, write its served (LiteRT, calibrated) copy, evaluate that copy
on the held-out faces, and keep the faces it got most confidently wrong.

Each step writes the run's status phase first, so the Training page says what is happening. A run
trained under another Keras backend runs these steps in a TensorFlow process (``python -m training
finish RUN``: converting to LiteRT needs TensorFlow).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fer_core import run_layout
from fer_core.data import FaceDataset
from fer_core.errors import ModelLoadError
from fer_core.files import write_json_atomically
from fer_core.metrics import classification_report
from training import runs
from training.config import CROP_ARCHITECTURES, TrainConfig
from training.model_files import load_keras_model, save_model_atomic
from training.records import Mistakes, Recalibration, RunMetrics, RunPhase, RunState
from training.splits import configured_split, load_training_data

MISCLASSIFIED_COUNT = 48


def finish(run_dir: Path, dataset: FaceDataset, config: TrainConfig) -> None:
    """Export the best checkpoint as a float32 model and its served (LiteRT) copy, calibrated on the
    validation faces, and evaluate the served copy on the held-out split: the path the app runs."""
    model_path = run_dir / run_layout.EXPORTED_MODEL
    train, val = configured_split(dataset, config)
    with runs.phase(run_dir, RunPhase.EXPORTING):
        export_model(run_dir / run_layout.BEST_CHECKPOINT, model_path, config.arch, tta=config.tta)
    with runs.phase(run_dir, RunPhase.RECALIBRATING):
        recalibration = _try_recalibrating(model_path, train, val)
    with runs.phase(run_dir, RunPhase.EXPORTING):
        export_served_as(model_path, val, config.quantize)
    with runs.phase(run_dir, RunPhase.EVALUATING):
        eval_split = "test" if "test" in dataset.split_names else "val"
        held_out = dataset.split("test") if eval_split == "test" else val
        report, probabilities = evaluate_served(model_path, held_out)
        metrics = dataclasses.replace(
            RunMetrics.from_json(report, "the evaluation"),
            split=eval_split,
            best_epoch=runs.Run(run_dir).checkpoint_info().best_epoch,
            recalibration=recalibration,
        )
        write_json_atomically(run_dir / run_layout.METRICS_FILE, metrics.to_json())
        save_misclassified(run_dir, held_out, probabilities)
    runs.update_status(
        run_dir, state=RunState.FINISHED, phase=None, finished_at=time.time(), test_accuracy=metrics.accuracy
    )


def _try_recalibrating(model_path: Path, train: FaceDataset, val: FaceDataset) -> Recalibration:
    """:func:`recalibrate_if_better`, which is an optional polish: when it fails, the run and its plain
    export still stand, and the metrics say why it was skipped."""
    try:
        return recalibrate_if_better(model_path, train, val)
    except Exception as error:
        print(f"batch-norm recalibration skipped: {type(error).__name__}: {error}", file=sys.stderr)
        return Recalibration(kept=False, error=f"{type(error).__name__}: {error}")


def export_stopped(run_dir: Path, config: TrainConfig, val_set: FaceDataset) -> None:
    """A stopped run's best checkpoint, exported and served like a finished one's (not evaluated)."""
    if (run_dir / run_layout.BEST_CHECKPOINT).is_file():
        with runs.phase(run_dir, RunPhase.EXPORTING):
            model_path = run_dir / run_layout.EXPORTED_MODEL
            export_model(run_dir / run_layout.BEST_CHECKPOINT, model_path, config.arch, tta=config.tta)
            export_served_as(model_path, val_set, config.quantize)


def finish_run(run_dir: Path, *, stopped: bool = False) -> None:
    """The finish steps of a run trained under another Keras backend, in this (TensorFlow) process:
    ``python -m training finish RUN`` (the trainer calls it; see :func:`finish_in_tensorflow`)."""
    config = runs.Run(run_dir).config().settings
    data = load_training_data(config)
    if stopped:
        export_stopped(run_dir, config, data.val)
    else:
        finish(run_dir, data.dataset, config)


def finish_in_tensorflow(run_dir: Path, stopped: str | None) -> None:
    """:func:`finish_run` in a TensorFlow process, for a run trained under another Keras backend."""
    import subprocess

    command = [
        sys.executable,
        "-m",
        "training",
        "finish",
        str(run_dir),
        *(["--stopped"] if stopped is not None else []),
    ]
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(command, env=environment, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the finish steps (export to LiteRT, evaluation) failed: exit status {result.returncode}")


def export_model(checkpoint: Path, destination: Path, arch: str, *, tta: str = "none") -> None:
    """Rebuild ``arch`` in float32 and copy the trained network's weights in (inference never runs bf16).
    A network trained on crops, or with test-time views asked for, is served wrapped in its views
    (:func:`training.views.with_views`): 48x48 faces in, the views' mean probabilities out."""
    import keras

    from fer_core.preprocess import FACE_SIZE
    from training.architectures import build_model
    from training.neutral import custom_objects, trained_backbone
    from training.views import with_views

    custom_objects()
    network = trained_backbone(load_keras_model(checkpoint))
    size = int(network.input_shape[1])
    keras.mixed_precision.set_global_policy("float32")
    options: dict[str, Any] = {"input_size": size}
    widths = [layer.filters for layer in network.layers if hasattr(layer, "filters")]
    if arch in CROP_ARCHITECTURES or arch == "fernet":
        options["width"] = widths[0]
    clean = build_model(arch, **options)
    clean.set_weights(network.get_weights())
    if tta == "none" and size == FACE_SIZE:
        save_model_atomic(clean, destination)
    else:
        # named arch_views, not arch: `average` rebuilds a model named after a registered architecture
        save_model_atomic(with_views(clean, "center" if tta == "none" else tta), destination)


def export_served_as(model_path: Path, val: FaceDataset, quantization: str) -> float:
    """:func:`export_served` with a run's served weights (``--quantize``); a quantized copy that its check
    refuses gives way to a float32 one, and the run's log says why. Returns the temperature."""
    if quantization != "float32":
        try:
            return export_served(model_path, val, quantization=quantization)
        except ModelLoadError as error:
            print(f"the {quantization} copy was not kept ({error}); the float32 copy is served", file=sys.stderr)
    return export_served(model_path, val)


def export_served(model_path: Path, val: FaceDataset, quantization: str = "float32") -> float:
    """Fit the calibration temperature on the validation faces and write the model's LiteRT copy with
    it (:func:`training.export.export_tflite`, checked on those faces too; ``quantization`` ``dynamic``
    makes an int8-weight copy). Returns the temperature."""
    from fer_core.calibration import fit_temperature
    from training.export import export_tflite

    model = load_keras_model(model_path)
    temperature = fit_temperature(predict_probabilities(model, val.images), val.labels) if len(val) else 1.0
    export_tflite(
        model_path,
        temperature=temperature,
        check_faces=val.images,
        check_labels=val.labels,
        model=model,
        quantization=quantization,
    )
    return temperature


def evaluate_served(
    model_path: Path, dataset: FaceDataset, *, tta: bool = False
) -> tuple[dict[str, Any], npt.NDArray[np.float32]]:
    """Evaluate the served (LiteRT, calibrated) copy of a model, as the app runs it: the classification
    report with its calibration (expected calibration error before and after the temperature, and
    reliability tables), and the served probabilities."""
    from fer_core.calibration import apply_temperature, calibration_report
    from fer_core.inference import EmotionClassifier
    from fer_core.serving import checked_lite_model

    flatbuffer, record = checked_lite_model(model_path)
    uncalibrated = EmotionClassifier(flatbuffer, str(model_path), num_threads=os.cpu_count() or 1)
    raw = uncalibrated.classify_batch(dataset.images, tta=tta)
    probabilities = apply_temperature(raw, record.temperature)
    report = classification_report(dataset.labels, probabilities.argmax(axis=1))
    report["calibration"] = calibration_report(raw, dataset.labels, record.temperature)
    report["served"] = {"runtime": "LiteRT", "file": model_path.with_suffix(".tflite").name, "tta": tta}
    return report, probabilities


def recalibrate_if_better(model_path: Path, train: FaceDataset, val: FaceDataset) -> Recalibration:
    """Re-estimate the batch-norm statistics of the model at ``model_path`` on the clean ``train``
    faces (see :mod:`training.averaging`) and keep the result if it is more accurate on ``val``.
    Returns both validation accuracies and whether the recalibrated model was kept."""
    from training.averaging import recalibrate_batch_norm

    model = load_keras_model(model_path)
    before = accuracy_on(model, val)
    if not recalibrate_batch_norm(model, train.images):
        return Recalibration(kept=False, val_accuracy_before=before, val_accuracy_after=before)
    after = accuracy_on(model, val)
    if after > before:
        save_model_atomic(model, model_path)
    return Recalibration(kept=after > before, val_accuracy_before=before, val_accuracy_after=after)


def predict_probabilities(model: Any, images: npt.NDArray[np.uint8], batch_size: int = 512) -> npt.NDArray[np.float32]:
    from fer_core.preprocess import face_batch

    outputs = [
        np.asarray(model(face_batch(images[start : start + batch_size]), training=False), dtype=np.float32)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, 7), np.float32)


def accuracy_on(model: Any, dataset: FaceDataset) -> float:
    return float((predict_probabilities(model, dataset.images).argmax(axis=1) == dataset.labels).mean())


def save_misclassified(
    run_dir: Path, dataset: FaceDataset, probabilities: npt.NDArray[np.float32], count: int = MISCLASSIFIED_COUNT
) -> None:
    """The most confidently wrong held-out faces, for the Training page's gallery (:meth:`Run.mistakes`)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != dataset.labels)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    mistakes = Mistakes(
        images=dataset.images[order],
        labels=dataset.labels[order],
        predicted=predicted[order],
        confidence=probabilities[order, predicted[order]],
        source_ids=dataset.source_ids[order],
    )
    mistakes.save(run_dir / run_layout.MISCLASSIFIED_FILE)
