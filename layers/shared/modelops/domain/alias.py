"""The alias document (``models/{model}/aliases/{alias}.json``, docs/registry.md): which version an alias
serves, the version before it (for rollback) and an optional canary. Parsing and validation only; the
registry store reads and writes it, :mod:`modelops.domain.canary` decides what to write."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelops.domain.errors import CorruptDocumentError

PRODUCTION = "production"
"""The alias predict serves by default and the promotion gate moves."""
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}\Z")


@dataclass
class AliasDoc:
    alias: str
    version: int
    previous: int | None = None
    canary: dict[str, Any] | None = None  # {"version": int, "weight": float}
    updated_at: str = ""
    updated_by: str = ""
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "alias": self.alias,
            "version": self.version,
            "previous": self.previous,
            "canary": self.canary,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "reason": self.reason,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_doc(cls, model: str, alias: str, doc: Any) -> AliasDoc:
        try:
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            version = doc["version"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise ValueError("version must be a positive integer")
            prev = doc.get("previous")
            if prev is not None and (not isinstance(prev, int) or isinstance(prev, bool) or prev < 1):
                raise ValueError("previous must be a positive integer or null")
            canary = doc.get("canary")
            if canary is not None:
                cv, cw = canary["version"], float(canary["weight"])
                if not isinstance(cv, int) or isinstance(cv, bool) or cv < 1 or not 0.0 < cw < 1.0:
                    raise ValueError("canary needs a positive integer version and a weight in (0, 1)")
                canary = {"version": cv, "weight": cw}
            known = {"alias", "version", "previous", "canary", "updated_at", "updated_by", "reason"}
            return cls(
                alias=alias,
                version=version,
                previous=prev,
                canary=canary,
                updated_at=str(doc.get("updated_at", "")),
                updated_by=str(doc.get("updated_by", "")),
                reason=str(doc.get("reason", "")),
                extra={k: v for k, v in doc.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDocumentError(f"alias {alias!r} of {model} is malformed: {exc}") from exc


AliasMutation = Callable[[AliasDoc | None], AliasDoc | None]
"""Given the current alias (or None), return the new one, or None to leave it as it is."""
