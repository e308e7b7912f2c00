"""Alert parsing, fingerprints and subjects (``modelops.domain.alerts``), and the alert stage over fakes
(no AWS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st

from modelops.domain import alerts
from modelops.stages import alert as alerting
from modelops.storage.dedup import DedupStore
from modelops.storage.events import DETAIL_TYPES, SOURCE
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore
from tests.fakes import FakeBus, MemoryObjectStore

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
    return alerting.Alerter("arn:topic", sns=sns, dedup=DedupStore(FakeDynamo(), "table", window=3600)), sns


def split(event: Any) -> list[tuple[str, Any]]:
    return alerts.split_notifications(event, SOURCE, DETAIL_TYPES)


def no_reports(_when: float | None) -> list[dict[str, Any]]:
    return []


def test_split_notifications_recognises_each_shape() -> None:
    sns_alarm = json.loads((EVENTS / "alert_drift_alarm_sns.json").read_text())
    bridge = {"source": "modelops", "detail-type": "DriftDetected", "detail": {"model": "m", "version": 1}}
    sns_bridge = {"Records": [{"Sns": {"Message": json.dumps(bridge)}}]}
    assert [s for s, _ in split(sns_alarm)] == ["alarm"]
    assert [s for s, _ in split(bridge)] == ["event"]
    assert [s for s, _ in split(sns_bridge)] == ["event"]
    assert split({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})[0][0] == "unknown"
    assert split({"source": "modelops", "detail-type": "Nope", "detail": {}})[0][0] == "unknown"
    assert split({"Records": [{"eventSource": "aws:s3"}]})[0][0] == "unknown"
    assert split([1, 2])[0][0] == "unknown"
    assert split(None)[0][0] == "unknown"


@given(st.text(max_size=400))
def test_subjects_are_printable_ascii_under_100(text: str) -> None:
    s = alerts.clean_subject(text)
    assert len(s) < 100 and all(32 <= ord(c) < 127 for c in s)


def test_drift_fingerprint_ignores_order() -> None:
    a = alerts.drift_fingerprint([("m", 1, ["b", "a"]), ("n", 2, ["c"])])
    b = alerts.drift_fingerprint([("n", 2, ["c"]), ("m", 1, ["a", "b"])])
    assert a == b != alerts.drift_fingerprint([("m", 1, ["a"])])


def test_alarm_with_model_dimensions_targets_that_version() -> None:
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
    got = alerts.from_alarm(alarm, no_reports)
    assert (got.model, got.version, got.targets, got.severity) == ("demo", 4, [("demo", 4)], "critical")
    assert "demo v4" in got.subject


def test_metric_math_alarm_names_its_metrics() -> None:
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
    got = alerts.from_alarm(alarm, no_reports)
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
    base: dict[str, Any] = {
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


# ---------------------------------------------------------------------------------------------- canary
def canary_registry(store: MemoryObjectStore) -> None:
    """demo v1 in production with v2 as its canary, and a latest report showing drift on v2."""
    for v in (1, 2):
        store.put_json(
            f"models/demo/versions/{v}/manifest.json", {"model": "demo", "version": v, "artifacts": {}}
        )
    store.put_json(
        "models/demo/aliases/production.json",
        {"alias": "production", "version": 1, "previous": None, "canary": {"version": 2, "weight": 0.1}},
    )
    store.put_json(
        "monitoring/demo/latest.json",
        {
            "model": "demo",
            "drift": True,
            "at": "2026-01-01T00:00:00Z",
            "versions": [{"version": 2, "role": "canary", "drifted_features": [{"name": "f2", "psi": 0.9}]}],
        },
    )


def drift_alarm() -> dict[str, Any]:
    return {
        "AlarmName": "DriftAlarm",
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "StateChangeTime": "2026-01-01T00:30:00.000+0000",
        "Trigger": {"MetricName": "MaxPsiRatio"},
    }


def canary_alerter(
    memory: MemoryObjectStore, fake_bus: FakeBus, sns: Any
) -> tuple[alerting.Alerter, FakeDynamo]:
    store: Any = memory  # stands in for an ObjectStore
    bus: Any = fake_bus  # and for an EventBus
    table = FakeDynamo()
    a = alerting.Alerter(
        "arn:topic",
        sns=sns,
        dedup=DedupStore(table, "table", window=3600),
        reports=ReportStore(store),
        registry=Registry.over(store, actor="alert"),
        bus=bus,
    )
    return a, table


def test_a_drift_alarm_naming_the_canary_rolls_it_back_once(
    memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    canary_registry(memory_store)
    sns = FakeSns()
    a, _ = canary_alerter(memory_store, bus, sns)

    (result,) = a.handle(drift_alarm())["alerts"]

    assert [(r["model"], r["version"], r["production"]) for r in result["rolled_back"]] == [("demo", 2, 1)]
    alias = memory_store.json("models/demo/aliases/production.json")
    assert (alias["version"], alias["canary"], alias["updated_by"]) == (1, None, "alert")
    assert alias["reason"] == "auto-rollback: drift alarm DriftAlarm named canary v2"
    (rolled,) = bus.of("CanaryRolledBack")
    assert (rolled["version"], rolled["production_version"]) == (2, 1)
    # the CanaryRolledBack event coming back to the alert function was announced by this alert
    back = {"source": "modelops", "detail-type": "CanaryRolledBack", "detail": rolled}
    assert a.handle(back)["alerts"][0]["status"] == "duplicate"
    (msg,) = sns.published
    assert msg["Subject"].endswith("[canary rolled back]") and "canary v2 rolled back" in msg["Message"]


def test_a_failed_publish_releases_the_alert_and_the_rollback_announcement(
    memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    canary_registry(memory_store)

    class DownSns:
        def publish(self, **kwargs: Any) -> dict[str, str]:
            raise EndpointConnectionError(endpoint_url="https://sns")

    a, table = canary_alerter(memory_store, bus, DownSns())
    with pytest.raises(EndpointConnectionError):
        a.handle(drift_alarm())
    # both claims released: a retry publishes, and the CanaryRolledBack event's own delivery is not
    # suppressed (the rollback is done, so that is where it gets announced)
    assert table.items == {}
    assert bus.types() == ["CanaryRolledBack"]
