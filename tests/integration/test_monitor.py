"""The monitor end to end on moto: captures in S3 -> metrics, reports, DriftDetected events."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from modelops.domain import canary
from modelops.domain.baseline import compute_baseline
from modelops.domain.capture import encode_record
from modelops.stages import monitor
from modelops.storage.registry import Registry
from tests.fakes import FakeContext

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["f0", "f1", "f2", "f3"]
DATA = "data"
NAMESPACE = "ModelOps"


# ---------------------------------------------------------------------------------------------- helpers
def weights() -> np.ndarray:
    return np.array([1.0, -2.0, 0.5, 3.0])


def training_data(rng: np.random.Generator, n: int = 5000) -> np.ndarray:
    return rng.normal([0.0, 5.0, -1.0, 10.0], [1.0, 2.0, 0.5, 3.0], size=(n, 4))


def publish_model(
    s3: Any,
    model: str = "demo",
    *,
    baseline: bool = True,
    spec_extra: dict[str, Any] | None = None,
    promote: bool = True,
    seed: int = 0,
) -> Registry:
    """A registry version with a fake tflite blob and a real baseline.json, promoted to production."""
    rng = np.random.default_rng(seed)
    x = training_data(rng)
    pred = x @ weights()
    reg = Registry(s3, "registry")
    artifacts: dict[str, tuple[str, Any]] = {"tflite": ("model.tflite", b"TFL3 not a real model")}
    if baseline:
        artifacts["baseline"] = ("baseline.json", json.dumps(compute_baseline(x, FEATURES, pred)).encode())
    spec = {"task": "regression", "target": "y", "features": FEATURES, "monitoring": {"psi_threshold": 0.2}}
    for k, v in (spec_extra or {}).items():
        spec[k] = {**spec.get(k, {}), **v}
    m = reg.publish_version(
        model,
        artifacts,
        {
            "task": "regression",
            "schema": {
                "task": "regression",
                "target": "y",
                "classes": None,
                "features": [{"name": f, "dtype": "float32"} for f in FEATURES],
            },
            "spec": spec,
            "metrics": {"rmse": 0.5, "mae": 0.4, "r2": 0.9},
        },
    )
    if promote:
        reg.promote(model, m.version)
    return reg


def capture_lines(
    x: np.ndarray,
    *,
    model: str = "demo",
    version: int = 1,
    ts: float | None = None,
    rids: list[str] | None = None,
    batch: int = 1,
) -> list[bytes]:
    """Capture lines for the rows of x: single-row lines, or batches of ``batch`` rows."""
    ts = time.time() - 120 if ts is None else ts
    out = []
    for n, i in enumerate(range(0, x.shape[0], batch)):
        rows = x[i : i + batch].astype(np.float32)
        rid = rids[n] if rids else uuid.uuid4().hex
        out.append(
            encode_record(model, version, rid, ts, rows, (rows @ weights().astype(np.float32))[:, None])
        )
    return out


def put_captures(s3: Any, lines: list[bytes], name: str | None = None) -> str:
    now = datetime.now(UTC)
    key = f"captures/{now:%Y/%m/%d/%H}/{name or 'CaptureStream-1-' + uuid.uuid4().hex}"
    s3.put_object(Bucket=DATA, Key=key, Body=b"".join(lines))
    return key


def drained(sqs: Any, url: str) -> list[dict[str, Any]]:
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def metric_values(cw: Any, name: str, dims: list[dict[str, str]] | None = None) -> list[float]:
    now = datetime.now(UTC)
    stats = cw.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=dims or [],
        StartTime=datetime.fromtimestamp(now.timestamp() - 7200, UTC),
        EndTime=datetime.fromtimestamp(now.timestamp() + 600, UTC),
        Period=60,
        Statistics=["Maximum"],
    )
    return [p["Maximum"] for p in stats["Datapoints"]]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def world(s3: Any, registry_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    s3.create_bucket(Bucket=DATA)
    monkeypatch.setenv("DATA_BUCKET", DATA)
    monkeypatch.setenv("REGISTRY_BUCKET", registry_bucket)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "monitor")
    monkeypatch.setenv("MONITOR_WINDOW_SECONDS", "3600")
    monkeypatch.setenv("MIN_SAMPLES", "100")
    import functions.monitor.app as app

    monitor.build.cache_clear()
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    url = sqs.create_queue(QueueName="modelops-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-modelops", EventPattern=json.dumps({"source": ["modelops"]}))
    events.put_targets(Rule="all-modelops", Targets=[{"Id": "q", "Arn": arn}])
    yield {
        "s3": s3,
        "sqs": sqs,
        "queue": url,
        "cw": boto3.client("cloudwatch", region_name="us-east-1"),
        "app": app,
    }
    monitor.build.cache_clear()  # its clients point at this test's moto


def run(world: dict[str, Any], event: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = world["app"].lambda_handler(event or {}, FakeContext())
    return result


def events_of(world: dict[str, Any], detail_type: str) -> list[dict[str, Any]]:
    return [e for e in drained(world["sqs"], world["queue"]) if e.get("detail-type") == detail_type]


# ---------------------------------------------------------------------------------------------- tests
def test_traffic_from_the_training_distribution_is_not_drift(world: dict[str, Any]) -> None:
    # Given a production model and traffic drawn like its training data (single rows and batches)
    publish_model(world["s3"])
    x = training_data(np.random.default_rng(7), 3000)
    put_captures(world["s3"], capture_lines(x[:1000]) + capture_lines(x[1000:], batch=50))
    # When
    summary = run(world)
    # Then
    (m,) = summary["models"]
    assert m["verdict"] == "ok" and m["samples"] == 3000 and m["role"] == "production"
    assert summary["max_psi_ratio"] <= 1
    assert events_of(world, "DriftDetected") == []
    ratio = world["cw"].list_metrics(Namespace=NAMESPACE, MetricName="MaxPsiRatio")["Metrics"]
    assert [r["Dimensions"] for r in ratio] == [[]]
    assert metric_values(world["cw"], "MaxPsiRatio") == [pytest.approx(summary["max_psi_ratio"])]
    assert "max_new_category_ratio" not in summary  # a numeric model: nothing categorical published
    assert metric_values(world["cw"], "MaxNewCategoryRatio") == []
    latest = json.loads(
        world["s3"].get_object(Bucket="registry", Key="monitoring/demo/latest.json")["Body"].read()
    )
    assert latest["drift"] is False and latest["verdict"] == "ok" and latest["samples"] == 3000


def test_one_shifted_feature_is_drift_with_event_report_and_metrics(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    x = training_data(np.random.default_rng(8), 2000)
    x[:, 2] += 1.0  # two training standard deviations
    put_captures(world["s3"], capture_lines(x, batch=4))

    summary = run(world)

    (m,) = summary["models"]
    assert m["verdict"] == "drift" and m["drifted_features"] == ["f2"]
    assert summary["max_psi_ratio"] > 1
    assert metric_values(world["cw"], "MaxPsiRatio") == [pytest.approx(summary["max_psi_ratio"])]
    dims = [
        {"Name": "Model", "Value": "demo"},
        {"Name": "Version", "Value": "1"},
        {"Name": "Feature", "Value": "f2"},
    ]
    assert metric_values(world["cw"], "Psi", dims)[0] > 0.2
    assert metric_values(world["cw"], "KS", dims)[0] > 0.3
    mv = [{"Name": "Model", "Value": "demo"}, {"Name": "Version", "Value": "1"}]
    assert metric_values(world["cw"], "SampleCount", mv) == [2000.0]
    assert metric_values(world["cw"], "MaxPsi", mv)[0] > 0.2

    (event,) = events_of(world, "DriftDetected")
    detail = event["detail"]
    assert (detail["model"], detail["version"]) == ("demo", 1)
    assert [f["name"] for f in detail["features"]] == ["f2"]
    assert detail["features"][0]["psi"] > 0.2 and detail["features"][0]["ks"] > 0.3
    assert detail["report"] == m["report"] and detail["report"].startswith("s3://registry/monitoring/demo/")

    key = detail["report"].removeprefix("s3://registry/")
    report = json.loads(world["s3"].get_object(Bucket="registry", Key=key)["Body"].read())
    assert report["verdict"] == "drift" and report["versions"][0]["drifted_features"][0]["name"] == "f2"
    html = (
        world["s3"].get_object(Bucket="registry", Key=key.replace(".json", ".html"))["Body"].read().decode()
    )
    assert "<svg" in html and "f2" in html
    assert not any(bad in html for bad in ("<script", "<link", "src=", "href=", "http"))  # self-contained
    latest = json.loads(
        world["s3"].get_object(Bucket="registry", Key="monitoring/demo/latest.json")["Body"].read()
    )
    assert latest["report"] == detail["report"] and latest["drift"] is True
    assert latest["versions"][0]["drifted_features"][0]["name"] == "f2"


def test_bad_lines_are_counted_and_skipped(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    x = training_data(np.random.default_rng(9), 300)
    good = capture_lines(x)
    base = json.loads(good[0])
    missing = {k: v for k, v in base.items() if k != "x"}
    three = x[:1, :3].astype(np.float32)
    wrong_count = json.loads(
        encode_record("demo", 1, "w", time.time() - 120, three, np.zeros((1, 1), np.float32))
    )
    non_numeric = dict(base, n="one")
    bad_base64 = dict(base, x="!!not base64!!")
    short_x = dict(base, x=base["x"][:-8])
    bad = [
        (json.dumps(missing) + "\n").encode(),
        (json.dumps(wrong_count) + "\n").encode(),
        (json.dumps(non_numeric) + "\n").encode(),
        (json.dumps(bad_base64) + "\n").encode(),
        (json.dumps(short_x) + "\n").encode(),
        b"[1, 2, 3]\n",
        b"\xff\xfe not even utf-8\n",
    ]
    partial = good[-1][: len(good[-1]) // 2]  # Firehose object cut mid-line, no newline
    put_captures(world["s3"], good[:-1] + bad + [partial])

    summary = run(world)

    assert summary["bad"] == {
        "not_json": 3,
        "missing_field": 1,
        "non_numeric": 2,
        "bad_array": 1,
        "wrong_feature_count": 1,
    }
    assert summary["bad_lines"] == 8
    (m,) = summary["models"]
    assert m["samples"] == 299 and m["verdict"] == "ok"
    assert metric_values(world["cw"], "BadCaptureLines") == [8.0]


def test_no_captures_at_all(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    summary = run(world)
    assert summary["objects"] == 0 and summary["lines"] == 0 and summary["models"] == []
    assert summary["max_psi_ratio"] is None
    assert world["cw"].list_metrics(Namespace=NAMESPACE, MetricName="MaxPsiRatio")["Metrics"] == []
    assert events_of(world, "DriftDetected") == []


def test_model_without_a_baseline_is_reported_as_such(world: dict[str, Any]) -> None:
    publish_model(world["s3"], baseline=False)
    x = training_data(np.random.default_rng(10), 500)
    x[:, 0] += 5
    put_captures(world["s3"], capture_lines(x, batch=10))

    summary = run(world)

    (m,) = summary["models"]
    assert m["verdict"] == "no_baseline" and m["samples"] == 500 and m["max_psi"] is None
    assert summary["max_psi_ratio"] is None
    mv = [{"Name": "Model", "Value": "demo"}, {"Name": "Version", "Value": "1"}]
    assert metric_values(world["cw"], "SampleCount", mv) == [500.0]
    assert world["cw"].list_metrics(Namespace=NAMESPACE, MetricName="MaxPsiRatio")["Metrics"] == []
    latest = json.loads(
        world["s3"].get_object(Bucket="registry", Key="monitoring/demo/latest.json")["Body"].read()
    )
    assert latest["verdict"] == "no_baseline"
    assert events_of(world, "DriftDetected") == []


def test_too_few_samples_count_only(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    x = training_data(np.random.default_rng(11), 60)
    x[:, 1] += 100  # would be drift, but 60 rows < MIN_SAMPLES
    put_captures(world["s3"], capture_lines(x))

    summary = run(world)

    (m,) = summary["models"]
    assert m["verdict"] == "insufficient_samples" and m["samples"] == 60
    assert summary["max_psi_ratio"] is None
    assert events_of(world, "DriftDetected") == []
    mv = [{"Name": "Model", "Value": "demo"}, {"Name": "Version", "Value": "1"}]
    assert metric_values(world["cw"], "SampleCount", mv) == [60.0]
    assert world["cw"].list_metrics(Namespace=NAMESPACE, MetricName="MaxPsiRatio")["Metrics"] == []


def test_unknown_versions_and_old_records_are_not_judged(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    x = training_data(np.random.default_rng(12), 200)
    lines = capture_lines(x) + capture_lines(x[:5], version=9) + capture_lines(x[:7], ts=time.time() - 7200)
    lines += capture_lines(x[:3], model="Not_A_Model")
    put_captures(world["s3"], lines)

    summary = run(world)

    assert summary["outside_window"] == 7
    assert summary["bad"] == {"unknown_version": 8}
    assert {(u["model"], u["version"]) for u in summary["unknown_versions"]} == {
        ("demo", 9),
        ("Not_A_Model", 1),
    }
    assert [(m["model"], m["samples"]) for m in summary["models"]] == [("demo", 200)]


def test_labels_give_quality_metrics_and_their_change(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    rng = np.random.default_rng(13)
    x = training_data(rng, 400)
    rids = [f"r{i}" for i in range(200)]
    put_captures(world["s3"], capture_lines(x, rids=rids, batch=2))
    pred = (x.astype(np.float32) @ weights().astype(np.float32)).astype(np.float64)
    truth = pred + rng.normal(0, 0.7, 400)
    lines = [
        json.dumps({"request_id": rids[i // 2], "row": i % 2, "label": float(truth[i])})
        for i in range(0, 300)
    ]
    lines += ["not json", json.dumps({"request_id": "r1", "row": "x", "label": 1})]
    world["s3"].put_object(Bucket=DATA, Key="labels/demo/batch-1.jsonl", Body="\n".join(lines).encode())

    summary = run(world)

    (m,) = summary["models"]
    err = pred[:300] - truth[:300]
    assert m["quality"]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-5)
    assert m["quality"]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    assert summary["labels_bad_lines"] == 2
    key = m["report"].removeprefix("s3://registry/")
    report = json.loads(world["s3"].get_object(Bucket="registry", Key=key)["Body"].read())
    q = report["versions"][0]["quality"]
    assert q["labelled"] == 300 and q["delta"]["rmse"] == pytest.approx(q["metrics"]["rmse"] - 0.5)
    mv = [{"Name": "Model", "Value": "demo"}, {"Name": "Version", "Value": "1"}]
    assert metric_values(world["cw"], "Rmse", mv) == [pytest.approx(q["metrics"]["rmse"])]
    assert metric_values(world["cw"], "RmseDelta", mv) == [pytest.approx(q["delta"]["rmse"])]


def test_retrain_on_drift_writes_one_labelled_dataset(world: dict[str, Any]) -> None:
    publish_model(world["s3"], spec_extra={"monitoring": {"retrain_on_drift": True}})
    rng = np.random.default_rng(14)
    x = training_data(rng, 300)
    x[:, 3] += 12
    rids = [f"q{i}" for i in range(300)]
    put_captures(world["s3"], capture_lines(x, rids=rids))
    lines = [json.dumps({"request_id": r, "row": 0, "label": 1.5}) for r in rids[:150]]
    world["s3"].put_object(Bucket=DATA, Key="labels/demo/l.jsonl", Body="\n".join(lines).encode())

    first = run(world)["models"][0]
    second = run(world)["models"][0]

    assert first["verdict"] == "drift" and first["retrain"]["started"] is True
    assert second["retrain"]["started"] is False
    key = first["retrain"]["dataset"].removeprefix(f"s3://{DATA}/")
    assert key.startswith("datasets/demo/retrain-v1-") and key.endswith(".csv")
    csv_text = world["s3"].get_object(Bucket=DATA, Key=key)["Body"].read().decode().splitlines()
    assert csv_text[0] == "f0,f1,f2,f3,y" and len(csv_text) == 151
    assert float(csv_text[1].split(",")[3]) == pytest.approx(float(np.float32(x[0, 3])))


def test_retrain_without_enough_labels_is_not_started(world: dict[str, Any]) -> None:
    publish_model(world["s3"], spec_extra={"monitoring": {"retrain_on_drift": True}})
    x = training_data(np.random.default_rng(15), 300)
    x[:, 3] += 12
    put_captures(world["s3"], capture_lines(x))
    m = run(world)["models"][0]
    assert m["retrain"]["started"] is False and "labelled" in m["retrain"]["reason"]
    assert world["s3"].list_objects_v2(Bucket=DATA, Prefix="datasets/").get("KeyCount") == 0


def test_model_filter_canary_role_and_bad_requests(world: dict[str, Any]) -> None:
    reg = publish_model(world["s3"])
    publish_model(world["s3"], promote=False, seed=1)  # demo v2
    reg.update_alias("demo", "production", lambda cur: canary.start(cur, 2, 0.1), reason="canary")
    publish_model(world["s3"], model="other")
    x = training_data(np.random.default_rng(16), 200)
    put_captures(
        world["s3"], capture_lines(x) + capture_lines(x, version=2) + capture_lines(x, model="other")
    )

    summary = run(world, {"model": "demo", "window_seconds": 1800})

    assert [(m["model"], m["version"], m["role"]) for m in summary["models"]] == [
        ("demo", 1, "production"),
        ("demo", 2, "canary"),
    ]
    assert summary["other_models"] == 200 and summary["window"]["seconds"] == 1800
    with pytest.raises(ValueError, match="window_seconds"):
        run(world, {"window_seconds": -5})
    with pytest.raises(ValueError, match="invalid model name"):
        run(world, {"model": "../etc"})


def test_monitor_imports_no_tensorflow_scipy_or_pandas() -> None:
    code = (
        "import sys, functions.monitor.app, modelops.stages.monitor, modelops.domain.report, modelops.domain.drift; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'scipy', 'pandas', 'keras'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_labels_join_the_rows_of_a_request_captured_in_several_lines(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """capture_sink splits a request over Firehose's record limit into lines "{rid}#{first row}"."""
    from modelops.storage import capture_sink

    monkeypatch.setattr(capture_sink, "MAX_RECORD_BYTES", 4_000)  # a small limit: the same split logic

    publish_model(world["s3"])
    rng = np.random.default_rng(21)
    x = training_data(rng, 300).astype(np.float32)
    y = (x @ weights().astype(np.float32))[:, None]
    lines = capture_sink.encode_lines("demo", 1, "big", time.time() - 120, x, y)
    assert len(lines) > 2  # the request really was split
    put_captures(world["s3"], lines)
    truth = y[:, 0].astype(np.float64) + rng.normal(0, 0.5, 300)
    labels = [json.dumps({"request_id": "big", "row": i, "label": float(truth[i])}) for i in range(300)]
    world["s3"].put_object(Bucket=DATA, Key="labels/demo/big.jsonl", Body="\n".join(labels).encode())

    (m,) = run(world)["models"]

    err = y[:, 0].astype(np.float64) - truth
    assert m["quality"]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-5)


def test_hostile_label_lines_are_counted_not_fatal(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    rng = np.random.default_rng(5)
    put_captures(world["s3"], capture_lines(training_data(rng, 200), rids=[f"r{i}" for i in range(200)]))
    lines = [
        json.dumps({"request_id": "r1", "row": 0, "label": 10**400}),  # an int no float can hold
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than any decoder's stack
        json.dumps({"request_id": "r2", "row": 0, "label": True}),
        json.dumps({"request_id": "r3", "row": 0, "label": 1.5}),
    ]
    world["s3"].put_object(Bucket=DATA, Key="labels/demo/x.jsonl", Body="\n".join(lines).encode())

    summary = run(world)

    assert summary["labels_bad_lines"] == 3
    assert summary["models"][0]["samples"] == 200


def test_a_corrupt_manifest_is_reported_and_the_run_goes_on(world: dict[str, Any]) -> None:
    publish_model(world["s3"])
    rng = np.random.default_rng(8)
    put_captures(world["s3"], capture_lines(training_data(rng, 200), version=1))
    put_captures(world["s3"], capture_lines(training_data(rng, 150), version=7))
    world["s3"].put_object(Bucket="registry", Key="models/demo/versions/7/manifest.json", Body=b"{not json")

    summary = run(world)

    verdicts = {m["version"]: m for m in summary["models"]}
    assert verdicts[1]["verdict"] == "ok" and verdicts[1]["samples"] == 200
    assert verdicts[7]["verdict"] == "baseline_error" and verdicts[7]["samples"] == 0
    assert summary["bad"] == {"not_compared": 150}
    report = json.loads(
        world["s3"]
        .get_object(Bucket="registry", Key=verdicts[7]["report"].removeprefix("s3://registry/"))["Body"]
        .read()
    )
    v7 = next(v for v in report["versions"] if v["version"] == 7)
    assert "manifest_error" in v7["problem"]


# ---------------------------------------------------------------------------------------------- categorical
PLAN_VOCAB = ["basic", "pro", "<script>alert(1)</script>"]


def publish_categorical(s3: Any, model: str = "shop") -> None:
    """A version whose schema has a numeric ``age`` and a categorical ``plan`` (index matrix: 0..2 the
    vocabulary, 3 OOV), with the baseline the trainer writes for it."""
    from modelops.domain.encoding import InputSchema

    schema = {
        "task": "regression",
        "target": "y",
        "classes": None,
        "features": [
            {"name": "age", "type": "numeric", "dtype": "float32"},
            {"name": "plan", "type": "categorical", "dtype": "string", "vocabulary": PLAN_VOCAB},
        ],
    }
    rng = np.random.default_rng(11)
    x = np.column_stack([rng.normal(40, 10, 4000), rng.choice(4, 4000, p=[0.5, 0.3, 0.18, 0.02])])
    baseline = compute_baseline(x, ["age", "plan"], x[:, 0] / 10, schema=InputSchema.from_dict(schema))
    reg = Registry(s3, "registry")
    m = reg.publish_version(
        model,
        {
            "tflite": ("model.tflite", b"TFL3 not a real model"),
            "baseline": ("baseline.json", json.dumps(baseline).encode()),
        },
        {
            "task": "regression",
            "schema": schema,
            "spec": {"task": "regression", "target": "y", "monitoring": {"psi_threshold": 0.2}},
            "metrics": {"rmse": 0.5},
        },
    )
    reg.promote(model, m.version)


def test_new_categories_drift_a_categorical_feature_with_event_report_and_metrics(
    world: dict[str, Any],
) -> None:
    # Given a model with a categorical feature, and traffic where 12% of the plans are unknown (OOV 3)
    publish_categorical(world["s3"])
    rng = np.random.default_rng(12)
    x = np.column_stack([rng.normal(40, 10, 1000), rng.choice(4, 1000, p=[0.46, 0.26, 0.16, 0.12])])
    x[:3, 1] = [7.0, -1.0, 0.5]  # corrupt indices: counted, not compared
    ts = time.time() - 120
    rows = x.astype(np.float32)
    lines = [
        encode_record("shop", 1, uuid.uuid4().hex, ts, rows[i : i + 10], rows[i : i + 10, :1] / 10)
        for i in range(0, 1000, 10)
    ]
    put_captures(world["s3"], lines)

    # When
    summary = run(world)

    # Then the feature drifts on its new-category rate, with the numbers everywhere
    (m,) = summary["models"]
    assert m["verdict"] == "drift" and m["drifted_features"] == ["plan"]
    (event,) = events_of(world, "DriftDetected")
    (plan,) = event["detail"]["features"]
    assert plan["type"] == "categorical" and "new_category_rate" in plan["reasons"]
    assert 0.1 < plan["new_category_rate"] < 0.14 and plan["baseline_new_category_rate"] < 0.03
    assert event["detail"]["new_category_threshold"] == 0.05

    dims = [
        {"Name": "Model", "Value": "shop"},
        {"Name": "Version", "Value": "1"},
        {"Name": "Feature", "Value": "plan"},
    ]
    assert metric_values(world["cw"], "NewCategoryRate", dims) == [pytest.approx(plan["new_category_rate"])]
    assert metric_values(world["cw"], "KS", dims) == []  # no numeric statistics on a categorical column
    age = [*dims[:2], {"Name": "Feature", "Value": "age"}]
    assert metric_values(world["cw"], "NewCategoryRate", age) == []
    mv = dims[:2]
    assert metric_values(world["cw"], "MaxNewCategoryRise", mv)[0] > 0.05

    key = event["detail"]["report"].removeprefix("s3://registry/")
    report = json.loads(world["s3"].get_object(Bucket="registry", Key=key)["Body"].read())
    feats = {f["name"]: f for f in report["versions"][0]["features"]}
    assert feats["plan"]["invalid"] == 3 and sum(feats["plan"]["counts"]) == 997
    assert feats["age"]["ks"] is not None and "type" not in feats["age"]
    html = (
        world["s3"].get_object(Bucket="registry", Key=key.replace(".json", ".html"))["Body"].read().decode()
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert "(new / missing)" in html
    # the dimensionless ratio an alarm can watch beside MaxPsiRatio (rise 0.1 / threshold 0.05 = 2)
    assert summary["max_new_category_ratio"] > 1
    assert metric_values(world["cw"], "MaxNewCategoryRatio") == [
        pytest.approx(summary["max_new_category_ratio"])
    ]
