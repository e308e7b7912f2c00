"""Batch scoring's three steps, run by the ScoreStateMachine's Distributed Map (docs/scoring.md).

::

    plan    the input (datasets/{model}/score/NAME.csv at one object version) read once: its SHA-256,
            its header, its rows cut at line boundaries into chunks of ``chunk_rows`` rows (byte
            ranges); production's version resolved once and pinned for every chunk ->
            score-runs/{run}/plan.json and items.json (the map's ItemReader reads it)
    chunk   one map child: a ranged GET of its rows, read as predict reads rows, the pinned version's
            verified LiteRT artifact run on them -> scores/{model}/{version}/{run}/part-{chunk}.csv,
            rejects/part-{chunk}.csv (row, reason) and chunks/{chunk}.json (its counts)
    reduce  every chunk's counts (or why it failed) -> manifest.json (create-only), ScoringCompleted,
            or ScoringFailed when the plan found nothing to score or more chunks failed than tolerated

A model with no production version, an input that is gone, has no rows or lacks a feature: the plan
writes nothing under scores/ and the reduce publishes ScoringFailed with the reason.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    ModelNotFoundError,
    VersionNotFoundError,
)
from modelops.inference import (
    InterpreterFactory,
    LoadedModel,
    check_identifier,
    litert_interpreter,
    model_info,
    predict_rows,
)
from modelops.stages.scoring import rows as csvrows
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry
from modelops.storage.scores import ScoreInputs, ScoreOutputs, ScoreRuns

FORMAT = 1
"""Version of the plan, items, chunk counts and manifest documents."""
DEFAULT_CHUNK_ROWS = 20_000
MIN_CHUNK_ROWS = 100
MAX_CHUNK_ROWS = 1_000_000
MAX_CHUNKS = 10_000
RUN_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")
_NEWLINE = 10


class ScoringError(ValueError):
    """A step's input is not one this state machine sends (the step fails, and says why)."""


@dataclass
class Stores:
    registry: Registry
    inputs: ScoreInputs
    outputs: ScoreOutputs
    runs: ScoreRuns
    bus: EventBus | None = None


def check_run(run: Any) -> str:
    if not isinstance(run, str) or not RUN_RE.fullmatch(run):
        raise ScoringError(
            "run must be 1 to 80 letters, digits, dashes or underscores (the execution's name)"
        )
    return run


def _int(doc: dict[str, Any], name: str, low: int, high: int) -> int:
    v = doc.get(name)
    if type(v) is not int or not low <= v <= high:
        raise ScoringError(f"{name} must be an integer from {low} to {high}")
    return v


# ---------------------------------------------------------------------------------------------- plan
@dataclass
class Scan:
    """What one read of the input found."""

    sha256: str
    size: int
    header: bytes
    rows: int
    bounds: list[tuple[int, int]]  # (start, end) byte range of each chunk's rows


def scan(blocks: Any, chunk_rows: int) -> Scan:
    """Hash the input and cut its data lines into ranges of ``chunk_rows`` lines (line ``k`` ends at
    newline ``k``; newline 0 ends the header); holds one block and the chunk offsets in memory."""
    h = hashlib.sha256()
    pos = 0
    newlines = 0
    marks: list[int] = []
    header = bytearray()
    header_end: int | None = None
    last = _NEWLINE
    for block in blocks:
        if not block:
            continue
        h.update(block)
        at = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == _NEWLINE)
        if header_end is None:
            if len(at):
                header += block[: int(at[0]) + 1]
                header_end = pos + int(at[0]) + 1
            else:
                header += block
                if len(header) > csvrows.MAX_HEADER_BYTES:
                    raise csvrows.InputError(f"the header is longer than {csvrows.MAX_HEADER_BYTES} bytes")
        if len(at):
            ordinals = np.arange(newlines, newlines + len(at))
            picked = at[(ordinals % chunk_rows == 0) & (ordinals > 0)]
            marks.extend((pos + picked + 1).tolist())
        newlines += len(at)
        pos += len(block)
        last = block[-1]
    if header_end is None:  # no newline: a header alone (or nothing)
        return Scan(h.hexdigest(), pos, bytes(header), 0, [])
    rows = newlines - 1 + (1 if last != _NEWLINE else 0)
    starts = [header_end, *(m for m in marks if m < pos)]
    ends = [*starts[1:], pos]
    bounds = [(a, b) for a, b in zip(starts, ends, strict=True) if b > a]
    return Scan(h.hexdigest(), pos, bytes(header), rows, bounds)


def plan_request(event: Any, data_bucket: str) -> tuple[str, dict[str, Any]]:
    """``(run, request)`` of the plan step's input ``{"run": execution name, "request": {"bucket",
    "key", "version_id"?, "chunk_rows"?}}`` (the scoring-start function's or the CLI's request)."""
    if not isinstance(event, dict) or not isinstance(event.get("request"), dict):
        raise ScoringError("the plan step needs {'run': ..., 'request': {'bucket', 'key', ...}}")
    run = check_run(event.get("run"))
    req = event["request"]
    key, bucket = req.get("key"), req.get("bucket", data_bucket)
    if bucket != data_bucket:
        raise ScoringError(f"scoring reads the data bucket only, not {str(bucket)[:80]!r}")
    if not isinstance(key, str) or ScoreInputs.model_of(key) is None:
        raise ScoringError(f"not a scoring input (datasets/MODEL/score/NAME.csv): {str(key)[:200]!r}")
    version_id = req.get("version_id")
    if version_id is not None and (not isinstance(version_id, str) or not 0 < len(version_id) <= 1024):
        raise ScoringError("version_id must be an S3 version id")
    out: dict[str, Any] = {"bucket": bucket, "key": key, "version_id": version_id}
    if "chunk_rows" in req:
        out["chunk_rows"] = _int(req, "chunk_rows", MIN_CHUNK_ROWS, MAX_CHUNK_ROWS)
    return run, out


def plan(
    stores: Stores,
    run: str,
    request: dict[str, Any],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    tolerated_failure_percent: float = 0.0,
) -> dict[str, Any]:
    """Write the run's plan and items; return what the state machine needs. A run that cannot score
    (no production version, no input, no rows, a missing feature) returns ``ok: false`` with the
    reason, writes its plan (for the reduce) and nothing under scores/."""
    key = str(request["key"])
    model = ScoreInputs.model_of(key)
    assert model is not None
    n = int(request.get("chunk_rows") or chunk_rows)
    base: dict[str, Any] = {
        "format": FORMAT,
        "run": run,
        "model": model,
        "input": {"bucket": stores.inputs.bucket, "key": key, "version_id": request.get("version_id")},
        "planned_at": time.time(),
        "tolerated_failure_percent": float(tolerated_failure_percent),
    }

    def refuse(reason: str) -> dict[str, Any]:
        stores.runs.write(run, "plan.json", {**base, "ok": False, "reason": reason})
        return {"ok": False, "run": run, "model": model, "reason": reason}

    try:
        version = stores.registry.resolve(model)
        manifest = stores.registry.get_manifest(model, version)
        info = model_info(manifest)
    except (AliasNotFoundError, ModelNotFoundError):
        return refuse(f"model {model!r} has no production version: nothing was scored")
    except (VersionNotFoundError, CorruptDocumentError) as exc:
        return refuse(f"model {model!r}: production's version cannot be served ({exc})")
    opened = stores.inputs.open(key, request.get("version_id"))
    if opened is None:
        return refuse(f"the input s3://{stores.inputs.bucket}/{key} is not there")
    blocks, version_id, _ = opened
    base["input"]["version_id"] = version_id
    try:
        found = scan(blocks, n)
        header = csvrows.parse_header(found.header)
        csvrows.columns_for(header, info.input_schema)
    except csvrows.InputError as exc:
        return refuse(f"the input cannot be scored: {exc}")
    base["input"].update({"sha256": found.sha256, "bytes": found.size})
    if found.rows == 0:
        return refuse("the input has no rows under its header")
    if len(found.bounds) > MAX_CHUNKS:
        return refuse(
            f"{found.rows} rows make {len(found.bounds)} chunks (at most {MAX_CHUNKS}): raise chunk_rows"
        )
    items = []
    for c, (start, end) in enumerate(found.bounds):
        first = c * n + 1
        items.append(
            {
                "chunk": c,
                "start": start,
                "end": end,
                "first_row": first,
                "rows": min(n, found.rows - c * n),
                "failure_key": stores.runs.failure_key(run, c),
            }
        )
    header_text = found.header.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    doc = {
        **base,
        "ok": True,
        "version": version,
        "role": info.role,
        "sha256": info.sha256,
        "header": header_text,
        "rows": found.rows,
        "chunk_rows": n,
        "chunks": len(items),
        "items": items,
    }
    stores.runs.write(run, "items.json", items)
    stores.runs.write(run, "plan.json", doc)
    bucket, items_key = stores.runs.items_location(run)
    return {
        "ok": True,
        "run": run,
        "model": model,
        "version": version,
        "bucket": stores.inputs.bucket,
        "key": key,
        "version_id": version_id,
        "header": header_text,
        "rows": found.rows,
        "chunks": len(items),
        "items": {"Bucket": bucket, "Key": items_key},
        "tolerated_failure_percent": float(tolerated_failure_percent),
    }


# ---------------------------------------------------------------------------------------------- chunk
@dataclass(frozen=True)
class ChunkRequest:
    run: str
    chunk: int
    model: str
    version: int
    key: str
    version_id: str | None
    header: str
    start: int
    end: int
    first_row: int
    rows: int


def chunk_request(event: Any, data_bucket: str) -> ChunkRequest:
    """A map child's input (``ItemSelector`` in statemachines/score.asl.json), checked."""
    if not isinstance(event, dict):
        raise ScoringError("a chunk needs {'run', 'chunk', 'model', 'version', 'key', 'start', 'end', ...}")
    run = check_run(event.get("run"))
    if event.get("bucket", data_bucket) != data_bucket:
        raise ScoringError("a chunk reads the data bucket only")
    key = event.get("key")
    model = ScoreInputs.model_of(key) if isinstance(key, str) else None
    if model is None or model != event.get("model"):
        raise ScoringError("key must be the model's scoring input (datasets/MODEL/score/NAME.csv)")
    assert isinstance(key, str)
    header = event.get("header")
    if not isinstance(header, str) or not 0 < len(header) <= csvrows.MAX_HEADER_BYTES:
        raise ScoringError("header must be the input's header line")
    version_id = event.get("version_id")
    if version_id is not None and not isinstance(version_id, str):
        raise ScoringError("version_id must be a string")
    start = _int(event, "start", 0, 2**53)
    end = _int(event, "end", start + 1, 2**53)
    return ChunkRequest(
        run,
        _int(event, "chunk", 0, MAX_CHUNKS - 1),
        model,
        _int(event, "version", 1, 10**9),
        key,
        version_id,
        header,
        start,
        end,
        _int(event, "first_row", 1, 2**53),
        _int(event, "rows", 1, MAX_CHUNK_ROWS),
    )


@dataclass
class Models:
    """The pinned versions' LiteRT models, loaded once per container (verified: ``download_artifact``)."""

    registry: Registry
    workdir: Path
    factory: InterpreterFactory = litert_interpreter
    _loaded: dict[tuple[str, int], LoadedModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, model: str, version: int) -> LoadedModel:
        with self._lock:
            got = self._loaded.get((model, version))
            if got is None:
                manifest = self.registry.get_manifest(model, version)
                info = model_info(manifest)
                path = self.workdir / f"{model}-{version}-{info.sha256}.tflite"
                self.registry.download_artifact(manifest, info.role, path)
                got = self._loaded[(model, version)] = LoadedModel(info, check_identifier(path), self.factory)
            return got


def chunk(stores: Stores, models: Models, req: ChunkRequest) -> dict[str, Any]:
    """One map child: its rows scored and written (part, rejects, counts). A bad row is a reject; an
    unreadable range or model raises (the map retries the chunk, then records why it failed)."""
    loaded = models.get(req.model, req.version)
    data = stores.inputs.read_range(req.key, req.version_id, req.start, req.end)
    header = csvrows.parse_header(req.header.encode("utf-8"))
    parsed = csvrows.parse_rows(data, req.first_row, header, loaded.info.input_schema)
    if parsed.lines != req.rows:
        raise ScoringError(
            f"chunk {req.chunk}: the plan counted {req.rows} rows in bytes {req.start}-{req.end}, "
            f"the range holds {parsed.lines}: the input changed under the run"
        )
    y = predict_rows(loaded, parsed.x)
    part = csvrows.render_part(loaded.info, req.model, y, parsed.rows)
    rejects = csvrows.render_rejects(parsed.rejects) if parsed.rejects else None
    summary = {
        "format": FORMAT,
        "run": req.run,
        "chunk": req.chunk,
        "first_row": req.first_row,
        "rows": req.rows,
        "scored": int(parsed.x.shape[0]),
        "rejected": len(parsed.rejects),
        "oov": parsed.oov,
        "part_sha256": hashlib.sha256(part).hexdigest(),
    }
    stores.outputs.write_chunk(req.model, req.version, req.run, req.chunk, part, rejects, summary)
    return {"chunk": req.chunk, "scored": summary["scored"], "rejected": summary["rejected"]}


# ---------------------------------------------------------------------------------------------- reduce
def reduce(stores: Stores, run: str, plan_error: Any = None) -> dict[str, Any]:
    """The run's manifest and its event; returns ``{"ok", ...}`` (the state machine's outcome)."""
    check_run(run)
    doc = stores.runs.read(run, "plan.json")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        why = "the plan step failed"
        if isinstance(plan_error, dict):
            why += f": {str(plan_error.get('Error') or '')[:200]} {str(plan_error.get('Cause') or '')[:800]}"
        return _failed(stores, run, None, None, why.strip(), {})
    model = str(doc["model"])
    if not doc.get("ok"):
        return _failed(stores, run, model, None, str(doc.get("reason")), {"input": doc.get("input")})
    version = int(doc["version"])
    n = int(doc["chunks"])
    items = {int(i["chunk"]): i for i in doc["items"]}
    parts: list[str] = []
    rejects: list[str] = []
    failed: list[dict[str, Any]] = []
    scored = rejected = 0
    oov: dict[str, int] = {}
    for c in range(n):
        got = stores.outputs.chunk_summary(model, version, run, c)
        if got is None or got.get("run") != run or got.get("chunk") != c:
            failure = stores.runs.failure(run, c) or {}
            failed.append(
                {
                    "chunk": c,
                    "first_row": items[c]["first_row"],
                    "rows": items[c]["rows"],
                    "error": str(failure.get("Error") or "ChunkMissing")[:200],
                    "cause": str(failure.get("Cause") or "the chunk wrote no scores")[:2000],
                }
            )
            continue
        scored += int(got["scored"])
        rejected += int(got["rejected"])
        parts.append(str(got["part"]))
        if got.get("rejects"):
            rejects.append(str(got["rejects"]))
        for k, v in (got.get("oov") or {}).items():
            oov[str(k)] = oov.get(str(k), 0) + int(v)
    tolerated = float(doc.get("tolerated_failure_percent") or 0.0)
    percent = 100.0 * len(failed) / n if n else 0.0
    ok = percent <= tolerated
    manifest = {
        "format": FORMAT,
        "run": run,
        "model": model,
        "version": version,
        "role": doc.get("role"),
        "artifact_sha256": doc.get("sha256"),
        "status": "completed" if ok else "failed",
        "input": doc["input"],
        "header": doc["header"],
        "rows_in": int(doc["rows"]),
        "rows_out": scored,
        "rejected": rejected,
        "rows_in_failed_chunks": sum(f["rows"] for f in failed),
        "chunks": n,
        "chunk_rows": doc["chunk_rows"],
        "failed_chunks": failed,
        "failure_percent": round(percent, 4),
        "tolerated_failure_percent": tolerated,
        "parts": parts,
        "rejects": rejects,
        "oov": oov,
        "planned_at": doc.get("planned_at"),
        "finished_at": time.time(),
    }
    if not stores.outputs.create_manifest(model, version, run, manifest):
        manifest = stores.outputs.manifest(model, version, run) or manifest  # a retried reduce
        ok = manifest.get("status") == "completed"
    location = f"s3://{stores.outputs.bucket}/{stores.outputs.manifest_key(model, version, run)}"
    detail = {
        "model": model,
        "version": version,
        "run": run,
        "rows_in": manifest["rows_in"],
        "rows_out": manifest["rows_out"],
        "rejected": manifest["rejected"],
        "failed_chunks": len(manifest["failed_chunks"]),
        "chunks": manifest["chunks"],
        "manifest": location,
    }
    if ok:
        if stores.bus is not None:
            stores.bus.publish("ScoringCompleted", detail)
        stores.runs.write(run, "result.json", {"ok": True, **detail})
        return {"ok": True, **detail}
    reason = (
        f"{len(manifest['failed_chunks'])} of {manifest['chunks']} chunks failed "
        f"({manifest['failure_percent']}% > the tolerated {tolerated}%)"
    )
    return _failed(stores, run, model, version, reason, {**detail})


def _failed(
    stores: Stores, run: str, model: str | None, version: int | None, reason: str, extra: dict[str, Any]
) -> dict[str, Any]:
    detail: dict[str, Any] = {"model": model, "run": run, "reason": reason[:1000], **extra}
    if version is not None:
        detail["version"] = version
    if stores.bus is not None:
        stores.bus.publish("ScoringFailed", detail)
    stores.runs.write(run, "result.json", {"ok": False, **detail})
    return {"ok": False, "run": run, "model": model, "reason": reason[:1000]}
