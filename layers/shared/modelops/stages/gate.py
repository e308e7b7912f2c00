"""The gate stage: a published version -> the promotion gate's decision -> the production alias.

:func:`run` is what ``functions/gate/app.py`` calls, for each ``ModelVersionPublished`` event that convert
sends (an EventBridge rule in template.yaml): the stage built once per container by :func:`build`
(settings, clients, stores, and Powertools Idempotency keyed by model and version), then
:func:`handle_event`. See docs/convert.md ("The promotion gate", "Trust boundary").

The gate is apart from convert on purpose: convert loads SavedModels (programs a training job wrote) with
TensorFlow, so it may create versions but never move an alias; the gate imports no TensorFlow and runs no
code a training job wrote, and it alone (with the alert stage's canary rollback and the operators' CLI)
writes ``aliases/`` and ``history/``. It takes only the model and version from the event and re-reads the
manifest (create-only, written by convert) from the registry: the numbers it decides on are the
manifest's, never the event's.

============================================  ==========================================================
event                                          outcome
============================================  ==========================================================
anything but ``ModelVersionPublished`` from     ``ignored`` (logged)
``source: "modelops"``
a model or version that the registry lacks      ``ignored`` (logged as a warning: not sent by convert)
the gate (or an operator) already decided       ``already_decided``: nothing written, no event (a replay
about the version                               of the event, or convert's replay of its job)
otherwise                                       ``decided``: the alias moved by compare-and-swap (or not), a
                                                ``kind: "gate"`` history entry, ModelPromoted or
                                                PromotionRejected
a malformed event (bad model name / version),   raises: Lambda retries, then the DLQ keeps the event
a corrupt manifest or spec, S3 / EventBridge
failures, the alias CAS retry budget spent
============================================  ==========================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field

from modelops import aws
from modelops.domain import gate
from modelops.domain.alias import AliasDoc
from modelops.domain.errors import (
    CorruptDocumentError,
    InvalidEventError,
    ModelNotFoundError,
    SpecError,
    VersionNotFoundError,
)
from modelops.domain.events import SOURCE
from modelops.domain.spec import ModelSpec, check_model_name, parse_spec
from modelops.stages import runtime
from modelops.stages.runtime import logger
from modelops.storage.events import EventBus
from modelops.storage.registry import Manifest, Registry

TRIGGER = "ModelVersionPublished"


class EventSink(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> str: ...


@dataclass
class Deps:
    """What the gate stage works with, built once per warm container by :func:`build`."""

    registry: Registry
    bus: EventSink


@dataclass
class Result:
    outcome: str  # ignored | already_decided | decided
    reason: str
    model: str | None = None
    version: int | None = None
    job: str | None = None
    gate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "model": self.model,
            "version": self.version,
            "job": self.job,
            "gate": self.gate,
        }


# ---------------------------------------------------------------------------- the promotion gate
@dataclass(frozen=True)
class GateResult:
    decision: gate.Decision
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


def _manifest_metrics(manifest: Manifest) -> Mapping[str, Any]:
    metrics = manifest.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _production_metrics(registry: Registry, model: str, version: int) -> Mapping[str, Any] | None:
    """Production's held-out metrics; None when its manifest cannot be read (the gate replaces it)."""
    try:
        return _manifest_metrics(registry.get_manifest(model, version))
    except (VersionNotFoundError, CorruptDocumentError):
        return None


def run_gate(
    registry: Registry, manifest: Manifest, spec: ModelSpec, *, alias: str = gate.ALIAS
) -> GateResult:
    """Decide (:func:`modelops.domain.gate.decide`) and apply the promotion of ``manifest``'s version inside
    the registry's alias compare-and-swap, so a lost race re-decides against the new production; every
    decision that is not "none" is recorded in the alias history (``kind: "gate"``, with its numbers).

    Raises ``VersionConflictError`` when the alias kept moving for the registry's whole retry budget
    (the caller lets it raise, so Lambda retries the event).
    """
    model, candidate = manifest.model, manifest.version
    candidate_metrics = _manifest_metrics(manifest)
    decisions: list[gate.Decision] = []

    def mutate(current: AliasDoc | None) -> AliasDoc | None:
        prod_metrics = None
        if current is not None and current.version != candidate:
            prod_metrics = _production_metrics(registry, model, current.version)
        decision = gate.decide(
            candidate,
            candidate_metrics,
            current,
            prod_metrics,
            metric=spec.metric,
            min_improvement=spec.promotion.min_improvement,
            canary_weight=spec.promotion.canary_weight,
        )
        decisions.append(decision)
        return decision.new_alias(current)

    reason = gate.attempt_reason(candidate, candidate_metrics, spec.metric)
    new = registry.update_alias(model, alias, mutate, reason=reason)
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


# ---------------------------------------------------------------------------- events in
def parse_published(event: Any) -> tuple[str, int] | None:
    """``(model, version)`` of a ``ModelVersionPublished`` event; None for any other event. One whose
    model or version is unusable raises :class:`InvalidEventError` (kept by the DLQ, never guessed at)."""
    if not isinstance(event, Mapping) or event.get("source") != SOURCE or event.get("detail-type") != TRIGGER:
        return None
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError(f"{TRIGGER} without a detail object")
    model, version = detail.get("model"), detail.get("version")
    try:
        name = check_model_name(str(model)) if isinstance(model, str) else None
    except SpecError:
        name = None
    if name is None:
        raise InvalidEventError(f"{TRIGGER} without a valid model name: {str(model)[:80]!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidEventError(f"{TRIGGER} of {name} without a valid version: {str(version)[:40]!r}")
    return name, version


def _spec_of(manifest: Manifest) -> ModelSpec:
    raw = manifest.get("spec")
    try:
        return parse_spec(raw if isinstance(raw, dict) else "null")
    except SpecError as exc:
        raise CorruptDocumentError(
            f"the spec in the manifest of {manifest.model} v{manifest.version} does not parse: {exc}"
        ) from exc


# ---------------------------------------------------------------------------- orchestration
def handle_event(event: Any, deps: Deps) -> Result:
    """Everything the gate function does for one EventBridge event."""
    parsed = parse_published(event)
    if parsed is None:
        kind = event.get("detail-type") if isinstance(event, Mapping) else None
        logger.info("ignored event", extra={"detail_type": str(kind)[:80]})
        return Result("ignored", f"not a {TRIGGER} event: {str(kind)[:80]}")
    model, version = parsed
    try:
        manifest = deps.registry.get_manifest(model, version)
    except (VersionNotFoundError, ModelNotFoundError):
        logger.warning(
            "the event names no version of the registry", extra={"model": model, "version": version}
        )
        return Result("ignored", f"{model} has no v{version} in the registry", model=model, version=version)
    job = (manifest.get("training") or {}).get("job")
    prior = gate.prior_decision(deps.registry.history(model, gate.ALIAS), version)
    if prior is not None:
        reason = f"the gate already decided about v{version}: " + str(
            prior.get("reason", prior.get("decision", ""))
        )
        logger.info("already decided", extra={"model": model, "version": version})
        return Result("already_decided", reason, model=model, version=version, job=job, gate=dict(prior))
    res = run_gate(deps.registry, manifest, _spec_of(manifest))
    d = res.decision
    detail = {
        "model": model,
        "version": version,
        "job": job,
        **d.to_dict(),
        "applied": res.applied,
        "evaluations": res.evaluations,
    }
    if d.action in ("promote", "canary") and res.applied:
        deps.bus.publish(
            "ModelPromoted",
            {**detail, "alias": gate.ALIAS, "mode": "canary" if d.action == "canary" else "production"},
        )
    elif d.action == "keep":
        deps.bus.publish("PromotionRejected", detail)
    return Result("decided", d.reason, model=model, version=version, job=job, gate=res.to_dict())


# ---------------------------------------------------------------------------- the Lambda entry
# One decision per version: a redelivery (or convert's replay of its job) inside the expiry window returns
# the first answer; the alias history's prior decision (gate.prior_decision) covers replays after it.
IDEMPOTENCY_KEY = "[detail.model, detail.version]"
IDEMPOTENCY_SECONDS = 6 * 3600


class Settings(runtime.StageSettings):
    """The gate function's environment (template.yaml)."""

    registry_bucket: str
    # Required: it stops concurrent deliveries of one version's event from deciding twice.
    idempotency_table: str = Field(min_length=1)
    event_bus_name: str = "default"


def process(event: Any, deps: Deps) -> dict[str, Any]:
    """One event handled; its outcome logged and returned."""
    result = handle_event(event, deps)
    logger.info("gate finished", extra=result.to_dict())
    return result.to_dict()


@functools.cache
def build() -> tuple[Callable[..., dict[str, Any]], Any]:
    """Settings, clients, stores and the idempotent processing function (with its idempotency config):
    once per warm container, never at import."""
    settings = Settings()
    deps = Deps(
        registry=Registry(aws.client("s3"), settings.registry_bucket, actor="gate"),
        bus=EventBus(aws.client("events"), settings.event_bus_name),
    )

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        return process(event, deps)

    return runtime.idempotent(
        handle,
        table=settings.idempotency_table,
        dynamodb=aws.client("dynamodb"),
        key_jmespath=IDEMPOTENCY_KEY,
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One invocation: the event handled once per model and version (Powertools Idempotency)."""
    handle, config = build()
    config.register_lambda_context(context)
    return handle(event=event)
