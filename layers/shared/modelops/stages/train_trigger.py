"""The train_trigger stage: a CSV dropped under ``datasets/{model}/`` starts exactly one training job.

For each S3 ``ObjectCreated`` record (docs/training.md has the whole story):

1. The key must be ``datasets/{model}/....csv`` (or ``.csv.gz``, ``.parquet``); the spec is
   ``datasets/{model}/model.json`` (missing or invalid: the dataset is rejected with that reason).
2. The object version named by the record is streamed and validated (``modelops.domain.dataset``),
   against production's input schema and classes when the model has a production version (schema
   continuity: ``schema_changed`` unless the spec says ``"schema": "reset"`` or lists new features;
   label sanity: ``class_coverage``). Its rows are spooled as plain CSV for the split (a Parquet object
   is spooled as stored first: its footer comes last).
3. Rejected: the object is copied to ``quarantine/{model}/{rest of key}/{version}/`` beside a
   ``reason.json``, the original is left alone, and a ``DatasetRejected`` event goes out. No job.
4. Accepted: the job name is derived from the stack, the model and the dataset's and the spec's SHA-256
   (``job_name``); the platform splits the rows by content (``modelops.domain.split``): the training
   rows go to ``inputs/{model}/{job}/train.csv`` (the job's only input), the evaluation rows to
   ``evaluation/{model}/heldout/{sha256}.csv`` (the gate's); the job record ``jobs/{job}.json`` is
   created (create-only) in the registry bucket with both SHA-256s, the backend (``modelops.compute``)
   starts the job, a ``TrainingJobStarted`` event goes out, and ``jobs/{job}.started.json`` marks it
   done. Under schema continuity, production's input schema goes beside the train rows
   (``inputs/{model}/{job}/input_schema.json``, in the job's ``train`` channel): the job keeps it.
   Script mode (spec ``training.entry_point``): ``datasets/{model}/code/`` is checked and packed into a
   deterministic archive (``code/{model}/{sha256}.tar.gz``, create-only) whose SHA-256 joins the job
   name, the record's and the event's ``code``; a bad folder is a rejection (``bad_code``). A file under
   ``code/`` (or ``score/``) is never a dataset.
   A dataset of many parts (``datasets/{model}/{name}/part-*``) starts nothing part by part: its
   ``_SUCCESS`` marker starts ``DatasetStateMachine`` (:class:`ExecutionStarter`), whose reduce step
   comes back here (:meth:`TrainTrigger._accept` with the parts' split; :mod:`modelops.stages.dataset_parts`).
   A ``datasets/{model}/eval/*.csv`` upload is a pinned evaluation set instead: validated against
   the model's columns and classes, stored, pointed at by ``evaluation/{model}/pinned.json``; no job.
5. The backend refuses the request itself (``JobRejectedError``: SageMaker's ``ValidationException`` for an
   instance type it does not offer or a name it does not take): the job record is marked ``rejected``
   (its claim released: the next attempt at the same dataset and spec takes it over and starts the job,
   so a corrected stack trains the same upload once) and the dataset is rejected as in 3, naming the
   field. Never retried: the same request cannot succeed.

Idempotency, three layers deep: Powertools Idempotency (DynamoDB, applied in :func:`assemble`) keyed by
bucket/key/version id (plus ETag, so an unversioned bucket still works) answers a replayed record from
its cache; a record that gets past it (expired, or the same bytes under another key) finds the job
record and the started marker and stops ("duplicate"); and the backends treat "that name is taken" as
started. Failures that retrying may fix raise, so Lambda's retries and then the DLQ keep the event;
failures it cannot fix (a bad spec, dataset or request) are rejections.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from pydantic import Field

from modelops import aws
from modelops.compute import (
    HYPERPARAMETER_MAX_CHARS,
    MAX_CODE_BYTES,
    MAX_CODE_FILES,
    BatchBackend,
    CodeArchive,
    CodeRejectedError,
    JobRejectedError,
    JobRequest,
    LocalBackend,
    SageMakerBackend,
    StartedJob,
    TrainingBackend,
    check_code_listing,
    package_code,
    plan_search,
)
from modelops.domain.dataset import (
    CHUNK,
    DatasetReport,
    Limits,
    Problem,
    Production,
    validate_evaluation_stream,
    validate_file,
    validate_stream,
)
from modelops.domain.encoding import InputSchema, SchemaError
from modelops.domain.errors import (
    AliasNotFoundError,
    BackendNotConfiguredError,
    ModelNotFoundError,
    SearchNotSupportedError,
    SpecError,
    SpecMissingError,
    VersionNotFoundError,
)
from modelops.domain.formats import format_of
from modelops.domain.spec import MODEL_NAME_RE, ModelSpec, SpendPolicy, parse_spec
from modelops.domain.split import SplitPlan, check_split, project_csv, split_csv
from modelops.stages.runtime import StageSettings, idempotent, logger
from modelops.storage.datasets import CodeFolderError, DatasetStore
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.events import EventBus
from modelops.storage.jobs import JobStore
from modelops.storage.registry import Registry
from modelops.storage.s3 import ObjectStore

MAX_SPEC_BYTES = 256 * 1024
IDEMPOTENCY_KEY = "[s3.bucket.name, s3.object.key, s3.object.versionId, s3.object.eTag]"
IDEMPOTENCY_KEY_PREFIX = "modelops-train-trigger"
JOB_PREFIX_RE = r"^[a-z][a-z0-9-]{1,20}$"


# ---------------------------------------------------------------------------- names
def spec_sha256(spec: ModelSpec) -> str:
    """SHA-256 of the spec's canonical JSON (every field, defaults included, sorted keys)."""
    return hashlib.sha256(canonical_spec_json(spec).encode()).hexdigest()


def canonical_spec_json(spec: ModelSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def job_name(
    model: str,
    dataset_sha256: str,
    spec_sha256: str,
    prefix: str = "modelops",
    *,
    stack: str = "",
    code_sha256: str = "",
) -> str:
    """``{prefix}-{model}-{sha256(stack, model, dataset_sha256, spec_sha256[, code_sha256])[:12]}``
    (docs/contracts.md "Jobs"). ``code_sha256``: a script-mode job's packaged script (a code change
    trains again, the same code and data never twice); without one the name is what it always was.

    At most 63 characters (SageMaker's limit): a long model name is cut to fit (the job record carries the
    full name). The same data with the same spec for the same model in the same stack always gives the
    same name, so every attempt at one job finds its own submission; the digest covers the full model
    name and ``stack`` (the stack's registry bucket, a globally unique name), so two different jobs never
    share one: not two models whose cut names agree, not two stacks with the same ``JobPrefix`` in one
    account (SageMaker would answer the second ``ResourceInUse``, and Batch, which does not refuse a
    duplicate name, would let the name lookup find the other job).
    """
    if not re.match(JOB_PREFIX_RE, prefix):
        raise ValueError(f"invalid job prefix {prefix[:30]!r}")
    if not MODEL_NAME_RE.match(model):
        raise SpecError(f"invalid model name {model[:60]!r}")
    identity = "\n".join(
        (stack, model, dataset_sha256, spec_sha256, *((code_sha256,) if code_sha256 else ()))
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    room = 63 - len(prefix) - len(digest) - 2
    return f"{prefix}-{model[:room].rstrip('-')}-{digest}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------- settings
class Settings(StageSettings):
    """train_trigger's environment (template.yaml sets these variables)."""

    registry_bucket: str = Field(min_length=3)
    job_prefix: str = Field(default="modelops", pattern=JOB_PREFIX_RE)
    idempotency_table: str = ""
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    training_role_arn: str = ""
    training_image_uri: str = ""
    batch_job_queue: str = ""
    batch_job_definition: str = ""
    modelops_local_training_url: str = ""
    """When set (the local twin), every job goes to the twin's training service."""
    modelops_local_token: str = ""
    """The twin's session token for its training service (the twin sets it beside the URL)."""
    aws_region: str = ""
    aws_default_region: str = ""
    event_bus_name: str = "default"
    max_dataset_rows: int = Field(default=5_000_000, ge=1)
    max_dataset_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_missing_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_duplicate_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    allowed_instance_types: str = ""
    """Comma-separated (template ``TrainingInstanceTypes``); empty allows any."""
    max_parallel_trials: int = Field(default=0, ge=0)
    """Template ``TrainingMaxParallelTrials``; 0 leaves the spec's own cap."""
    max_code_files: int = Field(default=MAX_CODE_FILES, ge=1, le=10_000)
    """Script mode: the most files ``datasets/{model}/code/`` may hold."""
    max_code_bytes: int = Field(default=MAX_CODE_BYTES, ge=1, le=200 * 1024 * 1024)
    """Script mode: the most bytes ``datasets/{model}/code/`` may hold in all."""
    dataset_state_machine_arn: str = ""
    """``DatasetStateMachine``: a dataset folder's ``_SUCCESS`` starts it (docs/training.md "Datasets of
    many parts"); empty: such a marker is ignored."""
    max_runtime_seconds: int = Field(default=86_400, ge=60, le=28 * 86_400)
    """Template ``TrainingMaxRuntimeSeconds``: every job's StoppingCondition (IAM caps it too)."""

    @property
    def region(self) -> str:
        """``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else us-east-1."""
        return self.aws_region or self.aws_default_region or "us-east-1"

    def spend(self) -> SpendPolicy:
        return SpendPolicy.parse(self.allowed_instance_types, self.max_parallel_trials)

    def limits(self) -> Limits:
        return Limits(
            max_bytes=self.max_dataset_bytes,
            max_rows=self.max_dataset_rows,
            max_missing_rate=self.max_missing_rate,
            max_duplicate_rate=self.max_duplicate_rate,
        )


def make_backend_factory(
    settings: Settings, client: Callable[[str], Any], jobs: JobStore
) -> Callable[[str], TrainingBackend]:
    """Backends by spec name, built on first use. With a local training URL every name maps to the twin.
    A SageMaker job on the AWS TensorFlow image gets the trainer uploaded through ``jobs``."""
    cache: dict[str, TrainingBackend] = {}

    def build(name: str) -> TrainingBackend:
        if settings.modelops_local_training_url:
            return LocalBackend(
                settings.modelops_local_training_url,
                role_arn=settings.training_role_arn,
                token=settings.modelops_local_token,
            )
        if name == "sagemaker":
            if not settings.training_role_arn:
                raise BackendNotConfiguredError(
                    "this stack has no training role (TRAINING_ROLE_ARN) for SageMaker"
                )
            return SageMakerBackend(
                client("sagemaker"),
                role_arn=settings.training_role_arn,
                region=settings.region,
                image_uri=settings.training_image_uri,
                sources=jobs,
                max_runtime_s=settings.max_runtime_seconds,
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
        key = "local" if settings.modelops_local_training_url else name
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


# ---------------------------------------------------------------------------- the stage
class TrainTrigger:
    """The train_trigger stage. Takes its stores, event bus and backends as arguments; ``process`` is
    what ``handle_event`` runs per record (:meth:`process_record`, made idempotent by :func:`assemble`)."""

    def __init__(
        self,
        *,
        datasets: DatasetStore,
        jobs: JobStore,
        bus: EventBus,
        settings: Settings,
        backends: Callable[[str], TrainingBackend],
        clock: Callable[[], str] = _now,
        evaluation: EvaluationStore | None = None,
        registry: Registry | None = None,
    ):
        self.datasets = datasets
        self.jobs = jobs
        self.evaluation = evaluation if evaluation is not None else EvaluationStore(jobs.objects)
        """Where the evaluation rows go (the registry bucket's ``models/{model}/evaluation/``)."""
        self.registry = registry if registry is not None else Registry.over(jobs.objects)
        """Read only: production's schema, for a pinned evaluation set's columns and classes."""
        self.bus = bus
        self.settings = settings
        self.backends = backends
        self.limits = settings.limits()
        self.clock = clock
        self.process: Callable[..., dict[str, Any]] = self.process_record
        self.start_parts: Callable[[S3Object, str, str], dict[str, Any]] | None = None
        """Starts a dataset folder's validation (:class:`ExecutionStarter`) on its ``_SUCCESS``."""
        self.idempotency: Any = None
        """Powertools' IdempotencyConfig when ``process`` is idempotent (the Lambda context is registered on it)."""

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
                results.append(self.process(record=record))
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
        folder = self.datasets.marker_folder(obj.key)
        if folder is not None:  # a dataset of many parts is complete: validate its parts in parallel
            if self.start_parts is None:
                return {"status": "ignored", "reason": "datasets of parts are not enabled", "key": obj.key}
            if not MODEL_NAME_RE.match(folder[0]):
                return self._reject(obj, folder[0], "bad_key", f"invalid model name in {obj.key[:120]!r}")
            return self.start_parts(obj, *folder)
        if not self.datasets.is_dataset(obj.key):
            return {
                "status": "ignored",
                "reason": "not a datasets/{model}/*.csv, *.csv.gz or *.parquet object",
                "key": obj.key,
            }
        model = self.datasets.model_of(obj.key)
        if not model or not MODEL_NAME_RE.match(model):
            return self._reject(
                obj,
                model,
                "bad_key",
                "datasets must be uploaded as datasets/{model}/NAME.csv (.csv.gz, .parquet) with a model "
                f"name of lower-case letters, digits and dashes (got {obj.key[:120]!r})",
            )
        evaluation_set = self.datasets.is_eval_dataset(obj.key)
        try:
            spec = self._load_spec(obj.bucket, model)
            if not evaluation_set:  # an evaluation set spends nothing
                self.settings.spend().check(spec)
        except SpecError as exc:
            return self._reject(obj, model, exc.code, str(exc), field=getattr(exc, "field", None))
        # The object is spooled to a local file while it is validated (memory stays flat): the
        # platform's split (or the pinned set's rewrite) reads it from there, not from S3 again.
        with tempfile.TemporaryDirectory(prefix="modelops-train-trigger-") as tmp:
            work = Path(tmp)
            if evaluation_set:
                return self._pin(obj, model, spec, work)
            try:
                production = self._production(model, spec)
            except SchemaError as exc:
                return self._reject(
                    obj,
                    model,
                    "schema_unreadable",
                    f"production's input schema cannot be read ({exc}), so this dataset cannot be checked "
                    'against it; to train a new schema, say "schema": "reset" in the spec',
                )
            report = self._validate(obj, spec, work / "dataset.csv", production=production)
            if report is None:
                logger.warning(
                    "object is gone; nothing to train", extra={"key": obj.key, "version_id": obj.version_id}
                )
                return {"status": "gone", "model": model, "key": obj.key}
            if not report.ok:
                return self._reject(obj, model, report.code or "invalid_dataset", report.reason, report)
            return self._accept(obj, model, spec, report, work, production)

    # ------------------------------------------------------------------ steps
    def _load_spec(self, bucket: str, model: str) -> ModelSpec:
        key = self.datasets.spec_key(model)
        body = self.datasets.read_spec(bucket, model, MAX_SPEC_BYTES)
        if body is None:
            raise SpecMissingError(f"no model spec: upload {key} before the dataset (docs/training.md)")
        if len(body) > MAX_SPEC_BYTES:
            raise SpecError(f"{key} is larger than {MAX_SPEC_BYTES} bytes")
        spec = parse_spec(body)
        if len(canonical_spec_json(spec)) > HYPERPARAMETER_MAX_CHARS:
            raise SpecError(
                f"the spec is longer than {HYPERPARAMETER_MAX_CHARS} characters as JSON, the most a training "
                "job's hyperparameter holds (list fewer features, or omit features to use every numeric column)"
            )
        return spec

    def _validate(
        self,
        obj: S3Object,
        spec: ModelSpec,
        spool: Path,
        validate: Callable[..., DatasetReport] = validate_stream,
        **kwargs: Any,
    ) -> DatasetReport | None:
        """Stream the object version through ``validate``, writing its rows to ``spool`` as plain CSV;
        None when the version is gone. A Parquet object is first copied as stored (its footer is at the
        end) beside ``spool``, then validated from there."""
        fmt = format_of(obj.key) or "csv"
        with self.datasets.open(obj.bucket, obj.key, obj.version_id, CHUNK) as found:
            if found is None:
                return None
            chunks, size = found
            with open(spool, "w", encoding="utf-8", newline="") as sink:
                if fmt != "parquet":
                    return validate(chunks, spec, self.limits, size=size, fmt=fmt, sink=sink, **kwargs)
                stored = spool.with_suffix(".parquet")
                with open(stored, "wb") as fh:
                    for chunk in _bounded(chunks, self.limits.max_bytes + 1):
                        fh.write(chunk)
                if validate is validate_stream:
                    return validate_file(stored, spec, self.limits, fmt=fmt, sink=sink, **kwargs)
                return validate(
                    iter(()), spec, self.limits, size=size, fmt=fmt, sink=sink, path=stored, **kwargs
                )

    def _package_code(self, bucket: str, model: str, entry_point: str) -> CodeArchive:
        """The model's code folder (``datasets/{model}/code/``), checked and packaged: names, count and size
        are checked on the listing before a byte is read, then again on what was read."""
        limits = {"max_files": self.settings.max_code_files, "max_bytes": self.settings.max_code_bytes}
        listed = self.datasets.list_code(bucket, model, max_files=limits["max_files"])
        check_code_listing([(o.name, o.size) for o in listed], entry_point, **limits)
        files: dict[str, bytes] = {}
        left = limits["max_bytes"]
        for obj in listed:
            body = self.datasets.read_code(bucket, obj, left)
            if len(body) > left:
                raise CodeRejectedError(
                    f"the code folder grew past {limits['max_bytes']} bytes while it was read"
                )
            files[obj.name] = body
            left -= len(body)
        archive = package_code(files, entry_point, **limits)
        logger.info(
            "training script packaged",
            extra={"model": model, "sha256": archive.sha256, "files": len(files), "entry_point": entry_point},
        )
        return archive

    def _production_manifest(self, model: str) -> tuple[int, Any] | None:
        """The version production serves and its manifest, None without one."""
        try:
            version = self.registry.resolve(model)
            return version, self.registry.get_manifest(model, version)
        except (ModelNotFoundError, AliasNotFoundError, VersionNotFoundError):
            return None

    def _production_schema(self, model: str) -> dict[str, Any] | None:
        """The schema (features, classes) of the version production serves, None without one."""
        found = self._production_manifest(model)
        schema = found[1].get("schema") if found is not None else None
        return schema if isinstance(schema, dict) else None

    def _production(self, model: str, spec: ModelSpec) -> Production | None:
        """What a new dataset is held to (docs/training.md "Schema continuity"): production's input schema,
        unless the spec resets it (``"schema": "reset"``) or lists other features than production's spec
        did, or production is a tensor model (its signature is its script's: the gate compares only
        versions of the same signature); and, for classification, production's classes. None without a
        production version."""
        found = self._production_manifest(model)
        if found is None:
            return None
        version, manifest = found
        doc = manifest.get("schema")
        if not isinstance(doc, dict):
            return None
        classes = doc.get("classes") if spec.task != "regression" else None
        schema: InputSchema | None = None
        tensor = "inputs" in doc  # a tensor model's input is what its script makes of the columns
        if spec.schema_mode == "keep" and not tensor and not _features_changed(spec, manifest.get("spec")):
            schema = InputSchema.from_dict(doc)  # SchemaError: the dataset is rejected, naming it
        return Production(version, schema, list(classes) if isinstance(classes, list) else None)

    def _pin(self, obj: S3Object, model: str, spec: ModelSpec, work: Path) -> dict[str, Any]:
        """A pinned evaluation set (``datasets/{model}/eval/*.csv``): validated against the model's columns
        and classes, stored as features-then-target and pointed at by ``pinned.json``. Never a training
        trigger."""
        schema = self._production_schema(model) or {}
        features = spec.features
        kinds: dict[str, str] = {}
        if isinstance(schema.get("features"), list):
            # schema.json: [{"name", "type", ...}, ...] (a plain list of names is read too)
            named = [f if isinstance(f, dict) else {"name": f} for f in schema["features"]]
            kinds = {str(f.get("name")): str(f.get("type", "numeric")) for f in named}
            if features is None:
                features = [str(f.get("name")) for f in named]
        classes = None
        if spec.task != "regression" and isinstance(schema.get("classes"), list):
            classes = list(schema["classes"])
        spool = work / "eval.csv"
        report = self._validate(
            obj, spec, spool, validate_evaluation_stream, features=features, classes=classes, kinds=kinds
        )
        if report is None:
            return {"status": "gone", "model": model, "key": obj.key}
        if not report.ok:
            return self._reject(obj, model, report.code or "invalid_dataset", report.reason, report)
        columns = [*report.features, spec.target]
        side = project_csv(spool, report.columns, columns, work / "pinned.csv")
        doc = self.evaluation.set_pinned_file(
            model,
            work / "pinned.csv",
            side.sha256,
            {
                "model": model,
                "rows": side.rows,
                "columns": columns,
                "classes": report.classes,
                "source": {**obj.to_dict(), "etag": obj.etag, "sha256": report.sha256},
                "at": self.clock(),
            },
        )
        logger.info(
            "pinned evaluation set stored",
            extra={"model": model, "key": obj.key, "rows": side.rows, "sha256": side.sha256},
        )
        return {
            "status": "pinned",
            "model": model,
            "key": doc["key"],
            "sha256": side.sha256,
            "rows": side.rows,
        }

    def _split_file(
        self, spec: ModelSpec, report: DatasetReport, work: Path, model: str, job: str
    ) -> StagedSplit:
        """The split of a single spooled dataset (``work/dataset.csv``)."""
        plan = SplitPlan.for_dataset(spec, report.columns, report.features)
        split = split_csv(work / "dataset.csv", plan, work / "train.csv", work / "evaluation.csv", spec.task)

        def store() -> dict[str, Any]:
            staged = self.jobs.put_train_rows(model, job, split.train.path)
            heldout_key = self.evaluation.put_heldout_file(
                model, split.evaluation.path, split.evaluation.sha256
            )
            summary = split.record()
            summary["train"].update(key=staged["key"], uri=staged["uri"], version_id=staged["version_id"])
            summary["evaluation"].update(key=heldout_key, uri=self.jobs.staging_uri(heldout_key))
            return summary

        return StagedSplit(
            train_key=self.jobs.staging_train_key(model, job),
            train_sha256=split.train.sha256,
            train_rows=split.train.rows,
            evaluation_rows=split.evaluation.rows,
            problem=check_split(split, spec, self.limits),
            store=store,
        )

    def _reject(
        self,
        obj: S3Object,
        model: str | None,
        code: str,
        reason: str,
        report: DatasetReport | None = None,
        *,
        field: str | None = None,
        job: str | None = None,
    ) -> dict[str, Any]:
        """Quarantine the dataset version and announce ``DatasetRejected`` (``field``: what to correct,
        when known; ``job``: the job a backend refused)."""
        named = {"field": field} if field else {}
        doc = {
            "model": model,
            "code": code,
            "reason": reason,
            **named,
            **({"job": job} if job else {}),
            "dataset": {**obj.to_dict(), "etag": obj.etag, "size": obj.size},
            "report": report.to_dict() if report else None,
            "rejected_at": self.clock(),
        }
        quarantined = self.datasets.quarantine(obj.bucket, obj.key, obj.version_id, obj.etag, doc)
        detail = {
            "model": model,
            "code": code,
            "reason": reason[:2000],
            **named,
            **({"job": job} if job else {}),
            "dataset": {**obj.to_dict(), "sha256": report.sha256 if report else None},
            "quarantine": quarantined.uri,
            "rows": report.rows if report else None,
            "duplicate_rate": report.duplicate_rate if report else None,
            "max_missing_rate": report.max_missing_rate if report else None,
            "warnings": report.warnings[:20] if report else [],
        }
        self.bus.publish("DatasetRejected", detail)
        logger.info("dataset rejected", extra={"model": model, "code": code, "key": obj.key})
        return {
            "status": "rejected",
            "model": model,
            "code": code,
            "reason": reason,
            **named,
            **({"job": job} if job else {}),
            "quarantine": quarantined.prefix,
        }

    def _accept(
        self,
        obj: S3Object,
        model: str,
        spec: ModelSpec,
        report: DatasetReport,
        work: Path,
        production: Production | None = None,
        *,
        split: SplitFn | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start the one training job of an accepted dataset. ``split``: how the platform's split is made
        and stored (default: the spooled single file, :meth:`_split_file`; a dataset of parts brings its
        own, :mod:`modelops.stages.dataset_parts`); ``lineage``: more about the dataset for the record and
        the event (a dataset of parts: its folder and parts)."""
        assert report.sha256 is not None
        spec_sha = spec_sha256(spec)
        code: CodeArchive | None = None
        if spec.training.entry_point:  # script mode: the code joins the data in the job's identity
            try:
                code = self._package_code(obj.bucket, model, spec.training.entry_point)
            except (CodeRejectedError, CodeFolderError) as exc:
                return self._reject(obj, model, exc.code, str(exc), report, field="training.entry_point")
        job = job_name(
            model,
            report.sha256,
            spec_sha,
            self.settings.job_prefix,
            stack=self.jobs.bucket,
            code_sha256=code.sha256 if code else "",
        )
        try:
            backend = self.backends(spec.training.backend)
        except BackendNotConfiguredError as exc:
            return self._reject(obj, model, exc.code, str(exc), report)
        if self.jobs.is_started(job):  # a replay: the job runs already, no need to split again
            logger.info("job already started for this data and spec", extra={"job": job, "key": obj.key})
            return {"status": "duplicate", "model": model, "job": job, "backend": backend.name}
        # The platform's split: training rows for the job, evaluation rows kept for the gate.
        staging = (split or self._split_file)(spec, report, work, model, job)
        if staging.problem is not None:
            return self._reject(obj, model, staging.problem.code, staging.problem.message, report)
        train_key = staging.train_key
        kept = production.schema if production is not None else None
        schema_key = ""
        if kept is not None:  # schema continuity: the job trains on exactly production's input schema
            schema_key = self.datasets.put_input_schema(
                self.jobs.bucket, model, job, {"features": kept.to_list()}
            )
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
            registry_bucket=self.jobs.bucket,
            output_prefix=self.jobs.output_prefix(model),
            artifact_key=self.jobs.artifact_key(model, job),
            trials_prefix=self.jobs.trials_prefix(model, job),
            job_prefix=self.settings.job_prefix,
            train_key=train_key,
            train_sha256=staging.train_sha256,
            train_rows=staging.train_rows,
            input_schema_key=schema_key,
        )
        code_doc: dict[str, Any] | None = None
        if code is not None:  # create-only and content-addressed: a retry finds the same bytes
            code_uri = self.datasets.put_code_archive(self.jobs.bucket, model, code.sha256, code.body)
            code_doc = code.lineage(code_uri)
            req = dataclasses.replace(req, code_uri=code_uri, code_sha256=code.sha256)
        try:
            search = plan_search(backend, req)  # before the record: a search it cannot run starts nothing
        except SearchNotSupportedError as exc:
            return self._reject(obj, model, exc.code, str(exc), report)
        # Both sides are stored before the record names them (a retry writes the same bytes again).
        summary = staging.store()
        dataset = {**obj.to_dict(), "sha256": report.sha256, "rows": report.rows, **(lineage or {})}
        record = {
            "job": job,
            "model": model,
            "backend": backend.name,
            "dataset": dataset,
            "spec": spec.model_dump(mode="json"),
            "spec_sha256": spec_sha,
            "created_at": self.clock(),
            "staging_prefix": self.jobs.staging_prefix(model, job),
            "hyperparameters": req.hyperparameters(),
            **({"search": search} if search is not None else {}),
            **({"code": code_doc} if code_doc is not None else {}),
            "split": summary,
            "validation": {
                k: v
                for k, v in report.to_dict().items()
                if k not in ("problems", "columns", "ok", "code", "reason")
            },
        }
        created = self.jobs.create_record(job, record)
        if not created and self.jobs.is_started(job):
            logger.info("job already started for this data and spec", extra={"job": job, "key": obj.key})
            return {"status": "duplicate", "model": model, "job": job, "backend": backend.name}
        try:
            started: StartedJob = backend.start(req)  # raises BackendError: the event is retried
        except JobRejectedError as exc:  # the request itself is invalid: retrying cannot help
            self.jobs.mark_rejected(
                job, {"code": exc.code, "reason": str(exc)[:2000], "field": exc.field, "at": self.clock()}
            )
            return self._reject(obj, model, exc.code, str(exc), report, field=exc.field, job=job)
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
                "split": {"train_rows": staging.train_rows, "evaluation_rows": staging.evaluation_rows},
                "duplicate_rate": report.duplicate_rate,
                "max_missing_rate": report.max_missing_rate,
                "warnings": report.warnings[:20],
                **(
                    {"input_schema": f"production v{production.version}"}
                    if kept is not None and production
                    else {}
                ),
                **({"search": search} if search is not None else {}),
                **({"code": {**code_doc, "files": len(code_doc["files"])}} if code_doc is not None else {}),
            },
        )
        self.jobs.mark_started(
            job, {"job": job, "backend": backend.name, "id": started.id, "started_at": self.clock()}
        )
        logger.info("training job started", extra={"job": job, "backend": backend.name, "model": model})
        return {"status": "started", "model": model, "job": job, "backend": backend.name, "id": started.id}


@dataclass
class StagedSplit:
    """The platform's split of an accepted dataset, ready to store: the job's ``train`` key (a file,
    or a folder ending in ``/`` for a dataset of parts), both sides' counts, the split's verdict
    (``problem``), and ``store`` (writes both sides, returns the job record's ``split`` summary)."""

    train_key: str
    train_sha256: str
    train_rows: int
    evaluation_rows: int
    problem: Problem | None
    store: Callable[[], dict[str, Any]]


SplitFn = Callable[[ModelSpec, DatasetReport, Path, str, str], StagedSplit]
"""``(spec, report, work, model, job) -> StagedSplit``."""


def _bounded(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The chunks until ``limit`` bytes have passed (the validator then says ``too_large``)."""
    seen = 0
    for chunk in chunks:
        yield chunk
        seen += len(chunk)
        if seen >= limit:
            return


def _features_changed(spec: ModelSpec, production_spec: Any) -> bool:
    """Does ``spec`` list other features (names or declared types) than production's spec did? Then the
    spec says the input schema changes (no continuity). A spec listing none changes nothing."""
    if spec.features is None:
        return False
    theirs = production_spec.get("features") if isinstance(production_spec, dict) else None
    types = production_spec.get("feature_types") if isinstance(production_spec, dict) else None
    return spec.features != theirs or dict(spec.feature_types) != (types if isinstance(types, dict) else {})


def _brief(record: Any) -> dict[str, Any]:
    obj = parse_record(record)
    return obj.to_dict() if obj else {"record": str(record)[:200]}


# ---------------------------------------------------------------------------- datasets of many parts
def execution_name(obj: S3Object) -> str:
    """The execution of one marker version: ``dataset-{sha256(bucket, key, version, etag)[:40]}``
    (Step Functions keeps a name for 90 days: a replayed record finds it taken)."""
    ident = "\n".join((obj.bucket, obj.key, obj.version_id or "", obj.etag or ""))
    return "dataset-" + hashlib.sha256(ident.encode()).hexdigest()[:40]


@dataclass
class ExecutionStarter:
    """``StartExecution`` of ``DatasetStateMachine`` for a folder's ``_SUCCESS`` (on the twin the
    functions' ``stepfunctions`` client reaches the twin's interpreter: ``AWS_ENDPOINT_URL_SFN``)."""

    state_machine_arn: str
    client: Callable[[str], Any]

    def __call__(self, obj: S3Object, model: str, folder: str) -> dict[str, Any]:
        name = execution_name(obj)
        request = {"marker": {**obj.to_dict(), "etag": obj.etag}, "model": model, "folder": folder}
        try:
            self.client("stepfunctions").start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(request)
            )
            started = True
        except aws.AwsError as exc:
            if aws.error_code(exc) != "ExecutionAlreadyExists":
                raise
            started = False
        logger.info("dataset of parts: validation started", extra={"folder": folder, "execution": name})
        return {
            "status": "validating" if started else "duplicate",
            "model": model,
            "folder": folder,
            "execution": name,
        }


def make_starter(settings: Settings, client: Callable[[str], Any]) -> ExecutionStarter:
    return ExecutionStarter(state_machine_arn=settings.dataset_state_machine_arn, client=client)


# ---------------------------------------------------------------------------- wiring
def assemble(settings: Settings, client: Callable[[str], Any]) -> TrainTrigger:
    """The stage wired to ``client(service)`` clients: stores, event bus, backends and, with an
    idempotency table, Powertools Idempotency around each record."""
    s3 = client("s3")
    jobs = JobStore(ObjectStore(s3, settings.registry_bucket))
    stage = TrainTrigger(
        datasets=DatasetStore(s3),
        jobs=jobs,
        bus=EventBus(client("events"), settings.event_bus_name),
        settings=settings,
        backends=make_backend_factory(settings, client, jobs),
    )
    if settings.dataset_state_machine_arn:
        stage.start_parts = make_starter(settings, client)
    if settings.idempotency_table:
        stage.process, stage.idempotency = idempotent(
            stage.process_record,
            table=settings.idempotency_table,
            dynamodb=client("dynamodb"),
            key_jmespath=IDEMPOTENCY_KEY,
            expires_after_seconds=settings.idempotency_ttl_seconds,
            data_keyword_argument="record",
            raise_on_no_idempotency_key=True,
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )
    return stage


@functools.cache
def build() -> TrainTrigger:
    """The stage of this container: settings from the environment, clients from ``modelops.aws``; once."""
    return assemble(Settings(), aws.client)
