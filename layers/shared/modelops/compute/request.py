"""What every backend is given and answers: :class:`JobRequest` in, :class:`StartedJob` out, and the
:class:`TrainingBackend` interface; :func:`plan_search` asks a backend how it would run a search."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from modelops.domain import search as searching
from modelops.domain.errors import BackendError, SearchNotSupportedError
from modelops.domain.spec import ModelSpec

HYPERPARAMETER_MAX_CHARS = 2500
"""SageMaker's limit on one hyperparameter value."""


@dataclass(frozen=True)
class JobRequest:
    """Everything a backend needs to start one job (built by ``modelops.stages.train_trigger``).

    ``output_prefix``, ``artifact_key`` and ``trials_prefix`` are keys of the registry bucket, named by the
    storage layer (``modelops.storage.jobs.JobStore``); the backends only turn them into ``s3://`` URIs."""

    job: str
    model: str
    spec: ModelSpec
    spec_json: str
    dataset_bucket: str
    dataset_key: str
    dataset_version_id: str | None
    dataset_sha256: str
    rows: int
    registry_bucket: str
    output_prefix: str
    """SageMaker's ``S3OutputPath`` (``staging/{model}/``): SageMaker puts the job's archive at
    ``{output_prefix}{job}/output/model.tar.gz``, which is :attr:`artifact_key`."""
    artifact_key: str
    """Where the job's ``model.tar.gz`` lands (``staging/{model}/{job}/output/model.tar.gz``)."""
    trials_prefix: str
    """A tuning job's ``S3OutputPath`` (``staging/{model}/{job}/trials/``)."""
    job_prefix: str = "modelops"
    """The stack's ``JobPrefix`` (a tuning job's name starts with it)."""
    train_key: str = ""
    """The training rows the platform's split kept (``inputs/{model}/{job}/train.csv`` in the registry
    bucket, or for a dataset of parts the folder ``inputs/{model}/{job}/train/``): the job's ``train`` channel and its ``dataset_*`` hyperparameters. ``dataset_*``
    above stay the uploaded dataset (the job's lineage and tags). Empty only in tests of the request
    shapes, where the channel is the uploaded dataset itself."""
    train_sha256: str = ""
    train_rows: int = 0
    input_schema_key: str = ""
    """Production's input schema the job must keep (``inputs/{model}/{job}/input_schema.json``, beside
    :attr:`train_key`; issue 16), empty when the job learns its own. With it the ``train`` channel is the
    job's inputs folder (both files), and the hyperparameter ``input_schema_uri`` names it (a Batch job
    downloads it beside the rows)."""

    code_uri: str = ""
    """Script mode (spec ``training.entry_point``): the model's packaged training script,
    ``s3://{registry}/code/{model}/{sha256}.tar.gz`` (train_trigger, ``modelops.compute.source_bundle``).
    Empty: the built-in trainer."""
    code_sha256: str = ""
    """The archive's SHA-256 (it joins the dataset's in the job name; the job checks the archive by it)."""

    @property
    def script_mode(self) -> bool:
        return bool(self.code_uri)

    @property
    def dataset_uri(self) -> str:
        """The uploaded dataset (lineage)."""
        return f"s3://{self.dataset_bucket}/{self.dataset_key}"

    @property
    def train_uri(self) -> str:
        """What the job trains on: the platform's training rows (the ``train`` channel's ``S3Uri``)."""
        if self.train_key:
            return f"s3://{self.registry_bucket}/{self.train_key}"
        return self.dataset_uri

    @property
    def train_channel_uri(self) -> str:
        """The ``train`` channel's ``S3Uri``: the training rows' key, or, with an input schema, the job's
        inputs folder (``S3Prefix``: the rows and ``input_schema.json`` land in the channel together)."""
        if self.train_key and self.input_schema_key:
            return f"s3://{self.registry_bucket}/{self.train_key.rstrip('/').rsplit('/', 1)[0]}/"
        return self.train_uri

    @property
    def train_parts(self) -> bool:
        """A dataset of many parts: :attr:`train_key` is the folder ``inputs/{model}/{job}/train/`` of
        one CSV per part (docs/training.md "Datasets of many parts"); the job joins them."""
        return self.train_key.endswith("/")

    @property
    def train_input_mode(self) -> str:
        """SageMaker's ``InputMode`` for the ``train`` channel: ``FastFile`` (streamed from S3 as the job
        reads it, no download before the start) for a folder of parts, else ``File``."""
        return "FastFile" if self.train_parts else "File"

    @property
    def output_path(self) -> str:
        """SageMaker's ``S3OutputPath`` as a URI."""
        return f"s3://{self.registry_bucket}/{self.output_prefix}"

    @property
    def output_uri(self) -> str:
        """:attr:`artifact_key` as a URI (a Batch job uploads its archive there, where SageMaker would)."""
        return f"s3://{self.registry_bucket}/{self.artifact_key}"

    @property
    def trials_path(self) -> str:
        return f"s3://{self.registry_bucket}/{self.trials_prefix}"

    def hyperparameters(self) -> dict[str, str]:
        """The job's hyperparameters (docs/contracts.md "Jobs"): strings, as SageMaker passes them.
        ``dataset_*`` name what the trainer reads and checks: the training rows."""
        return {
            "model": self.model,
            "job": self.job,
            "spec": self.spec_json,
            "dataset_uri": self.train_uri,
            # the training rows are read by key (the job's role has no GetObjectVersion there);
            # dataset_sha256 pins their bytes
            "dataset_version_id": "" if self.train_key else self.dataset_version_id or "",
            "dataset_sha256": self.train_sha256 if self.train_key else self.dataset_sha256,
            **(
                {"input_schema_uri": f"s3://{self.registry_bucket}/{self.input_schema_key}"}
                if self.input_schema_key
                else {}
            ),
            **self.script_hyperparameters(),
        }

    def script_hyperparameters(self) -> dict[str, str]:
        """Script mode's: SageMaker's own ``sagemaker_program`` (the entry point) and
        ``sagemaker_submit_directory`` (the archive), JSON-encoded as the SageMaker Python SDK sends them,
        and ``code_sha256`` (what the archive must hash to); nothing for the built-in trainer."""
        if not self.script_mode:
            return {}
        entry = self.spec.training.entry_point
        if not entry:
            raise BackendError("a script-mode job needs training.entry_point in its spec")
        return {
            "sagemaker_program": json.dumps(entry),
            "sagemaker_submit_directory": json.dumps(self.code_uri),
            "code_sha256": self.code_sha256,
        }

    def tags(self) -> dict[str, str]:
        return {
            "modelops:model": self.model,
            "modelops:dataset-sha256": self.dataset_sha256,
            "modelops:job": self.job,
            **({"modelops:code-sha256": self.code_sha256} if self.script_mode else {}),
        }


class JobRejectedError(BackendError):
    """The backend refused the request itself (SageMaker's ``ValidationException``: an instance type it does
    not offer, a job name it does not accept, ...): the same request can never succeed, so train_trigger
    rejects the dataset (quarantine, ``DatasetRejected`` naming ``field`` when known) instead of raising
    into Lambda's retries and the DLQ, and releases the job record's claim for a corrected retry."""

    code = "backend_rejected"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The spec field (``training.instance_type``) or the job's own field (``job_name``) the backend
        named, None when its answer did not say."""


@dataclass(frozen=True)
class StartedJob:
    job: str
    backend: str
    id: str
    """SageMaker: the training job ARN; Batch: the job id; local: what the twin answered."""
    already_started: bool = False


class TrainingBackend(Protocol):
    name: str

    def start(self, req: JobRequest) -> StartedJob:
        """Start the job, or find it already started (same name). Raises ``BackendError`` (retried), or
        :class:`JobRejectedError` when the backend refused the request itself (not retried)."""
        ...


def plan_search(backend: TrainingBackend, req: JobRequest) -> dict[str, Any] | None:
    """The backend's plan for the request's search (None without one); ``SearchNotSupportedError`` when
    the backend cannot run it (it has no ``plan_search``, or refuses this search). Called before the job
    record is written: nothing has started yet."""
    search = req.spec.training.search
    if search is None:
        return None
    plan = getattr(backend, "plan_search", None)
    if plan is None:
        raise SearchNotSupportedError(
            f"the {backend.name} backend cannot run a search (training.search): use sagemaker, batch or "
            "the local twin, or remove training.search"
        )
    out: dict[str, Any] = plan(req)
    return out


def search_base(req: JobRequest) -> dict[str, Any]:
    """What every backend's search plan records: strategy, limits, objective and direction."""
    search = req.spec.training.search
    assert search is not None
    return {
        "strategy": search.strategy,
        "max_trials": search.max_trials,
        "max_parallel": search.max_parallel,
        "objective": searching.objective_name(req.spec.metric),
        "direction": searching.direction(req.spec),
    }
