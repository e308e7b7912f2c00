"""The convert stage on in-memory storage (tests.fakes.MemoryObjectStore, FakeBus): event routing, the job
record lookup, permanently bad artifacts and transient S3 failures, with no moto and no TensorFlow."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from modelops.domain import search as searching
from modelops.domain.errors import CorruptDocumentError, RegistryUnavailableError
from modelops.stages import convert as conversion
from modelops.storage.registry import Registry
from tests.fakes import FakeBus, MemoryObjectStore
from tests.integration.convert_support import load_event, sagemaker_event, spec, targz

JOB = "modelops-demo-0123456789ab"
ARTIFACT = f"staging/demo/{JOB}/output/model.tar.gz"


@pytest.fixture
def deps(memory_store: MemoryObjectStore, bus: FakeBus) -> conversion.Deps:
    return conversion.Deps(registry=Registry.over(memory_store, actor="convert"), bus=bus)


def put_record(store: MemoryObjectStore, job: str = JOB, **fields: Any) -> dict[str, Any]:
    record = {
        "job": job,
        "model": "demo",
        "backend": "sagemaker",
        "dataset": {"bucket": "data", "key": "datasets/demo/train.csv", "sha256": "ab" * 32},
        "spec": spec(),
        **fields,
    }
    store.create_json(f"jobs/{job}.json", record)
    return record


def written(store: MemoryObjectStore) -> list[str]:
    """What the stage wrote (the test's own job records and staged archives aside)."""
    return [k for k in store.keys() if not k.startswith(("jobs/", "staging/"))]


# ---------------------------------------------------------------------------- routing
@pytest.mark.parametrize("event", [{"source": "aws.s3", "detail-type": "Object Created"}, {}, None, ["a"]])
def test_an_event_that_is_no_job_state_change_is_ignored_without_reading_anything(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, event: Any
) -> None:
    res = conversion.handle_event(event, deps)
    assert res.outcome == "ignored" and "not a training job state change" in res.reason
    assert memory_store.calls == [] and bus.sent == []


def test_an_unknown_job_is_ignored_after_looking_up_its_record(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert (res.outcome, res.job) == ("ignored", JOB) and "another stack" in res.reason
    assert memory_store.calls == [("get", f"jobs/{JOB}.json")]
    assert bus.sent == [] and written(memory_store) == []


def test_a_batch_array_child_is_ignored_the_parent_counts(deps: conversion.Deps, bus: FakeBus) -> None:
    ev = copy.deepcopy(load_event("batch_job_state_change.json"))
    ev["detail"]["status"], ev["detail"]["arrayProperties"] = "SUCCEEDED", {"index": 1}
    assert conversion.handle_event(ev, deps).outcome == "ignored" and bus.sent == []


# ---------------------------------------------------------------------------- the job record
def test_the_job_record_names_the_model_and_dataset_of_a_failed_job(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    put_record(memory_store, model="houses", backend="batch")
    res = conversion.handle_event(sagemaker_event(JOB, "Failed", reason="OOM"), deps)
    assert (res.outcome, res.model, res.reason) == ("training_failed", "houses", "OOM")
    detail = bus.of("TrainingJobFailed")[-1]
    assert (detail["model"], detail["backend"], detail["dataset"]["sha256"]) == ("houses", "batch", "ab" * 32)
    assert res.metrics == {"TrainingJobsFailed": ("Count", 1.0)}
    assert written(memory_store) == []


def test_load_job_record_parses_the_spec_and_keeps_a_bad_one_as_its_error(
    deps: conversion.Deps, memory_store: MemoryObjectStore
) -> None:
    assert conversion.load_job_record(deps.jobs, JOB) is None
    put_record(memory_store)
    record = conversion.load_job_record(deps.jobs, JOB)
    assert record is not None and (record.model, record.backend) == ("demo", "sagemaker")
    assert record.spec is not None and record.spec.task == "regression" and record.spec_error is None
    other = "modelops-demo-0000000000ff"
    put_record(memory_store, other, spec={"task": "nonsense"})
    bad = conversion.load_job_record(deps.jobs, other)
    assert bad is not None and bad.spec is None and bad.spec_error is not None


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", json.dumps({"job": "modelops-other-1", "model": "demo"}).encode(), b"{}"]
)
def test_a_malformed_job_record_raises_so_the_event_is_kept(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, body: bytes
) -> None:
    memory_store.create(f"jobs/{JOB}.json", body)
    with pytest.raises(CorruptDocumentError, match="malformed"):
        conversion.handle_event(sagemaker_event(JOB), deps)
    assert bus.sent == []


# ---------------------------------------------------------------------------- permanent failures
def test_a_missing_artifact_is_a_conversion_failure_not_a_retry(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    put_record(memory_store)
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert (res.outcome, res.error_code) == ("conversion_failed", "artifact_invalid")
    detail = bus.of("ConversionFailed")[-1]
    assert (
        detail["stage"] == "download"
        and f"no training artifact at s3://registry/{ARTIFACT}" in detail["reason"]
    )
    assert res.metrics == {"ConversionsFailed": ("Count", 1.0)}
    assert written(memory_store) == []


@pytest.mark.parametrize(
    ("body", "stage", "text"),
    [
        (b"<html>AccessDenied</html>", "extract", "not a tar.gz"),
        (targz({"schema.json": b"{}"}), "extract", "lacks saved_model/saved_model.pb"),
        (b"x" * 200, "download", "over the 100-byte limit"),
    ],
)
def test_a_permanently_bad_artifact_sends_conversion_failed(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, body: bytes, stage: str, text: str
) -> None:
    put_record(memory_store)
    memory_store.create(ARTIFACT, body, "application/gzip")
    deps.options = conversion.Options(max_artifact_bytes=100 if len(body) == 200 else 1024**3)
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert res.outcome == "conversion_failed" and bus.types() == ["ConversionFailed"]
    detail = bus.of("ConversionFailed")[-1]
    assert (detail["stage"], detail["code"], detail["version"]) == (stage, "artifact_invalid", None)
    assert text in detail["reason"]
    assert written(memory_store) == []


def test_an_invalid_spec_in_the_record_is_a_conversion_failure(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    put_record(memory_store, spec=spec(conversion={"quantize": "int4"}))
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert (res.outcome, res.error_code) == ("conversion_failed", "invalid_spec")
    assert bus.of("ConversionFailed")[-1]["stage"] == "spec"


# ---------------------------------------------------------------------------- transient failures
@pytest.mark.parametrize("method", ["get", "head"])
def test_a_transient_s3_failure_raises_so_lambda_retries(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, method: str
) -> None:
    put_record(memory_store)
    memory_store.create(ARTIFACT, targz({"schema.json": b"{}"}), "application/gzip")
    memory_store.fail_next(method)
    with pytest.raises(RegistryUnavailableError):
        conversion.handle_event(sagemaker_event(JOB), deps)
    assert bus.sent == [] and written(memory_store) == []


# ---------------------------------------------------------------------------- searches
def test_a_batch_search_reads_every_trial_record_and_reports_when_none_completed(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    search = {"learning_rate": {"min": 0.001, "max": 0.1}, "max_trials": 3, "strategy": "random"}
    put_record(
        memory_store, spec=spec(training={"search": search}), search={"mode": "array", "array_size": 3}
    )
    prefix = f"staging/demo/{JOB}/trials/"
    memory_store.create_json(f"{prefix}000/trial.json", searching.trial_doc(0, {}, "failed", error="E0"))
    memory_store.create(f"{prefix}001/trial.json", b"{cut")
    memory_store.create(f"{prefix}notes.txt", b"not a trial")
    ev = copy.deepcopy(load_event("batch_job_state_change.json"))
    ev["detail"]["status"], ev["detail"]["arrayProperties"] = "SUCCEEDED", {"size": 3}

    res = conversion.handle_event(ev, deps)

    assert res.outcome == "training_failed"
    reason = bus.of("TrainingJobFailed")[-1]["reason"]
    assert reason.startswith("all 3 trials failed: trial 0: E0; trial 1: unreadable trial.json")
    assert reason.endswith("trial 2: the child job left no trial record")
    assert written(memory_store) == []


def test_the_artifact_keys_of_a_job_and_its_trials(deps: conversion.Deps) -> None:
    jobs = deps.jobs
    assert jobs.artifact_key("demo", JOB) == ARTIFACT
    assert jobs.artifact_key("demo", JOB, 7) == f"staging/demo/{JOB}/trials/007/output/model.tar.gz"
    assert jobs.artifact_key("demo", JOB, "tj-001-abc") == (
        f"staging/demo/{JOB}/trials/tj-001-abc/output/model.tar.gz"
    )
