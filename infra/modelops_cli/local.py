"""``modelops local up|env|tick``: the local twin (see docs/local-twin.md)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import click

STATE_FILE = Path(".modelops") / "local.json"


def _fail(command: str, message: str, code: int = 1) -> NoReturn:
    click.echo(f"modelops local {command}: {message}", err=True)
    sys.exit(code)


def _read_state(path: Path, command: str) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        _fail(command, f"no twin here: {path} not found (run `modelops local up` in this directory)")
    except (OSError, ValueError) as exc:
        _fail(command, f"cannot read {path}: {exc}")
    if not isinstance(state, dict) or "endpoint" not in state:
        _fail(command, f"{path} is not a twin's state file")
    pid = state.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _fail(
                command, f"the twin of {path} (pid {pid}) is not running; start it with `modelops local up`"
            )
        except PermissionError:
            pass
    return state


def _post(url: str, timeout: float, token: str) -> Any:
    """POST to a control endpoint of the twin (the session token, JSON: what it requires)."""
    from modelops_local.guard import TOKEN_HEADER

    req = urllib.request.Request(
        url,
        data=b"",
        method="POST",
        headers={TOKEN_HEADER: token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own 127.0.0.1 endpoint
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", str(exc))
        except ValueError:
            message = str(exc)
        raise click.ClickException(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot reach the twin at {url}: {getattr(exc, 'reason', exc)}") from None


def _logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("modelops")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
def local() -> None:
    """The local twin: the whole template on this machine (moto + in-process handlers)."""


@local.command()
@click.option(
    "--template", "template", default="template.yaml", show_default=True, help="The SAM template to run."
)
@click.option(
    "--port",
    default=4566,
    show_default=True,
    type=int,
    help="Port of the AWS endpoint (moto); 0 = any free port.",
)
@click.option(
    "--api-port",
    default=3000,
    show_default=True,
    type=int,
    help="Port of the API and control endpoints; 0 = any.",
)
@click.option(
    "--parameter-overrides",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Template parameters (repeatable).",
)
@click.option("--stack-name", default="modelops", show_default=True, help="Used in generated resource names.")
@click.option(
    "--region",
    "region",
    default=None,
    help="AWS region of the twin (default: AWS_DEFAULT_REGION or us-east-1).",
)
@click.option(
    "--schedules/--no-schedules",
    default=False,
    show_default=True,
    help="Fire rate(...) schedules on a timer too.",
)
@click.option(
    "--alarm-interval",
    default=60.0,
    show_default=True,
    type=float,
    help="Seconds between alarm evaluations (0: only on tick).",
)
@click.option(
    "--moto-in-process", is_flag=True, help="Run moto's server in this process instead of a child process."
)
@click.option(
    "--state-file",
    default=str(STATE_FILE),
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option(
    "--json", "as_json", is_flag=True, help="Once up, print the twin's state (no token) as one JSON line."
)
def up(
    template: str,
    port: int,
    api_port: int,
    overrides: tuple[str, ...],
    stack_name: str,
    region: str | None,
    schedules: bool,
    alarm_interval: float,
    moto_in_process: bool,
    state_file: Path,
    verbose: bool,
    as_json: bool,
) -> None:
    """Start the twin in the foreground (Ctrl-C stops it)."""
    from modelops_local.errors import TwinError
    from modelops_local.twin import Twin

    _logging(verbose)
    params: dict[str, str] = {}
    for item in overrides:
        for pair in shlex.split(item):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                _fail("up", f"--parameter-overrides takes KEY=VALUE, got {pair!r}", 2)
            params[key] = value
    twin = Twin(
        template,
        port=port,
        api_port=api_port,
        parameters=params,
        stack_name=stack_name,
        region=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        schedules=schedules,
        alarm_interval=alarm_interval or None,
        moto_in_process=moto_in_process,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        twin.start()
    except TwinError as exc:
        _fail("up", str(exc))
    try:
        _write_state(state_file, twin.state())
        if as_json:
            shown = {k: v for k, v in twin.state().items() if k not in ("token", "api_key")}
            click.echo(json.dumps({**shown, "state_file": str(state_file)}, sort_keys=True), nl=True)
            sys.stdout.flush()
        else:
            _print_summary(twin, state_file)
        while not stop.wait(0.5):
            pass
        click.echo("stopping the twin...", err=True)
    finally:
        twin.stop()
        try:
            if json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
        except (OSError, ValueError):
            pass


def _write_state(state_file: Path, state: dict[str, Any]) -> None:
    """The state file holds the session token: readable by its owner only (0600), from the start."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_file)


def _print_summary(twin: Any, state_file: Path) -> None:
    echo = click.echo
    echo(
        f"modelops twin up in {twin.started_in_s:.1f} s  ({twin.template.path.name}, stack {twin.stack_name}, {twin.region})"
    )
    echo(f"  AWS endpoint  {twin.endpoint}")
    echo(f"  API           {twin.api_url}")
    echo(f"  control       {twin.control_url}")
    if twin.api_key:
        echo(f"  API key       {twin.api_key}  (send it as x-api-key)")
    outputs = twin.outputs
    if outputs:
        echo("Outputs:")
        width = max(len(k) for k in outputs)
        for k, v in outputs.items():
            echo(f"  {k:<{width}}  {v}")
    if twin.functions:
        echo("Functions:")
        width = max(len(k) for k in twin.functions)
        for logical, spec in twin.functions.items():
            events = ", ".join(f"{e.get('Type')} {n}" for n, e in spec.events.items()) or "(invoke only)"
            echo(f"  {logical:<{width}}  {spec.handler}  <- {events}")
    if twin.provisioned.skipped:
        echo(f"Not emulated: {', '.join(sorted(twin.provisioned.skipped))}")
    echo(f'State in {state_file}. In another shell: eval "$(modelops local env)". Ctrl-C stops the twin.')


@local.command("env")
@click.option(
    "--state-file",
    default=str(STATE_FILE),
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="The same variables as one JSON object.")
def env_command(state_file: Path, as_json: bool) -> None:
    """Print export lines that point the AWS CLI, boto3 and this CLI at the running twin (with its
    session token: the AWS access key id it accepts, and MODELOPS_LOCAL_TOKEN)."""
    from modelops_local.twin import exports

    state = _read_state(state_file, "env")
    if as_json:
        click.echo(json.dumps(dict(exports(state)), indent=1, sort_keys=True))
        return
    for key, value in exports(state):
        click.echo(f"export {key}={shlex.quote(value)}")


@local.command()
@click.argument("function", required=False)
@click.option(
    "--state-file",
    default=str(STATE_FILE),
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--timeout", default=3600.0, show_default=True, type=float, help="Seconds to wait for the run.")
@click.option("--json", "as_json", is_flag=True, help="The invocations and alarm changes as one JSON object.")
def tick(function: str | None, state_file: Path, timeout: float, as_json: bool) -> None:
    """Run FUNCTION's schedule now (every enabled schedule without FUNCTION), then evaluate alarms.
    FUNCTION may be a state machine (MonitorStateMachine): its execution runs to its end on the
    twin, and tick fails unless it SUCCEEDED."""
    state = _read_state(state_file, "tick")
    control = str(state.get("control_url") or "").rstrip("/")
    if not control:
        _fail("tick", f"{state_file} has no control_url")
    token = str(state.get("token") or "")
    if not token:
        _fail("tick", f"{state_file} has no session token (it was written by an older twin: restart it)")
    url = f"{control}/tick" + (f"/{urllib.parse.quote(function, safe='')}" if function else "")
    result = _post(url, timeout, token)
    executions = result.get("executions", [])
    if as_json:
        alarms = _post(f"{control}/alarms/evaluate", 120.0, token)
        invocations = result.get("invocations", [])
        click.echo(
            json.dumps(
                {"invocations": invocations, "executions": executions, "alarms": alarms.get("alarms", [])},
                indent=1,
                default=str,
            )
        )
        if any(ex.get("status") != "SUCCEEDED" for ex in executions) or any(
            inv.get("outcome") != "ok" and inv.get("source") != "states" for inv in invocations
        ):
            sys.exit(1)
        return
    failed = False
    if not result.get("invocations") and not executions:
        click.echo("no scheduled function ran (the template has no enabled schedule)")
    for ex in executions:
        line = f"{ex['state_machine']}  {ex['execution']}  {ex['status']}  {ex['duration_ms']:.1f} ms"
        if ex["status"] != "SUCCEEDED":
            failed = True
            line += f"  {ex.get('error')}: {ex.get('cause')}"
        click.echo(line)
    for inv in result.get("invocations", []):
        line = f"{inv['function']}  {inv['request_id']}  {inv['outcome']}  {inv['duration_ms']:.1f} ms"
        if inv["outcome"] != "ok":
            # a state machine's task retries: its execution's status says whether it failed
            failed = failed or inv.get("source") != "states"
            line += f"  {inv.get('error_type')}: {inv.get('error_message')}"
        click.echo(line)
    alarms = _post(f"{control}/alarms/evaluate", 120.0, token)
    for alarm in alarms.get("alarms", []):
        if alarm.get("changed"):
            click.echo(f"alarm {alarm['alarm']}: {alarm['old_state']} -> {alarm['new_state']}")
    if failed:
        sys.exit(1)
