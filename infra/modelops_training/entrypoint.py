"""The training image's entrypoint: ``python -m modelops_training.entrypoint [train] [--batch]``.

It adapts where the job runs to the one training-container contract (:mod:`modelops.ml.job`):

- SageMaker (and the local twin) run it under the training-container contract: the dataset in
  ``SM_CHANNEL_TRAIN``, the model dir ``SM_MODEL_DIR`` (SageMaker tars and uploads it), hyperparameters
  in ``/opt/ml/input/config/hyperparameters.json`` or ``SM_HPS``. SageMaker passes ``train`` as the
  argument; it is accepted and ignored.
- AWS Batch runs it with ``--batch``: the same hyperparameters come in ``SM_HPS``; the job downloads the
  dataset version from S3 (and production's input schema, ``input_schema_uri``, when the job has one),
  trains, and uploads the model dir as ``model.tar.gz`` to ``MODELOPS_OUTPUT_S3``
  (``s3://RegistryBucket/staging/{model}/{job}/output/model.tar.gz``), which is exactly where SageMaker
  would have put it. A failed Batch job leaves its reason beside it
  (``.../output/failure``).
- A child of a Batch array job (a search: ``search_mode=array`` in ``SM_HPS``, index
  ``AWS_BATCH_JOB_ARRAY_INDEX``) trains one trial and writes under
  ``staging/{model}/{job}/trials/{index:03d}/``: ``output/model.tar.gz`` when the trial completed, then
  ``trial.json`` (written last, also for a failed trial, which does not fail the child).

- Script mode (spec ``training.entry_point``; the hyperparameters name ``sagemaker_program`` and
  ``sagemaker_submit_directory``), on every backend that runs this image (Batch, the local twin,
  SageMaker with ``TrainingImageUri``): the model's own script runs instead of the built-in trainer, under
  the same contract (:mod:`modelops_training.script`); the code archive is downloaded from S3 here.

Exit status: 0 done, 2 bad input (dataset, spec, hyperparameters, code), 1 anything else; the reason is
printed to stderr and written to SageMaker's failure file (``SM_OUTPUT_DATA_DIR/../failure``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelops.domain import search as searching
from modelops.domain.errors import TrainingError
from modelops.ml.job import read_hyperparameters, run_sagemaker, write_failure
from modelops.ml.trainer import INPUT_SCHEMA_FILE
from modelops.storage import keys
from modelops_training import script as scripting


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri[:200]!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def tar_model_dir(model_dir: Path, dest: Path) -> Path:
    """``model.tar.gz`` with the model dir's contents at its root (SageMaker's layout)."""
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return dest


def run_job(env: Mapping[str, str], s3: Any = None) -> int:
    """One job under the SageMaker contract: the model's own script when the hyperparameters name one
    (script mode), else the built-in trainer (:func:`modelops.ml.job.run_sagemaker`, unchanged)."""
    try:
        script = scripting.script_of(read_hyperparameters(env))
    except TrainingError:
        script = None  # no readable hyperparameters: run_sagemaker reports it as it always has
    except scripting.ScriptError as exc:
        return _script_failed(env, exc)
    if script is None:
        return run_sagemaker(env)
    return run_script_job(env, script, s3)


def run_script_job(env: Mapping[str, str], script: scripting.Script, s3: Any = None) -> int:
    """Download the script's archive and run it (:func:`modelops_training.script.run_script`)."""
    with tempfile.TemporaryDirectory(prefix="modelops-code-") as tmp:
        archive = Path(tmp) / "code.tar.gz"
        try:
            bucket, key = _split_s3(script.submit_directory)
            if s3 is None:
                import boto3

                s3 = boto3.client("s3")
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:  # noqa: BLE001 - reported below, the job fails
            return _script_failed(
                env,
                scripting.ScriptError(
                    "training_failed", f"could not download the code archive {script.submit_directory}: {exc}"
                ),
            )
        try:
            scripting.run_script(script, archive, read_hyperparameters(env), env, log=_log)
        except scripting.ScriptError as exc:
            return _script_failed(env, exc)
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


def _script_failed(env: Mapping[str, str], exc: scripting.ScriptError) -> int:
    message = exc.reason()
    print(f"training failed: {message}", file=sys.stderr, flush=True)
    write_failure(Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")), message)
    return exc.status


def run_batch(env: Mapping[str, str], s3: Any = None) -> int:
    """One AWS Batch job: download, train (the SageMaker code path), upload the archive."""
    output_uri = env.get("MODELOPS_OUTPUT_S3", "")
    with tempfile.TemporaryDirectory(prefix="modelops-train-") as tmp:
        root = Path(tmp)
        channel, model_dir, output_data = root / "data" / "train", root / "model", root / "output" / "data"
        for d in (channel, model_dir, output_data):
            d.mkdir(parents=True)
        try:
            out_bucket, out_key = _split_s3(output_uri)
            hps = json.loads(env.get("SM_HPS", ""))
            if not isinstance(hps, dict) or not hps.get("dataset_uri"):
                raise ValueError("SM_HPS must be a JSON object with dataset_uri")
            if s3 is None:
                import boto3

                s3 = boto3.client("s3")
            if hps.get(searching.SEARCH_MODE_HP) == "array":
                out_key = _array_output_key(out_key, env.get("AWS_BATCH_JOB_ARRAY_INDEX", ""))
            bucket, key = _split_s3(str(hps["dataset_uri"]))
            extra = {"VersionId": str(hps["dataset_version_id"])} if hps.get("dataset_version_id") else {}
            s3.download_file(bucket, key, str(channel / key.rsplit("/", 1)[-1]), ExtraArgs=extra or None)
            _download_input_schema(s3, hps, channel)
        except Exception as exc:  # noqa: BLE001 - reported below, the job fails
            message = f"training_failed: could not set up the Batch job: {type(exc).__name__}: {exc}"
            print(message, file=sys.stderr, flush=True)
            write_failure(output_data, message)
            return 2 if isinstance(exc, ValueError) else 1
        job_env = {
            **env,
            "SM_CHANNEL_TRAIN": str(channel),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(output_data),
            "SM_INPUT_CONFIG_DIR": str(root / "config"),  # empty: SM_HPS is used
        }
        status = run_job(job_env, s3)
        prefix = out_key.rsplit("/", 1)[0] + "/"
        trial = output_data / searching.TRIAL_FILE
        if status == 0 and trial.is_file():  # an array child: the trial's record is written last
            trial_prefix = prefix.removesuffix("output/")
            if json.loads(trial.read_text()).get("state") == "complete":
                archive = tar_model_dir(model_dir, root / "model.tar.gz")
                s3.upload_file(str(archive), out_bucket, out_key)
            s3.put_object(Bucket=out_bucket, Key=trial_prefix + searching.TRIAL_FILE, Body=trial.read_bytes())
            print(f"trial record s3://{out_bucket}/{trial_prefix}{searching.TRIAL_FILE}", flush=True)
        elif status == 0:
            archive = tar_model_dir(model_dir, root / "model.tar.gz")
            s3.upload_file(str(archive), out_bucket, out_key)
            print(f"uploaded s3://{out_bucket}/{out_key}", flush=True)
        else:
            failure = output_data.parent / "failure"
            if failure.is_file():
                s3.put_object(Bucket=out_bucket, Key=prefix + "failure", Body=failure.read_bytes())
        return status


def _download_input_schema(s3: Any, hps: Mapping[str, Any], channel: Path) -> bool:
    """Production's ``input_schema.json`` (the ``input_schema_uri`` hyperparameter, when train_trigger
    wrote one) into the channel beside the rows, where SageMaker's channel holds it; True when it did."""
    uri = str(hps.get("input_schema_uri") or "")
    if not uri:
        return False
    bucket, key = _split_s3(uri)
    s3.download_file(bucket, key, str(channel / INPUT_SCHEMA_FILE))
    return True


def _array_output_key(out_key: str, index: str) -> str:
    """``staging/{model}/{job}/output/model.tar.gz`` -> ``.../{job}/trials/{index:03d}/output/model.tar.gz``."""
    if not index.isdigit():
        raise ValueError(f"an array child needs AWS_BATCH_JOB_ARRAY_INDEX (got {index[:20]!r})")
    staging = out_key.removesuffix("output/model.tar.gz")
    if staging == out_key:
        raise ValueError(f"MODELOPS_OUTPUT_S3 does not end in output/model.tar.gz: {out_key[:200]!r}")
    return keys.output_artifact(keys.batch_trial_prefix(staging, int(index)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops_training.entrypoint", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "mode", nargs="?", default="train", choices=["train"], help="SageMaker passes 'train'"
    )
    parser.add_argument(
        "--batch", action="store_true", help="AWS Batch: download from S3, upload to MODELOPS_OUTPUT_S3"
    )
    args = parser.parse_args(argv)
    if args.batch:
        return run_batch(os.environ)
    return run_job(os.environ)


if __name__ == "__main__":
    sys.exit(main())
