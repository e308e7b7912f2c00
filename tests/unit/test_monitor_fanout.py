"""The monitor's fan-out over in-memory stores: a window cut into chunks, each chunk's partials written,
merged and finished, gives the single pass's summary, reports, events and retrain dataset exactly."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from modelops.domain import drift
from modelops.domain.capture import encode_record
from modelops.stages import monitor
from modelops.stages.monitor import fanout
from modelops.storage.reports import MonitorRuns
from tests.fakes import FakeBus
from tests.unit.test_monitor import W, World

NOW = time.time() + 60


def _world(objects: int = 32, rows: int = 100) -> World:
    """A window of ``objects`` capture objects of demo v1 (drifting in the second half), a few lines of
    an unknown version, a bad line, labels for every tenth request."""
    world = World(FakeBus())
    world.now = NOW
    world.publish(retrain=True)
    t = time.gmtime(NOW - 120)
    hour = time.strftime("%Y/%m/%d/%H", t)
    rng = np.random.default_rng(7)
    labels = []
    for o in range(objects):
        x = rng.normal(0.0, 1.0, size=(rows, 3)).astype(np.float32)
        if o >= objects // 2:
            x[:, 1] += 1.5
        y = (x @ W.astype(np.float32))[:, None]
        lines = [
            encode_record("demo", 1, f"o{o}r{i}", NOW - 120 - o, x[i : i + 1], y[i : i + 1])
            for i in range(rows)
        ]
        if o == 5:
            lines.append(b'{"not": "a capture"}\n')
            lines.append(encode_record("demo", 9, "u", NOW - 120, x[:1], y[:1]))
        world.data.put(f"captures/{hour}/obj-{o:04d}", b"".join(lines))
        labels += [
            json.dumps({"request_id": f"o{o}r{i}", "row": 0, "label": float(y[i, 0]) + 0.25})
            for i in range(0, rows, 10)
        ]
    world.data.put("labels/demo/truth.jsonl", "\n".join(labels).encode())
    return world


def _settings() -> monitor.MonitorSettings:
    return monitor.MonitorSettings(data_bucket="data", registry_bucket="registry", now=NOW, min_samples=100)


def _fan_out(
    world: World, chunks: int | None, run: str = "run-1", skip: tuple[int, ...] = ()
) -> dict[str, Any]:
    runs = MonitorRuns(world.reg_objects)
    planned = fanout.plan(_settings(), world.stores, runs, run, chunks=chunks)
    items = json.loads(world.reg_objects.objects[planned["items"]["Key"]][0])
    assert [i["chunk"] for i in items] == list(range(planned["chunks"]))
    for item in items:
        if item["chunk"] in skip:
            continue
        got = fanout.chunk_request({"run": run, "chunk": item["chunk"], "keys": item["keys"]})
        fanout.chunk(_settings(), world.stores, runs, *got)
    return fanout.reduce(_settings(), world.stores, runs, run)


def _reports(world: World) -> dict[str, Any]:
    return {k: world.reg_objects.objects[k][0] for k in world.reg_objects.keys("monitoring/")}


@pytest.mark.parametrize("exact_limit", [drift.EXACT_LIMIT, 500])
def test_sixteen_chunks_give_the_single_pass_exactly(
    exact_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same window twice (500: W1 from the binned partials rather than the raw values)
    monkeypatch.setattr(drift, "EXACT_LIMIT", exact_limit)
    single, fanned = _world(), _world()

    # When one pass runs over one and 16 chunks over the other
    expected = monitor.run_window(_settings(), single.stores)
    outcome = _fan_out(fanned, 16)

    # Then the summaries, the reports, the events and the retrain dataset are the same, to the bit
    assert outcome["complete"] is True and outcome["chunks"] == 16 and outcome["objects"] == 32
    result = json.loads(fanned.reg_objects.objects["monitor-runs/run-1/result.json"][0])
    assert result["summary"] == json.loads(json.dumps(expected))
    (m,) = [m for m in expected["models"] if m["version"] == 1]
    assert m["verdict"] == "drift" and m["quality"]["rmse"] == pytest.approx(0.25, abs=1e-5)
    assert expected["bad"] == {"missing_field": 1, "unknown_version": 1}
    assert _reports(fanned) == _reports(single)
    assert fanned.bus.sent == single.bus.sent and fanned.bus.of("DriftDetected")
    assert fanned.data.keys("datasets/") == single.data.keys("datasets/") != []
    (ds,) = single.data.keys("datasets/")
    assert fanned.data.objects[ds][0] == single.data.objects[ds][0]
    feature_b = next(f for f in result["summary"]["models"] if f["version"] == 1)
    assert feature_b["drifted_features"] == m["drifted_features"]


def test_one_four_and_sixteen_chunks_agree() -> None:
    outcomes = []
    for n in (1, 4, 16):
        world = _world(objects=16, rows=50)
        _fan_out(world, n)
        doc = json.loads(world.reg_objects.objects["monitor-runs/run-1/result.json"][0])
        assert doc["chunks"] == n
        outcomes.append(doc["summary"])
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_a_chunk_without_partials_leaves_the_window_incomplete_and_unjudged() -> None:
    world = _world(objects=8, rows=50)
    runs = MonitorRuns(world.reg_objects)
    world.reg_objects.put(
        runs.chunk_key("run-1", "failures", 3),
        json.dumps({"Error": "Lambda.Unknown", "Cause": "Task timed out after 900.00 seconds"}).encode(),
    )

    outcome = _fan_out(world, 8, skip=(3, 6))

    assert outcome["complete"] is False
    assert outcome["failed_chunks"] == [
        {"chunk": 3, "error": "Lambda.Unknown"},
        {"chunk": 6, "error": "ChunkMissing"},
    ]
    result = json.loads(world.reg_objects.objects["monitor-runs/run-1/result.json"][0])
    assert result["failed_chunks"][0]["cause"] == "Task timed out after 900.00 seconds"
    assert world.reg_objects.keys("monitoring/") == [] and world.bus.sent == []
    assert world.data.keys("datasets/") == []


def test_an_empty_window_plans_no_chunk_and_reduces_like_the_single_pass() -> None:
    single, fanned = World(FakeBus()), World(FakeBus())
    for w in (single, fanned):
        w.now = NOW
        w.publish()
    expected = monitor.run_window(_settings(), single.stores)

    outcome = _fan_out(fanned, None)

    assert outcome["complete"] is True and outcome["chunks"] == 0 and outcome["objects"] == 0
    result = json.loads(fanned.reg_objects.objects["monitor-runs/run-1/result.json"][0])
    assert result["summary"] == expected and expected["models"] == []


def test_tiny_objects_are_batched_by_count_and_large_ones_by_bytes() -> None:
    tiny = [{"Key": f"captures/2024/01/01/00/t{i}", "Size": 200} for i in range(100_000)]
    cut = fanout.cut(tiny, fanout.MAX_CHUNK_BYTES, fanout.MAX_CHUNK_OBJECTS)
    assert len(cut) == 100 and {len(c) for c in cut} == {1000}
    assert [k for c in cut for k in c] == [o["Key"] for o in tiny]
    big = [{"Key": f"k{i}", "Size": 100 * 1024 * 1024} for i in range(5)]
    assert [len(c) for c in fanout.cut(big, 256 * 1024 * 1024, 1000)] == [2, 2, 1]
    assert [len(c) for c in fanout.cut(big, 1, 1000)] == [1, 1, 1, 1, 1]
    assert [len(c) for c in fanout.cut(big, 1, 1000, chunks=16)] == [1, 1, 1, 1, 1]
    assert fanout.cut([], 1, 1) == [] and fanout.cut([], 1, 1, chunks=4) == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"run": "r", "chunk": 0, "keys": ["datasets/demo/data.csv"]}, "not a capture key"),
        ({"run": "r", "chunk": 0, "keys": ["captures/2024/01/01/00/../../../x"]}, "not a capture key"),
        ({"run": "r", "chunk": 0, "keys": []}, "keys must be"),
        ({"run": "r", "chunk": -1, "keys": ["captures/2024/01/01/00/a"]}, "chunk must be"),
        ({"run": "a/b", "chunk": 0, "keys": ["captures/2024/01/01/00/a"]}, "run must be"),
        ("not a dict", "a chunk needs"),
    ],
)
def test_a_chunk_refuses_input_the_state_machine_never_sends(event: Any, message: str) -> None:
    with pytest.raises(fanout.FanoutError, match=message):
        fanout.chunk_request(event)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"run": "r", "request": {"chunks": 0}}, "chunks must be"),
        ({"run": "r", "request": {"chunks": "4"}}, "chunks must be"),
        ({"run": "r", "request": {"window_seconds": 5}}, "window_seconds"),
        ({"run": "", "request": {}}, "run must be"),
        ([], "the plan step needs"),
    ],
)
def test_the_plan_refuses_bad_requests(event: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fanout.plan_request(event)


def test_a_reduce_without_a_plan_or_with_another_runs_partials_fails() -> None:
    world = _world(objects=2, rows=20)
    runs = MonitorRuns(world.reg_objects)
    with pytest.raises(fanout.FanoutError, match="has no plan"):
        fanout.reduce(_settings(), world.stores, runs, "nope")
    fanout.plan(_settings(), world.stores, runs, "run-2", chunks=2)
    world.reg_objects.put(runs.chunk_key("run-2", "partials", 0), b'{"format": 1, "chunk": 1}')
    world.reg_objects.put(runs.chunk_key("run-2", "partials", 1), b'{"format": 1, "chunk": 1}')
    with pytest.raises(fanout.FanoutError, match="chunk 0 are not this run's"):
        fanout.reduce(_settings(), world.stores, runs, "run-2")


def test_partials_merge_to_the_same_bits_in_any_grouping() -> None:
    ref = drift.FeatureReference.from_stats(
        "f", {"edges": [-1.0, 0.0, 1.0], "proportions": [0.25] * 4, "sample": list(np.linspace(-2, 2, 41))}
    )
    blocks = [np.random.default_rng(i).normal(i * 1e-3, 10.0 ** (i % 7 - 3), 257) for i in range(64)]
    one = drift.FeaturePartial.empty(ref)
    for b in blocks:
        one.merge(drift.partial(ref, b))
    chunks = []
    for c in range(16):
        p = drift.FeaturePartial.empty(ref)
        for b in blocks[c * 4 : c * 4 + 4]:
            p.merge(drift.partial(ref, b))
        chunks.append(drift.FeaturePartial.from_dict(json.loads(json.dumps(p.to_dict(exact=True)))))
    merged = drift.FeaturePartial.empty(ref)
    for p in reversed(chunks):
        merged.merge(p)
    assert merged.sums.tolist() == one.sums.tolist() and merged.sumsq == one.sumsq
    assert drift.compare(ref, merged).to_dict() == drift.compare(ref, one).to_dict()
