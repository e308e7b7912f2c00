"""A deployed stack's Outputs, read through CloudFormation and cached (``modelops --stack NAME``).

``describe_stacks`` is called once, and its Outputs are kept in ``$XDG_CACHE_HOME/modelops/stacks.json``
(``~/.cache/modelops/stacks.json`` without it), keyed by profile, region, endpoint and stack name. The
cache is read again on the next run; it is refreshed when a command needs an output the cached copy
lacks, when ``--refresh`` is given, and when a command that used cached outputs fails and a fresh
read shows that one of them changed (the CLI then runs the command once more; see ``main.Cli``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

CACHE_VERSION = 1

# A stack in one of these states has no usable Outputs (not created yet, failed, or going away).
UNUSABLE = {
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "REVIEW_IN_PROGRESS",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS",
    "DELETE_FAILED",
    "DELETE_COMPLETE",
}


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelops" / "stacks.json"


def cache_key(profile: str | None, region: str, stack: str, endpoint: str | None) -> str:
    key = f"{profile or 'default'}|{region}|{stack}"
    return f"{key}|{endpoint}" if endpoint else key


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if (
        not isinstance(doc, dict)
        or doc.get("version") != CACHE_VERSION
        or not isinstance(doc.get("stacks"), dict)
    ):
        return {}
    return doc["stacks"]


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    stacks = _read_cache(path)
    stacks[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(
                json.dumps({"version": CACHE_VERSION, "stacks": stacks}, indent=1, sort_keys=True) + "\n"
            )
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs a describe_stacks call next time


class StackOutputs:
    """The Outputs of one stack, read at most once per run unless a needed one is missing."""

    def __init__(
        self,
        stack: str,
        cloudformation: Callable[[], Any],
        *,
        profile: str | None,
        region: str,
        endpoint: str | None,
        refresh: bool = False,
        path: Path | None = None,
    ) -> None:
        self.stack = stack
        self._cfn = cloudformation
        self.region = region
        self.profile = profile
        self.path = path or cache_path()
        self.key = cache_key(profile, region, stack, endpoint)
        self.fetched = False  # read from CloudFormation during this run
        self.used: dict[str, str] = {}  # outputs served from the cache (checked again if the command fails)
        self._outputs: dict[str, str] | None = None
        if not refresh:
            entry = _read_cache(self.path).get(self.key)
            if isinstance(entry, dict) and isinstance(entry.get("outputs"), dict):
                self._outputs = {str(k): str(v) for k, v in entry["outputs"].items()}

    def _where(self) -> str:
        return f"region {self.region}" + (f", profile {self.profile}" if self.profile else "")

    def fetch(self) -> dict[str, str]:
        try:
            resp = self._cfn().describe_stacks(StackName=self.stack)
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if "does not exist" in message:
                raise click.ClickException(f"stack {self.stack} does not exist ({self._where()})") from None
            raise click.ClickException(f"cannot read stack {self.stack}: {message}") from None
        except BotoCoreError as exc:
            raise click.ClickException(f"cannot read stack {self.stack}: {exc}") from None
        stacks = resp.get("Stacks") or []
        if not stacks:
            raise click.ClickException(f"stack {self.stack} does not exist ({self._where()})")
        described = stacks[0]
        status = str(described.get("StackStatus", ""))
        if status in UNUSABLE:
            hint = "wait for it to finish" if status.endswith("IN_PROGRESS") else "it has no usable outputs"
            raise click.ClickException(f"stack {self.stack} is {status}: {hint}")
        outputs = {str(o["OutputKey"]): str(o.get("OutputValue", "")) for o in described.get("Outputs") or []}
        _write_cache(
            self.path,
            self.key,
            {
                "outputs": outputs,
                "stack_id": described.get("StackId"),
                "status": status,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self._outputs = outputs
        self.fetched = True
        self.used.clear()
        return outputs

    def get(self, name: str) -> str:
        outputs = self._outputs
        from_cache = outputs is not None and not self.fetched
        if outputs is None or (name not in outputs and not self.fetched):
            outputs = self.fetch()
            from_cache = False
        value = outputs.get(name)
        if not value:
            raise click.ClickException(f"stack {self.stack} has no output {name}: is it a modelops stack?")
        if from_cache:
            self.used[name] = value
        return value

    def all(self) -> dict[str, str]:
        return dict(self._outputs if self._outputs is not None else self.fetch())

    def changed_since_cache(self) -> bool:
        """After a failure: read the stack again when cached outputs were used; True when one of them
        has changed (the command is worth running again)."""
        if self.fetched or not self.used:
            return False
        used = dict(self.used)
        try:
            fresh = self.fetch()
        except click.ClickException:
            return False
        return any(fresh.get(k) != v for k, v in used.items())
