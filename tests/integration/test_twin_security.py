"""The twin on a developer's machine is not reachable from a web page (issue 17, finding 1 and the
twin's findings of item 6), over HTTP against a running twin: no CORS, loopback Host names only, no
request a browser marks as another origin's, the session token on the control endpoints and as moto's
access key, JSON only; a training job cannot change the interpreter's environment or import from its
channel; channels match their prefix on a path boundary; invocation records are a bounded ring."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from modelops.compute.local import LocalBackend
from modelops.domain.errors import BackendError
from modelops_local.guard import TOKEN_ENV, TOKEN_HEADER
from modelops_local.testing import ROOT, start_twin
from modelops_local.twin import Twin, exports

pytestmark = pytest.mark.twin
FAKE = ROOT / "tests/fixtures/twin/template.yaml"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def tw() -> Iterator[Twin]:
    twin = start_twin(FAKE, training_entrypoint="tests.integration.twin_probe_train")
    yield twin
    twin.stop()


def cors_headers(resp: requests.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


def host_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


# ---------------------------------------------------------------- moto's endpoint


def test_moto_answers_a_web_page_with_no_cors_and_nothing_else(tw: Twin) -> None:
    bucket = tw.outputs["DataBucketName"]
    read = requests.get(f"{tw.endpoint}/{bucket}?list-type=2", headers={"Origin": EVIL}, timeout=10)
    preflight = requests.options(
        f"{tw.endpoint}/{bucket}/datasets/x/data.csv",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    fetch = requests.get(f"{tw.endpoint}/{bucket}", headers={"Sec-Fetch-Site": "cross-site"}, timeout=10)
    for resp in (read, preflight, fetch):
        assert resp.status_code == 403, resp.text
        assert cors_headers(resp) == {}


def test_moto_takes_only_the_session_key_and_loopback_host_names(tw: Twin) -> None:
    assert tw.client("s3").list_buckets()["Buckets"]  # the twin's own clients sign with the token
    other = boto3.client(
        "s3",
        endpoint_url=tw.endpoint,
        region_name=tw.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(ClientError) as refused:
        other.list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
    unsigned = requests.get(f"{tw.endpoint}/", timeout=10)
    assert unsigned.status_code == 403
    port = tw.endpoint.rsplit(":", 1)[1]
    rebound = requests.get(f"{tw.endpoint}/", headers={"Host": f"evil.example:{port}"}, timeout=10)
    assert rebound.status_code == 403 and "Host" in rebound.text
    # `modelops local env` hands the same key to the AWS CLI and boto3
    exported = dict(exports(tw.state()))
    assert exported["AWS_ACCESS_KEY_ID"] == exported["MODELOPS_LOCAL_TOKEN"] == tw.token


# ---------------------------------------------------------------- the control endpoints


CONTROL = [
    ("GET", "/health"),
    ("GET", "/invocations"),
    ("GET", "/training-jobs"),
    ("POST", "/idle?timeout=5"),
    ("POST", "/alarms/evaluate"),
    ("POST", "/invoke/RecordFunction"),
    ("POST", "/training-jobs"),
]


@pytest.mark.parametrize(("method", "path"), CONTROL)
def test_a_control_endpoint_refuses_without_token_host_or_json(tw: Twin, method: str, path: str) -> None:
    url = f"{tw.control_url}{path}"
    json_type = {"Content-Type": "application/json"}
    mark = tw.mark()
    jobs = set(tw.training.jobs)
    asks: list[tuple[dict[str, str], int]] = [
        (json_type, 401),
        ({**json_type, TOKEN_HEADER: "not-the-token"}, 403),
        ({**tw.control_headers, "Host": f"evil.example:{tw.api_port}"}, 403),
        ({**tw.control_headers, "Origin": EVIL}, 403),
        ({**tw.control_headers, "Sec-Fetch-Site": "cross-site"}, 403),
    ]
    if method == "POST":
        asks += [
            ({TOKEN_HEADER: tw.token, "Content-Type": "text/plain"}, 415),
            ({TOKEN_HEADER: tw.token, "Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({TOKEN_HEADER: tw.token}, 415),
        ]
    for headers, status in asks:
        resp = requests.request(method, url, data=b"{}", headers=headers, timeout=30)
        assert resp.status_code == status, (headers, resp.text)
        assert cors_headers(resp) == {}
        assert "message" in resp.json()
    assert tw.invocations_of("RecordFunction", since=mark) == []
    assert set(tw.training.jobs) == jobs


def test_the_loopback_names_with_the_token_are_served(tw: Twin) -> None:
    port = tw.api_port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        resp = requests.get(
            f"{tw.control_url}/health", headers={**tw.control_headers, "Host": host}, timeout=10
        )
        assert resp.status_code == 200 and resp.json()["status"] == "ok", host
    same_origin = {**tw.control_headers, "Origin": f"http://127.0.0.1:{port}"}
    assert requests.get(f"{tw.control_url}/health", headers=same_origin, timeout=10).status_code == 200


def test_the_api_emulation_refuses_other_origins_and_host_names(tw: Twin) -> None:
    url = f"{tw.api_url}/items"
    assert requests.get(url, timeout=10).status_code == 200  # curl, the CLI: no token needed
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Host": f"evil.example:{tw.api_port}"},
    ):
        resp = requests.post(url, data="{}", headers={"Content-Type": "text/plain", **headers}, timeout=10)
        assert resp.status_code == 403, headers
        assert cors_headers(resp) == {}


# ---------------------------------------------------------------- training jobs


def job_request(tw: Twin, name: str, channels: dict[str, str], **extra: Any) -> dict[str, Any]:
    bucket = tw.outputs["DataBucketName"]
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/x",
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}"}
                },
            }
            for channel, prefix in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{tw.outputs['OutputBucketName']}/staging/sec/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        "HyperParameters": {"model": "sec"},
        **extra,
    }


def run_probe(tw: Twin, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(f"{tw.control_url}/training-jobs", json=body, headers=tw.control_headers, timeout=10)
    assert resp.status_code == 200, resp.text
    tw.wait_idle(120)
    name = body["TrainingJobName"]
    assert tw.training.describe(name)["TrainingJobStatus"] == "Completed"  # type: ignore[index]
    key = f"staging/sec/{name}/output/model.tar.gz"
    blob = tw.client("s3").get_object(Bucket=tw.outputs["OutputBucketName"], Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        member = tar.extractfile("probe.json")
        assert member is not None
        return dict(json.loads(member.read()))


SITECUSTOMIZE = b"import os\nos.environ['TWIN_PROBE_PWNED'] = 'yes'\n"


@pytest.mark.parametrize(
    "variable",
    [
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "MODELOPS_TRAINING_ENTRYPOINT",
    ],
)
def test_a_training_job_may_not_set_the_interpreters_environment(tw: Twin, variable: str) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"sec/{tag}/train/"
    tw.client("s3").put_object(
        Bucket=tw.outputs["DataBucketName"], Key=prefix + "sitecustomize.py", Body=SITECUSTOMIZE
    )
    name = f"sec-env-{tag}"
    body = job_request(tw, name, {"train": prefix}, Environment={variable: "input/data/train"})
    resp = requests.post(f"{tw.control_url}/training-jobs", json=body, headers=tw.control_headers, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["__type"] == "ValidationException" and variable in resp.json()["message"]
    assert name not in tw.training.jobs


def test_a_training_job_never_imports_from_its_channel(tw: Twin) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix = f"sec/{tag}/train/"
    s3 = tw.client("s3")
    s3.put_object(Bucket=tw.outputs["DataBucketName"], Key=prefix + "sitecustomize.py", Body=SITECUSTOMIZE)
    s3.put_object(Bucket=tw.outputs["DataBucketName"], Key=prefix + "data.csv", Body=b"x,y\n1,2\n")
    probe = run_probe(
        tw,
        job_request(tw, f"sec-cwd-{tag}", {"train": prefix}, Environment={"MODELOPS_MIXED_PRECISION": "0"}),
    )
    assert probe["data_files"] == ["train/data.csv", "train/sitecustomize.py"]
    assert probe["cwd_entries"] == []  # an empty working directory, not the job's folder
    data = probe["data_dir"]
    assert not any(p == data or p.startswith(data + "/") for p in probe["sys_path"])
    assert probe["cwd"] not in probe["sys_path"]
    assert probe["sitecustomize"] is None or not str(probe["sitecustomize"]).startswith(data)
    assert probe["pwned"] is None
    assert probe["environment"]["MODELOPS_MIXED_PRECISION"] == "0"  # what a backend may set still arrives
    assert "MODELOPS_LOCAL_TOKEN" not in probe["environment"]


def test_channels_match_their_prefix_on_a_path_boundary(tw: Twin) -> None:
    tag = uuid.uuid4().hex[:8]
    base = f"sec/{tag}"
    s3 = tw.client("s3")
    for key in (
        f"{base}/train/a.csv",
        f"{base}/train/sub/b.csv",
        f"{base}/train2/c.csv",  # shares the characters "train", not the folder
        f"{base}/train.csv.bak",
        f"{base}/train/../train2/evil.txt",  # below the prefix, but its path leaves the channel
        f"{base}/data.csv",
        f"{base}/data.csv.bak",
        f"{base}/data.csvx/sitecustomize.py",
    ):
        s3.put_object(Bucket=tw.outputs["DataBucketName"], Key=key, Body=b"x\n1\n")
    probe = run_probe(
        tw, job_request(tw, f"sec-prefix-{tag}", {"train": f"{base}/train", "exact": f"{base}/data.csv"})
    )
    assert probe["data_files"] == ["exact/data.csv", "train/a.csv", "train/sub/b.csv"]


def test_the_shipped_local_backend_sends_the_token_the_twin_gives_its_functions(
    tw: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_backends import make_request

    req = make_request(backend="local")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(BackendError, match="HTTP 401"):
        LocalBackend(tw.control_url).start(req)
    assert req.job not in tw.training.jobs
    assert tw._base_env()[TOKEN_ENV] == tw.token  # what every function's environment carries
    monkeypatch.setenv(TOKEN_ENV, tw.token)
    started = LocalBackend(tw.control_url).start(req)
    assert started.id == tw.training.arn(req.job) and not started.already_started
    tw.wait_idle(120)


# ---------------------------------------------------------------- the invocation records


def test_invocation_records_are_a_bounded_ring() -> None:
    assert Twin(FAKE).invocations.maxlen == 5_000  # the default: a long session's memory stays flat
    with start_twin(FAKE, invocation_history=3) as small:
        ids = []
        for i in range(5):
            resp = requests.post(
                f"{small.control_url}/invoke/RecordFunction",
                json={"n": i},
                headers=small.control_headers,
                timeout=30,
            )
            assert resp.status_code == 200 and resp.json()["Outcome"] == "ok"
            ids.append(resp.json()["RequestId"])
            if i == 1:
                mark = small.mark()
        kept = requests.get(f"{small.control_url}/invocations", headers=small.control_headers, timeout=10)
        assert [i["request_id"] for i in kept.json()["invocations"]] == ids[-3:]
        assert len(small.invocations) == 3
        assert [i.request_id for i in small.invocations_of("RecordFunction", since=mark)] == ids[2:]
