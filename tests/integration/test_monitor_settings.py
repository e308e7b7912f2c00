"""Monitoring settings without retraining (moto): the document moved by compare-and-swap with history,
two writers, and the monitor (and its cache) using them over the manifest's defaults."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modelops.domain.errors import ModelNotFoundError, VersionConflictError
from modelops.domain.settings import SettingsError
from modelops.stages import monitor
from modelops.storage.s3 import ObjectStore
from modelops.storage.settings import SettingsCache, SettingsStore, config_key
from tests.integration import test_monitor as base
from tests.integration.test_monitor import (
    capture_lines,
    publish_model,
    put_captures,
    run,
    training_data,
)

world = base.world  # the fixture


def store(s3: Any, actor: str = "test", **kw: Any) -> SettingsStore:
    return SettingsStore(ObjectStore(s3, "registry"), actor=actor, **kw)


def test_set_read_and_history_of_a_model_s_settings(s3: Any, registry_bucket: str) -> None:
    publish_model(s3)
    st = store(s3, "alice")
    assert st.read("demo") == (None, None)
    first = st.update("demo", {"psi_threshold": 0.3, "label_window_days": 14}, reason="noisy")
    second = store(s3, "bob").update("demo", {"psi_threshold": None, "capture_sample_rate": 0.25})
    assert (first["revision"], second["revision"]) == (1, 2)
    assert st.overrides("demo") == {"label_window_days": 14, "capture_sample_rate": 0.25}
    hist = st.history("demo")
    assert [(h["actor"], h["outcome"], h["revision"]) for h in hist] == [
        ("alice", "applied", 1),
        ("bob", "applied", 2),
    ]
    assert hist[1]["changes"] == {
        "capture_sample_rate": {"from": None, "to": 0.25},
        "psi_threshold": {"from": 0.3, "to": None},
    }
    assert hist[0]["reason"] == "noisy" and hist[1]["from"] == {"psi_threshold": 0.3, "label_window_days": 14}


def test_two_writers_lose_nothing_the_loser_re_reads_and_applies_on_top(
    s3: Any, registry_bucket: str
) -> None:
    # Given settings at revision 1 and two writers that both read them
    publish_model(s3)
    store(s3, "seed").update("demo", {"psi_threshold": 0.3})
    a, b = store(s3, "a"), store(s3, "b")

    def a_commits_first(attempt: int) -> None:
        if attempt == 0:  # A writes between B's read and B's conditional write
            a.update("demo", {"label_window_days": 3})

    # When B sets another field
    doc = b.update("demo", {"capture_sample_rate": 0.5}, before_write=a_commits_first)

    # Then B lost once, re-read A's document and applied its change on top: both changes are there
    assert doc["revision"] == 3
    assert doc["settings"] == {"psi_threshold": 0.3, "label_window_days": 3, "capture_sample_rate": 0.5}
    outcomes = [(h["actor"], h["outcome"], h["revision"]) for h in a.history("demo")]
    assert ("b", "conflict", 2) in outcomes and ("a", "applied", 2) in outcomes
    assert outcomes[-1] == ("b", "applied", 3)


def test_a_writer_that_always_loses_gives_up_and_writes_nothing(s3: Any, registry_bucket: str) -> None:
    publish_model(s3)
    rival = store(s3, "rival")
    rival.update("demo", {"psi_threshold": 0.3})
    flip = [0.4, 0.5]

    def rival_moves(attempt: int) -> None:
        rival.update("demo", {"psi_threshold": flip[attempt % 2]})

    with pytest.raises(VersionConflictError, match="gave up after 3 attempts"):
        store(s3, "me", retries=2).update("demo", {"label_window_days": 2}, before_write=rival_moves)
    assert "label_window_days" not in rival.overrides("demo")
    assert [h["outcome"] for h in rival.history("demo") if h["actor"] == "me"] == ["conflict"] * 3


def test_bad_values_and_unknown_models_write_nothing(s3: Any, registry_bucket: str) -> None:
    publish_model(s3)
    with pytest.raises(SettingsError, match="psi_threshold must be above 0"):
        store(s3).update("demo", {"psi_threshold": -1})
    with pytest.raises(ModelNotFoundError):
        store(s3).update("ghost", {"psi_threshold": 0.3})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="registry").get("Contents", [])]
    assert not [k for k in keys if "config" in k]


def test_a_corrupt_document_is_reported_and_the_defaults_stay(s3: Any, registry_bucket: str) -> None:
    publish_model(s3)
    s3.put_object(
        Bucket="registry",
        Key=config_key("demo"),
        Body=b'{"model": "demo", "settings": {"psi_threshold": -3}}',
    )
    cache = SettingsCache(store(s3))
    overrides, problem = cache.get("demo")
    assert overrides == {} and problem is not None and "psi_threshold" in problem
    with pytest.raises(SettingsError):
        store(s3).update("demo", {"psi_threshold": 0.3})  # never built on what readers refuse


def test_the_cache_reads_once_per_ttl(s3: Any, registry_bucket: str) -> None:
    publish_model(s3)
    st = store(s3)
    st.update("demo", {"psi_threshold": 0.3})
    now = [0.0]
    cache = SettingsCache(st, ttl=60, clock=lambda: now[0])
    assert cache.get("demo")[0] == {"psi_threshold": 0.3}
    st.update("demo", {"psi_threshold": 0.5})
    now[0] = 59.0
    assert cache.get("demo")[0] == {"psi_threshold": 0.3}  # within the TTL: the cached copy
    now[0] = 60.0
    assert cache.get("demo")[0] == {"psi_threshold": 0.5}


def test_the_monitor_judges_with_the_settings_over_the_manifest(world: dict[str, Any]) -> None:
    # Given a version trained with psi_threshold 0.2 and traffic with one shifted feature
    publish_model(world["s3"])
    rng = np.random.default_rng(5)
    x = training_data(rng, 400)
    x[:, 2] += 0.4  # a mild shift of f2
    put_captures(world["s3"], capture_lines(x))
    first = run(world)
    (m,) = first["models"]
    assert m["verdict"] == "drift"
    psi = m["max_psi"]
    assert 0.2 < psi < 10

    # When the owner raises the threshold above that PSI (no retraining)
    store(world["s3"], "owner").update("demo", {"psi_threshold": min(10.0, psi * 2)})
    monitor.build.cache_clear()  # a new container (the TTL cache is per container)
    second = run(world)

    # Then the same traffic is ok, and the report says where the threshold came from
    (m2,) = second["models"]
    assert m2["verdict"] == "ok"
    key = m2["report"].removeprefix("s3://registry/")
    report = json.loads(world["s3"].get_object(Bucket="registry", Key=key)["Body"].read())
    v = report["versions"][0]
    assert v["psi_threshold"] == pytest.approx(min(10.0, psi * 2))
    assert v["settings"]["sources"]["psi_threshold"] == "settings"
    assert v["settings"]["sources"]["capture_sample_rate"] == "default"
    # the version's manifest keeps the value it was trained with
    manifest = json.loads(
        world["s3"].get_object(Bucket="registry", Key="models/demo/versions/1/manifest.json")["Body"].read()
    )
    assert manifest["spec"]["monitoring"]["psi_threshold"] == 0.2
