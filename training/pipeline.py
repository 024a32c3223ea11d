"""tf.data input pipelines over in-memory uint8 faces, with augmentation as Keras layers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from fer_core.labels import NUM_CLASSES
from training.neutral import class_weight_vector  # noqa: F401  (the trainer imports it from here)


def build_augmenter(seed: int) -> tf.keras.Sequential:
    """Flip, small shift/rotation/zoom and brightness/contrast jitter on 0-255 gray batches."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),  # +-15 degrees
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 2),
            layers.RandomZoom((-0.15, 0.1), fill_mode="reflect", seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
            layers.RandomContrast(0.25, seed=seed + 5),
        ],
        name="augment",
    )


def make_dataset(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    *,
    batch_size: int,
    training: bool,
    augment: bool = False,
    seed: int = 0,
    sample_weights: npt.NDArray[np.float32] | None = None,
) -> tf.data.Dataset:
    """Batches of ``(float32 (B, 48, 48, 1) in 0-255, one-hot (B, 7)[, weight])``."""
    features = images[..., None]
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    tensors = (features, targets) if sample_weights is None else (features, targets, sample_weights)
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training and len(images) >= batch_size)

    def to_float(*batch: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return (tf.cast(batch[0], tf.float32), *batch[1:])

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        augmenter = build_augmenter(seed)

        def augment_batch(*batch: tf.Tensor) -> tuple[tf.Tensor, ...]:
            return (tf.clip_by_value(augmenter(batch[0], training=True), 0.0, 255.0), *batch[1:])

        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
