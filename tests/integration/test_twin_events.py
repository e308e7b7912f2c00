"""Event sources, async retries, DLQs, timeouts and the local training backend, on a small template."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from modelops_local.errors import FunctionNotFoundError, TwinError
from modelops_local.testing import ROOT, start_twin
from modelops_local.twin import Twin
from tests.fixtures.twin.handlers import app as handlers

pytestmark = pytest.mark.twin
FAKE = ROOT / "tests/fixtures/twin/template.yaml"


@pytest.fixture(scope="module")
def fake() -> Iterator[Twin]:
    twin = start_twin(FAKE, training_entrypoint="tests.fixtures.twin.fake_train")
    yield twin
    twin.stop()


def received(handler: str, pred: Any = lambda e: True) -> list[dict[str, Any]]:
    return [r for r in list(handlers.RECEIVED) if r["handler"] == handler and pred(r["event"])]


def drain(twin: Twin, output: str) -> list[dict[str, Any]]:
    sqs = twin.client("sqs")
    out = []
    while True:
        msgs = sqs.receive_message(
            QueueUrl=twin.outputs[output], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            sqs.delete_message(QueueUrl=twin.outputs[output], ReceiptHandle=m["ReceiptHandle"])
        out += msgs


def put_event(twin: Twin, source: str, detail: dict[str, Any]) -> None:
    resp = twin.client("events").put_events(
        Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps(detail)}]
    )
    assert resp["FailedEntryCount"] == 0


# ---------------------------------------------------------------- event sources


def test_s3_upload_reaches_the_function_with_the_aws_record_shape(fake: Twin) -> None:
    # Given
    s3 = fake.client("s3")
    bucket = fake.outputs["DataBucketName"]
    tag = uuid.uuid4().hex[:8]
    key = f"datasets/my model {tag}/data.csv"
    # When: the same key twice (two versions)
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n3,4\n")["VersionId"]
    fake.wait_idle(30)
    # Then
    got = received("record", lambda e: tag in json.dumps(e))
    assert len(got) == 2
    records = [g["event"]["Records"] for g in got]
    assert all(len(r) == 1 for r in records)
    first, second = records[0][0], records[1][0]
    assert first["eventSource"] == "aws:s3" and first["eventName"] == "ObjectCreated:Put"
    assert first["s3"]["bucket"]["name"] == bucket
    assert first["s3"]["object"]["key"] == key.replace(" ", "+")  # URL-encoded, as AWS sends it
    assert [first["s3"]["object"]["versionId"], second["s3"]["object"]["versionId"]] == [v1, v2]
    assert first["s3"]["object"]["size"] == 8 and first["s3"]["object"]["sequencer"]
    # The function's context and environment
    spec = fake.function("RecordFunction")
    ctx = got[0]
    assert ctx["function_name"] == spec.name and ctx["arn"] == spec.arn and ctx["memory"] == 256
    assert 0 < ctx["remaining_ms"] <= 5000
    assert ctx["env"] == {
        "DATA_BUCKET": bucket,
        "TOPIC_ARN": fake.outputs["TopicArn"],
        "STACK": "modelops-us-east-1",
        "ROLE": "recorder",
        "AWS_ENDPOINT_URL": fake.endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_REGION": "us-east-1",
        "MODELOPS_LOCAL_TRAINING_URL": fake.control_url,
    }
    assert got[0]["request_id"] != got[1]["request_id"]
    assert os.environ.get("ROLE") is None  # the function's environment is gone after the call


def test_s3_filter_rules_are_honoured(fake: Twin) -> None:
    s3 = fake.client("s3")
    bucket = fake.outputs["DataBucketName"]
    tag = uuid.uuid4().hex[:8]
    s3.put_object(Bucket=bucket, Key=f"datasets/{tag}/notes.txt", Body=b"x")  # wrong suffix
    s3.put_object(Bucket=bucket, Key=f"elsewhere/{tag}/data.csv", Body=b"x")  # wrong prefix
    s3.put_object(Bucket=bucket, Key=f"datasets/{tag}/data.csv", Body=b"x")
    fake.wait_idle(30)
    keys = [
        g["event"]["Records"][0]["s3"]["object"]["key"]
        for g in received("record", lambda e: tag in json.dumps(e))
    ]
    assert keys == [f"datasets/{tag}/data.csv"]


def test_sns_publish_reaches_the_function_and_a_subscribed_queue(fake: Twin) -> None:
    tag = uuid.uuid4().hex
    fake.client("sns").publish(
        TopicArn=fake.outputs["TopicArn"],
        Message=json.dumps({"tag": tag}),
        Subject="hello",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    fake.wait_idle(30)
    got = received("record", lambda e: tag in json.dumps(e))
    assert len(got) == 1
    record = got[0]["event"]["Records"][0]
    assert record["EventSource"] == "aws:sns"
    sns = record["Sns"]
    assert json.loads(sns["Message"]) == {"tag": tag}
    assert sns["Subject"] == "hello" and sns["TopicArn"] == fake.outputs["TopicArn"]
    assert sns["MessageAttributes"] == {"kind": {"Type": "String", "Value": "test"}}
    bodies = [m["Body"] for m in drain(fake, "TopicQueueUrl")]
    assert json.dumps({"tag": tag}) in bodies  # raw delivery to the template's own subscription


def test_eventbridge_rule_pattern_with_prefix(fake: Twin) -> None:
    tag = uuid.uuid4().hex
    put_event(fake, "twin.test", {"kind": "recorded", "tag": tag})
    put_event(fake, "twin.test", {"kind": "other", "tag": tag})
    put_event(fake, "twin.elsewhere", {"kind": "recorded", "tag": tag})
    fake.wait_idle(30)
    got = received("record", lambda e: tag in json.dumps(e))
    assert len(got) == 1
    event = got[0]["event"]
    assert event["source"] == "twin.test" and event["detail-type"] == "Test"
    assert event["detail"] == {"kind": "recorded", "tag": tag}
    assert "ingestion-time" not in event and isinstance(event["time"], str)


def test_tick_runs_a_schedule_now(fake: Twin) -> None:
    before = len(received("record", lambda e: e.get("detail-type") == "Scheduled Event"))
    results = fake.tick("RecordFunction")
    assert [r.outcome for r in results] == ["ok"]
    got = received("record", lambda e: e.get("detail-type") == "Scheduled Event")
    assert len(got) == before + 1
    event = got[-1]["event"]
    assert event["source"] == "aws.events" and event["resources"][0].startswith("arn:aws:events:")
    with pytest.raises(TwinError, match="has no schedule"):
        fake.tick("FlakyFunction")
    with pytest.raises(FunctionNotFoundError):
        fake.tick("NoSuchFunction")


def test_direct_invoke_by_logical_or_physical_name(fake: Twin) -> None:
    inv = fake.invoke("RecordFunction", {"direct": 1})
    assert inv.ok and inv.result == {"ok": True}
    inv2 = fake.invoke(fake.function("RecordFunction").name, {"direct": 2})
    assert inv2.ok and inv2.function == "RecordFunction"
    with pytest.raises(FunctionNotFoundError):
        fake.invoke("Nope", {})


def test_an_sqs_event_source_reports_batch_item_failures(fake: Twin) -> None:
    sqs = fake.client("sqs")
    url = fake.outputs["WorkQueueUrl"]
    tag = uuid.uuid4().hex
    for body in (f"ok-1 {tag}", f"fail {tag}", f"ok-2 {tag}"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    fake.wait_idle(30)
    batches = received("batch", lambda e: tag in json.dumps(e))
    records = [r for b in batches for r in b["event"]["Records"]]
    assert sorted(r["body"] for r in records) == sorted([f"ok-1 {tag}", f"fail {tag}", f"ok-2 {tag}"])
    assert {r["eventSource"] for r in records} == {"aws:sqs"}
    assert records[0]["eventSourceARN"] == fake.template.getatt("WorkQueue", "Arn")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # The two successes are deleted; the reported failure waits out its visibility timeout.
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "1",
    )


def test_cold_start_forgets_what_a_direct_call_cached(fake: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: a test called the handler module directly and left a warm cache behind
    handlers.deps.cache_clear()
    monkeypatch.setenv("DATA_BUCKET", "stale-bucket")
    assert handlers.deps() == {"bucket": "stale-bucket"}
    assert fake.invoke("RecordFunction", {"n": "warm"}).ok
    assert handlers.RECEIVED[-1]["deps"] == {"bucket": "stale-bucket"}  # a warm container keeps it
    # When
    fake.cold_start()
    # Then
    assert fake.invoke("RecordFunction", {"n": "cold"}).ok
    assert handlers.RECEIVED[-1]["deps"] == {"bucket": fake.outputs["DataBucketName"]}


# ---------------------------------------------------------------- failures


def test_a_failing_attempt_is_retried_with_the_same_request_id(fake: Twin) -> None:
    key = uuid.uuid4().hex
    put_event(fake, "twin.flaky", {"key": key, "fail_times": 1})
    fake.wait_idle(30)
    attempts = [r for r in received("flaky", lambda e: (e.get("detail") or {}).get("key") == key)]
    invs = [i for i in fake.invocations_of("FlakyFunction") if i.request_id == attempts[0]["request_id"]]
    assert [(i.attempt, i.outcome) for i in invs] == [(1, "error"), (2, "ok")]
    assert {a["request_id"] for a in attempts} == {invs[0].request_id}
    assert not [m for m in drain(fake, "DLQUrl") if key in m["Body"]]


def test_a_raising_handler_is_retried_twice_then_dead_lettered(
    fake: Twin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelops.twin")
    key = uuid.uuid4().hex
    put_event(fake, "twin.flaky", {"key": key, "fail_times": 99})
    fake.wait_idle(30)
    rid = received("flaky", lambda e: (e.get("detail") or {}).get("key") == key)[0]["request_id"]
    invs = [i for i in fake.invocations_of("FlakyFunction") if i.request_id == rid]
    assert [(i.attempt, i.outcome, i.error_type) for i in invs] == [
        (n, "error", "RuntimeError") for n in (1, 2, 3)
    ]
    dead = [m for m in drain(fake, "DLQUrl") if key in m["Body"]]
    assert len(dead) == 1
    assert json.loads(dead[0]["Body"])["detail"] == {"key": key, "fail_times": 99}  # the event itself
    attrs = dead[0]["MessageAttributes"]
    assert attrs["RequestID"]["StringValue"] == rid
    assert attrs["ErrorMessage"]["StringValue"] == f"flaky failure 3 of {key}"
    assert any(rid in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_an_import_failure_is_logged_dead_lettered_and_the_rest_keeps_working(
    fake: Twin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelops.twin")
    tag = uuid.uuid4().hex
    put_event(fake, "twin.broken", {"tag": tag})
    fake.wait_idle(30)
    invs = [i for i in fake.invocations_of("BrokenFunction") if i.source == "eventbridge"]
    rid = invs[-1].request_id
    mine = [i for i in invs if i.request_id == rid]
    assert [(i.outcome, i.error_type) for i in mine] == [("error", "Runtime.ImportModuleError")] * 3
    assert "a_dependency_nobody_installed" in (mine[0].error_message or "")
    assert any(rid in r.getMessage() and "ImportModuleError" in r.getMessage() for r in caplog.records)
    assert [m for m in drain(fake, "DLQUrl") if tag in m["Body"]]
    # Everything else still works.
    fake.client("s3").put_object(
        Bucket=fake.outputs["DataBucketName"], Key=f"datasets/{tag}/data.csv", Body=b"x"
    )
    fake.wait_idle(30)
    assert len(received("record", lambda e: tag in json.dumps(e))) == 1


def test_a_handler_past_its_timeout_is_reported_and_sent_to_its_destination(fake: Twin) -> None:
    tag = uuid.uuid4().hex
    started = time.monotonic()
    put_event(fake, "twin.slow", {"seconds": 30, "tag": tag})
    fake.wait_idle(30)
    elapsed = time.monotonic() - started
    rid = received("slow", lambda e: e.get("detail", {}).get("tag") == tag)[0]["request_id"]
    invs = [i for i in fake.invocations_of("SlowFunction") if i.request_id == rid]
    assert [(i.outcome, i.error_type) for i in invs] == [
        ("timeout", "Sandbox.Timedout")
    ]  # MaximumRetryAttempts: 0
    assert invs[0].error_message == "Task timed out after 1.00 seconds"
    assert elapsed < 10  # the twin did not wait for the 30 s handler
    dest = [json.loads(m["Body"]) for m in drain(fake, "FailureDestinationUrl") if tag in m["Body"]]
    assert len(dest) == 1
    record = dest[0]
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"]["detail"]["tag"] == tag
    assert record["responsePayload"]["errorType"] == "Sandbox.Timedout"


# ---------------------------------------------------------------- local training backend


def job_request(twin: Twin, name: str, prefix: str, **hps: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/x",
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{twin.outputs['DataBucketName']}/{prefix}",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{twin.outputs['OutputBucketName']}/staging/m/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "HyperParameters": {"model": "m", **hps},
    }


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_training_job_runs_under_the_sagemaker_contract_and_emits_its_event(
    fake: Twin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelops.twin")
    s3 = fake.client("s3")
    tag = uuid.uuid4().hex[:8]
    prefix = f"train-input/{tag}/"
    s3.put_object(Bucket=fake.outputs["DataBucketName"], Key=prefix + "a.csv", Body=b"x,y\n1,2\n")
    s3.put_object(Bucket=fake.outputs["DataBucketName"], Key=prefix + "sub/b.csv", Body=b"x,y\n3,4\n5,6\n")
    name = f"twinjob-m-{tag}"
    url = f"{fake.control_url}/training-jobs"

    resp = requests.post(
        url, json=job_request(fake, name, prefix, epochs="3"), headers=fake.control_headers, timeout=10
    )
    again = requests.post(
        url, json=job_request(fake, name, prefix, epochs="3"), headers=fake.control_headers, timeout=10
    )
    fake.wait_idle(60)

    assert resp.status_code == 200
    assert resp.json() == {"TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"}
    assert again.status_code == 400 and again.json()["__type"] == "ResourceInUse"
    out = fake.outputs["OutputBucketName"]
    model = untar(s3.get_object(Bucket=out, Key=f"staging/m/{name}/output/model.tar.gz")["Body"].read())
    metrics = json.loads(model["metrics.json"])
    assert metrics == {"files": ["a.csv", "sub/b.csv"], "rows": 5, "hps_match": True, "job": name}
    assert model["saved_model/weights.bin"] == b"\x00" * 16
    assert untar(s3.get_object(Bucket=out, Key=f"staging/m/{name}/output/output.tar.gz")["Body"].read()) == {
        "report.txt": b"ok"
    }
    done = received("record", lambda e: e.get("detail", {}).get("TrainingJobName") == name)
    assert len(done) == 1  # the InProgress event does not match the rule
    event = done[0]["event"]
    assert (
        event["source"] == "aws.sagemaker" and event["detail-type"] == "SageMaker Training Job State Change"
    )
    assert event["detail"]["TrainingJobStatus"] == "Completed"
    assert (
        event["detail"]["ModelArtifacts"]["S3ModelArtifacts"]
        == f"s3://{out}/staging/m/{name}/output/model.tar.gz"
    )
    assert event["detail"]["HyperParameters"] == {"model": "m", "epochs": "3"}
    lines = [r.getMessage() for r in caplog.records]
    assert f"[{name}] epoch 3/3 loss=0.333" in lines
    described = requests.get(f"{url}/{name}", headers=fake.control_headers, timeout=10).json()
    assert described["TrainingJobStatus"] == "Completed"


def test_failed_stopped_and_foreign_jobs(fake: Twin) -> None:
    s3 = fake.client("s3")
    tag = uuid.uuid4().hex[:8]
    prefix = f"train-input/{tag}/"
    s3.put_object(Bucket=fake.outputs["DataBucketName"], Key=prefix + "a.csv", Body=b"x\n1\n")
    url = f"{fake.control_url}/training-jobs"
    failing, slow, foreign, empty = (
        f"twinjob-f-{tag}",
        f"twinjob-s-{tag}",
        f"other-{tag}",
        f"twinjob-e-{tag}",
    )
    slow_req = job_request(fake, slow, prefix, sleep="30")
    slow_req["StoppingCondition"] = {"MaxRuntimeInSeconds": 1}
    for body in (
        job_request(fake, failing, prefix, fail="true"),
        slow_req,
        job_request(fake, foreign, prefix),
        job_request(fake, empty, f"train-input/{tag}-nothing/"),
    ):
        assert requests.post(url, json=body, headers=fake.control_headers, timeout=10).status_code == 200
    fake.wait_idle(60)

    def detail(name: str) -> dict[str, Any]:
        got = received("record", lambda e: e.get("detail", {}).get("TrainingJobName") == name)
        assert len(got) == 1, name
        return got[0]["event"]["detail"]

    assert detail(failing)["TrainingJobStatus"] == "Failed"
    assert detail(failing)["FailureReason"] == "AlgorithmError: asked to fail"
    assert detail(slow)["TrainingJobStatus"] == "Stopped"
    assert detail(slow)["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert detail(empty)["TrainingJobStatus"] == "Failed"
    assert detail(empty)["FailureReason"].startswith("ClientError: No S3 objects found")
    # A job outside the JobPrefix ran, but the rule's prefix pattern does not match it.
    assert (
        requests.get(f"{url}/{foreign}", headers=fake.control_headers, timeout=10).json()["TrainingJobStatus"]
        == "Completed"
    )
    assert received("record", lambda e: e.get("detail", {}).get("TrainingJobName") == foreign) == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"TrainingJobName": "bad name!", "OutputDataConfig": {"S3OutputPath": "s3://b/p"}},
            "ValidationException",
        ),
        ({"TrainingJobName": "ok-name"}, "ValidationException"),
        (
            {"TrainingJobName": "ok-name", "OutputDataConfig": {"S3OutputPath": "/local/path"}},
            "ValidationException",
        ),
        (
            {
                "TrainingJobName": "ok-name",
                "OutputDataConfig": {"S3OutputPath": "s3://b/p"},
                "HyperParameters": {"epochs": 3},
            },
            "ValidationException",
        ),
        ([1, 2], "ValidationException"),
    ],
)
def test_invalid_training_requests_are_refused_like_sagemaker(fake: Twin, body: Any, error: str) -> None:
    resp = requests.post(
        f"{fake.control_url}/training-jobs", json=body, headers=fake.control_headers, timeout=10
    )
    assert resp.status_code == 400
    assert resp.json()["__type"] == error
    assert "ok-name" not in fake.training.jobs


def test_control_endpoint_errors(fake: Twin) -> None:
    assert (
        requests.post(
            f"{fake.control_url}/training-jobs", data=b"{not json", headers=fake.control_headers, timeout=10
        ).status_code
        == 400
    )
    assert (
        requests.get(
            f"{fake.control_url}/training-jobs/never-created", headers=fake.control_headers, timeout=10
        ).status_code
        == 400
    )
    assert (
        requests.post(
            f"{fake.control_url}/tick/NoSuchFunction", headers=fake.control_headers, timeout=10
        ).status_code
        == 404
    )
    assert (
        requests.get(f"{fake.control_url}/nothing-here", headers=fake.control_headers, timeout=10).status_code
        == 404
    )
    assert (
        requests.get(f"{fake.control_url}/health", headers=fake.control_headers, timeout=10).json()["status"]
        == "ok"
    )
    assert Path(FAKE).exists()


# ---------------------------------------------------------------- the stack's own event bus (template.yaml)


def stage_event(model: str, bus: str | None = None) -> dict[str, Any]:
    entry = {
        "Source": "modelops",
        "DetailType": "DatasetRejected",
        "Detail": json.dumps({"model": model, "reason": "bad column", "key": f"datasets/{model}/x.csv"}),
    }
    return {**entry, "EventBusName": bus} if bus else entry


def test_the_stage_events_bus_runs_on_the_twin_and_only_it_reaches_the_alert_function(twin: Twin) -> None:
    """template.yaml's StageEventBus: the twin creates it, tells every stage its name, puts the alert
    function's rule on it (and the AWS service rules on the default bus). A stage event put on the
    default bus, where anyone could put one, reaches nothing."""
    events = twin.client("events")
    bus = twin.function("AlertFunction").environment["EVENT_BUS_NAME"]
    assert bus != "default" and events.describe_event_bus(Name=bus)["Name"] == bus
    for fn in ("TrainTriggerFunction", "ConvertFunction", "PredictFunction", "MonitorFunction"):
        assert twin.function(fn).environment["EVENT_BUS_NAME"] == bus, fn
    on_bus = [r["Name"] for r in events.list_rules(EventBusName=bus)["Rules"]]
    on_default = [r["Name"] for r in events.list_rules()["Rules"]]
    assert any(n.endswith("-AlertFunction-events") for n in on_bus)
    assert not any("AlertFunction" in n for n in on_default)
    assert any(n.endswith("-ConvertFunction-job") for n in on_default)  # SageMaker's events stay there
    assert "StageEventBusPolicy" in twin.provisioned.skipped  # not enforced locally (said so)
    # the alert rule's dead letters are accepted: the DLQ policy names the rule's ARN on that bus
    [rule] = [n for n in on_bus if n.endswith("-AlertFunction-events")]
    dlq_policy = twin.template.resolve(twin.template.props("RuleDeadLetterPolicy"))["PolicyDocument"]
    named = []
    for st in dlq_policy["Statement"]:
        arns = st["Condition"]["ArnEquals"]["aws:SourceArn"]
        named += arns if isinstance(arns, list) else [arns]
    assert events.describe_rule(Name=rule, EventBusName=bus)["Arn"] in named

    tag = uuid.uuid4().hex[:8]
    mark = twin.mark()
    resp = events.put_events(Entries=[stage_event(f"bus-{tag}", bus), stage_event(f"default-{tag}")])
    assert resp["FailedEntryCount"] == 0
    twin.wait_idle(60)

    seen = [
        a["model"]
        for inv in twin.invocations_of("AlertFunction", since=mark)
        if inv.ok and isinstance(inv.result, dict)
        for a in inv.result.get("alerts", [])
    ]
    assert seen == [f"bus-{tag}"]
