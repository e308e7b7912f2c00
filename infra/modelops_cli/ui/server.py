"""``modelops ui``'s HTTP server: GET and HEAD only, on 127.0.0.1 by default.

It reads with the CLI's credentials, so it answers only requests addressed to it by the name it was
started on (the ``Host`` header: a web page elsewhere cannot reach it through a DNS name it rebinds
to 127.0.0.1), sends nothing that lets another origin read its answers, and forbids scripts in the
monitor's reports it serves.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from modelops_cli.ui import pages
from modelops_cli.ui.site import HTML, Page, Site

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
REPORT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'"
)
LOOPBACK = ("127.0.0.1", "localhost")


class FleetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: Site, host: str, port: int) -> None:
        self.site = site
        super().__init__((host, port), _Handler)
        self.host, self.port = host, int(self.server_address[1])
        names = {host, *LOOPBACK} if host in LOOPBACK else {host}
        self.allowed_hosts = {f"{n}:{self.port}" for n in names}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


class _Handler(BaseHTTPRequestHandler):
    server: FleetServer
    server_version = "modelops-ui"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _refuse(self) -> None:
        self._send(
            Page(405, HTML, pages.error_page("Read-only", "this page only reads: GET and HEAD").encode()),
            True,
            {"Allow": "GET, HEAD"},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def _answer(self, send_body: bool) -> None:
        host = (self.headers.get("Host") or "").lower()
        if host not in self.server.allowed_hosts:
            page = Page(
                421,
                HTML,
                pages.error_page("Wrong host", f"this server answers as {self.server.url}").encode(),
            )
            self._send(page, send_body)
            return
        path = unquote(urlsplit(self.path).path)
        try:
            page = self.server.site.get(path)
        except Exception as exc:  # noqa: BLE001 - one page failed: say so, keep serving the others
            print(f"modelops ui: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            page = Page(
                500, HTML, pages.error_page("This page failed", f"{type(exc).__name__}: {exc}").encode()
            )
        self._send(page, send_body)

    def _send(self, page: Page, send_body: bool, extra: dict[str, str] | None = None) -> None:
        self.send_response(page.status)
        headers = {
            "Content-Type": page.content_type,
            "Content-Length": str(len(page.body)),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Content-Security-Policy": REPORT_POLICY if page.report else PAGE_POLICY,
            **(extra or {}),
        }
        if page.location:
            headers["Location"] = page.location
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if send_body:
            self.wfile.write(page.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return  # quiet: the terminal shows the URL, not every request


def make_server(site: Site, host: str = "127.0.0.1", port: int = 0) -> FleetServer:
    return FleetServer(site, host, port)
