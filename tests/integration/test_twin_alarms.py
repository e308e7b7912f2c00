"""CloudWatch alarms on the twin: metrics from moto, from the twin itself and from EMF lines."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from modelops_local.alarms import AlarmEvaluator
from modelops_local.testing import ROOT, start_twin
from modelops_local.twin import Twin

pytestmark = pytest.mark.twin
FAKE = ROOT / "tests/fixtures/twin/template.yaml"


@pytest.fixture(scope="module")
def tw() -> Iterator[Twin]:
    twin = start_twin(FAKE)
    yield twin
    twin.stop()


def state(twin: Twin, logical: str) -> str:
    name = twin.template.name(logical)
    return str(twin.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])


def alarm_messages(twin: Twin) -> list[dict[str, Any]]:
    sqs = twin.client("sqs")
    url = twin.outputs["AlarmQueueUrl"]
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            out.append(json.loads(m["Body"]))


def test_alarms_start_insufficient_and_missing_data_follows_treat_missing_data(tw: Twin) -> None:
    assert {state(tw, a) for a in tw.provisioned.alarms} == {"INSUFFICIENT_DATA"}
    results = {r.logical_id: r for r in tw.evaluate_alarms()}
    assert results["DepthAlarm"].new_state == "OK"  # notBreaching
    assert results["RecordLatencyAlarm"].new_state == "INSUFFICIENT_DATA"  # missing, and no data yet
    assert not results["RecordLatencyAlarm"].changed
    assert state(tw, "DepthAlarm") == "OK"
    ok = [m for m in alarm_messages(tw) if m["AlarmName"] == tw.template.name("DepthAlarm")]
    assert [(m["OldStateValue"], m["NewStateValue"]) for m in ok] == [
        ("INSUFFICIENT_DATA", "OK")
    ]  # OKActions


def test_a_breaching_datapoint_raises_the_alarm_once_with_cloudwatchs_message(tw: Twin) -> None:
    # Given: the alarm's own dimensions breach; another dimension set is far higher but is another metric
    tw.evaluate_alarms()
    alarm_messages(tw)
    cw = tw.client("cloudwatch")
    cw.put_metric_data(
        Namespace="TwinTest",
        MetricData=[
            {"MetricName": "Depth", "Dimensions": [{"Name": "Queue", "Value": "main"}], "Value": 7.0},
            {"MetricName": "Depth", "Dimensions": [{"Name": "Queue", "Value": "other"}], "Value": 100.0},
        ],
    )
    # When: a scheduled function runs (the twin evaluates alarms after each scheduled run)
    assert [i.outcome for i in tw.tick("RecordFunction")] == ["ok"]
    tw.wait_idle(30)
    # Then
    assert state(tw, "DepthAlarm") == "ALARM"
    msgs = [m for m in alarm_messages(tw) if m["AlarmName"] == tw.template.name("DepthAlarm")]
    assert len(msgs) == 1
    m = msgs[0]
    assert (m["OldStateValue"], m["NewStateValue"]) == ("OK", "ALARM")
    assert m["AlarmDescription"] == "Depth over 5." and m["Region"] == "US East (N. Virginia)"
    assert m["AlarmArn"] == f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{m['AlarmName']}"
    assert "[7.0" in m["NewStateReason"] and "greater than the threshold (5.0)" in m["NewStateReason"]
    datetime.strptime(m["StateChangeTime"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert m["Trigger"] == {
        "MetricName": "Depth",
        "Namespace": "TwinTest",
        "Unit": None,
        "Dimensions": [{"value": "main", "name": "Queue"}],
        "StatisticType": "Statistic",
        "Statistic": "MAXIMUM",
        "Period": 60,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 5.0,
        "TreatMissingData": "notBreaching",
        "EvaluateLowSampleCountPercentile": "",
    }
    # Evaluating again changes nothing and publishes nothing.
    again = {r.logical_id: r for r in tw.evaluate_alarms()}
    assert again["DepthAlarm"].new_state == "ALARM" and not again["DepthAlarm"].changed
    assert again["DepthAlarm"].values == [7.0]
    assert [x for x in alarm_messages(tw) if x["AlarmName"] == m["AlarmName"]] == []


def test_function_errors_drive_a_metric_math_alarm(tw: Twin) -> None:
    tw.evaluate_alarms()
    before = state(tw, "ErrorsAlarm")
    tw.client("events").put_events(
        Entries=[{"Source": "twin.flaky", "DetailType": "T", "Detail": json.dumps({"key": uuid.uuid4().hex})}]
    )
    tw.wait_idle(30)
    results = {r.logical_id: r for r in tw.evaluate_alarms()}
    assert before in ("OK", "INSUFFICIENT_DATA")
    assert results["ErrorsAlarm"].new_state == "ALARM"
    assert results["ErrorsAlarm"].values[0] is not None and results["ErrorsAlarm"].values[0] >= 3.0
    msg = [m for m in alarm_messages(tw) if m["AlarmName"] == tw.template.name("ErrorsAlarm")][-1]
    assert msg["Trigger"]["Metrics"][0] == {
        "Id": "total",
        "ReturnData": True,
        "Expression": "SUM(METRICS())",
        "Label": "total",
    }
    flaky = tw.function("FlakyFunction").name
    assert msg["Trigger"]["Metrics"][1]["MetricStat"]["Metric"]["Dimensions"] == [
        {"value": flaky, "name": "FunctionName"}
    ]
    # The twin published Lambda's own metrics for the three attempts.
    now = datetime.now(UTC)
    stats = tw.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName", "Value": flaky}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        Period=600,
        Statistics=["Sum"],
    )["Datapoints"]
    assert sum(d["Sum"] for d in stats) >= 3


def test_a_metric_printed_in_embedded_metric_format_reaches_cloudwatch(tw: Twin) -> None:
    inv = tw.invoke("RecordFunction", {"emf": 2})
    assert inv.ok
    tw.wait_idle(30)
    metrics = tw.client("cloudwatch").list_metrics(Namespace="TwinTest", MetricName="Printed")["Metrics"]
    assert [m["Dimensions"] for m in metrics] == [[{"Name": "service", "Value": "recorder"}]]
    results = {r.logical_id: r for r in tw.evaluate_alarms()}
    assert results["EmfAlarm"].new_state == "ALARM" and results["EmfAlarm"].values == [2.0]


def test_percentile_alarms_use_the_durations_the_twin_published(tw: Twin) -> None:
    assert tw.invoke("RecordFunction", {"n": 1}).ok
    results = {r.logical_id: r for r in tw.evaluate_alarms()}
    latency = results["RecordLatencyAlarm"]
    assert latency.values[0] is not None and 0 < latency.values[0] < 60000
    assert latency.new_state == "OK"


def test_api_gateway_metrics_count_5xx(tw: Twin) -> None:
    assert requests.get(f"{tw.api_url}/boom", timeout=10).status_code == 502
    assert requests.get(f"{tw.api_url}/items", timeout=10).status_code == 200
    tw.wait_idle(30)
    now = datetime.now(UTC)

    def total(name: str) -> float:
        points = tw.client("cloudwatch").get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/ApiGateway",
                            "MetricName": name,
                            "Dimensions": [{"Name": "ApiName", "Value": "modelops"}],
                        },
                        "Period": 600,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=5),
        )["MetricDataResults"][0]["Values"]
        return float(sum(points))

    assert total("5XXError") >= 1
    assert total("Count") >= 2


@pytest.mark.parametrize(
    ("values", "treat", "m", "current", "expected"),
    [
        ([None, None], "missing", None, "OK", "INSUFFICIENT_DATA"),
        ([None, None], "notBreaching", None, "ALARM", "OK"),
        ([None, None], "breaching", None, "OK", "ALARM"),
        ([None, None], "ignore", None, "ALARM", "ALARM"),
        ([9.0, 1.0], "missing", None, "OK", "OK"),  # 1 of 2 breaching, 2 needed
        ([9.0, 1.0], "missing", 1, "OK", "ALARM"),  # DatapointsToAlarm 1
        ([9.0, None], "breaching", None, "OK", "ALARM"),
        ([9.0, None], "notBreaching", None, "OK", "OK"),
        ([9.0, 9.0], "missing", None, "OK", "ALARM"),
        ([5.0], "missing", None, "ALARM", "OK"),  # equal is not greater
    ],
)
def test_state_decision(
    values: list[float | None], treat: str, m: int | None, current: str, expected: str
) -> None:
    alarm: dict[str, Any] = {
        "Threshold": 5,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": treat,
    }
    if m is not None:
        alarm["DatapointsToAlarm"] = m
    new, reason = AlarmEvaluator.decide(alarm, values, current)
    assert new == expected
    assert reason


def test_evaluation_is_quick(tw: Twin) -> None:
    started = time.monotonic()
    tw.evaluate_alarms()
    assert time.monotonic() - started < 5
