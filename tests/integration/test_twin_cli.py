"""The twin as a user drives it: the real AWS CLI, and ``modelops local up|env|tick`` in a subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from modelops_local.testing import ROOT, cli_env, find_aws_cli, start_twin
from modelops_local.twin import Twin
from tests.fixtures.twin.handlers import app as handlers

pytestmark = pytest.mark.twin
FAKE = ROOT / "tests/fixtures/twin/template.yaml"


@pytest.fixture(scope="module")
def fake() -> Iterator[Twin]:
    twin = start_twin(FAKE)
    yield twin
    twin.stop()


def aws(twin: Twin, *args: str) -> subprocess.CompletedProcess[str]:
    cli = find_aws_cli()
    if cli is None:
        pytest.fail("the AWS CLI is missing: run `make tools` or set MODELOPS_AWS_CLI")
    return subprocess.run(
        [cli, *args], env=cli_env(twin), capture_output=True, text=True, timeout=120, check=True
    )


def modelops(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelops_cli.main", "local", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- the AWS CLI against the twin


def test_aws_cli_s3_cp_reaches_the_s3_triggered_function(fake: Twin, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    aws(fake, "s3", "cp", str(data), f"s3://{fake.outputs['DataBucketName']}/datasets/{tag}/data.csv")
    fake.wait_idle(30)
    got = [r for r in list(handlers.RECEIVED) if tag in json.dumps(r["event"])]
    assert len(got) == 1
    assert got[0]["event"]["Records"][0]["s3"]["object"]["key"] == f"datasets/{tag}/data.csv"


def test_aws_cli_sns_publish_reaches_a_subscribed_queue(fake: Twin) -> None:
    tag = uuid.uuid4().hex
    out = aws(fake, "sns", "publish", "--topic-arn", fake.outputs["TopicArn"], "--message", f"hello {tag}")
    assert json.loads(out.stdout)["MessageId"]
    # AWS CLI v1 ignores AWS_ENDPOINT_URL for `aws sqs` (its queue-url customization): name the endpoint.
    received = aws(
        fake,
        "sqs",
        "receive-message",
        "--queue-url",
        fake.outputs["TopicQueueUrl"],
        "--max-number-of-messages",
        "10",
        "--endpoint-url",
        fake.endpoint,
    )
    bodies = [m["Body"] for m in json.loads(received.stdout or "{}").get("Messages", [])]
    assert f"hello {tag}" in bodies
    fake.wait_idle(30)
    assert [
        r for r in list(handlers.RECEIVED) if tag in json.dumps(r["event"])
    ]  # and the subscribed function


# ---------------------------------------------------------------- modelops local up / env / tick


class Running:
    """``modelops local up`` in a child process, read line by line."""

    def __init__(self, *args: str, stderr: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._err = stderr.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelops_cli.main", "local", "up", *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, prefix: str, timeout: float = 60) -> list[str]:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if line.startswith(prefix):
                return seen
        raise AssertionError(f"no line starting with {prefix!r}; saw {seen}; rc={self.proc.poll()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._err.close()


def test_local_up_env_tick_and_a_clean_stop(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "local.json"
    # moto in this process (ThreadedMotoServer's parts) here; the pytest fixture covers the child process.
    run = Running(
        "--template",
        str(FAKE),
        "--port",
        "0",
        "--api-port",
        "0",
        "--state-file",
        str(state_file),
        "--alarm-interval",
        "0",
        "--moto-in-process",
        stderr=tmp_path / "up.err",
    )
    try:
        lines = run.until("State in")
        started = float(lines[0].split(" up in ")[1].split()[0])
        assert started < 10
        state = json.loads(state_file.read_text())
        assert state["pid"] == run.proc.pid
        assert state["api_url"] == state["outputs"]["ApiUrl"] and state["control_url"].endswith("/_twin")
        assert f"  AWS endpoint  {state['endpoint']}" in lines
        # env
        env = modelops("env", "--state-file", str(state_file))
        assert env.returncode == 0, env.stderr
        exported = dict(line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines())
        assert exported["AWS_ENDPOINT_URL"] == state["endpoint"]
        assert exported["MODELOPS_DATA_BUCKET_NAME"] == state["outputs"]["DataBucketName"]
        assert exported["MODELOPS_API_URL"] == state["outputs"]["ApiUrl"]
        # the session token: in a state file only its owner reads, exported for the CLI, boto3 and the AWS CLI
        assert state_file.stat().st_mode & 0o777 == 0o600
        assert exported["MODELOPS_LOCAL_TOKEN"] == exported["AWS_ACCESS_KEY_ID"] == state["token"]
        # tick
        tick = modelops("tick", "RecordFunction", "--state-file", str(state_file))
        assert tick.returncode == 0, tick.stderr
        assert tick.stdout.startswith("RecordFunction ") and " ok " in tick.stdout
        no_schedule = modelops("tick", "FlakyFunction", "--state-file", str(state_file))
        assert no_schedule.returncode != 0 and "has no schedule" in no_schedule.stderr
        # the API
        assert requests.get(f"{state['api_url']}/items", timeout=10).status_code == 200
    finally:
        rc = run.stop()
    assert rc == 0
    assert not state_file.exists()  # a stopped twin leaves no state behind
    assert "twin stopped" in (tmp_path / "up.err").read_text()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("which", ["--port", "--api-port"])
def test_local_up_on_a_port_in_use_is_one_clear_line(tmp_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        other = "--api-port" if which == "--port" else "--port"
        result = modelops(
            "up", "--template", str(FAKE), which, port, other, "0", "--state-file", str(tmp_path / "s.json")
        )
    line = one_line_error(result)
    assert f"port {port}" in line and "in use" in line
    assert not (tmp_path / "s.json").exists()


def test_local_up_with_a_missing_or_invalid_template_is_one_clear_line(tmp_path: Path) -> None:
    line = one_line_error(
        modelops("up", "--template", str(tmp_path / "nope.yaml"), "--port", "0", "--api-port", "0")
    )
    assert "template not found" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("Resources:\n  A: {Type: AWS::SNS::Topic, Properties: {DisplayName: !Ref Missing}}\n")
    line = one_line_error(modelops("up", "--template", str(bad), "--port", "0", "--api-port", "0"))
    assert "Ref to unknown name Missing" in line


def test_local_env_and_tick_without_a_twin(tmp_path: Path) -> None:
    line = one_line_error(modelops("env", "--state-file", str(tmp_path / "none.json")))
    assert "no twin here" in line
    stale = tmp_path / "stale.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale.write_text(json.dumps({"endpoint": "http://127.0.0.1:1", "region": "us-east-1", "pid": dead.pid}))
    assert "is not running" in one_line_error(modelops("tick", "--state-file", str(stale)))
    assert os.path.exists(stale)
