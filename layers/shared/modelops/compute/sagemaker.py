"""The SageMaker backend: ``CreateTrainingJob``, or ``CreateHyperParameterTuningJob`` for a spec with
``training.search`` (every strategy), with the project's training image or the AWS TensorFlow training
image and the trainer uploaded as source (``sagemaker_program`` / ``sagemaker_submit_directory``).
``ResourceInUse`` (the name is taken) means "already started"; a ``ValidationException`` (an instance
type SageMaker does not offer, a name it does not accept) is a
:class:`~modelops.compute.request.JobRejectedError` naming the field (:func:`validation_field`). Also the
request shapes the local twin is sent (:func:`create_training_job_request`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from modelops import aws
from modelops.compute.request import (
    HYPERPARAMETER_MAX_CHARS,
    JobRejectedError,
    JobRequest,
    StartedJob,
    search_base,
)
from modelops.compute.retry import RetryPolicy, aws_retryable, refused
from modelops.compute.source_bundle import SOURCE_PROGRAM, source_bundle
from modelops.domain import search as searching
from modelops.domain.errors import BackendError, RegistryUnavailableError

# Account that publishes the AWS Deep Learning Containers, by region (763104351884 elsewhere).
_DLC_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
}
AWS_TF_VERSION = "2.16"
AWS_TF_PYTHON = "py310"

_VALIDATION_AT = re.compile(r"\bat '([A-Za-z0-9_.\[\]]+)'")
"""SageMaker's "1 validation error detected: Value 'x' at 'resourceConfig.instanceType' failed to ..."."""
_REQUEST_FIELDS = {
    "instancetype": "training.instance_type",
    "trainingjobname": "job_name",
    "hyperparametertuningjobname": "job_name",
    "maxparalleltrainingjobs": "training.search.max_parallel",
    "maxnumberoftrainingjobs": "training.search.max_trials",
    "maxruntimeinseconds": "max_runtime_seconds",
}
"""The request members SageMaker names, as the fields an uploader (the spec) or the stack's settings set."""

METRIC_NAMES = ("rmse", "mae", "r2", "accuracy", "auc", "log_loss")
OBJECTIVE_METRICS = ("rmse", "mae", "accuracy", "auc")


UPLOAD_ERRORS: tuple[type[BaseException], ...] = (*aws.AwsError, RegistryUnavailableError)
"""What a failed source upload raises (the store's own "unavailable" included)."""


class SourceStore(Protocol):
    """Where the trainer's source bundle is uploaded (``modelops.storage.jobs.JobStore``)."""

    def put_source_bundle(self, bundle: bytes) -> str:
        """Upload ``bundle`` once (content-addressed, create-only); its ``s3://`` URI."""
        ...


def aws_tensorflow_image(region: str, instance_type: str) -> str:
    """The AWS Deep Learning Container for TensorFlow training (GPU for ml.g*/ml.p* instances)."""
    family = instance_type.split(".")[1] if instance_type.count(".") >= 2 else ""
    device = "gpu" if family[:1] in ("g", "p") else "cpu"
    account = _DLC_ACCOUNTS.get(region, "763104351884")
    suffix = ".com.cn" if region.startswith("cn-") else ".com"
    return f"{account}.dkr.ecr.{region}.amazonaws{suffix}/tensorflow-training:{AWS_TF_VERSION}-{device}-{AWS_TF_PYTHON}"


def validation_field(message: str) -> str | None:
    """The field a SageMaker ``ValidationException`` names: ``training.instance_type`` for
    ``resourceConfig.instanceType`` (also inside a tuning job's definition), ``job_name``, ... (the
    member path itself for one not listed; None when the message names none)."""
    found = _VALIDATION_AT.search(message)
    if found:
        path = found.group(1)
        member = re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1].lower()
        return _REQUEST_FIELDS.get(member, path)
    if "instance type" in message.lower():
        return "training.instance_type"
    return None


def metric_definitions() -> list[dict[str, str]]:
    """Regexes that pick the trainer's ``validation:<metric>=<value>`` lines out of the job's log (and, for
    a tuning job's trials, the ``objective:<metric>=<value>`` lines: one per epoch, then the final one)."""
    return (
        [{"Name": f"validation:{m}", "Regex": f"validation:{m}=([-+0-9.eE]+|nan|inf)"} for m in METRIC_NAMES]
        + [{"Name": "train:loss", "Regex": r"epoch \d+/\d+ loss=([-+0-9.eE]+)"}]
        + [
            {"Name": searching.objective_name(m), "Regex": f"{searching.objective_name(m)}=([-+0-9.eE]+)"}
            for m in OBJECTIVE_METRICS
        ]
    )


def parameter_ranges(req: JobRequest) -> dict[str, list[dict[str, Any]]]:
    """SageMaker's ``ParameterRanges`` for the spec's search: Continuous ``learning_rate`` (Logarithmic or
    Linear) and ``dropout``, Integer ``epochs``, Categorical ``batch_size`` and ``hidden_units`` (widths
    joined by ``-``, ``none`` for no hidden layer)."""
    search = req.spec.training.search
    assert search is not None
    continuous, integer, categorical = [], [], []
    if search.learning_rate is not None:
        lr = search.learning_rate
        continuous.append(
            {
                "Name": "learning_rate",
                "MinValue": f"{lr.min:.10g}",
                "MaxValue": f"{lr.max:.10g}",
                "ScalingType": "Logarithmic" if lr.log else "Linear",
            }
        )
    if search.dropout is not None:
        continuous.append(
            {
                "Name": "dropout",
                "MinValue": f"{search.dropout.min:.10g}",
                "MaxValue": f"{search.dropout.max:.10g}",
                "ScalingType": "Linear",
            }
        )
    if search.epochs is not None:
        integer.append(
            {
                "Name": "epochs",
                "MinValue": str(search.epochs.min),
                "MaxValue": str(search.epochs.max),
                "ScalingType": "Linear",
            }
        )
    if search.batch_size is not None:
        categorical.append({"Name": "batch_size", "Values": [str(b) for b in search.batch_size]})
    if search.hidden_units is not None:
        categorical.append(
            {"Name": "hidden_units", "Values": [searching.encode_units(u) for u in search.hidden_units]}
        )
    return {
        "ContinuousParameterRanges": continuous,
        "IntegerParameterRanges": integer,
        "CategoricalParameterRanges": categorical,
    }


def create_tuning_job_request(
    req: JobRequest,
    *,
    image: str,
    role_arn: str,
    max_runtime_s: int = 86_400,
    volume_gb: int = 30,
    extra_hyperparameters: dict[str, str] | None = None,
    network_isolation: bool = False,
) -> dict[str, Any]:
    """The ``CreateHyperParameterTuningJob`` request for a spec with ``training.search``.

    Each training job it launches runs one trial (static hyperparameter ``search_mode=tuning``; the
    tuned values come as hyperparameters) with the same image, role, channel and limits as a single
    job, and writes to ``staging/{model}/{job}/trials/{training job}/output/model.tar.gz``. The objective
    is ``objective:<promotion metric>`` (Minimize for rmse/mae, Maximize for accuracy/auc); trials that
    fall behind are stopped early (``TrainingJobEarlyStoppingType`` Auto; Hyperband brings its own).
    """
    search = req.spec.training.search
    if search is None:
        raise BackendError("a tuning job needs training.search in the spec")
    single = create_training_job_request(
        req,
        image=image,
        role_arn=role_arn,
        max_runtime_s=max_runtime_s,
        volume_gb=volume_gb,
        extra_hyperparameters={**(extra_hyperparameters or {}), searching.SEARCH_MODE_HP: "tuning"},
        network_isolation=network_isolation,
    )
    config: dict[str, Any] = {
        "Strategy": {"random": "Random", "bayesian": "Bayesian", "hyperband": "Hyperband"}[search.strategy],
        "HyperParameterTuningJobObjective": {
            "Type": "Minimize" if searching.direction(req.spec) == "minimize" else "Maximize",
            "MetricName": searching.objective_name(req.spec.metric),
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": search.max_trials,
            "MaxParallelTrainingJobs": search.parallel,
        },
        "ParameterRanges": parameter_ranges(req),
        "TrainingJobEarlyStoppingType": "Off" if search.strategy == "hyperband" else "Auto",
        "RandomSeed": searching.seed(req.spec),
    }
    if search.strategy == "hyperband":
        config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": req.spec.training.epochs}
        }
    return {
        "HyperParameterTuningJobName": searching.tuning_job_name(req.job, req.job_prefix),
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": {
            "StaticHyperParameters": single["HyperParameters"],
            "AlgorithmSpecification": single["AlgorithmSpecification"],
            "RoleArn": role_arn,
            "InputDataConfig": single["InputDataConfig"],
            "OutputDataConfig": {"S3OutputPath": req.trials_path},
            "ResourceConfig": single["ResourceConfig"],
            "StoppingCondition": single["StoppingCondition"],
            "EnableNetworkIsolation": single["EnableNetworkIsolation"],
        },
        "Tags": single["Tags"],
    }


def create_training_job_request(
    req: JobRequest,
    *,
    image: str,
    role_arn: str,
    max_runtime_s: int = 86_400,
    volume_gb: int = 30,
    extra_hyperparameters: dict[str, str] | None = None,
    network_isolation: bool = False,
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request for ``req`` (also what the local twin is sent).

    ``network_isolation``: the container gets no network at all (SageMaker still downloads the channels
    and uploads the model); for the project's own training image, which needs none (docs/training.md).
    """
    hps = req.hyperparameters()
    hps.update(extra_hyperparameters or {})
    too_long = [k for k, v in hps.items() if len(v) > HYPERPARAMETER_MAX_CHARS]
    if too_long:
        raise JobRejectedError(  # the same request is always too long: a rejection, not a retry
            f"hyperparameters longer than {HYPERPARAMETER_MAX_CHARS} characters: {', '.join(too_long)}",
            field=too_long[0],
        )
    return {
        "TrainingJobName": req.job,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(),
        },
        "RoleArn": role_arn,
        "HyperParameters": hps,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": req.train_channel_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
                "InputMode": req.train_input_mode,
            }
        ],
        "OutputDataConfig": {"S3OutputPath": req.output_path},
        "ResourceConfig": {
            "InstanceType": req.spec.training.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "EnableNetworkIsolation": network_isolation,
        "Tags": [{"Key": k, "Value": v} for k, v in req.tags().items()],
    }


class SageMakerBackend:
    name = "sagemaker"

    def __init__(
        self,
        sagemaker: Any,
        *,
        role_arn: str,
        region: str,
        image_uri: str = "",
        sources: SourceStore | None = None,
        retry: RetryPolicy | None = None,
        max_runtime_s: int = 86_400,
    ):
        """``image_uri`` empty: the AWS TensorFlow image, with the trainer's source bundle uploaded to
        ``sources``."""
        if not role_arn:
            raise BackendError("TRAINING_ROLE_ARN is not set: SageMaker needs a role to run the job as")
        if not image_uri and sources is None:
            raise BackendError("the AWS TensorFlow image needs a place to upload the trainer's source")
        self.sm = sagemaker
        self.role_arn = role_arn
        self.region = region
        self.image_uri = image_uri
        self.sources = sources
        self.retry = retry or RetryPolicy()
        self.max_runtime_s = max_runtime_s
        self._source_uri: str | None = None

    def upload_source(self) -> str:
        """Upload the trainer's source bundle once (content-addressed, create-only); its S3 URI."""
        if self._source_uri is None:
            assert self.sources is not None
            try:
                self._source_uri = self.sources.put_source_bundle(source_bundle())
            except UPLOAD_ERRORS as exc:
                raise BackendError(
                    f"could not upload the trainer's source bundle: {aws.error_code(exc) or exc}"
                ) from exc
        return self._source_uri

    def request(self, req: JobRequest) -> dict[str, Any]:
        extra: dict[str, str] = {}
        image = self.image_uri
        if req.script_mode:
            # The user's script (its sagemaker_program / sagemaker_submit_directory are the job's own
            # hyperparameters): the AWS TensorFlow image runs it as SageMaker's script mode does; the
            # project's image (TrainingImageUri) runs it through its entrypoint, as on Batch. Either
            # downloads the archive and may pip-install requirements.txt: no network isolation.
            return create_training_job_request(
                req,
                image=image or aws_tensorflow_image(self.region, req.spec.training.instance_type),
                role_arn=self.role_arn,
                max_runtime_s=self.max_runtime_s,
                extra_hyperparameters={
                    "sagemaker_region": json.dumps(self.region),
                    "sagemaker_container_log_level": "20",
                },
                network_isolation=False,
            )
        if not image:
            image = aws_tensorflow_image(self.region, req.spec.training.instance_type)
            # JSON-encoded, as the SageMaker Python SDK sends them (the toolkit decodes them).
            extra = {
                "sagemaker_program": json.dumps(SOURCE_PROGRAM),
                "sagemaker_submit_directory": json.dumps(self.upload_source()),
                "sagemaker_region": json.dumps(self.region),
                "sagemaker_container_log_level": "20",
            }
        build = create_training_job_request if req.spec.training.search is None else create_tuning_job_request
        return build(
            req,
            image=image,
            role_arn=self.role_arn,
            max_runtime_s=self.max_runtime_s,
            extra_hyperparameters=extra,
            # the project's image needs no network; script mode downloads its source and pip-installs
            network_isolation=bool(self.image_uri),
        )

    def plan_search(self, req: JobRequest) -> dict[str, Any]:
        """Every strategy runs as a SageMaker hyperparameter tuning job."""
        return {
            **search_base(req),
            "mode": "tuning",
            "tuning_job": searching.tuning_job_name(req.job, req.job_prefix),
        }

    def start(self, req: JobRequest) -> StartedJob:
        if req.spec.training.search is not None:
            return self._start_tuning(req)
        request = self.request(req)
        try:
            resp = self.retry.call(
                "sagemaker:CreateTrainingJob", lambda: self.sm.create_training_job(**request), aws_retryable
            )
        except aws.AwsError as exc:
            if aws.error_code(exc) == "ResourceInUse":
                return StartedJob(req.job, self.name, self._arn(req.job), already_started=True)
            raise refused("sagemaker:CreateTrainingJob", req.job, exc, validation_field) from exc
        return StartedJob(req.job, self.name, str(resp.get("TrainingJobArn", "")))

    def _start_tuning(self, req: JobRequest) -> StartedJob:
        request = self.request(req)
        name = request["HyperParameterTuningJobName"]
        try:
            resp = self.retry.call(
                "sagemaker:CreateHyperParameterTuningJob",
                lambda: self.sm.create_hyper_parameter_tuning_job(**request),
                aws_retryable,
            )
        except aws.AwsError as exc:
            if aws.error_code(exc) == "ResourceInUse":
                return StartedJob(req.job, self.name, self._tuning_arn(name), already_started=True)
            raise refused(
                "sagemaker:CreateHyperParameterTuningJob", f"{name} (job {req.job})", exc, validation_field
            ) from exc
        return StartedJob(req.job, self.name, str(resp.get("HyperParameterTuningJobArn", "")))

    def _tuning_arn(self, name: str) -> str:
        return self._describe_arn(
            "DescribeHyperParameterTuningJob",
            "HyperParameterTuningJobArn",
            lambda: self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        )

    def _arn(self, job: str) -> str:
        return self._describe_arn(
            "DescribeTrainingJob",
            "TrainingJobArn",
            lambda: self.sm.describe_training_job(TrainingJobName=job),
        )

    def _describe_arn(self, operation: str, key: str, call: Callable[[], Any]) -> str:
        """The ARN of a job that already exists (best effort: "" when it cannot be described)."""
        try:
            resp = self.retry.call(f"sagemaker:{operation}", call, aws_retryable)
        except aws.AwsError:
            return ""
        return str(resp.get(key, ""))
