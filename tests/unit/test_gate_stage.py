"""The gate stage (``modelops.stages.gate``): a ``ModelVersionPublished`` event -> the promotion gate ->
the production alias, on in-memory storage (tests.fakes.MemoryObjectStore, FakeBus); the Lambda entry
(idempotency) on moto. Convert sends the event (test_convert.py: convert itself never moves an alias)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from modelops.domain.errors import CorruptDocumentError, InvalidEventError
from modelops.stages import gate as gating
from modelops.storage.registry import Manifest, Registry
from tests.fakes import FakeBus, FakeContext, MemoryObjectStore


@pytest.fixture
def deps(memory_store: MemoryObjectStore, bus: FakeBus) -> gating.Deps:
    return gating.Deps(registry=Registry.over(memory_store, actor="gate"), bus=bus)


def spec_doc(**promotion: Any) -> dict[str, Any]:
    return {"task": "regression", "target": "y", "promotion": {"metric": "rmse", **promotion}}


def publish(reg: Registry, rmse: float, job: str, **promotion: Any) -> Manifest:
    """A version as convert publishes it: metrics, spec and training job in the manifest."""
    return reg.publish_version(
        "demo",
        {"tflite": ("model.tflite", f"{job}".encode())},
        {"metrics": {"rmse": rmse}, "spec": spec_doc(**promotion), "training": {"job": job}},
        dedup_key=job,
    )


def published(version: int, model: str = "demo", **detail: Any) -> dict[str, Any]:
    return {
        "source": "modelops",
        "detail-type": "ModelVersionPublished",
        "detail": {"model": model, "version": version, **detail},
    }


def gate_entries(reg: Registry) -> list[dict[str, Any]]:
    return [h for h in reg.history("demo", "production") if h.get("kind") == "gate"]


# ---------------------------------------------------------------------------- the decisions
def test_the_first_version_becomes_production(deps: gating.Deps, bus: FakeBus) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001")

    res = gating.handle_event(published(1), deps)

    assert (res.outcome, res.version, res.job) == ("decided", 1, "modelops-demo-000000000001")
    assert res.reason == "v1 is the first version of the model: it becomes production"
    assert deps.registry.resolve("demo") == 1
    assert bus.types() == ["ModelPromoted"]
    promoted = bus.of("ModelPromoted")[-1]
    assert (promoted["version"], promoted["production"], promoted["mode"], promoted["alias"]) == (
        1,
        None,
        "production",
        "production",
    )
    assert promoted["job"] == "modelops-demo-000000000001" and promoted["applied"] is True
    [entry] = gate_entries(deps.registry)
    assert (entry["candidate"], entry["decision"], entry["applied"], entry["actor"]) == (
        1,
        "promote",
        True,
        "gate",
    )


def test_a_worse_version_is_rejected_with_its_numbers(deps: gating.Deps, bus: FakeBus) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001")
    publish(deps.registry, 0.9, "modelops-demo-000000000002")
    gating.handle_event(published(1), deps)
    bus.sent.clear()

    res = gating.handle_event(published(2), deps)

    assert res.outcome == "decided" and res.gate is not None and res.gate["action"] == "keep"
    assert res.reason.startswith("kept production v1: candidate v2 rmse 0.9")
    assert deps.registry.resolve("demo") == 1
    assert bus.types() == ["PromotionRejected"]
    rejected = bus.of("PromotionRejected")[-1]
    assert (rejected["candidate_value"], rejected["production_value"], rejected["applied"]) == (
        0.9,
        0.5,
        False,
    )
    kept = gate_entries(deps.registry)[-1]
    assert (kept["decision"], kept["candidate"], kept["production"]) == ("keep", 2, 1)


def test_a_better_version_is_promoted_and_production_kept_as_previous(
    deps: gating.Deps, bus: FakeBus
) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001")
    publish(deps.registry, 0.4, "modelops-demo-000000000002")
    gating.handle_event(published(1), deps)

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "promote" and "promoted to production" in res.reason
    doc, _ = deps.registry.get_alias("demo")
    assert (doc.version, doc.previous) == (2, 1)
    promoted = bus.of("ModelPromoted")[-1]
    assert (promoted["version"], promoted["production"], promoted["mode"]) == (2, 1, "production")


def test_canary_weight_makes_the_winner_a_canary(deps: gating.Deps, bus: FakeBus) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001", canary_weight=0.1)
    publish(deps.registry, 0.4, "modelops-demo-000000000002", canary_weight=0.1)
    gating.handle_event(published(1), deps)

    res = gating.handle_event(published(2), deps)

    doc, _ = deps.registry.get_alias("demo")
    assert (doc.version, doc.canary) == (1, {"version": 2, "weight": 0.1})
    assert res.gate is not None and res.gate["action"] == "canary"
    assert bus.of("ModelPromoted")[-1]["mode"] == "canary"


def test_the_gate_decides_on_the_manifest_never_on_the_events_numbers(
    deps: gating.Deps, bus: FakeBus
) -> None:
    # Given a worse v2 and an event (forged, or a stale copy) that claims v2 is far better
    publish(deps.registry, 0.5, "modelops-demo-000000000001")
    publish(deps.registry, 0.9, "modelops-demo-000000000002")
    gating.handle_event(published(1), deps)

    res = gating.handle_event(published(2, metrics={"rmse": 0.0001}, job="modelops-demo-forged00000"), deps)

    # Then the manifest's numbers decide, and the manifest names the job
    assert res.gate is not None and res.gate["action"] == "keep" and res.gate["candidate_value"] == 0.9
    assert res.job == "modelops-demo-000000000002" and deps.registry.resolve("demo") == 1


# ---------------------------------------------------------------------------- replays
def test_a_replayed_event_decides_nothing_twice_even_after_a_rollback(
    deps: gating.Deps, bus: FakeBus
) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001")
    publish(deps.registry, 0.4, "modelops-demo-000000000002")
    gating.handle_event(published(1), deps)
    gating.handle_event(published(2), deps)
    assert deps.registry.resolve("demo") == 2
    entries = len(deps.registry.history("demo", "production"))

    # When someone rolls back and convert's replay of v2's job sends ModelVersionPublished again
    deps.registry.rollback("demo", reason="by hand")
    bus.sent.clear()
    res = gating.handle_event(published(2, replay=True), deps)

    # Then no re-promotion, no second decision, no event
    assert res.outcome == "already_decided" and "already decided about v2" in res.reason
    assert res.gate is not None and res.gate["decision"] == "promote"
    assert deps.registry.resolve("demo") == 1 and bus.sent == []
    assert len(deps.registry.history("demo", "production")) == entries + 1  # the rollback only


def test_a_replay_of_a_kept_version_sends_nothing(deps: gating.Deps, bus: FakeBus) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001")
    publish(deps.registry, 0.9, "modelops-demo-000000000002")
    gating.handle_event(published(1), deps)
    gating.handle_event(published(2), deps)
    bus.sent.clear()

    res = gating.handle_event(published(2, replay=True), deps)

    assert res.outcome == "already_decided" and res.reason.startswith(
        "the gate already decided about v2: kept"
    )
    assert bus.sent == [] and len(gate_entries(deps.registry)) == 2


# ---------------------------------------------------------------------------- events it does not act on
@pytest.mark.parametrize(
    "event",
    [
        {"source": "modelops", "detail-type": "ModelPromoted", "detail": {"model": "demo", "version": 1}},
        {
            "source": "not-modelops",
            "detail-type": "ModelVersionPublished",
            "detail": {"model": "demo", "version": 1},
        },
        {"source": "aws.sagemaker", "detail-type": "SageMaker Training Job State Change", "detail": {}},
        {},
        None,
        ["a"],
    ],
)
def test_other_events_are_ignored_without_reading_anything(
    deps: gating.Deps, memory_store: MemoryObjectStore, bus: FakeBus, event: Any
) -> None:
    res = gating.handle_event(event, deps)
    assert res.outcome == "ignored" and memory_store.calls == [] and bus.sent == []


@pytest.mark.parametrize(
    "detail",
    [
        {"model": "../models/x", "version": 1},
        {"model": "demo\n", "version": 1},
        {"model": None, "version": 1},
        {"model": "demo", "version": "1"},
        {"model": "demo", "version": 0},
        {"model": "demo", "version": True},
        "not an object",
    ],
)
def test_a_malformed_published_event_raises_so_the_dlq_keeps_it(
    deps: gating.Deps, memory_store: MemoryObjectStore, detail: Any
) -> None:
    event = {"source": "modelops", "detail-type": "ModelVersionPublished", "detail": detail}
    with pytest.raises(InvalidEventError):
        gating.handle_event(event, deps)
    assert memory_store.calls == []


def test_a_version_the_registry_lacks_is_ignored(deps: gating.Deps, bus: FakeBus) -> None:
    publish(deps.registry, 0.5, "modelops-demo-000000000001")
    res = gating.handle_event(published(7), deps)
    assert res.outcome == "ignored" and "has no v7" in res.reason
    assert bus.sent == [] and deps.registry.list_aliases("demo") == {}


def test_a_manifest_whose_spec_does_not_parse_raises(deps: gating.Deps, bus: FakeBus) -> None:
    deps.registry.publish_version("demo", {"tflite": ("model.tflite", b"x")}, {"metrics": {"rmse": 1.0}})
    with pytest.raises(CorruptDocumentError, match="spec in the manifest of demo v1"):
        gating.handle_event(published(1), deps)
    assert bus.sent == []


# ---------------------------------------------------------------------------- the Lambda entry (moto)
def test_the_handler_decides_once_per_version(
    s3: Any, registry_bucket: str, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="idem",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for k, v in {
        "REGISTRY_BUCKET": registry_bucket,
        "IDEMPOTENCY_TABLE": "idem",
        "POWERTOOLS_METRICS_NAMESPACE": "modelops-test",
        "POWERTOOLS_SERVICE_NAME": "gate",
    }.items():
        monkeypatch.setenv(k, v)
    reg = Registry(s3, registry_bucket)
    publish(reg, 0.5, "modelops-demo-000000000001")
    from functions.gate import app

    gating.build.cache_clear()
    try:
        first = app.lambda_handler(published(1), lambda_context)
        again = app.lambda_handler(published(1, replay=True), lambda_context)
    finally:
        gating.build.cache_clear()

    assert first["outcome"] == "decided" and again == first
    assert reg.resolve("demo") == 1 and len(gate_entries(reg)) == 1
    items = ddb.scan(TableName="idem")["Items"]
    assert len(items) == 1 and json.loads(items[0]["data"]["S"])["version"] == 1
