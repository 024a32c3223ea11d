"""Which faces a run trains and validates on: the split and its checks. Plain numpy, no TensorFlow,
so that the Training page can count and check a data set before it offers to start."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fer_core.data import FaceDataset
from fer_core.datasets import resolve_dataset
from fer_core.errors import DatasetError
from fer_core.labels import EMOTIONS
from training.config import TrainConfig


@dataclass(frozen=True)
class TrainingData:
    """The faces a run trains and validates on, checked (see :func:`check_training_split`)."""

    dataset: FaceDataset
    train: FaceDataset
    val: FaceDataset


def split_for_training(dataset: FaceDataset, val_fraction: float, seed: int) -> tuple[FaceDataset, FaceDataset]:
    """Train and validation sets: the data's own ``val`` split if it has one, else a stratified
    ``val_fraction`` of train (see :func:`held_out_counts`). The test split is never touched here."""
    train = dataset.split("train")
    if "val" in dataset.split_names:
        return train, dataset.split("val")
    rng = np.random.default_rng(seed)
    counts = held_out_counts(train.labels, val_fraction)
    val_mask = np.zeros(len(train), dtype=bool)
    for label in np.unique(train.labels):
        members = np.flatnonzero(train.labels == label)
        val_mask[rng.choice(members, size=int(counts[label]), replace=False)] = True
    return train.subset(~val_mask), train.subset(val_mask)


def configured_split(dataset: FaceDataset, config: TrainConfig) -> tuple[FaceDataset, FaceDataset]:
    """:func:`split_for_training` as ``config`` holds it out: its share, carved with its split seed (its
    ``--split-seed``, else its ``--seed``)."""
    return split_for_training(dataset, config.val_fraction, config.validation_seed)


def held_out_counts(train_labels: npt.NDArray[np.int64], val_fraction: float) -> npt.NDArray[np.int64]:
    """Faces of each class held out of train for validation: ``val_fraction`` of them, at least one,
    and none of a class with a single face (it is needed for training)."""
    members = np.bincount(train_labels, minlength=len(EMOTIONS))
    share = np.maximum(1, np.round(members * val_fraction)).astype(np.int64)
    return np.where(members > 1, share, 0)


def check_training_split(train_set: FaceDataset, val_set: FaceDataset) -> None:
    """Refuse faces a classifier cannot be trained and validated on, saying why (``DatasetError``)."""
    check_training_labels(train_set.labels, len(val_set))


def check_training_labels(train_labels: npt.NDArray[np.int64], val_size: int) -> None:
    """:func:`check_training_split` from the training labels and the validation size alone (the
    Training page checks a data set this way before it offers to start)."""
    if len(train_labels) == 0:
        raise DatasetError("the train split holds no faces")
    classes = np.unique(train_labels)
    if len(classes) < 2:
        raise DatasetError(
            f"every training face is {EMOTIONS[int(classes[0])]}: a classifier needs faces of at least two "
            "emotions to learn to tell them apart"
        )
    if val_size == 0:
        raise DatasetError(
            "no faces are left for validation: a face is only held out of an emotion with at least two "
            "training faces. Add faces, or give the data set a val/ split of its own"
        )


def load_training_data(config: TrainConfig) -> TrainingData:
    """The run's faces, split into train and validation, and checked: before a training starts."""
    dataset = resolve_dataset(config.data)
    train_set, val_set = configured_split(dataset, config)
    check_training_split(train_set, val_set)
    return TrainingData(dataset, train_set, val_set)
