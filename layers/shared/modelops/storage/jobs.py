"""Job records, started markers and the staging area of the registry bucket (docs/contracts.md "Jobs").

train_trigger creates ``jobs/{job}.json`` (create-only: the commit point of "this dataset and spec start
one job") and, once the backend accepted the job, ``jobs/{job}.started.json``; convert reads the record
to learn whether a finished job is this stack's, for which model and spec, and fetches what the job
wrote under ``staging/{model}/{job}/``.
"""

from __future__ import annotations

import json
from typing import Any

from modelops.storage import keys
from modelops.storage.s3 import ObjectStore


class JobStore:
    """The registry bucket's ``jobs/`` and ``staging/`` prefixes."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    @property
    def bucket(self) -> str:
        return self.objects.bucket

    # ------------------------------------------------------------------ records
    def create_record(self, job: str, record: dict[str, Any]) -> bool:
        """Create ``jobs/{job}.json``; False when it already exists (the job was claimed before)."""
        body = json.dumps(record, indent=1, sort_keys=True).encode()
        return self.objects.create(keys.job_record(job), body)

    def get_record(self, job: str) -> tuple[Any, str] | None:
        """The raw record document and its ETag, or None when this stack never claimed ``job``."""
        return self.objects.get_json(keys.job_record(job))

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
