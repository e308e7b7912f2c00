"""``modelops --stack NAME``: every command against a stack described by a moto CloudFormation stack's
Outputs, and against the twin; the stack's bad inputs; the Outputs cache; exit codes (docs/cli.md)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from click.testing import CliRunner, Result

from modelops.storage.registry import Registry
from modelops_cli import stack as stack_module
from modelops_cli.context import Context
from modelops_cli.main import cli
from modelops_cli.status import is_stack_alarm
from tests.integration.test_monitor import DATA, capture_lines, publish_model, put_captures, training_data

STACK = "mstack"
ROOT = Path(__file__).resolve().parents[2]


def stack_template(outputs: dict[str, str]) -> str:
    """A tiny template moto can create: one topic, and Outputs with the values given."""
    body = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    return json.dumps(body)


class Api:
    """A stand-in for the predict API (moto has none): records each request, answers like predict."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append(
                    {"path": self.path, "body": json.loads(body), "signed": "Authorization" in self.headers}
                )
                out = json.dumps({"model": "demo", "version": 1, "predictions": [[0.5]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    a = Api()
    yield a
    a.stop()


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No twin state file here, a private cache, no MODELOPS_* settings from the caller's shell."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for key in [k for k in __import__("os").environ if k.startswith("MODELOPS_")]:
        monkeypatch.delenv(key)
    return tmp_path / "cache" / "modelops" / "stacks.json"


@pytest.fixture
def cfn(moto: None) -> Any:
    return boto3.client("cloudformation", region_name="us-east-1")


@pytest.fixture
def deployed(home: Path, cfn: Any, s3: Any, registry_bucket: str, api: Api) -> dict[str, str]:
    """A stack whose Outputs name moto's buckets and the stand-in API; nothing in the environment."""
    s3.create_bucket(Bucket=DATA)
    outputs = {
        "RegistryBucketName": registry_bucket,
        "DataBucketName": DATA,
        "MetricsNamespace": "ModelOps",
        "ApiUrl": api.url,
    }
    cfn.create_stack(StackName=STACK, TemplateBody=stack_template(outputs))
    return outputs


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def js(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def put_alarm(name: str, state: str = "ALARM") -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    cw.put_metric_alarm(
        AlarmName=name,
        MetricName="MaxPsiRatio",
        Namespace="ModelOps",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"{name} fired")


# ------------------------------------------------------------------ every command, on a moto stack


def test_every_command_works_from_the_stack_outputs(deployed: dict[str, str], s3: Any, api: Api) -> None:
    reg = Registry(s3, deployed["RegistryBucketName"])
    for payload in (b"1", b"2"):
        reg.publish_version("demo", {"tflite": ("model.tflite", payload)}, {"metrics": {"rmse": 0.5}})
    s = ("--stack", STACK)

    promoted = js(run(*s, "models", "promote", "demo", "1", "--json"))
    assert (promoted["model"], promoted["alias"], promoted["version"]) == ("demo", "production", 1)
    promoted = js(run(*s, "models", "promote", "demo", "2", "--json"))
    assert (promoted["version"], promoted["previous"]) == (2, 1)
    assert js(run(*s, "models", "list", "--json")) == [
        {"model": "demo", "versions": [1, 2], "aliases": {"production": 2}}
    ]
    assert js(run(*s, "models", "show", "demo", "--json"))["aliases"]["production"]["version"] == 2
    assert js(run(*s, "models", "show", "demo", "1", "--json"))["metrics"] == {"rmse": 0.5}
    back = js(run(*s, "models", "rollback", "demo", "--json"))
    assert (back["version"], back["previous"]) == (1, 2) and reg.resolve("demo") == 1

    put_alarm(f"{STACK}-DriftAlarm-ABCDEF123456")
    put_alarm(f"{STACK}-Predict5xxAlarm-ABCDEF123456", state="OK")
    put_alarm("other-DriftAlarm-ABCDEF123456")  # another stack's
    put_alarm(f"{STACK}-dev-DriftAlarm-ABCDEF123456")  # stack mstack-dev's, not mstack's
    put_alarm("HandMade")
    doc = js(run(*s, "status", "--json"))
    assert doc["stack"] == STACK and [m["model"] for m in doc["models"]] == ["demo"]
    assert [a["name"] for a in doc["alarms"]] == [f"{STACK}-DriftAlarm-ABCDEF123456"]
    text = run(*s, "status")
    assert text.exit_code == 0 and "1 alarm(s) open in stack mstack:" in text.output
    assert "other-" not in text.output and "HandMade" not in text.output

    summary = js(run(*s, "monitor", "run", "--json", "--dry-run"))
    assert summary["models"] == [] and summary["objects"] == 0

    config = js(run(*s, "models", "config", "demo", "--psi-threshold", "0.3", "--json"))
    assert config["settings"] == {"psi_threshold": 0.3} and config["revision"] == 1
    assert js(run(*s, "models", "config", "demo", "--json"))["effective"]["psi_threshold"] == 0.3
    site = js(run(*s, "ui", "build", "--out", str(Path.cwd() / "site"), "--json"))
    assert site["models"] == 1 and Path(site["index"]).is_file()

    got = run(*s, "predict", "demo", "[[1, 2, 3, 4]]", "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["predictions"] == [[0.5]] and got.output.count("\n") == 1
    assert api.requests == [
        {"path": "/v1/models/demo/predict", "body": {"instances": [[1, 2, 3, 4]]}, "signed": True}
    ]


def test_compare_from_the_stack_outputs(
    deployed: dict[str, str], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops.stages import gate as gating
    from tests.unit.gate_models import TRUE_W, LinearInterpreter, publish, rows_csv, store_heldout

    monkeypatch.setattr(gating, "litert_interpreter", LinearInterpreter)
    reg = Registry(s3, deployed["RegistryBucketName"], actor="gate")
    publish(reg, TRUE_W, 0.6, claims={"rmse": 0.2})
    publish(reg, TRUE_W, 0.0, claims={"rmse": 0.25})
    store_heldout(reg, rows_csv(120, seed=3))
    doc = js(run("--stack", STACK, "models", "compare", "demo", "1", "2", "--json"))
    assert (doc["rows"], doc["source"]) == (120, "heldout") and doc["a_value"] > doc["b_value"]


def test_the_stack_name_from_the_environment(deployed: dict[str, str], s3: Any) -> None:
    Registry(s3, deployed["RegistryBucketName"]).publish_version("iris", {"tflite": ("m.tflite", b"x")}, {})
    assert js(run("models", "list", "--json", env={"MODELOPS_STACK": STACK}))[0]["model"] == "iris"


def test_with_a_stack_the_twin_variables_are_not_used(
    deployed: dict[str, str], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell that ran `eval "$(modelops local env)"` still talks to the stack it names."""
    s3.create_bucket(Bucket="twin-registry")
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", "twin-registry")
    Registry(s3, deployed["RegistryBucketName"]).publish_version("iris", {"tflite": ("m.tflite", b"x")}, {})
    assert [r["model"] for r in js(run("--stack", STACK, "models", "list", "--json"))] == ["iris"]
    assert js(run("models", "list", "--json")) == []  # without --stack: the variables, as before


# ------------------------------------------------------------------ the cache


def test_outputs_are_read_once_and_cached_per_profile_and_region(
    deployed: dict[str, str], home: Path, cfn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = stack_module.StackOutputs.fetch

    def counting(self: stack_module.StackOutputs) -> dict[str, str]:
        calls.append(self.stack)
        return real(self)

    monkeypatch.setattr(stack_module.StackOutputs, "fetch", counting)
    assert run("--stack", STACK, "models", "list").exit_code == 0
    assert run("--stack", STACK, "status").exit_code == 0
    assert calls == [STACK]
    cached = json.loads(home.read_text())
    assert cached["version"] == 1
    entry = cached["stacks"][f"default|us-east-1|{STACK}"]
    assert entry["outputs"] == deployed and entry["status"] == "CREATE_COMPLETE"
    assert home.stat().st_mode & 0o777 == 0o600
    # the cache is used even when CloudFormation cannot be read any more
    cfn.delete_stack(StackName=STACK)
    assert run("--stack", STACK, "models", "list").exit_code == 0
    # another region is another key: read again (and gone there)
    other = run("--stack", STACK, "--region", "eu-west-1", "models", "list")
    assert other.exit_code == 1 and f"stack {STACK} does not exist (region eu-west-1)" in other.output
    # --refresh reads it again
    gone = run("--stack", STACK, "--refresh", "models", "list")
    assert gone.exit_code == 1 and "does not exist" in gone.output


def write_cache(home: Path, outputs: dict[str, str]) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    key = f"default|us-east-1|{STACK}"
    home.write_text(json.dumps({"version": 1, "stacks": {key: {"outputs": outputs}}}))


def test_an_output_missing_from_the_cache_is_read_again(
    deployed: dict[str, str], home: Path, s3: Any
) -> None:
    write_cache(home, {"DataBucketName": DATA})  # written before RegistryBucketName was an output
    Registry(s3, deployed["RegistryBucketName"]).publish_version("iris", {"tflite": ("m.tflite", b"x")}, {})
    assert js(run("--stack", STACK, "models", "list", "--json"))[0]["model"] == "iris"
    assert json.loads(home.read_text())["stacks"][f"default|us-east-1|{STACK}"]["outputs"] == deployed


def test_outputs_changed_since_the_cache_was_written_are_refreshed(
    deployed: dict[str, str], home: Path, s3: Any
) -> None:
    write_cache(home, {**deployed, "RegistryBucketName": "replaced-registry"})  # a bucket since replaced
    Registry(s3, deployed["RegistryBucketName"]).publish_version("iris", {"tflite": ("m.tflite", b"x")}, {})
    r = run("--stack", STACK, "models", "list")
    assert r.exit_code == 0, r.output
    assert "outputs changed since they were cached; running again" in r.output and "iris" in r.output
    assert json.loads(home.read_text())["stacks"][f"default|us-east-1|{STACK}"]["outputs"] == deployed


def test_a_failure_with_unchanged_outputs_is_not_retried(deployed: dict[str, str]) -> None:
    r = run("--stack", STACK, "models", "promote", "ghost", "1")
    assert r.exit_code == 1 and "model_not_found" in r.output and "running again" not in r.output


def test_refresh_replaces_a_stale_cache(deployed: dict[str, str], home: Path, s3: Any) -> None:
    s3.create_bucket(Bucket="old-registry")
    Registry(s3, "old-registry").publish_version("old", {"tflite": ("m.tflite", b"x")}, {})
    Registry(s3, deployed["RegistryBucketName"]).publish_version("new", {"tflite": ("m.tflite", b"x")}, {})
    write_cache(home, {**deployed, "RegistryBucketName": "old-registry"})
    assert [r["model"] for r in js(run("--stack", STACK, "models", "list", "--json"))] == ["old"]
    assert [r["model"] for r in js(run("--stack", STACK, "--refresh", "models", "list", "--json"))] == ["new"]
    assert [r["model"] for r in js(run("--stack", STACK, "models", "list", "--json"))] == ["new"]


# ------------------------------------------------------------------ bad input


def test_a_stack_that_does_not_exist(home: Path, moto: None) -> None:
    r = run("--stack", "ghost", "models", "list")
    assert r.exit_code == 1
    assert "Error: stack ghost does not exist (region us-east-1)" in r.output and "Traceback" not in r.output
    assert not home.exists()


def test_another_templates_stack_names_the_missing_output(home: Path, cfn: Any) -> None:
    cfn.create_stack(StackName="website", TemplateBody=stack_template({"SiteUrl": "https://example.com"}))
    for args, output in (
        (("models", "list"), "RegistryBucketName"),
        (("status",), "RegistryBucketName"),
        (("monitor", "run"), "DataBucketName"),
    ):
        r = run("--stack", "website", *args)
        assert r.exit_code == 1, r.output
        assert f"Error: stack website has no output {output}: is it a modelops stack?\n" == r.output
    r = run("--stack", "website", "predict", "demo", "[[1]]")
    assert r.exit_code == 1 and "stack website has no output ApiUrl: is it a modelops stack?" in r.output


def test_a_stack_under_review_has_no_outputs_yet(home: Path, cfn: Any) -> None:
    """A stack created by a change set not yet executed (REVIEW_IN_PROGRESS, what moto can hold)."""
    cfn.create_change_set(
        StackName="pending",
        ChangeSetName="first",
        ChangeSetType="CREATE",
        TemplateBody=stack_template({"RegistryBucketName": "registry"}),
    )
    r = run("--stack", "pending", "models", "list")
    assert r.exit_code == 1 and "stack pending is REVIEW_IN_PROGRESS: wait for it to finish" in r.output
    assert not home.exists()  # nothing cached from a stack that is not there yet


class Creating:
    """CloudFormation answering for a stack still being created (moto creates stacks at once)."""

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return {"Stacks": [{"StackName": StackName, "StackStatus": "CREATE_IN_PROGRESS", "Outputs": []}]}


def test_a_stack_still_creating(home: Path, moto: None, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Context.client
    monkeypatch.setattr(
        Context,
        "client",
        lambda self, service: Creating() if service == "cloudformation" else real(self, service),
    )
    r = run("--stack", "young", "status")
    assert r.exit_code == 1 and "stack young is CREATE_IN_PROGRESS: wait for it to finish" in r.output


# ------------------------------------------------------------------ exit codes, --version


def test_monitor_fail_on_drift_exits_3(deployed: dict[str, str], s3: Any) -> None:
    publish_model(s3)
    x = training_data(np.random.default_rng(1), 500)
    x[:, 0] += 3
    put_captures(s3, capture_lines(x, batch=5))
    args = ("--stack", STACK, "monitor", "run", "--model", "demo", "--dry-run")
    assert run(*args).exit_code == 0  # drift, but not asked to fail on it
    r = run(*args, "--fail-on-drift")
    assert r.exit_code == 3 and "DRIFT" in r.output
    r = run(*args, "--fail-on-drift", "--json")
    assert r.exit_code == 3 and json.loads(r.output)["models"][0]["verdict"] == "drift"


def test_monitor_fail_on_drift_exits_0_without_drift(deployed: dict[str, str], s3: Any) -> None:
    publish_model(s3)
    put_captures(s3, capture_lines(training_data(np.random.default_rng(2), 500), batch=5))
    r = run("--stack", STACK, "monitor", "run", "--model", "demo", "--dry-run", "--fail-on-drift")
    assert r.exit_code == 0, r.output
    assert "demo v1 (production): OK" in r.output


def test_usage_errors_exit_2_and_version(moto: None, home: Path) -> None:
    assert run("models", "promote").exit_code == 2
    assert run("--no-such-option").exit_code == 2
    r = run("--version")
    assert r.exit_code == 0 and re.fullmatch(r"modelops, version \d+\.\d+\.\d+\S*\n", r.output)


def test_every_command_has_json() -> None:
    """--json on every command (docs/cli.md)."""

    def leaves(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from leaves(cmd, (*path, name))
            else:
                yield (*path, name), cmd

    found = dict(leaves(cli))
    assert len(found) >= 11
    missing = [
        " ".join(p) for p, cmd in found.items() if "--json" not in {o for p_ in cmd.params for o in p_.opts}
    ]
    assert missing == []


def test_stack_alarm_names() -> None:
    assert is_stack_alarm("modelops-DriftAlarm-1A2B3C4D5E6F", "modelops")
    assert not is_stack_alarm("modelops-dev-DriftAlarm-1A2B3C4D5E6F", "modelops")
    assert is_stack_alarm("modelops-dev-DriftAlarm-1A2B3C4D5E6F", "modelops-dev")
    assert not is_stack_alarm("DriftAlarm", "modelops") and not is_stack_alarm("modelops-X", "modelops")


def test_the_templates_alarms_are_named_by_cloudformation() -> None:
    """`status` finds the stack's alarms by CloudFormation's generated names ({stack}-{LogicalId}-...):
    an alarm of template.yaml with an AlarmName of its own would be missed."""
    text = (ROOT / "template.yaml").read_text()
    blocks = re.split(r"\n  (?=[A-Za-z0-9]+:\n)", text.split("\nResources:\n", 1)[1].split("\nOutputs:\n")[0])
    alarms = [b for b in blocks if re.search(r"Type: AWS::CloudWatch::(Composite)?Alarm\b", b)]
    assert alarms and not [b.split(":")[0] for b in alarms if "AlarmName:" in b]


# ------------------------------------------------------------------ the twin


@pytest.fixture
def on_twin(twin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A shell in a directory with the twin's state file, its endpoint named (as `modelops local env` does)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for key in [k for k in __import__("os").environ if k.startswith("MODELOPS_")]:
        monkeypatch.delenv(key)
    state = tmp_path / ".modelops" / "local.json"
    state.parent.mkdir()
    state.write_text(json.dumps(twin.state()))
    state.chmod(0o600)
    monkeypatch.setenv("AWS_ENDPOINT_URL", twin.endpoint)
    return twin


@pytest.mark.twin
def test_every_command_on_the_twin_by_its_stack_name(on_twin: Any) -> None:
    twin = on_twin
    s = ("--stack", twin.stack_name)
    reg = Registry(twin.client("s3"), twin.outputs["RegistryBucketName"])
    model = "clistack"
    for payload in (b"1", b"2"):
        reg.publish_version(model, {"tflite": ("model.tflite", payload)}, {"metrics": {"rmse": 0.5}})
    assert js(run(*s, "models", "promote", model, "1", "--json"))["version"] == 1
    assert js(run(*s, "models", "promote", model, "2", "--json"))["previous"] == 1
    assert {"model": model, "versions": [1, 2], "aliases": {"production": 2}} in js(
        run(*s, "models", "list", "--json")
    )
    assert js(run(*s, "models", "show", model, "2", "--json"))["version"] == 2
    assert js(run(*s, "models", "rollback", model, "--json"))["version"] == 1
    doc = js(run(*s, "status", "--json"))
    assert doc["stack"] == twin.stack_name and model in [m["model"] for m in doc["models"]]
    assert all(is_stack_alarm(a["name"], twin.stack_name) for a in doc["alarms"])
    assert "models" in js(run(*s, "monitor", "run", "--dry-run", "--json", "--window", "5m"))
    rows = Path.cwd() / "rows.csv"
    rows.write_text("a,b,c,d\n1,2,3,4\n")
    scoring = js(run(*s, "score", model, str(rows), "--json"))
    assert scoring["input"].endswith(f"/datasets/{model}/score/rows.csv") and scoring["run"].startswith(
        "rows-"
    )
    config = js(run(*s, "models", "config", model, "--capture-sample-rate", "0.5", "--json"))
    assert config["settings"] == {"capture_sample_rate": 0.5}
    site = js(run(*s, "ui", "build", "--out", str(Path.cwd() / "site"), "--json"))
    assert site["models"] >= 1 and Path(site["index"]).is_file()
    # the twin's API answers (this version's bytes are no model: predict refuses it, clearly)
    r = run(*s, "predict", model, "[[1, 2, 3, 4]]", "--json")
    assert r.exit_code == 1 and r.output.startswith("Error: HTTP ") and "Traceback" not in r.output
    assert not (Path.cwd() / "cache").exists()  # the twin's outputs come from its state file
    env = js(run("local", "env", "--json"))
    assert env["AWS_ENDPOINT_URL"] == twin.endpoint
    assert env["MODELOPS_REGISTRY_BUCKET_NAME"] == twin.outputs["RegistryBucketName"]


@pytest.mark.twin
def test_the_twin_without_a_stack_name_and_another_stack_on_it(on_twin: Any) -> None:
    twin = on_twin
    doc = js(run("status", "--json"))  # the twin of the state file: its stack's alarms only
    assert doc["stack"] == twin.stack_name
    r = run("--stack", "ghost", "models", "list")
    assert r.exit_code == 1 and "stack ghost does not exist" in r.output
