"""The local twin: the whole stack of ``template.yaml`` on one machine, no AWS account, no Docker.

>>> with Twin("template.yaml") as twin:            # doctest: +SKIP
...     s3 = twin.client("s3")
...     s3.put_object(Bucket=twin.outputs["DataBucketName"], Key="datasets/m/data.csv", Body=b"...")
...     twin.wait_idle()
...     [i.outcome for i in twin.invocations_of("TrainTriggerFunction")]

moto (its server, on 127.0.0.1) is every AWS API; the twin creates the template's resources in it,
polls the queues it wired to each function's event sources, and runs the handlers in-process with
the event shapes AWS sends, Lambda's async retries (then the DLQ or on-failure destination), the
function's Timeout and a fresh context. It also serves the API routes over HTTP, evaluates the
template's alarms, and runs training jobs locally. See docs/local-twin.md.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from modelops_local import guard, lambdas, sfn, shapes
from modelops_local.alarms import AlarmEvaluator, AlarmResult
from modelops_local.api import ApiServer, Route
from modelops_local.cfn import ACCOUNT_ID, Template
from modelops_local.errors import ExecutionExistsError, FunctionNotFoundError, TwinError
from modelops_local.lambdas import FunctionSpec, Invocation
from modelops_local.motoserver import MotoServer
from modelops_local.provision import Provisioned, Provisioner, Schedule, Source
from modelops_local.telemetry import Telemetry
from modelops_local.training_service import TrainingService

log = logging.getLogger("modelops.twin")

# TensorFlow 2.21 logs this at ERROR twice per training job and then ignores the attribute: the
# trainer turns on op determinism, whose tf.data rewrite replaces Keras' ParallelMapDatasetV2 with a
# MapDataset and keeps ParallelMapDatasetV2's `use_unbounded_threadpool` attribute, which MapDataset
# lacks. It says nothing about the job, so the twin drops exactly this line from the jobs' output it
# logs (the job's `log_tail` keeps it).
TF_DATASET_REWRITE_NOISE = (
    "NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition"
)


class _DropTensorFlowNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return TF_DATASET_REWRITE_NOISE not in record.getMessage()


_DROP_TF_NOISE = _DropTensorFlowNoise()

FAKE_KEY = "testing"
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_S = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


@dataclass
class _AsyncEvent:
    function: str
    event: Any
    source: str
    request_id: str
    received: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    attempts: list[Invocation] = field(default_factory=list)


def output_env_name(output: str) -> str:
    """``DataBucketName`` -> ``MODELOPS_DATA_BUCKET_NAME`` (the names ``modelops local env`` exports)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", output)
    return f"MODELOPS_{snake.upper()}"


def exports(state: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``export`` lines of ``modelops local env`` for a twin's ``.modelops/local.json``: the
    session token is both ``MODELOPS_LOCAL_TOKEN`` (control endpoints) and the AWS access key id
    (moto's endpoint accepts no other)."""
    token = str(state.get("token") or FAKE_KEY)
    out = [
        ("AWS_ENDPOINT_URL", str(state["endpoint"])),
        ("AWS_DEFAULT_REGION", str(state["region"])),
        ("AWS_REGION", str(state["region"])),
        ("AWS_ACCESS_KEY_ID", token),
        ("AWS_SECRET_ACCESS_KEY", FAKE_KEY),
        ("MODELOPS_ENDPOINT_URL", str(state["endpoint"])),
        (guard.TOKEN_ENV, token),
    ]
    for name, value in sorted((state.get("outputs") or {}).items()):
        out.append((output_env_name(name), str(value)))
    if state.get("api_key"):
        out.append(("MODELOPS_API_KEY", str(state["api_key"])))
    return out


class Twin:
    """The whole template on moto, with its handlers run in this process.

    Parameters
    ----------
    template:
        The SAM template (``template.yaml``); its directory is where ``CodeUri`` paths start.
    port, api_port:
        moto's port (the AWS endpoint) and the HTTP port of the API and control endpoints; 0 picks
        free ports.
    parameters:
        Template parameter overrides (``{"ApiAuth": "API_KEY"}``).
    moto_in_process:
        Run moto's server in this process (``ThreadedMotoServer`` style) rather than in a child
        process (the default; see ``modelops_local.motoserver`` for why).
    retry_delays:
        Seconds before Lambda's first and second async retry (AWS waits about 1 and 2 minutes).
    api_timeout:
        API Gateway's integration timeout (29 s).
    schedules:
        Fire ``rate(...)`` schedules on a timer too (``tick`` always works).
    alarm_interval:
        Evaluate alarms every this many seconds (None: only on ``evaluate_alarms``/``tick`` and
        after each scheduled function's run).
    training_entrypoint:
        The module the local training backend runs (default ``modelops_training.entrypoint``, or
        ``MODELOPS_TRAINING_ENTRYPOINT``).
    code_roots:
        Folders handler modules get their dotted names from (default: the template's folder).
    token:
        The session token (default: a new random one): the ``X-Modelops-Twin-Token`` of the control
        endpoints and the only AWS access key id moto's endpoint accepts (``modelops_local.guard``).
    invocation_history:
        How many invocation records ``invocations`` keeps (a ring: the oldest go first).
    """

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        port: int = 0,
        api_port: int = 0,
        host: str = "127.0.0.1",
        region: str = "us-east-1",
        stack_name: str = "modelops",
        parameters: dict[str, str] | None = None,
        moto_in_process: bool = False,
        retry_delays: tuple[float, float] = (1.0, 2.0),
        api_timeout: float = 29.0,
        schedules: bool = False,
        alarm_interval: float | None = None,
        training_entrypoint: str | None = None,
        training_concurrency: int = 1,
        async_workers: int = 4,
        telemetry_interval: float = 1.0,
        code_roots: Iterable[str | Path] | None = None,
        seed: int | None = None,
        echo_handler_output: bool = True,
        token: str | None = None,
        invocation_history: int = 5_000,
    ) -> None:
        lambdas.TEE.echo = echo_handler_output
        logging.getLogger("modelops.twin.training").addFilter(_DROP_TF_NOISE)  # once: same object
        self.template_path = Path(template)
        self.port = port
        self.api_port = api_port
        self.host = host
        self.region = region
        self.stack_name = stack_name
        self.account_id = ACCOUNT_ID
        self.parameters = dict(parameters or {})
        self.moto_in_process = moto_in_process
        self.retry_delays = tuple(retry_delays)
        self.api_timeout = api_timeout
        self.schedules_on_timer = schedules
        self.alarm_interval = alarm_interval
        self.training_entrypoint = training_entrypoint
        self.training_concurrency = training_concurrency
        self.async_workers = async_workers
        self.telemetry_interval = telemetry_interval
        self.code_roots = [Path(p) for p in code_roots] if code_roots is not None else None
        self.seed = seed
        self.token = token or guard.new_token()

        self.template: Template
        self.provisioned: Provisioned
        self.functions: dict[str, FunctionSpec] = {}
        self.routes: list[Route] = []
        self.api_keys: dict[str, str] = {}
        #: the last ``invocation_history`` attempts, oldest first (a ring, so that a long session's
        #: memory stays flat; successful ones without their output lines). ``mark()`` and
        #: ``invocations_of(fn, since=mark)`` select the ones after a point whatever has rolled off.
        self.invocations: deque[Invocation] = deque(maxlen=max(1, invocation_history))
        self._invocation_seq = 0
        self.started_in_s: float | None = None
        self._moto: MotoServer | None = None
        self._api: ApiServer | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._async_q: queue.Queue[_AsyncEvent | None] = queue.Queue()
        self._cond = threading.Condition()
        self._pending = 0
        self._execution_names: set[tuple[str, str]] = set()
        self._running = 0
        self._generation = 0
        self._log_streams: dict[str, str] = {}
        self._sys_path_added: list[str] = []
        self._started = False
        self.telemetry: Telemetry
        self.alarms: AlarmEvaluator
        self.state_machines: sfn.StateMachines | None = None
        #: the last executions of the template's state machines, oldest first (a ring, like ``invocations``)
        self.executions: deque[sfn.ExecutionResult] = deque(maxlen=max(1, invocation_history // 10))
        self.training: TrainingService

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Twin:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Twin:
        if self._started or self._stop.is_set():
            raise TwinError("a Twin starts once; make a new one")
        t0 = time.monotonic()
        self.template = Template(
            self.template_path,
            parameters=self.parameters,
            region=self.region,
            stack_name=self.stack_name,
            seed=self.seed,
        )
        self._api = ApiServer(self, self.host, self.api_port)
        self.api_port = self._api.port
        self._moto = MotoServer(self.host, self.port, access_key=self.token, in_process=self.moto_in_process)
        try:
            self._moto.start()
        except BaseException:
            self._api.stop()
            raise
        self.port = self._moto.port
        self.template.endpoint = self.endpoint
        try:
            self._start_rest()
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - t0
        log.info("twin up in %.1f s: %s (API %s)", self.started_in_s, self.endpoint, self.api_url)
        return self

    def _start_rest(self) -> None:
        roots = self.code_roots or [self.template.dir]
        for root in roots:
            r = str(Path(root).resolve())
            if r not in sys.path:
                sys.path.insert(0, r)
                self._sys_path_added.append(r)
        self.provisioned = Provisioner(self.template, self.client, code_roots=[Path(r) for r in roots]).run()
        for d in self.provisioned.layer_dirs:
            if str(d) not in sys.path:
                sys.path.append(str(d))
                self._sys_path_added.append(str(d))
        self.functions = self.provisioned.functions
        self.state_machines = sfn.StateMachines(
            self.template,
            clients=self.client,
            run=lambda fn, event: self._invoke(self.function(fn), event, "states"),
            region=self.region,
            account_id=self.account_id,
        )
        self.routes = self.provisioned.routes
        self.api_keys = self.provisioned.api_keys
        stamp = datetime.now(UTC).strftime("%Y/%m/%d")
        self._log_streams = {fn: f"{stamp}/[$LATEST]{secrets.token_hex(16)}" for fn in self.functions}
        self.telemetry = Telemetry(self.client("cloudwatch"), self.client("logs"), self.telemetry_interval)
        self.telemetry.start()
        self.alarms = AlarmEvaluator(
            self.provisioned.alarms,
            cloudwatch=self.client("cloudwatch"),
            sns=self.client("sns"),
            telemetry=self.telemetry,
            region=self.region,
            account_id=self.account_id,
            before=self._queue_metrics,
        )
        self.training = TrainingService(
            s3=self.client("s3"),
            emit=self._emit_event,
            region=self.region,
            account_id=self.account_id,
            child_env=self._training_env(),
            entrypoint=self.training_entrypoint,
            concurrency=self.training_concurrency,
        )
        self._started = True
        for i in range(max(1, self.async_workers)):
            self._spawn(self._async_worker, f"twin-async-{i}")
        for source in self.provisioned.sources:
            self._spawn(self._poll, f"twin-poll-{source.function}-{source.event}", source)
        if self.schedules_on_timer:
            for sched in self.provisioned.schedules:
                self._spawn(self._schedule_timer, f"twin-schedule-{sched.function}", sched)
        if self.alarm_interval:
            self._spawn(self._alarm_timer, "twin-alarms")
        assert self._api is not None
        self._api.start()

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        th = threading.Thread(target=target, args=args, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def stop(self) -> None:
        """Stop everything (idempotent): pollers, workers, training jobs, HTTP, moto."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._api is not None:
            self._api.stop()
        if self._started:
            self.training.stop()
            try:
                self.telemetry.stop()
            except Exception as exc:  # noqa: BLE001
                log.debug("telemetry stop: %s", exc)
        # moto goes first: the pollers' long polls then end at once instead of after their second.
        if self.state_machines is not None:
            self.state_machines.close()
        if self._moto is not None:
            self._moto.stop()
        if self._started:
            for _ in range(max(1, self.async_workers)):
                self._async_q.put(None)
        for th in self._threads:
            th.join(timeout=5)
        for p in self._sys_path_added:
            if p in sys.path:
                sys.path.remove(p)
        with self._cond:
            self._cond.notify_all()
        log.info("twin stopped")

    # ------------------------------------------------------------------ names

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def api_url(self) -> str:
        """The URL of the template's (first) API, stage included: ``http://127.0.0.1:PORT/v1``."""
        stages = [r.stage for r in self.routes]
        return f"{self.base_url}/{stages[0]}" if stages else self.base_url

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_twin"

    @property
    def outputs(self) -> dict[str, Any]:
        """The template's Outputs, resolved (API URLs point at the twin)."""
        out = self.template.outputs()
        for api in self.template.of_type("AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
            api_id = re.escape(str(self.template.ref(api)))
            pattern = re.compile(rf"https://{api_id}\.execute-api\.[a-z0-9-]+\.amazonaws\.com(?=/|$)")
            out = {k: pattern.sub(self.base_url, v) if isinstance(v, str) else v for k, v in out.items()}
        return out

    @property
    def resources(self) -> dict[str, Any]:
        """Logical id -> what ``!Ref`` gives (bucket name, queue URL, topic ARN, ...)."""
        return {k: self.template.ref(k) for k in self.template.resources}

    @property
    def api_key(self) -> str | None:
        return next(iter(self.api_keys.values()), None)

    def api_key_id(self, value: str | None) -> str | None:
        return next((k for k, v in self.api_keys.items() if v == value), None)

    def state(self) -> dict[str, Any]:
        """What ``modelops local up`` writes to ``.modelops/local.json``."""
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "region": self.region,
            "api_url": self.api_url,
            "control_url": self.control_url,
            "outputs": self.outputs,
            "pid": os.getpid(),
            "stack_name": self.stack_name,
            "template": str(self.template.path),
            "token": self.token,
        }
        if self.api_key:
            out["api_key"] = self.api_key
        return out

    def client(self, service: str) -> Any:
        """A boto3 client for the twin's moto (fake credentials, the twin's region)."""
        with self._clients_lock:
            if service not in self._clients:
                session = boto3.session.Session(
                    aws_access_key_id=self.token, aws_secret_access_key=FAKE_KEY, region_name=self.region
                )
                self._clients[service] = session.client(  # type: ignore[call-overload]
                    service,
                    endpoint_url=self.endpoint,
                    config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=64),
                )
            return self._clients[service]

    def function(self, name: str) -> FunctionSpec:
        """A function by logical id (``TrainTriggerFunction``) or physical name."""
        if name in self.functions:
            return self.functions[name]
        for spec in self.functions.values():
            if name in (spec.name, spec.arn):
                return spec
        raise FunctionNotFoundError(f"no function {name!r} in {self.template_path.name}")

    def cold_start(self) -> None:
        """Forget what the handler and stage modules cached (clients, settings, stores; every
        ``functools.cache`` / ``lru_cache`` function defined in them) and ``modelops.aws``'s clients, as a new container
        would. Handlers run in the caller's process: a test that called a handler directly may have
        left caches built for ``mock_aws``; the ``twin`` fixture calls this before each test."""
        with lambdas.INVOKE_LOCK:
            names = {spec.module for spec in self.functions.values()}
            # the stages build their settings, clients and stores once per container (their cached
            # ``build()``), so a new container forgets those too
            names |= {name for name in list(sys.modules) if name.startswith("modelops.stages.")}
            for name in sorted(names):
                module = sys.modules.get(name)
                if module is None:
                    continue
                for value in list(vars(module).values()):
                    clear = getattr(value, "cache_clear", None)
                    if callable(clear) and getattr(value, "__module__", None) == module.__name__:
                        clear()
            lambdas.clear_client_caches()

    @property
    def control_headers(self) -> dict[str, str]:
        """The headers a control endpoint (``/_twin/...``) needs: the token, and JSON."""
        return {guard.TOKEN_HEADER: self.token, "Content-Type": "application/json"}

    def mark(self) -> int:
        """The sequence number of the latest invocation (0: none yet), for ``invocations_of(since=)``."""
        with self._cond:
            return self._invocation_seq

    def invocations_of(self, function: str, *, since: int = 0) -> list[Invocation]:
        """The kept invocations of ``function``, oldest first; ``since``: only those after that mark."""
        logical = self.function(function).logical_id
        return [i for i in list(self.invocations) if i.function == logical and i.seq > since]

    # ------------------------------------------------------------------ invoking

    def _base_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.token,
            "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
            "AWS_SESSION_TOKEN": FAKE_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            # a function's own StartExecution (train_trigger on a dataset folder's _SUCCESS) reaches
            # the twin's interpreter (api.STATES_PATH), not moto's server
            "AWS_ENDPOINT_URL_SFN": f"{self.control_url.rstrip('/').removesuffix('/_twin')}/_twin/states",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "MODELOPS_LOCAL_TRAINING_URL": self.control_url,
            guard.TOKEN_ENV: self.token,
        }

    def _training_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self._base_env())
        env.pop("AWS_EXECUTION_ENV", None)
        env.pop("MODELOPS_LOCAL_TRAINING_URL", None)
        env.pop(guard.TOKEN_ENV, None)
        roots = [str(Path(r).resolve()) for r in (self.code_roots or [self.template.dir])]
        env["PYTHONPATH"] = os.pathsep.join(
            [*roots, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        )
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def _touch(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _invoke(
        self,
        spec: FunctionSpec,
        event: Any,
        source: str,
        *,
        attempt: int = 1,
        request_id: str | None = None,
        wait_limit_s: float | None = None,
    ) -> Invocation:
        with self._cond:
            self._running += 1
            self._generation += 1
        try:
            inv = lambdas.invoke(
                spec,
                event,
                base_env=self._base_env(),
                source=source,
                attempt=attempt,
                request_id=request_id,
                wait_limit_s=wait_limit_s,
                log_stream=self._log_streams.get(spec.logical_id, ""),
            )
            with self._cond:
                self._invocation_seq += 1
                inv.seq = self._invocation_seq
                self.invocations.append(inv)
            self._after(spec, inv)
            if inv.ok:
                inv.log_lines = []  # already in CloudWatch Logs; keeps a long session's memory flat
            return inv
        finally:
            with self._cond:
                self._running -= 1
                self._generation += 1
                self._cond.notify_all()

    def _after(self, spec: FunctionSpec, inv: Invocation) -> None:
        tries = (
            f"attempt {inv.attempt}/{spec.max_retries + 1}"
            if inv.source not in ("api", "direct", "states")
            else inv.source
        )
        if inv.ok:
            log.info(
                "%s request_id=%s (%s, %s): ok in %.1f ms",
                spec.logical_id,
                inv.request_id,
                inv.source,
                tries,
                inv.duration_ms,
            )
        else:
            log.error(
                "%s request_id=%s (%s, %s): %s %s: %s",
                spec.logical_id,
                inv.request_id,
                inv.source,
                tries,
                inv.outcome,
                inv.error_type,
                inv.error_message,
            )
            if inv.attempt == 1 and inv.outcome == "error" and inv.log_lines:
                log.error(
                    "%s request_id=%s traceback:\n%s", spec.logical_id, inv.request_id, inv.log_lines[-1]
                )
        dims = {"FunctionName": spec.name}
        try:
            self.telemetry.metric("AWS/Lambda", "Invocations", 1, "Count", dims)
            self.telemetry.metric("AWS/Lambda", "Errors", 0 if inv.ok else 1, "Count", dims)
            self.telemetry.metric("AWS/Lambda", "Duration", inv.duration_ms, "Milliseconds", dims)
            self.telemetry.emf(inv.log_lines)
            stream = self._log_streams.get(spec.logical_id, "")
            billed = max(1, int(inv.duration_ms + 0.999))
            lines = [
                f"START RequestId: {inv.request_id} Version: $LATEST",
                *inv.log_lines,
                f"END RequestId: {inv.request_id}",
                f"REPORT RequestId: {inv.request_id}\tDuration: {inv.duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
                f"Memory Size: {spec.memory} MB" + ("\tStatus: timeout" if inv.outcome == "timeout" else ""),
            ]
            self.telemetry.log_events(spec.log_group, stream, lines, inv.started_at)
        except Exception as exc:  # noqa: BLE001 - telemetry never fails an invocation
            log.debug("telemetry: %s", exc)

    def invoke(self, function: str, event: Any = None, *, source: str = "direct") -> Invocation:
        """Invoke synchronously (``RequestResponse``): no retries, the outcome is returned."""
        return self._invoke(self.function(function), {} if event is None else event, source)

    def invoke_api(self, function: str, event: dict[str, Any]) -> Invocation:
        return self._invoke(self.function(function), event, "api", wait_limit_s=self.api_timeout)

    def invoke_async(self, function: str, event: Any, *, source: str = "direct") -> _AsyncEvent:
        """Invoke like ``InvocationType=Event``: retries, then the DLQ / on-failure destination."""
        return self._submit(self.function(function).logical_id, event, source)

    def _submit(self, function: str, event: Any, source: str) -> _AsyncEvent:
        job = _AsyncEvent(function, event, source, lambdas.new_request_id())
        with self._cond:
            self._pending += 1
            self._generation += 1
        self._async_q.put(job)
        return job

    def _async_worker(self) -> None:
        while True:
            job = self._async_q.get()
            if job is None:
                return
            try:
                self._process(job)
            except Exception:  # noqa: BLE001 - a worker never dies
                log.exception("twin: async invocation of %s failed inside the twin", job.function)
            finally:
                job.done.set()
                with self._cond:
                    self._pending -= 1
                    self._generation += 1
                    self._cond.notify_all()

    def _process(self, job: _AsyncEvent) -> None:
        spec = self.functions[job.function]
        condition = "RetriesExhausted"
        inv: Invocation | None = None
        for attempt in range(1, spec.max_retries + 2):
            if self._stop.is_set():
                return
            inv = self._invoke(spec, job.event, job.source, attempt=attempt, request_id=job.request_id)
            job.attempts.append(inv)
            if inv.ok:
                break
            if attempt > spec.max_retries:
                break
            delay = (
                self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)] if self.retry_delays else 0.0
            )
            if time.monotonic() - job.received + delay > spec.max_event_age_s:
                condition = "EventAgeExceeded"
                break
            if self._stop.wait(delay):
                return
        assert inv is not None
        if inv.ok:
            if spec.on_success:
                self._deliver(
                    spec.on_success, self._destination_record(spec, job, inv, "Success"), spec, job, inv
                )
        else:
            record = self._destination_record(spec, job, inv, condition)
            if spec.on_failure:
                self._deliver(spec.on_failure, record, spec, job, inv)
            if spec.dead_letter:
                self._deliver(spec.dead_letter, job.event, spec, job, inv, dlq=True)
            if not spec.on_failure and not spec.dead_letter:
                log.error(
                    "%s request_id=%s: event dropped after %d attempt(s) (no DLQ or on-failure destination)",
                    spec.logical_id,
                    job.request_id,
                    len(job.attempts),
                )
        if job.source == "schedule" and self.alarms.alarms:
            try:
                self.evaluate_alarms()
            except Exception as exc:  # noqa: BLE001
                log.warning("alarm evaluation after %s failed: %s", spec.logical_id, exc)

    def _destination_record(
        self, spec: FunctionSpec, job: _AsyncEvent, inv: Invocation, condition: str
    ) -> dict[str, Any]:
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if not inv.ok:
            response["functionError"] = "Unhandled"
        return {
            "version": "1.0",
            "timestamp": shapes.iso_now(ms=True),
            "requestContext": {
                "requestId": job.request_id,
                "functionArn": f"{spec.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": len(job.attempts),
            },
            "requestPayload": job.event,
            "responseContext": response,
            "responsePayload": lambdas.json_safe(inv.result) if inv.ok else inv.error_payload(),
        }

    def _deliver(
        self,
        dest: tuple[str, str],
        payload: Any,
        spec: FunctionSpec,
        job: _AsyncEvent,
        inv: Invocation,
        dlq: bool = False,
    ) -> None:
        kind, arn = dest
        body = json.dumps(payload, default=str)
        attrs = {
            "RequestID": {"DataType": "String", "StringValue": job.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {
                "DataType": "String",
                "StringValue": (inv.error_message or inv.error_type or "error")[:1024],
            },
        }
        what = "dead-letter queue" if dlq else "destination"
        try:
            service = arn.split(":")[2] if arn.startswith("arn:") else kind.lower()
            if service == "sqs":
                url = self.client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
                kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
                if dlq:
                    kwargs["MessageAttributes"] = attrs
                self.client("sqs").send_message(**kwargs)
            elif service == "sns":
                kwargs = {"TopicArn": arn, "Message": body}
                if dlq:
                    kwargs["MessageAttributes"] = attrs
                self.client("sns").publish(**kwargs)
            elif service == "events":
                detail_type = "Lambda Function Invocation Result - " + ("Success" if inv.ok else "Failure")
                self.client("events").put_events(
                    Entries=[
                        {
                            "Source": "lambda",
                            "DetailType": detail_type,
                            "Detail": body,
                            "EventBusName": arn,
                            "Resources": [spec.arn],
                        }
                    ]
                )
            elif service == "lambda":
                self.invoke_async(arn, payload, source="destination")
            else:
                log.error("%s: %s %s is not supported by the twin", spec.logical_id, what, arn)
                return
            log.warning("%s request_id=%s: event sent to %s %s", spec.logical_id, job.request_id, what, arn)
        except Exception as exc:  # noqa: BLE001
            log.error(
                "%s request_id=%s: could not send the event to %s %s: %s",
                spec.logical_id,
                job.request_id,
                what,
                arn,
                exc,
            )

    # ------------------------------------------------------------------ event sources

    def _events_of(self, source: Source, body: str) -> list[Any]:
        data = json.loads(body)
        if source.kind == "s3":
            if shapes.is_s3_test_event(data):
                return []
            return shapes.s3_records(data, self.client("s3"))
        if source.kind == "sns":
            return [shapes.sns_event(data, source.subscription_arn)]
        if source.kind == "eventbridge":
            return [shapes.eventbridge_event(data, source.target)]
        return [data]

    def _poll(self, source: Source) -> None:
        session = boto3.session.Session(
            aws_access_key_id=self.token, aws_secret_access_key=FAKE_KEY, region_name=self.region
        )
        sqs = session.client(
            "sqs",
            endpoint_url=self.endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=30),
        )
        while not self._stop.is_set():
            try:
                resp = sqs.receive_message(
                    QueueUrl=source.queue_url,
                    MaxNumberOfMessages=min(10, source.batch_size),
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                    AttributeNames=["All"],
                )
            except Exception as exc:  # noqa: BLE001
                if self._stop.wait(0.5):
                    return
                log.debug("poll %s: %s", source.queue_url, exc)
                continue
            messages = resp.get("Messages", [])
            if not messages:
                continue
            self._touch()
            if not source.owned:
                self._esm(source, messages)
                continue
            for msg in messages:
                try:
                    events = self._events_of(source, msg.get("Body", ""))
                except (ValueError, KeyError, TypeError) as exc:
                    log.error(
                        "%s: dropped a malformed %s message %s: %s",
                        source.function,
                        source.kind,
                        msg.get("MessageId"),
                        exc,
                    )
                    events = []
                for ev in events:
                    self._submit(source.function, ev, source.kind)
                try:
                    sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=msg["ReceiptHandle"])
                except Exception as exc:  # noqa: BLE001
                    log.warning("could not delete message from %s: %s", source.queue_url, exc)

    def _esm(self, source: Source, messages: list[dict[str, Any]]) -> None:
        """An SQS event source mapping: synchronous batch invoke; failed messages stay in the queue."""
        sqs = self.client("sqs")
        event = shapes.sqs_records(messages, source.queue_arn, self.region)
        inv = self._invoke(self.functions[source.function], event, "sqs")
        if not inv.ok:
            return
        failed: set[str] = set()
        if source.report_failures and isinstance(inv.result, dict):
            failed = {
                str(f.get("itemIdentifier"))
                for f in inv.result.get("batchItemFailures") or []
                if isinstance(f, dict)
            }
            if "" in failed or "None" in failed:
                return
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def _emit_event(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]
    ) -> None:
        resp = self.client("events").put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "Resources": resources,
                }
            ]
        )
        if resp.get("FailedEntryCount"):
            raise TwinError(f"put_events refused the event: {resp['Entries']}")

    # ------------------------------------------------------------------ schedules, alarms

    def _schedules_for(self, function: str | None) -> list[Schedule]:
        scheds = self.provisioned.schedules
        if function is None:
            return [s for s in scheds if s.enabled]
        logical = self.function(function).logical_id
        chosen = [s for s in scheds if s.function == logical]
        if not chosen:
            raise TwinError(f"{logical} has no schedule in the template (invoke it instead)")
        return chosen

    def tick(self, function: str | None = None, timeout: float | None = None) -> list[Invocation]:
        """Fire the schedules of ``function`` (all enabled schedules when None) now, as async
        invocations with retries; waits for them and returns each one's final attempt. ``function``
        may name a state machine (``MonitorStateMachine``): its schedule's execution runs to its end
        and the function attempts it made are returned (the execution is in ``executions``)."""
        invocations, _ = self.tick_all(function, timeout)
        return invocations

    def tick_all(
        self, name: str | None = None, timeout: float | None = None
    ) -> tuple[list[Invocation], list[sfn.ExecutionResult]]:
        """``tick``, with the executions of the state machines it started: the functions' final
        attempts (each state machine's: every attempt it made) and the executions, in that order."""
        machines = self._machine_schedules(name)
        jobs = []
        for sched in [] if machines is not None and name is not None else self._schedules_for(name):
            event = (
                sched.input
                if sched.input is not None
                else shapes.scheduled_event(
                    sched.arn, self.region, self.account_id, scheduler=sched.scheduler
                )
            )
            jobs.append(self._submit(sched.function, event, "schedule"))
        executions = [
            self.start_execution(logical, payload, timeout=timeout or 900.0)
            for logical, payload in (machines or [])
        ]
        results = []
        for job in jobs:
            spec = self.functions[job.function]
            limit = timeout or (spec.timeout + 10.0) * (spec.max_retries + 1) + sum(self.retry_delays) + 30.0
            if not job.done.wait(limit):
                raise TimeoutError(f"{job.function} did not finish within {limit:.0f} s")
            if job.attempts:
                results.append(job.attempts[-1])
        for ex in executions:
            results.extend(ex.invocations)
        return results, executions

    def _machine_schedules(self, name: str | None) -> list[tuple[str, Any]] | None:
        """The state machine executions a tick starts: (logical id, input) of each enabled schedule,
        or of ``name``'s schedules; None when ``name`` is not a state machine."""
        machines = self.state_machines.machines if self.state_machines is not None else {}
        if name is None:
            return [
                (spec.logical_id, {} if payload is None else payload)
                for spec in machines.values()
                for _event, _expr, enabled, payload in spec.schedules
                if enabled
            ]
        spec = self.state_machines.find(name) if self.state_machines is not None else None
        if spec is None:
            return None
        if not spec.schedules:
            return [(spec.logical_id, {})]
        return [(spec.logical_id, {} if payload is None else payload) for *_, payload in spec.schedules]

    def start_execution(
        self,
        state_machine: str,
        execution_input: Any = None,
        *,
        name: str | None = None,
        timeout: float = 900.0,
    ) -> sfn.ExecutionResult:
        """Run one execution of a template state machine (logical id, name or ARN) on moto's States
        Language interpreter, its Lambda tasks in this process; waits for its end and returns it
        (``status`` SUCCEEDED, FAILED, ...; a failed execution raises nothing)."""
        if self.state_machines is None:
            raise TwinError("the twin is not started")
        with self._cond:
            self._pending += 1
            self._generation += 1
        try:
            result = self.state_machines.execute(
                state_machine, execution_input, execution=name, timeout=timeout
            )
        finally:
            with self._cond:
                self._pending -= 1
                self._generation += 1
                self._cond.notify_all()
        self.executions.append(result)
        return result

    def start_execution_async(
        self, state_machine: str, execution_input: Any = None, *, name: str | None = None
    ) -> str:
        """``StartExecution`` as a function calls it (``AWS_ENDPOINT_URL_SFN``): the execution's ARN at
        once; it runs in a thread and counts as pending work (``wait_idle`` waits for it). A name
        already started is :class:`ExecutionExistsError` (Step Functions' ``ExecutionAlreadyExists``)."""
        if self.state_machines is None:
            raise TwinError("the twin is not started")
        spec = self.state_machines.find(state_machine)
        if spec is None:
            raise TwinError(f"no state machine {state_machine!r} in this template")
        run_name = name or f"twin-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
        with self._cond:
            if (spec.logical_id, run_name) in self._execution_names:
                raise ExecutionExistsError(f"execution {run_name} of {spec.logical_id} was already started")
            self._execution_names.add((spec.logical_id, run_name))
            self._pending += 1
            self._generation += 1
        machines = self.state_machines

        def run() -> None:
            try:
                self.executions.append(machines.execute(spec.logical_id, execution_input, execution=run_name))
            except Exception as exc:  # noqa: BLE001 - logged; nothing waits on this thread
                log.error("%s execution %s did not run: %s", spec.logical_id, run_name, exc)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._generation += 1
                    self._cond.notify_all()

        threading.Thread(target=run, name=f"sfn-{run_name}", daemon=True).start()
        return spec.arn.replace(":stateMachine:", ":execution:") + f":{run_name}"

    def _schedule_timer(self, sched: Schedule) -> None:
        m = _RATE.match(sched.expression.strip())
        if not m:
            log.info(
                "schedule %s of %s (%s) fires only with `modelops local tick`",
                sched.event,
                sched.function,
                sched.expression,
            )
            return
        interval = int(m.group(1)) * _UNIT_S[m.group(2)]
        while not self._stop.wait(interval):
            if sched.enabled:
                event = (
                    sched.input
                    if sched.input is not None
                    else shapes.scheduled_event(
                        sched.arn, self.region, self.account_id, scheduler=sched.scheduler
                    )
                )
                self._submit(sched.function, event, "schedule")

    def _alarm_timer(self) -> None:
        assert self.alarm_interval
        while not self._stop.wait(self.alarm_interval):
            try:
                self.evaluate_alarms()
            except Exception as exc:  # noqa: BLE001
                log.warning("alarm evaluation failed: %s", exc)

    def _queue_metrics(self) -> None:
        """AWS/SQS queue-depth metrics of the template's queues (SQS publishes these itself)."""
        sqs = self.client("sqs")
        for logical, url in self.provisioned.queues.items():
            try:
                attrs = sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )["Attributes"]
            except Exception as exc:  # noqa: BLE001
                log.debug("queue metrics of %s: %s", logical, exc)
                continue
            dims = {"QueueName": url.rsplit("/", 1)[-1]}
            self.telemetry.metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                float(attrs.get("ApproximateNumberOfMessages", 0)),
                "Count",
                dims,
            )
            self.telemetry.metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesNotVisible",
                float(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                "Count",
                dims,
            )
            self.telemetry.metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesDelayed",
                float(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
                "Count",
                dims,
            )

    def evaluate_alarms(self, now: float | None = None) -> list[AlarmResult]:
        """Evaluate every alarm of the template now; transitions publish to the alarm's topics."""
        return self.alarms.evaluate(now)

    def record_api_metrics(self, api_name: str, stage: str, status: int, latency_ms: float) -> None:
        for dims in ({"ApiName": api_name}, {"ApiName": api_name, "Stage": stage}):
            self.telemetry.metric("AWS/ApiGateway", "Count", 1, "Count", dims)
            self.telemetry.metric(
                "AWS/ApiGateway", "4XXError", 1 if 400 <= status < 500 else 0, "Count", dims
            )
            self.telemetry.metric("AWS/ApiGateway", "5XXError", 1 if status >= 500 else 0, "Count", dims)
            self.telemetry.metric("AWS/ApiGateway", "Latency", latency_ms, "Milliseconds", dims)

    # ------------------------------------------------------------------ idle

    def _queues_empty(self) -> bool:
        sqs = self.client("sqs")
        for source in self.provisioned.sources:
            attrs = sqs.get_queue_attributes(
                QueueUrl=source.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
            if source.owned:
                names.append("ApproximateNumberOfMessagesNotVisible")
            if any(int(attrs.get(n, 0)) for n in names):
                return False
        return True

    def busy(self) -> dict[str, int]:
        with self._cond:
            return {
                "pending_events": self._pending,
                "running_invocations": self._running,
                "training_jobs": self.training.busy,
            }

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until every event has been handled: the twin's queues are empty, no async event is
        pending or being retried, no invocation and no training job runs. Then flush telemetry.
        Raises TimeoutError (saying what is still busy) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                gen = self._generation
                # The lock is also held by a handler the API stopped waiting for (it runs on).
                quiet = self._pending == 0 and self._running == 0 and not lambdas.INVOKE_LOCK.locked()
            if quiet and self.training.busy == 0 and self._queues_empty():
                with self._cond:
                    if gen == self._generation and self._pending == 0 and self._running == 0:
                        break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the twin was not idle after {timeout:.0f} s: {self.busy()}")
            with self._cond:
                self._cond.wait(min(0.05, left))
        self.telemetry.flush()
