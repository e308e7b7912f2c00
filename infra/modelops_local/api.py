"""HTTP on 127.0.0.1: the template's API Gateway routes, and the twin's control endpoints.

API routes (``Type: Api`` events) are served under ``/{StageName}/...`` and converted to API
Gateway REST proxy events (and the handler's proxy response back), with API Gateway's limits:
10 MB request bodies (413) and a 29 s integration timeout (504). A function error or a malformed
response is a 502 ``{"message": "Internal server error"}``; a path that matches no route is a
404 ``{"message": "Not Found"}``. When a route requires an API key (``ApiAuth=API_KEY``),
``x-api-key`` must be the key the twin created in moto (403 otherwise). SigV4 (``AWS_IAM``) is not
verified locally.

Control endpoints under ``/_twin`` (not part of the deployed system): ``POST /_twin/tick[/FN]``,
``POST /_twin/alarms/evaluate``, ``POST /_twin/training-jobs`` (the local training backend),
``GET /_twin/training-jobs[/NAME]``, ``POST /_twin/invoke/FN``, ``POST /_twin/idle``,
``GET /_twin/invocations``, ``GET /_twin/health``.

Every request is checked first (``modelops_local.guard``): a Host that is not a loopback name with
this port, or a request a browser marks as coming from another origin, gets 403 and the connection
is closed unread. A control endpoint also needs the session token (``X-Modelops-Twin-Token``; 401
without it, 403 when wrong) and, for a POST, ``Content-Type: application/json`` (415 otherwise).
No answer carries ``Access-Control-*`` headers.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from modelops_local import guard
from modelops_local.errors import ExecutionExistsError, FunctionNotFoundError, PortInUseError, TwinError
from modelops_local.motoserver import bind
from modelops_local.training_service import TrainingRequestError

if TYPE_CHECKING:
    from modelops_local.twin import Twin

log = logging.getLogger("modelops.twin")

MAX_BODY_BYTES = 10 * 1024 * 1024
STATES_PATH = "/_twin/states"
"""Where the functions' ``stepfunctions`` clients go on the twin (``AWS_ENDPOINT_URL_SFN``)."""
_DRAIN_LIMIT = 64 * 1024 * 1024


@dataclass
class Route:
    """One ``Type: Api`` event of a function."""

    api: str  # logical id of the API
    api_name: str
    stage: str
    path: str
    method: str  # upper case, or ANY
    function: str
    api_key_required: bool = False

    def __post_init__(self) -> None:
        self.segments = [s for s in self.path.strip("/").split("/") if s]
        self.literals = sum(1 for s in self.segments if not s.startswith("{"))
        self.greedy = bool(self.segments) and self.segments[-1].endswith("+}")

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        segs = self.segments
        if self.greedy:
            if len(parts) < len(segs):
                return None
            head = segs[:-1]
        else:
            if len(parts) != len(segs):
                return None
            head = segs
        for seg, part in zip(head, parts, strict=False):
            if seg.startswith("{") and seg.endswith("}"):
                if not part:
                    return None
                params[seg[1:-1]] = unquote(part)
            elif seg != part:
                return None
        if self.greedy:
            params[segs[-1][1:-2]] = unquote("/".join(parts[len(head) :]))
        return params


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    twin: Twin


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle: otherwise keep-alive clients wait ~40 ms for delayed ACKs.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("http %s", format % args)

    def _any(self) -> None:
        try:
            ApiGateway(self.server.twin).handle(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any


class ApiServer:
    """Binds at construction (so a taken port fails fast), serves once started."""

    def __init__(self, twin: Twin, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on 127.0.0.1 is in use (API); pick another with --api-port"
            ) from exc
        self._server = _Server((host, port), _Handler, bind_and_activate=False)
        self._server.socket.close()
        self._server.socket = sock
        self._server.server_address = sock.getsockname()
        self._server.twin = twin
        self.host = host
        self.port = int(sock.getsockname()[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="twin-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def _json(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    hdrs = {"Content-Type": ["application/json"]}
    for k, v in (headers or {}).items():
        hdrs[k] = [v]
    return status, hdrs, json.dumps(body, default=str).encode()


class ApiGateway:
    """Handles one HTTP request."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin

    # ------------------------------------------------------------------ plumbing

    def _read_body(self, req: BaseHTTPRequestHandler) -> bytes | None:
        """The body, or None when it is over 10 MB (it is drained so that the 413 reaches the client)."""
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(req.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while req.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = req.rfile.read(size)
                req.rfile.readline()
                total += size
                if total <= MAX_BODY_BYTES:
                    chunks.append(data)
                elif total > _DRAIN_LIMIT:
                    req.close_connection = True
                    return None
            return b"".join(chunks) if total <= MAX_BODY_BYTES else None
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            if length > _DRAIN_LIMIT:
                req.close_connection = True
                return None
            left = length
            while left > 0:
                got = req.rfile.read(min(left, 1 << 20))
                if not got:
                    break
                left -= len(got)
            return None
        return req.rfile.read(length) if length else b""

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, headers: dict[str, list[str]], body: bytes) -> None:
        req.send_response(status)
        lower = {k.lower() for k in headers}
        for k, values in headers.items():
            if k.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            for v in values:
                req.send_header(k, v)
        if "content-type" not in lower:
            req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        if req.close_connection:
            req.send_header("Connection", "close")
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def _refuse(self, req: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        """Answer without reading the body; the connection closes (its rest is never parsed)."""
        req.close_connection = True
        self._send(req, *_json(status, body))

    def _control_refusal(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]] | None:
        presented = req.headers.get(guard.TOKEN_HEADER)
        if not presented:
            return 401, {
                "__type": "MissingAuthenticationToken",
                "message": f"the twin's control endpoints need the session token in {guard.TOKEN_HEADER} "
                f'(${guard.TOKEN_ENV} after eval "$(modelops local env)")',
            }
        if not guard.token_matches(presented, self.twin.token):
            return 403, {
                "__type": "InvalidToken",
                "message": f"{guard.TOKEN_HEADER} is not this twin session's token "
                "(a restarted twin has a new one: run `modelops local env` again)",
            }
        if req.command not in ("GET", "HEAD") and not guard.is_json(req.headers.get("Content-Type")):
            return 415, {
                "__type": "UnsupportedMediaType",
                "message": "the twin's control endpoints take Content-Type: application/json only",
            }
        return None

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        path = url.path
        problem = guard.refusal(req.headers, self.twin.api_port)
        if problem is not None:
            self._refuse(req, 403, {"__type": "AccessDenied", "message": f"the twin: {problem}"})
            return
        if path.rstrip("/") == STATES_PATH:
            self._send(req, *self._states(req, url.query))
            return
        if path == "/_twin" or path.startswith("/_twin/"):
            refused = self._control_refusal(req)
            if refused is not None:
                self._refuse(req, *refused)
                return
            body = self._read_body(req)
            status, headers, out = self._control(req.command, path[len("/_twin") :], url.query, body)
            self._send(req, status, headers, out)
            return
        started = time.monotonic()
        status, headers, out, api_name, stage = self._api(req, path, url.query)
        self._send(req, status, headers, out)
        if api_name:
            elapsed = (time.monotonic() - started) * 1000.0
            self.twin.record_api_metrics(api_name, stage, status, elapsed)

    # ------------------------------------------------------------------ API Gateway

    def _api(
        self, req: BaseHTTPRequestHandler, path: str, query: str
    ) -> tuple[int, dict[str, list[str]], bytes, str, str]:
        api_request_id = str(uuid.uuid4())
        ids = {"x-amzn-RequestId": api_request_id, "x-amz-apigw-id": secrets.token_urlsafe(12)[:16]}
        parts = path.lstrip("/").split("/")
        stage, rest = parts[0], parts[1:]
        if rest == [""]:
            rest = []
        candidates = [r for r in self.twin.routes if r.stage == stage]
        matched: list[tuple[Route, dict[str, str]]] = []
        for route in candidates:
            params = route.match(rest)
            if params is not None and route.method in (req.command, "ANY"):
                matched.append((route, params))
        body = self._read_body(req)
        if not matched:
            status, hdrs, out = _json(404, {"message": "Not Found"}, ids)
            return status, hdrs, out, candidates[0].api_name if candidates else "", stage
        route, params = max(matched, key=lambda rp: (rp[0].literals, not rp[0].greedy, rp[0].method != "ANY"))
        if body is None:
            status, hdrs, out = _json(413, {"message": "Request Too Long"}, ids)
            return status, hdrs, out, route.api_name, stage
        api_key = req.headers.get("x-api-key")
        if route.api_key_required and (not api_key or api_key not in self.twin.api_keys.values()):
            status, hdrs, out = _json(403, {"message": "Forbidden"}, ids)
            return status, hdrs, out, route.api_name, stage
        event = self._proxy_event(req, route, params, path, query, body, api_request_id, api_key)
        inv = self.twin.invoke_api(route.function, event)
        if inv.outcome == "timeout" and inv.error_type == "Twin.CallerTimeout":
            status, hdrs, out = _json(504, {"message": "Endpoint request timed out"}, ids)
            return status, hdrs, out, route.api_name, stage
        if not inv.ok:
            status, hdrs, out = _json(502, {"message": "Internal server error"}, ids)
            return status, hdrs, out, route.api_name, stage
        converted = self._proxy_response(inv.result)
        if converted is None:
            log.error(
                "%s request_id=%s returned a malformed proxy response: %.200r",
                route.function,
                inv.request_id,
                inv.result,
            )
            status, hdrs, out = _json(502, {"message": "Internal server error"}, ids)
            return status, hdrs, out, route.api_name, stage
        status, hdrs, out = converted
        for k, v in ids.items():
            hdrs.setdefault(k, [v])
        return status, hdrs, out, route.api_name, stage

    def _proxy_event(
        self,
        req: BaseHTTPRequestHandler,
        route: Route,
        params: dict[str, str],
        path: str,
        query: str,
        body: bytes,
        api_request_id: str,
        api_key: str | None,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for k, v in req.headers.items():
            headers[k] = v
            multi_headers.setdefault(k, []).append(v)
        qs = parse_qs(query, keep_blank_values=True)
        resource_path = route.path if route.path.startswith("/") else "/" + route.path
        inner_path = "/" + path.lstrip("/").split("/", 1)[1] if "/" in path.lstrip("/") else "/"
        try:
            text: str | None = body.decode("utf-8") if body else None
            is_b64 = False
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        identity = {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "sourceIp": req.client_address[0],
            "principalOrgId": None,
            "accessKey": _access_key(headers),
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": headers.get("User-Agent"),
            "user": None,
            "apiKey": api_key if route.api_key_required else None,
            "apiKeyId": self.twin.api_key_id(api_key) if route.api_key_required else None,
        }
        return {
            "resource": resource_path,
            "path": inner_path,
            "httpMethod": req.command,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {k: v[-1] for k, v in qs.items()} or None,
            "multiValueQueryStringParameters": qs or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": secrets.token_hex(3),
                "resourcePath": resource_path,
                "httpMethod": req.command,
                "extendedRequestId": secrets.token_urlsafe(12)[:16],
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "path": path,
                "accountId": self.twin.account_id,
                "protocol": req.request_version,
                "stage": route.stage,
                "domainPrefix": "127",
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "requestId": api_request_id,
                "identity": identity,
                "domainName": f"{req.server.server_address[0]}:{req.server.server_address[1]}",  # type: ignore[index]
                "apiId": self.twin.template.ref(route.api)
                if route.api in self.twin.template.resources
                else route.api,
            },
            "body": text,
            "isBase64Encoded": is_b64,
        }

    @staticmethod
    def _proxy_response(result: Any) -> tuple[int, dict[str, list[str]], bytes] | None:
        if not isinstance(result, dict):
            return None
        status = result.get("statusCode")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            return None
        headers: dict[str, list[str]] = {}
        single = result.get("headers") or {}
        multi = result.get("multiValueHeaders") or {}
        if not isinstance(single, dict) or not isinstance(multi, dict):
            return None
        for k, v in single.items():
            headers[str(k)] = [str(v)]
        for k, vs in multi.items():
            if not isinstance(vs, list):
                return None
            headers.setdefault(str(k), [])
            headers[str(k)] += [str(v) for v in vs if str(v) not in headers[str(k)]]
        body = result.get("body")
        if body is None:
            raw = b""
        elif isinstance(body, str):
            if result.get("isBase64Encoded"):
                try:
                    raw = base64.b64decode(body, validate=True)
                except ValueError:
                    return None
            else:
                raw = body.encode("utf-8")
        else:
            return None
        return status, headers, raw

    # ------------------------------------------------------------------ Step Functions (functions' clients)

    def _states(self, req: BaseHTTPRequestHandler, query: str) -> tuple[int, dict[str, list[str]], bytes]:
        """``StartExecution`` for the functions' own ``stepfunctions`` clients: the execution runs on
        the twin's interpreter (``Twin.start_execution_async``). The request's access key must be the
        session token, as moto's endpoint requires."""
        if not guard.token_matches(guard.access_key_of(req.headers, query), self.twin.token):
            req.close_connection = True
            return _json(403, {"__type": "UnrecognizedClientException", "message": "not this twin's token"})
        body = self._read_body(req)
        if body is None:
            return _json(413, {"message": "Request Too Long"})
        target = req.headers.get("X-Amz-Target", "")
        if target != "AWSStepFunctions.StartExecution":
            return _json(
                400,
                {
                    "__type": "UnknownOperationException",
                    "message": f"the twin serves StartExecution only, not {target[:80]!r}",
                },
            )
        try:
            payload = json.loads(body or b"{}")
            arn = self.twin.start_execution_async(
                str(payload.get("stateMachineArn")),
                json.loads(payload.get("input") or "{}"),
                name=payload.get("name"),
            )
        except ExecutionExistsError as exc:
            return _json(400, {"__type": "ExecutionAlreadyExists", "message": str(exc)})
        except ValueError:
            return _json(400, {"__type": "SerializationException", "message": "the body is not JSON"})
        except TwinError as exc:
            return _json(400, {"__type": "StateMachineDoesNotExist", "message": str(exc)})
        return _json(200, {"executionArn": arn, "startDate": time.time()})

    # ------------------------------------------------------------------ control

    def _control(
        self, method: str, path: str, query: str, body: bytes | None
    ) -> tuple[int, dict[str, list[str]], bytes]:
        twin = self.twin
        parts = [p for p in path.split("/") if p]
        if body is None:
            return _json(413, {"message": "Request Too Long"})
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return _json(400, {"__type": "SerializationException", "message": "the body is not JSON"})
        try:
            if method == "GET" and parts in ([], ["health"]):
                return _json(200, {"status": "ok", "endpoint": twin.endpoint, "api_url": twin.api_url})
            if method == "POST" and parts[:1] == ["tick"] and len(parts) <= 2:
                results, executions = twin.tick_all(parts[1] if len(parts) == 2 else None)
                return _json(
                    200,
                    {
                        "invocations": [r.summary() for r in results],
                        "executions": [e.summary() for e in executions],
                    },
                )
            if method == "POST" and parts == ["alarms", "evaluate"]:
                return _json(200, {"alarms": [r.summary() for r in twin.evaluate_alarms()]})
            if parts[:1] == ["training-jobs"]:
                if method == "POST" and len(parts) == 1:
                    return _json(200, twin.training.create(payload))
                if method == "GET" and len(parts) == 1:
                    names = list(twin.training.jobs)
                    return _json(200, {"TrainingJobSummaries": [twin.training.describe(n) for n in names]})
                if method == "GET" and len(parts) == 2:
                    found = twin.training.describe(parts[1])
                    if found is None:
                        return _json(
                            400, {"__type": "ValidationException", "message": "Requested resource not found."}
                        )
                    return _json(200, found)
            if method == "POST" and parts[:1] == ["invoke"] and len(parts) == 2:
                inv = twin.invoke(parts[1], payload if payload is not None else {})
                out: dict[str, Any] = {"StatusCode": 200, "RequestId": inv.request_id, "Outcome": inv.outcome}
                if inv.ok:
                    out["Payload"] = inv.result
                else:
                    out["FunctionError"] = "Unhandled"
                    out["Payload"] = inv.error_payload()
                return _json(200, out)
            if method == "POST" and parts == ["idle"]:
                timeout = float(parse_qs(query).get("timeout", ["60"])[0])
                twin.wait_idle(timeout)
                return _json(200, {"idle": True})
            if method == "GET" and parts == ["invocations"]:
                return _json(200, {"invocations": [i.summary() for i in list(twin.invocations)]})
        except TrainingRequestError as exc:
            return _json(
                503 if exc.code == "ServiceUnavailable" else 400, {"__type": exc.code, "message": exc.message}
            )
        except FunctionNotFoundError as exc:
            return _json(404, {"message": str(exc)})
        except TimeoutError as exc:
            return _json(504, {"message": str(exc)})
        except TwinError as exc:
            return _json(400, {"message": str(exc)})
        return _json(404, {"message": f"no twin control endpoint {method} /_twin{path}"})


_CRED = re.compile(r"Credential=([A-Z0-9]+)/")


def _access_key(headers: dict[str, str]) -> str | None:
    for k, v in headers.items():
        if k.lower() == "authorization":
            m = _CRED.search(v)
            return m.group(1) if m else None
    return None
