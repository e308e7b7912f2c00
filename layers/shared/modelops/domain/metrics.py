"""Quality metrics, numpy only: the one definition for the trainer (held-out metrics), convert (the
promotion metric of the int8 model), the gate's inputs and the monitor (quality of labelled traffic),
so they compare like with like.

Arguments are always ``(truth, prediction)``: targets or class labels first, then predictions,
scores or model outputs.

- regression: :func:`rmse`, :func:`mae`, :func:`r2`, all three in :func:`regression_metrics`;
- classification: :func:`accuracy`, :func:`log_loss`, :func:`auc_binary`, :func:`auc_macro`, all
  three in :func:`classification_metrics`; :func:`predicted_labels` turns outputs into classes;
- :func:`score`: one named metric (``rmse``, ``mae``, ``accuracy``, ``auc``) of model outputs;
- :func:`quality`: the monitor's metrics of captured outputs against joined ground-truth labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EPS = 1e-7
"""Probabilities are clipped to ``[EPS, 1 - EPS]`` before the log in :func:`log_loss`."""


# ---------------------------------------------------------------------------------------------- regression
def _errors(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.asarray(pred, dtype=np.float64).ravel() - np.asarray(y, dtype=np.float64).ravel()


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean(_errors(y, pred) ** 2)))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(_errors(y, pred))))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination; 0.0 when ``y`` is constant."""
    y = np.asarray(y, dtype=np.float64).ravel()
    err = _errors(y, pred)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else 0.0


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``{"rmse", "mae", "r2"}`` of predictions ``pred`` against targets ``y``."""
    return {"rmse": rmse(y, pred), "mae": mae(y, pred), "r2": r2(y, pred)}


# ---------------------------------------------------------------------------------------------- classification
def accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Share of rows whose predicted class equals the label."""
    return float(np.mean(np.asarray(pred) == np.asarray(labels)))


def log_loss(labels: np.ndarray, proba: np.ndarray) -> float:
    """Mean cross-entropy. ``proba``: P(class 1) in one column (binary) or one column per class;
    ``labels``: class indices."""
    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64).reshape(len(y), -1)
    if p.shape[1] == 1:
        p1 = np.clip(p[:, 0], EPS, 1 - EPS)
        return -float(np.mean(y * np.log(p1) + (1 - y) * np.log(1 - p1)))
    return -float(np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))))


def auc_binary(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for the positive rows of ``y`` (truthy = positive), by the rank-sum
    (Mann-Whitney) statistic, ties averaged; None without both classes."""
    pos = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    n_pos = int(pos.sum())
    n_neg = int(pos.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    ranks = avg_rank[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_macro(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Macro one-vs-rest AUC over the classes (columns of ``proba``) that have both positives and
    negatives in ``y``; None when none has."""
    aucs = [auc_binary(y == k, proba[:, k]) for k in range(proba.shape[1])]
    defined = [a for a in aucs if a is not None]
    return float(np.mean(defined)) if defined else None


def predicted_labels(task: str, out: np.ndarray) -> np.ndarray | None:
    """Class indices from model outputs (binary: P(class 1) in one column, or one column per class);
    None for regression."""
    out = np.asarray(out).reshape(out.shape[0], -1)
    if task == "regression":
        return None
    if out.shape[1] == 1:
        return (out[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(out, axis=1).astype(np.int64)


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """``{"accuracy", "auc", "log_loss"}``. ``proba``: P(class 1) in one column (binary) or one
    column per class; ``y``: class indices."""
    y = np.asarray(y).astype(np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64).reshape(len(y), -1)
    if p.shape[1] == 1:
        pred = (p[:, 0] >= 0.5).astype(np.int64)
        auc = auc_binary(y == 1, p[:, 0])
    else:
        pred = np.argmax(p, axis=1)
        auc = auc_macro(y, p)
    return {"accuracy": accuracy(y, pred), "auc": auc, "log_loss": log_loss(y, p)}


# ---------------------------------------------------------------------------------------------- one metric
def score(task: str, metric: str, y: np.ndarray, out: np.ndarray) -> float | None:
    """The metric named ``metric`` of outputs ``out`` (rows x k) against targets ``y`` (None when
    undefined)."""
    out = np.asarray(out, dtype=np.float64).reshape(len(y), -1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if metric == "rmse":
        return rmse(y, out[:, 0])
    if metric == "mae":
        return mae(y, out[:, 0])
    labels = y.astype(np.int64)
    if metric == "accuracy":
        pred = predicted_labels(task, out)
        return None if pred is None else accuracy(labels, pred)
    if metric == "auc":
        if out.shape[1] == 1:
            return auc_binary(labels, out[:, 0])
        return auc_macro(labels, out)
    raise ValueError(f"unknown metric {metric!r}")


# ---------------------------------------------------------------------------------------------- labelled traffic
def match_class(label: Any, classes: Sequence[Any]) -> int | None:
    """The index of ``label`` in ``classes``: equal, equal as text, or equal as a number (a CSV's
    ``"1.0"`` is class ``1``); None when it is none of them."""
    for i, c in enumerate(classes):
        if label == c or str(label) == str(c):
            return i
    try:
        value = float(label)
    except (TypeError, ValueError):
        return None
    for i, c in enumerate(classes):
        if isinstance(c, bool):
            continue
        try:
            if float(c) == value:
                return i
        except (TypeError, ValueError):
            continue
    return None


def _class_index(label: Any, classes: list[Any] | None) -> int | None:
    if classes is not None and (found := match_class(label, classes)) is not None:
        return found
    if isinstance(label, bool):
        return int(label)
    if isinstance(label, int | float) and float(label).is_integer() and label >= 0:
        return int(label)
    if isinstance(label, str) and label.strip().isdigit():
        return int(label)
    return None


def quality(
    task: str, outputs: np.ndarray, labels: list[Any], classes: list[Any] | None = None
) -> dict[str, Any]:
    """The training stage's quality metrics on labelled traffic.

    ``outputs`` are the captured model outputs (rows x k); regression: ``rmse``, ``mae``; binary and
    multiclass: ``accuracy`` and ``auc`` (macro one-vs-rest for multiclass; None when it cannot be
    computed). Binary: P(class 1) is the second of two columns, else the first; multiclass with one
    output column: the rounded output is the class. Labels that cannot be read for the task (classes
    by name or index) are left out and counted in ``unusable``.
    """
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != len(labels):
        raise ValueError("outputs and labels do not line up")
    if task == "regression":
        vals = np.array(
            [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in labels]
        )
        ok = np.isfinite(vals)
        if not ok.any():
            raise ValueError("no numeric labels")
        return {
            "rmse": rmse(vals[ok], y[ok, 0]),
            "mae": mae(vals[ok], y[ok, 0]),
            "n": int(ok.sum()),
            "unusable": int((~ok).sum()),
        }
    idx = np.array([(-1 if (c := _class_index(v, classes)) is None else c) for v in labels])
    k = y.shape[1]
    n_classes = len(classes) if classes else max(2 if task == "binary" else k, int(idx.max(initial=0)) + 1)
    ok = (idx >= 0) & (idx < n_classes)
    if not ok.any():
        raise ValueError("no usable class labels")
    lab, y = idx[ok], y[ok]
    auc: float | None
    if task == "binary":
        prob = y[:, 1] if k == 2 else y[:, 0]
        pred = (prob >= 0.5).astype(np.int64)
        auc = auc_binary(lab == 1, prob)
    elif k > 1:
        pred = np.argmax(y, axis=1)
        auc = auc_macro(lab, y[:, : min(k, n_classes)])
    else:
        pred = np.rint(y[:, 0]).astype(np.int64)
        auc = None
    return {"accuracy": accuracy(lab, pred), "auc": auc, "n": int(ok.sum()), "unusable": int((~ok).sum())}
