"""fer_core.calibration: temperature scaling recovers a known temperature, never changes the winner, and
the calibration error and reliability table measure what they say."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core.calibration import (
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)


def calibrated_sample(faces: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that are calibrated by construction (labels drawn from them), and those labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (faces, 7))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(7, p=row) for row in probabilities])
    return probabilities, labels


def test_a_known_temperature_is_recovered() -> None:
    probabilities, labels = calibrated_sample()
    for true_temperature in (0.5, 2.0):  # the model was made over- or under-confident by this much
        distorted = apply_temperature(probabilities, 1 / true_temperature)
        assert fit_temperature(distorted, labels) == pytest.approx(true_temperature, rel=0.1)
    assert fit_temperature(probabilities, labels) == pytest.approx(1.0, rel=0.1)


def test_the_temperature_never_changes_the_winner_and_rows_still_sum_to_one() -> None:
    probabilities, _ = calibrated_sample(200)
    for temperature in (0.3, 1.0, 3.0):
        scaled = apply_temperature(probabilities, temperature)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(apply_temperature(probabilities, 1.0), probabilities, atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be positive"):
        apply_temperature(probabilities, 0.0)


def test_calibration_error_is_small_for_calibrated_and_large_for_overconfident_probabilities() -> None:
    probabilities, labels = calibrated_sample()
    assert expected_calibration_error(probabilities, labels) < 0.03
    overconfident = apply_temperature(probabilities, 0.3)
    assert expected_calibration_error(overconfident, labels) > 0.1
    report = calibration_report(overconfident, labels, fit_temperature(overconfident, labels))
    assert report["ece_after"] < 0.03 < report["ece_before"] and report["nll_after"] < report["nll_before"]
    assert len(report["bins_before"]) == len(report["bins_after"]) == 10


def test_reliability_bins_group_faces_by_their_top_probability() -> None:
    probabilities = np.array([[0.95] + [0.05 / 6] * 6, [0.95] + [0.05 / 6] * 6, [0.55, 0.45] + [0.0] * 5])
    bins = reliability_bins(probabilities, [0, 1, 0], bins=10)
    top, middle = bins[9], bins[5]
    assert (top.faces, top.accuracy, top.confidence) == (2, 0.5, pytest.approx(0.95))
    assert (middle.faces, middle.accuracy) == (1, 1.0)
    assert sum(row.faces for row in bins) == 3 and bins[0].faces == 0
    assert expected_calibration_error(probabilities, [0, 1, 0]) == pytest.approx((2 * 0.45 + 0.45) / 3)


def test_fitting_needs_faces() -> None:
    with pytest.raises(ValueError, match="same faces"):
        fit_temperature(np.zeros((0, 7)), [])
