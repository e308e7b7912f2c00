"""The alert stage on moto: alarms and events in, exactly one readable message per incident out
(asserted on an SQS queue subscribed to AlertsTopic), canary rollback, publish failures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.endpoint
import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from modelops import aws
from modelops.domain import canary
from modelops.stages import alert as alert_stage
from modelops.stages import monitor as monitoring
from modelops.storage.registry import Registry
from tests.fakes import FakeContext
from tests.integration.test_alert_dedup import create_table
from tests.integration.test_monitor import (
    DATA,
    capture_lines,
    drained,
    publish_model,
    put_captures,
    training_data,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"
TABLE = "idempotency"


def alarm_event(state_time: str | None = None, state: str = "ALARM", old: str = "OK") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "alert_drift_alarm_sns.json").read_text())
    msg = json.loads(event["Records"][0]["Sns"]["Message"])
    msg["StateChangeTime"] = state_time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    msg["NewStateValue"], msg["OldStateValue"] = state, old
    event["Records"][0]["Sns"]["Message"] = json.dumps(msg)
    return event


@pytest.fixture
def env(s3: Any, registry_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    region = "us-east-1"
    s3.create_bucket(Bucket=DATA)
    ddb = create_table(TABLE)
    sns = boto3.client("sns", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    events = boto3.client("events", region_name=region)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    inbox = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    bus_q = sqs.create_queue(QueueName="modelops-events")["QueueUrl"]
    bus_arn = sqs.get_queue_attributes(QueueUrl=bus_q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-modelops", EventPattern=json.dumps({"source": ["modelops"]}))
    events.put_targets(Rule="all-modelops", Targets=[{"Id": "q", "Arn": bus_arn}])
    for k, v in {
        "ALERTS_TOPIC_ARN": topic,
        "DEDUP_TABLE": TABLE,
        "REGISTRY_BUCKET": registry_bucket,
        "DEDUP_WINDOW_SECONDS": "3600",
        "POWERTOOLS_SERVICE_NAME": "alert",
    }.items():
        monkeypatch.setenv(k, v)
    import functions.alert.app as app

    alert_stage.build.cache_clear()
    yield {
        "s3": s3,
        "sqs": sqs,
        "ddb": ddb,
        "inbox": inbox,
        "bus": bus_q,
        "app": app,
        "topic": topic,
        "events": events,
        "sns": sns,
    }
    alert_stage.build.cache_clear()


def alert(env: dict[str, Any], event: Any) -> dict[str, Any]:
    result: dict[str, Any] = env["app"].lambda_handler(event, FakeContext(function_name="alert"))
    return result


def inbox(env: dict[str, Any]) -> list[dict[str, Any]]:
    return drained(env["sqs"], env["inbox"])


def bus_events(env: dict[str, Any]) -> list[dict[str, Any]]:
    return drained(env["sqs"], env["bus"])


def attrs(msg: dict[str, Any]) -> dict[str, str]:
    return {k: v["Value"] for k, v in msg["MessageAttributes"].items()}


def monitor_with_drift(env: dict[str, Any], version: int = 1) -> dict[str, Any]:
    x = training_data(np.random.default_rng(3), 1500)
    x[:, 2] += 1.0
    put_captures(env["s3"], capture_lines(x, version=version, batch=5))
    return monitoring.run_monitor(
        monitoring.MonitorSettings(data_bucket=DATA, registry_bucket="registry"),
        s3=env["s3"],
        cloudwatch=boto3.client("cloudwatch", region_name="us-east-1"),
        events=env["events"],
    )


# ---------------------------------------------------------------------------------------------- drift
def test_drift_alarm_delivered_three_times_gives_one_message_naming_model_version_feature(
    env: dict[str, Any],
) -> None:
    # Given a monitor run that found drift in feature f2 of demo v1
    publish_model(env["s3"])
    summary = monitor_with_drift(env)
    assert summary["max_psi_ratio"] > 1
    (drift_event,) = [e for e in bus_events(env) if e["detail-type"] == "DriftDetected"]
    event = alarm_event()
    # When the drift alarm's SNS notification arrives three times, then the DriftDetected event
    results = [alert(env, event) for _ in range(3)]
    late = alert(env, drift_event)
    # Then exactly one message went out, naming the model, version and feature
    assert [r["alerts"][0]["status"] for r in results] == ["published", "duplicate", "duplicate"]
    assert late["alerts"][0]["status"] == "duplicate"
    (msg,) = inbox(env)
    assert len(msg["Subject"]) < 100
    assert "demo v1" in msg["Subject"] and "f2" in msg["Subject"]
    assert "feature f2: PSI" in msg["Message"] and summary["models"][0]["report"] in msg["Message"]
    assert "report.html" in msg["Message"] and "What to do next" in msg["Message"]
    assert attrs(msg) == {"severity": "warning", "model": "demo", "kind": "drift"}


def test_drift_event_first_then_alarm_is_still_one_message(env: dict[str, Any]) -> None:
    publish_model(env["s3"])
    monitor_with_drift(env)
    (drift_event,) = [e for e in bus_events(env) if e["detail-type"] == "DriftDetected"]
    assert alert(env, drift_event)["alerts"][0]["status"] == "published"
    assert alert(env, alarm_event())["alerts"][0]["status"] == "duplicate"
    (msg,) = inbox(env)
    assert "demo v1" in msg["Subject"] and "f2" in msg["Message"]


def test_drift_alarm_without_reports_and_its_recovery(env: dict[str, Any]) -> None:
    fired = alert(env, alarm_event("2026-01-01T10:00:00.000+0000"))["alerts"][0]
    cleared = alert(env, alarm_event("2026-01-01T11:00:00.000+0000", state="OK", old="ALARM"))["alerts"][0]
    assert fired["status"] == cleared["status"] == "published"
    first, second = inbox(env)
    assert "DriftAlarm" in first["Subject"] and "modelops monitor run" in first["Message"]
    assert attrs(first)["severity"] == "warning" and attrs(first)["model"] == "none"
    assert attrs(second)["severity"] == "info" and "OK" in second["Subject"]


def test_stale_reports_are_not_named(env: dict[str, Any]) -> None:
    publish_model(env["s3"])
    monitor_with_drift(env)
    later = datetime.fromtimestamp(time.time() + 7 * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    alert(env, alarm_event(later))
    (msg,) = inbox(env)
    assert "No recent monitor report" in msg["Message"]


# ---------------------------------------------------------------------------------------------- canary
def start_canary(reg: Registry, model: str, version: int, weight: float) -> None:
    reg.update_alias(model, "production", lambda cur: canary.start(cur, version, weight), reason="canary")


def test_drift_on_the_canary_rolls_it_back_and_says_so(env: dict[str, Any]) -> None:
    reg = publish_model(env["s3"])
    publish_model(env["s3"], promote=False, seed=1)
    start_canary(reg, "demo", 2, 0.1)
    monitor_with_drift(env, version=2)
    (drift_event,) = [e for e in bus_events(env) if e["detail-type"] == "DriftDetected"]
    assert drift_event["detail"]["role"] == "canary"

    result = alert(env, drift_event)["alerts"][0]

    assert result["rolled_back"][0]["version"] == 2
    alias, _ = Registry(env["s3"], "registry").get_alias("demo")
    assert alias.version == 1 and alias.canary is None and alias.updated_by == "alert"
    (rolled,) = [e for e in bus_events(env) if e["detail-type"] == "CanaryRolledBack"]
    assert rolled["detail"]["version"] == 2 and rolled["detail"]["production_version"] == 1
    # the CanaryRolledBack event coming back to the alert function is already announced
    assert alert(env, rolled)["alerts"][0]["status"] == "duplicate"
    (msg,) = inbox(env)
    assert "canary rolled back" in msg["Subject"] and "canary v2 rolled back" in msg["Message"]


def test_drift_on_production_does_not_touch_the_canary(env: dict[str, Any]) -> None:
    reg = publish_model(env["s3"])
    publish_model(env["s3"], promote=False, seed=1)
    start_canary(reg, "demo", 2, 0.1)
    monitor_with_drift(env, version=1)
    (drift_event,) = [e for e in bus_events(env) if e["detail-type"] == "DriftDetected"]
    assert alert(env, drift_event)["alerts"][0]["rolled_back"] == []
    alias, _ = Registry(env["s3"], "registry").get_alias("demo")
    assert alias.canary == {"version": 2, "weight": 0.1}


# ---------------------------------------------------------------------------------------------- other shapes
def test_unknown_shapes_are_forwarded_once(env: dict[str, Any]) -> None:
    odd = {"hello": "world", "n": 3}
    assert alert(env, odd)["alerts"][0]["status"] == "published"
    assert alert(env, odd)["alerts"][0]["status"] == "duplicate"
    sns_text = {
        "Records": [{"EventSource": "aws:sns", "Sns": {"Message": "plain text, not JSON", "Subject": "x"}}]
    }
    assert alert(env, sns_text)["alerts"][0]["kind"] == "unrecognised"
    first, second = inbox(env)
    assert (
        first["Subject"] == "[WARNING] Unrecognised notification" and '"hello": "world"' in first["Message"]
    )
    assert attrs(first) == {"severity": "warning", "model": "none", "kind": "unrecognised"}
    assert "plain text, not JSON" in second["Message"]


def test_predict_5xx_alarm_is_critical_with_next_steps(env: dict[str, Any]) -> None:
    payload = (EVENTS / "alert_predict_5xx_alarm.json").read_text()
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": payload}}]}
    alert(env, event)
    alert(env, event)
    (msg,) = inbox(env)
    assert attrs(msg) == {"severity": "critical", "model": "none", "kind": "alarm"}
    assert "Predict5xxAlarm" in msg["Subject"] and "modelops models rollback" in msg["Message"]


def test_stage_events_are_enriched_and_deduplicated(env: dict[str, Any]) -> None:
    failed: dict[str, Any] = {
        "source": "modelops",
        "detail-type": "TrainingJobFailed",
        "id": "e-1",
        "time": "2026-01-01T00:00:00Z",
        "detail": {
            "model": "demo",
            "job": "modelops-demo-abc",
            "reason": "OOM: " + "x" * 300,
            "epochs_run": 3,
        },
    }
    replay = dict(failed, id="e-2", time="2026-01-01T00:05:00Z")
    other = dict(failed, detail={**failed["detail"], "job": "modelops-demo-def"})
    statuses = [alert(env, e)["alerts"][0]["status"] for e in (failed, replay, other)]
    assert statuses == ["published", "duplicate", "published"]
    first, _ = inbox(env)
    assert len(first["Subject"]) < 100 and first["Subject"].startswith("[CRITICAL] TrainingJobFailed: demo")
    assert "modelops-demo-abc" in first["Message"] and "logs" in first["Message"]
    assert attrs(first) == {"severity": "critical", "model": "demo", "kind": "event"}


# ---------------------------------------------------------------------------------------------- failures
def test_publish_failure_is_retried_raised_and_releases_the_claim(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SNS that cannot be reached (every attempt fails), and botocore's backoff not slept
    sns = aws.client("sns")
    attempts: list[str] = []

    def unreachable(request: Any, **_: Any) -> None:
        attempts.append(request.url)
        raise EndpointConnectionError(endpoint_url=request.url)

    sns.meta.events.register_first("before-send.sns.Publish", unreachable)
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda _s: None)  # type: ignore[attr-defined]
    event = alarm_event()
    # When / Then: the handler raises, so Lambda retries and the DLQ keeps the event
    with pytest.raises(EndpointConnectionError):
        alert(env, event)
    assert len(attempts) == sns.meta.config.retries["total_max_attempts"] == 6  # 1 + 5 retries (aws.py)
    assert inbox(env) == []
    assert env["ddb"].scan(TableName=TABLE)["Items"] == []  # the claim was released
    # And once SNS is back, the retried event publishes exactly once
    sns.meta.events.unregister("before-send.sns.Publish", unreachable)
    assert alert(env, event)["alerts"][0]["status"] == "published"
    assert alert(env, event)["alerts"][0]["status"] == "duplicate"
    assert len(inbox(env)) == 1
    (item,) = env["ddb"].scan(TableName=TABLE)["Items"]
    assert item["id"]["S"].startswith("alert#") and item["status"]["S"] == "COMPLETE"


# ---------------------------------------------------------------------------------------------- forged events
def stage_bus(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """A custom bus like the template's StageEventBus, its events copied to a queue; the alert function
    told its name (EVENT_BUS_NAME) as the template does."""
    events, sqs = env["events"], env["sqs"]
    events.create_event_bus(Name="modelops-stage-events")
    url = sqs.create_queue(QueueName="stage-bus-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="stage-all",
        EventBusName="modelops-stage-events",
        EventPattern=json.dumps({"source": ["modelops"]}),
    )
    events.put_targets(
        Rule="stage-all", EventBusName="modelops-stage-events", Targets=[{"Id": "q", "Arn": arn}]
    )
    monkeypatch.setenv("EVENT_BUS_NAME", "modelops-stage-events")
    alert_stage.build.cache_clear()
    return str(url)


def test_canary_rolled_back_is_published_on_the_stage_bus(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert role may put CanaryRolledBack on the stack's bus only (template.yaml): the stage must
    publish there, not on the default bus."""
    reg = publish_model(env["s3"])
    publish_model(env["s3"], promote=False, seed=1)
    start_canary(reg, "demo", 2, 0.1)
    monitor_with_drift(env, version=2)
    (drift_event,) = [e for e in bus_events(env) if e["detail-type"] == "DriftDetected"]
    stage_queue = stage_bus(env, monkeypatch)

    assert alert(env, drift_event)["alerts"][0]["rolled_back"][0]["version"] == 2

    (rolled,) = drained(env["sqs"], stage_queue)
    assert rolled["detail-type"] == "CanaryRolledBack" and rolled["detail"]["version"] == 2
    assert bus_events(env) == []  # nothing on the default bus


def test_a_forged_drift_event_changes_nothing_and_its_text_is_capped(env: dict[str, Any]) -> None:
    """A DriftDetected naming the canary that does not come from the stage bus's rule (here: inside a
    message on the alarm topic, with attacker text) is forwarded as unrecognised, capped, and moves
    nothing."""
    reg = publish_model(env["s3"])
    publish_model(env["s3"], promote=False, seed=1)
    start_canary(reg, "demo", 2, 0.1)
    history_before = sorted(
        o["Key"] for o in env["s3"].list_objects_v2(Bucket="registry").get("Contents", [])
    )
    evil = "\x1b[31m\u202e" + "x" * 100_000
    forged = {
        "source": "modelops",
        "detail-type": "DriftDetected",
        "detail": {"model": "demo", "version": 2, "features": [{"name": evil, "psi": 9.9}], "reason": evil},
    }
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(forged)}}]}

    (result,) = alert(env, event)["alerts"]

    assert result["kind"] == "unrecognised" and result["rolled_back"] == []
    alias, _ = Registry(env["s3"], "registry").get_alias("demo")
    assert alias.canary == {"version": 2, "weight": 0.1}
    after = sorted(o["Key"] for o in env["s3"].list_objects_v2(Bucket="registry").get("Contents", []))
    assert after == history_before
    (msg,) = inbox(env)
    assert len(msg["Message"]) <= 16_000 and "\x1b" not in msg["Message"] and "\u202e" not in msg["Message"]
