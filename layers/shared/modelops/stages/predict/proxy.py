"""API Gateway REST proxy events in and out for POST predict: the request id, the request read from
the event, the answer as (status, body, headers) and as a proxy result. Both paths of POST predict
(the lean one in ``api.handle`` and the resolver's route) answer through ``predict_event``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from modelops.stages.predict.errors import RequestError, error_result
from modelops.stages.predict.parse import RawRequest
from modelops.stages.predict.service import service

PREDICT_RESOURCE = "/models/{name}/predict"


def request_id(event: Mapping[str, Any], context: Any) -> str:
    rid = (event.get("requestContext") or {}).get("requestId")
    return str(rid or getattr(context, "aws_request_id", None) or uuid.uuid4())


def _content_type_and_routing_key(headers: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """The first ``Content-Type`` and ``X-Routing-Key`` headers, names compared case-insensitively."""
    content_type = routing_key = None
    if headers:
        for k, v in headers.items():
            n = len(k)  # most names have neither length: no lower() for them
            if n == 12:
                if content_type is None and k.lower() == "content-type":
                    content_type = v
            elif n == 13 and routing_key is None and k.lower() == "x-routing-key":
                routing_key = v
    return content_type, routing_key


def predict_event(
    event: Mapping[str, Any], context: Any, name: str | None = None
) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) for a POST predict proxy event; never raises."""
    rid = request_id(event, context)
    try:
        if name is None:
            name = str((event.get("pathParameters") or {}).get("name") or "")
        content_type, routing_key = _content_type_and_routing_key(event.get("headers"))
        return service().predict(
            RawRequest(  # positional (name, body, is_base64, content_type, query, routing_key, request_id)
                name,
                event.get("body"),
                bool(event.get("isBase64Encoded")),
                content_type,
                event.get("queryStringParameters") or {},
                routing_key,
                rid,
            )
        )
    except Exception as exc:
        return error_result(exc, rid, exc.served_version if isinstance(exc, RequestError) else None)


def proxy_result(result: tuple[int, str, dict[str, str]]) -> dict[str, Any]:
    """The Lambda proxy result the resolver would build for the same response (multiValueHeaders)."""
    status, body, headers = result
    return {
        "statusCode": status,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": body,
        "isBase64Encoded": False,
    }
