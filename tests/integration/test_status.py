"""`modelops status`: every model, its production/canary versions, last monitor result, open alarms."""

from __future__ import annotations

import json

import boto3
import pytest
from click.testing import CliRunner

from modelops.domain import canary
from modelops.storage.registry import Registry
from modelops_cli.main import cli


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    reg = Registry(s3, registry_bucket)
    for rmse in (0.9, 0.7):
        reg.publish_version(
            "houses", {"tflite": ("model.tflite", str(rmse).encode())}, {"metrics": {"rmse": rmse}}
        )
    reg.promote("houses", 1)
    reg.update_alias("houses", "production", lambda cur: canary.start(cur, 2, 0.1), reason="canary")
    reg.publish_version("iris", {"tflite": ("model.tflite", b"i")}, {"metrics": {"accuracy": 0.95}})
    s3.put_object(
        Bucket=registry_bucket,
        Key="monitoring/houses/latest.json",
        Body=json.dumps(
            {
                "at": "2026-11-27T10:00:00Z",
                "drift": True,
                "max_psi": 0.41,
                "samples": 500,
                "report": "s3://registry/monitoring/houses/x/report.html",
            }
        ),
    )
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for name in ("DriftAlarm", "Quiet"):
        cw.put_metric_alarm(
            AlarmName=name,
            MetricName="MaxPsiRatio",
            Namespace="ModelOps",
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    cw.set_alarm_state(AlarmName="DriftAlarm", StateValue="ALARM", StateReason="PSI ratio 2.05 > 1")
    return reg


def test_status_shows_every_model_and_open_alarms(fleet: Registry) -> None:
    r = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "houses: 2 version(s), production v1 (rmse=0.9), canary v2 at 10% (rmse=0.7)" in r.output
    assert "DRIFT, max PSI 0.41" in r.output
    assert "iris: 1 version(s), no production alias" in r.output
    assert "DriftAlarm: PSI ratio 2.05 > 1" in r.output
    assert "Quiet" not in r.output


def test_status_json(fleet: Registry) -> None:
    r = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    doc = json.loads(r.output)
    houses = next(m for m in doc["models"] if m["model"] == "houses")
    assert houses["production"]["version"] == 1 and houses["canary"]["weight"] == 0.1
    assert [a["name"] for a in doc["alarms"]] == ["DriftAlarm"]


def test_status_of_an_empty_registry(monkeypatch: pytest.MonkeyPatch, tmp_path, registry_bucket) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    r = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert r.exit_code == 0 and "no models in the registry yet" in r.output and "no alarms open" in r.output
