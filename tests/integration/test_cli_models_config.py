"""`modelops models config` against moto: read, set, unset, usage errors (exit 2), unknown models (1)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from modelops.storage.registry import Registry
from modelops.storage.settings import SettingsStore
from modelops_cli.main import cli


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path, s3, registry_bucket):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELOPS_REGISTRY_BUCKET_NAME", registry_bucket)
    reg = Registry(s3, registry_bucket)
    spec = {"monitoring": {"psi_threshold": 0.25, "capture_sample_rate": 0.5}}
    m = reg.publish_version("demo", {"tflite": ("model.tflite", b"1")}, {"spec": spec})
    reg.promote("demo", m.version)
    return reg


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_read_set_and_unset(env: Registry) -> None:
    got = json.loads(run("models", "config", "demo", "--json").output)
    assert got["revision"] == 0 and got["settings"] == {}
    assert got["effective"]["psi_threshold"] == 0.25 and got["sources"]["psi_threshold"] == "manifest"
    assert got["effective"]["label_window_days"] == 7 and got["sources"]["label_window_days"] == "default"

    r = run(
        "models", "config", "demo", "--psi-threshold", "0.4", "--label-window-days", "14",
        "--no-retrain-on-drift", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["settings"] == {"psi_threshold": 0.4, "label_window_days": 14, "retrain_on_drift": False}
    assert got["sources"]["psi_threshold"] == "settings" and got["revision"] == 1

    r = run("models", "config", "demo", "--unset", "psi_threshold")
    assert r.exit_code == 0
    assert "psi_threshold            0.25     (v1's manifest)" in r.output
    hist = SettingsStore(env.objects).history("demo")
    assert [h["changes"] for h in hist][-1] == {"psi_threshold": {"from": 0.4, "to": None}}
    # the manifest keeps the value it was trained with
    assert env.get_manifest("demo", 1).get("spec")["monitoring"]["psi_threshold"] == 0.25


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--psi-threshold", "0"), "psi_threshold must be above 0"),
        (("--capture-sample-rate", "1.5"), "capture_sample_rate must be from 0 to 1"),
        (("--label-window-days", "0"), "label_window_days must be a whole number of days from 1 to 31"),
        (("--psi-threshold", "nan"), "psi_threshold must be finite"),
        (("--psi-threshold", "abc"), "is not a valid float"),
        (("--unset", "psi_threshold", "--psi-threshold", "0.3"), "cannot go together"),
        (("--unset", "nope"), "Invalid value for '--unset'"),
    ],
)
def test_bad_values_are_usage_errors_and_write_nothing(
    env: Registry, args: tuple[str, ...], message: str
) -> None:
    r = CliRunner().invoke(cli, ["models", "config", "demo", *args])
    assert r.exit_code == 2 and message in r.output
    assert SettingsStore(env.objects).read("demo") == (None, None)


def test_an_unknown_model_is_an_error(env: Registry) -> None:
    for args in ((), ("--psi-threshold", "0.3")):
        r = CliRunner().invoke(cli, ["models", "config", "ghost", *args])
        assert r.exit_code == 1 and "model_not_found" in r.output
