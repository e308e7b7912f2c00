"""Training backends: request shapes against moto, throttling and limits via botocore's Stubber,
and the local backend against a fake HTTP twin."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from modelops import aws
from modelops.compute import (
    BatchBackend,
    JobRejectedError,
    JobRequest,
    LocalBackend,
    RetryPolicy,
    SageMakerBackend,
    aws_tensorflow_image,
    source_bundle,
)
from modelops.domain.errors import BackendError
from modelops.domain.spec import parse_spec
from modelops.stages.train_trigger import canonical_spec_json, job_name
from modelops.storage import keys
from modelops.storage.jobs import JobStore
from modelops.storage.s3 import ObjectStore

ROLE = "arn:aws:iam::123456789012:role/modelops-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-training:1"
SHA = "ab" * 32
TRAIN_SHA = "cd" * 32
TRAIN_URI = "s3://registry/inputs/demo/modelops-demo-0123456789ab/train.csv"


def make_request(instance_type: str = "ml.g5.2xlarge", backend: str = "sagemaker") -> JobRequest:
    spec = parse_spec(
        {
            "task": "regression",
            "target": "y",
            "training": {"backend": backend, "instance_type": instance_type},
        }
    )
    return JobRequest(
        job="modelops-demo-0123456789ab",
        model="demo",
        spec=spec,
        spec_json=canonical_spec_json(spec),
        dataset_bucket="data",
        dataset_key="datasets/demo/train.csv",
        dataset_version_id="v1",
        dataset_sha256=SHA,
        rows=442,
        registry_bucket="registry",
        output_prefix=keys.staging_model_prefix("demo"),
        artifact_key=keys.output_artifact(keys.staging_prefix("demo", "modelops-demo-0123456789ab")),
        trials_prefix=keys.trials_prefix("demo", "modelops-demo-0123456789ab"),
        train_key=keys.staging_train_rows("demo", "modelops-demo-0123456789ab"),
        train_sha256=TRAIN_SHA,
        train_rows=350,
    )


class Sleeps(list[float]):
    """A fake ``sleep`` that records the delays (tests never really sleep)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def policy(sleeps: Sleeps, attempts: int = 4) -> RetryPolicy:
    import random

    return RetryPolicy(attempts=attempts, base_s=0.5, cap_s=8.0, sleep=sleeps, rng=random.Random(1))


@pytest.fixture
def aws_mock() -> Iterator[None]:
    with mock_aws(config={"batch": {"use_docker": False}}):
        aws.clear_cache()
        yield
    aws.clear_cache()


# ---------------------------------------------------------------------------- SageMaker on moto
def test_sagemaker_request_shape_on_moto(aws_mock: None) -> None:
    # Given the project's own training image
    sm = boto3.client("sagemaker", region_name="us-east-1")
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE)
    req = make_request()

    # When the job is started
    started = backend.start(req)

    # Then SageMaker holds a job with the image, instance type, channel, output, role and tags asked for
    assert not started.already_started and started.id.endswith(":training-job/modelops-demo-0123456789ab")
    job = sm.describe_training_job(TrainingJobName=req.job)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 1
    [channel] = job["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    # (issue 14) the channel is the platform's training rows, not the uploaded dataset
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == TRAIN_URI
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://registry/staging/demo/"
    assert job["RoleArn"] == ROLE
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 86_400
    hps = job["HyperParameters"]
    assert set(hps) == {"model", "job", "spec", "dataset_uri", "dataset_version_id", "dataset_sha256"}
    assert json.loads(hps["spec"])["training"]["instance_type"] == "ml.g5.2xlarge"
    # what the trainer reads and checks: the training rows (read by key, pinned by their SHA-256)
    assert hps["dataset_uri"] == TRAIN_URI
    assert hps["dataset_sha256"] == TRAIN_SHA and hps["dataset_version_id"] == ""
    # the tags keep the upload's lineage
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]}
    assert tags["modelops:model"] == "demo" and tags["modelops:dataset-sha256"] == SHA
    names = {m["Name"] for m in backend.request(req)["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"validation:rmse", "validation:auc", "validation:accuracy"} <= names


def test_sagemaker_with_the_aws_image_uploads_the_trainer_as_source(aws_mock: None) -> None:
    # Given no image of our own: the AWS TensorFlow image runs the uploaded source
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="registry")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    backend = SageMakerBackend(
        sm, role_arn=ROLE, region="us-east-1", sources=JobStore(ObjectStore(s3, "registry"))
    )

    backend.start(make_request("ml.g5.xlarge"))
    backend.start(dataclasses.replace(make_request("ml.m5.large"), job="modelops-demo-cpu"))

    gpu = sm.describe_training_job(TrainingJobName="modelops-demo-0123456789ab")
    assert gpu["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.16-gpu-py310"
    )
    cpu = sm.describe_training_job(TrainingJobName="modelops-demo-cpu")
    assert cpu["AlgorithmSpecification"]["TrainingImage"].endswith("tensorflow-training:2.16-cpu-py310")
    hps = gpu["HyperParameters"]
    assert json.loads(hps["sagemaker_program"]) == "train.py"
    source = json.loads(hps["sagemaker_submit_directory"])
    bucket, key = source[len("s3://") :].split("/", 1)
    assert bucket == "registry" and key.startswith("code/training/") and key.endswith("/sourcedir.tar.gz")
    # one upload, content-addressed, holding the entry script, the library and its requirements
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="registry")["Contents"]] == [key]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
        stub = tar.extractfile("train.py").read().decode()  # type: ignore[union-attr]
    assert {
        "train.py",
        "requirements.txt",
        "modelops/ml/trainer.py",
        "modelops/domain/dataset.py",
        "modelops/domain/spec.py",
    } <= names
    assert "run_sagemaker" in stub
    assert gzip.decompress(body) == gzip.decompress(source_bundle())  # reproducible


@pytest.mark.parametrize(
    ("region", "instance", "expected"),
    [
        (
            "eu-west-1",
            "ml.p3.2xlarge",
            "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:2.16-gpu-py310",
        ),
        (
            "me-south-1",
            "ml.c5.xlarge",
            "217643126080.dkr.ecr.me-south-1.amazonaws.com/tensorflow-training:2.16-cpu-py310",
        ),
    ],
)
def test_aws_tensorflow_image_by_region_and_device(region: str, instance: str, expected: str) -> None:
    assert aws_tensorflow_image(region, instance) == expected


# ---------------------------------------------------------------------------- SageMaker throttling (Stubber)
def _stubbed_sagemaker() -> tuple[Any, Stubber]:
    sm = boto3.client("sagemaker", region_name="us-east-1")
    return sm, Stubber(sm)


@pytest.mark.parametrize("code", ["ThrottlingException", "ResourceLimitExceeded", "InternalFailure"])
def test_sagemaker_retries_throttling_with_jitter_then_succeeds(code: str) -> None:
    sm, stub = _stubbed_sagemaker()
    sleeps = Sleeps()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(sleeps))
    req = make_request()
    status = 500 if code == "InternalFailure" else 400
    stub.add_client_error("create_training_job", service_error_code=code, http_status_code=status)
    stub.add_client_error("create_training_job", service_error_code=code, http_status_code=status)
    stub.add_response(
        "create_training_job",
        {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x"},
        expected_params=backend.request(req),
    )
    with stub:
        started = backend.start(req)
    stub.assert_no_pending_responses()
    assert started.id.endswith("training-job/x")
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # equal jitter around 0.5 s, 1 s


def test_sagemaker_gives_up_after_bounded_retries_so_lambda_retries_the_event() -> None:
    sm, stub = _stubbed_sagemaker()
    sleeps = Sleeps()
    backend = SageMakerBackend(
        sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(sleeps, 4)
    )
    for _ in range(4):
        stub.add_client_error(
            "create_training_job", service_error_code="ThrottlingException", http_status_code=400
        )
    with stub, pytest.raises(BackendError, match="still ThrottlingException after 4 attempts"):
        backend.start(make_request())
    stub.assert_no_pending_responses()
    assert len(sleeps) == 3
    assert sleeps == sorted(sleeps) and sleeps[-1] <= 2.0
    assert len(set(sleeps)) == 3


def test_sagemaker_resource_in_use_means_already_started() -> None:
    sm, stub = _stubbed_sagemaker()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(Sleeps()))
    stub.add_client_error(
        "create_training_job",
        service_error_code="ResourceInUse",
        service_message="Training job names must be unique within an AWS account and region",
    )
    stub.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "modelops-demo-0123456789ab",
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/modelops-demo-0123456789ab",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Training",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {},
            "CreationTime": "2025-01-01T00:00:00Z",
            "ModelArtifacts": {"S3ModelArtifacts": ""},
        },
    )
    with stub:
        started = backend.start(make_request())
    assert started.already_started
    assert started.id.endswith("modelops-demo-0123456789ab")


def test_sagemaker_validation_error_is_not_retried() -> None:
    sm, stub = _stubbed_sagemaker()
    sleeps = Sleeps()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(sleeps))
    stub.add_client_error(
        "create_training_job", service_error_code="ValidationException", http_status_code=400
    )
    with stub, pytest.raises(BackendError, match="ValidationException"):
        backend.start(make_request())
    assert sleeps == []


INSTANCE_TYPE_INVALID = (
    "1 validation error detected: Value 'ml.bogus.xlarge' at 'resourceConfig.instanceType' failed to satisfy "
    "constraint: Member must satisfy enum value set: [ml.m5.large, ml.g5.2xlarge]"
)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (INSTANCE_TYPE_INVALID, "training.instance_type"),
        (
            "1 validation error detected: Value 'modelops_demo' at 'trainingJobName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
            "job_name",
        ),
        ("Value 'x' at 'resourceConfig.volumeSizeInGB' failed", "resourceConfig.volumeSizeInGB"),
        ("Instance type ml.p5.48xlarge is not supported in this region", "training.instance_type"),
        ("Something else was wrong", None),
    ],
)
def test_sagemaker_validation_error_is_a_rejection_naming_the_field(message: str, field: str | None) -> None:
    """Issue 17: a ValidationException is not retried into the DLQ; it is a JobRejectedError (train_trigger
    rejects the dataset) carrying SageMaker's explanation and the field it named."""
    sm, stub = _stubbed_sagemaker()
    sleeps = Sleeps()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(sleeps))
    stub.add_client_error(
        "create_training_job",
        service_error_code="ValidationException",
        service_message=message,
        http_status_code=400,
    )
    with stub, pytest.raises(JobRejectedError) as caught:
        backend.start(make_request())
    assert caught.value.field == field and caught.value.code == "backend_rejected"
    assert message[:60] in str(caught.value) and sleeps == []


def test_a_tuning_job_validation_error_is_a_rejection_too() -> None:
    sm, stub = _stubbed_sagemaker()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(Sleeps()))
    req = make_request()
    spec = parse_spec(
        {
            **req.spec.model_dump(mode="json"),
            "training": {"search": {"strategy": "random", "max_trials": 4, "epochs": {"min": 2, "max": 5}}},
        }
    )
    stub.add_client_error(
        "create_hyper_parameter_tuning_job",
        service_error_code="ValidationException",
        service_message="Value 'ml.bogus' at 'trainingJobDefinition.resourceConfig.instanceType' failed",
        http_status_code=400,
    )
    with stub, pytest.raises(JobRejectedError) as caught:
        backend.start(dataclasses.replace(req, spec=spec, spec_json=canonical_spec_json(spec)))
    assert caught.value.field == "training.instance_type"


def test_a_refusal_that_is_not_invalid_stays_a_plain_backend_error_that_is_retried() -> None:
    sm, stub = _stubbed_sagemaker()
    backend = SageMakerBackend(
        sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=policy(Sleeps(), attempts=1)
    )
    stub.add_client_error(
        "create_training_job", service_error_code="AccessDeniedException", http_status_code=400
    )
    with stub, pytest.raises(BackendError) as caught:
        backend.start(make_request())
    assert not isinstance(caught.value, JobRejectedError)


def test_sagemaker_backend_needs_a_role() -> None:
    with pytest.raises(BackendError, match="role"):
        SageMakerBackend(object(), role_arn="", region="us-east-1", image_uri=IMAGE)


# ---------------------------------------------------------------------------- Batch on moto
@pytest.fixture
def batch_queue(aws_mock: None) -> tuple[Any, str, str]:
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="batch", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    batch = boto3.client("batch", region_name="us-east-1")
    ce = batch.create_compute_environment(
        computeEnvironmentName="gpu", type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName="training",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
    )["jobQueueArn"]
    definition = batch.register_job_definition(
        jobDefinitionName="modelops-training",
        type="container",
        containerProperties={
            "image": IMAGE,
            "command": ["--batch"],
            "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "15000"}],
        },
    )["jobDefinitionArn"]
    return batch, queue, definition


def test_batch_request_shape_on_moto(batch_queue: tuple[Any, str, str]) -> None:
    batch, queue, definition = batch_queue
    backend = BatchBackend(batch, job_queue=queue, job_definition=definition)
    req = make_request(backend="batch")

    started = backend.start(req)

    [job] = batch.describe_jobs(jobs=[started.id])["jobs"]
    assert job["jobName"] == req.job
    assert job["jobQueue"] == queue and job["jobDefinition"] == definition
    sent = backend.request(req)
    env = {e["name"]: e["value"] for e in sent["containerOverrides"]["environment"]}
    assert json.loads(env["SM_HPS"]) == req.hyperparameters()
    assert (
        env["MODELOPS_OUTPUT_S3"]
        == "s3://registry/staging/demo/modelops-demo-0123456789ab/output/model.tar.gz"
    )
    assert sent["tags"]["modelops:dataset-sha256"] == SHA and sent["tags"]["modelops:model"] == "demo"
    held = {e["name"]: e["value"] for e in job["container"].get("environment", [])}
    assert held.get("MODELOPS_OUTPUT_S3") == env["MODELOPS_OUTPUT_S3"]


def test_batch_does_not_submit_a_job_name_twice(batch_queue: tuple[Any, str, str]) -> None:
    batch, queue, definition = batch_queue
    backend = BatchBackend(batch, job_queue=queue, job_definition=definition)
    first = backend.start(make_request(backend="batch"))
    second = backend.start(make_request(backend="batch"))
    assert second.already_started and second.id == first.id
    listed = batch.list_jobs(
        jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["modelops-demo-0123456789ab"]}]
    )
    assert len(listed["jobSummaryList"]) == 1


def test_batch_keeps_two_different_jobs_apart_and_a_retry_finds_its_own(
    batch_queue: tuple[Any, str, str],
) -> None:
    """Issue 17: Batch does not refuse a duplicate name and ``find`` looks a job up by name, so two jobs
    that shared one would be taken for each other: two models whose names are cut to the same job name,
    same data and spec, must both be submitted; a retry of either finds its own submission."""
    batch, queue, definition = batch_queue
    backend = BatchBackend(batch, job_queue=queue, job_definition=definition)
    stem = "customer-churn-prediction-eu-"
    reqs = []
    for model in (stem + "west-1", stem + "east-1"):
        job = job_name(model, SHA, "cd" * 32, "p" * 21, stack="registry")
        reqs.append(dataclasses.replace(make_request(backend="batch"), job=job, model=model))

    west, east = (backend.start(r) for r in reqs)
    again = backend.start(reqs[0])

    assert not west.already_started and not east.already_started and west.id != east.id
    assert again.already_started and again.id == west.id
    for req, started in zip(reqs, (west, east), strict=True):
        listed = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [req.job]}])
        assert [j["jobId"] for j in listed["jobSummaryList"]] == [started.id]


def test_batch_retries_throttling_via_stubber() -> None:
    batch = boto3.client("batch", region_name="us-east-1")
    stub = Stubber(batch)
    sleeps = Sleeps()
    backend = BatchBackend(batch, job_queue="q", job_definition="d", retry=policy(sleeps))
    req = make_request(backend="batch")
    stub.add_client_error("list_jobs", service_error_code="TooManyRequestsException", http_status_code=429)
    stub.add_response("list_jobs", {"jobSummaryList": []})
    stub.add_client_error("submit_job", service_error_code="ServerException", http_status_code=500)
    stub.add_response(
        "submit_job", {"jobName": req.job, "jobId": "job-1"}, expected_params=backend.request(req)
    )
    with stub:
        started = backend.start(req)
    stub.assert_no_pending_responses()
    assert started.id == "job-1" and len(sleeps) == 2


def test_batch_backend_needs_the_stacks_queue() -> None:
    with pytest.raises(BackendError, match="TrainingBackend=batch"):
        BatchBackend(object(), job_queue="", job_definition="")


# ---------------------------------------------------------------------------- local twin over HTTP
class FakeTwin:
    """A fake of the twin's training service: scripted (status, body) answers, requests recorded."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]]):
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        twin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                twin.requests.append((self.path, json.loads(body)))
                status, doc = twin.answers.pop(0)
                payload = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTwin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_local_backend_posts_the_create_training_job_request() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/modelops-demo-0123456789ab"
    sleeps = Sleeps()
    with FakeTwin([(503, {"__type": "ServiceUnavailable"}), (200, {"TrainingJobArn": arn})]) as twin:
        backend = LocalBackend(twin.url + "/", role_arn=ROLE, retry=policy(sleeps))
        req = make_request()
        started = backend.start(req)
    assert started.id == arn and not started.already_started
    assert len(twin.requests) == 2 and len(sleeps) == 1
    path, body = twin.requests[-1]
    assert path == "/training-jobs"
    assert body == backend.request(req)
    assert body["TrainingJobName"] == req.job
    assert body["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == TRAIN_URI
    assert body["OutputDataConfig"]["S3OutputPath"] == "s3://registry/staging/demo/"
    assert body["HyperParameters"]["dataset_sha256"] == TRAIN_SHA


@pytest.mark.parametrize("answer", [(409, {}), (400, {"__type": "ResourceInUse", "message": "exists"})])
def test_local_backend_name_taken_means_already_started(answer: tuple[int, dict[str, Any]]) -> None:
    with FakeTwin([answer]) as twin:
        started = LocalBackend(twin.url, retry=policy(Sleeps())).start(make_request())
    assert started.already_started


def test_local_backend_bad_request_is_not_retried() -> None:
    sleeps = Sleeps()
    with FakeTwin([(400, {"__type": "ValidationException", "message": "no"})]) as twin:
        with pytest.raises(BackendError, match="ValidationException"):
            LocalBackend(twin.url, retry=policy(sleeps)).start(make_request())
    assert sleeps == [] and len(twin.requests) == 1


def test_local_backend_unreachable_twin_fails_after_bounded_retries() -> None:
    with FakeTwin([]) as twin:
        url = twin.url  # the port is closed once the server stops
    sleeps = Sleeps()
    with pytest.raises(BackendError, match="unreachable after 3 attempts"):
        LocalBackend(url, timeout_s=2, retry=policy(sleeps, 3)).start(make_request())
    assert len(sleeps) == 2


def test_batch_without_list_permission_still_submits() -> None:
    # batch:ListJobs cannot be scoped to a resource, so the template does not grant it
    batch = boto3.client("batch", region_name="us-east-1")
    stub = Stubber(batch)
    backend = BatchBackend(batch, job_queue="q", job_definition="d", retry=policy(Sleeps()))
    req = make_request(backend="batch")
    stub.add_client_error("list_jobs", service_error_code="AccessDeniedException", http_status_code=403)
    stub.add_response(
        "submit_job", {"jobName": req.job, "jobId": "job-2"}, expected_params=backend.request(req)
    )
    with stub:
        started = backend.start(req)
    stub.assert_no_pending_responses()
    assert started.id == "job-2" and not started.already_started


# ---------------------------------------------------------------------------- script mode (issue 15)
CODE_SHA = "ef" * 32
CODE_URI = f"s3://registry/code/demo/{CODE_SHA}.tar.gz"


def script_request(backend: str = "sagemaker", instance_type: str = "ml.g5.xlarge") -> JobRequest:
    req = make_request(instance_type, backend)
    spec = parse_spec(
        {
            "task": "regression",
            "target": "y",
            "training": {"backend": backend, "instance_type": instance_type, "entry_point": "src/train.py"},
        }
    )
    return dataclasses.replace(
        req, spec=spec, spec_json=canonical_spec_json(spec), code_uri=CODE_URI, code_sha256=CODE_SHA
    )


def _valid_for(client: Any, operation: str, params: dict[str, Any]) -> None:
    """botocore's own validation of ``params`` against the operation's input shape (raises when invalid)."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(
        params, client.meta.service_model.operation_model(operation).input_shape
    )
    assert not report.has_errors(), report.generate_report()


def test_sagemaker_script_mode_request_shape_via_stubber() -> None:
    # Given a script-mode job and no image of our own (the AWS TensorFlow image, SageMaker's script mode)
    sm, stub = _stubbed_sagemaker()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="eu-west-1", sources=object())  # type: ignore[arg-type]
    req = script_request()
    sent = backend.request(req)
    _valid_for(sm, "CreateTrainingJob", sent)
    stub.add_response(
        "create_training_job",
        {"TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{req.job}"},
        expected_params=sent,
    )

    # When it starts
    with stub:
        started = backend.start(req)

    # Then SageMaker was asked for exactly the script-mode job (botocore validated the request's shape)
    stub.assert_no_pending_responses()
    assert started.id.endswith(req.job)
    assert sent["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:2.16-gpu-py310"
    )
    hps = sent["HyperParameters"]
    assert hps["sagemaker_program"] == '"src/train.py"'  # JSON-encoded, as the SageMaker SDK sends it
    assert hps["sagemaker_submit_directory"] == json.dumps(CODE_URI)
    assert hps["sagemaker_region"] == '"eu-west-1"' and hps["code_sha256"] == CODE_SHA
    assert {"model", "job", "spec", "dataset_uri", "dataset_sha256"} <= set(hps)
    assert json.loads(hps["spec"])["training"]["entry_point"] == "src/train.py"
    assert sent["EnableNetworkIsolation"] is False  # it downloads its code and pip-installs
    assert sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == TRAIN_URI
    assert {"Key": "modelops:code-sha256", "Value": CODE_SHA} in sent["Tags"]


def test_sagemaker_script_mode_with_our_image_runs_it_through_the_entrypoint() -> None:
    sm, stub = _stubbed_sagemaker()
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE)
    req = script_request()
    sent = backend.request(req)
    stub.add_response("create_training_job", {"TrainingJobArn": "arn"}, expected_params=sent)
    with stub:
        backend.start(req)
    stub.assert_no_pending_responses()
    assert sent["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert json.loads(sent["HyperParameters"]["sagemaker_program"]) == "src/train.py"
    assert sent["EnableNetworkIsolation"] is False


def test_built_in_trainer_request_has_no_script_hyperparameters() -> None:
    sent = SageMakerBackend(object(), role_arn=ROLE, region="us-east-1", image_uri=IMAGE).request(
        make_request()
    )
    assert not {"sagemaker_program", "sagemaker_submit_directory", "code_sha256"} & set(
        sent["HyperParameters"]
    )
    assert sent["EnableNetworkIsolation"] is True
    assert not [t for t in sent["Tags"] if t["Key"] == "modelops:code-sha256"]


def test_batch_script_mode_submit_job_shape_via_stubber() -> None:
    batch = boto3.client("batch", region_name="us-east-1")
    stub = Stubber(batch)
    backend = BatchBackend(batch, job_queue="q", job_definition="d", retry=policy(Sleeps()))
    req = script_request("batch")
    sent = backend.request(req)
    _valid_for(batch, "SubmitJob", sent)
    stub.add_response("list_jobs", {"jobSummaryList": []})
    stub.add_response("submit_job", {"jobName": req.job, "jobId": "job-3"}, expected_params=sent)

    with stub:
        started = backend.start(req)

    stub.assert_no_pending_responses()
    assert started.id == "job-3"
    env = {e["name"]: e["value"] for e in sent["containerOverrides"]["environment"]}
    hps = json.loads(env["SM_HPS"])
    # the same hyperparameters as SageMaker's: the training image's entrypoint runs the script from them
    assert json.loads(hps["sagemaker_program"]) == "src/train.py"
    assert json.loads(hps["sagemaker_submit_directory"]) == CODE_URI
    assert hps["code_sha256"] == CODE_SHA and hps["dataset_uri"] == TRAIN_URI
    assert env["MODELOPS_OUTPUT_S3"].endswith("/output/model.tar.gz")
    assert sent["tags"]["modelops:code-sha256"] == CODE_SHA


def test_local_backend_sends_the_script_mode_request() -> None:
    sent = LocalBackend("http://127.0.0.1:1", token="t").request(script_request("local"))
    _valid_for(boto3.client("sagemaker", region_name="us-east-1"), "CreateTrainingJob", sent)
    assert json.loads(sent["HyperParameters"]["sagemaker_submit_directory"]) == CODE_URI
