"""The real template.yaml on the twin (the session ``twin`` fixture): resources, wiring, triggers."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from modelops_local.testing import cli_env, find_aws_cli
from modelops_local.twin import Twin

pytestmark = pytest.mark.twin


def aws(twin: Twin, *args: str) -> subprocess.CompletedProcess[str]:
    cli = find_aws_cli()
    if cli is None:
        pytest.fail("the AWS CLI is missing: run `make tools` or set MODELOPS_AWS_CLI")
    return subprocess.run(
        [cli, *args], env=cli_env(twin), capture_output=True, text=True, timeout=120, check=True
    )


def test_the_template_comes_up_in_moto(twin: Twin) -> None:
    assert twin.started_in_s is not None and twin.started_in_s < 10
    out = twin.outputs
    assert out["ApiUrl"] == twin.api_url and twin.api_url.endswith("/v1")
    s3 = twin.client("s3")
    for bucket in (out["DataBucketName"], out["RegistryBucketName"]):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_notification_configuration(Bucket=out["DataBucketName"])["QueueConfigurations"]
    filters = sorted(
        tuple(sorted((f["Name"].lower(), f["Value"]) for f in r["Filter"]["Key"]["FilterRules"]))
        for r in rules
    )
    # one rule per dataset format train_trigger reads (docs/training.md "Formats"), and the marker that
    # closes a dataset of parts ("Datasets of many parts")
    assert filters == sorted(
        (("prefix", "datasets/"), ("suffix", suffix))
        for suffix in (".csv", ".csv.gz", ".parquet", "_SUCCESS")
    )
    topics = {t["TopicArn"] for t in twin.client("sns").list_topics()["Topics"]}
    assert {out["AlertsTopicArn"], out["AlarmTopicArn"]} <= topics
    assert (
        twin.client("dynamodb").describe_table(TableName=out["IdempotencyTableName"])["Table"]["TableStatus"]
        == "ACTIVE"
    )
    assert twin.client("firehose").describe_delivery_stream(DeliveryStreamName=out["CaptureStreamName"])
    alarms = twin.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert {a["AlarmName"] for a in alarms} >= {twin.template.name(a) for a in twin.provisioned.alarms}
    assert len(twin.provisioned.alarms) == len(twin.template.of_type("AWS::CloudWatch::Alarm"))
    names = {q.rsplit("/", 1)[-1] for q in twin.client("sqs").list_queues()["QueueUrls"]}
    assert twin.template.name("TrainTriggerDLQ") in names


def test_functions_get_their_code_and_environment_from_the_template(twin: Twin) -> None:
    trigger = twin.function("TrainTriggerFunction")
    assert trigger.handler == "functions.train_trigger.app.lambda_handler"
    assert trigger.environment["DATA_BUCKET"] == twin.outputs["DataBucketName"]
    assert trigger.environment["REGISTRY_BUCKET"] == twin.outputs["RegistryBucketName"]
    assert trigger.timeout == 300 and trigger.memory == 1024 and trigger.max_retries == 2
    # A DLQ or an on-failure destination, whichever the template declares, is the TrainTriggerDLQ.
    failure_targets = {t[1] for t in (trigger.dead_letter, trigger.on_failure) if t}
    assert failure_targets == {twin.template.getatt("TrainTriggerDLQ", "Arn")}
    convert = twin.function(
        "ConvertFunction"
    )  # an image function: its module comes from its Dockerfile's folder
    assert convert.handler == "functions.convert.app.lambda_handler" and convert.timeout == 900
    assert {r.path for r in twin.routes} >= {"/models/{name}/predict", "/models", "/models/{name}"}
    assert [s.function for s in twin.provisioned.schedules] == ["MonitorFunction"]


def test_the_convert_rule_matches_training_jobs_by_prefix(twin: Twin) -> None:
    events = twin.client("events")
    patterns = [
        json.loads(r["EventPattern"]) for r in events.list_rules()["Rules"] if "ConvertFunction" in r["Name"]
    ]
    sagemaker = [p for p in patterns if p["source"] == ["aws.sagemaker"]]
    assert sagemaker and sagemaker[0]["detail"]["TrainingJobName"] == [{"prefix": "modelops-"}]


def invocations_since(twin: Twin, function: str, mark: int) -> list[Any]:
    return twin.invocations_of(function, since=mark)


def test_aws_cli_s3_cp_into_the_data_bucket_invokes_train_trigger(twin: Twin, tmp_path: Path) -> None:
    before = twin.mark()
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n")
    model = f"twin{uuid.uuid4().hex[:8]}"
    aws(twin, "s3", "cp", str(data), f"s3://{twin.outputs['DataBucketName']}/datasets/{model}/data.csv")
    twin.wait_idle(120)
    new = invocations_since(twin, "TrainTriggerFunction", before)
    # Whatever the handler decides (this dataset has no spec), the S3 event reached it, once.
    assert len({i.request_id for i in new}) == 1
    assert new[0].source == "s3"


def test_aws_cli_sns_publish_to_the_alarm_topic_invokes_alert(twin: Twin) -> None:
    before = twin.mark()
    message = {"AlarmName": "twin-test", "NewStateValue": "OK", "OldStateValue": "ALARM", "Trigger": {}}
    aws(
        twin, "sns", "publish", "--topic-arn", twin.outputs["AlarmTopicArn"], "--message", json.dumps(message)
    )
    twin.wait_idle(120)
    new = [i for i in invocations_since(twin, "AlertFunction", before) if i.source == "sns"]
    assert len({i.request_id for i in new}) == 1


def test_api_routes_reach_predict_and_unknown_paths_do_not(twin: Twin) -> None:
    before = twin.mark()
    resp = requests.get(f"{twin.api_url}/models", timeout=60)
    after = twin.invocations_of("PredictFunction", since=before)
    assert len(after) == 1 and after[-1].source == "api"
    assert resp.headers["Content-Type"].startswith("application/json")
    missing = requests.get(f"{twin.api_url}/no/such/route", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}
    assert len(twin.invocations_of("PredictFunction", since=before)) == 1


def test_tick_runs_the_monitor_and_evaluates_alarms(twin: Twin) -> None:
    before = twin.mark()
    results = twin.tick("MonitorFunction")
    assert len(results) == 1 and results[0].source == "schedule"
    assert twin.invocations_of("MonitorFunction", since=before)
    states = {
        a["AlarmName"]: a["StateValue"] for a in twin.client("cloudwatch").describe_alarms()["MetricAlarms"]
    }
    assert states[twin.template.name("DriftAlarm")] != "INSUFFICIENT_DATA"  # evaluated after the run


def test_the_capture_stream_lands_records_under_a_date_prefix(twin: Twin) -> None:
    stream = twin.outputs["CaptureStreamName"]
    twin.client("firehose").put_record_batch(DeliveryStreamName=stream, Records=[{"Data": b'{"twin": 1}\n'}])
    keys = [
        o["Key"]
        for o in twin.client("s3").list_objects_v2(Bucket=twin.outputs["DataBucketName"], Prefix="captures/")[
            "Contents"
        ]
    ]
    assert any(re.fullmatch(rf"captures/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/{stream}-.+", k) for k in keys)
