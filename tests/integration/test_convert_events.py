"""Convert: event routing and bad artifacts, on moto S3, without TensorFlow (every case stops before it)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from modelops.domain.archive import deterministic_targz
from modelops.domain.errors import CorruptDocumentError, InvalidEventError, RegistryUnavailableError
from modelops.stages import convert as conversion
from modelops.storage.registry import Registry
from tests.fakes import FakeBus
from tests.integration.convert_support import (
    BUCKET,
    artifact_key,
    load_event,
    put_job_record,
    registry_keys,
    sagemaker_event,
    spec,
    targz,
)

JOB = "modelops-demo-0123456789ab"


@pytest.fixture
def deps(s3, registry_bucket, bus: FakeBus) -> conversion.Deps:  # type: ignore[no-untyped-def]
    return conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)


def valid_files() -> dict[str, bytes]:
    """Everything the contract asks for except a loadable SavedModel (these cases never reach TF)."""
    return {
        "saved_model/saved_model.pb": b"not really a graph",
        "schema.json": json.dumps(
            {"task": "regression", "target": "y", "features": [{"name": "a"}]}
        ).encode(),
        "metrics.json": b'{"rmse": 1.0}',
        "baseline.json": b'{"schema_version": 1}',
        "heldout.npz": b"",
    }


# ---------------------------------------------------------------------------- routing
def test_a_job_of_another_stack_is_ignored_without_error(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    # Given a completed job with no jobs/{job}.json record in this registry
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=b"whatever")
    # When
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    # Then
    assert res.outcome == "ignored" and "another stack" in res.reason
    assert bus.sent == [] and registry_keys(s3) == []


@pytest.mark.parametrize(
    "event",
    [
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {}},
        {"hello": "world"},
        ["not", "a", "dict"],
        sagemaker_event(JOB, status="InProgress"),
    ],
)
def test_events_that_are_not_final_job_states_are_ignored(
    deps: conversion.Deps, bus: FakeBus, s3: Any, event: Any
) -> None:
    put_job_record(s3, JOB)
    assert conversion.handle_event(event, deps).outcome == "ignored"
    assert bus.sent == []


@pytest.mark.parametrize("name", [None, "", "../jobs/x", "a/b", "x" * 64])
def test_a_job_event_without_a_valid_job_name_is_an_error(deps: conversion.Deps, name: Any) -> None:
    ev = sagemaker_event(JOB)
    ev["detail"]["TrainingJobName"] = name
    with pytest.raises(InvalidEventError, match="valid job name"):
        conversion.handle_event(ev, deps)


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("Failed", "AlgorithmError: loss became NaN", "AlgorithmError: loss became NaN"),
        ("Stopped", None, "stopped"),
    ],
)
def test_a_failed_sagemaker_job_sends_training_job_failed_and_touches_nothing(
    deps: conversion.Deps,
    bus: FakeBus,
    s3,
    status: str,
    reason: str | None,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    put_job_record(s3, JOB)
    ev = sagemaker_event(JOB, status=status, reason=reason)
    if reason is None:
        ev["detail"].pop("FailureReason", None)

    res = conversion.handle_event(ev, deps)

    assert res.outcome == "training_failed" and res.reason == expected
    assert bus.types() == ["TrainingJobFailed"]
    detail = bus.of("TrainingJobFailed")[-1]
    assert (detail["model"], detail["job"], detail["status"], detail["reason"]) == (
        "demo",
        JOB,
        status,
        expected,
    )
    assert detail["dataset"]["sha256"] == "ab" * 32
    assert registry_keys(s3) == []


def test_failed_event_fixture_and_batch_failure(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    assert (
        conversion.handle_event(load_event("sagemaker_training_failed.json"), deps).outcome
        == "training_failed"
    )
    res = conversion.handle_event(load_event("batch_job_state_change.json"), deps)
    assert res.outcome == "training_failed" and res.reason == "Essential container in task exited"
    assert bus.types() == ["TrainingJobFailed", "TrainingJobFailed"]
    assert registry_keys(s3) == []


def test_corrupt_job_record_raises_so_the_event_is_kept(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=BUCKET, Key=f"jobs/{JOB}.json", Body=b"{not json")
    with pytest.raises(CorruptDocumentError, match="malformed"):
        conversion.handle_event(sagemaker_event(JOB), deps)
    assert bus.sent == []


def test_job_record_with_an_invalid_spec_is_a_conversion_failure(
    deps: conversion.Deps, bus: FakeBus, s3
) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB, spec_doc=spec(conversion={"quantize": "int4"}))
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    assert res.outcome == "conversion_failed" and res.error_code == "invalid_spec"
    detail = bus.of("ConversionFailed")[-1]
    assert detail["stage"] == "spec" and "conversion.quantize" in detail["reason"]
    assert registry_keys(s3) == []


# ---------------------------------------------------------------------------- bad artifacts
def failed(res: conversion.Result, bus: FakeBus, s3: Any, stage: str, text: str) -> None:
    assert res.outcome == "conversion_failed", res
    assert res.error_code == "artifact_invalid"
    assert bus.types() == ["ConversionFailed"]
    detail = bus.of("ConversionFailed")[-1]
    assert (detail["model"], detail["job"], detail["stage"], detail["version"]) == ("demo", JOB, stage, None)
    assert text in detail["reason"], detail["reason"]
    assert registry_keys(s3) == []  # no version, no blobs


def test_missing_artifact_is_reported_not_retried(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    failed(res, bus, s3, "download", "no training artifact at s3://registry/staging/demo/")


def test_truncated_artifact_is_reported(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    whole = targz({**valid_files(), "padding.bin": bytes(range(256)) * 400})
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=whole[: len(whole) // 2])
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    failed(res, bus, s3, "extract", "truncated or not a tar.gz")


def test_an_artifact_that_is_not_a_tarball_is_reported(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=b"<html>AccessDenied</html>")
    failed(conversion.handle_event(sagemaker_event(JOB), deps), bus, s3, "extract", "not a tar.gz")


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in valid_files().items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        tar.addfile(member, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


@pytest.mark.parametrize(
    ("member", "text"),
    [
        (_member("../../escaped.txt", size=3), "unsafe path"),
        (_member("/tmp/absolute.txt", size=3), "unsafe path"),
        (_member("saved_model/variables", tarfile.SYMTYPE, "/etc"), "contains a link"),
        (_member("heldout2.npz", tarfile.LNKTYPE, "/etc/passwd"), "contains a link"),
        (_member("fifo", tarfile.FIFOTYPE), "special file"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    deps: conversion.Deps,
    bus: FakeBus,
    s3,
    tmp_path: Path,
    member: tarfile.TarInfo,
    text: str,  # type: ignore[no-untyped-def]
) -> None:
    put_job_record(s3, JOB)
    s3.put_object(
        Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=_tar_with(member, b"bad" if member.size else b"")
    )
    work = tmp_path / "work"
    work.mkdir()
    deps.options = conversion.Options(work_dir=str(work))

    res = conversion.handle_event(sagemaker_event(JOB), deps)

    failed(res, bus, s3, "extract", text)
    assert list(work.iterdir()) == []  # the temporary folder is gone, nothing escaped it
    assert not (tmp_path / "escaped.txt").exists()


def test_archive_size_and_member_limits(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    s3.put_object(
        Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=targz({**valid_files(), "big": b"\0" * 100_000})
    )
    deps.options = conversion.Options(max_extracted_bytes=50_000)
    failed(
        conversion.handle_event(sagemaker_event(JOB), deps), bus, s3, "extract", "unpacks to more than 50000"
    )
    bus.sent.clear()
    deps.options = conversion.Options(max_members=3)
    failed(conversion.handle_event(sagemaker_event(JOB), deps), bus, s3, "extract", "more than 3 entries")
    bus.sent.clear()
    deps.options = conversion.Options(max_artifact_bytes=100)
    failed(
        conversion.handle_event(sagemaker_event(JOB), deps), bus, s3, "download", "over the 100-byte limit"
    )


def test_an_artifact_missing_required_files_names_them(deps: conversion.Deps, bus: FakeBus, s3) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    files = valid_files()
    del files["heldout.npz"], files["baseline.json"]
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=targz(files))
    res = conversion.handle_event(sagemaker_event(JOB), deps)
    failed(res, bus, s3, "extract", "lacks baseline.json, heldout.npz")


def _npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("heldout", "text"),
    [
        (b"", "heldout.npz is unreadable"),
        (b"PK\x03\x04 cut short", "heldout.npz is unreadable"),
        # a pickled object array: refused (allow_pickle=False), never unpickled
        (_npz(x=np.array([{"a": 1}], dtype=object), y=np.zeros(1)), "heldout.npz is unreadable"),
        (_npz(x=np.zeros((4, 2), np.float32), y=np.zeros(4, np.float32)), "expected (rows > 0, 1)"),
        (_npz(x=np.zeros((4, 1), np.float32), y=np.zeros(3, np.float32)), "expected (rows > 0, 1)"),
        (_npz(y=np.zeros(4, np.float32)), "heldout.npz is unreadable"),
    ],
)
def test_unreadable_heldout_rows_are_reported(
    deps: conversion.Deps, bus: FakeBus, s3, heldout: bytes, text: str
) -> None:  # type: ignore[no-untyped-def]
    put_job_record(s3, JOB)
    s3.put_object(
        Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=targz({**valid_files(), "heldout.npz": heldout})
    )
    failed(conversion.handle_event(sagemaker_event(JOB), deps), bus, s3, "extract", text)


class ThrottledS3:
    """The moto client, except that one operation on the staged artifact answers 503 SlowDown."""

    def __init__(self, s3: Any, operation: str):
        self._s3, self._operation = s3, operation

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._s3, name)
        if name != self._operation:
            return call

        def throttled(**kwargs: Any) -> Any:
            if str(kwargs.get("Key") or kwargs.get("Prefix") or "").startswith("staging/"):
                raise ClientError(
                    {
                        "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                        "ResponseMetadata": {"HTTPStatusCode": 503},
                    },
                    name,
                )
            return call(**kwargs)

        return throttled


@pytest.mark.parametrize("operation", ["list_object_versions", "get_object"])
def test_transient_s3_errors_raise_so_lambda_retries(
    deps: conversion.Deps, bus: FakeBus, s3: Any, operation: str
) -> None:
    put_job_record(s3, JOB)
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=targz(valid_files()))
    deps = conversion.Deps(registry=Registry(ThrottledS3(s3, operation), BUCKET, actor="convert"), bus=bus)
    with pytest.raises(RegistryUnavailableError, match="SlowDown"):
        conversion.handle_event(sagemaker_event(JOB), deps)
    assert bus.sent == [] and registry_keys(s3) == []


def test_deterministic_targz_is_byte_identical(tmp_path: Path) -> None:
    (tmp_path / "sm" / "variables").mkdir(parents=True)
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "sm" / "variables" / "v.data").write_bytes(b"\1\2\3")
    first = deterministic_targz(tmp_path / "sm", "saved_model")
    (tmp_path / "sm" / "saved_model.pb").touch()  # a new mtime changes nothing
    assert deterministic_targz(tmp_path / "sm", "saved_model") == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == [
            "saved_model",
            "saved_model/saved_model.pb",
            "saved_model/variables",
            "saved_model/variables/v.data",
        ]


# ---------------------------------------------------------------------------- the artifact link (on versioned S3)
def test_the_first_read_links_the_job_to_its_archives_sha256_and_version(
    deps: conversion.Deps, bus: FakeBus, s3: Any
) -> None:
    import hashlib

    # Given a job whose archive convert read once (it failed: not a tar.gz)
    put_job_record(s3, JOB)
    first = s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=b"<html>not a tarball</html>")
    assert conversion.handle_event(sagemaker_event(JOB), deps).outcome == "conversion_failed"
    link = json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{JOB}.artifact.json")["Body"].read())
    assert link["sha256"] == hashlib.sha256(b"<html>not a tarball</html>").hexdigest()
    assert (link["version_id"], link["etag"]) == (first["VersionId"], first["ETag"].strip('"'))
    # the link is create-only: a second writer cannot replace it
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=BUCKET, Key=f"jobs/{JOB}.artifact.json", Body=b"{}", IfNoneMatch="*")
    bus.sent.clear()

    # When the archive is overwritten (a new S3 version) and the completion event replayed
    second = s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=targz(valid_files()))
    res = conversion.handle_event(sagemaker_event(JOB), deps)

    # Then it is refused before anything is downloaded, naming both versions
    assert (res.outcome, res.error_code) == ("conversion_failed", "integrity_error")
    assert bus.types() == ["ArtifactIntegrityFailed", "ConversionFailed"]
    alert = bus.of("ArtifactIntegrityFailed")[-1]
    assert alert["reason"] == "artifact_tampered"
    assert [v["version_id"] for v in alert["versions"]] == [second["VersionId"], first["VersionId"]]
    assert bus.of("ConversionFailed")[-1]["stage"] == "integrity" and registry_keys(s3) == []
