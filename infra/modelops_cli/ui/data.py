"""What the fleet page shows, read from the registry bucket (through :mod:`modelops.storage`) and
CloudWatch: the pages' dicts (:mod:`modelops_cli.ui.pages` renders them). Read-only; no database of
its own: the registry and the monitor's reports are the data.

A document that cannot be read (a corrupt manifest, alias, history entry or report) becomes
``{"error": ...}`` in its place; only a failure to list the registry at all raises.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops.domain.errors import InvalidNameError, ModelOpsError
from modelops.domain.spec import check_model_name
from modelops.storage import fleet
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore
from modelops_cli.status import is_stack_alarm
from modelops_cli.ui.pages import TOP_FEATURES, summarise_window

WINDOWS = 168
"""The drift page's windows by default: the last week of hourly runs."""
_CACHE = 512


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FleetData:
    """The fleet page's reads. ``cloudwatch``: a client whose DescribeAlarms lists the stack's alarms
    (None: alarms are not shown). A window's ``report.json`` never changes once written, so its summary
    is kept (``_CACHE`` of them) for the live server's next request."""

    registry: Registry
    cloudwatch: Any | None = None
    stack: str | None = None
    source: str = ""
    windows: int = WINDOWS
    top: int = TOP_FEATURES
    clock: Callable[[], str] = _now
    _summaries: OrderedDict[tuple[str, str], dict[str, Any]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def reports(self) -> ReportStore:
        return ReportStore(self.registry.objects)

    def _head(self) -> dict[str, Any]:
        return {"source": self.source, "generated_at": self.clock()}

    # ------------------------------------------------------------------ the fleet
    def fleet(self) -> dict[str, Any]:
        return {
            **self._head(),
            "models": [self._model_row(m) for m in self.registry.list_models()],
            "alarms": self.alarms(),
        }

    def _model_row(self, name: str) -> dict[str, Any]:
        try:
            check_model_name(name)
        except InvalidNameError as exc:
            return {"model": name, "invalid": True, "error": str(exc)}
        entry: dict[str, Any] = {"model": name, "versions": []}
        try:
            entry["versions"] = self.registry.list_versions(name)
            aliases = fleet.alias_documents(self.registry, name)
        except ModelOpsError as exc:
            entry["error"] = str(exc)
            aliases = {}
        prod = aliases.get("production")
        if prod is not None and prod.get("error"):
            entry["error"] = f"production alias: {prod['error']}"
        elif prod is not None:
            entry["production"] = self._summary(name, int(prod["version"]))
            canary = prod.get("canary")
            if canary:
                entry["canary"] = {
                    **self._summary(name, int(canary["version"])),
                    "weight": float(canary["weight"]),
                }
        mon = fleet.latest_monitor(self.reports, name)
        entry["monitor"] = mon
        entry["monitor_stamp"] = fleet.window_of_uri(mon.get("report_html")) if mon else None
        return entry

    def _summary(self, model: str, version: int) -> dict[str, Any]:
        try:
            m = self.registry.get_manifest(model, version)
        except ModelOpsError as exc:
            return {"version": version, "error": str(exc)}
        return {"version": version, "metrics": m.get("metrics"), "created_at": m.created_at}

    def alarms(self) -> dict[str, Any]:
        if self.cloudwatch is None:
            return {"items": [], "scope": "alarms are not read (no CloudWatch client)"}
        scope = (
            f"Stack {self.stack}'s alarms. They watch the stack, not one model (the drift alarm watches "
            "the fleet's worst PSI ratio): each model's own state is its last monitor run above."
            if self.stack
            else "Every open alarm of the account and region (no stack named)."
        )
        try:
            items = fleet.open_alarms(self.cloudwatch)
        except Exception as exc:  # noqa: BLE001 - CloudWatch refused or failed: the fleet still renders
            return {"items": [], "scope": scope, "error": f"the alarms could not be read: {exc}"}
        if self.stack:
            items = [a for a in items if is_stack_alarm(a["name"], self.stack)]
        return {"items": items, "scope": scope}

    # ------------------------------------------------------------------ a model
    def exists(self, model: str) -> bool:
        try:
            return self.registry.model_exists(model)
        except InvalidNameError:
            return False

    def model(self, name: str) -> dict[str, Any]:
        return {
            **self._head(),
            "model": name,
            "versions": fleet.version_manifests(self.registry, name),
            "aliases": fleet.alias_documents(self.registry, name),
            "history": fleet.alias_history(self.registry, name),
            "monitor": fleet.latest_monitor(self.reports, name),
        }

    # ------------------------------------------------------------------ drift over time
    def drift(self, name: str) -> dict[str, Any]:
        stamps = fleet.monitor_windows(self.reports, name, self.windows)
        return {
            **self._head(),
            "model": name,
            "limit": self.windows,
            "top": self.top,
            "windows": [self._window(name, s) for s in stamps],
        }

    def _window(self, model: str, stamp: str) -> dict[str, Any]:
        with self._lock:
            cached = self._summaries.get((model, stamp))
        if cached is not None:
            return {"stamp": stamp, "report": cached}
        try:
            doc = fleet.monitor_report(self.reports, model, stamp)
            if doc is None:
                return {"stamp": stamp, "error": "report.json is missing"}
            summary = summarise_window(doc)
        except ModelOpsError as exc:
            return {"stamp": stamp, "error": str(exc)}
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            return {"stamp": stamp, "error": f"report.json of window {stamp} is malformed: {exc}"}
        with self._lock:
            self._summaries[(model, stamp)] = summary
            while len(self._summaries) > _CACHE:
                self._summaries.popitem(last=False)
        return {"stamp": stamp, "report": summary}

    def report_html(self, model: str, stamp: str) -> bytes | None:
        return fleet.monitor_report_html(self.reports, model, stamp)
