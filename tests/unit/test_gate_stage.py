"""The gate stage (``modelops.stages.gate``): a ``ModelVersionPublished`` event -> the promotion gate ->
the production alias, on in-memory storage (tests.fakes.MemoryObjectStore, FakeBus); the Lambda entry
(idempotency) on moto. Convert sends the event (test_convert.py: convert itself never moves an alias).

Issue 14: the gate scores both versions' verified artifacts itself on the evaluation rows the platform
holds (tests/unit/gate_models.py: linear models behind a stand-in interpreter), with a paired bootstrap;
the jobs' own metrics are recorded and never decided on. Each bad input of the issue's gate side has a
test here (the pure rules: test_gate.py, the bootstrap: test_bootstrap.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from modelops.domain import alerts
from modelops.domain.errors import CorruptDocumentError, InvalidEventError
from modelops.domain.gate import StackPolicy
from modelops.stages import gate as gating
from modelops.storage import keys
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.registry import Manifest, Registry
from tests.fakes import FakeBus, FakeContext, MemoryObjectStore
from tests.unit.gate_models import (
    TRUE_W,
    LinearInterpreter,
    publish,
    rows_csv,
    store_heldout,
    store_pinned,
)


def make_deps(store: MemoryObjectStore, bus: FakeBus, **kw: Any) -> gating.Deps:
    return gating.Deps(
        registry=Registry.over(store, actor="gate"),
        bus=bus,
        evaluation=EvaluationStore(store),
        interpreter_factory=LinearInterpreter,
        **kw,
    )


@pytest.fixture
def deps(memory_store: MemoryObjectStore, bus: FakeBus) -> gating.Deps:
    return make_deps(memory_store, bus)


def published(version: int, model: str = "demo", **detail: Any) -> dict[str, Any]:
    return {
        "source": "modelops",
        "detail-type": "ModelVersionPublished",
        "detail": {"model": model, "version": version, **detail},
    }


def gate_entries(reg: Registry) -> list[dict[str, Any]]:
    return [h for h in reg.history("demo", "production") if h.get("kind") == "gate"]


def with_production(
    deps: gating.Deps, bus: FakeBus, w: list[float] = TRUE_W, b: float = 0.0, **kw: Any
) -> Manifest:
    """v1 (first version: production), then the bus emptied."""
    m = publish(deps.registry, w, b, **kw)
    gating.handle_event(published(m.version), deps)
    bus.sent.clear()
    return m


def alert_of(bus: FakeBus, detail_type: str) -> alerts.Alert:
    return alerts.from_event(
        {"source": "modelops", "detail-type": detail_type, "detail": bus.of(detail_type)[-1]}
    )


# ---------------------------------------------------------------------------- the decisions
def test_the_first_version_becomes_production(deps: gating.Deps, bus: FakeBus) -> None:
    publish(deps.registry, TRUE_W, job="modelops-demo-000000000001")

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


def test_a_genuinely_better_model_is_promoted_with_the_comparison_on_the_same_rows(
    deps: gating.Deps, bus: FakeBus
) -> None:
    # Given production v1 off by a bias, and a candidate with the true weights, on 400 held-out rows
    with_production(deps, bus, TRUE_W, 0.6)
    digest = store_heldout(deps.registry, rows_csv(400, seed=1))
    publish(deps.registry, TRUE_W, 0.0, claims={"rmse": 0.31})

    res = gating.handle_event(published(2), deps)

    # Then v2 is production, and the decision holds both numbers on the same rows and the interval
    assert res.gate is not None and res.gate["action"] == "promote", res.reason
    doc, _ = deps.registry.get_alias("demo")
    assert (doc.version, doc.previous) == (2, 1)
    d = bus.of("ModelPromoted")[-1]
    assert (
        d["source"] == "heldout" and d["evaluation"]["rows"] == 400 and d["evaluation"]["sha256"] == [digest]
    )
    assert d["candidate_value"] == pytest.approx(0.3, abs=0.05)
    assert d["production_value"] == pytest.approx((0.3**2 + 0.6**2) ** 0.5, abs=0.05)
    iv = d["interval"]
    assert 0 < iv["lower"] <= d["improvement"] <= iv["upper"] and iv["resamples"] == 1000
    assert d["claims"]["candidate"] == 0.31  # recorded as the job's claim
    assert "on the same 400 heldout evaluation rows" in res.reason and "95% interval" in res.reason
    entry = gate_entries(deps.registry)[-1]
    assert (
        entry["interval"] == iv and entry["evaluation"] == d["evaluation"] and entry["policy"] == d["policy"]
    )
    text = alert_of(bus, "ModelPromoted").body
    assert "Evaluation set: 400 heldout rows" in text and "On the same rows: candidate v2 rmse" in text
    assert "95% interval [" in text and "Policy: min_improvement 0 (stack)" in text


def test_a_worse_model_with_a_lucky_split_is_kept(deps: gating.Deps, bus: FakeBus) -> None:
    # Given production with the true weights, and a slightly worse candidate whose own job claims far better
    with_production(deps, bus, TRUE_W, 0.0, claims={"rmse": 0.30})
    store_heldout(deps.registry, rows_csv(300, seed=2))
    publish(deps.registry, [2.9, -2.0], 0.05, claims={"rmse": 0.01})

    res = gating.handle_event(published(2), deps)

    # Then production is kept: the platform's numbers decide, the claim is only recorded
    assert res.gate is not None and res.gate["action"] == "keep" and deps.registry.resolve("demo") == 1
    rejected = bus.of("PromotionRejected")[-1]
    assert rejected["candidate_value"] > rejected["production_value"]  # worse on the same rows
    assert rejected["interval"]["lower"] < 0
    assert rejected["claims"] == {
        "candidate": 0.01,
        "production": 0.30,
        "note": "the training jobs' own metrics.json: recorded, never decided on",
    }
    assert res.reason.startswith("kept production v1: candidate v2 rmse")


def test_a_constant_target_model_is_never_promoted_over_a_real_one(deps: gating.Deps, bus: FakeBus) -> None:
    # Given a real production, and a candidate trained on a constant target: it predicts one number,
    # and its own held-out split (the same constant) made it claim rmse ~ 0
    with_production(deps, bus, TRUE_W, 0.0, claims={"rmse": 4.1})
    store_heldout(deps.registry, rows_csv(200, seed=3))
    publish(deps.registry, [0.0, 0.0], 7.0, claims={"rmse": 1e-4})

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "keep" and deps.registry.resolve("demo") == 1
    assert res.gate["candidate_value"] > 5 and res.gate["interval"]["upper"] < 0


def test_perfect_claims_for_a_bad_classifier_are_not_promoted(deps: gating.Deps, bus: FakeBus) -> None:
    # Given a real binary classifier in production, and a candidate whose metrics.json claims perfection
    # but whose weights point the wrong way
    with_production(deps, bus, TRUE_W, task="binary", claims={"accuracy": 0.9})
    store_heldout(deps.registry, rows_csv(300, seed=4, task="binary"))
    publish(deps.registry, [-3.0, 2.0], task="binary", claims={"accuracy": 1.0, "auc": 1.0})

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "keep" and deps.registry.resolve("demo") == 1
    assert res.gate["metric"] == "accuracy" and res.gate["candidate_value"] < 0.2
    assert res.gate["production_value"] > 0.9 and res.gate["claims"]["candidate"] == 1.0


def test_an_improvement_inside_the_noise_is_not_promoted(deps: gating.Deps, bus: FakeBus) -> None:
    # Given two models equally good in expectation (each off on one weight by 0.15), and 40 noisy rows on
    # which the candidate happens to look better: the rule before issue 14 (improvement > 0) promoted it
    with_production(deps, bus, [3.0, -2.15])
    store_heldout(deps.registry, rows_csv(40, seed=5, noise=1.0))
    publish(deps.registry, [3.15, -2.0])

    res = gating.handle_event(published(2), deps)

    # Then the point estimate favours the candidate, the interval does not exclude zero: production kept
    assert res.gate is not None and res.gate["improvement"] > 0
    assert res.gate["interval"]["lower"] <= 0 < res.gate["interval"]["upper"]
    assert res.gate["action"] == "keep" and deps.registry.resolve("demo") == 1


def test_the_pinned_set_is_used_when_there_is_one(deps: gating.Deps, bus: FakeBus) -> None:
    with_production(deps, bus, TRUE_W, 0.6)
    store_heldout(deps.registry, rows_csv(400, seed=6))
    pinned = store_pinned(deps.registry, rows_csv(120, seed=7))
    publish(deps.registry, TRUE_W, 0.0)

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "promote"
    assert res.gate["source"] == "pinned" and res.gate["evaluation"]["sha256"] == [pinned]
    assert res.gate["evaluation"]["rows"] == 120


def test_too_few_rows_keep_production_and_say_what_to_add(deps: gating.Deps, bus: FakeBus) -> None:
    # Given a retrain-on-drift sized dataset: 20 evaluation rows, under the floor of 30
    with_production(deps, bus, TRUE_W, 0.6)
    store_heldout(deps.registry, rows_csv(20, seed=8))
    publish(deps.registry, TRUE_W, 0.0)

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "keep" and deps.registry.resolve("demo") == 1
    assert "only 20 heldout evaluation rows" in res.reason and "at least 30 needed" in res.reason
    rejected = bus.of("PromotionRejected")[-1]
    assert "datasets/demo/eval/" in rejected["needs"] and rejected["interval"] is None
    alert = alert_of(bus, "PromotionRejected")
    assert (
        "Add what the gate needs: upload a pinned evaluation set of at least 30 rows under datasets/demo/eval/"
        in (alert.body)
    )


def test_without_any_platform_rows_the_jobs_claims_never_replace_production(
    deps: gating.Deps, bus: FakeBus
) -> None:
    # Given versions trained before the platform kept evaluation rows (none stored)
    with_production(deps, bus, TRUE_W, 0.0, claims={"rmse": 0.5})
    publish(deps.registry, TRUE_W, 0.0, claims={"rmse": 1e-4})

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "keep" and res.gate["source"] == "job_claim"
    assert "holds no evaluation rows" in res.reason and "never replace production" in res.reason
    assert res.gate["claims"]["candidate"] == 1e-4 and "datasets/demo/eval/" in res.gate["needs"]
    assert deps.registry.resolve("demo") == 1


def test_productions_artifact_failing_its_checksum_blocks_promotion_and_alerts(
    deps: gating.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    # Given production v1 whose blob was overwritten after it was published
    v1 = with_production(deps, bus, TRUE_W, 0.6)
    key = v1.artifacts["tflite"].key
    body, etag, ctype, at = memory_store.objects[key]
    memory_store.objects[key] = (
        b"\x1c\x00\x00\x00TFL3" + b'{"w": [0, 0], "b": 0, "sigmoid": false}',
        etag,
        ctype,
        at,
    )
    store_heldout(deps.registry, rows_csv(200, seed=9))
    publish(deps.registry, TRUE_W, 0.0)

    res = gating.handle_event(published(2), deps)

    # Then no promotion, production (the alias) unchanged, and an integrity alert naming v1
    assert res.gate is not None and res.gate["action"] == "keep" and deps.registry.resolve("demo") == 1
    assert "production v1's tflite artifact failed its SHA-256 check" in res.reason
    assert bus.types() == ["ArtifactIntegrityFailed", "PromotionRejected"]
    integrity = bus.of("ArtifactIntegrityFailed")[-1]
    assert (integrity["version"], integrity["reason"], integrity["stage"], integrity["compared_as"]) == (
        1,
        "checksum_mismatch",
        "gate",
        "production",
    )
    assert alert_of(bus, "ArtifactIntegrityFailed").severity == "critical"


def test_the_stack_policy_applies_over_a_looser_spec_and_the_decision_says_so(
    memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    # Given a stack requiring an improvement of 0.05 and capping canaries at 0.5, and specs asking for
    # no minimum and a 0.9 canary
    deps = make_deps(memory_store, bus, stack=StackPolicy(min_improvement=0.05, max_canary_weight=0.5))
    with_production(deps, bus, TRUE_W, 0.6, canary_weight=0.9)
    store_heldout(deps.registry, rows_csv(400, seed=10))
    publish(deps.registry, TRUE_W, 0.0, canary_weight=0.9)

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "canary"
    doc, _ = deps.registry.get_alias("demo")
    assert (doc.version, doc.canary) == (1, {"version": 2, "weight": 0.5})
    assert res.gate["policy"] == {
        "min_improvement": {"value": 0.05, "from": "stack"},
        "min_eval_rows": {"value": 30, "from": "stack"},
        "canary_weight": {"value": 0.5, "from": "stack"},
    }
    assert "lower bound must be above 0.05" in res.reason


def test_a_spec_may_tighten_the_stack_policy(memory_store: MemoryObjectStore, bus: FakeBus) -> None:
    # An improvement of ~0.37 rmse, with the spec asking for at least 1.0: kept, and the spec's value applied
    deps = make_deps(memory_store, bus)
    with_production(deps, bus, TRUE_W, 0.6)
    store_heldout(deps.registry, rows_csv(400, seed=11))
    publish(deps.registry, TRUE_W, 0.0, min_improvement=1.0, canary_weight=0.1)

    res = gating.handle_event(published(2), deps)

    assert res.gate is not None and res.gate["action"] == "keep"
    assert res.gate["policy"]["min_improvement"] == {"value": 1.0, "from": "spec"}
    assert res.gate["policy"]["canary_weight"] == {"value": 0.1, "from": "spec"}


def test_the_decision_is_reproducible_from_the_recorded_rows(
    deps: gating.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    with_production(deps, bus, TRUE_W, 0.3)
    store_heldout(deps.registry, rows_csv(150, seed=12))
    store_heldout(deps.registry, rows_csv(150, seed=13))
    publish(deps.registry, TRUE_W, 0.0)
    gating.handle_event(published(2), deps)
    entry = gate_entries(deps.registry)[-1]

    # When the rows the decision names are read back (checked against their SHA-256) and both versions
    # are scored again with the recorded seed
    ev = EvaluationStore(memory_store)
    keys = [k for k in ev.heldout_keys("demo") if k.rsplit("/", 1)[-1][:-4] in entry["evaluation"]["sha256"]]
    assert len(keys) == 2
    again = gating.compare_versions(
        deps.registry, ev, "demo", production=1, candidate=2, interpreter_factory=LinearInterpreter
    )

    # Then the same rows, the same seed, the same numbers and interval
    assert again.evaluation["sha256"] == entry["evaluation"]["sha256"]
    assert again.interval == entry["interval"] and again.interval["seed"] == entry["interval"]["seed"]
    assert (again.candidate_value, again.production_value) == (
        entry["candidate_value"],
        entry["production_value"],
    )


def test_the_gate_decides_on_its_own_numbers_never_on_the_events(deps: gating.Deps, bus: FakeBus) -> None:
    # Given a worse v2 and an event (forged, or a stale copy) that claims v2 is far better
    with_production(deps, bus, TRUE_W, 0.0)
    store_heldout(deps.registry, rows_csv(200, seed=14))
    publish(deps.registry, TRUE_W, 0.9)

    res = gating.handle_event(published(2, metrics={"rmse": 0.0001}, job="modelops-demo-forged00000"), deps)

    # Then the platform's numbers decide, and the manifest names the job
    assert res.gate is not None and res.gate["action"] == "keep" and res.gate["candidate_value"] > 0.8
    assert res.job == "modelops-demo-000000000002" and deps.registry.resolve("demo") == 1


def test_canary_weight_makes_the_winner_a_canary(deps: gating.Deps, bus: FakeBus) -> None:
    with_production(deps, bus, TRUE_W, 0.6, canary_weight=0.1)
    store_heldout(deps.registry, rows_csv(200, seed=15))
    publish(deps.registry, TRUE_W, 0.0, canary_weight=0.1)

    res = gating.handle_event(published(2), deps)

    doc, _ = deps.registry.get_alias("demo")
    assert (doc.version, doc.canary) == (1, {"version": 2, "weight": 0.1})
    assert res.gate is not None and res.gate["action"] == "canary"
    assert bus.of("ModelPromoted")[-1]["mode"] == "canary"


# ---------------------------------------------------------------------------- replays
def test_a_replayed_event_decides_nothing_twice_even_after_a_rollback(
    deps: gating.Deps, bus: FakeBus
) -> None:
    publish(deps.registry, TRUE_W, 0.6)
    store_heldout(deps.registry, rows_csv(200, seed=16))
    publish(deps.registry, TRUE_W, 0.0)
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
    publish(deps.registry, TRUE_W, 0.0)
    store_heldout(deps.registry, rows_csv(200, seed=17))
    publish(deps.registry, TRUE_W, 0.9)
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
    publish(deps.registry, TRUE_W)
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
    publish(reg, TRUE_W)
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


def test_the_replay_check_reads_only_the_history_since_the_version(
    deps: gating.Deps, bus: FakeBus, memory_store: MemoryObjectStore
) -> None:
    """The gate's "already decided?" check reads the alias history written since the version's manifest
    (less an hour of clock slack), not the model's whole past: an old model's history would otherwise
    grow the gate's work (and its timeout) with every version."""
    publish(deps.registry, TRUE_W, 0.6)
    store_heldout(deps.registry, rows_csv(200, seed=16))
    gating.handle_event(published(1), deps)
    # a long past: 300 entries written two days before v2
    for i in range(300):
        key = keys.history_entry("demo", "production", f"20000101T0000{i:02d}000000Z", f"{i:012x}")
        memory_store.objects[key] = (
            b'{"kind": "note", "at": "2000-01-01T00:00:00.000000Z"}',
            '"x"',
            "",
            datetime.now(UTC),
        )
    publish(deps.registry, TRUE_W, 0.0)
    gating.handle_event(published(2), deps)
    memory_store.calls.clear()

    res = gating.handle_event(published(2, replay=True), deps)

    assert res.outcome == "already_decided"
    history_reads = [k for m, k in memory_store.calls if m == "get" and "/history/" in k]
    assert 0 < len(history_reads) <= 5, len(history_reads)
