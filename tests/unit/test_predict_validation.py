"""Request parsing and validation of the predict API (modelops.stages.predict.parse, .render, .errors,
.settings), without AWS or models."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.domain.errors import RegistryUnavailableError
from modelops.stages.predict.errors import RequestError, error_result
from modelops.stages.predict.parse import (
    body_bytes,
    check_content_type,
    instances_of,
    parse_json,
    selector,
    to_matrix,
)
from modelops.stages.predict.render import render
from modelops.stages.predict.serving import ModelInfo
from modelops.stages.predict.settings import Settings

INFO = ModelInfo("demo", 3, "binary", ("a", "b", "c"), ("no", "yes"), 1.0, "tflite", "0" * 64)


def matrix(instances: Any) -> np.ndarray:
    raw = json.dumps({"instances": instances})
    return to_matrix(instances_of(parse_json(raw), 10_000), INFO, raw)


@pytest.mark.parametrize("n", [1, 3, 16, 17, 500])
def test_rows_and_records_give_the_same_matrix(n: int) -> None:
    rng = np.random.default_rng(n)
    rows = rng.uniform(-1e6, 1e6, size=(n, 3)).tolist()
    rows[0][1] = 7  # an integer is a number too
    x = matrix(rows)
    assert x.dtype == np.float32 and x.shape == (n, 3) and x.flags.c_contiguous
    np.testing.assert_array_equal(x, np.asarray(rows, dtype=np.float32))
    records = [{"c": r[2], "a": r[0], "b": r[1]} for r in rows]  # any key order
    np.testing.assert_array_equal(matrix(records), x)


def test_integers_beyond_int64_are_numbers_when_they_fit_float32() -> None:
    x = matrix([[10**30, 1, 2]] * 20)
    assert x[0, 0] == np.float32(1e30)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_value, min_size=1, max_size=24))
def test_any_json_instances_give_a_matrix_or_a_422(instances: list[Any]) -> None:
    raw = json.dumps({"instances": instances})
    try:
        x = to_matrix(instances, INFO, raw)
    except RequestError as exc:
        assert exc.status == 422 and exc.code == "invalid_instances"
        assert str(exc).startswith("instances[")
        return
    assert x.shape == (len(instances), 3) and np.isfinite(x).all()
    for row in instances:
        values = list(row.values()) if isinstance(row, dict) else row
        assert all(type(v) in (int, float) and math.isfinite(v) for v in values)


@pytest.mark.parametrize(
    ("doc", "status", "phrase"),
    [
        ([], 422, "JSON object"),
        (None, 422, "not null"),
        ({}, 422, "missing"),
        ({"instances": [[1, 2, 3]], "extra": 1}, 422, "unknown key 'extra'"),
        ({"instances": "1,2,3"}, 422, "not a string"),
        ({"instances": []}, 422, "empty"),
        ({"instances": [[1, 2, 3]] * 11}, 413, "11 rows; at most 10"),
    ],
)
def test_body_structure(doc: Any, status: int, phrase: str) -> None:
    with pytest.raises(RequestError) as exc:
        instances_of(doc, 10)
    assert exc.value.status == status and phrase in str(exc.value)


def test_json_parsing() -> None:
    assert parse_json(b'{"instances": [[1, 2, 3]]}') == {"instances": [[1, 2, 3]]}
    assert math.isnan(parse_json('{"v": NaN}')["v"])  # accepted here, rejected per row and field later
    assert parse_json('{"v": 1e400}')["v"] == math.inf
    for bad in ("{", "nope", b"\xff\xfe", '{"a": 1} trailing', "[" * 100_000):
        with pytest.raises(RequestError) as exc:
            parse_json(bad)
        assert exc.value.status == 400 and exc.value.code == "invalid_json"


def test_body_size_is_counted_in_bytes_before_parsing() -> None:
    assert body_bytes("x" * 1024, False, 1024) == "x" * 1024
    with pytest.raises(RequestError) as exc:
        body_bytes("é" * 600, False, 1024)  # 1,200 bytes of UTF-8
    assert exc.value.status == 413
    encoded = base64.b64encode(b"y" * 1024).decode()
    assert body_bytes(encoded, True, 1024) == b"y" * 1024
    with pytest.raises(RequestError) as exc:
        body_bytes(base64.b64encode(b"y" * 1025).decode(), True, 1024)
    assert exc.value.status == 413
    with pytest.raises(RequestError) as exc:
        body_bytes("!!not base64!!", True, 1024)
    assert exc.value.status == 400
    for empty in (None, ""):
        with pytest.raises(RequestError) as exc:
            body_bytes(empty, False, 1024)
        assert exc.value.status == 400


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        (None, True),
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ("application/vnd.api+json", True),
        ("application/x-www-form-urlencoded", True),
        ("text/plain", False),
        ("text/csv", False),
        ("application/xml", False),
        ("", False),
    ],
)
def test_content_types(content_type: str | None, ok: bool) -> None:
    if ok:
        check_content_type(content_type)
    else:
        with pytest.raises(RequestError) as exc:
            check_content_type(content_type)
        assert exc.value.status == 415


def test_selector() -> None:
    assert selector({}) == (None, None)
    assert selector({"alias": "staging"}) == ("staging", None)
    assert selector({"version": "12", "routing_key": "k"}) == (None, 12)
    for bad in (
        {"version": "0"},
        {"version": "x"},
        {"version": "1e3"},
        {"alias": "A"},
        {"alias": "a", "version": "1"},
    ):
        with pytest.raises(RequestError) as exc:
            selector(bad)
        assert exc.value.status == 400


def _info(task: str, classes: tuple[Any, ...] | None) -> ModelInfo:
    return ModelInfo("demo", 2, task, ("a",), classes, 1.0, "tflite", "0" * 64)


def test_render_binary_sigmoid() -> None:
    doc = json.loads(
        render(_info("binary", ("no", "yes")), "demo", np.array([[0.2], [0.9]], np.float32), "r")
    )
    assert doc["predictions"] == ["no", "yes"] and doc["labels"] == ["no", "yes"]
    np.testing.assert_allclose(doc["probabilities"], [[0.8, 0.2], [0.1, 0.9]], atol=1e-6)
    assert (doc["model"], doc["version"], doc["request_id"]) == ("demo", 2, "r")


def test_render_multiclass_without_class_names_and_multi_output_regression() -> None:
    y = np.array([[0.1, 0.7, 0.2]], np.float32)
    doc = json.loads(render(_info("multiclass", None), "demo", y, "r"))
    assert doc["predictions"] == [1] and doc["labels"] == [0, 1, 2]
    doc = json.loads(render(_info("regression", None), "demo", np.array([[1.5, 2.5]], np.float32), "r"))
    assert doc["predictions"] == [[1.5, 2.5]] and "labels" not in doc


def test_error_bodies_never_leak_internals() -> None:
    status, body, headers = error_result(RuntimeError("boom at s3://secret-bucket/models/x"), "rid-1")
    assert status == 500 and "secret-bucket" not in body
    assert json.loads(body) == {
        "error": {
            "code": "internal_error",
            "message": "internal error; quote the request id when reporting it",
            "request_id": "rid-1",
        }
    }
    status, body, headers = error_result(
        RegistryUnavailableError("registry bucket 'secret-bucket' does not exist"), "r"
    )
    assert status == 503 and "secret-bucket" not in body and headers["Retry-After"]


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """``Settings`` read from exactly ``env`` (the variables it knows are cleared first)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from(
        monkeypatch,
        {
            "REGISTRY_BUCKET": "reg",
            "CAPTURE_STREAM": "cap",
            "ALIAS_CACHE_TTL_SECONDS": "2.5",
            "MAX_ROWS": "50",
            "MAX_BODY_BYTES": "2048",
            "UNRELATED": "x",
        },
    )
    assert (s.registry_bucket, s.capture_stream, s.alias_cache_ttl_seconds, s.max_rows, s.max_body_bytes) == (
        "reg",
        "cap",
        2.5,
        50,
        2048,
    )
    assert settings_from(monkeypatch, {"REGISTRY_BUCKET": "reg", "CAPTURE_STREAM": ""}).capture_stream is None
    with pytest.raises(ValueError):
        settings_from(monkeypatch, {"REGISTRY_BUCKET": "reg", "MAX_ROWS": "0"})
