"""The convert stage: a finished training job -> a verified registry version -> ``ModelVersionPublished``.

:func:`run` is what ``functions/convert/app.py`` calls: the stage built once per container by
:func:`build` (settings, clients, stores, and Powertools Idempotency keyed by job and status), then
:func:`handle_event` for the event. See docs/convert.md for the decisions and docs/contracts.md
("Jobs", "Registry artifacts") for the formats. The job records and staged archives are read through
:class:`~modelops.storage.jobs.JobStore`, versions are created through the
:class:`~modelops.storage.registry.Registry`; the decisions are the domain's (:mod:`modelops.domain.search`,
:mod:`modelops.domain.archive`). TensorFlow is imported lazily (``modelops.ml.convert``) only once a
completed job's artifact has been fetched, linked to the job and checked, so event routing and artifact
checks run (and are tested) without it.

Convert loads SavedModels, programs that a training job wrote: it may create versions (create-only blobs,
manifests, publish claims) but never moves an alias. The promotion gate is its own function
(:mod:`modelops.stages.gate`, triggered by the ``ModelVersionPublished`` event sent here; docs/convert.md
"Trust boundary"). The archive is picked by S3 object version, not by key: the job's archive key must
have been written exactly once (one version, no delete marker) within the job's run (:func:`run_window`),
and convert reads exactly that version (:func:`_written_once`). Before anything in it is loaded,
:meth:`JobStore.link_artifact` records its version id and SHA-256 for the job (create-only, on first
sight); a later delivery whose archive differs is refused. The manifest's ``training.artifact`` repeats them.

What happens to each event:

============================================  ==========================================================
event                                          outcome
============================================  ==========================================================
not a SageMaker/Batch job state change          ``ignored`` (logged)
non-terminal status (InProgress, RUNNING...)    ``ignored``
no ``jobs/{job}.json`` in the registry bucket   ``ignored``: another stack's job (a tuning job's own training
                                                jobs and Batch array children too: the search's event counts)
job Failed / Stopped / FAILED                   ``training_failed``: TrainingJobFailed event, registry untouched
a search in which no trial completed            ``training_failed`` (the reason lists the trials' errors)
artifact missing, truncated, unsafe, or         ``conversion_failed``: ConversionFailed event, no version,
lacks a file; spec invalid; unsupported op;     no retry (the same bytes fail the same way)
parity or serving budget failed
the archive key was written more than once,     ``conversion_failed``: ArtifactIntegrityFailed (reason
carries a delete marker, has no version id, or  ``artifact_tampered``: the versions and the window), then
its one version was written outside the job's   ConversionFailed (stage ``integrity``); nothing downloaded
run (± ``Options.clock_skew_seconds``)
the archive differs from the one first read     ``conversion_failed``: ArtifactIntegrityFailed (reason
for the job (``jobs/{job}.artifact.json``)      ``artifact_changed``), then ConversionFailed (stage
                                                ``integrity``); nothing loaded
a version was already published for the job     ``replayed``: no new version; ModelVersionPublished again
                                                (``replay: true``): the gate decides only if it never did
completed job                                   ``published``: one version, ModelVersionPublished (the gate
                                                function decides: ModelPromoted or PromotionRejected)
completed search (tuning job, Batch array job,  ``published``: the best trial's model, exactly like a single
or a job that ran its search itself)            run; every trial in the manifest's ``search``
S3 throttling / 5xx / network, EventBridge      raises: Lambda retries, then the DLQ keeps the event
failure, bugs
============================================  ==========================================================
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from modelops import aws
from modelops.domain import search as searching
from modelops.domain.archive import deterministic_targz, safe_extract
from modelops.domain.encoding import InputSchema, SchemaError
from modelops.domain.errors import (
    ArtifactInvalidError,
    ConversionError,
    CorruptDocumentError,
    IntegrityError,
    InvalidEventError,
    ModelOpsError,
    ParityError,
    ServingBudgetError,
    SpecError,
)
from modelops.domain.spec import ModelSpec, SearchSpec, check_model_name, parse_spec
from modelops.stages import runtime
from modelops.stages.runtime import logger
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.events import EventBus
from modelops.storage.jobs import ArtifactVersion, JobStore
from modelops.storage.registry import Manifest, Registry

if TYPE_CHECKING:  # pragma: no cover
    from modelops.domain import evaluation as evalrows
    from modelops.domain.signature import Signature
    from modelops.ml.convert import ConvertOutput

"""SageMaker's (and our) job-name rule; nothing else can be turned into an S3 key."""
REQUIRED_FILES = ("saved_model/saved_model.pb", "schema.json", "metrics.json", "baseline.json", "heldout.npz")


IMPORT_SOURCE = "import"
"""The job record's ``source`` of a model imported with `modelops models import`: the only job an S3
"Object Created" event of its archive converts."""


class EventSink(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Options:
    """Limits of the convert stage (sized for the template's 4 GB of /tmp and 3 GB of memory)."""

    max_artifact_bytes: int = 1024**3
    max_extracted_bytes: int = 2 * 1024**3
    max_members: int = 20_000
    max_tflite_bytes: int = 100 * 1024 * 1024
    max_single_row_latency_us: float = 50_000.0
    latency_calls: int = 200
    parity_max_rows: int = 10_000
    work_dir: str | None = None
    clock_skew_seconds: float = 60.0
    """How far an artifact's S3 write time may lie outside the job's run (clocks, S3's whole seconds)."""


@dataclass
class Deps:
    """What the convert stage works with, built once per warm container by :func:`build`."""

    registry: Registry
    bus: EventSink
    options: Options = field(default_factory=Options)
    sagemaker: Any = None
    """Needed for tuning job events only (DescribeHyperParameterTuningJob, ListTrainingJobsFor...)."""

    @functools.cached_property
    def jobs(self) -> JobStore:
        """Job records and staged archives: the registry bucket's ``jobs/`` and ``staging/``."""
        return JobStore(self.registry.objects)


@dataclass(frozen=True)
class JobEvent:
    job: str
    backend: str  # "sagemaker" | "batch"
    status: str  # "completed" | "failed" | "other"
    raw_status: str
    reason: str
    artifact_uri: str | None
    hyperparameters: dict[str, str]
    kind: str = "training"
    """``training`` (SageMaker or the twin), ``tuning`` (a SageMaker tuning job: ``job`` is its name until
    resolved), ``batch``."""
    array_index: int | None = None
    """Set for a child of a Batch array job (its parent's event is the one that counts)."""
    event_id: str | None = None
    """EventBridge's id of the event: the same on Lambda's retries and on a replay from the DLQ, so a
    retry may take over its own earlier publish claim at once (see Registry.publish_version)."""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    """When the job ran, as its backend reports it (SageMaker ``TrainingStartTime``/``TrainingEndTime``,
    Batch ``startedAt``/``stoppedAt``, a tuning job's best training job's): the artifact's run window."""


@dataclass
class Result:
    outcome: str  # ignored | training_failed | conversion_failed | published | replayed
    reason: str
    job: str | None = None
    model: str | None = None
    version: int | None = None
    error_code: str | None = None
    metrics: dict[str, tuple[str, float]] = field(default_factory=dict)
    """CloudWatch metrics for the handler to emit: name -> (unit, value)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "job": self.job,
            "model": self.model,
            "version": self.version,
            "error_code": self.error_code,
        }


@dataclass(frozen=True)
class JobRecord:
    job: str
    model: str
    backend: str
    spec: ModelSpec | None
    """None when the record's spec does not parse (``spec_error`` says why)."""
    doc: dict[str, Any]
    spec_error: SpecError | None = None


# ---------------------------------------------------------------------------- events in
def parse_job_event(event: Any) -> JobEvent | None:
    """A SageMaker or Batch job state change, or None for any other event.

    A job state change without a usable job name raises :class:`InvalidEventError`.
    """
    if not isinstance(event, Mapping):
        return None
    source, kind, detail = event.get("source"), event.get("detail-type"), event.get("detail")
    if not isinstance(detail, Mapping):
        detail = {}
    array_index: int | None = None
    event_kind = "training"
    if source == "aws.sagemaker" and kind == "SageMaker HyperParameter Tuning Job State Change":
        job, raw = (
            detail.get("HyperParameterTuningJobName"),
            str(detail.get("HyperParameterTuningJobStatus", "")),
        )
        status = {"Completed": "completed", "Failed": "failed", "Stopped": "failed"}.get(raw, "other")
        reason = str(detail.get("FailureReason") or ("stopped" if raw == "Stopped" else ""))
        uri, hyper, backend, event_kind = None, {}, "sagemaker", "tuning"
        # the tuning job's best training job's times come from DescribeHyperParameterTuningJob
        times = ("", "")
    elif source == "aws.sagemaker" and kind == "SageMaker Training Job State Change":
        job, raw = detail.get("TrainingJobName"), str(detail.get("TrainingJobStatus", ""))
        status = {"Completed": "completed", "Failed": "failed", "Stopped": "failed"}.get(raw, "other")
        reason = str(detail.get("FailureReason") or ("stopped" if raw == "Stopped" else ""))
        artifacts = detail.get("ModelArtifacts")
        uri = artifacts.get("S3ModelArtifacts") if isinstance(artifacts, Mapping) else None
        hp = detail.get("HyperParameters")
        hyper = {str(k): str(v) for k, v in hp.items()} if isinstance(hp, Mapping) else {}
        backend = "sagemaker"
        times = ("TrainingStartTime", "TrainingEndTime")
    elif source == "aws.batch" and kind == "Batch Job State Change":
        job, raw = detail.get("jobName"), str(detail.get("status", ""))
        status = {"SUCCEEDED": "completed", "FAILED": "failed"}.get(raw, "other")
        reason, uri, hyper, backend = str(detail.get("statusReason") or ""), None, {}, "batch"
        event_kind = "batch"
        times = ("startedAt", "stoppedAt")
        array = detail.get("arrayProperties")
        if isinstance(array, Mapping) and isinstance(array.get("index"), int):
            array_index = int(array["index"])
    elif source == "aws.s3" and kind == "Object Created":
        # `modelops models import` wrote an archive (docs/convert.md "Script and imported models"): the
        # job is the key's; convert goes on only for a job record whose source is "import"
        obj = detail.get("object")
        key = str(obj.get("key", "")) if isinstance(obj, Mapping) else ""
        parts = key.split("/")
        if len(parts) != 5 or parts[0] != "staging" or parts[3:] != ["output", "model.tar.gz"]:
            return None
        job, raw, status, reason = parts[2], "Imported", "completed", ""
        uri, hyper, backend, event_kind = None, {}, "import", "import"
        times = ("", "")
    else:
        return None
    if not isinstance(job, str) or not searching.JOB_NAME_RE.match(job):
        raise InvalidEventError(f"{kind} event without a valid job name: {str(job)[:80]!r}")
    return JobEvent(
        job,
        backend,
        status,
        raw,
        reason,
        str(uri) if uri else None,
        hyper,
        kind=event_kind,
        array_index=array_index,
        event_id=str(event["id"]) if isinstance(event.get("id"), str) else None,
        started_at=instant(detail.get(times[0])),
        ended_at=instant(detail.get(times[1])),
    )


def instant(value: Any) -> datetime | None:
    """A time as AWS gives it (an event's epoch milliseconds, boto3's datetime, an ISO 8601 string such as
    a job record's ``created_at``), in UTC; None when absent or not a time."""
    try:
        if isinstance(value, datetime):
            when = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            when = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        elif isinstance(value, str) and value:
            when = datetime.fromisoformat(value)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ---------------------------------------------------------------------------- job records
def load_job_record(jobs: JobStore, job: str) -> JobRecord | None:
    """``jobs/{job}.json`` (docs/contracts.md "Jobs"), or None when this stack did not start the job."""
    try:
        got = jobs.get_record(job)
    except CorruptDocumentError as exc:
        raise CorruptDocumentError(f"the job record of {job} is malformed: {exc}") from exc
    if got is None:
        return None
    doc = got[0]
    try:
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if doc.get("job") not in (None, job):
            raise ValueError(f"it names job {str(doc.get('job'))[:80]!r}")
        model = check_model_name(str(doc["model"]))
    except (ValueError, KeyError, SpecError) as exc:
        raise CorruptDocumentError(f"the job record of {job} is malformed: {exc}") from exc
    backend = str(doc.get("backend", ""))
    try:
        raw_spec = doc.get("spec")
        spec = parse_spec(raw_spec if isinstance(raw_spec, dict) else "null")
    except SpecError as exc:
        # the record is ours and names the model; the spec inside is what is wrong
        return JobRecord(job=job, model=model, backend=backend, spec=None, doc=doc, spec_error=exc)
    return JobRecord(job=job, model=model, backend=backend, spec=spec, doc=doc)


# ---------------------------------------------------------------------------- the model bundle
@dataclass
class Bundle:
    root: Path
    schema: dict[str, Any]
    metrics: dict[str, Any]
    baseline: bytes
    training_record: dict[str, Any]
    x: Any  # np.ndarray float32 (rows, features)
    y: Any  # np.ndarray
    search: dict[str, Any] | None = None
    """``trials.json`` of a job that ran its search itself (every trial), when present."""
    saved_model_dir: Path | None = None
    """Where the SavedModel is, when not ``root/saved_model`` (a script's or an imported model)."""
    tensors: dict[str, Any] | None = None
    """A tensor model's sample (``sample.npz``: arrays by input name); None for a tabular model, whose
    parity rows are ``x``/``y``. Its ``schema`` and ``baseline`` are filled in by :func:`_convert`."""

    @property
    def saved_model(self) -> Path:
        return self.saved_model_dir or self.root / "saved_model"


def _json_file(root: Path, name: str) -> dict[str, Any]:
    try:
        doc = json.loads((root / name).read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactInvalidError(f"{name} in the training artifact is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArtifactInvalidError(f"{name} in the training artifact must be a JSON object")
    return doc


def read_bundle(root: Path, task: str) -> Bundle:
    """Check and read the model dir (docs/contracts.md "Jobs": model dir contents)."""
    import numpy as np

    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if missing:
        present = sorted(p.name for p in root.iterdir())[:20]
        raise ArtifactInvalidError(f"the training artifact lacks {', '.join(missing)} (it holds {present})")
    schema = _json_file(root, "schema.json")
    metrics = _json_file(root, "metrics.json")
    record = _json_file(root, "training_record.json") if (root / "training_record.json").is_file() else {}
    baseline = (root / "baseline.json").read_bytes()
    _json_file(root, "baseline.json")
    search = None
    if (root / searching.TRIALS_FILE).is_file():
        search = _json_file(root, searching.TRIALS_FILE)
        if not isinstance(search.get("trials"), list):
            raise ArtifactInvalidError(f"{searching.TRIALS_FILE} in the training artifact has no trials list")
    try:
        input_schema = InputSchema.from_dict(schema)
    except SchemaError as exc:
        raise ArtifactInvalidError(f"schema.json does not describe the model's input: {exc}") from None
    features = input_schema.features
    if schema.get("task") not in (None, task):
        raise ArtifactInvalidError(f"schema.json says task {schema.get('task')!r}, the spec says {task!r}")
    try:
        with np.load(root / "heldout.npz", allow_pickle=False) as npz:
            x = np.asarray(npz["x"], dtype=np.float32)
            y = np.asarray(npz["y"])
    except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise ArtifactInvalidError(f"heldout.npz is unreadable (x, y float32 expected): {exc}") from exc
    if x.ndim != 2 or x.shape[1] != len(features) or len(x) == 0 or len(y) != len(x):
        raise ArtifactInvalidError(
            f"heldout.npz x has shape {x.shape} and y {y.shape}; expected (rows > 0, {len(features)}) and (rows,)"
        )
    for j, feature in enumerate(features):
        if feature.categorical:
            col = x[:, j]
            if not (
                np.isfinite(col).all()
                and (col == np.round(col)).all()
                and 0 <= col.min()
                and col.max() <= feature.oov_index
            ):
                raise ArtifactInvalidError(
                    f"heldout.npz column {j} ({feature.name!r}) is categorical and must hold vocabulary "
                    f"indices 0..{feature.oov_index}"
                )
    return Bundle(root, schema, metrics, baseline, record, x, y, search)


# ---------------------------------------------------------------------------- a model without our files
SAMPLE_FILE = "sample.npz"
"""A tensor model's representative inputs in its model dir (arrays keyed by input name, rows first)."""
MAX_BASELINE_ROWS = 20_000
"""Training rows a script model's baseline is computed on (the first ones, in file order)."""


def find_model(root: Path) -> tuple[str, Path]:
    """The one model of a model dir without ``schema.json``: ``("savedmodel", dir)`` (a folder holding
    ``saved_model.pb``, at any depth) or ``("keras", file)``; anything else is
    :class:`ArtifactInvalidError` naming what the dir holds."""
    saved = sorted(p.parent for p in root.rglob("saved_model.pb") if p.is_file())
    keras_files = sorted(p for p in root.rglob("*.keras") if p.is_file())
    found = [("savedmodel", p) for p in saved] + [("keras", p) for p in keras_files]
    if len(found) == 1:
        return found[0]
    names = [str(p.relative_to(root)) or "." for _, p in found]
    if found:
        raise ArtifactInvalidError(
            f"the model dir holds {len(found)} models ({', '.join(names[:10])}); convert serves one: "
            "leave one SavedModel or one .keras file"
        )
    present = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())[:20]
    raise ArtifactInvalidError(
        f"the model dir holds neither a SavedModel (saved_model.pb) nor a .keras file (it holds {present})"
    )


def _split_key(record: JobRecord, part: str) -> str | None:
    split = record.doc.get("split")
    entry = split.get(part) if isinstance(split, Mapping) else None
    key = entry.get("key") if isinstance(entry, Mapping) else None
    return str(key) if isinstance(key, str) and key else None


def _feature_matrix(table: evalrows.Table, features: list[str], limit: int) -> Any:
    """(rows, features) float32 of the CSV rows whose features are all finite numbers, at most ``limit``."""
    import numpy as np

    missing = [f for f in features if f not in table.header]
    if missing:
        raise ArtifactInvalidError(f"the rows lack the model's feature columns {missing[:10]}")
    pos = [table.header.index(f) for f in features]
    out: list[list[float]] = []
    for r in table.rows:
        if len(r) != len(table.header):
            continue
        try:
            values = [float(r[i]) for i in pos]
        except ValueError:
            continue
        if all(np.isfinite(values)):
            out.append(values)
        if len(out) >= limit:
            break
    return np.asarray(out, dtype=np.float32).reshape(len(out), len(features))


def _tabular_features(record: JobRecord, spec: ModelSpec) -> tuple[list[str], bool]:
    """The dataset's features (the job record's validation, else the spec's) and whether every one is
    numeric (a categorical column has no meaning to a model the platform did not encode for)."""
    validation = record.doc.get("validation")
    validation = validation if isinstance(validation, Mapping) else {}
    names = validation.get("features") or spec.features or []
    kinds = {**(validation.get("feature_types") or {}), **dict(spec.feature_types)}
    features = [str(n) for n in names]
    return features, all(kinds.get(f, "numeric") == "numeric" for f in features)


def _model_classes(record: JobRecord, spec: ModelSpec, sig: Signature) -> list[Any] | None:
    """A script's or an imported classifier's classes: the job record's ``validation.classes`` (the
    dataset's target values; an import's ``--classes``, else its ``--eval`` labels); None for
    regression. Classes that cannot name the scores of the model's first output (their number and its
    last dimension, ``modelops.domain.signature.classes_problem``) are refused."""
    from modelops.domain.signature import classes_problem

    validation = record.doc.get("validation")
    classes = validation.get("classes") if isinstance(validation, Mapping) else None
    if spec.task == "regression" or classes is None:
        return None
    if not isinstance(classes, list):
        raise ArtifactInvalidError("the job record's validation.classes is not a list")
    problem = classes_problem(spec.task, classes, sig.outputs[0])
    if problem is not None:
        source = (
            "the import's classes (--classes, else the --eval rows' labels)"
            if record.doc.get("source") == IMPORT_SOURCE
            else "the dataset's classes (its target's values)"
        )
        raise ArtifactInvalidError(f"{source} cannot label the model's answers: {problem}")
    return classes


def read_model_only(root: Path, record: JobRecord, spec: ModelSpec, deps: Deps, work: Path) -> Bundle:
    """A model dir with only a model in it (a script's, or an imported one: docs/convert.md "Script and
    imported models"). Its serving signature decides: one float32 input of shape [n features] (and one
    output) is a tabular model over the dataset's features, converted exactly like the built-in
    trainer's (schema from the dataset, baseline on the training rows, parity on the platform's
    evaluation rows); anything else is a tensor model, whose sample must be ``sample.npz``."""
    import numpy as np

    from modelops.ml import convert as ml_convert  # TensorFlow: only here

    kind, path = find_model(root)
    saved_model = ml_convert.export_keras(path, work / "exported") if kind == "keras" else path
    sig = ml_convert.savedmodel_signature(saved_model)
    metrics = _json_file(root, "metrics.json") if (root / "metrics.json").is_file() else {}
    classes = _model_classes(record, spec, sig)
    training: dict[str, Any] = {
        "source": str(record.doc.get("source") or "training"),
        "model": {"kind": kind, "path": str(path.relative_to(root))},
    }
    code = record.doc.get("code")
    if isinstance(code, Mapping):  # script mode: the version names the code that trained it
        training["code"] = {k: code[k] for k in ("uri", "sha256", "entry_point", "requirements") if k in code}
    features, numeric = _tabular_features(record, spec)
    first = sig.inputs[0]
    tabular = (
        len(sig.inputs) == 1
        and len(sig.outputs) == 1
        and first.dtype == "float32"
        and sig.outputs[0].dtype == "float32"
        and first.shape == (len(features),)
        and bool(features)
        and numeric
    )
    common = {"task": spec.task, "target": spec.target, "classes": classes}
    if not tabular:
        sample_path = root / SAMPLE_FILE
        if not sample_path.is_file():
            raise ArtifactInvalidError(
                f"a tensor model needs {SAMPLE_FILE} in its model dir (arrays keyed by input name: "
                f"{sig.describe_inputs()}) for parity and the monitoring baseline; write it next to the "
                "model in SM_MODEL_DIR, or pass --sample to `modelops models import`"
            )
        try:
            with np.load(sample_path, allow_pickle=False) as npz:
                tensors = {k: np.asarray(npz[k]) for k in npz.files}
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise ArtifactInvalidError(f"{SAMPLE_FILE} is unreadable: {exc}") from exc
        return Bundle(
            root,
            dict(common),
            metrics,
            b"",
            training,
            None,
            None,
            saved_model_dir=saved_model,
            tensors=tensors,
        )
    objects = deps.registry.objects
    train_key, eval_key = _split_key(record, "train"), _split_key(record, "evaluation")
    x_train = np.zeros((0, len(features)), dtype=np.float32)
    if train_key is not None:
        body = objects.get_bytes(train_key)
        if body is None:
            raise ArtifactInvalidError(f"the job's training rows {deps.jobs.staging_uri(train_key)} are gone")
        x_train = _feature_matrix(_parse_rows(train_key, body), features, MAX_BASELINE_ROWS)
    if len(x_train) == 0:
        raise ArtifactInvalidError(
            "a tabular model needs rows of its features for its baseline and parity: the job's training "
            f"rows ({train_key or 'none in the job record'}) have none usable"
        )
    x, y = x_train[: deps.options.parity_max_rows], None
    from modelops.domain import evaluation as evalrows  # numpy: only when converting

    if eval_key is not None:
        rows = evalrows.combine(
            [_parse_rows(eval_key, EvaluationStore(objects).read(eval_key))],
            features,
            spec.target,
            max_rows=deps.options.parity_max_rows,
        )
        if len(rows):
            x = evalrows.features_of(rows, features)
            try:
                y = np.asarray(evalrows.targets_for(rows, spec.task, classes), dtype=np.float32)
            except ValueError:
                y = None  # no classes to index the labels with: parity only
            if y is not None and spec.task != "regression" and (y < 0).any():
                y = None
    out = ml_convert.run_savedmodel(saved_model, x_train)
    out = np.asarray(out, dtype=np.float64).reshape(len(x_train), -1)
    prediction = out[:, 0] if spec.task != "multiclass" else np.argmax(out, axis=1)
    schema_doc = {
        **common,
        "features": [{"name": f, "type": "numeric", "dtype": "float32"} for f in features],
    }
    from modelops.domain import baseline as baselines  # numpy: only when converting

    doc = baselines.compute_baseline(x_train, features, prediction)
    baseline = json.dumps(doc, sort_keys=True).encode()
    return Bundle(root, schema_doc, metrics, baseline, training, x, y, saved_model_dir=saved_model)


def _parse_rows(key: str, body: bytes) -> evalrows.Table:
    from modelops.domain import evaluation as evalrows  # numpy: only when converting

    try:
        return evalrows.parse(key.rsplit("/", 1)[-1].removesuffix(".csv"), body)
    except ValueError as exc:
        raise ArtifactInvalidError(f"rows at {key}: {exc}") from exc


# ---------------------------------------------------------------------------- orchestration
def handle_event(event: Any, deps: Deps) -> Result:
    """Everything the convert function does for one EventBridge event."""
    job_event = parse_job_event(event)
    if job_event is None:
        return _ignored(None, f"not a training job state change: {str(_get(event, 'detail-type'))[:80]}")
    if job_event.status == "other":
        return _ignored(job_event.job, f"job status {job_event.raw_status!r} is not final")
    if job_event.array_index is not None:
        return _ignored(job_event.job, "a child of a Batch array job: the parent's event converts the search")
    if job_event.kind == "tuning":
        return handle_tuning_job(job_event, deps)
    record = load_job_record(deps.jobs, job_event.job)
    if record is None:
        return _ignored(job_event.job, "no job record in this stack's registry: another stack's job")
    if job_event.kind == "import" and record.doc.get("source") != IMPORT_SOURCE:
        return _ignored(
            job_event.job, "an archive written for a job that is not an import: its job's end converts it"
        )
    if job_event.status == "failed":
        return _training_failed(deps, job_event, record)
    plan = record.doc.get("search")
    if job_event.kind == "batch" and isinstance(plan, Mapping) and plan.get("mode") == "array":
        return convert_batch_search(job_event, record, deps)
    return convert_job(job_event, record, deps)


# ---------------------------------------------------------------------------- searches
def handle_tuning_job(ev: JobEvent, deps: Deps) -> Result:
    """A SageMaker tuning job ended: find our job (its static ``job`` hyperparameter, checked against the
    job record's ``search.tuning_job``), then convert the best training job's model, with every trial
    (``ListTrainingJobsForHyperParameterTuningJob``) in the manifest. No trial completed: TrainingJobFailed."""
    if deps.sagemaker is None:
        raise RuntimeError("convert has no SageMaker client: it cannot resolve a tuning job's best trial")
    name = ev.job
    try:
        desc = deps.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except aws.AwsError as exc:
        if aws.classify(exc) is aws.ErrorKind.MISSING:
            return _ignored(name, "no such tuning job")
        raise
    definition = desc.get("TrainingJobDefinition") or {}
    static = {str(k): str(v) for k, v in (definition.get("StaticHyperParameters") or {}).items()}
    job = static.get("job", "")
    if not searching.JOB_NAME_RE.match(job):
        return _ignored(name, "a tuning job that names no modelops job")
    record = load_job_record(deps.jobs, job)
    if record is None:
        return _ignored(job, "no job record in this stack's registry: another stack's job")
    plan = record.doc.get("search")
    if not isinstance(plan, Mapping) or plan.get("tuning_job") != name:
        return _ignored(job, f"the job record does not name tuning job {name}")
    raw = str(desc.get("HyperParameterTuningJobStatus") or ev.raw_status)
    status = {"Completed": "completed", "Failed": "failed", "Stopped": "failed"}.get(raw, "other")
    reason = str(desc.get("FailureReason") or ev.reason or ("stopped" if raw == "Stopped" else ""))
    best_job = desc.get("BestTrainingJob") or {}
    jev = JobEvent(
        job,
        "sagemaker",
        status,
        raw,
        reason,
        None,
        static,
        kind="tuning",
        event_id=ev.event_id,
        started_at=instant(best_job.get("TrainingStartTime")),
        ended_at=instant(best_job.get("TrainingEndTime")),
    )
    if status == "other":
        return _ignored(job, f"tuning job {name} is {raw!r}, not final")
    if status == "failed":
        return _training_failed(deps, jev, record)
    spec = record.spec
    if spec is None or spec.training.search is None:
        return convert_job(jev, record, deps)  # reports the spec problem
    trials = _tuning_trials(deps.sagemaker, name, spec.training.search)
    best = str(best_job.get("TrainingJobName") or "")
    if not best:
        failed = JobEvent(
            job,
            "sagemaker",
            "failed",
            raw,
            searching.failure_reason(trials),
            None,
            static,
            event_id=ev.event_id,
        )
        return _training_failed(deps, failed, record)
    if not searching.JOB_NAME_RE.match(best) or not best.startswith(f"{name}-"):
        raise InvalidEventError(f"tuning job {name} names an unexpected best training job {best[:80]!r}")
    doc = searching.summary(
        spec, trials, backend_mode="tuning", extra={"tuning_job": name, "best_training_job": best}
    )
    for t in trials:
        if t.get("training_job") == best:
            doc["best_trial"], doc["best_value"] = t["number"], t["value"]
    return convert_job(jev, record, deps, key=deps.jobs.artifact_key(record.model, job, best), search=doc)


def _tuning_trials(sm: Any, name: str, search: SearchSpec) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        resp = sm.list_training_jobs_for_hyper_parameter_tuning_job(**kwargs)
        summaries.extend(resp.get("TrainingJobSummaries") or [])
        token = resp.get("NextToken")
        if not token:
            return searching.trials_from_tuning_jobs(summaries, search)


def convert_batch_search(ev: JobEvent, record: JobRecord, deps: Deps) -> Result:
    """A Batch array job ended: every child left ``trials/{index:03d}/trial.json`` (and, when it completed,
    ``output/model.tar.gz``); convert the best complete trial's model. No trial completed: TrainingJobFailed."""
    spec = record.spec
    if spec is None or spec.training.search is None:
        return convert_job(ev, record, deps)  # reports the spec problem
    size = int((record.doc.get("search") or {}).get("array_size") or spec.training.search.max_trials)
    found: dict[int, dict[str, Any]] = {}
    for index, body in deps.jobs.trial_records(record.model, ev.job).items():
        try:
            found[index] = searching.load_trial(body)
        except ValueError as exc:
            found[index] = searching.trial_doc(
                index, {}, "failed", error=f"unreadable {searching.TRIAL_FILE}: {exc}"
            )
    trials = [
        found.get(i) or searching.trial_doc(i, {}, "failed", error="the child job left no trial record")
        for i in range(max(size, max(found, default=-1) + 1))
    ]
    best = searching.best_trial(trials, searching.direction(spec) == "minimize")
    if best is None:
        failed = JobEvent(
            ev.job, ev.backend, "failed", ev.raw_status, searching.failure_reason(trials), None, {}
        )
        return _training_failed(deps, failed, record)
    doc = searching.summary(spec, trials, backend_mode="array", extra={"array_size": size})
    key = deps.jobs.artifact_key(record.model, ev.job, int(best["number"]))
    return convert_job(ev, record, deps, key=key, search=doc)


def _get(event: Any, key: str) -> Any:
    return event.get(key) if isinstance(event, Mapping) else None


def _ignored(job: str | None, reason: str) -> Result:
    logger.info("ignored event", extra={"job": job, "reason": reason})
    return Result("ignored", reason, job=job)


def _training_failed(deps: Deps, ev: JobEvent, record: JobRecord) -> Result:
    reason = ev.reason or f"job ended with status {ev.raw_status}"
    deps.bus.publish(
        "TrainingJobFailed",
        {
            "model": record.model,
            "version": None,
            "job": ev.job,
            "backend": record.backend or ev.backend,
            "status": ev.raw_status,
            "reason": reason,
            "dataset": record.doc.get("dataset"),
        },
    )
    logger.warning("training job failed", extra={"job": ev.job, "model": record.model, "reason": reason})
    return Result(
        "training_failed",
        reason,
        job=ev.job,
        model=record.model,
        metrics={"TrainingJobsFailed": ("Count", 1.0)},
    )


def _conversion_failed(deps: Deps, ev: JobEvent, model: str, exc: ModelOpsError, *, stage: str) -> Result:
    numbers = dict(getattr(exc, "numbers", {}) or {})
    detail: dict[str, Any] = {
        **numbers,
        "model": model,
        "version": None,
        "job": ev.job,
        "stage": stage,
        "code": exc.code,
        "reason": str(exc),
    }
    ops = getattr(exc, "ops", None)
    if ops:
        detail["ops"] = list(ops)
    deps.bus.publish("ConversionFailed", detail)
    logger.error(
        "conversion failed", extra={"job": ev.job, "model": model, "stage": stage, "reason": str(exc)}
    )
    return Result(
        "conversion_failed",
        str(exc),
        job=ev.job,
        model=model,
        error_code=exc.code,
        metrics={"ConversionsFailed": ("Count", 1.0)},
    )


def convert_job(
    ev: JobEvent,
    record: JobRecord,
    deps: Deps,
    *,
    key: str | None = None,
    search: dict[str, Any] | None = None,
) -> Result:
    """Convert the job's model (``key``: the best trial's archive of a search, else the contract's
    archive: ``JobStore.artifact_key``) and publish it; ``search`` (else the archive's ``trials.json``) goes to the manifest."""
    model, spec, opts = record.model, record.spec, deps.options
    if spec is None:
        return _conversion_failed(deps, ev, model, record.spec_error or SpecError("no spec"), stage="spec")
    existing = deps.registry.find_version(model, ev.job)
    if existing is not None:
        return _replay(ev, record, existing, deps)
    key = key or deps.jobs.artifact_key(model, ev.job)
    if ev.artifact_uri and ev.artifact_uri != deps.jobs.staging_uri(key):
        logger.warning(
            "event names another artifact; using the contract's",
            extra={"event_uri": ev.artifact_uri, "key": key},
        )
    started = time.perf_counter()
    stage = "download"
    window = run_window(ev, record, opts.clock_skew_seconds)
    with tempfile.TemporaryDirectory(prefix="convert-", dir=opts.work_dir) as tmp:
        try:
            version = _written_once(deps, ev, model, key, window)
            archive = deps.jobs.download_artifact(
                key, Path(tmp) / "model.tar.gz", opts.max_artifact_bytes, version_id=version.version_id
            )
            stage = "integrity"
            link = _check_link(deps, ev, model, key, archive, version, window)
            stage = "extract"
            root = safe_extract(
                archive, Path(tmp) / "model", max_bytes=opts.max_extracted_bytes, max_members=opts.max_members
            )
            archive.unlink()
            if (root / "schema.json").is_file():
                bundle = read_bundle(root, spec.task)
            else:  # a script's model or an imported one: the platform supplies the rest
                stage = "model"
                bundle = read_model_only(root, record, spec, deps, Path(tmp))
            stage = "convert"
            out = _convert(bundle, spec, opts)
        except (ConversionError, IntegrityError) as exc:
            if isinstance(exc, IntegrityError):
                stage = "integrity"
            elif isinstance(exc, ParityError):
                stage = "parity"
            elif isinstance(exc, ServingBudgetError):
                stage = "serving_budget"
            return _conversion_failed(deps, ev, model, exc, stage=stage)
        savedmodel = deterministic_targz(bundle.saved_model, "saved_model")
        conversion_id = uuid.uuid4().hex
        metadata = _metadata(ev, record, spec, bundle, out, conversion_id)
        metadata["training"]["artifact"] = {
            k: link.get(k) for k in ("key", "uri", "version_id", "sha256", "size", "etag", "last_modified")
        }
        if search is not None or bundle.search is not None:
            metadata["search"] = search if search is not None else bundle.search
        artifacts: dict[str, tuple[str, bytes | Path]] = {"tflite": ("model.tflite", out.tflite)}
        if out.tflite_int8 is not None:
            artifacts["tflite_int8"] = ("model.int8.tflite", out.tflite_int8)
        artifacts["savedmodel"] = ("savedmodel.tar.gz", savedmodel)
        artifacts["baseline"] = ("baseline.json", bundle.baseline)
        manifest = deps.registry.publish_version(
            model, artifacts, metadata, dedup_key=ev.job, claim_token=ev.event_id
        )
    if manifest.get("conversion_id") != conversion_id:
        # a concurrent duplicate published first; behave as a replay of its version
        return _replay(ev, record, manifest, deps)
    elapsed = time.perf_counter() - started
    deps.bus.publish("ModelVersionPublished", _published_detail(manifest))
    f32 = out.parity["float32"]
    return Result(
        "published",
        f"published v{manifest.version} of {model} from {ev.job}; the gate decides on ModelVersionPublished",
        job=ev.job,
        model=model,
        version=manifest.version,
        metrics={
            "VersionsPublished": ("Count", 1.0),
            "ConversionSeconds": ("Seconds", round(elapsed, 3)),
            "ParityMaxAbsDiff": ("None", f32["max_abs_diff"]),
            "TfliteBytes": ("Bytes", float(out.serving_budget["tflite_bytes"])),
            "SingleRowLatency": ("Microseconds", float(out.serving_budget["single_row_latency_us"])),
        },
    )


@dataclass(frozen=True)
class RunWindow:
    """When a job ran, as far as convert can tell: its artifact must have been written in between
    (``skew_s`` either side). A bound nobody reported is None (docs/convert.md "The artifact's version")."""

    start: datetime | None
    end: datetime | None
    start_from: str
    end_from: str
    skew_s: float

    def admits(self, when: datetime | None) -> bool:
        skew = timedelta(seconds=self.skew_s)
        if when is None:
            return self.start is None and self.end is None
        return (self.start is None or when >= self.start - skew) and (
            self.end is None or when <= self.end + skew
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "start_from": self.start_from,
            "end_from": self.end_from,
            "skew_seconds": self.skew_s,
        }

    def describe(self) -> str:
        return (
            f"[{_iso(self.start) or 'unknown'} ({self.start_from}), {_iso(self.end) or 'unknown'} "
            f"({self.end_from})] ± {self.skew_s:g} s"
        )


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_window(ev: JobEvent, record: JobRecord, skew_s: float) -> RunWindow:
    """The job's run: from the later of the backend's start time and the job record's ``created_at``
    (train_trigger writes the record before it asks a backend to start anything) to the backend's end
    time (SageMaker ``TrainingEndTime`` comes after the artifact's upload; Batch ``stoppedAt`` after the
    container exited)."""
    created = instant(record.doc.get("created_at"))
    starts = [(t, src) for t, src in ((ev.started_at, f"{ev.backend} start"), (created, "job record")) if t]
    start, start_from = max(starts, key=lambda p: p[0]) if starts else (None, "unknown")
    end_from = f"{ev.backend} end" if ev.ended_at else "unknown"
    return RunWindow(start, ev.ended_at, start_from, end_from, skew_s)


def _written_once(deps: Deps, ev: JobEvent, model: str, key: str, window: RunWindow) -> ArtifactVersion:
    """The one S3 version of ``key`` convert may read: the key was written exactly once (no second
    version, no delete marker) and within the job's run. Anything else is ``artifact_tampered``: an
    ``ArtifactIntegrityFailed`` alert and :class:`IntegrityError` (``ConversionFailed``, stage
    ``integrity``), before a byte is downloaded. No version at all: :class:`ArtifactInvalidError`."""
    versions, complete = deps.jobs.artifact_versions(key)
    uri = deps.jobs.staging_uri(key)
    if not versions:
        raise ArtifactInvalidError(f"no training artifact at {uri}: the job finished without output")
    problems: list[str] = []
    written = [v for v in versions if not v.delete_marker]
    ids = ", ".join(f"{v.version_id} at {_iso(v.last_modified)}" for v in written)
    if not complete:
        problems.append(f"it has more than {len(versions)} versions and delete markers (versions {ids})")
    elif len(written) > 1:
        problems.append(
            f"it was written {len(written)} times (versions {ids}), a job writes its archive once"
        )
    for marker in (v for v in versions if v.delete_marker):
        problems.append(f"it was deleted (delete marker {marker.version_id} at {_iso(marker.last_modified)})")
    only = versions[0]
    if len(versions) == 1 and not only.delete_marker:
        if only.version_id == "null":
            problems.append("it has no S3 version id (the registry bucket must keep object versions)")
        if not window.admits(only.last_modified):
            problems.append(
                f"it was written at {_iso(only.last_modified)}, outside the job's run {window.describe()}"
            )
    if not problems:
        return only
    message = (
        f"the training artifact of {ev.job} at {uri} cannot be trusted as the one its job wrote: {'; '.join(problems)}. "
        "Nothing in it was downloaded or loaded"
    )
    deps.bus.publish(
        "ArtifactIntegrityFailed",
        {
            "model": model,
            "version": None,
            "job": ev.job,
            "role": "training_artifact",
            "stage": "convert",
            "reason": "artifact_tampered",
            "message": message,
            "key": key,
            "versions": [v.to_dict() for v in versions],
            "window": window.to_dict(),
        },
    )
    raise IntegrityError(message)


def _check_link(
    deps: Deps, ev: JobEvent, model: str, key: str, archive: Path, version: ArtifactVersion, window: RunWindow
) -> dict[str, Any]:
    """The archive read now must be the one first read for the job (``JobStore.link_artifact``): a replay
    after the staged archive was overwritten (or a search's best trial changed) is refused, before
    anything in it is loaded, with ``ArtifactIntegrityFailed`` (and :class:`IntegrityError`, which the
    caller reports as ``ConversionFailed``). Returns the link: the version, its SHA-256, the window."""
    read, recorded = deps.jobs.link_artifact(
        ev.job, key, archive, version=version, extra={"window": window.to_dict()}
    )
    same_version = recorded.get("version_id") in (None, read["version_id"])
    if (read["key"], read["sha256"]) == (recorded.get("key"), recorded.get("sha256")) and same_version:
        return read
    message = (
        f"the training artifact of {ev.job} is not the one convert first read for it: "
        f"{read['uri']} has SHA-256 {read['sha256']}, the job's artifact link "
        f"(recorded {recorded.get('recorded_at')}) names {recorded.get('key')} with SHA-256 {recorded.get('sha256')}"
    )
    deps.bus.publish(
        "ArtifactIntegrityFailed",
        {
            "model": model,
            "version": None,
            "job": ev.job,
            "role": "training_artifact",
            "stage": "convert",
            "reason": "artifact_changed",
            "message": message,
            "expected": {k: recorded.get(k) for k in ("key", "sha256", "size", "version_id", "etag")},
            "actual": {k: read.get(k) for k in ("key", "sha256", "size", "version_id", "etag")},
        },
    )
    raise IntegrityError(message)


def _limits(opts: Options) -> Any:
    from modelops.ml import convert as ml_convert

    return ml_convert.Limits(
        max_tflite_bytes=opts.max_tflite_bytes,
        max_single_row_latency_us=opts.max_single_row_latency_us,
        latency_calls=opts.latency_calls,
        parity_max_rows=opts.parity_max_rows,
    )


def _convert(bundle: Bundle, spec: ModelSpec, opts: Options) -> ConvertOutput:
    from modelops.ml import convert as ml_convert  # TensorFlow: only here

    if bundle.tensors is not None:
        out, sig = ml_convert.convert_tensors(
            bundle.saved_model,
            bundle.tensors,
            task=spec.task,
            quantize=spec.conversion.quantize,
            parity_tolerance=spec.conversion.parity_tolerance,
            limits=_limits(opts),
        )
        bundle.schema = {**bundle.schema, **sig.to_dict()}
        rows = int(out.parity["float32"]["rows"])
        sample = {s.name: bundle.tensors[s.name][:rows] for s in sig.inputs}
        try:
            from modelops.domain import baseline as baselines  # numpy: only when converting

            doc = baselines.compute_tensor_baseline(sample, dict(out.reference or {}))
        except ValueError as exc:
            raise ArtifactInvalidError(f"no baseline from the sample: {exc}") from exc
        bundle.baseline = json.dumps(doc, sort_keys=True).encode()
        return out
    return ml_convert.convert_and_verify(
        bundle.saved_model,
        bundle.x,
        bundle.y,
        task=spec.task,
        metric=spec.metric,
        quantize=spec.conversion.quantize,
        parity_tolerance=spec.conversion.parity_tolerance,
        limits=_limits(opts),
    )


def _metadata(
    ev: JobEvent, record: JobRecord, spec: ModelSpec, bundle: Bundle, out: ConvertOutput, conversion_id: str
) -> dict[str, Any]:
    """The manifest fields beyond the registry's own (docs/contracts.md "Registry artifacts")."""
    tr = bundle.training_record
    hyper = tr.get("hyperparameters") if isinstance(tr.get("hyperparameters"), dict) else ev.hyperparameters
    training_frameworks = tr.get("frameworks") or tr.get("framework_versions") or {}
    return {
        "task": spec.task,
        "schema": bundle.schema,
        "spec": spec.model_dump(mode="json"),
        "dataset": record.doc.get("dataset"),
        "training": {
            "job": ev.job,
            "backend": record.backend or ev.backend,
            "hyperparameters": hyper,
            "epochs_run": tr.get("epochs_run"),
            "record": {k: v for k, v in tr.items() if k not in ("hyperparameters", "history")},
        },
        "metrics": bundle.metrics,
        "parity": out.parity,
        "serving_budget": out.serving_budget,
        "frameworks": {"training": training_frameworks, "convert": out.frameworks},
        "conversion": {"id": conversion_id, "seconds": {k: round(v, 3) for k, v in out.seconds.items()}},
        "conversion_id": conversion_id,
    }


def _published_detail(manifest: Manifest) -> dict[str, Any]:
    parity = manifest.get("parity") or {}
    return {
        "model": manifest.model,
        "version": manifest.version,
        "job": (manifest.get("training") or {}).get("job"),
        "metrics": manifest.get("metrics"),
        "parity": {
            k: {
                m: v
                for m, v in (parity.get(k) or {}).items()
                if m in ("max_abs_diff", "mean_abs_diff", "label_agreement", "metric")
            }
            for k in ("float32", "int8")
            if k in parity
        },
        "serving_budget": manifest.get("serving_budget"),
        "artifacts": sorted(manifest.artifacts),
        **_search_brief(manifest.get("search")),
    }


def _search_brief(search: Any) -> dict[str, Any]:
    if not isinstance(search, Mapping):
        return {}
    keys = ("strategy", "mode", "best_trial", "best_value", "counts", "direction")
    return {
        "search": {k: search.get(k) for k in keys}
        | {"objective": (search.get("objective") or {}).get("name")}
    }


def _replay(ev: JobEvent, record: JobRecord, manifest: Manifest, deps: Deps) -> Result:
    """The job already has a version: publish nothing new; send ``ModelVersionPublished`` again (the first
    attempt may have died before sending it), so the gate decides if it never did."""
    logger.info(
        "job already published", extra={"job": ev.job, "model": record.model, "version": manifest.version}
    )
    deps.bus.publish("ModelVersionPublished", {**_published_detail(manifest), "replay": True})
    return Result(
        "replayed",
        f"v{manifest.version} was already published for {ev.job}; ModelVersionPublished sent again for the gate",
        job=ev.job,
        model=record.model,
        version=manifest.version,
    )


# ---------------------------------------------------------------------------- the Lambda entry
# One completion per job and status: replays inside the expiry window return the first answer; the
# registry's dedup_key (the job name) covers replays after it. Batch is keyed by job id: the children of
# an array job share their parent's name (and are ignored), so a child's answer must not stand for it.
IDEMPOTENCY_KEY = (
    "[detail.TrainingJobName || detail.HyperParameterTuningJobName || detail.jobId || detail.jobName "
    "|| detail.object.key, detail.TrainingJobStatus || detail.HyperParameterTuningJobStatus || detail.status "
    "|| detail.object.etag]"
)
IDEMPOTENCY_SECONDS = 6 * 3600


class Settings(runtime.StageSettings):
    """The convert function's environment (template.yaml)."""

    registry_bucket: str
    # Required: it stops concurrent deliveries of one event (Registry._claim lets a retry of the same
    # event take over its own claim, which is safe only when deliveries never run at once).
    idempotency_table: str = Field(min_length=1)
    event_bus_name: str = "default"
    convert_work_dir: str | None = None
    max_tflite_bytes: int = Options.max_tflite_bytes
    max_single_row_latency_us: float = Options.max_single_row_latency_us


def process(event: Any, deps: Deps) -> dict[str, Any]:
    """One event handled; its CloudWatch metrics added and its outcome logged and returned."""
    result = handle_event(event, deps)
    for name, (unit, value) in result.metrics.items():
        runtime.metrics.add_metric(name=name, unit=unit, value=value)
    logger.info("convert finished", extra=result.to_dict())
    return result.to_dict()


@functools.cache
def build() -> tuple[Callable[..., dict[str, Any]], Any]:
    """Settings, clients, stores and the idempotent processing function (with its idempotency config):
    once per warm container, never at import."""
    settings = Settings()
    deps = Deps(
        registry=Registry(aws.client("s3"), settings.registry_bucket, actor="convert"),
        bus=EventBus(aws.client("events"), settings.event_bus_name),
        sagemaker=aws.client("sagemaker"),
        options=Options(
            work_dir=settings.convert_work_dir,
            max_tflite_bytes=settings.max_tflite_bytes,
            max_single_row_latency_us=settings.max_single_row_latency_us,
        ),
    )

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        return process(event, deps)

    return runtime.idempotent(
        handle,
        table=settings.idempotency_table,
        dynamodb=aws.client("dynamodb"),
        key_jmespath=IDEMPOTENCY_KEY,
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One invocation: the event handled once per job and status (Powertools Idempotency)."""
    return runtime.invoke_idempotent(build(), event, context)
