"""The promotion gate on tensor models (issue 15): the platform's evaluation rows fed to a model with one
input, each row reshaped row-major in the CSV's column order and cast to the input's dtype, its first
output scored with the gate's metric and bootstrap; every case where that would not be exact (several
inputs, sizes that differ, categories, fractions for an integer input, other signatures, a classifier
without classes) is a comparison refused with its reason, never an exception. Pure rules on
``modelops.domain.evaluation``; the stage on in-memory storage with a stand-in tensor interpreter (the
real LiteRT run: tests/integration/test_gate_tensors.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.domain import evaluation as evalrows
from modelops.domain.signature import Signature, TensorSpec
from modelops.stages import gate as gating
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.registry import Manifest, Registry
from tests.fakes import FakeBus, MemoryObjectStore

PIXELS = ["p0", "p1", "p2", "p3"]
TRUE_W = [3.0, -2.0, 1.0, 0.5]


def sig(*inputs: tuple[str, tuple[int, ...], str], out: tuple[int, ...] = (1,)) -> Signature:
    return Signature(
        tuple(TensorSpec(n, s, d) for n, s, d in inputs) or (TensorSpec("image", (2, 2), "float32"),),
        (TensorSpec("output_0", out, "float32"),),
    )


IMAGE = sig(("image", (2, 2), "float32"))


def rows_of(body: str, target: str = "y", size: int = 4) -> evalrows.Rows:
    return evalrows.combine_for_tensors([evalrows.parse("a" * 64, body.encode())], target, size)


# ---------------------------------------------------------------------------- rows -> tensors
def test_each_row_is_reshaped_row_major_in_the_csvs_column_order() -> None:
    # the target sits between the features: the features keep the CSV's order around it
    rows = rows_of("p0,p1,y,p2,p3\n1,2,9,3,4\n")
    assert rows.columns == ("p0", "p1", "p2", "p3", "y")
    x = evalrows.tensor_inputs_for(rows, IMAGE)["image"]
    assert x.dtype == np.float32 and x.shape == (1, 2, 2)
    assert x[0].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_an_integer_input_takes_integral_values_in_its_range() -> None:
    ints = sig(("ids", (4,), "int32"))
    x = evalrows.tensor_inputs_for(rows_of("p0,p1,p2,p3,y\n1,2,3.0,-4,0\n"), ints)["ids"]
    assert x.dtype == np.int32 and x.tolist() == [[1, 2, 3, -4]]
    fraction = rows_of("p0,p1,p2,p3,y\n1,2,3.5,4,0\n")
    problem = evalrows.feed_problem(fraction, ints)
    assert problem is not None and "values with a fraction" in problem and "ids [4] int32" in problem
    with pytest.raises(evalrows.FeedError, match="values with a fraction"):
        evalrows.tensor_inputs_for(fraction, ints)
    big = rows_of("p0,p1,p2,p3,y\n1,2,3,4000000000,0\n")
    assert "beyond the int32 range" in str(evalrows.feed_problem(big, ints))
    assert evalrows.feed_problem(big, sig(("ids", (4,), "int64"))) is None


def test_a_float32_input_refuses_values_beyond_its_range() -> None:
    assert "float32 range" in str(evalrows.feed_problem(rows_of("p0,p1,p2,p3,y\n1,2,3,1e39,0\n"), IMAGE))


def test_several_inputs_or_another_size_cannot_be_fed() -> None:
    rows = rows_of("p0,p1,p2,p3,y\n1,2,3,4,0\n")
    two = sig(("image", (2, 2), "float32"), ("meta", (2,), "float32"))
    assert evalrows.feed_problem(rows, two) == (
        "the evaluation rows (4 columns: p0, p1, p2, p3) cannot be fed to inputs image [2, 2] float32, "
        "meta [2] float32: the gate feeds each row to a model with one input; promote by hand"
    )
    other = sig(("image", (8, 8, 1), "float32"))
    assert evalrows.feed_problem(rows, other) == (
        "the evaluation rows (4 columns: p0, p1, p2, p3) cannot be fed to input image [8, 8, 1] float32 "
        "(64 values per row): the gate feeds one value per column; promote by hand"
    )
    with pytest.raises(evalrows.FeedError):
        evalrows.tensor_inputs_for(rows, other)


def test_categorical_columns_are_refused() -> None:
    table = evalrows.parse("b" * 64, b"p0,p1,p2,p3,y\n1,2,3,4,0\n1,2,red,4,1\n1,2,,4,1\n")
    rows = evalrows.combine_for_tensors([table], "y", 4)
    assert rows.unusable == 2  # the text cell and the missing one
    text = evalrows.text_columns([table], rows.columns[:-1])
    assert text == ["p2"]  # a missing cell is no category
    assert "p2 hold categories (text)" in str(evalrows.feed_problem(rows, IMAGE, text=text))
    declared = evalrows.feed_problem(rows, IMAGE, categorical={"p3"})
    assert declared is not None and "p3 hold categories" in declared


def test_the_columns_of_the_tables_that_fit_the_input_win_and_others_are_skipped() -> None:
    a = evalrows.parse("a" * 64, b"p0,p1,p2,y\n1,2,3,0\n")
    b = evalrows.parse("b" * 64, b"p0,p1,p2,p3,y\n1,2,3,4,0\n")
    c = evalrows.parse("c" * 64, b"p0,p1,p2,p3\n1,2,3,4\n")  # no target
    rows = evalrows.combine_for_tensors([a, b, c], "y", 4)
    assert rows.columns == ("p0", "p1", "p2", "p3", "y") and len(rows) == 1 and rows.sha256 == ["b" * 64]
    assert {s["sha256"][0] for s in rows.skipped} == {"a", "c"}
    assert evalrows.tensor_columns([a, c], "y", 4) == ("p0", "p1", "p2")  # none fits: the most common


def test_the_first_output_must_be_scoreable_for_the_task() -> None:
    ten = sig(out=(10,))
    assert evalrows.output_problem("multiclass", list(range(10)), ten) is None
    assert evalrows.output_problem("binary", [0, 1], sig(out=(1,))) is None
    assert evalrows.output_problem("binary", [0, 1], sig(out=(2,))) is None
    assert "10 values per row" in str(evalrows.output_problem("regression", None, ten))
    assert "without classes" in str(evalrows.output_problem("multiclass", None, ten))
    assert "the 3 classes" in str(evalrows.output_problem("multiclass", [0, 1, 2], ten))
    assert "one score vector per row" in str(evalrows.output_problem("multiclass", [0, 1], sig(out=(4, 2))))


# ---------------------------------------------------------------------------- the stage
def artifact(w: list[float], b: float = 0.0, **shape: Any) -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + json.dumps({"w": w, "b": b, **shape}).encode()


class TensorInterpreter:
    """``flatten(image) @ w + b`` (``softmax`` of ``flatten @ W`` when ``w`` is a matrix) behind LiteRT's
    tensor-name interface (no signature runner): what ``modelops.inference.LoadedModel`` calls."""

    def __init__(self, path: str):
        p = json.loads(Path(path).read_bytes()[8:])
        self.w = np.asarray(p["w"], dtype=np.float64)
        self.b = float(p["b"])
        self.inputs: list[tuple[str, list[int], str]] = p.get("inputs", [["image", [2, 2], "float32"]])
        self.n_out = 1 if self.w.ndim == 1 else self.w.shape[1]
        self.x: dict[int, np.ndarray] = {}

    def get_signature_list(self) -> dict[str, Any]:
        return {}

    def get_input_details(self) -> list[dict[str, Any]]:
        return [
            {
                "name": f"serving_default_{n}:0",
                "index": i,
                "dtype": np.dtype(d),
                "shape": np.array([1, *s]),
                "shape_signature": np.array([-1, *s]),
            }
            for i, (n, s, d) in enumerate(self.inputs)
        ]

    def get_output_details(self) -> list[dict[str, Any]]:
        shape = np.array([1, self.n_out])
        return [{"name": "serving_default_output_0:0", "index": 99, "dtype": np.float32, "shape": shape}]

    def resize_tensor_input(self, index: int, shape: list[int], strict: bool = False) -> None:
        pass

    def allocate_tensors(self) -> None:
        pass

    def set_tensor(self, index: int, x: np.ndarray) -> None:
        assert x.dtype == np.dtype(self.inputs[index][2])
        self.x[index] = x

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        flat = self.x[0].reshape(len(self.x[0]), -1).astype(np.float64)
        z = flat @ self.w + self.b
        if self.w.ndim == 2:
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z = z / z.sum(axis=1, keepdims=True)
        return z.reshape(len(flat), self.n_out).astype(np.float32)


def publish(
    reg: Registry,
    w: Any,
    b: float = 0.0,
    *,
    task: str = "regression",
    inputs: list[tuple[str, list[int], str]] | None = None,
    classes: list[Any] | None = None,
    tabular: bool = False,
    feature_types: dict[str, str] | None = None,
) -> Manifest:
    n = len(reg.list_versions("pix")) + 1 if reg.model_exists("pix") else 1
    ins = inputs or [("image", [2, 2], "float32")]
    n_out = 1 if np.ndim(w) == 1 else len(w[0])
    schema: dict[str, Any] = {"task": task, "target": "y", "classes": classes}
    if tabular:
        schema["features"] = [{"name": p, "dtype": "float32"} for p in PIXELS]
    else:
        schema["inputs"] = [{"name": nm, "shape": s, "dtype": d} for nm, s, d in ins]
        schema["outputs"] = [{"name": "output_0", "shape": [n_out], "dtype": "float32"}]
    spec: dict[str, Any] = {
        "task": task,
        "target": "y",
        "promotion": {"metric": "rmse" if task == "regression" else "accuracy"},
    }
    if feature_types:
        spec["features"] = [{"name": k, "type": v} for k, v in feature_types.items()]
    job = f"modelops-pix-{n:012d}"
    return reg.publish_version(
        "pix",
        {"tflite": ("model.tflite", artifact(w, b, inputs=ins))},
        {"task": task, "schema": schema, "spec": spec, "metrics": {}, "training": {"job": job}},
        dedup_key=job,
    )


def pixels_csv(n: int, seed: int = 0, task: str = "regression") -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).round(4)
    y = x @ np.asarray(TRUE_W) + rng.normal(scale=0.2, size=n)
    lines = [",".join([*PIXELS, "y"])]
    for row, t in zip(x.tolist(), y.tolist(), strict=True):
        label = repr(t) if task == "regression" else str(int(row[0] > 0))
        lines.append(",".join([*map(repr, row), label]))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def deps(memory_store: MemoryObjectStore, bus: FakeBus) -> gating.Deps:
    return gating.Deps(
        registry=Registry.over(memory_store, actor="gate"),
        bus=bus,
        evaluation=EvaluationStore(memory_store),
        interpreter_factory=TensorInterpreter,
    )


def decide(deps: gating.Deps, version: int) -> gating.Result:
    event = {
        "source": "modelops",
        "detail-type": "ModelVersionPublished",
        "detail": {"model": "pix", "version": version},
    }
    return gating.handle_event(event, deps)


def kept(deps: gating.Deps, bus: FakeBus, version: int) -> str:
    res = decide(deps, version)
    assert res.outcome == "decided" and res.gate is not None and res.gate["action"] == "keep", res.reason
    assert deps.registry.resolve("pix") == 1 and bus.of("PromotionRejected")[-1]["version"] == version
    return res.reason


def with_production(deps: gating.Deps, *args: Any, **kw: Any) -> None:
    publish(deps.registry, *args, **kw)
    assert decide(deps, 1).gate["action"] == "promote"  # type: ignore[index]


def test_a_better_tensor_model_is_promoted_on_the_heldout_rows(deps: gating.Deps, bus: FakeBus) -> None:
    # Given production off by a bias and 300 held-out rows of four pixel columns and the target
    with_production(deps, TRUE_W, 1.0)
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(300))
    publish(deps.registry, TRUE_W, 0.0)

    res = decide(deps, 2)

    # Then both were fed each row as a 2x2 image and scored with rmse: the candidate wins
    assert res.gate is not None and res.gate["action"] == "promote", res.reason
    d = bus.of("ModelPromoted")[-1]
    assert d["candidate_value"] == pytest.approx(0.2, abs=0.05)
    assert d["production_value"] == pytest.approx((0.2**2 + 1.0) ** 0.5, abs=0.05)
    assert d["evaluation"]["columns"] == 4 and d["evaluation"]["inputs"] == ["image [2, 2] float32"]
    assert d["evaluation"]["rows"] == 300 and d["interval"]["lower"] > 0


def test_a_multiclass_tensor_model_is_scored_on_its_first_outputs_probabilities(
    deps: gating.Deps, bus: FakeBus
) -> None:
    # class 1 when p0 > 0: the candidate's scores follow p0, production's the opposite
    good = [[-5.0, 5.0], [0, 0], [0, 0], [0, 0]]
    bad = [[5.0, -5.0], [0, 0], [0, 0], [0, 0]]
    with_production(deps, bad, task="multiclass", classes=["0", "1"])
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(200, task="multiclass"))
    publish(deps.registry, good, task="multiclass", classes=["0", "1"])

    res = decide(deps, 2)

    assert res.gate is not None and res.gate["action"] == "promote", res.reason
    assert res.gate["candidate_value"] == 1.0 and res.gate["production_value"] == 0.0


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (
            {"inputs": [("image", [4], "float32")]},
            "candidate v2: its inputs (image [4] float32) are not production v1's (image [2, 2] float32)",
        ),
        ({"tabular": True}, "candidate v2 is a tabular model and production v1 a tensor one"),
        (
            {"inputs": [("image", [2, 2], "float32"), ("meta", [2], "float32")]},
            "cannot be fed the same rows",
        ),
    ],
)
def test_a_candidate_with_another_signature_is_kept_out(
    deps: gating.Deps, bus: FakeBus, candidate: dict[str, Any], expected: str
) -> None:
    with_production(deps, TRUE_W)
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(100))
    publish(deps.registry, TRUE_W, **candidate)
    reason = kept(deps, bus, 2)
    assert expected in reason and reason.endswith("promote by hand")


def test_rows_that_do_not_fit_the_input_keep_production_with_the_reason(
    deps: gating.Deps, bus: FakeBus
) -> None:
    # a model of three 2x2 inputs' worth (12 values) on rows of 4 columns
    inputs = [("image", [3, 2, 2], "float32")]
    with_production(deps, TRUE_W * 3, inputs=inputs)
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(100))
    publish(deps.registry, TRUE_W * 3, inputs=inputs)
    reason = kept(deps, bus, 2)
    assert "the evaluation rows (4 columns: p0, p1, p2, p3) cannot be fed to input image [3, 2, 2]" in reason
    assert bus.of("PromotionRejected")[-1]["source"] == "none"


def test_two_input_models_are_not_scored(deps: gating.Deps, bus: FakeBus) -> None:
    inputs = [("image", [2, 2], "float32"), ("meta", [2], "float32")]
    with_production(deps, TRUE_W, inputs=inputs)
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(100))
    publish(deps.registry, TRUE_W, inputs=inputs)
    assert "cannot be fed to inputs image [2, 2] float32, meta [2] float32" in kept(deps, bus, 2)


def test_categorical_columns_keep_production_with_the_reason(deps: gating.Deps, bus: FakeBus) -> None:
    with_production(deps, TRUE_W)
    body = pixels_csv(60).decode().splitlines()
    body[1] = "1,2,red,4,0.5"  # a category among the numbers
    EvaluationStore(deps.registry.objects).put_heldout("pix", ("\n".join(body) + "\n").encode())
    publish(deps.registry, TRUE_W, 0.5)
    assert "p2 hold categories (text)" in kept(deps, bus, 2)


def test_an_integer_input_with_fractions_keeps_production(deps: gating.Deps, bus: FakeBus) -> None:
    inputs = [("image", [2, 2], "int32")]
    with_production(deps, TRUE_W, inputs=inputs)
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(60))
    publish(deps.registry, TRUE_W, 0.5, inputs=inputs)
    assert "values with a fraction, which input image [2, 2] int32 (integers) cannot take" in kept(
        deps, bus, 2
    )


def test_a_classifier_without_classes_is_not_scored(deps: gating.Deps, bus: FakeBus) -> None:
    w = [[1.0, -1.0]] * 4
    with_production(deps, w, task="multiclass")
    EvaluationStore(deps.registry.objects).put_heldout("pix", pixels_csv(60, task="multiclass"))
    publish(deps.registry, w, task="multiclass")
    reason = kept(deps, bus, 2)
    assert "candidate v2 cannot be scored: a multiclass model without classes" in reason


def test_without_platform_rows_a_tensor_candidate_is_kept_as_before(deps: gating.Deps, bus: FakeBus) -> None:
    with_production(deps, TRUE_W)
    publish(deps.registry, TRUE_W, 0.1)
    res = decide(deps, 2)
    assert res.gate is not None and res.gate["action"] == "keep" and res.gate["source"] == "job_claim"
