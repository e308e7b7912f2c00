"""API Gateway on the twin: proxy events over real HTTP, its limits and its error answers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
import requests

from modelops_local.testing import ROOT, start_twin
from modelops_local.twin import Twin

pytestmark = pytest.mark.twin
FAKE = ROOT / "tests/fixtures/twin/template.yaml"


@pytest.fixture(scope="module")
def api() -> Iterator[Twin]:
    twin = start_twin(FAKE, api_timeout=1.0)
    yield twin
    twin.stop()


def test_the_api_url_output_points_at_the_twin(api: Twin) -> None:
    assert api.outputs["ApiUrl"] == api.api_url == f"http://127.0.0.1:{api.api_port}/v1"


def test_get_with_query_string_returns_the_handlers_response(api: Twin) -> None:
    resp = requests.get(f"{api.api_url}/items?x=1&x=2&y=", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["method"] == "GET" and body["path"] == "/items" and body["resource"] == "/items"
    assert body["query"] == {"x": "2", "y": ""}
    assert body["multiQuery"] == {"x": ["1", "2"], "y": [""]}
    assert body["pathParameters"] is None and body["body"] is None
    assert body["stage"] == "v1" and body["resourcePath"] == "/items"
    assert resp.headers["X-Handler"] == "record"
    assert resp.headers["X-Multi"] == "a, b"
    assert resp.headers["x-amzn-RequestId"] == body["requestId"]


def test_post_with_path_parameter_and_json_body(api: Twin) -> None:
    payload = {"instances": [[1.0, 2.0]]}
    resp = requests.post(f"{api.api_url}/echo/hello%20world", json=payload, timeout=10)
    assert resp.status_code == 201
    body = resp.json()
    assert body["pathParameters"] == {"name": "hello world"}
    assert body["resource"] == "/echo/{name}"
    assert json.loads(body["body"]) == payload and body["isBase64Encoded"] is False
    assert body["contentType"] == "application/json"


def test_binary_body_is_base64_and_greedy_paths_match(api: Twin) -> None:
    raw = bytes(range(256))
    body = requests.put(f"{api.api_url}/echo/bin", data=raw, timeout=10).json()
    assert body["isBase64Encoded"] is True and base64.b64decode(body["body"]) == raw
    files = requests.get(f"{api.api_url}/files/a/b/c.txt", timeout=10).json()
    assert files["pathParameters"] == {"path": "a/b/c.txt"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nope"), ("DELETE", "/v1/items"), ("GET", "/v2/items"), ("GET", "/"), ("GET", "/v1/echo")],
)
def test_unmatched_routes_are_404_json(api: Twin, method: str, path: str) -> None:
    resp = requests.request(method, f"{api.base_url}{path}", timeout=10)
    assert resp.status_code == 404
    assert resp.json() == {"message": "Not Found"}


def test_a_body_over_10_mb_is_413_and_never_reaches_the_handler(api: Twin) -> None:
    before = api.mark()
    resp = requests.post(f"{api.api_url}/echo/big", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    assert resp.status_code == 413
    assert "message" in resp.json()
    assert api.invocations_of("RecordFunction", since=before) == []
    # The connection and the server are fine afterwards.
    assert requests.get(f"{api.api_url}/items", timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/boom", "/malformed", "/broken", "/slow?s=3"])
def test_function_errors_bad_responses_and_function_timeouts_are_502(api: Twin, path: str) -> None:
    resp = requests.get(f"{api.api_url}{path}", timeout=10)
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}


def test_api_errors_are_not_retried(api: Twin) -> None:
    before = api.mark()
    assert requests.get(f"{api.api_url}/boom", timeout=10).status_code == 502
    after = api.invocations_of("FlakyFunction", since=before)
    assert len(after) == 1 and after[-1].source == "api"


def test_past_the_integration_timeout_the_answer_is_504_and_the_handler_finishes(api: Twin) -> None:
    started = time.monotonic()
    resp = requests.get(f"{api.api_url}/patient?s=2", timeout=10)
    waited = time.monotonic() - started
    assert resp.status_code == 504
    assert resp.json() == {"message": "Endpoint request timed out"}
    assert waited < 1.9  # the API timeout here is 1 s; the handler runs 2 s
    api.wait_idle(10)  # waits for the handler the API gave up on
    assert requests.get(f"{api.api_url}/items", timeout=10).status_code == 200


def test_api_key_mode_checks_x_api_key() -> None:
    with start_twin(FAKE, parameters={"ApiAuth": "API_KEY"}) as keyed:
        key = keyed.api_key
        assert key and key in [
            k["value"] for k in keyed.client("apigateway").get_api_keys(includeValues=True)["items"]
        ]
        assert keyed.outputs["KeyMode"] == "api-key"
        url = f"{keyed.api_url}/items"
        assert requests.get(url, timeout=10).status_code == 403
        wrong = requests.get(url, headers={"x-api-key": "wrong"}, timeout=10)
        assert wrong.status_code == 403 and wrong.json() == {"message": "Forbidden"}
        assert requests.get(url, headers={"x-api-key": key}, timeout=10).status_code == 200
