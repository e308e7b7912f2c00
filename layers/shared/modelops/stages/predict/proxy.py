"""API Gateway REST proxy events in and out for POST predict: the request id, the request read from
the event, the answer as (status, body, headers) and as a proxy result. Both paths of POST predict
(the lean one in ``api.handle`` and the resolver's route) answer through ``predict_event``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from modelops.stages.predict.errors import error_result
from modelops.stages.predict.parse import RawRequest
from modelops.stages.predict.service import service

PREDICT_RESOURCE = "/models/{name}/predict"


def request_id(event: Mapping[str, Any], context: Any) -> str:
    return _request_id(event.get("requestContext"), context)


def _request_id(rc: Mapping[str, Any] | None, context: Any) -> str:
    rid = rc.get("requestId") if rc else None
    return str(rid or getattr(context, "aws_request_id", None) or uuid.uuid4())


def caller(event: Mapping[str, Any]) -> str | None:
    """Who called, for the request's log line: with IAM auth the caller's ARN (API Gateway's
    ``requestContext.identity.userArn``, else its ``caller`` principal, else ``accountId``); with an
    API key, ``api-key:{apiKeyId}`` (the key's id, never the key). None when API Gateway names no one."""
    return _caller(event.get("requestContext"))


def _caller(rc: Mapping[str, Any] | None) -> str | None:
    try:
        identity = rc.get("identity") if rc else None
        if not identity:
            return None
        who: str | None = identity.get("userArn") or identity.get("caller") or identity.get("accountId")
        if who:
            return who
        key_id = identity.get("apiKeyId")
    except AttributeError:  # not API Gateway's shapes
        return None
    return f"api-key:{key_id}" if key_id else None


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
    """(status, body, headers) for a POST predict proxy event; never raises. Either way the
    answer's EMF line carries the request's log fields (``telemetry``)."""
    rc = event.get("requestContext")
    rid = _request_id(rc, context)
    req: RawRequest | None = None
    try:
        if name is None:
            name = str((event.get("pathParameters") or {}).get("name") or "")
        content_type, routing_key = _content_type_and_routing_key(event.get("headers"))
        req = RawRequest(  # positional (name, body, is_base64, content_type, query, routing_key, request_id, caller)
            name,
            event.get("body"),
            bool(event.get("isBase64Encoded")),
            content_type,
            event.get("queryStringParameters") or {},
            routing_key,
            rid,
            _caller(rc),
        )
        return service().predict(req)
    except Exception as exc:
        if req is None:
            return error_result(exc, rid, caller=_caller(rc), model=name)
        return error_result(exc, rid, req.version, caller=req.caller, model=name, rows=req.rows)


def proxy_result(result: tuple[int, str, dict[str, str]]) -> dict[str, Any]:
    """The Lambda proxy result the resolver would build for the same response (multiValueHeaders)."""
    status, body, headers = result
    return {
        "statusCode": status,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": body,
        "isBase64Encoded": False,
    }
