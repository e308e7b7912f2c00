"""The promotion gate with categorical features: the evaluation CSVs hold the raw category strings,
and each version is scored on the same rows encoded with its own schema (its own vocabulary), on
in-memory storage with the linear stand-in models of tests/unit/gate_models.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelops.domain import evaluation as evalrows
from modelops.domain.encoding import Feature, InputSchema
from modelops.stages import gate as gating
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.registry import Manifest, Registry
from tests.fakes import FakeBus, MemoryObjectStore
from tests.unit.gate_models import LinearInterpreter, artifact


def schema(vocabulary: tuple[str, ...]) -> InputSchema:
    return InputSchema((Feature("f1"), Feature("plan", "categorical", vocabulary)))


def publish(reg: Registry, s: InputSchema, w: list[float]) -> Manifest:
    n = len(reg.list_versions("shop")) + 1 if reg.model_exists("shop") else 1
    job = f"modelops-shop-{n:012d}"
    return reg.publish_version(
        "shop",
        {"tflite": ("model.tflite", artifact(w))},
        {
            "task": "regression",
            "schema": {"task": "regression", "target": "y", "features": s.to_list(), "classes": None},
            "spec": {"task": "regression", "target": "y", "promotion": {"metric": "rmse"}},
            "metrics": {"rmse": 0.1},
            "training": {"job": job},
        },
        dedup_key=job,
    )


def rows_csv(n: int, seed: int = 0) -> bytes:
    """``f1,plan,y`` with y = 3 f1 + 2 [plan == "pro"] + noise; a few unknown plans ("trial": 0)."""
    rng = np.random.default_rng(seed)
    lines = ["f1,plan,y"]
    for _ in range(n):
        f1 = float(rng.normal())
        plan = str(rng.choice(["basic", "pro", "trial"], p=[0.45, 0.45, 0.1]))
        y = 3 * f1 + 2 * (plan == "pro") + float(rng.normal(scale=0.1))
        lines.append(f"{f1!r}, {plan} ,{y!r}")  # cells as a user wrote them: spaces around a category
    lines += ["nan,pro,1.0", "x,basic,1.0", "0.5,,1.5", "0.25,NA,0.75"]  # 2 unusable, 2 missing plans
    return ("\n".join(lines) + "\n").encode()


def test_rows_keep_category_text_and_each_model_encodes_with_its_own_vocabulary() -> None:
    table = evalrows.parse(
        "a" * 64, b"f1,plan,y\n1,pro,5\n2, basic ,6\n3,trial,7\nnan,pro,1\n4,,8\n1,pro,5\n"
    )
    rows = evalrows.combine([table], ["f1", "plan"], "y", categorical={"plan"})
    # the NaN row is unusable (a numeric cell), the missing plan is not; the repeated row counts once
    assert (len(rows), rows.unusable, rows.duplicates) == (4, 1, 1)
    by_f1 = dict(zip(rows.features[:, 0].tolist(), rows.categories["plan"], strict=True))
    assert by_f1 == {1.0: "pro", 2.0: "basic", 3.0: "trial", 4.0: None}
    a = evalrows.inputs_for(rows, schema(("basic", "pro")))
    b = evalrows.inputs_for(rows, schema(("pro", "basic", "trial")))
    assert dict(zip(a[:, 0].tolist(), a[:, 1].tolist(), strict=True)) == {1: 1, 2: 0, 3: 2, 4: 2}
    assert dict(zip(b[:, 0].tolist(), b[:, 1].tolist(), strict=True)) == {1: 0, 2: 1, 3: 2, 4: 3}
    assert a.dtype == np.float32
    # a model without categories on the same rows: its numeric columns only
    assert evalrows.inputs_for(rows, InputSchema((Feature("f1"),)))[:, 0].tolist() == a[:, 0].tolist()


def test_a_column_one_model_reads_as_a_number_must_be_a_number_for_both() -> None:
    table = evalrows.parse("a" * 64, b"f1,plan,y\n1,2,5\n2,pro,6\n")
    rows = evalrows.combine([table], ["f1", "plan"], "y", categorical={"plan"}, numeric={"f1", "plan"})
    assert (len(rows), rows.unusable) == (1, 1)
    assert rows.features.tolist() == [[1.0, 2.0]] and rows.categories["plan"] == ["2"]


@pytest.fixture
def deps(memory_store: MemoryObjectStore, bus: FakeBus) -> gating.Deps:
    return gating.Deps(
        registry=Registry.over(memory_store, actor="gate"),
        bus=bus,
        evaluation=EvaluationStore(memory_store),
        interpreter_factory=LinearInterpreter,
    )


def event(version: int) -> dict[str, Any]:
    return {
        "source": "modelops",
        "detail-type": "ModelVersionPublished",
        "detail": {"model": "shop", "version": version},
    }


def test_the_gate_scores_each_version_with_its_own_vocabulary(deps: gating.Deps, bus: FakeBus) -> None:
    # Given production v1 whose vocabulary lists "pro" first (index 0) and a weight that is right only
    # for the other order, and a candidate v2 whose vocabulary puts "pro" at index 1 (weight 2: exact)
    reg = deps.registry
    publish(reg, schema(("pro", "basic")), [3.0, 2.0])
    gating.handle_event(event(1), deps)
    EvaluationStore(reg.objects).put_heldout("shop", rows_csv(300, seed=4))
    publish(reg, schema(("basic", "pro")), [3.0, 2.0])

    res = gating.handle_event(event(2), deps)

    # Then v2 wins on the same rows: encoded with one shared vocabulary they would look alike
    assert res.gate is not None and res.gate["action"] == "promote", res.reason
    d = bus.of("ModelPromoted")[-1]
    assert d["evaluation"]["rows"] == 302 and d["evaluation"]["unusable"] == 2
    # v2: exact on basic and pro; "trial" and a missing plan are its OOV bucket (index 2: +4, wrong)
    assert d["candidate_value"] < d["production_value"]
    assert d["production_value"] > 1.5
    assert reg.resolve("shop") == 2
