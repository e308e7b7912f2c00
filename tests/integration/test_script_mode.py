"""Script mode on moto (issue 15, item 1): train_trigger packages ``datasets/{model}/code/``, the code joins
the job's identity and lineage, bad code folders are rejected; and a script runs through the local
backend's training service (the twin's runner) with the training image's entrypoint."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from modelops_local.training_service import TrainingService
from tests.integration import test_train_trigger as _train_trigger
from tests.integration.test_train_trigger import SPEC, Stack, good_csv

stack = _train_trigger.stack  # the moto stack fixture train_trigger's tests use

ROOT = Path(__file__).parents[2]
SCRIPT_SPEC = {**SPEC, "training": {**SPEC["training"], "entry_point": "train.py"}}
TRAIN = b"import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'model.keras'), 'w').write('m')\n"


def put_code(stack: Stack, files: dict[str, bytes], model: str = "demo") -> None:
    for name, body in files.items():
        stack.s3.put_object(Bucket="data", Key=f"datasets/{model}/code/{name}", Body=body)


# ---------------------------------------------------------------------------- train_trigger
def test_a_script_mode_dataset_packages_the_code_and_starts_one_job(stack: Stack) -> None:
    # Given a spec naming an entry point and its code folder (a sub-folder and a folder marker included)
    stack.put_spec(SCRIPT_SPEC)
    put_code(stack, {"train.py": TRAIN, "lib/util.py": b"X = 1\n", "requirements.txt": b"\n"})
    stack.s3.put_object(Bucket="data", Key="datasets/demo/code/empty/", Body=b"")

    # When a dataset arrives
    [res] = stack.trigger().handle_event({"Records": [stack.put("datasets/demo/train.csv", good_csv())]})[
        "results"
    ]

    # Then the code is stored once, content-addressed, and the job names it
    assert res["status"] == "started"
    [archive_key] = stack.keys("registry", "code/demo/")
    body = stack.s3.get_object(Bucket="registry", Key=archive_key)["Body"].read()
    digest = re.fullmatch(r"code/demo/([0-9a-f]{64})\.tar\.gz", archive_key)
    assert digest is not None
    import hashlib

    assert hashlib.sha256(body).hexdigest() == digest.group(1)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["lib/util.py", "requirements.txt", "train.py"]
    record = stack.json("registry", f"jobs/{res['job']}.json")
    uri = f"s3://registry/{archive_key}"
    assert record["code"]["uri"] == uri and record["code"]["sha256"] == digest.group(1)
    assert record["code"]["entry_point"] == "train.py" and record["code"]["requirements"] is True
    assert [f["name"] for f in record["code"]["files"]] == ["lib/util.py", "requirements.txt", "train.py"]
    assert json.loads(record["hyperparameters"]["sagemaker_submit_directory"]) == uri
    job = stack.sm.describe_training_job(TrainingJobName=res["job"])
    assert json.loads(job["HyperParameters"]["sagemaker_program"]) == "train.py"
    assert job["HyperParameters"]["code_sha256"] == digest.group(1)
    [(kind, detail)] = stack.events()
    assert kind == "TrainingJobStarted"
    assert detail["code"] == {**record["code"], "files": 3}


def test_the_same_code_and_data_train_once_and_a_code_change_trains_again(stack: Stack) -> None:
    stack.put_spec(SCRIPT_SPEC)
    put_code(stack, {"train.py": TRAIN})
    trigger = stack.trigger(persistence=False)

    first = trigger.handle_event({"Records": [stack.put("datasets/demo/a.csv", good_csv())]})["results"][0]
    same = trigger.handle_event({"Records": [stack.put("datasets/demo/b.csv", good_csv())]})["results"][0]
    put_code(stack, {"train.py": TRAIN + b"# tuned\n"})
    changed = trigger.handle_event({"Records": [stack.put("datasets/demo/c.csv", good_csv())]})["results"][0]

    assert first["status"] == "started" and same["status"] == "duplicate" and same["job"] == first["job"]
    assert changed["status"] == "started" and changed["job"] != first["job"]
    assert stack.jobs() == sorted([first["job"], changed["job"]])
    assert len(stack.keys("registry", "code/demo/")) == 2


def test_uploads_under_code_are_never_datasets(stack: Stack) -> None:
    stack.put_spec(SCRIPT_SPEC)
    records = [
        stack.put("datasets/demo/code/data.csv", good_csv()),  # the script's own file, a .csv
        stack.put("datasets/demo/score/inputs.csv", good_csv()),
        stack.put("datasets/demo/eval/deeper/rows.csv", good_csv()),
    ]

    results = stack.trigger().handle_event({"Records": records})["results"]

    assert [r["status"] for r in results] == ["ignored"] * 3
    assert stack.jobs() == [] and stack.events() == []


@pytest.mark.parametrize(
    ("files", "settings", "message"),
    [
        ({}, {}, "the code folder is empty"),
        ({"main.py": TRAIN}, {}, "has no 'train.py'"),
        ({"train.py": TRAIN, "a/../../x.py": b""}, {}, "'..'"),
        ({"train.py": TRAIN, "a\\b.py": b""}, {}, "backslash"),
        ({"train.py": TRAIN, "/abs.py": b""}, {}, "absolute"),
        ({"train.py": TRAIN, "b.py": b"", "c.py": b""}, {"max_code_files": 2}, "more than 2 files"),
        ({"train.py": TRAIN, "big.bin": b"x" * 200}, {"max_code_bytes": 100}, "at most 100"),
    ],
)
def test_a_bad_code_folder_rejects_the_dataset(
    stack: Stack, files: dict[str, bytes], settings: dict[str, Any], message: str
) -> None:
    # Given a spec naming train.py and a code folder that cannot be its script
    stack.put_spec(SCRIPT_SPEC)
    put_code(stack, files)
    record = stack.put("datasets/demo/train.csv", good_csv())

    [res] = stack.trigger(**settings).handle_event({"Records": [record]})["results"]

    # Then the dataset is rejected like any other: quarantined, DatasetRejected (the alert), no job
    assert res["status"] == "rejected" and res["code"] == "bad_code" and message in res["reason"]
    assert res["field"] == "training.entry_point"
    assert stack.keys("data", res["quarantine"])  # the copy and reason.json
    [(kind, detail)] = stack.events()
    assert kind == "DatasetRejected" and detail["code"] == "bad_code" and message in detail["reason"]
    assert stack.jobs() == [] and stack.keys("registry", "code/") == []


# ---------------------------------------------------------------------------- the local backend's runner
@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class Runner:
    """The twin's training service on a moto server, with the real training entrypoint."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        creds = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_keys(creds))
        for bucket in ("registry", "data"):
            self.s3.create_bucket(Bucket=bucket)
        self.done = threading.Event()
        self.events: list[dict[str, Any]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            creds,
            AWS_ENDPOINT_URL=endpoint,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "infra")])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.service = TrainingService(
            s3=self.s3,
            emit=self._emit,
            region="us-east-1",
            account_id="123456789012",
            child_env=env,
            workdir=workdir,
            python=sys.executable,
        )

    def _emit(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        self.events.append(detail)
        if detail["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            self.done.set()

    def train(self, code: dict[str, bytes], rows: bytes, spec: dict[str, Any]) -> dict[str, Any]:
        """Package ``code`` as train_trigger does, start a script-mode job, wait for its last state."""
        from modelops.compute import LocalBackend, package_code
        from modelops.domain.spec import parse_spec
        from modelops.stages.train_trigger import canonical_spec_json
        from tests.integration.test_backends import make_request

        parsed = parse_spec(spec)
        archive = package_code(code, parsed.training.entry_point or "")
        key = f"code/demo/{archive.sha256}.tar.gz"
        self.s3.put_object(Bucket="registry", Key=key, Body=archive.body)
        req = make_request(backend="local")
        self.s3.put_object(Bucket="registry", Key=req.train_key, Body=rows)
        import dataclasses
        import hashlib

        req = dataclasses.replace(
            req,
            spec=parsed,
            spec_json=canonical_spec_json(parsed),
            train_sha256=hashlib.sha256(rows).hexdigest(),
            code_uri=f"s3://registry/{key}",
            code_sha256=archive.sha256,
        )
        self.service.create(LocalBackend("http://unused", token="t").request(req))
        assert self.done.wait(timeout=300), "the job did not finish"
        return self.events[-1]

    def model_files(self, detail: dict[str, Any]) -> set[str]:
        uri = detail["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, key = uri[len("s3://") :].split("/", 1)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            return {m.name for m in tar.getmembers() if m.isfile()}


def _keys(creds: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": creds["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture
def runner(moto_server: str, tmp_path: Path) -> Iterator[Runner]:
    r = Runner(moto_server, tmp_path / "jobs")
    try:
        yield r
    finally:
        r.service.stop()


ROWS = b"a,b,y\n" + b"".join(f"{i},{(i * 7) % 11},{2 * i + (i * 7) % 11}\n".encode() for i in range(40))


def test_a_failing_script_reaches_the_jobs_failure_reason(runner: Runner) -> None:
    script = b"print('reading rows')\nraise RuntimeError('no GPU memory left for this batch size')\n"

    detail = runner.train({"train.py": script}, ROWS, SCRIPT_SPEC)

    # the state-change event convert turns into TrainingJobFailed (and the alert) carries the reason
    assert detail["TrainingJobStatus"] == "Failed"
    reason = detail["FailureReason"]
    assert reason.startswith("script_failed: train.py exited with status 1: RuntimeError: no GPU memory left")
    assert "reading rows" in reason and len(reason) <= 1024


def test_a_script_that_saves_nothing_fails_the_job(runner: Runner) -> None:
    detail = runner.train({"train.py": b"print('done')\n"}, ROWS, SCRIPT_SPEC)
    assert detail["TrainingJobStatus"] == "Failed"
    assert detail["FailureReason"].startswith("script_no_model: the script wrote no model")


def docs_train_py() -> bytes:
    """The minimal ``train.py`` of docs/training.md "Bring your own script", as the page shows it."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text[text.index("## Bring your own script") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).encode()


@pytest.mark.slow
def test_the_documented_train_py_trains_through_the_local_backend(runner: Runner) -> None:
    # Given the docs' train.py, uploaded as a model's code, and a small regression table
    spec = {**SCRIPT_SPEC, "training": {**SCRIPT_SPEC["training"], "epochs": 3}}

    # When the local backend runs it (the training image's entrypoint in a process, SageMaker's contract)
    detail = runner.train({"train.py": docs_train_py()}, ROWS, spec)

    # Then the job completes with a SavedModel in its model.tar.gz, and nothing else
    assert detail["TrainingJobStatus"] == "Completed", detail.get("FailureReason")
    files = runner.model_files(detail)
    assert "saved_model/saved_model.pb" in files
    assert all(f.startswith("saved_model/") for f in files)
