"""`modelops models ...` against moto: clear errors, non-zero exit codes, no partial writes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from modelops.domain import canary
from modelops.storage.registry import Registry
from modelops_cli.main import cli


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no .modelops/local.json here
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    reg = Registry(s3, registry_bucket)
    for payload in (b"1", b"2"):
        reg.publish_version("demo", {"tflite": ("model.tflite", payload)}, {"metrics": {"rmse": 0.5}})
    return reg


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_list_show_promote_rollback(env: Registry) -> None:
    assert run("models", "promote", "demo", "1").exit_code == 0
    r = run("models", "promote", "demo", "2")
    assert r.exit_code == 0 and "v2" in r.output
    listed = json.loads(run("models", "list", "--json").output)
    assert listed == [{"model": "demo", "versions": [1, 2], "aliases": {"production": 2}}]
    shown = json.loads(run("models", "show", "demo", "2").output)
    assert shown["version"] == 2 and shown["metrics"] == {"rmse": 0.5}
    r = run("models", "rollback", "demo")
    assert r.exit_code == 0 and env.resolve("demo") == 1


def test_promoting_the_canary_finishes_it(env: Registry) -> None:
    env.promote("demo", 1)
    env.update_alias("demo", "production", lambda cur: canary.start(cur, 2, 0.1), reason="gate: canary")
    assert env.get_alias("demo")[0].canary == {"version": 2, "weight": 0.1}
    r = run("models", "promote", "demo", "2")
    assert r.exit_code == 0 and "demo production -> v2 (previous: v1)" in r.output
    doc = env.get_alias("demo")[0]
    assert (doc.version, doc.previous, doc.canary) == (2, 1, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "promote", "demo", "7"), "version_not_found"),
        (("models", "promote", "ghost", "1"), "model_not_found"),
        (("models", "rollback", "demo"), "alias_not_found"),
        (("models", "show", "ghost"), "model_not_found"),
        (("models", "show", "demo", "9"), "version_not_found"),
    ],
)
def test_errors_exit_non_zero_with_a_clear_message(
    env: Registry, args: tuple[str, ...], message: str
) -> None:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_malformed_alias_exits_non_zero(env: Registry, s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket="registry", Key="models/demo/aliases/production.json", Body=b"{oops")
    r = CliRunner().invoke(cli, ["models", "promote", "demo", "1"])
    assert r.exit_code != 0 and "corrupt_document" in r.output
    assert (
        s3.get_object(Bucket="registry", Key="models/demo/aliases/production.json")["Body"].read() == b"{oops"
    )


def test_empty_registry(monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    r = run("models", "list")
    assert r.exit_code == 0 and "no models" in r.output


def test_missing_bucket_setting_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path, moto) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELOPS_REGISTRY_BUCKET_NAME", raising=False)
    r = CliRunner().invoke(cli, ["models", "list"])
    assert r.exit_code != 0 and "MODELOPS_REGISTRY_BUCKET_NAME" in r.output


def test_bucket_that_does_not_exist(monkeypatch: pytest.MonkeyPatch, tmp_path, moto) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["models", "--bucket", "no-such-bucket", "list"])
    assert r.exit_code != 0 and "does not exist" in r.output


@pytest.mark.parametrize(
    "args", [("models", "promote", "Bad_Name", "1"), ("models", "promote", "demo", "1", "--alias", "../x")]
)
def test_invalid_names_are_refused(env: Registry, args: tuple[str, ...]) -> None:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code != 0 and "invalid_name" in r.output
