"""Drift statistics of captured traffic against a version's training baseline (numpy only), and the
verdict of one version's window (:class:`VersionContext`, :func:`judge`, :func:`labelled_quality`).

Everything here works on *partial statistics* that merge: the monitor computes one
:class:`FeaturePartial` per feature per chunk of a capture file, adds them up (``merge``), and only at
the end turns the sum into numbers (:func:`compare`). Partials of different files, Lambdas or Step
Functions Map iterations merge the same way (``to_dict`` / ``from_dict`` carry them as JSON).

The grid
--------
Each feature's baseline (``modelops/domain/baseline.py``) gives PSI bin ``edges`` (training quantiles), the
training ``min``/``max`` and a sorted reference ``sample``. The grid ``z`` is the sorted union of all
of them. A partial counts the current values in every grid cell ``[z[i-1], z[i])`` (``cells``, with
``z[-1] = -inf`` and ``z[len] = +inf``), the values *equal* to each grid point (``ties``) and the sum
of the values in each cell (``sums``). From these counts:

* **PSI** is exact. A value's PSI bin is ``searchsorted(edges, x, side="right")`` (baseline.py's
  rule); every edge is a grid point, so each cell lies in exactly one PSI bin. Empty bins (current or
  reference) are floored at ``EPSILON = 1e-4`` before the log, as Evidently does::

      PSI = sum_b (cur_b - ref_b) * ln(cur_b / ref_b)

* **KS** is exact: the two-sample statistic ``D = sup_t |F_ref(t) - F_cur(t)|`` between the
  baseline's reference sample and *all* current values. ``F_ref`` only jumps at sample values (grid
  points), so on a cell it is constant while ``F_cur`` rises monotonically; the supremum over the cell
  is at its two ends, ``F_cur(z[i-1])`` (ties included) and ``F_cur(z[i]-)``, both of which the counts
  give exactly. This is the value ``scipy.stats.ks_2samp(sample, current).statistic`` returns.

* **Out-of-range** (outside the training ``[min, max]``) and **missing** (NaN or +-inf) rates are exact.

* **Wasserstein-1** (``W1 = integral |F_ref - F_cur| dt``) is exact on every cell where ``F_cur``
  stays on one side of ``F_ref`` (the per-cell sums give the integral), and on the two open-ended
  outer cells. On a cell where ``F_cur`` crosses ``F_ref`` the integral lies between
  ``|c w - I|`` and ``w max(c - A, B - c)`` (``w`` the cell width, ``c`` the reference level,
  ``[A, B]`` the range of ``F_cur`` there); the midpoint is used, so
  ``|W1_binned - W1_exact| <= 1/2 * sum_{crossing cells} w_i * p_i`` (``p_i`` the current share of the
  cell). The bound is returned beside the value (``wasserstein_bound``). While a window holds at most
  ``EXACT_LIMIT`` values of a feature the partial also keeps them and W1 is computed exactly (bound 0);
  a larger window, or a partial that went through ``to_dict``, uses the binned value.
  ``wasserstein_norm = W1 / max(baseline std, 0.001)`` (Evidently's ``wasserstein_distance_norm``).

Categorical features
--------------------
A categorical feature's column holds vocabulary indices (``modelops/domain/encoding.py``:
``0 .. V - 1`` for the ``V`` values of the vocabulary, ``V`` for out-of-vocabulary, OOV). Its
baseline block (``"type": "categorical"``) holds the share of each of the ``V + 1`` indices. The
grid is the indices ``0 .. V`` plus the PSI edges ``k + 0.5`` between them, so each index's count is
the partial's ``ties`` at its grid point, exactly, and the same partials merge as for a numeric feature.

* **PSI** runs over the ``V + 1`` index buckets (OOV last), with the numeric PSI's ``EPSILON`` floor.
* **New-category rate**: the share of the window's rows in the OOV bucket (a value the vocabulary does
  not hold, or a missing one), against the baseline's OOV share (``baseline_new_category_rate``). Its
  own statistic with its own threshold: the window drifts when the rate rises more than
  ``new_category_threshold`` (absolute, default :data:`NEW_CATEGORY_THRESHOLD`) above the baseline's,
  whatever the PSI says (a few unknown values in a large vocabulary move PSI little).
* **Invalid** values (NaN, fractions, indices outside ``0 .. V``: a corrupt capture) are counted
  (``invalid``; ``missing_rate`` is their share of the rows) and left out of both statistics.
* KS, Wasserstein, mean/std and out-of-range are numeric statistics: None / 0 for a categorical feature.

The shares (``reference_proportions``, ``current_proportions``) and the rate are over the valid rows.

Tensor models
-------------
A tensor model's baseline (``schema_version`` 3, ``modelops/domain/baseline.py``) has one numeric
block per input *channel* (``image[c0]``, or ``meta`` for an input without channels) and one per
output. Each channel is a feature here: its partial counts every value of the channel (rows x
positions), so PSI, KS, W1, mean, std, min and max are over those values; a channel block carries the
baseline's share of zeros, and 0 joins its grid, so the partial's ``ties`` at 0 give the window's share
exactly (merging as every count does). Every output is compared as the tabular ``prediction`` is
(its number per row by the baseline's ``reduce`` rule). :class:`TensorLayout` is what a version's
context holds for this; :func:`judge_tensors` is :func:`judge` with the channels' summaries
(``min``, ``max``, ``zero_rate`` and the baseline's) and ``outputs``. An output's drift is reported,
never a reason for the verdict (as the tabular prediction's).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops.domain import metrics
from modelops.domain.encoding import NEW_CATEGORY_THRESHOLD as NEW_CATEGORY_THRESHOLD

EPSILON = 1e-4
"""Floor for an empty bin's share in PSI (Evidently uses the same)."""
EXACT_LIMIT = 100_000
"""A window with at most this many values of a feature keeps them, so W1 is computed exactly."""
STD_FLOOR = 0.001
"""Floor of the reference standard deviation that normalises W1 (Evidently's)."""


# ---------------------------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class FeatureReference:
    """One feature's baseline, prepared for fast comparison (built once per model version)."""

    name: str
    edges: np.ndarray  # PSI interior edges, strictly increasing
    proportions: np.ndarray  # reference share of each PSI bin
    sample: np.ndarray  # sorted reference sample (float64)
    grid: np.ndarray  # z: sorted union of edges, sample, min, max
    ref_cdf: np.ndarray  # F_ref(z[i]) = share of the sample <= z[i]
    cell_bin: np.ndarray  # PSI bin of each grid cell (len(grid) + 1)
    lo: float | None  # training min
    hi: float | None  # training max
    mean: float | None
    std: float | None
    missing_rate: float
    vocabulary: tuple[str, ...] | None = None  # a categorical feature's vocabulary (None: numeric)
    oov_rate: float = 0.0  # a categorical feature's baseline OOV share
    zero_rate: float | None = None  # a tensor channel's baseline share of zeros (0 is then a grid point)

    @property
    def categorical(self) -> bool:
        return self.vocabulary is not None

    @classmethod
    def from_stats(cls, name: str, stats: dict[str, Any]) -> FeatureReference:
        """From one ``STATS`` (or ``CATEGORICAL``) block of ``baseline.json``; raises ``ValueError`` on a
        malformed block."""
        if isinstance(stats, dict) and stats.get("type", "numeric") != "numeric":
            return cls.categorical_from_stats(name, stats)
        try:
            edges = np.asarray(stats.get("edges") or [], dtype=np.float64)
            props = np.asarray(stats.get("proportions") or [1.0], dtype=np.float64)
            sample = np.sort(np.asarray(stats.get("sample") or [], dtype=np.float64))
            lo, hi = stats.get("min"), stats.get("max")
            count = int(stats.get("count") or 0)
            missing = int(stats.get("missing") or 0)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"baseline of {name!r} is malformed: {exc}") from exc
        if props.size != edges.size + 1:
            raise ValueError(f"baseline of {name!r}: {edges.size} edges but {props.size} proportions")
        if edges.size > 1 and not np.all(np.diff(edges) > 0):
            raise ValueError(f"baseline of {name!r}: edges are not strictly increasing")
        if not (np.all(np.isfinite(edges)) and np.all(np.isfinite(sample))):
            raise ValueError(f"baseline of {name!r}: non-finite edges or sample")
        extra = [float(v) for v in (lo, hi) if v is not None and math.isfinite(float(v))]
        zero_rate = stats.get("zero_rate")
        if zero_rate is not None:
            if type(zero_rate) not in (int, float) or not 0.0 <= zero_rate <= 1.0:
                raise ValueError(f"baseline of {name!r}: zero_rate must be a share from 0 to 1")
            extra.append(0.0)
        grid = np.unique(np.concatenate([edges, sample, np.asarray(extra, dtype=np.float64)]))
        ref_cdf = (
            np.searchsorted(sample, grid, side="right") / sample.size if sample.size else np.zeros(grid.size)
        )
        # cell i holds [grid[i-1], grid[i]); its PSI bin is the number of edges <= grid[i-1]
        left = np.concatenate([[-np.inf], grid])
        cell_bin = np.searchsorted(edges, left, side="right")
        return cls(
            name=name,
            edges=edges,
            proportions=props,
            sample=sample,
            grid=grid,
            ref_cdf=ref_cdf,
            cell_bin=cell_bin,
            lo=None if lo is None else float(lo),
            hi=None if hi is None else float(hi),
            mean=None if stats.get("mean") is None else float(stats["mean"]),
            std=None if stats.get("std") is None else float(stats["std"]),
            missing_rate=(missing / count) if count else 0.0,
            zero_rate=None if zero_rate is None else float(zero_rate),
        )

    @classmethod
    def categorical_from_stats(cls, name: str, stats: dict[str, Any]) -> FeatureReference:
        """From one ``CATEGORICAL`` block (see the module docstring)."""
        if stats.get("type") != "categorical":
            raise ValueError(f"baseline of {name!r}: unknown type {str(stats.get('type'))[:40]!r}")
        vocab = stats.get("vocabulary")
        if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
            raise ValueError(f"baseline of {name!r}: a categorical block needs a list of strings")
        try:
            props = np.asarray(stats.get("proportions"), dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"baseline of {name!r} is malformed: {exc}") from exc
        if props.size != len(vocab) + 1:
            raise ValueError(
                f"baseline of {name!r}: {len(vocab)} categories but {props.size} proportions "
                "(expected one more, for OOV)"
            )
        if not np.all(np.isfinite(props)) or np.any(props < 0):
            raise ValueError(f"baseline of {name!r}: proportions must be finite and not negative")
        indices = np.arange(len(vocab) + 1, dtype=np.float64)
        edges = indices[:-1] + 0.5  # index k is PSI bin k
        grid = np.unique(np.concatenate([indices, edges]))
        left = np.concatenate([[-np.inf], grid])
        return cls(
            name=name,
            edges=edges,
            proportions=props,
            sample=np.zeros(0),
            grid=grid,
            ref_cdf=np.zeros(grid.size),
            cell_bin=np.searchsorted(edges, left, side="right"),
            lo=None,
            hi=None,
            mean=None,
            std=None,
            missing_rate=0.0,
            vocabulary=tuple(vocab),
            oov_rate=float(props[-1]),
        )

    def category_counts(self, part: FeaturePartial) -> np.ndarray:
        """A categorical feature's current count of each index ``0 .. V`` (exact; invalid values in none)."""
        assert self.vocabulary is not None
        return part.ties[0::2].astype(np.int64)  # grid: 0, 0.5, 1, 1.5, ..., V


def references(
    baseline: dict[str, Any], features: list[str]
) -> tuple[list[FeatureReference], FeatureReference]:
    """The references of ``features`` (schema order) and of the prediction, from ``baseline.json``."""
    try:
        feats = baseline["features"]
        out = [FeatureReference.from_stats(name, feats[name]) for name in features]
        pred = FeatureReference.from_stats("prediction", baseline["prediction"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"baseline.json lacks {exc}") from exc
    return out, pred


# ---------------------------------------------------------------------------------------------- partials
@dataclass
class FeaturePartial:
    """Mergeable statistics of one feature over some rows (see the module docstring)."""

    count: int  # rows seen (finite or not)
    missing: int  # NaN / +-inf
    cells: np.ndarray  # int64, len(grid) + 1: values in [grid[i-1], grid[i])
    ties: np.ndarray  # int64, len(grid): values equal to grid[i]
    sums: np.ndarray  # float64, len(grid) + 1: sum of the values in each cell
    sumsq: float
    vmin: float = math.inf
    vmax: float = -math.inf
    raw: list[np.ndarray] | None = field(default_factory=list)
    """The finite values (float32 or float64, as they came) while at most ``EXACT_LIMIT``."""
    sums_err: np.ndarray | None = None
    """What rounding left out of ``sums`` (float64, same shape; None: nothing yet): see :meth:`merge`."""
    sumsq_err: float = 0.0

    @classmethod
    def empty(cls, ref: FeatureReference) -> FeaturePartial:
        m = ref.grid.size
        return cls(0, 0, np.zeros(m + 1, np.int64), np.zeros(m, np.int64), np.zeros(m + 1), 0.0)

    @property
    def finite(self) -> int:
        return self.count - self.missing

    def merge(self, other: FeaturePartial) -> FeaturePartial:
        """Add ``other`` into this partial (in place) and return it."""
        if other.cells.shape != self.cells.shape:
            raise ValueError("partials of different baselines cannot merge")
        self.count += other.count
        self.missing += other.missing
        self.cells += other.cells
        self.ties += other.ties
        # Compensated (double-double) sums: ``sums`` is the rounded total and ``sums_err`` what the
        # rounding left out, so the total does not depend on how the block sums were grouped (one pass
        # over a window, or chunks merged later: the fan-out's partials equal the single pass's).
        total = self.sums + other.sums
        err = _two_sum(self.sums, other.sums)
        for extra in (self.sums_err, other.sums_err):
            if extra is not None:
                err += extra
        self.sums, self.sums_err = total + err, _two_sum(total, err)
        sq, sq_err = _two_sum_scalar(self.sumsq, other.sumsq)
        self.sumsq, self.sumsq_err = _two_sum_scalar(sq, sq_err + self.sumsq_err + other.sumsq_err)
        self.vmin = min(self.vmin, other.vmin)
        self.vmax = max(self.vmax, other.vmax)
        if self.raw is not None and other.raw is not None and self.finite <= EXACT_LIMIT:
            self.raw.extend(other.raw)
        else:
            self.raw = None
        return self

    def to_dict(self, *, exact: bool = False) -> dict[str, Any]:
        """JSON-able form (for fan-out). ``exact``: also carry the raw values (while the partial keeps
        them, at most ``EXACT_LIMIT``; little-endian float64, base64) and the sums' rounding errors, so
        that :meth:`from_dict` gives back a partial that merges and compares exactly like this one."""
        d: dict[str, Any] = {
            "count": self.count,
            "missing": self.missing,
            "cells": self.cells.tolist(),
            "ties": self.ties.tolist(),
            "sums": self.sums.tolist(),
            "sumsq": self.sumsq,
            "min": self.vmin if math.isfinite(self.vmin) else None,
            "max": self.vmax if math.isfinite(self.vmax) else None,
        }
        if exact:
            d["sums_err"] = None if self.sums_err is None else self.sums_err.tolist()
            d["sumsq_err"] = self.sumsq_err
            d["raw"] = (
                None
                if self.raw is None
                else base64.b64encode(
                    np.concatenate([*self.raw, np.zeros(0)]).astype("<f8").tobytes()
                ).decode("ascii")
            )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePartial:
        """The partial of :meth:`to_dict` (without ``exact``: no raw values, W1 is then the binned one)."""
        raw = d.get("raw")
        err = d.get("sums_err")
        return cls(
            count=int(d["count"]),
            missing=int(d["missing"]),
            cells=np.asarray(d["cells"], dtype=np.int64),
            ties=np.asarray(d["ties"], dtype=np.int64),
            sums=np.asarray(d["sums"], dtype=np.float64),
            sumsq=float(d["sumsq"]),
            vmin=math.inf if d.get("min") is None else float(d["min"]),
            vmax=-math.inf if d.get("max") is None else float(d["max"]),
            raw=[np.frombuffer(base64.b64decode(raw), dtype="<f8")] if isinstance(raw, str) else None,
            sums_err=None if err is None else np.asarray(err, dtype=np.float64),
            sumsq_err=float(d.get("sumsq_err") or 0.0),
        )


def _two_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rounding error of ``a + b`` (Knuth's TwoSum, elementwise, no order of magnitude assumed)."""
    s = a + b
    bb = s - a
    return (a - (s - bb)) + (b - bb)


def _two_sum_scalar(a: float, b: float) -> tuple[float, float]:
    """``(a + b rounded, its rounding error)`` (TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def partial(ref: FeatureReference, values: np.ndarray) -> FeaturePartial:
    """The partial statistics of one feature's values (any float dtype, NaN/inf count as missing)."""
    v = np.asarray(values).ravel()
    n = int(v.size)
    finite_mask = np.isfinite(v)
    if not finite_mask.all():
        v = v[finite_mask]
    # Sorting (SIMD-accelerated in numpy) makes every count a searchsorted of the small grid.
    ordered = np.sort(v)
    v = ordered.astype(np.float64, copy=False)
    m = ref.grid.size
    left = np.searchsorted(v, ref.grid, side="left")  # values < grid[i]
    # values equal to grid[i]: only where the first value at or above grid[i] is grid[i] itself (most
    # grid points have none, so the second search runs on those few points, not the whole grid)
    ties = np.zeros(m, dtype=np.int64)
    if v.size:
        hit = np.flatnonzero(v[np.minimum(left, v.size - 1)] == ref.grid)
        if hit.size:
            ties[hit] = np.searchsorted(v, ref.grid[hit], side="right") - left[hit]
    bounds = np.concatenate([[0], left, [v.size]])
    cells = np.diff(bounds).astype(np.int64)
    sums = np.zeros(m + 1)
    nonempty = cells > 0
    if v.size:
        starts = bounds[:-1][nonempty]
        sums[nonempty] = np.add.reduceat(v, starts)
    return FeaturePartial(
        count=n,
        missing=n - int(v.size),
        cells=cells,
        ties=ties,
        sums=sums,
        sumsq=float(np.sum(np.square(v))),  # not np.dot: BLAS threads cost more than they save here
        vmin=float(v[0]) if v.size else math.inf,
        vmax=float(v[-1]) if v.size else -math.inf,
        raw=[ordered if ordered.dtype == np.float32 else v] if v.size <= EXACT_LIMIT else None,
    )  # float32 values (captures) are kept as they came: half the memory, the same numbers


# ---------------------------------------------------------------------------------------------- statistics
def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """PSI between two vectors of bin shares (or counts of the current window, normalised here)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    total = cur.sum()
    if total <= 0:
        raise ValueError("no current values to compare")
    cur = cur / total
    ref = np.where(ref == 0, epsilon, ref)
    cur = np.where(cur == 0, epsilon, cur)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_bins(ref: FeatureReference, part: FeaturePartial) -> np.ndarray:
    """Current counts per PSI bin (exact integers)."""
    return np.bincount(ref.cell_bin, weights=part.cells, minlength=ref.edges.size + 1).astype(np.int64)


def ks_statistic(ref: FeatureReference, part: FeaturePartial) -> float:
    """Exact two-sample KS D between the reference sample and the partial's values."""
    n = part.finite
    if n == 0 or ref.sample.size == 0:
        raise ValueError("KS needs values on both sides")
    below = np.cumsum(part.cells)[:-1]  # values < grid[i]
    f_before = below / n  # F_cur(grid[i]-)
    f_at = (below + part.ties) / n  # F_cur(grid[i])
    r_at = ref.ref_cdf
    r_before = np.concatenate([[0.0], r_at[:-1]])  # F_ref is constant on [grid[i-1], grid[i])
    return float(max(np.max(np.abs(r_before - f_before)), np.max(np.abs(r_at - f_at))))


def ks_exact(sample: np.ndarray, values: np.ndarray) -> float:
    """Two-sample KS D by the textbook definition (independent of the partials)."""
    a = np.sort(np.asarray(sample, dtype=np.float64))
    b = np.sort(np.asarray(values, dtype=np.float64))
    points = np.concatenate([a, b])
    fa = np.searchsorted(a, points, side="right") / a.size
    fb = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def wasserstein_exact(sample: np.ndarray, values: np.ndarray) -> float:
    """W1 between two empirical distributions: integral of |F_a - F_b| (as scipy computes it)."""
    a = np.sort(np.asarray(sample, dtype=np.float64))
    b = np.sort(np.asarray(values, dtype=np.float64))
    allv = np.sort(np.concatenate([a, b]))
    deltas = np.diff(allv)
    fa = np.searchsorted(a, allv[:-1], side="right") / a.size
    fb = np.searchsorted(b, allv[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * deltas))


def wasserstein_binned(ref: FeatureReference, part: FeaturePartial) -> tuple[float, float]:
    """(W1 estimate, bound on its absolute error) from the partial's cell counts and sums."""
    n = part.finite
    z = ref.grid
    if n == 0 or ref.sample.size == 0 or z.size == 0:
        raise ValueError("Wasserstein needs values on both sides")
    cells = part.cells.astype(np.float64)
    sums = part.sums
    # outer cells: F_ref is 0 below the grid, 1 above it
    total = (cells[0] * z[0] - sums[0]) / n + (sums[-1] - cells[-1] * z[-1]) / n
    if z.size == 1:
        return float(total), 0.0
    width = np.diff(z)  # inner cells 1..m-1
    c = ref.ref_cdf[:-1]  # F_ref on [z[i-1], z[i])
    below = np.cumsum(cells)  # values < z[i] at index i
    a_lvl = below[:-2] / n  # F_cur(z[i-1]-)
    b_lvl = below[1:-1] / n  # F_cur(z[i]-)
    inner_cells = cells[1:-1]
    integral = a_lvl * width + (inner_cells * z[1:] - sums[1:-1]) / n  # integral of F_cur on the cell
    signed = c * width - integral
    crossing = (a_lvl < c) & (c < b_lvl)
    lower = np.abs(signed)
    upper = np.where(crossing, width * np.maximum(c - a_lvl, b_lvl - c), lower)
    total += float(np.sum((lower + upper) / 2))
    bound = float(np.sum((upper - lower) / 2))
    return float(total), bound


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    n: int  # finite current values
    count: int
    psi: float | None
    ks: float | None
    wasserstein: float | None
    wasserstein_norm: float | None
    wasserstein_bound: float | None
    exact: bool  # W1 computed exactly
    missing_rate: float
    out_of_range_rate: float
    mean: float | None
    std: float | None
    reference_proportions: list[float]
    current_proportions: list[float]
    edges: list[float]
    categorical: CategoricalDrift | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.categorical is not None:
            return {
                "name": self.name,
                "type": "categorical",
                "count": self.count,
                "n": self.n,
                "psi": self.psi,
                "ks": None,
                "wasserstein": None,
                "wasserstein_norm": None,
                "wasserstein_bound": None,
                "wasserstein_exact": False,
                "missing_rate": self.missing_rate,
                "out_of_range_rate": self.out_of_range_rate,
                "mean": None,
                "std": None,
                "edges": [],
                "reference_proportions": self.reference_proportions,
                "current_proportions": self.current_proportions,
                **self.categorical.to_dict(),
            }
        return {
            "name": self.name,
            "count": self.count,
            "n": self.n,
            "psi": self.psi,
            "ks": self.ks,
            "wasserstein": self.wasserstein,
            "wasserstein_norm": self.wasserstein_norm,
            "wasserstein_bound": self.wasserstein_bound,
            "wasserstein_exact": self.exact,
            "missing_rate": self.missing_rate,
            "out_of_range_rate": self.out_of_range_rate,
            "mean": self.mean,
            "std": self.std,
            "edges": self.edges,
            "reference_proportions": self.reference_proportions,
            "current_proportions": self.current_proportions,
        }


@dataclass(frozen=True)
class CategoricalDrift:
    """The categorical numbers of one feature (see the module docstring)."""

    vocabulary: list[str]
    counts: list[int]  # current count of each index 0 .. V (OOV last)
    new_category_rate: float | None  # OOV share of the valid rows (None: no valid rows)
    baseline_new_category_rate: float
    invalid: int  # NaN or not an index 0 .. V

    @property
    def new_category_rise(self) -> float | None:
        if self.new_category_rate is None:
            return None
        return self.new_category_rate - self.baseline_new_category_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocabulary": self.vocabulary,
            "counts": self.counts,
            "new_category_rate": self.new_category_rate,
            "baseline_new_category_rate": self.baseline_new_category_rate,
            "new_category_rise": self.new_category_rise,
            "invalid": self.invalid,
        }


def out_of_range(ref: FeatureReference, part: FeaturePartial) -> int:
    """Current values below the training min or above the training max (exact)."""
    z = ref.grid
    n_out = 0
    if ref.lo is not None:
        k = int(np.searchsorted(z, ref.lo))  # grid index of min
        n_out += int(part.cells[: k + 1].sum())  # values < z[k]
    if ref.hi is not None:
        k = int(np.searchsorted(z, ref.hi))
        n_out += int(part.cells[k + 1 :].sum()) - int(part.ties[k])  # values >= max, less those == max
    return n_out


def compare_categorical(ref: FeatureReference, part: FeaturePartial) -> FeatureDrift:
    """Every drift number of one categorical feature, from its merged partial."""
    assert ref.vocabulary is not None
    counts = ref.category_counts(part)
    n = int(counts.sum())
    invalid = part.count - n  # NaN, fractions, indices outside 0 .. V
    return FeatureDrift(
        name=ref.name,
        n=n,
        count=part.count,
        psi=psi(ref.proportions, counts) if n else None,
        ks=None,
        wasserstein=None,
        wasserstein_norm=None,
        wasserstein_bound=None,
        exact=False,
        missing_rate=(invalid / part.count) if part.count else 0.0,
        out_of_range_rate=0.0,
        mean=None,
        std=None,
        reference_proportions=[float(p) for p in ref.proportions],
        current_proportions=[float(c) / n for c in counts] if n else [0.0] * counts.size,
        edges=[],
        categorical=CategoricalDrift(
            vocabulary=list(ref.vocabulary),
            counts=[int(c) for c in counts],
            new_category_rate=(float(counts[-1]) / n) if n else None,
            baseline_new_category_rate=ref.oov_rate,
            invalid=invalid,
        ),
    )


def compare(ref: FeatureReference, part: FeaturePartial) -> FeatureDrift:
    """Every drift number of one feature, from its merged partial."""
    if ref.categorical:
        return compare_categorical(ref, part)
    n = part.finite
    bins = psi_bins(ref, part)
    psi_v = ks_v = w = wn = wb = None
    exact = False
    mean = std = None
    if n > 0:
        psi_v = psi(ref.proportions, bins)
        total = float(part.sums.sum())
        mean = total / n
        std = math.sqrt(max(part.sumsq / n - mean * mean, 0.0))
        if ref.sample.size:
            ks_v = ks_statistic(ref, part)
            if part.raw is not None:
                w = wasserstein_exact(ref.sample, np.concatenate(part.raw))
                wb, exact = 0.0, True
            else:
                w, wb = wasserstein_binned(ref, part)
            scale = max(ref.std or 0.0, STD_FLOOR)
            wn = w / scale
    return FeatureDrift(
        name=ref.name,
        n=n,
        count=part.count,
        psi=psi_v,
        ks=ks_v,
        wasserstein=w,
        wasserstein_norm=wn,
        wasserstein_bound=wb,
        exact=exact,
        missing_rate=(part.missing / part.count) if part.count else 0.0,
        out_of_range_rate=(out_of_range(ref, part) / part.count) if part.count else 0.0,
        mean=mean,
        std=std,
        reference_proportions=[float(p) for p in ref.proportions],
        current_proportions=[float(c) / n for c in bins] if n else [0.0] * bins.size,
        edges=[float(e) for e in ref.edges],
    )


# ---------------------------------------------------------------------------------------------- verdicts
QUALITY_METRICS = ("rmse", "mae", "accuracy", "auc")
"""The metrics of labelled traffic the monitor reports (of :func:`modelops.domain.metrics.quality`)."""


@dataclass
class VersionContext:
    """What the monitor judges one (model, version) against: its schema, thresholds, held-out
    metrics and baseline references (``refs``/``pred_ref`` None when there is no usable baseline,
    ``problem`` says why)."""

    model: str
    version: int
    features: list[str]
    task: str = "regression"
    classes: list[Any] | None = None
    target: str = "target"
    psi_threshold: float = 0.2
    new_category_threshold: float = NEW_CATEGORY_THRESHOLD
    retrain_on_drift: bool = False
    metric: str = "rmse"
    heldout: dict[str, float] = field(default_factory=dict)
    refs: list[FeatureReference] | None = None
    pred_ref: FeatureReference | None = None
    problem: str | None = None  # "no_baseline", "baseline_error: ..."; None when comparable
    settings: dict[str, Any] = field(default_factory=dict)
    """The monitoring settings in force: ``{"values", "sources", "problem"}``
    (:func:`modelops.domain.settings.effective`); empty when the caller gave none."""

    tensor: TensorLayout | None = None
    """A tensor model's layout (None: a tabular model); ``features`` are then its input channels."""

    @property
    def n_features(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class TensorLayout:
    """How a tensor version's traffic is compared: each input's row shape, dtype and channel names
    (``features`` order), and each output's row shape, dtype, reduction and reference."""

    inputs: tuple[tuple[str, tuple[int, ...], str, tuple[str, ...]], ...]  # name, shape, dtype, channels
    outputs: tuple[tuple[str, tuple[int, ...], str, str], ...]  # name, shape, dtype, reduce
    out_refs: tuple[FeatureReference, ...]

    def matches(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> bool:
        """A captured line's arrays are this signature's (names in order, row shapes and dtypes)."""
        return _same(self.inputs, inputs) and _same(self.outputs, outputs)


def _same(specs: tuple[tuple[Any, ...], ...], arrays: dict[str, np.ndarray]) -> bool:
    if len(specs) != len(arrays):
        return False
    for (name, shape, dtype, _), (got, a) in zip(specs, arrays.items(), strict=True):
        if name != got or tuple(a.shape[1:]) != shape or a.dtype.name != dtype:
            return False
    return True


def zero_count(ref: FeatureReference, part: FeaturePartial) -> int | None:
    """The partial's values equal to 0 (exact), for a reference whose grid holds 0 (a tensor channel)."""
    k = int(np.searchsorted(ref.grid, 0.0))
    if ref.zero_rate is None or k >= ref.grid.size or ref.grid[k] != 0.0:
        return None
    return int(part.ties[k])


def judge_tensors(
    ctx: VersionContext,
    parts: list[FeaturePartial] | None,
    pred: FeaturePartial | None,
    rows: int,
    min_samples: int,
) -> dict[str, Any]:
    """:func:`judge` of a tensor version: ``parts`` are its channels' partials then its outputs'
    (``ctx.tensor.out_refs`` order). Each channel's entry adds ``min``, ``max``, ``zero_rate`` and
    ``baseline`` (the same four and ``mean``/``std`` of the baseline); a drifted channel's entry too
    (``input``, the numbers the alert shows); ``outputs`` holds every output's drift numbers."""
    assert ctx.tensor is not None
    nc = ctx.n_features
    out = judge(ctx, None if parts is None else parts[:nc], pred, rows, min_samples)
    out["kind"] = "tensor"
    out["outputs"] = []
    if parts is None or ctx.refs is None or out["verdict"] not in ("ok", "drift"):
        return out
    by_name: dict[str, dict[str, Any]] = {}
    for ref, part, entry in zip(ctx.refs, parts[:nc], out["features"], strict=True):
        zeros = zero_count(ref, part)
        n = part.finite
        entry.update(
            {
                "input": ref.name.split("[", 1)[0],
                "min": part.vmin if n else None,
                "max": part.vmax if n else None,
                "zero_rate": (zeros / part.count) if zeros is not None and part.count else None,
                "baseline": {
                    "mean": ref.mean,
                    "std": ref.std,
                    "min": ref.lo,
                    "max": ref.hi,
                    "zero_rate": ref.zero_rate,
                },
            }
        )
        by_name[ref.name] = entry
    for d in out["drifted_features"]:
        f = by_name[d["name"]]
        d.update({k: f[k] for k in ("input", "mean", "std", "min", "max", "zero_rate", "baseline")})
    out["outputs"] = [
        {**compare(ref, part).to_dict(), "reduce": spec[3]}
        for spec, ref, part in zip(ctx.tensor.outputs, ctx.tensor.out_refs, parts[nc:], strict=True)
    ]
    return out


def prediction_column(y: np.ndarray, task: str) -> np.ndarray:
    """The number per row that the baseline's ``prediction`` describes (see baseline.py)."""
    if y.shape[1] == 1:
        return y[:, 0]
    if task == "binary" and y.shape[1] == 2:
        return y[:, 1]
    if task == "regression":
        return y[:, 0]
    return np.argmax(y, axis=1).astype(np.float32)


def judge(
    ctx: VersionContext,
    parts: list[FeaturePartial] | None,
    pred: FeaturePartial | None,
    rows: int,
    min_samples: int,
) -> dict[str, Any]:
    """The verdict of a version's window from its merged partials: ``no_baseline`` /
    ``baseline_error`` (with ``problem``), ``insufficient_samples`` (fewer than ``min_samples`` rows),
    else ``drift`` when a feature's PSI exceeds the version's threshold or a categorical feature's
    new-category rate rises more than ``new_category_threshold`` above its baseline's, or ``ok``; with
    every number behind it (per-feature statistics, the prediction's, the worst PSI and its ratio to
    the threshold). A drifted categorical feature's entry also says why (``reasons``) and gives its
    new-category rates; a version with categorical features has ``max_new_category_rise`` and
    ``new_category_threshold`` (absent otherwise, so a numeric version's verdict is as before)."""
    out: dict[str, Any] = {
        "drift": False,
        "max_psi": None,
        "max_psi_ratio": None,
        "drifted_features": [],
        "features": [],
        "prediction": None,
        "missing_rate": None,
    }
    if ctx.problem is not None or parts is None or pred is None or ctx.refs is None or ctx.pred_ref is None:
        out["verdict"] = "no_baseline" if ctx.problem in (None, "no_baseline") else "baseline_error"
        out["problem"] = ctx.problem or "no_baseline"
        return out
    cells = sum(p.count for p in parts)
    out["missing_rate"] = (sum(p.missing for p in parts) / cells) if cells else None
    if rows < min_samples:
        out["verdict"] = "insufficient_samples"
        out["min_samples"] = min_samples
        return out
    feats = [compare(r, p) for r, p in zip(ctx.refs, parts, strict=True)]
    out["features"] = [f.to_dict() for f in feats]
    out["prediction"] = compare(ctx.pred_ref, pred).to_dict()
    psis = [f.psi for f in feats if f.psi is not None]
    max_psi = max(psis) if psis else 0.0
    drifted = sorted((f for f in feats if drift_reasons(ctx, f)), key=lambda f: -(f.psi or 0.0))
    out.update(
        {
            "verdict": "drift" if drifted else "ok",
            "drift": bool(drifted),
            "max_psi": max_psi,
            "max_psi_ratio": max_psi / ctx.psi_threshold,
            "drifted_features": [_drifted(ctx, f) for f in drifted],
        }
    )
    rises = [f.categorical.new_category_rise for f in feats if f.categorical is not None]
    if rises:
        known = [r for r in rises if r is not None]
        out["max_new_category_rise"] = max(known) if known else None
        out["new_category_threshold"] = ctx.new_category_threshold
    return out


def drift_reasons(ctx: VersionContext, f: FeatureDrift) -> list[str]:
    """Why a feature drifted: ``psi`` (above the version's threshold) and/or ``new_category_rate``
    (a categorical feature's OOV share rose more than the threshold); empty when it did not."""
    reasons = ["psi"] if f.psi is not None and f.psi > ctx.psi_threshold else []
    rise = f.categorical.new_category_rise if f.categorical is not None else None
    if rise is not None and rise > ctx.new_category_threshold:
        reasons.append("new_category_rate")
    return reasons


def _drifted(ctx: VersionContext, f: FeatureDrift) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f.name, "psi": f.psi, "ks": f.ks, "wasserstein_norm": f.wasserstein_norm}
    if f.categorical is not None:
        entry.update(
            {
                "type": "categorical",
                "reasons": drift_reasons(ctx, f),
                "new_category_rate": f.categorical.new_category_rate,
                "baseline_new_category_rate": f.categorical.baseline_new_category_rate,
                "new_category_threshold": ctx.new_category_threshold,
            }
        )
    return entry


def labelled_quality(ctx: VersionContext, outputs: np.ndarray, labels: list[Any]) -> dict[str, Any] | None:
    """Quality metrics of the labelled rows (``outputs`` rows x k, one label each) beside the version's
    held-out values and their change; None without labels."""
    if not labels:
        return None
    try:
        got = metrics.quality(ctx.task, outputs, labels, ctx.classes)
    except ValueError as exc:
        return {"labelled": len(labels), "error": str(exc)}
    values = {m: got[m] for m in QUALITY_METRICS if m in got}
    delta = {m: v - ctx.heldout[m] for m, v in values.items() if m in ctx.heldout and v is not None}
    return {
        "labelled": len(labels),
        "used": got["n"],
        "unusable": got["unusable"],
        "metrics": values,
        "heldout": {m: ctx.heldout[m] for m in values if m in ctx.heldout},
        "delta": delta,
        "metric": ctx.metric,
    }
