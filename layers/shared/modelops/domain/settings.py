"""Per-model monitoring settings changed without retraining (issue 18, item 4).

A version's manifest keeps the ``spec.monitoring`` it was trained with; those are its defaults. The
model's settings document (``models/{model}/config.json`` in the registry bucket, moved by
compare-and-swap like an alias, :mod:`modelops.storage.settings`) holds *overrides*: only the fields
someone set. :func:`effective` merges the two, field by field, and says where each value came from.

Document::

    {"model": "demo", "revision": 3, "settings": {"psi_threshold": 0.3, "label_window_days": 14},
     "updated_at": "...", "updated_by": "...", "reason": "..."}

Pure: no AWS, no clock (the caller stamps ``updated_at``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops.domain.encoding import NEW_CATEGORY_THRESHOLD
from modelops.domain.errors import SettingsError as SettingsError  # re-exported: callers catch it here

SCHEMA_VERSION = 1
LABEL_WINDOW_DAYS = 7
"""Default of ``label_window_days``: late labels are matched to predictions of this many days."""
MAX_LABEL_WINDOW_DAYS = 31


@dataclass(frozen=True)
class Field:
    name: str
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    text: str = ""

    def check(self, value: Any) -> Any:
        """The value, validated (a clear :class:`SettingsError` naming the field otherwise)."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingsError(f"{self.name} must be true or false, not {_show(value)}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{self.name} must be a number, not {_show(value)}")
        if self.kind is int and (not float(value).is_integer()):
            raise SettingsError(f"{self.name} must be a whole number, not {_show(value)}")
        if not math.isfinite(float(value)):
            raise SettingsError(f"{self.name} must be finite")
        low_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        high_bad = self.high is not None and value > self.high
        if low_bad or high_bad:
            raise SettingsError(f"{self.name} must be {self.text}, not {_show(value)}")
        return int(value) if self.kind is int else float(value)


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("psi_threshold", float, 0.2, 0.0, 10.0, low_open=True, text="above 0 and at most 10"),
        Field(
            "new_category_threshold",
            float,
            NEW_CATEGORY_THRESHOLD,
            0.0,
            1.0,
            low_open=True,
            text="above 0 and at most 1",
        ),
        Field("capture_sample_rate", float, 1.0, 0.0, 1.0, text="from 0 to 1"),
        Field("retrain_on_drift", bool, False),
        Field(
            "label_window_days",
            int,
            LABEL_WINDOW_DAYS,
            1,
            MAX_LABEL_WINDOW_DAYS,
            text=f"a whole number of days from 1 to {MAX_LABEL_WINDOW_DAYS}",
        ),
    )
}
"""The settings, their types, defaults and ranges (the ranges of ``spec.monitoring``'s fields)."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "\u2026"


def check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validated changes: ``{field: value}`` sets a field, ``{field: None}`` removes its override (back
    to the version's default). An unknown field or a bad value raises :class:`SettingsError`."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        spec = FIELDS.get(name)
        if spec is None:
            raise SettingsError(f"unknown setting {_show(name)}; known: {', '.join(FIELDS)}")
        out[name] = None if value is None else spec.check(value)
    return out


def parse_document(model: str, doc: Any) -> dict[str, Any]:
    """The overrides of a stored settings document; :class:`SettingsError` when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
        raise SettingsError(f"settings document of {model} is malformed: no settings object")
    if doc.get("model") != model:
        raise SettingsError(f"settings document of {model} names another model")
    try:
        got = check_changes(doc["settings"])
    except SettingsError as exc:
        raise SettingsError(f"settings document of {model} is malformed: {exc}") from None
    return {k: v for k, v in got.items() if v is not None}


def apply(
    model: str,
    current: Mapping[str, Any] | None,
    changes: Mapping[str, Any],
    *,
    at: str,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    """The next document: ``current``'s overrides (a parsed document, or None) with ``changes``
    (already :func:`check_changes`-ed) applied, the revision one higher."""
    overrides = dict(parse_document(model, current)) if current is not None else {}
    for name, value in changes.items():
        if value is None:
            overrides.pop(name, None)
        else:
            overrides[name] = value
    revision = int(current.get("revision", 0)) if isinstance(current, Mapping) else 0
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "revision": revision + 1,
        "settings": dict(sorted(overrides.items())),
        "updated_at": at,
        "updated_by": actor,
        "reason": reason,
    }


def manifest_defaults(spec_monitoring: Mapping[str, Any] | None) -> dict[str, Any]:
    """A version's defaults: its ``spec.monitoring`` values that pass the checks (a field the spec of
    that time did not have, or a value it did not check, falls back to the built-in default)."""
    out: dict[str, Any] = {}
    for name, spec in FIELDS.items():
        value = (spec_monitoring or {}).get(name) if isinstance(spec_monitoring, Mapping) else None
        try:
            out[name] = spec.default if value is None else spec.check(value)
        except SettingsError:
            out[name] = spec.default
    return out


def effective(
    spec_monitoring: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, sources)``: each field's value in force and where it came from: ``settings`` (the
    model's document), ``manifest`` (the version's spec) or ``default``."""
    base = manifest_defaults(spec_monitoring)
    spec_given = spec_monitoring if isinstance(spec_monitoring, Mapping) else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        if overrides and name in overrides:
            values[name], sources[name] = overrides[name], "settings"
        else:
            values[name] = base[name]
            sources[name] = "manifest" if spec_given.get(name) is not None else "default"
    return values, sources


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` of the overrides that changed (a history entry's body)."""
    names = sorted(set(old) | set(new))
    return {n: {"from": old.get(n), "to": new.get(n)} for n in names if old.get(n) != new.get(n)}
