"""The fleet view: every model's versions, aliases, metrics, last monitor result and open alarms.

Used by ``modelops status`` and ``modelops ui`` (the fleet page, which also reads each version's
manifest, the alias history and the monitor's windows through the functions at the end); the same
figures are on the CloudWatch dashboard in template.yaml.
"""

from __future__ import annotations

import re
from typing import Any

from modelops.domain.errors import (
    CorruptDocumentError,
    InvalidNameError,
    ModelOpsError,
    VersionNotFoundError,
)
from modelops.domain.spec import check_model_name
from modelops.storage import keys
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore


def latest_monitor(reports: ReportStore, model: str) -> dict[str, Any] | None:
    """``monitoring/{model}/latest.json`` written by the monitor, None when there is none yet, or
    ``{"error": ...}`` when it cannot be read as a JSON object."""
    try:
        return reports.latest(model)
    except CorruptDocumentError as exc:
        return {"error": str(exc)}


def _version_summary(reg: Registry, model: str, version: int) -> dict[str, Any]:
    try:
        m = reg.get_manifest(model, version)
    except (VersionNotFoundError, CorruptDocumentError) as exc:
        return {"version": version, "error": str(exc)}
    return {"version": version, "metrics": m.get("metrics"), "created_at": m.created_at}


def open_alarms(cloudwatch: Any) -> list[dict[str, Any]]:
    out = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(StateValue="ALARM"):
        for a in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            out.append(
                {
                    "name": a["AlarmName"],
                    "reason": a.get("StateReason", ""),
                    "since": a.get("StateUpdatedTimestamp"),
                }
            )
    return out


def fleet_status(reg: Registry, cloudwatch: Any) -> dict[str, Any]:
    """Every model of the registry (versions, production and canary with their metrics, last monitor
    result) and the open CloudWatch alarms."""
    reports = ReportStore(reg.objects)
    models = []
    for name in reg.list_models():
        entry: dict[str, Any] = {"model": name, "versions": reg.list_versions(name)}
        try:
            aliases = reg.list_aliases(name)
        except ModelOpsError as exc:
            entry["error"] = str(exc)
            aliases = {}
        prod = aliases.get("production")
        if prod is not None:
            entry["production"] = _version_summary(reg, name, prod.version)
            if prod.canary:
                entry["canary"] = {
                    **_version_summary(reg, name, int(prod.canary["version"])),
                    "weight": float(prod.canary["weight"]),
                }
        entry["aliases"] = {a: d.version for a, d in aliases.items()}
        entry["monitor"] = latest_monitor(reports, name)
        models.append(entry)
    return {"models": models, "alarms": open_alarms(cloudwatch)}


# ---------------------------------------------------------------------------- the fleet page's reads
# ``modelops ui`` (infra/modelops_cli/ui) draws its pages from these: read-only, and a document that
# cannot be read is returned as ``{"error": ...}`` in its place so that the rest of the page renders.
WINDOW_STAMP_RE = re.compile(r"^\d{8}T\d{6}Z\Z")
"""A monitor window's folder name (:func:`modelops.domain.report.stamp_of`)."""


def version_manifests(reg: Registry, model: str) -> list[dict[str, Any]]:
    """Every version of ``model``, oldest first: ``{"version", "manifest"}`` (the manifest's document),
    or ``{"version", "error"}`` when it cannot be read or is malformed."""
    out: list[dict[str, Any]] = []
    for version in reg.list_versions(model):
        try:
            out.append({"version": version, "manifest": reg.get_manifest(model, version).doc})
        except (VersionNotFoundError, CorruptDocumentError) as exc:
            out.append({"version": version, "error": str(exc)})
    return out


def alias_documents(reg: Registry, model: str) -> dict[str, dict[str, Any]]:
    """Every alias of ``model``: its document, or ``{"error": ...}`` when it is malformed (where
    :meth:`Registry.list_aliases` leaves such an alias out)."""
    prefix = keys.aliases_prefix(check_model_name(model))
    out: dict[str, dict[str, Any]] = {}
    for obj in reg.objects.iter_keys(prefix):
        name = str(obj.get("Key", ""))[len(prefix) :]
        if not name.endswith(".json") or "/" in name:
            continue
        alias = name[: -len(".json")]
        try:
            out[alias] = reg.get_alias(model, alias)[0].to_dict()
        except ModelOpsError as exc:
            out[alias] = {"alias": alias, "error": str(exc)}
    return out


def alias_history(reg: Registry, model: str, limit: int = 500) -> list[dict[str, Any]]:
    """The history of every alias of ``model`` (moves, conflicts and the gate's decisions, ``kind:
    "gate"``), oldest first, the last ``limit`` entries. An entry that is not a JSON object is
    ``{"alias", "error", "at"}`` (its time from its key)."""
    prefix = keys.history_prefix(check_model_name(model))
    found = sorted(
        (str(o["Key"]) for o in reg.objects.iter_keys(prefix) if str(o.get("Key", "")).endswith(".json")),
        key=lambda k: k.rsplit("/", 1)[-1],
    )[-limit:]
    out: list[dict[str, Any]] = []
    for key in found:
        alias = key[len(prefix) :].split("/", 1)[0]
        try:
            got = reg.objects.get_json(key)
            if got is not None and not isinstance(got[0], dict):
                raise CorruptDocumentError(f"{key.rsplit('/', 1)[-1]} is not a JSON object")
        except CorruptDocumentError as exc:
            out.append({"alias": alias, "error": str(exc), "at": _stamp_time(key.rsplit("/", 1)[-1])})
            continue
        if got is not None:  # None: deleted since it was listed
            out.append(got[0])
    out.sort(key=lambda e: str(e.get("at", "")))
    return out


def _stamp_time(name: str) -> str:
    """``20261201T165300123456Z-id.json`` -> ``2026-12-01T16:53:00.123456Z`` (a history key's time)."""
    s = name.split("-", 1)[0]
    if not re.fullmatch(r"\d{8}T\d{12}Z", s):
        return ""
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}.{s[15:21]}Z"


def monitor_windows(reports: ReportStore, model: str, limit: int | None = None) -> list[str]:
    """The stamps of ``model``'s monitor windows (``monitoring/{model}/{stamp}/``), oldest first; with
    ``limit``, the last ``limit``."""
    prefix = keys.monitoring_prefix(check_model_name(model))
    stamps = sorted(
        name
        for e in reports.objects.iter_keys(prefix, delimiter="/")
        if "Prefix" in e and WINDOW_STAMP_RE.match(name := str(e["Prefix"])[len(prefix) :].rstrip("/"))
    )
    return stamps[-limit:] if limit else stamps


def _window_key(model: str, stamp: str, name: str) -> str:
    if not WINDOW_STAMP_RE.match(stamp):
        raise InvalidNameError(f"invalid monitor window {stamp[:40]!r}")
    return keys.monitoring_window(check_model_name(model), stamp) + name


def monitor_report(reports: ReportStore, model: str, stamp: str) -> dict[str, Any] | None:
    """One window's ``report.json``; None when it is missing. Not a JSON object:
    :class:`CorruptDocumentError`."""
    got = reports.objects.get_json(_window_key(model, stamp, "report.json"))
    if got is None:
        return None
    if not isinstance(got[0], dict):
        raise CorruptDocumentError(f"the report of {model} window {stamp} is not a JSON object")
    return got[0]


def monitor_report_html(reports: ReportStore, model: str, stamp: str) -> bytes | None:
    """One window's ``report.html`` as the monitor wrote it; None when it is missing."""
    return reports.objects.get_bytes(_window_key(model, stamp, "report.html"))


def window_of_uri(uri: Any) -> str | None:
    """The window stamp of a report's URI (``s3://bucket/monitoring/{model}/{stamp}/report.html``)."""
    parts = str(uri or "").rsplit("/", 2)
    return parts[1] if len(parts) == 3 and WINDOW_STAMP_RE.match(parts[1]) else None
