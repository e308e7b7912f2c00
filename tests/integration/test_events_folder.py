"""Every event in ``events/`` (the ``sam local invoke -e`` samples, also read by the stage tests) reaches
its stage's handler, or the stage's parser where the handler needs a trained model, and comes out as a
handled outcome: no exception, no 5xx, nothing ignored as "not my event"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from modelops.domain import alerts
from modelops.stages import alert as alerting
from modelops.stages import convert as conversion
from modelops.stages import gate as gating
from modelops.stages import train_trigger
from modelops.stages.monitor import request_from_event
from modelops.storage.dedup import DedupStore
from modelops.storage.registry import Registry
from tests.fakes import FakeBus, MemoryObjectStore
from tests.integration.convert_support import put_job_record
from tests.unit.test_alerts import FakeDynamo, FakeSns
from tests.unit.test_gate_stage import make_deps

EVENTS = Path(__file__).resolve().parents[2] / "events"

# function (template.yaml logical id) -> its sample events
FOLDER = {
    "TrainTriggerFunction": ["s3_dataset_put.json"],
    "ConvertFunction": [
        "sagemaker_training_completed.json",
        "sagemaker_training_failed.json",
        "sagemaker_tuning_job_completed.json",
        "batch_job_state_change.json",
    ],
    "GateFunction": ["gate_model_version_published.json"],
    "MonitorFunction": ["monitor_schedule.json"],
    "MonitorPlanFunction": ["monitor_plan.json"],
    "MonitorChunkFunction": ["monitor_chunk.json"],
    "MonitorReduceFunction": ["monitor_reduce.json"],
    "ScoreStartFunction": ["score_start.json"],
    "ScorePlanFunction": ["score_plan.json"],
    "ScoreChunkFunction": ["score_chunk.json"],
    "ScoreReduceFunction": ["score_reduce.json"],
    "DatasetPlanFunction": ["dataset_plan.json"],
    "DatasetPartFunction": ["dataset_part.json"],
    "DatasetReduceFunction": ["dataset_reduce.json"],
    "PredictFunction": ["predict_post_predict.json", "predict_get_models.json"],
    "AlertFunction": [
        "alert_drift_alarm_sns.json",
        "alert_predict_5xx_alarm.json",
        "alert_stage_event_training_failed.json",
    ],
}
JOB = "modelops-demo-0123456789ab"


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def test_the_folder_holds_exactly_the_listed_events_and_each_is_json() -> None:
    on_disk = sorted(p.name for p in EVENTS.glob("*.json"))
    listed = sorted(n for names in FOLDER.values() for n in names)
    assert on_disk == listed
    assert all(isinstance(load(n), dict) for n in on_disk)


def test_every_listed_function_is_a_template_function() -> None:
    text = (EVENTS.parent / "template.yaml").read_text()
    for logical in FOLDER:
        assert f"\n  {logical}:\n    Type: AWS::Serverless::Function\n" in text


# ---------------------------------------------------------------------------------------------- stages
def test_s3_put_names_a_dataset_object() -> None:
    (record,) = load("s3_dataset_put.json")["Records"]
    obj = train_trigger.parse_record(record)
    assert (
        obj is not None
        and obj.key == "datasets/demo/train.csv"
        and obj.event_name.startswith("ObjectCreated")
    )


def test_job_state_changes_parse_and_the_failures_are_handled_on_moto(s3: Any, registry_bucket: str) -> None:
    kinds = {
        "sagemaker_training_completed.json": ("training", "completed"),
        "sagemaker_training_failed.json": ("training", "failed"),
        "sagemaker_tuning_job_completed.json": ("tuning", "completed"),
        "batch_job_state_change.json": ("batch", "failed"),
    }
    for name, (kind, status) in kinds.items():
        ev = conversion.parse_job_event(load(name))
        assert ev is not None and (ev.kind, ev.status, ev.job) == (kind, status, JOB), name
    # the handler itself: failures become TrainingJobFailed; a completed job of no record is ignored
    bus = FakeBus()
    deps = conversion.Deps(registry=Registry(s3, registry_bucket, actor="convert"), bus=bus)
    assert conversion.handle_event(load("sagemaker_training_completed.json"), deps).outcome == "ignored"
    put_job_record(s3, JOB)
    for name in ("sagemaker_training_failed.json", "batch_job_state_change.json"):
        assert conversion.handle_event(load(name), deps).outcome == "training_failed"
    assert bus.types() == ["TrainingJobFailed", "TrainingJobFailed"]


def test_model_version_published_reaches_the_gate(memory_store: MemoryObjectStore, bus: FakeBus) -> None:
    event = load("gate_model_version_published.json")
    assert gating.parse_published(event) == ("demo", 1)
    result = gating.handle_event(event, make_deps(memory_store, bus))
    # an empty registry: the gate says the version is not there (handled, not raised)
    assert result.outcome == "ignored" and "no v1" in result.reason


def test_the_schedule_asks_for_every_model_and_the_default_window() -> None:
    assert request_from_event(load("monitor_schedule.json")) == (None, None)


@pytest.fixture
def predict_env(moto: None, tmp_path: Path) -> Iterator[None]:
    from modelops.stages.predict.service import PredictService, configure
    from modelops.stages.predict.settings import Settings
    from tests.integration.predict_support import Clock, FakeEvents

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="events-registry")
    settings = Settings(registry_bucket="events-registry", capture_stream=None, artifact_dir=str(tmp_path))
    service = PredictService.from_settings(
        settings,
        s3=s3,
        firehose_factory=lambda: boto3.client("firehose", region_name="us-east-1"),
        events_factory=FakeEvents,
        clock=Clock(),
    )
    configure(service)
    yield
    if service.sink is not None:
        service.sink.close()
    configure(None)


def test_api_requests_are_routed_by_predict(predict_env: None) -> None:
    from functions.predict.app import lambda_handler
    from tests.integration.predict_support import Ctx

    listed = lambda_handler(load("predict_get_models.json"), Ctx())
    assert listed["statusCode"] == 200 and "models" in json.loads(listed["body"])
    # the request is valid and routed; no model is published in this registry
    asked = lambda_handler(load("predict_post_predict.json"), Ctx())
    assert asked["statusCode"] == 404, asked["body"]


def test_alarms_and_stage_events_are_published_with_a_chat_payload() -> None:
    sns = FakeSns()
    a = alerting.Alerter("arn:topic", sns=sns, dedup=DedupStore(FakeDynamo(), "table", window=3600))
    for name in FOLDER["AlertFunction"]:
        (got,) = a.handle(load(name))["alerts"]
        assert got["status"] == "published", name
    assert len(sns.published) == 3
    for msg in sns.published:
        assert msg["MessageStructure"] == "json"
        doc = json.loads(msg["Message"])
        chat = json.loads(doc["https"])
        assert (chat["version"], chat["source"]) == ("1.0", "custom") and chat["content"]["title"]
        assert "What to do next" in doc["default"]
    assert alerts.SUBJECT_MAX == 99  # the subjects above were cleaned to SNS's limit


def test_the_fan_out_steps_read_their_events() -> None:
    from modelops.stages.monitor import fanout

    run, model, window, chunks = fanout.plan_request(load("monitor_plan.json"))
    assert (model, window, chunks) == ("demo", 3600, None) and run.startswith("3f6b1c2e")
    run2, chunk, keys = fanout.chunk_request(load("monitor_chunk.json"))
    assert run2 == run and chunk == 0 and keys[0].startswith("captures/")
    assert fanout.check_run(load("monitor_reduce.json")["run"]) == run
    with pytest.raises(fanout.FanoutError):
        fanout.chunk_request({**load("monitor_chunk.json"), "chunk": -1})


def test_the_dataset_parts_steps_read_their_events() -> None:
    from modelops.stages import dataset_parts
    from modelops.storage.datasets import marker_folder

    plan = load("dataset_plan.json")
    run = dataset_parts._run(plan)
    marker = plan["request"]["marker"]
    assert marker_folder(marker["key"]) == ("demo", plan["request"]["folder"])
    part = load("dataset_part.json")
    assert dataset_parts._run(part) == run and part["index"] == 0
    assert part["key"].startswith(plan["request"]["folder"] + "part-")
    assert dataset_parts._run(load("dataset_reduce.json")) == run
    with pytest.raises(ValueError, match="run"):
        dataset_parts._run({**part, "run": "a/b"})


def test_the_scoring_steps_read_their_events() -> None:
    from modelops.stages import score
    from modelops.stages.scoring import run as scoring

    bucket = "modelops-databucket"
    request = score.start_request(load("score_start.json"))
    assert request == {
        "bucket": bucket,
        "key": "datasets/iris/score/customers.csv",
        "version_id": "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY",
    }
    run, planned = scoring.plan_request(load("score_plan.json"), bucket)
    assert planned == request and run == score.run_name(request["key"], request["version_id"])
    req = scoring.chunk_request(load("score_chunk.json"), bucket)
    assert (req.run, req.model, req.version, req.chunk, req.first_row, req.rows) == (
        run,
        "iris",
        3,
        1,
        20001,
        20000,
    )
    assert scoring.check_run(load("score_reduce.json")["run"]) == run
    with pytest.raises(scoring.ScoringError):
        scoring.chunk_request(
            {**load("score_chunk.json"), "key": "datasets/other/score/customers.csv"}, bucket
        )
