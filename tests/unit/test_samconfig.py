"""``samconfig.toml``: the SAM CLI environments (default, dev, prod) name only real template parameters,
give every required one, ask for the capabilities the template needs, and confirm change sets on prod."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())
T = load(ROOT / "template.yaml")
PARAMS: dict[str, Any] = T["Parameters"]
ENVS = ("default", "dev", "prod")
SAM = ROOT / ".tools/aws-sam-cli/bin/sam"


def overrides(env: str) -> dict[str, str]:
    raw = CONFIG[env]["deploy"]["parameters"]["parameter_overrides"]
    items = raw if isinstance(raw, list) else raw.split()
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        assert sep and key and value, item
        assert not re.search(r"\s", value), f"{item}: sam joins the list with spaces"
        out[key] = value
    return out


def test_version_and_environments() -> None:
    assert CONFIG["version"] == 0.1
    assert set(ENVS) <= set(CONFIG)
    names = [CONFIG[e]["global"]["parameters"]["stack_name"] for e in ENVS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("env", ENVS)
def test_overrides_name_real_parameters_with_allowed_values(env: str) -> None:
    got = overrides(env)
    assert got
    for key, value in got.items():
        assert key in PARAMS, f"{env}: {key} is not a template parameter"
        spec = PARAMS[key]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (env, key)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"].strip("^$"), value), (env, key)
        if spec["Type"] == "Number":
            number = float(value)
            assert spec.get("MinValue", number) <= number <= spec.get("MaxValue", number), (env, key)
    required = {k for k, v in PARAMS.items() if "Default" not in v}
    assert required <= set(got), f"{env} misses required parameters {required - set(got)}"


@pytest.mark.parametrize("env", ENVS)
def test_capabilities_region_and_confirmation(env: str) -> None:
    deploy = CONFIG[env]["deploy"]["parameters"]
    caps = set(deploy["capabilities"].split())
    assert "CAPABILITY_IAM" in caps
    assert "CAPABILITY_NAMED_IAM" not in caps  # no RoleName/ManagedPolicyName in the template
    text = (ROOT / "template.yaml").read_text()
    assert ("AWS::Serverless::Application" in text) == ("CAPABILITY_AUTO_EXPAND" in caps)
    assert deploy["confirm_changeset"] is (env == "prod")
    for section in CONFIG[env].values():
        assert "region" not in section.get("parameters", {}) and "profile" not in section.get(
            "parameters", {}
        )


def test_dev_and_prod_do_not_share_a_job_prefix() -> None:
    assert overrides("dev")["JobPrefix"] != overrides("prod")["JobPrefix"]


@pytest.mark.skipif(not SAM.exists(), reason="no SAM CLI in .tools")
def test_sam_parses_the_overrides_and_validates_each_environment() -> None:
    python = SAM.parent / "python"
    for env in ENVS:
        joined = " ".join(f"{k}={v}" for k, v in overrides(env).items())
        code = (
            "import sys; from samcli.cli.types import CfnParameterOverridesType as T; "
            "print(sorted(T().convert((sys.argv[1],), None, None).items()))"
        )
        parsed = subprocess.run([python, "-c", code, joined], capture_output=True, text=True, check=True)
        assert parsed.stdout.strip() == str(sorted(overrides(env).items()))
        done = subprocess.run(
            [SAM, "validate", "--lint", "--config-file", "samconfig.toml", "--config-env", env],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
