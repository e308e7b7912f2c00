"""Batch scoring's objects (docs/scoring.md): the input CSV (read whole once by the plan, by byte range
by each chunk, always at the version the plan pinned), each chunk's scores, rejects and counts, the
run's manifest (create-only) and its working files, and starting a run (Step Functions).

Data bucket: ``datasets/{model}/score/*.csv`` (inputs) and ``scores/{model}/{version}/{run}/`` (results).
Registry bucket: ``score-runs/{run}/`` (plan, the map's items, failed chunks, the outcome).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from modelops.aws import AwsError, error_code
from modelops.domain.errors import CorruptDocumentError
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

READ_BLOCK = 8 * 1024 * 1024
CSV = "text/csv"
_CHUNK_FILE = re.compile(r"[0-9]{5}\.json")


class ScoreInputs:
    """The input objects (data bucket), always read at one object version."""

    def __init__(self, objects: ObjectStore):
        self.objects = objects

    @property
    def bucket(self) -> str:
        return self.objects.bucket

    @staticmethod
    def model_of(key: str) -> str | None:
        return keys.score_input_model(key)

    def open(self, key: str, version_id: str | None) -> tuple[Iterator[bytes], str | None, int] | None:
        """``(blocks of the object, its version id, its size)``; None when the key (or that version) is
        not there."""
        kwargs: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        obj = self.objects.get(key, **kwargs)
        if obj is None:
            return None
        body = obj["Body"]
        return body.iter_chunks(READ_BLOCK), obj.get("VersionId"), int(obj.get("ContentLength") or 0)

    def read_range(self, key: str, version_id: str | None, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object's version (one ranged GET); empty for an empty range."""
        if end <= start:
            return b""
        kwargs: dict[str, Any] = {"Range": f"bytes={start}-{end - 1}"}
        if version_id:
            kwargs["VersionId"] = version_id
        obj = self.objects.get(key, **kwargs)
        if obj is None:
            raise FileNotFoundError(f"s3://{self.bucket}/{key} ({version_id or 'latest'}) is gone")
        data = bytes(obj["Body"].read())
        if len(data) != end - start:
            raise OSError(f"s3://{self.bucket}/{key}: asked for {end - start} bytes, got {len(data)}")
        return data

    def upload(self, model: str, name: str, body: bytes) -> tuple[str, str | None]:
        """Put ``datasets/{model}/score/{name}`` (the CLI on the twin); ``(key, version id)``."""
        key = keys.score_input(model, name)
        out = self.objects.put(key, body, CSV)
        return key, out.get("VersionId")


class ScoreOutputs:
    """``scores/{model}/{version}/{run}/`` (data bucket): parts, rejects, chunk counts, the manifest."""

    def __init__(self, objects: ObjectStore):
        self.objects = objects

    @property
    def bucket(self) -> str:
        return self.objects.bucket

    def write_chunk(
        self,
        model: str,
        version: int,
        run: str,
        chunk: int,
        part: bytes,
        rejects: bytes | None,
        summary: dict[str, Any],
    ) -> dict[str, Any]:
        """A chunk's part (and rejects when it has any), then its counts (written last: a chunk with
        counts is a finished chunk). A retry overwrites them with the same bytes."""
        part_key = keys.score_part(model, version, run, chunk)
        self.objects.put(part_key, part, CSV)
        rejects_key = None
        if rejects is not None:
            rejects_key = keys.score_rejects(model, version, run, chunk)
            self.objects.put(rejects_key, rejects, CSV)
        doc = {**summary, "part": part_key, "rejects": rejects_key}
        self.objects.put_json(keys.score_chunk_summary(model, version, run, chunk), doc)
        return doc

    def chunk_summary(self, model: str, version: int, run: str, chunk: int) -> dict[str, Any] | None:
        got = self.objects.get_json(keys.score_chunk_summary(model, version, run, chunk))
        if got is None:
            return None
        if not isinstance(got[0], dict):
            raise CorruptDocumentError(f"the counts of chunk {chunk} of scoring run {run} are not an object")
        return got[0]

    def create_manifest(self, model: str, version: int, run: str, doc: dict[str, Any]) -> bool:
        """Create-only: False when the run already has a manifest (a retried reduce)."""
        return self.objects.create_json(keys.score_manifest(model, version, run), doc)

    def manifest(self, model: str, version: int, run: str) -> dict[str, Any] | None:
        got = self.objects.get_json(keys.score_manifest(model, version, run))
        return None if got is None else dict(got[0])

    def manifest_key(self, model: str, version: int, run: str) -> str:
        return keys.score_manifest(model, version, run)

    def prefix(self, model: str, version: int, run: str) -> str:
        return keys.scores_prefix(model, version, run)

    def list_run(self, model: str, version: int, run: str) -> list[str]:
        return [
            o["Key"] for o in self.objects.iter_keys(keys.scores_prefix(model, version, run)) if "Key" in o
        ]


class ScoreRuns:
    """A run's working files (``score-runs/{run}/``, registry bucket)."""

    def __init__(self, objects: ObjectStore):
        self.objects = objects

    def items_location(self, run: str) -> tuple[str, str]:
        """``(bucket, key)`` of the run's items file, which the Distributed Map's ItemReader reads."""
        return self.objects.bucket, keys.score_run(run, "items.json")

    def failure_key(self, run: str, chunk: int) -> str:
        return keys.score_run_failure(run, chunk)

    def write(self, run: str, name: str, doc: Any) -> None:
        self.objects.put_json(keys.score_run(run, name), doc)

    def read(self, run: str, name: str) -> Any | None:
        got = self.objects.get_json(keys.score_run(run, name))
        return None if got is None else got[0]

    def failure(self, run: str, chunk: int) -> dict[str, Any] | None:
        got = self.objects.get_json(keys.score_run_failure(run, chunk))
        return got[0] if got is not None and isinstance(got[0], dict) else None


class ScoringStarter:
    """Starts the ScoreStateMachine (``StartExecution``); a name already used (the same upload
    delivered twice) is the run already started."""

    def __init__(self, sfn: Any, state_machine_arn: str):
        self.sfn = sfn
        self.arn = state_machine_arn

    def start(self, name: str, request: dict[str, Any]) -> tuple[str, bool]:
        """``(execution ARN, started now)``."""
        try:
            out = self.sfn.start_execution(stateMachineArn=self.arn, name=name, input=json.dumps(request))
            return str(out["executionArn"]), True
        except AwsError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                arn = self.arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
                return arn, False
            raise
