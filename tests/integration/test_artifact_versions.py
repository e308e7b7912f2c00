"""Issue 17, finding 4: convert picks a job's artifact by S3 object version, on moto's versioned bucket.

SageMaker jobs share one execution role (no per-job session policy), so any training container may write
any job's ``staging/`` key. convert lists the versions of the job's archive key and reads only a key
written exactly once, within the job's run (the backend's start and end, or the job record's creation),
and then exactly that version; the version id and SHA-256 go to the artifact link and the manifest.
Everything else is ``ArtifactIntegrityFailed`` (``artifact_tampered``) and ``ConversionFailed`` before a
byte is downloaded. No TensorFlow: the conversion itself is a stand-in (tests/unit/test_convert.py).
On main before this change the refusals below published a version (or called a delete "missing")."""

from __future__ import annotations

import copy
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from modelops.stages import convert as conversion
from modelops.storage.jobs import JobStore
from modelops.storage.registry import Registry
from modelops.storage.s3 import ObjectStore
from tests.fakes import FakeBus
from tests.integration.convert_support import (
    BUCKET,
    artifact_key,
    load_event,
    put_job_record,
    registry_keys,
    sagemaker_event,
    targz,
)

JOB = "modelops-demo-0123456789ab"
KEY = artifact_key("demo", JOB)


@pytest.fixture
def deps(s3: Any, registry_bucket: str, bus: FakeBus, monkeypatch: pytest.MonkeyPatch) -> conversion.Deps:
    monkeypatch.setattr(conversion, "_convert", stand_in)
    return conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)


def stand_in(bundle: Any, spec: Any, opts: Any) -> Any:
    """``conversion._convert`` without TensorFlow (these tests are about which bytes reach it)."""
    return SimpleNamespace(
        tflite=b"\0\0\0\0TFL3 stand-in",
        tflite_int8=None,
        parity={"float32": {"max_abs_diff": 0.0, "passed": True}},
        serving_budget={"tflite_bytes": 17, "single_row_latency_us": 1.0},
        frameworks={},
        seconds={},
    )


def archive(rmse: float = 0.5) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((4, 3), np.float32), y=np.zeros(4, np.float32))
    return targz(
        {
            "saved_model/saved_model.pb": b"a graph",
            "schema.json": json.dumps(
                {"task": "regression", "features": [{"name": n} for n in "abc"]}
            ).encode(),
            "metrics.json": json.dumps({"rmse": rmse}).encode(),
            "baseline.json": b'{"schema_version": 1}',
            "heldout.npz": buf.getvalue(),
        }
    )


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def job_ran(start: datetime, end: datetime) -> dict[str, Any]:
    """The job's completion event, with its run as SageMaker reports it (epoch milliseconds)."""
    ev = sagemaker_event(JOB)
    ev["detail"]["TrainingStartTime"], ev["detail"]["TrainingEndTime"] = ms(start), ms(end)
    return ev


def now() -> datetime:
    return datetime.now(UTC)


def refused(res: conversion.Result, bus: FakeBus, s3: Any, text: str) -> dict[str, Any]:
    assert (res.outcome, res.error_code) == ("conversion_failed", "integrity_error")
    assert bus.types() == ["ArtifactIntegrityFailed", "ConversionFailed"]
    alert = bus.of("ArtifactIntegrityFailed")[-1]
    assert (alert["reason"], alert["job"], alert["key"]) == ("artifact_tampered", JOB, KEY)
    assert text in alert["message"], alert["message"]
    failed = bus.of("ConversionFailed")[-1]
    assert (failed["stage"], failed["code"], failed["reason"]) == (
        "integrity",
        "integrity_error",
        alert["message"],
    )
    # nothing published, and no link: the archive was never read
    assert registry_keys(s3) == [] and registry_keys(s3, f"jobs/{JOB}.artifact") == []
    return alert


# ---------------------------------------------------------------------------- accepted
def test_the_single_version_written_during_the_run_is_converted_and_its_version_recorded(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    # Given a job that started an hour ago, finished now, and wrote its archive once
    put_job_record(s3, JOB)
    body = archive()
    put = s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    s3.put_object(Bucket=BUCKET, Key=KEY + ".bak", Body=b"a longer key is another object")

    res = conversion.handle_event(job_ran(now() - timedelta(hours=1), now()), deps)

    # Then that version is converted; the link and the manifest's lineage name it and its SHA-256
    assert (res.outcome, res.version) == ("published", 1)
    link = json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{JOB}.artifact.json")["Body"].read())
    sha = hashlib.sha256(body).hexdigest()
    assert (link["version_id"], link["sha256"], link["size"]) == (put["VersionId"], sha, len(body))
    assert link["window"]["start_from"] == "sagemaker start" and link["window"]["skew_seconds"] == 60.0
    lineage = deps.registry.get_manifest("demo", 1).get("training")["artifact"]
    assert (lineage["version_id"], lineage["sha256"], lineage["key"]) == (put["VersionId"], sha, KEY)


def test_the_versioned_read_returns_that_versions_bytes(
    s3: Any, registry_bucket: str, tmp_path: Path
) -> None:
    jobs = JobStore(ObjectStore(s3, registry_bucket))
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"first")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"second")
    path = jobs.download_artifact(KEY, tmp_path / "a.tar.gz", 100, version_id=first["VersionId"])
    assert path.read_bytes() == b"first"


def test_the_version_listing_pages_and_keeps_to_the_exact_key(s3: Any, registry_bucket: str) -> None:
    # Given 3 versions and a delete marker of the key, and a longer key beside it
    store = ObjectStore(s3, registry_bucket)
    ids = [s3.put_object(Bucket=BUCKET, Key=KEY, Body=bytes([i]))["VersionId"] for i in range(3)]
    marker = s3.delete_object(Bucket=BUCKET, Key=KEY)["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=KEY + ".bak", Body=b"x")

    # When they are listed two to a page
    entries = list(store.iter_versions(KEY, page_size=2))
    versions, complete = JobStore(store).artifact_versions(KEY)

    # Then every entry comes back across the pages, and the job's key's history is those four alone
    assert sorted(e["VersionId"] for e in entries if e["Key"] == KEY) == sorted([*ids, marker])
    assert [e["Key"] for e in entries].count(KEY + ".bak") == 1
    assert complete and sorted(v.version_id for v in versions) == sorted([*ids, marker])
    assert [v.delete_marker for v in versions].count(True) == 1
    # bounded: with a limit of 2 it says it did not see them all
    few, all_seen = JobStore(store).artifact_versions(KEY, limit=2)
    assert (len(few), all_seen) == (2, False)


# ---------------------------------------------------------------------------- refused
def test_a_second_version_written_after_the_job_is_refused(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    # Given the job's archive, and the same key written again (another job's container, say)
    put_job_record(s3, JOB)
    ours = s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive())
    theirs = s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive(rmse=0.0001))

    res = conversion.handle_event(job_ran(now() - timedelta(hours=1), now() + timedelta(seconds=5)), deps)

    alert = refused(res, bus, s3, "it was written 2 times")
    assert [v["version_id"] for v in alert["versions"]] == [theirs["VersionId"], ours["VersionId"]]


def test_a_version_written_after_the_jobs_end_is_refused(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    # Given a job that ended an hour ago, and its key's only version written now
    put_job_record(s3, JOB)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive())
    end = now() - timedelta(hours=1)

    res = conversion.handle_event(job_ran(end - timedelta(hours=1), end), deps)

    alert = refused(res, bus, s3, "outside the job's run")
    assert conversion.instant(alert["window"]["end"]) == end.replace(
        microsecond=end.microsecond // 1000 * 1000
    )


def test_a_batch_jobs_artifact_written_after_it_stopped_is_refused(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    put_job_record(s3, JOB, backend="batch")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive())
    ev = copy.deepcopy(load_event("batch_job_state_change.json"))
    stopped = now() - timedelta(minutes=30)
    ev["detail"].update(status="SUCCEEDED", startedAt=ms(stopped - timedelta(hours=1)), stoppedAt=ms(stopped))
    alert = refused(conversion.handle_event(ev, deps), bus, s3, "(batch end)")
    assert alert["window"]["end_from"] == "batch end"


def test_a_delete_marker_on_the_key_is_refused_with_a_clear_reason(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    # Given the job's archive deleted after it was written (S3 keeps it under a delete marker)
    put_job_record(s3, JOB)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive())
    marker = s3.delete_object(Bucket=BUCKET, Key=KEY)["VersionId"]

    res = conversion.handle_event(job_ran(now() - timedelta(hours=1), now() + timedelta(seconds=5)), deps)

    # Then it is refused as tampered (not "the job left no output"), naming the marker
    alert = refused(res, bus, s3, f"it was deleted (delete marker {marker} at ")
    assert [v["delete_marker"] for v in alert["versions"]] == [True, False]


def test_a_key_that_never_existed_is_still_a_missing_artifact(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    put_job_record(s3, JOB)
    res = conversion.handle_event(job_ran(now() - timedelta(hours=1), now()), deps)
    assert (res.outcome, res.error_code) == ("conversion_failed", "artifact_invalid")
    assert bus.types() == ["ConversionFailed"] and bus.of("ConversionFailed")[-1]["stage"] == "download"


def test_an_unversioned_bucket_is_not_trusted(s3: Any, bus: FakeBus, monkeypatch: pytest.MonkeyPatch) -> None:
    # S3 answers VersionId "null" where versioning is off: an overwrite would leave no trace
    s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setattr(conversion, "_convert", stand_in)
    deps = conversion.Deps(registry=Registry(s3, BUCKET, actor="convert"), bus=bus)
    put_job_record(s3, JOB)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive())
    res = conversion.handle_event(job_ran(now() - timedelta(hours=1), now() + timedelta(seconds=5)), deps)
    refused(res, bus, s3, "has no S3 version id")


# ---------------------------------------------------------------------------- the convert role (parsed template)
def test_convert_may_list_and_read_versions_of_staged_artifacts_only() -> None:
    from tests.unit.test_template_gate import REG, as_list, statements, sub_text

    sts = [st for st in statements("ConvertFunction") if st["Effect"] == "Allow"]
    listing = [st for st in sts if "s3:ListBucketVersions" in as_list(st["Action"])]
    assert [sub_text(st["Resource"]) for st in listing] == [REG]
    assert listing[0]["Condition"] == {"StringLike": {"s3:prefix": ["staging/*"]}}
    reads = [st for st in sts if "s3:GetObjectVersion" in as_list(st["Action"])]
    assert [sub_text(r) for st in reads for r in as_list(st["Resource"])] == [f"{REG}/staging/*"]
