"""Convert with real TensorFlow: a tiny Keras model staged as the trainer does -> registry version, then the
gate function on convert's ModelVersionPublished (as EventBridge would deliver it).

The SavedModels are built once per session (tiny: 3 features, a few epochs on 256 rows).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from modelops.domain.baseline import compute_baseline
from modelops.stages import convert as conversion
from modelops.storage.registry import Registry
from tests.fakes import FakeBus, FakeContext
from tests.integration.convert_support import (
    BUCKET,
    artifact_key,
    gate_last_published,
    put_job_record,
    registry_keys,
    sagemaker_event,
    spec,
    stage_event,
    targz_dir,
)

pytestmark = pytest.mark.slow

FEATURES = ["a", "b", "c"]


# ---------------------------------------------------------------------------- builders (session scope)
def _write_bundle(
    root: Path,
    export: Any,
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    metrics: dict[str, Any],
    prediction: np.ndarray,
) -> None:
    root.mkdir(parents=True)
    export(str(root / "saved_model"))
    n_train = int(len(x) * 0.8)
    (root / "schema.json").write_text(
        json.dumps(
            {
                "task": task,
                "target": "y",
                "features": [{"name": f, "dtype": "float32"} for f in FEATURES],
                "classes": None if task == "regression" else [0, 1],
            }
        )
    )
    (root / "metrics.json").write_text(json.dumps(metrics))
    (root / "baseline.json").write_text(
        json.dumps(compute_baseline(x[:n_train], FEATURES, prediction[:n_train]))
    )
    buf = io.BytesIO()
    np.savez(buf, x=x[n_train:].astype(np.float32), y=y[n_train:].astype(np.float32))
    (root / "heldout.npz").write_bytes(buf.getvalue())
    (root / "training_record.json").write_text(
        json.dumps(
            {
                "hyperparameters": {"epochs": "3", "batch_size": "32"},
                "frameworks": {"tensorflow": "2.21.0"},
                "epochs_run": 3,
                "history": {"loss": [1.0, 0.5, 0.3]},
            }
        )
    )


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(256, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]).astype(np.float32)
    y = (x @ np.array([1.0, 0.2, 0.01]) + rng.normal(scale=0.1, size=256)).astype(np.float32)
    return x, y


def _keras_model(x: np.ndarray, task: str, seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    norm = keras.layers.Normalization()
    norm.adapt(x)
    inp = keras.Input(shape=(3,), name="features")
    h = keras.layers.Dense(64, activation="relu")(norm(inp))
    h = keras.layers.Dense(32, activation="relu")(h)
    out = keras.layers.Dense(1, activation="sigmoid" if task == "binary" else None)(h)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="binary_crossentropy" if task == "binary" else "mse")
    return model


@dataclass
class Built:
    regression: Path  # a model dir, as the trainer leaves it
    binary: Path
    unsupported: Path  # a SavedModel whose graph needs TF Select ops
    perturbed_tflite: bytes  # the regression model's tflite with its output bias moved by 1e-3


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    import tensorflow as tf

    base = tmp_path_factory.mktemp("convert-models")
    x, y = _data()
    n = int(len(x) * 0.8)

    reg = _keras_model(x[:n], "regression", 0)
    reg.fit(x[:n], y[:n], epochs=3, batch_size=32, verbose=0)
    pred = reg(x, training=False).numpy()[:, 0]
    err = pred[n:] - y[n:]
    metrics = {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 0.0,
        "baseline_rmse": float(np.std(y[n:])),
        "n_val": len(x) - n,
    }
    _write_bundle(
        base / "regression", lambda p: reg.export(p, verbose=False), x, y, "regression", metrics, pred
    )

    yb = (y > np.median(y)).astype(np.float32)
    clf = _keras_model(x[:n], "binary", 1)
    clf.fit(x[:n], yb[:n], epochs=3, batch_size=32, verbose=0)
    prob = clf(x, training=False).numpy()[:, 0]
    acc = float(np.mean((prob[n:] >= 0.5) == yb[n:]))
    _write_bundle(
        base / "binary",
        lambda p: clf.export(p, verbose=False),
        x,
        yb,
        "binary",
        {"accuracy": acc, "auc": 0.5, "log_loss": 0.7, "n_val": len(x) - n},
        prob,
    )

    class StringsModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def serve(self, features: Any) -> Any:
            return {"output_0": tf.strings.to_number(tf.strings.as_string(features))[:, :1]}

    strings = StringsModel()
    _write_bundle(
        base / "unsupported",
        lambda p: tf.saved_model.save(strings, p, signatures={"serving_default": strings.serve}),
        x,
        y,
        "regression",
        metrics,
        pred,
    )

    dense = reg.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + 1e-3])
    reg.export(str(base / "perturbed"), verbose=False)
    from modelops.ml.convert import to_tflite

    perturbed = to_tflite(base / "perturbed")
    return Built(base / "regression", base / "binary", base / "unsupported", perturbed)


def stage(
    s3: Any,
    job: str,
    model_dir: Path,
    *,
    metrics: dict[str, Any] | None = None,
    model: str = "demo",
    **spec_sections: Any,
) -> None:
    """Write the job record and the staged model.tar.gz, as train_trigger and the backend would."""
    task = json.loads((model_dir / "schema.json").read_text())["task"]
    put_job_record(s3, job, model=model, spec_doc=spec(task, **spec_sections))
    if metrics is not None:
        original = (model_dir / "metrics.json").read_text()
        (model_dir / "metrics.json").write_text(json.dumps(metrics))
        try:
            body = targz_dir(model_dir)
        finally:
            (model_dir / "metrics.json").write_text(original)
    else:
        body = targz_dir(model_dir)
    s3.put_object(Bucket=BUCKET, Key=artifact_key(model, job), Body=body)


@pytest.fixture
def deps(s3, registry_bucket, bus: FakeBus) -> conversion.Deps:  # type: ignore[no-untyped-def]
    return conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)


# ---------------------------------------------------------------------------- the handler, end to end on moto
@pytest.fixture
def handler_env(s3, registry_bucket, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """moto S3 + DynamoDB idempotency table + EventBridge rule -> SQS queue that collects modelops events."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="idem",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="modelops-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name="us-east-1")
    events.put_rule(Name="all-modelops", EventPattern=json.dumps({"source": ["modelops"]}))
    events.put_targets(Rule="all-modelops", Targets=[{"Id": "q", "Arn": arn}])
    for k, v in {
        "REGISTRY_BUCKET": registry_bucket,
        "IDEMPOTENCY_TABLE": "idem",
        "POWERTOOLS_METRICS_NAMESPACE": "modelops-test",
        "POWERTOOLS_SERVICE_NAME": "convert",
    }.items():
        monkeypatch.setenv(k, v)
    from functions.convert import app
    from functions.gate import app as gate_app
    from modelops.stages import gate

    conversion.build.cache_clear()
    gate.build.cache_clear()

    def received() -> list[tuple[str, dict[str, Any]]]:
        out = []
        while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                body = json.loads(m["Body"])
                out.append((body["detail-type"], body["detail"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return out

    yield app, gate_app, received
    conversion.build.cache_clear()
    gate.build.cache_clear()


def test_completed_job_becomes_a_verified_version_and_goes_through_the_gate(
    built: Built,
    s3,
    handler_env,  # type: ignore[no-untyped-def]
    lambda_context: FakeContext,
) -> None:
    app, gate_app, received = handler_env
    reg = Registry(s3, BUCKET)
    job1, job2 = "modelops-demo-000000000001", "modelops-demo-000000000002"
    rmse = json.loads((built.regression / "metrics.json").read_text())["rmse"]

    # Given a staged model (dynamic_int8 asked) from a completed SageMaker job
    stage(s3, job1, built.regression, conversion={"quantize": "dynamic_int8", "parity_tolerance": 1e-4})
    # When the completion event arrives (twice: EventBridge delivers at least once)
    out1 = app.lambda_handler(sagemaker_event(job1), lambda_context)
    again = app.lambda_handler(sagemaker_event(job1), lambda_context)

    # Then one version with both tflite artifacts, verified against the manifest
    assert out1["outcome"] == "published" and out1["version"] == 1 and again == out1
    assert reg.list_versions("demo") == [1]
    m = reg.get_manifest("demo", 1)
    assert set(m.artifacts) == {"tflite", "tflite_int8", "savedmodel", "baseline"}
    f32, i8 = reg.read_artifact(m, "tflite"), reg.read_artifact(m, "tflite_int8")
    assert f32[4:8] == b"TFL3" and i8[4:8] == b"TFL3" and len(i8) < len(f32)
    assert json.loads(reg.read_artifact(m, "baseline"))["schema_version"] == 1
    assert reg.read_artifact(m, "savedmodel")[:2] == b"\x1f\x8b"
    # parity and serving budget in the manifest
    parity = m.get("parity")
    assert parity["float32"]["passed"] is True and parity["float32"]["max_abs_diff"] <= 1e-5
    assert parity["rows"] == 52 and "delta_vs_float32" in parity["int8"]["metric"]
    budget = m.get("serving_budget")
    assert budget["tflite_bytes"] == len(f32) and budget["tflite_int8_bytes"] == len(i8)
    assert 0 < budget["single_row_latency_us"] < budget["max_single_row_latency_us"]
    # the rest of the contract's manifest fields
    assert m.get("training")["job"] == job1 and m.get("training")["hyperparameters"]["epochs"] == "3"
    assert m.get("dataset")["sha256"] == "ab" * 32 and m.get("task") == "regression"
    assert [f["name"] for f in m.get("schema")["features"]] == FEATURES
    assert m.get("metrics")["rmse"] == rmse and m.get("spec")["conversion"]["quantize"] == "dynamic_int8"
    assert m.get("frameworks")["convert"]["ai-edge-litert"] == "2.3.0" and m.get("dedup_key") == job1
    # convert moved no alias: it said ModelVersionPublished (once: the second delivery was a duplicate)
    assert reg.list_aliases("demo") == {}
    sent = received()
    assert [t for t, _ in sent] == ["ModelVersionPublished"]
    assert sent[0][1]["parity"]["float32"]["max_abs_diff"] == parity["float32"]["max_abs_diff"]
    # the gate function, on that event, made the first version production, with its reason in the history
    decided = gate_app.lambda_handler(stage_event(*sent[0]), lambda_context)
    assert (decided["outcome"], decided["gate"]["action"]) == ("decided", "promote")
    assert reg.resolve("demo") == 1
    gate_entry = [h for h in reg.history("demo", "production") if h.get("kind") == "gate"][-1]
    assert gate_entry["reason"] == "v1 is the first version of the model: it becomes production"
    assert [t for t, _ in received()] == ["ModelPromoted"]

    # Given a second job that claims a worse held-out rmse, on a stack that holds no evaluation rows
    stage(
        s3,
        job2,
        built.regression,
        metrics={"rmse": rmse * 2, "mae": 1.0},
        conversion={"quantize": "dynamic_int8"},
    )
    out2 = app.lambda_handler(sagemaker_event(job2), lambda_context)
    [published] = received()
    decided2 = gate_app.lambda_handler(stage_event(*published), lambda_context)
    # Then it is published as v2 but production stays at v1: the gate never decides on a job's own
    # claims (issue 14); the history says why, with the claims recorded as claims
    assert (out2["outcome"], out2["version"], decided2["gate"]["action"]) == ("published", 2, "keep")
    assert reg.resolve("demo") == 1
    kept = [h for h in reg.history("demo", "production") if h.get("kind") == "gate"][-1]
    assert kept["reason"].startswith("kept production v1: the platform holds no evaluation rows")
    assert kept["evaluation"]["source"] == "job_claim"
    assert kept["claims"]["candidate"] == pytest.approx(rmse * 2)
    assert published[0] == "ModelVersionPublished" and [t for t, _ in received()] == ["PromotionRejected"]
    # identical model bytes are stored once (content-addressed blobs)
    blobs = [k for k in registry_keys(s3) if "/blobs/" in k]
    assert len(blobs) == 4


def test_a_replayed_completion_publishes_nothing_new_and_the_gate_decides_once(
    built: Built,
    deps: conversion.Deps,
    bus: FakeBus,
    s3,  # type: ignore[no-untyped-def]
) -> None:
    """Promotion itself is the gate's (tests/unit/test_gate_stage.py scores real rows); here: convert's
    replay of a job it already published, with the gate in the loop."""
    reg = deps.registry
    rmse = json.loads((built.regression / "metrics.json").read_text())["rmse"]
    stage(s3, "modelops-demo-00000000000a", built.regression)
    stage(s3, "modelops-demo-00000000000b", built.regression, metrics={"rmse": rmse / 2})
    assert conversion.handle_event(sagemaker_event("modelops-demo-00000000000a"), deps).version == 1
    assert gate_last_published(reg, bus).gate["action"] == "promote"  # the first version

    res = conversion.handle_event(sagemaker_event("modelops-demo-00000000000b"), deps)
    decided = gate_last_published(reg, bus)
    # a better claim alone promotes nothing: no platform rows were kept for this model
    assert (res.outcome, res.version, reg.resolve("demo")) == ("published", 2, 1)
    assert decided.gate["action"] == "keep" and decided.gate["evaluation"]["source"] == "job_claim"
    assert "tflite_int8" not in reg.get_manifest("demo", 2).artifacts  # quantize: none

    # When the old completion event is delivered again
    bus.sent.clear()
    replay = conversion.handle_event(sagemaker_event("modelops-demo-00000000000b"), deps)
    again = gate_last_published(reg, bus)
    # Then no new version, no second decision
    assert (replay.outcome, replay.version) == ("replayed", 2)
    assert again.outcome == "already_decided" and "already decided" in again.reason
    assert reg.list_versions("demo") == [1, 2] and reg.resolve("demo") == 1
    assert bus.types() == ["ModelVersionPublished"]


def test_classification_records_label_agreement(built: Built, deps: conversion.Deps, s3) -> None:  # type: ignore[no-untyped-def]
    stage(s3, "modelops-demo-0000000000d1", built.binary, conversion={"quantize": "dynamic_int8"})
    res = conversion.handle_event(sagemaker_event("modelops-demo-0000000000d1"), deps)
    assert res.outcome == "published"
    parity = deps.registry.get_manifest("demo", res.version or 0).get("parity")
    assert parity["float32"]["label_agreement"] == 1.0
    assert 0.0 <= parity["int8"]["label_agreement"] <= 1.0
    recorded = json.loads((built.binary / "metrics.json").read_text())["accuracy"]
    assert parity["float32"]["metric"]["name"] == "accuracy"
    assert parity["float32"]["metric"]["savedmodel"] == pytest.approx(recorded)


def test_a_model_needing_tf_select_ops_fails_with_their_names(
    built: Built, deps: conversion.Deps, bus: FakeBus, s3
) -> None:  # type: ignore[no-untyped-def]
    stage(s3, "modelops-demo-0000000000e1", built.unsupported)
    res = conversion.handle_event(sagemaker_event("modelops-demo-0000000000e1"), deps)
    assert (res.outcome, res.error_code) == ("conversion_failed", "unsupported_op")
    detail = bus.of("ConversionFailed")[-1]
    assert detail["stage"] == "convert" and detail["ops"] == ["tf.AsString", "tf.StringToNumber"]
    assert "tf.AsString, tf.StringToNumber" in detail["reason"]
    assert registry_keys(s3) == []


def test_parity_failure_publishes_nothing_and_says_by_how_much(
    built: Built,
    deps: conversion.Deps,
    bus: FakeBus,
    s3,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    # Given a converter whose float32 output answers 1e-3 away from the SavedModel
    from modelops.ml import convert as ml_convert

    real = ml_convert.to_tflite
    monkeypatch.setattr(
        ml_convert,
        "to_tflite",
        lambda d, quantize=False: real(d, quantize=True) if quantize else built.perturbed_tflite,
    )
    stage(s3, "modelops-demo-0000000000f1", built.regression, conversion={"parity_tolerance": 1e-4})

    res = conversion.handle_event(sagemaker_event("modelops-demo-0000000000f1"), deps)

    assert (res.outcome, res.error_code) == ("conversion_failed", "parity_failed")
    detail = bus.of("ConversionFailed")[-1]
    assert detail["stage"] == "parity"
    assert detail["float32"]["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)
    assert detail["float32"]["passed"] is False and detail["tolerance"] == 1e-4
    assert "max |Δ| 0.001" in detail["reason"]
    assert registry_keys(s3) == []


def test_serving_budget_is_enforced(built: Built, deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    stage(s3, "modelops-demo-0000000000f2", built.regression)
    deps.options = conversion.Options(max_tflite_bytes=1000)
    res = conversion.handle_event(sagemaker_event("modelops-demo-0000000000f2"), deps)
    assert (res.outcome, res.error_code) == ("conversion_failed", "serving_budget_exceeded")
    detail = bus.of("ConversionFailed")[-1]
    assert detail["stage"] == "serving_budget" and detail["serving_budget"]["tflite_bytes"] > 1000
    assert registry_keys(s3) == []


def test_heldout_rows_the_model_cannot_take_are_a_conversion_failure(
    built: Built,
    deps: conversion.Deps,
    bus: FakeBus,
    s3,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    # Given a model dir whose schema and held-out rows have 4 features while the SavedModel takes 3
    import shutil

    odd = tmp_path / "odd"
    shutil.copytree(built.regression, odd)
    schema = json.loads((odd / "schema.json").read_text())
    schema["features"].append({"name": "d", "dtype": "float32"})
    (odd / "schema.json").write_text(json.dumps(schema))
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((5, 4), np.float32), y=np.zeros(5, np.float32))
    (odd / "heldout.npz").write_bytes(buf.getvalue())
    stage(s3, "modelops-demo-0000000000f3", odd)

    res = conversion.handle_event(sagemaker_event("modelops-demo-0000000000f3"), deps)

    assert (res.outcome, res.error_code) == ("conversion_failed", "conversion_failed")
    assert bus.of("ConversionFailed")[-1]["stage"] == "convert"
    assert "cannot run the held-out rows (shape (5, 4))" in res.reason
    assert registry_keys(s3) == []
