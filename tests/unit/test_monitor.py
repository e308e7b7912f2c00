"""The monitor stage over in-memory stores (no moto): what a window's run reads, writes and publishes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.domain import report as report_docs
from modelops.domain.baseline import compute_baseline
from modelops.domain.capture import encode_record
from modelops.domain.errors import RegistryUnavailableError
from modelops.stages import monitor
from modelops.storage.captures import CaptureStore
from modelops.storage.fleet import latest_monitor
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore, RetrainDatasets
from tests.cfn import load
from tests.fakes import FakeBus, MemoryObjectStore

ROOT = Path(__file__).resolve().parents[2]

FEATURES = ["a", "b", "c"]
W = np.array([1.0, -2.0, 0.5])


class World:
    def __init__(self, bus: FakeBus) -> None:
        self.data = MemoryObjectStore("data")
        self.reg_objects = MemoryObjectStore("registry")
        self.registry = Registry.over(self.reg_objects)
        self.bus = bus
        self.reports = ReportStore(self.reg_objects)
        self.stores = monitor.Stores(
            registry=self.registry,
            captures=CaptureStore(self.data),
            reports=self.reports,
            datasets=RetrainDatasets(self.data),
            bus=bus,
        )
        self.now = time.time() + 60

    def publish(self, model: str = "demo", *, retrain: bool = False) -> int:
        rng = np.random.default_rng(0)
        x = rng.normal(0.0, 1.0, size=(3000, 3))
        baseline = compute_baseline(x, FEATURES, x @ W)
        spec = {
            "task": "regression",
            "target": "y",
            "features": FEATURES,
            "monitoring": {"psi_threshold": 0.2, "retrain_on_drift": retrain},
        }
        m = self.registry.publish_version(
            model,
            {
                "tflite": ("model.tflite", b"TFL3"),
                "baseline": ("baseline.json", json.dumps(baseline).encode()),
            },
            {
                "task": "regression",
                "schema": {"task": "regression", "target": "y", "features": [{"name": f} for f in FEATURES]},
                "spec": spec,
                "metrics": {"rmse": 0.5, "mae": 0.4},
            },
        )
        self.registry.promote(model, m.version)
        return m.version

    def capture(self, rows: int, *, shift: float = 0.0, version: int = 1, name: str = "c1") -> np.ndarray:
        x = np.random.default_rng(rows).normal(0.0, 1.0, size=(rows, 3)).astype(np.float32)
        x[:, 1] += shift
        y = (x @ W.astype(np.float32))[:, None]
        lines = [
            encode_record("demo", version, f"r{i}", self.now - 120, x[i : i + 1], y[i : i + 1])
            for i in range(rows)
        ]
        t = time.gmtime(self.now - 120)
        self.data.put(f"captures/{time.strftime('%Y/%m/%d/%H', t)}/{name}", b"".join(lines))
        return x

    def run(self, **kwargs: Any) -> dict[str, Any]:
        settings = monitor.MonitorSettings(
            data_bucket="data", registry_bucket="registry", now=self.now, **kwargs
        )
        return monitor.run_window(settings, self.stores)


@pytest.fixture
def world(bus: FakeBus) -> World:
    return World(bus)


def test_an_empty_window_writes_nothing(world: World) -> None:
    world.publish()
    summary = world.run()
    assert summary["objects"] == 0 and summary["models"] == [] and summary["max_psi_ratio"] is None
    assert world.reg_objects.keys("monitoring/") == [] and world.bus.sent == []


def test_a_drifted_window_writes_report_latest_and_drift_detected(world: World) -> None:
    world.publish()
    world.capture(400, shift=3.0)

    summary = world.run()

    (m,) = summary["models"]
    assert m["verdict"] == "drift" and m["drifted_features"][0] == "b" and m["role"] == "production"
    keys = world.reg_objects.keys("monitoring/demo/")
    assert len(keys) == 3 and keys[-1] == "monitoring/demo/latest.json"
    assert any(k.endswith("/report.html") for k in keys)
    latest = world.reports.latest("demo")
    assert latest is not None and latest["drift"] is True and latest["report"] == m["report"]
    assert [name for name, _ in world.reports.iter_latest()] == ["demo"]
    (detail,) = world.bus.of("DriftDetected")
    assert detail["model"] == "demo" and detail["report"] == m["report"]
    assert detail["features"][0]["name"] == "b"


def test_without_publishing_no_events(world: World) -> None:
    world.publish()
    world.capture(400, shift=3.0)
    assert world.run(publish=False)["models"][0]["verdict"] == "drift"
    assert world.bus.sent == []


def test_a_corrupt_manifest_only_affects_its_version(world: World) -> None:
    world.publish()
    world.capture(200, version=1, name="v1")
    world.capture(150, version=7, name="v7")
    world.reg_objects.put("models/demo/versions/7/manifest.json", b"{not json")

    summary = world.run()

    verdicts = {m["version"]: m for m in summary["models"]}
    assert verdicts[1]["verdict"] == "ok" and verdicts[1]["samples"] == 200
    assert verdicts[7]["verdict"] == "baseline_error" and summary["bad"] == {"not_compared": 150}


def test_an_s3_outage_fails_the_run(world: World) -> None:
    world.publish()
    world.capture(200)
    world.data.fail_next("get")
    with pytest.raises(RegistryUnavailableError):
        world.run()
    world.data.fail_next("list")
    with pytest.raises(RegistryUnavailableError):
        world.run()
    assert world.run()["models"][0]["samples"] == 200  # the retry sees the window


def test_retrain_on_drift_writes_one_dataset_per_version_and_day(world: World) -> None:
    world.publish(retrain=True)
    x = world.capture(300, shift=3.0)
    labels = "\n".join(json.dumps({"request_id": f"r{i}", "row": 0, "label": float(i)}) for i in range(300))
    world.data.put("labels/demo/truth.jsonl", labels.encode())

    first = world.run(min_samples=100)["models"][0]
    second = world.run(min_samples=100)["models"][0]

    assert first["retrain"]["started"] is True and first["retrain"]["rows"] == 300
    (key,) = world.data.keys("datasets/demo/")
    assert first["retrain"]["dataset"] == f"s3://data/{key}"
    rows = world.data.objects[key][0].decode().splitlines()
    assert rows[0] == "a,b,c,y" and len(rows) == 301
    assert float(rows[1].split(",")[0]) == pytest.approx(float(x[0, 0]))
    assert second["retrain"] == {
        "started": False,
        "reason": "a retrain dataset for this version was already written today",
        "dataset": first["retrain"]["dataset"],
    }


def test_unreadable_latest_reports(world: World) -> None:
    world.reg_objects.put("monitoring/a/latest.json", b"not json")
    world.reg_objects.put("monitoring/b/latest.json", b"[1]")
    world.reg_objects.put("monitoring/c/latest.json", json.dumps({"drift": False}).encode())
    world.reg_objects.put("monitoring/d/20260101T000000Z/report.json", b"{}")
    assert list(world.reports.iter_latest()) == [("c", {"drift": False})]
    assert world.reports.models() == ["a", "b", "c", "d"]
    assert latest_monitor(world.reports, "a") == {"error": "latest.json is not valid JSON"}
    assert latest_monitor(world.reports, "b") == {"error": "latest.json is not an object"}
    assert latest_monitor(world.reports, "d") is None


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_BUCKET", "d")
    monkeypatch.setenv("REGISTRY_BUCKET", "r")
    monkeypatch.setenv("MONITOR_WINDOW_SECONDS", "600")
    s = monitor.Settings()
    assert (s.data_bucket, s.registry_bucket, s.monitor_window_seconds, s.min_samples) == ("d", "r", 600, 100)
    assert s.powertools_metrics_namespace == "ModelOps"


# ---------------------------------------------------------------------------------------------- the window
def test_the_window_ends_a_capture_buffer_before_the_run_so_buffered_records_go_to_the_next_run(
    world: World,
) -> None:
    """Issue 17: Firehose holds records up to 60 s before they reach S3. A window that ends at "now"
    never evaluates a record captured in its last minute that lands after the run: the next window
    starts after it. Ending each window CAPTURE_BUFFER_SECONDS (+30 s) before the run evaluates every
    record once: here one captured 30 s before a run, landed before it (a) or after it (b)."""
    world.publish()
    t0 = time.time()
    clock = [t0]
    stage = monitor.Monitor(
        monitor.Settings(data_bucket="data", registry_bucket="registry", capture_buffer_seconds=60),
        world.stores,
        clock=lambda: clock[0],
    )
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime(t0 - 30))

    def captured(name: str, rows: int) -> None:
        x = np.ones((rows, 3), np.float32)
        world.data.put(
            f"captures/{hour}/{name}", encode_record("demo", 1, name, t0 - 30, x, x[:, :1])
        )  # captured at t0 - 30, landed now

    captured("a", 2)  # landed before the run at t0
    first = stage.handle({})
    captured("b", 3)  # still in the buffer during the run at t0; lands just after it
    clock[0] = t0 + 3600  # the next hourly run
    second = stage.handle({})
    clock[0] = t0 + 7200
    third = stage.handle({})

    assert first["models"] == []  # neither is judged by the run at t0 ...
    assert [m["samples"] for m in second["models"]] == [5]  # ... both by the next one ...
    assert third["models"] == []  # ... and by no other
    assert first["window"]["end"] == report_docs.iso_of(t0 - 90) == second["window"]["start"]


def test_no_capture_buffer_means_no_lag() -> None:
    s = monitor.Settings(data_bucket="d", registry_bucket="r", capture_buffer_seconds=0)
    assert s.capture_lag_seconds() == 0
    assert monitor.Settings(data_bucket="d", registry_bucket="r").capture_lag_seconds() == 90
    window = monitor.MonitorSettings(data_bucket="d", registry_bucket="r", now=1000.0, capture_lag_seconds=90)
    assert window.window() == (1000.0 - 90 - 3600, 1000.0 - 90)


def test_the_monitor_waits_for_the_capture_streams_own_buffer() -> None:
    """The template's CAPTURE_BUFFER_SECONDS is the capture stream's buffering interval."""
    t = load(ROOT / "template.yaml")["Resources"]
    interval = t["CaptureStream"]["Properties"]["ExtendedS3DestinationConfiguration"]["BufferingHints"][
        "IntervalInSeconds"
    ]
    env = t["MonitorFunction"]["Properties"]["Environment"]["Variables"]
    assert int(env["CAPTURE_BUFFER_SECONDS"]) == int(interval)


# ---------------------------------------------------------------------------------------------- metrics
def _wide_result(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    psi = rng.uniform(0.0, 0.5, n)
    return {
        "model": "wide",
        "version": 3,
        "samples": 1000,
        "missing_rate": 0.0,
        "max_psi": float(psi.max()),
        "features": [{"name": f"c{i:04d}", "psi": float(p), "ks": 0.1} for i, p in enumerate(psi)],
        "prediction": {"psi": 0.01},
        "quality": None,
    }


def test_a_500_feature_window_publishes_per_feature_metrics_for_the_top_n_only() -> None:
    """Issue 17: a Feature dimension for every column makes ~20,000 custom metrics per version of a
    10,000-column model. Only the N features with the highest PSI get Psi/KS; the aggregates the alarms
    and the dashboard use (MaxPsi, MaxPsiRatio) are all there."""
    r = _wide_result(500)
    data = monitor.metric_data([r], {"max_psi_ratio": 2.0, "bad_lines": 0}, time.time(), feature_metrics=20)

    per_feature = [d for d in data if any(dim["Name"] == "Feature" for dim in d.get("Dimensions", []))]
    features = {dim["Value"] for d in per_feature for dim in d["Dimensions"] if dim["Name"] == "Feature"}
    top = sorted(r["features"], key=lambda f: -f["psi"])[:20]
    assert features == {f["name"] for f in top}
    assert len(per_feature) == 2 * 20  # Psi and KS for each
    names = {d["MetricName"] for d in data}
    assert {"MaxPsi", "MaxPsiRatio", "SampleCount", "PredictionPsi"} <= names
    assert next(d for d in data if d["MetricName"] == "MaxPsi")["Value"] == r["max_psi"]


def test_the_feature_metric_cap_is_a_setting_with_a_default_of_20(monkeypatch: pytest.MonkeyPatch) -> None:
    assert monitor.Settings(data_bucket="d", registry_bucket="r").monitor_feature_metrics == 20
    monkeypatch.setenv("MONITOR_FEATURE_METRICS", "5")
    cap = monitor.Settings(data_bucket="d", registry_bucket="r").monitor_feature_metrics
    data = monitor.metric_data([_wide_result(50)], {"bad_lines": 0}, time.time(), feature_metrics=cap)
    assert len({d["Dimensions"][-1]["Value"] for d in data if d["MetricName"] == "Psi"}) == 5


# ---------------------------------------------------------------------------------------------- categorical
PLANS = ["basic", "pro", "team"]
CAT_SCHEMA = {
    "task": "regression",
    "target": "y",
    "features": [
        {"name": "age", "type": "numeric", "dtype": "float32"},
        {"name": "plan", "type": "categorical", "dtype": "string", "vocabulary": PLANS},
    ],
}


def _publish_categorical(world: World, *, schema: dict[str, Any] = CAT_SCHEMA, retrain: bool = False) -> None:
    from modelops.domain.encoding import InputSchema

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(40, 10, 3000), rng.choice(4, 3000, p=[0.5, 0.3, 0.19, 0.01])])
    baseline = compute_baseline(x, ["age", "plan"], x[:, 0], schema=InputSchema.from_dict(CAT_SCHEMA))
    m = world.registry.publish_version(
        "shop",
        {"tflite": ("model.tflite", b"TFL3"), "baseline": ("baseline.json", json.dumps(baseline).encode())},
        {
            "task": "regression",
            "schema": schema,
            "spec": {"task": "regression", "target": "y", "monitoring": {"retrain_on_drift": retrain}},
        },
    )
    world.registry.promote("shop", m.version)


def _capture_plans(world: World, plans: np.ndarray) -> np.ndarray:
    n = plans.size
    x = np.column_stack([np.random.default_rng(1).normal(40, 10, n), plans]).astype(np.float32)
    lines = [
        encode_record("shop", 1, f"r{i}", world.now - 120, x[i : i + 1], x[i : i + 1, :1]) for i in range(n)
    ]
    t = time.gmtime(world.now - 120)
    world.data.put(f"captures/{time.strftime('%Y/%m/%d/%H', t)}/shop", b"".join(lines))
    return x


def test_a_categorical_version_is_monitored_on_its_category_shares(world: World) -> None:
    _publish_categorical(world)
    _capture_plans(world, np.random.default_rng(2).choice(4, 400, p=[0.5, 0.3, 0.19, 0.01]))

    summary = world.run()

    (m,) = summary["models"]
    assert m["verdict"] == "ok"
    report = json.loads(world.reg_objects.objects[m["report"].removeprefix("s3://registry/")][0])
    plan = report["versions"][0]["features"][1]
    assert plan["type"] == "categorical" and plan["vocabulary"] == PLANS and sum(plan["counts"]) == 400
    assert plan["psi"] < 0.2 and plan["ks"] is None


def test_a_schema_that_disagrees_with_the_baseline_is_a_baseline_error(world: World) -> None:
    numeric = {**CAT_SCHEMA, "features": [{"name": "age"}, {"name": "plan"}]}
    _publish_categorical(world, schema=numeric)
    _capture_plans(world, np.zeros(200))
    (m,) = world.run()["models"]
    assert m["verdict"] == "baseline_error"
    latest = world.reports.latest("shop")
    assert latest is not None and latest["verdict"] == "baseline_error"
    report = json.loads(world.reg_objects.objects[m["report"].removeprefix("s3://registry/")][0])
    assert "'plan' is numeric in the schema but not in the baseline" in report["versions"][0]["problem"]


def test_a_retrain_dataset_writes_categories_back_as_their_values(world: World) -> None:
    _publish_categorical(world, retrain=True)
    x = _capture_plans(world, np.array([0, 1, 2, 3, 1] * 60, dtype=np.float32))  # 20% OOV: drift
    labels = "\n".join(json.dumps({"request_id": f"r{i}", "row": 0, "label": i}) for i in range(300))
    world.data.put("labels/shop/truth.jsonl", labels.encode())

    (m,) = world.run(min_samples=100)["models"]

    assert m["verdict"] == "drift" and m["retrain"]["started"] is True
    (key,) = world.data.keys("datasets/shop/")
    rows = world.data.objects[key][0].decode().splitlines()
    assert rows[0] == "age,plan,y"
    assert [r.split(",")[1] for r in rows[1:6]] == ["basic", "pro", "team", "", "pro"]  # OOV: missing
    assert float(rows[1].split(",")[0]) == pytest.approx(float(x[0, 0]))


def test_new_category_breaches_get_their_metric_first() -> None:
    r = _wide_result(30)
    r["features"].append(
        {"name": "plan", "psi": 0.0001, "ks": None, "new_category_rate": 0.3, "new_category_rise": 0.29}
    )
    r["max_new_category_rise"] = 0.29
    r["new_category_threshold"] = 0.05
    data = monitor.metric_data([r], {"bad_lines": 0}, time.time(), feature_metrics=3)
    (rate,) = [d for d in data if d["MetricName"] == "NewCategoryRate"]
    assert rate["Value"] == 0.3 and rate["Dimensions"][-1] == {"Name": "Feature", "Value": "plan"}
    assert len({d["Dimensions"][-1]["Value"] for d in data if d["MetricName"] == "Psi"}) == 3
    (rise,) = [d for d in data if d["MetricName"] == "MaxNewCategoryRise"]
    assert rise["Value"] == 0.29 and [x["Name"] for x in rise["Dimensions"]] == ["Model", "Version"]
    # without a breach, a categorical feature with a low PSI is not among the top 3
    r["features"][-1]["new_category_rise"] = 0.01
    data = monitor.metric_data([r], {"bad_lines": 0}, time.time(), feature_metrics=3)
    assert not [d for d in data if d["MetricName"] == "NewCategoryRate"]


def test_the_new_category_threshold_comes_from_the_spec_when_it_has_one() -> None:
    from modelops.domain.drift import NEW_CATEGORY_THRESHOLD
    from modelops.domain.settings import manifest_defaults

    assert manifest_defaults(None)["new_category_threshold"] == NEW_CATEGORY_THRESHOLD == 0.05
    assert manifest_defaults({})["new_category_threshold"] == 0.05
    assert manifest_defaults({"new_category_threshold": 0.1})["new_category_threshold"] == 0.1
    for bad in (0, -1, 2, True, "0.1"):
        assert manifest_defaults({"new_category_threshold": bad})["new_category_threshold"] == 0.05
