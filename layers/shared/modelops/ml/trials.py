"""One trial of a search that runs outside this job: a training job of a SageMaker tuning job
(:func:`run_tuning_trial`) or a child of a Batch array job (:func:`run_array_trial`).

Each trains once with :func:`modelops.ml.trainer.train` and a :class:`~modelops.ml.trainer.TrialHook`
(the objective printed after every epoch, for SageMaker's early stopping and Hyperband); the search
that runs inside one job is :mod:`modelops.ml.search`. What the container is given (the array index,
the training job's name, SIGTERM) is read by :mod:`modelops.ml.job`.

Python 3.10 compatible (the AWS TensorFlow training image runs 3.10).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelops.domain import search as searching
from modelops.domain.errors import TrainingError
from modelops.domain.spec import ModelSpec
from modelops.ml import search, trainer
from modelops.ml.trainer import Log, TrialHook, print_line


def run_tuning_trial(
    data_path: Path,
    spec: ModelSpec,
    model_dir: Path,
    hps: Mapping[str, str],
    output_data: Path,
    *,
    training_job: str | None = None,
    stop: threading.Event | None = None,
    mixed: bool = False,
    log: Log = print_line,
) -> dict[str, Any]:
    """One training job of a SageMaker tuning job: the tuned values arrive as hyperparameters; the
    objective is printed once per epoch (for SageMaker's early stopping / Hyperband) and once at the end.
    ``stop`` set (SIGTERM) ends training at the next epoch's end and still writes the model."""
    assert spec.training.search is not None
    params = searching.params_from_hyperparameters(hps, spec.training.search)
    log("trial " + _shown(params))
    hook = TrialHook(metric=spec.metric, log_each_epoch=True, stop=stop)
    trial = {"mode": "tuning", "params": params, "training_job": training_job}
    metrics = _train(data_path, spec, params, model_dir, hps, output_data, hook, trial, mixed=mixed, log=log)
    if hook.final is None or not math.isfinite(hook.final):
        raise TrainingError(f"the trial's objective {spec.metric} is not finite (training diverged)")
    return metrics


def run_array_trial(
    data_path: Path,
    spec: ModelSpec,
    model_dir: Path,
    hps: Mapping[str, str],
    output_data: Path,
    index: int,
    *,
    mixed: bool = False,
    log: Log = print_line,
) -> dict[str, Any]:
    """One child of a Batch array job: trial ``index`` with the parameters the seeded random sampler gives
    that index (the same as trial ``index`` of an in-job random search).

    Writes ``trial.json`` to ``output_data`` whether the trial completes or fails: a failed trial is a
    record, not a failed job. Bad data still fails the job (raised before training)."""
    assert spec.training.search is not None
    trainer.check_dataset(data_path, spec, hps)
    params = search.sample_params(spec.training.search, searching.seed(spec), index)
    log(f"trial {index} " + _shown(params))
    hook = TrialHook(metric=spec.metric, log_each_epoch=True)
    started = time.time()
    try:
        trial = {"mode": "array", "number": index, "params": params}
        _train(data_path, spec, params, model_dir, hps, output_data, hook, trial, mixed=mixed, log=log)
        if hook.final is None or not math.isfinite(hook.final):
            raise TrainingError(f"the objective {spec.metric} is not finite (training diverged)")
        doc = searching.trial_doc(
            index,
            params,
            "complete",
            value=hook.final,
            epochs_run=hook.epochs_run,
            duration_s=time.time() - started,
        )
    except Exception as exc:  # noqa: BLE001 - a failed trial is recorded; the search goes on
        log(f"trial {index} failed: {searching.short_error(exc)}")
        doc = searching.trial_doc(
            index,
            params,
            "failed",
            epochs_run=hook.epochs_run or None,
            duration_s=time.time() - started,
            error=searching.short_error(exc),
        )
    output_data.mkdir(parents=True, exist_ok=True)
    trainer.write_json(output_data / searching.TRIAL_FILE, doc)
    return doc


def _shown(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in searching.hyperparameter_strings(params).items())


def _train(
    data_path: Path,
    spec: ModelSpec,
    params: Mapping[str, Any],
    model_dir: Path,
    hps: Mapping[str, str],
    output_data: Path,
    hook: TrialHook,
    trial: Mapping[str, Any],
    *,
    mixed: bool,
    log: Log,
) -> dict[str, Any]:
    """Train the spec with the trial's ``params``; the record's ``trial`` says which trial it was."""
    return trainer.train(
        data_path,
        searching.apply_params(spec, params),
        model_dir,
        hyperparameters=hps,
        output_data_dir=output_data,
        mixed_precision=mixed,
        log=log,
        trial=hook,
        record_extra={"trial": dict(trial)},
    )
