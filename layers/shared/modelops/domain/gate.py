"""The promotion gate: may a freshly published version serve traffic? (docs/convert.md)

Pure decision logic (:func:`decide`, no numpy, no TensorFlow) plus :func:`run_gate`, which applies
the decision to the ``production`` alias through :meth:`Registry.update_alias`. The decision is
made *inside* the alias mutation, so when someone else moves production while the gate runs (the
compare-and-swap loses), the candidate is compared again with the new production: never applied
blindly on top of it.

Rules (from the spec's ``promotion`` section):

- no production alias yet: the candidate becomes production (the first version of a model);
- the candidate's held-out ``metric`` must beat production's by more than zero and by at least
  ``min_improvement`` (lower is better for rmse/mae, ``spec.LOWER_IS_BETTER``);
- with ``canary_weight > 0`` a winning candidate becomes the alias's canary at that weight
  instead of production (the monitor/alert stages finish or roll back the canary);
- otherwise production is kept, and "kept production vN" is recorded with the numbers.

Every decision lands in the alias history: alias moves through ``update_alias`` (which records
each attempt, conflicts included) and one ``kind: "gate"`` entry with the numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelops.domain.errors import CorruptDocumentError, VersionNotFoundError
from modelops.domain.spec import LOWER_IS_BETTER, ModelSpec
from modelops.storage.registry import AliasDoc, Manifest, Registry

ALIAS = "production"
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
            prev = current.version if current is not None else None
            return AliasDoc(
                alias=ALIAS, version=self.candidate, previous=prev, canary=None, reason=self.reason
            )
        if self.action == "canary" and current is not None:
            return AliasDoc(
                alias=ALIAS,
                version=current.version,
                previous=current.previous,
                canary={"version": self.candidate, "weight": self.canary_weight},
                reason=self.reason,
                extra=dict(current.extra),
            )
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


@dataclass(frozen=True)
class GateResult:
    decision: Decision
    applied: bool
    """True when the alias was moved (production or canary) by this run."""
    evaluations: int
    """How many times the decision was made (1 + compare-and-swap conflicts)."""
    alias: AliasDoc | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.decision.to_dict(),
            "applied": self.applied,
            "evaluations": self.evaluations,
            "alias": self.alias.to_dict() if self.alias is not None else None,
        }


def _production_metrics(registry: Registry, model: str, version: int) -> Mapping[str, Any] | None:
    try:
        metrics = registry.get_manifest(model, version).get("metrics")
    except (VersionNotFoundError, CorruptDocumentError):
        return None
    return metrics if isinstance(metrics, dict) else {}


def run_gate(registry: Registry, manifest: Manifest, spec: ModelSpec, *, alias: str = ALIAS) -> GateResult:
    """Decide and apply the promotion of ``manifest``'s version; record the decision in the history.

    Raises ``VersionConflictError`` when the alias kept moving for the registry's whole retry budget
    (the caller lets it raise, so Lambda retries the event).
    """
    model, candidate = manifest.model, manifest.version
    metric = spec.metric
    raw_metrics = manifest.get("metrics")
    candidate_metrics: Mapping[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
    decisions: list[Decision] = []

    def mutate(current: AliasDoc | None) -> AliasDoc | None:
        prod_metrics = None
        if current is not None and current.version != candidate:
            prod_metrics = _production_metrics(registry, model, current.version)
        decision = decide(
            candidate,
            candidate_metrics,
            current,
            prod_metrics,
            metric=metric,
            min_improvement=spec.promotion.min_improvement,
            canary_weight=spec.promotion.canary_weight,
        )
        decisions.append(decision)
        return decision.new_alias(current)

    value = _g(_finite(candidate_metrics.get(metric)))
    new = registry.update_alias(model, alias, mutate, reason=f"promotion gate: v{candidate} {metric} {value}")
    final = decisions[-1]
    if final.action != "none":
        registry.record_decision(
            model,
            alias,
            {
                "kind": "gate",
                "decision": final.action,
                "applied": new is not None,
                "evaluations": len(decisions),
                **final.to_dict(),
            },
        )
    return GateResult(decision=final, applied=new is not None, evaluations=len(decisions), alias=new)


def prior_decision(
    registry: Registry, model: str, version: int, *, alias: str = ALIAS
) -> dict[str, Any] | None:
    """The latest history entry that already decided about ``version`` on ``alias``, or None.

    A gate entry for it, or an applied move that made it production or canary (by the gate or by
    hand). Used on replays so that an old completion event never re-promotes a version that someone
    has rolled back since, nor records the same decision twice.
    """
    found = None
    for entry in registry.history(model, alias):
        if entry.get("kind") == "gate" and entry.get("candidate") == version:
            found = entry
        elif entry.get("outcome") == "applied":
            canary = entry.get("canary") or {}
            if entry.get("to") == version or (isinstance(canary, dict) and canary.get("version") == version):
                found = entry
    return found
