"""Fixtures of the end-to-end tests, which run the whole pipeline on the local twin.

The session-scoped ``twin`` fixture itself lives in tests/conftest.py (integration tests use it
too). Here: ways to talk to it as a user would. End every test with ``twin.wait_idle()`` so that no
event of yours is still being handled when the next test starts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from modelops import aws
from modelops_local.testing import cli_env, find_aws_cli
from modelops_local.twin import Twin, exports


@pytest.fixture
def twin_env(twin: Twin, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's environment points at the twin, as ``eval "$(modelops local env)"`` would:
    boto3, ``modelops.aws.client`` and the ``modelops`` CLI (in-process or as a subprocess)."""
    env = dict(exports(twin.state()))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELOPS_TEST_KEEP_ENDPOINT", "1")
    aws.clear_cache()
    return env


@pytest.fixture
def aws_cli(twin: Twin) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real AWS CLI against the twin: ``aws_cli("s3", "cp", src, dst)``."""
    path = find_aws_cli()
    if path is None:
        pytest.fail("the AWS CLI is missing: run `make tools` or set MODELOPS_AWS_CLI")

    def run(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [path, *args],
            env=cli_env(twin),
            capture_output=True,
            text=True,
            timeout=300,
            check=check,
            **kwargs,
        )

    return run
