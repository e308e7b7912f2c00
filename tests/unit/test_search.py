"""Search: the spec's ``training.search``, the shared helpers, and the in-job search's orchestration.

The orchestration tests use fake runners (no TensorFlow): a runner gets the trial's task and a
``report(epoch, value)`` that answers "prune?", exactly like the real one (tests/integration/
test_search_train.py trains real trials).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from modelops.domain import search as searching
from modelops.domain.errors import SearchFailedError, SpecError, TrainingError, TrialPrunedError
from modelops.domain.spec import MAX_TRIALS, parse_spec
from modelops.stages.train_trigger import canonical_spec_json, spec_sha256

BASE = {"task": "regression", "target": "target"}
SPACE = {"learning_rate": {"min": 0.001, "max": 0.1}, "hidden_units": [[8], [16, 8]], "batch_size": [16, 64]}


def search_spec(task: str = "regression", training: Mapping[str, Any] | None = None, **search: Any) -> Any:
    doc: dict[str, Any] = {**BASE, "task": task}
    if task != "regression":
        doc["promotion"] = {"metric": "auc"}
    doc["training"] = {"epochs": 10, "seed": 3, **(training or {}), "search": {**SPACE, **search}}
    return parse_spec(doc)


# ---------------------------------------------------------------------------- the spec: bad inputs
@pytest.mark.parametrize(
    ("search", "needle"),
    [
        ({}, "training.search: the search space is empty"),
        ({"max_trials": 4}, "training.search: the search space is empty"),
        (
            {"learning_rate": {"min": 0.1, "max": 0.01}},
            "training.search.learning_rate: min (0.1) must be below max",
        ),
        ({"dropout": {"min": 0.5, "max": 0.2}}, "training.search.dropout: min (0.5) must be below max (0.2)"),
        ({"epochs": {"min": 20, "max": 5}}, "training.search.epochs: min (20) must be below max (5)"),
        ({"learning_rate": {"min": 0, "max": 0.1}}, "training.search.learning_rate.min"),
        ({"batch_size": []}, "training.search.batch_size: List should have at least 1 item"),
        ({"hidden_units": []}, "training.search.hidden_units: List should have at least 1 item"),
        ({"hidden_units": [[0]]}, "training.search.hidden_units.0.0"),
        ({"batch_size": [32, 32]}, "training.search.batch_size: candidate 32 is listed twice"),
        ({"batch_size": [32], "hidden_units": [[8]]}, "the search space holds a single point"),
        (
            {"max_trials": 0, **SPACE},
            "training.search.max_trials: Input should be greater than or equal to 1",
        ),
        (
            {"max_trials": 10_000, **SPACE},
            f"training.search.max_trials: at most {MAX_TRIALS} trials per search",
        ),
        ({"max_parallel": 0, **SPACE}, "training.search.max_parallel"),
        ({"max_trials": 2, "max_parallel": 4, **SPACE}, "max_parallel (4) is more than max_trials (2)"),
        ({"strategy": "grid", **SPACE}, "training.search.strategy"),
        ({"strategy": "hyperband", "epochs": {"min": 2, "max": 9}}, "hyperband decides how many epochs"),
        ({"colour": "red", **SPACE}, "training.search.colour: unknown key"),
    ],
)
def test_an_empty_or_impossible_search_space_is_rejected_with_the_field_named(
    search: dict[str, Any], needle: str
) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec({**BASE, "training": {"search": search}})
    assert needle in str(exc.value)
    assert exc.value.code == "invalid_spec"


def test_the_cap_is_named_and_the_cap_itself_is_accepted() -> None:
    with pytest.raises(SpecError, match=f"at most {MAX_TRIALS} trials per search \\(got {MAX_TRIALS + 1}\\)"):
        parse_spec({**BASE, "training": {"search": {**SPACE, "max_trials": MAX_TRIALS + 1}}})
    spec = parse_spec({**BASE, "training": {"search": {**SPACE, "max_trials": MAX_TRIALS}}})
    assert spec.training.search is not None and spec.training.search.max_trials == MAX_TRIALS


def test_hyperband_needs_an_epoch_budget() -> None:
    with pytest.raises(SpecError, match="hyperband needs training.epochs >= 3"):
        parse_spec({**BASE, "training": {"epochs": 2, "search": {**SPACE, "strategy": "hyperband"}}})


def test_a_search_has_documented_defaults() -> None:
    search = search_spec().training.search
    assert (search.max_trials, search.max_parallel, search.strategy, search.seed) == (10, 1, "bayesian", None)
    assert search.learning_rate is not None and search.learning_rate.log is True


def test_a_spec_without_search_keeps_its_hash_and_a_search_changes_it() -> None:
    # job names hash the canonical spec: adding the (absent) field must not rename every existing job
    plain = parse_spec({**BASE, "training": {"epochs": 10, "seed": 3}})
    assert "search" not in canonical_spec_json(plain)
    assert "search" not in json.loads(canonical_spec_json(plain))["training"]
    assert spec_sha256(plain) != spec_sha256(search_spec())
    # and the spec survives its own JSON (the trainer reads it back from the hyperparameter)
    spec = search_spec(max_trials=4, max_parallel=2, strategy="random", seed=9)
    assert parse_spec(canonical_spec_json(spec)) == spec


# ---------------------------------------------------------------------------- shared helpers
@pytest.mark.parametrize("prefix", ["modelops", "a" * 21, "ab"])
def test_tuning_job_names_are_deterministic_short_and_under_the_prefix(prefix: str) -> None:
    job = f"{prefix}-demo-0123456789ab"
    name = searching.tuning_job_name(job, prefix)
    assert name == searching.tuning_job_name(job, prefix)
    assert len(name) <= 32 and name.startswith(prefix + "-")
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}", name)
    assert name != searching.tuning_job_name(f"{prefix}-demo-0123456789ac", prefix)


def test_tuned_hyperparameters_round_trip_and_are_checked_against_the_space() -> None:
    search = search_spec(dropout={"min": 0.0, "max": 0.5}, epochs={"min": 3, "max": 9}).training.search
    params = {"learning_rate": 0.01, "batch_size": 64, "hidden_units": [16, 8], "dropout": 0.25, "epochs": 7}
    hps = searching.hyperparameter_strings(params)
    assert hps["hidden_units"] == "16-8"
    # the SageMaker SDK sends categorical values JSON-quoted; both forms decode
    assert searching.params_from_hyperparameters({**hps, "hidden_units": '"16-8"'}, search) == params
    with pytest.raises(TrainingError, match="batch_size 128 not in"):
        searching.params_from_hyperparameters({**hps, "batch_size": "128"}, search)
    with pytest.raises(TrainingError, match="learning_rate 0.5 outside"):
        searching.params_from_hyperparameters({**hps, "learning_rate": "0.5"}, search)
    with pytest.raises(TrainingError, match="'dropout' is missing"):
        searching.params_from_hyperparameters({k: v for k, v in hps.items() if k != "dropout"}, search)
    assert searching.decode_units("none") == [] and searching.encode_units([]) == "none"


def test_apply_params_gives_the_single_run_spec_of_a_trial() -> None:
    spec = search_spec(training={"hidden_units": [64, 32], "learning_rate": 0.001})
    trial = searching.apply_params(spec, {"learning_rate": 0.02, "hidden_units": [8]})
    assert trial.training.search is None
    assert (trial.training.learning_rate, trial.training.hidden_units) == (0.02, [8])
    assert trial.training.seed == spec.training.seed and trial.target == spec.target


def test_best_trial_follows_the_metric_direction_and_skips_unfinished_trials() -> None:
    trials = [
        searching.trial_doc(0, {}, "complete", value=3.0),
        searching.trial_doc(1, {}, "pruned", value=None),
        searching.trial_doc(2, {}, "complete", value=1.0),
        searching.trial_doc(3, {}, "failed", error="boom"),
        searching.trial_doc(4, {}, "complete", value=1.0),
    ]
    best_min = searching.best_trial(trials, minimize=True)
    best_max = searching.best_trial(trials, minimize=False)
    assert best_min is not None and best_min["number"] == 2  # a tie goes to the earlier trial
    assert best_max is not None and best_max["number"] == 0
    assert searching.best_trial(trials[1:2] + trials[3:4], minimize=True) is None
    reason = searching.failure_reason([searching.trial_doc(i, {}, "failed", error=f"E{i}") for i in range(3)])
    assert reason == "all 3 trials failed: trial 0: E0; trial 1: E1; trial 2: E2"
    assert searching.failure_reason(trials[1:2]).startswith("no trial completed (1 pruned)")


def test_tuning_job_summaries_become_trials_in_creation_order() -> None:
    from datetime import UTC, datetime, timedelta

    search = search_spec().training.search
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    summaries = [
        {
            "TrainingJobName": "modelops-abc-002-bbbb",
            "CreationTime": t0 + timedelta(minutes=1),
            "TrainingJobStatus": "Stopped",
            "TunedHyperParameters": {"learning_rate": "0.01", "hidden_units": '"8"', "batch_size": '"16"'},
        },
        {
            "TrainingJobName": "modelops-abc-001-aaaa",
            "CreationTime": t0,
            "TrainingJobStatus": "Completed",
            "TrainingStartTime": t0,
            "TrainingEndTime": t0 + timedelta(seconds=90),
            "TunedHyperParameters": {"learning_rate": "0.05", "hidden_units": '"16-8"', "batch_size": '"64"'},
            "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "objective:rmse", "Value": 51.5},
        },
        {
            "TrainingJobName": "modelops-abc-003-cccc",
            "CreationTime": t0 + timedelta(minutes=2),
            "TrainingJobStatus": "Failed",
            "FailureReason": "AlgorithmError: out of memory",
            "TunedHyperParameters": {"learning_rate": "0.002", "hidden_units": '"8"', "batch_size": '"64"'},
        },
    ]
    trials = searching.trials_from_tuning_jobs(summaries, search)
    assert [(t["number"], t["training_job"], t["state"]) for t in trials] == [
        (0, "modelops-abc-001-aaaa", "complete"),
        (1, "modelops-abc-002-bbbb", "pruned"),
        (2, "modelops-abc-003-cccc", "failed"),
    ]
    assert trials[0]["params"] == {"learning_rate": 0.05, "batch_size": 64, "hidden_units": [16, 8]}
    assert (trials[0]["value"], trials[0]["duration_s"]) == (51.5, 90.0)
    assert trials[2]["error"] == "AlgorithmError: out of memory" and trials[2]["value"] is None


# ---------------------------------------------------------------------------- the in-job search, with fake runners
def fake_model_dir(task: Any, value: float) -> None:
    d = Path(task.trial_dir)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"rmse": value + 10.0}))
    (d / "training_record.json").write_text(json.dumps({"trial": task.number, "duration_s": 0.1}))
    (d / "which.txt").write_text(f"trial {task.number} {json.dumps(task.params, sort_keys=True)}")


def lr_runner(task: Any, report: Any, log: Any) -> dict[str, Any]:
    """Objective = distance of log10(lr) from -2 (best near 0.01); lr above 0.05 "crashes"."""
    import math

    lr = task.params["learning_rate"]
    if lr > 0.05:
        raise RuntimeError(f"diverged at lr={lr:.3g}")
    value = abs(math.log10(lr) + 2.0)
    fake_model_dir(task, value)
    (Path(task.trial_dir) / "pid").write_text(str(os.getpid()))
    return {"value": value, "epochs_run": 4}


def failing_runner(task: Any, report: Any, log: Any) -> dict[str, Any]:
    raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY")


def test_a_crashing_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    # Given a search whose large learning rates crash
    from modelops.ml.search import run_search

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i * 2}\n" for i in range(30)))
    spec = search_spec(max_trials=6, strategy="random", seed=1, learning_rate={"min": 0.001, "max": 0.5})
    lines: list[str] = []

    # When it runs in this process
    doc = run_search(data, spec, tmp_path / "model", runner=lr_runner, log=lines.append, cpus=1)

    # Then every trial is recorded, the crashes with their errors, and the best one is the model
    trials = doc["trials"]
    assert [t["number"] for t in trials] == list(range(6))
    failed = [t for t in trials if t["state"] == "failed"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert failed and complete, trials  # this seed samples both kinds
    assert all(t["params"]["learning_rate"] > 0.05 for t in failed)
    assert all(t["error"].startswith("RuntimeError: diverged at lr=") for t in failed)
    best = min(complete, key=lambda t: t["value"])
    assert doc["best_trial"] == best["number"] and doc["best_value"] == best["value"]
    assert (tmp_path / "model" / "which.txt").read_text().startswith(f"trial {best['number']} ")
    assert json.loads((tmp_path / "model" / "trials.json").read_text()) == doc
    record = json.loads((tmp_path / "model" / "training_record.json").read_text())
    assert record["search"]["best_trial"] == best["number"] and "trials" not in record["search"]
    assert doc["counts"] == {"complete": len(complete), "pruned": 0, "failed": len(failed)}
    assert (doc["direction"], doc["objective"]["name"], doc["parallel"]) == ("minimize", "objective:rmse", 1)
    assert any(line.startswith(f"search: trial {failed[0]['number']} failed") for line in lines)


def test_every_trial_failing_fails_the_search_with_the_reason(tmp_path: Path) -> None:
    from modelops.ml.search import run_search

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i}\n" for i in range(30)))
    spec = search_spec(max_trials=3, strategy="random")
    with pytest.raises(SearchFailedError) as exc:
        run_search(data, spec, tmp_path / "model", runner=failing_runner, log=lambda _: None, cpus=1)
    assert str(exc.value).startswith("all 3 trials failed: trial 0: RuntimeError: CUDA_ERROR_OUT_OF_MEMORY")
    assert exc.value.code == "search_failed"
    assert not (tmp_path / "model").exists()


def test_bad_data_fails_before_any_trial(tmp_path: Path) -> None:
    from modelops.domain.errors import DatasetRejectedError
    from modelops.ml.search import run_search

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i}\n" for i in range(30)))
    calls: list[int] = []

    def runner(task: Any, report: Any, log: Any) -> dict[str, Any]:
        calls.append(task.number)
        return {"value": 1.0}

    with pytest.raises(DatasetRejectedError, match="changed after it was validated"):
        run_search(
            data, search_spec(), tmp_path / "m", hyperparameters={"dataset_sha256": "0" * 64}, runner=runner
        )
    assert calls == []


def curve_runner(task: Any, report: Any, log: Any) -> dict[str, Any]:
    """Trial n reports a flat objective of VALUES[n] per epoch for 10 epochs (pruned when told)."""
    values = {0: 1.0, 1: 2.0, 2: 5.0, 3: 0.5, 4: 9.0}
    value = values[task.number]
    for epoch in range(1, 11):
        if report(epoch, value):
            raise TrialPrunedError(f"pruned at epoch {epoch}", epochs_run=epoch)
    fake_model_dir(task, value)
    return {"value": value, "epochs_run": 10}


def test_bad_trials_are_pruned_by_the_median_rule(tmp_path: Path) -> None:
    from modelops.ml.search import MEDIAN_WARMUP_EPOCHS, run_search

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i}\n" for i in range(30)))
    spec = search_spec(max_trials=5, strategy="random", training={"epochs": 10})

    doc = run_search(data, spec, tmp_path / "model", runner=curve_runner, log=lambda _: None, cpus=1)

    states = {t["number"]: (t["state"], t["epochs_run"]) for t in doc["trials"]}
    # two trials complete before anything may be pruned; then worse-than-median trials stop after the warm-up
    assert states[0] == ("complete", 10) and states[1] == ("complete", 10) and states[3] == ("complete", 10)
    assert states[2] == ("pruned", MEDIAN_WARMUP_EPOCHS) and states[4] == ("pruned", MEDIAN_WARMUP_EPOCHS)
    assert doc["best_trial"] == 3 and doc["counts"]["pruned"] == 2


def test_random_trials_match_the_batch_array_children(tmp_path: Path) -> None:
    # Batch array child i samples its parameters alone; it must be trial i of the same random search
    from modelops.ml.search import run_search, sample_params

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i}\n" for i in range(30)))
    spec = search_spec(max_trials=4, strategy="random", seed=11, dropout={"min": 0.0, "max": 0.3})
    doc = run_search(data, spec, tmp_path / "model", runner=lr_runner, log=lambda _: None, cpus=1)
    search = spec.training.search
    assert [t["params"] for t in doc["trials"]] == [sample_params(search, 11, i) for i in range(4)]
    assert sample_params(search, 11, 2) != sample_params(search, 12, 2)
    for i in range(4):
        searching.check_params(sample_params(search, 11, i), search)


def test_parallel_trials_run_in_at_most_max_parallel_worker_processes(tmp_path: Path) -> None:
    # Given 4 trials, 2 in parallel, on a machine with more cores than that
    from modelops.ml.search import run_search

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i}\n" for i in range(30)))
    spec = search_spec(
        max_trials=4, max_parallel=2, strategy="random", seed=1, learning_rate={"min": 0.001, "max": 0.5}
    )

    doc = run_search(
        data, spec, tmp_path / "model", runner=lr_runner, log=lambda _: None, cpus=8, work_dir=tmp_path
    )

    # Then they ran in spawned workers, never more than 2 processes, and every trial is recorded
    assert doc["parallel"] == 2 and len(doc["trials"]) == 4
    assert {t["state"] for t in doc["trials"]} <= {"complete", "failed"}
    best = min((t for t in doc["trials"] if t["state"] == "complete"), key=lambda t: t["value"])
    assert doc["best_trial"] == best["number"]
    assert (tmp_path / "model" / "pid").read_text() != str(os.getpid())
    failed = [t for t in doc["trials"] if t["state"] == "failed"]
    assert all("diverged at lr=" in t["error"] for t in failed)


def test_a_worker_process_that_dies_fails_only_its_trials(tmp_path: Path) -> None:
    from modelops.ml.search import run_search

    data = tmp_path / "d.csv"
    data.write_text("a,target\n" + "".join(f"{i},{i}\n" for i in range(30)))
    spec = search_spec(max_trials=3, max_parallel=2, strategy="random", seed=1)

    doc = run_search(
        data, spec, tmp_path / "model", runner=dying_runner, log=lambda _: None, cpus=2, work_dir=tmp_path
    )

    by_number = {t["number"]: t for t in doc["trials"]}
    assert by_number[0]["state"] == "failed" and "worker process died" in by_number[0]["error"]
    assert by_number[1]["state"] == "failed"  # its objective is not finite (whether or not the pool broke)
    assert by_number[2]["state"] == "complete" and doc["best_trial"] == 2


def dying_runner(task: Any, report: Any, log: Any) -> dict[str, Any]:
    """Trial 0 kills its process (as the OOM killer would), breaking the pool for whatever runs beside
    it; trial 1 diverges; trial 2 completes (on its own run when the break caught it)."""
    if task.number == 0:
        os._exit(137)
    if task.number == 1:
        # runs beside trial 0, so the broken pool takes it too (it is recorded as failed as well)
        Path(task.trial_dir).parent.joinpath("waiting").touch()
        return {"value": float("nan")}
    fake_model_dir(task, 1.0)
    return {"value": 1.0, "epochs_run": 1}


# ---------------------------------------------------------------------------- the template and imports
def test_convert_reacts_to_tuning_jobs_of_this_stack_and_only_to_array_parents() -> None:
    from tests.cfn import load

    convert = load(Path(__file__).resolve().parents[2] / "template.yaml")["Resources"]["ConvertFunction"]
    events = convert["Properties"]["Events"]
    tuning = events["SageMakerTuningDone"]["Properties"]["Pattern"]
    assert tuning["detail-type"] == ["SageMaker HyperParameter Tuning Job State Change"]
    assert tuning["detail"]["HyperParameterTuningJobStatus"] == ["Completed", "Failed", "Stopped"]
    assert "${JobPrefix}-" in json.dumps(tuning["detail"]["HyperParameterTuningJobName"])
    assert events["SageMakerTuningDone"]["Properties"]["DeadLetterConfig"]  # failures are kept
    assert events["BatchJobDone"]["Properties"]["Pattern"]["detail"]["arrayProperties"] == {
        "index": [{"exists": False}]
    }
    [statement] = [
        st
        for pol in convert["Properties"]["Policies"]
        for st in pol["Statement"]
        if any("HyperParameterTuningJob" in a for a in st["Action"])
    ]
    assert sorted(statement["Action"]) == [
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
    ]
    assert "hyper-parameter-tuning-job/${JobPrefix}-*" in json.dumps(statement["Resource"])


def test_train_trigger_and_the_shared_search_helpers_import_neither_tensorflow_nor_optuna() -> None:
    import subprocess
    import sys

    code = (
        "import sys, functions.train_trigger.app, modelops.domain.search, modelops.stages.convert; "
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'optuna') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
