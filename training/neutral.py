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


def build_augmenter(seed: int, *, erasing: float = 0.0) -> Any:
    """The training-time augmentation of 48x48 faces, as Keras layers (active only when
    ``training=True``): flip, rotation, shift, zoom, brightness and contrast jitter on 0-255 gray faces
    and, with ``erasing`` > 0, a random rectangle of noise in that share of the faces. The training crop
    comes after it (:func:`build_training_model`): the shifts make the centre crop a random one."""
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
    if erasing > 0:
        stack.append(layers.RandomErasing(factor=erasing, scale=(0.02, 0.2), value_range=(0, 255), seed=seed + 6))
    augmenter = keras.Sequential(stack, name="augment")
    if keras.backend.backend() == "jax":
        # Keras marks its affine-transform layers as not XLA-compilable because TensorFlow's transform op
        # is not; JAX's (map_coordinates) is, and a step that is not compiled runs op by op.
        for layer in stack:
            layer.supports_jit = True
    return augmenter


def centre_crop(images: Any, size: int) -> Any:
    """The centre ``size`` x ``size`` window of (B, 48, 48, 1) images (a Cropping2D layer; none at 48)."""
    import keras

    if size == FACE_SIZE:
        return images
    return keras.layers.Cropping2D(_centre_margins(size), name=f"crop_{size}")(images)


def _centre_margins(crop: int) -> tuple[tuple[int, int], tuple[int, int]]:
    if not 16 <= crop <= FACE_SIZE:
        raise ValueError(f"crop must be between 16 and {FACE_SIZE} pixels, got {crop}")
    before = (FACE_SIZE - crop) // 2
    after = FACE_SIZE - crop - before
    return (before, after), (before, after)


def input_size(model: Any) -> int:
    return int(model.input_shape[1])


BACKBONE = "backbone"  # the name of the trained network inside a training graph


def build_training_model(backbone: Any, augmenter: Any) -> Any:
    """48x48 faces in, augmented and cropped to the backbone's input size on the way, the backbone's
    probabilities out. The backbone is nested under the name ``backbone`` (see :func:`trained_backbone`)."""
    import keras

    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="gray_face")
    named = keras.Model(backbone.input, backbone.output, name=BACKBONE)
    augmented = inputs if augmenter is None else augmenter(inputs)  # None: augmentation off
    outputs = named(centre_crop(augmented, input_size(backbone)))
    return keras.Model(inputs, outputs, name=f"train_{backbone.name}")


def trained_backbone(model: Any) -> Any:
    """The network a training graph trains (its ``backbone`` layer), or ``model`` itself when it is a
    plain model (the tf.data path trains the bare network)."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(BACKBONE) if BACKBONE in names else model


def build_distillation_model(student: Any, teachers: Sequence[Any], augmenter: Any) -> Any:
    """One graph for online distillation: the augmented batch goes to the student (cropped to its input
    size) and to the frozen teachers (inference mode; a teacher taking 48x48 faces, such as a served model
    with its test-time views, sees the whole augmented face); the output is the student's probabilities
    followed by the teachers' mean probabilities, (B, 14), which :func:`distillation_loss` splits."""
    import keras

    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="gray_face")
    augmented = inputs if augmenter is None else augmenter(inputs)  # None: augmentation off
    crops = {FACE_SIZE: augmented}  # one crop layer per input size, shared by the networks taking it

    def crop_for(network: Any) -> Any:
        size = input_size(network)
        if size not in crops:
            crops[size] = centre_crop(augmented, size)
        return crops[size]

    cropped = crop_for(student)
    teacher_outputs = []
    for index, teacher in enumerate(teachers):
        teacher.trainable = False
        named = keras.Model(teacher.input, teacher.output, name=f"teacher_{index}")
        named.trainable = False
        teacher_outputs.append(named(crop_for(teacher), training=False))
    teacher_mean = teacher_outputs[0] if len(teacher_outputs) == 1 else keras.layers.Average()(teacher_outputs)
    student_output = keras.Model(student.input, student.output, name=BACKBONE)(cropped)
    outputs = keras.layers.Concatenate(dtype="float32")(
        [keras.ops.cast(student_output, "float32"), keras.ops.cast(teacher_mean, "float32")]
    )
    return keras.Model(inputs, outputs, name=f"distill_{student.name}")


def distillation_loss(temperature: float = 4.0, label_weight: float = 0.3) -> Any:
    """Hinton et al.'s loss on the (B, 14) output of :func:`build_distillation_model`: ``label_weight``
    of cross-entropy with the (smoothed) labels plus the rest of ``temperature``-softened KL divergence
    from the teachers, scaled by temperature squared. A registered Keras loss: checkpoints reload."""
    return custom_objects()["DistillationLoss"](temperature=temperature, label_weight=label_weight)


def student_accuracy() -> Any:
    """The accuracy of the student's half of a distillation output, reported as ``accuracy``."""
    return custom_objects()["StudentAccuracy"](name="accuracy")


_CUSTOM: dict[str, Any] = {}


def custom_objects() -> dict[str, Any]:
    """The distillation loss and metric classes, registered with Keras (made on first use: importing this
    module imports no Keras)."""
    if _CUSTOM:
        return _CUSTOM
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="fer_studio")
    class DistillationLoss(keras.losses.Loss):
        def __init__(self, temperature: float = 4.0, label_weight: float = 0.3, **kwargs: Any) -> None:
            super().__init__(name=kwargs.pop("name", "distillation"), **kwargs)
            self.temperature, self.label_weight = float(temperature), float(label_weight)

        def call(self, targets: Any, outputs: Any) -> Any:
            student = ops.clip(outputs[:, :NUM_CLASSES], 1e-7, 1.0)
            teacher = ops.clip(outputs[:, NUM_CLASSES:], 1e-7, 1.0)
            hard = keras.losses.categorical_crossentropy(targets, student)
            soft_teacher = ops.softmax(ops.log(teacher) / self.temperature, axis=-1)
            student_log = ops.log_softmax(ops.log(student) / self.temperature, axis=-1)
            soft = ops.sum(soft_teacher * (ops.log(soft_teacher) - student_log), axis=-1) * self.temperature**2
            return self.label_weight * hard + (1.0 - self.label_weight) * soft

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "temperature": self.temperature, "label_weight": self.label_weight}

    def _student_accuracy(targets: Any, outputs: Any) -> Any:
        return keras.metrics.categorical_accuracy(targets, outputs[:, :NUM_CLASSES])

    @keras.saving.register_keras_serializable(package="fer_studio")
    class StudentAccuracy(keras.metrics.MeanMetricWrapper):
        def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
            super().__init__(_student_accuracy, name=name, dtype=dtype)

        def get_config(self) -> dict[str, Any]:
            return {"name": self.name, "dtype": self.dtype}

    _CUSTOM.update(DistillationLoss=DistillationLoss, StudentAccuracy=StudentAccuracy)
    return _CUSTOM


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
