"""The training job's contract: what a job container is given and what it must leave behind.

:func:`run_sagemaker` runs one job under SageMaker's training-container contract, the same for every
backend (SageMaker, Batch via ``modelops_training.entrypoint``, the local twin):

- input: the dataset in the ``train`` channel (``SM_CHANNEL_TRAIN``; :func:`find_dataset`), beside
  it, once the model has a production version, that version's input schema (``input_schema.json``); the
  hyperparameters in ``/opt/ml/input/config/hyperparameters.json`` or ``SM_HPS``
  (:func:`read_hyperparameters`), the model dir ``SM_MODEL_DIR`` and ``SM_OUTPUT_DATA_DIR``;
- output: the model dir (:func:`modelops.ml.trainer.train`), or on failure the reason on stderr and in
  SageMaker's failure file (:func:`write_failure`), with exit status 0 done, 2 bad input, 1 anything else;
- a search (``training.search``) runs in the job (:func:`modelops.ml.search.run_search`), or one trial of
  it (:mod:`modelops.ml.trials`): SageMaker stops a tuning trial with SIGTERM (:func:`on_sigterm`), a
  Batch array child learns its trial from ``AWS_BATCH_JOB_ARRAY_INDEX``.

Kept Python 3.10 compatible: the AWS TensorFlow training image runs 3.10.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelops.domain import search as searching
from modelops.domain.errors import DatasetRejectedError, ModelOpsError, SpecError, TrainingError
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.ml import search, trainer, trials
from modelops.ml.trainer import Log, print_line

HYPERPARAMETERS_FILE = "/opt/ml/input/config/hyperparameters.json"
REQUIRED_HYPERPARAMETERS = ("model", "job", "spec")


def read_hyperparameters(env: Mapping[str, str]) -> dict[str, str]:
    """Hyperparameters as strings: the SageMaker config file (exact strings) when present, else ``SM_HPS``.

    The SageMaker training toolkit JSON-decodes values for ``SM_HPS``, so a value may arrive as an
    object (the spec) or a number; both are turned back into the strings they were sent as.
    """
    config_dir = env.get("SM_INPUT_CONFIG_DIR")
    path = Path(config_dir) / "hyperparameters.json" if config_dir else Path(HYPERPARAMETERS_FILE)
    raw: Any = None
    if path.is_file():
        raw = json.loads(path.read_text())
    elif env.get("SM_HPS"):
        raw = json.loads(env["SM_HPS"])
    if not isinstance(raw, dict):
        raise TrainingError(f"no hyperparameters: neither {path} nor SM_HPS holds a JSON object")
    out: dict[str, str] = {}
    for k, v in raw.items():
        out[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))
    missing = [k for k in REQUIRED_HYPERPARAMETERS if not out.get(k)]
    if missing:
        raise TrainingError(f"hyperparameters lack {', '.join(missing)}")
    return out


def find_dataset(channel: Path, dataset_uri: str = "") -> Path:
    """The CSV in the ``train`` channel: the file named like the dataset's key, or the only file
    (``input_schema.json``, production's input schema beside the rows, is not a dataset)."""
    if not channel.is_dir():
        raise TrainingError(f"the train channel {channel} does not exist")
    files = sorted(p for p in channel.rglob("*") if p.is_file() and p.name != trainer.INPUT_SCHEMA_FILE)
    name = dataset_uri.rsplit("/", 1)[-1] if dataset_uri else ""
    named = [p for p in files if name and p.name == name]
    if len(named) == 1:
        return named[0]
    if len(files) == 1:
        return files[0]
    if files and all(p.name.startswith(PART_PREFIX) and p.suffix == ".csv" for p in files):
        work = Path(tempfile.mkdtemp(prefix="modelops-parts-"))
        schema = channel / trainer.INPUT_SCHEMA_FILE
        if schema.is_file():  # production's input schema stays beside the rows the trainer loads
            shutil.copyfile(schema, work / trainer.INPUT_SCHEMA_FILE)
        return join_parts(files, work / "train.csv")
    raise TrainingError(
        f"the train channel holds {len(files)} files and none is unambiguously {name or 'the dataset'!r}"
    )


PART_PREFIX = "part-"


def join_parts(parts: list[Path], dest: Path) -> Path:
    """A dataset of many parts (the platform's ``inputs/{model}/{job}/train/part-NNNNN.csv``, each with
    the same header) as one CSV at ``dest``: the first part's header, then every part's rows in name
    order. A part whose header differs is a :class:`TrainingError` naming it. Beside it,
    ``parts.sha256``: the SHA-256 of the parts' SHA-256s (what ``dataset_sha256`` names for parts)."""
    header: bytes | None = None
    digests: list[str] = []
    with open(dest, "wb") as out:
        for part in sorted(parts, key=lambda p: p.name):
            with open(part, "rb") as fh:
                first = fh.readline()
                if header is None:
                    header = first.rstrip(b"\r\n")
                    out.write(header + b"\n")
                elif first.rstrip(b"\r\n") != header:
                    raise TrainingError(f"part {part.name} of the train channel has another header")
                h = hashlib.sha256(first)
                last = b"\n"
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                    last = chunk[-1:]
                if last != b"\n":
                    out.write(b"\n")
                digests.append(h.hexdigest())
    # what the job was started for: the SHA-256 of the parts' SHA-256s in part order
    digest = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    (dest.parent / trainer.PARTS_DIGEST_FILE).write_text(digest + "\n", encoding="utf-8")
    return dest


def write_failure(output_data_dir: Path, message: str) -> Path | None:
    """SageMaker's ``/opt/ml/output/failure`` (``SM_OUTPUT_DATA_DIR/../failure``); its first 1 KiB is
    the job's FailureReason."""
    path = output_data_dir.parent / "failure"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:4096])
    except OSError:
        return None
    return path


def on_sigterm(event: threading.Event) -> Callable[[], None]:
    """Set ``event`` on SIGTERM (SageMaker's stop: early stopping, Hyperband, StopTrainingJob) so the
    trial ends at the next epoch's end and still writes its model; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())

    def undo() -> None:
        signal.signal(signal.SIGTERM, previous)

    return undo


def array_index(env: Mapping[str, str], spec: ModelSpec) -> int:
    """The trial a Batch array child runs: ``AWS_BATCH_JOB_ARRAY_INDEX``, below the search's ``max_trials``."""
    assert spec.training.search is not None
    raw = env.get("AWS_BATCH_JOB_ARRAY_INDEX", "")
    if not raw.isdigit() or int(raw) >= spec.training.search.max_trials:
        raise TrainingError(
            f"AWS_BATCH_JOB_ARRAY_INDEX {raw[:20]!r} is not a trial index below {spec.training.search.max_trials}"
        )
    return int(raw)


def run_sagemaker(env: Mapping[str, str] | None = None, log: Log = print_line) -> int:
    """Run one job under the SageMaker training-container contract. Exit status: 0 done, 2 bad input
    (dataset, spec, hyperparameters), 1 anything else; on failure the reason goes to stderr and to
    the failure file.

    With ``training.search`` in the spec the job is a search (docs/training.md "Search"): the whole
    search in this job (no ``search_mode`` hyperparameter: local twin, single Batch job), one trial of a
    SageMaker tuning job (``search_mode=tuning``: the tuned values come as hyperparameters), or one
    child of a Batch array job (``search_mode=array``: trial ``AWS_BATCH_JOB_ARRAY_INDEX``)."""
    env = os.environ if env is None else env
    channel = Path(env.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    model_dir = Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_data = Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    mixed = env.get("MODELOPS_MIXED_PRECISION", "") in ("1", "true", "True")
    try:
        hps = read_hyperparameters(env)
        spec = parse_spec(hps["spec"])
        data_path = find_dataset(channel, hps.get("dataset_uri", ""))
        mode = hps.get(searching.SEARCH_MODE_HP, "")
        log(f"training {hps.get('model')} job {hps.get('job')} on {data_path.name}")
        if spec.training.search is None and mode:
            raise TrainingError(f"{searching.SEARCH_MODE_HP}={mode!r} but the spec has no training.search")
        if mode == "":  # one model, or the whole search in this job
            run: Callable[..., Any] = trainer.train if spec.training.search is None else search.run_search
            run(
                data_path,
                spec,
                model_dir,
                hyperparameters=hps,
                output_data_dir=output_data,
                mixed_precision=mixed,
                log=log,
            )
        elif mode == "tuning":
            stop = threading.Event()
            undo = on_sigterm(stop)
            try:
                trials.run_tuning_trial(
                    data_path,
                    spec,
                    model_dir,
                    hps,
                    output_data,
                    training_job=env.get("TRAINING_JOB_NAME"),
                    stop=stop,
                    mixed=mixed,
                    log=log,
                )
            finally:
                undo()
        elif mode == "array":
            trials.run_array_trial(
                data_path, spec, model_dir, hps, output_data, array_index(env, spec), mixed=mixed, log=log
            )
        else:
            raise TrainingError(f"unknown {searching.SEARCH_MODE_HP} {mode[:40]!r} (tuning or array)")
        return 0
    except (DatasetRejectedError, SpecError, TrainingError) as exc:
        message = f"{exc.code}: {exc}"
        status = 2
    except ModelOpsError as exc:
        message = f"{exc.code}: {exc}"
        status = 1
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        message = f"training failed ({type(exc).__name__}): {exc}"
        status = 1
    print(f"training failed: {message}", file=sys.stderr, flush=True)
    write_failure(output_data, message)
    return status
