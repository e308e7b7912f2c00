"""Who may talk to the twin: loopback names only, no browser page of another origin, the session token.

The twin listens on 127.0.0.1 and runs code as the developer, so every one of its HTTP endpoints
checks the request before anything else (docs/local-twin.md, "Security"):

- **Host**: ``127.0.0.1``, ``localhost`` or ``[::1]`` with the twin's port, nothing else: a page
  that rebinds its own DNS name to 127.0.0.1 still sends its own name (DNS rebinding fails).
- **Origin**: a browser marks what a page of another site sends (``Origin``, ``Sec-Fetch-Site``);
  such requests are refused, so no web page reads or writes the twin even with a simple request
  that needs no CORS preflight. No endpoint ever answers with ``Access-Control-*`` headers.
- **Token** (:data:`TOKEN_HEADER`): a random per-session secret that ``modelops local up`` writes to
  its 0600 state file and ``modelops local env`` exports as ``MODELOPS_LOCAL_TOKEN``; every
  ``/_twin/*`` control endpoint requires it. moto's endpoint requires it as the AWS access key id
  of the request's signature (``AWS_ACCESS_KEY_ID``, also exported), which a browser cannot set
  without a CORS preflight and which no other page knows.
- **JSON**: a control endpoint that takes a body takes ``Content-Type: application/json`` only
  (``text/plain`` and form posts are what a page can send without a preflight).

The API Gateway emulation (``/{stage}/...``) has the Host and Origin checks but no token: the
deployed API's own authorization (``ApiAuth``) is what the template defines, and the README's
``curl`` lines must work as written.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

# The names the shipped local backend sends the token with (it cannot import the tooling).
from modelops.compute.local import TOKEN_ENV, TOKEN_HEADER

__all__ = ["TOKEN_ENV", "TOKEN_HEADER", "MotoGuard", "access_key_of", "is_json", "new_token", "refusal"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_SIGV2 = re.compile(r"^AWS ([^:\s]+):")


def new_token() -> str:
    """A fresh session token (also the twin's AWS access key id, so only ``[0-9a-f]``)."""
    return secrets.token_hex(20)


def allowed_hosts(port: int) -> frozenset[str]:
    """The ``Host`` values the twin answers on ``port``."""
    hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
    if port == 80:
        hosts |= set(LOOPBACK_NAMES)
    return frozenset(hosts)


def _header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else str(value)


def refusal(headers: Mapping[str, str] | Any, port: int) -> str | None:
    """Why a request with these headers may not reach the twin on ``port`` (None: it may)."""
    hosts = allowed_hosts(port)
    host = (_header(headers, "Host") or "").strip().lower()
    if host not in hosts:
        return f"Host {host[:100]!r} is not one of the twin's names ({', '.join(sorted(hosts))})"
    site = (_header(headers, "Sec-Fetch-Site") or "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return f"a {site} request from a web page (Sec-Fetch-Site) is refused"
    origin = _header(headers, "Origin")
    if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in hosts}:
        return f"a request from the web origin {origin.strip()[:100]!r} is refused"
    return None


def token_matches(presented: str | None, token: str) -> bool:
    """Constant-time comparison; an empty session token matches nothing."""
    if not token or not presented:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())


def is_json(content_type: str | None) -> bool:
    """``application/json`` (parameters such as ``charset`` allowed), nothing else."""
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def access_key_of(headers: Mapping[str, str] | Any, query: str) -> str | None:
    """The AWS access key id a request is signed with: SigV4 or SigV2, header or presigned query."""
    auth = _header(headers, "Authorization") or ""
    m = _CREDENTIAL.search(auth) or _SIGV2.match(auth)
    if m:
        return m.group(1)
    qs = parse_qs(query, keep_blank_values=True)
    for name in ("X-Amz-Credential", "x-amz-credential"):
        if qs.get(name):
            return unquote(qs[name][-1]).split("/", 1)[0] or None
    if qs.get("AWSAccessKeyId"):
        return qs["AWSAccessKeyId"][-1] or None
    return None


_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>twin-guard</RequestId></ErrorResponse>"
)


class MotoGuard:
    """WSGI middleware in front of moto's server: the Host, Origin and access-key checks, no CORS.

    ``port`` is the server's port; ``access_key`` the session token every request must be signed
    with. Any ``Access-Control-*`` header moto would add is removed from the answer.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], port: int, access_key: str) -> None:
        self.app = app
        self.port = port
        self.access_key = access_key

    def _refuse(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        status: str,
        code: str,
        message: str,
    ) -> list[bytes]:
        from xml.sax.saxutils import escape

        ctype = environ.get("CONTENT_TYPE") or ""
        if "json" in ctype:
            import json

            body = json.dumps({"__type": code, "message": message}).encode()
            out_type = "application/x-amz-json-1.1"
        else:
            body = _ERROR_XML.format(code=code, message=escape(message)).encode()
            out_type = "text/xml"
        start_response(
            status,
            [("Content-Type", out_type), ("Content-Length", str(len(body)))],
        )
        return [body]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = _EnvironHeaders(environ)
        problem = refusal(headers, self.port)
        if problem is not None:
            return self._refuse(
                environ, start_response, "403 Forbidden", "AccessDenied", f"the twin: {problem}"
            )
        key = access_key_of(headers, environ.get("QUERY_STRING") or "")
        if not token_matches(key, self.access_key):
            return self._refuse(
                environ,
                start_response,
                "403 Forbidden",
                "InvalidClientTokenId",
                "the twin: sign requests with this session's access key "
                '(eval "$(modelops local env)" after each `modelops local up`)',
            )

        def start(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in response_headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info) if exc_info else start_response(status, kept)

        return self.app(environ, start)


class _EnvironHeaders:
    """``get(name)`` over a WSGI environ's ``HTTP_*`` keys."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def get(self, name: str, default: Any = None) -> Any:
        return self._environ.get("HTTP_" + name.upper().replace("-", "_"), default)
