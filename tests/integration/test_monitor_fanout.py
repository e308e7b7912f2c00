"""MonitorStateMachine on the twin: statemachines/monitor.asl.json run by moto's States Language
interpreter, its Lambda tasks in this process. 16 chunks give the single pass's report; a chunk that
fails its retries leaves the window incomplete and named; an empty window judges nothing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np
import pytest
import requests

from modelops.domain.baseline import compute_baseline
from modelops.domain.capture import encode_record
from modelops.domain.report import run_independent
from modelops.stages import fanout as fanout_stage
from modelops.storage.registry import Registry
from modelops_local.twin import Twin

pytestmark = pytest.mark.twin

FEATURES = ["f0", "f1", "f2", "f3"]
W = np.array([1.0, -2.0, 0.5, 3.0])
OBJECTS = 40
ROWS = 30


def _publish(twin: Twin, model: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([0.0, 5.0, -1.0, 10.0], [1.0, 2.0, 0.5, 3.0], size=(3000, 4))
    reg = Registry(twin.client("s3"), twin.outputs["RegistryBucketName"])
    m = reg.publish_version(
        model,
        {
            "tflite": ("model.tflite", b"TFL3 not a real model"),
            "baseline": ("baseline.json", json.dumps(compute_baseline(x, FEATURES, x @ W)).encode()),
        },
        {
            "task": "regression",
            "schema": {
                "task": "regression",
                "target": "y",
                "classes": None,
                "features": [{"name": f, "dtype": "float32"} for f in FEATURES],
            },
            "spec": {"task": "regression", "target": "y", "features": FEATURES},
            "metrics": {"rmse": 0.5, "mae": 0.4, "r2": 0.9},
        },
    )
    reg.promote(model, m.version)


def _captures(twin: Twin, model: str) -> list[str]:
    """``OBJECTS`` capture objects of ``model`` (the second half drifting), five minutes old."""
    ts = time.time() - 300
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime(ts))
    rng = np.random.default_rng(1)
    keys = []
    for o in range(OBJECTS):
        x = rng.normal([0.0, 5.0, -1.0, 10.0], [1.0, 2.0, 0.5, 3.0], size=(ROWS, 4)).astype(np.float32)
        if o >= OBJECTS // 2:
            x[:, 1] += 6.0
        y = (x @ W.astype(np.float32))[:, None]
        body = b"".join(
            encode_record(model, 1, f"{model}-{o}-{i}", ts, x[i : i + 1], y[i : i + 1]) for i in range(ROWS)
        )
        key = f"captures/{hour}/{model}-{o:03d}"
        twin.client("s3").put_object(Bucket=twin.outputs["DataBucketName"], Key=key, Body=body)
        keys.append(key)
    return keys


def _report(twin: Twin, model: str) -> dict[str, Any]:
    """The model's newest report.json (there is one per window stamp)."""
    s3 = twin.client("s3")
    bucket = twin.outputs["RegistryBucketName"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"monitoring/{model}/").get("Contents", [])
    (key,) = sorted(o["Key"] for o in listed if o["Key"].endswith("/report.json"))[-1:]
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _result(twin: Twin, run: str) -> dict[str, Any]:
    obj = twin.client("s3").get_object(
        Bucket=twin.outputs["RegistryBucketName"], Key=f"monitor-runs/{run}/result.json"
    )
    return json.loads(obj["Body"].read())


def _clear_reports(twin: Twin, model: str) -> None:
    s3 = twin.client("s3")
    bucket = twin.outputs["RegistryBucketName"]
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"monitoring/{model}/").get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])


def test_sixteen_chunks_on_the_state_machine_give_the_single_pass_report(twin: Twin) -> None:
    # Given one model's window split over 40 capture objects
    model = f"fan{uuid.uuid4().hex[:8]}"
    _publish(twin, model)
    _captures(twin, model)

    # When MonitorFunction runs its single pass, then the state machine runs with 16 chunks
    single = twin.invoke("MonitorFunction", {"model": model})
    assert single.ok, single.error_message
    expected = _report(twin, model)
    _clear_reports(twin, model)
    before = twin.mark()
    ex = twin.start_execution("MonitorStateMachine", {"model": model, "chunks": 16}, timeout=120)

    # Then it succeeds through 16 map children, and its report is the single pass's, field by field
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.output["complete"] is True and ex.output["chunks"] == 16
    assert ex.output["objects"] >= OBJECTS
    chunk_runs = twin.invocations_of("MonitorChunkFunction", since=before)
    assert sorted(i.source for i in chunk_runs) == ["states"] * 16 and all(i.ok for i in chunk_runs)
    got = _report(twin, model)
    assert run_independent(got) == run_independent(expected)
    (version,) = [m for m in single.result["models"] if m["model"] == model]
    assert version["verdict"] == "drift" and version["samples"] == OBJECTS * ROWS
    fanned = _result(twin, ex.name)["summary"]["models"]
    assert run_independent([m for m in fanned if m["model"] == model]) == run_independent([version])


def test_a_chunk_that_fails_its_retries_leaves_the_window_incomplete(
    twin: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a window of 4 chunks whose chunk 2 always fails
    model = f"fan{uuid.uuid4().hex[:8]}"
    _publish(twin, model)
    _captures(twin, model)
    real = fanout_stage.chunk

    def flaky(event: Any) -> dict[str, Any]:
        if event.get("chunk") == 2:
            raise OSError("injected: the disk of chunk 2 is gone")
        return real(event)

    monkeypatch.setattr(fanout_stage, "chunk", flaky)
    before = twin.mark()

    # When the state machine runs
    ex = twin.start_execution("MonitorStateMachine", {"model": model, "chunks": 4}, timeout=120)

    # Then the map retried chunk 2 twice, recorded why, and the execution fails without judging
    assert ex.status == "FAILED" and ex.error == "MonitorWindowIncomplete"
    failed = [i for i in twin.invocations_of("MonitorChunkFunction", since=before) if not i.ok]
    assert len(failed) == 3 and {i.error_type for i in failed} == {"OSError"}
    result = _result(twin, ex.name)
    assert result["complete"] is False
    assert [f["chunk"] for f in result["failed_chunks"]] == [2]
    assert "injected: the disk of chunk 2 is gone" in result["failed_chunks"][0]["cause"]
    reports = twin.client("s3").list_objects_v2(
        Bucket=twin.outputs["RegistryBucketName"], Prefix=f"monitoring/{model}/"
    )
    assert reports.get("KeyCount") == 0


def test_an_empty_window_completes_and_judges_nothing(twin: Twin) -> None:
    # Given a model with no captures at all
    model = f"fan{uuid.uuid4().hex[:8]}"
    _publish(twin, model)

    # When the state machine runs over a one-minute window of it
    ex = twin.start_execution("MonitorStateMachine", {"model": model, "window_seconds": 60}, timeout=60)

    # Then it succeeds, with no chunk, no report
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.output["complete"] is True
    summary = _result(twin, ex.name)["summary"]
    assert [m for m in summary["models"] if m["model"] == model] == []
    reports = twin.client("s3").list_objects_v2(
        Bucket=twin.outputs["RegistryBucketName"], Prefix=f"monitoring/{model}/"
    )
    assert reports.get("KeyCount") == 0


def test_tick_of_the_state_machine_runs_an_execution_to_its_end(twin: Twin) -> None:
    # When `modelops local tick MonitorStateMachine` asks the twin's control endpoint
    resp = requests.post(
        f"{twin.control_url}/tick/MonitorStateMachine", headers=twin.control_headers, timeout=120
    )

    # Then one execution of the template's definition ran (its schedule's input: the whole window)
    assert resp.status_code == 200
    (ex,) = resp.json()["executions"]
    assert ex["state_machine"] == "MonitorStateMachine" and ex["status"] == "SUCCEEDED", ex
    assert twin.executions[-1].name == ex["execution"]
    assert {i["function"] for i in resp.json()["invocations"]} >= {
        "MonitorPlanFunction",
        "MonitorReduceFunction",
    }
