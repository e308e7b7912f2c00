"""The train_trigger stage: a CSV dropped under ``datasets/{model}/`` starts exactly one training job.

For each S3 ``ObjectCreated`` record (docs/training.md has the whole story):

1. The key must be ``datasets/{model}/....csv``; the spec is ``datasets/{model}/model.json``
   (missing or invalid: the dataset is rejected with that reason).
2. The object version named by the record is streamed and validated (``modelops.domain.dataset``).
3. Rejected: the object is copied to ``quarantine/{model}/{rest of key}/{version}/`` beside a
   ``reason.json``, the original is left alone, and a ``DatasetRejected`` event goes out. No job.
4. Accepted: the job name is derived from the dataset's and the spec's SHA-256 (``job_name``), the job
   record ``jobs/{job}.json`` is created (create-only) in the registry bucket, the backend starts the
   job, a ``TrainingJobStarted`` event goes out, and ``jobs/{job}.started.json`` marks it done.

Idempotency, three layers deep: Powertools Idempotency (DynamoDB) keyed by bucket/key/version id
(plus ETag, so an unversioned bucket still works) answers a replayed record from its cache; a record
that gets past it (expired, or the same bytes under another key) finds the job record and the
started marker and stops ("duplicate"); and the backends treat "that name is taken" as started.
Failures that retrying may fix raise, so Lambda's retries and then the DLQ keep the event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from modelops.compute import (
    HYPERPARAMETER_MAX_CHARS,
    BatchBackend,
    JobRequest,
    LocalBackend,
    SageMakerBackend,
    StartedJob,
    TrainingBackend,
    plan_search,
)
from modelops.domain.dataset import CHUNK, DatasetReport, Limits, validate_stream
from modelops.domain.errors import (
    BackendNotConfiguredError,
    SearchNotSupportedError,
    SpecError,
    SpecMissingError,
)
from modelops.domain.spec import MODEL_NAME_RE, ModelSpec, parse_spec
from modelops.storage.events import EventBus

logger = Logger(child=True)

DATASETS_PREFIX = "datasets/"
QUARANTINE_PREFIX = "quarantine/"
SPEC_FILE = "model.json"
MAX_SPEC_BYTES = 256 * 1024
IDEMPOTENCY_KEY = "[s3.bucket.name, s3.object.key, s3.object.versionId, s3.object.eTag]"
JOB_PREFIX_RE = r"^[a-z][a-z0-9-]{1,20}$"
_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


# ---------------------------------------------------------------------------- names
def spec_sha256(spec: ModelSpec) -> str:
    """SHA-256 of the spec's canonical JSON (every field, defaults included, sorted keys)."""
    return hashlib.sha256(canonical_spec_json(spec).encode()).hexdigest()


def canonical_spec_json(spec: ModelSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def job_name(model: str, dataset_sha256: str, spec_sha256: str, prefix: str = "modelops") -> str:
    """``{prefix}-{model}-{sha256(dataset_sha256 + spec_sha256)[:12]}`` (docs/contracts.md "Jobs").

    At most 63 characters (SageMaker's limit): a long model name is cut to fit (the job record
    carries the full name). The same data with the same spec always gives the same name.
    """
    if not re.match(JOB_PREFIX_RE, prefix):
        raise ValueError(f"invalid job prefix {prefix[:30]!r}")
    if not MODEL_NAME_RE.match(model):
        raise SpecError(f"invalid model name {model[:60]!r}")
    digest = hashlib.sha256((dataset_sha256 + spec_sha256).encode()).hexdigest()[:12]
    room = 63 - len(prefix) - len(digest) - 2
    return f"{prefix}-{model[:room].rstrip('-')}-{digest}"


def quarantine_prefix(key: str, version_id: str | None, etag: str | None) -> str:
    """``quarantine/{model}/{rest of the key}/{version id}/`` for ``datasets/{model}/{rest}``."""
    rest = key[len(DATASETS_PREFIX) :] if key.startswith(DATASETS_PREFIX) else key
    version = version_id or (f"etag-{etag}" if etag else "null")
    return f"{QUARANTINE_PREFIX}{rest}/{version}/"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------- settings
class TrainTriggerSettings(BaseModel):
    """train_trigger's configuration (template.yaml sets these variables); see ``from_env``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    registry_bucket: str = Field(min_length=3)
    job_prefix: str = Field(default="modelops", pattern=JOB_PREFIX_RE)
    idempotency_table: str = ""
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    training_role_arn: str = ""
    training_image_uri: str = ""
    batch_job_queue: str = ""
    batch_job_definition: str = ""
    local_training_url: str = ""
    """``MODELOPS_LOCAL_TRAINING_URL``: when set (the local twin), every job goes to the twin."""
    aws_region: str = "us-east-1"
    event_bus_name: str = "default"
    max_dataset_rows: int = Field(default=5_000_000, ge=1)
    max_dataset_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_missing_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_duplicate_rate: float = Field(default=0.5, ge=0.0, le=1.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TrainTriggerSettings:
        data: dict[str, Any] = {k.lower(): v for k, v in env.items()}
        data["local_training_url"] = env.get("MODELOPS_LOCAL_TRAINING_URL", "")
        data["aws_region"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls.model_validate(data)

    def limits(self) -> Limits:
        return Limits(
            max_bytes=self.max_dataset_bytes,
            max_rows=self.max_dataset_rows,
            max_missing_rate=self.max_missing_rate,
            max_duplicate_rate=self.max_duplicate_rate,
        )


def make_backend_factory(
    settings: TrainTriggerSettings, client: Callable[[str], Any]
) -> Callable[[str], TrainingBackend]:
    """Backends by spec name, built on first use. With a local training URL every name maps to the twin."""
    cache: dict[str, TrainingBackend] = {}

    def build(name: str) -> TrainingBackend:
        if settings.local_training_url:
            return LocalBackend(settings.local_training_url, role_arn=settings.training_role_arn)
        if name == "sagemaker":
            if not settings.training_role_arn:
                raise BackendNotConfiguredError(
                    "this stack has no training role (TRAINING_ROLE_ARN) for SageMaker"
                )
            return SageMakerBackend(
                client("sagemaker"),
                role_arn=settings.training_role_arn,
                region=settings.aws_region,
                image_uri=settings.training_image_uri,
                s3=client("s3"),
                code_bucket=settings.registry_bucket,
            )
        if name == "batch":
            if not settings.batch_job_queue or not settings.batch_job_definition:
                raise BackendNotConfiguredError(
                    "this stack has no Batch job queue (deploy it with TrainingBackend=batch, or use sagemaker)"
                )
            return BatchBackend(
                client("batch"),
                job_queue=settings.batch_job_queue,
                job_definition=settings.batch_job_definition,
            )
        raise BackendNotConfiguredError(
            f"backend {name!r} is not available in this stack (the local backend needs the local twin)"
        )

    def factory(name: str) -> TrainingBackend:
        key = "local" if settings.local_training_url else name
        if key not in cache:
            cache[key] = build(name)
        return cache[key]

    return factory


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int | None
    event_name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "uri": self.uri, "version_id": self.version_id}


def parse_record(record: Any) -> S3Object | None:
    """The object an S3 event record names (key URL-decoded, as S3 encodes it), or None if it is not one."""
    if not isinstance(record, Mapping) or not isinstance(record.get("s3"), Mapping):
        return None
    s3 = record["s3"]
    bucket, obj = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, Mapping) or not isinstance(obj, Mapping):
        return None
    name, key = bucket.get("name"), obj.get("key")
    if not isinstance(name, str) or not isinstance(key, str) or not name or not key:
        return None
    size = obj.get("size")
    return S3Object(
        bucket=name,
        key=unquote_plus(key),
        version_id=str(obj["versionId"]) if obj.get("versionId") else None,
        etag=str(obj["eTag"]) if obj.get("eTag") else None,
        size=int(size) if isinstance(size, int) else None,
        event_name=str(record.get("eventName", "")),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


# ---------------------------------------------------------------------------- the stage
class TrainTrigger:
    """The train_trigger domain. Takes its clients (and the backends) as arguments."""

    def __init__(
        self,
        *,
        s3: Any,
        bus: EventBus,
        settings: TrainTriggerSettings,
        backends: Callable[[str], TrainingBackend],
        persistence: BasePersistenceLayer | None = None,
        clock: Callable[[], str] = _now,
    ):
        self.s3 = s3
        self.bus = bus
        self.settings = settings
        self.backends = backends
        self.limits = settings.limits()
        self.clock = clock
        self.idempotency: IdempotencyConfig | None = None
        self._process: Callable[..., dict[str, Any]] = self.process_record
        if persistence is not None:
            self.idempotency = IdempotencyConfig(
                event_key_jmespath=IDEMPOTENCY_KEY,
                raise_on_no_idempotency_key=True,
                expires_after_seconds=settings.idempotency_ttl_seconds,
            )
            self._process = idempotent_function(
                self.process_record,
                data_keyword_argument="record",
                persistence_store=persistence,
                config=self.idempotency,
                key_prefix="modelops-train-trigger",
            )

    # ------------------------------------------------------------------ entry points
    def handle_event(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Every record of an S3 event. A record that fails does not stop the others; then the first
        failure is raised (the processed records are answered from the idempotency store on retry)."""
        if self.idempotency is not None and context is not None:
            self.idempotency.register_lambda_context(context)
        records = event.get("Records") if isinstance(event, Mapping) else None
        results: list[dict[str, Any]] = []
        errors: list[Exception] = []
        for record in records if isinstance(records, list) else []:
            try:
                results.append(self._process(record=record))
            except Exception as exc:
                logger.exception("record failed; it will be retried", extra={"record": _brief(record)})
                errors.append(exc)
        if errors:
            raise errors[0]
        return {"results": results}

    def process_record(self, record: Any) -> dict[str, Any]:
        obj = parse_record(record)
        if obj is None:
            return {"status": "ignored", "reason": "not an S3 object record"}
        if obj.event_name and not obj.event_name.startswith("ObjectCreated"):
            return {"status": "ignored", "reason": f"event {obj.event_name[:60]}", "key": obj.key}
        if not obj.key.startswith(DATASETS_PREFIX) or not obj.key.endswith(".csv"):
            return {"status": "ignored", "reason": "not a datasets/{model}/*.csv object", "key": obj.key}
        parts = obj.key.split("/")
        model = parts[1] if len(parts) >= 3 else ""
        if not model or not MODEL_NAME_RE.match(model):
            return self._reject(
                obj,
                model or None,
                "bad_key",
                "datasets must be uploaded as datasets/{model}/NAME.csv with a model name of "
                f"lower-case letters, digits and dashes (got {obj.key[:120]!r})",
            )
        try:
            spec = self._load_spec(obj.bucket, model)
        except SpecError as exc:
            return self._reject(obj, model, exc.code, str(exc))
        report = self._validate(obj, spec)
        if report is None:
            logger.warning(
                "object is gone; nothing to train", extra={"key": obj.key, "version_id": obj.version_id}
            )
            return {"status": "gone", "model": model, "key": obj.key}
        if not report.ok:
            return self._reject(obj, model, report.code or "invalid_dataset", report.reason, report)
        return self._accept(obj, model, spec, report)

    # ------------------------------------------------------------------ steps
    def _load_spec(self, bucket: str, model: str) -> ModelSpec:
        key = f"{DATASETS_PREFIX}{model}/{SPEC_FILE}"
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise SpecMissingError(
                    f"no model spec: upload {key} before the dataset (docs/training.md)"
                ) from exc
            raise
        body = obj["Body"].read(MAX_SPEC_BYTES + 1)
        obj["Body"].close()
        if len(body) > MAX_SPEC_BYTES:
            raise SpecError(f"{key} is larger than {MAX_SPEC_BYTES} bytes")
        spec = parse_spec(body)
        if len(canonical_spec_json(spec)) > HYPERPARAMETER_MAX_CHARS:
            raise SpecError(
                f"the spec is longer than {HYPERPARAMETER_MAX_CHARS} characters as JSON, the most a training "
                "job's hyperparameter holds (list fewer features, or omit features to use every numeric column)"
            )
        return spec

    def _validate(self, obj: S3Object, spec: ModelSpec) -> DatasetReport | None:
        kwargs: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
        if obj.version_id:
            kwargs["VersionId"] = obj.version_id
        try:
            resp = self.s3.get_object(**kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        body = resp["Body"]
        try:
            size = resp.get("ContentLength")
            return validate_stream(
                body.iter_chunks(CHUNK), spec, self.limits, size=int(size) if size is not None else None
            )
        finally:
            body.close()

    def _reject(
        self, obj: S3Object, model: str | None, code: str, reason: str, report: DatasetReport | None = None
    ) -> dict[str, Any]:
        prefix = quarantine_prefix(obj.key, obj.version_id, obj.etag)
        copy_key = prefix + obj.key.rsplit("/", 1)[-1]
        source: dict[str, str] = {"Bucket": obj.bucket, "Key": obj.key}
        if obj.version_id:
            source["VersionId"] = obj.version_id
        copied: str | None = copy_key
        try:
            self.s3.copy(source, obj.bucket, copy_key)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise
            copied = None  # deleted meanwhile: the reason is still recorded
        doc = {
            "model": model,
            "code": code,
            "reason": reason,
            "dataset": {**obj.to_dict(), "etag": obj.etag, "size": obj.size},
            "quarantined_copy": copied,
            "report": report.to_dict() if report else None,
            "rejected_at": self.clock(),
        }
        self.s3.put_object(
            Bucket=obj.bucket,
            Key=prefix + "reason.json",
            Body=json.dumps(doc, indent=1, sort_keys=True).encode(),
            ContentType="application/json",
        )
        detail = {
            "model": model,
            "code": code,
            "reason": reason[:2000],
            "dataset": {**obj.to_dict(), "sha256": report.sha256 if report else None},
            "quarantine": f"s3://{obj.bucket}/{prefix}",
            "rows": report.rows if report else None,
            "duplicate_rate": report.duplicate_rate if report else None,
            "max_missing_rate": report.max_missing_rate if report else None,
        }
        self.bus.publish("DatasetRejected", detail)
        logger.info("dataset rejected", extra={"model": model, "code": code, "key": obj.key})
        return {"status": "rejected", "model": model, "code": code, "reason": reason, "quarantine": prefix}

    def _accept(self, obj: S3Object, model: str, spec: ModelSpec, report: DatasetReport) -> dict[str, Any]:
        assert report.sha256 is not None
        spec_sha = spec_sha256(spec)
        job = job_name(model, report.sha256, spec_sha, self.settings.job_prefix)
        try:
            backend = self.backends(spec.training.backend)
        except BackendNotConfiguredError as exc:
            return self._reject(obj, model, exc.code, str(exc), report)
        req = JobRequest(
            job=job,
            model=model,
            spec=spec,
            spec_json=canonical_spec_json(spec),
            dataset_bucket=obj.bucket,
            dataset_key=obj.key,
            dataset_version_id=obj.version_id,
            dataset_sha256=report.sha256,
            rows=report.rows,
            registry_bucket=self.settings.registry_bucket,
            job_prefix=self.settings.job_prefix,
        )
        try:
            search = plan_search(backend, req)  # before the record: a search it cannot run starts nothing
        except SearchNotSupportedError as exc:
            return self._reject(obj, model, exc.code, str(exc), report)
        dataset = {**obj.to_dict(), "sha256": report.sha256, "rows": report.rows}
        record = {
            "job": job,
            "model": model,
            "backend": backend.name,
            "dataset": dataset,
            "spec": spec.model_dump(mode="json"),
            "spec_sha256": spec_sha,
            "created_at": self.clock(),
            "staging_prefix": req.staging_prefix,
            "hyperparameters": req.hyperparameters(),
            **({"search": search} if search is not None else {}),
            "validation": {
                k: v
                for k, v in report.to_dict().items()
                if k not in ("problems", "columns", "ok", "code", "reason")
            },
        }
        created = self._create(f"jobs/{job}.json", record)
        marker = f"jobs/{job}.started.json"
        if not created and self._exists(marker):
            logger.info("job already started for this data and spec", extra={"job": job, "key": obj.key})
            return {"status": "duplicate", "model": model, "job": job, "backend": backend.name}
        started: StartedJob = backend.start(req)  # raises BackendError: the event is retried
        # Published whenever the started marker is absent (at least once): an attempt that started
        # the job but died before the marker is retried, and the retry must still announce it.
        self.bus.publish(
            "TrainingJobStarted",
            {
                "model": model,
                "job": job,
                "backend": backend.name,
                "job_id": started.id,
                "dataset": dataset,
                "spec_sha256": spec_sha,
                "rows": report.rows,
                "duplicate_rate": report.duplicate_rate,
                "max_missing_rate": report.max_missing_rate,
                **({"search": search} if search is not None else {}),
            },
        )
        self._create(
            marker, {"job": job, "backend": backend.name, "id": started.id, "started_at": self.clock()}
        )
        logger.info("training job started", extra={"job": job, "backend": backend.name, "model": model})
        return {"status": "started", "model": model, "job": job, "backend": backend.name, "id": started.id}

    # ------------------------------------------------------------------ registry objects
    def _create(self, key: str, doc: dict[str, Any]) -> bool:
        try:
            self.s3.put_object(
                Bucket=self.settings.registry_bucket,
                Key=key,
                Body=json.dumps(doc, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
            return True
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                return False
            raise

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.settings.registry_bucket, Key=key)
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise


def _brief(record: Any) -> dict[str, Any]:
    obj = parse_record(record)
    return obj.to_dict() if obj else {"record": str(record)[:200]}


def build(
    settings: TrainTriggerSettings,
    client: Callable[[str], Any],
    persistence: BasePersistenceLayer | None = None,
) -> TrainTrigger:
    """The stage wired to real clients (``client(service)``; the handler passes ``modelops.aws.client``)."""
    if persistence is None and settings.idempotency_table:
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        persistence = DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=client("dynamodb")
        )
    return TrainTrigger(
        s3=client("s3"),
        bus=EventBus(client("events"), settings.event_bus_name),
        settings=settings,
        backends=make_backend_factory(settings, client),
        persistence=persistence,
    )
