"""Searches trained for real (tiny Keras models on scikit-learn's diabetes table) and published by convert
on moto: the in-job search (local twin), a SageMaker tuning job's trial and its completion, a Batch array
job's children and its end; and every trial failing (an alert, no version).

Models are tiny (one or two small layers, at most 8 epochs); the TensorFlow tests are marked slow.
"""

from __future__ import annotations

import copy
import io
import json
import re
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from modelops.compute import metric_definitions
from modelops.domain import search as searching
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.stages import convert as conversion
from modelops.storage.registry import Registry
from tests.fakes import FakeBus
from tests.integration.convert_support import (
    BUCKET,
    artifact_key,
    gate_last_published,
    load_event,
    put_job_record,
    registry_keys,
    sagemaker_event,
    targz_dir,
)
from tests.unit.test_trainer import CONTRACT_FILES, diabetes, hyperparameters, run_entrypoint, sagemaker_dirs

JOB = "modelops-demo-0123456789ab"
TRAINING = {"epochs": 8, "hidden_units": [16], "batch_size": 32, "learning_rate": 0.02, "seed": 3}
SPACE = {
    "learning_rate": {"min": 0.003, "max": 0.05},
    "hidden_units": [[8], [16, 8]],
    "batch_size": [16, 64],
}


def search_spec(**search: Any) -> ModelSpec:
    return parse_spec(
        {
            "task": "regression",
            "target": "target",
            "training": {**TRAINING, "early_stopping_patience": 3, "search": {**SPACE, **search}},
        }
    )


@pytest.fixture
def deps(s3, registry_bucket, bus: FakeBus) -> conversion.Deps:  # type: ignore[no-untyped-def]
    return conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)


def job_record(s3: Any, spec: ModelSpec, search: dict[str, Any]) -> None:
    put_job_record(s3, JOB, spec_doc=spec.model_dump(mode="json"), search=search)


def tuning_event(name: str, status: str = "Completed") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "5e1c0000-0000-4000-8000-000000000001",
        "detail-type": "SageMaker HyperParameter Tuning Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2025-01-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{name}"],
        "detail": {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobStatus": status,
            "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{name}",
        },
    }


def batch_event(status: str = "SUCCEEDED", index: int | None = None, size: int = 2) -> dict[str, Any]:
    ev = copy.deepcopy(load_event("batch_job_state_change.json"))
    ev["detail"]["status"] = status
    ev["detail"]["arrayProperties"] = {"index": index} if index is not None else {"size": size}
    if index is not None:
        ev["detail"]["jobId"] += f":{index}"
    return ev


# ---------------------------------------------------------------------------- in-job search (the local twin)
@pytest.mark.slow
def test_a_search_trains_picks_the_best_trial_and_publishes_one_version_listing_every_trial(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
    deps: conversion.Deps,
    bus: FakeBus,
) -> None:
    # Given a spec searching 4 trials, 2 in parallel, and SageMaker's directories (what the twin runs)
    spec = search_spec(max_trials=4, max_parallel=2, strategy="random", seed=5)
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, hyperparameters(spec, data))
    monkeypatch.setattr("os.cpu_count", lambda: 2)

    # When the training image's entrypoint runs the job
    assert run_entrypoint(monkeypatch, env, "train") == 0

    # Then the model dir is the contract's, plus every trial
    model_dir = tmp_path / "model"
    assert CONTRACT_FILES | {"trials.json"} <= {p.name for p in model_dir.iterdir()}
    doc = json.loads((model_dir / "trials.json").read_text())
    trials = doc["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3] and doc["parallel"] == 2
    assert all(t["state"] in ("complete", "pruned") and t["error"] is None for t in trials), trials
    complete = [t for t in trials if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["value"])
    assert (doc["best_trial"], doc["best_value"]) == (best["number"], best["value"])
    assert (doc["strategy"], doc["direction"], doc["objective"]["name"]) == (
        "random",
        "minimize",
        "objective:rmse",
    )
    # and the model dir holds the best trial's model, as a single run with its values writes it
    record = json.loads((model_dir / "training_record.json").read_text())
    assert record["trial"]["number"] == best["number"] and record["trial"]["params"] == best["params"]
    assert record["objective"]["value"] == pytest.approx(best["value"])
    assert record["spec"]["training"]["learning_rate"] == best["params"]["learning_rate"]
    assert record["spec"]["training"]["hidden_units"] == best["params"]["hidden_units"]
    assert (
        record["spec"]["training"].get("search") is None and record["search"]["best_trial"] == best["number"]
    )
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["rmse"] < metrics["baseline_rmse"] and metrics["n_val"] == 88
    assert json.loads((tmp_path / "output" / "data" / "metrics.json").read_text()) == metrics

    # When convert handles the job's completion on moto
    job_record(s3, spec, {"mode": "in_job", "strategy": "random"})
    s3.put_object(Bucket=BUCKET, Key=artifact_key("demo", JOB), Body=targz_dir(model_dir))
    res = conversion.handle_event(sagemaker_event(JOB), deps)

    # Then one version, whose manifest lists all four trials and carries the best trial's metrics
    assert (res.outcome, res.version) == ("published", 1)
    assert deps.registry.list_versions("demo") == [1]
    manifest = deps.registry.get_manifest("demo", 1)
    assert manifest.get("search") == doc
    assert [t["params"] for t in manifest.get("search")["trials"]] == [t["params"] for t in trials]
    assert manifest.get("metrics") == metrics
    assert manifest.get("training")["record"]["trial"]["number"] == best["number"]
    assert gate_last_published(deps.registry, bus).outcome == "decided"  # the gate function, on the event
    assert bus.types() == ["ModelVersionPublished", "ModelPromoted"]
    assert bus.of("ModelVersionPublished")[-1]["search"]["best_trial"] == best["number"]


def test_every_trial_failing_fails_the_job_and_convert_alerts_without_a_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: Any, deps: conversion.Deps, bus: FakeBus
) -> None:
    # Given a 3-trial search whose every trial crashes (as on a GPU that is out of memory)
    from modelops.ml import trainer

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY: out of memory")

    monkeypatch.setattr(trainer, "train", crash)
    spec = search_spec(max_trials=3, max_parallel=1, strategy="random")
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, hyperparameters(spec, data))

    # When the job runs: it fails, with the reason SageMaker turns into the job's FailureReason
    assert run_entrypoint(monkeypatch, env, "train") == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith(
        "search_failed: all 3 trials failed: trial 0: RuntimeError: CUDA_ERROR_OUT_OF_MEMORY: out of memory; trial 1:"
    )
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())

    # When convert gets the failed job's event
    job_record(s3, spec, {"mode": "in_job"})
    res = conversion.handle_event(sagemaker_event(JOB, "Failed", reason=failure[:1024]), deps)

    # Then an alert (TrainingJobFailed with the reason) and no version
    assert res.outcome == "training_failed"
    assert bus.types() == ["TrainingJobFailed"]
    assert "all 3 trials failed" in bus.of("TrainingJobFailed")[-1]["reason"]
    assert registry_keys(s3) == []


# ---------------------------------------------------------------------------- SageMaker tuning jobs
TUNED = {"search_mode": "tuning", "learning_rate": "0.02", "hidden_units": "16-8", "batch_size": "16"}


@pytest.mark.slow
def test_a_tuning_job_trial_prints_its_objective_every_epoch_and_writes_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = search_spec(max_trials=4, max_parallel=2)
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, {**hyperparameters(spec, data), **TUNED})

    assert run_entrypoint(monkeypatch, env, "train") == 0

    record = json.loads((tmp_path / "model" / "training_record.json").read_text())
    assert record["trial"]["params"] == {"learning_rate": 0.02, "batch_size": 16, "hidden_units": [16, 8]}
    assert (
        record["spec"]["training"]["hidden_units"] == [16, 8]
        and record["spec"]["training"]["batch_size"] == 16
    )
    assert CONTRACT_FILES <= {p.name for p in (tmp_path / "model").iterdir()}
    # SageMaker's MetricDefinitions read one objective per epoch (early stopping) and the final one last
    [regex] = [d["Regex"] for d in metric_definitions() if d["Name"] == "objective:rmse"]
    values = [float(v) for v in re.findall(regex, capsys.readouterr().out)]
    assert len(values) == record["epochs_run"] + 1
    assert values[-1] == pytest.approx(record["objective"]["value"], rel=1e-5)
    assert record["objective"]["split"] == "selection" and record["objective"]["rows"] == 53


def test_a_tuning_trial_outside_the_specs_space_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = search_spec()
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, {**hyperparameters(spec, data), **TUNED, "hidden_units": "512"})
    assert run_entrypoint(monkeypatch, env, "train") == 2
    assert "hidden_units [512] not in [[8], [16, 8]]" in (tmp_path / "output" / "failure").read_text()


def tuning_stub(
    sm: Any,
    name: str,
    *,
    best: str | None,
    status: str = "Completed",
    summaries: list[dict[str, Any]] | None = None,
) -> Stubber:
    stub = Stubber(sm)
    desc: dict[str, Any] = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{name}",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxParallelTrainingJobs": 2},
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"job": JOB, "model": "demo", "search_mode": "tuning"},
            "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
            "RoleArn": "arn:aws:iam::123456789012:role/modelops-training",
            "OutputDataConfig": {"S3OutputPath": f"s3://registry/staging/demo/{JOB}/trials/"},
            "ResourceConfig": {"VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": datetime(2025, 1, 1, tzinfo=UTC),
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
    }
    if status == "Failed":
        desc["FailureReason"] = "ResourceLimitExceeded: ml.g5.2xlarge quota"
    if best is not None:
        desc["BestTrainingJob"] = {
            "TrainingJobName": best,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{best}",
            "CreationTime": datetime(2025, 1, 1, tzinfo=UTC),
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {},
        }
    stub.add_response("describe_hyper_parameter_tuning_job", desc, {"HyperParameterTuningJobName": name})
    if summaries is not None:
        stub.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {"TrainingJobSummaries": summaries},
            {"HyperParameterTuningJobName": name, "MaxResults": 100},
        )
    return stub


def summary(
    name: str, minute: int, status: str, tuned: dict[str, str], value: float | None = None
) -> dict[str, Any]:
    t0 = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    out: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "CreationTime": t0,
        "TrainingJobStatus": status,
        "TunedHyperParameters": tuned,
        "TrainingStartTime": t0,
        "TrainingEndTime": t0 + timedelta(seconds=30),
    }
    if value is not None:
        out["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "objective:rmse", "Value": value}
    if status == "Failed":
        out["FailureReason"] = "AlgorithmError: out of memory"
    return out


@pytest.mark.slow
def test_a_completed_tuning_job_publishes_its_best_training_job_with_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: Any, deps: conversion.Deps, bus: FakeBus
) -> None:
    # Given a tuning job whose best training job left its model where the tuning request said
    spec = search_spec(max_trials=3, max_parallel=2)
    data = diabetes(tmp_path / "input" / "data" / "train" / "train.csv")
    env = sagemaker_dirs(tmp_path, {**hyperparameters(spec, data), **TUNED})
    assert run_entrypoint(monkeypatch, env, "train") == 0
    name = searching.tuning_job_name(JOB, "modelops")
    best = f"{name}-002-5f0e1d2c"
    job_record(s3, spec, {"mode": "tuning", "tuning_job": name})
    s3.put_object(
        Bucket=BUCKET,
        Key=f"staging/demo/{JOB}/trials/{best}/output/model.tar.gz",
        Body=targz_dir(tmp_path / "model"),
    )
    summaries = [
        summary(
            f"{name}-001-aaaaaaaa",
            0,
            "Failed",
            {"learning_rate": "0.04", "hidden_units": '"8"', "batch_size": '"16"'},
        ),
        summary(
            best,
            1,
            "Completed",
            {"learning_rate": "0.02", "hidden_units": '"16-8"', "batch_size": '"16"'},
            48.5,
        ),
        summary(
            f"{name}-003-cccccccc",
            2,
            "Stopped",
            {"learning_rate": "0.003", "hidden_units": '"8"', "batch_size": '"64"'},
            70.1,
        ),
    ]
    sm = boto3.client("sagemaker", region_name="us-east-1")
    deps.sagemaker = sm

    # When its own training job's event arrives first, then the tuning job's
    with tuning_stub(sm, name, best=best, summaries=summaries) as stub:
        own = conversion.handle_event(sagemaker_event(best), deps)
        res = conversion.handle_event(tuning_event(name), deps)
        stub.assert_no_pending_responses()

    # Then the training job's event is ignored (no record) and the tuning job publishes one version
    assert own.outcome == "ignored"
    assert (res.outcome, res.job, res.version) == ("published", JOB, 1)
    manifest = deps.registry.get_manifest("demo", 1)
    search = manifest.get("search")
    assert (search["mode"], search["tuning_job"], search["best_training_job"]) == ("tuning", name, best)
    assert [(t["number"], t["state"]) for t in search["trials"]] == [
        (0, "failed"),
        (1, "complete"),
        (2, "pruned"),
    ]
    assert search["best_trial"] == 1 and search["trials"][1]["params"]["hidden_units"] == [16, 8]
    assert search["trials"][0]["error"] == "AlgorithmError: out of memory"
    assert manifest.get("training")["job"] == JOB and manifest.get("dedup_key") == JOB
    assert gate_last_published(deps.registry, bus).outcome == "decided"  # the gate function, on the event
    assert bus.types() == ["ModelVersionPublished", "ModelPromoted"]


def test_a_tuning_job_without_a_completed_trial_alerts_and_publishes_nothing(
    s3: Any, deps: conversion.Deps, bus: FakeBus
) -> None:
    spec = search_spec(max_trials=2, max_parallel=2)
    name = searching.tuning_job_name(JOB, "modelops")
    job_record(s3, spec, {"mode": "tuning", "tuning_job": name})
    tuned = {"learning_rate": "0.01", "hidden_units": '"8"', "batch_size": '"16"'}
    summaries = [summary(f"{name}-00{i}-aaaaaaaa", i, "Failed", tuned) for i in (1, 2)]
    sm = boto3.client("sagemaker", region_name="us-east-1")
    deps.sagemaker = sm
    with tuning_stub(sm, name, best=None, summaries=summaries):
        res = conversion.handle_event(tuning_event(name), deps)
    assert (res.outcome, res.job) == ("training_failed", JOB)
    detail = bus.of("TrainingJobFailed")[-1]
    assert detail["reason"].startswith("all 2 trials failed: trial 0: AlgorithmError: out of memory")
    assert detail["job"] == JOB and detail["version"] is None
    assert registry_keys(s3) == []


def test_a_failed_tuning_job_alerts_with_its_reason(s3: Any, deps: conversion.Deps, bus: FakeBus) -> None:
    spec = search_spec()
    name = searching.tuning_job_name(JOB, "modelops")
    job_record(s3, spec, {"mode": "tuning", "tuning_job": name})
    sm = boto3.client("sagemaker", region_name="us-east-1")
    deps.sagemaker = sm
    with tuning_stub(sm, name, best=None, status="Failed"):
        res = conversion.handle_event(tuning_event(name, "Failed"), deps)
    assert res.outcome == "training_failed"
    assert bus.of("TrainingJobFailed")[-1]["reason"] == "ResourceLimitExceeded: ml.g5.2xlarge quota"
    assert registry_keys(s3) == []


def test_tuning_jobs_this_stack_did_not_start_are_ignored(
    s3: Any, deps: conversion.Deps, bus: FakeBus
) -> None:
    spec = search_spec()
    name = searching.tuning_job_name(JOB, "modelops")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    deps.sagemaker = sm
    # no job record
    with tuning_stub(sm, name, best=None):
        assert conversion.handle_event(tuning_event(name), deps).outcome == "ignored"
    # a job record that names another tuning job
    job_record(s3, spec, {"mode": "tuning", "tuning_job": "modelops-0000000000000000"})
    with tuning_stub(sm, name, best=None):
        res = conversion.handle_event(tuning_event(name), deps)
    assert res.outcome == "ignored" and "does not name tuning job" in res.reason
    # a tuning job SageMaker does not know
    with Stubber(sm) as stub:
        stub.add_client_error("describe_hyper_parameter_tuning_job", "ResourceNotFound", "no such job")
        assert conversion.handle_event(tuning_event(name), deps).outcome == "ignored"
    assert bus.sent == [] and registry_keys(s3) == []


# ---------------------------------------------------------------------------- Batch array jobs
def _batch_child_env(s3: Any, spec: ModelSpec, data: bytes, index: int) -> dict[str, str]:
    hps = {**hyperparameters(spec, data), "search_mode": "array"}
    hps["dataset_version_id"] = s3.head_object(Bucket="data", Key="datasets/demo/train.csv")["VersionId"]
    return {
        "SM_HPS": json.dumps(hps),
        "MODELOPS_OUTPUT_S3": f"s3://registry/staging/demo/{JOB}/output/model.tar.gz",
        "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
    }


@pytest.mark.slow
def test_batch_array_children_record_their_trials_and_the_parent_publishes_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: Any, deps: conversion.Deps, bus: FakeBus
) -> None:
    from modelops.ml import trainer
    from modelops.ml.search import sample_params
    from modelops_training.entrypoint import run_batch

    # Given a 2-trial random search on Batch and its dataset in S3
    spec = search_spec(max_trials=2, strategy="random", seed=4)
    s3.create_bucket(Bucket="data")
    s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
    data = diabetes(tmp_path / "d.csv")
    s3.put_object(Bucket="data", Key="datasets/demo/train.csv", Body=data)

    # When child 0 trains and child 1 crashes
    assert run_batch(_batch_child_env(s3, spec, data, 0), s3=s3) == 0
    real_train = trainer.train

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Host EC2 terminated (spot interruption)")

    monkeypatch.setattr(trainer, "train", crash)
    assert run_batch(_batch_child_env(s3, spec, data, 1), s3=s3) == 0  # a failed trial is not a failed child
    monkeypatch.setattr(trainer, "train", real_train)

    # Then each child left its trial record (the crashed one without a model)
    prefix = f"staging/demo/{JOB}/trials/"
    assert registry_keys(s3, prefix) == [
        f"{prefix}000/output/model.tar.gz",
        f"{prefix}000/trial.json",
        f"{prefix}001/trial.json",
    ]
    first = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}000/trial.json")["Body"].read())
    assert first["state"] == "complete" and first["params"] == sample_params(spec.training.search, 4, 0)
    with tarfile.open(
        fileobj=io.BytesIO(
            s3.get_object(Bucket=BUCKET, Key=f"{prefix}000/output/model.tar.gz")["Body"].read()
        )
    ) as tar:
        assert "saved_model/saved_model.pb" in tar.getnames()

    # When the children's events and then the parent's arrive at convert
    job_record(s3, spec, {"mode": "array", "array_size": 2})
    child = conversion.handle_event(batch_event(index=0), deps)
    res = conversion.handle_event(batch_event(size=2), deps)

    # Then the children are ignored and the parent publishes trial 0, with both trials in the manifest
    assert child.outcome == "ignored"
    assert (res.outcome, res.version) == ("published", 1)
    search = deps.registry.get_manifest("demo", 1).get("search")
    assert (search["mode"], search["best_trial"], search["array_size"]) == ("array", 0, 2)
    assert [t["state"] for t in search["trials"]] == ["complete", "failed"]
    assert search["trials"][1]["error"] == "RuntimeError: Host EC2 terminated (spot interruption)"


def test_a_batch_search_whose_children_all_failed_alerts_and_publishes_nothing(
    s3: Any, deps: conversion.Deps, bus: FakeBus
) -> None:
    spec = search_spec(max_trials=3, strategy="random")
    job_record(s3, spec, {"mode": "array", "array_size": 3})
    for i in (0, 1):  # child 2 died without a record
        doc = searching.trial_doc(i, {"learning_rate": 0.01}, "failed", error=f"E{i}")
        s3.put_object(
            Bucket=BUCKET, Key=f"staging/demo/{JOB}/trials/{i:03d}/trial.json", Body=json.dumps(doc)
        )

    res = conversion.handle_event(batch_event(size=3), deps)

    assert res.outcome == "training_failed"
    assert bus.of("TrainingJobFailed")[-1]["reason"] == (
        "all 3 trials failed: trial 0: E0; trial 1: E1; trial 2: the child job left no trial record"
    )
    assert registry_keys(s3) == []
