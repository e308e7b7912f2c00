"""Quality metrics, numpy only: one definition for the trainer (held-out metrics), convert (the
int8 metric delta) and the monitor (quality of labelled traffic), so the gate and the monitor
compare like with like."""

from __future__ import annotations

import numpy as np


def auc_binary(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) statistic, ties averaged; None without both classes."""
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
    """Macro one-vs-rest AUC over the classes that have both positives and negatives in ``y``."""
    aucs = [auc_binary(y == k, proba[:, k]) for k in range(proba.shape[1])]
    defined = [a for a in aucs if a is not None]
    return float(np.mean(defined)) if defined else None
