"""The fleet view: every model's versions, aliases, metrics, last monitor result and open alarms.

Used by ``modelops status``; the same figures are on the CloudWatch dashboard in template.yaml.
"""

from __future__ import annotations

from typing import Any

from modelops.domain.errors import CorruptDocumentError, ModelOpsError, VersionNotFoundError
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
