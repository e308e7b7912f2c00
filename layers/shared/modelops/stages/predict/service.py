"""predict's service (one per warm container): the model cache, the capture sink and the registry,
and what each route asks of them. ``service()`` is the container's, built once from ``Settings``."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from modelops import aws
from modelops.domain.alias import PRODUCTION
from modelops.domain.encoding import InputSchema, SchemaError
from modelops.domain.errors import ModelNotFoundError
from modelops.domain.spec import MODEL_NAME_RE
from modelops.stages.predict.errors import JSON, RequestError
from modelops.stages.predict.parse import (
    RawRequest,
    body_bytes,
    check_content_type,
    instances_of,
    may_hold_booleans,
    parse_json,
    selector,
    to_encoded,
    to_matrix,
)
from modelops.stages.predict.render import (
    answer_bound,
    render,
    render_tensors,
    request_bound,
    tensor_answer_bound,
)
from modelops.stages.predict.serving import LoadedModel, ModelCache
from modelops.stages.predict.settings import Settings
from modelops.stages.predict.telemetry import telemetry
from modelops.stages.runtime import logger
from modelops.storage.capture_sink import CaptureSink
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry
from modelops.storage.s3 import ObjectStore
from modelops.storage.settings import SettingsCache, SettingsStore


class _LazyEventBus:
    """An EventBus whose client is built on first use (alerts are rare; keep cold starts lean)."""

    def __init__(self, factory: Callable[[], Any], bus_name: str):
        self._factory = factory
        self._bus_name = bus_name
        self._bus: EventBus | None = None

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        if self._bus is None:
            self._bus = EventBus(self._factory(), self._bus_name)
        return self._bus.publish(detail_type, detail)


class PredictService:
    """predict's domain side: model cache, capture sink, registry. One per warm container."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        cache: ModelCache,
        sink: CaptureSink | None,
        overrides: SettingsCache | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.cache = cache
        self.sink = sink
        self.overrides = overrides
        """The models' monitoring settings (the capture sample rate), read at most once per TTL."""
        self.metrics = telemetry()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        s3: Any = None,
        firehose_factory: Callable[[], Any] | None = None,
        events_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> PredictService:
        s3 = s3 if s3 is not None else aws.client("s3", config=aws.INTERACTIVE_CONFIG)
        registry = Registry(s3, settings.registry_bucket, actor="predict")
        cache = ModelCache(
            registry,
            artifact_dir=settings.artifact_dir,
            ttl_seconds=settings.alias_cache_ttl_seconds,
            clock=clock,
            events=_LazyEventBus(
                events_factory or functools.partial(aws.client, "events"), settings.event_bus_name
            ),
            max_loaded=settings.max_loaded_versions,
        )
        sink = overrides = None
        if settings.capture_stream:
            sink = CaptureSink(
                firehose_factory or functools.partial(aws.client, "firehose"),
                settings.capture_stream,
                log=logger,
            )
            overrides = SettingsCache(
                SettingsStore(ObjectStore(s3, settings.registry_bucket), actor="predict"),
                ttl=settings.settings_ttl_seconds,
                clock=clock,
            )
        return cls(settings, registry, cache, sink, overrides)

    def _sample_rate(self, model: str, default: float) -> float:
        """The capture sample rate: the model's settings document's when it sets one (``modelops models
        config``), else the version's manifest's. A corrupt document keeps the manifest's value. The
        document is read in the background (``SettingsCache.get_nowait``): no request waits on S3, and
        a change is used within the TTL plus one read."""
        if self.overrides is None:
            return default
        rate = self.overrides.get_nowait(model).get("capture_sample_rate")  # never waits on S3
        return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else default

    def predict(self, req: RawRequest) -> tuple[int, str, dict[str, str]]:
        """(status, body, headers) of a served request; a bad one raises (``errors.error_result``).
        ``req.rows`` and ``req.version`` are set as soon as they are known (the error's log line)."""
        started = time.perf_counter()
        settings = self.settings
        check_content_type(req.content_type)
        raw = body_bytes(req.body, req.is_base64, settings.max_body_bytes)
        alias, version = selector(req.query)
        doc = parse_json(raw)
        instances = instances_of(doc, settings.max_rows)
        if instances is not None:
            req.rows = len(instances)
        routing_key = req.routing_key if req.routing_key is not None else req.query.get("routing_key")
        lm = self.cache.resolve(req.name, alias=alias, version=version, routing_key=routing_key)
        info = lm.info
        req.version = info.version
        if info.tensor:
            return self._predict_tensors(req, lm, doc, raw, started)
        if instances is None:
            raise RequestError(
                422,
                "invalid_request",
                "'inputs' (columnar format) is for tensor models; this model takes 'instances' (rows or records)",
            )
        rows = len(instances)
        bound = lm.answer_bound or self._answer_bound(lm)
        if rows > bound[2] or len(req.request_id) > _REQUEST_ID_MAX:  # else it fits: no arithmetic
            _check_answer_size(rows, bound, req, settings.max_response_bytes)
        if info.categorical:
            x, oov = to_encoded(instances, info)
            if any(oov.values()):
                self.metrics.out_of_vocabulary(req.name, info.version, oov)
        else:
            x = to_matrix(instances, info, raw)
        y = lm.predict(x)
        body = render(info, req.name, y, req.request_id)
        sink = self.sink
        if sink is not None:
            sink.submit(
                req.name,
                info.version,
                req.request_id,
                x,
                y,
                self._sample_rate(req.name, info.capture_sample_rate),
            )
        return self._answered(req, info.version, rows, started, body)

    def _predict_tensors(
        self, req: RawRequest, lm: LoadedModel, doc: Any, raw: str | bytes, started: float
    ) -> tuple[int, str, dict[str, str]]:
        """A tensor model's request (``modelops.domain.signature``): TF Serving's row or columnar
        format, checked against the signature, answered as TF Serving does; captured as a format-2 line
        (``modelops.domain.capture``), sampled as a tabular request is."""
        info = lm.info
        assert info.signature is not None
        from modelops.domain.signature import TensorRequestError, parse_request  # tensor models only

        try:
            treq = parse_request(
                doc, info.signature, self.settings.max_rows, may_hold_booleans=may_hold_booleans(raw)
            )
        except TensorRequestError as exc:
            raise RequestError(413 if exc.code == "too_many_rows" else 422, exc.code, str(exc)) from None
        rows = req.rows = treq.rows
        bound = lm.answer_bound or self._answer_bound(lm)
        if rows > bound[2] or len(req.request_id) > _REQUEST_ID_MAX:  # else it fits: no arithmetic
            _check_answer_size(rows, bound, req, self.settings.max_response_bytes)
        y = lm.predict_tensors(treq.inputs)
        body = render_tensors(info, req.name, y, req.request_id, treq.columnar)
        sink = self.sink
        if sink is not None:
            sink.submit_tensors(
                req.name,
                info.version,
                req.request_id,
                treq.inputs,
                y,
                self._sample_rate(req.name, info.capture_sample_rate),
            )
        return self._answered(req, info.version, rows, started, body)

    def _answered(
        self, req: RawRequest, version: int, rows: int, started: float, body: str
    ) -> tuple[int, str, dict[str, str]]:
        """The 200 of a served request (tabular or tensor): captures lost since the last answer and this
        one's metrics, then the proxy result's parts."""
        sink = self.sink
        if sink is not None:
            lost = sink.take_failures()
            if lost:
                self.metrics.capture_failures(lost)
        self.metrics.served(
            req.name, version, (time.perf_counter() - started) * 1000.0, rows, req.request_id, req.caller
        )
        return (
            200,
            body,
            {"Content-Type": JSON, "X-Model-Version": str(version), "X-Request-Id": req.request_id},
        )

    def _answer_bound(self, lm: LoadedModel) -> tuple[int, int, int]:
        """``render.answer_bound`` (``render.tensor_answer_bound`` for a tensor model) of a loaded
        version and the rows that always fit (for a request id of at most ``_REQUEST_ID_MAX``
        characters), kept on it (computed at its first request)."""
        if lm.info.signature is not None:
            fixed, per_row = tensor_answer_bound(lm.info)
        else:
            fixed, per_row = answer_bound(lm.info, lm.n_outputs)
        room = self.settings.max_response_bytes - fixed - request_bound(lm.info.model, "x" * _REQUEST_ID_MAX)
        bound = lm.answer_bound = (fixed, per_row, max(0, room // per_row))
        return bound

    # ------------------------------------------------------------------ catalogue
    def list_models(self) -> dict[str, Any]:
        """``{"models": [{"name", "aliases": {alias: version}, "latest_version"}]}``."""
        out = []
        for name in self.registry.list_models():
            if not MODEL_NAME_RE.match(name):
                continue
            aliases = {a: d.version for a, d in sorted(self.registry.list_aliases(name).items())}
            versions = self.registry.list_versions(name)
            out.append(
                {"name": name, "aliases": aliases, "latest_version": versions[-1] if versions else None}
            )
        return {"models": out}

    def show_model(self, name: str) -> dict[str, Any]:
        """Aliases, versions (with their metrics), and the production version's schema and metrics."""
        if not MODEL_NAME_RE.match(name) or not self.registry.model_exists(name):
            raise ModelNotFoundError(f"no model named {name[:60]!r}")
        aliases = self.registry.list_aliases(name)
        versions: list[dict[str, Any]] = []
        for number in self.registry.list_versions(name):
            m = self.cache.manifest(name, number)
            doc = m.get("metrics")
            versions.append(
                {
                    "version": number,
                    "created_at": m.created_at,
                    "task": m.get("task"),
                    "metrics": doc if isinstance(doc, dict) else {},
                    "schema": m.get("schema"),
                }
            )
        by_version = {v["version"]: v for v in versions}
        current = aliases[PRODUCTION].version if PRODUCTION in aliases else max(by_version, default=None)
        shown = by_version.get(current) if current is not None else None
        schema = shown.pop("schema") if shown else None
        for entry in versions:
            entry.pop("schema", None)
        return {
            "name": name,
            "aliases": {
                a: {
                    "version": d.version,
                    "previous": d.previous,
                    "canary": d.canary,
                    "updated_at": d.updated_at,
                }
                for a, d in sorted(aliases.items())
            },
            "versions": versions,
            "schema_version": current,
            "schema": _typed(schema) if isinstance(schema, dict) else None,
            "metrics": shown["metrics"] if shown else {},
        }


def _typed(schema: dict[str, Any]) -> dict[str, Any]:
    """The manifest's schema with every feature entry in its full form (``Feature.to_dict``: a version
    written before categorical features lists names or untyped entries, which are numeric)."""
    try:
        features = InputSchema.from_dict(schema).to_list()
    except SchemaError:
        return schema
    return {**schema, "features": features}


_REQUEST_ID_MAX = 64
"""API Gateway's request ids are UUIDs (36 characters); a longer one takes the exact check."""


def _check_answer_size(rows: int, bound: tuple[int, int, int], req: RawRequest, limit: int) -> None:
    """413 for an answer that could exceed ``limit`` bytes (Lambda would fail it: API Gateway 502)."""
    fixed, per_row, _ = bound
    room = limit - fixed - request_bound(req.name, req.request_id)
    if rows * per_row <= room:
        return
    fit = max(0, room // per_row)
    advice = f"send at most {fit} rows per request" if fit else "this model's answer cannot fit one row"
    raise RequestError(
        413,
        "response_too_large",
        f"the answer to {rows} rows could be larger than the response limit of {limit} bytes; {advice}",
    )


# ---------------------------------------------------------------------- the container's service
_installed: PredictService | None = None


@functools.cache
def build() -> PredictService:
    """The container's PredictService, from ``Settings`` (the environment), built at first use."""
    return PredictService.from_settings(Settings())


def service() -> PredictService:
    """The service ``configure`` installed, else the container's."""
    return _installed if _installed is not None else build()


def current() -> PredictService | None:
    """The service in use when one was installed or built, else None (builds nothing)."""
    if _installed is not None:
        return _installed
    return build() if build.cache_info().currsize else None


def configure(svc: PredictService | None) -> None:
    """Install a service (tests, benchmarks, a SnapStart restore: ``snapstart.after_restore``), or None
    to build the container's from the environment again at the next use."""
    global _installed
    _installed = svc
    if svc is None:
        build.cache_clear()
