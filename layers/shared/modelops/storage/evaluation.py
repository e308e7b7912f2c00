"""Evaluation rows the platform keeps for the promotion gate (docs/convert.md "Which rows").

- ``evaluation/{model}/heldout/{sha256}.csv``: the evaluation rows of each accepted dataset
  (train_trigger writes them, create-only; the SHA-256 of the bytes is the key).
- ``evaluation/{model}/pinned/{sha256}.csv`` + ``pinned.json``: the owner's pinned evaluation set
  (``datasets/{model}/eval/*.csv``), as validated; the pointer names the one in force.

(RegistryBucket; out of the training role's and predict's reach.)

Every CSV has a header row: the spec's feature columns in order, then the target.
The gate reads them; reads are checked against the SHA-256 in the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from modelops.domain.errors import IntegrityError
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore


class EvaluationStore:
    """The registry bucket's ``evaluation/{model}/`` prefix."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    # ------------------------------------------------------------------ writes (train_trigger)
    def put_heldout(self, model: str, body: bytes) -> tuple[str, str]:
        """Store one dataset's evaluation rows; returns ``(key, sha256)``. The same bytes are stored once."""
        digest = hashlib.sha256(body).hexdigest()
        key = keys.heldout_rows(model, digest)
        self.objects.create(key, body, content_type="text/csv")
        return key, digest

    def set_pinned(self, model: str, body: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        """Store a validated pinned set and point ``pinned.json`` at it (the newest upload wins)."""
        digest = hashlib.sha256(body).hexdigest()
        key = keys.pinned_rows(model, digest)
        self.objects.create(key, body, content_type="text/csv")
        doc = {**meta, "sha256": digest, "key": key}
        self.objects.put_json(keys.pinned_pointer(model), doc)
        return doc

    # ------------------------------------------------------------------ reads (the gate, the CLI)
    def pinned(self, model: str) -> dict[str, Any] | None:
        got = self.objects.get_json(keys.pinned_pointer(model))
        return None if got is None else dict(got[0])

    def heldout_keys(self, model: str) -> list[str]:
        return sorted(
            o["Key"]
            for o in self.objects.iter_keys(keys.heldout_prefix(model))
            if o.get("Key", "").endswith(".csv")
        )

    def read(self, key: str) -> bytes:
        """A stored CSV, verified against the SHA-256 its key names."""
        body = self.objects.get_bytes(key)
        if body is None:
            raise IntegrityError(f"evaluation rows {key} are missing")
        digest = key.rsplit("/", 1)[-1].removesuffix(".csv")
        if hashlib.sha256(body).hexdigest() != digest:
            raise IntegrityError(f"evaluation rows {key} do not match their SHA-256")
        return body

    @staticmethod
    def describe(doc: dict[str, Any]) -> str:
        return json.dumps(doc, sort_keys=True)

    # ------------------------------------------------------------------ file writes (train_trigger)
    def _create_file(self, key: str, path: str | os.PathLike[str]) -> bool:
        """Create ``key`` from a local file, streamed (``If-None-Match: *``); False when it existed."""
        return self.objects.create_file(key, path, "text/csv") is not None

    def put_heldout_file(self, model: str, path: str | os.PathLike[str], digest: str) -> str:
        """:meth:`put_heldout` from a local file whose SHA-256 is ``digest``; returns the key."""
        key = keys.heldout_rows(model, digest)
        self._create_file(key, path)
        return key

    def set_pinned_file(
        self, model: str, path: str | os.PathLike[str], digest: str, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """:meth:`set_pinned` from a local file whose SHA-256 is ``digest``."""
        key = keys.pinned_rows(model, digest)
        self._create_file(key, path)
        doc = {**meta, "sha256": digest, "key": key}
        self.objects.put_json(keys.pinned_pointer(model), doc)
        return doc
