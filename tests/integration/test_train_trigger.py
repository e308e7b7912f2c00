"""train_trigger on moto: datasets dropped in S3 start exactly one job, bad ones are quarantined."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.stub import Stubber

from modelops import aws
from modelops.compute import JobRequest, RetryPolicy, SageMakerBackend, StartedJob
from modelops.domain.errors import BackendError
from modelops.domain.spec import parse_spec
from modelops.stages import train_trigger
from modelops.stages.train_trigger import (
    Settings,
    TrainTrigger,
    assemble,
    job_name,
    parse_record,
    spec_sha256,
)
from modelops.storage.keys import quarantine_prefix
from tests.fakes import FakeContext

EVENT = json.loads((Path(__file__).parents[2] / "events" / "s3_dataset_put.json").read_text())
ROLE = "arn:aws:iam::123456789012:role/modelops-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-training:1"
SPEC = {"task": "regression", "target": "y", "training": {"instance_type": "ml.g5.2xlarge", "epochs": 3}}
JOB_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def good_csv(n: int = 30, eol: str = "\n", offset: int = 0) -> bytes:
    rows = "".join(f"{i},{(i * 7) % 11},{2 * i + (i * 7) % 11 + offset}{eol}" for i in range(n))
    return f"a,b,y{eol}{rows}".encode()


# ---------------------------------------------------------------------------- fixture
@dataclass
class Stack:
    s3: Any
    sm: Any
    sqs: Any
    queue_url: str
    settings: Settings
    seen_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def put(self, key: str, body: bytes, bucket: str = "data") -> dict[str, Any]:
        """Upload and return the S3 event record AWS would send (key URL-encoded)."""
        resp = self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        record = copy.deepcopy(EVENT["Records"][0])
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["object"].update(
            key=quote_plus(key, safe="/"),
            size=len(body),
            eTag=resp["ETag"].strip('"'),
            versionId=resp["VersionId"],
        )
        return record

    def put_spec(self, spec: Any, model: str = "demo") -> None:
        body = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
        self.s3.put_object(Bucket="data", Key=f"datasets/{model}/model.json", Body=body)

    def trigger(self, persistence: bool = True, **overrides: Any) -> TrainTrigger:
        if not persistence:
            overrides["idempotency_table"] = ""
        settings = self.settings.model_copy(update=overrides)
        return assemble(settings, lambda service: boto3.client(service, region_name="us-east-1"))

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not msgs:
                return self.seen_events
            for m in msgs:
                doc = json.loads(m["Body"])
                self.seen_events.append((doc["detail-type"], doc["detail"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def jobs(self) -> list[str]:
        return sorted(j["TrainingJobName"] for j in self.sm.list_training_jobs()["TrainingJobSummaries"])

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(
            o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        )

    def json(self, bucket: str, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture
def stack(moto: None) -> Iterator[Stack]:
    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in ("data", "registry"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="modelops-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events", region_name="us-east-1")
    events.put_rule(Name="modelops", EventPattern=json.dumps({"source": ["modelops"]}))
    events.put_targets(Rule="modelops", Targets=[{"Id": "q", "Arn": queue_arn}])
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName="idempotency",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    settings = Settings(
        registry_bucket="registry",
        training_role_arn=ROLE,
        training_image_uri=IMAGE,
        idempotency_table="idempotency",
    )
    yield Stack(s3, boto3.client("sagemaker", region_name="us-east-1"), sqs, queue_url, settings)


# ---------------------------------------------------------------------------- job names
def test_job_name_is_deterministic_and_follows_the_contract() -> None:
    name = job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry")
    identity = "\n".join(("registry", "demo", "a" * 64, "b" * 64))
    assert name == "modelops-demo-" + hashlib.sha256(identity.encode()).hexdigest()[:12]
    assert name == job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry")
    assert name != job_name("demo", "a" * 64, "c" * 64, "modelops", stack="registry")  # spec changed
    assert name != job_name("demo", "c" * 64, "b" * 64, "modelops", stack="registry")  # data changed
    long = job_name("m" * 39 + "x", "a" * 64, "b" * 64, "p" * 21)
    assert len(long) == 63 and JOB_RE.match(long)
    with pytest.raises(ValueError):
        job_name("demo", "a" * 64, "b" * 64, "Bad_Prefix")


def test_two_different_jobs_never_share_a_name() -> None:
    """Issue 17: Batch does not refuse a duplicate name and the backend finds a submitted job by name, so
    a name must belong to one job: not shared by two models whose names are cut to the same 63-character
    name, nor by two stacks with the same JobPrefix in one account."""
    stem = "customer-churn-prediction-eu-"  # both names are cut to it with a 21-character prefix
    west = job_name(stem + "west-1", "a" * 64, "b" * 64, "p" * 21, stack="registry")
    east = job_name(stem + "east-1", "a" * 64, "b" * 64, "p" * 21, stack="registry")
    assert west != east and len(west) == len(east) == 63
    assert job_name("demo", "a" * 64, "b" * 64, stack="dev-registry") != job_name(
        "demo", "a" * 64, "b" * 64, stack="prod-registry"
    )


def test_spec_sha_ignores_formatting_but_not_content() -> None:
    a = parse_spec(json.dumps(SPEC, indent=4))
    b = parse_spec(json.dumps({**SPEC, "conversion": {"quantize": "none"}}))  # a default, spelled out
    c = parse_spec(json.dumps({**SPEC, "training": {**SPEC["training"], "epochs": 4}}))
    assert spec_sha256(a) == spec_sha256(b) != spec_sha256(c)


def test_parse_record_url_decodes_keys() -> None:
    record = copy.deepcopy(EVENT["Records"][0])
    record["s3"]["object"]["key"] = "datasets/demo/my+data%2Bv1%C3%A9.csv"
    obj = parse_record(record)
    assert obj is not None and obj.key == "datasets/demo/my data+v1é.csv"
    assert obj.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert parse_record({"s3": {}}) is None


# ---------------------------------------------------------------------------- accepted
def test_accepted_dataset_starts_one_sagemaker_job(stack: Stack) -> None:
    # Given a spec and a dataset
    stack.put_spec(SPEC)
    body = good_csv()
    record = stack.put("datasets/demo/train.csv", body)

    # When the upload's event arrives
    result = stack.trigger().handle_event({"Records": [record]})

    # Then one job named from the data and spec hashes runs on SageMaker as the spec asks
    [res] = result["results"]
    sha = hashlib.sha256(body).hexdigest()
    job = job_name("demo", sha, spec_sha256(parse_spec(SPEC)), "modelops", stack="registry")
    assert res["status"] == "started" and res["job"] == job and res["backend"] == "sagemaker"
    assert stack.jobs() == [job]
    desc = stack.sm.describe_training_job(TrainingJobName=job)
    assert desc["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    # (issue 14: the job's channel is the platform's training rows, not the upload)
    assert (
        desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://registry/inputs/demo/{job}/train.csv"
    )
    assert desc["OutputDataConfig"]["S3OutputPath"] == "s3://registry/staging/demo/"
    assert desc["HyperParameters"]["dataset_uri"] == f"s3://registry/inputs/demo/{job}/train.csv"
    assert desc["HyperParameters"]["dataset_version_id"] == ""
    # and the job record follows docs/contracts.md
    doc = stack.json("registry", f"jobs/{job}.json")
    assert {
        "job",
        "model",
        "backend",
        "dataset",
        "spec",
        "spec_sha256",
        "created_at",
        "staging_prefix",
    } <= set(doc)
    assert doc["dataset"] == {
        "uri": "s3://data/datasets/demo/train.csv",
        "bucket": "data",
        "key": "datasets/demo/train.csv",
        "version_id": record["s3"]["object"]["versionId"],
        "sha256": sha,
        "rows": 30,
    }
    assert doc["staging_prefix"] == f"staging/demo/{job}/" and doc["backend"] == "sagemaker"
    assert parse_spec(doc["spec"]) == parse_spec(SPEC)
    assert stack.keys("registry", "jobs/") == [f"jobs/{job}.json", f"jobs/{job}.started.json"]
    assert doc["split"]["train"]["rows"] + doc["split"]["evaluation"]["rows"] == 30
    # and the stage said so on the bus
    [(kind, detail)] = stack.events()
    assert kind == "TrainingJobStarted"
    assert detail["model"] == "demo" and detail["job"] == job and detail["dataset"]["sha256"] == sha
    assert stack.keys("data", "quarantine/") == []


def test_bom_and_crlf_dataset_is_accepted(stack: Stack) -> None:
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/excel.csv", b"\xef\xbb\xbf" + good_csv(eol="\r\n"))
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "started"
    assert len(stack.jobs()) == 1


def test_url_encoded_key_is_decoded(stack: Stack) -> None:
    stack.put_spec(SPEC)
    key = "datasets/demo/my data+v1.csv"
    record = stack.put(key, good_csv())
    assert record["s3"]["object"]["key"] == "datasets/demo/my+data%2Bv1.csv"
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "started"
    desc = stack.sm.describe_training_job(TrainingJobName=res["job"])
    assert desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        f"/{res['job']}/train.csv"
    )
    assert stack.json("registry", f"jobs/{res['job']}.json")["dataset"]["key"] == key


# ---------------------------------------------------------------------------- rejected
BAD_INPUTS = {
    "empty": (b"", "empty_file"),
    "header_only": (b"a,b,y\n", "no_rows"),
    "missing_target": (good_csv().replace(b"a,b,y", b"a,b,z"), "missing_target"),
    "text_in_numeric": (good_csv().replace(b"\n5,2,", b"\n5,two,"), "non_numeric"),
    "nan": (good_csv().replace(b"\n5,2,", b"\nnan,2,"), "non_finite"),
    "inf": (good_csv().replace(b"\n5,2,", b"\n5,inf,"), "non_finite"),
    "one_row": (b"a,b,y\n1,2,3\n", "too_few_rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_dataset_is_quarantined_with_a_reason_and_an_alert(stack: Stack, case: str) -> None:
    # Given a dataset that must not train
    body, code = BAD_INPUTS[case]
    spec = {**SPEC, "features": ["a", "b"]} if case == "text_in_numeric" else SPEC
    stack.put_spec(spec)
    record = stack.put("datasets/demo/bad.csv", body)
    version = record["s3"]["object"]["versionId"]

    # When its event arrives
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]

    # Then it is rejected with the code, copied to quarantine beside reason.json, and nothing trains
    assert res["status"] == "rejected" and res["code"] == code
    prefix = f"quarantine/demo/bad.csv/{version}/"
    assert stack.keys("data", "quarantine/") == [prefix + "bad.csv", prefix + "reason.json"]
    assert stack.s3.get_object(Bucket="data", Key=prefix + "bad.csv")["Body"].read() == body
    reason = stack.json("data", prefix + "reason.json")
    assert reason["code"] == code and reason["model"] == "demo"
    assert reason["dataset"]["key"] == "datasets/demo/bad.csv" and reason["dataset"]["version_id"] == version
    assert reason["reason"]
    # the original is untouched; no job, no job record
    assert stack.s3.get_object(Bucket="data", Key="datasets/demo/bad.csv")["Body"].read() == body
    assert stack.jobs() == [] and stack.keys("registry") == []
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["code"] == code and detail["model"] == "demo"
    assert detail["quarantine"] == f"s3://data/{prefix}"


def test_dataset_for_a_model_without_spec_is_rejected_with_that_reason(stack: Stack) -> None:
    record = stack.put("datasets/nospec/train.csv", good_csv())
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "no_spec"
    assert "datasets/nospec/model.json" in res["reason"]
    assert stack.jobs() == []
    assert [k for k, _ in stack.events()] == ["DatasetRejected"]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (b"{not json", "not valid JSON"),
        ({"task": "regression", "target": "y", "training": {"epochs": -1}}, "training.epochs"),
        ({"task": "regression", "target": "y", "colour": "red"}, "colour: unknown key"),
    ],
)
def test_invalid_spec_is_rejected_with_the_field_named(stack: Stack, spec: Any, needle: str) -> None:
    stack.put_spec(spec)
    record = stack.put("datasets/demo/train.csv", good_csv())
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "invalid_spec"
    assert needle in res["reason"]
    assert stack.jobs() == []


def test_a_spec_beyond_the_stacks_spend_policy_is_rejected_naming_the_field(stack: Stack) -> None:
    """TrainingInstanceTypes / TrainingMaxParallelTrials: a rejection (quarantined, alerted), not an
    AccessDenied from SageMaker retried into the DLQ (issue 17)."""
    stack.put_spec({**SPEC, "training": {"instance_type": "ml.p4d.24xlarge"}})
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger(allowed_instance_types="ml.m5.large,ml.g5.xlarge", max_parallel_trials=4)
    [res] = trigger.handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "spend_limit"
    assert "training.instance_type 'ml.p4d.24xlarge'" in res["reason"]
    assert stack.jobs() == []
    assert stack.keys("data", "quarantine/demo/train.csv/")


def test_jobs_stop_within_the_stacks_runtime_cap(stack: Stack) -> None:
    stack.put_spec({**SPEC, "training": {"instance_type": "ml.g5.xlarge"}})
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger(allowed_instance_types="ml.g5.xlarge", max_runtime_seconds=7200)
    [res] = trigger.handle_event({"Records": [record]})["results"]
    assert res["status"] == "started"
    job = stack.sm.describe_training_job(TrainingJobName=res["job"])
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200


def test_bad_model_name_in_key_is_rejected(stack: Stack) -> None:
    record = stack.put("datasets/Bad_Name/train.csv", good_csv())
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "bad_key"
    assert stack.keys("data", "quarantine/Bad_Name/train.csv/")


def test_object_over_the_size_limit_is_rejected_before_reading(stack: Stack) -> None:
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/big.csv", good_csv(200))
    [res] = stack.trigger(max_dataset_bytes=1000).handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "too_large"
    assert stack.jobs() == []


def test_batch_backend_missing_from_the_stack_is_a_clear_rejection(stack: Stack) -> None:
    stack.put_spec({**SPEC, "training": {"backend": "batch"}})
    record = stack.put("datasets/demo/train.csv", good_csv())
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "backend_not_configured"
    assert "TrainingBackend=batch" in res["reason"]


@pytest.mark.parametrize(
    ("key", "event_name"),
    [
        ("datasets/demo/model.json", "ObjectCreated:Put"),
        ("other/demo/train.csv", "ObjectCreated:Put"),
        ("datasets/demo/train.csv", "ObjectRemoved:Delete"),
    ],
)
def test_records_that_are_not_datasets_are_ignored(stack: Stack, key: str, event_name: str) -> None:
    record = stack.put(key, good_csv())
    record["eventName"] = event_name
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "ignored"
    assert stack.events() == [] and stack.keys("data", "quarantine/") == []


def test_deleted_version_is_reported_gone_not_retried(stack: Stack) -> None:
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/train.csv", good_csv())
    stack.s3.delete_object(
        Bucket="data", Key="datasets/demo/train.csv", VersionId=record["s3"]["object"]["versionId"]
    )
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "gone" and stack.jobs() == []


# ---------------------------------------------------------------------------- idempotency
def test_same_event_three_times_starts_one_job(stack: Stack) -> None:
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger()

    results = [trigger.handle_event({"Records": [record]})["results"][0] for _ in range(3)]

    assert [r["status"] for r in results] == ["started"] * 3  # replays answered from the idempotency store
    assert len({r["job"] for r in results}) == 1
    assert len(stack.jobs()) == 1
    assert [k for k, _ in stack.events()] == ["TrainingJobStarted"]
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="idempotency")["Items"]
    assert len(items) == 1 and items[0]["status"]["S"] == "COMPLETED"


def test_replays_past_the_idempotency_store_still_start_one_job(stack: Stack) -> None:
    # Given no idempotency store (or an expired record): the job record and marker still hold
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger(persistence=False)
    statuses = [r["status"] for r in trigger.handle_event({"Records": [record] * 3})["results"]]
    assert statuses == ["started", "duplicate", "duplicate"]
    assert len(stack.jobs()) == 1
    assert [k for k, _ in stack.events()] == ["TrainingJobStarted"]


def test_out_of_order_versions_each_train_once(stack: Stack) -> None:
    # Given two versions of the same key, their events duplicated and delivered out of order
    stack.put_spec(SPEC)
    v1 = stack.put("datasets/demo/train.csv", good_csv(offset=0))
    v2 = stack.put("datasets/demo/train.csv", good_csv(offset=1))
    trigger = stack.trigger()

    for record in (v2, v1, v2, v1, v1):
        trigger.handle_event({"Records": [record]})

    # Then each version trained exactly once, on its own bytes
    jobs = stack.jobs()
    assert len(jobs) == 2
    versions = {stack.json("registry", f"jobs/{j}.json")["dataset"]["version_id"] for j in jobs}
    assert versions == {v1["s3"]["object"]["versionId"], v2["s3"]["object"]["versionId"]}
    trained = {
        stack.sm.describe_training_job(TrainingJobName=j)["HyperParameters"]["dataset_sha256"] for j in jobs
    }
    assert len(trained) == 2  # each job's training rows come from its own version
    assert [k for k, _ in stack.events()] == ["TrainingJobStarted"] * 2


def test_same_content_under_a_new_key_does_not_retrain_unless_the_spec_changed(stack: Stack) -> None:
    stack.put_spec(SPEC)
    trigger = stack.trigger()
    first = trigger.handle_event({"Records": [stack.put("datasets/demo/a.csv", good_csv())]})["results"][0]
    again = trigger.handle_event({"Records": [stack.put("datasets/demo/b.csv", good_csv())]})["results"][0]
    assert first["status"] == "started" and again == {**again, "status": "duplicate", "job": first["job"]}
    assert len(stack.jobs()) == 1

    stack.put_spec({**SPEC, "training": {**SPEC["training"], "epochs": 7}})
    changed = trigger.handle_event({"Records": [stack.put("datasets/demo/c.csv", good_csv())]})["results"][0]
    assert changed["status"] == "started" and changed["job"] != first["job"]
    assert len(stack.jobs()) == 2


class FlakyBackend:
    """Fails the first ``failures`` starts the way a throttled backend does after its retries."""

    name = "sagemaker"

    def __init__(self, inner: Any, failures: int):
        self.inner, self.failures, self.calls = inner, failures, 0

    def start(self, req: JobRequest) -> StartedJob:
        self.calls += 1
        if self.calls <= self.failures:
            raise BackendError("sagemaker:CreateTrainingJob: still ThrottlingException after 4 attempts")
        return self.inner.start(req)  # type: ignore[no-any-return]


def test_backend_failure_raises_and_the_retry_starts_exactly_one_job(stack: Stack) -> None:
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger()
    real = trigger.backends("sagemaker")
    flaky = FlakyBackend(real, failures=2)
    trigger.backends = lambda name: flaky  # type: ignore[assignment,return-value]

    # The first two deliveries fail (Lambda retries them; the DLQ would keep a third failure)
    for _ in range(2):
        with pytest.raises(BackendError):
            trigger.handle_event({"Records": [record]})
    assert stack.jobs() == [] and stack.events() == []
    job_keys = stack.keys("registry", "jobs/")
    assert len(job_keys) == 1 and job_keys[0].endswith(".json") and ".started" not in job_keys[0]

    # The next retry starts the job once, and a later replay changes nothing
    [res] = trigger.handle_event({"Records": [record]})["results"]
    trigger.handle_event({"Records": [record]})
    assert res["status"] == "started" and stack.jobs() == [res["job"]]
    assert flaky.calls == 3
    assert [k for k, _ in stack.events()] == ["TrainingJobStarted"]


def test_one_failing_record_does_not_block_the_others(stack: Stack) -> None:
    stack.put_spec(SPEC)
    good = stack.put("datasets/demo/good.csv", good_csv())
    bad = stack.put("datasets/demo/bad.csv", b"")
    trigger = stack.trigger()
    flaky = FlakyBackend(trigger.backends("sagemaker"), failures=1)
    trigger.backends = lambda name: flaky  # type: ignore[assignment,return-value]
    with pytest.raises(BackendError):
        trigger.handle_event({"Records": [good, bad]})
    assert [k for k, _ in stack.events()] == ["DatasetRejected"]  # the bad one was still handled
    results = trigger.handle_event({"Records": [good, bad]})["results"]
    assert [r["status"] for r in results] == ["started", "rejected"]
    assert len(stack.jobs()) == 1


# ---------------------------------------------------------------------------- the handler
def test_handler_end_to_end_with_template_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "REGISTRY_BUCKET": "registry",
        "DATA_BUCKET": "data",
        "JOB_PREFIX": "modelops",
        "IDEMPOTENCY_TABLE": "idempotency",
        "TRAINING_ROLE_ARN": ROLE,
        "TRAINING_IMAGE_URI": "",
        "BATCH_JOB_QUEUE": "",
        "BATCH_JOB_DEFINITION": "",
        "MAX_DATASET_ROWS": "5000000",
        "MAX_DATASET_BYTES": "104857600",
        "POWERTOOLS_SERVICE_NAME": "train_trigger",
    }.items():
        monkeypatch.setenv(name, value)
    from functions.train_trigger import app

    train_trigger.build.cache_clear()
    aws.clear_cache()
    stack.put_spec(SPEC)
    event = {
        "Records": [
            stack.put("datasets/demo/train.csv", good_csv()),
            stack.put("datasets/demo/x.csv", b"a,b\n"),
        ]
    }
    try:
        out = app.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
        again = app.lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    finally:
        train_trigger.build.cache_clear()
    assert [r["status"] for r in out["results"]] == ["started", "rejected"]
    assert again == out
    [job] = stack.jobs()
    image = stack.sm.describe_training_job(TrainingJobName=job)["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith("/tensorflow-training:2.16-gpu-py310")  # no image of our own: the AWS one
    assert any(k.endswith("/sourcedir.tar.gz") for k in stack.keys("registry", "code/training/"))


def test_local_training_url_sends_every_job_to_the_twin(stack: Stack) -> None:
    from tests.integration.test_backends import FakeTwin

    stack.put_spec({**SPEC, "training": {"backend": "batch"}})
    record = stack.put("datasets/demo/train.csv", good_csv())
    with FakeTwin([(200, {"TrainingJobArn": "arn:local"})]) as twin:
        [res] = stack.trigger(modelops_local_training_url=twin.url).handle_event({"Records": [record]})[
            "results"
        ]
    assert res["status"] == "started" and res["backend"] == "local"
    [(path, body)] = twin.requests
    assert path == "/training-jobs" and body["TrainingJobName"] == res["job"]
    assert stack.json("registry", f"jobs/{res['job']}.json")["backend"] == "local"


def test_quarantine_prefix_shape() -> None:
    assert quarantine_prefix("datasets/demo/x/y.csv", "v1", None) == "quarantine/demo/x/y.csv/v1/"
    assert quarantine_prefix("datasets/demo/y.csv", None, "abc") == "quarantine/demo/y.csv/etag-abc/"


def test_the_handler_imports_no_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, functions.train_trigger.app; "
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'scipy') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_job_started_by_an_attempt_that_died_is_still_announced_once_by_the_retry(stack: Stack) -> None:
    # Given an attempt that started the job and then died before announcing it (no event, no marker)
    stack.put_spec(SPEC)
    record = stack.put("datasets/demo/train.csv", good_csv())
    trigger = stack.trigger()
    bus = trigger.bus
    publish = bus.publish
    calls = {"n": 0}

    def dies_once(detail_type: str, detail: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the container died after StartTrainingJob")
        return publish(detail_type, detail)

    bus.publish = dies_once  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        trigger.handle_event({"Records": [record]})
    assert len(stack.jobs()) == 1 and stack.events() == []
    # When Lambda retries the event
    trigger.handle_event({"Records": [record]})
    trigger.handle_event({"Records": [record]})
    # Then still one job, and it is announced exactly once
    assert len(stack.jobs()) == 1
    assert [k for k, _ in stack.events()] == ["TrainingJobStarted"]


# ---------------------------------------------------------------------------- the backend refuses the request
INVALID_INSTANCE = (
    "1 validation error detected: Value 'ml.g5.2xlarge' at 'resourceConfig.instanceType' failed to satisfy "
    "constraint: Member must satisfy enum value set: [ml.m5.large, ml.m5.xlarge]"
)


def stubbed_sagemaker(trigger: TrainTrigger) -> Stubber:
    """The trigger's SageMaker backend on a client whose answers a Stubber scripts."""
    sm = boto3.client("sagemaker", region_name="us-east-1")
    backend = SageMakerBackend(
        sm, role_arn=ROLE, region="us-east-1", image_uri=IMAGE, retry=RetryPolicy(sleep=lambda s: None)
    )
    trigger.backends = lambda name: backend  # type: ignore[assignment,return-value]
    return Stubber(sm)


def test_a_request_sagemaker_refuses_as_invalid_is_a_rejection_and_a_corrected_retry_trains(
    stack: Stack,
) -> None:
    """Issue 17: a ValidationException (an instance type SageMaker does not offer here) is not retried into
    the DLQ: the dataset is quarantined, DatasetRejected names the field, the job record is marked rejected
    (no stray claim); once the cause is fixed, the same dataset and spec train exactly once."""
    # Given a spec and a dataset, and a SageMaker that refuses the job's instance type
    stack.put_spec(SPEC)
    body = good_csv()
    record = stack.put("datasets/demo/train.csv", body)
    trigger = stack.trigger()
    stub = stubbed_sagemaker(trigger)
    stub.add_client_error(
        "create_training_job",
        service_error_code="ValidationException",
        service_message=INVALID_INSTANCE,
        http_status_code=400,
    )

    # When the upload's event arrives
    with stub:
        [res] = trigger.handle_event({"Records": [record]})["results"]  # does not raise: no retry, no DLQ

    # Then the dataset is rejected naming the field, quarantined, and announced
    stub.assert_no_pending_responses()
    job = job_name("demo", hashlib.sha256(body).hexdigest(), spec_sha256(parse_spec(SPEC)), stack="registry")
    assert res["status"] == "rejected" and res["code"] == "backend_rejected"
    assert res["field"] == "training.instance_type" and res["job"] == job
    assert "resourceConfig.instanceType" in res["reason"]
    version = record["s3"]["object"]["versionId"]
    reason = stack.json("data", f"quarantine/demo/train.csv/{version}/reason.json")
    assert reason["field"] == "training.instance_type" and reason["job"] == job
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["field"] == "training.instance_type"
    assert detail["code"] == "backend_rejected" and "ml.g5.2xlarge" in detail["reason"]
    # and the job record says so: nothing started, the claim released
    assert stack.keys("registry", "jobs/") == [f"jobs/{job}.json"]
    doc = stack.json("registry", f"jobs/{job}.json")
    assert doc["status"] == "rejected" and doc["rejection"]["field"] == "training.instance_type"

    # When the cause is fixed (here: SageMaker accepts the request) and the same data is uploaded again
    again = stack.put("datasets/demo/again.csv", body)
    stub.add_response(
        "create_training_job",
        {"TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"},
    )
    with stub:
        [res2] = trigger.handle_event({"Records": [again]})["results"]
        [res3] = trigger.handle_event({"Records": [stack.put("datasets/demo/third.csv", body)]})["results"]

    # Then the same job starts once, its record is a fresh claim, and one job per dataset and spec holds
    stub.assert_no_pending_responses()
    assert res2["status"] == "started" and res2["job"] == job and res3["status"] == "duplicate"
    doc = stack.json("registry", f"jobs/{job}.json")
    assert "status" not in doc and doc["dataset"]["key"] == "datasets/demo/again.csv"
    assert stack.keys("registry", "jobs/") == [f"jobs/{job}.json", f"jobs/{job}.started.json"]
    assert [k for k, _ in stack.events()] == ["DatasetRejected", "TrainingJobStarted"]


# ---------------------------------------------------------------------------- the platform's split (issue 14)
def csv_rows(body: bytes) -> list[list[str]]:
    import csv
    import io

    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_the_job_trains_only_on_the_platforms_training_rows(stack: Stack) -> None:
    # Given a spec and a dataset of 200 rows
    stack.put_spec(SPEC)
    body = good_csv(200)
    record = stack.put("datasets/demo/train.csv", body)

    # When it is accepted
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "started"
    job = res["job"]

    # Then the job's channel is the training rows, and only they: read back from the staged object
    doc = stack.json("registry", f"jobs/{job}.json")
    split = doc["split"]
    assert split["share"] == 0.2 and split["key_column"] is None and split["method"] == "sha256-row-v1"
    desc = stack.sm.describe_training_job(TrainingJobName=job)
    channel = desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel == f"s3://registry/{split['train']['key']}"
    staged = stack.s3.get_object(Bucket="registry", Key=split["train"]["key"])["Body"].read()
    assert (
        hashlib.sha256(staged).hexdigest()
        == split["train"]["sha256"]
        == desc["HyperParameters"]["dataset_sha256"]
    )
    held = stack.s3.get_object(Bucket="registry", Key=split["evaluation"]["key"])["Body"].read()
    assert hashlib.sha256(held).hexdigest() == split["evaluation"]["sha256"]
    assert split["evaluation"]["key"] == f"evaluation/demo/heldout/{split['evaluation']['sha256']}.csv"
    train_rows, held_rows, all_rows = csv_rows(staged), csv_rows(held), csv_rows(body)
    assert train_rows[0] == ["a", "b", "y"] and held_rows[0] == ["a", "b", "y"]
    assert len(train_rows) - 1 == split["train"]["rows"] and len(held_rows) - 1 == split["evaluation"]["rows"]
    # every row on exactly one side; none held out is in the job's input
    assert sorted(train_rows[1:] + held_rows[1:]) == sorted(all_rows[1:])
    assert not {tuple(r) for r in train_rows[1:]} & {tuple(r) for r in held_rows[1:]}
    assert 15 < split["evaluation"]["rows"] < 70
    # the record keeps the upload's lineage; the event says how the rows went
    assert doc["dataset"]["sha256"] == hashlib.sha256(body).hexdigest()
    [(kind, detail)] = stack.events()
    assert kind == "TrainingJobStarted"
    assert detail["split"] == {
        "train_rows": split["train"]["rows"],
        "evaluation_rows": split["evaluation"]["rows"],
    }


def test_a_row_production_trained_on_is_never_a_later_candidates_evaluation_row(stack: Stack) -> None:
    # Given two overlapping datasets (rows 0..299 and 150..449), the second with another spelling
    stack.put_spec(SPEC)
    first = good_csv(300)
    second = b"a,b,y\n" + b"".join(
        f"{i}.0,{(i * 7) % 11},{2 * i + (i * 7) % 11}\n".encode() for i in range(150, 450)
    )
    trigger = stack.trigger()
    r1 = trigger.handle_event({"Records": [stack.put("datasets/demo/one.csv", first)]})["results"][0]
    r2 = trigger.handle_event({"Records": [stack.put("datasets/demo/two.csv", second)]})["results"][0]
    s1 = stack.json("registry", f"jobs/{r1['job']}.json")["split"]
    s2 = stack.json("registry", f"jobs/{r2['job']}.json")["split"]

    def ids(key: str) -> set[int]:
        body = stack.s3.get_object(Bucket="registry", Key=key)["Body"].read()
        return {int(float(r[0])) for r in csv_rows(body)[1:]}

    trained_first, held_second = ids(s1["train"]["key"]), ids(s2["evaluation"]["key"])
    # Then no row the first job trained on is among the second's evaluation rows (the overlap splits alike)
    assert not trained_first & held_second
    assert ids(s1["evaluation"]["key"]) & set(range(150, 300)) == held_second & set(range(150, 300))
    assert held_second & set(range(150, 300))  # the overlap does have evaluation rows


def test_a_split_key_groups_rows_and_must_be_a_column(stack: Stack) -> None:
    spec = {**SPEC, "features": ["a", "b"], "training": {**SPEC["training"], "split_key": "customer"}}
    stack.put_spec(spec)
    body = b"customer,a,b,y\n" + b"".join(
        f"c{i % 20},{i},{i % 3},{i * 2 + i % 3}\n".encode() for i in range(200)
    )
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/c.csv", body)]})["results"]
    assert res["status"] == "started"
    split = stack.json("registry", f"jobs/{res['job']}.json")["split"]
    assert split["key_column"] == "customer"
    staged = stack.s3.get_object(Bucket="registry", Key=split["train"]["key"])["Body"].read()
    trained_customers = {r[0] for r in csv_rows(staged)[1:]}
    held = stack.s3.get_object(Bucket="registry", Key=split["evaluation"]["key"])["Body"].read()
    held_a = {int(r[0]) for r in csv_rows(held)[1:]}
    assert csv_rows(held)[0] == ["a", "b", "y"]  # the split key is not a feature: not kept
    assert not {f"c{a % 20}" for a in held_a} & trained_customers  # a customer is on one side only

    # a dataset without the column is rejected, naming it
    stack.events()
    bad = good_csv(50)
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/nokey.csv", bad)]})["results"]
    assert res["status"] == "rejected" and res["code"] == "missing_split_key" and "customer" in res["reason"]


@pytest.mark.parametrize(
    ("spec", "body", "code"),
    [
        (SPEC, b"a,b,y\n" + b"".join(f"{i},{i % 3},4.5\n".encode() for i in range(50)), "constant_target"),
        (
            {"task": "binary", "target": "y", "training": {"instance_type": "ml.g5.2xlarge"}},
            b"a,y\n" + b"".join(f"{i},1\n".encode() for i in range(50)),
            "single_class",
        ),
        (
            {"task": "multiclass", "target": "y", "training": {"instance_type": "ml.g5.2xlarge"}},
            b"a,y\n" + b"".join(f"{i},cat\n".encode() for i in range(50)),
            "single_class",
        ),
    ],
)
def test_a_dataset_that_cannot_teach_anything_is_rejected(
    stack: Stack, spec: dict[str, Any], body: bytes, code: str
) -> None:
    stack.put_spec(spec)
    record = stack.put("datasets/demo/flat.csv", body)
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == code
    version = record["s3"]["object"]["versionId"]
    assert stack.keys("data", "quarantine/") == [
        f"quarantine/demo/flat.csv/{version}/flat.csv",
        f"quarantine/demo/flat.csv/{version}/reason.json",
    ]
    assert stack.jobs() == [] and stack.keys("registry") == []
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["code"] == code


def test_a_20_row_dataset_is_accepted_with_its_few_evaluation_rows_recorded(stack: Stack) -> None:
    # the gate, not validation, refuses an automatic promotion on too few evaluation rows
    stack.put_spec(SPEC)
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/small.csv", good_csv(20))]})[
        "results"
    ]
    assert res["status"] == "started"
    split = stack.json("registry", f"jobs/{res['job']}.json")["split"]
    assert split["train"]["rows"] + split["evaluation"]["rows"] == 20
    assert split["evaluation"]["rows"] < 30 and split["train"]["rows"] >= 10


# ---------------------------------------------------------------------------- the pinned evaluation set
def put_production(stack: Stack, features: list[str], classes: list[Any] | None, task: str) -> None:
    """A production version in the registry as convert and the gate leave it (manifest and alias)."""
    manifest = {
        "model": "demo",
        "version": 1,
        "artifacts": {},
        "schema": {
            "features": [{"name": f, "dtype": "float32"} for f in features],
            "classes": classes,
            "task": task,
            "target": "y",
        },
    }
    stack.s3.put_object(
        Bucket="registry", Key="models/demo/versions/1/manifest.json", Body=json.dumps(manifest)
    )
    stack.s3.put_object(
        Bucket="registry", Key="models/demo/aliases/production.json", Body=json.dumps({"version": 1})
    )


BINARY = {"task": "binary", "target": "y", "training": {"instance_type": "ml.g5.2xlarge"}}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"a,y\n1,0\n2,1\n", "missing_features"),  # production's column b is missing
        (b"a,b,c,y\n1,2,3,0\n", "extra_columns"),
        (b"a,b,y\n1,2,0\n3,4,7\n", "unknown_labels"),  # 7 is not one of production's classes
        (b"", "empty_file"),
        (b"a,b,y\n", "no_rows"),
    ],
)
def test_a_bad_evaluation_set_is_rejected_and_nothing_is_pinned(stack: Stack, body: bytes, code: str) -> None:
    stack.put_spec(BINARY)
    put_production(stack, ["a", "b"], [0, 1], "binary")
    record = stack.put("datasets/demo/eval/holdout.csv", body)
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == code
    version = record["s3"]["object"]["versionId"]
    assert f"quarantine/demo/eval/holdout.csv/{version}/reason.json" in stack.keys("data", "quarantine/")
    assert stack.keys("registry", "evaluation/") == [] and stack.jobs() == []
    assert [k for k, _ in stack.events()] == ["DatasetRejected"]


def test_a_valid_evaluation_set_is_pinned_and_starts_no_job(stack: Stack) -> None:
    stack.put_spec(BINARY)
    put_production(stack, ["a", "b"], [0, 1], "binary")
    body = b"b,y,a\n" + b"".join(f"{i % 4},{i % 2},{i}\n".encode() for i in range(40))
    record = stack.put("datasets/demo/eval/holdout.csv", body)

    [res] = stack.trigger().handle_event({"Records": [record]})["results"]

    assert res["status"] == "pinned" and res["rows"] == 40
    pointer = stack.json("registry", "evaluation/demo/pinned.json")
    stored = stack.s3.get_object(Bucket="registry", Key=pointer["key"])["Body"].read()
    assert pointer["sha256"] == hashlib.sha256(stored).hexdigest() == res["sha256"]
    assert pointer["key"] == f"evaluation/demo/pinned/{pointer['sha256']}.csv"
    assert pointer["rows"] == 40 and pointer["columns"] == ["a", "b", "y"]
    assert pointer["source"]["key"] == "datasets/demo/eval/holdout.csv"
    assert pointer["source"]["version_id"] == record["s3"]["object"]["versionId"]
    rows = csv_rows(stored)
    assert rows[0] == ["a", "b", "y"] and rows[1] == ["0", "0", "0"] and rows[6] == ["5", "1", "1"]
    # no training: no job, no job record, no training rows, no event
    assert (
        stack.jobs() == []
        and stack.keys("registry", "jobs/") == []
        and stack.keys("registry", "inputs/") == []
    )
    assert stack.events() == []


def test_an_evaluation_set_takes_productions_columns_when_the_spec_lists_none(stack: Stack) -> None:
    stack.put_spec({"task": "regression", "target": "y", "training": {"instance_type": "ml.g5.2xlarge"}})
    put_production(stack, ["a", "b"], None, "regression")
    [bad] = stack.trigger().handle_event(
        {"Records": [stack.put("datasets/demo/eval/e.csv", b"a,b,c,y\n1,2,3,4\n")]}
    )["results"]
    assert bad["status"] == "rejected" and bad["code"] == "extra_columns" and "c" in bad["reason"]
    [ok] = stack.trigger().handle_event(
        {"Records": [stack.put("datasets/demo/eval/f.csv", b"b,y,a\n1,2,3\n")]}
    )["results"]
    assert ok["status"] == "pinned"
    assert stack.json("registry", "evaluation/demo/pinned.json")["columns"] == ["a", "b", "y"]


def test_an_evaluation_set_before_any_production_uses_the_spec(stack: Stack) -> None:
    stack.put_spec({**BINARY, "features": ["a"]})
    [res] = stack.trigger().handle_event(
        {"Records": [stack.put("datasets/demo/eval/e.csv", b"a,y\n1,no\n2,yes\n")]}
    )["results"]
    assert res["status"] == "pinned"
    [bad] = stack.trigger().handle_event(
        {"Records": [stack.put("datasets/demo/eval/f.csv", b"a,z,y\n1,2,no\n")]}
    )["results"]
    assert bad["status"] == "rejected" and bad["code"] == "extra_columns"


# ---------------------------------------------------------------------------- issue 16: formats
def staged_rows(stack: Stack, job: str) -> list[list[str]]:
    split = stack.json("registry", f"jobs/{job}.json")["split"]
    return csv_rows(stack.s3.get_object(Bucket="registry", Key=split["train"]["key"])["Body"].read())


def test_a_gzip_dataset_trains_on_plain_csv_rows(stack: Stack) -> None:
    import gzip

    stack.put_spec(SPEC)
    packed = gzip.compress(good_csv(40))
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv.gz", packed)]})[
        "results"
    ]
    assert res["status"] == "started", res
    doc = stack.json("registry", f"jobs/{res['job']}.json")
    assert doc["dataset"]["sha256"] == hashlib.sha256(packed).hexdigest()  # the stored bytes
    assert doc["validation"]["format"] == "csv.gz"
    rows = staged_rows(stack, res["job"])
    assert rows[0] == ["a", "b", "y"] and len(rows) - 1 == doc["split"]["train"]["rows"]


def test_a_truncated_gzip_dataset_is_quarantined(stack: Stack) -> None:
    import gzip

    stack.put_spec(SPEC)
    packed = gzip.compress(good_csv(400))
    record = stack.put("datasets/demo/d.csv.gz", packed[: len(packed) // 2])
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "bad_gzip"
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["code"] == "bad_gzip"


def test_a_parquet_dataset_trains_on_plain_csv_rows(stack: Stack, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    stack.put_spec(SPEC)
    n = 40
    table = pa.table(
        {
            "a": pa.array([None if i == 7 else i for i in range(n)], pa.int64()),
            "b": pa.array([float((i * 7) % 11) for i in range(n)]),
            "y": pa.array([float(2 * i + (i * 7) % 11) for i in range(n)]),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=8)
    body = (tmp_path / "d.parquet").read_bytes()
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.parquet", body)]})["results"]
    assert res["status"] == "started", res
    doc = stack.json("registry", f"jobs/{res['job']}.json")
    assert doc["dataset"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["validation"]["missing"]["a"] == 1
    assert staged_rows(stack, res["job"])[0] == ["a", "b", "y"]


def test_a_european_csv_trains_on_plain_csv_rows(stack: Stack) -> None:
    stack.put_spec({**SPEC, "csv": {"delimiter": ";", "decimal": ",", "encoding": "latin-1"}})
    text = "größe;b;y\n" + "".join(f"{i},5;{(i * 7) % 11};{2 * i},25\n" for i in range(40))
    [res] = stack.trigger().handle_event(
        {"Records": [stack.put("datasets/demo/eu.csv", text.encode("latin-1"))]}
    )["results"]
    assert res["status"] == "started", res
    rows = staged_rows(stack, res["job"])
    assert rows[0] == ["größe", "b", "y"] and all("," not in c for r in rows[1:] for c in r)
    assert any(r[0].endswith(".5") for r in rows[1:])


# ---------------------------------------------------------------------------- issue 16: continuity
PROD_FEATURES = [
    {"name": "a", "type": "numeric", "dtype": "float32"},
    {"name": "plan", "type": "categorical", "dtype": "string", "vocabulary": ["basic", "pro"]},
]


def put_typed_production(
    stack: Stack, features: list[Any], classes: list[Any] | None = None, spec: Any = None
) -> None:
    manifest = {
        "model": "demo",
        "version": 3,
        "artifacts": {},
        "schema": {"features": features, "classes": classes, "task": "regression", "target": "y"},
        "spec": spec if spec is not None else SPEC,
    }
    stack.s3.put_object(
        Bucket="registry", Key="models/demo/versions/3/manifest.json", Body=json.dumps(manifest)
    )
    stack.s3.put_object(
        Bucket="registry", Key="models/demo/aliases/production.json", Body=json.dumps({"version": 3})
    )


def plan_csv(header: str = "a,plan,y", n: int = 60, cell: Any = None) -> bytes:
    cell = cell or (
        lambda i, name: {"a": str(i), "plan": ("basic", "pro")[i % 2], "y": str(2 * i + i % 2)}[name]
    )
    names = header.split(",")
    return (header + "\n" + "".join(",".join(cell(i, c) for c in names) + "\n" for i in range(n))).encode()


def test_a_renamed_column_is_schema_changed_quarantined_and_alerted(stack: Stack) -> None:
    stack.put_spec(SPEC)
    put_typed_production(stack, PROD_FEATURES)
    body = plan_csv("a,tier,y", cell=lambda i, c: {"a": str(i), "tier": "pro", "y": str(i)}[c])
    record = stack.put("datasets/demo/renamed.csv", body)
    [res] = stack.trigger().handle_event({"Records": [record]})["results"]
    assert res["status"] == "rejected" and res["code"] == "schema_changed"
    assert "column 'plan' of production v3 is missing and 'tier' is new" in res["reason"]
    version = record["s3"]["object"]["versionId"]
    assert f"quarantine/demo/renamed.csv/{version}/reason.json" in stack.keys("data", "quarantine/")
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["code"] == "schema_changed"
    assert stack.jobs() == [] and stack.keys("registry", "inputs/") == []


def test_a_column_numeric_in_production_and_text_now_is_schema_changed(stack: Stack) -> None:
    stack.put_spec(SPEC)
    put_typed_production(stack, PROD_FEATURES)
    body = plan_csv(cell=lambda i, c: {"a": f"x{i % 3}", "plan": "pro", "y": str(i)}[c])
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body)]})["results"]
    assert res["code"] == "schema_changed"
    assert "column 'a' is numeric in production v3, text here" in res["reason"]


def test_a_tensor_production_does_not_hold_a_new_dataset_to_columns(stack: Stack) -> None:
    """A script's tensor model (schema ``inputs``/``outputs``) has no feature columns to keep: a new
    dataset for it trains (its script decides the input; the gate compares only the same signature),
    and a class of production's missing here is a warning (no column continuity binds it)."""
    spec = {**SPEC, "task": "multiclass", "training": {**SPEC.get("training", {}), "entry_point": "train.py"}}
    stack.put_spec(spec)
    stack.put("datasets/demo/code/train.py", b"print('train')\n")
    manifest = {
        "model": "demo",
        "version": 3,
        "artifacts": {},
        "task": "multiclass",
        "schema": {
            "task": "multiclass",
            "classes": [0, 1],
            "inputs": [{"name": "image", "shape": [2, 1], "dtype": "float32"}],
            "outputs": [{"name": "output_0", "shape": [2], "dtype": "float32"}],
        },
        "spec": spec,
    }
    stack.s3.put_object(
        Bucket="registry", Key="models/demo/versions/3/manifest.json", Body=json.dumps(manifest)
    )
    stack.s3.put_object(
        Bucket="registry", Key="models/demo/aliases/production.json", Body=json.dumps({"version": 3})
    )
    body = "a,b,y\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(60))
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body.encode())]})[
        "results"
    ]
    assert res["status"] == "started", res
    assert stack.keys("registry", "inputs/") and not [
        k for k in stack.keys("registry", "inputs/") if k.endswith("input_schema.json")
    ]
    no_ones = "a,b,y\n" + "".join(f"{i},{i % 5},{2 * (i % 2)}\n" for i in range(60))
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/e.csv", no_ones.encode())]})[
        "results"
    ]
    assert res["status"] == "started", res  # production's class 1 has no row: said, not refused
    started = [d for kind, d in stack.events() if kind == "TrainingJobStarted"]
    assert "class 1 of production v3 has no rows in this dataset" in started[-1]["warnings"]


def test_reordered_columns_train_on_productions_schema(stack: Stack) -> None:
    stack.put_spec(SPEC)
    put_typed_production(stack, PROD_FEATURES)
    [res] = stack.trigger().handle_event(
        {"Records": [stack.put("datasets/demo/d.csv", plan_csv("y,plan,a"))]}
    )["results"]
    assert res["status"] == "started", res
    job = res["job"]
    # production's schema beside the train rows, and the channel carries both
    kept = stack.json("registry", f"inputs/demo/{job}/input_schema.json")
    assert kept == {"features": PROD_FEATURES}
    assert stack.keys("registry", f"inputs/demo/{job}/") == [
        f"inputs/demo/{job}/input_schema.json",
        f"inputs/demo/{job}/train.csv",
    ]
    desc = stack.sm.describe_training_job(TrainingJobName=job)
    assert (
        desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://registry/inputs/demo/{job}/"
    )
    assert desc["HyperParameters"]["dataset_uri"] == f"s3://registry/inputs/demo/{job}/train.csv"
    assert desc["HyperParameters"]["input_schema_uri"] == f"s3://registry/inputs/demo/{job}/input_schema.json"
    # the evaluation rows are in production's order
    split = stack.json("registry", f"jobs/{job}.json")["split"]
    assert split["evaluation"]["columns"] == ["a", "plan", "y"]
    [(kind, detail)] = stack.events()
    assert kind == "TrainingJobStarted" and detail["input_schema"] == "production v3"
    assert detail["warnings"] == []


def test_a_spec_that_resets_the_schema_trains_a_new_one(stack: Stack) -> None:
    stack.put_spec({**SPEC, "schema": "reset"})
    put_typed_production(stack, PROD_FEATURES)
    body = plan_csv("a,tier,y", cell=lambda i, c: {"a": str(i), "tier": ("x", "z")[i % 2], "y": str(i)}[c])
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body)]})["results"]
    assert res["status"] == "started", res
    assert stack.keys("registry", f"inputs/demo/{res['job']}/") == [f"inputs/demo/{res['job']}/train.csv"]
    desc = stack.sm.describe_training_job(TrainingJobName=res["job"])
    assert desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith("/train.csv")
    assert "input_schema_uri" not in desc["HyperParameters"]


def test_a_spec_listing_new_features_trains_a_new_schema(stack: Stack) -> None:
    stack.put_spec({**SPEC, "features": ["a", "tier"]})
    put_typed_production(stack, PROD_FEATURES, spec={**SPEC, "features": ["a", "plan"]})
    body = plan_csv("a,tier,y", cell=lambda i, c: {"a": str(i), "tier": ("x", "z")[i % 2], "y": str(i)}[c])
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body)]})["results"]
    assert res["status"] == "started", res


# ---------------------------------------------------------------------------- issue 16: labels
MULTI = {"task": "multiclass", "target": "y", "training": {"instance_type": "ml.g5.2xlarge"}}


def test_59_rows_of_one_class_and_1_of_another_is_class_coverage(stack: Stack) -> None:
    stack.put_spec(MULTI)
    body = b"a,b,y\n" + b"".join(f"{i},{i * 3 % 7},{'b' if i == 0 else 'a'}\n".encode() for i in range(60))
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body)]})["results"]
    assert res["status"] == "rejected" and res["code"] == "class_coverage"
    assert "b: 1" in res["reason"] and "a: 59" in res["reason"]
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["warnings"] == ["class b has 1 rows (fewer than 10)"]


def test_a_class_with_few_rows_starts_the_job_with_a_warning(stack: Stack) -> None:
    stack.put_spec(MULTI)
    body = b"a,b,y\n" + b"".join(f"{i},{i * 3 % 7},{'b' if i < 4 else 'a'}\n".encode() for i in range(60))
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body)]})["results"]
    assert res["status"] == "started", res
    [(kind, detail)] = stack.events()
    assert kind == "TrainingJobStarted" and detail["warnings"] == ["class b has 4 rows (fewer than 10)"]
    assert stack.json("registry", f"jobs/{res['job']}.json")["validation"]["warnings"] == detail["warnings"]


def test_a_class_production_knows_that_is_missing_now_is_class_coverage(stack: Stack) -> None:
    stack.put_spec(MULTI)
    put_typed_production(stack, [{"name": "a"}, {"name": "b"}], classes=["a", "b", "c"], spec=MULTI)
    body = b"a,b,y\n" + b"".join(f"{i},{i * 3 % 7},{'ab'[i % 2]}\n".encode() for i in range(60))
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/d.csv", body)]})["results"]
    assert res["code"] == "class_coverage" and "c: 0" in res["reason"]
    [(_, detail)] = stack.events()
    assert "class c of production v3 has no rows in this dataset" in detail["warnings"]
