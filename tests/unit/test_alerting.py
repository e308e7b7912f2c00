"""Alert parsing, fingerprints and subjects (no AWS: fakes only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from modelops.stages import alert as alerting

EVENTS = Path(__file__).resolve().parents[1] / "events"


class FakeSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.published.append(kwargs)
        return {"MessageId": f"m{len(self.published)}"}


class FakeDynamo:
    """Claims keyed by id; a put with a condition fails when the id exists (enough for these tests)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put_item(self, TableName: str, Item: dict[str, Any], **kw: Any) -> None:  # noqa: N803
        from botocore.exceptions import ClientError

        if "ConditionExpression" in kw and Item["id"]["S"] in self.items:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "PutItem")
        self.items[Item["id"]["S"]] = Item

    def update_item(self, **kw: Any) -> None:
        self.items[kw["Key"]["id"]["S"]]["status"] = {"S": "COMPLETE"}

    def delete_item(self, TableName: str, Key: dict[str, Any]) -> None:  # noqa: N803
        self.items.pop(Key["id"]["S"], None)


def alerter() -> tuple[alerting.Alerter, FakeSns]:
    sns = FakeSns()
    return alerting.Alerter(alerting.AlertSettings("arn:topic", "table"), sns=sns, dynamodb=FakeDynamo()), sns


def test_split_notifications_recognises_each_shape() -> None:
    sns_alarm = json.loads((EVENTS / "alert_drift_alarm_sns.json").read_text())
    bridge = {"source": "modelops", "detail-type": "DriftDetected", "detail": {"model": "m", "version": 1}}
    sns_bridge = {"Records": [{"Sns": {"Message": json.dumps(bridge)}}]}
    assert [s for s, _ in alerting.split_notifications(sns_alarm)] == ["alarm"]
    assert [s for s, _ in alerting.split_notifications(bridge)] == ["event"]
    assert [s for s, _ in alerting.split_notifications(sns_bridge)] == ["event"]
    assert (
        alerting.split_notifications({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})[0][
            0
        ]
        == "unknown"
    )
    assert (
        alerting.split_notifications({"source": "modelops", "detail-type": "Nope", "detail": {}})[0][0]
        == "unknown"
    )
    assert alerting.split_notifications({"Records": [{"eventSource": "aws:s3"}]})[0][0] == "unknown"
    assert alerting.split_notifications([1, 2])[0][0] == "unknown"
    assert alerting.split_notifications(None)[0][0] == "unknown"


@given(st.text(max_size=400))
def test_subjects_are_printable_ascii_under_100(text: str) -> None:
    s = alerting.clean_subject(text)
    assert len(s) < 100 and all(32 <= ord(c) < 127 for c in s)


def test_drift_fingerprint_ignores_order() -> None:
    a = alerting.drift_fingerprint([("m", 1, ["b", "a"]), ("n", 2, ["c"])])
    b = alerting.drift_fingerprint([("n", 2, ["c"]), ("m", 1, ["a", "b"])])
    assert a == b != alerting.drift_fingerprint([("m", 1, ["a"])])


def test_alarm_with_model_dimensions_targets_that_version() -> None:
    a, _ = alerter()
    alarm = {
        "AlarmName": "canary-errors",
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "StateChangeTime": "2026-01-01T00:00:00.000+0000",
        "Trigger": {
            "MetricName": "Errors",
            "Dimensions": [{"name": "Model", "value": "demo"}, {"name": "Version", "value": "4"}],
        },
    }
    got = a.from_alarm(alarm)
    assert (got.model, got.version, got.targets, got.severity) == ("demo", 4, [("demo", 4)], "critical")
    assert "demo v4" in got.subject


def test_metric_math_alarm_names_its_metrics() -> None:
    a, _ = alerter()
    alarm = {
        "AlarmName": "DLQDepthAlarm",
        "NewStateValue": "ALARM",
        "StateChangeTime": "2026-01-01T00:00:00.000+0000",
        "Trigger": {
            "Metrics": [
                {"Id": "total", "Expression": "SUM(METRICS())"},
                {"Id": "q1", "MetricStat": {"Metric": {"MetricName": "ApproximateNumberOfMessagesVisible"}}},
            ]
        },
    }
    got = a.from_alarm(alarm)
    assert "dead-letter queue" in got.body and got.severity == "critical"


def test_same_alarm_three_times_publishes_once_with_fakes() -> None:
    a, sns = alerter()
    event = json.loads((EVENTS / "alert_drift_alarm_sns.json").read_text())
    got = [a.handle(event)["alerts"][0]["status"] for _ in range(3)]
    assert got == ["published", "duplicate", "duplicate"] and len(sns.published) == 1
    attrs = sns.published[0]["MessageAttributes"]
    assert {k: v["StringValue"] for k, v in attrs.items()} == {
        "severity": "warning",
        "model": "none",
        "kind": "drift",
    }


def test_an_event_with_a_new_number_is_a_new_alert() -> None:
    a, sns = alerter()
    base = {
        "source": "modelops",
        "detail-type": "PromotionRejected",
        "detail": {"model": "m", "version": 3, "metric": "rmse", "candidate": 0.5, "production": 0.4},
    }
    changed = {**base, "detail": {**base["detail"], "candidate": 0.45}}
    assert [a.handle(e)["alerts"][0]["status"] for e in (base, base, changed)] == [
        "published",
        "duplicate",
        "published",
    ]
    assert sns.published[0]["Subject"].startswith("[WARNING] PromotionRejected: m v3")


def test_only_transitions_that_matter_are_published() -> None:
    a, sns = alerter()

    def alarm(old: str, new: str, when: str) -> dict[str, Any]:
        return {
            "AlarmName": "DriftAlarm",
            "OldStateValue": old,
            "NewStateValue": new,
            "StateChangeTime": when,
            "Trigger": {"MetricName": "MaxPsiRatio"},
        }

    got = [
        a.process("alarm", alarm("INSUFFICIENT_DATA", "OK", "2026-01-01T00:00:00.000+0000"))["status"],
        a.process("alarm", alarm("OK", "INSUFFICIENT_DATA", "2026-01-01T01:00:00.000+0000"))["status"],
        a.process("alarm", alarm("OK", "ALARM", "2026-01-01T02:00:00.000+0000"))["status"],
        a.process("alarm", alarm("ALARM", "INSUFFICIENT_DATA", "2026-01-01T03:00:00.000+0000"))["status"],
    ]
    assert got == ["suppressed", "suppressed", "published", "published"]
    assert [m["MessageAttributes"]["severity"]["StringValue"] for m in sns.published] == ["warning", "info"]
