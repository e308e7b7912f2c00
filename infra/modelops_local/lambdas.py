"""Run a template function's handler in this process, the way the Lambda runtime would.

One invocation at a time, process-wide (``INVOKE_LOCK``): handlers read ``os.environ`` and the twin
runs them in one process, so each invocation gets its function's environment (the template's
variables, Lambda's reserved ones, ``AWS_ENDPOINT_URL`` pointing at the twin) set while it holds
the lock, and the previous values back afterwards. Locally this is reserved concurrency 1 for the
whole stack; it keeps environments from leaking between functions.

The handler runs in a worker thread so that its Timeout can be enforced: past it, the invocation is
reported as timed out, the twin moves on, and the thread gets an asynchronous ``LambdaTimeout``
exception (honoured at its next Python bytecode; a thread stuck inside C code finishes on its own,
as a real sandbox would be frozen). Each invocation gets a fresh context object.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import io
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("modelops.twin")

INVOKE_LOCK = threading.Lock()
INIT_TIMEOUT_S = 10.0
_last_endpoint: str | None = None

# Lambda's reserved variables and the AWS settings that must not leak from the developer's shell.
_REMOVED = ("AWS_PROFILE", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE")


class LambdaTimeout(BaseException):
    """Raised inside a handler thread that ran past its function's Timeout."""


@dataclass
class FunctionSpec:
    """A template function, resolved: where its code is, how it runs, where failures go."""

    logical_id: str
    name: str
    arn: str
    module: str
    attr: str
    code_dir: Path
    timeout: float
    memory: int
    environment: dict[str, str]
    file: Path | None = None  # set when the module cannot be imported by a dotted name
    max_retries: int = 2
    max_event_age_s: int = 21600
    dead_letter: tuple[str, str] | None = None  # (SQS|SNS, arn)
    on_failure: tuple[str, str] | None = None  # (SQS|SNS|EventBridge|Lambda, arn)
    on_success: tuple[str, str] | None = None
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_group: str = ""

    @property
    def handler(self) -> str:
        return f"{self.module}.{self.attr}"


@dataclass
class Invocation:
    """One attempt at running a handler (what ``Twin.invocations`` lists)."""

    function: str
    request_id: str
    source: str
    attempt: int
    outcome: str  # ok | error | timeout
    duration_ms: float
    started_at: float
    error_type: str | None = None
    error_message: str | None = None
    result: Any = field(default=None, repr=False)
    log_lines: list[str] = field(default_factory=list, repr=False)
    seq: int = 0  # its place in the twin's history (1, 2, ...; see ``Twin.mark``)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def summary(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "request_id": self.request_id,
            "source": self.source,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 3),
            "error_type": self.error_type,
            "error_message": self.error_message,
        }

    def error_payload(self) -> dict[str, Any]:
        """The body Lambda returns for a failed invocation."""
        return {
            "errorMessage": self.error_message or "",
            "errorType": self.error_type or "Error",
            "requestId": self.request_id,
            "stackTrace": [],
        }


class LambdaContext:
    """What the Lambda runtime passes as ``context``."""

    def __init__(self, spec: FunctionSpec, request_id: str, log_stream: str) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._timeout = spec.timeout
        self._deadline = time.monotonic() + spec.timeout

    def _start(self) -> None:
        self._deadline = time.monotonic() + self._timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Tee(io.TextIOBase):
    """``sys.stdout`` during invocations: copies what the handler's thread prints (EMF metrics,
    Powertools logs) into that invocation's log, and passes everything on."""

    local = threading.local()

    def __init__(self) -> None:
        super().__init__()
        self.downstream: Any = sys.stdout
        self.echo = True  # False: keep handler output in the invocation's log only (the demo's choice)

    def write(self, s: str) -> int:
        buf = getattr(_Tee.local, "buffer", None)
        if buf is not None:
            buf.append(s)
            if not self.echo:
                return len(s)
        try:
            return int(self.downstream.write(s) or 0)
        except ValueError:  # a closed stream (pytest's capture of an earlier test)
            return int(sys.__stdout__.write(s) if sys.__stdout__ else 0)

    def flush(self) -> None:
        try:
            self.downstream.flush()
        except ValueError:
            pass

    def isatty(self) -> bool:
        try:
            return bool(self.downstream.isatty())
        except ValueError:
            return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.downstream, "encoding", "utf-8") or "utf-8")


TEE = _Tee()

_handlers: dict[tuple[str, str, str], Any] = {}
_handlers_lock = threading.Lock()


def module_for(code_dir: Path, handler: str, roots: list[Path]) -> tuple[str, str, Path | None]:
    """``(module, attribute, file)`` for a Handler like ``app.lambda_handler`` under ``code_dir``.

    The module gets a dotted name relative to the deepest root (the template's directory, the
    entries of ``sys.path``) that contains it, e.g. ``functions.train_trigger.app``, so it is the
    same module tests import. Where no such name exists, ``file`` is the path to load it from.
    """
    mod_part, _, attr = handler.rpartition(".")
    if not mod_part or not attr:
        raise ValueError(f"Handler {handler!r} is not module.function")
    code_dir = code_dir.resolve()
    file = code_dir.joinpath(*mod_part.split(".")).with_suffix(".py")
    for root in sorted({r.resolve() for r in roots}, key=lambda p: len(p.parts), reverse=True):
        try:
            rel = code_dir.relative_to(root)
        except ValueError:
            continue
        parts = [*rel.parts, *mod_part.split(".")]
        if all(p.isidentifier() for p in parts):
            return ".".join(parts), attr, None
    return f"_twin_{re.sub(r'\\W', '_', str(code_dir))}.{mod_part}", attr, file


def _load_handler(spec: FunctionSpec) -> Any:
    key = (spec.module, spec.attr, str(spec.file))
    with _handlers_lock:
        if key in _handlers:
            return _handlers[key]
    if spec.file is not None:
        if not spec.file.exists():
            raise ModuleNotFoundError(f"No module named {spec.file.stem!r} in {spec.code_dir}")
        mspec = importlib.util.spec_from_file_location(spec.module, spec.file)
        assert mspec is not None and mspec.loader is not None
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
        sys.modules[spec.module] = module
    else:
        module = importlib.import_module(spec.module)
    fn = getattr(module, spec.attr, None)
    if not callable(fn):
        raise AttributeError(f"Handler {spec.attr!r} missing on module {spec.module!r}")
    with _handlers_lock:
        _handlers[key] = fn
    return fn


def _raise_in_thread(thread: threading.Thread) -> None:
    if thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(LambdaTimeout))


def _error_type(exc: BaseException, phase: str) -> str:
    if phase == "init":
        if isinstance(exc, ModuleNotFoundError | ImportError | SyntaxError):
            return "Runtime.ImportModuleError"
        if isinstance(exc, AttributeError):
            return "Runtime.HandlerNotFound"
        return (
            "Runtime.UserCodeSyntaxError" if isinstance(exc, SyntaxError) else f"Runtime.{type(exc).__name__}"
        )
    return type(exc).__name__


def new_request_id() -> str:
    return str(uuid.uuid4())


def trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


def invoke(
    spec: FunctionSpec,
    event: Any,
    *,
    base_env: dict[str, str],
    source: str,
    attempt: int = 1,
    request_id: str | None = None,
    wait_limit_s: float | None = None,
    log_stream: str = "",
) -> Invocation:
    """Run one invocation (holding ``INVOKE_LOCK``); never raises for what the handler does.

    ``wait_limit_s`` (API Gateway's 29 s) stops waiting earlier than the function's Timeout: the
    result is then ``outcome="timeout"`` with ``error_type="Twin.CallerTimeout"`` while the handler
    goes on until it returns or its own Timeout.
    """
    global _last_endpoint
    rid = request_id or new_request_id()
    INVOKE_LOCK.acquire()
    handed_off = False
    env = dict(base_env)
    env.update(spec.environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "_X_AMZN_TRACE_ID": trace_id(),
        }
    )
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        if key in base_env:
            env[key] = base_env[key]
    drop = [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")] + list(_REMOVED)
    saved = {k: os.environ.get(k) for k in [*env, *drop]}
    prev_stdout = sys.stdout

    def restore() -> None:
        if sys.stdout is TEE:
            sys.stdout = prev_stdout
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    try:
        for k in drop:
            os.environ.pop(k, None)
        os.environ.update(env)
        endpoint = env.get("AWS_ENDPOINT_URL")
        if endpoint != _last_endpoint:
            _last_endpoint = endpoint
            clear_client_caches()
        if prev_stdout is not TEE:
            TEE.downstream = prev_stdout
            sys.stdout = TEE
        inv, straggler = _run(spec, event, rid, source, attempt, wait_limit_s, log_stream)
        if straggler is not None:
            # The caller stopped waiting but the handler goes on (Lambda does not stop it): keep its
            # environment, and the lock, until it returns or reaches its own Timeout.
            def finish() -> None:
                try:
                    straggler()
                finally:
                    restore()
                    INVOKE_LOCK.release()

            threading.Thread(target=finish, name=f"lambda-finish-{rid[:8]}", daemon=True).start()
            handed_off = True
        return inv
    finally:
        if not handed_off:
            restore()
            INVOKE_LOCK.release()


def clear_client_caches() -> None:
    """Cached boto3 clients point at the previous endpoint (another twin in the same process)."""
    mod = sys.modules.get("modelops.aws")
    clear = getattr(mod, "clear_cache", None)
    if callable(clear):
        clear()


def _run(
    spec: FunctionSpec,
    event: Any,
    rid: str,
    source: str,
    attempt: int,
    wait_limit_s: float | None,
    log_stream: str,
) -> tuple[Invocation, Any]:
    context = LambdaContext(spec, rid, log_stream)
    box: dict[str, Any] = {}
    initialised = threading.Event()
    finished = threading.Event()
    buffer: list[str] = []

    def worker() -> None:
        _Tee.local.buffer = buffer
        phase = "init"
        try:
            handler = _load_handler(spec)
            phase = "invoke"
            context._start()
            box["handler_started"] = time.monotonic()
            initialised.set()
            box["result"] = handler(event, context)
        except LambdaTimeout:
            box["late"] = True
        except BaseException as exc:  # noqa: BLE001 - the runtime reports every failure
            box["error"] = exc
            box["phase"] = phase
            box["trace"] = traceback.format_exc()
        finally:
            _Tee.local.buffer = None
            initialised.set()
            finished.set()

    started = time.monotonic()
    wall = time.time()
    thread = threading.Thread(target=worker, name=f"lambda-{spec.logical_id}-{rid[:8]}", daemon=True)
    thread.start()
    initialised.wait(max(INIT_TIMEOUT_S, spec.timeout))
    limit = spec.timeout
    if wait_limit_s is not None:
        limit = min(limit, wait_limit_s)
    begun = box.get("handler_started", started)
    remaining = max(0.0, begun + limit - time.monotonic())
    done = finished.wait(remaining) if initialised.is_set() else False
    duration_ms = (time.monotonic() - begun) * 1000.0
    straggler = None
    inv = Invocation(
        function=spec.logical_id,
        request_id=rid,
        source=source,
        attempt=attempt,
        outcome="ok",
        duration_ms=duration_ms,
        started_at=wall,
    )
    if not done:
        caller_gave_up = wait_limit_s is not None and wait_limit_s < spec.timeout
        if not caller_gave_up:
            _raise_in_thread(thread)
        inv.outcome = "timeout"
        inv.error_type = "Twin.CallerTimeout" if caller_gave_up else "Sandbox.Timedout"
        inv.error_message = (
            f"the caller stopped waiting after {limit:.2f} seconds"
            if caller_gave_up
            else f"Task timed out after {spec.timeout:.2f} seconds"
        )
        if caller_gave_up:

            def straggler() -> None:
                if not finished.wait(max(0.0, begun + spec.timeout - time.monotonic())):
                    _raise_in_thread(thread)

    elif "error" in box:
        exc = box["error"]
        inv.outcome = "error"
        inv.error_type = _error_type(exc, box.get("phase", "invoke"))
        inv.error_message = str(exc) or type(exc).__name__
        buffer.append(
            json.dumps(
                {
                    "errorMessage": inv.error_message,
                    "errorType": inv.error_type,
                    "requestId": rid,
                    "stackTrace": box.get("trace", "").splitlines(),
                }
            )
            + "\n"
        )
        inv.log_lines.append(box.get("trace", ""))
    else:
        inv.result = box.get("result")
    inv.log_lines = [*"".join(buffer).splitlines(), *inv.log_lines]
    return inv, straggler


def json_safe(value: Any) -> Any:
    """A handler's result as Lambda would serialise it (or its repr when it is not JSON)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)
