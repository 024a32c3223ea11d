"""The backend-neutral training path: numpy batches and Keras layers only, no ``tf.data``.

It runs under any Keras 3 backend (``KERAS_BACKEND=jax`` on a GPU machine without TensorFlow,
``tensorflow`` here). Everything a step needs is either numpy (:class:`FaceBatches`: shuffling,
class weights, mixup) or a Keras layer inside the training graph (:func:`build_augmenter`: flips,
rotations, shifts, zoom, brightness, contrast, the training crop and random erasing), so the same
code trains on either machine and the saved ``.keras`` files are the same.

Models trained on crops (``crop=40``) see a ``crop x crop`` window of each 48x48 face; the served
model puts the views back (:mod:`training.views`): the centre crop, or ten crops (centre, four corners,
each also flipped) whose probabilities are averaged.

Distillation (:func:`build_distillation_model`) trains a student on the teachers' softened
probabilities beside the labels, in one graph: both see the same augmented batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fer_core.labels import NUM_CLASSES
from fer_core.preprocess import FACE_SIZE


def face_batches(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    *,
    batch_size: int,
    seed: int = 0,
    label_smoothing: float = 0.0,
    class_weights: npt.NDArray[np.float32] | None = None,
    mixup: float = 0.0,
) -> Any:
    """A shuffled :class:`keras.utils.PyDataset` of ``(float32 (B, 48, 48, 1) in 0-255, targets[, weights])``.

    ``mixup`` is the Beta distribution's alpha (0: off): each batch is blended with a shuffled copy of
    itself, images and targets alike (Zhang et al., 2018). ``class_weights`` gives each face its class's
    weight (the mix's weights are blended too)."""
    import keras

    class FaceBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images))
            self.targets = np.full((NUM_CLASSES, NUM_CLASSES), label_smoothing / NUM_CLASSES, dtype=np.float32)
            self.targets += np.eye(NUM_CLASSES, dtype=np.float32) * (1.0 - label_smoothing)

        def __len__(self) -> int:
            return max(1, len(images) // batch_size)

        def __getitem__(self, index: int) -> tuple[Any, ...]:
            members = self.order[index * batch_size : (index + 1) * batch_size]
            batch = images[members].astype(np.float32)[..., None]
            targets = self.targets[labels[members]]
            weights = None if class_weights is None else class_weights[labels[members]].astype(np.float32)
            if mixup > 0:
                share = self.rng.beta(mixup, mixup, size=len(members)).astype(np.float32)
                share = np.maximum(share, 1.0 - share)  # the first face dominates: its label stays the main one
                partner = self.rng.permutation(len(members))
                batch = share[:, None, None, None] * batch + (1 - share[:, None, None, None]) * batch[partner]
                targets = share[:, None] * targets + (1 - share[:, None]) * targets[partner]
                if weights is not None:
                    weights = share * weights + (1 - share) * weights[partner]
            return (batch, targets) if weights is None else (batch, targets, weights)

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(images))

    return FaceBatches()


def build_augmenter(seed: int, *, crop: int = FACE_SIZE, erasing: float = 0.0) -> Any:
    """The training-time augmentation, as Keras layers (active only when ``training=True``): flip,
    rotation, shift, zoom, brightness and contrast jitter on 0-255 gray faces, then the centre
    ``crop`` (the shifts make it a random crop) and, with ``erasing`` > 0, random erasing of a
    rectangle in that share of the faces."""
    import keras
    from keras import layers

    stack: list[Any] = [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),  # +-15 degrees
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 2),
        layers.RandomZoom((-0.15, 0.1), fill_mode="reflect", seed=seed + 3),
        layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
        layers.RandomContrast(0.25, seed=seed + 5),
    ]
    if crop != FACE_SIZE:
        stack.append(layers.Cropping2D(_centre_margins(crop)))
    if erasing > 0:
        stack.append(layers.RandomErasing(factor=erasing, scale=(0.02, 0.2), value_range=(0, 255), seed=seed + 6))
    augmenter = keras.Sequential(stack, name="augment")
    if keras.backend.backend() == "jax":
        # Keras marks its affine-transform layers as not XLA-compilable because TensorFlow's transform op
        # is not; JAX's (map_coordinates) is, and a step that is not compiled runs op by op.
        for layer in stack:
            layer.supports_jit = True
    return augmenter


def _centre_margins(crop: int) -> tuple[tuple[int, int], tuple[int, int]]:
    if not 16 <= crop <= FACE_SIZE:
        raise ValueError(f"crop must be between 16 and {FACE_SIZE} pixels, got {crop}")
    before = (FACE_SIZE - crop) // 2
    after = FACE_SIZE - crop - before
    return (before, after), (before, after)


def build_training_model(backbone: Any, augmenter: Any) -> Any:
    """48x48 faces in, augmented (and cropped) on the way, the backbone's probabilities out."""
    import keras

    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="gray_face")
    return keras.Model(inputs, backbone(augmenter(inputs)), name=f"train_{backbone.name}")


def build_distillation_model(student: Any, teachers: Sequence[Any], augmenter: Any) -> Any:
    """One graph for online distillation: the augmented batch goes to the student and to the frozen
    teachers (inference mode); the output is the student's probabilities followed by the teachers'
    mean probabilities, (B, 14), which :func:`distillation_loss` splits."""
    import keras

    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="gray_face")
    views = augmenter(inputs)
    teacher_outputs = []
    for teacher in teachers:
        teacher.trainable = False
        teacher_outputs.append(teacher(views, training=False))
    teacher_mean = teacher_outputs[0] if len(teacher_outputs) == 1 else keras.layers.Average()(teacher_outputs)
    student_output = student(views)
    outputs = keras.layers.Concatenate(dtype="float32")(
        [keras.ops.cast(student_output, "float32"), keras.ops.cast(teacher_mean, "float32")]
    )
    return keras.Model(inputs, outputs, name=f"distill_{student.name}")


def distillation_loss(temperature: float = 4.0, label_weight: float = 0.3) -> Any:
    """Hinton et al.'s loss on the (B, 14) output of :func:`build_distillation_model`: ``label_weight``
    of cross-entropy with the (smoothed) labels plus the rest of ``temperature``-softened KL divergence
    from the teachers, scaled by temperature squared."""
    import keras
    from keras import ops

    def loss(targets: Any, outputs: Any) -> Any:
        student = ops.clip(outputs[:, :NUM_CLASSES], 1e-7, 1.0)
        teacher = ops.clip(outputs[:, NUM_CLASSES:], 1e-7, 1.0)
        hard = keras.losses.categorical_crossentropy(targets, student)
        soft_teacher = ops.softmax(ops.log(teacher) / temperature, axis=-1)
        student_log = ops.log_softmax(ops.log(student) / temperature, axis=-1)
        soft = ops.sum(soft_teacher * (ops.log(soft_teacher) - student_log), axis=-1) * temperature**2
        return label_weight * hard + (1.0 - label_weight) * soft

    return loss


def student_accuracy(targets: Any, outputs: Any) -> Any:
    """Accuracy of the student's half of a distillation output."""
    import keras

    return keras.metrics.categorical_accuracy(targets, outputs[:, :NUM_CLASSES])


def cosine_learning_rate(epoch: int, *, peak: float, epochs: int, warmup: int = 2, floor: float = 0.01) -> float:
    """Linear warm-up over ``warmup`` epochs to ``peak``, then one cosine decay to ``floor * peak``."""
    if epoch < warmup:
        return peak * (epoch + 1) / (warmup + 1)
    progress = min(1.0, (epoch - warmup) / max(1, epochs - warmup - 1))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def time_budget_callback(budget_s: float, peak: float, max_epochs: int, plan_after: int = 3) -> Any:
    """A callback that fits a cosine schedule into a wall-time budget: after ``plan_after`` epochs it
    measures the time per epoch and sets the run's length so that the whole schedule (warm-up, one
    cosine decay) ends inside ``budget_s``; it also stops the run if an epoch would overrun it. The
    learning rate is set at the start of every epoch (see :func:`cosine_learning_rate`)."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.planned = max_epochs
            self.started = time.monotonic()
            self.epoch_times: list[float] = []
            self.epoch_started = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch_started = time.monotonic()
            self.model.optimizer.learning_rate = cosine_learning_rate(epoch, peak=peak, epochs=self.planned)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epoch_times.append(time.monotonic() - self.epoch_started)
            elapsed = time.monotonic() - self.started
            per_epoch = float(np.median(self.epoch_times[1:] or self.epoch_times))
            if epoch + 1 == plan_after:  # the first epoch compiles: plan on the others, with a 15% margin
                per_epoch = 1.15 * float(np.max(self.epoch_times[1:] or self.epoch_times))
                fits = int((budget_s - elapsed) / per_epoch) + epoch + 1
                self.planned = max(plan_after + 1, min(max_epochs, fits))
                print(f"plan: {per_epoch:.2f} s per epoch, {self.planned} epochs in {budget_s:.0f} s", flush=True)
            if epoch + 1 >= self.planned or elapsed + per_epoch > budget_s * 1.05:
                self.model.stop_training = True

    return TimeBudget()


def class_weight_vector(labels: npt.NDArray[np.int64], power: float = 0.5) -> npt.NDArray[np.float32]:
    """Inverse-frequency class weights softened by ``power`` (0.5: square root), mean 1 over samples."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    weights = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** power, 0.0)
    weights /= (weights[labels]).mean()
    return weights.astype(np.float32)
