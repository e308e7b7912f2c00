"""predict's EMF lines (modelops.stages.predict.telemetry) are valid Embedded Metric Format with the
namespace, metric names, units and dimensions Powertools Metrics wrote before, and its log keys are
those of ``Logger.inject_lambda_context``."""

from __future__ import annotations

import io
import json
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from modelops.stages.predict.telemetry import Telemetry
from modelops.stages.runtime import logger
from modelops_local.telemetry import emf_metrics

CTX = SimpleNamespace(
    function_name="predict-fn",
    memory_limit_in_mb=1769,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:predict-fn",
    aws_request_id="lambda-req-1",
)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    assert out.endswith("\n")
    return [json.loads(line) for line in out.splitlines()]


def powertools_document(
    dimensions: dict[str, str],
    values: list[tuple[str, MetricUnit, float]],
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What Powertools Metrics writes for the same metrics (the format the dashboard and alarms read),
    with ``metadata`` added by its ``add_metadata`` (top-level properties: the request's log fields)."""
    m = Metrics(namespace="ModelOps", service="predict")
    try:
        for name, value in dimensions.items():
            if name != "service":
                m.add_dimension(name=name, value=value)
        for name, unit, number in values:
            m.add_metric(name=name, unit=unit, value=number)
        for key, value in (metadata or {}).items():
            m.add_metadata(key=key, value=value)
        doc: dict[str, Any] = json.loads(json.dumps(m.serialize_metric_set()))
        return doc
    finally:
        m.clear_metrics()


def without_timestamp(doc: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    del out["_aws"]["Timestamp"]
    return out


ARN = "arn:aws:sts::123456789012:assumed-role/caller-role/session"


def request_fields(**fields: Any) -> dict[str, Any]:
    """The request's log fields every outcome line carries (null when not known)."""
    return {"request_id": None, "caller": None, "model": None, "version": None, "rows": None, **fields}


@pytest.mark.parametrize(
    ("emit", "dimensions", "values", "metadata"),
    [
        (
            lambda t: t.served("iris", 3, 0.125, 4, "req-1", ARN),
            {"Model": "iris", "Version": "3", "service": "predict"},
            [("Latency", MetricUnit.Milliseconds, 0.125), ("Rows", MetricUnit.Count, 4.0)],
            request_fields(request_id="req-1", caller=ARN, model="iris", version=3, rows=4, status=200),
        ),
        (
            lambda t: t.error("model_not_found", 404, "req-2", ARN, "nope"),
            {"Code": "model_not_found", "service": "predict"},
            [("Errors", MetricUnit.Count, 1.0)],
            request_fields(request_id="req-2", caller=ARN, model="nope", status=404),
        ),
        (
            lambda t: t.error("response_too_large", 413, "req-3", None, "iris", 2, 600),
            {"Code": "response_too_large", "service": "predict"},
            [("Errors", MetricUnit.Count, 1.0)],
            request_fields(request_id="req-3", model="iris", version=2, rows=600, status=413),
        ),
        (
            lambda t: t.capture_failures(2),
            {"service": "predict"},
            [("CaptureFailures", MetricUnit.Count, 2.0)],
            None,
        ),
        (
            lambda t: t.catalogue_read("req-4", ARN, "iris"),
            {"service": "predict"},
            [("CatalogueReads", MetricUnit.Count, 1.0)],
            request_fields(request_id="req-4", caller=ARN, model="iris", status=200),
        ),
    ],
)
def test_each_line_is_the_document_powertools_wrote(
    capsys: pytest.CaptureFixture[str],
    emit: Any,
    dimensions: dict[str, str],
    values: list[Any],
    metadata: dict[str, Any] | None,
) -> None:
    t = Telemetry("ModelOps", "predict")
    before = int(time.time() * 1000)
    emit(t)
    emit(t)  # the second comes from the kept frame
    docs = lines(capsys)
    assert len(docs) == 2
    want = without_timestamp(powertools_document(dimensions, values, metadata))
    for doc in docs:
        assert before <= doc["_aws"]["Timestamp"] <= int(time.time() * 1000)
        assert without_timestamp(doc) == want
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "ModelOps"
        assert directive["Dimensions"] == [list(dimensions)]
        assert [(m["Name"], m["Unit"]) for m in directive["Metrics"]] == [(n, u.value) for n, u, _ in values]
        assert all(doc[name] == [number] for name, _, number in values)


def test_a_long_model_name_is_cut_in_the_log_fields(capsys: pytest.CaptureFixture[str]) -> None:
    t = Telemetry("ModelOps", "predict")
    t.error("model_not_found", 404, "req-5", None, "x" * 5000)
    (doc,) = lines(capsys)
    assert doc["model"] == "x" * 128


def test_lines_parse_as_emf_metric_data(capsys: pytest.CaptureFixture[str]) -> None:
    t = Telemetry("Custom/NS", "predict")
    t.served("iris", 3, 1.5, 2, "req-1", None)
    data = emf_metrics(capsys.readouterr().out)
    assert [(ns, d["MetricName"], d["Unit"], d["Value"]) for ns, d in data] == [
        ("Custom/NS", "Latency", "Milliseconds", 1.5),
        ("Custom/NS", "Rows", "Count", 2.0),
    ]
    assert {(x["Name"], x["Value"]) for x in data[0][1]["Dimensions"]} == {
        ("Model", "iris"),
        ("Version", "3"),
        ("service", "predict"),
    }


def test_names_and_codes_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    t = Telemetry("ModelOps", 'pre"dict')
    t.error('we"ird\ncode', 500, 'r"id', 'ar"n', 'mo"del')
    (doc,) = lines(capsys)
    assert (doc["request_id"], doc["caller"], doc["model"]) == ('r"id', 'ar"n', 'mo"del')
    assert doc["Code"] == 'we"ird\ncode' and doc["service"] == 'pre"dict'


def logged_keys(message: str = "probe") -> dict[str, Any]:
    """The keys of the JSON line the logger writes for one record (its handler's stream swapped)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buf = io.StringIO()
    old = handler.setStream(buf)
    try:
        logger.info(message)
    finally:
        handler.setStream(old)
    doc: dict[str, Any] = json.loads(buf.getvalue().splitlines()[-1])
    assert doc["message"] == message
    return doc


def test_cold_start_once_and_the_log_keys_of_inject_lambda_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    t = Telemetry("ModelOps", "predict")
    t.start({"requestContext": {"requestId": "api-1"}}, CTX)
    (doc,) = lines(capsys)
    assert without_timestamp(doc) == without_timestamp(
        {
            "_aws": {
                "Timestamp": 0,
                "CloudWatchMetrics": [
                    {
                        "Namespace": "ModelOps",
                        "Dimensions": [["function_name", "service"]],
                        "Metrics": [{"Name": "ColdStart", "Unit": "Count"}],
                    }
                ],
            },
            "function_name": "predict-fn",
            "service": "predict",
            "ColdStart": [1.0],
        }
    )
    keys = logged_keys()
    assert keys["cold_start"] is True and keys["correlation_id"] == "api-1"
    assert (keys["function_name"], keys["function_memory_size"], keys["function_arn"]) == (
        "predict-fn",
        1769,
        CTX.invoked_function_arn,
    )
    t.end()
    t.start(
        {"requestContext": {"requestId": "api-2"}}, SimpleNamespace(**{**vars(CTX), "aws_request_id": "r2"})
    )
    assert capsys.readouterr().out == ""  # no second ColdStart
    keys = logged_keys()
    assert (keys["cold_start"], keys["correlation_id"], keys["function_request_id"]) == (False, "api-2", "r2")
    assert logged_keys("again")["correlation_id"] == "api-2"  # still there for the invocation's next record
    t.end()
    t.start({}, CTX)
    keys = logged_keys()
    assert "correlation_id" not in keys  # None: Powertools leaves it out; not the previous request's
    assert logger.get_current_keys()["correlation_id"] is None
    t.end()


def test_log_keys_are_appended_only_when_the_invocation_logs() -> None:
    """The keys wait for the invocation's first record; once it is over they are never appended, so a
    handler that runs next in the same process (the twin) logs with its own keys."""
    t = Telemetry("ModelOps", "predict")
    t.start({"requestContext": {"requestId": "api-quiet"}}, CTX)
    assert logger.get_current_keys().get("correlation_id") != "api-quiet"  # nothing appended yet
    t.end()
    logger.append_keys(function_name="other-fn", correlation_id="other")  # what inject_lambda_context does
    keys = logged_keys()
    assert (keys["function_name"], keys["correlation_id"]) == ("other-fn", "other")


def test_disabled_writes_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Other")
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    t = Telemetry.from_env()
    assert (t.namespace, t.service, t.disabled) == ("Other", "predict", True)
    t.served("iris", 1, 1.0, 1, "r", None)
    t.error("x", 500, "r", None)
    assert capsys.readouterr().out == ""
