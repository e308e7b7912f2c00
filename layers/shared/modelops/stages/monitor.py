"""The monitor: drift and quality of a window of captured traffic against each version's baseline.

One run (see docs/monitoring.md)::

    list captures/YYYY/MM/DD/HH/ objects of the window (DataBucket)
      -> stream each object in blocks, decode lines in batch (bad lines counted and skipped)
      -> group rows by (model, version), fold them into mergeable partials (modelops/drift.py)
      -> compare with the version's baseline.json, join labels/{model}/*.jsonl for quality
      -> CloudWatch metrics, monitoring/{model}/{stamp}/report.json + report.html, latest.json,
         DriftDetected events, optional retrain dataset

Memory is bounded by the block size (``BLOCK_BYTES``) plus the partials (a few KB per feature) plus
the joined labels (at most ``MAX_LABELS``), whatever the size of the window.

The capture line format is ``modelops/capture.py``'s; this module has its own batch decoder because
``capture.decode_line`` (one record object and two numpy arrays per line) costs ~3x more per line: it
keeps each line's bytes and builds one array per block and (model, version). It checks what
``decode_line`` checks (``v`` 1, integer version, ``n/f/k >= 1``, strict base64, array sizes matching
n/f/k) and is stricter on types (``n/f/k/version`` JSON integers, ``model``/``request_id`` strings, ``ts``
a number), and also checks the feature count against the version's schema. Every line that is not
used is counted under a reason (``BAD_REASONS``), or as outside the window / another model.
"""

from __future__ import annotations

import binascii
import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from botocore.exceptions import ClientError

from modelops.domain import drift
from modelops.domain.errors import (
    CorruptDocumentError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    ModelOpsError,
    SpecError,
    VersionNotFoundError,
)
from modelops.domain.spec import check_model_name, parse_spec
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry

try:  # orjson decodes a capture line ~3x faster than json; the format is the same either way
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - the layer may ship without it
    _loads = json.loads
    _JSON_ERRORS = (ValueError,)

CAPTURE_PREFIX = "captures/"
LABELS_PREFIX = "labels/"
MONITORING_PREFIX = "monitoring/"
BLOCK_BYTES = 16 * 1024 * 1024
MAX_LABELS = 1_000_000
MAX_LINE_BYTES = 8 * 1024 * 1024
QUALITY_METRICS = {"rmse": "Rmse", "mae": "Mae", "accuracy": "Accuracy", "auc": "Auc"}
BAD_REASONS = (
    "not_json",
    "missing_field",
    "non_numeric",
    "bad_array",
    "wrong_feature_count",
    "not_compared",
    "wrong_output_count",
    "unknown_version",
    "unsupported_format",
)


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class MonitorSettings:
    data_bucket: str
    registry_bucket: str
    namespace: str = "ModelOps"
    window_seconds: int = 3600
    min_samples: int = 100
    model: str | None = None  # only this model
    now: float | None = None  # window end (epoch seconds); default: the time of the run
    block_bytes: int = BLOCK_BYTES
    publish: bool = True  # metrics and events (the CLI can run without publishing)

    def window(self) -> tuple[float, float]:
        end = self.now if self.now is not None else datetime.now(UTC).timestamp()
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        return end - self.window_seconds, end


# ---------------------------------------------------------------------------------------------- versions
@dataclass
class VersionContext:
    """What the monitor needs to know about one (model, version)."""

    model: str
    version: int
    features: list[str]
    task: str = "regression"
    classes: list[Any] | None = None
    target: str = "target"
    psi_threshold: float = 0.2
    retrain_on_drift: bool = False
    metric: str = "rmse"
    heldout: dict[str, float] = field(default_factory=dict)
    refs: list[drift.FeatureReference] | None = None
    pred_ref: drift.FeatureReference | None = None
    problem: str | None = None  # "no_baseline", "baseline_error: ..."; None when comparable

    @property
    def n_features(self) -> int:
        return len(self.features)


def load_context(registry: Registry, model: str, version: int) -> VersionContext | None:
    """The context of a registered version; None when the model/version is not in the registry."""
    try:
        check_model_name(model)
        manifest = registry.get_manifest(model, version)
    except (ModelNotFoundError, VersionNotFoundError, InvalidNameError, ValueError):
        return None
    except CorruptDocumentError as exc:  # reported for this version; the other models are still watched
        return VersionContext(model=model, version=version, features=[], problem=f"manifest_error: {exc}")
    # RegistryUnavailableError raises: the run fails and Lambda retries it, rather than reporting
    # every line of a real version as "unknown".
    schema = manifest.get("schema") or {}
    spec_doc = manifest.get("spec") or {}
    try:
        spec = parse_spec(spec_doc) if spec_doc else None
    except SpecError:
        spec = None
    features = [str(f["name"]) if isinstance(f, dict) else str(f) for f in (schema.get("features") or [])]
    task = str(schema.get("task") or manifest.get("task") or (spec.task if spec else "regression"))
    ctx = VersionContext(
        model=model,
        version=version,
        features=features,
        task=task,
        classes=schema.get("classes"),
        target=str(schema.get("target") or (spec.target if spec else "target")),
        psi_threshold=spec.monitoring.psi_threshold if spec else 0.2,
        retrain_on_drift=spec.monitoring.retrain_on_drift if spec else False,
        metric=spec.metric if spec else ("rmse" if task == "regression" else "accuracy"),
        heldout={
            k: float(v) for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, int | float)
        },
    )
    if "baseline" not in manifest.artifacts:
        ctx.problem = "no_baseline"
        return ctx
    try:
        baseline = json.loads(registry.read_artifact(manifest, "baseline"))
        if not ctx.features:
            ctx.features = list(baseline["features"])
        ctx.refs, ctx.pred_ref = drift.references(baseline, ctx.features)
    except IntegrityError as exc:
        ctx.problem = f"baseline_integrity: {exc}"
    except (ValueError, KeyError, TypeError, CorruptDocumentError) as exc:
        ctx.problem = f"baseline_error: {exc}"
    return ctx


# ---------------------------------------------------------------------------------------------- groups
@dataclass
class GroupState:
    """Everything accumulated for one (model, version) over the window."""

    ctx: VersionContext
    lines: int = 0
    rows: int = 0
    k: int | None = None
    bad: Counter[str] = field(default_factory=Counter)
    parts: list[drift.FeaturePartial] | None = None
    pred: drift.FeaturePartial | None = None
    first_ts: float = math.inf
    last_ts: float = -math.inf
    # the block being decoded
    xb: list[bytes] = field(default_factory=list)
    yb: list[bytes] = field(default_factory=list)
    block_rows: int = 0
    labelled_lines: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(request_id, first row in the block, rows, the line's first row within its request)"""
    # joined labels
    label_y: list[np.ndarray] = field(default_factory=list)
    label_x: list[np.ndarray] = field(default_factory=list)
    label_v: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ctx.refs is not None and self.ctx.pred_ref is not None:
            self.parts = [drift.FeaturePartial.empty(r) for r in self.ctx.refs]
            self.pred = drift.FeaturePartial.empty(self.ctx.pred_ref)


def prediction_column(y: np.ndarray, task: str) -> np.ndarray:
    """The number per row that the baseline's ``prediction`` describes (see baseline.py)."""
    if y.shape[1] == 1:
        return y[:, 0]
    if task == "binary" and y.shape[1] == 2:
        return y[:, 1]
    if task == "regression":
        return y[:, 0]
    return np.argmax(y, axis=1).astype(np.float32)


class WindowScan:
    """Decodes capture blocks and folds them into per-(model, version) partials.

    ``resolve(model, version)`` gives the version's context (or None: unknown). ``labels`` maps a
    model to ``{(request_id, row): label}`` for the quality join.
    """

    def __init__(
        self,
        start: float,
        end: float,
        resolve: Callable[[str, int], VersionContext | None],
        *,
        model: str | None = None,
        labels: dict[str, dict[tuple[str, int], Any]] | None = None,
        block_bytes: int = BLOCK_BYTES,
    ):
        self.start, self.end = start, end
        self.resolve = resolve
        self.model = model
        self.labels = labels or {}
        self._label_ids = {m: {rid for rid, _ in lab} for m, lab in self.labels.items()}
        self.block_bytes = block_bytes
        self.groups: dict[tuple[str, int], GroupState] = {}
        self.unknown: dict[tuple[str, int], int] = {}
        self.bad: Counter[str] = Counter()
        self.lines = 0
        self.outside_window = 0
        self.other_models = 0
        self.objects = 0
        self.bytes = 0

    # ------------------------------------------------------------------ input
    def feed_stream(self, body: Readable) -> None:
        """One capture object, read in blocks of ``block_bytes`` (a trailing partial line is bad)."""
        self.objects += 1
        carry = b""
        while True:
            chunk = body.read(self.block_bytes)
            if not chunk:
                break
            self.bytes += len(chunk)
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > MAX_LINE_BYTES:  # a line that never ends: count it, drop it
                    self.lines += 1
                    self.bad["not_json"] += 1
                    carry = b""
                continue
            carry = data[cut + 1 :]
            self.feed_lines(data[:cut].split(b"\n"))
        if carry.strip():
            self.feed_lines([carry])

    def feed_lines(self, lines: Iterable[bytes]) -> None:
        """Decode a block of lines, then fold the block into the partials."""
        loads, a2b, bad = _loads, binascii.a2b_base64, self.bad
        start, end, only = self.start, self.end, self.model
        groups, label_ids = self.groups, self._label_ids
        n_lines = 0
        for line in lines:
            if not line or line.isspace():
                continue
            n_lines += 1
            try:
                d = loads(line)
                model, version, ts = d["model"], d["version"], d["ts"]
                n, f, k, xs, ys, rid = d["n"], d["f"], d["k"], d["x"], d["y"], d["request_id"]
                fmt = d["v"]
            except _JSON_ERRORS:
                bad["not_json"] += 1
                continue
            except (KeyError, TypeError):  # TypeError: valid JSON but not an object
                bad["missing_field" if isinstance(d, dict) else "not_json"] += 1
                continue
            if fmt != 1:
                bad["unsupported_format"] += 1
                continue
            if (
                type(version) is not int
                or type(n) is not int
                or type(f) is not int
                or type(k) is not int
                or type(ts) not in (float, int)
            ):
                bad["non_numeric"] += 1
                continue
            if type(model) is not str or type(rid) is not str:
                bad["missing_field"] += 1
                continue
            if not start <= ts < end:
                self.outside_window += 1
                continue
            if only is not None and model != only:
                self.other_models += 1
                continue
            key = (model, version)
            g = groups.get(key)
            if g is None:
                g = self._group(key)
                if g is None:
                    bad["unknown_version"] += 1
                    self.unknown[key] = self.unknown.get(key, 0) + 1
                    continue
            g.lines += 1
            if not g.ctx.features:  # the version's schema is unknown (ctx.problem says why): count only
                g.bad["not_compared"] += 1
                continue
            if f != g.ctx.n_features:
                g.bad["wrong_feature_count"] += 1
                continue
            if n < 1 or k < 1:
                g.bad["bad_array"] += 1
                continue
            try:
                xb = a2b(xs, strict_mode=True)
                yb = a2b(ys, strict_mode=True)
            except (binascii.Error, TypeError, ValueError):
                g.bad["non_numeric"] += 1
                continue
            if len(xb) != 4 * n * f or len(yb) != 4 * n * k:
                g.bad["bad_array"] += 1
                continue
            if g.k is None:
                g.k = k
            elif k != g.k:
                g.bad["wrong_output_count"] += 1
                continue
            if ts < g.first_ts:
                g.first_ts = ts
            if ts > g.last_ts:
                g.last_ts = ts
            ids = label_ids.get(model)
            if ids is not None:
                # A request over Firehose's record limit was captured as several lines whose id is
                # "{request_id}#{first row}" (capture_sink.encode_lines): labels name the request's rows.
                base, offset = split_request_id(rid)
                if base in ids:
                    g.labelled_lines.append((base, g.block_rows, n, offset))
            g.xb.append(xb)
            g.yb.append(yb)
            g.block_rows += n
        self.lines += n_lines
        self._fold()

    def _group(self, key: tuple[str, int]) -> GroupState | None:
        if key in self.unknown:
            return None
        ctx = self.resolve(*key)
        if ctx is None:
            return None
        g = self.groups[key] = GroupState(ctx)
        return g

    def _fold(self) -> None:
        for g in self.groups.values():
            if not g.xb:
                continue
            x = np.frombuffer(b"".join(g.xb), dtype="<f4").reshape(-1, g.ctx.n_features)
            y = np.frombuffer(b"".join(g.yb), dtype="<f4").reshape(-1, g.k or 1)
            g.xb, g.yb = [], []
            g.rows += x.shape[0]
            g.block_rows = 0
            if (
                g.parts is not None
                and g.pred is not None
                and g.ctx.refs is not None
                and g.ctx.pred_ref is not None
            ):
                for j, ref in enumerate(g.ctx.refs):
                    g.parts[j].merge(drift.partial(ref, x[:, j]))
                g.pred.merge(drift.partial(g.ctx.pred_ref, prediction_column(y, g.ctx.task)))
            if g.labelled_lines:
                self._join_labels(g, x, y)

    def _join_labels(self, g: GroupState, x: np.ndarray, y: np.ndarray) -> None:
        labels = self.labels.get(g.ctx.model, {})
        rows: list[int] = []
        for rid, first, n, offset in g.labelled_lines:
            for i in range(n):
                lab = labels.get((rid, offset + i))
                if lab is not None:
                    rows.append(first + i)
                    g.label_v.append(lab)
        g.labelled_lines = []
        if rows:
            idx = np.asarray(rows)
            g.label_x.append(x[idx].copy())
            g.label_y.append(y[idx].copy())

    # ------------------------------------------------------------------ output
    def summary(self) -> dict[str, Any]:
        bad = Counter(self.bad)
        for g in self.groups.values():
            bad.update(g.bad)
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "lines": self.lines,
            "bad_lines": int(sum(bad.values())),
            "bad": {r: int(bad[r]) for r in BAD_REASONS if bad[r]},
            "outside_window": self.outside_window,
            "other_models": self.other_models,
            "unknown_versions": [
                {"model": m[:60], "version": v, "lines": c} for (m, v), c in sorted(self.unknown.items())
            ],
        }


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate(g: GroupState, min_samples: int) -> dict[str, Any]:
    """The verdict and numbers of one (model, version) group."""
    ctx = g.ctx
    out: dict[str, Any] = {
        "model": ctx.model,
        "version": ctx.version,
        "samples": g.rows,
        "lines": g.lines,
        "bad": dict(g.bad),
        "psi_threshold": ctx.psi_threshold,
        "first_ts": g.first_ts if math.isfinite(g.first_ts) else None,
        "last_ts": g.last_ts if math.isfinite(g.last_ts) else None,
        "drift": False,
        "max_psi": None,
        "max_psi_ratio": None,
        "drifted_features": [],
        "features": [],
        "prediction": None,
        "missing_rate": None,
        "quality": quality_of(g),
    }
    if ctx.problem is not None or g.parts is None or g.pred is None or ctx.refs is None:
        out["verdict"] = "no_baseline" if ctx.problem in (None, "no_baseline") else "baseline_error"
        out["problem"] = ctx.problem or "no_baseline"
        return out
    cells = sum(p.count for p in g.parts)
    out["missing_rate"] = (sum(p.missing for p in g.parts) / cells) if cells else None
    if g.rows < min_samples:
        out["verdict"] = "insufficient_samples"
        out["min_samples"] = min_samples
        return out
    feats = [drift.compare(r, p) for r, p in zip(ctx.refs, g.parts, strict=True)]
    assert ctx.pred_ref is not None
    out["features"] = [f.to_dict() for f in feats]
    out["prediction"] = drift.compare(ctx.pred_ref, g.pred).to_dict()
    psis = [f.psi for f in feats if f.psi is not None]
    max_psi = max(psis) if psis else 0.0
    drifted = sorted(
        (f for f in feats if f.psi is not None and f.psi > ctx.psi_threshold), key=lambda f: -(f.psi or 0.0)
    )
    out.update(
        {
            "verdict": "drift" if drifted else "ok",
            "drift": bool(drifted),
            "max_psi": max_psi,
            "max_psi_ratio": max_psi / ctx.psi_threshold,
            "drifted_features": [
                {"name": f.name, "psi": f.psi, "ks": f.ks, "wasserstein_norm": f.wasserstein_norm}
                for f in drifted
            ],
        }
    )
    return out


def quality_of(g: GroupState) -> dict[str, Any] | None:
    """Quality metrics on the labelled rows, beside the held-out values (None without labels)."""
    if not g.label_v:
        return None
    ctx = g.ctx
    y = np.concatenate(g.label_y) if g.label_y else np.zeros((0, 1), np.float32)
    try:
        got = drift.quality(ctx.task, y, g.label_v, ctx.classes)
    except ValueError as exc:
        return {"labelled": len(g.label_v), "error": str(exc)}
    metrics = {m: got[m] for m in QUALITY_METRICS if m in got}
    delta = {m: v - ctx.heldout[m] for m, v in metrics.items() if m in ctx.heldout and v is not None}
    return {
        "labelled": len(g.label_v),
        "used": got["n"],
        "unusable": got["unusable"],
        "metrics": metrics,
        "heldout": {m: ctx.heldout[m] for m in metrics if m in ctx.heldout},
        "delta": delta,
        "metric": ctx.metric,
    }


# ---------------------------------------------------------------------------------------------- S3 input
def _hour_prefixes(start: float, end: float) -> Iterator[str]:
    t = datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    while t <= last:
        yield f"{CAPTURE_PREFIX}{t:%Y/%m/%d/%H}/"
        t += timedelta(hours=1)


def list_capture_objects(s3: Any, bucket: str, start: float, end: float) -> list[dict[str, Any]]:
    """Capture objects that can hold records of [start, end): in the hour prefixes from the window's
    start to its end, written (LastModified) at or after its start."""
    out = []
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in _hour_prefixes(start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []) or []:
                if obj["LastModified"].timestamp() >= start and obj.get("Size", 1) > 0:
                    out.append(obj)
    return out


def split_request_id(rid: str) -> tuple[str, int]:
    """``"abc#200"`` -> ("abc", 200): the part of a split request that starts at row 200; else (rid, 0)."""
    base, sep, start = rid.rpartition("#")
    if sep and base and start.isdigit():
        return base, int(start)
    return rid, 0


def load_labels(
    s3: Any, bucket: str, start: float, model: str | None = None, limit: int = MAX_LABELS
) -> tuple[dict[str, dict[tuple[str, int], Any]], dict[str, int]]:
    """Ground truth written since ``start``: ``{model: {(request_id, row): label}}`` and bad-line counts."""
    labels: dict[str, dict[tuple[str, int], Any]] = {}
    bad: dict[str, int] = {}
    paginator = s3.get_paginator("list_objects_v2")
    prefix = f"{LABELS_PREFIX}{model}/" if model else LABELS_PREFIX
    total = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []) or []:
            parts = obj["Key"].split("/")
            if len(parts) != 3 or not parts[2].endswith(".jsonl") or obj["LastModified"].timestamp() < start:
                continue
            name = parts[1]
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            target = labels.setdefault(name, {})
            for line in body.iter_lines():
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    rid, row, lab = doc["request_id"], doc["row"], doc["label"]
                    if type(rid) is not str or type(row) is not int or row < 0 or lab is None:
                        raise TypeError("bad field types")
                    if isinstance(lab, bool) or not isinstance(lab, int | float | str):
                        raise TypeError("a label is a number or a class name")
                    if isinstance(lab, int | float) and not math.isfinite(float(lab)):
                        raise TypeError("non-finite label")
                except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                    bad[name] = bad.get(name, 0) + 1
                    continue
                if total >= limit:
                    break
                target[(rid, row)] = lab
                total += 1
    return {m: v for m, v in labels.items() if v}, bad


# ---------------------------------------------------------------------------------------------- the run
def stamp_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def iso_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_monitor(
    settings: MonitorSettings, *, s3: Any, cloudwatch: Any | None = None, events: Any | None = None
) -> dict[str, Any]:
    """One monitor run over the window ending now (or ``settings.now``). Returns the run's summary."""
    start, end = settings.window()
    registry = Registry(s3, settings.registry_bucket, actor="monitor")
    contexts: dict[tuple[str, int], VersionContext | None] = {}

    def resolve(model: str, version: int) -> VersionContext | None:
        key = (model, version)
        if key not in contexts:
            contexts[key] = load_context(registry, model, version)
        return contexts[key]

    labels, labels_bad = load_labels(s3, settings.data_bucket, start, settings.model)
    scan = WindowScan(
        start, end, resolve, model=settings.model, labels=labels, block_bytes=settings.block_bytes
    )
    for obj in list_capture_objects(s3, settings.data_bucket, start, end):
        body = s3.get_object(Bucket=settings.data_bucket, Key=obj["Key"])["Body"]
        scan.feed_stream(body)

    results = [evaluate(g, settings.min_samples) for _, g in sorted(scan.groups.items())]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)

    stamp = stamp_of(end)
    reports = {}
    bus = EventBus(events) if events is not None and settings.publish else None
    for model, versions in by_model.items():
        roles = _roles(registry, model)
        for r in versions:
            r["role"] = roles.get(r["version"], "other")
        report = _model_report(model, versions, start, end, settings, labels_bad.get(model, 0))
        reports[model] = write_report(s3, settings.registry_bucket, report, stamp)
        for r in versions:
            g = scan.groups[(model, r["version"])]
            if r["drift"]:
                r["retrain"] = maybe_retrain(s3, settings.data_bucket, g, settings.min_samples, end)
            if bus is None:
                continue
            if r["drift"]:
                bus.publish("DriftDetected", _drift_detail(r, reports[model], start, end))
            if (g.ctx.problem or "").startswith("baseline_integrity"):
                bus.publish(
                    "ArtifactIntegrityFailed",
                    {
                        "model": model,
                        "version": r["version"],
                        "role": "baseline",
                        "stage": "monitor",
                        "reason": g.ctx.problem,
                    },
                )

    ratios = [r["max_psi_ratio"] for r in results if r.get("max_psi_ratio") is not None]
    summary = scan.summary()
    summary.update(
        {
            "window": {"start": iso_of(start), "end": iso_of(end), "seconds": settings.window_seconds},
            "max_psi_ratio": max(ratios) if ratios else None,
            "labels_bad_lines": int(sum(labels_bad.values())),
            "models": [
                {
                    "model": r["model"],
                    "version": r["version"],
                    "role": r.get("role"),
                    "samples": r["samples"],
                    "verdict": r["verdict"],
                    "max_psi": r["max_psi"],
                    "max_psi_ratio": r["max_psi_ratio"],
                    "drifted_features": [f["name"] for f in r["drifted_features"]],
                    "quality": (r["quality"] or {}).get("metrics"),
                    "retrain": r.get("retrain"),
                    "report": reports[r["model"]]["report"],
                }
                for r in results
            ],
        }
    )
    if cloudwatch is not None and settings.publish:
        publish_metrics(cloudwatch, settings.namespace, results, summary, end)
    return summary


def _roles(registry: Registry, model: str) -> dict[int, str]:
    try:
        alias = registry.get_alias(model, "production")[0]
    except ModelOpsError:
        return {}
    roles = {alias.version: "production"}
    if alias.canary:
        roles[int(alias.canary["version"])] = "canary"
    return roles


def _model_report(
    model: str,
    versions: list[dict[str, Any]],
    start: float,
    end: float,
    settings: MonitorSettings,
    labels_bad: int,
) -> dict[str, Any]:
    verdicts = {r["verdict"] for r in versions}
    if "drift" in verdicts:
        verdict = "drift"
    elif "ok" in verdicts:
        verdict = "ok"
    else:
        verdict = sorted(verdicts)[0]
    ratios = [r["max_psi_ratio"] for r in versions if r["max_psi_ratio"] is not None]
    psis = [r["max_psi"] for r in versions if r["max_psi"] is not None]
    return {
        "schema_version": 1,
        "model": model,
        "at": iso_of(end),
        "window": {"start": iso_of(start), "end": iso_of(end), "seconds": settings.window_seconds},
        "verdict": verdict,
        "drift": verdict == "drift",
        "max_psi": max(psis) if psis else None,
        "max_psi_ratio": max(ratios) if ratios else None,
        "samples": sum(r["samples"] for r in versions),
        "min_samples": settings.min_samples,
        "labels_bad_lines": labels_bad,
        "versions": versions,
    }


def write_report(s3: Any, bucket: str, report: dict[str, Any], stamp: str) -> dict[str, str]:
    """report.json, report.html and latest.json; returns the S3 URIs."""
    from modelops.domain.report import render_html  # only when writing (keeps the import light)

    model = report["model"]
    base = f"{MONITORING_PREFIX}{model}/{stamp}/"
    uris = {"report": f"s3://{bucket}/{base}report.json", "report_html": f"s3://{bucket}/{base}report.html"}
    report = {**report, **uris}
    s3.put_object(
        Bucket=bucket,
        Key=base + "report.json",
        Body=json.dumps(report, indent=1, default=_json_default).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=bucket, Key=base + "report.html", Body=render_html(report).encode(), ContentType="text/html"
    )
    latest = {
        "model": model,
        "at": report["at"],
        "verdict": report["verdict"],
        "drift": report["drift"],
        "max_psi": report["max_psi"],
        "max_psi_ratio": report["max_psi_ratio"],
        "samples": report["samples"],
        "window": report["window"],
        **uris,
        "versions": [
            {
                "version": r["version"],
                "role": r.get("role"),
                "verdict": r["verdict"],
                "samples": r["samples"],
                "max_psi": r["max_psi"],
                "psi_threshold": r["psi_threshold"],
                "drifted_features": r["drifted_features"],
            }
            for r in report["versions"]
        ],
    }
    s3.put_object(
        Bucket=bucket,
        Key=f"{MONITORING_PREFIX}{model}/latest.json",
        Body=json.dumps(latest, indent=1, default=_json_default).encode(),
        ContentType="application/json",
    )
    return uris


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _drift_detail(r: dict[str, Any], uris: dict[str, str], start: float, end: float) -> dict[str, Any]:
    return {
        "model": r["model"],
        "version": r["version"],
        "role": r.get("role"),
        "features": r["drifted_features"],
        "max_psi": r["max_psi"],
        "psi_threshold": r["psi_threshold"],
        "max_psi_ratio": r["max_psi_ratio"],
        "samples": r["samples"],
        "window_start": iso_of(start),
        "window_end": iso_of(end),
        "retrain": r.get("retrain"),
        **uris,
    }


# ---------------------------------------------------------------------------------------------- metrics
def _metric(name: str, value: float, unit: str, ts: float, **dims: str) -> dict[str, Any]:
    d: dict[str, Any] = {
        "MetricName": name,
        "Value": float(value),
        "Unit": unit,
        "Timestamp": datetime.fromtimestamp(ts, UTC),
    }
    if dims:
        d["Dimensions"] = [{"Name": k, "Value": str(v)} for k, v in dims.items()]
    return d


def metric_data(results: list[dict[str, Any]], summary: dict[str, Any], ts: float) -> list[dict[str, Any]]:
    """Every metric of a run (see docs/monitoring.md for the names and dimensions)."""
    data: list[dict[str, Any]] = []
    for r in results:
        dims = {"Model": r["model"], "Version": str(r["version"])}
        data.append(_metric("SampleCount", r["samples"], "Count", ts, **dims))
        if r["missing_rate"] is not None:
            data.append(_metric("MissingRate", r["missing_rate"], "None", ts, **dims))
        if r["max_psi"] is not None:
            data.append(_metric("MaxPsi", r["max_psi"], "None", ts, **dims))
        for f in r["features"]:
            fd = {**dims, "Feature": f["name"]}
            if f["psi"] is not None:
                data.append(_metric("Psi", f["psi"], "None", ts, **fd))
            if f["ks"] is not None:
                data.append(_metric("KS", f["ks"], "None", ts, **fd))
        pred = r.get("prediction")
        if pred and pred.get("psi") is not None:
            data.append(_metric("PredictionPsi", pred["psi"], "None", ts, **dims))
        q = r.get("quality") or {}
        for m, v in (q.get("metrics") or {}).items():
            if v is not None and math.isfinite(v):
                data.append(_metric(QUALITY_METRICS[m], v, "None", ts, **dims))
        for m, v in (q.get("delta") or {}).items():
            if v is not None and math.isfinite(v):
                data.append(_metric(QUALITY_METRICS[m] + "Delta", v, "None", ts, **dims))
        if q.get("labelled"):
            data.append(_metric("LabelledCount", q["labelled"], "Count", ts, **dims))
    if summary.get("max_psi_ratio") is not None:
        data.append(_metric("MaxPsiRatio", summary["max_psi_ratio"], "None", ts))
    data.append(_metric("BadCaptureLines", summary["bad_lines"], "Count", ts))
    return data


def publish_metrics(
    cloudwatch: Any, namespace: str, results: list[dict[str, Any]], summary: dict[str, Any], ts: float
) -> int:
    data = metric_data(results, summary, ts)
    for i in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + 500])
    return len(data)


# ---------------------------------------------------------------------------------------------- retrain
def maybe_retrain(
    s3: Any, data_bucket: str, g: GroupState, min_rows: int, ts: float
) -> dict[str, Any] | None:
    """With ``monitoring.retrain_on_drift`` and enough labelled recent rows, write them as a new dataset
    ``datasets/{model}/retrain-v{version}-{YYYYMMDD}.csv`` (create-only: at most one per version and
    day). The dataset trigger then validates it and starts training, as for any dataset."""
    ctx = g.ctx
    if not ctx.retrain_on_drift:
        return None
    n = len(g.label_v)
    if n < max(1, min_rows) or not g.label_x:
        return {"started": False, "reason": f"{n} labelled rows in the window, {min_rows} needed to retrain"}
    x = np.concatenate(g.label_x)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*ctx.features, ctx.target])
    for row, lab in zip(x.tolist(), g.label_v, strict=True):
        w.writerow([*(repr(float(v)) if math.isfinite(v) else "" for v in row), lab])
    key = f"datasets/{ctx.model}/retrain-v{ctx.version}-{datetime.fromtimestamp(ts, UTC):%Y%m%d}.csv"
    try:
        s3.put_object(
            Bucket=data_bucket, Key=key, Body=buf.getvalue().encode(), IfNoneMatch="*", ContentType="text/csv"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
            return {
                "started": False,
                "reason": "a retrain dataset for this version was already written today",
                "dataset": f"s3://{data_bucket}/{key}",
            }
        raise
    return {"started": True, "rows": n, "dataset": f"s3://{data_bucket}/{key}"}


# ---------------------------------------------------------------------------------------------- requests
MAX_WINDOW_SECONDS = 31 * 24 * 3600


def request_from_event(event: Any) -> tuple[str | None, int | None]:
    """``(model, window_seconds)`` of a direct invoke ``{"model": ..., "window_seconds": ...}``; a
    scheduled event (any other keys) asks for every model and the default window. Bad values raise
    ``ValueError`` naming the field."""
    if not isinstance(event, dict):
        return None, None
    model = event.get("model")
    window = event.get("window_seconds")
    if model is not None:
        if not isinstance(model, str):
            raise ValueError("model must be a string")
        try:
            check_model_name(model)
        except SpecError as exc:
            raise ValueError(str(exc)) from exc
    if window is not None:
        if type(window) is not int or not 60 <= window <= MAX_WINDOW_SECONDS:
            raise ValueError(f"window_seconds must be an integer from 60 to {MAX_WINDOW_SECONDS}")
    return model, window
