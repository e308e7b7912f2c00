"""Issue 17: a record of who called predict. Every request's outcome line (the EMF document predict
prints once per invocation) carries ``request_id``, ``caller`` (the identity API Gateway names),
``model``, ``version``, ``rows`` and ``status``, answered or refused, and never the inputs. Through
the Lambda handler, on moto, reading what it prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.predict.app import lambda_handler
from modelops.stages.predict.service import configure
from modelops.storage.registry import Manifest, Registry
from tests.integration.predict_support import (
    Ctx,
    api_event,
    many_class_model,
    models,
    predict_body,
    publish,
    serve,
)

BUCKET = "predict-log-registry"
USER_ARN = "arn:aws:sts::123456789012:assumed-role/analyst/alice"
IAM = {
    "userArn": USER_ARN,
    "caller": "AROAEXAMPLE:alice",
    "accountId": "123456789012",
    "accessKey": "ASIAEXAMPLE",
}
ROW = [5.123457, 3.987654, 1.456789, 0.234567]  # inputs that must never be printed


@pytest.fixture
def registry(s3: Any, tmp_path: Path) -> Iterator[Registry]:
    s3.create_bucket(Bucket=BUCKET)
    serve(s3, BUCKET, tmp_path / "artifacts", max_response_bytes=200_000)
    yield Registry(s3, BUCKET)
    configure(None)


@pytest.fixture
def published(registry: Registry) -> tuple[Manifest, Manifest]:
    return publish(registry, "iris", models()["multiclass"]), publish(
        registry, "wide", many_class_model(1000)
    )


def request_lines(capsys: pytest.CaptureFixture[str], request_id: str) -> list[dict[str, Any]]:
    """The printed JSON lines about ``request_id`` that are request records (they carry a status)."""
    out = capsys.readouterr().out
    for secret in ("5.123457", "3.987654", "ASIAEXAMPLE", "the-api-key-value"):
        assert secret not in out
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in docs if d.get("request_id") == request_id and "status" in d]


def call(capsys: pytest.CaptureFixture[str], event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The answer's status and the one line the request printed."""
    capsys.readouterr()
    result = lambda_handler(event, Ctx())
    (line,) = request_lines(capsys, event["requestContext"]["requestId"])
    assert line["status"] == result["statusCode"]
    return result["statusCode"], line


def fields(line: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(line[k] for k in ("request_id", "caller", "model", "version", "rows", "status"))


def post(model: str, rows: int, rid: str, **kw: Any) -> dict[str, Any]:
    return api_event(
        "POST", f"/models/{model}/predict", body=predict_body([ROW] * rows), request_id=rid, **kw
    )


def test_a_served_request_prints_one_line_with_who_what_and_how_much(
    capsys: pytest.CaptureFixture[str], published: tuple[Manifest, Manifest]
) -> None:
    iris, _ = published
    status, line = call(capsys, post("iris", 3, "req-ok", identity=IAM))
    assert status == 200
    assert fields(line) == ("req-ok", USER_ARN, "iris", iris.version, 3, 200)
    assert line["Rows"] == [3.0] and line["Model"] == "iris"  # the same line holds the metrics


def test_refused_requests_print_the_line_too(
    capsys: pytest.CaptureFixture[str], registry: Registry, published: tuple[Manifest, Manifest]
) -> None:
    _, wide = published
    # an answer over the response limit: refused before inference, the version and rows known
    status, line = call(capsys, post("wide", 40, "req-big", identity=IAM))
    assert status == 413 and line["Code"] == "response_too_large"
    assert fields(line) == ("req-big", USER_ARN, "wide", wide.version, 40, 413)
    # bad input for a known model (the lean path and the resolver's route alike)
    for with_resource in (True, False):
        event = api_event(
            "POST",
            "/models/iris/predict",
            body='{"instances": [[1, "x", 3, 4]]}',
            request_id=f"req-422-{with_resource}",
            identity=IAM,
            with_resource=with_resource,
        )
        status, line = call(capsys, event)
        assert status == 422 and fields(line)[1:] == (USER_ARN, "iris", 1, 1, 422)
    # an unknown model: no version; no JSON: no rows
    status, line = call(capsys, post("nope", 1, "req-404", identity=IAM))
    assert fields(line) == ("req-404", USER_ARN, "nope", None, 1, 404)
    event = api_event("POST", "/models/iris/predict", body="{", request_id="req-400", identity=IAM)
    assert fields(call(capsys, event)[1]) == ("req-400", USER_ARN, "iris", None, None, 400)
    # a 5xx: a model nobody promoted yet
    publish(registry, "draft", models()["binary"], promote=False)
    status, line = call(capsys, post("draft", 2, "req-503", identity=IAM))
    assert line["Code"] == "no_production_version"
    assert fields(line) == ("req-503", USER_ARN, "draft", None, 2, 503)


def test_callers_by_api_key_and_the_catalogue_routes(
    capsys: pytest.CaptureFixture[str], published: tuple[Manifest, Manifest]
) -> None:
    key = {"apiKeyId": "k1abc", "apiKey": "the-api-key-value"}  # the id is logged, never the key
    status, line = call(capsys, post("iris", 1, "req-key", identity=key))
    assert (status, line["caller"]) == (200, "api-key:k1abc")
    status, line = call(capsys, post("iris", 1, "req-anon"))
    assert (status, line["caller"]) == (200, None)
    status, line = call(capsys, api_event("GET", "/models/iris", request_id="req-show", identity=IAM))
    assert fields(line) == ("req-show", USER_ARN, "iris", None, None, 200)
    status, line = call(capsys, api_event("GET", "/no/such/route", request_id="req-route", identity=IAM))
    assert (status, line["caller"], line["Code"]) == (404, USER_ARN, "not_found")
