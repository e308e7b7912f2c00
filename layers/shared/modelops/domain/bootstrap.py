"""The promotion gate's noise check: a paired bootstrap of the metric difference (docs/convert.md
"The promotion gate").

Both models were scored on the same evaluation rows. One resample draws ``n`` row indices with
replacement; the candidate's and production's metric are computed on **the same** drawn rows (paired:
the row-to-row difficulty cancels out), and their difference is signed so that positive always means
"the candidate is better" (``production - candidate`` for rmse/mae, ``candidate - production`` for
accuracy/auc). Over ``resamples`` draws, the 2.5th and 97.5th percentiles of that difference are the 95%
interval; the gate promotes only when the lower bound beats ``min_improvement``.

Every metric is :func:`modelops.domain.metrics.score` (the one metrics module). The generator is
numpy's PCG64 seeded by :func:`seed_for` (the model and both versions), and indices are drawn in
blocks of :data:`BLOCK` resamples, so the same rows, outputs and seed always give the same interval.
A resample on which a metric is undefined (AUC with one class drawn) is left out and counted.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelops.domain.metrics import score
from modelops.domain.spec import LOWER_IS_BETTER

RESAMPLES = 1000
CONFIDENCE = 0.95
BLOCK = 50
"""Resamples whose indices are drawn in one call (bounds memory: BLOCK x rows indices)."""


@dataclass(frozen=True)
class Interval:
    """The bootstrap interval of the improvement (positive = the candidate is better)."""

    improvement: float
    """On all the rows (not resampled)."""
    lower: float
    upper: float
    resamples: int
    """Resamples drawn."""
    undefined: int
    """Resamples on which the metric was undefined for either model (left out)."""
    seed: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_for(model: str, candidate: int, production: int | None) -> int:
    """The bootstrap's seed: the first 8 bytes of SHA-256(model, candidate, production), below 2**63."""
    raw = f"{model}\x00{candidate}\x00{production}".encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") >> 1


def improvement(metric: str, candidate: float, production: float) -> float:
    """How much better the candidate is (positive = better), by the metric's direction."""
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"unknown promotion metric {metric!r}")
    return production - candidate if LOWER_IS_BETTER[metric] else candidate - production


def paired_bootstrap(
    task: str,
    metric: str,
    y_candidate: np.ndarray,
    out_candidate: np.ndarray,
    y_production: np.ndarray,
    out_production: np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The paired bootstrap interval of ``improvement(metric, candidate, production)``.

    ``y_*`` are each model's targets for the same rows (class indices in that model's class order for
    classification; the rows are the same, the label encodings may differ), ``out_*`` its outputs.
    Raises ValueError when the rows do not line up, there are none, or the metric is undefined on all
    of them.
    """
    n = len(y_candidate)
    if n == 0:
        raise ValueError("no evaluation rows")
    if not (len(out_candidate) == len(y_production) == len(out_production) == n):
        raise ValueError("the two models' targets and outputs do not line up")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("resamples must be >= 1 and confidence in (0, 1)")
    oc = np.asarray(out_candidate, dtype=np.float64).reshape(n, -1)
    op = np.asarray(out_production, dtype=np.float64).reshape(n, -1)
    yc = np.asarray(y_candidate, dtype=np.float64).reshape(n)
    yp = np.asarray(y_production, dtype=np.float64).reshape(n)
    cand_all, prod_all = score(task, metric, yc, oc), score(task, metric, yp, op)
    if cand_all is None or prod_all is None:
        raise ValueError(f"{metric} is undefined on these rows")
    point = improvement(metric, cand_all, prod_all)
    rng = np.random.default_rng(seed)
    diffs: list[float] = []
    undefined = 0
    done = 0
    while done < resamples:
        block = rng.integers(0, n, size=(min(BLOCK, resamples - done), n))
        for idx in block:
            c = score(task, metric, yc[idx], oc[idx])
            p = score(task, metric, yp[idx], op[idx])
            if c is None or p is None or not (math.isfinite(c) and math.isfinite(p)):
                undefined += 1
                continue
            diffs.append(improvement(metric, c, p))
        done += len(block)
    if not diffs:
        raise ValueError(f"{metric} is undefined on every resample")
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(np.asarray(diffs), [tail, 1.0 - tail])
    return Interval(
        improvement=float(point),
        lower=float(lower),
        upper=float(upper),
        resamples=resamples,
        undefined=undefined,
        seed=seed,
        confidence=confidence,
    )
