"""Hyperparameter and architecture search: what the backends, the trainer and convert share.

No TensorFlow and no Optuna here (this module ships to Lambda with the shared layer); the search
itself runs inside the training job (``modelops.ml.search``) or as a SageMaker tuning job.
docs/training.md ("Search") has the whole story; the formats are in docs/contracts.md.

- A trial's parameters are a dict of the tuned ``training`` fields (``SEARCH_PARAMETERS``):
  ``learning_rate`` and ``dropout`` floats, ``batch_size`` and ``epochs`` ints, ``hidden_units`` a list
  of layer widths. As hyperparameters (SageMaker, Optuna categorical choices) ``hidden_units`` is a
  string: widths joined with ``-`` (``"64-32"``), ``"none"`` for no hidden layer.
- The objective is the spec's promotion metric on the *selection* rows (the early-stopping slice of
  the training rows), printed by the trainer as ``objective:<metric>=<value>`` once per epoch and once
  at the end; the held-out split is never used to choose a trial, so the version's held-out metrics
  stay an honest estimate for the promotion gate.
- ``trials.json`` (in the model dir) and the manifest's ``search`` field hold every trial:
  ``number``, ``params``, ``value``, ``state`` (complete | pruned | failed), ``epochs_run``,
  ``duration_s``, ``error``.

Python 3.10 compatible (the AWS TensorFlow training image runs 3.10).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from modelops.domain.errors import TrainingError
from modelops.domain.spec import LOWER_IS_BETTER, SEARCH_PARAMETERS, ModelSpec, SearchSpec

TRIALS_FILE = "trials.json"
"""Every trial of an in-job search, beside the best trial's model (model dir root)."""
TRIAL_FILE = "trial.json"
"""One trial's record (Batch array children: ``staging/{model}/{job}/trials/{index:03d}/trial.json``)."""
TUNING_NAME_MAX = 32
"""SageMaker's limit on a hyperparameter tuning job's name."""
SEARCH_MODE_HP = "search_mode"
"""Static hyperparameter telling the trainer it runs one trial: ``tuning`` (SageMaker) or ``array`` (Batch)."""
STATES = ("complete", "pruned", "failed")
JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}\Z")
r"""A SageMaker / Batch job name (``\Z``, not ``$``: a trailing newline is not a name)."""
_ERROR_CHARS = 500


# ---------------------------------------------------------------------------- names
def objective_name(metric: str) -> str:
    """The objective's name in the trainer's log and in SageMaker's MetricDefinitions."""
    return f"objective:{metric}"


def direction(spec: ModelSpec) -> str:
    """``minimize`` or ``maximize`` the promotion metric (``spec.LOWER_IS_BETTER``)."""
    return "minimize" if LOWER_IS_BETTER[spec.metric] else "maximize"


def seed(spec: ModelSpec) -> int:
    """The search's seed: ``training.search.seed``, else ``training.seed``."""
    search = spec.training.search
    return search.seed if search is not None and search.seed is not None else spec.training.seed


def tuning_job_name(job: str, prefix: str) -> str:
    """``{prefix}-{sha256(job)}`` cut to SageMaker's 32 characters: deterministic per job, and under the
    ``{JobPrefix}-`` names the template's IAM policies and EventBridge rules cover."""
    if not JOB_NAME_RE.match(job):
        raise ValueError(f"invalid job name {job[:80]!r}")
    room = TUNING_NAME_MAX - len(prefix) - 1
    if room < 8:
        raise ValueError(f"job prefix {prefix!r} leaves no room for a tuning job name")
    return f"{prefix}-{hashlib.sha256(job.encode()).hexdigest()[: min(room, 16)]}"


# ---------------------------------------------------------------------------- parameters
def encode_units(units: Sequence[int]) -> str:
    return "-".join(str(int(u)) for u in units) if units else "none"


def decode_units(text: str) -> list[int]:
    text = text.strip().strip('"')
    if text == "none":
        return []
    try:
        units = [int(part) for part in text.split("-")]
    except ValueError:
        raise TrainingError(f"hidden_units {text[:80]!r} is not widths joined by '-' (e.g. 64-32)") from None
    if not units or any(u < 1 or u > 4096 for u in units) or len(units) > 16:
        raise TrainingError(f"hidden_units {text[:80]!r}: 1 to 16 layers of 1 to 4096 units")
    return units


def tuned_names(search: SearchSpec) -> list[str]:
    """The parameters this search tunes, in ``SEARCH_PARAMETERS`` order."""
    return [p for p in SEARCH_PARAMETERS if getattr(search, p) is not None]


def params_from_hyperparameters(hps: Mapping[str, str], search: SearchSpec) -> dict[str, Any]:
    """The trial's parameters from the hyperparameters a tuning job passed (strings, maybe JSON-quoted).

    Every tuned parameter must be there and inside the spec's range: a tuning job started from another
    spec is refused rather than trained."""
    params: dict[str, Any] = {}
    for name in tuned_names(search):
        raw = hps.get(name)
        if raw is None or raw == "":
            raise TrainingError(f"search_mode tuning: the hyperparameter {name!r} is missing")
        text = str(raw).strip().strip('"')
        try:
            if name == "hidden_units":
                params[name] = decode_units(text)
            elif name in ("batch_size", "epochs"):
                params[name] = int(float(text))
            else:
                params[name] = float(text)
        except ValueError:
            raise TrainingError(f"hyperparameter {name}={text[:40]!r} is not a number") from None
    check_params(params, search)
    return params


def check_params(params: Mapping[str, Any], search: SearchSpec) -> None:
    """Raise ``TrainingError`` when a value lies outside the spec's search space."""
    lr, dr, ep = search.learning_rate, search.dropout, search.epochs
    problems = []
    if lr is not None and not (lr.min * (1 - 1e-9) <= params["learning_rate"] <= lr.max * (1 + 1e-9)):
        problems.append(f"learning_rate {params['learning_rate']} outside [{lr.min}, {lr.max}]")
    if dr is not None and not (dr.min - 1e-12 <= params["dropout"] <= dr.max + 1e-12):
        problems.append(f"dropout {params['dropout']} outside [{dr.min}, {dr.max}]")
    if ep is not None and not (ep.min <= params["epochs"] <= ep.max):
        problems.append(f"epochs {params['epochs']} outside [{ep.min}, {ep.max}]")
    if search.batch_size is not None and params["batch_size"] not in search.batch_size:
        problems.append(f"batch_size {params['batch_size']} not in {search.batch_size}")
    if search.hidden_units is not None and list(params["hidden_units"]) not in search.hidden_units:
        problems.append(f"hidden_units {params['hidden_units']} not in {search.hidden_units}")
    if problems:
        raise TrainingError("trial parameters outside the spec's search space: " + "; ".join(problems))


def apply_params(spec: ModelSpec, params: Mapping[str, Any]) -> ModelSpec:
    """The single-run spec a trial trains: ``training`` with the trial's values and without the search."""
    training = spec.training.model_dump()
    training.update({k: v for k, v in params.items() if k in SEARCH_PARAMETERS})
    training["search"] = None
    doc = spec.model_dump()
    doc["training"] = training
    return ModelSpec.model_validate(doc)


def hyperparameter_strings(params: Mapping[str, Any]) -> dict[str, str]:
    """A trial's parameters as SageMaker-style string hyperparameters."""
    out = {}
    for k, v in params.items():
        out[k] = encode_units(v) if k == "hidden_units" else (f"{v:.10g}" if isinstance(v, float) else str(v))
    return out


# ---------------------------------------------------------------------------- trials
def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def best_trial(trials: Sequence[Mapping[str, Any]], minimize: bool) -> Mapping[str, Any] | None:
    """The complete trial with the best finite value (ties: the lowest number), or None."""
    done = [t for t in trials if t.get("state") == "complete" and _finite(t.get("value"))]
    if not done:
        return None
    sign = 1.0 if minimize else -1.0
    return min(done, key=lambda t: (sign * float(t["value"]), int(t.get("number", 0))))


def counts(trials: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out = {s: 0 for s in STATES}
    for t in trials:
        state = str(t.get("state"))
        out[state] = out.get(state, 0) + 1
    return out


def failure_reason(trials: Sequence[Mapping[str, Any]], limit: int = 900) -> str:
    """Why a search produced no model: the counts and the first errors (fits SageMaker's FailureReason)."""
    c = counts(trials)
    if trials and c["failed"] == len(trials):
        head = f"all {len(trials)} trials failed"
    else:
        head = f"no trial completed ({', '.join(f'{n} {s}' for s, n in c.items() if n)})"
    errors = [f"trial {t.get('number')}: {t.get('error')}" for t in trials if t.get("error")]
    text = head + (": " + "; ".join(errors) if errors else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_error(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def summary(
    spec: ModelSpec,
    trials: Sequence[Mapping[str, Any]],
    *,
    backend_mode: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The search document (``trials.json``, the manifest's ``search``): every trial and the best one."""
    search = spec.training.search
    assert search is not None
    minimize = LOWER_IS_BETTER[spec.metric]
    best = best_trial(trials, minimize)
    ordered = sorted((dict(t) for t in trials), key=lambda t: int(t.get("number", 0)))
    doc: dict[str, Any] = {
        "strategy": search.strategy,
        "mode": backend_mode,
        "objective": {"metric": spec.metric, "name": objective_name(spec.metric), "split": "selection"},
        "direction": "minimize" if minimize else "maximize",
        "max_trials": search.max_trials,
        "max_parallel": search.max_parallel,
        "seed": seed(spec),
        "best_trial": int(best["number"]) if best is not None else None,
        "best_value": float(best["value"]) if best is not None else None,
        "counts": counts(trials),
        "trials": ordered,
    }
    doc.update(extra or {})
    return doc


def trial_doc(
    number: int,
    params: Mapping[str, Any],
    state: str,
    *,
    value: float | None = None,
    epochs_run: int | None = None,
    duration_s: float | None = None,
    error: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if state not in STATES:
        raise ValueError(f"unknown trial state {state!r}")
    return {
        "number": int(number),
        "params": dict(params),
        "value": float(value) if value is not None and _finite(value) else None,
        "state": state,
        "epochs_run": epochs_run,
        "duration_s": round(float(duration_s), 3) if duration_s is not None else None,
        "error": error,
        **extra,
    }


# ---------------------------------------------------------------------------- SageMaker tuning jobs
_SM_STATES = {"Completed": "complete", "Stopped": "pruned", "Failed": "failed"}


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return (end - start).total_seconds()
    return None


def trials_from_tuning_jobs(
    summaries: Sequence[Mapping[str, Any]], search: SearchSpec
) -> list[dict[str, Any]]:
    """Trial documents from ``ListTrainingJobsForHyperParameterTuningJob`` summaries, numbered in the
    order SageMaker created them. Early-stopped jobs (``Stopped``) count as pruned."""
    ordered = sorted(summaries, key=lambda s: (str(s.get("CreationTime", "")), str(s.get("TrainingJobName"))))
    out = []
    for number, s in enumerate(ordered):
        tuned = {str(k): str(v) for k, v in (s.get("TunedHyperParameters") or {}).items()}
        try:
            params: dict[str, Any] = params_from_hyperparameters(tuned, search)
        except TrainingError:
            params = dict(tuned)
        final = s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        raw_state = str(s.get("TrainingJobStatus", ""))
        out.append(
            trial_doc(
                number,
                params,
                _SM_STATES.get(raw_state, "failed"),
                value=final.get("Value"),
                duration_s=_seconds(s.get("TrainingStartTime"), s.get("TrainingEndTime")),
                error=(str(s["FailureReason"])[:_ERROR_CHARS] if s.get("FailureReason") else None),
                training_job=str(s.get("TrainingJobName", "")),
            )
        )
    return out


def load_trial(body: bytes) -> dict[str, Any]:
    """A Batch child's ``trial.json``; raises ``ValueError`` when it is not one."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or doc.get("state") not in STATES or not isinstance(doc.get("number"), int):
        raise ValueError("not a trial document (number, state)")
    return doc
