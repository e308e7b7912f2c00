"""The promotion gate: the pure decision (domain.gate: the rules, the policy), and its application to the
production alias by the gate stage (``stages.gate.run_gate``, on moto S3, with the stand-in interpreter of
tests/unit/gate_models.py; the stage's event handling: test_gate_stage.py; the bootstrap:
test_bootstrap.py)."""

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
from modelops.domain.errors import SpecError
from modelops.domain.gate import Comparison, Policy, StackPolicy
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.stages import gate as gating
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.registry import Manifest, Registry
from tests.unit.gate_models import TRUE_W, LinearInterpreter, publish, rows_csv, store_heldout

POLICY = Policy(min_improvement=0.0, min_eval_rows=30, canary_weight=0.0)


def alias(version: int, canary: int | None = None) -> AliasDoc:
    return AliasDoc(
        alias="production",
        version=version,
        canary=None if canary is None else {"version": canary, "weight": 0.1},
    )


def measured(
    cand: float | None,
    prod: float | None,
    lower: float | None,
    upper: float | None = None,
    *,
    rows: int = 200,
    metric: str = "rmse",
) -> Comparison:
    """A comparison as the stage measures it (the interval of the improvement: positive = better)."""
    imp = None
    if cand is not None and prod is not None:
        imp = prod - cand if metric in ("rmse", "mae") else cand - prod
    iv = (
        None
        if lower is None
        else {
            "improvement": imp,
            "lower": lower,
            "upper": upper if upper is not None else lower + 1,
            "resamples": 1000,
            "seed": 7,
            "confidence": 0.95,
        }
    )
    return Comparison(
        "heldout", rows, {"source": "heldout", "rows": rows, "sha256": ["ab" * 32]}, cand, prod, iv
    )


def decide(
    candidate: int, current: AliasDoc | None, comp: Comparison | None, policy: Policy = POLICY, **kw: Any
) -> gate.Decision:
    return gate.decide(
        candidate, current, comp, metric=kw.pop("metric", "rmse"), policy=policy, model="demo", **kw
    )


# ---------------------------------------------------------------------------- decide (pure)
def test_first_version_goes_to_production() -> None:
    d = decide(1, None, None)
    assert (d.action, d.production) == ("promote", None)
    assert "first version" in d.reason
    assert d.new_alias(None) == AliasDoc(alias="production", version=1, previous=None, reason=d.reason)


@pytest.mark.parametrize(
    ("metric", "cand", "prod", "lower", "action"),
    [
        ("rmse", 0.4, 0.5, 0.05, "promote"),  # lower is better; the interval clears 0
        ("rmse", 0.4, 0.5, -0.01, "keep"),  # better on the point estimate, but inside the noise
        ("rmse", 0.6, 0.5, -0.2, "keep"),
        ("mae", 0.5, 0.5, 0.0, "keep"),  # a lower bound of exactly 0 does not beat 0
        ("accuracy", 0.95, 0.90, 0.01, "promote"),  # higher is better
        ("auc", 0.80, 0.85, -0.1, "keep"),
    ],
)
def test_the_lower_bound_of_the_interval_decides(
    metric: str, cand: float, prod: float, lower: float, action: str
) -> None:
    d = decide(3, alias(2), measured(cand, prod, lower, metric=metric), metric=metric)
    assert d.action == action
    assert (d.candidate_value, d.production_value, d.production, d.source) == (cand, prod, 2, "heldout")
    assert d.improvement == pytest.approx(prod - cand if metric in ("rmse", "mae") else cand - prod)
    assert d.interval is not None and d.interval["lower"] == lower


def test_min_improvement_is_required_of_the_lower_bound() -> None:
    policy = Policy(min_improvement=0.05, min_eval_rows=30, canary_weight=0.0)
    small = decide(3, alias(2), measured(0.40, 0.5, 0.04), policy)
    big = decide(3, alias(2), measured(0.40, 0.5, 0.06), policy)
    assert small.action == "keep" and big.action == "promote"
    assert "kept production v2" in small.reason and "0.04" in small.reason and "above 0.05" in small.reason


def test_winner_becomes_canary_when_asked_and_keeps_production() -> None:
    cur = alias(2)
    cur.previous = 1
    d = decide(3, cur, measured(0.4, 0.5, 0.05), Policy(0.0, 30, 0.2))
    assert d.action == "canary"
    new = d.new_alias(cur)
    assert new is not None
    assert (new.version, new.previous, new.canary) == (2, 1, {"version": 3, "weight": 0.2})


def test_a_loser_is_not_made_canary() -> None:
    d = decide(3, alias(2), measured(0.6, 0.5, -0.2), Policy(0.0, 30, 0.2))
    assert d.action == "keep" and d.new_alias(alias(2)) is None


def test_promotion_clears_an_older_canary_and_says_so() -> None:
    d = decide(4, alias(2, canary=3), measured(0.1, 0.5, 0.3))
    new = d.new_alias(alias(2, canary=3))
    assert new is not None and (new.version, new.previous, new.canary) == (4, 2, None)
    assert "replaces canary v3" in d.reason


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf")])
def test_candidate_without_a_finite_metric_is_kept_out(bad: Any) -> None:
    d = decide(3, alias(2), measured(bad, 0.5, 0.1))
    assert d.action == "keep" and "candidate v3 has no finite rmse" in d.reason


def test_production_without_the_metric_is_not_replaced_blindly() -> None:
    d = decide(3, alias(2), measured(0.1, None, 0.1))
    assert d.action == "keep" and "production v2 has no finite rmse" in d.reason


def test_without_an_interval_nothing_is_promoted() -> None:
    d = decide(3, alias(2), measured(0.1, 0.5, None))
    assert d.action == "keep" and "the bootstrap interval has no finite rmse" in d.reason


def test_unreadable_production_manifest_is_replaced() -> None:
    d = decide(3, alias(2), None, production_readable=False)
    assert d.action == "promote" and "cannot be read" in d.reason


def test_already_production_or_canary_is_a_no_op() -> None:
    assert decide(2, alias(2), None).action == "none"
    assert decide(3, alias(2, canary=3), measured(0.1, 0.5, 0.3)).action == "none"


def test_unknown_metric_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown promotion metric"):
        decide(2, alias(1), None, metric="f1")


def test_too_few_rows_keep_production_and_name_what_to_add() -> None:
    d = decide(3, alias(2), measured(0.1, 0.5, 0.3, rows=29))
    assert d.action == "keep" and "only 29 heldout evaluation rows" in d.reason
    assert d.needs is not None and "at least 30 rows under datasets/demo/eval/" in d.needs


def test_job_claims_alone_never_replace_production() -> None:
    comp = Comparison("job_claim", claims={"candidate": 1e-4, "production": 4.1})
    d = decide(3, alias(2), comp)
    assert d.action == "keep" and d.source == "job_claim" and "claims rmse 0.0001" in d.reason
    assert d.needs is not None and "datasets/demo/eval/" in d.needs
    # the first version still becomes production: there is nothing to compare with
    assert decide(1, None, None).action == "promote"


def test_a_comparison_problem_keeps_production() -> None:
    comp = Comparison("heldout", 200, problem="production v2's tflite artifact failed its SHA-256 check")
    d = decide(3, alias(2), comp)
    assert (
        d.action == "keep"
        and d.reason == "kept production v2: production v2's tflite artifact failed its SHA-256 check"
    )


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(
    a=finite,
    b=finite,
    spread=st.floats(0, 10),
    metric=st.sampled_from(["rmse", "mae", "accuracy", "auc"]),
    m=st.floats(0, 10),
)
def test_two_versions_never_both_beat_each_other(
    a: float, b: float, spread: float, metric: str, m: float
) -> None:
    """With the interval of b over a being the mirror of a over b, at most one direction promotes."""
    ab_imp = (b - a) if metric in ("rmse", "mae") else (a - b)
    ab = measured(a, b, ab_imp - spread, ab_imp + spread, metric=metric)
    ba = measured(b, a, -ab_imp - spread, -ab_imp + spread, metric=metric)
    policy = Policy(min_improvement=m, min_eval_rows=30, canary_weight=0.0)
    d_ab = decide(2, alias(1), ab, policy, metric=metric)
    d_ba = decide(1, alias(2), ba, policy, metric=metric)
    assert not (d_ab.action == "promote" and d_ba.action == "promote")
    if a == b:
        assert d_ab.action == d_ba.action == "keep"
    assert d_ab.improvement is not None and d_ba.improvement is not None
    assert math.isclose(d_ab.improvement, -d_ba.improvement, abs_tol=1e-9)


# ---------------------------------------------------------------------------- the policy
STACK = StackPolicy(min_improvement=0.01, min_eval_rows=30, max_canary_weight=0.5)


def test_the_stack_policy_applies_when_the_spec_asks_for_less() -> None:
    p = gate.effective_policy(STACK, min_improvement=0.0, canary_weight=0.0)
    assert (p.min_improvement, p.min_eval_rows, p.canary_weight) == (0.01, 30, 0.0)
    assert p.to_dict() == {
        "min_improvement": {"value": 0.01, "from": "stack"},
        "min_eval_rows": {"value": 30, "from": "stack"},
        "canary_weight": {"value": 0.0, "from": "spec"},
    }


@pytest.mark.parametrize(
    ("min_improvement", "canary_weight"), [(-1, 1.0), (float("nan"), 0.99), ("0.5", 7), (None, 0.5)]
)
def test_a_spec_beyond_the_stack_policy_gets_the_stacks_values(
    min_improvement: Any, canary_weight: Any
) -> None:
    p = gate.effective_policy(STACK, min_improvement=min_improvement, canary_weight=canary_weight)
    assert (p.min_improvement, p.canary_weight) == (0.01, 0.5)
    assert p.origin == {"min_improvement": "stack", "canary_weight": "stack", "min_eval_rows": "stack"}


def test_a_spec_may_tighten_every_value() -> None:
    p = gate.effective_policy(STACK, min_improvement=0.2, canary_weight=0.1, min_eval_rows=100)
    assert (p.min_improvement, p.canary_weight, p.min_eval_rows) == (0.2, 0.1, 100)
    assert set(p.origin.values()) == {"spec"}


@pytest.mark.parametrize("promotion", [{"min_improvement": -1}, {"canary_weight": 1.0}])
def test_an_uploaded_spec_asking_for_a_negative_improvement_or_all_traffic_is_refused(
    promotion: dict[str, Any],
) -> None:
    # what train_trigger does with such a model.json: rejected before any job (the gate's policy is the
    # second line: effective_policy above)
    with pytest.raises(SpecError):
        parse_spec({"task": "regression", "target": "y", "promotion": promotion})


# ---------------------------------------------------------------------------- run_gate (the gate stage) on the registry
def spec(**promotion: Any) -> ModelSpec:
    return parse_spec(
        {
            "task": "regression",
            "target": "y",
            "features": ["f1", "f2"],
            "promotion": {"metric": "rmse", **promotion},
        }
    )


@pytest.fixture
def reg(s3, registry_bucket) -> Registry:  # type: ignore[no-untyped-def]
    r = Registry(s3, registry_bucket, actor="gate")
    return r


def gate_entries(reg: Registry) -> list[dict[str, Any]]:
    return [h for h in reg.history("demo", "production") if h.get("kind") == "gate"]


def run(reg: Registry, m: Manifest, sp: ModelSpec | None = None) -> gating.GateResult:
    return gating.run_gate(
        reg, m, sp or spec(), evaluation=EvaluationStore(reg.objects), interpreter_factory=LinearInterpreter
    )


def test_run_gate_first_version_then_better_then_worse(reg: Registry) -> None:
    store_heldout(reg, rows_csv(300, seed=21))
    v1, v2, v3 = publish(reg, TRUE_W, 0.8), publish(reg, TRUE_W, 0.3), publish(reg, TRUE_W, 0.5)

    r1 = run(reg, v1)
    r2 = run(reg, v2)
    r3 = run(reg, v3)

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
    assert kept["candidate_value"] > kept["production_value"] and kept["interval"]["upper"] < 0
    moves = [(h["from"], h["to"], h["outcome"]) for h in reg.history("demo", "production") if "outcome" in h]
    assert moves == [(None, 1, "applied"), (1, 2, "applied")]


def test_run_gate_sets_the_canary(reg: Registry) -> None:
    store_heldout(reg, rows_csv(300, seed=22))
    v1, v2 = publish(reg, TRUE_W, 0.8), publish(reg, TRUE_W, 0.0)
    run(reg, v1, spec(canary_weight=0.1))
    res = run(reg, v2, spec(canary_weight=0.1))
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
    # Given production v1 (bias 0.8), a candidate v3 (bias 0.4) better than v1 but worse than v2 (no bias)
    reg = RivalDuringGate(s3, registry_bucket, actor="gate")
    store_heldout(reg, rows_csv(300, seed=23))
    v1, _v2, v3 = publish(reg, TRUE_W, 0.8), publish(reg, TRUE_W, 0.0), publish(reg, TRUE_W, 0.4)
    reg.promote("demo", 1)
    reg.rival_version = 2

    # When someone promotes v2 while the gate is deciding about v3
    res = run(reg, v3)

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
    assert gate_entries(reg)[-1]["reason"].startswith("kept production v2: candidate v3 rmse")
    assert v1.version == 1


def test_production_moved_during_the_gate_to_a_worse_version_promotes_on_top_of_it(
    s3, registry_bucket
) -> None:  # type: ignore[no-untyped-def]
    reg = RivalDuringGate(s3, registry_bucket, actor="gate")
    store_heldout(reg, rows_csv(300, seed=24))
    publish(reg, TRUE_W, 0.5), publish(reg, TRUE_W, 0.9)
    v3 = publish(reg, TRUE_W, 0.0)
    reg.promote("demo", 1)
    reg.rival_version = 2

    res = run(reg, v3)

    assert res.evaluations == 2 and res.decision.action == "promote" and res.decision.production == 2
    doc, _ = reg.get_alias("demo")
    assert (doc.version, doc.previous) == (3, 2)  # previous is the rival's v2, not the stale v1


def test_prior_decision_finds_gate_entries_and_manual_moves(reg: Registry) -> None:
    store_heldout(reg, rows_csv(300, seed=25))
    v1, v2, v3 = publish(reg, TRUE_W, 0.0), publish(reg, TRUE_W, 0.9), publish(reg, TRUE_W, 0.1)
    assert gate.prior_decision(reg.history("demo", "production"), 2) is None
    run(reg, v1)
    run(reg, v2)
    reg.promote("demo", 3, reason="by hand")
    found2 = gate.prior_decision(reg.history("demo", "production"), 2)
    found3 = gate.prior_decision(reg.history("demo", "production"), 3)
    assert found2 is not None and found2["decision"] == "keep"
    assert found3 is not None and found3["reason"] == "by hand"
    assert v3.version == 3


def test_the_gate_imports_no_tensorflow_and_its_rules_no_numpy() -> None:
    """The gate function runs LiteRT (modelops.inference), never TensorFlow; the rules stay plain Python;
    convert's stage module imports neither numpy nor TensorFlow until it converts."""
    code = (
        "import sys, modelops.domain.gate; "
        "assert 'numpy' not in sys.modules, 'domain.gate imports numpy'; "
        "import modelops.stages.convert; "
        "assert not [m for m in ('numpy', 'tensorflow', 'keras') if m in sys.modules], 'convert'; "
        "import modelops.stages.gate, functions.gate.app; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
