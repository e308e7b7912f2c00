"""Issue 17: an answer larger than Lambda's response limit (6,291,556 bytes) made API Gateway answer
502. predict refuses such a request before inference: 413 ``response_too_large`` in the error shape,
the limit and the rows that fit in the message. Through the Lambda handler, on moto."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from functions.predict.app import lambda_handler
from modelops.stages.predict.service import configure
from modelops.stages.predict.settings import Settings
from modelops.storage.registry import Registry
from tests.integration.predict_support import (
    FEATURES,
    Ctx,
    api_event,
    header,
    many_class_model,
    predict_body,
    publish,
    serve,
)

BUCKET = "predict-size-registry"
LAMBDA_RESPONSE_LIMIT = 6_291_556  # AWS Lambda quotas: a synchronous invocation's response payload
CLASSES = 1000


@pytest.fixture
def registry(s3: Any, tmp_path: Path) -> Iterator[Registry]:
    s3.create_bucket(Bucket=BUCKET)
    serve(s3, BUCKET, tmp_path / "artifacts")
    yield Registry(s3, BUCKET)
    configure(None)


def post(rows: int, request_id: str = "req-size") -> tuple[dict[str, Any], int]:
    """The proxy result for ``rows`` rows, and its size as the Python runtime sends it."""
    x = np.random.default_rng(rows).uniform(0, 8, size=(rows, len(FEATURES))).round(3).tolist()
    event = api_event("POST", "/models/wide/predict", body=predict_body(x), request_id=request_id)
    result = lambda_handler(event, Ctx())
    return result, len(json.dumps(result).encode())


def test_an_answer_over_lambdas_limit_is_refused_before_inference(registry: Registry) -> None:
    # Given a promoted model with 1,000 classes (an answer grows by ~12.5 KB per row)
    m = publish(registry, "wide", many_class_model(CLASSES))

    # When 600 rows are posted (a 17 KB request)
    result, _ = post(600)

    # Then it is a 413 in the error shape, naming the limit and how many rows fit
    assert result["statusCode"] == 413
    error = json.loads(result["body"])["error"]
    assert (error["code"], error["request_id"]) == ("response_too_large", "req-size")
    limit = Settings(registry_bucket=BUCKET).max_response_bytes
    assert f"{limit} bytes" in error["message"]
    fit = int(re.search(r"at most (\d+) rows", error["message"]).group(1))  # type: ignore[union-attr]
    assert 0 < fit < 600
    assert header(result, "X-Model-Version") == str(m.version)

    # and the request really was too big: its two halves, each answered, together exceed Lambda's limit
    # (the answer the code before issue 17 sent whole, which Lambda failed: API Gateway's 502)
    halves = [post(300, "half-1"), post(300, "half-2")]
    assert [r["statusCode"] for r, _ in halves] == [200, 200]
    assert sum(size for _, size in halves) > LAMBDA_RESPONSE_LIMIT


def test_the_most_rows_that_fit_are_answered_and_one_more_is_refused(registry: Registry) -> None:
    publish(registry, "wide", many_class_model(CLASSES))
    error = json.loads(post(600)[0]["body"])["error"]
    fit = int(re.search(r"at most (\d+) rows", error["message"]).group(1))  # type: ignore[union-attr]

    result, size = post(fit)
    assert result["statusCode"] == 200
    body = json.loads(result["body"])
    assert len(body["predictions"]) == fit and len(body["probabilities"][0]) == CLASSES
    assert size <= Settings(registry_bucket=BUCKET).max_response_bytes < LAMBDA_RESPONSE_LIMIT

    over, _ = post(fit + 1)
    assert over["statusCode"] == 413
    assert json.loads(over["body"])["error"]["code"] == "response_too_large"


def test_the_limit_is_a_setting(s3: Any, registry: Registry, tmp_path: Path) -> None:
    publish(registry, "wide", many_class_model(CLASSES))
    serve(s3, BUCKET, tmp_path / "small", max_response_bytes=100_000)
    result, _ = post(10)
    error = json.loads(result["body"])["error"]
    assert result["statusCode"] == 413 and "100000 bytes" in error["message"]
    fit = int(re.search(r"at most (\d+) rows", error["message"]).group(1))  # type: ignore[union-attr]
    assert 0 < fit < 10  # ~17 KB per row at worst
    result, size = post(fit)
    assert result["statusCode"] == 200 and size <= 100_000
