"""Faults on the twin: what is retried, what lands in a dead-letter queue, and that a replay
finishes the work exactly once (no lost model, no duplicate version).

The handlers run in this process, so a fault is injected by patching the shared library.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelops.storage.s3 import ObjectStore
from modelops_local.lifecycle import Life, sklearn_table

pytestmark = [pytest.mark.slow, pytest.mark.twin]

SPEC = {
    "task": "regression",
    "target": "progression",
    "training": {"backend": "local", "epochs": 3, "hidden_units": [8], "seed": 1},
}


@pytest.fixture(scope="module")
def data() -> bytes:
    table = sklearn_table("diabetes")
    return table.csv_bytes(np.arange(120))


def crash_manifest_writes(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """The next ``times`` manifest creations die after the blobs are uploaded (a crashed container)."""
    real = ObjectStore.create
    crashed: list[str] = []

    def create(self: ObjectStore, key: str, body: bytes, *args: Any, **kwargs: Any) -> bool:
        if key.endswith("/manifest.json") and len(crashed) < times:
            crashed.append(key)
            raise ConnectionError("the container died between the artifacts and the manifest")
        return real(self, key, body, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "create", create)
    return crashed


def dlq_messages(twin, logical_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    sqs = twin.client("sqs")
    url = twin.resources[logical_id]  # !Ref of a queue is its URL
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = got.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_a_crash_before_the_manifest_is_retried_and_publishes_once(twin, data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    life = Life(twin)
    crashed = crash_manifest_writes(monkeypatch, times=1)
    life.upload_spec("fault-retry", SPEC)
    life.upload_dataset("fault-retry", "data.csv", data)
    life.settle()

    assert len(crashed) == 1  # the first attempt died
    attempts = [
        i
        for i in twin.invocations_of("ConvertFunction")
        if i.result and "fault-retry" in json.dumps(i.result)
    ]
    errors = [i for i in twin.invocations_of("ConvertFunction") if i.outcome == "error"]
    assert errors and attempts  # Lambda's retry of the same event finished the work
    assert life.versions("fault-retry") == [1]
    life.verify_artifacts("fault-retry", 1)
    assert life.production("fault-retry") == 1
    assert not [m for m in dlq_messages(twin, "ConvertDLQ") if "fault-retry" in json.dumps(m)]
    twin.wait_idle()


def test_a_fault_that_outlasts_the_retries_lands_in_the_dlq_and_a_replay_publishes_once(
    twin, data, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    life = Life(twin)
    crashed = crash_manifest_writes(monkeypatch, times=3)
    life.upload_spec("fault-dlq", SPEC)
    life.upload_dataset("fault-dlq", "data.csv", data)
    life.settle()

    assert len(crashed) == 3  # the first attempt and Lambda's two retries
    assert not life.registry().model_exists("fault-dlq") or life.versions("fault-dlq") == []
    kept = [m for m in dlq_messages(twin, "ConvertDLQ") if "fault-dlq" in json.dumps(m)]
    assert len(kept) == 1, kept
    record = kept[0]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    event = record["requestPayload"]

    # When the operator replays the kept event after the fault is gone (twice, to be sure)
    monkeypatch.undo()
    twin.invoke("ConvertFunction", event)
    twin.invoke("ConvertFunction", event)
    twin.wait_idle()

    # Then the model exists once
    assert life.versions("fault-dlq") == [1]
    life.verify_artifacts("fault-dlq", 1)
    twin.wait_idle()
