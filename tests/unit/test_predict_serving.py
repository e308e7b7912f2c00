"""The model cache (modelops.stages.predict.serving) against an in-memory registry and fake interpreters:
TTL and conditional GETs, pins, canary routing, fallbacks, alerts, eviction."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    IntegrityError,
    ModelNotFoundError,
    RegistryUnavailableError,
    VersionNotFoundError,
)
from modelops.stages.predict.serving import (
    ArtifactLoadError,
    ModelCache,
    ModelUnavailableError,
    NoProductionVersionError,
    model_info,
    routing_unit,
)
from modelops.storage.registry import AliasDoc, Manifest

FEATURES = ["a", "b", "c"]


def artifact(version: int) -> bytes:
    """Bytes that look like a .tflite (identifier at offset 4) and tell the fake interpreter its weight."""
    return b"\x1c\x00\x00\x00TFL3" + json.dumps({"weight": float(version)}).encode()


class FakeInterpreter:
    """Enough of LiteRT's Interpreter: y = weight * sum(x), one output per row."""

    created = 0

    def __init__(self, path: str):
        data = Path(path).read_bytes()
        assert data[4:8] == b"TFL3"
        self.weight = json.loads(data[8:])["weight"]
        self.rows = 1
        self.x: np.ndarray | None = None
        self.resizes = 0
        FakeInterpreter.created += 1

    def get_input_details(self) -> list[dict[str, Any]]:
        return [{"index": 0, "dtype": np.float32, "shape": np.array([self.rows, len(FEATURES)])}]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [{"index": 1, "dtype": np.float32, "shape": np.array([self.rows, 1])}]

    def resize_tensor_input(self, index: int, shape: list[int], strict: bool = False) -> None:
        self.rows = shape[0]
        self.resizes += 1

    def allocate_tensors(self) -> None:
        pass

    def set_tensor(self, index: int, x: np.ndarray) -> None:
        assert x.shape == (self.rows, len(FEATURES)) and x.dtype == np.float32
        self.x = x

    def invoke(self) -> None:
        pass

    def get_tensor(self, index: int) -> np.ndarray:
        assert self.x is not None
        return (self.weight * self.x.sum(axis=1, keepdims=True)).astype(np.float32)


class FakeRegistry:
    """The four registry calls the cache makes, in memory, with call counts."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, int], Manifest] = {}
        self.blobs: dict[str, bytes] = {}
        self.aliases: dict[tuple[str, str], tuple[AliasDoc, str]] = {}
        self.calls: list[str] = []
        self.unavailable = False
        self.corrupt: set[tuple[str, int]] = set()
        self._etag = 0

    def add_version(self, model: str, version: int, data: bytes | None = None, **extra: Any) -> Manifest:
        data = artifact(version) if data is None else data
        sha = hashlib.sha256(data).hexdigest()
        key = f"blobs/{sha}"
        self.blobs[key] = data
        doc = {
            "model": model,
            "version": version,
            "task": "regression",
            "schema": {"task": "regression", "target": "y", "features": [{"name": f} for f in FEATURES]},
            "artifacts": {"tflite": {"file": "model.tflite", "key": key, "size": len(data), "sha256": sha}},
            **extra,
        }
        m = Manifest.from_doc(model, version, doc)
        self.manifests[(model, version)] = m
        return m

    def set_alias(self, model: str, version: int, alias: str = "production", **kw: Any) -> None:
        self._etag += 1
        self.aliases[(model, alias)] = (AliasDoc(alias=alias, version=version, **kw), f'"{self._etag}"')

    def _known(self, model: str) -> bool:
        return any(m == model for m, _ in self.manifests) or any(m == model for m, _ in self.aliases)

    def get_alias(self, model: str, alias: str = "production") -> tuple[AliasDoc, str]:
        self.calls.append("get_alias")
        if self.unavailable:
            raise RegistryUnavailableError("S3 is down")
        if (model, alias) not in self.aliases:
            if not self._known(model):
                raise ModelNotFoundError(model)
            raise AliasNotFoundError(alias)
        return self.aliases[(model, alias)]

    def get_alias_if_changed(self, model: str, alias: str, etag: str) -> tuple[AliasDoc, str] | None:
        self.calls.append("get_alias_if_changed")
        if self.unavailable:
            raise RegistryUnavailableError("S3 is down")
        if (model, alias) not in self.aliases:
            raise AliasNotFoundError(alias)
        doc, current = self.aliases[(model, alias)]
        return None if current == etag else (doc, current)

    def get_manifest(self, model: str, version: int) -> Manifest:
        self.calls.append("get_manifest")
        if (model, version) in self.corrupt:
            raise CorruptDocumentError(f"manifest of {model} v{version} is malformed")
        if (model, version) not in self.manifests:
            if not self._known(model):
                raise ModelNotFoundError(model)
            raise VersionNotFoundError(f"{model} v{version}")
        return self.manifests[(model, version)]

    def download_artifact(self, manifest: Manifest, role: str, dest: Path) -> Path:
        self.calls.append("download_artifact")
        ref = manifest.artifacts[role]
        data = self.blobs[ref.key]
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise IntegrityError(f"{manifest.model} v{manifest.version}: SHA-256 mismatch")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest


class Events:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        self.published.append((detail_type, detail))
        return "id"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reg() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def cache(reg: FakeRegistry, clock: Clock, events: Events, tmp_path: Path) -> ModelCache:
    return ModelCache(
        reg,
        artifact_dir=tmp_path,
        ttl_seconds=10,
        clock=clock,
        events=events,
        interpreter_factory=FakeInterpreter,
        rng=lambda: 0.5,
    )


X1 = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)


def served(cache: ModelCache, model: str = "demo", **kw: Any) -> tuple[int, float]:
    lm = cache.resolve(model, **kw)
    return lm.info.version, float(lm.predict(X1)[0, 0])


def test_alias_is_cached_for_the_ttl_then_revalidated_with_a_conditional_get(
    cache: ModelCache, reg: FakeRegistry, clock: Clock
) -> None:
    reg.add_version("demo", 1)
    reg.set_alias("demo", 1)
    assert served(cache) == (1, 6.0)
    assert reg.calls == ["get_alias", "get_manifest", "download_artifact"]
    reg.calls.clear()
    clock.now += 9.9
    assert served(cache)[0] == 1
    assert reg.calls == []  # fresh: no registry call at all
    clock.now += 0.2
    assert served(cache)[0] == 1
    assert reg.calls == ["get_alias_if_changed"]  # 304: nothing downloaded again


def test_a_moved_alias_is_served_after_the_ttl(cache: ModelCache, reg: FakeRegistry, clock: Clock) -> None:
    reg.add_version("demo", 1)
    reg.add_version("demo", 2)
    reg.set_alias("demo", 1)
    assert served(cache) == (1, 6.0)
    reg.set_alias("demo", 2, previous=1)
    assert served(cache)[0] == 1
    clock.now += 10.5
    assert served(cache) == (2, 12.0)


def test_no_production_alias_is_unavailable_and_remembered_for_the_ttl(
    cache: ModelCache, reg: FakeRegistry, clock: Clock
) -> None:
    reg.add_version("demo", 1)
    with pytest.raises(NoProductionVersionError, match="no production version"):
        cache.resolve("demo")
    calls = len(reg.calls)
    with pytest.raises(NoProductionVersionError):
        cache.resolve("demo")
    assert len(reg.calls) == calls  # the miss is cached
    with pytest.raises(AliasNotFoundError):
        cache.resolve("demo", alias="staging")
    reg.set_alias("demo", 1)
    clock.now += 10.1
    assert served(cache)[0] == 1


def test_unknown_and_invalid_model_names(cache: ModelCache, reg: FakeRegistry) -> None:
    with pytest.raises(ModelNotFoundError):
        cache.resolve("ghost")
    with pytest.raises(ModelNotFoundError):
        cache.resolve("Not/Valid")
    with pytest.raises(ModelNotFoundError):
        cache.resolve("ghost", version=1)
    assert reg.calls == ["get_alias", "get_manifest"]  # the invalid name never reached the registry


def test_pinned_versions(cache: ModelCache, reg: FakeRegistry) -> None:
    reg.add_version("demo", 1)
    reg.add_version("demo", 2)
    reg.set_alias("demo", 1)
    assert served(cache, version=2) == (2, 12.0)
    with pytest.raises(VersionNotFoundError):
        cache.resolve("demo", version=3)


def test_stale_alias_is_served_while_the_registry_is_unavailable(
    cache: ModelCache, reg: FakeRegistry, clock: Clock
) -> None:
    reg.add_version("demo", 1)
    reg.set_alias("demo", 1)
    assert served(cache)[0] == 1
    reg.unavailable = True
    clock.now += 60
    assert served(cache)[0] == 1
    with pytest.raises(RegistryUnavailableError):
        cache.resolve("other")


def test_canary_split_is_deterministic_and_close_to_its_weight(cache: ModelCache, reg: FakeRegistry) -> None:
    reg.add_version("demo", 1)
    reg.add_version("demo", 2)
    reg.set_alias("demo", 1, canary={"version": 2, "weight": 0.2})
    keys = [f"user-{i}" for i in range(2000)]
    versions = [cache.resolve("demo", routing_key=k).info.version for k in keys]
    assert versions == [cache.resolve("demo", routing_key=k).info.version for k in keys]
    assert versions == [2 if routing_unit("demo", k) < 0.2 else 1 for k in keys]
    assert 0.16 < versions.count(2) / len(keys) < 0.24
    # without a key the injected random number decides (0.5 is above the weight)
    assert cache.resolve("demo").info.version == 1


def test_routing_unit_is_stable_and_uniform() -> None:
    assert routing_unit("demo", "abc") == routing_unit("demo", "abc")
    assert routing_unit("demo", "abc") != routing_unit("other", "abc")
    units = [routing_unit("demo", str(i)) for i in range(5000)]
    assert all(0.0 <= u < 1.0 for u in units)
    assert abs(statistics.mean(units) - 0.5) < 0.02


def test_integrity_failure_serves_the_previous_version_and_alerts_once(
    cache: ModelCache, reg: FakeRegistry, clock: Clock, events: Events
) -> None:
    reg.add_version("demo", 1)
    bad = reg.add_version("demo", 2)
    reg.blobs[bad.artifacts["tflite"].key] = b"tampered"
    reg.set_alias("demo", 1)
    assert served(cache)[0] == 1
    reg.set_alias("demo", 2, previous=1)
    clock.now += 11
    for _ in range(3):
        assert served(cache) == (1, 6.0)
    assert [(t, d["version"], d["reason"]) for t, d in events.published] == [
        ("ArtifactIntegrityFailed", 2, "checksum_mismatch")
    ]
    # the failure is retried later (not on every request), still alerting only once per version
    downloads = reg.calls.count("download_artifact")
    clock.now += 61
    assert served(cache)[0] == 1
    assert reg.calls.count("download_artifact") == downloads + 1
    assert len(events.published) == 1


def test_a_corrupt_manifest_of_the_new_version_keeps_the_previous_serving_and_alerts(
    cache: ModelCache, reg: FakeRegistry, clock: Clock, events: Events
) -> None:
    reg.add_version("demo", 1)
    reg.add_version("demo", 2)
    reg.set_alias("demo", 1)
    assert served(cache)[0] == 1
    reg.corrupt.add(("demo", 2))
    reg.set_alias("demo", 2, previous=1)
    clock.now += 11
    for _ in range(3):
        assert served(cache)[0] == 1
    assert [(t, d["version"]) for t, d in events.published] == [("ArtifactIntegrityFailed", 2)]
    assert reg.calls.count("get_manifest") <= 3  # remembered, not fetched on every request


def test_a_batch_is_answered_by_the_verified_model_even_if_tmp_changes(
    cache: ModelCache, reg: FakeRegistry
) -> None:
    reg.add_version("demo", 1)
    reg.set_alias("demo", 1)
    lm = cache.resolve("demo")
    assert lm.predict(X1)[0, 0] == 6.0
    lm.path.write_bytes(artifact(7))  # someone rewrites the file in /tmp after the verified load
    np.testing.assert_array_equal(lm.predict(np.ones((5, 3), dtype=np.float32)), np.full((5, 1), 3.0))


def test_a_failed_canary_falls_back_to_the_primary(
    cache: ModelCache, reg: FakeRegistry, events: Events
) -> None:
    reg.add_version("demo", 1)
    reg.add_version("demo", 2, data=b"not a tflite at all")
    reg.set_alias("demo", 1, canary={"version": 2, "weight": 0.9})
    assert served(cache)[0] == 1  # rng 0.5 < 0.9 picks the canary, which cannot load
    assert events.published[0][1]["reason"] == "load_failed"


def test_fresh_container_uses_the_alias_previous_version(
    cache: ModelCache, reg: FakeRegistry, events: Events
) -> None:
    reg.add_version("demo", 1)
    bad = reg.add_version("demo", 2)
    reg.blobs[bad.artifacts["tflite"].key] = b"tampered"
    reg.set_alias("demo", 2, previous=1)
    assert served(cache)[0] == 1
    assert len(events.published) == 1


def test_no_loadable_version_is_unavailable(cache: ModelCache, reg: FakeRegistry, events: Events) -> None:
    bad = reg.add_version("demo", 1)
    reg.blobs[bad.artifacts["tflite"].key] = b"tampered"
    reg.set_alias("demo", 1)
    with pytest.raises(ModelUnavailableError, match="integrity"):
        cache.resolve("demo")
    with pytest.raises(ArtifactLoadError):
        cache.resolve("demo", version=1)
    assert len(events.published) == 1


def test_event_failures_never_fail_a_request(reg: FakeRegistry, clock: Clock, tmp_path: Path) -> None:
    class Broken:
        def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
            raise RuntimeError("EventBridge is down")

    cache = ModelCache(
        reg, artifact_dir=tmp_path, clock=clock, events=Broken(), interpreter_factory=FakeInterpreter
    )
    reg.add_version("demo", 1)
    reg.add_version("demo", 2, data=b"garbage!")
    reg.set_alias("demo", 2, previous=1)
    assert served(cache)[0] == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"schema": {"features": []}},
        {"schema": {"features": [{"name": "a"}, {"name": "a"}, {"name": "c"}]}},
        {"task": "clustering"},
        {"schema": "nope"},
    ],
)
def test_a_manifest_the_api_cannot_use_is_a_load_failure(
    cache: ModelCache, reg: FakeRegistry, events: Events, extra: dict[str, Any]
) -> None:
    reg.add_version("demo", 1, **extra)
    reg.set_alias("demo", 1)
    with pytest.raises(ModelUnavailableError):
        cache.resolve("demo")
    assert events.published[0][1]["reason"] == "load_failed"


def test_schema_mismatch_with_the_model_is_a_load_failure(cache: ModelCache, reg: FakeRegistry) -> None:
    reg.add_version("demo", 1, schema={"task": "regression", "features": [{"name": "only"}]})
    reg.set_alias("demo", 1)
    with pytest.raises(ModelUnavailableError):
        cache.resolve("demo")


def test_interpreters_are_evicted_lru_with_their_files(
    reg: FakeRegistry, clock: Clock, tmp_path: Path
) -> None:
    cache = ModelCache(
        reg, artifact_dir=tmp_path, clock=clock, interpreter_factory=FakeInterpreter, max_loaded=2
    )
    for v in (1, 2, 3):
        reg.add_version("demo", v)
    cache.resolve("demo", version=1)
    cache.resolve("demo", version=2)
    cache.resolve("demo", version=1)  # 1 is now the most recent
    cache.resolve("demo", version=3)  # evicts 2
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert len(files) == 2
    assert {lm.info.version for lm in cache._loaded.values()} == {1, 3}


def test_batch_interpreter_is_resized_only_when_the_size_changes(
    cache: ModelCache, reg: FakeRegistry
) -> None:
    reg.add_version("demo", 1)
    reg.set_alias("demo", 1)
    lm = cache.resolve("demo")
    x = np.ones((5, 3), dtype=np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(lm.predict(x), np.full((5, 1), 3.0, dtype=np.float32))
    assert lm.predict(X1)[0, 0] == 6.0
    np.testing.assert_array_equal(lm.predict(np.ones((2, 3), dtype=np.float32)), np.full((2, 1), 3.0))
    assert lm._batch.resizes == 2 and lm._single.resizes == 1


def test_model_info_reads_sample_rate_and_classes() -> None:
    reg = FakeRegistry()
    m = reg.add_version(
        "demo",
        1,
        task="binary",
        schema={"features": [{"name": "a"}], "classes": ["no", "yes"]},
        spec={"monitoring": {"capture_sample_rate": 0.25}},
    )
    info = model_info(m)
    assert (info.task, info.classes, info.capture_sample_rate, info.features) == (
        "binary",
        ("no", "yes"),
        0.25,
        ("a",),
    )
    m = reg.add_version("demo", 2, spec={"monitoring": {"capture_sample_rate": "lots"}})
    assert model_info(m).capture_sample_rate == 1.0
