"""Where the CLI's AWS settings and resource names come from.

With ``--stack NAME`` (or ``MODELOPS_STACK``): the stack's Outputs, read through CloudFormation and
cached (``modelops_cli.stack``); when the endpoint is the twin's of ``.modelops/local.json`` and NAME
is its stack name, the twin's outputs. Without a stack: command-line options, then ``MODELOPS_*``
environment variables (``modelops local env`` prints them for the twin), then ``.modelops/local.json``
written by ``modelops local up`` in the current directory. docs/cli.md has the whole story.

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
from modelops_cli.stack import StackOutputs

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
    stack: str | None = None  # the stack's name: --stack, MODELOPS_STACK, or the twin's
    profile: str | None = None
    stack_outputs: StackOutputs | None = None  # set when the outputs come from CloudFormation
    pinned: bool = False  # --stack named the twin's stack: its outputs only, no MODELOPS_* overrides

    def output(self, name: str) -> str:
        if self.stack_outputs is not None:
            return self.stack_outputs.get(name)
        if self.pinned:  # --stack named the twin of the state file: its outputs only
            value = self.outputs.get(name)
            if not value:
                raise click.ClickException(
                    f"stack {self.stack} has no output {name}: is it a modelops stack?"
                )
            return value
        value = os.environ.get(_output_env(name)) or self.outputs.get(name)
        if not value:
            raise click.ClickException(
                f"{name} is not known: pass --stack NAME, set {_output_env(name)}, or run `modelops local up` here"
            )
        return value

    def all_outputs(self) -> dict[str, str]:
        if self.stack_outputs is not None:
            return self.stack_outputs.all()
        return dict(self.outputs)

    def session(self) -> Any:
        return boto3.session.Session(profile_name=self.profile) if self.profile else boto3.session.Session()

    def client(self, service: str) -> Any:
        kwargs: dict[str, Any] = {"region_name": self.region, "config": RETRY_CONFIG}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = "testing"  # the twin checks the key id only
        return self.session().client(service, **kwargs)

    def registry(self, bucket: str | None = None) -> Registry:
        return Registry(self.client("s3"), bucket or self.output("RegistryBucketName"), actor="cli")


def make_context(
    endpoint_url: str | None,
    region: str | None,
    *,
    stack: str | None = None,
    profile: str | None = None,
    refresh: bool = False,
) -> Context:
    state = local_state() or {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint and not stack:
        endpoint = state.get("endpoint")  # with --stack, the twin only when the endpoint names it
    twin = bool(endpoint) and endpoint == state.get("endpoint")
    profile = profile or os.environ.get("AWS_PROFILE") or None
    region = (
        region
        or os.environ.get("AWS_DEFAULT_REGION")
        or os.environ.get("AWS_REGION")
        or (state.get("region") if twin else None)
        or (_profile_region(profile) if profile else None)
        or "us-east-1"
    )
    ctx = Context(
        endpoint_url=endpoint,
        region=region,
        outputs=dict(state.get("outputs", {})) if twin or not stack else {},
        # a state file from before session tokens: that twin took any key
        access_key=str(state.get("token") or "testing") if twin else None,
        stack=stack or (str(state["stack_name"]) if twin and state.get("stack_name") else None),
        profile=profile,
    )
    if stack and twin and state.get("stack_name") == stack:
        ctx.pinned = True
    elif stack:
        ctx.stack_outputs = StackOutputs(
            stack,
            lambda: ctx.client("cloudformation"),
            profile=profile,
            region=region,
            endpoint=endpoint,
            refresh=refresh,
        )
    return ctx


def _profile_region(profile: str) -> str | None:
    try:
        return boto3.session.Session(profile_name=profile).region_name
    except Exception:  # noqa: BLE001 - an unknown profile fails on the first call, with boto3's message
        return None
