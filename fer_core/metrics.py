"""Classification metrics in plain numpy: accuracy, macro-F1, per-class scores, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fer_core.labels import EMOTIONS


def confusion_matrix(
    labels: npt.ArrayLike, predictions: npt.ArrayLike, num_classes: int = len(EMOTIONS)
) -> npt.NDArray[np.int64]:
    """Rows are true classes, columns predicted classes."""
    true = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predictions, dtype=np.int64)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def classification_report(labels: npt.ArrayLike, predictions: npt.ArrayLike) -> dict[str, Any]:
    """``{"n", "accuracy", "macro_f1", "per_class": {emotion: {precision, recall, f1, support}}, "confusion"}``."""
    matrix = confusion_matrix(labels, predictions)
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, true_positives / predicted_count, 0.0)
        recall = np.where(support > 0, true_positives / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total = int(matrix.sum())
    present = support > 0
    return {
        "n": total,
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            emotion: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, emotion in enumerate(EMOTIONS)
        },
        "confusion": matrix.tolist(),
        "labels": list(EMOTIONS),
    }
