"""The parity gate's arithmetic (modelops.ml.convert.compare_outputs and the metrics it records from
modelops.domain.metrics; TensorFlow is not imported)."""

from __future__ import annotations

import numpy as np
import pytest

from modelops.domain.errors import ParityError
from modelops.domain.metrics import predicted_labels, score
from modelops.ml.convert import compare_outputs


def test_identical_outputs_pass_with_zero_difference() -> None:
    ref = np.array([[0.1], [0.7], [0.4]], dtype=np.float32)
    r = compare_outputs(ref, ref.copy(), task="binary", tolerance=1e-6)
    assert (r["max_abs_diff"], r["mean_abs_diff"], r["label_agreement"], r["passed"]) == (0.0, 0.0, 1.0, True)


def test_difference_over_tolerance_fails_and_reports_it() -> None:
    ref = np.array([[0.1], [0.2]])
    r = compare_outputs(ref, ref + [[0.0], [3e-4]], task="regression", tolerance=1e-4)
    assert r["passed"] is False
    assert r["max_abs_diff"] == pytest.approx(3e-4) and r["mean_abs_diff"] == pytest.approx(1.5e-4)
    assert "label_agreement" not in r


def test_large_outputs_are_compared_relatively() -> None:
    ref = np.array([[125_000.0], [0.5]])
    got = ref + [[0.01], [0.0]]  # float32 rounding at 1.25e5 is ~0.008
    r = compare_outputs(ref, got, task="regression", tolerance=1e-6)
    assert r["max_abs_diff"] == pytest.approx(0.01) and r["passed"] is True
    assert compare_outputs([[0.5]], [[0.51]], task="regression", tolerance=1e-6)["passed"] is False


@pytest.mark.parametrize(
    ("ref", "got", "passed"),
    [([[np.nan]], [[np.nan]], True), ([[1.0]], [[np.nan]], False), ([[1.0]], [[np.inf]], False)],
)
def test_non_finite_outputs(ref: list[list[float]], got: list[list[float]], passed: bool) -> None:
    assert (
        compare_outputs(np.array(ref), np.array(got), task="regression", tolerance=1e-3)["passed"] is passed
    )


def test_label_agreement_counts_flipped_classes() -> None:
    ref = np.array([[0.49], [0.51], [0.9], [0.1]])
    got = np.array([[0.51], [0.51], [0.9], [0.1]])
    assert compare_outputs(ref, got, task="binary")["label_agreement"] == 0.75
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    labels = predicted_labels("multiclass", probs)
    assert labels is not None and labels.tolist() == [1, 0]


def test_shape_mismatch_is_a_parity_error() -> None:
    with pytest.raises(ParityError, match="output shapes differ"):
        compare_outputs(np.zeros((3, 1)), np.zeros((3, 2)), task="regression")


def test_metrics() -> None:
    y = np.array([0.0, 1.0, 1.0, 0.0])
    p = np.array([[0.1], [0.8], [0.4], [0.3]])
    assert score("binary", "accuracy", y, p) == 0.75
    assert score("binary", "auc", y, p) == 1.0  # every positive scored above every negative
    assert score("binary", "auc", y, np.array([[0.5]] * 4)) == 0.5  # ties count half
    assert score("binary", "auc", np.ones(4), p) is None  # one class only: undefined
    assert score("regression", "rmse", np.array([1.0, 3.0]), np.array([[2.0], [1.0]])) == pytest.approx(
        np.sqrt(2.5)
    )
    assert score("regression", "mae", np.array([1.0, 3.0]), np.array([[2.0], [1.0]])) == 1.5
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    assert score("multiclass", "auc", np.array([0, 1, 2]), probs) == 1.0
    assert score("multiclass", "accuracy", np.array([0, 1, 1]), probs) == pytest.approx(2 / 3)
