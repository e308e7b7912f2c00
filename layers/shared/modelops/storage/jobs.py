"""Job records, started markers and the staging area of the registry bucket (docs/contracts.md "Jobs").

train_trigger creates ``jobs/{job}.json`` (create-only: the commit point of "this dataset and spec start
one job") and, once the backend accepted the job, ``jobs/{job}.started.json``; when the backend refused the
request as invalid, the record is marked ``"status": "rejected"`` (compare-and-swap), which releases the
claim: the next attempt at the same job takes the record over (compare-and-swap again) and starts it.
There is still one job per dataset and spec: a refused request started nothing. convert reads the record
to learn whether a finished job is this stack's, for which model and spec, and fetches what the job
wrote under ``staging/{model}/{job}/``. A SageMaker job on the AWS TensorFlow image runs the trainer
uploaded under ``code/training/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelops.domain.errors import ArtifactInvalidError, CorruptDocumentError
from modelops.domain.search import TRIAL_FILE
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

REJECTED = "rejected"
"""A job record's ``status`` once the backend refused its request (absent otherwise)."""

MAX_ARTIFACT_VERSIONS = 10
"""How many entries (versions and delete markers) of one artifact key convert looks at: one is all a
job may leave, so a key with more is reported as having "more than" this many, never listed to the end."""


@dataclass(frozen=True)
class ArtifactVersion:
    """One entry of an artifact key's history in the versioned registry bucket (``ListObjectVersions``)."""

    key: str
    version_id: str
    last_modified: datetime | None
    """S3's write time (for a multipart upload: when the upload began), always timezone-aware UTC."""
    delete_marker: bool = False
    size: int | None = None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "last_modified": _iso(self.last_modified),
            "delete_marker": self.delete_marker,
            "size": self.size,
            "etag": self.etag,
        }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobStore:
    """The registry bucket's ``jobs/``, ``staging/`` and ``code/training/`` prefixes."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    @property
    def bucket(self) -> str:
        return self.objects.bucket

    # ------------------------------------------------------------------ records
    def create_record(self, job: str, record: dict[str, Any]) -> bool:
        """Create ``jobs/{job}.json``; False when it already exists (the job was claimed before). A record a
        backend refused (:meth:`mark_rejected`) is taken over instead (True when this call took it)."""
        key = keys.job_record(job)
        body = json.dumps(record, indent=1, sort_keys=True).encode()
        if self.objects.create(key, body):
            return True
        got = self._read(key)
        if got is None:  # gone since: claim it afresh
            return self.objects.create(key, body)
        doc, etag = got
        if isinstance(doc, dict) and doc.get("status") == REJECTED:
            return self.objects.replace(key, body, etag)
        return False

    def mark_rejected(self, job: str, rejection: dict[str, Any]) -> bool:
        """Mark ``jobs/{job}.json`` as refused by the backend (``"status": "rejected"``, ``"rejection"``):
        it started nothing, and its claim is released for a corrected retry. False when the record is
        missing or moved meanwhile (another attempt owns it now)."""
        key = keys.job_record(job)
        got = self._read(key)
        if got is None or not got[1] or not isinstance(got[0], dict):
            return False
        doc, etag = got
        body = json.dumps({**doc, "status": REJECTED, "rejection": rejection}, indent=1, sort_keys=True)
        return self.objects.replace(key, body.encode(), etag)

    def get_record(self, job: str) -> tuple[Any, str] | None:
        """The raw record document and its ETag, or None when this stack never claimed ``job``."""
        return self.objects.get_json(keys.job_record(job))

    def _read(self, key: str) -> tuple[Any, str] | None:
        try:
            return self.objects.get_json(key)
        except CorruptDocumentError:
            return ({}, "")  # not ours to repair: neither taken over nor marked

    def mark_started(self, job: str, marker: dict[str, Any]) -> bool:
        body = json.dumps(marker, indent=1, sort_keys=True).encode()
        return self.objects.create(keys.job_started(job), body)

    def is_started(self, job: str) -> bool:
        return self.objects.head(keys.job_started(job)) is not None

    # ------------------------------------------------------------------ staging
    def staging_prefix(self, model: str, job: str) -> str:
        return keys.staging_prefix(model, job)

    def staging_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def output_prefix(self, model: str) -> str:
        """SageMaker's ``S3OutputPath`` for ``model``'s jobs: it writes ``{prefix}{job}/output/model.tar.gz``."""
        return keys.staging_model_prefix(model)

    def trials_prefix(self, model: str, job: str) -> str:
        return keys.trials_prefix(model, job)

    def staging_train_key(self, model: str, job: str) -> str:
        return keys.staging_train_rows(model, job)

    def put_train_rows(self, model: str, job: str, path: Path) -> dict[str, Any]:
        """Upload the training rows the platform's split kept (``inputs/{model}/{job}/train.csv``, the
        job's ``train`` channel; the training role reads it and cannot write it), streamed from ``path``,
        create-only (the bucket policy insists): a retry finds the same bytes there, since the split of
        one dataset is deterministic. Returns ``key``, ``uri`` and ``version_id`` (None when it existed or
        the bucket is unversioned)."""
        key = keys.staging_train_rows(model, job)
        resp = self.objects.create_file(key, path, "text/csv")
        return {"key": key, "uri": self.staging_uri(key), "version_id": (resp or {}).get("VersionId")}

    def put_source_bundle(self, bundle: bytes) -> str:
        """Upload the trainer's source bundle (``code/training/{sha256}/sourcedir.tar.gz``, create-only:
        an existing one is the same bytes); its ``s3://`` URI."""
        key = keys.source_bundle(hashlib.sha256(bundle).hexdigest())
        self.objects.create(key, bundle, content_type="application/gzip")
        return self.staging_uri(key)

    # ------------------------------------------------------------------ reads for convert
    def artifact_key(self, model: str, job: str, trial: str | int | None = None) -> str:
        """The model archive a job left: its own (``staging/{model}/{job}/output/model.tar.gz``), or a
        search trial's: a tuning job's training job (its name, ``trials/{name}/``) or a Batch array child
        (its index, ``trials/{index:03d}/``)."""
        staging = keys.staging_prefix(model, job)
        if isinstance(trial, int):
            staging = keys.batch_trial_prefix(staging, trial)
        elif trial is not None:
            staging = f"{keys.trials_prefix(model, job)}{trial}/"
        return keys.output_artifact(staging)

    def artifact_versions(
        self, key: str, limit: int = MAX_ARTIFACT_VERSIONS
    ) -> tuple[list[ArtifactVersion], bool]:
        """The history of ``key`` itself (not of longer keys it prefixes, like ``model.tar.gz.bak``): its
        versions and delete markers, newest first, and whether that is all of them. Bounded: at most
        ``limit`` entries are read (``(the first limit, False)`` when there are more); S3 lists a key
        before every longer key, so the listing stops at the first other key."""
        found: list[ArtifactVersion] = []
        for entry in self.objects.iter_versions(key, page_size=limit + 1):
            if entry.get("Key") != key:
                return found, True
            if len(found) == limit:
                return found, False
            etag = str(entry.get("ETag") or "").strip('"')
            found.append(
                ArtifactVersion(
                    key=key,
                    version_id=str(entry.get("VersionId") or "null"),
                    last_modified=_utc(entry.get("LastModified")),
                    delete_marker=bool(entry.get("DeleteMarker")),
                    size=None if entry.get("Size") is None else int(entry["Size"]),
                    etag=etag or None,
                )
            )
        return found, True

    def download_artifact(self, key: str, dest: Path, max_bytes: int, version_id: str | None = None) -> Path:
        """Stream the archive at ``key`` (exactly its version ``version_id`` when given: convert passes the
        one version it checked) to ``dest``. Missing or over ``max_bytes``: :class:`ArtifactInvalidError`
        (permanent); transient S3 failures raise ``unavailable``."""
        uri = self.staging_uri(key)
        if version_id is None:
            head = self.objects.head(key)
            if head is None:
                raise ArtifactInvalidError(f"no training artifact at {uri}: the job finished without output")
            size = int(head.get("ContentLength", 0))
            if size > max_bytes:
                raise ArtifactInvalidError(
                    f"training artifact {uri} is {size} bytes, over the {max_bytes}-byte limit"
                )
        obj = self.objects.get(key, **({"VersionId": version_id} if version_id is not None else {}))
        if obj is None:
            raise ArtifactInvalidError(f"training artifact {uri} disappeared while being read")
        size = int(obj.get("ContentLength", 0))
        if size > max_bytes:
            obj["Body"].close()
            raise ArtifactInvalidError(
                f"training artifact {uri} is {size} bytes, over the {max_bytes}-byte limit"
            )
        written = 0
        with open(dest, "wb") as fh:
            for chunk in obj["Body"].iter_chunks(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise ArtifactInvalidError(f"training artifact {uri} is over the {max_bytes}-byte limit")
                fh.write(chunk)
        return dest

    def trial_records(self, model: str, job: str) -> dict[int, bytes]:
        """The raw ``trial.json`` of every Batch array child of ``job`` that left one, by index."""
        prefix = keys.trials_prefix(model, job)
        found: dict[int, bytes] = {}
        for obj in self.objects.iter_keys(prefix):
            parts = str(obj.get("Key", ""))[len(prefix) :].split("/")
            if len(parts) != 2 or parts[1] != TRIAL_FILE or not parts[0].isdigit():
                continue
            body = self.objects.get_bytes(str(obj["Key"]))
            if body is not None:
                found[int(parts[0])] = body
        return found

    # ------------------------------------------------------------------ the artifact link (convert)
    def link_artifact(
        self,
        job: str,
        key: str,
        path: Path,
        *,
        version: ArtifactVersion | None = None,
        extra: dict[str, Any] | None = None,
        actor: str = "convert",
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Bind ``job`` to the archive at ``key`` that convert downloaded to ``path``, before anything in
        it is loaded: ``jobs/{job}.artifact.json`` (create-only) records its SHA-256 and size (of the
        bytes read), the S3 ``version`` convert read (VersionId, LastModified, ETag; without one, what a
        HEAD of ``key`` reports) and ``extra`` (convert's run window). Returns ``(this read, the record
        that stands)``: the same document on first sight; on a later delivery the first one, which the
        caller compares (a replay after the staged archive was overwritten names other bytes). A record
        that is not a link: :class:`CorruptDocumentError`."""
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
        version_id: str | None
        if version is not None:
            version_id, etag, modified = version.version_id, version.etag or "", _iso(version.last_modified)
        else:
            head = self.objects.head(key) or {}
            version_id = str(head["VersionId"]) if head.get("VersionId") else None
            etag, modified = str(head.get("ETag") or "").strip('"'), _iso(_utc(head.get("LastModified")))
        read = {
            "job": job,
            "key": key,
            "uri": self.staging_uri(key),
            "sha256": digest.hexdigest(),
            "size": size,
            "version_id": version_id,
            "etag": etag or None,
            "last_modified": modified,
            **(extra or {}),
            "recorded_at": _iso(datetime.now(UTC)),
            "recorded_by": actor,
        }
        record_key = keys.job_artifact_link(job)
        if self.objects.create(record_key, json.dumps(read, indent=1, sort_keys=True).encode()):
            return read, read
        got = self.objects.get_json(record_key)
        doc = got[0] if got is not None else None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("sha256"), str)
            or not isinstance(doc.get("key"), str)
        ):
            raise CorruptDocumentError(f"the artifact link of {job} ({record_key}) is missing or malformed")
        return read, doc
