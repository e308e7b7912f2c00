"""The fleet site: a path in, a page out (:meth:`Site.get`, what the live server answers), and the
whole site written as files (:meth:`Site.build`, ``modelops ui build``). Both render the same pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.domain.errors import ModelOpsError
from modelops_cli.ui import assets, pages
from modelops_cli.ui.data import FleetData

HTML = "text/html; charset=utf-8"
_MODEL = r"(?P<model>[a-z0-9][a-z0-9-]{0,39})"
_ROUTES = [
    (re.compile(r"^/(index\.html)?$"), "fleet"),
    (re.compile(rf"^/models/{_MODEL}/(index\.html)?$"), "model"),
    (re.compile(rf"^/models/{_MODEL}$"), "model_slash"),
    (re.compile(rf"^/models/{_MODEL}/drift\.html$"), "drift"),
    (re.compile(rf"^/models/{_MODEL}/reports/(?P<stamp>\d{{8}}T\d{{6}}Z)/report\.html$"), "report"),
]
STATIC = {
    "/assets/style.css": ("text/css; charset=utf-8", assets.STYLE.encode()),
    "/assets/app.js": ("text/javascript; charset=utf-8", assets.SEARCH_JS.encode()),
    "/favicon.ico": ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>'),
}


@dataclass(frozen=True)
class Page:
    status: int
    content_type: str
    body: bytes
    location: str | None = None
    report: bool = False
    """The monitor's own report (served as it was written, under a stricter content policy)."""


def _html(status: int, text: str) -> Page:
    return Page(status, HTML, text.encode())


class Site:
    def __init__(self, data: FleetData) -> None:
        self.data = data

    def get(self, path: str) -> Page:
        """The page at ``path`` (the URL's path, without its query). 404 for anything else; 503 when
        the registry cannot be listed at all."""
        if path in STATIC:
            ctype, body = STATIC[path]
            return Page(200, ctype, body)
        for pattern, name in _ROUTES:
            m = pattern.match(path)
            if m:
                try:
                    return self._route(name, **m.groupdict())
                except ModelOpsError as exc:
                    return _html(503, pages.error_page("The registry cannot be read", f"{exc.code}: {exc}"))
        return _html(404, pages.error_page("Not found", f"there is no page at {path[:200]}"))

    def _route(self, name: str, model: str | None = None, stamp: str | None = None) -> Page:
        if name == "fleet":
            return _html(200, pages.fleet_page(self.data.fleet()))
        assert model is not None
        if not self.data.exists(model):
            return _html(404, pages.error_page("Not found", f"model {model} is not in the registry", depth=2))
        if name == "model_slash":
            return Page(301, HTML, b"", location=f"/models/{model}/")
        if name == "model":
            return _html(200, pages.model_page(self.data.model(model)))
        if name == "drift":
            return _html(200, pages.drift_page(self.data.drift(model)))
        assert stamp is not None
        body = self.data.report_html(model, stamp)
        if body is None:
            return _html(404, _missing_report(model, stamp))
        return Page(200, HTML, body, report=True)

    def build(self, out: Path) -> dict[str, Any]:
        """Write every page under ``out`` (created if needed; files of an earlier build are written over)
        with the same relative links, each window's report copied beside its model's pages."""
        out.mkdir(parents=True, exist_ok=True)
        written = {"pages": 0, "reports": 0, "models": 0}

        def write(rel: str, body: bytes) -> None:
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)

        for rel, (_ctype, body) in STATIC.items():
            if rel.startswith("/assets/"):
                write(rel.lstrip("/"), body)
        fleet = self.data.fleet()
        write("index.html", pages.fleet_page(fleet).encode())
        written["pages"] += 1
        for row in fleet["models"]:
            name = str(row["model"])
            if row.get("invalid") or not self.data.exists(name):
                continue
            write(f"models/{name}/index.html", pages.model_page(self.data.model(name)).encode())
            drift = self.data.drift(name)
            write(f"models/{name}/drift.html", pages.drift_page(drift).encode())
            written["pages"] += 2
            written["models"] += 1
            for w in drift["windows"]:
                stamp = str(w["stamp"])
                html = self.data.report_html(name, stamp)
                write(
                    f"models/{name}/reports/{stamp}/report.html",
                    html if html is not None else _missing_report(name, stamp).encode(),
                )
                written["reports"] += html is not None
        return {"out": str(out.resolve()), "index": str((out / "index.html").resolve()), **written}


def _missing_report(model: str, stamp: str) -> str:
    return pages.error_page(
        "Report missing", f"{model}: window {stamp} has no report.html in the registry bucket", depth=4
    )
