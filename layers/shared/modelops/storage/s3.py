"""The S3 primitives every store is built on: one call wrapper, one JSON get, one create-only put.

Each store (registry, job records, monitor reports, ...) names its own keys and holds an
:class:`ObjectStore` for its bucket; none of them handles botocore's exceptions itself. A failure that
is worth retrying (throttling, 5xx, timeouts) or a missing bucket becomes ``unavailable`` (an exception
type the store chooses, :class:`~modelops.domain.errors.RegistryUnavailableError` by default), so the
stages can fail the invocation and let Lambda retry instead of deciding on a half-read state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from modelops.aws import AwsError, ErrorKind, classify, error_code
from modelops.domain.errors import CorruptDocumentError, RegistryUnavailableError

JSON = "application/json"


class ObjectStore:
    """One bucket. Methods return ``None``/``False`` for "not there"/"already there" and raise
    ``unavailable`` for transient failures; anything else (denied, invalid) propagates as it is."""

    def __init__(self, s3: Any, bucket: str, unavailable: type[Exception] = RegistryUnavailableError) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.unavailable = unavailable

    # ------------------------------------------------------------------ the call
    def call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except AwsError as exc:
            if classify(exc) is ErrorKind.TRANSIENT:
                raise self.unavailable(f"S3 is unavailable ({error_code(exc) or exc}); try again") from exc
            if error_code(exc) == "NoSuchBucket":
                raise self.unavailable(f"bucket {self.bucket!r} does not exist") from exc
            raise

    # ------------------------------------------------------------------ reads
    def get(self, key: str, **kwargs: Any) -> dict[str, Any] | None:
        """``GetObject``'s response, or None when the key is missing."""
        try:
            return dict(self.call(self.s3.get_object, Key=key, **kwargs))
        except AwsError as exc:
            if classify(exc) is ErrorKind.MISSING:
                return None
            raise

    def get_bytes(self, key: str) -> bytes | None:
        obj = self.get(key)
        return None if obj is None else bytes(obj["Body"].read())

    def get_json(self, key: str, **kwargs: Any) -> tuple[Any, str] | None:
        """``(document, etag)``, or None when the key is missing. Not JSON: ``CorruptDocumentError``."""
        obj = self.get(key, **kwargs)
        if obj is None:
            return None
        body = obj["Body"].read()
        try:
            return json.loads(body), str(obj["ETag"])
        except ValueError as exc:
            raise CorruptDocumentError(f"{key.split('/', 2)[-1]} is not valid JSON") from exc

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.call(self.s3.head_object, Key=key))
        except AwsError as exc:
            if classify(exc) is ErrorKind.MISSING:
                return None
            raise

    def iter_keys(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        """Every object (and, with a delimiter, every common prefix as ``{"Prefix": ...}``) under ``prefix``."""
        kwargs: dict[str, Any] = {"Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        token = None
        while True:
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call(self.s3.list_objects_v2, **kwargs)
            for cp in page.get("CommonPrefixes", []) or []:
                yield {"Prefix": cp["Prefix"]}
            yield from page.get("Contents", []) or []
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def iter_versions(self, prefix: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every object version and delete marker under ``prefix`` (``ListObjectVersions``, page by page,
        lazily: stop iterating and no further page is asked for), in S3's order: keys ascending (so a
        key comes before every longer key it prefixes), each key's entries newest first. Each entry is
        S3's (``Key``, ``VersionId``, ``LastModified``, ``IsLatest``; ``Size`` and ``ETag`` for versions)
        with ``DeleteMarker``: True for a delete marker, False for a version."""
        kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": page_size}
        while True:
            page = self.call(self.s3.list_object_versions, **kwargs)
            entries = [{**v, "DeleteMarker": False} for v in page.get("Versions", []) or []]
            entries += [{**m, "DeleteMarker": True} for m in page.get("DeleteMarkers", []) or []]
            # S3 returns the two kinds in separate lists; put them back in one key order, newest first
            # (the key's current entry first: two writes in one second share a LastModified)
            entries.sort(key=_version_order)
            yield from entries
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    # ------------------------------------------------------------------ writes
    def create(self, key: str, body: bytes, content_type: str = JSON, **kwargs: Any) -> bool:
        """Create ``key`` only if absent (``If-None-Match: *``). True when we created it, False when it
        existed (or a concurrent create won)."""
        try:
            self.call(
                self.s3.put_object,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                **kwargs,
            )
            return True
        except AwsError as exc:
            if classify(exc) is ErrorKind.CONFLICT:
                return False
            raise

    def create_file(self, key: str, path: str | os.PathLike[str], content_type: str) -> dict[str, Any] | None:
        """:meth:`create` streamed from a local file (datasets are too large to hold twice in memory).
        ``PutObject``'s response (its ``VersionId``), or None when the key existed."""
        try:
            with open(path, "rb") as fh:
                return dict(
                    self.call(
                        self.s3.put_object,
                        Key=key,
                        Body=fh,
                        IfNoneMatch="*",
                        ContentType=content_type,
                        ChecksumAlgorithm="SHA256",
                    )
                )
        except AwsError as exc:
            if classify(exc) is ErrorKind.CONFLICT:
                return None
            raise

    def replace(self, key: str, body: bytes, etag: str, content_type: str = JSON) -> bool:
        """Compare-and-swap: write only if the object still has ``etag``. False when it moved or vanished."""
        try:
            self.call(self.s3.put_object, Key=key, Body=body, IfMatch=etag, ContentType=content_type)
            return True
        except AwsError as exc:
            if classify(exc) in (ErrorKind.CONFLICT, ErrorKind.MISSING):
                return False
            raise

    def put(self, key: str, body: bytes, content_type: str = JSON, **kwargs: Any) -> dict[str, Any]:
        """An unconditional write (for documents that are meant to be overwritten, like ``latest.json``)."""
        return dict(self.call(self.s3.put_object, Key=key, Body=body, ContentType=content_type, **kwargs))

    def put_json(self, key: str, doc: Any, **kwargs: Any) -> dict[str, Any]:
        return self.put(key, json.dumps(doc, sort_keys=True).encode(), JSON, **kwargs)

    def create_json(self, key: str, doc: Any, **kwargs: Any) -> bool:
        return self.create(key, json.dumps(doc, sort_keys=True).encode(), JSON, **kwargs)

    def delete(self, key: str) -> None:
        try:
            self.call(self.s3.delete_object, Key=key)
        except AwsError as exc:
            if classify(exc) is not ErrorKind.MISSING:
                raise


def _version_order(entry: dict[str, Any]) -> tuple[str, bool, float]:
    modified = entry.get("LastModified")
    stamp = modified.timestamp() if isinstance(modified, datetime) else 0.0
    return str(entry.get("Key", "")), not entry.get("IsLatest"), -stamp
