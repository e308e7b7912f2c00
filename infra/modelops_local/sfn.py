"""The template's state machines on the twin, run by moto's Amazon States Language interpreter.

moto 5 ships the interpreter LocalStack wrote (``moto.stepfunctions.parser``: the ASL grammar, every
state type, Retry/Catch, intrinsic functions, Map in INLINE and DISTRIBUTED mode with an S3
ItemReader). The twin does not write one. It runs ``StepFunctionsParserBackend`` in its own process
(not in the moto server child), one backend per twin, so that the interpreter's tasks can reach the
twin's in-process handlers.

The interpreter makes every AWS call of a task (``lambda:invoke``, ``aws-sdk:s3:putObject``, the
Distributed Map's ``s3:getObject`` ItemReader) through ``boto_client_for(region, service,
state_credentials)``. Unpatched, that builds a client for ``localhost:$MOTO_PORT`` with the access
key "ak" (the twin's moto accepts only its session token, ``modelops_local.guard``), and its Lambda
invoke would reach moto's Lambda, which runs no code. ``install()`` replaces ``boto_client_for`` in
every parser module that imported it by name with a router: the execution's role ARN (the twin
gives each state machine a role ARN of its own, ``.../{stack}-{logical}-twin-{id}``) names the
twin, which hands out its own boto3 clients (its moto, its token) and, for ``lambda``, a client
whose ``invoke`` runs the function's handler in-process and answers as Lambda's ``Invoke`` does.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops_local.cfn import Template
from modelops_local.errors import TemplateError, TwinError
from modelops_local.lambdas import Invocation

log = logging.getLogger("modelops.twin")

STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
_DONE = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")

# role ARN -> the twin's router (a twin registers on start, unregisters on stop)
_ROUTES: dict[str, _Router] = {}
_ROUTES_LOCK = threading.Lock()
_INSTALLED = False


@dataclass
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    definition: str
    role_arn: str
    schedules: list[tuple[str, str, bool, Any]] = field(default_factory=list)  # event, expr, on, input


@dataclass
class ExecutionResult:
    """One execution, as ``DescribeExecution`` gives it, plus the function attempts it made."""

    state_machine: str
    name: str
    arn: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    duration_ms: float = 0.0
    invocations: list[Invocation] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"

    def summary(self) -> dict[str, Any]:
        return {
            "state_machine": self.state_machine,
            "execution": self.name,
            "arn": self.arn,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "output": self.output,
            "duration_ms": round(self.duration_ms, 3),
            "invocations": len(self.invocations),
        }


class _Payload(io.BytesIO):
    """The ``Payload`` of ``Invoke``'s response: a stream the interpreter reads once."""


class LambdaClient:
    """What the interpreter's ``lambda:invoke`` calls: ``invoke(FunctionName=, Payload=)`` runs the
    twin's handler and answers as Lambda does (``StatusCode`` 200; a handler error is
    ``FunctionError: Unhandled`` with Lambda's error body as the payload)."""

    def __init__(self, run: Callable[[str, Any], Invocation]) -> None:
        self._run = run

    def invoke(self, FunctionName: str, Payload: Any = None, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        if kwargs.get("InvocationType", "RequestResponse") != "RequestResponse":
            raise TwinError(
                f"the twin's state machines invoke synchronously only, not {kwargs['InvocationType']}"
            )
        if isinstance(Payload, bytes | bytearray):
            event = json.loads(Payload) if Payload else {}
        elif isinstance(Payload, str):
            event = json.loads(Payload) if Payload else {}
        else:
            event = {} if Payload is None else Payload
        inv = self._run(unqualified(FunctionName), event)
        body = inv.result if inv.ok else inv.error_payload()
        out: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": _Payload(json.dumps(body, default=str).encode()),
        }
        if not inv.ok:
            out["FunctionError"] = "Unhandled"
        return out


def unqualified(function: str) -> str:
    """A function name or ARN without its version or alias (``...:function:name:live`` -> ``...:name``)."""
    if function.startswith("arn:"):
        parts = function.split(":")
        return ":".join(parts[:7])
    return function.split(":", 1)[0]


class _Router:
    def __init__(self, clients: Callable[[str], Any], lambda_client: LambdaClient) -> None:
        self.clients = clients
        self.lambda_client = lambda_client

    def client(self, service: str) -> Any:
        if service == "lambda":
            return self.lambda_client
        return self.clients(service)


def _boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    role = getattr(state_credentials, "role_arn", None)
    with _ROUTES_LOCK:
        router = _ROUTES.get(str(role))
    if router is None:
        raise TwinError(
            f"no twin runs the state machine of role {role!r}: the twin that started it has stopped"
        )
    return router.client(service)


def install() -> None:
    """Route the interpreter's AWS calls to the twins (idempotent). ``boto_client_for`` is imported by
    name in a dozen parser modules, so each module's binding is replaced, not just the original."""
    global _INSTALLED
    if _INSTALLED:
        return
    import importlib
    import pkgutil

    import moto.stepfunctions.parser.asl.component.state.exec as states
    import moto.stepfunctions.parser.asl.utils.boto_client as original
    import moto.stepfunctions.parser.models  # noqa: F401 - the backend and the parser

    # the task, ItemReader and ResultWriter modules are imported lazily by the interpreter: import them
    # all now, so that each binding can be replaced before the first execution
    for info in pkgutil.walk_packages(states.__path__, states.__name__ + "."):
        importlib.import_module(info.name)

    unpatched = original.boto_client_for
    patched = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("moto.stepfunctions.parser"):
            continue
        if getattr(module, "boto_client_for", None) is unpatched:
            module.boto_client_for = _boto_client_for  # type: ignore[attr-defined]
            patched += 1
    log.debug("twin: moto's state machine interpreter routed to the twin (%d modules)", patched)
    _INSTALLED = True


def definition_of(template: Template, logical: str) -> str:
    """The state machine's definition as AWS receives it: ``Definition`` (an object) or the
    ``DefinitionUri`` file, with ``DefinitionSubstitutions`` replaced (``${Name}``, resolved as the
    template's other intrinsics are)."""
    props = template.props(logical)
    if "DefinitionString" in props:
        text = str(template.resolve(props["DefinitionString"]))
    elif "Definition" in props:
        text = json.dumps(template.resolve(props["Definition"]))
    elif "DefinitionUri" in props:
        uri = template.resolve(props["DefinitionUri"])
        if not isinstance(uri, str):
            raise TemplateError(f"{logical}: DefinitionUri must be a local file on the twin, not {uri!r}")
        text = (template.dir / uri).read_text(encoding="utf-8")
    else:
        raise TemplateError(f"{logical}: no Definition, DefinitionString or DefinitionUri")
    subs = {k: template.resolve(v) for k, v in (props.get("DefinitionSubstitutions") or {}).items()}

    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in subs:
            return m.group(0)  # AWS leaves an unknown ${...} as it is
        return str(subs[key])

    return _SUBSTITUTION.sub(repl, text)


class StateMachines:
    """The template's state machines in an in-process ``StepFunctionsParserBackend``."""

    def __init__(
        self,
        template: Template,
        *,
        clients: Callable[[str], Any],
        run: Callable[[str, Any], Invocation],
        region: str,
        account_id: str,
    ) -> None:
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend

        install()
        self.template = template
        self.backend = StepFunctionsParserBackend(region, account_id)
        self.machines: dict[str, StateMachineSpec] = {}
        self._id = secrets.token_hex(4)
        self._run = run
        self._router = _Router(clients, LambdaClient(self._record))
        self._calls = threading.local()
        self._lock = threading.Lock()
        self._recorders: dict[str, list[Invocation]] = {}
        for logical in template.of_type(*STATE_MACHINE_TYPES):
            self._create(logical)

    def _create(self, logical: str) -> None:
        t = self.template
        props = t.props(logical)
        name = str(t.resolve(props.get("Name") or props.get("StateMachineName") or t.name(logical)))
        role = t.arn("iam", f"role/{t.stack_name}-{logical}-twin-{self._id}", region=False)
        definition = definition_of(t, logical)
        try:
            sm = self.backend.create_state_machine(
                name=name,
                definition=definition,
                roleArn=role,
                sm_type=str(t.resolve(props.get("Type") or "STANDARD")),
            )
        except Exception as exc:
            raise TemplateError(
                f"{logical}: moto's States Language parser refused the definition: {exc}"
            ) from exc
        spec = StateMachineSpec(logical, name, sm.arn, definition, role)
        for event, ev in (props.get("Events") or {}).items():
            p = ev.get("Properties") or {}
            if ev.get("Type") not in ("Schedule", "ScheduleV2"):
                log.warning("twin: %s event %s (%s) is not emulated", logical, event, ev.get("Type"))
                continue
            state = str(t.resolve(p.get("State", "ENABLED"))).upper()
            enabled = t.resolve(p.get("Enabled", True)) is not False and state != "DISABLED"
            raw = t.resolve(p.get("Input"))
            spec.schedules.append(
                (
                    event,
                    str(t.resolve(p.get("ScheduleExpression") or p.get("Schedule"))),
                    enabled,
                    json.loads(raw) if isinstance(raw, str) else raw,
                )
            )
        self.machines[logical] = spec
        with _ROUTES_LOCK:
            _ROUTES[role] = self._router

    def close(self) -> None:
        with _ROUTES_LOCK:
            for spec in self.machines.values():
                _ROUTES.pop(spec.role_arn, None)

    def find(self, name: str) -> StateMachineSpec | None:
        """A state machine by logical id, name or ARN."""
        if name in self.machines:
            return self.machines[name]
        return next((s for s in self.machines.values() if name in (s.name, s.arn)), None)

    def _record(self, function: str, event: Any) -> Invocation:
        inv = self._run(function, event)
        with self._lock:
            for calls in self._recorders.values():
                calls.append(inv)
        return inv

    def execute(
        self, name: str, execution_input: Any = None, *, execution: str | None = None, timeout: float = 900.0
    ) -> ExecutionResult:
        """Start an execution and wait for it to end (``StartExecution`` + ``DescribeExecution``)."""
        spec = self.find(name)
        if spec is None:
            raise TwinError(f"no state machine {name!r} in {self.template.path.name}")
        run_name = execution or f"twin-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
        data = json.dumps({} if execution_input is None else execution_input)
        t0 = time.monotonic()
        with self._lock:
            calls: list[Invocation] = []
            self._recorders[run_name] = calls
        try:
            ex = self.backend.start_execution(spec.arn, name=run_name, execution_input=data)
            done = threading.Event()
            while ex.exec_status is None or ex.status not in _DONE:
                if time.monotonic() - t0 > timeout:
                    ex.stop(
                        stop_date=datetime.now(UTC),
                        error="Twin.Timeout",
                        cause=f"no end within {timeout:.0f} s",
                    )
                    raise TimeoutError(
                        f"{spec.logical_id} execution {run_name} did not end within {timeout:.0f} s"
                    )
                done.wait(0.02)
        finally:
            with self._lock:
                self._recorders.pop(run_name, None)
        result = ExecutionResult(
            spec.logical_id,
            run_name,
            ex.execution_arn,
            ex.status,
            output=ex.output,
            error=ex.error,
            cause=ex.cause,
            duration_ms=(time.monotonic() - t0) * 1000.0,
            invocations=calls,
        )
        (log.info if result.ok else log.error)(
            "%s execution %s: %s%s",
            spec.logical_id,
            run_name,
            result.status,
            f" {result.error}: {result.cause}" if not result.ok else "",
        )
        return result
