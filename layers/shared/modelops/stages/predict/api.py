"""The predict HTTP API (DESIGN.md "Predict API"; docs/predict.md is the reference).

Routes (declared on a Powertools ``APIGatewayRestResolver`` in ``modelops.stages.predict.routes``, which
also generates the OpenAPI document):

- ``POST /models/{name}/predict``  ``{"instances": [[...], ...]}`` or ``{"instances": [{...}, ...]}``
- ``GET /models``, ``GET /models/{name}``
- ``GET /openapi.json``

``handle`` sends ``POST predict`` down a lean path (``predict_event``) that skips the resolver's
per-request routing and its imports; the resolver's own predict route calls the same function, so
both answer identically. Requests are validated here with numpy, not per-field pydantic models.
Every error has one shape, ``{"error": {"code", "message", "request_id"}}``, built in one place
(``error_result``); no stack traces, bucket names or keys ever reach a body.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
import orjson
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field

from modelops import aws
from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    ModelNotFoundError,
    ModelOpsError,
    RegistryUnavailableError,
    SpecError,
    VersionNotFoundError,
)
from modelops.domain.spec import MODEL_NAME_RE
from modelops.stages.predict.serving import (
    FLOAT32_MAX,
    PRODUCTION,
    ArtifactLoadError,
    LoadedModel,
    ModelCache,
    ModelInfo,
    ModelUnavailableError,
    NoProductionVersionError,
)
from modelops.storage.capture_sink import CaptureSink
from modelops.storage.events import EventBus
from modelops.storage.registry import ALIAS_RE, Registry

PREDICT_RESOURCE = "/models/{name}/predict"
JSON = "application/json"
_ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "predict"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ModelOps", service=SERVICE)
# modelops.stages.predict.serving and modelops.storage.capture_sink log through stdlib loggers: give them Powertools' JSON format.
copy_config_to_registered_loggers(
    source_logger=logger, include={"modelops.stages.predict.serving", "modelops.storage.capture_sink"}
)


# ---------------------------------------------------------------------- configuration
class PredictSettings(BaseModel):
    """predict's configuration (the function's environment in template.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry_bucket: Annotated[str, Field(min_length=3)]
    capture_stream: str | None = None
    alias_cache_ttl_seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 10.0
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_body_bytes: Annotated[int, Field(ge=1024, le=6 * 1024 * 1024)] = 1_048_576
    artifact_dir: str = "/tmp/modelops-artifacts"
    max_loaded_versions: Annotated[int, Field(ge=1, le=256)] = 8
    event_bus_name: str = "default"

    ENV: ClassVar[Mapping[str, str]] = {
        "REGISTRY_BUCKET": "registry_bucket",
        "CAPTURE_STREAM": "capture_stream",
        "ALIAS_CACHE_TTL_SECONDS": "alias_cache_ttl_seconds",
        "MAX_ROWS": "max_rows",
        "MAX_BODY_BYTES": "max_body_bytes",
        "ARTIFACT_DIR": "artifact_dir",
        "MAX_LOADED_VERSIONS": "max_loaded_versions",
        "EVENT_BUS_NAME": "event_bus_name",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PredictSettings:
        return cls.model_validate({field: env[var] for var, field in cls.ENV.items() if env.get(var)})


# ---------------------------------------------------------------------- errors
class RequestError(ModelOpsError):
    """Bad input, with the HTTP status and stable code it maps to."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.served_version: int | None = None  # set once a version was resolved (X-Model-Version)


# (status, code, fixed message or None to show the exception's own, which our code writes without internals)
_ERROR_MAP: tuple[tuple[type[Exception], int, str, str | None], ...] = (
    (NoProductionVersionError, 503, "no_production_version", None),
    (ArtifactLoadError, 503, "model_unavailable", None),
    (ModelUnavailableError, 503, "model_unavailable", None),
    (ModelNotFoundError, 404, "model_not_found", None),
    (SpecError, 404, "model_not_found", None),
    (VersionNotFoundError, 404, "version_not_found", None),
    (AliasNotFoundError, 404, "alias_not_found", None),
    (
        RegistryUnavailableError,
        503,
        "registry_unavailable",
        "the model registry is unavailable; try again shortly",
    ),
    (
        CorruptDocumentError,
        503,
        "model_unavailable",
        "the registry holds a malformed document for this model",
    ),
)


def error_result(
    exc: Exception, request_id: str, version: int | None = None
) -> tuple[int, str, dict[str, str]]:
    """The one place that maps exceptions to HTTP responses: (status, body, headers)."""
    if isinstance(exc, RequestError):
        status, code, message = exc.status, exc.code, str(exc)
    else:
        mapped = next((m for m in _ERROR_MAP if isinstance(exc, m[0])), None)
        if mapped is not None:
            _, status, code, fixed = mapped
            message = fixed or str(exc)
        else:
            logger.exception("unhandled error", extra={"request_id": request_id})
            status, code = 500, "internal_error"
            message = "internal error; quote the request id when reporting it"
    if status >= 500 and status != 500:
        logger.warning("%s: %s", code, exc, extra={"request_id": request_id})
    _count_error(code)
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}}).decode()
    headers = {"Content-Type": JSON, "X-Request-Id": request_id}
    if status == 503:
        headers["Retry-After"] = "10"
    if version is not None:
        headers["X-Model-Version"] = str(version)
    return status, body, headers


def _count_error(code: str) -> None:
    # An invocation that fails records nothing else, so this is the only metric (dimensions: service, Code).
    metrics.add_dimension(name="Code", value=code)
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)


# ---------------------------------------------------------------------- request parsing
@dataclass(frozen=True)
class RawRequest:
    name: str
    body: str | None
    is_base64: bool
    content_type: str | None
    query: Mapping[str, str]
    routing_key: str | None
    request_id: str


def check_content_type(content_type: str | None) -> None:
    """JSON, or no Content-Type, or curl's default form type (the body must still be JSON)."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _ACCEPTED_MEDIA_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    raise RequestError(
        415, "unsupported_media_type", f"Content-Type {media[:60]!r} is not supported; send {JSON}"
    )


def body_bytes(body: str | None, is_base64: bool, limit: int) -> str | bytes:
    """The body, size-checked before anything parses it (413 over ``limit`` bytes)."""
    if not body:
        raise RequestError(400, "invalid_json", 'the request body is empty; send {"instances": [...]}')
    too_big = RequestError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
    if is_base64:
        if len(body) > (limit + 2) // 3 * 4 + 4:
            raise too_big
        try:
            raw: str | bytes = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "invalid_json", "the request body is not valid base64") from None
        size = len(raw)
    else:
        raw = body
        size = len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise too_big
    return raw


def parse_json(raw: str | bytes) -> Any:
    """Strict JSON first (fast); NaN, Infinity and 1e400 are then accepted here so that the row and
    field that hold them can be named (they are rejected by ``to_matrix``)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        strict = str(exc)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError(400, "invalid_json", f"the request body is not valid JSON: {strict}") from None


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    return "an object"


def instances_of(doc: Any, max_rows: int) -> list[Any]:
    if type(doc) is not dict:
        raise RequestError(
            422,
            "invalid_request",
            f'the body must be a JSON object {{"instances": [...]}}, not {_json_type(doc)}',
        )
    if len(doc) != 1 or "instances" not in doc:
        extra = sorted(k for k in doc if k != "instances")
        if extra:
            raise RequestError(
                422, "invalid_request", f"unknown key {extra[0][:60]!r}; the body takes only 'instances'"
            )
        raise RequestError(422, "invalid_request", "'instances' is missing")
    inst = doc["instances"]
    if type(inst) is not list:
        raise RequestError(
            422, "invalid_request", f"'instances' must be a list of rows or records, not {_json_type(inst)}"
        )
    if not inst:
        raise RequestError(422, "invalid_request", "'instances' is empty; send at least one row")
    if len(inst) > max_rows:
        raise RequestError(413, "too_many_rows", f"{len(inst)} rows; at most {max_rows} per request")
    return inst


def _features_hint(info: ModelInfo) -> str:
    names = ", ".join(info.features[:8]) + (", …" if info.n_features > 8 else "")
    return f"{info.n_features} features ({names})"


def _value_problem(v: Any) -> str | None:
    t = type(v)
    if t is float:
        if v != v:
            return "is NaN; expected a finite number"
        if abs(v) > FLOAT32_MAX:
            return "is infinite or out of the float32 range (±3.4e38); expected a finite number"
        return None
    if t is int:
        return "is out of the float32 range (±3.4e38)" if abs(v) > FLOAT32_MAX else None
    if t is list:
        return "is a list; expected a number (nested lists are not allowed)"
    return f"is {_json_type(v)}; expected a number"


def _diagnose(instances: list[Any], info: ModelInfo, records: bool) -> RequestError | None:
    """The first bad row or field, described for the caller (the slow path, only for bad input)."""

    def bad(message: str) -> RequestError:
        return RequestError(422, "invalid_instances", message)

    f = info.n_features
    known = set(info.features)
    for i, row in enumerate(instances):
        if records:
            if type(row) is not dict:
                return bad(
                    f"instances[{i}]: expected an object keyed by feature name like instances[0], not {_json_type(row)}"
                )
            for name in info.features:
                if name not in row:
                    return bad(f"instances[{i}]: missing feature {name!r}")
            for k in row:
                if k not in known:
                    return bad(
                        f"instances[{i}]: unknown feature {k[:60]!r}; the model takes {_features_hint(info)}"
                    )
            for name in info.features:
                problem = _value_problem(row[name])
                if problem:
                    return bad(f"instances[{i}].{name} {problem}")
        else:
            if type(row) is not list:
                return bad(
                    f"instances[{i}]: expected a list of {f} numbers in schema order like instances[0], not {_json_type(row)}"
                )
            if len(row) != f:
                return bad(f"instances[{i}]: has {len(row)} values; the model takes {_features_hint(info)}")
            for j, v in enumerate(row):
                problem = _value_problem(v)
                if problem:
                    return bad(f"instances[{i}][{j}] ({info.features[j]!r}) {problem}")
    return None


_SMALL_BATCH = 16


def _plain_numbers(rows: list[Any], f: int) -> bool:
    """Every row a list of ``f`` JSON numbers (ints or floats, not booleans)?"""
    for r in rows:
        if type(r) is not list or len(r) != f:
            return False
        for v in r:
            t = type(v)
            if t is not float and t is not int:
                return False
    return True


def _may_hold_booleans(raw: str | bytes) -> bool:
    if isinstance(raw, str):
        return "true" in raw or "false" in raw
    return b"true" in raw or b"false" in raw


def to_matrix(instances: list[Any], info: ModelInfo, raw: str | bytes) -> np.ndarray:
    """Rows (lists in schema order) or records (objects keyed by feature name) -> (n, f) float32.

    The common case costs one type check and one numpy conversion; anything unusual (strings,
    booleans, nulls, ragged or nested rows, non-finite or out-of-range numbers) takes ``_diagnose``,
    which names the first bad row and field.
    """
    f = info.n_features
    first = instances[0]
    records = type(first) is dict
    rows: list[Any]
    if records:
        names = info.features
        try:
            rows = [[r[k] for k in names] for r in instances]
        except (KeyError, TypeError, IndexError):
            raise _diagnose(instances, info, True) or _unexpected() from None
        if any(len(r) != f for r in instances):
            raise _diagnose(instances, info, True) or _unexpected()
    elif type(first) is list:
        rows = instances
    else:
        raise RequestError(
            422,
            "invalid_instances",
            f"instances[0]: expected a list of numbers in schema order or an object keyed by feature name, "
            f"not {_json_type(first)}",
        )
    arr: np.ndarray | None = None
    if len(rows) <= _SMALL_BATCH:  # a few rows: checking types in Python beats numpy's type inference
        ok = _plain_numbers(rows, f)
    else:
        try:
            arr = np.array(rows)
            ok = (
                arr.ndim == 2
                and arr.shape[1] == f
                and arr.dtype.kind in "fiu"
                and not _may_hold_booleans(raw)
            )
        except (ValueError, TypeError, OverflowError):
            ok = False
    if not ok:
        err = _diagnose(instances, info, records)
        if err is not None:
            raise err
        arr = None  # every value is a number after all (say, an integer beyond int64): convert from the rows
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.array(rows, dtype=np.float32) if arr is None else arr.astype(np.float32)
    except (ValueError, TypeError, OverflowError):
        raise _diagnose(instances, info, records) or _unexpected() from None
    if not np.isfinite(x).all():
        raise _diagnose(instances, info, records) or _unexpected()
    return x


def _unexpected() -> RequestError:
    return RequestError(422, "invalid_instances", "the instances could not be read as numbers")


def selector(query: Mapping[str, str]) -> tuple[str | None, int | None]:
    """``?alias=`` or ``?version=`` (not both); 400 when malformed."""
    alias = query.get("alias")
    version = query.get("version")
    if alias is not None and version is not None:
        raise RequestError(400, "invalid_parameter", "give ?alias= or ?version=, not both")
    if alias is not None and not ALIAS_RE.match(alias):
        raise RequestError(400, "invalid_parameter", f"invalid alias {alias[:40]!r}")
    if version is not None:
        if not (version.isascii() and version.isdigit() and len(version) <= 9 and int(version) >= 1):
            raise RequestError(
                400, "invalid_parameter", f"version must be a positive integer, not {version[:20]!r}"
            )
        return None, int(version)
    return alias, None


# ---------------------------------------------------------------------- rendering
def render(lm: LoadedModel, name: str, y: np.ndarray, request_id: str) -> str:
    """``{"model", "version", "request_id", "predictions"}``, plus ``probabilities`` and ``labels``
    (the schema's classes, in the order of each probability row) for classification."""
    info = lm.info
    doc: dict[str, Any] = {"model": name, "version": info.version, "request_id": request_id}
    if info.task == "regression":
        doc["predictions"] = np.ascontiguousarray(y[:, 0]) if y.shape[1] == 1 else y
    else:
        if y.shape[1] == 1:  # a sigmoid: P(classes[1])
            probs = np.empty((y.shape[0], 2), dtype=np.float32)
            probs[:, 1] = y[:, 0]
            np.subtract(1.0, y[:, 0], out=probs[:, 0])
            idx = (y[:, 0] >= 0.5).tolist()
        else:
            probs = np.ascontiguousarray(y, dtype=np.float32)
            idx = y.argmax(axis=1).tolist()
        labels = list(info.classes) if info.classes is not None else list(range(probs.shape[1]))
        doc["predictions"] = [labels[i] for i in idx]
        doc["probabilities"] = probs
        doc["labels"] = labels
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()


# ---------------------------------------------------------------------- the service
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


@dataclass
class PredictOutcome:
    status: int
    body: str
    headers: dict[str, str]


class PredictService:
    """predict's domain side: model cache, capture sink, registry. One per warm container."""

    def __init__(
        self, settings: PredictSettings, registry: Registry, cache: ModelCache, sink: CaptureSink | None
    ):
        self.settings = settings
        self.registry = registry
        self.cache = cache
        self.sink = sink

    @classmethod
    def from_settings(
        cls,
        settings: PredictSettings,
        *,
        s3: Any = None,
        firehose_factory: Callable[[], Any] | None = None,
        events_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> PredictService:
        registry = Registry(
            s3 if s3 is not None else aws.client("s3", config=aws.INTERACTIVE_CONFIG),
            settings.registry_bucket,
            actor="predict",
        )
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
        sink = None
        if settings.capture_stream:
            sink = CaptureSink(
                firehose_factory or functools.partial(aws.client, "firehose"), settings.capture_stream
            )
        return cls(settings, registry, cache, sink)

    def predict(self, req: RawRequest) -> PredictOutcome:
        started = time.perf_counter()
        settings = self.settings
        check_content_type(req.content_type)
        raw = body_bytes(req.body, req.is_base64, settings.max_body_bytes)
        alias, version = selector(req.query)
        instances = instances_of(parse_json(raw), settings.max_rows)
        routing_key = req.routing_key if req.routing_key is not None else req.query.get("routing_key")
        lm = self.cache.resolve(req.name, alias=alias, version=version, routing_key=routing_key)
        info = lm.info
        try:
            x = to_matrix(instances, info, raw)
        except RequestError as exc:
            exc.served_version = info.version
            raise
        y = lm.predict(x)
        body = render(lm, req.name, y, req.request_id)
        if self.sink is not None:
            self.sink.submit(req.name, info.version, req.request_id, x, y, info.capture_sample_rate)
        self._record(req.name, info.version, x.shape[0], time.perf_counter() - started)
        headers = {"Content-Type": JSON, "X-Model-Version": str(info.version), "X-Request-Id": req.request_id}
        return PredictOutcome(200, body, headers)

    def _record(self, name: str, version: int, rows: int, seconds: float) -> None:
        metrics.add_dimension(name="Model", value=name)
        metrics.add_dimension(name="Version", value=str(version))
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=seconds * 1000.0)
        metrics.add_metric(name="Rows", unit=MetricUnit.Count, value=rows)
        if self.sink is not None:
            lost = self.sink.take_failures()
            if lost:
                with single_metric(
                    name="CaptureFailures", unit=MetricUnit.Count, value=lost, namespace=metrics.namespace
                ) as m:
                    m.add_dimension(name="service", value=SERVICE)

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
            "schema": schema if isinstance(schema, dict) else None,
            "metrics": shown["metrics"] if shown else {},
        }


# ---------------------------------------------------------------------- the container's service
_service: PredictService | None = None
_service_lock = threading.Lock()


def service() -> PredictService:
    """The container's PredictService, built from the environment on first use."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                _service = PredictService.from_settings(PredictSettings.from_env(os.environ))
    return _service


def configure(svc: PredictService | None) -> None:
    """Install a service (tests, benchmarks, the local twin), or None to rebuild from the environment."""
    global _service
    _service = svc


def request_id(event: Mapping[str, Any], context: Any) -> str:
    rid = (event.get("requestContext") or {}).get("requestId")
    return str(rid or getattr(context, "aws_request_id", None) or uuid.uuid4())


# ---------------------------------------------------------------------- entry points
def _header(headers: Mapping[str, str] | None, wanted: str) -> str | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == wanted:
            return v
    return None


def predict_event(
    event: Mapping[str, Any], context: Any, name: str | None = None
) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) for a POST predict proxy event; never raises."""
    rid = request_id(event, context)
    try:
        if name is None:
            name = str((event.get("pathParameters") or {}).get("name") or "")
        headers = event.get("headers")
        out = service().predict(
            RawRequest(
                name=name,
                body=event.get("body"),
                is_base64=bool(event.get("isBase64Encoded")),
                content_type=_header(headers, "content-type"),
                query=event.get("queryStringParameters") or {},
                routing_key=_header(headers, "x-routing-key"),
                request_id=rid,
            )
        )
    except Exception as exc:
        return error_result(exc, rid, exc.served_version if isinstance(exc, RequestError) else None)
    return out.status, out.body, out.headers


def _proxy_result(result: tuple[int, str, dict[str, str]]) -> dict[str, Any]:
    """The Lambda proxy result the resolver would build for the same response (multiValueHeaders)."""
    status, body, headers = result
    return {
        "statusCode": status,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": body,
        "isBase64Encoded": False,
    }


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry: POST predict on the lean path; everything else through the Powertools
    resolver (``modelops.stages.predict.routes``, imported on first use: it costs ~150 ms of imports that a
    container serving only predictions never pays)."""
    if event.get("resource") == PREDICT_RESOURCE and event.get("httpMethod") == "POST":
        return _proxy_result(predict_event(event, context))
    from modelops.stages.predict.routes import app

    result: dict[str, Any] = app.resolve(event, context)
    return result


def traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap with Powertools Tracer only when POWERTOOLS_TRACE_DISABLED is explicitly false (it costs
    ~300 ms of cold start and per-request time); identity otherwise."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() not in ("false", "0"):
        return fn
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE).capture_lambda_handler(fn)
