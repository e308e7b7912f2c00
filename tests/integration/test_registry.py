"""The S3 registry against moto (in-process for speed; one module test runs moto's server over HTTP)."""

from __future__ import annotations

import json
import threading

import boto3
import pytest
from moto.server import ThreadedMotoServer

from modelops.domain import canary
from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    IntegrityError,
    ModelNotFoundError,
    PublishInProgressError,
    VersionConflictError,
    VersionNotFoundError,
)
from modelops.storage.registry import AliasDoc, Registry, sha256_hex
from tests.fakes import MemoryObjectStore


@pytest.fixture
def reg(s3, registry_bucket) -> Registry:  # type: ignore[no-untyped-def]
    return Registry(s3, registry_bucket, actor="test")


def publish(reg: Registry, model: str = "demo", payload: bytes = b"tflite-bytes", **meta: object):
    return reg.publish_version(
        model, {"tflite": ("model.tflite", payload)}, {"metrics": {"rmse": 1.0}, **meta}
    )


def test_versions_are_allocated_in_order_and_blobs_are_content_addressed(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    # Given / When
    m1 = publish(reg, payload=b"a")
    m2 = publish(reg, payload=b"a")
    m3 = publish(reg, payload=b"b")
    # Then
    assert [m1.version, m2.version, m3.version] == [1, 2, 3]
    assert reg.list_versions("demo") == [1, 2, 3]
    assert m1.artifacts["tflite"].key == m2.artifacts["tflite"].key  # identical bytes stored once
    assert m1.artifacts["tflite"].sha256 == sha256_hex(b"a")
    blobs = s3.list_objects_v2(Bucket="registry", Prefix="models/demo/blobs/")["KeyCount"]
    assert blobs == 2
    doc = reg.get_manifest("demo", 3).doc
    assert doc["metrics"] == {"rmse": 1.0} and doc["version"] == 3 and doc["created_at"]


def test_two_writers_racing_for_one_number_both_win_different_numbers(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    # Given: writer B computed "next is 1" before writer A committed version 1 (forced interleaving)
    other = Registry(s3, "registry", actor="b")
    stale_next = other._next_version("demo")
    assert stale_next == 1
    a = publish(reg, payload=b"from-a")
    other._next_version = lambda model: stale_next  # type: ignore[method-assign]
    # When
    b = publish(other, payload=b"from-b")
    # Then: nothing overwritten, B moved on to 2
    assert (a.version, b.version) == (1, 2)
    assert reg.read_artifact(reg.get_manifest("demo", 1), "tflite") == b"from-a"
    assert reg.read_artifact(reg.get_manifest("demo", 2), "tflite") == b"from-b"


class RacingStore(MemoryObjectStore):
    """Holds every writer's first manifest create until all of them have one: they all computed the
    same "next version" and race for it (the forced interleaving of the smoke test below)."""

    def __init__(self, bucket: str, writers: int) -> None:
        super().__init__(bucket)
        self._all_ready = threading.Barrier(writers, timeout=30)
        self._first = threading.local()

    def create(self, key: str, body: bytes, content_type: str = "application/json", **kwargs: object) -> bool:
        if key.endswith("/manifest.json") and not getattr(self._first, "done", False):
            self._first.done = True
            self._all_ready.wait()
        return super().create(key, body, content_type, **kwargs)


def test_many_threads_publishing_get_distinct_versions() -> None:
    # The guarantee is S3's If-None-Match, which is atomic. moto's conditional writes are enforced but
    # not atomic under real concurrency (two racing creates can both succeed), so the threads race on
    # an in-memory store whose conditional writes are atomic as S3's are: this tests the registry's
    # retry on a lost number, not moto. All six first try version 1 at once.
    store = RacingStore("registry", writers=6)
    results: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        m = publish(Registry.over(store, actor=f"w{i}"), payload=f"w{i}".encode())
        with lock:
            results.append(m.version)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    reader = Registry.over(store, actor="reader")
    payloads = {reader.read_artifact(reader.get_manifest("demo", n), "tflite") for n in range(1, 7)}
    assert payloads == {f"w{i}".encode() for i in range(6)}  # each writer's own version, none overwritten


def test_dedup_key_makes_a_replay_publish_once(reg: Registry) -> None:
    m1 = reg.publish_version("demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1")
    m2 = reg.publish_version("demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1")
    m3 = reg.publish_version("demo", {"tflite": ("model.tflite", b"y")}, {}, dedup_key="job-2")
    assert (m1.version, m2.version, m3.version) == (1, 1, 2)


def test_flipped_byte_raises_integrity_error_and_keeps_the_object(reg: Registry, s3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Given a published artifact whose stored bytes are then corrupted
    m = publish(reg, payload=b"0123456789")
    key = m.artifacts["tflite"].key
    s3.put_object(Bucket="registry", Key=key, Body=b"0123456788")
    # When / Then
    with pytest.raises(IntegrityError):
        reg.read_artifact(m, "tflite")
    dest = tmp_path / "model.tflite"
    with pytest.raises(IntegrityError):
        reg.download_artifact(m, "tflite", dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # nothing half-written to parse
    assert s3.get_object(Bucket="registry", Key=key)["Body"].read() == b"0123456788"  # kept


def test_download_writes_verified_file(reg: Registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = publish(reg, payload=b"z" * 3_000_000)
    path = reg.download_artifact(m, "tflite", tmp_path / "a" / "model.tflite")
    assert path.read_bytes() == b"z" * 3_000_000


def test_promote_keeps_previous_and_rollback_goes_back(reg: Registry) -> None:
    publish(reg, payload=b"1")
    publish(reg, payload=b"2")
    d1 = reg.promote("demo", 1)
    d2 = reg.promote("demo", 2)
    assert (d1.version, d1.previous) == (1, None)
    assert (d2.version, d2.previous) == (2, 1)
    back = reg.rollback("demo")
    assert (back.version, back.previous) == (1, 2)
    assert reg.resolve("demo") == 1
    moves = [(h["from"], h["to"], h["outcome"]) for h in reg.history("demo", "production")]
    assert moves == [(None, 1, "applied"), (1, 2, "applied"), (2, 1, "applied")]


def test_racing_promotions_one_wins_the_other_re_reads(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    # Given production at v1 and two promoters that both read it
    for p in (b"1", b"2", b"3"):
        publish(reg, payload=p)
    reg.promote("demo", 1)
    other = Registry(s3, "registry", actor="b")
    seen: list[int | None] = []

    def mutate_b(cur: AliasDoc | None) -> AliasDoc:
        seen.append(cur.version if cur else None)
        if len(seen) == 1:
            # A commits between B's read and B's conditional write
            reg.promote("demo", 2, reason="a wins")
        return AliasDoc(alias="production", version=3, previous=cur.version if cur else None)

    # When
    doc = other.update_alias("demo", "production", mutate_b, reason="b")
    # Then B lost once (412), re-read v2, and applied on top of it, never blindly
    assert seen == [1, 2]
    assert doc is not None and (doc.version, doc.previous) == (3, 2)
    outcomes = [(h["actor"], h["from"], h["to"], h["outcome"]) for h in reg.history("demo", "production")]
    assert ("b", 1, 3, "conflict") in outcomes
    assert ("test", 1, 2, "applied") in outcomes
    assert outcomes[-1] == ("b", 2, 3, "applied")


def test_promotion_gives_up_after_its_retry_budget(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    publish(reg, payload=b"1")
    publish(reg, payload=b"2")
    reg.promote("demo", 1)
    rival = Registry(s3, "registry", actor="rival")
    flip = [2, 1]

    def mutate(cur: AliasDoc | None) -> AliasDoc:
        rival.promote("demo", flip[0])  # someone moves it every single time
        flip.reverse()
        return AliasDoc(alias="production", version=2)

    impatient = Registry(s3, "registry", actor="me", alias_retries=2)
    with pytest.raises(VersionConflictError):
        impatient.update_alias("demo", "production", mutate, reason="x")
    conflicts = [h for h in reg.history("demo", "production") if h["actor"] == "me"]
    assert [h["outcome"] for h in conflicts] == ["conflict"] * 3


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda r: r.promote("demo", 9), VersionNotFoundError),
        (lambda r: r.promote("nope", 1), ModelNotFoundError),
        (lambda r: r.rollback("demo"), AliasNotFoundError),
        (lambda r: r.get_manifest("demo", 2), VersionNotFoundError),
        (lambda r: r.get_alias("nope"), ModelNotFoundError),
    ],
)
def test_bad_targets_give_clear_errors_and_write_nothing(reg: Registry, s3, action, error) -> None:  # type: ignore[no-untyped-def]
    publish(reg)
    before = s3.list_objects_v2(Bucket="registry")["KeyCount"]
    with pytest.raises(error):
        action(reg)
    assert s3.list_objects_v2(Bucket="registry")["KeyCount"] == before


def test_empty_bucket_lists_nothing(reg: Registry) -> None:
    assert reg.list_models() == []
    with pytest.raises(ModelNotFoundError):
        reg.list_versions("demo") or reg.get_manifest("demo", 1)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"version": "two"}',
        b'{"version": 0}',
        b'{"version": 1, "canary": {"version": 2, "weight": 3}}',
    ],
)
def test_malformed_alias_document_is_an_error_not_a_guess(reg: Registry, s3, body: bytes) -> None:  # type: ignore[no-untyped-def]
    publish(reg)
    s3.put_object(Bucket="registry", Key="models/demo/aliases/production.json", Body=body)
    with pytest.raises(CorruptDocumentError):
        reg.get_alias("demo")
    with pytest.raises(CorruptDocumentError):
        reg.promote("demo", 1)
    assert s3.get_object(Bucket="registry", Key="models/demo/aliases/production.json")["Body"].read() == body


def test_malformed_manifest_is_reported(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(
        Bucket="registry", Key="models/demo/versions/1/manifest.json", Body=json.dumps({"model": "demo"})
    )
    with pytest.raises(CorruptDocumentError):
        reg.get_manifest("demo", 1)


def test_conditional_alias_get(reg: Registry) -> None:
    publish(reg)
    publish(reg, payload=b"2")
    reg.promote("demo", 1)
    doc, etag = reg.get_alias("demo")
    assert reg.get_alias_if_changed("demo", "production", etag) is None
    reg.promote("demo", 2)
    changed = reg.get_alias_if_changed("demo", "production", etag)
    assert changed is not None and changed[0].version == 2


def test_registry_over_http_against_moto_server() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        s3.create_bucket(Bucket="reg-http")
        reg = Registry(s3, "reg-http")
        m = reg.publish_version("demo", {"tflite": ("model.tflite", b"abc")}, {})
        other = Registry(s3, "reg-http")
        stale = other._next_version("demo")
        reg.publish_version("demo", {"tflite": ("model.tflite", b"def")}, {})
        other._next_version = lambda model: stale  # type: ignore[method-assign]
        m3 = other.publish_version("demo", {"tflite": ("model.tflite", b"ghi")}, {})
        assert (m.version, m3.version) == (1, 3)
        reg.promote("demo", 1)
        _, etag = reg.get_alias("demo")
        reg.promote("demo", 3)
        with pytest.raises(Exception) as exc:  # a stale ETag is refused by the server (412)
            s3.put_object(
                Bucket="reg-http", Key="models/demo/aliases/production.json", Body=b"{}", IfMatch=etag
            )
        assert exc.value.response["Error"]["Code"] == "PreconditionFailed"  # type: ignore[attr-defined]
        assert reg.read_artifact(reg.get_manifest("demo", 3), "tflite") == b"ghi"
    finally:
        server.stop()


def test_a_live_publish_claim_makes_a_concurrent_duplicate_wait(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    # Given writer A claimed job-1 and has not written its manifest yet
    assert reg._claim("demo", "job-1") is None
    # When a duplicate delivery arrives
    with pytest.raises(PublishInProgressError):
        reg.publish_version("demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1")
    # Then nothing was published by the duplicate
    assert reg.list_versions("demo") == []


def test_an_abandoned_claim_is_taken_over_once(s3, registry_bucket) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    a = Registry(s3, registry_bucket, clock=lambda: now[0])
    assert a._claim("demo", "job-1") is None  # A dies between claim and manifest
    now[0] += 901
    b = Registry(s3, registry_bucket, clock=lambda: now[0])
    c = Registry(s3, registry_bucket, clock=lambda: now[0])
    m = b.publish_version("demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1")  # takes over
    assert m.version == 1
    assert c.publish_version("demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1").version == 1
    assert a.list_versions("demo") == [1]


def test_alias_reason_from_the_mutation_is_kept(reg: Registry) -> None:
    publish(reg)
    doc = reg.update_alias(
        "demo",
        "production",
        lambda cur: AliasDoc(alias="production", version=1, reason="gate: rmse 0.4 < 0.5"),
        reason="fallback",
    )
    assert doc is not None and reg.get_alias("demo")[0].reason == "gate: rmse 0.4 < 0.5"
    assert reg.history("demo", "production")[-1]["reason"] == "gate: rmse 0.4 < 0.5"


def test_a_retry_of_the_same_delivery_takes_over_its_own_claim_at_once(reg: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    # Given a publish that crashed between its claim and its manifest (blobs uploaded, no version)
    real_create = reg.objects.create

    def crash_on_manifest(key: str, body: bytes, content_type: str = "application/json") -> bool:
        if key.endswith("manifest.json"):
            raise ConnectionError("the container died")
        return real_create(key, body, content_type)

    reg.objects.create = crash_on_manifest  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        reg.publish_version(
            "demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1", claim_token="evt-1"
        )
    reg.objects.create = real_create  # type: ignore[method-assign]
    assert reg.list_versions("demo") == []
    # When another delivery arrives, it waits; the retry of the same event finishes the work, once
    with pytest.raises(PublishInProgressError):
        reg.publish_version(
            "demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1", claim_token="evt-2"
        )
    m = reg.publish_version(
        "demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1", claim_token="evt-1"
    )
    again = reg.publish_version(
        "demo", {"tflite": ("model.tflite", b"x")}, {}, dedup_key="job-1", claim_token="evt-1"
    )
    assert (m.version, again.version) == (1, 1) and reg.list_versions("demo") == [1]


@pytest.mark.parametrize("weight", [0.0, 1.0, 1.5])
def test_an_alias_the_readers_would_refuse_is_never_written(reg: Registry, s3, weight: float) -> None:  # type: ignore[no-untyped-def]
    publish(reg, payload=b"1")
    publish(reg, payload=b"2")
    reg.promote("demo", 1)
    before = s3.get_object(Bucket="registry", Key="models/demo/aliases/production.json")["Body"].read()
    with pytest.raises(CorruptDocumentError):
        reg.update_alias("demo", "production", lambda cur: canary.start(cur, 2, weight), reason="canary")
    assert (
        s3.get_object(Bucket="registry", Key="models/demo/aliases/production.json")["Body"].read() == before
    )
    assert reg.get_alias("demo")[0].canary is None
