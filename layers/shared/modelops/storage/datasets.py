"""Datasets, model specs and quarantine in the data bucket (docs/training.md, docs/contracts.md "Buckets and keys").

train_trigger reads ``datasets/{model}/model.json`` and the uploaded ``datasets/{model}/NAME.csv``
(``.csv.gz``, ``.parquet``) version; a rejected dataset is copied to ``quarantine/{model}/{rest of the key}/{version}/`` beside a
``reason.json``, and the original is left alone. The bucket is the one an S3 event names, so every
method takes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modelops.aws import AwsError, ErrorKind, classify, error_code
from modelops.domain.errors import ModelOpsError
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

REASON_FILE = "reason.json"


class CodeFolderError(ModelOpsError):
    """The model's code folder cannot be packaged (too many files, too large): train_trigger rejects the
    dataset with ``bad_code``."""

    code = "bad_code"


@dataclass(frozen=True)
class CodeObject:
    """One file of ``datasets/{model}/code/``."""

    name: str
    """The key below the code folder (``train.py``, ``src/util.py``), not yet checked."""
    key: str
    size: int


@dataclass(frozen=True)
class Quarantined:
    bucket: str
    prefix: str
    """``quarantine/{model}/{rest of the key}/{version}/``."""
    copy: str | None
    """The key of the dataset's copy; None when the version was gone before it could be copied."""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class DatasetStore:
    """The data bucket's ``datasets/`` and ``quarantine/`` prefixes."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def objects(self, bucket: str) -> ObjectStore:
        return ObjectStore(self.s3, bucket)

    # ------------------------------------------------------------------ keys
    @staticmethod
    def is_dataset(key: str) -> bool:
        """A ``datasets/.../*.csv`` (``.csv.gz``, ``.parquet``) key (uploads of anything else start nothing)."""
        return keys.is_dataset(key)

    @staticmethod
    def is_eval_dataset(key: str) -> bool:
        """A ``datasets/{model}/eval/NAME.csv`` key: a pinned evaluation set, never a training trigger."""
        return keys.is_eval_dataset(key)

    @staticmethod
    def marker_folder(key: str) -> tuple[str, str] | None:
        """``(model, folder)`` of ``datasets/{model}/{name}/_SUCCESS`` (None for any other key)."""
        return keys.dataset_folder_of_marker(key)

    @staticmethod
    def model_of(key: str) -> str | None:
        """The model of ``datasets/{model}/NAME.csv`` (None when the key has no model part; not validated)."""
        return keys.dataset_model(key)

    @staticmethod
    def spec_key(model: str) -> str:
        return keys.spec(model)

    # ------------------------------------------------------------------ reads
    def read_spec(self, bucket: str, model: str, max_bytes: int) -> bytes | None:
        """At most ``max_bytes + 1`` bytes of the model's spec (more than ``max_bytes``: it is too large),
        or None when the model has no spec."""
        obj = self.objects(bucket).get(keys.spec(model))
        if obj is None:
            return None
        try:
            return bytes(obj["Body"].read(max_bytes + 1))
        finally:
            obj["Body"].close()

    @contextmanager
    def open(
        self, bucket: str, key: str, version_id: str | None, chunk_size: int
    ) -> Iterator[tuple[Iterable[bytes], int | None] | None]:
        """The dataset version as ``(chunks, size)`` (streamed, closed on exit), or None when it is gone."""
        kwargs = {"VersionId": version_id} if version_id else {}
        obj = self.objects(bucket).get(key, **kwargs)
        if obj is None:
            yield None
            return
        body = obj["Body"]
        size = obj.get("ContentLength")
        try:
            yield body.iter_chunks(chunk_size), int(size) if size is not None else None
        finally:
            body.close()

    # ------------------------------------------------------------------ a model's training script
    def list_code(self, bucket: str, model: str, *, max_files: int) -> list[CodeObject]:
        """The files under ``datasets/{model}/code/`` (folder markers, keys ending in ``/``, skipped), in
        key order; :class:`CodeFolderError` as soon as there are more than ``max_files`` (the listing stops
        there)."""
        prefix = keys.code_prefix(model)
        found: list[CodeObject] = []
        for obj in self.objects(bucket).iter_keys(prefix):
            key = str(obj.get("Key", ""))
            if not key or key.endswith("/"):
                continue
            found.append(CodeObject(name=key[len(prefix) :], key=key, size=int(obj.get("Size") or 0)))
            if len(found) > max_files:
                raise CodeFolderError(
                    f"{prefix} holds more than {max_files} files (the most a training script may have)"
                )
        return found

    def read_code(self, bucket: str, obj: CodeObject, max_bytes: int) -> bytes:
        """At most ``max_bytes + 1`` bytes of one code file (more than ``max_bytes``: too large);
        :class:`CodeFolderError` when it vanished since the listing."""
        got = self.objects(bucket).get(obj.key)
        if got is None:
            raise CodeFolderError(f"{obj.key} was deleted while the code folder was being packaged")
        try:
            return bytes(got["Body"].read(max_bytes + 1))
        finally:
            got["Body"].close()

    def put_code_archive(self, registry_bucket: str, model: str, digest: str, body: bytes) -> str:
        """Store the packaged script (``code/{model}/{sha256}.tar.gz`` in the registry bucket, create-only:
        an existing one holds the same bytes). Returns its ``s3://`` URI."""
        key = keys.code_archive(model, digest)
        self.objects(registry_bucket).create(key, body, content_type="application/gzip")
        return f"s3://{registry_bucket}/{key}"

    # ------------------------------------------------------------------ a job's inputs
    def put_input_schema(self, bucket: str, model: str, job: str, schema: Mapping[str, Any]) -> str:
        """Write the input schema job ``job`` must keep (production's) beside its train rows, in its
        ``train`` channel (``inputs/{model}/{job}/input_schema.json`` of the registry ``bucket``;
        create-only like the rows: a retry writes the same document). Returns the key."""
        key = keys.job_input_schema(model, job)
        self.objects(bucket).create(key, json.dumps(schema, indent=1, sort_keys=True).encode())
        return key

    # ------------------------------------------------------------------ quarantine
    def quarantine(
        self, bucket: str, key: str, version_id: str | None, etag: str | None, reason: Mapping[str, Any]
    ) -> Quarantined:
        """Copy the dataset version into quarantine and write ``reason.json`` beside it: ``reason`` plus
        ``quarantined_copy`` (the copy's key, None when the version was already gone)."""
        prefix = keys.quarantine_prefix(key, version_id, etag)
        copy_key: str | None = prefix + key.rsplit("/", 1)[-1]
        source: dict[str, str] = {"Bucket": bucket, "Key": key}
        if version_id:
            source["VersionId"] = version_id
        try:
            self.s3.copy(source, bucket, copy_key)  # managed copy: multipart above 5 GB
        except AwsError as exc:
            if classify(exc) is not ErrorKind.MISSING:
                raise
            copy_key = None  # deleted meanwhile: the reason is still recorded
        doc = {**reason, "quarantined_copy": copy_key}
        self.objects(bucket).put(prefix + REASON_FILE, json.dumps(doc, indent=1, sort_keys=True).encode())
        return Quarantined(bucket=bucket, prefix=prefix, copy=copy_key)


# ---------------------------------------------------------------------------- datasets of many parts
@dataclass(frozen=True)
class PartObject:
    """One part of a dataset folder (``datasets/{model}/{name}/part-*``), as listed."""

    index: int
    key: str
    size: int
    etag: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "key": self.key, "size": self.size, "etag": self.etag}


def marker_folder(key: str) -> tuple[str, str] | None:
    """``(model, folder)`` of a dataset folder's ``_SUCCESS`` marker key (None for any other key)."""
    return keys.dataset_folder_of_marker(key)


def is_dataset_part(key: str) -> bool:
    """A part of a dataset folder: its upload starts nothing (the folder's ``_SUCCESS`` does)."""
    return keys.is_dataset_part(key)


def list_parts(store: DatasetStore, bucket: str, folder: str, max_parts: int) -> list[PartObject]:
    """The folder's parts (``part-*`` with a dataset suffix, directly in ``folder``), in key order;
    :class:`ValueError` past ``max_parts``."""
    found: list[PartObject] = []
    for obj in store.objects(bucket).iter_keys(folder):
        key = str(obj.get("Key", ""))
        if not keys.is_dataset_part(key) or not key.startswith(folder):
            continue
        found.append(PartObject(len(found), key, int(obj.get("Size") or 0), str(obj.get("ETag") or "")))
        if len(found) > max_parts:
            raise ValueError(f"{folder} holds more than {max_parts} parts (the most a dataset may have)")
    return found


class DatasetRuns:
    """A dataset of parts being validated (registry bucket ``dataset-runs/{run}/``): the plan, the
    map's items, each part's report and split rows, the outcome. The job's train folder
    (``inputs/{model}/{job}/train/``) is filled from it."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    @property
    def bucket(self) -> str:
        return self.objects.bucket

    def put_doc(self, run: str, name: str, doc: Any) -> dict[str, str]:
        """``plan.json``, ``items.json``, ``result.json``; returns ``{"Bucket", "Key"}`` (the map's
        ItemReader parameters)."""
        key = keys.dataset_run(run, name)
        self.objects.put_json(key, doc)
        return {"Bucket": self.bucket, "Key": key}

    def get_doc(self, run: str, name: str) -> Any:
        got = self.objects.get_json(keys.dataset_run(run, name))
        return got[0] if got is not None else None

    def put_part_report(self, run: str, index: int, doc: Mapping[str, Any]) -> None:
        self.objects.put_json(keys.dataset_run_part(run, "reports", index), doc)

    def part_reports(self, run: str, count: int) -> list[dict[str, Any] | None]:
        """Each part's report in part order (None where a part left none: its child failed)."""
        out: list[dict[str, Any] | None] = []
        for i in range(count):
            got = self.objects.get_json(keys.dataset_run_part(run, "reports", i))
            out.append(got[0] if got is not None and isinstance(got[0], dict) else None)
        return out

    def put_part_rows(self, run: str, kind: str, index: int, path: Any) -> str:
        """A part's ``train`` or ``evaluation`` rows (plain CSV, one header); returns the key."""
        key = keys.dataset_run_part(run, kind, index, ".csv")
        self.objects.call(
            self.objects.s3.upload_file,
            Filename=str(path),
            Key=key,
            ExtraArgs={"ContentType": "text/csv"},
        )
        return key

    def download_part_rows(self, run: str, kind: str, index: int, path: Any) -> None:
        self.objects.call(
            self.objects.s3.download_file,
            Key=keys.dataset_run_part(run, kind, index, ".csv"),
            Filename=str(path),
        )

    def train_folder(self, model: str, job: str) -> str:
        """The job's ``train`` channel folder for a dataset of parts, ``inputs/{model}/{job}/train/``."""
        return keys.job_train_part(model, job, 0).rsplit("/", 1)[0] + "/"

    def stage_train_parts(self, run: str, model: str, job: str, count: int) -> list[str]:
        """Copy each part's train rows into the job's ``train`` folder (server-side; create-only, as the
        single-file train rows are: a retry finds the same bytes)."""
        staged = []
        for i in range(count):
            dest = keys.job_train_part(model, job, i)
            source = {"Bucket": self.bucket, "Key": keys.dataset_run_part(run, "train", i, ".csv")}
            try:
                self.objects.call(self.objects.s3.copy_object, Key=dest, CopySource=source, IfNoneMatch="*")
            except AwsError as exc:
                if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
            staged.append(dest)
        return staged
