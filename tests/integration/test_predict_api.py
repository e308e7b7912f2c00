"""The predict API end to end on moto: real .tflite models in an S3 registry, the Lambda handler,
API Gateway REST events in, proxy results out (docs/predict.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from openapi_spec_validator import validate

from functions.predict.app import lambda_handler
from modelops.domain import canary
from modelops.domain.capture import decode_line, iter_lines
from modelops.stages.predict.service import PredictService, configure
from modelops.stages.predict.serving import routing_unit
from modelops.stages.predict.settings import Settings
from modelops.storage.registry import Registry
from tests.integration.predict_support import (
    FEATURES,
    BuiltModel,
    Clock,
    Ctx,
    FakeEvents,
    api_event,
    header,
    models,
    predict_body,
    publish,
)

BUCKET = "predict-registry-7f3a9c"
DATA_BUCKET = "predict-data-7f3a9c"
STREAM = "predict-captures"
TTL = 10.0


@dataclass
class Env:
    s3: Any
    registry: Registry
    clock: Clock
    events: FakeEvents
    service: PredictService
    tmp: Path

    def new_container(self) -> PredictService:
        """A fresh warm container: empty caches, same registry."""
        if self.service.sink is not None:
            self.service.sink.close()
        self.service = build_service(self.s3, self.clock, self.events, self.tmp / "fresh")
        configure(self.service)
        return self.service


def build_service(s3: Any, clock: Clock, events: FakeEvents, artifacts: Path) -> PredictService:
    settings = Settings(
        registry_bucket=BUCKET,
        capture_stream=STREAM,
        alias_cache_ttl_seconds=TTL,
        artifact_dir=str(artifacts),
    )
    return PredictService.from_settings(
        settings,
        s3=s3,
        firehose_factory=lambda: boto3.client("firehose", region_name="us-east-1"),
        events_factory=lambda: events,
        clock=clock,
    )


@pytest.fixture(scope="session")
def built() -> dict[str, BuiltModel]:
    return models()


@pytest.fixture
def env(moto: None, tmp_path: Path) -> Iterator[Env]:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=DATA_BUCKET)
    boto3.client("firehose", region_name="us-east-1").create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "BucketARN": f"arn:aws:s3:::{DATA_BUCKET}",
            "RoleARN": "arn:aws:iam::123456789012:role/capture",
            "Prefix": "captures/",
        },
    )
    clock, events = Clock(), FakeEvents()
    svc = build_service(s3, clock, events, tmp_path / "artifacts")
    configure(svc)
    e = Env(s3, Registry(s3, BUCKET), clock, events, svc, tmp_path)
    yield e
    if e.service.sink is not None:
        e.service.sink.close()
    configure(None)


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    result = lambda_handler(event, Ctx())
    return result["statusCode"], json.loads(result["body"]), result


def predict(model: str, rows: Any, **kw: Any) -> tuple[int, dict[str, Any], dict[str, Any]]:
    return call(api_event("POST", f"/models/{model}/predict", body=predict_body(rows), **kw))


def rows_of(n: int, seed: int = 0) -> list[list[float]]:
    return np.round(np.random.default_rng(seed).uniform(0, 8, size=(n, len(FEATURES))), 3).tolist()


# ---------------------------------------------------------------------- happy paths
def test_binary_rows_and_records_answer_with_the_production_version(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    # Given a promoted binary classifier
    m = publish(env.registry, "iris", built["binary"])
    rows = rows_of(5)
    expected = built["binary"].keras_predict(np.asarray(rows, dtype=np.float32))[:, 0]

    # When rows (schema order) and records (keyed by feature name) are posted
    status, body, result = predict("iris", rows)
    status_r, body_r, _ = predict("iris", [dict(zip(FEATURES, r, strict=True)) for r in rows])

    # Then both answer with the production version, the model's probabilities and the class labels
    assert status == status_r == 200
    assert body["model"] == "iris" and body["version"] == m.version
    assert header(result, "X-Model-Version") == str(m.version)
    assert body["labels"] == [0, 1]
    probs = np.asarray(body["probabilities"])
    np.testing.assert_allclose(probs[:, 1], expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert body["predictions"] == [int(p >= 0.5) for p in probs[:, 1]]
    assert body_r["probabilities"] == body["probabilities"]
    assert body["request_id"] == "req-0001"


def test_multiclass_and_regression_outputs(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "flowers", built["multiclass"])
    publish(env.registry, "price", built["regression"])
    rows = rows_of(4, seed=1)
    x = np.asarray(rows, dtype=np.float32)

    status, body, _ = predict("flowers", rows)
    assert status == 200
    assert body["labels"] == ["setosa", "versicolor", "virginica"]
    expected = built["multiclass"].keras_predict(x)
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
    assert body["predictions"] == [body["labels"][i] for i in expected.argmax(axis=1)]

    status, body, _ = predict("price", rows)
    assert status == 200
    assert "probabilities" not in body and "labels" not in body
    np.testing.assert_allclose(body["predictions"], built["regression"].keras_predict(x)[:, 0], atol=1e-5)


def test_batches_of_changing_sizes_agree_with_single_rows(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "price", built["regression"])
    rows = rows_of(1000, seed=2)
    expected = built["regression"].keras_predict(np.asarray(rows, dtype=np.float32))[:, 0]
    for n in (1000, 1, 7, 1000, 3):
        status, body, _ = predict("price", rows[:n])
        assert status == 200
        np.testing.assert_allclose(body["predictions"], expected[:n], atol=1e-5)


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded"],
)
def test_accepted_content_types(env: Env, built: dict[str, BuiltModel], content_type: str | None) -> None:
    publish(env.registry, "iris", built["binary"])
    headers = {} if content_type is None else {"content-type": content_type}
    status, body, _ = predict("iris", rows_of(1), headers=headers)
    assert status == 200, body


def test_base64_encoded_body(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "iris", built["binary"])
    raw = base64.b64encode(predict_body(rows_of(2)).encode()).decode()
    status, body, _ = call(api_event("POST", "/models/iris/predict", body=raw, base64_body=True))
    assert status == 200 and len(body["predictions"]) == 2


# ---------------------------------------------------------------------- bad input
GOOD = [1.0, 2.0, 3.0, 4.0]
RECORD = dict(zip(FEATURES, GOOD, strict=True))

BAD_INPUTS: list[tuple[str, str, int, str, str]] = [
    # (id, body, status, code, a phrase the message must contain)
    ("not-json", "{instances: [[1, 2]]", 400, "invalid_json", "not valid JSON"),
    ("empty-body", "", 400, "invalid_json", "empty"),
    ("json-not-object", "[[1, 2, 3, 4]]", 422, "invalid_request", "JSON object"),
    ("json-string", '"hello"', 422, "invalid_request", "JSON object"),
    ("instances-missing", '{"rows": [[1, 2, 3, 4]]}', 422, "invalid_request", "'rows'"),
    ("instances-missing-empty-object", "{}", 422, "invalid_request", "'instances' is missing"),
    ("instances-empty", '{"instances": []}', 422, "invalid_request", "empty"),
    ("instances-not-a-list", '{"instances": {"a": 1}}', 422, "invalid_request", "must be a list"),
    ("instances-a-number", '{"instances": 3}', 422, "invalid_request", "must be a list"),
    (
        "row-too-short",
        predict_body([GOOD, [1.0, 2.0]]),
        422,
        "invalid_instances",
        "instances[1]: has 2 values",
    ),
    ("row-too-long", predict_body([GOOD + [5.0]]), 422, "invalid_instances", "instances[0]: has 5 values"),
    ("row-not-a-list", predict_body([GOOD, 5]), 422, "invalid_instances", "instances[1]"),
    ("first-row-scalar", predict_body([5, 6]), 422, "invalid_instances", "instances[0]"),
    (
        "record-missing-feature",
        predict_body([RECORD, {"sepal_length": 1.0}]),
        422,
        "invalid_instances",
        "instances[1]: missing feature 'sepal_width'",
    ),
    (
        "record-unknown-feature",
        predict_body([{**RECORD, "colour": 2.0}]),
        422,
        "invalid_instances",
        "unknown feature 'colour'",
    ),
    ("records-and-rows-mixed", predict_body([RECORD, GOOD]), 422, "invalid_instances", "instances[1]"),
    (
        "string-value",
        predict_body([GOOD, [1.0, "2.0", 3.0, 4.0]]),
        422,
        "invalid_instances",
        "instances[1][1] ('sepal_width') is a string",
    ),
    (
        "string-in-record",
        predict_body([{**RECORD, "petal_width": "wide"}]),
        422,
        "invalid_instances",
        "instances[0].petal_width is a string",
    ),
    ("boolean-value", predict_body([[1.0, True, 3.0, 4.0]]), 422, "invalid_instances", "is a boolean"),
    ("all-booleans", predict_body([[True, False, True, False]]), 422, "invalid_instances", "is a boolean"),
    (
        "null-value",
        predict_body([[1.0, 2.0, None, 4.0]]),
        422,
        "invalid_instances",
        "instances[0][2] ('petal_length') is null",
    ),
    (
        "nan-literal",
        '{"instances": [[1.0, 2.0, 3.0, NaN]]}',
        422,
        "invalid_instances",
        "instances[0][3] ('petal_width') is NaN",
    ),
    ("infinity-literal", '{"instances": [[Infinity, 2.0, 3.0, 4.0]]}', 422, "invalid_instances", "infinite"),
    ("minus-infinity", '{"instances": [[1.0, -Infinity, 3.0, 4.0]]}', 422, "invalid_instances", "infinite"),
    (
        "1e400",
        '{"instances": [[1e400, 2.0, 3.0, 4.0]]}',
        422,
        "invalid_instances",
        "instances[0][0] ('sepal_length') is infinite",
    ),
    ("beyond-float32", '{"instances": [[1e39, 2.0, 3.0, 4.0]]}', 422, "invalid_instances", "float32 range"),
    (
        "huge-integer",
        '{"instances": [[' + "9" * 50 + ", 2, 3, 4]]}",
        422,
        "invalid_instances",
        "float32 range",
    ),
    ("nested-list", predict_body([[1.0, [2.0, 3.0], 3.0, 4.0]]), 422, "invalid_instances", "nested lists"),
    ("nested-rows", predict_body([[GOOD, GOOD]]), 422, "invalid_instances", "instances[0]: has 2 values"),
    ("object-value", predict_body([[1.0, {"v": 2}, 3.0, 4.0]]), 422, "invalid_instances", "is an object"),
    (
        "deeply-nested",
        '{"instances": ' + "[" * 5000 + "]" * 5000 + "}",
        400,
        "invalid_json",
        "not valid JSON",
    ),
    (
        "lone-surrogate-string",
        '{"instances": [[1.0, "\\ud800", 3.0, 4.0]]}',
        422,
        "invalid_instances",
        "is a string",
    ),
]
# A bad row deep inside a large batch takes numpy's path first; it must be named just the same.
_big = [GOOD] * 500
BAD_INPUTS += [
    (
        "bool-in-big-batch",
        predict_body(_big + [[1.0, 2.0, False, 4.0]] + _big),
        422,
        "invalid_instances",
        "instances[500][2] ('petal_length') is a boolean",
    ),
    (
        "string-in-big-batch",
        predict_body(_big + [[1.0, 2.0, 3.0, "x"]]),
        422,
        "invalid_instances",
        "instances[500][3] ('petal_width') is a string",
    ),
    (
        "short-row-in-big-batch",
        predict_body(_big + [[1.0]]),
        422,
        "invalid_instances",
        "instances[500]: has 1 values",
    ),
    (
        "nan-in-big-batch",
        '{"instances": [' + ",".join(["[1,2,3,4]"] * 600) + ",[1,NaN,3,4]]}",
        422,
        "invalid_instances",
        "instances[600][1] ('sepal_width') is NaN",
    ),
]


def assert_error_shape(body: dict[str, Any], code: str, request_id: str = "req-0001") -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == request_id
    text = json.dumps(body)
    for secret in (BUCKET, DATA_BUCKET, "models/", "blobs", "Traceback", 'File "'):
        assert secret not in text


@pytest.mark.parametrize(
    ("case", "body", "status", "code", "phrase"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_a_clear_4xx_on_both_paths(
    env: Env, built: dict[str, BuiltModel], case: str, body: str, status: int, code: str, phrase: str
) -> None:
    # Given a served model
    publish(env.registry, "iris", built["binary"])
    # When the bad body goes through the lean path and through the Powertools resolver
    lean = lambda_handler(api_event("POST", "/models/iris/predict", body=body), Ctx())
    routed = lambda_handler(api_event("POST", "/models/iris/predict", body=body, with_resource=False), Ctx())
    # Then both answer the same 4xx, in the API's one error shape (docs/predict.md), naming what is wrong
    assert lean["statusCode"] == status, lean["body"]
    assert (routed["statusCode"], routed["body"]) == (lean["statusCode"], lean["body"])
    got = json.loads(lean["body"])
    assert_error_shape(got, code)
    assert phrase in got["error"]["message"]


def test_too_many_rows_is_413(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "iris", built["binary"])
    status, body, _ = predict("iris", [GOOD] * 10_001)
    assert status == 413
    assert_error_shape(body, "too_many_rows")
    assert "10001 rows" in body["error"]["message"]
    status, _, _ = predict("iris", [GOOD] * 10_000)
    assert status == 200


def test_a_2mb_body_is_413_before_parsing(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "iris", built["binary"])
    body = '{"instances": [' + "x" * (2 * 1024 * 1024) + "]}"  # not even JSON: the size check comes first
    status, got, _ = call(api_event("POST", "/models/iris/predict", body=body))
    assert status == 413
    assert_error_shape(got, "payload_too_large")
    raw = base64.b64encode(body.encode()).decode()
    status, got, _ = call(api_event("POST", "/models/iris/predict", body=raw, base64_body=True))
    assert status == 413


@pytest.mark.parametrize(
    "content_type", ["text/csv", "application/xml", "multipart/form-data; boundary=x", "text/plain"]
)
def test_wrong_content_type_is_415(env: Env, built: dict[str, BuiltModel], content_type: str) -> None:
    publish(env.registry, "iris", built["binary"])
    status, body, _ = predict("iris", [GOOD], headers={"Content-Type": content_type})
    assert status == 415
    assert_error_shape(body, "unsupported_media_type")


def test_unknown_model_is_404(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "iris", built["binary"])
    for name in ("nope", "Not-A-Valid-Name", "x" * 200):
        status, body, _ = predict(name, [GOOD])
        assert status == 404, name
        assert_error_shape(body, "model_not_found")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"version": "99"}, 404, "version_not_found"),
        ({"version": "abc"}, 400, "invalid_parameter"),
        ({"version": "0"}, 400, "invalid_parameter"),
        ({"version": "-1"}, 400, "invalid_parameter"),
        ({"version": "1.5"}, 400, "invalid_parameter"),
        ({"version": "１"}, 400, "invalid_parameter"),  # a full-width digit
        ({"version": "9" * 30}, 400, "invalid_parameter"),
        ({"alias": "staging"}, 404, "alias_not_found"),
        ({"alias": "Bad Alias!"}, 400, "invalid_parameter"),
        ({"alias": "production", "version": "1"}, 400, "invalid_parameter"),
    ],
)
def test_version_and_alias_pins_that_do_not_resolve(
    env: Env, built: dict[str, BuiltModel], query: dict[str, str], status: int, code: str
) -> None:
    publish(env.registry, "iris", built["binary"])
    got_status, body, _ = predict("iris", [GOOD], query=query)
    assert got_status == status
    assert_error_shape(body, code)


def test_version_and_alias_pins(env: Env, built: dict[str, BuiltModel]) -> None:
    v1 = publish(env.registry, "iris", built["binary"])
    v2 = publish(env.registry, "iris", built["binary_b"], promote=False)
    env.registry.promote("iris", v2.version, alias="staging")
    assert predict("iris", [GOOD])[1]["version"] == v1.version
    assert predict("iris", [GOOD], query={"version": str(v2.version)})[1]["version"] == v2.version
    assert predict("iris", [GOOD], query={"alias": "staging"})[1]["version"] == v2.version


# ---------------------------------------------------------------------- versions, cache, canary
def test_no_production_alias_is_503_with_a_clear_message(env: Env, built: dict[str, BuiltModel]) -> None:
    # Given a model with a version but no production alias
    v1 = publish(env.registry, "iris", built["binary"], promote=False)
    status, body, result = predict("iris", [GOOD])
    assert status == 503
    assert_error_shape(body, "no_production_version")
    assert "no production version" in body["error"]["message"]
    assert header(result, "Retry-After") is not None
    # A pinned version still answers
    assert predict("iris", [GOOD], query={"version": "1"})[0] == 200
    # Once promoted, the same container serves it after the cache TTL, without a restart
    env.registry.promote("iris", v1.version)
    env.clock.advance(TTL + 0.1)
    assert predict("iris", [GOOD])[0] == 200


def test_promotion_is_picked_up_after_the_ttl_without_a_restart(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    # Given v1 in production, served and cached
    v1 = publish(env.registry, "iris", built["binary"])
    assert predict("iris", [GOOD])[1]["version"] == v1.version
    # When v2 is promoted
    v2 = publish(env.registry, "iris", built["binary_b"])
    # Then v1 keeps answering while the cached alias is fresh
    env.clock.advance(TTL - 1)
    assert predict("iris", [GOOD])[1]["version"] == v1.version
    # And v2 answers once the TTL has passed (a conditional GET sees the new alias)
    env.clock.advance(1.5)
    status, body, result = predict("iris", [GOOD])
    assert (status, body["version"], header(result, "X-Model-Version")) == (200, v2.version, str(v2.version))
    expected = built["binary_b"].keras_predict(np.asarray([GOOD], dtype=np.float32))[0, 0]
    assert body["probabilities"][0][1] == pytest.approx(float(expected), abs=1e-5)


def corrupt(env: Env, manifest: Any) -> None:
    """Overwrite a version's blob with other bytes (what a tampered or damaged object looks like)."""
    env.s3.put_object(Bucket=BUCKET, Key=manifest.artifacts["tflite"].key, Body=b"\x00" * 64)


def test_checksum_failure_keeps_the_previous_version_and_alerts_once(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    # Given v1 serving
    v1 = publish(env.registry, "iris", built["binary"])
    assert predict("iris", [GOOD])[1]["version"] == v1.version
    # When v2 is promoted but its artifact no longer matches the manifest's SHA-256
    v2 = publish(env.registry, "iris", built["binary_b"])
    corrupt(env, v2)
    env.clock.advance(TTL + 1)
    # Then v1 keeps answering, and one ArtifactIntegrityFailed event names v2
    for _ in range(3):
        status, body, result = predict("iris", [GOOD])
        assert (status, body["version"], header(result, "X-Model-Version")) == (
            200,
            v1.version,
            str(v1.version),
        )
    alerts = env.events.of_type("ArtifactIntegrityFailed")
    assert len(alerts) == 1
    assert alerts[0]["model"] == "iris" and alerts[0]["version"] == v2.version
    assert alerts[0]["reason"] == "checksum_mismatch"
    assert env.events.entries[0]["Source"] == "modelops"
    # A pin on the corrupt version is a 503, not a load
    status, body, _ = predict("iris", [GOOD], query={"version": str(v2.version)})
    assert status == 503
    assert_error_shape(body, "model_unavailable")
    assert len(env.events.of_type("ArtifactIntegrityFailed")) == 1


def test_fresh_container_falls_back_to_the_alias_previous_version(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    v1 = publish(env.registry, "iris", built["binary"])
    v2 = publish(env.registry, "iris", built["binary_b"])
    corrupt(env, v2)
    env.new_container()
    status, body, _ = predict("iris", [GOOD])
    assert (status, body["version"]) == (200, v1.version)
    assert [a["version"] for a in env.events.of_type("ArtifactIntegrityFailed")] == [v2.version]


def test_checksum_failure_without_a_previous_version_is_503(env: Env, built: dict[str, BuiltModel]) -> None:
    v1 = publish(env.registry, "iris", built["binary"])
    corrupt(env, v1)
    for _ in range(2):
        status, body, _ = predict("iris", [GOOD])
        assert status == 503
        assert_error_shape(body, "model_unavailable")
        assert "integrity" in body["error"]["message"]
    assert len(env.events.of_type("ArtifactIntegrityFailed")) == 1


def test_a_tampered_file_in_tmp_is_never_loaded(env: Env, built: dict[str, BuiltModel]) -> None:
    v1 = publish(env.registry, "iris", built["binary"])
    assert predict("iris", [GOOD])[0] == 200
    cached = env.tmp / "artifacts" / "iris" / f"{v1.artifacts['tflite'].sha256}.tflite"
    assert cached.exists()
    cached.write_bytes(models()["binary_b"].tflite)  # a valid model, but not the one the manifest names
    env.service.cache._loaded.clear()  # as if the interpreter had been evicted
    status, body, _ = predict("iris", [GOOD])
    assert status == 200
    expected = built["binary"].keras_predict(np.asarray([GOOD], dtype=np.float32))[0, 0]
    assert body["probabilities"][0][1] == pytest.approx(float(expected), abs=1e-5)
    assert cached.read_bytes() == built["binary"].tflite


def test_canary_routing_is_deterministic_on_the_routing_key(env: Env, built: dict[str, BuiltModel]) -> None:
    # Given production v1 with v2 as a 30% canary
    v1 = publish(env.registry, "iris", built["binary"])
    v2 = publish(env.registry, "iris", built["binary_b"], promote=False)
    env.registry.update_alias(
        "iris", "production", lambda cur: canary.start(cur, v2.version, 0.3), reason="canary"
    )
    env.clock.advance(TTL + 1)
    seen = {}
    for i in range(60):
        key = f"customer-{i}"
        want = v2.version if routing_unit("iris", key) < 0.3 else v1.version
        _, body, result = predict(
            "iris", [GOOD], headers={"Content-Type": "application/json", "X-Routing-Key": key}
        )
        assert body["version"] == want and header(result, "X-Model-Version") == str(want)
        _, again, _ = predict("iris", [GOOD], query={"routing_key": key})
        assert again["version"] == want
        seen[key] = want
    assert set(seen.values()) == {v1.version, v2.version}


# ---------------------------------------------------------------------- capture
def captured_lines(env: Env) -> list[bytes]:
    assert env.service.sink is not None and env.service.sink.flush(10)
    out: list[bytes] = []
    for obj in env.s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix="captures/").get("Contents", []):
        out += list(iter_lines(env.s3.get_object(Bucket=DATA_BUCKET, Key=obj["Key"])["Body"].read()))
    return out


def test_each_invocation_is_captured_to_firehose(env: Env, built: dict[str, BuiltModel]) -> None:
    v1 = publish(env.registry, "iris", built["binary"])
    batches = [rows_of(1, seed=5), rows_of(3, seed=6), rows_of(2, seed=7)]
    answers = [predict("iris", rows, request_id=f"req-{i}")[1] for i, rows in enumerate(batches)]
    records = sorted((decode_line(line) for line in captured_lines(env)), key=lambda r: r.request_id)
    assert [r.request_id for r in records] == ["req-0", "req-1", "req-2"]
    for rec, rows, answer in zip(records, batches, answers, strict=True):
        assert (rec.model, rec.version) == ("iris", v1.version)
        np.testing.assert_array_equal(rec.x, np.asarray(rows, dtype=np.float32))
        np.testing.assert_allclose(rec.y[:, 0], np.asarray(answer["probabilities"])[:, 1], atol=1e-6)


def test_capture_sample_rate_zero_captures_nothing(env: Env, built: dict[str, BuiltModel]) -> None:
    publish(env.registry, "iris", built["binary"], capture_sample_rate=0.0)
    assert predict("iris", [GOOD])[0] == 200
    assert captured_lines(env) == []


def test_the_models_settings_change_the_capture_sample_rate_without_a_new_version(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    # Given a version trained to capture every request, and predict's settings cache already warm
    from modelops.storage.s3 import ObjectStore
    from modelops.storage.settings import SettingsStore

    publish(env.registry, "iris", built["binary"], capture_sample_rate=1.0)
    assert predict("iris", [GOOD])[0] == 200
    assert env.service.sink is not None and env.service.sink.flush(10)
    assert len(captured_lines(env)) == 1
    # When the owner sets the capture sample rate to 0 (modelops models config iris --capture-sample-rate 0)
    SettingsStore(ObjectStore(env.s3, env.registry.bucket), actor="test").update(
        "iris", {"capture_sample_rate": 0.0}
    )
    assert env.service.overrides is not None
    env.service.overrides.wait()  # the first request's background read has landed (no document then)
    assert predict("iris", [GOOD])[0] == 200  # still within the settings' TTL: the cached value holds
    env.service.overrides.ttl = 0.0  # the TTL has passed
    # the next request is answered at once with what is known, and starts a read in the background
    assert predict("iris", [GOOD])[0] == 200
    env.service.overrides.wait()
    for _ in range(5):
        assert predict("iris", [GOOD])[0] == 200
    env.service.sink.flush(10)
    # Then the version is unchanged, and once the read has landed nothing more is captured
    assert len(captured_lines(env)) == 3


def test_a_failing_capture_stream_never_fails_the_answer(
    env: Env, built: dict[str, BuiltModel], capsys: pytest.CaptureFixture[str]
) -> None:
    publish(env.registry, "iris", built["binary"])
    boto3.client("firehose", region_name="us-east-1").delete_delivery_stream(DeliveryStreamName=STREAM)
    assert predict("iris", [GOOD])[0] == 200
    assert env.service.sink is not None and env.service.sink.flush(10)
    assert predict("iris", [GOOD])[0] == 200  # this invocation reports the loss of the first one's record
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert any(doc.get("CaptureFailures") == [1.0] for doc in emf)


def test_metrics_carry_model_and_version(
    env: Env, built: dict[str, BuiltModel], capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = publish(env.registry, "iris", built["binary"])
    capsys.readouterr()
    predict("iris", rows_of(3))
    predict("nope", [GOOD])
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    served = [d for d in emf if "Latency" in d]
    assert served and served[0]["Model"] == "iris" and served[0]["Version"] == str(v1.version)
    assert served[0]["Rows"] == [3.0]
    assert any(d.get("Code") == "model_not_found" and d.get("Errors") == [1.0] for d in emf)


# ---------------------------------------------------------------------- catalogue and OpenAPI
def test_list_and_show_models(env: Env, built: dict[str, BuiltModel]) -> None:
    v1 = publish(env.registry, "iris", built["binary"], metrics={"accuracy": 0.91})
    v2 = publish(env.registry, "iris", built["binary_b"], metrics={"accuracy": 0.93})
    publish(env.registry, "price", built["regression"], promote=False)

    status, body, _ = call(api_event("GET", "/models"))
    assert status == 200
    assert body == {
        "models": [
            {"name": "iris", "aliases": {"production": v2.version}, "latest_version": v2.version},
            {"name": "price", "aliases": {}, "latest_version": 1},
        ]
    }
    status, body, _ = call(api_event("GET", "/models/iris"))
    assert status == 200
    assert body["aliases"]["production"]["version"] == v2.version
    assert body["aliases"]["production"]["previous"] == v1.version
    assert [v["version"] for v in body["versions"]] == [v1.version, v2.version]
    assert body["versions"][0]["metrics"] == {"accuracy": 0.91}
    assert body["metrics"] == {"accuracy": 0.93}
    assert [f["name"] for f in body["schema"]["features"]] == FEATURES

    for name in ("nope", "BAD"):
        status, body, _ = call(api_event("GET", f"/models/{name}"))
        assert status == 404
        assert_error_shape(body, "model_not_found")
    status, body, _ = call(api_event("GET", "/nowhere"))
    assert status == 404
    assert_error_shape(body, "not_found")


def test_openapi_document_is_valid_and_describes_errors(env: Env) -> None:
    status, doc, _ = call(api_event("GET", "/openapi.json"))
    assert status == 200
    validate(doc)
    op = doc["paths"]["/models/{name}/predict"]["post"]
    assert op["requestBody"]["required"] is True
    for code in ("400", "404", "413", "415", "422", "503"):
        assert op["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    assert "X-Model-Version" in op["responses"]["200"]["headers"]
    assert set(doc["components"]["schemas"]["ErrorDetail"]["properties"]) == {"code", "message", "request_id"}
    assert {"/models", "/models/{name}"} <= set(doc["paths"])


SERVE_IN_A_FRESH_PROCESS = """
import json, os, sys
from moto import mock_aws
with mock_aws():
    import boto3
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=os.environ["REGISTRY_BUCKET"])
    from modelops.storage.registry import Registry
    reg = Registry(s3, os.environ["REGISTRY_BUCKET"])
    schema = json.loads(os.environ["SCHEMA"])
    m = reg.publish_version("iris", {"tflite": ("model.tflite", open(os.environ["TFLITE"], "rb").read())},
                            {"task": schema["task"], "schema": schema})
    reg.promote("iris", m.version)
    from functions.predict.app import lambda_handler
    from tests.integration.predict_support import Ctx, api_event
    result = lambda_handler(api_event("POST", "/models/iris/predict", body='{"instances": [[1, 2, 3, 4]]}'), Ctx())
    print(json.dumps({"status": result["statusCode"], "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_serving_a_request_imports_no_tensorflow(built: dict[str, BuiltModel], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REGISTRY_BUCKET": BUCKET,
        "ARTIFACT_DIR": str(tmp_path),
        "TFLITE": str(built["binary"].path),
        "SCHEMA": json.dumps(built["binary"].schema()),
    }
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", SERVE_IN_A_FRESH_PROCESS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == 200
    assert not set(got["modules"]) & {"tensorflow", "scipy", "pandas", "keras"}


def test_concurrent_inference_of_mixed_sizes_gets_the_right_answers(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    # The local twin runs handlers on threads, and an interpreter is not thread-safe: each loaded
    # version serialises its invocations. (Lambda itself sends one request at a time per container,
    # and Powertools' Metrics are per-process state, so this goes below the handler.)
    publish(env.registry, "price", built["regression"])
    x = np.asarray(rows_of(64, seed=9), dtype=np.float32)
    expected = built["regression"].keras_predict(x)[:, 0]
    sizes = [1, 5, 64, 1, 17, 2, 64, 1] * 25

    def one(n: int) -> tuple[int, np.ndarray]:
        return n, env.service.cache.resolve("price").predict(x[:n])[:, 0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        for n, got in pool.map(one, sizes):
            np.testing.assert_allclose(got, expected[:n], atol=1e-5)


# ---------------------------------------------------------------------- categorical features (issue 16)
CATEGORICAL_SCHEMA = {
    "task": "binary",
    "target": "y",
    "classes": [0, 1],
    "features": [
        {"name": "sepal_length", "type": "numeric", "dtype": "float32"},
        {"name": "sepal_width", "type": "numeric", "dtype": "float32"},
        {"name": "petal_length", "type": "numeric", "dtype": "float32"},
        {"name": "colour", "type": "categorical", "dtype": "string", "vocabulary": ["red", "green", "blue"]},
    ],
}


def publish_categorical(env: Env, built: dict[str, BuiltModel]) -> int:
    """The binary model (4 inputs) with a schema whose last feature is categorical: it sees the index."""
    m = env.registry.publish_version(
        "shop",
        {"tflite": ("model.tflite", built["binary"].tflite)},
        {
            "task": "binary",
            "schema": CATEGORICAL_SCHEMA,
            "spec": {"monitoring": {"capture_sample_rate": 1.0}},
        },
    )
    env.registry.promote("shop", m.version)
    return m.version


def both_paths(body: str, request_id: str = "req-0001") -> tuple[int, dict[str, Any]]:
    lean = lambda_handler(api_event("POST", "/models/shop/predict", body=body, request_id=request_id), Ctx())
    routed = lambda_handler(
        api_event("POST", "/models/shop/predict", body=body, with_resource=False, request_id=request_id),
        Ctx(),
    )
    assert (routed["statusCode"], routed["body"]) == (lean["statusCode"], lean["body"])
    return lean["statusCode"], json.loads(lean["body"])


def test_categorical_strings_are_served_on_both_paths_and_unknown_values_counted(
    env: Env, built: dict[str, BuiltModel], capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish_categorical(env, built)
    rows = [[5.1, 3.5, 1.4, "green"], [6.2, 2.9, 4.3, " blue "], [1.0, 2.0, 3.0, "purple"]]
    index = np.asarray([[5.1, 3.5, 1.4, 1], [6.2, 2.9, 4.3, 2], [1.0, 2.0, 3.0, 3]], dtype=np.float32)
    capsys.readouterr()

    status, body = both_paths(json.dumps({"instances": rows}))
    names = [f["name"] for f in CATEGORICAL_SCHEMA["features"]]
    status_r, body_r = both_paths(json.dumps({"instances": [dict(zip(names, r, strict=True)) for r in rows]}))

    # the model saw the vocabulary indices (OOV = 3 for "purple"), for rows and records alike
    assert status == status_r == 200 and body["version"] == version
    expected = built["binary"].keras_predict(index)[:, 0]
    np.testing.assert_allclose(np.asarray(body["probabilities"])[:, 1], expected, atol=1e-5)
    assert body_r["probabilities"] == body["probabilities"]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    oov = [d for d in emf if "OutOfVocabulary" in d]
    assert [(d["Model"], d["Version"], d["Feature"], d["OutOfVocabulary"]) for d in oov] == [
        ("shop", str(version), "colour", [1.0])
    ] * 4  # four answered requests (two paths, rows and records), one unknown colour each
    # captures hold the index matrix (what the monitor compares with the baseline)
    records = [decode_line(line) for line in captured_lines(env)]
    assert records and all(np.array_equal(r.x, index) for r in records)


@pytest.mark.parametrize(
    ("instances", "phrase"),
    [
        ([[5.1, 3.5, 1.4, 2]], "instances[0][3] ('colour') is a number; expected a category (a string)"),
        ([["5.1", 3.5, 1.4, "red"]], "instances[0][0] ('sepal_length') is a string; expected a number"),
        ([[5.1, 3.5, 1.4, "r" * 10_240]], "('colour') is 10240 characters long; a category has at most 200"),
        ([[5.1, 3.5, 1.4, "NA"]], "('colour') is missing"),
        ([{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "colour": None}], "colour is null"),
    ],
)
def test_wrong_types_for_a_categorical_model_are_422_on_both_paths(
    env: Env, built: dict[str, BuiltModel], instances: Any, phrase: str
) -> None:
    publish_categorical(env, built)
    status, body = both_paths(json.dumps({"instances": instances}))
    assert status == 422
    assert_error_shape(body, "invalid_instances")
    assert phrase in body["error"]["message"] and "rrrrrrrr" not in body["error"]["message"]


def test_the_model_page_and_openapi_describe_categorical_features(
    env: Env, built: dict[str, BuiltModel]
) -> None:
    publish_categorical(env, built)
    status, body, _ = call(api_event("GET", "/models/shop"))
    assert status == 200 and body["schema"]["features"] == CATEGORICAL_SCHEMA["features"]
    status, doc, _ = call(api_event("GET", "/openapi.json"))
    assert status == 200
    validate(doc)
    request = json.dumps(doc["components"]["schemas"]["PredictRequest"])
    assert "categorical" in request and '"type": "string"' in request
