"""In-memory fakes of the storage layer, for unit tests of the stages that need no moto.

:class:`MemoryObjectStore` behaves like :class:`modelops.storage.s3.ObjectStore` on one bucket (create-only
puts, compare-and-swap by ETag, JSON gets, listing with delimiters), so every store built on it (the
registry, job records, monitor reports, ...) runs unchanged over a dict. ``fail_next`` injects one
transient failure into the next call of a method, as S3's 503s would.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops.domain.errors import CorruptDocumentError, RegistryUnavailableError


class _Body(io.BytesIO):
    def iter_chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        while chunk := self.read(size):
            yield chunk

    def iter_lines(self) -> Iterator[bytes]:
        yield from self.getvalue().splitlines()


class MemoryObjectStore:
    """A bucket in a dict: key -> (body, etag, content type, last modified). Its conditional writes
    (``create``: If-None-Match, ``replace``: If-Match) are atomic across threads, as S3's are (moto's are
    enforced but not atomic under real concurrency)."""

    def __init__(self, bucket: str = "bucket", unavailable: type[Exception] = RegistryUnavailableError):
        self.bucket = bucket
        self.unavailable = unavailable
        self.objects: dict[str, tuple[bytes, str, str, datetime]] = {}
        self.calls: list[tuple[str, str]] = []
        self._failures: dict[str, int] = {}
        self.s3: Any = None
        self._conditional = threading.Lock()

    # ------------------------------------------------------------------ test hooks
    def fail_next(self, method: str, times: int = 1) -> None:
        self._failures[method] = self._failures.get(method, 0) + times

    def _enter(self, method: str, key: str) -> None:
        self.calls.append((method, key))
        if self._failures.get(method):
            self._failures[method] -= 1
            raise self.unavailable(f"S3 is unavailable (injected failure of {method}); try again")

    def call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:  # pragma: no cover - not for fakes
        raise NotImplementedError("MemoryObjectStore has no boto3 client behind it")

    # ------------------------------------------------------------------ reads
    def get(self, key: str, **kwargs: Any) -> dict[str, Any] | None:
        self._enter("get", key)
        if key not in self.objects:
            return None
        body, etag, ctype, modified = self.objects[key]
        return {
            "Body": _Body(body),
            "ETag": etag,
            "ContentType": ctype,
            "LastModified": modified,
            "ContentLength": len(body),
        }

    def get_bytes(self, key: str) -> bytes | None:
        obj = self.get(key)
        return None if obj is None else bytes(obj["Body"].read())

    def get_json(self, key: str, **kwargs: Any) -> tuple[Any, str] | None:
        obj = self.get(key)
        if obj is None:
            return None
        try:
            return json.loads(obj["Body"].read()), str(obj["ETag"])
        except ValueError as exc:
            raise CorruptDocumentError(f"{key.split('/', 2)[-1]} is not valid JSON") from exc

    def head(self, key: str) -> dict[str, Any] | None:
        self._enter("head", key)
        if key not in self.objects:
            return None
        body, etag, ctype, modified = self.objects[key]
        return {"ETag": etag, "ContentLength": len(body), "ContentType": ctype, "LastModified": modified}

    def iter_keys(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        self._enter("list", prefix)
        seen: set[str] = set()
        for key in sorted(self.objects):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common not in seen:
                    seen.add(common)
                    yield {"Prefix": common}
                continue
            body, etag, _, modified = self.objects[key]
            yield {"Key": key, "Size": len(body), "ETag": etag, "LastModified": modified}

    # ------------------------------------------------------------------ writes
    def _store(self, key: str, body: bytes, content_type: str) -> str:
        etag = '"' + hashlib.md5(body + key.encode(), usedforsecurity=False).hexdigest() + '"'
        self.objects[key] = (bytes(body), etag, content_type, datetime.now(UTC))
        return etag

    def create(self, key: str, body: bytes, content_type: str = "application/json", **kwargs: Any) -> bool:
        self._enter("create", key)
        with self._conditional:
            if key in self.objects:
                return False
            self._store(key, body, content_type)
            return True

    def create_file(self, key: str, path: Any, content_type: str) -> dict[str, Any] | None:
        with open(path, "rb") as fh:
            created = self.create(key, fh.read(), content_type)
        return {"ETag": self.objects[key][1]} if created else None

    def replace(self, key: str, body: bytes, etag: str, content_type: str = "application/json") -> bool:
        self._enter("replace", key)
        with self._conditional:
            if key not in self.objects or self.objects[key][1] != etag:
                return False
            self._store(key, body, content_type)
            return True

    def put(
        self, key: str, body: bytes, content_type: str = "application/json", **kwargs: Any
    ) -> dict[str, Any]:
        self._enter("put", key)
        return {"ETag": self._store(key, body, content_type)}

    def put_json(self, key: str, doc: Any, **kwargs: Any) -> dict[str, Any]:
        return self.put(key, json.dumps(doc, sort_keys=True).encode())

    def create_json(self, key: str, doc: Any, **kwargs: Any) -> bool:
        return self.create(key, json.dumps(doc, sort_keys=True).encode())

    def delete(self, key: str) -> None:
        self._enter("delete", key)
        self.objects.pop(key, None)

    # ------------------------------------------------------------------ helpers for tests
    def json(self, key: str) -> Any:
        return json.loads(self.objects[key][0])

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


@dataclass
class FakeBus:
    """In-memory stand-in for :class:`modelops.storage.events.EventBus`: what EventBridge would receive."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        json.dumps(detail)  # what EventBridge would receive must be JSON
        self.sent.append((detail_type, detail))
        return f"id-{len(self.sent)}"

    def types(self) -> list[str]:
        return [t for t, _ in self.sent]

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [d for t, d in self.sent if t == detail_type]


@dataclass
class FakeContext:
    """A Lambda context as Powertools reads it (logger, metrics, idempotency)."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
