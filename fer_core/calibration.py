"""Confidence that means what it says: temperature scaling and how to measure calibration.

A network trained with label smoothing and heavy augmentation is usually under-confident, one trained
long without them over-confident. Temperature scaling (Guo et al., 2017) fixes both with one number
``T`` fitted on held-out faces: the served probabilities become ``softmax(logits / T)``. The model
ends in a softmax, so this is computed from its probabilities, ``p ** (1 / T)`` renormalised, with no
change to the model. ``T`` never changes which class wins, so accuracy is untouched.

    expected_calibration_error(calibrated, test_labels)   # 0 = confidence equals accuracy
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

RELIABILITY_BINS = 10
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
_TINY = 1e-12


def apply_temperature(probabilities: npt.ArrayLike, temperature: float) -> npt.NDArray[np.float32]:
    """``softmax(log(probabilities) / temperature)`` row by row; ``temperature=1`` returns them as they are."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scores = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return scores.astype(np.float32)
    logits = np.log(np.clip(scores, _TINY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exponentials: npt.NDArray[np.float64] = np.exp(logits)
    totals: npt.NDArray[np.float64] = exponentials.sum(axis=-1, keepdims=True)  # numpy types keepdims sums as Any
    return (exponentials / totals).astype(np.float32)


def negative_log_likelihood(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    scores = np.asarray(probabilities, dtype=np.float64)
    picked = scores[np.arange(len(scores)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(picked, _TINY, 1.0)).mean())


def fit_temperature(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` (golden-section search
    over log T; the likelihood is unimodal in it). Needs at least one face."""
    scores = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(labels, dtype=np.int64)
    if len(scores) == 0 or len(scores) != len(targets):
        raise ValueError(f"need probabilities and labels for the same faces, got {len(scores)} and {len(targets)}")

    def loss(log_temperature: float) -> float:
        return negative_log_likelihood(apply_temperature(scores, float(np.exp(log_temperature))), targets)

    low, high = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    loss_left, loss_right = loss(left), loss(right)
    for _ in range(60):  # the bracket shrinks by 0.618 per step: far below 1e-6 in log T
        if loss_left < loss_right:
            high, right, loss_right = right, left, loss_left
            left = high - ratio * (high - low)
            loss_left = loss(left)
        else:
            low, left, loss_left = left, right, loss_right
            right = low + ratio * (high - low)
            loss_right = loss(right)
    return round(float(np.exp((low + high) / 2.0)), 4)


class ReliabilityBin(NamedTuple):
    lower: float  # confidence range of the bin
    upper: float
    faces: int  # faces whose top probability falls in it
    confidence: float  # their mean top probability (0 when empty)
    accuracy: float  # the share of them classified correctly (0 when empty)


def reliability_bins(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, bins: int = RELIABILITY_BINS
) -> list[ReliabilityBin]:
    """Faces grouped by their top probability into ``bins`` equal ranges, with each range's mean
    confidence and accuracy: the points of a reliability diagram."""
    scores = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(labels, dtype=np.int64)
    confidence = scores.max(axis=1) if len(scores) else np.zeros(0)
    correct = scores.argmax(axis=1) == targets if len(scores) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    table = []
    for number in range(bins):
        members = index == number
        count = int(members.sum())
        table.append(
            ReliabilityBin(
                lower=float(edges[number]),
                upper=float(edges[number + 1]),
                faces=count,
                confidence=float(confidence[members].mean()) if count else 0.0,
                accuracy=float(correct[members].mean()) if count else 0.0,
            )
        )
    return table


def expected_calibration_error(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, bins: int = RELIABILITY_BINS
) -> float:
    """The gap between confidence and accuracy, averaged over the bins weighted by their faces."""
    table = reliability_bins(probabilities, labels, bins)
    total = sum(row.faces for row in table)
    if total == 0:
        return 0.0
    return float(sum(row.faces * abs(row.accuracy - row.confidence) for row in table) / total)


def calibration_report(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, temperature: float, bins: int = RELIABILITY_BINS
) -> dict[str, object]:
    """How well uncalibrated ``probabilities`` and the same with ``temperature`` applied match
    accuracy on held-out faces: expected calibration error and log-likelihood before and after, and
    both reliability tables (the points of the diagram)."""
    calibrated = apply_temperature(probabilities, temperature)
    return {
        "temperature": float(temperature),
        "faces": len(np.asarray(labels)),
        "ece_before": expected_calibration_error(probabilities, labels, bins),
        "ece_after": expected_calibration_error(calibrated, labels, bins),
        "nll_before": negative_log_likelihood(probabilities, labels),
        "nll_after": negative_log_likelihood(calibrated, labels),
        "bins_before": [row._asdict() for row in reliability_bins(probabilities, labels, bins)],
        "bins_after": [row._asdict() for row in reliability_bins(calibrated, labels, bins)],
    }
