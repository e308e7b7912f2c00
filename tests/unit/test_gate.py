"""The promotion gate: the pure decision (domain.gate), and its application to the production alias by the
gate stage (``stages.gate.run_gate``, on moto S3; the stage's event handling: test_gate_stage.py)."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops.domain import gate
from modelops.domain.alias import AliasDoc
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.stages.gate import run_gate
from modelops.storage.registry import Manifest, Registry


def alias(version: int, canary: int | None = None) -> AliasDoc:
    return AliasDoc(
        alias="production",
        version=version,
        canary=None if canary is None else {"version": canary, "weight": 0.1},
    )


# ---------------------------------------------------------------------------- decide (pure)
def test_first_version_goes_to_production() -> None:
    d = gate.decide(1, {"rmse": 9.0}, None, None, metric="rmse")
    assert (d.action, d.production) == ("promote", None)
    assert "first version" in d.reason
    assert d.new_alias(None) == AliasDoc(alias="production", version=1, previous=None, reason=d.reason)


@pytest.mark.parametrize(
    ("metric", "cand", "prod", "action"),
    [
        ("rmse", 0.4, 0.5, "promote"),  # lower is better
        ("rmse", 0.6, 0.5, "keep"),
        ("mae", 0.5, 0.5, "keep"),  # a tie is not better
        ("accuracy", 0.91, 0.90, "promote"),  # higher is better
        ("auc", 0.80, 0.85, "keep"),
    ],
)
def test_metric_direction(metric: str, cand: float, prod: float, action: str) -> None:
    d = gate.decide(3, {metric: cand}, alias(2), {metric: prod}, metric=metric)
    assert d.action == action
    assert (d.candidate_value, d.production_value, d.production) == (cand, prod, 2)
    assert d.improvement == pytest.approx(prod - cand if metric in ("rmse", "mae") else cand - prod)


def test_min_improvement_is_required() -> None:
    small = gate.decide(3, {"rmse": 0.49}, alias(2), {"rmse": 0.5}, metric="rmse", min_improvement=0.05)
    big = gate.decide(3, {"rmse": 0.40}, alias(2), {"rmse": 0.5}, metric="rmse", min_improvement=0.05)
    assert small.action == "keep" and big.action == "promote"
    assert "kept production v2" in small.reason and "0.49" in small.reason and "0.05" in small.reason


def test_winner_becomes_canary_when_asked_and_keeps_production() -> None:
    cur = alias(2)
    cur.previous = 1
    d = gate.decide(3, {"rmse": 0.4}, cur, {"rmse": 0.5}, metric="rmse", canary_weight=0.2)
    assert d.action == "canary"
    new = d.new_alias(cur)
    assert new is not None
    assert (new.version, new.previous, new.canary) == (2, 1, {"version": 3, "weight": 0.2})


def test_a_loser_is_not_made_canary() -> None:
    d = gate.decide(3, {"rmse": 0.6}, alias(2), {"rmse": 0.5}, metric="rmse", canary_weight=0.2)
    assert d.action == "keep" and d.new_alias(alias(2)) is None


def test_promotion_clears_an_older_canary_and_says_so() -> None:
    d = gate.decide(4, {"rmse": 0.1}, alias(2, canary=3), {"rmse": 0.5}, metric="rmse")
    new = d.new_alias(alias(2, canary=3))
    assert new is not None and (new.version, new.previous, new.canary) == (4, 2, None)
    assert "replaces canary v3" in d.reason


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "0.3", True])
def test_candidate_without_a_finite_metric_is_kept_out(bad: Any) -> None:
    metrics = {} if bad is None else {"rmse": bad}
    d = gate.decide(3, metrics, alias(2), {"rmse": 0.5}, metric="rmse")
    assert d.action == "keep" and "candidate v3 has no finite rmse" in d.reason


def test_production_without_the_metric_is_not_replaced_blindly() -> None:
    d = gate.decide(3, {"rmse": 0.1}, alias(2), {"mae": 0.5}, metric="rmse")
    assert d.action == "keep" and "production v2 has no finite rmse" in d.reason


def test_unreadable_production_manifest_is_replaced() -> None:
    d = gate.decide(3, {"rmse": 0.9}, alias(2), None, metric="rmse")
    assert d.action == "promote" and "cannot be read" in d.reason


def test_already_production_or_canary_is_a_no_op() -> None:
    assert gate.decide(2, {"rmse": 0.1}, alias(2), None, metric="rmse").action == "none"
    assert gate.decide(3, {"rmse": 0.1}, alias(2, canary=3), {"rmse": 0.5}, metric="rmse").action == "none"


def test_unknown_metric_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown promotion metric"):
        gate.decide(2, {}, alias(1), {}, metric="f1")


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(a=finite, b=finite, metric=st.sampled_from(["rmse", "mae", "accuracy", "auc"]), m=st.floats(0, 10))
def test_two_versions_never_both_beat_each_other(a: float, b: float, metric: str, m: float) -> None:
    ab = gate.decide(2, {metric: a}, alias(1), {metric: b}, metric=metric, min_improvement=m)
    ba = gate.decide(1, {metric: b}, alias(2), {metric: a}, metric=metric, min_improvement=m)
    assert not (ab.action == "promote" and ba.action == "promote")
    if a == b:
        assert ab.action == ba.action == "keep"
    assert ab.improvement is not None and math.isclose(ab.improvement, -ba.improvement, abs_tol=1e-9)


# ---------------------------------------------------------------------------- run_gate (the gate stage) on the registry
def spec(**promotion: Any) -> ModelSpec:
    return parse_spec({"task": "regression", "target": "y", "promotion": {"metric": "rmse", **promotion}})


def publish(reg: Registry, rmse: float) -> Manifest:
    return reg.publish_version(
        "demo", {"tflite": ("model.tflite", f"{rmse}".encode())}, {"metrics": {"rmse": rmse}}
    )


@pytest.fixture
def reg(s3, registry_bucket) -> Registry:  # type: ignore[no-untyped-def]
    return Registry(s3, registry_bucket, actor="gate")


def gate_entries(reg: Registry) -> list[dict[str, Any]]:
    return [h for h in reg.history("demo", "production") if h.get("kind") == "gate"]


def test_run_gate_first_version_then_better_then_worse(reg: Registry) -> None:
    v1, v2, v3 = publish(reg, 0.5), publish(reg, 0.4), publish(reg, 0.45)

    r1 = run_gate(reg, v1, spec())
    r2 = run_gate(reg, v2, spec())
    r3 = run_gate(reg, v3, spec())

    assert (r1.decision.action, r1.applied, r2.decision.action, r2.applied) == (
        "promote",
        True,
        "promote",
        True,
    )
    assert (r3.decision.action, r3.applied) == ("keep", False)
    doc, _ = reg.get_alias("demo")
    assert (doc.version, doc.previous) == (2, 1)
    entries = gate_entries(reg)
    assert [(e["candidate"], e["decision"], e["production"]) for e in entries] == [
        (1, "promote", None),
        (2, "promote", 1),
        (3, "keep", 2),
    ]
    kept = entries[-1]
    assert kept["reason"].startswith("kept production v2")
    assert (kept["candidate_value"], kept["production_value"]) == (0.45, 0.4)
    moves = [(h["from"], h["to"], h["outcome"]) for h in reg.history("demo", "production") if "outcome" in h]
    assert moves == [(None, 1, "applied"), (1, 2, "applied")]


def test_run_gate_sets_the_canary(reg: Registry) -> None:
    v1, v2 = publish(reg, 0.5), publish(reg, 0.4)
    run_gate(reg, v1, spec(canary_weight=0.1))
    res = run_gate(reg, v2, spec(canary_weight=0.1))
    doc, _ = reg.get_alias("demo")
    assert res.decision.action == "canary" and res.applied
    assert (doc.version, doc.canary) == (1, {"version": 2, "weight": 0.1})


class RivalDuringGate(Registry):
    """Moves production to ``rival_version`` right after the gate has read production's manifest
    (between the gate's read of the alias and its conditional write)."""

    rival_version = 0
    fired = False

    def get_manifest(self, model: str, version: int) -> Manifest:
        m = super().get_manifest(model, version)
        if not self.fired and self.rival_version:
            self.fired = True
            Registry.over(self.objects, actor="someone-else").promote(
                model, self.rival_version, reason="by hand"
            )
        return m


def test_production_moved_during_the_gate_is_re_evaluated_not_overwritten(s3, registry_bucket) -> None:  # type: ignore[no-untyped-def]
    # Given production v1 (rmse 0.5), a candidate v3 (0.45) better than v1 but worse than v2 (0.3)
    reg = RivalDuringGate(s3, registry_bucket, actor="gate")
    v1, _v2, v3 = publish(reg, 0.5), publish(reg, 0.3), publish(reg, 0.45)
    reg.promote("demo", 1)
    reg.rival_version = 2

    # When someone promotes v2 while the gate is deciding about v3
    res = run_gate(reg, v3, spec())

    # Then the gate lost the CAS, compared v3 with the new production v2, and kept it
    assert reg.fired and res.evaluations == 2
    assert (res.decision.action, res.decision.production, res.applied) == ("keep", 2, False)
    doc, _ = reg.get_alias("demo")
    assert (doc.version, doc.previous, doc.reason) == (2, 1, "by hand")
    history = reg.history("demo", "production")
    assert [(h["actor"], h["from"], h["to"], h["outcome"]) for h in history if "outcome" in h] == [
        ("gate", None, 1, "applied"),
        ("someone-else", 1, 2, "applied"),
        ("gate", 1, 3, "conflict"),
    ]
    assert gate_entries(reg)[-1]["reason"].startswith("kept production v2: candidate v3 rmse 0.45")
    assert v1.version == 1


def test_production_moved_during_the_gate_to_a_worse_version_promotes_on_top_of_it(
    s3, registry_bucket
) -> None:  # type: ignore[no-untyped-def]
    reg = RivalDuringGate(s3, registry_bucket, actor="gate")
    publish(reg, 0.5), publish(reg, 0.7)
    v3 = publish(reg, 0.45)
    reg.promote("demo", 1)
    reg.rival_version = 2

    res = run_gate(reg, v3, spec())

    assert res.evaluations == 2 and res.decision.action == "promote" and res.decision.production == 2
    doc, _ = reg.get_alias("demo")
    assert (doc.version, doc.previous) == (3, 2)  # previous is the rival's v2, not the stale v1


def test_prior_decision_finds_gate_entries_and_manual_moves(reg: Registry) -> None:
    v1, v2, v3 = publish(reg, 0.5), publish(reg, 0.6), publish(reg, 0.1)
    assert gate.prior_decision(reg.history("demo", "production"), 2) is None
    run_gate(reg, v1, spec())
    run_gate(reg, v2, spec())
    reg.promote("demo", 3, reason="by hand")
    found2 = gate.prior_decision(reg.history("demo", "production"), 2)
    found3 = gate.prior_decision(reg.history("demo", "production"), 3)
    assert found2 is not None and found2["decision"] == "keep"
    assert found3 is not None and found3["reason"] == "by hand"
    assert v3.version == 3


def test_gate_and_conversion_import_no_numpy_or_tensorflow() -> None:
    code = (
        "import sys, modelops.domain.gate, modelops.stages.gate, modelops.stages.convert; "
        "bad = [m for m in ('numpy', 'tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
