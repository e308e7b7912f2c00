"""Monitor fan-out: the same window through 1, 4 and 16 Distributed Map children on the twin, and what
one child (``fanout.chunk``) reads per second on one core. docs/scale.md builds its table on these.

``run()`` returns the rows ``make bench`` collects (``{"name", "value", "unit", "peer", "peer_value",
"ratio", "notes"}``; ratio > 1 means we are better):

* ``fanout_chunk_mb_per_s`` (MB/s), ``fanout_chunk_rows_per_s``, ``fanout_chunk_lines_per_s``:
  ``fanout.chunk`` (what a MonitorChunkFunction child runs: read the plan, open each capture object, the monitor's
  WindowScan, write the partials) over every object of the window as one chunk, in this process,
  pinned to one CPU core (Lambda at 1,769 MB has one vCPU), stores in memory (no network), median of
  ``REPEATS``. Peer: the throughput a full chunk (``fanout.MAX_CHUNK_BYTES``) needs to finish within
  MonitorChunkFunction's 900 s timeout; the ratio is the headroom.
* ``fanout_merged_identical`` (1/0): MonitorStateMachine on the twin (statemachines/monitor.asl.json
  run by moto's States Language interpreter) over the same captures with ``{"chunks": 1}``, ``4`` and
  ``16``: the merged window summaries (``monitor-runs/{run}/result.json``) less the fields that name
  the run or its time are equal, to the bit. The bench raises when they are not.
* ``fanout_twin_wall_{1,4,16}`` (s): each execution's wall time (plan, map, reduce), peer the 1-chunk
  execution. The twin runs the map's children one at a time (the interpreter's threads, the twin's
  handlers serialised in one process), so on the twin more chunks cost more wall time: this measures
  the fan-out's overhead per child, not a parallel speedup. On AWS the children run concurrently
  (up to the map's MaxConcurrency); docs/scale.md uses the per-chunk figures, not these walls.
* ``fanout_twin_chunk_mb_per_s`` (MB/s): the 1-chunk execution's child, its capture bytes over its
  duration on the twin (its objects read from the twin's moto S3 over loopback HTTP). Peer: the
  in-process figure.
* ``fanout_twin_child_fixed_ms`` (ms): every child's duration on the twin fitted as a fixed cost plus
  a cost per MB; peer the cost per MB.

The data: ``bench_monitor.write_workload`` (the real capture format, 97% single-row lines, 3%
batches of 2-64 rows), ``ROWS`` rows x 20 features of one model, its lines dealt in order over
``OBJECTS`` capture objects of one hour prefix.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_monitor
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("BENCH_FANOUT_ROWS", "200000"))
OBJECTS = 64
CHUNKS = (1, 4, 16)
REPEATS = 3
MODEL = "bench"  # bench_monitor.write_workload's model
AGE_SECONDS = 600  # the records' age: inside the window of a run started now (lag 90 s)
CHUNK_TIMEOUT_S = 900  # template.yaml MonitorChunkFunction Timeout


def workload(workdir: Path) -> dict[str, Any]:
    """bench_monitor's captures, re-dated ``AGE_SECONDS`` ago and dealt over ``OBJECTS`` objects:
    ``{"objects": {key: body}, "baseline", "names", "rows", "lines", "bytes", "ts"}``."""
    from modelops.domain.capture import decode_line

    wl = bench_monitor.write_workload(workdir, rows=ROWS)
    ts = time.time() - AGE_SECONDS
    old, new = f'"ts":{wl["ts"]:.3f},'.encode(), f'"ts":{ts:.3f},'.encode()
    lines = [line for f in wl["files"] for line in Path(f).read_bytes().splitlines(keepends=True)]
    lines = [line.replace(old, new, 1) for line in lines]
    if decode_line(lines[-1]).ts != round(ts, 3):
        raise RuntimeError("the bench could not re-date bench_monitor's captures")
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime(ts))
    bounds = [round(i * len(lines) / OBJECTS) for i in range(OBJECTS + 1)]
    objects = {
        f"captures/{hour}/bench-{o:03d}": b"".join(lines[a:b])
        for o, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))
    }
    return {
        "objects": objects,
        "baseline": json.loads((workdir / "baseline.json").read_text()),
        "names": wl["names"],
        "rows": wl["rows"],
        "lines": len(lines),
        "bytes": sum(len(b) for b in objects.values()),
        "ts": ts,
    }


def _manifest(wl: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    files = {"tflite": ("model.tflite", b"TFL3 not a real model"), "baseline": ("baseline.json", b"")}
    files["baseline"] = ("baseline.json", json.dumps(wl["baseline"]).encode())
    meta = {
        "task": "regression",
        "schema": {
            "task": "regression",
            "target": "y",
            "classes": None,
            "features": [{"name": f, "dtype": "float32"} for f in wl["names"]],
        },
        "spec": {"task": "regression", "target": "y", "features": wl["names"]},
        "metrics": {"rmse": 0.5, "mae": 0.4, "r2": 0.9},
    }
    return files, meta


def chunk_in_process(wl: dict[str, Any]) -> dict[str, Any]:
    """``fanout.chunk`` over every object as one chunk, stores in memory, pinned to one core."""
    sys.path.insert(0, str(ROOT))
    from modelops.stages import monitor
    from modelops.stages.monitor import fanout
    from modelops.storage.captures import CaptureStore
    from modelops.storage.registry import Registry
    from modelops.storage.reports import MonitorRuns, ReportStore, RetrainDatasets
    from tests.fakes import MemoryObjectStore

    data, reg_objects = MemoryObjectStore("data"), MemoryObjectStore("registry")
    registry = Registry.over(reg_objects)
    files, meta = _manifest(wl)
    registry.promote(MODEL, registry.publish_version(MODEL, files, meta).version)
    for key, body in wl["objects"].items():
        data.put(key, body)
    stores = monitor.Stores(
        registry=registry,
        captures=CaptureStore(data),
        reports=ReportStore(reg_objects),
        datasets=RetrainDatasets(data),
    )
    settings = monitor.MonitorSettings(
        data_bucket="data", registry_bucket="registry", now=time.time(), model=MODEL
    )
    runs = MonitorRuns(reg_objects)
    plan = fanout.plan(settings, stores, runs, "bench", chunks=1)
    keys = sorted(wl["objects"])
    if plan["objects"] != OBJECTS or plan["bytes"] != wl["bytes"]:
        raise RuntimeError(f"the in-memory plan did not see the workload: {plan}")
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    seconds, cpu = [], []
    try:
        for _ in range(REPEATS):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fanout.chunk(settings, stores, runs, "bench", 0, keys)
            seconds.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        os.sched_setaffinity(0, cores)
    if out["lines"] != wl["lines"] or out["bytes"] != wl["bytes"]:
        raise RuntimeError(f"the chunk did not read the workload: {out}")
    return {"seconds": statistics.median(seconds), "all": seconds, "cpu": statistics.median(cpu)}


def _overlap(invocations: list[Any]) -> int:
    """The most children that ran at the same moment."""
    edges = sorted(
        [(i.started_at, 1) for i in invocations]
        + [(i.started_at + i.duration_ms / 1000.0, -1) for i in invocations]
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def on_twin(wl: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """One warm-up execution, then one per chunk count: wall, children, merged summary."""
    sys.path.insert(0, str(ROOT))
    from modelops.storage.registry import Registry
    from modelops_local.twin import Twin

    out: dict[int, dict[str, Any]] = {}
    with Twin(ROOT / "template.yaml", port=0, api_port=0, echo_handler_output=False) as twin:
        s3 = twin.client("s3")
        reg = Registry(s3, twin.outputs["RegistryBucketName"])
        files, meta = _manifest(wl)
        reg.promote(MODEL, reg.publish_version(MODEL, files, meta).version)
        for key, body in wl["objects"].items():
            s3.put_object(Bucket=twin.outputs["DataBucketName"], Key=key, Body=body)
        request = {"model": MODEL, "window_seconds": 3600}
        warm = twin.start_execution("MonitorStateMachine", {**request, "chunks": 1}, timeout=600)
        if not warm.ok:
            raise RuntimeError(f"the warm-up execution failed: {warm.error}: {warm.cause}")
        for n in CHUNKS:
            before = twin.mark()
            t0 = time.perf_counter()
            ex = twin.start_execution("MonitorStateMachine", {**request, "chunks": n}, timeout=600)
            wall = time.perf_counter() - t0
            if not ex.ok or ex.output.get("chunks") != n:
                raise RuntimeError(f"{n} chunks: {ex.status} {ex.error}: {ex.cause} {ex.output}")
            children = [i for i in twin.invocations_of("MonitorChunkFunction", since=before) if i.ok]
            if len(children) != n:
                raise RuntimeError(f"{n} chunks ran {len(children)} children")
            doc = json.loads(
                s3.get_object(
                    Bucket=twin.outputs["RegistryBucketName"], Key=f"monitor-runs/{ex.name}/result.json"
                )["Body"].read()
            )
            steps = {
                f: [i.duration_ms for i in twin.invocations_of(f, since=before) if i.ok]
                for f in ("MonitorPlanFunction", "MonitorReduceFunction")
            }
            out[n] = {
                "wall": wall,
                "plan_ms": sum(steps["MonitorPlanFunction"]),
                "reduce_ms": sum(steps["MonitorReduceFunction"]),
                "children": [
                    {"ms": i.duration_ms, "bytes": i.result["bytes"], "lines": i.result["lines"]}
                    for i in children
                ],
                "overlap": _overlap(children),
                "summary": doc["summary"],
            }
    return out


def _rows_of(summary: dict[str, Any]) -> int:
    (m,) = [m for m in summary["models"] if m["model"] == MODEL]
    return int(m.get("samples") or m.get("rows") or 0)


def run() -> list[dict[str, Any]]:
    from modelops.domain.report import run_independent
    from modelops.stages.monitor import fanout

    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        wl = workload(Path(tmp))
    mb = wl["bytes"] / 1e6
    local = chunk_in_process(wl)
    twin = on_twin(wl)

    stable = {n: run_independent(r["summary"]) for n, r in twin.items()}
    identical = stable[1] == stable[4] == stable[16]
    if not identical:
        differ = sorted(k for k in stable[1] if stable[1].get(k) != stable[16].get(k))
        raise RuntimeError(f"1, 4 and 16 chunks merged to different statistics (fields: {differ})")
    lines = twin[1]["summary"]["lines"]
    if lines != wl["lines"]:
        raise RuntimeError(f"the twin's window read {lines} lines, the workload has {wl['lines']}")

    mb_s = mb / local["seconds"]
    rows_s = wl["rows"] / local["seconds"]
    need = fanout.MAX_CHUNK_BYTES / 1e6 / CHUNK_TIMEOUT_S
    data = (
        f"{wl['rows']:,} rows x {len(wl['names'])} features, {wl['lines']:,} lines "
        f"({wl['rows'] / wl['lines']:.2f} rows/line), {mb:.1f} MB in {OBJECTS} objects"
    )
    serial = (
        "the twin runs the map's children one at a time (interpreter threads, handlers serialised: "
        f"at most {max(r['overlap'] for r in twin.values())} ran at once here), so this is overhead, "
        "not parallel speedup; docs/scale.md uses the per-chunk figures"
    )
    rows: list[dict[str, Any]] = [
        {
            "name": "fanout_chunk_mb_per_s",
            "value": round(mb_s, 1),
            "unit": "MB/s",
            "peer": "needed: a 256 MiB chunk within the child's 900 s timeout",
            "peer_value": round(need, 3),
            "ratio": round(mb_s / need, 1),
            "notes": (
                f"fanout.chunk (one map child: plan read, {OBJECTS} objects opened, WindowScan, partials "
                f"written), stores in memory, pinned to 1 core; {data}; median of {REPEATS} "
                f"({', '.join(f'{s:.3f}' for s in local['all'])} s; CPU {local['cpu']:.3f} s); "
                f"a 256 MiB chunk: {fanout.MAX_CHUNK_BYTES / 1e6 / mb_s:.1f} s"
            ),
        },
        {
            "name": "fanout_chunk_rows_per_s",
            "value": round(rows_s),
            "unit": "rows/s",
            "peer": "monitor_1m_x20 target (1M rows in 1.5 s)",
            "peer_value": round(1e6 / 1.5),
            "ratio": round(rows_s / (1e6 / 1.5), 2),
            "notes": f"the same runs as fanout_chunk_mb_per_s: {data}",
        },
        {
            "name": "fanout_chunk_lines_per_s",
            "value": round(wl["lines"] / local["seconds"]),
            "unit": "lines/s",
            "peer": "lines of a 256 MiB chunk of single-row captures (264 B each) in 15 s",
            "peer_value": round(fanout.MAX_CHUNK_BYTES / 264 / 15),
            "ratio": round(wl["lines"] / local["seconds"] / (fanout.MAX_CHUNK_BYTES / 264 / 15), 2),
            "notes": (
                f"the same runs as fanout_chunk_mb_per_s ({wl['rows'] / wl['lines']:.2f} rows/line); a line's "
                "fixed cost bounds single-row traffic (docs/scale.md); peer: the 15 s per full chunk "
                "fanout.MAX_CHUNK_BYTES is sized for"
            ),
        },
        {
            "name": "fanout_merged_identical",
            "value": int(identical),
            "unit": "1=identical",
            "peer": "1-chunk execution",
            "peer_value": 1,
            "ratio": 1.0,
            "notes": (
                f"MonitorStateMachine on the twin with chunks 1, 4, 16 over the same {data}: the merged "
                f"window summaries (result.json, less run names and times) are equal; {lines:,} lines, "
                f"{_rows_of(twin[1]['summary']):,} samples"
            ),
        },
    ]
    base = twin[1]["wall"]
    for n in CHUNKS:
        r = twin[n]
        ms = [c["ms"] for c in r["children"]]
        child_rows = wl["rows"] / n
        rows.append(
            {
                "name": f"fanout_twin_wall_{n}",
                "value": round(r["wall"], 3),
                "unit": "s",
                "peer": "1-chunk execution",
                "peer_value": round(base, 3),
                "ratio": round(base / r["wall"], 2),
                "notes": (
                    f"{n} chunk(s): plan + map + reduce {r['wall'] * 1000 / mb:.1f} ms per MB of captures; "
                    f"children median {statistics.median(ms):.0f} ms (max {max(ms):.0f} ms), "
                    f"~{child_rows / (statistics.median(ms) / 1000):,.0f} rows/s per child; "
                    f"children sum {sum(ms) / 1000:.2f} s of the wall; plan {r['plan_ms']:.0f} ms, "
                    f"reduce {r['reduce_ms']:.0f} ms; {serial}"
                ),
            }
        )
    # a child's duration on the twin as a fixed cost plus a cost per MB (least squares over every child)
    kids = [c for n in CHUNKS for c in twin[n]["children"]]
    slope, fixed = np.polyfit([c["bytes"] / 1e6 for c in kids], [c["ms"] for c in kids], 1)
    (one,) = twin[1]["children"]
    twin_mb_s = one["bytes"] / 1e6 / (one["ms"] / 1000)
    medians = {
        n: statistics.median(c["bytes"] / 1e6 / (c["ms"] / 1000) for c in twin[n]["children"]) for n in CHUNKS
    }
    rows.append(
        {
            "name": "fanout_twin_chunk_mb_per_s",
            "value": round(twin_mb_s, 1),
            "unit": "MB/s",
            "peer": "fanout_chunk_mb_per_s (in memory, 1 core)",
            "peer_value": round(mb_s, 1),
            "ratio": round(twin_mb_s / mb_s, 2),
            "notes": (
                f"the 1-chunk execution's child ({mb:.1f} MB: the largest chunk here, the nearest to a full "
                f"one): bytes / duration, its objects read from the twin's moto S3 over loopback HTTP, not "
                f"pinned; median per child with 4 chunks {medians[4]:.1f}, with 16 {medians[16]:.1f} MB/s "
                "(smaller chunks pay the fixed cost more: fanout_twin_child_fixed_ms)"
            ),
        }
    )
    rows.append(
        {
            "name": "fanout_twin_child_fixed_ms",
            "value": round(float(fixed), 1),
            "unit": "ms",
            "peer": "marginal ms per MB of a child",
            "peer_value": round(float(slope), 1),
            "ratio": round(float(slope) / max(float(fixed), 1e-9), 3),
            "notes": (
                f"least-squares fit of the {len(kids)} children's durations on the twin (1, 4 and 16 chunks): "
                f"duration = {fixed:.0f} ms + {slope:.1f} ms/MB x chunk MB (read the plan, list the labels, "
                "open the objects, write the partials: a child's cost besides decoding); ratio = ms per MB "
                "over the fixed ms"
            ),
        }
    )
    return rows


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(
            f"{r['name']:<28} {r['value']:>12} {r['unit']:<12} peer {r['peer_value']:>10}  ratio {r['ratio']}"
        )
        print(f"    {r['notes']}")
