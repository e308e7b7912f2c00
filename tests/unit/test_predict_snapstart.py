"""SnapStart's runtime hooks for predict (modelops.stages.predict.snapstart): registered only under a
SnapStart initialisation; before the snapshot the production versions are loaded; after a restore the
alias is read again, the clients are new and the randomness is the restored environment's own."""

from __future__ import annotations

import json
import random
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops import aws
from modelops.domain.errors import RegistryUnavailableError
from modelops.stages.predict import service as container
from modelops.stages.predict import snapstart
from modelops.stages.predict.parse import RawRequest
from modelops.stages.predict.service import PredictService
from modelops.stages.predict.serving import ModelCache
from modelops.stages.predict.settings import Settings
from modelops.storage.capture_sink import CaptureSink
from modelops.storage.registry import Registry
from tests.unit.test_predict_serving import FEATURES, Clock, FakeInterpreter, artifact

SCHEMA = {"task": "regression", "target": "y", "features": [{"name": f} for f in FEATURES]}


def publish(reg: Registry, model: str, weight: int) -> int:
    m = reg.publish_version(
        model, {"tflite": ("model.tflite", artifact(weight))}, {"task": "regression", "schema": SCHEMA}
    )
    return m.version


@pytest.fixture
def reg(registry_bucket: str, s3: Any) -> Registry:
    """The registry as an operator sees it: model ``m`` with versions 1 (production) and 2; ``draft``
    with a version and no production alias."""
    r = Registry(s3, registry_bucket)
    assert publish(r, "m", 1) == 1 and publish(r, "m", 2) == 2
    r.promote("m", 1)
    publish(r, "draft", 5)
    return r


@pytest.fixture
def installed(reg: Registry, tmp_path: Path) -> Iterator[PredictService]:
    """The container's service as Lambda would build it before the snapshot (fake interpreters: the
    artifacts are not real .tflite files), with a frozen clock so that the alias never expires."""
    settings = Settings(
        registry_bucket=reg.bucket, capture_stream="captures", artifact_dir=str(tmp_path / "a")
    )
    registry = Registry(aws.client("s3", config=aws.INTERACTIVE_CONFIG), reg.bucket, actor="predict")
    cache = ModelCache(
        registry,
        artifact_dir=tmp_path / "a",
        ttl_seconds=10,
        clock=Clock(),
        interpreter_factory=FakeInterpreter,
    )
    sink = CaptureSink(lambda: "the pre-snapshot firehose client", "captures")
    svc = PredictService(settings, registry, cache, sink)
    container.configure(svc)
    yield svc
    container.configure(None)


def request(model: str = "m") -> RawRequest:
    body = json.dumps({"instances": [[1.0, 1.0, 1.0]]})
    return RawRequest(model, body, False, "application/json", {}, None, "req-1")


# ------------------------------------------------------------------ registration
def test_register_does_nothing_outside_a_snapstart_initialisation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "snapshot_restore_py", raising=False)
    assert snapstart.register({"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}) is False
    assert snapstart.register({}) is False
    assert "snapshot_restore_py" not in sys.modules  # not even tried: costs nothing off SnapStart


def test_register_hands_both_hooks_to_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}
    fake = types.ModuleType("snapshot_restore_py")
    fake.register_before_snapshot = lambda fn: got.setdefault("before", fn)  # type: ignore[attr-defined]
    fake.register_after_restore = lambda fn: got.setdefault("after", fn)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    assert snapstart.register({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}) is True
    assert got == {"before": snapstart.before_snapshot, "after": snapstart.after_restore}


def test_register_without_the_runtime_library_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import raises ImportError
    assert snapstart.register({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}) is False


# ------------------------------------------------------------------ before the snapshot
def test_before_snapshot_loads_each_production_version(installed: PredictService) -> None:
    created = FakeInterpreter.created
    assert snapstart.before_snapshot() == 1  # m v1; draft has no production version
    assert FakeInterpreter.created > created
    assert installed.cache.resolve("m").info.version == 1


def test_before_snapshot_stops_at_max_loaded_versions(reg: Registry, installed: PredictService) -> None:
    publish(reg, "other", 3)
    reg.promote("other", 1)
    installed.settings = installed.settings.model_copy(update={"max_loaded_versions": 1})
    assert snapstart.before_snapshot() == 1


def test_before_snapshot_never_raises(installed: PredictService, monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> list[str]:
        raise RegistryUnavailableError("S3 is down")

    monkeypatch.setattr(installed.registry, "list_models", down)
    assert snapstart.before_snapshot() == 0


# ------------------------------------------------------------------ after the restore
def test_after_restore_reads_the_alias_again(reg: Registry, installed: PredictService) -> None:
    # Given a snapshot holding v1 (production) and v2 (pinned once), then v2 promoted after it
    snapstart.before_snapshot()
    installed.cache.resolve("m", version=2)
    reg.promote("m", 2)
    assert container.service().predict(request())[2]["X-Model-Version"] == "1"  # the cached alias
    created = FakeInterpreter.created
    # When the environment is restored
    restored = snapstart.after_restore()
    # Then the first request reads the alias and answers with v2, from the interpreter the snapshot holds
    assert restored is not None and container.service() is restored
    status, _, headers = restored.predict(request())
    assert (status, headers["X-Model-Version"]) == (200, "2")
    assert FakeInterpreter.created == created  # nothing downloaded or loaded again


def test_after_restore_forgets_a_missing_alias(reg: Registry, installed: PredictService) -> None:
    snapstart.before_snapshot()
    with pytest.raises(Exception, match="no production version"):
        installed.cache.resolve("draft")  # remembered as missing for one TTL
    reg.promote("draft", 1)
    installed.cache.resolve("draft", version=1)  # the interpreter is in the snapshot
    restored = snapstart.after_restore()
    assert restored is not None and restored.cache.resolve("draft").info.version == 1


def test_after_restore_builds_new_clients(installed: PredictService) -> None:
    snapstart.before_snapshot()
    before = aws.client("s3", config=aws.INTERACTIVE_CONFIG)
    assert installed.registry.objects.s3 is before
    restored = snapstart.after_restore()
    assert restored is not None
    after = aws.client("s3", config=aws.INTERACTIVE_CONFIG)
    assert after is not before
    assert restored.registry.objects.s3 is after and restored.cache.registry is restored.registry
    assert restored.sink is not None and restored.sink is not installed.sink
    assert restored.sink._factory() is aws.client("firehose")  # built on first capture, after the restore
    assert restored.overrides is not None and restored.overrides is not installed.overrides


def test_after_restore_reseeds_random(installed: PredictService) -> None:
    # Two environments restored from one snapshot start with the same generator state
    random.seed(1234)
    snapshot = random.getstate()
    first = snapstart.after_restore()
    draws_first = [first.cache.rng() for _ in range(4)] if first else []
    random.setstate(snapshot)
    second = snapstart.after_restore()
    draws_second = [second.cache.rng() for _ in range(4)] if second else []
    assert len(draws_first) == 4 and draws_first != draws_second
    # without the hook they would route canaries and sample captures identically
    random.setstate(snapshot)
    same = [random.random() for _ in range(4)]
    random.setstate(snapshot)
    assert same == [random.random() for _ in range(4)]


def test_after_restore_without_a_service_builds_none(monkeypatch: pytest.MonkeyPatch) -> None:
    container.configure(None)
    monkeypatch.delenv("REGISTRY_BUCKET", raising=False)  # building one would fail: nothing is built
    assert snapstart.after_restore() is None
    assert container.current() is None
