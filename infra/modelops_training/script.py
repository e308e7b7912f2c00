"""Script mode in the project's training image (docs/training.md "Bring your own script"): run a model's
own training script under SageMaker's script-mode contract, as the AWS TensorFlow image's toolkit does.

A job is in script mode when its hyperparameters name ``sagemaker_program`` (the entry point) and
``sagemaker_submit_directory`` (the packaged code, ``s3://RegistryBucket/code/{model}/{sha256}.tar.gz``;
both JSON-encoded strings, as the SageMaker Python SDK sends them). :func:`run_script` then, in the job's
own directory (the parent of ``SM_MODEL_DIR``: ``/opt/ml`` on SageMaker):

1. checks the archive against the ``code_sha256`` hyperparameter and extracts it safely
   (``modelops.domain.archive.safe_extract``: no links, no ``..``, bounded) into ``code/``;
2. with a ``requirements.txt``, ``pip install -r requirements.txt --target deps/`` (a failure is the
   job's failure, ``requirements_failed``, with pip's last lines);
3. runs ``python ENTRY_POINT --hp value ...`` in ``code/`` with the ``SM_*`` environment
   (:func:`script_environment`), its output streamed to the job's log;
4. checks what it left: a SavedModel (``saved_model.pb``) or a ``.keras`` file under ``SM_MODEL_DIR``,
   else ``script_no_model``. Files it wrote elsewhere in the job's directory are named in the log and
   never uploaded (only ``SM_MODEL_DIR`` is): a process cannot be kept out of the rest of the file
   system, so this is reported, not prevented.

A failure is a :class:`ScriptError` (code, message, exit status); the entrypoint writes it to the failure
file, whose first KiB becomes the job's FailureReason (and so ``TrainingJobFailed``'s reason and the alert).
No TensorFlow here: the script imports what it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.domain.archive import safe_extract
from modelops.domain.errors import ArtifactInvalidError
from modelops.domain.spec import code_path_problem

PROGRAM_HP = "sagemaker_program"
SUBMIT_DIRECTORY_HP = "sagemaker_submit_directory"
CODE_SHA256_HP = "code_sha256"
REQUIREMENTS_FILE = "requirements.txt"
CURRENT_HOST = "algo-1"
LOG_TAIL_LINES = 20
MAX_CODE_BYTES = 512 * 1024 * 1024
"""The most the code archive may unpack to (train_trigger packs at most 20 MB by default)."""
MAX_CODE_MEMBERS = 20_000
PIP_TIMEOUT_S = 1800


class ScriptError(Exception):
    """Script mode failed: ``code`` (``script_failed``, ``script_no_model``, ``requirements_failed``,
    ``bad_code``), a message for the failure file, and the job's exit status (2 bad input, 1 else)."""

    def __init__(self, code: str, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def reason(self) -> str:
        return f"{self.code}: {self}"


@dataclass(frozen=True)
class Script:
    program: str
    """The entry point, relative to the code folder (``train.py``)."""
    submit_directory: str
    """The archive's ``s3://`` URI."""
    sha256: str
    """What the archive must hash to (empty: unchecked)."""


def _decoded(value: Any) -> Any:
    """A hyperparameter as the SageMaker toolkit hands it to a script: JSON-decoded when it is JSON,
    else the string itself."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def script_of(hps: Mapping[str, str]) -> Script | None:
    """The script a job's hyperparameters name, or None (the built-in trainer)."""
    program, submit = _decoded(hps.get(PROGRAM_HP, "")), _decoded(hps.get(SUBMIT_DIRECTORY_HP, ""))
    if not program and not submit:
        return None
    if not isinstance(program, str) or not isinstance(submit, str) or not program or not submit:
        raise ScriptError(
            "bad_hyperparameters", f"script mode needs both {PROGRAM_HP} and {SUBMIT_DIRECTORY_HP}", 2
        )
    problem = code_path_problem(program)
    if problem:
        raise ScriptError("bad_hyperparameters", f"{PROGRAM_HP} {program[:80]!r} has {problem}", 2)
    return Script(program, submit, str(hps.get(CODE_SHA256_HP, "")))


def user_hyperparameters(hps: Mapping[str, str]) -> dict[str, Any]:
    """What the script is given (``SM_HPS``, its arguments): every hyperparameter but SageMaker's own
    ``sagemaker_*``, JSON-decoded where it is JSON (the spec arrives as an object)."""
    return {k: _decoded(v) for k, v in sorted(hps.items()) if not k.startswith("sagemaker_")}


def command_arguments(user_hps: Mapping[str, Any]) -> list[str]:
    """``--name value`` per hyperparameter, sorted (the toolkit's ``to_cmd_args``): a script parses them
    with ``argparse``'s ``parse_known_args``, or ignores them and reads ``SM_HPS``."""
    out: list[str] = []
    for k, v in user_hps.items():
        out += [f"--{k}", v if isinstance(v, str) else json.dumps(v, sort_keys=True)]
    return out


def gpu_count() -> int:
    """How many GPUs ``nvidia-smi -L`` lists (0 without one)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def script_environment(
    env: Mapping[str, str], script: Script, hps: Mapping[str, str], code_dir: Path, deps_dir: Path | None
) -> dict[str, str]:
    """The script's environment: the job's, plus what SageMaker's toolkit sets for a script (``SM_MODEL_DIR``,
    ``SM_CHANNEL_TRAIN``, ``SM_CHANNELS``, ``SM_HPS``, ``SM_HP_*``, ``SM_NUM_GPUS``, ``SM_NUM_CPUS``,
    ``SM_OUTPUT_DATA_DIR``, ``SM_OUTPUT_DIR``, ``SM_HOSTS``, ``SM_CURRENT_HOST``, ``SM_MODULE_DIR``,
    ``SM_MODULE_NAME``, ``SM_USER_ENTRY_POINT``, ``SM_USER_ARGS``, ``SM_TRAINING_ENV``), and ``deps/`` and
    the code folder on ``PYTHONPATH``."""
    model_dir = env.get("SM_MODEL_DIR", "/opt/ml/model")
    output_data = env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    channel = env.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    user = user_hyperparameters(hps)
    args = command_arguments(user)
    gpus = env.get("SM_NUM_GPUS") or str(gpu_count())
    cpus = env.get("SM_NUM_CPUS") or str(os.cpu_count() or 1)
    hosts = env.get("SM_HOSTS") or json.dumps([CURRENT_HOST])
    host = env.get("SM_CURRENT_HOST") or CURRENT_HOST
    out = dict(env)
    out.update(
        {
            "SM_MODEL_DIR": model_dir,
            "SM_CHANNEL_TRAIN": channel,
            "SM_CHANNELS": env.get("SM_CHANNELS") or json.dumps(["train"]),
            "SM_HPS": json.dumps(user, sort_keys=True),
            "SM_OUTPUT_DATA_DIR": output_data,
            "SM_OUTPUT_DIR": env.get("SM_OUTPUT_DIR") or str(Path(output_data).parent),
            "SM_NUM_GPUS": gpus,
            "SM_NUM_CPUS": cpus,
            "SM_HOSTS": hosts,
            "SM_CURRENT_HOST": host,
            "SM_MODULE_DIR": script.submit_directory,
            "SM_MODULE_NAME": script.program.rsplit("/", 1)[-1].removesuffix(".py"),
            "SM_USER_ENTRY_POINT": script.program,
            "SM_USER_ARGS": json.dumps(args),
            "SM_TRAINING_ENV": json.dumps(
                {
                    "job_name": env.get("TRAINING_JOB_NAME") or str(hps.get("job", "")),
                    "hyperparameters": user,
                    "channel_input_dirs": {"train": channel},
                    "model_dir": model_dir,
                    "output_data_dir": output_data,
                    "hosts": json.loads(hosts),
                    "current_host": host,
                    "num_gpus": int(gpus) if gpus.isdigit() else 0,
                    "num_cpus": int(cpus) if cpus.isdigit() else 1,
                    "module_name": script.program.removesuffix(".py"),
                    "user_entry_point": script.program,
                },
                sort_keys=True,
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for k, v in user.items():
        out[f"SM_HP_{re.sub(r'[^A-Za-z0-9]', '_', k).upper()}"] = v if isinstance(v, str) else json.dumps(v)
    paths = [str(p) for p in (deps_dir, code_dir) if p is not None]
    out["PYTHONPATH"] = os.pathsep.join(
        [*paths, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    return out


def has_model(model_dir: Path) -> bool:
    """A SavedModel (``saved_model.pb`` at any depth) or a ``.keras`` file under ``model_dir``."""
    if not model_dir.is_dir():
        return False
    return any(
        p.is_file() and (p.name == "saved_model.pb" or p.suffix == ".keras") for p in model_dir.rglob("*")
    )


def _files(root: Path, skip: tuple[Path, ...]) -> set[Path]:
    """Every file under ``root`` but those under ``skip``."""
    out: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        out.update(here / f for f in filenames)
    return out


def _run(
    cmd: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    timeout: float | None = None,
) -> tuple[int, list[str]]:
    """Run ``cmd``, streaming its output (stdout and stderr together) to ``log``; its exit status and the
    last :data:`LOG_TAIL_LINES` lines."""
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line[:500])
            log(line)
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = -9
        tail.append(f"(killed after {timeout:.0f} s)")
    return code, list(tail)


def failure_message(head: str, tail: list[str]) -> str:
    """``head``, the last line of the log (an exception's type and message) and the last lines: the
    first KiB is what the job's FailureReason shows."""
    lines = [line for line in tail if line.strip()]
    last = lines[-1].strip() if lines else ""
    text = head + (f": {last[:300]}" if last else "")
    if lines:
        text += "\n--- last lines of its log ---\n" + "\n".join(lines)
    return text


def run_script(
    script: Script,
    archive: Path,
    hps: Mapping[str, str],
    env: Mapping[str, str],
    *,
    log: Callable[[str], None] = print,
    python: str = sys.executable,
) -> None:
    """Run ``script`` from the downloaded ``archive`` in the job's directory (the parent of
    ``SM_MODEL_DIR``); returns when the script left a model, else raises :class:`ScriptError`."""
    model_dir = Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_data = Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    job_dir = model_dir.parent
    code_dir, deps_dir = job_dir / "code", job_dir / "deps"
    if script.sha256:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != script.sha256:
            raise ScriptError(
                "bad_code",
                f"the code archive's SHA-256 is {digest}, not {script.sha256} (it changed after packaging)",
            )
    try:
        safe_extract(archive, code_dir, max_bytes=MAX_CODE_BYTES, max_members=MAX_CODE_MEMBERS)
    except ArtifactInvalidError as exc:
        raise ScriptError("bad_code", f"the code archive cannot be unpacked: {exc}", 2) from exc
    entry = code_dir / script.program
    if not entry.is_file():
        raise ScriptError("bad_code", f"the code archive has no {script.program!r} ({PROGRAM_HP})", 2)
    model_dir.mkdir(parents=True, exist_ok=True)
    output_data.mkdir(parents=True, exist_ok=True)
    requirements = code_dir / REQUIREMENTS_FILE
    if requirements.is_file():
        log(f"installing {REQUIREMENTS_FILE} into {deps_dir}")
        pip = [
            python,
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--target",
            str(deps_dir),
            "-r",
            str(requirements),
        ]
        code, tail = _run(pip, cwd=code_dir, env=env, log=log, timeout=PIP_TIMEOUT_S)
        if code != 0:
            raise ScriptError(
                "requirements_failed",
                failure_message(f"pip could not install {REQUIREMENTS_FILE} (exit status {code})", tail),
                2,
            )
    script_env = script_environment(env, script, hps, code_dir, deps_dir if deps_dir.is_dir() else None)
    skip = (model_dir, output_data, code_dir, deps_dir)
    before = _files(job_dir, skip)
    log(f"running {script.program} (script mode)")
    code, tail = _run(
        [python, script.program, *json.loads(script_env["SM_USER_ARGS"])],
        cwd=code_dir,
        env=script_env,
        log=log,
    )
    stray = sorted(str(p.relative_to(job_dir)) for p in _files(job_dir, skip) - before)
    if stray:
        log(
            f"warning: {script.program} wrote {len(stray)} file(s) outside SM_MODEL_DIR and SM_OUTPUT_DATA_DIR, "
            f"which are not kept: {', '.join(stray[:20])}"
        )
    if code != 0:
        raise ScriptError(
            "script_failed", failure_message(f"{script.program} exited with status {code}", tail)
        )
    if not has_model(model_dir):
        written = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
        what = f"wrote {', '.join(written[:10])} but" if written else "wrote nothing there and"
        raise ScriptError(
            "script_no_model",
            f"the script wrote no model: {script.program} {what} left no SavedModel (saved_model.pb) or .keras "
            f"file in SM_MODEL_DIR",
        )
    log(f"{script.program} left a model in SM_MODEL_DIR")
