"""The monitoring baseline: what the training data looked like, so the monitor can compare traffic.

Computed by the trainer on the training rows (numpy only), stored in the registry as ``baseline.json``
beside the model, and read by the monitor. Format (``schema_version`` 1)::

    {"schema_version": 1, "n_rows": int, "n_bins": int,
     "features": {name: STATS, ...},  "prediction": STATS}

    STATS = {"count", "missing", "min", "max", "mean", "std",
             "edges": [...],         # interior bin edges, strictly increasing (len = bins - 1)
             "proportions": [...],   # reference share of each bin (len = len(edges) + 1, sums to 1)
             "sample": [...]}        # sorted reference sample (at most SAMPLE_SIZE values), for KS

A value x falls into bin ``searchsorted(edges, x, side="right")``: the outer bins are open-ended,
so every finite value has a bin. Edges are quantiles of the training data (deciles by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCHEMA_VERSION = 1
DEFAULT_BINS = 10
SAMPLE_SIZE = 2000


def column_stats(values: np.ndarray, n_bins: int = DEFAULT_BINS, seed: int = 0) -> dict[str, Any]:
    """Baseline statistics of one numeric column (NaN counts as missing).

    Values are taken as float32 first: the model's input is float32 and so is captured traffic, and
    an edge computed in float64 would put a float32-rounded copy of the same value into another bin
    (a binary feature would look drifted).
    """
    v = np.asarray(values, dtype=np.float32).astype(np.float64).ravel()
    finite = v[np.isfinite(v)]
    missing = int(v.size - finite.size)
    if finite.size == 0:
        return {
            "count": int(v.size),
            "missing": missing,
            "min": None,
            "max": None,
            "mean": None,
            "std": None,
            "edges": [],
            "proportions": [1.0],
            "sample": [],
        }
    qs = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    edges = _between_values(np.unique(finite), np.unique(qs))
    idx = np.searchsorted(edges, finite, side="right")
    counts = np.bincount(idx, minlength=edges.size + 1).astype(np.float64)
    rng = np.random.default_rng(seed)
    sample = finite if finite.size <= SAMPLE_SIZE else rng.choice(finite, SAMPLE_SIZE, replace=False)
    return {
        "count": int(v.size),
        "missing": missing,
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "edges": [float(e) for e in edges],
        "proportions": [float(c) for c in counts / counts.sum()],
        "sample": [float(s) for s in np.sort(sample)],
    }


def _between_values(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Move each edge that sits exactly on a training value to the midpoint below that value.

    Every training value keeps its bin (nothing lies between the two), but a value that arrives a
    rounding error away from it (a discrete feature written with fewer digits, float32 vs float64)
    no longer falls into the neighbouring bin. (Below the minimum, out-of-range counts tell.)
    """
    edges = edges[edges > values[0]]  # an edge at the minimum only opens a bin no training value is in
    pos = np.searchsorted(values, edges)
    on_value = (pos < values.size) & (values[np.minimum(pos, values.size - 1)] == edges)
    moved = edges.copy()
    moved[on_value] = (values[pos[on_value] - 1] + values[pos[on_value]]) / 2.0
    return np.unique(moved)


def compute_baseline(
    x: np.ndarray, feature_names: list[str], prediction: np.ndarray, n_bins: int = DEFAULT_BINS, seed: int = 0
) -> dict[str, Any]:
    """Baseline of a feature matrix ``x`` (rows x features, schema order) and the model's prediction.

    ``prediction`` is the regression output, or the positive-class probability (binary), or the
    predicted class index (multiclass): one number per row.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x has shape {x.shape}, expected (rows, {len(feature_names)})")
    return {
        "schema_version": SCHEMA_VERSION,
        "n_rows": int(x.shape[0]),
        "n_bins": n_bins,
        "features": {name: column_stats(x[:, i], n_bins, seed + i) for i, name in enumerate(feature_names)},
        "prediction": column_stats(
            np.asarray(prediction).reshape(x.shape[0], -1)[:, 0], n_bins, seed + 10_007
        ),
    }
