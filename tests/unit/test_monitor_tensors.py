"""The monitor on a tensor model (capture format 2): per-channel summaries and PSI against the tensor
baseline, output drift for every output, metrics and DriftDetected; tabular versions unchanged."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from modelops.domain.baseline import compute_baseline, compute_tensor_baseline
from modelops.domain.capture import encode_record, encode_tensor_record
from modelops.stages import monitor
from modelops.stages.monitor import fanout
from modelops.stages.monitor.run import load_context, metric_data, resolvers
from tests.fakes import FakeBus
from tests.unit.test_monitor import World

SCHEMA = {
    "task": "multiclass",
    "classes": None,
    "inputs": [
        {"name": "image", "shape": [4, 4, 2], "dtype": "float32"},
        {"name": "meta", "shape": [3], "dtype": "float32"},
    ],
    "outputs": [
        {"name": "digit", "shape": [3], "dtype": "float32"},
        {"name": "score", "shape": [1], "dtype": "float32"},
    ],
}


def _traffic(rows: int, seed: int, shift: float = 0.0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    image = rng.normal(0.5, 0.2, size=(rows, 4, 4, 2)).astype(np.float32)
    image[:, :2, :, 1] = 0.0  # half of channel 1 is zeros
    image[:, :, :, 0] += shift
    meta = rng.random((rows, 3), dtype=np.float32)
    logits = np.stack([image[:, :, :, 0].mean(axis=(1, 2)), meta[:, 0], meta[:, 1]], axis=1) * 4
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"image": image, "meta": meta}, {
        "digit": probs.astype(np.float32),
        "score": meta[:, :1] * 2,
    }


def _publish(world: World, model: str = "digits") -> int:
    ins, outs = _traffic(2000, seed=1)
    # as convert writes it: outputs in the reference's order (here not the signature's), keys sorted
    baseline = compute_tensor_baseline(ins, {"score": outs["score"], "digit": outs["digit"]})
    m = world.registry.publish_version(
        model,
        {
            "tflite": ("model.tflite", b"TFL3"),
            "baseline": ("baseline.json", json.dumps(baseline, sort_keys=True).encode()),
        },
        {"task": "multiclass", "schema": SCHEMA, "spec": {"task": "multiclass", "monitoring": {}}},
    )
    world.registry.promote(model, m.version)
    return m.version


def _capture(world: World, lines: list[bytes], name: str = "t1") -> None:
    t = time.gmtime(world.now - 120)
    world.data.put(f"captures/{time.strftime('%Y/%m/%d/%H', t)}/{name}", b"".join(lines))


def _version(world: World) -> dict[str, Any]:
    """Version 1's result in the run's report.json (the monitor's ``evaluate``)."""
    (key,) = [k for k in world.reg_objects.keys("monitoring/digits/") if k.endswith("/report.json")]
    raw = world.reg_objects.get_bytes(key)
    assert raw is not None
    (v,) = [v for v in json.loads(raw)["versions"] if v["version"] == 1]
    return dict(v)


def _lines(world: World, rows: int, *, shift: float = 0.0, per_line: int = 5) -> list[bytes]:
    ins, outs = _traffic(rows, seed=7, shift=shift)
    return [
        encode_tensor_record(
            "digits",
            1,
            f"r{i}",
            world.now - 120,
            {k: v[i : i + per_line] for k, v in ins.items()},
            {k: v[i : i + per_line] for k, v in outs.items()},
        )
        for i in range(0, rows, per_line)
    ]


def test_traffic_like_the_baseline_does_not_drift_and_every_channel_and_output_is_reported(
    bus: FakeBus,
) -> None:
    world = World(bus)
    _publish(world)
    _capture(world, _lines(world, 400))

    summary = world.run()

    (m,) = summary["models"]
    assert (m["verdict"], m["samples"], summary["bad_lines"]) == ("ok", 400, 0)
    v = _version(world)
    feats = {f["name"]: f for f in v["features"]}
    assert list(feats) == ["image[c0]", "image[c1]", "meta"]
    c1 = feats["image[c1]"]
    assert c1["count"] == 400 * 16 and c1["zero_rate"] == 0.5 and c1["baseline"]["zero_rate"] == 0.5
    assert c1["psi"] < 0.05 and abs(c1["mean"] - c1["baseline"]["mean"]) < 0.02
    assert feats["meta"]["min"] >= 0 and feats["meta"]["max"] <= 1 and feats["meta"]["input"] == "meta"
    outs = {o["name"]: o for o in v["outputs"]}
    assert set(outs) == {"digit", "score"} and outs["digit"]["reduce"] == "argmax"
    assert all(o["psi"] < 0.1 for o in outs.values())
    assert v["prediction"]["psi"] == outs["digit"]["psi"]  # the signature's first output
    assert bus.of("DriftDetected") == []


def test_a_shifted_channel_mean_drifts_that_channel_with_its_numbers_in_the_alert(bus: FakeBus) -> None:
    world = World(bus)
    _publish(world)
    _capture(world, _lines(world, 400, shift=0.5))

    summary = world.run()

    (m,) = summary["models"]
    assert m["verdict"] == "drift" and m["drifted_features"] == ["image[c0]"]
    (detail,) = bus.of("DriftDetected")
    (f,) = detail["features"]
    assert f["name"] == "image[c0]" and f["input"] == "image" and f["psi"] > 0.2
    assert abs(f["mean"] - 1.0) < 0.05 and abs(f["baseline"]["mean"] - 0.5) < 0.05
    assert f["zero_rate"] == 0.0 and f["min"] > f["baseline"]["min"]

    data = metric_data([_version(world)], {"bad_lines": 0}, world.now, feature_metrics=2)
    psi = {d["Dimensions"][-1]["Value"] for d in data if d["MetricName"] == "Psi"}
    assert "image[c0]" in psi and len(psi) == 2
    outputs = {d["Dimensions"][-1]["Value"] for d in data if d["MetricName"] == "OutputPsi"}
    assert outputs == {"digit", "score"}


def test_the_html_report_shows_each_channel_beside_its_baseline_and_every_output(bus: FakeBus) -> None:
    world = World(bus)
    _publish(world)
    _capture(world, _lines(world, 400, shift=0.5))
    world.run()

    (key,) = [k for k in world.reg_objects.keys("monitoring/digits/") if k.endswith("/report.html")]
    html = (world.reg_objects.get_bytes(key) or b"").decode()
    section = html.split("<h3>Inputs per channel</h3>", 1)[1]
    channels, outputs = section.split("<h3>Outputs</h3>", 1)
    v = _version(world)
    c0 = {f["name"]: f for f in v["features"]}["image[c0]"]
    # the drifted channel's row: marked, its mean beside the baseline's
    row = next(r for r in channels.split("<tr") if "image[c0]" in r)
    assert "class='drift'" in row
    assert f"{c0['mean']:.4f}" in row and f"({c0['baseline']['mean']:.4f})" in row
    assert all(f"<td>{n}</td>" in channels for n in ("image[c1]", "meta"))
    assert "<td>digit</td><td>argmax</td>" in outputs and "<td>score</td>" in outputs


def test_labels_of_a_tensor_classifier_are_joined_to_its_first_output(bus: FakeBus) -> None:
    """Late labels name (request, row) as for a tabular model; a tensor classifier's quality is its first
    output (the class probabilities) against them, in the window's report, and no retrain dataset is
    written (its inputs are not a table)."""
    world = World(bus)
    version = _publish_with_classes(world)
    lines = _lines(world, 400)  # 80 lines of 5 rows: request ids r0, r5, ...
    _capture(world, lines)
    ins, outs = _traffic(400, seed=7)
    predicted = outs["digit"].argmax(axis=1)
    # every row of even requests labelled: rows 0-4 of r0, r10, r20, ... ; the odd rows of one request wrong
    truth = []
    for start in range(0, 400, 10):
        for row in range(5):
            label = int(predicted[start + row])
            if start == 0 and row % 2:
                label = (label + 1) % 3
            truth.append(json.dumps({"request_id": f"r{start}", "row": row, "label": label}))
    world.data.put("labels/digits/truth.jsonl", "\n".join(truth).encode())

    world.run()

    v = _version(world)
    assert v["version"] == version
    q = v["quality"]
    assert (q["labelled"], q["used"]) == (200, 200), q
    assert q["metrics"]["accuracy"] == pytest.approx(198 / 200)
    assert world.data.keys("datasets/digits/") == []  # no retrain dataset from a tensor model


def _publish_with_classes(world: World) -> int:
    ins, outs = _traffic(2000, seed=1)
    baseline = compute_tensor_baseline(ins, {"score": outs["score"], "digit": outs["digit"]})
    m = world.registry.publish_version(
        "digits",
        {
            "tflite": ("model.tflite", b"TFL3"),
            "baseline": ("baseline.json", json.dumps(baseline, sort_keys=True).encode()),
        },
        {
            "task": "multiclass",
            "schema": {**SCHEMA, "classes": [0, 1, 2]},
            "spec": {"task": "multiclass", "monitoring": {"retrain_on_drift": True}},
        },
    )
    world.registry.promote("digits", m.version)
    return m.version


def test_lines_that_do_not_fit_the_signature_are_counted_not_fatal(bus: FakeBus) -> None:
    world = World(bus)
    _publish(world)
    ins, outs = _traffic(2, seed=3)
    good = _lines(world, 200)
    wrong_shape = encode_tensor_record(
        "digits", 1, "w", world.now - 120, {"image": ins["image"][:, :2], "meta": ins["meta"]}, outs
    )
    v1_line = encode_record("digits", 1, "v1", world.now - 120, np.ones((1, 3), np.float32), np.ones((1, 1)))
    hostile = b'{"v":2,"model":"digits","version":1,"request_id":"h","ts":1,"n":1,"inputs":[]}'
    _capture(world, [*good, wrong_shape, v1_line, hostile + b"\n"])

    summary = world.run()

    assert summary["models"][0]["samples"] == 200
    assert summary["bad"] == {"missing_field": 1, "wrong_signature": 2}


def test_tensor_partials_merge_through_the_fan_out_as_one_pass(bus: FakeBus) -> None:
    world = World(bus)
    _publish(world)
    lines = _lines(world, 300, shift=0.3)
    start, end = world.now - 3600, world.now
    resolve, _ = resolvers(world.stores)
    one = monitor.scan.WindowScan(start, end, resolve)
    one.feed_lines(lines)
    merged = monitor.scan.WindowScan(start, end, resolve)
    for part in (lines[:17], lines[17:]):
        chunk = monitor.scan.WindowScan(start, end, resolve)
        chunk.feed_lines(part)
        fanout.absorb(merged, json.loads(json.dumps(fanout.scan_state(chunk))), resolve)

    a = monitor.scan.evaluate(one.groups[("digits", 1)], 10)
    b = monitor.scan.evaluate(merged.groups[("digits", 1)], 10)
    assert a["verdict"] == "drift" and a["samples"] == b["samples"] == 300
    for fa, fb in zip(a["features"] + a["outputs"], b["features"] + b["outputs"], strict=True):
        assert fa["psi"] == fb["psi"] and fa["ks"] == fb["ks"] and fa.get("zero_rate") == fb.get("zero_rate")


def test_a_tensor_version_with_a_tabular_baseline_is_a_baseline_error(bus: FakeBus) -> None:
    world = World(bus)
    x = np.random.default_rng(0).normal(size=(100, 3))
    m = world.registry.publish_version(
        "digits",
        {
            "tflite": ("model.tflite", b"TFL3"),
            "baseline": ("baseline.json", json.dumps(compute_baseline(x, ["a", "b", "c"], x[:, 0])).encode()),
        },
        {"task": "multiclass", "schema": SCHEMA, "spec": {"task": "multiclass", "monitoring": {}}},
    )
    world.registry.promote("digits", m.version)
    _capture(world, _lines(world, 50))

    summary = world.run()

    (r,) = summary["models"]
    assert r["verdict"] == "baseline_error" and r["samples"] == 0 and summary["bad"] == {"not_compared": 10}
    ctx = load_context(world.registry, "digits", 1)
    assert ctx is not None and "tensor baseline" in str(ctx.problem)
