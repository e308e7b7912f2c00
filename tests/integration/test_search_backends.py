"""A search on each backend: the SageMaker tuning request (botocore's Stubber, and moto), the Batch array
job, the local twin's single job, and searches a backend cannot run (refused before any job starts)."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from modelops.compute import (
    BatchBackend,
    JobRequest,
    LocalBackend,
    SageMakerBackend,
    StartedJob,
    create_tuning_job_request,
    metric_definitions,
    plan_search,
)
from modelops.domain.errors import SearchNotSupportedError
from modelops.domain.search import tuning_job_name
from modelops.domain.spec import parse_spec
from modelops.stages.train_trigger import canonical_spec_json, job_name, spec_sha256
from modelops.storage import keys
from tests.integration.test_train_trigger import IMAGE, ROLE, Stack, good_csv, stack  # noqa: F401 - fixture

SHA = "ab" * 32
JOB = "modelops-demo-0123456789ab"
SEARCH = {
    "max_trials": 4,
    "max_parallel": 2,
    "strategy": "bayesian",
    "seed": 7,
    "learning_rate": {"min": 0.001, "max": 0.1},
    "batch_size": [16, 64],
    "hidden_units": [[16], [32, 16], []],
    "dropout": {"min": 0.0, "max": 0.3},
    "epochs": {"min": 5, "max": 40},
}


def make_request(backend: str = "sagemaker", task: str = "regression", **search: Any) -> JobRequest:
    doc: dict[str, Any] = {
        "task": task,
        "target": "y",
        "training": {"backend": backend, "instance_type": "ml.g5.2xlarge", "search": {**SEARCH, **search}},
    }
    if task == "binary":
        doc["promotion"] = {"metric": "auc"}
    spec = parse_spec(doc)
    return JobRequest(
        job=JOB,
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
        artifact_key=keys.output_artifact(keys.staging_prefix("demo", JOB)),
        trials_prefix=keys.trials_prefix("demo", JOB),
    )


# ---------------------------------------------------------------------------- SageMaker
def test_sagemaker_search_is_one_tuning_job_with_the_trainers_metric_definitions() -> None:
    # Given a search spec and a SageMaker client that expects exactly this request
    req = make_request()
    sm = boto3.client("sagemaker", region_name="us-east-1")
    name = tuning_job_name(JOB, "modelops")
    static = {**req.hyperparameters(), "search_mode": "tuning"}
    expected = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "objective:rmse"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": "0.001",
                        "MaxValue": "0.1",
                        "ScalingType": "Logarithmic",
                    },
                    {"Name": "dropout", "MinValue": "0", "MaxValue": "0.3", "ScalingType": "Linear"},
                ],
                "IntegerParameterRanges": [
                    {"Name": "epochs", "MinValue": "5", "MaxValue": "40", "ScalingType": "Linear"}
                ],
                "CategoricalParameterRanges": [
                    {"Name": "batch_size", "Values": ["16", "64"]},
                    {"Name": "hidden_units", "Values": ["16", "32-16", "none"]},
                ],
            },
            "TrainingJobEarlyStoppingType": "Auto",
            "RandomSeed": 7,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": static,
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": metric_definitions(),
            },
            "RoleArn": ROLE,
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": "s3://data/datasets/demo/train.csv",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": "text/csv",
                    "CompressionType": "None",
                    "InputMode": "File",
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://registry/staging/demo/{JOB}/trials/"},
            "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86_400},
            "EnableNetworkIsolation": True,  # the project's own image needs no network (issue 17)
        },
        "Tags": [
            {"Key": "modelops:model", "Value": "demo"},
            {"Key": "modelops:dataset-sha256", "Value": SHA},
            {"Key": "modelops:job", "Value": JOB},
        ],
    }
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{name}"
    backend = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE)

    # When the backend starts it
    with Stubber(sm) as stub:
        stub.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": arn}, expected)
        started = backend.start(req)
        stub.assert_no_pending_responses()

    # Then one tuning job (no plain training job) under a short name derived from the job
    assert started == StartedJob(JOB, "sagemaker", arn)
    assert len(name) <= 32 and name.startswith("modelops-")
    assert backend.plan_search(req) == {
        "mode": "tuning",
        "tuning_job": name,
        "strategy": "bayesian",
        "max_trials": 4,
        "max_parallel": 2,
        "objective": "objective:rmse",
        "direction": "minimize",
    }
    # and the objective's regex reads the trainer's lines (per epoch, then the final value)
    [objective] = [d for d in metric_definitions() if d["Name"] == "objective:rmse"]
    log = (
        "epoch 3/40 loss=0.5 val_loss=0.6\nobjective:rmse=57.25\nvalidation:rmse=55\nobjective:rmse=54.125\n"
    )
    assert re.findall(objective["Regex"], log) == ["57.25", "54.125"]


@pytest.mark.parametrize(
    ("strategy", "task", "expected"),
    [
        ("random", "regression", ("Random", "Auto", "Minimize", "objective:rmse")),
        ("hyperband", "binary", ("Hyperband", "Off", "Maximize", "objective:auc")),
    ],
)
def test_strategies_objective_direction_and_hyperband(
    strategy: str, task: str, expected: tuple[str, ...]
) -> None:
    extra: dict[str, Any] = {"strategy": strategy}
    if strategy == "hyperband":
        extra["epochs"] = None  # hyperband owns the epochs
    req = make_request(task=task, **extra)
    request = create_tuning_job_request(req, image=IMAGE, role_arn=ROLE)
    config = request["HyperParameterTuningJobConfig"]
    got = (
        config["Strategy"],
        config["TrainingJobEarlyStoppingType"],
        config["HyperParameterTuningJobObjective"]["Type"],
        config["HyperParameterTuningJobObjective"]["MetricName"],
    )
    assert got == expected
    if strategy == "hyperband":
        assert config["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 50}}
        assert config["ParameterRanges"]["IntegerParameterRanges"] == []
    else:
        assert "StrategyConfig" not in config
    # what botocore would send is valid against the SageMaker API model
    sm = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(sm) as stub:
        stub.add_response(
            "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, request
        )
        sm.create_hyper_parameter_tuning_job(**request)


def test_a_taken_tuning_job_name_means_already_started() -> None:
    req = make_request()
    sm = boto3.client("sagemaker", region_name="us-east-1")
    name = tuning_job_name(JOB, "modelops")
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{name}"
    with Stubber(sm) as stub:
        stub.add_client_error("create_hyper_parameter_tuning_job", "ResourceInUse", "exists")
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            {
                "HyperParameterTuningJobName": name,
                "HyperParameterTuningJobArn": arn,
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Bayesian",
                    "ResourceLimits": {"MaxParallelTrainingJobs": 2},
                },
                "HyperParameterTuningJobStatus": "InProgress",
                "CreationTime": "2025-01-01T00:00:00Z",
                "TrainingJobStatusCounters": {},
                "ObjectiveStatusCounters": {},
            },
            {"HyperParameterTuningJobName": name},
        )
        started = SageMakerBackend(sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE).start(req)
    assert started.already_started and started.id == arn


# ---------------------------------------------------------------------------- Batch
def test_batch_search_is_an_array_job_of_random_trials() -> None:
    req = make_request(backend="batch", strategy="random")
    batch = boto3.client("batch", region_name="us-east-1")
    backend = BatchBackend(batch, job_queue="q", job_definition="d")
    hps = {**req.hyperparameters(), "search_mode": "array"}
    expected = {
        "jobName": JOB,
        "jobQueue": "q",
        "jobDefinition": "d",
        "arrayProperties": {"size": 4},
        "containerOverrides": {
            "environment": [
                {"name": "SM_HPS", "value": json.dumps(hps, sort_keys=True)},
                {
                    "name": "MODELOPS_OUTPUT_S3",
                    "value": f"s3://registry/staging/demo/{JOB}/output/model.tar.gz",
                },
                {"name": "MODELOPS_JOB_NAME", "value": JOB},
            ]
        },
        "tags": ANY,
        "propagateTags": True,
    }
    with Stubber(batch) as stub:
        stub.add_response("list_jobs", {"jobSummaryList": []}, {"jobQueue": "q", "filters": ANY})
        stub.add_response("submit_job", {"jobName": JOB, "jobId": "j-1", "jobArn": "arn:j-1"}, expected)
        started = backend.start(req)
        stub.assert_no_pending_responses()
    assert started.id == "j-1"
    assert plan_search(backend, req) == {
        "mode": "array",
        "array_size": 4,
        "strategy": "random",
        "max_trials": 4,
        "max_parallel": 2,
        "objective": "objective:rmse",
        "direction": "minimize",
    }


@pytest.mark.parametrize("strategy", ["bayesian", "hyperband"])
def test_batch_refuses_a_search_whose_trials_learn_from_each_other(strategy: str) -> None:
    extra: dict[str, Any] = {"strategy": strategy}
    if strategy == "hyperband":
        extra["epochs"] = None
    req = make_request(backend="batch", **extra)
    backend = BatchBackend(boto3.client("batch", region_name="us-east-1"), job_queue="q", job_definition="d")
    with pytest.raises(SearchNotSupportedError, match="strategy 'random' only"):
        plan_search(backend, req)


def test_the_local_twin_runs_the_search_in_one_training_job() -> None:
    req = make_request(backend="local")
    backend = LocalBackend("http://127.0.0.1:1")
    assert plan_search(backend, req)["mode"] == "in_job"
    sent = backend.request(req)
    assert sent["TrainingJobName"] == JOB and "search_mode" not in sent["HyperParameters"]
    assert parse_spec(sent["HyperParameters"]["spec"]).training.search == req.spec.training.search


# ---------------------------------------------------------------------------- train_trigger
def test_a_search_spec_starts_one_tuning_job_and_records_it(stack: Stack) -> None:  # noqa: F811
    # Given a spec with a search and a dataset (moto implements CreateHyperParameterTuningJob)
    spec = {
        "task": "regression",
        "target": "y",
        "training": {"epochs": 5, "search": {**SEARCH, "max_trials": 4}},
    }
    stack.put_spec(spec)
    body = good_csv()
    record = stack.put("datasets/demo/train.csv", body)

    [res] = stack.trigger().handle_event({"Records": [record]})["results"]

    import hashlib

    job = job_name(
        "demo", hashlib.sha256(body).hexdigest(), spec_sha256(parse_spec(spec)), "modelops", stack="registry"
    )
    name = tuning_job_name(job, "modelops")
    assert res["status"] == "started" and res["job"] == job and res["id"].endswith(f"/{name}")
    desc = stack.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert desc["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 4
    assert desc["TrainingJobDefinition"]["StaticHyperParameters"]["job"] == job
    assert stack.jobs() == []  # no plain training job
    doc = stack.json("registry", f"jobs/{job}.json")
    assert doc["search"]["tuning_job"] == name and doc["search"]["mode"] == "tuning"
    assert [k for k, _ in stack.events()] == ["TrainingJobStarted"]


def test_a_search_the_backend_cannot_run_is_refused_before_any_job_starts(stack: Stack) -> None:  # noqa: F811
    # Given a Batch stack and a Bayesian search (trials that learn from each other cannot be an array job)
    stack.put_spec({"task": "regression", "target": "y", "training": {"backend": "batch", "search": SEARCH}})
    record = stack.put("datasets/demo/train.csv", good_csv())
    submitted: list[Any] = []
    batch = BatchBackend(boto3.client("batch", region_name="us-east-1"), job_queue="q", job_definition="d")
    batch.start = lambda req: submitted.append(req)  # type: ignore[method-assign]
    trigger = stack.trigger(persistence=False)
    trigger.backends = lambda name: batch

    [res] = trigger.handle_event({"Records": [record]})["results"]

    # Then the dataset is rejected with the reason, quarantined, and nothing was recorded or started
    assert res["status"] == "rejected" and res["code"] == "search_not_supported"
    assert "strategy 'random' only" in res["reason"]
    assert submitted == [] and stack.keys("registry", "jobs/") == []
    assert stack.keys("data", "quarantine/demo/train.csv/")
    assert [k for k, _ in stack.events()] == ["DatasetRejected"]


def test_a_backend_without_search_support_is_a_clear_error_before_any_job_starts(stack: Stack) -> None:  # noqa: F811
    class PlainBackend:
        """A backend implementing only ``start`` (the TrainingBackend interface without ``plan_search``)."""

        name = "plain"

        def __init__(self) -> None:
            self.started: list[JobRequest] = []

        def start(self, req: JobRequest) -> StartedJob:
            self.started.append(req)
            return StartedJob(req.job, self.name, "id")

    plain = PlainBackend()
    stack.put_spec({"task": "regression", "target": "y", "training": {"search": SEARCH}})
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger(persistence=False)
    trigger.backends = lambda name: plain

    [res] = trigger.handle_event({"Records": [record]})["results"]

    assert res["status"] == "rejected" and res["code"] == "search_not_supported"
    assert "the plain backend cannot run a search" in res["reason"]
    assert plain.started == [] and stack.keys("registry", "jobs/") == []
    # the same backend still trains a spec without a search
    stack.put_spec({"task": "regression", "target": "y"})
    [ok] = trigger.handle_event({"Records": [stack.put("datasets/demo/other.csv", good_csv(31))]})["results"]
    assert ok["status"] == "started" and len(plain.started) == 1
