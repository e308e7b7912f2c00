"""The monitoring baseline: what the training data looked like, so the monitor can compare traffic.

Computed by the trainer on the training rows (numpy only), stored in the registry as ``baseline.json``
beside the model, and read by the monitor. Format (``schema_version`` 1, or 2 when a feature is
categorical)::

    {"schema_version": 1 | 2, "n_rows": int, "n_bins": int,
     "features": {name: STATS | CATEGORICAL, ...},  "prediction": STATS}

    STATS = {"count", "missing", "min", "max", "mean", "std",
             "edges": [...],         # interior bin edges, strictly increasing (len = bins - 1)
             "proportions": [...],   # reference share of each bin (len = len(edges) + 1, sums to 1)
             "sample": [...]}        # sorted reference sample (at most SAMPLE_SIZE values), for KS

A value x falls into bin ``searchsorted(edges, x, side="right")``: the outer bins are open-ended,
so every finite value has a bin. Edges are quantiles of the training data (deciles by default).

A categorical feature (``modelops/domain/encoding.py``: its column holds the vocabulary index, and
``len(vocabulary)`` is the out-of-vocabulary bucket, OOV, where unknown and missing values go) has
category shares instead::

    CATEGORICAL = {"type": "categorical", "count": int,
                   "missing": 0,              # a missing category is OOV, never NaN
                   "vocabulary": [...],       # the schema's vocabulary, in index order
                   "proportions": [...],      # share of each index 0 .. len(vocabulary), OOV last
                   "oov_rate": float}         # = proportions[-1]

A ``STATS`` block has no ``type`` (numeric), so a version-1 baseline reads as before; the monitor
reads both versions. Version 2 only says that a reader must understand ``CATEGORICAL`` blocks: a
baseline without categorical features is still written as version 1.

A tensor model (a schema with ``inputs``/``outputs``, ``modelops/domain/signature.py``) has a
baseline of ``schema_version`` 3 (:func:`compute_tensor_baseline`): its ``features`` are the
*channels* of its inputs, each a ``STATS`` block over every value of that channel (all rows and
positions) with the share of zeros added, and every output has a ``STATS`` block of one number per row::

    {"schema_version": 3, "kind": "tensor", "n_rows": int, "n_bins": int,
     "inputs":  {input: {"shape": [...], "channels": [feature name, ...]}, ...},
     "features": {"image[c0]": STATS + {"input", "channel", "zeros", "zero_rate"}, ...},
     "outputs":  {output: STATS + {"reduce"}, ...},
     "prediction": the first output's block}

Channels: an input whose row shape has rank 3 or more (``[height, width, channels]``) has one channel
per index of its last axis, named ``input[cK]``; any other input (``[n]``, ``[seq]``, ``[h, w]``) is
one channel over all its values, named ``input``. An output's number per row (``reduce``) is its value
when the output has one value per row (``"value"``), the index of its largest value when each row
looks like class probabilities (``"argmax"``: every value in [0, 1] and each row sums to 1 within
1e-3), and otherwise the mean of the row's values (``"mean"``). The monitor applies the same rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelops.domain.encoding import Feature, InputSchema

SCHEMA_VERSION = 1
CATEGORICAL_SCHEMA_VERSION = 2
"""The version of a baseline with at least one categorical feature."""
TENSOR_SCHEMA_VERSION = 3
"""The version of a tensor model's baseline (:func:`compute_tensor_baseline`)."""
PROBABILITY_TOLERANCE = 1e-3
"""How far a row of an output may sum from 1 and still read as class probabilities (``argmax``)."""
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


def categorical_stats(values: np.ndarray, feature: Feature) -> dict[str, Any]:
    """Baseline shares of one categorical column of vocabulary indices (OOV = ``len(vocabulary)``).

    Raises ``ValueError`` on a value that is not an index (NaN, a fraction, outside
    ``0 .. len(vocabulary)``): the trainer encodes every training cell, so such a value is a bug.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    buckets = feature.buckets
    valid = np.isfinite(v) & (v == np.round(v)) & (v >= 0) & (v <= feature.oov_index)
    if not valid.all():
        bad = v[~valid][:3].tolist()
        raise ValueError(
            f"feature {feature.name!r}: {int((~valid).sum())} value(s) are not vocabulary indices "
            f"0..{feature.oov_index} (first: {bad})"
        )
    counts = np.bincount(v.astype(np.int64), minlength=buckets).astype(np.float64)
    props = counts / counts.sum() if v.size else np.concatenate([np.zeros(buckets - 1), [1.0]])
    return {
        "type": "categorical",
        "count": int(v.size),
        "missing": 0,
        "vocabulary": list(feature.vocabulary),
        "proportions": [float(p) for p in props],
        "oov_rate": float(props[-1]),
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
    x: np.ndarray,
    feature_names: list[str],
    prediction: np.ndarray,
    n_bins: int = DEFAULT_BINS,
    seed: int = 0,
    schema: InputSchema | None = None,
) -> dict[str, Any]:
    """Baseline of a feature matrix ``x`` (rows x features, schema order) and the model's prediction.

    ``prediction`` is the regression output, or the positive-class probability (binary), or the
    predicted class index (multiclass): one number per row. ``schema`` (the version's input schema)
    says which features are categorical (``x`` then holds their vocabulary indices); without it every
    feature is numeric. Its feature names must be ``feature_names``, in order.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x has shape {x.shape}, expected (rows, {len(feature_names)})")
    if schema is not None and list(schema.names) != list(feature_names):
        raise ValueError(f"the schema's features {list(schema.names)} are not {list(feature_names)}")
    features: dict[str, Any] = {}
    for i, name in enumerate(feature_names):
        feature = schema.features[i] if schema is not None else None
        if feature is not None and feature.categorical:
            features[name] = categorical_stats(x[:, i], feature)
        else:
            features[name] = column_stats(x[:, i], n_bins, seed + i)
    categorical = schema is not None and schema.categorical
    return {
        "schema_version": CATEGORICAL_SCHEMA_VERSION if categorical else SCHEMA_VERSION,
        "n_rows": int(x.shape[0]),
        "n_bins": n_bins,
        "features": features,
        "prediction": column_stats(
            np.asarray(prediction).reshape(x.shape[0], -1)[:, 0], n_bins, seed + 10_007
        ),
    }


def channel_names(name: str, row_shape: tuple[int, ...]) -> list[str]:
    """The monitored channels of an input with this row shape (batch left out): ``name[cK]`` per index
    of the last axis when the rank is 3 or more, else ``[name]`` (see the module docstring)."""
    if len(row_shape) >= 3:
        return [f"{name}[c{k}]" for k in range(row_shape[-1])]
    return [name]


def channel_values(x: np.ndarray) -> list[np.ndarray]:
    """Every value of each channel of ``x`` (rows x row shape), flat, in :func:`channel_names` order."""
    if x.ndim >= 4:
        flat = x.reshape(-1, x.shape[-1])
        return [flat[:, k] for k in range(x.shape[-1])]
    return [x.reshape(-1)]


def _per_row(y: np.ndarray) -> np.ndarray:
    return y.reshape(y.shape[0], int(np.prod(y.shape[1:], dtype=np.int64)))


def output_reduce(y: np.ndarray) -> str:
    """How an output (rows x row shape) becomes one number per row: ``value``, ``argmax`` or ``mean``."""
    flat = _per_row(y)
    if flat.shape[1] == 1:
        return "value"
    v = flat.astype(np.float64)
    if (
        flat.shape[0]
        and np.all(np.isfinite(v))
        and np.all((v >= 0) & (v <= 1))
        and np.all(np.abs(v.sum(axis=1) - 1.0) <= PROBABILITY_TOLERANCE)
    ):
        return "argmax"
    return "mean"


def output_column(y: np.ndarray, reduce: str) -> np.ndarray:
    """One number per row of an output (rows x row shape), by its ``reduce`` rule."""
    flat = _per_row(np.asarray(y))
    if reduce == "value":
        return flat[:, 0].astype(np.float64)
    if reduce == "argmax":
        return np.argmax(flat, axis=1).astype(np.float64)
    if reduce == "mean":
        return flat.astype(np.float64).mean(axis=1) if flat.shape[1] else np.full(flat.shape[0], np.nan)
    raise ValueError(f"unknown output reduction {str(reduce)[:20]!r}")


def compute_tensor_baseline(
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    seed: int = 0,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Baseline of a tensor model (``schema_version`` 3, see the module docstring) from its sample or
    training rows: ``inputs`` and ``outputs`` map each name to an array with the rows first (the
    signature's order; every array has the same number of rows). Raises ``ValueError`` when there is
    no input or output, or the arrays disagree on the rows."""
    if not inputs or not outputs:
        raise ValueError("a tensor baseline needs at least one input and one output")
    arrays = {f"input {k!r}": np.asarray(v) for k, v in inputs.items()}
    arrays.update({f"output {k!r}": np.asarray(v) for k, v in outputs.items()})
    rows = {where: (int(a.shape[0]) if a.ndim else -1) for where, a in arrays.items()}
    if -1 in rows.values() or len(set(rows.values())) != 1:
        raise ValueError(f"every input and output needs the same number of rows first: {rows}")
    n_rows = next(iter(rows.values()))
    ins: dict[str, Any] = {}
    features: dict[str, Any] = {}
    i = 0
    for name, x in inputs.items():
        x = np.asarray(x)
        names = channel_names(name, tuple(x.shape[1:]))
        ins[name] = {"shape": [int(d) for d in x.shape[1:]], "channels": names}
        for k, (channel, values) in enumerate(zip(names, channel_values(x), strict=True)):
            stats = column_stats(values, n_bins, seed + i)
            zeros = int(np.count_nonzero(np.asarray(values, dtype=np.float32) == 0))
            stats.update(
                {
                    "input": name,
                    "channel": k if len(names) > 1 or channel != name else None,
                    "zeros": zeros,
                    "zero_rate": zeros / values.size if values.size else 0.0,
                }
            )
            features[channel] = stats
            i += 1
    outs: dict[str, Any] = {}
    for j, (name, y) in enumerate(outputs.items()):
        y = np.asarray(y)
        reduce = output_reduce(y)
        stats = column_stats(output_column(y, reduce), n_bins, seed + 10_007 + j)
        stats["reduce"] = reduce
        outs[name] = stats
    return {
        "schema_version": TENSOR_SCHEMA_VERSION,
        "kind": "tensor",
        "n_rows": int(n_rows),
        "n_bins": n_bins,
        "inputs": ins,
        "features": features,
        "outputs": outs,
        "prediction": dict(next(iter(outs.values()))),
    }
