"""Where the CLI's AWS settings and resource names come from.

Order: command-line options, then ``MODELOPS_*`` environment variables (``modelops local env``
prints them for the twin; a deployed stack's Outputs give the same names), then
``.modelops/local.json`` written by ``modelops local up`` in the current directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import click

from modelops.aws import RETRY_CONFIG
from modelops.storage.registry import Registry

LOCAL_STATE = Path(".modelops") / "local.json"


def local_state(path: Path = LOCAL_STATE) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _output_env(name: str) -> str:
    snake = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return f"MODELOPS_{snake}"


@dataclass
class Context:
    endpoint_url: str | None
    region: str
    outputs: dict[str, str]

    def output(self, name: str) -> str:
        value = os.environ.get(_output_env(name)) or self.outputs.get(name)
        if not value:
            raise click.ClickException(
                f"{name} is not known: pass it, set {_output_env(name)}, or run `modelops local up` here"
            )
        return value

    def client(self, service: str) -> Any:
        kwargs: dict[str, Any] = {"region_name": self.region, "config": RETRY_CONFIG}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return boto3.session.Session().client(service, **kwargs)

    def registry(self, bucket: str | None = None) -> Registry:
        return Registry(self.client("s3"), bucket or self.output("RegistryBucketName"), actor="cli")


def make_context(endpoint_url: str | None, region: str | None) -> Context:
    state = local_state() or {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or state.get("endpoint")
    region = (
        region
        or os.environ.get("AWS_DEFAULT_REGION")
        or os.environ.get("AWS_REGION")
        or state.get("region")
        or "us-east-1"
    )
    if endpoint and not os.environ.get("AWS_ACCESS_KEY_ID") and state:
        # The twin accepts any credentials; give boto3 some so it does not look for a profile.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return Context(endpoint_url=endpoint, region=region, outputs=dict(state.get("outputs", {})))
