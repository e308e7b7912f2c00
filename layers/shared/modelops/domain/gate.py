"""The promotion gate's decision: may a freshly published version serve traffic? (docs/convert.md)

Pure (no I/O, no numpy, no TensorFlow): :func:`decide` compares a candidate's held-out metrics with
production's, :meth:`Decision.new_alias` says which alias document that asks for (through
:mod:`modelops.domain.canary`), and :func:`prior_decision` finds an earlier decision in the alias
history. The gate stage (:mod:`modelops.stages.gate`, its own function, apart from convert: docs/convert.md
"Trust boundary") applies the decision inside the registry's alias compare-and-swap, so when someone
else moves production while the gate runs, the candidate is compared again with the new production:
never applied blindly on top of it.

Rules (from the spec's ``promotion`` section):

- no production alias yet: the candidate becomes production (the first version of a model);
- the candidate's held-out ``metric`` must beat production's by more than zero and by at least
  ``min_improvement`` (lower is better for rmse/mae, ``spec.LOWER_IS_BETTER``);
- with ``canary_weight > 0`` a winning candidate becomes the alias's canary at that weight
  instead of production (the alert stage rolls a canary back when an alarm or drift names it;
  only ``modelops models promote`` finishes one);
- otherwise production is kept, and "kept production vN" is recorded with the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelops.domain import canary
from modelops.domain.alias import PRODUCTION, AliasDoc
from modelops.domain.spec import LOWER_IS_BETTER

ALIAS = PRODUCTION
Action = Literal["promote", "canary", "keep", "none"]


@dataclass(frozen=True)
class Decision:
    """What the gate decided, and the numbers behind it."""

    action: Action
    candidate: int
    production: int | None
    metric: str
    candidate_value: float | None
    production_value: float | None
    min_improvement: float
    improvement: float | None
    canary_weight: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def new_alias(self, current: AliasDoc | None) -> AliasDoc | None:
        """The alias document this decision asks for (None: leave the alias as it is)."""
        if self.action == "promote":
            return canary.promote(current, self.candidate, alias=ALIAS, reason=self.reason)
        if self.action == "canary":
            return canary.start(current, self.candidate, self.canary_weight, reason=self.reason)
        return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def decide(
    candidate: int,
    candidate_metrics: Mapping[str, Any],
    current: AliasDoc | None,
    production_metrics: Mapping[str, Any] | None,
    *,
    metric: str,
    min_improvement: float = 0.0,
    canary_weight: float = 0.0,
) -> Decision:
    """Compare a candidate with the current production alias (pure; no I/O).

    ``production_metrics`` is None when production's manifest cannot be read (a dangling or corrupt
    alias): the candidate then replaces it, since production cannot serve anyway.
    """
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"unknown promotion metric {metric!r}")
    cand = _finite(candidate_metrics.get(metric))

    def made(
        action: Action,
        reason: str,
        production: int | None = None,
        value: float | None = None,
        improvement: float | None = None,
    ) -> Decision:
        return Decision(
            action=action,
            candidate=candidate,
            production=production,
            metric=metric,
            candidate_value=cand,
            production_value=value,
            min_improvement=float(min_improvement),
            improvement=improvement,
            canary_weight=float(canary_weight),
            reason=reason,
        )

    if current is None:
        return made("promote", f"v{candidate} is the first version of the model: it becomes production")
    prod = current.version
    if prod == candidate:
        return made("none", f"v{candidate} is already production", prod, cand)
    if current.canary is not None and current.canary.get("version") == candidate:
        return made("none", f"v{candidate} is already the canary of production v{prod}", prod)
    if production_metrics is None:
        return made(
            "promote",
            f"production names v{prod}, whose manifest cannot be read: v{candidate} replaces it",
            prod,
        )
    prod_value = _finite(production_metrics.get(metric))
    if cand is None or prod_value is None:
        missing = f"candidate v{candidate}" if cand is None else f"production v{prod}"
        return made(
            "keep",
            f"kept production v{prod}: {missing} has no finite {metric}, so the versions cannot be compared "
            "(promote by hand if wanted)",
            prod,
            prod_value,
        )
    improvement = (prod_value - cand) if LOWER_IS_BETTER[metric] else (cand - prod_value)
    direction = "lower" if LOWER_IS_BETTER[metric] else "higher"
    numbers = (
        f"{metric} {_g(cand)} vs production v{prod}'s {_g(prod_value)} ({direction} is better; "
        f"improvement {_g(improvement)}, required > 0 and >= {_g(float(min_improvement))})"
    )
    if improvement > 0 and improvement >= min_improvement:
        replaced = f"; replaces canary v{current.canary.get('version')}" if current.canary is not None else ""
        if canary_weight > 0:
            reason = (
                f"v{candidate} becomes the canary at weight {_g(float(canary_weight))}: {numbers}{replaced}"
            )
            return made("canary", reason, prod, prod_value, improvement)
        return made(
            "promote",
            f"v{candidate} promoted to production: {numbers}{replaced}",
            prod,
            prod_value,
            improvement,
        )
    return made(
        "keep", f"kept production v{prod}: candidate v{candidate} {numbers}", prod, prod_value, improvement
    )


def attempt_reason(candidate: int, candidate_metrics: Mapping[str, Any], metric: str) -> str:
    """The alias history's reason for the gate's alias moves (conflicts included)."""
    return f"promotion gate: v{candidate} {metric} {_g(_finite(candidate_metrics.get(metric)))}"


def prior_decision(history: Iterable[Mapping[str, Any]], version: int) -> Mapping[str, Any] | None:
    """The latest entry of an alias's history (oldest first) that already decided about ``version``.

    A gate entry for it, or an applied move that made it production or canary (by the gate or by
    hand). Used on replays so that an old completion event never re-promotes a version that someone
    has rolled back since, nor records the same decision twice.
    """
    found = None
    for entry in history:
        if entry.get("kind") == "gate" and entry.get("candidate") == version:
            found = entry
        elif entry.get("outcome") == "applied":
            moved = entry.get("canary") or {}
            if entry.get("to") == version or (isinstance(moved, dict) and moved.get("version") == version):
                found = entry
    return found
