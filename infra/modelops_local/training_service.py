"""The twin's training service: SageMaker's CreateTrainingJob, run as a local process (the "local"
backend, ``modelops.compute.local.LocalBackend``, posts to it).

``POST {control}/training-jobs`` takes the same request dict as SageMaker's ``CreateTrainingJob``
(docs/contracts.md, "Jobs") and answers ``{"TrainingJobArn": ...}`` at once; a background worker
(bounded concurrency) then does what SageMaker does:

1. downloads each input channel (an S3 prefix) from moto into ``input/data/{channel}``;
2. writes ``input/config/hyperparameters.json`` (and ``inputdataconfig.json``,
   ``resourceconfig.json``) and runs ``python -m modelops_training.entrypoint`` with the training
   container's variables (``SM_CHANNEL_TRAIN``, ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``,
   ``SM_HPS``, ``SM_INPUT_CONFIG_DIR``, ...), streaming its output lines to the twin's log.
   A script-mode job (``sagemaker_program`` / ``sagemaker_submit_directory`` in its hyperparameters,
   spec ``training.entry_point``) runs the same way: the entrypoint fetches the code archive from the
   twin's S3 (the process has the twin's endpoint) and runs the script in this job's own directory
   (``modelops_training.script``);
3. tars the model dir to ``{S3OutputPath}/{job}/output/model.tar.gz`` (and the output data dir to
   ``output.tar.gz``);
4. puts "SageMaker Training Job State Change" events (``source: aws.sagemaker``; InProgress, then
   Completed, Failed or Stopped) on the twin's default event bus, so rules such as convert's fire.

A job that runs past ``StoppingCondition.MaxRuntimeInSeconds`` is stopped (``Stopped``,
``SecondaryStatus: MaxRuntimeExceeded``). The entrypoint module can be replaced (tests use a tiny
fake): ``MODELOPS_TRAINING_ENTRYPOINT`` or ``Twin(training_entrypoint=...)``.

Unlike SageMaker's container, the job runs as the developer, so what a request may change is
narrower: its ``Environment`` may only name ``MODELOPS_*`` variables (not the twin's own, see
:data:`ENVIRONMENT_ALLOWED`); anything else (``PYTHONPATH``, ``LD_PRELOAD``, ``PATH``, ...) is a
``ValidationException`` naming the variable. The process starts in an empty working directory
(never the channel) with ``python -P``, so nothing downloaded is ever on its import path.

A channel's S3Prefix is matched on a path boundary: the object named exactly by the prefix (as its
file name) and every object below it as a folder (``prefix/...``, at its path below the prefix).
Keys that only share the prefix's characters are skipped: ``s3://b/d/train`` never brings
``d/train2/x.csv``, ``s3://b/d/data.csv`` never brings ``d/data.csv.bak``. (SageMaker itself matches
characters, so in AWS such siblings would also land in the channel: the backends name the dataset
object itself and ``modelops.ml.job.find_dataset`` picks it by name.) A key whose path would leave the
channel's folder (``..`` segments) is skipped too, compared by path components.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from modelops.domain.search import JOB_NAME_RE

log = logging.getLogger("modelops.twin.training")

DEFAULT_ENTRYPOINT = "modelops_training.entrypoint"

#: The ``Environment`` names a job may set: ``MODELOPS_*`` (the training code's own switches, such
#: as ``MODELOPS_MIXED_PRECISION``), except the twin's own variables. SageMaker's own limits: at
#: most 100 entries, values up to 512 characters.
ENVIRONMENT_ALLOWED = re.compile(r"MODELOPS_[A-Z0-9_]{1,100}\Z")
ENVIRONMENT_RESERVED = frozenset(
    {"MODELOPS_TRAINING_ENTRYPOINT", "MODELOPS_LOCAL_TRAINING_URL", "MODELOPS_LOCAL_TOKEN"}
)
_ENVIRONMENT_MAX = 100
_ENVIRONMENT_VALUE_MAX = 512


def check_environment(environment: Any) -> dict[str, str]:
    """A job's ``Environment``, or TrainingRequestError naming the first variable it may not set."""
    if environment is None:
        return {}
    if not isinstance(environment, dict):
        raise TrainingRequestError("ValidationException", "Environment must map names to strings")
    if len(environment) > _ENVIRONMENT_MAX:
        raise TrainingRequestError(
            "ValidationException", f"Environment has {len(environment)} entries; at most {_ENVIRONMENT_MAX}"
        )
    for name, value in environment.items():
        shown = str(name)[:100]
        if not isinstance(name, str) or not ENVIRONMENT_ALLOWED.match(name) or name in ENVIRONMENT_RESERVED:
            raise TrainingRequestError(
                "ValidationException",
                f"Environment variable {shown!r} is not allowed on the local twin (the job runs as you): "
                "a job may set MODELOPS_* variables only, not the twin's own",
            )
        if not isinstance(value, str) or len(value) > _ENVIRONMENT_VALUE_MAX:
            raise TrainingRequestError(
                "ValidationException",
                f"Environment variable {shown!r} must be a string of at most {_ENVIRONMENT_VALUE_MAX} characters",
            )
    return dict(environment)


class TrainingRequestError(Exception):
    """A request SageMaker would refuse: ``code`` is SageMaker's error type (HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise TrainingRequestError("ValidationException", f"{uri!r} is not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def _ms(dt: datetime | None) -> int | None:
    return int(dt.timestamp() * 1000) if dt else None


class TrainingService:
    """Runs training jobs; ``emit(source, detail_type, detail, resources)`` puts an event on the bus."""

    def __init__(
        self,
        *,
        s3: Any,
        emit: Any,
        region: str,
        account_id: str,
        child_env: dict[str, str],
        entrypoint: str | None = None,
        concurrency: int = 1,
        workdir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self._s3 = s3
        self._emit = emit
        self._region = region
        self._account = account_id
        self._child_env = child_env
        self.entrypoint = entrypoint or os.environ.get("MODELOPS_TRAINING_ENTRYPOINT") or DEFAULT_ENTRYPOINT
        self._python = python
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="twin-training")
        self._lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._active = 0
        self._own_workdir = workdir is None
        self._workdir = Path(workdir or tempfile.mkdtemp(prefix="modelops-twin-training-"))
        self._stopping = False

    # ---------------------------------------------------------------- API

    @property
    def busy(self) -> int:
        with self._lock:
            return self._active

    def arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self._region}:{self._account}:training-job/{name.lower()}"

    def create(self, request: Any) -> dict[str, str]:
        """Validate and queue a job (SageMaker's ``CreateTrainingJob``); raises TrainingRequestError."""
        if not isinstance(request, dict):
            raise TrainingRequestError("ValidationException", "the request body must be a JSON object")
        name = request.get("TrainingJobName")
        if not isinstance(name, str) or not JOB_NAME_RE.match(name):
            raise TrainingRequestError(
                "ValidationException",
                "1 validation error detected: Value at 'trainingJobName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
            )
        output = (request.get("OutputDataConfig") or {}).get("S3OutputPath")
        if not isinstance(output, str):
            raise TrainingRequestError("ValidationException", "OutputDataConfig.S3OutputPath is required")
        _split_s3(output)
        channels = request.get("InputDataConfig") or []
        if not isinstance(channels, list):
            raise TrainingRequestError("ValidationException", "InputDataConfig must be a list of channels")
        for ch in channels:
            src = ((ch or {}).get("DataSource") or {}).get("S3DataSource") or {}
            if not ch.get("ChannelName") or not isinstance(src.get("S3Uri"), str):
                raise TrainingRequestError(
                    "ValidationException", "each channel needs ChannelName and DataSource.S3DataSource.S3Uri"
                )
            if src.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise TrainingRequestError(
                    "ValidationException", "the local backend supports S3DataType S3Prefix only"
                )
            _split_s3(src["S3Uri"])
        hps = request.get("HyperParameters") or {}
        if not isinstance(hps, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in hps.items()
        ):
            raise TrainingRequestError("ValidationException", "HyperParameters must map strings to strings")
        environment = check_environment(request.get("Environment"))
        arn = self.arn(name)
        with self._lock:
            if self._stopping:
                raise TrainingRequestError("ServiceUnavailable", "the twin is stopping")
            if name in self.jobs:
                raise TrainingRequestError(
                    "ResourceInUse",
                    "Training job names must be unique within an AWS account and region, and a training job "
                    f"with this name already exists ({arn})",
                )
            now = datetime.now(UTC)
            job: dict[str, Any] = {
                "TrainingJobName": name,
                "TrainingJobArn": arn,
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Starting",
                "HyperParameters": dict(hps),
                "AlgorithmSpecification": request.get("AlgorithmSpecification") or {},
                "RoleArn": request.get("RoleArn"),
                "InputDataConfig": channels,
                "OutputDataConfig": request.get("OutputDataConfig"),
                "ResourceConfig": request.get("ResourceConfig") or {},
                "StoppingCondition": request.get("StoppingCondition") or {},
                "Environment": environment,
                "Tags": request.get("Tags") or [],
                "CreationTime": now,
                "LastModifiedTime": now,
                "ModelArtifacts": {"S3ModelArtifacts": f"{output.rstrip('/')}/{name}/output/model.tar.gz"},
                "log_tail": deque(maxlen=50),
            }
            self.jobs[name] = job
            self._active += 1
        try:
            self._pool.submit(self._run, name)
        except RuntimeError:
            with self._lock:
                self._active -= 1
                self.jobs.pop(name, None)
            raise TrainingRequestError("ServiceUnavailable", "the twin is stopping") from None
        return {"TrainingJobArn": arn}

    def describe(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                return None
            out = {k: v for k, v in job.items() if k != "log_tail"}
        for k, v in list(out.items()):
            if isinstance(v, datetime):
                out[k] = v.isoformat()
        return out

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        for proc in procs:
            _terminate(proc)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # ---------------------------------------------------------------- the job

    def _detail(self, job: dict[str, Any]) -> dict[str, Any]:
        detail: dict[str, Any] = {
            k: job[k]
            for k in (
                "TrainingJobName",
                "TrainingJobArn",
                "TrainingJobStatus",
                "SecondaryStatus",
                "HyperParameters",
                "AlgorithmSpecification",
                "RoleArn",
                "InputDataConfig",
                "OutputDataConfig",
                "ResourceConfig",
                "StoppingCondition",
                "ModelArtifacts",
            )
            if k in job
        }
        for k in ("CreationTime", "TrainingStartTime", "TrainingEndTime", "LastModifiedTime"):
            if job.get(k):
                detail[k] = _ms(job[k])
        if job.get("FailureReason"):
            detail["FailureReason"] = job["FailureReason"]
        detail["Tags"] = {t.get("Key"): t.get("Value") for t in job.get("Tags") or [] if isinstance(t, dict)}
        return detail

    def _publish(self, job: dict[str, Any]) -> None:
        try:
            self._emit(
                "aws.sagemaker",
                "SageMaker Training Job State Change",
                self._detail(job),
                [job["TrainingJobArn"]],
            )
        except Exception as exc:  # noqa: BLE001
            log.error(
                "training job %s: could not emit its state change event: %s", job["TrainingJobName"], exc
            )

    def _set(self, job: dict[str, Any], **changes: Any) -> None:
        with self._lock:
            job.update(changes)
            job["LastModifiedTime"] = datetime.now(UTC)

    def _run(self, name: str) -> None:
        job = self.jobs[name]
        root = self._workdir / name
        try:
            self._set(job, TrainingStartTime=datetime.now(UTC), SecondaryStatus="Downloading")
            self._publish(job)
            status, reason, secondary = self._train(job, root)
            self._set(
                job,
                TrainingJobStatus=status,
                SecondaryStatus=secondary,
                TrainingEndTime=datetime.now(UTC),
                **({"FailureReason": reason} if reason else {}),
            )
            log.info("training job %s: %s%s", name, status, f" ({reason})" if reason else "")
            self._publish(job)
        except Exception as exc:  # noqa: BLE001 - a job always ends with an event
            log.exception("training job %s failed in the twin", name)
            self._set(
                job, TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=f"ClientError: {exc}"
            )
            self._publish(job)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            with self._lock:
                self._active -= 1

    def _train(self, job: dict[str, Any], root: Path) -> tuple[str, str | None, str]:
        name = job["TrainingJobName"]
        data_dir = root / "input" / "data"
        config_dir = root / "input" / "config"
        model_dir = root / "model"
        output_dir = root / "output"
        output_data = output_dir / "data"
        work_dir = root / "work"  # the process's working directory: empty, nothing is downloaded here
        for d in (data_dir, config_dir, model_dir, output_data, work_dir):
            d.mkdir(parents=True, exist_ok=True)
        channels: list[str] = []
        for ch in job["InputDataConfig"]:
            cname = str(ch["ChannelName"])
            channels.append(cname)
            bucket, prefix = _split_s3(ch["DataSource"]["S3DataSource"]["S3Uri"])
            n = self._download(bucket, prefix, data_dir / cname)
            if n == 0:
                return (
                    "Failed",
                    f'ClientError: No S3 objects found under S3 URL "s3://{bucket}/{prefix}" given in input data source.',
                    "Failed",
                )
            log.info(
                "training job %s: channel %s: %d object(s) from s3://%s/%s", name, cname, n, bucket, prefix
            )
        hps = job["HyperParameters"]
        (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    str(c["ChannelName"]): {
                        "TrainingInputMode": "File",
                        "S3DistributionType": "FullyReplicated",
                    }
                    for c in job["InputDataConfig"]
                }
            )
        )
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
        )
        env = dict(self._child_env)
        env.update(job["Environment"])
        env.update(
            {
                "SM_MODEL_DIR": str(model_dir),
                "SM_OUTPUT_DIR": str(output_dir),
                "SM_OUTPUT_DATA_DIR": str(output_data),
                "SM_INPUT_DIR": str(root / "input"),
                "SM_INPUT_DATA_DIR": str(data_dir),
                "SM_INPUT_CONFIG_DIR": str(config_dir),
                "SM_CHANNELS": json.dumps(channels),
                "SM_HPS": json.dumps(hps),
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_CURRENT_HOST": "algo-1",
                "SM_NUM_GPUS": "0",
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_TRAINING_ENV": json.dumps(
                    {
                        "job_name": name,
                        "hyperparameters": hps,
                        "channel_input_dirs": {c: str(data_dir / c) for c in channels},
                    }
                ),
                "TRAINING_JOB_NAME": name,
                "TRAINING_JOB_ARN": job["TrainingJobArn"],
                "PYTHONUNBUFFERED": "1",
            }
        )
        for c in channels:
            env[f"SM_CHANNEL_{c.upper()}"] = str(data_dir / c)
        for k, v in hps.items():
            env[f"SM_HP_{re.sub(r'[^A-Za-z0-9]', '_', k).upper()}"] = v
        max_runtime = float((job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or 86400)
        self._set(job, SecondaryStatus="Training")
        # -P: the working directory is not put on sys.path (PYTHONPATH, the code roots, still is)
        cmd = [self._python, "-P", "-m", self.entrypoint]
        log.info("training job %s: %s", name, " ".join(cmd))
        with self._lock:
            if self._stopping:
                return "Stopped", "the twin stopped", "Stopped"
            proc = subprocess.Popen(
                cmd,
                cwd=str(work_dir),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
            self._procs[name] = proc
        ran_out = threading.Event()

        def out_of_time() -> None:
            ran_out.set()
            _terminate(proc)

        timer = threading.Timer(max_runtime, out_of_time)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                job["log_tail"].append(line)
                log.info("[%s] %s", name, line)
            code = proc.wait()
        finally:
            timer.cancel()
            with self._lock:
                self._procs.pop(name, None)
        if self._stopping:
            return "Stopped", "the twin stopped", "Stopped"
        if code != 0 and ran_out.is_set():
            return (
                "Stopped",
                f"Training job reached MaxRuntimeInSeconds ({max_runtime:.0f} s)",
                "MaxRuntimeExceeded",
            )
        if code != 0:
            failure = output_dir / "failure"
            reason = failure.read_text().strip()[:1024] if failure.exists() else ""
            if not reason:
                tail = " | ".join(list(job["log_tail"])[-3:])
                reason = f"AlgorithmError: ExitCode {code}" + (f": {tail}" if tail else "")
            return "Failed", reason[:1024], "Failed"
        self._set(job, SecondaryStatus="Uploading")
        bucket, prefix = _split_s3(job["OutputDataConfig"]["S3OutputPath"])
        base = f"{prefix.rstrip('/')}/{name}/output" if prefix.strip("/") else f"{name}/output"
        self._upload_tar(model_dir, bucket, f"{base}/model.tar.gz")
        if any(output_data.iterdir()):
            self._upload_tar(output_data, bucket, f"{base}/output.tar.gz")
        return "Completed", None, "Completed"

    def _download(self, bucket: str, prefix: str, dest: Path) -> int:
        """The channel's objects (``channel_relative``) into ``dest``; how many."""
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        count = 0
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                rel = channel_relative(prefix, key)
                if rel is None:
                    log.info(
                        "channel %s: s3://%s/%s is beside the prefix, not below it: skipped",
                        dest.name,
                        bucket,
                        key,
                    )
                    continue
                target = channel_path(root, rel)
                if target is None:
                    log.warning(
                        "channel %s: skipped s3://%s/%s (its path leaves the channel)", dest.name, bucket, key
                    )
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                self._s3.download_file(bucket, key, str(target))
                count += 1
        return count

    def _upload_tar(self, folder: Path, bucket: str, key: str) -> None:
        with tempfile.NamedTemporaryFile(suffix=".tar.gz", delete=False) as tmp:
            path = Path(tmp.name)
        try:
            with tarfile.open(path, "w:gz") as tar:
                for child in sorted(folder.iterdir()):
                    tar.add(child, arcname=child.name)
            self._s3.upload_file(str(path), bucket, key)
        finally:
            path.unlink(missing_ok=True)


def channel_relative(prefix: str, key: str) -> str | None:
    """Where ``key`` goes in a channel whose S3Prefix is ``prefix`` (a path relative to the
    channel folder), or None when the key is not on a path boundary of the prefix."""
    if key == prefix:
        return key.rsplit("/", 1)[-1]
    if not prefix or prefix.endswith("/"):
        return key[len(prefix) :] if key.startswith(prefix) else None
    if key.startswith(prefix + "/"):
        return key[len(prefix) + 1 :]
    return None


def channel_path(channel: Path, relative: str) -> Path | None:
    """Where ``relative`` (a key below the prefix's folder) lands in the resolved ``channel`` folder,
    or None when it would not be strictly inside it (compared by path components, so a channel
    ``train`` never lets a file reach ``train2``)."""
    target = (channel / relative.lstrip("/")).resolve()
    if target == channel or not target.is_relative_to(channel):
        return None
    return target


def _terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the job's process group (as SageMaker does), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
