"""The convert stage on in-memory storage (tests.fakes.MemoryObjectStore with S3 versioning added here,
FakeBus): event routing, the job record lookup, permanently bad artifacts, the artifact's one version and
transient S3 failures, with no moto and no TensorFlow."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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


class _Body(io.BytesIO):
    def iter_chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        while chunk := self.read(size):
            yield chunk


class VersionedStore(MemoryObjectStore):
    """A versioned bucket, as the registry bucket is: every write adds a version, a delete adds a delete
    marker; ``iter_versions`` is ListObjectVersions, ``get(key, VersionId=...)`` reads one version.
    ``clock`` gives the next write's LastModified."""

    def __init__(self, bucket: str = "registry") -> None:
        super().__init__(bucket)
        self.history: dict[str, list[dict[str, Any]]] = {}  # oldest first
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.version_ids: Callable[[int], str] = lambda n: f"v{n:04d}"
        self._n = 0

    def _add(self, key: str, **entry: Any) -> dict[str, Any]:
        self._n += 1
        item = {"Key": key, "VersionId": self.version_ids(self._n), "LastModified": self.clock(), **entry}
        self.history.setdefault(key, []).append(item)
        return item

    def _store(self, key: str, body: bytes, content_type: str) -> str:
        etag = super()._store(key, body, content_type)
        when = self.clock()
        self.objects[key] = (*self.objects[key][:3], when)
        self._add(key, Body=bytes(body), ETag=etag, DeleteMarker=False)
        return etag

    def delete(self, key: str) -> None:
        super().delete(key)
        self._add(key, DeleteMarker=True)

    def forget_version(self, key: str, version_id: str) -> None:
        """DeleteObjectVersion (nobody in the stack may, the break-glass role aside)."""
        self.history[key] = [v for v in self.history[key] if v["VersionId"] != version_id]

    def iter_versions(self, prefix: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
        self._enter("versions", prefix)
        for key in sorted(self.history):
            if key.startswith(prefix):
                for v in reversed(self.history[key]):
                    body = v.get("Body")
                    yield {k: x for k, x in v.items() if k != "Body"} | (
                        {} if body is None else {"Size": len(body)}
                    )

    def get(self, key: str, **kwargs: Any) -> dict[str, Any] | None:
        if "VersionId" not in kwargs:
            return super().get(key)
        self._enter("get", key)
        for v in self.history.get(key, []):
            if v["VersionId"] == kwargs["VersionId"] and not v["DeleteMarker"]:
                body = v["Body"]
                return {
                    "Body": _Body(body),
                    "ETag": v["ETag"],
                    "ContentLength": len(body),
                    "VersionId": v["VersionId"],
                }
        return None


@pytest.fixture
def memory_store() -> VersionedStore:
    return VersionedStore("registry")


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
@pytest.mark.parametrize("method", ["versions", "get"])
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


# ---------------------------------------------------------------------------- no TensorFlow past this line:
# ``_convert`` (the only TensorFlow call) is replaced by a stand-in, so the publish path runs in memory.
def bundle_files(rmse: float = 0.5) -> dict[str, bytes]:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((4, 3), np.float32), y=np.zeros(4, np.float32))
    return {
        "saved_model/saved_model.pb": b"a graph",
        "schema.json": json.dumps({"task": "regression", "features": [{"name": n} for n in "abc"]}).encode(),
        "metrics.json": json.dumps({"rmse": rmse}).encode(),
        "baseline.json": b'{"schema_version": 1}',
        "heldout.npz": buf.getvalue(),
    }


class StandIn:
    """``conversion._convert`` without TensorFlow: what it was given and whether the job's artifact link
    existed when it was called (anything loaded must come after the link)."""

    def __init__(self, store: MemoryObjectStore, fail: Exception | None = None):
        self.store, self.fail, self.calls, self.linked = store, fail, 0, []

    def __call__(self, bundle: Any, spec: Any, opts: Any) -> Any:
        from types import SimpleNamespace

        self.calls += 1
        self.linked.append(f"jobs/{JOB}.artifact.json" in self.store.objects)
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(
            tflite=b"\0\0\0\0TFL3 stand-in",
            tflite_int8=None,
            parity={"float32": {"max_abs_diff": 0.0, "passed": True}},
            serving_budget={"tflite_bytes": 17, "single_row_latency_us": 1.0},
            frameworks={},
            seconds={},
        )


def test_convert_publishes_a_version_and_leaves_the_alias_to_the_gate(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops.stages import gate as gating

    put_record(memory_store)
    memory_store.create(ARTIFACT, targz(bundle_files()), "application/gzip")
    monkeypatch.setattr(conversion, "_convert", StandIn(memory_store))

    res = conversion.handle_event(sagemaker_event(JOB), deps)

    # convert published v1 and said so; it wrote no alias and no alias history
    assert (res.outcome, res.version) == ("published", 1) and "the gate decides" in res.reason
    assert bus.types() == ["ModelVersionPublished"]
    assert not [k for k in memory_store.keys("models/") if "/aliases/" in k or "/history/" in k]
    assert not [c for c in memory_store.calls if "/aliases/" in c[1] or "/history/" in c[1]]
    # a replay of the job: no new version, the event again (for a gate that may never have run)
    assert conversion.handle_event(sagemaker_event(JOB), deps).outcome == "replayed"
    assert bus.types() == ["ModelVersionPublished", "ModelVersionPublished"]
    assert bus.of("ModelVersionPublished")[-1]["replay"] is True
    assert not [k for k in memory_store.keys("models/") if "/aliases/" in k]

    # the gate function, given convert's event, makes v1 production (the same events, in order)
    detail = bus.of("ModelVersionPublished")[0]
    gate_deps = gating.Deps(registry=Registry.over(memory_store, actor="gate"), bus=bus)
    out = gating.handle_event(
        {"source": "modelops", "detail-type": "ModelVersionPublished", "detail": detail}, gate_deps
    )
    assert out.outcome == "decided" and gate_deps.registry.resolve("demo") == 1
    assert bus.types() == ["ModelVersionPublished", "ModelVersionPublished", "ModelPromoted"]


def test_the_artifact_link_is_recorded_before_anything_is_loaded(
    deps: conversion.Deps, memory_store: MemoryObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    put_record(memory_store)
    archive = targz(bundle_files())
    memory_store.create(ARTIFACT, archive, "application/gzip")
    stand_in = StandIn(memory_store)
    monkeypatch.setattr(conversion, "_convert", stand_in)

    conversion.handle_event(sagemaker_event(JOB), deps)

    link = memory_store.json(f"jobs/{JOB}.artifact.json")
    assert (link["job"], link["key"], link["size"]) == (JOB, ARTIFACT, len(archive))
    assert link["sha256"] == hashlib.sha256(archive).hexdigest()
    assert link["etag"] == memory_store.objects[ARTIFACT][1].strip('"') and link["recorded_by"] == "convert"
    assert stand_in.linked == [True]


def first_delivery_fails_parity(
    deps: conversion.Deps, memory_store: MemoryObjectStore, monkeypatch: pytest.MonkeyPatch
) -> tuple[StandIn, bytes]:
    """A job whose first delivery read its archive (linking it) and failed the parity check."""
    from modelops.domain.errors import ParityError

    put_record(memory_store)
    original = targz(bundle_files(rmse=0.5))
    memory_store.create(ARTIFACT, original, "application/gzip")
    stand_in = StandIn(memory_store, fail=ParityError("parity failed", {"rows": 4}))
    monkeypatch.setattr(conversion, "_convert", stand_in)
    assert conversion.handle_event(sagemaker_event(JOB), deps).outcome == "conversion_failed"
    return stand_in, original


def test_a_replay_after_the_artifact_was_overwritten_is_refused_before_loading_it(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in, _ = first_delivery_fails_parity(deps, memory_store, monkeypatch)
    bus.sent.clear()
    first = memory_store.history[ARTIFACT][0]["VersionId"]

    # When the staged archive is written again after the job (by a training container, or anyone with
    # staging/ rights) and the job's completion event is delivered again
    memory_store.put(ARTIFACT, targz(bundle_files(rmse=0.0001)), "application/gzip")
    memory_store.calls.clear()
    res = conversion.handle_event(sagemaker_event(JOB), deps)

    # Then nothing is downloaded, loaded or published: ArtifactIntegrityFailed, then ConversionFailed
    assert (res.outcome, res.error_code) == ("conversion_failed", "integrity_error")
    assert bus.types() == ["ArtifactIntegrityFailed", "ConversionFailed"]
    alert = bus.of("ArtifactIntegrityFailed")[-1]
    assert (alert["model"], alert["job"], alert["reason"], alert["version"]) == (
        "demo",
        JOB,
        "artifact_tampered",
        None,
    )
    assert [v["version_id"] for v in alert["versions"]][-1] == first and len(alert["versions"]) == 2
    assert "it was written 2 times" in alert["message"]
    failed = bus.of("ConversionFailed")[-1]
    assert (failed["stage"], failed["code"]) == ("integrity", "integrity_error")
    assert "cannot be trusted as the one its job wrote" in failed["reason"]
    assert ("get", ARTIFACT) not in memory_store.calls
    assert stand_in.calls == 1 and written(memory_store) == []


def test_a_version_that_replaced_the_first_read_one_is_refused_by_the_link(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    stand_in, original = first_delivery_fails_parity(deps, memory_store, monkeypatch)
    bus.sent.clear()
    # Given the version convert read was removed for good (DeleteObjectVersion: no stage role may) and
    # the key written again: it has one version once more
    memory_store.forget_version(ARTIFACT, memory_store.history[ARTIFACT][0]["VersionId"])
    memory_store.put(ARTIFACT, targz(bundle_files(rmse=0.0001)), "application/gzip")

    res = conversion.handle_event(sagemaker_event(JOB), deps)

    # Then the artifact link (create-only) still names the first bytes and refuses the new ones
    assert (res.outcome, res.error_code) == ("conversion_failed", "integrity_error")
    alert = bus.of("ArtifactIntegrityFailed")[-1]
    assert alert["reason"] == "artifact_changed"
    assert alert["expected"]["sha256"] == hashlib.sha256(original).hexdigest() != alert["actual"]["sha256"]
    assert alert["expected"]["version_id"] != alert["actual"]["version_id"]
    assert "not the one convert first read" in bus.of("ConversionFailed")[-1]["reason"]
    assert stand_in.calls == 1 and written(memory_store) == []
    assert memory_store.json(f"jobs/{JOB}.artifact.json")["sha256"] == hashlib.sha256(original).hexdigest()


def test_a_replay_of_the_same_bytes_is_converted(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in, _ = first_delivery_fails_parity(deps, memory_store, monkeypatch)
    stand_in.fail = None  # say the parity limit was fixed, and the event replayed from the DLQ
    assert conversion.handle_event(sagemaker_event(JOB), deps).outcome == "published"
    assert stand_in.calls == 2 and bus.types()[-1] == "ModelVersionPublished"


def test_another_archive_for_the_same_job_is_refused_even_with_the_same_bytes(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A search's best trial is chosen from records its trials wrote: a replay that picks another
    # trial's archive is not the archive first read for the job
    stand_in, original = first_delivery_fails_parity(deps, memory_store, monkeypatch)
    other = deps.jobs.artifact_key("demo", JOB, 1)
    memory_store.create(other, original, "application/gzip")
    record = conversion.load_job_record(deps.jobs, JOB)
    ev = conversion.parse_job_event(sagemaker_event(JOB))
    assert record is not None and ev is not None

    res = conversion.convert_job(ev, record, deps, key=other)

    assert (res.outcome, res.error_code) == ("conversion_failed", "integrity_error")
    assert bus.of("ArtifactIntegrityFailed")[-1]["actual"]["key"] == other
    assert stand_in.calls == 1


def test_a_malformed_artifact_link_raises(
    deps: conversion.Deps, memory_store: MemoryObjectStore, tmp_path: Any
) -> None:
    memory_store.create(f"jobs/{JOB}.artifact.json", b'{"sha256": 1}')
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"x")
    with pytest.raises(CorruptDocumentError, match="artifact link"):
        deps.jobs.link_artifact(JOB, ARTIFACT, path)


# ---------------------------------------------------------------------------- categorical schemas
def categorical_bundle(feature: dict[str, Any], column: list[float]) -> dict[str, bytes]:
    import io

    import numpy as np

    files = bundle_files()
    x = np.zeros((4, 2), np.float32)
    x[:, 1] = column
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.zeros(4, np.float32))
    files["heldout.npz"] = buf.getvalue()
    files["schema.json"] = json.dumps({"task": "regression", "features": [{"name": "age"}, feature]}).encode()
    return files


@pytest.mark.parametrize(
    ("feature", "column", "text"),
    [
        (
            {"name": "plan", "type": "categorical", "dtype": "string"},
            [0, 0, 0, 0],
            "schema.json does not describe the model's input: feature 'plan': a categorical feature needs a list of strings",
        ),
        ({"name": "plan", "type": "text"}, [0, 0, 0, 0], "feature 'plan': unknown type 'text'"),
        (
            {"name": "plan", "type": "categorical", "vocabulary": ["a", "a"]},
            [0, 0, 0, 0],
            "the vocabulary repeats a value",
        ),
        (
            {"name": "plan", "type": "categorical", "vocabulary": ["a", "b"]},
            [0, 1, 2, 3],
            "heldout.npz column 1 ('plan') is categorical and must hold vocabulary indices 0..2",
        ),
        (
            {"name": "plan", "type": "categorical", "vocabulary": ["a", "b"]},
            [0, 0.5, 1, 2],
            "must hold vocabulary indices",
        ),
    ],
)
def test_a_schema_convert_cannot_serve_is_refused_with_the_reason(
    deps: conversion.Deps,
    memory_store: MemoryObjectStore,
    bus: FakeBus,
    monkeypatch: pytest.MonkeyPatch,
    feature: dict[str, Any],
    column: list[float],
    text: str,
) -> None:
    put_record(memory_store)
    memory_store.create(ARTIFACT, targz(categorical_bundle(feature, column)), "application/gzip")
    stand_in = StandIn(memory_store)
    monkeypatch.setattr(conversion, "_convert", stand_in)
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert (res.outcome, res.error_code) == ("conversion_failed", "artifact_invalid")
    assert text in bus.of("ConversionFailed")[-1]["reason"]
    assert stand_in.calls == 0 and written(memory_store) == []


def test_a_categorical_schema_is_published_as_the_trainer_wrote_it(
    deps: conversion.Deps, memory_store: MemoryObjectStore, bus: FakeBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    feature = {"name": "plan", "type": "categorical", "dtype": "string", "vocabulary": ["basic", "pro"]}
    put_record(memory_store)
    memory_store.create(ARTIFACT, targz(categorical_bundle(feature, [0, 1, 2, 1])), "application/gzip")
    monkeypatch.setattr(conversion, "_convert", StandIn(memory_store))
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert (res.outcome, res.version) == ("published", 1)
    manifest = deps.registry.get_manifest("demo", 1)
    assert manifest.get("schema")["features"][1] == feature


# ---------------------------------------------------------------------------- the artifact's one version
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def timed_event(start: datetime, end: datetime) -> dict[str, Any]:
    """A completion event as SageMaker sends it: with the job's start and end (epoch milliseconds)."""
    ev = sagemaker_event(JOB)
    ev["detail"]["TrainingStartTime"], ev["detail"]["TrainingEndTime"] = ms(start), ms(end)
    return ev


def write_at(store: VersionedStore, when: datetime, body: bytes, key: str = ARTIFACT) -> str:
    store.clock = lambda: when
    store.put(key, body, "application/gzip")
    return str(store.history[key][-1]["VersionId"])


def refused(res: conversion.Result, bus: FakeBus, text: str) -> dict[str, Any]:
    assert (res.outcome, res.error_code) == ("conversion_failed", "integrity_error")
    assert bus.types() == ["ArtifactIntegrityFailed", "ConversionFailed"]
    alert = bus.of("ArtifactIntegrityFailed")[-1]
    assert (alert["reason"], alert["role"], alert["key"]) == (
        "artifact_tampered",
        "training_artifact",
        ARTIFACT,
    )
    assert text in alert["message"] and alert["message"] == bus.of("ConversionFailed")[-1]["reason"]
    assert bus.of("ConversionFailed")[-1]["stage"] == "integrity"
    return alert


@pytest.fixture
def stand_in(memory_store: VersionedStore, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    s = StandIn(memory_store)
    monkeypatch.setattr(conversion, "_convert", s)
    return s


def test_the_one_version_written_in_the_jobs_run_is_read_and_recorded(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    import hashlib

    # Given a job that ran 12:00-12:30 and wrote its archive once at 12:29 (and a stray longer key)
    put_record(memory_store, created_at="2026-03-01T11:59:00.000000Z")
    archive = targz(bundle_files())
    version = write_at(memory_store, T0 + timedelta(minutes=29), archive)
    write_at(memory_store, T0 + timedelta(hours=2), b"not this", key=ARTIFACT + ".bak")

    res = conversion.handle_event(timed_event(T0, T0 + timedelta(minutes=30)), deps)

    # Then that version is converted, and the link and the manifest name it and its SHA-256
    assert (res.outcome, res.version) == ("published", 1) and stand_in.calls == 1
    link = memory_store.json(f"jobs/{JOB}.artifact.json")
    sha = hashlib.sha256(archive).hexdigest()
    assert (link["version_id"], link["sha256"], link["last_modified"]) == (
        version,
        sha,
        "2026-03-01T12:29:00.000000Z",
    )
    assert link["window"] == {
        "start": "2026-03-01T12:00:00.000000Z",
        "end": "2026-03-01T12:30:00.000000Z",
        "start_from": "sagemaker start",
        "end_from": "sagemaker end",
        "skew_seconds": 60.0,
    }
    lineage = deps.registry.get_manifest("demo", 1).get("training")["artifact"]
    assert (lineage["key"], lineage["version_id"], lineage["sha256"]) == (ARTIFACT, version, sha)


def test_the_version_read_is_the_one_checked_even_if_the_key_moves_on(
    deps: conversion.Deps, memory_store: VersionedStore, tmp_path: Any
) -> None:
    first = write_at(memory_store, T0, b"first")
    write_at(memory_store, T0 + timedelta(minutes=1), b"second")
    path = deps.jobs.download_artifact(ARTIFACT, tmp_path / "a", 100, version_id=first)
    assert path.read_bytes() == b"first"


def test_an_archive_written_twice_is_refused_before_anything_is_downloaded(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    # Given the key written in the job's run and again after it (another job's container, say)
    put_record(memory_store)
    ours = write_at(memory_store, T0 + timedelta(minutes=29), targz(bundle_files()))
    theirs = write_at(memory_store, T0 + timedelta(minutes=31), targz(bundle_files(rmse=0.0001)))

    res = conversion.handle_event(timed_event(T0, T0 + timedelta(minutes=30)), deps)

    alert = refused(res, bus, "it was written 2 times")
    assert [v["version_id"] for v in alert["versions"]] == [theirs, ours]
    assert stand_in.calls == 0 and ("get", ARTIFACT) not in memory_store.calls
    assert f"jobs/{JOB}.artifact.json" not in memory_store.objects and written(memory_store) == []


def test_an_archive_written_twice_inside_the_run_is_refused_too(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    # another job writing the key before the owning job finishes: the job's own upload makes two
    put_record(memory_store)
    write_at(memory_store, T0 + timedelta(minutes=5), targz(bundle_files(rmse=0.0001)))
    write_at(memory_store, T0 + timedelta(minutes=29), targz(bundle_files()))
    res = conversion.handle_event(timed_event(T0, T0 + timedelta(minutes=30)), deps)
    refused(res, bus, "it was written 2 times")
    assert stand_in.calls == 0


@pytest.mark.parametrize(
    ("written_at", "text"),
    [
        (T0 + timedelta(minutes=32), "outside the job's run [2026-03-01T12:00:00.000000Z (sagemaker start)"),
        (T0 - timedelta(minutes=2), "it was written at 2026-03-01T11:58:00.000000Z, outside the job's run"),
    ],
)
def test_a_version_written_outside_the_jobs_run_is_refused(
    deps: conversion.Deps,
    memory_store: VersionedStore,
    bus: FakeBus,
    stand_in: StandIn,
    written_at: datetime,
    text: str,
) -> None:
    put_record(memory_store)
    write_at(memory_store, written_at, targz(bundle_files()))
    res = conversion.handle_event(timed_event(T0, T0 + timedelta(minutes=30)), deps)
    alert = refused(res, bus, text)
    assert alert["window"]["end"] == "2026-03-01T12:30:00.000000Z" and stand_in.calls == 0


@pytest.mark.parametrize("seconds", [-59, 59])
def test_the_stated_clock_skew_is_allowed_either_side(
    deps: conversion.Deps, memory_store: VersionedStore, stand_in: StandIn, seconds: int
) -> None:
    put_record(memory_store)
    end = T0 + timedelta(minutes=30)
    write_at(memory_store, (T0 if seconds < 0 else end) + timedelta(seconds=seconds), targz(bundle_files()))
    assert conversion.handle_event(timed_event(T0, end), deps).outcome == "published"


def test_without_backend_times_the_job_records_creation_bounds_the_window(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    # an archive that was there before train_trigger created the job record was not written by the job
    put_record(memory_store, created_at="2026-03-01T12:00:00Z")
    write_at(memory_store, T0 - timedelta(hours=1), targz(bundle_files()))
    alert = refused(conversion.handle_event(sagemaker_event(JOB), deps), bus, "(job record)")
    assert (alert["window"]["start_from"], alert["window"]["end"]) == ("job record", None)


@pytest.mark.parametrize("again", [False, True])
def test_a_delete_marker_on_the_key_is_refused_with_the_reason(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn, again: bool
) -> None:
    # Given the job's archive deleted (a delete marker over it), or deleted and written again
    put_record(memory_store)
    write_at(memory_store, T0 + timedelta(minutes=29), targz(bundle_files()))
    memory_store.clock = lambda: T0 + timedelta(minutes=29, seconds=30)
    memory_store.delete(ARTIFACT)
    if again:
        write_at(memory_store, T0 + timedelta(minutes=29, seconds=40), targz(bundle_files(rmse=0.0001)))

    res = conversion.handle_event(timed_event(T0, T0 + timedelta(minutes=30)), deps)

    marker = next(v["VersionId"] for v in memory_store.history[ARTIFACT] if v["DeleteMarker"])
    alert = refused(res, bus, f"it was deleted (delete marker {marker} at 2026-03-01T12:29:30.000000Z)")
    assert [v["delete_marker"] for v in alert["versions"]] == ([False] if again else []) + [True, False]
    assert ("it was written 2 times" in alert["message"]) is again and stand_in.calls == 0


def test_a_lone_delete_marker_is_refused_not_reported_missing(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    put_record(memory_store)
    memory_store.delete(ARTIFACT)
    refused(conversion.handle_event(sagemaker_event(JOB), deps), bus, "it was deleted")


def test_an_object_without_a_version_id_is_refused(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    # what an unversioned bucket answers: overwrites would leave no trace, so nothing is trusted
    put_record(memory_store)
    memory_store.version_ids = lambda n: "null"
    memory_store.put(ARTIFACT, targz(bundle_files()), "application/gzip")
    refused(conversion.handle_event(sagemaker_event(JOB), deps), bus, "has no S3 version id")


def test_the_version_listing_is_bounded(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    put_record(memory_store)
    for i in range(25):
        write_at(memory_store, T0 + timedelta(seconds=i), b"x")
    versions, complete = deps.jobs.artifact_versions(ARTIFACT)
    assert (len(versions), complete) == (10, False)
    assert versions[0].version_id == memory_store.history[ARTIFACT][-1]["VersionId"]  # newest first
    alert = refused(
        conversion.handle_event(sagemaker_event(JOB), deps),
        bus,
        "it has more than 10 versions and delete markers",
    )
    assert len(alert["versions"]) == 10


def test_a_batch_jobs_window_is_its_started_and_stopped_times(
    deps: conversion.Deps, memory_store: VersionedStore, bus: FakeBus, stand_in: StandIn
) -> None:
    put_record(memory_store, backend="batch")
    ev = copy.deepcopy(load_event("batch_job_state_change.json"))
    ev["detail"].update(status="SUCCEEDED", startedAt=ms(T0), stoppedAt=ms(T0 + timedelta(minutes=30)))
    write_at(memory_store, T0 + timedelta(minutes=45), targz(bundle_files()))
    alert = refused(conversion.handle_event(ev, deps), bus, "outside the job's run")
    assert (alert["window"]["start_from"], alert["window"]["end_from"]) == ("batch start", "batch end")


def test_a_tuning_jobs_window_is_its_best_training_jobs_run(
    deps: conversion.Deps, memory_store: VersionedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SageMaker:
        def describe_hyper_parameter_tuning_job(self, **_: Any) -> dict[str, Any]:
            return {
                "TrainingJobDefinition": {"StaticHyperParameters": {"job": JOB}},
                "HyperParameterTuningJobStatus": "Completed",
                "BestTrainingJob": {
                    "TrainingJobName": "tj-1",
                    "TrainingStartTime": T0,
                    "TrainingEndTime": T0 + timedelta(minutes=9),
                },
            }

    seen: list[conversion.JobEvent] = []

    def convert_job(ev: conversion.JobEvent, *_: Any, **__: Any) -> conversion.Result:
        seen.append(ev)
        return conversion.Result("published", "")

    monkeypatch.setattr(conversion, "convert_job", convert_job)
    deps.sagemaker = SageMaker()
    put_record(memory_store, search={"tuning_job": "tj"})
    ev = conversion.JobEvent("tj", "sagemaker", "completed", "Completed", "", None, {}, kind="tuning")
    conversion.handle_tuning_job(ev, deps)
    assert (seen[0].started_at, seen[0].ended_at) == (T0, T0 + timedelta(minutes=9))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1772366400000, datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),  # an event's epoch milliseconds
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("2026-03-01T13:00:00+01:00", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 12, 0), datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),  # naive: UTC
        (None, None),
        ("yesterday", None),
        (True, None),
        (-5, None),
    ],
)
def test_instant_reads_the_times_aws_gives(value: Any, expected: datetime | None) -> None:
    assert conversion.instant(value) == expected
