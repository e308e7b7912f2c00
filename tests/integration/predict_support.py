"""Helpers shared by the predict tests: tiny real .tflite models (built once per process with
TensorFlow, which only tests and benchmarks may import), registry publishing, API Gateway events."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops.storage.registry import Manifest, Registry

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class BuiltModel:
    task: str
    tflite: bytes
    classes: list[Any] | None
    keras_predict: Callable[[np.ndarray], np.ndarray]  # the source model's outputs, for parity checks
    path: Path  # the .tflite on disk

    def schema(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "target": "y",
            "features": [{"name": f, "dtype": "float32"} for f in FEATURES],
            "classes": self.classes,
        }


@functools.cache
def models() -> dict[str, BuiltModel]:
    """binary, binary_int8 (its dynamic-range int8 conversion), binary_b (same shape, other weights),
    multiclass and regression models on FEATURES."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    out_dir = Path(tempfile.mkdtemp(prefix="predict-models-"))
    atexit.register(shutil.rmtree, out_dir, True)
    specs = {
        "binary": ("binary", 1, "sigmoid", [0, 1], 1),
        "binary_b": ("binary", 1, "sigmoid", [0, 1], 2),
        "multiclass": ("multiclass", 3, "softmax", ["setosa", "versicolor", "virginica"], 3),
        "regression": ("regression", 1, None, None, 4),
    }
    built = {}
    for name, (task, units, activation, classes, seed) in specs.items():
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input((len(FEATURES),)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(units, activation=activation),
            ]
        )
        saved = out_dir / f"{name}_saved"
        model.export(str(saved), verbose=False)
        data = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
        path = out_dir / f"{name}.tflite"
        path.write_bytes(data)

        def keras_predict(x: np.ndarray, _m: Any = model) -> np.ndarray:
            return np.asarray(_m(x, training=False), dtype=np.float32)

        built[name] = BuiltModel(task, data, classes, keras_predict, path)
        if name == "binary":  # the same model with dynamic-range int8 weights (conversion.quantize)
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            int8 = converter.convert()
            (out_dir / "binary_int8.tflite").write_bytes(int8)
            built["binary_int8"] = BuiltModel(
                task, int8, classes, keras_predict, out_dir / "binary_int8.tflite"
            )
    return built


@functools.cache
def many_class_model(n_classes: int) -> BuiltModel:
    """A multiclass model on FEATURES with ``n_classes`` softmax outputs, labelled ``class-0000``, ...
    (answers grow with rows x classes: the response limit's tests)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    out_dir = Path(tempfile.mkdtemp(prefix="predict-many-classes-"))
    atexit.register(shutil.rmtree, out_dir, True)
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((len(FEATURES),)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.export(str(out_dir / "saved"), verbose=False)
    data = tf.lite.TFLiteConverter.from_saved_model(str(out_dir / "saved")).convert()
    path = out_dir / "many.tflite"
    path.write_bytes(data)

    def keras_predict(x: np.ndarray, _m: Any = model) -> np.ndarray:
        return np.asarray(_m(x, training=False), dtype=np.float32)

    return BuiltModel("multiclass", data, [f"class-{i:04d}" for i in range(n_classes)], keras_predict, path)


def publish(
    registry: Registry,
    model: str,
    built: BuiltModel,
    *,
    capture_sample_rate: float = 1.0,
    metrics: dict[str, float] | None = None,
    promote: bool = True,
) -> Manifest:
    """Publish a version with the manifest fields docs/contracts.md names (and promote it)."""
    manifest = registry.publish_version(
        model,
        {"tflite": ("model.tflite", built.tflite)},
        {
            "task": built.task,
            "schema": built.schema(),
            "spec": {
                "task": built.task,
                "target": "y",
                "features": FEATURES,
                "monitoring": {"psi_threshold": 0.2, "capture_sample_rate": capture_sample_rate},
            },
            "metrics": metrics or ({"rmse": 0.5} if built.task == "regression" else {"accuracy": 0.9}),
            "frameworks": {"tensorflow": "test"},
        },
    )
    if promote:
        registry.promote(model, manifest.version)
    return manifest


class Ctx:
    """The parts of a Lambda context that Powertools reads."""

    function_name = "predict"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"
    aws_request_id = "lambda-request-id"
    function_version = "$LATEST"


def api_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    request_id: str = "req-0001",
    base64_body: bool = False,
    with_resource: bool = True,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for predict's routes; ``identity`` is added to
    ``requestContext.identity`` (what API Gateway says of the caller)."""
    parts = path.strip("/").split("/")
    if parts[0] == "models" and len(parts) == 3:
        resource, params = "/models/{name}/predict", {"name": parts[1]}
    elif parts[0] == "models" and len(parts) == 2:
        resource, params = "/models/{name}", {"name": parts[1]}
    else:
        resource, params = path, None
    hdrs = {"Content-Type": "application/json"} if headers is None else headers
    event: dict[str, Any] = {
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "resourcePath": resource,
            "httpMethod": method,
            "stage": "v1",
            "path": f"/v1{path}",
            "identity": {"sourceIp": "127.0.0.1", **(identity or {})},
        },
        "body": body,
        "isBase64Encoded": base64_body,
    }
    if with_resource:
        event["resource"] = resource
    return event


def predict_body(rows: Any) -> str:
    return json.dumps({"instances": rows})


def header(result: dict[str, Any], name: str) -> str | None:
    for k, v in (result.get("multiValueHeaders") or {}).items():
        if k.lower() == name.lower():
            return str(v[0])
    for k, v in (result.get("headers") or {}).items():
        if k.lower() == name.lower():
            return str(v)
    return None


class FakeEvents:
    """An EventBridge client that records PutEvents entries."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(len(self.entries))} for _ in Entries]}

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        return [json.loads(e["Detail"]) for e in self.entries if e["DetailType"] == detail_type]


class Clock:
    """An injectable monotonic clock."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def serve(s3: Any, bucket: str, artifacts: Path, **settings: Any) -> Any:
    """Install a PredictService on ``bucket`` (no capture) as the container's; returns it."""
    from modelops.stages.predict.service import PredictService, configure
    from modelops.stages.predict.settings import Settings

    svc = PredictService.from_settings(
        Settings(registry_bucket=bucket, artifact_dir=str(artifacts), **settings),
        s3=s3,
        events_factory=FakeEvents,
    )
    configure(svc)
    return svc
