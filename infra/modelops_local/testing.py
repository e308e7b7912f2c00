"""Helpers for tests that run on the twin (the ``twin`` pytest fixture uses them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelops_local.twin import FAKE_KEY, Twin

ROOT = Path(__file__).resolve().parents[2]


def start_twin(template: str | Path = ROOT / "template.yaml", **kwargs: Any) -> Twin:
    """A started twin on free ports, with short retry delays, its moto in a child process (so that
    ``mock_aws`` in other tests of the same run cannot reset it) and handler modules named from the
    repository root."""
    options: dict[str, Any] = {
        "port": 0,
        "api_port": 0,
        "retry_delays": (0.05, 0.1),
        "telemetry_interval": 0.5,
        "code_roots": [ROOT],
    }
    options.update(kwargs)
    return Twin(template, **options).start()


def find_aws_cli() -> str | None:
    """The AWS CLI the Makefile builds (``MODELOPS_AWS_CLI``), else the usual tool venvs."""
    candidates = [
        os.environ.get("MODELOPS_AWS_CLI"),
        str(ROOT / ".tools/awscli/bin/aws"),
        "/tmp/tools/awscli/bin/aws",
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def cli_env(twin: Twin, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which the AWS CLI (or boto3 in a subprocess) talks to the twin only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ENDPOINT_URL": twin.endpoint,
            "AWS_DEFAULT_REGION": twin.region,
            "AWS_REGION": twin.region,
            "AWS_ACCESS_KEY_ID": twin.token,  # the only key the twin's moto accepts
            "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_PAGER": "",
        }
    )
    env.update(extra or {})
    return env
