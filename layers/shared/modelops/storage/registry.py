"""The model registry on S3 (see docs/registry.md and DESIGN.md's Registry section).

Layout under the registry bucket::

    models/{model}/blobs/sha256/{digest}          artifacts, content-addressed, create-only
    models/{model}/versions/{n}/manifest.json     the commit point, create-only (If-None-Match: *)
    models/{model}/aliases/{alias}.json           moved only by compare-and-swap (If-Match)
    models/{model}/history/{alias}/{ts}-{id}.json append-only record of every alias move attempt

Every artifact read is checked against the manifest's SHA-256 before it is returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    PublishInProgressError,
    RegistryUnavailableError,
    VersionConflictError,
    VersionNotFoundError,
)
from modelops.domain.spec import check_model_name

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MANIFEST_SCHEMA_VERSION = 1
CLAIM_STALE_SECONDS = 900.0
"""Lambda's longest timeout: a publish claim older than this was abandoned by a writer that died."""
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
CHUNK = 1024 * 1024
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "503", "500", "RequestTimeout"}


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


def _code(exc: ClientError) -> str:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code if code else status


def _is(exc: ClientError, codes: set[str]) -> bool:
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return _code(exc) in codes or status in codes


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


class Registry:
    """The S3 model registry. Takes its S3 client as an argument; builds none itself."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        actor: str = "modelops",
        alias_retries: int = 3,
        clock: Callable[[], float] = time.time,
    ):
        self.s3 = s3
        self.bucket = bucket
        self.actor = actor
        self.alias_retries = alias_retries
        self.clock = clock

    # ------------------------------------------------------------------ keys
    @staticmethod
    def model_prefix(model: str) -> str:
        return f"models/{check_model_name(model)}/"

    def blob_key(self, model: str, digest: str) -> str:
        return f"{self.model_prefix(model)}blobs/sha256/{digest}"

    def manifest_key(self, model: str, version: int) -> str:
        return f"{self.model_prefix(model)}versions/{version}/manifest.json"

    def alias_key(self, model: str, alias: str) -> str:
        if not ALIAS_RE.match(alias):
            raise InvalidNameError(f"invalid alias name {alias[:40]!r}: lower-case letters, digits, _ and -")
        return f"{self.model_prefix(model)}aliases/{alias}.json"

    # ------------------------------------------------------------------ low level
    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _is(exc, _TRANSIENT_CODES):
                raise RegistryUnavailableError(f"S3 is unavailable ({_code(exc)}); try again") from exc
            if _code(exc) == "NoSuchBucket":
                raise RegistryUnavailableError(f"registry bucket {self.bucket!r} does not exist") from exc
            raise

    def _get_json(self, key: str) -> tuple[Any, str] | None:
        try:
            obj = self._call(self.s3.get_object, Key=key)
        except ClientError as exc:
            if _is(exc, _MISSING_CODES):
                return None
            raise
        body = obj["Body"].read()
        try:
            return json.loads(body), str(obj["ETag"])
        except ValueError as exc:
            raise CorruptDocumentError(f"{key.split('/', 2)[-1]} is not valid JSON") from exc

    def _create(self, key: str, body: bytes, content_type: str = "application/json") -> bool:
        """Create ``key`` only if absent. True when we created it, False when it existed."""
        try:
            self._call(
                self.s3.put_object,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
            )
            return True
        except ClientError as exc:
            if _is(exc, _CONFLICT_CODES):
                return False
            raise

    def _iter_keys(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        token = None
        while True:
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(self.s3.list_objects_v2, **kwargs)
            for cp in page.get("CommonPrefixes", []) or []:
                yield {"Prefix": cp["Prefix"]}
            yield from page.get("Contents", []) or []
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    # ------------------------------------------------------------------ blobs
    def put_blob(self, model: str, data: bytes) -> tuple[str, str, int]:
        """Store bytes content-addressed. Returns (key, sha256, size). Identical bytes are stored once."""
        digest = sha256_hex(data)
        key = self.blob_key(model, digest)
        if not self._create(key, data, content_type="application/octet-stream"):
            self._verify_existing_blob(key, digest, len(data))
        return key, digest, len(data)

    def put_blob_file(self, model: str, path: str | os.PathLike[str]) -> tuple[str, str, int]:
        digest, size = sha256_file(path)
        key = self.blob_key(model, digest)
        with open(path, "rb") as fh:
            data = fh.read()
        if not self._create(key, data, content_type="application/octet-stream"):
            self._verify_existing_blob(key, digest, size)
        return key, digest, size

    def _verify_existing_blob(self, key: str, digest: str, size: int) -> None:
        head = self._call(self.s3.head_object, Key=key)
        if int(head.get("ContentLength", -1)) != size:
            raise IntegrityError(f"blob {digest[:12]} exists with a different size; it is corrupt")

    # ------------------------------------------------------------------ versions
    def list_models(self) -> list[str]:
        return sorted(p["Prefix"].split("/")[1] for p in self._iter_keys("models/", "/") if "Prefix" in p)

    def list_versions(self, model: str) -> list[int]:
        prefix = f"{self.model_prefix(model)}versions/"
        out = []
        for obj in self._iter_keys(prefix):
            rest = obj.get("Key", "")[len(prefix) :]
            num, _, name = rest.partition("/")
            if name == "manifest.json" and num.isdigit():
                out.append(int(num))
        return sorted(out)

    def model_exists(self, model: str) -> bool:
        return any(True for _ in self._iter_keys(self.model_prefix(model)))

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
            if self._create(self.manifest_key(model, n), body):
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
        key = f"{self.model_prefix(model)}dedup/{sha256_hex(dedup_key.encode())}.json"
        body = json.dumps(
            {"dedup_key": dedup_key, "claimed_at": now_iso(), "epoch": self.clock(), "token": token}
        ).encode()
        if self._create(key, body):
            return None
        existing = self.find_version(model, dedup_key)
        if existing is not None:
            return existing
        got = self._get_json(key)
        if got is None:  # the claim vanished (deleted by hand): claim again
            if self._create(key, body):
                return None
            raise PublishInProgressError(f"{model}: another writer is publishing {dedup_key!r}")
        doc, etag = got
        age = self.clock() - float(doc.get("epoch", 0) if isinstance(doc, dict) else 0)
        ours = token is not None and isinstance(doc, dict) and doc.get("token") == token
        if age < CLAIM_STALE_SECONDS and not ours:
            raise PublishInProgressError(
                f"{model}: another writer is publishing {dedup_key!r} ({age:.0f} s ago)"
            )
        try:
            self._call(self.s3.put_object, Key=key, Body=body, IfMatch=etag, ContentType="application/json")
        except ClientError as exc:
            if _is(exc, _CONFLICT_CODES | _MISSING_CODES):
                raise PublishInProgressError(f"{model}: another writer took over {dedup_key!r}") from exc
            raise
        return None

    def find_version(self, model: str, dedup_key: str) -> Manifest | None:
        """The version published for ``dedup_key``, newest first; None when there is none."""
        for v in reversed(self.list_versions(model)):
            m = self.get_manifest(model, v)
            if m.get("dedup_key") == dedup_key:
                return m
        return None

    def get_manifest(self, model: str, version: int) -> Manifest:
        got = self._get_json(self.manifest_key(model, version))
        if got is None:
            self._require_model(model)
            raise VersionNotFoundError(f"{model} has no version {version}")
        return Manifest.from_doc(model, version, got[0])

    # ------------------------------------------------------------------ artifacts
    def read_artifact(self, manifest: Manifest, role: str) -> bytes:
        """The artifact's bytes, verified against the manifest. A mismatch raises IntegrityError
        and leaves the object where it is for inspection."""
        ref = self._ref(manifest, role)
        obj = self._call(self.s3.get_object, Key=ref.key)
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
            obj = self._call(self.s3.get_object, Key=ref.key)
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

    @staticmethod
    def _ref(manifest: Manifest, role: str) -> ArtifactRef:
        try:
            return manifest.artifacts[role]
        except KeyError:
            raise VersionNotFoundError(
                f"{manifest.model} v{manifest.version} has no {role} artifact"
            ) from None

    # ------------------------------------------------------------------ aliases
    def get_alias(self, model: str, alias: str = "production") -> tuple[AliasDoc, str]:
        got = self._get_json(self.alias_key(model, alias))
        if got is None:
            self._require_model(model)
            raise AliasNotFoundError(f"{model} has no {alias!r} alias")
        return AliasDoc.from_doc(model, alias, got[0]), got[1]

    def get_alias_if_changed(self, model: str, alias: str, etag: str) -> tuple[AliasDoc, str] | None:
        """Conditional GET: None when the alias still has ``etag`` (304)."""
        try:
            obj = self._call(self.s3.get_object, Key=self.alias_key(model, alias), IfNoneMatch=etag)
        except ClientError as exc:
            if _code(exc) in {"304", "NotModified"} or _is(exc, {"304"}):
                return None
            if _is(exc, _MISSING_CODES):
                raise AliasNotFoundError(f"{model} has no {alias!r} alias") from exc
            raise
        try:
            return AliasDoc.from_doc(model, alias, json.loads(obj["Body"].read())), str(obj["ETag"])
        except ValueError as exc:
            raise CorruptDocumentError(f"alias {alias!r} of {model} is not valid JSON") from exc

    def list_aliases(self, model: str) -> dict[str, AliasDoc]:
        prefix = f"{self.model_prefix(model)}aliases/"
        out = {}
        for obj in self._iter_keys(prefix):
            name = obj.get("Key", "")[len(prefix) :]
            if name.endswith(".json"):
                alias = name[: -len(".json")]
                try:
                    out[alias] = self.get_alias(model, alias)[0]
                except (CorruptDocumentError, AliasNotFoundError):
                    continue
        return out

    def resolve(self, model: str, alias: str = "production") -> int:
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
            got = self._get_json(key)
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
            try:
                if etag is None:
                    ok = self._create(key, body)
                else:
                    self._call(
                        self.s3.put_object, Key=key, Body=body, IfMatch=etag, ContentType="application/json"
                    )
                    ok = True
            except ClientError as exc:
                if not _is(exc, _CONFLICT_CODES | _MISSING_CODES):
                    raise
                ok = False
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
        alias: str = "production",
        *,
        reason: str = "promote",
        actor: str | None = None,
    ) -> AliasDoc:
        def mutate(cur: AliasDoc | None) -> AliasDoc:
            prev = cur.version if cur else None
            if cur is not None and cur.version == version:
                prev = cur.previous
            return AliasDoc(alias=alias, version=version, previous=prev)

        doc = self.update_alias(model, alias, mutate, reason=reason, actor=actor)
        assert doc is not None
        return doc

    def rollback(
        self, model: str, alias: str = "production", *, reason: str = "rollback", actor: str | None = None
    ) -> AliasDoc:
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

    def set_canary(
        self,
        model: str,
        version: int | None,
        weight: float = 0.0,
        alias: str = "production",
        *,
        reason: str = "canary",
        actor: str | None = None,
    ) -> AliasDoc:
        """Name (or with ``version=None`` clear) the alias's canary version and its traffic weight."""

        def mutate(cur: AliasDoc | None) -> AliasDoc:
            if cur is None:
                raise AliasNotFoundError(f"{model} has no {alias!r} alias to add a canary to")
            canary = None if version is None else {"version": version, "weight": float(weight)}
            return AliasDoc(alias=alias, version=cur.version, previous=cur.previous, canary=canary)

        doc = self.update_alias(model, alias, mutate, reason=reason, actor=actor)
        assert doc is not None
        return doc

    # ------------------------------------------------------------------ history
    def _append_history(self, model: str, alias: str, doc: dict[str, Any]) -> None:
        stamp = str(doc["at"]).replace(":", "").replace("-", "").replace(".", "")
        key = f"{self.model_prefix(model)}history/{alias}/{stamp}-{uuid.uuid4().hex[:12]}.json"
        self._create(key, json.dumps(doc, sort_keys=True).encode())

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

    def history(self, model: str, alias: str | None = None) -> list[dict[str, Any]]:
        prefix = f"{self.model_prefix(model)}history/" + (f"{alias}/" if alias else "")
        out = []
        for obj in self._iter_keys(prefix):
            got = self._get_json(obj["Key"]) if "Key" in obj else None
            if got:
                out.append(got[0])
        out.sort(key=lambda e: str(e.get("at", "")))
        return out
