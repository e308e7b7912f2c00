"""A job kept on production's input schema (issue 16): every backend's request carries
``inputs/{model}/{job}/input_schema.json`` beside the train rows; without it the request is unchanged."""

from __future__ import annotations

import json
from dataclasses import replace

from modelops.compute import BatchBackend, JobRequest
from modelops.compute.sagemaker import create_training_job_request
from modelops.domain.spec import parse_spec
from modelops.storage import keys

JOB = "modelops-demo-0123456789ab"


def request(schema: bool) -> JobRequest:
    spec = parse_spec({"task": "regression", "target": "y"})
    return JobRequest(
        job=JOB,
        model="demo",
        spec=spec,
        spec_json="{}",
        dataset_bucket="data",
        dataset_key="datasets/demo/d.parquet",
        dataset_version_id="v1",
        dataset_sha256="a" * 64,
        rows=100,
        registry_bucket="registry",
        output_prefix=keys.staging_model_prefix("demo"),
        artifact_key=keys.output_artifact(keys.staging_prefix("demo", JOB)),
        trials_prefix=keys.trials_prefix("demo", JOB),
        train_key=keys.staging_train_rows("demo", JOB),
        train_sha256="b" * 64,
        train_rows=80,
        input_schema_key=keys.job_input_schema("demo", JOB) if schema else "",
    )


def test_the_schema_sits_beside_the_train_rows() -> None:
    assert keys.job_input_schema("demo", JOB) == f"inputs/demo/{JOB}/input_schema.json"
    assert (
        keys.job_input_schema("demo", JOB).rsplit("/", 1)[0]
        == keys.staging_train_rows("demo", JOB).rsplit("/", 1)[0]
    )


def test_sagemaker_and_the_twin_get_the_inputs_folder_as_the_channel() -> None:
    body = create_training_job_request(request(True), image="img", role_arn="arn:aws:iam::1:role/r")
    [channel] = body["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": f"s3://registry/inputs/demo/{JOB}/",
        "S3DataDistributionType": "FullyReplicated",
    }
    hps = body["HyperParameters"]
    assert hps["dataset_uri"] == f"s3://registry/inputs/demo/{JOB}/train.csv"  # the trainer's file
    assert hps["input_schema_uri"] == f"s3://registry/inputs/demo/{JOB}/input_schema.json"


def test_batch_gets_the_schema_uri_in_its_hyperparameters() -> None:
    backend = BatchBackend(object(), job_queue="q", job_definition="d")
    env = {e["name"]: e["value"] for e in backend.request(request(True))["containerOverrides"]["environment"]}
    hps = json.loads(env["SM_HPS"])
    assert hps["input_schema_uri"] == f"s3://registry/inputs/demo/{JOB}/input_schema.json"


def test_without_a_schema_the_request_is_what_it_was() -> None:
    plain = request(False)
    body = create_training_job_request(plain, image="img", role_arn="arn:aws:iam::1:role/r")
    assert body["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://registry/inputs/demo/{JOB}/train.csv"
    )
    assert "input_schema_uri" not in body["HyperParameters"]
    assert replace(plain, train_key="").train_channel_uri == "s3://data/datasets/demo/d.parquet"
