"""Models and evaluation rows for the promotion gate's tests (test_gate.py, test_gate_stage.py,
test_cli_models.py), without TensorFlow.

A "model" is a linear function ``x @ w + b`` (a sigmoid of it for ``binary``) whose parameters are the
artifact's bytes (after the TFLite identifier, so the gate's identifier check passes);
:class:`LinearInterpreter` is enough of LiteRT's Interpreter to run it, with the same calls
``modelops.inference.LoadedModel`` makes. The registry, the checksums and the gate's code are the real
ones: only the interpreter is a stand-in (the e2e test and the demo run real LiteRT through the gate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelops.storage.evaluation import EvaluationStore
from modelops.storage.registry import Manifest, Registry

FEATURES = ["f1", "f2"]
TARGET = "y"
TRUE_W = [3.0, -2.0]


def artifact(w: list[float], b: float = 0.0, *, sigmoid: bool = False) -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + json.dumps({"w": w, "b": b, "sigmoid": sigmoid}).encode()


class LinearInterpreter:
    """``x @ w + b`` (sigmoid when asked), one output per row; LiteRT's calls and shapes."""

    def __init__(self, path: str):
        data = Path(path).read_bytes()
        assert data[4:8] == b"TFL3"
        p = json.loads(data[8:])
        self.w = np.asarray(p["w"], dtype=np.float64)
        self.b, self.sigmoid = float(p["b"]), bool(p["sigmoid"])
        self.rows = 1
        self.x: np.ndarray | None = None

    def get_input_details(self) -> list[dict[str, Any]]:
        return [{"index": 0, "dtype": np.float32, "shape": np.array([self.rows, len(self.w)])}]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [{"index": 1, "dtype": np.float32, "shape": np.array([self.rows, 1])}]

    def resize_tensor_input(self, index: int, shape: list[int], strict: bool = False) -> None:
        self.rows = shape[0]

    def allocate_tensors(self) -> None:
        pass

    def set_tensor(self, index: int, x: np.ndarray) -> None:
        assert x.shape == (self.rows, len(self.w)) and x.dtype == np.float32
        self.x = x

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        assert self.x is not None
        z = self.x.astype(np.float64) @ self.w + self.b
        if self.sigmoid:
            z = 1.0 / (1.0 + np.exp(-z))
        return z.reshape(-1, 1).astype(np.float32)


def spec_doc(task: str = "regression", **promotion: Any) -> dict[str, Any]:
    metric = promotion.pop("metric", "rmse" if task == "regression" else "accuracy")
    return {
        "task": task,
        "target": TARGET,
        "features": FEATURES,
        "promotion": {"metric": metric, **promotion},
    }


def publish(
    reg: Registry,
    w: list[float],
    b: float = 0.0,
    *,
    claims: dict[str, float] | None = None,
    job: str | None = None,
    task: str = "regression",
    model: str = "demo",
    **promotion: Any,
) -> Manifest:
    """A version as convert publishes it: the artifact, schema, spec, the job's claimed metrics."""
    n = len(reg.list_versions(model)) + 1 if reg.model_exists(model) else 1
    job = job or f"modelops-{model}-{n:012d}"
    classes = None if task == "regression" else [0, 1]
    schema = {
        "task": task,
        "target": TARGET,
        "features": [{"name": f, "dtype": "float32"} for f in FEATURES],
        "classes": classes,
    }
    return reg.publish_version(
        model,
        {"tflite": ("model.tflite", artifact(w, b, sigmoid=task != "regression"))},
        {
            "task": task,
            "schema": schema,
            "spec": spec_doc(task, **promotion),
            "metrics": claims if claims is not None else {"rmse": 0.3},
            "training": {"job": job},
        },
        dedup_key=job,
    )


def rows_csv(n: int, *, seed: int = 0, noise: float = 0.3, task: str = "regression") -> bytes:
    """``n`` rows ``f1,f2,y``: y = 3 f1 - 2 f2 + noise (binary: 1 when that is above 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = x @ np.asarray(TRUE_W) + rng.normal(scale=noise, size=n)
    lines = [",".join([*FEATURES, TARGET])]
    for (a, c), t in zip(x.round(6).tolist(), y.round(6).tolist(), strict=True):
        label = str(int(t > 0)) if task != "regression" else repr(t)
        lines.append(f"{a!r},{c!r},{label}")
    return ("\n".join(lines) + "\n").encode()


def store_heldout(reg: Registry, body: bytes, model: str = "demo") -> str:
    return EvaluationStore(reg.objects).put_heldout(model, body)[1]


def store_pinned(reg: Registry, body: bytes, model: str = "demo") -> str:
    rows = body.decode().count("\n") - 1
    return str(EvaluationStore(reg.objects).set_pinned(model, body, {"rows": rows})["sha256"])
