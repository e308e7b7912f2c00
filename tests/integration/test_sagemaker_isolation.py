"""Network isolation of SageMaker jobs (issue 17, finding 4): a job that runs the project's own training
image is started with ``EnableNetworkIsolation`` (a single job, and every trial of a tuning job); one
that runs the AWS TensorFlow image in script mode cannot be (it downloads its source bundle from S3 and
pip-installs its requirements inside the container), so it says so explicitly. The requests go through
botocore's Stubber, which also checks them against SageMaker's API model."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from modelops.compute import JobRequest, SageMakerBackend
from modelops.domain.spec import parse_spec
from modelops.stages.train_trigger import canonical_spec_json
from modelops.storage import keys

ROLE = "arn:aws:iam::123456789012:role/modelops-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-training:1"
JOB = "modelops-demo-0123456789ab"
SOURCE_URI = "s3://registry/sources/abc/sourcedir.tar.gz"
SEARCH = {
    "max_trials": 4,
    "max_parallel": 2,
    "strategy": "random",
    "learning_rate": {"min": 0.001, "max": 0.1},
}


class Sources:
    """Where the AWS TensorFlow image's source bundle would be uploaded."""

    def __init__(self) -> None:
        self.bundles: list[bytes] = []

    def put_source_bundle(self, bundle: bytes) -> str:
        self.bundles.append(bundle)
        return SOURCE_URI


def make_request(*, search: bool = False) -> JobRequest:
    training: dict[str, Any] = {"backend": "sagemaker", "instance_type": "ml.g5.2xlarge"}
    if search:
        training["search"] = SEARCH
    spec = parse_spec({"task": "regression", "target": "y", "training": training})
    return JobRequest(
        job=JOB,
        model="demo",
        spec=spec,
        spec_json=canonical_spec_json(spec),
        dataset_bucket="data",
        dataset_key="datasets/demo/train.csv",
        dataset_version_id="v1",
        dataset_sha256="ab" * 32,
        rows=442,
        registry_bucket="registry",
        output_prefix=keys.staging_model_prefix("demo"),
        artifact_key=keys.output_artifact(keys.staging_prefix("demo", JOB)),
        trials_prefix=keys.trials_prefix("demo", JOB),
    )


def backend_for(image_uri: str) -> tuple[SageMakerBackend, Stubber, Sources]:
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sources = Sources()
    backend = SageMakerBackend(
        sm, role_arn=ROLE, region="us-east-1", image_uri=image_uri, sources=None if image_uri else sources
    )
    return backend, Stubber(sm), sources


def expected(request: dict[str, Any], **asserted: Any) -> dict[str, Any]:
    """Every member of ``request`` as ANY but the ones asserted (the Stubber compares exact keys)."""
    return {**{k: ANY for k in request}, **asserted}


def test_a_job_on_the_projects_image_runs_without_network() -> None:
    # Given the project's own training image (TrainingImageUri set)
    backend, stub, _ = backend_for(IMAGE)
    req = make_request()
    shape = expected(
        backend.request(req),
        TrainingJobName=JOB,
        AlgorithmSpecification={
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": ANY,
        },
        EnableNetworkIsolation=True,
    )
    stub.add_response(
        "create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:::training-job/{JOB}"}, shape
    )

    # When the job is started, then CreateTrainingJob asks for network isolation
    with stub:
        backend.start(req)
    stub.assert_no_pending_responses()


def test_every_trial_of_a_tuning_job_on_the_projects_image_runs_without_network() -> None:
    backend, stub, _ = backend_for(IMAGE)
    req = make_request(search=True)
    request = backend.request(req)
    definition = expected(
        request["TrainingJobDefinition"],
        AlgorithmSpecification={
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": ANY,
        },
        EnableNetworkIsolation=True,
    )
    stub.add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": "arn:aws:sagemaker:::hyper-parameter-tuning-job/x"},
        expected(request, TrainingJobDefinition=definition),
    )

    with stub:
        backend.start(req)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("search", [False, True], ids=["job", "tuning"])
def test_script_mode_on_the_aws_image_keeps_its_network_and_installs_a_hashed_lock(search: bool) -> None:
    """Script mode needs the network: the container itself downloads ``sagemaker_submit_directory`` and
    pip-installs the bundle's requirements.txt, which is why that requirements.txt is a hashed lock."""
    backend, stub, sources = backend_for("")
    req = make_request(search=search)
    request = backend.request(req)
    if search:
        definition = request["TrainingJobDefinition"]
        hps = definition["StaticHyperParameters"]
        shape = expected(request, TrainingJobDefinition=expected(definition, EnableNetworkIsolation=False))
        operation, response = "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:t"}
    else:
        hps = request["HyperParameters"]
        shape = expected(request, EnableNetworkIsolation=False)
        operation, response = "create_training_job", {"TrainingJobArn": "arn:j"}
    stub.add_response(operation, response, shape)

    with stub:
        backend.start(req)
    stub.assert_no_pending_responses()
    assert json.loads(hps["sagemaker_submit_directory"]) == SOURCE_URI
    assert len(sources.bundles) == 1  # its requirements.txt: tests/unit/test_images.py
