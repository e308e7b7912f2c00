"""The monitor run: a window's captures -> verdicts per version -> reports, metrics, events, retraining.

::

    list captures/YYYY/MM/DD/HH/ objects of the window (storage.captures)
      -> stream each object in blocks, decode lines in batch (bad lines counted and skipped) (scan)
      -> group rows by (model, version), fold them into mergeable partials (domain.drift)
      -> compare with the version's baseline.json, join labels/{model}/*.jsonl for quality
      -> CloudWatch metrics, monitoring/{model}/{stamp}/report.json + report.html, latest.json
         (storage.reports), DriftDetected events, optional retrain dataset
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from modelops import aws
from modelops.domain import drift
from modelops.domain import report as reports
from modelops.domain import settings as model_settings
from modelops.domain.baseline import channel_names
from modelops.domain.drift import VersionContext
from modelops.domain.encoding import InputSchema, SchemaError
from modelops.domain.errors import (
    CorruptDocumentError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    ModelOpsError,
    SpecError,
    VersionNotFoundError,
)
from modelops.domain.signature import Signature, SignatureError
from modelops.domain.spec import check_model_name, parse_spec
from modelops.stages import runtime
from modelops.stages.monitor import labels as late
from modelops.stages.monitor.scan import BLOCK_BYTES, GroupState, WindowScan, evaluate
from modelops.storage.captures import CaptureStore, Labels
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry
from modelops.storage.reports import (
    MAX_REPORT_LINK_SECONDS,
    REPORT_LINK_SECONDS,
    SIGNING_CONFIG,
    ReportLinks,
    ReportStore,
    RetrainDatasets,
)
from modelops.storage.s3 import ObjectStore
from modelops.storage.settings import CACHE_TTL_SECONDS, SettingsCache, SettingsStore

QUALITY_METRICS = {"rmse": "Rmse", "mae": "Mae", "accuracy": "Accuracy", "auc": "Auc"}
"""CloudWatch names of the labelled-traffic metrics (``drift.QUALITY_METRICS``)."""
MAX_WINDOW_SECONDS = 31 * 24 * 3600
CAPTURE_DELIVERY_MARGIN_SECONDS = 30
"""Added to a non-zero capture buffer: Firehose's write to S3 after a buffer flushes takes a moment."""
FEATURE_METRICS = 20
"""Default of ``MONITOR_FEATURE_METRICS``: per-feature ``Psi``/``KS`` metrics for this many features per
version (those with the highest PSI); the report still has every feature."""


# ---------------------------------------------------------------------------------------------- settings
class Settings(runtime.StageSettings):
    """The MonitorFunction's environment (template.yaml)."""

    data_bucket: str
    registry_bucket: str
    powertools_metrics_namespace: str = "ModelOps"
    monitor_window_seconds: int = 3600
    min_samples: int = 100
    capture_buffer_seconds: int = Field(default=60, ge=0, le=900)
    """The capture stream's ``BufferingHints.IntervalInSeconds`` (template ``CAPTURE_BUFFER_SECONDS``): a
    record reaches S3 up to this long (plus :data:`CAPTURE_DELIVERY_MARGIN_SECONDS`) after it was
    captured, so the window ends that long before the run. 0: records land at once (no margin)."""
    monitor_feature_metrics: int = Field(default=FEATURE_METRICS, ge=0, le=1000)
    """Per-feature metrics (``Feature`` dimension) for at most this many features per version."""
    event_bus_name: str = "default"
    """The stack's StageEventBus (template ``EVENT_BUS_NAME``): DriftDetected goes there."""
    settings_ttl_seconds: float = Field(default=CACHE_TTL_SECONDS, ge=0, le=3600)
    """How long a model's settings document (``models/{model}/config.json``) is cached per container."""
    report_base_url: str | None = None
    """``REPORT_BASE_URL``: where the fleet page is published; a report's link is its route there. Unset:
    an S3 presigned GET of ``REPORT_LINK_SECONDS`` (docs/monitoring.md "Report links")."""
    report_link_seconds: int = Field(default=REPORT_LINK_SECONDS, ge=60, le=MAX_REPORT_LINK_SECONDS)

    def capture_lag_seconds(self) -> int:
        """How long before the run its window ends (every record of the window has landed by then)."""
        if self.capture_buffer_seconds == 0:
            return 0
        return self.capture_buffer_seconds + CAPTURE_DELIVERY_MARGIN_SECONDS


@dataclass(frozen=True)
class MonitorSettings:
    """One run's parameters."""

    data_bucket: str
    registry_bucket: str
    namespace: str = "ModelOps"
    window_seconds: int = 3600
    min_samples: int = 100
    model: str | None = None  # only this model
    now: float | None = None  # the time of the run (epoch seconds); default: now
    capture_lag_seconds: float = 0.0
    """The window ends this long before ``now``: records captured since may still be in the capture
    stream's buffer, and the next run's window (which starts where this one ends) evaluates them."""
    block_bytes: int = BLOCK_BYTES
    publish: bool = True  # metrics and events (the CLI can run without publishing)
    feature_metrics: int = FEATURE_METRICS
    """Per-feature metrics for at most this many features per version (the highest PSI first)."""

    def window(self) -> tuple[float, float]:
        """``[now - lag - window_seconds, now - lag)``: consecutive runs ``window_seconds`` apart cover
        every record once, the last ``lag`` seconds being left to the next run."""
        now = self.now if self.now is not None else datetime.now(UTC).timestamp()
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if self.capture_lag_seconds < 0:
            raise ValueError("capture_lag_seconds must not be negative")
        end = now - self.capture_lag_seconds
        return end - self.window_seconds, end


class Bus(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> str: ...


@dataclass
class Stores:
    """Where a run reads and writes (real stores, or in-memory fakes in the unit tests)."""

    registry: Registry
    captures: CaptureStore
    reports: ReportStore
    datasets: RetrainDatasets
    bus: Bus | None = None
    cloudwatch: Any | None = None
    settings: SettingsCache | None = None
    """The models' monitoring settings (None: every version's manifest defaults)."""

    @classmethod
    def from_clients(
        cls,
        data_bucket: str,
        registry_bucket: str,
        *,
        s3: Any,
        cloudwatch: Any | None = None,
        events: Any | None = None,
        event_bus_name: str = "default",
        settings_ttl_seconds: float = CACHE_TTL_SECONDS,
        report_base_url: str | None = None,
        report_link_seconds: int = REPORT_LINK_SECONDS,
        signer: Any | None = None,
    ) -> Stores:
        data = ObjectStore(s3, data_bucket)
        registry = ObjectStore(s3, registry_bucket)
        links = ReportLinks(
            signer or s3, registry_bucket, base_url=report_base_url, lifetime=report_link_seconds
        )
        return cls(
            registry=Registry(s3, registry_bucket, actor="monitor"),
            settings=SettingsCache(SettingsStore(registry, actor="monitor"), ttl=settings_ttl_seconds),
            captures=CaptureStore(data),
            reports=ReportStore(registry, links),
            datasets=RetrainDatasets(data),
            bus=EventBus(events, event_bus_name) if events is not None else None,
            cloudwatch=cloudwatch,
        )


# ---------------------------------------------------------------------------------------------- versions
def load_context(
    registry: Registry,
    model: str,
    version: int,
    overrides: dict[str, Any] | None = None,
    settings_problem: str | None = None,
) -> VersionContext | None:
    """The context of a registered version; None when the model/version is not in the registry.
    ``overrides`` (the model's settings document, :mod:`modelops.domain.settings`) win over the
    version's ``spec.monitoring`` defaults, field by field."""
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
    values, sources = model_settings.effective(
        spec_doc.get("monitoring") if isinstance(spec_doc, dict) else None, overrides
    )
    task = str(schema.get("task") or manifest.get("task") or (spec.task if spec else "regression"))
    ctx = VersionContext(
        model=model,
        version=version,
        features=features,
        task=task,
        classes=schema.get("classes"),
        target=str(schema.get("target") or (spec.target if spec else "target")),
        psi_threshold=values["psi_threshold"],
        new_category_threshold=values["new_category_threshold"],
        retrain_on_drift=values["retrain_on_drift"],
        settings={"values": values, "sources": sources, "problem": settings_problem},
        metric=spec.metric if spec else ("rmse" if task == "regression" else "accuracy"),
        heldout={
            k: float(v) for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, int | float)
        },
    )
    if "baseline" not in manifest.artifacts:
        ctx.problem = "no_baseline"
        return ctx
    try:
        signature = Signature.from_schema(schema)
    except SignatureError as exc:
        ctx.problem = f"baseline_error: the schema's signature: {exc}"
        return ctx
    if signature is not None:
        ctx.features = [c for spec in signature.inputs for c in channel_names(spec.name, spec.shape)]
    try:
        baseline = json.loads(registry.read_artifact(manifest, "baseline"))
        if signature is not None:
            tensor = _tensor_layout(signature, baseline)
            ctx.refs, _ = drift.references(baseline, ctx.features)
            ctx.pred_ref = tensor.out_refs[
                0
            ]  # the signature's first output (the baseline's dict order may differ)
            ctx.tensor = tensor
            return ctx
        if not ctx.features:
            ctx.features = list(baseline["features"])
        ctx.refs, ctx.pred_ref = drift.references(baseline, ctx.features)
        _check_kinds(schema, ctx.refs)
    except IntegrityError as exc:
        ctx.problem = f"baseline_integrity: {exc}"
    except (ValueError, KeyError, TypeError, CorruptDocumentError) as exc:
        ctx.problem = f"baseline_error: {exc}"
    return ctx


def _tensor_layout(signature: Signature, baseline: dict[str, Any]) -> drift.TensorLayout:
    """A tensor version's layout from its signature and its ``schema_version`` 3 baseline
    (``modelops.domain.baseline.compute_tensor_baseline``); ``ValueError``/``KeyError`` when they disagree."""
    if baseline.get("kind") != "tensor":
        raise ValueError("a tensor model needs a tensor baseline (schema_version 3)")
    outs = baseline["outputs"]
    reduces = []
    for spec in signature.outputs:
        reduce = outs[spec.name].get("reduce")
        if reduce not in ("value", "argmax", "mean"):
            raise ValueError(f"output {spec.name!r}: unknown reduce {str(reduce)[:20]!r}")
        reduces.append(str(reduce))
    return drift.TensorLayout(
        inputs=tuple(
            (s.name, s.shape, s.dtype, tuple(channel_names(s.name, s.shape))) for s in signature.inputs
        ),
        outputs=tuple((s.name, s.shape, s.dtype, r) for s, r in zip(signature.outputs, reduces, strict=True)),
        out_refs=tuple(drift.FeatureReference.from_stats(s.name, outs[s.name]) for s in signature.outputs),
    )


def _check_kinds(schema: dict[str, Any], refs: list[drift.FeatureReference]) -> None:
    """The manifest's schema and the baseline agree on which features are categorical, and on their
    vocabularies (an index means nothing against another vocabulary); ``ValueError`` otherwise. A
    schema of the first versions (names only) says nothing about kinds: the baseline is taken as is."""
    try:
        parsed = InputSchema.from_dict(schema)
    except SchemaError:
        return
    for ref in refs:
        try:
            feature = parsed.feature(ref.name)
        except KeyError:
            continue
        want = feature.vocabulary if feature.categorical else None
        if want != ref.vocabulary:
            if feature.categorical and ref.vocabulary is not None:
                raise ValueError(f"feature {ref.name!r}: the baseline's vocabulary is not the schema's")
            kind = "categorical" if feature.categorical else "numeric"
            raise ValueError(f"feature {ref.name!r} is {kind} in the schema but not in the baseline")


def _roles(registry: Registry, model: str) -> dict[int, str]:
    try:
        alias = registry.get_alias(model, "production")[0]
    except ModelOpsError:
        return {}
    roles = {alias.version: "production"}
    if alias.canary:
        roles[int(alias.canary["version"])] = "canary"
    return roles


# ---------------------------------------------------------------------------------------------- the run
def resolvers(
    stores: Stores,
) -> tuple[Callable[[str, int], VersionContext | None], Callable[[str], tuple[dict[str, Any], str | None]]]:
    """``(resolve, overrides)`` of one run: a version's context (loaded once per run) and a model's
    settings document. The single pass, each fan-out chunk and the fan-out's reduce build theirs here."""
    contexts: dict[tuple[str, int], VersionContext | None] = {}

    def overrides(model: str) -> tuple[dict[str, Any], str | None]:
        if stores.settings is None:
            return {}, None
        try:
            check_model_name(model)
        except SpecError:
            return {}, None
        return stores.settings.get(model)

    def resolve(model: str, version: int) -> VersionContext | None:
        key = (model, version)
        if key not in contexts:
            contexts[key] = load_context(stores.registry, model, version, *overrides(model))
        return contexts[key]

    return resolve, overrides


def scan_objects(
    settings: MonitorSettings,
    stores: Stores,
    resolve: Callable[[str, int], VersionContext | None],
    keys: Iterable[str],
    start: float,
    end: float,
    labels: Labels,
) -> WindowScan:
    """The window's partials over these capture objects, in this order (the single pass: every object
    of the window; a fan-out chunk: its batch of them); ``labels`` are joined for quality."""
    scan = WindowScan(
        start, end, resolve, model=settings.model, labels=labels, block_bytes=settings.block_bytes
    )
    for key in keys:
        body = stores.captures.open(key)
        if body is not None:
            scan.feed_stream(body)
    return scan


def run_window(settings: MonitorSettings, stores: Stores) -> dict[str, Any]:
    """One monitor run over the window ending now (or ``settings.now``). Returns the run's summary."""
    start, end = settings.window()
    resolve, overrides = resolvers(stores)
    labels, labels_bad = stores.captures.labels(start, settings.model)
    objects = (obj["Key"] for obj in stores.captures.objects_in_window(start, end))
    scan = scan_objects(settings, stores, resolve, objects, start, end, labels)
    return finish_window(settings, stores, scan, resolve, overrides, start, end, labels_bad)


def finish_window(
    settings: MonitorSettings,
    stores: Stores,
    scan: WindowScan,
    resolve: Callable[[str, int], VersionContext | None],
    overrides: Callable[[str], tuple[dict[str, Any], str | None]],
    start: float,
    end: float,
    labels_bad: dict[str, int],
) -> dict[str, Any]:
    """Everything after the window's partials: verdicts, late labels, reports, events, retraining,
    metrics; the run's summary. ``scan`` holds the whole window (one pass, or the fan-out's merged
    chunks); ``labels_bad`` counts each model's unreadable label lines."""
    registry = stores.registry
    results = [evaluate(g, settings.min_samples) for _, g in sorted(scan.groups.items())]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    late_labels = join_late_labels(settings, stores, end, resolve, overrides)
    for model in late_labels:
        by_model.setdefault(model, [])  # a report says how many of its past predictions have labels

    window = reports.window_of(start, end, settings.window_seconds)
    stamp = reports.stamp_of(end)
    uris = {}
    bus = stores.bus if settings.publish else None
    for model, versions in by_model.items():
        roles = _roles(registry, model)
        for r in versions:
            r["role"] = roles.get(r["version"], "other")
        report = reports.model_report(
            model, versions, window, reports.iso_of(end), settings.min_samples, labels_bad.get(model, 0)
        )
        if model in late_labels:
            report["late_labels"] = late_labels[model]
        if versions:
            previous = stores.reports.previous(model, stamp, reports.TREND_WINDOWS - 1)
            report["trend"] = reports.trend_of(report, previous)
        uris[model] = stores.reports.write(report, stamp)
        for r in versions:
            g = scan.groups[(model, r["version"])]
            if r["drift"]:
                r["retrain"] = maybe_retrain(stores.datasets, g, settings.min_samples, end)
            if bus is None:
                continue
            if r["drift"]:
                bus.publish("DriftDetected", _drift_detail(r, uris[model], window))
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
    new_ratios = [
        r["max_new_category_rise"] / r["new_category_threshold"]
        for r in results
        if r.get("max_new_category_rise") is not None and r.get("new_category_threshold")
    ]
    summary = scan.summary()
    summary.update(
        {
            "window": window,
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
                    "report": uris[r["model"]]["report"],
                }
                for r in results
            ],
            "late_labels": dict(sorted(late_labels.items())),
        }
    )
    if new_ratios:  # a version with categorical features was judged
        summary["max_new_category_ratio"] = max(new_ratios)
    if stores.cloudwatch is not None and settings.publish:
        publish_metrics(
            stores.cloudwatch, settings.namespace, results, summary, end, settings.feature_metrics
        )
    return summary


def join_late_labels(
    settings: MonitorSettings,
    stores: Stores,
    end: float,
    resolve: Callable[[str, int], VersionContext | None],
    overrides: Callable[[str], tuple[dict[str, Any], str | None]],
) -> dict[str, dict[str, Any]]:
    """Per model with label files written in its label window (``label_window_days`` of its settings,
    default 7), the ``late_labels`` section of its report: quality per UTC day of prediction over the
    captures of that window (:mod:`modelops.stages.monitor.labels`). Models without such labels cost
    one LIST of ``labels/``."""
    captures = stores.captures
    names = [settings.model] if settings.model else captures.label_models()
    found: dict[str, Any] = {}
    counts: dict[str, dict[str, int]] = {}
    starts: dict[str, float] = {}
    days_of: dict[str, int] = {}
    for model in names:
        days = int(overrides(model)[0].get("label_window_days", model_settings.LABEL_WINDOW_DAYS))
        since = end - days * late.DAY
        got, c = captures.late_labels(since, model)
        if model in got or model in c:
            found[model] = got.get(model, {})
            counts[model] = c.get(model, {})
            starts[model], days_of[model] = since, days
    if not found:
        return {}
    join = late.LabelJoin(min(starts.values()), end, found, starts, block_bytes=settings.block_bytes)
    for obj in captures.objects_in_window(min(starts.values()), end):
        body = captures.open(obj["Key"])
        if body is not None:
            join.feed_stream(body)
    return {
        model: late.summarise(
            join.quality(model, resolve),
            counts[model],
            join.unmatched(model),
            days_of[model],
            reports.iso_of(starts[model]),
        )
        for model in found
    }


def run_monitor(
    settings: MonitorSettings, *, s3: Any, cloudwatch: Any | None = None, events: Any | None = None
) -> dict[str, Any]:
    """:func:`run_window` on the stores of these clients (the CLI's and the tests' entry)."""
    stores = Stores.from_clients(
        settings.data_bucket, settings.registry_bucket, s3=s3, cloudwatch=cloudwatch, events=events
    )
    return run_window(settings, stores)


def _drift_detail(r: dict[str, Any], uris: dict[str, str], window: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": r["model"],
        "version": r["version"],
        "role": r.get("role"),
        "features": r["drifted_features"],
        "max_psi": r["max_psi"],
        "psi_threshold": r["psi_threshold"],
        "max_psi_ratio": r["max_psi_ratio"],
        "samples": r["samples"],
        "window_start": window["start"],
        "window_end": window["end"],
        "retrain": r.get("retrain"),
        **{k: r[k] for k in ("max_new_category_rise", "new_category_threshold") if k in r},
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


def top_features(
    features: list[dict[str, Any]], n: int, new_category_threshold: float | None = None
) -> list[dict[str, Any]]:
    """The ``n`` features with the highest PSI (those without one last, then by name: stable).
    Categorical features whose new-category rate rose past ``new_category_threshold`` come first, so a
    breach always has its metric whatever its PSI."""

    def breached(f: dict[str, Any]) -> bool:
        rise = f.get("new_category_rise")
        return new_category_threshold is not None and rise is not None and rise > new_category_threshold

    return sorted(features, key=lambda f: (not breached(f), f["psi"] is None, -(f["psi"] or 0.0), f["name"]))[
        : max(0, n)
    ]


def metric_data(
    results: list[dict[str, Any]], summary: dict[str, Any], ts: float, feature_metrics: int = FEATURE_METRICS
) -> list[dict[str, Any]]:
    """Every metric of a run (see docs/monitoring.md for the names and dimensions). ``Psi``, ``KS`` and
    (categorical features) ``NewCategoryRate`` (``Feature`` dimension) only for the ``feature_metrics``
    features of each version with the highest PSI (new-category breaches first): a 10,000-column model
    would otherwise make 20,000 custom metrics per version. The aggregates (``MaxPsi``,
    ``MaxNewCategoryRise``, ``MaxPsiRatio``, ...) that the alarms and the dashboard use cover every
    feature."""
    data: list[dict[str, Any]] = []
    for r in results:
        dims = {"Model": r["model"], "Version": str(r["version"])}
        data.append(_metric("SampleCount", r["samples"], "Count", ts, **dims))
        if r["missing_rate"] is not None:
            data.append(_metric("MissingRate", r["missing_rate"], "None", ts, **dims))
        if r["max_psi"] is not None:
            data.append(_metric("MaxPsi", r["max_psi"], "None", ts, **dims))
        if r.get("max_new_category_rise") is not None:
            data.append(_metric("MaxNewCategoryRise", r["max_new_category_rise"], "None", ts, **dims))
        for f in top_features(r["features"], feature_metrics, r.get("new_category_threshold")):
            fd = {**dims, "Feature": f["name"]}
            if f["psi"] is not None:
                data.append(_metric("Psi", f["psi"], "None", ts, **fd))
            if f["ks"] is not None:
                data.append(_metric("KS", f["ks"], "None", ts, **fd))
            if f.get("new_category_rate") is not None:
                data.append(_metric("NewCategoryRate", f["new_category_rate"], "None", ts, **fd))
        pred = r.get("prediction")
        if pred and pred.get("psi") is not None:
            data.append(_metric("PredictionPsi", pred["psi"], "None", ts, **dims))
        for o in r.get("outputs") or []:  # a tensor model's outputs (bounded by its signature)
            if o.get("psi") is not None:
                data.append(_metric("OutputPsi", o["psi"], "None", ts, **dims, Output=o["name"]))
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
    if summary.get("max_new_category_ratio") is not None:
        data.append(_metric("MaxNewCategoryRatio", summary["max_new_category_ratio"], "None", ts))
    data.append(_metric("BadCaptureLines", summary["bad_lines"], "Count", ts))
    return data


def publish_metrics(
    cloudwatch: Any,
    namespace: str,
    results: list[dict[str, Any]],
    summary: dict[str, Any],
    ts: float,
    feature_metrics: int = FEATURE_METRICS,
) -> int:
    data = metric_data(results, summary, ts, feature_metrics)
    for i in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + 500])
    return len(data)


# ---------------------------------------------------------------------------------------------- retrain
def maybe_retrain(
    datasets: RetrainDatasets, g: GroupState, min_rows: int, ts: float
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
    vocabularies = [r.vocabulary for r in ctx.refs] if ctx.refs is not None else None
    created, uri = datasets.create(
        ctx.model,
        ctx.version,
        ts,
        [*ctx.features, ctx.target],
        np.concatenate(g.label_x),
        g.label_v,
        vocabularies,
    )
    if not created:
        return {
            "started": False,
            "reason": "a retrain dataset for this version was already written today",
            "dataset": uri,
        }
    return {"started": True, "rows": n, "dataset": uri}


# ---------------------------------------------------------------------------------------------- requests
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


# ---------------------------------------------------------------------------------------------- the stage
@dataclass
class Monitor:
    """The MonitorFunction, built once per container (:func:`build`)."""

    settings: Settings
    stores: Stores
    clock: Callable[[], float] = field(default=time.time)
    """The time of a run (epoch seconds); tests inject one."""

    def handle(self, event: Any) -> dict[str, Any]:
        """One run for a scheduled event or a direct invoke (see :func:`request_from_event`)."""
        cfg = self.settings
        model, window = request_from_event(event)
        summary = run_window(
            window_settings(cfg, model, window, self.clock()),
            self.stores,
        )
        runtime.logger.info(
            "monitor run",
            extra={
                "summary": {k: v for k, v in summary.items() if k != "models"},
                "models": summary["models"],
            },
        )
        return summary


def window_settings(cfg: Settings, model: str | None, window: int | None, now: float) -> MonitorSettings:
    """One run's parameters from the function's settings and the run's request (``model``, ``window``)."""
    return MonitorSettings(
        data_bucket=cfg.data_bucket,
        registry_bucket=cfg.registry_bucket,
        namespace=cfg.powertools_metrics_namespace,
        window_seconds=window or cfg.monitor_window_seconds,
        min_samples=cfg.min_samples,
        model=model,
        now=now,
        capture_lag_seconds=cfg.capture_lag_seconds(),
        feature_metrics=cfg.monitor_feature_metrics,
    )


def stores_for(settings: Settings) -> Stores:
    """The monitor's stores on this container's clients (the single pass and the fan-out's steps)."""
    return Stores.from_clients(
        settings.data_bucket,
        settings.registry_bucket,
        s3=aws.client("s3"),
        cloudwatch=aws.client("cloudwatch"),
        events=aws.client("events"),
        event_bus_name=settings.event_bus_name,
        settings_ttl_seconds=settings.settings_ttl_seconds,
        report_base_url=settings.report_base_url,
        report_link_seconds=settings.report_link_seconds,
        signer=aws.client("s3", config=SIGNING_CONFIG),
    )


@functools.cache
def build() -> Monitor:
    """Settings, clients and stores: once per warm container."""
    settings = Settings()
    return Monitor(settings, stores_for(settings))


def run(event: Any) -> dict[str, Any]:
    """The MonitorFunction's entry: :meth:`Monitor.handle` on the container's :func:`build`."""
    return build().handle(event)
