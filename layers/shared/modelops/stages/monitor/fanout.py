"""The monitor fanned out over a Step Functions Distributed Map (docs/monitoring.md "Fan-out").

::

    plan    list the window's capture objects (storage.captures, as the single pass does) and cut them,
            in order, into chunks of at most ``max_bytes`` / ``max_objects`` -> monitor-runs/{run}/
            items.json (the map's ItemReader reads it) and plan.json (the window: every step reads it)
    chunk   one map child: its objects -> the same WindowScan the single pass runs -> the scan's state
            (drift partials, counts, joined labels) -> monitor-runs/{run}/partials/{chunk}.json
    reduce  every chunk's state merged into one WindowScan, in chunk order -> ``run.finish_window``:
            exactly what the single pass does after its scan (verdicts, reports, metrics, DriftDetected,
            retraining). A chunk without partials (it failed twice; ``failures/{chunk}.json`` says why)
            leaves the window incomplete: nothing is judged and ``result.json`` names the chunks.

The merged scan equals the single pass's: counts add up, the drift partials merge exactly (their
sums are compensated, ``drift.FeaturePartial.merge``, and the raw values of a small window travel
with them), and the labelled rows are kept in object order, as one pass would have met them.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from modelops.domain import drift
from modelops.domain.drift import VersionContext
from modelops.stages.monitor.run import (
    MAX_WINDOW_SECONDS,
    MonitorSettings,
    Stores,
    finish_window,
    request_from_event,
    resolvers,
    scan_objects,
)
from modelops.stages.monitor.scan import GroupState, WindowScan
from modelops.storage.reports import MonitorRuns

FORMAT = 1
"""Version of the plan and partials documents."""
MAX_CHUNK_BYTES = 256 * 1024 * 1024
"""Default capture bytes per chunk: about 15 s of decoding on one core (docs/monitoring.md)."""
MAX_CHUNK_OBJECTS = 1000
"""Capture objects per chunk at most: a child's input (its keys) stays far below Step Functions'
256 KB, and 100,000 tiny objects make 100 children, not 100,000."""
MAX_CHUNKS = 10_000
RUN_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")
CAPTURE_KEY_RE = re.compile(r"captures/[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}/[^\s]{1,900}")


class FanoutError(ValueError):
    """A step's input is not one this state machine sends (the step fails, and says why)."""


# ---------------------------------------------------------------------------------------------- plan
def cut(
    objects: list[dict[str, Any]], max_bytes: int, max_objects: int, chunks: int | None = None
) -> list[list[str]]:
    """The objects' keys, in order, cut into consecutive chunks: at most ``max_objects`` keys and (but
    for a single larger object) ``max_bytes`` bytes each; or, with ``chunks``, into that many chunks
    of near-equal object counts (tests and the bench compare 1, 4 and 16)."""
    if chunks is not None:
        n = min(chunks, len(objects))
        bounds = [round(i * len(objects) / n) for i in range(n + 1)] if n else [0]
        return [[o["Key"] for o in objects[a:b]] for a, b in zip(bounds, bounds[1:], strict=False)]
    out: list[list[str]] = []
    size = 0
    for obj in objects:
        grow = int(obj.get("Size") or 0)
        if not out or len(out[-1]) >= max_objects or (out[-1] and size + grow > max_bytes):
            out.append([])
            size = 0
        out[-1].append(obj["Key"])
        size += grow
    return out


def plan(
    settings: MonitorSettings,
    stores: Stores,
    runs: MonitorRuns,
    run: str,
    *,
    max_bytes: int = MAX_CHUNK_BYTES,
    max_objects: int = MAX_CHUNK_OBJECTS,
    chunks: int | None = None,
) -> dict[str, Any]:
    """Write the run's plan and items; return what the state machine needs (the items' location)."""
    check_run(run)
    if settings.now is None:
        settings = dataclasses.replace(settings, now=time.time())
    start, end = settings.window()
    objects = stores.captures.objects_in_window(start, end)
    groups = cut(objects, max_bytes, max_objects, chunks)
    if len(groups) > MAX_CHUNKS:
        raise FanoutError(f"{len(objects)} capture objects make {len(groups)} chunks (at most {MAX_CHUNKS})")
    sizes = {o["Key"]: int(o.get("Size") or 0) for o in objects}
    items = [
        {
            "chunk": i,
            "keys": group,
            "bytes": sum(sizes[k] for k in group),
            "failure_key": runs.chunk_key(run, "failures", i),
        }
        for i, group in enumerate(groups)
    ]
    total = sum(sizes.values())
    doc = {
        "format": FORMAT,
        "run": run,
        "model": settings.model,
        "now": settings.now,
        "window_seconds": settings.window_seconds,
        "capture_lag_seconds": settings.capture_lag_seconds,
        "start": start,
        "end": end,
        "chunks": len(items),
        "objects": len(objects),
        "bytes": total,
    }
    runs.write(run, "items.json", items)
    runs.write(run, "plan.json", doc)
    bucket, key = runs.items_location(run)
    return {
        "run": run,
        "chunks": len(items),
        "objects": len(objects),
        "bytes": total,
        "items": {"Bucket": bucket, "Key": key},
    }


def plan_request(event: Any) -> tuple[str, str | None, int | None, int | None]:
    """``(run, model, window_seconds, chunks)`` of the plan step's input ``{"run": execution name,
    "request": the execution's input}``; the request is the monitor's (``run.request_from_event``)
    plus an optional ``chunks`` (cut into exactly that many chunks)."""
    if not isinstance(event, dict):
        raise FanoutError("the plan step needs {'run': ..., 'request': ...}")
    run = check_run(event.get("run"))
    request = event.get("request")
    model, window = request_from_event(request if isinstance(request, dict) else {})
    chunks = request.get("chunks") if isinstance(request, dict) else None
    if chunks is not None and (type(chunks) is not int or not 1 <= chunks <= MAX_CHUNKS):
        raise FanoutError(f"chunks must be an integer from 1 to {MAX_CHUNKS}")
    return run, model, window, chunks


def check_run(run: Any) -> str:
    if not isinstance(run, str) or not RUN_RE.fullmatch(run):
        raise FanoutError("run must be 1 to 80 letters, digits, dashes or underscores (the execution's name)")
    return run


def settings_of(runs: MonitorRuns, run: str, base: MonitorSettings) -> tuple[MonitorSettings, dict[str, Any]]:
    """The run's settings (``base``, the function's environment, with the plan's window) and plan."""
    doc = runs.read(check_run(run), "plan.json")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FanoutError(f"run {run} has no plan (monitor-runs/{run}/plan.json)")
    window = int(doc["window_seconds"])
    if not 0 < window <= MAX_WINDOW_SECONDS:
        raise FanoutError(f"run {run}: the plan's window_seconds is out of range")
    settings = dataclasses.replace(
        base,
        model=doc.get("model"),
        now=float(doc["now"]),
        window_seconds=window,
        capture_lag_seconds=float(doc["capture_lag_seconds"]),
    )
    return settings, doc


# ---------------------------------------------------------------------------------------------- chunk
def chunk_request(event: Any) -> tuple[str, int, list[str]]:
    """``(run, chunk, keys)`` of a map child's input (``ItemSelector`` in the state machine)."""
    if not isinstance(event, dict):
        raise FanoutError("a chunk needs {'run', 'chunk', 'keys'}")
    run = check_run(event.get("run"))
    chunk, keys = event.get("chunk"), event.get("keys")
    if type(chunk) is not int or not 0 <= chunk < MAX_CHUNKS:
        raise FanoutError(f"chunk must be an integer from 0 to {MAX_CHUNKS - 1}")
    if not isinstance(keys, list) or not keys or len(keys) > MAX_CHUNK_OBJECTS:
        raise FanoutError(f"keys must be a list of 1 to {MAX_CHUNK_OBJECTS} capture keys")
    for key in keys:
        if not isinstance(key, str) or not CAPTURE_KEY_RE.fullmatch(key) or ".." in key.split("/"):
            raise FanoutError(f"not a capture key: {str(key)[:80]!r}")
    return run, chunk, keys


def chunk(
    base: MonitorSettings, stores: Stores, runs: MonitorRuns, run: str, index: int, keys: list[str]
) -> dict[str, Any]:
    """One map child: the scan of its objects, written as ``partials/{chunk}.json``."""
    settings, _ = settings_of(runs, run, base)
    start, end = settings.window()
    resolve, _ = resolvers(stores)
    labels, labels_bad = stores.captures.labels(start, settings.model)
    scan = scan_objects(settings, stores, resolve, keys, start, end, labels)
    doc = {"format": FORMAT, "run": run, "chunk": index, "labels_bad": labels_bad, **scan_state(scan)}
    runs.write_chunk(run, "partials", index, doc)
    return {"run": run, "chunk": index, "objects": scan.objects, "bytes": scan.bytes, "lines": scan.lines}


# ---------------------------------------------------------------------------------------------- reduce
def reduce(base: MonitorSettings, stores: Stores, runs: MonitorRuns, run: str) -> dict[str, Any]:
    """Merge every chunk and finish the window as the single pass does; or, when a chunk has no
    partials, mark the window incomplete (``result.json``) and judge nothing. Returns the outcome
    (small: the state machine's payload; the full summary is in ``result.json``)."""
    settings, plan_doc = settings_of(runs, run, base)
    n = int(plan_doc["chunks"])
    start, end = settings.window()
    have = set(runs.chunks(run, "partials"))
    missing = [c for c in range(n) if c not in have]
    outcome: dict[str, Any] = {
        "run": run,
        "chunks": n,
        "objects": plan_doc["objects"],
        "bytes": plan_doc["bytes"],
    }
    if missing:
        failed = []
        for c in missing:
            why = runs.read_chunk(run, "failures", c) or {}
            failed.append(
                {
                    "chunk": c,
                    "error": str(why.get("Error") or "ChunkMissing")[:200],
                    "cause": str(why.get("Cause") or "the chunk wrote no partials")[:2000],
                }
            )
        result = {
            **outcome,
            "complete": False,
            "window": {"start": start, "end": end},
            "failed_chunks": failed,
        }
        runs.write(run, "result.json", result)
        return {
            **outcome,
            "complete": False,
            "failed_chunks": [{"chunk": f["chunk"], "error": f["error"]} for f in failed],
        }
    resolve, overrides = resolvers(stores)
    scan = WindowScan(start, end, resolve, model=settings.model, block_bytes=settings.block_bytes)
    labels_bad: dict[str, int] | None = None
    for c in range(n):
        doc = runs.read_chunk(run, "partials", c)
        if doc is None or doc.get("format") != FORMAT or doc.get("chunk") != c:
            raise FanoutError(f"run {run}: the partials of chunk {c} are not this run's")
        absorb(scan, doc, resolve)
        if labels_bad is None:
            labels_bad = {str(k): int(v) for k, v in (doc.get("labels_bad") or {}).items()}
    if labels_bad is None:  # an empty window: no chunk read the labels
        _, labels_bad = stores.captures.labels(start, settings.model)
    summary = finish_window(settings, stores, scan, resolve, overrides, start, end, labels_bad)
    runs.write(run, "result.json", {**outcome, "complete": True, "summary": summary})
    return {
        **outcome,
        "complete": True,
        "lines": summary["lines"],
        "bad_lines": summary["bad_lines"],
        "max_psi_ratio": summary["max_psi_ratio"],
        "drift": [
            {"model": m["model"], "version": m["version"]}
            for m in summary["models"]
            if m["verdict"] == "drift"
        ],
    }


# ---------------------------------------------------------------------------------------------- scan state
def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _unb64(s: str, cols: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").reshape(-1, cols).astype(np.float32)


def _ts(v: float) -> float | None:
    return v if math.isfinite(v) else None


def scan_state(scan: WindowScan) -> dict[str, Any]:
    """Everything a WindowScan accumulated, as JSON (its labelled rows as base64 float32)."""
    groups = []
    for (model, version), g in scan.groups.items():
        label_x = np.concatenate(g.label_x) if g.label_x else None
        label_y = np.concatenate(g.label_y) if g.label_y else None
        groups.append(
            {
                "model": model,
                "version": version,
                "lines": g.lines,
                "rows": g.rows,
                "k": g.k,
                "bad": dict(g.bad),
                "first_ts": _ts(g.first_ts),
                "last_ts": _ts(g.last_ts),
                "parts": None if g.parts is None else [p.to_dict(exact=True) for p in g.parts],
                "pred": None if g.pred is None else g.pred.to_dict(exact=True),
                "label_x": None if label_x is None else {"cols": label_x.shape[1], "data": _b64(label_x)},
                "label_y": None if label_y is None else {"cols": label_y.shape[1], "data": _b64(label_y)},
                "label_v": list(g.label_v),
            }
        )
    return {
        "objects": scan.objects,
        "bytes": scan.bytes,
        "lines": scan.lines,
        "outside_window": scan.outside_window,
        "other_models": scan.other_models,
        "bad": dict(scan.bad),
        "unknown": [[m, v, c] for (m, v), c in scan.unknown.items()],
        "groups": groups,
    }


def absorb(
    scan: WindowScan, doc: dict[str, Any], resolve: Callable[[str, int], VersionContext | None]
) -> None:
    """Add one chunk's :func:`scan_state` into ``scan`` (chunks in order give the single pass's scan)."""
    scan.objects += int(doc["objects"])
    scan.bytes += int(doc["bytes"])
    scan.lines += int(doc["lines"])
    scan.outside_window += int(doc["outside_window"])
    scan.other_models += int(doc["other_models"])
    scan.bad.update(Counter({str(k): int(v) for k, v in doc["bad"].items()}))
    for m, v, c in doc["unknown"]:
        key = (str(m), int(v))
        scan.unknown[key] = scan.unknown.get(key, 0) + int(c)
    for gd in doc["groups"]:
        key = (str(gd["model"]), int(gd["version"]))
        g = scan.groups.get(key)
        if g is None:
            ctx = resolve(*key)
            if ctx is None:  # gone from the registry since the chunk ran: its lines are unknown here
                scan.unknown[key] = scan.unknown.get(key, 0) + int(gd["lines"])
                scan.bad["unknown_version"] += int(gd["lines"])
                continue
            g = scan.groups[key] = GroupState(ctx)
        _absorb_group(g, gd)


def _absorb_group(g: GroupState, gd: dict[str, Any]) -> None:
    k = gd["k"]
    if k is not None and g.k is not None and k != g.k:
        # one pass would have refused these lines as it met them (the first lines set the output count)
        g.lines += int(gd["lines"])
        g.bad.update({str(r): int(c) for r, c in gd["bad"].items()})
        g.bad["wrong_output_count"] += int(gd["lines"]) - int(sum(gd["bad"].values()))
        return
    if g.k is None and k is not None:
        g.k = int(k)
    g.lines += int(gd["lines"])
    g.rows += int(gd["rows"])
    g.bad.update({str(r): int(c) for r, c in gd["bad"].items()})
    if gd["first_ts"] is not None:
        g.first_ts = min(g.first_ts, float(gd["first_ts"]))
    if gd["last_ts"] is not None:
        g.last_ts = max(g.last_ts, float(gd["last_ts"]))
    if (gd["parts"] is None) != (g.parts is None) or (gd["pred"] is None) != (g.pred is None):
        raise FanoutError(f"{g.ctx.model} v{g.ctx.version}: a chunk judged it against another baseline")
    if g.parts is not None and g.pred is not None:
        for part, pd in zip(g.parts, gd["parts"], strict=True):
            part.merge(drift.FeaturePartial.from_dict(pd))
        g.pred.merge(drift.FeaturePartial.from_dict(gd["pred"]))
    if gd["label_x"] is not None:
        g.label_x.append(_unb64(gd["label_x"]["data"], int(gd["label_x"]["cols"])))
    if gd["label_y"] is not None:
        g.label_y.append(_unb64(gd["label_y"]["data"], int(gd["label_y"]["cols"])))
    g.label_v.extend(gd["label_v"])
