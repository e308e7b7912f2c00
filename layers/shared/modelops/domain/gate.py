"""The promotion gate's decision: may a freshly published version serve traffic? (docs/convert.md)

Pure (no I/O, no numpy, no TensorFlow): :func:`decide` compares a candidate with production **on numbers
the platform computed** (:class:`Comparison`: both models' LiteRT artifacts scored by the gate stage on
the same evaluation rows, with a paired bootstrap interval of the difference,
:mod:`modelops.domain.bootstrap`), :func:`effective_policy` applies the stack's policy over the uploaded
spec, :meth:`Decision.new_alias` says which alias document that asks for (through
:mod:`modelops.domain.canary`), and :func:`prior_decision` finds an earlier decision in the alias history.
The gate stage (:mod:`modelops.stages.gate`, its own function, apart from convert: docs/convert.md "Trust
boundary") applies the decision inside the registry's alias compare-and-swap, so when someone else moves
production while the gate runs, the candidate is compared again with the new production: never applied
blindly on top of it.

Rules, in order:

- no production alias yet: the candidate becomes production (the first version of a model);
- production's manifest cannot be read: the candidate replaces it (production cannot serve anyway);
- the comparison could not be made (an artifact failed its checksum or could not be loaded, the rows
  lack a column a model needs): production is kept;
- no evaluation rows held by the platform (``source: "job_claim"``: versions trained before the
  platform kept rows): production is kept; a training job's own ``metrics.json`` never replaces it;
- fewer rows than the policy's ``min_eval_rows``: production is kept, and the decision says what to add;
- the candidate wins only when the **lower bound** of the interval of its improvement (positive = better:
  lower rmse/mae, higher accuracy/auc) is above ``min_improvement``; with ``canary_weight > 0`` it then
  becomes the alias's canary at that weight instead of production (the alert stage rolls a canary back
  when an alarm or drift names it; only ``modelops models promote`` finishes one);
- otherwise production is kept, and "kept production vN" is recorded with the numbers.

Policy (:func:`effective_policy`): the stack's parameters (``GateMinImprovement``, ``GateMinEvalRows``,
``GateMaxCanaryWeight``) are floors the uploaded spec can tighten, never loosen: ``min_improvement`` and
``min_eval_rows`` are the larger of the two, ``canary_weight`` the smaller; the decision records each
value and whether the stack or the spec set it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelops.domain import canary
from modelops.domain.alias import PRODUCTION, AliasDoc
from modelops.domain.spec import LOWER_IS_BETTER

ALIAS = PRODUCTION
Action = Literal["promote", "canary", "keep", "none"]
EVAL_UPLOAD = "datasets/{model}/eval/"
"""Where an owner uploads a pinned evaluation set (docs/training.md)."""


# ---------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class StackPolicy:
    """The stack's floors (template parameters, GateFunction's environment)."""

    min_improvement: float = 0.0
    min_eval_rows: int = 30
    max_canary_weight: float = 0.5


@dataclass(frozen=True)
class Policy:
    """What the gate applies: each value and who set it (``"stack"`` or ``"spec"``)."""

    min_improvement: float
    min_eval_rows: int
    canary_weight: float
    origin: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"value": getattr(self, name), "from": self.origin.get(name, "stack")}
            for name in ("min_improvement", "min_eval_rows", "canary_weight")
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def effective_policy(
    stack: StackPolicy,
    *,
    min_improvement: Any = None,
    canary_weight: Any = None,
    min_eval_rows: Any = None,
) -> Policy:
    """The stack's policy tightened (never loosened) by the spec's values; a spec value that is missing,
    not a finite number, or looser than the stack's leaves the stack's in force."""
    origin: dict[str, str] = {}
    mi = _number(min_improvement)
    if mi is not None and mi > stack.min_improvement:
        min_imp, origin["min_improvement"] = mi, "spec"
    else:
        min_imp, origin["min_improvement"] = float(stack.min_improvement), "stack"
    # a spec without a usable weight asks for no canary (the winner goes straight to production)
    cw = max(_number(canary_weight) or 0.0, 0.0)
    if cw >= stack.max_canary_weight:
        weight, origin["canary_weight"] = float(stack.max_canary_weight), "stack"
    else:
        weight, origin["canary_weight"] = cw, "spec"
    mr = _number(min_eval_rows)
    if mr is not None and mr > stack.min_eval_rows:
        rows, origin["min_eval_rows"] = int(math.ceil(mr)), "spec"
    else:
        rows, origin["min_eval_rows"] = int(stack.min_eval_rows), "stack"
    return Policy(min_improvement=min_imp, min_eval_rows=rows, canary_weight=weight, origin=origin)


# ---------------------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class Comparison:
    """What the gate stage measured for one candidate against one production version."""

    source: str
    """``pinned`` | ``heldout`` (rows the platform holds) | ``job_claim`` (no rows: the jobs' own numbers)."""
    rows: int = 0
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    """The evaluation set: ``source``, ``rows``, ``sha256`` (the CSVs), ``available``, ``duplicates`` ..."""
    candidate_value: float | None = None
    production_value: float | None = None
    interval: Mapping[str, Any] | None = None
    """:class:`modelops.domain.bootstrap.Interval` as a dict (``improvement``, ``lower``, ``upper``,
    ``resamples``, ``seed``, ``confidence``)."""
    problem: str | None = None
    """Why the two could not be compared (an artifact that failed its checksum, missing columns)."""
    claims: Mapping[str, Any] | None = None
    """The training jobs' own metrics (``metrics.json``): recorded, never decided on."""


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
    source: str | None = None
    """Where the numbers come from: ``pinned`` | ``heldout`` | ``job_claim`` (None: not compared)."""
    interval: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None
    policy: Mapping[str, Any] | None = None
    claims: Mapping[str, Any] | None = None
    needs: str | None = None
    """What an owner should add for the gate to decide (an evaluation set), when that is the reason."""

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
    return _number(value)


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def decide(
    candidate: int,
    current: AliasDoc | None,
    comparison: Comparison | None,
    *,
    metric: str,
    policy: Policy,
    model: str = "the model",
    production_readable: bool = True,
) -> Decision:
    """Compare a candidate with the current production alias (pure; no I/O).

    ``comparison`` is what the stage measured against ``current.version`` (None when there is no
    production, or its manifest cannot be read: ``production_readable`` False, the candidate then
    replaces it, since production cannot serve anyway).
    """
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"unknown promotion metric {metric!r}")
    comp = comparison
    upload = EVAL_UPLOAD.format(model=model)

    def made(
        action: Action,
        reason: str,
        production: int | None = None,
        *,
        improvement: float | None = None,
        needs: str | None = None,
    ) -> Decision:
        return Decision(
            action=action,
            candidate=candidate,
            production=production,
            metric=metric,
            candidate_value=_finite(comp.candidate_value) if comp else None,
            production_value=_finite(comp.production_value) if comp else None,
            min_improvement=float(policy.min_improvement),
            improvement=improvement,
            canary_weight=float(policy.canary_weight),
            reason=reason,
            source=comp.source if comp else None,
            interval=dict(comp.interval) if comp and comp.interval is not None else None,
            evaluation=dict(comp.evaluation) if comp and comp.evaluation else None,
            policy=policy.to_dict(),
            claims=dict(comp.claims) if comp and comp.claims is not None else None,
            needs=needs,
        )

    if current is None:
        return made("promote", f"v{candidate} is the first version of the model: it becomes production")
    prod = current.version
    if prod == candidate:
        return made("none", f"v{candidate} is already production", prod)
    if current.canary is not None and current.canary.get("version") == candidate:
        return made("none", f"v{candidate} is already the canary of production v{prod}", prod)
    if not production_readable:
        return made(
            "promote",
            f"production names v{prod}, whose manifest cannot be read: v{candidate} replaces it",
            prod,
        )
    if comp is None:
        raise ValueError("a production version to compare with needs a comparison")
    if comp.problem:
        return made("keep", f"kept production v{prod}: {comp.problem}", prod)
    if comp.source == "job_claim":
        claims = comp.claims or {}
        return made(
            "keep",
            f"kept production v{prod}: the platform holds no evaluation rows for {model}, and a training "
            f"job's own metrics (candidate v{candidate} claims {metric} {_g(_finite(claims.get('candidate')))}, "
            f"production v{prod} claimed {_g(_finite(claims.get('production')))}) never replace production",
            prod,
            needs=f"upload a pinned evaluation set (CSV, at least {policy.min_eval_rows} rows, the model's "
            f"feature columns and target) under {upload}, or retrain so the platform keeps evaluation rows",
        )
    if comp.rows < policy.min_eval_rows:
        return made(
            "keep",
            f"kept production v{prod}: only {comp.rows} {comp.source} evaluation rows to compare candidate "
            f"v{candidate} on (at least {policy.min_eval_rows} needed); nothing is promoted automatically",
            prod,
            needs=f"upload a pinned evaluation set of at least {policy.min_eval_rows} rows under {upload} "
            f"(or upload more data: a share of every accepted dataset becomes evaluation rows)",
        )
    cand, prod_value = _finite(comp.candidate_value), _finite(comp.production_value)
    iv = comp.interval or {}
    lower, upper, imp = _finite(iv.get("lower")), _finite(iv.get("upper")), _finite(iv.get("improvement"))
    if cand is None or prod_value is None or lower is None or upper is None:
        missing = f"candidate v{candidate}" if cand is None else f"production v{prod}"
        if cand is not None and prod_value is not None:
            missing = "the bootstrap interval"
        return made(
            "keep",
            f"kept production v{prod}: {missing} has no finite {metric} on the {comp.rows} evaluation rows, "
            "so the versions cannot be compared (promote by hand if wanted)",
            prod,
            improvement=imp,
        )
    direction = "lower" if LOWER_IS_BETTER[metric] else "higher"
    confidence = _finite(iv.get("confidence")) or 0.95
    numbers = (
        f"{metric} {_g(cand)} vs production v{prod}'s {_g(prod_value)} on the same {comp.rows} "
        f"{comp.source} evaluation rows ({direction} is better; improvement {_g(imp)}, "
        f"{confidence:.0%} interval [{_g(lower)}, {_g(upper)}], its lower bound must be above "
        f"{_g(float(policy.min_improvement))})"
    )
    if lower > policy.min_improvement:
        replaced = f"; replaces canary v{current.canary.get('version')}" if current.canary is not None else ""
        if policy.canary_weight > 0:
            reason = (
                f"v{candidate} becomes the canary at weight {_g(float(policy.canary_weight))}: "
                f"{numbers}{replaced}"
            )
            return made("canary", reason, prod, improvement=imp)
        return made(
            "promote", f"v{candidate} promoted to production: {numbers}{replaced}", prod, improvement=imp
        )
    return made("keep", f"kept production v{prod}: candidate v{candidate} {numbers}", prod, improvement=imp)


def attempt_reason(candidate: int, metric: str) -> str:
    """The alias history's fallback reason for the gate's alias moves (the decision's own reason wins)."""
    return f"promotion gate: v{candidate} on {metric}"


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
