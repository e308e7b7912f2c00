"""Where the CLI's AWS settings and resource names come from.

Order: command-line options, then ``MODELOPS_*`` environment variables (``modelops local env``
prints them for the twin; a deployed stack's Outputs give the same names), then
``.modelops/local.json`` written by ``modelops local up`` in the current directory.

The twin's AWS endpoint accepts only requests signed with its session token as the access key id
(docs/local-twin.md, "Security"): when the endpoint is the one in the state file, the CLI signs
with the state file's token, whatever ``AWS_ACCESS_KEY_ID`` says.
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
    access_key: str | None = None  # the twin's session token, when talking to the twin of the state file

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
        if self.access_key:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = "testing"  # the twin checks the key id only
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
    twin = bool(endpoint) and endpoint == state.get("endpoint")
    return Context(
        endpoint_url=endpoint,
        region=region,
        outputs=dict(state.get("outputs", {})),
        # a state file from before session tokens: that twin took any key
        access_key=str(state.get("token") or "testing") if twin else None,
    )
