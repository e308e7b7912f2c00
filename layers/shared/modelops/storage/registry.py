"""The model registry on S3 (docs/registry.md; docs/contracts.md "Registry").

Layout under the registry bucket (the keys are :mod:`modelops.storage.keys`'s)::

    models/{model}/blobs/sha256/{digest}          artifacts, content-addressed, create-only
    models/{model}/versions/{n}/manifest.json     the commit point, create-only (If-None-Match: *)
    models/{model}/aliases/{alias}.json           moved only by compare-and-swap (If-Match)
    models/{model}/history/{alias}/{ts}-{id}.json append-only record of every alias move attempt
    models/{model}/dedup/{sha256(key)}.json       publish claims: one version per dedup key (job)

Built on :class:`~modelops.storage.s3.ObjectStore` (transient S3 failures raise
``RegistryUnavailableError``). Every artifact read is checked against the manifest's SHA-256 before it
is returned. The alias document and the decisions of what to write in it are the domain's
(:mod:`modelops.domain.alias`, :mod:`modelops.domain.canary`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.aws import AwsError, ErrorKind, classify
from modelops.domain import canary
from modelops.domain.alias import ALIAS_RE, PRODUCTION, AliasDoc, AliasMutation
from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    PublishInProgressError,
    VersionConflictError,
    VersionNotFoundError,
)
from modelops.domain.spec import check_model_name
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MANIFEST_SCHEMA_VERSION = 1
CLAIM_STALE_SECONDS = 900.0
"""Lambda's longest timeout: a publish claim older than this was abandoned by a writer that died."""
CHUNK = 1024 * 1024
__all__ = ["ALIAS_RE", "PRODUCTION", "AliasDoc", "AliasMutation", "ArtifactRef", "Manifest", "Registry"]


def _stamp(iso: str) -> str:
    """A history key's time part: ``2026-12-01T16:53:00.123456Z`` -> ``20261201T165300123456Z``."""
    return iso.replace(":", "").replace("-", "").replace(".", "")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact of a version: its role (``tflite``, ``tflite_int8``, ``savedmodel``, ``baseline``...)."""

    role: str
    file: str
    key: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "key": self.key, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    model: str
    version: int
    artifacts: dict[str, ArtifactRef]
    doc: dict[str, Any]

    @property
    def created_at(self) -> str:
        return str(self.doc.get("created_at", ""))

    def get(self, key: str, default: Any = None) -> Any:
        return self.doc.get(key, default)

    @classmethod
    def from_doc(cls, model: str, version: int, doc: Any) -> Manifest:
        try:
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            if doc.get("model") != model or doc.get("version") != version:
                raise ValueError("model/version fields do not match the key")
            arts = {}
            for role, a in dict(doc["artifacts"]).items():
                sha = str(a["sha256"])
                if not re.fullmatch(r"[0-9a-f]{64}", sha):
                    raise ValueError(f"artifact {role}: bad sha256")
                arts[role] = ArtifactRef(role, str(a["file"]), str(a["key"]), int(a["size"]), sha)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDocumentError(f"manifest of {model} v{version} is malformed: {exc}") from exc
        return cls(model, version, arts, doc)


class Registry:
    """The S3 model registry on one bucket. Takes its S3 client (or an :class:`ObjectStore`, see
    :meth:`over`) as an argument; builds none itself."""

    def __init__(
        self,
        s3: S3Client | None,
        bucket: str,
        *,
        actor: str = "modelops",
        alias_retries: int = 3,
        clock: Callable[[], float] = time.time,
        objects: ObjectStore | None = None,
    ):
        self.objects = objects if objects is not None else ObjectStore(s3, bucket)
        self.bucket = self.objects.bucket
        self.actor = actor
        self.alias_retries = alias_retries
        self.clock = clock

    @classmethod
    def over(cls, objects: ObjectStore, **kwargs: Any) -> Registry:
        """A registry on an existing object store (the one the job records use, or a test's fake)."""
        return cls(objects.s3, objects.bucket, objects=objects, **kwargs)

    # ------------------------------------------------------------------ keys
    @staticmethod
    def model_prefix(model: str) -> str:
        return keys.model_prefix(check_model_name(model))

    def blob_key(self, model: str, digest: str) -> str:
        return keys.blob(check_model_name(model), digest)

    def manifest_key(self, model: str, version: int) -> str:
        return keys.manifest(check_model_name(model), version)

    def alias_key(self, model: str, alias: str) -> str:
        if not ALIAS_RE.match(alias):
            raise InvalidNameError(f"invalid alias name {alias[:40]!r}: lower-case letters, digits, _ and -")
        return keys.alias(check_model_name(model), alias)

    # ------------------------------------------------------------------ blobs
    def put_blob(self, model: str, data: bytes) -> tuple[str, str, int]:
        """Store bytes content-addressed. Returns (key, sha256, size). Identical bytes are stored once."""
        digest = sha256_hex(data)
        key = self.blob_key(model, digest)
        if not self.objects.create(key, data, content_type="application/octet-stream"):
            self._verify_existing_blob(key, digest, len(data))
        return key, digest, len(data)

    def put_blob_file(self, model: str, path: str | os.PathLike[str]) -> tuple[str, str, int]:
        digest, size = sha256_file(path)
        key = self.blob_key(model, digest)
        with open(path, "rb") as fh:
            data = fh.read()
        if not self.objects.create(key, data, content_type="application/octet-stream"):
            self._verify_existing_blob(key, digest, size)
        return key, digest, size

    def _verify_existing_blob(self, key: str, digest: str, size: int) -> None:
        head = self.objects.head(key) or {}
        if int(head.get("ContentLength", -1)) != size:
            raise IntegrityError(f"blob {digest[:12]} exists with a different size; it is corrupt")

    # ------------------------------------------------------------------ versions
    def list_models(self) -> list[str]:
        return sorted(
            p["Prefix"].split("/")[1] for p in self.objects.iter_keys(keys.MODELS, "/") if "Prefix" in p
        )

    def list_versions(self, model: str) -> list[int]:
        prefix = keys.versions_prefix(check_model_name(model))
        out = []
        for obj in self.objects.iter_keys(prefix):
            rest = obj.get("Key", "")[len(prefix) :]
            num, _, name = rest.partition("/")
            if name == "manifest.json" and num.isdigit():
                out.append(int(num))
        return sorted(out)

    def model_exists(self, model: str) -> bool:
        return any(True for _ in self.objects.iter_keys(self.model_prefix(model)))

    def _require_model(self, model: str) -> None:
        if not self.model_exists(model):
            raise ModelNotFoundError(f"model {model!r} is not in the registry")

    def _next_version(self, model: str) -> int:
        versions = self.list_versions(model)
        return (versions[-1] + 1) if versions else 1

    def publish_version(
        self,
        model: str,
        artifacts: dict[str, tuple[str, bytes | Path]],
        metadata: dict[str, Any],
        *,
        dedup_key: str | None = None,
        claim_token: str | None = None,
        max_attempts: int = 100,
    ) -> Manifest:
        """Upload artifacts (content-addressed), then create the next version's manifest.

        ``artifacts`` maps role -> (file name, bytes or a path). The manifest is created last with
        ``If-None-Match: *``; a writer that loses the race for n tries n+1 with the same blobs.
        With ``dedup_key`` (for example the training job name), a version already published for
        that key is returned instead of a new one (replays publish once). ``claim_token`` identifies
        the delivery (an EventBridge event id): a retry of the same delivery takes over its own claim.
        """
        check_model_name(model)
        if dedup_key is not None:
            existing = self._claim(model, dedup_key, claim_token)
            if existing is not None:
                return existing
        refs: dict[str, dict[str, Any]] = {}
        for role, (fname, payload) in artifacts.items():
            if isinstance(payload, Path):
                key, digest, size = self.put_blob_file(model, payload)
            else:
                key, digest, size = self.put_blob(model, payload)
            refs[role] = ArtifactRef(role, fname, key, size, digest).to_dict()
        n = self._next_version(model)
        for _ in range(max_attempts):
            doc = dict(metadata)
            doc.update(
                {
                    "schema_version": MANIFEST_SCHEMA_VERSION,
                    "model": model,
                    "version": n,
                    "created_at": now_iso(),
                    "artifacts": refs,
                    "dedup_key": dedup_key,
                }
            )
            body = json.dumps(doc, sort_keys=True, indent=1).encode()
            if self.objects.create(self.manifest_key(model, n), body):
                return Manifest.from_doc(model, n, doc)
            n += 1
        raise VersionConflictError(f"could not allocate a version of {model} after {max_attempts} attempts")

    def _claim(self, model: str, dedup_key: str, token: str | None = None) -> Manifest | None:
        """Reserve ``dedup_key`` before publishing (create-only ``dedup/{sha256(key)}.json``).

        Returns the version already published for the key, if any. A live claim of another writer
        raises ``PublishInProgressError`` (retry later); a claim older than ``CLAIM_STALE_SECONDS``
        (the writer died between claim and manifest) is taken over by compare-and-swap, so exactly
        one replay continues. A claim carrying the same ``token`` (the same delivery, retried after a
        crash) is taken over at once.
        """
        key = keys.publish_claim(check_model_name(model), sha256_hex(dedup_key.encode()))
        body = json.dumps(
            {"dedup_key": dedup_key, "claimed_at": now_iso(), "epoch": self.clock(), "token": token}
        ).encode()
        if self.objects.create(key, body):
            return None
        existing = self.find_version(model, dedup_key)
        if existing is not None:
            return existing
        got = self.objects.get_json(key)
        if got is None:  # the claim vanished (deleted by hand): claim again
            if self.objects.create(key, body):
                return None
            raise PublishInProgressError(f"{model}: another writer is publishing {dedup_key!r}")
        doc, etag = got
        age = self.clock() - float(doc.get("epoch", 0) if isinstance(doc, dict) else 0)
        ours = token is not None and isinstance(doc, dict) and doc.get("token") == token
        if age < CLAIM_STALE_SECONDS and not ours:
            raise PublishInProgressError(
                f"{model}: another writer is publishing {dedup_key!r} ({age:.0f} s ago)"
            )
        if not self.objects.replace(key, body, etag):
            raise PublishInProgressError(f"{model}: another writer took over {dedup_key!r}")
        return None

    def find_version(self, model: str, dedup_key: str) -> Manifest | None:
        """The version published for ``dedup_key``, newest first; None when there is none."""
        for v in reversed(self.list_versions(model)):
            m = self.get_manifest(model, v)
            if m.get("dedup_key") == dedup_key:
                return m
        return None

    def get_manifest(self, model: str, version: int) -> Manifest:
        got = self.objects.get_json(self.manifest_key(model, version))
        if got is None:
            self._require_model(model)
            raise VersionNotFoundError(f"{model} has no version {version}")
        return Manifest.from_doc(model, version, got[0])

    # ------------------------------------------------------------------ artifacts
    def read_artifact(self, manifest: Manifest, role: str) -> bytes:
        """The artifact's bytes, verified against the manifest. A mismatch raises IntegrityError
        and leaves the object where it is for inspection."""
        ref = self._ref(manifest, role)
        obj = self._get_blob(manifest, role, ref)
        data: bytes = obj["Body"].read()
        digest = sha256_hex(data)
        if digest != ref.sha256 or len(data) != ref.size:
            raise IntegrityError(
                f"{manifest.model} v{manifest.version} {role}: SHA-256 {digest[:12]}… does not match "
                f"the manifest's {ref.sha256[:12]}…; not loaded, object kept for inspection"
            )
        return data

    def download_artifact(self, manifest: Manifest, role: str, dest: str | os.PathLike[str]) -> Path:
        """Stream the artifact to ``dest`` (written to a temporary name, renamed when verified)."""
        ref = self._ref(manifest, role)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        h = hashlib.sha256()
        size = 0
        try:
            obj = self._get_blob(manifest, role, ref)
            with open(tmp, "wb") as fh:
                for chunk in obj["Body"].iter_chunks(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
            if h.hexdigest() != ref.sha256 or size != ref.size:
                raise IntegrityError(
                    f"{manifest.model} v{manifest.version} {role}: SHA-256 {h.hexdigest()[:12]}… does not "
                    f"match the manifest's {ref.sha256[:12]}…; not loaded, object kept for inspection"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _get_blob(self, manifest: Manifest, role: str, ref: ArtifactRef) -> dict[str, Any]:
        obj = self.objects.get(ref.key)
        if obj is None:
            raise IntegrityError(
                f"{manifest.model} v{manifest.version} {role}: blob {ref.sha256[:12]}… named by the manifest "
                "is missing from the registry"
            )
        return obj

    @staticmethod
    def _ref(manifest: Manifest, role: str) -> ArtifactRef:
        try:
            return manifest.artifacts[role]
        except KeyError:
            raise VersionNotFoundError(
                f"{manifest.model} v{manifest.version} has no {role} artifact"
            ) from None

    # ------------------------------------------------------------------ aliases
    def get_alias(self, model: str, alias: str = PRODUCTION) -> tuple[AliasDoc, str]:
        got = self.objects.get_json(self.alias_key(model, alias))
        if got is None:
            self._require_model(model)
            raise AliasNotFoundError(f"{model} has no {alias!r} alias")
        return AliasDoc.from_doc(model, alias, got[0]), got[1]

    def get_alias_if_changed(self, model: str, alias: str, etag: str) -> tuple[AliasDoc, str] | None:
        """Conditional GET: None when the alias still has ``etag`` (304)."""
        try:
            got = self.objects.get_json(self.alias_key(model, alias), IfNoneMatch=etag)
        except AwsError as exc:
            if classify(exc) is ErrorKind.NOT_MODIFIED:
                return None
            raise
        if got is None:
            raise AliasNotFoundError(f"{model} has no {alias!r} alias")
        return AliasDoc.from_doc(model, alias, got[0]), got[1]

    def list_aliases(self, model: str) -> dict[str, AliasDoc]:
        prefix = keys.aliases_prefix(check_model_name(model))
        out = {}
        for obj in self.objects.iter_keys(prefix):
            name = obj.get("Key", "")[len(prefix) :]
            if name.endswith(".json"):
                alias = name[: -len(".json")]
                try:
                    out[alias] = self.get_alias(model, alias)[0]
                except (CorruptDocumentError, AliasNotFoundError):
                    continue
        return out

    def resolve(self, model: str, alias: str = PRODUCTION) -> int:
        return self.get_alias(model, alias)[0].version

    def update_alias(
        self, model: str, alias: str, mutate: AliasMutation, *, reason: str, actor: str | None = None
    ) -> AliasDoc | None:
        """Move an alias by compare-and-swap. ``mutate`` is re-run on the fresh document after every
        lost race (so decisions are re-evaluated, never applied blindly). Returns the new document,
        or None when ``mutate`` chose to leave it. Every attempt lands in the history."""
        actor = actor or self.actor
        key = self.alias_key(model, alias)
        for _attempt in range(self.alias_retries + 1):
            got = self.objects.get_json(key)
            current = AliasDoc.from_doc(model, alias, got[0]) if got else None
            etag = got[1] if got else None
            new = mutate(current)
            if new is None:
                return None
            for v in {new.version, *([new.canary["version"]] if new.canary else [])}:
                self.get_manifest(model, int(v))  # raises VersionNotFoundError / ModelNotFoundError
            new.alias = alias
            new.updated_at = now_iso()
            new.updated_by = actor
            new.reason = new.reason or reason
            AliasDoc.from_doc(model, alias, new.to_dict())  # never write what the readers would refuse
            body = json.dumps(new.to_dict(), sort_keys=True).encode()
            ok = self.objects.create(key, body) if etag is None else self.objects.replace(key, body, etag)
            self._history(model, alias, current, new, "applied" if ok else "conflict", new.reason, actor)
            if ok:
                return new
        raise VersionConflictError(
            f"alias {alias!r} of {model} kept changing under us; gave up after {self.alias_retries + 1} attempts"
        )

    def promote(
        self,
        model: str,
        version: int,
        alias: str = PRODUCTION,
        *,
        reason: str = "promote",
        actor: str | None = None,
    ) -> AliasDoc:
        """Point ``alias`` at ``version`` (:func:`modelops.domain.canary.promote`: the version it replaces
        is kept for rollback; promoting the canary's version finishes the canary)."""
        doc = self.update_alias(
            model, alias, lambda cur: canary.promote(cur, version, alias=alias), reason=reason, actor=actor
        )
        assert doc is not None
        return doc

    def rollback(
        self, model: str, alias: str = PRODUCTION, *, reason: str = "rollback", actor: str | None = None
    ) -> AliasDoc:
        """Point ``alias`` back at its previous version (and drop its canary)."""

        def mutate(cur: AliasDoc | None) -> AliasDoc:
            if cur is None:
                raise AliasNotFoundError(f"{model} has no {alias!r} alias to roll back")
            if cur.previous is None:
                raise VersionConflictError(f"{model} {alias} has no previous version to roll back to")
            return AliasDoc(alias=alias, version=cur.previous, previous=cur.version)

        self._require_model(model)
        doc = self.update_alias(model, alias, mutate, reason=reason, actor=actor)
        assert doc is not None
        return doc

    # ------------------------------------------------------------------ history
    def _append_history(self, model: str, alias: str, doc: dict[str, Any]) -> None:
        key = keys.history_entry(
            check_model_name(model), alias, _stamp(str(doc["at"])), uuid.uuid4().hex[:12]
        )
        self.objects.create(key, json.dumps(doc, sort_keys=True).encode())

    def _history(
        self,
        model: str,
        alias: str,
        cur: AliasDoc | None,
        new: AliasDoc,
        outcome: str,
        reason: str,
        actor: str,
    ) -> None:
        entry = {
            "alias": alias,
            "from": cur.version if cur else None,
            "to": new.version,
            "canary": new.canary,
            "outcome": outcome,
            "reason": reason,
            "actor": actor,
            "at": now_iso(),
        }
        self._append_history(model, alias, entry)

    def record_decision(self, model: str, alias: str, entry: dict[str, Any]) -> None:
        """Append a non-move decision (for example "kept production v3") to the alias's history."""
        self._append_history(model, alias, {"alias": alias, "at": now_iso(), "actor": self.actor, **entry})

    def history(self, model: str, alias: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        """The alias's history, oldest first. ``since`` (an ISO time like every ``at``): only entries
        written at or after it, read without fetching the older ones (the key carries its time), so a
        check about one version costs the entries since that version, not the model's whole past."""
        prefix = keys.history_prefix(check_model_name(model), alias)
        floor = _stamp(since) if since else ""
        out = []
        for obj in self.objects.iter_keys(prefix):
            if "Key" not in obj or obj["Key"].rsplit("/", 1)[-1] < floor:
                continue
            got = self.objects.get_json(obj["Key"])
            if got:
                out.append(got[0])
        out.sort(key=lambda e: str(e.get("at", "")))
        return out
