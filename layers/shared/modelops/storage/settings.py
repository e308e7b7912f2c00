"""A model's monitoring settings document in the registry bucket, moved by compare-and-swap.

::

    models/{model}/config.json                          the overrides in force (modelops.domain.settings)
    models/{model}/config-history/{ts}-{id}.json        append-only: every attempt, who, when, old -> new

Like an alias (:meth:`modelops.storage.registry.Registry.update_alias`): created with
``If-None-Match: *``, replaced with ``If-Match`` on the ETag read; a writer that loses the race
re-reads the latest document and applies its changes on top of it (never over it), at most
``retries + 1`` times, then raises :class:`VersionConflictError`. Nothing a winner wrote is lost.

Readers in the stages (the monitor; predict) use :class:`SettingsCache`: one GET per model per TTL
per container; a document that does not parse is reported and the version's defaults stay in force.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from modelops.domain import settings as domain
from modelops.domain.errors import CorruptDocumentError, ModelNotFoundError, VersionConflictError
from modelops.domain.spec import check_model_name
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

CACHE_TTL_SECONDS = 60.0


config_key = keys.model_config
config_history_prefix = keys.model_config_history


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(iso: str) -> str:
    return iso.replace(":", "").replace("-", "").replace(".", "")


class SettingsStore:
    """Read and move ``models/{model}/config.json`` (see the module docstring)."""

    def __init__(
        self,
        objects: ObjectStore,
        *,
        actor: str = "modelops",
        retries: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objects = objects
        self.actor = actor
        self.retries = retries
        self.clock = clock

    def read(self, model: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(document, etag)``; ``(None, None)`` when the model has no settings yet. A document that does
        not parse raises :class:`~modelops.domain.settings.SettingsError`."""
        got = self.objects.get_json(config_key(check_model_name(model)))
        if got is None:
            return None, None
        domain.parse_document(model, got[0])
        return got[0], got[1]

    def overrides(self, model: str) -> dict[str, Any]:
        """The overrides in force (empty when there is no document)."""
        doc, _ = self.read(model)
        return domain.parse_document(model, doc) if doc is not None else {}

    def update(
        self,
        model: str,
        changes: Mapping[str, Any],
        *,
        reason: str = "set by hand",
        actor: str | None = None,
        before_write: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` (``{field: value}``; None removes an override) by compare-and-swap and
        return the new document. The model must be in the registry (:class:`ModelNotFoundError`);
        values are checked first (:class:`~modelops.domain.settings.SettingsError`). ``before_write``
        (tests) runs between the read and the conditional write of each attempt."""
        check_model_name(model)
        changes = domain.check_changes(changes)
        if not any(True for _ in self.objects.iter_keys(keys.versions_prefix(model))):
            raise ModelNotFoundError(f"model {model!r} is not in the registry")
        actor = actor or self.actor
        key = config_key(model)
        for attempt in range(self.retries + 1):
            got = self.objects.get_json(key)
            current = got[0] if got else None
            etag = got[1] if got else None
            if current is not None:
                domain.parse_document(model, current)  # never build on what readers would refuse
            at = _now_iso(self.clock())
            new = domain.apply(model, current, changes, at=at, actor=actor, reason=reason)
            if before_write is not None:
                before_write(attempt)
            body = json.dumps(new, sort_keys=True, indent=1).encode()
            ok = self.objects.create(key, body) if etag is None else self.objects.replace(key, body, etag)
            old = current.get("settings", {}) if current else {}
            self._history(model, at, actor, reason, old, new, "applied" if ok else "conflict")
            if ok:
                return new
        raise VersionConflictError(
            f"settings of {model} kept changing under us; gave up after {self.retries + 1} attempts "
            "(nothing was written by this change: read them again and retry)"
        )

    def _history(
        self,
        model: str,
        at: str,
        actor: str,
        reason: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        outcome: str,
    ) -> None:
        entry = {
            "at": at,
            "actor": actor,
            "reason": reason,
            "outcome": outcome,
            "revision": new["revision"],
            "from": dict(old),
            "to": dict(new["settings"]),
            "changes": domain.diff(old, new["settings"]),
        }
        key = f"{config_history_prefix(model)}{_stamp(at)}-{uuid.uuid4().hex[:12]}.json"
        self.objects.create(key, json.dumps(entry, sort_keys=True).encode())

    def history(self, model: str) -> list[dict[str, Any]]:
        """Every attempt, oldest first (unreadable entries are skipped)."""
        out = []
        for obj in self.objects.iter_keys(config_history_prefix(check_model_name(model))):
            if "Key" not in obj:
                continue
            try:
                got = self.objects.get_json(obj["Key"])
            except CorruptDocumentError:
                continue
            if got and isinstance(got[0], dict):
                out.append(got[0])
        out.sort(key=lambda e: str(e.get("at", "")))
        return out


class SettingsCache:
    """Overrides per model, read at most once per ``ttl`` seconds per container. A read that fails
    because the document is corrupt gives no overrides and keeps the error (``problem``) for the caller
    to report; the version's defaults stay in force."""

    def __init__(
        self,
        store: SettingsStore,
        ttl: float = CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any], str | None]] = {}
        self._lock = threading.Lock()
        self._reading: dict[str, threading.Thread] = {}

    def get(self, model: str) -> tuple[dict[str, Any], str | None]:
        """``(overrides, problem)``."""
        now = self.clock()
        hit = self._cache.get(model)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        try:
            got, problem = self.store.overrides(model), None
        except (domain.SettingsError, CorruptDocumentError) as exc:
            got, problem = {}, f"settings_error: {exc}"
        except Exception as exc:  # noqa: BLE001 - unreadable now (denied, throttled): the defaults hold
            got, problem = {}, f"settings_unreadable: {type(exc).__name__}: {str(exc)[:200]}"
        self._cache[model] = (now, got, problem)
        return got, problem

    def get_nowait(self, model: str) -> dict[str, Any]:
        """The overrides as last read, without waiting for S3: a model not read yet, or read more than
        ``ttl`` ago, is read again by a background thread (one at a time per model) and the caller gets
        what is known now (nothing at first: the version's defaults hold until the read lands). For a
        request path that must not wait on a network read (predict)."""
        hit = self._cache.get(model)
        if hit is None or self.clock() - hit[0] >= self.ttl:
            with self._lock:
                start = model not in self._reading
                if start:
                    self._reading[model] = threading.Thread(
                        target=self._read_in_background, args=(model,), name="settings-read", daemon=True
                    )
            if start:
                self._reading[model].start()
        return hit[1] if hit is not None else {}

    def _read_in_background(self, model: str) -> None:
        try:
            self.get(model)
        finally:
            with self._lock:
                self._reading.pop(model, None)

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for the background reads in flight (tests, a SnapStart snapshot)."""
        with self._lock:
            threads = list(self._reading.values())
        for t in threads:
            t.join(timeout)
