"""A hyperparameter and architecture search inside one training job, with Optuna.

Used when the job itself runs the search (the local twin, a single-trial Batch job): trials run in
parallel worker processes, at most ``min(search.max_parallel, os.cpu_count())`` at a time, and one
Optuna study (seeded sampler) decides what each trial tries:

- ``random``: ``RandomSampler(seed)``; ``bayesian``: ``TPESampler(seed)`` (constant liar when trials
  run in parallel); ``hyperband``: ``TPESampler`` with ``HyperbandPruner`` over the epochs.
- Bad trials stop early: each trial reports its objective after every epoch and
  ``MedianPruner`` (random, bayesian) or ``HyperbandPruner`` stops those doing worse than the others.
- A trial that crashes is recorded (state ``failed``, its error) and the search goes on; a worker
  process that dies fails only the trials it was running. No trial completing fails the job
  (``SearchFailedError``: convert then sends ``TrainingJobFailed``, and no version is published).
- The best trial's model dir becomes the job's model dir, exactly as a single training run writes it,
  plus ``trials.json`` (every trial; ``modelops.domain.search.summary``).

Workers are spawned (not forked: TensorFlow is not fork-safe) and share the study through an Optuna
journal file, so pruning compares a trial with the others wherever they run. One trial at a time runs
in this process. Python 3.10 compatible.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.domain import search as searching
from modelops.domain.errors import SearchFailedError, TrialPrunedError
from modelops.domain.spec import ModelSpec, SearchSpec, parse_spec
from modelops.ml import trainer
from modelops.ml.trainer import Log, print_line

Report = Callable[[int, float], bool]
"""``report(epoch, objective)`` -> True when the trial should stop (pruned)."""

MEDIAN_STARTUP_TRIALS = 2
"""Completed trials before the median pruner may stop one."""
MEDIAN_WARMUP_EPOCHS = 3
"""Epochs every trial runs before it may be pruned (at least; a quarter of the epochs when more)."""


# ---------------------------------------------------------------------------- the space
def distributions(search: SearchSpec) -> dict[str, Any]:
    """Optuna distributions of the spec's ranges (``hidden_units`` as strings, see ``modelops.domain.search``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    if search.learning_rate is not None:
        lr = search.learning_rate
        out["learning_rate"] = FloatDistribution(lr.min, lr.max, log=lr.log)
    if search.batch_size is not None:
        out["batch_size"] = CategoricalDistribution(list(search.batch_size))
    if search.hidden_units is not None:
        out["hidden_units"] = CategoricalDistribution(
            [searching.encode_units(u) for u in search.hidden_units]
        )
    if search.dropout is not None:
        out["dropout"] = FloatDistribution(search.dropout.min, search.dropout.max)
    if search.epochs is not None:
        out["epochs"] = IntDistribution(search.epochs.min, search.epochs.max)
    return out


def decode(params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's parameter values -> a trial's parameters (``hidden_units`` back to a list)."""
    out = dict(params)
    if "hidden_units" in out:
        out["hidden_units"] = searching.decode_units(str(out["hidden_units"]))
    if "batch_size" in out:
        out["batch_size"] = int(out["batch_size"])
    if "epochs" in out:
        out["epochs"] = int(out["epochs"])
    return out


def make_sampler(search: SearchSpec, seed: int, parallel: int) -> Any:
    import optuna

    if search.strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, search.max_trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=parallel > 1)


def make_pruner(search: SearchSpec, max_epochs: int) -> Any:
    return _pruner("hyperband" if search.strategy == "hyperband" else "median", max_epochs)


def sample_params(search: SearchSpec, seed: int, index: int) -> dict[str, Any]:
    """Trial ``index``'s parameters under ``RandomSampler(seed)``: the same in every process (Batch array
    children) and the same as trial ``index`` of an in-job random search."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = distributions(search)
    trial = None
    for _ in range(index + 1):
        trial = study.ask(dists)
    assert trial is not None
    return decode(trial.params)


# ---------------------------------------------------------------------------- one trial
@dataclass(frozen=True)
class TrialTask:
    """Everything one trial needs, picklable for a spawned worker."""

    number: int
    trial_id: int
    params: dict[str, Any]
    data_path: str
    spec_json: str
    """The trial's single-run spec (``modelops.domain.search.apply_params``)."""
    metric: str
    trial_dir: str
    hyperparameters: dict[str, str]
    mixed_precision: bool = False
    storage: str = ""
    """The Optuna journal file a worker reports through ("" in this process)."""
    study_name: str = ""
    pruner: tuple[str, int] = ("median", 1)
    """(kind, max epochs): rebuilt in the worker, where the study is loaded."""
    threads: int = 0


Runner = Callable[[TrialTask, Report, Log], Mapping[str, Any]]
"""Trains one trial into ``task.trial_dir``; returns ``{"value", "epochs_run"}``; raises
``TrialPrunedError`` when ``report`` asked it to stop, anything else when it failed."""


def train_trial(task: TrialTask, report: Report, log: Log) -> dict[str, Any]:
    """The real runner: ``modelops.ml.trainer.train`` with a :class:`~modelops.ml.trainer.TrialHook`."""
    if task.threads:
        _limit_threads(task.threads)
    hook = trainer.TrialHook(metric=task.metric, report=report)
    try:
        trainer.train(
            task.data_path,
            parse_spec(task.spec_json),
            task.trial_dir,
            hyperparameters=task.hyperparameters,
            mixed_precision=task.mixed_precision,
            log=log,
            trial=hook,
            record_extra={"trial": {"mode": "in_job", "number": task.number, "params": task.params}},
        )
    finally:
        _clear_session()
    if hook.final is None or not math.isfinite(hook.final):
        raise ValueError(f"the objective {task.metric} is not finite (training diverged)")
    return {"value": hook.final, "epochs_run": hook.epochs_run}


def _limit_threads(n: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already initialised in this process: keep its pools


def _clear_session() -> None:
    """Free the finished trial's graph before the next one in this process (if Keras was loaded at all)."""
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session()


def execute(task: TrialTask, runner: Runner, report: Report, log: Log) -> dict[str, Any]:
    """Run one trial and classify the outcome (complete | pruned | failed); never raises."""
    started = time.time()
    try:
        out = runner(task, report, log)
        value = float(out["value"])
        if not math.isfinite(value):
            raise ValueError(f"the objective {task.metric} is not finite")
        return searching.trial_doc(
            task.number,
            task.params,
            "complete",
            value=value,
            epochs_run=out.get("epochs_run"),
            duration_s=time.time() - started,
        )
    except TrialPrunedError as exc:
        log(f"pruned: {exc}")
        return searching.trial_doc(
            task.number, task.params, "pruned", epochs_run=exc.epochs_run, duration_s=time.time() - started
        )
    except Exception as exc:  # noqa: BLE001 - a crashed trial is recorded, the search goes on
        log(f"failed: {searching.short_error(exc)}")
        return searching.trial_doc(
            task.number,
            task.params,
            "failed",
            duration_s=time.time() - started,
            error=searching.short_error(exc),
        )


def _worker_init(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"


def _worker(task: TrialTask, runner: Runner) -> dict[str, Any]:
    """In a spawned process: load the study from the journal, run the trial, report through the journal."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind, max_epochs = task.pruner
    storage = _journal(task.storage)
    study = optuna.load_study(study_name=task.study_name, storage=storage, pruner=_pruner(kind, max_epochs))
    trial = optuna.trial.Trial(study, task.trial_id)

    def report(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        return bool(trial.should_prune())

    return execute(task, runner, report, _prefixed(task.number))


def _pruner(kind: str, max_epochs: int) -> Any:
    """Hyperband over the epochs, or the median rule: after ``MEDIAN_STARTUP_TRIALS`` completed trials, a
    trial past its warm-up (a quarter of the epochs, at least ``MEDIAN_WARMUP_EPOCHS``) whose best
    objective so far is worse than the median of the others at the same epoch is stopped."""
    import optuna

    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    return optuna.pruners.MedianPruner(
        n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=max(MEDIAN_WARMUP_EPOCHS, max_epochs // 4)
    )


def _journal(path: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def _prefixed(number: int, log: Log = print_line) -> Log:
    return lambda line: log(f"trial {number}: {line}")


# ---------------------------------------------------------------------------- the search
def workers_for(search: SearchSpec, cpus: int | None = None) -> int:
    """Trials at once: ``min(max_parallel, max_trials, cpu count)``."""
    return max(1, min(search.parallel, cpus if cpus is not None else (os.cpu_count() or 1)))


def run_search(
    data_path: str | Path,
    spec: ModelSpec,
    model_dir: str | Path,
    *,
    hyperparameters: Mapping[str, str] | None = None,
    output_data_dir: str | Path | None = None,
    mixed_precision: bool = False,
    log: Log = print_line,
    runner: Runner | None = None,
    cpus: int | None = None,
    work_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the spec's search; write the best trial's model dir plus ``trials.json``; return the summary.

    ``runner`` trains one trial (default :func:`train_trial`; it must be a module-level function when
    trials run in worker processes); ``cpus`` overrides ``os.cpu_count()``.

    Raises ``DatasetRejectedError`` (bad data, before any trial) and ``SearchFailedError`` (no trial
    completed)."""
    import optuna

    search = spec.training.search
    assert search is not None, "run_search needs training.search"
    runner = runner or train_trial
    started = time.time()
    hps = dict(hyperparameters or {})
    data_path, model_dir = Path(data_path), Path(model_dir)
    trainer.check_dataset(data_path, spec, hps)  # bad data fails the job before any trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parallel = workers_for(search, cpus)
    seed = searching.seed(spec)
    max_epochs = search.epochs.max if search.epochs is not None else spec.training.epochs
    minimize = searching.direction(spec) == "minimize"
    dists = distributions(search)
    threads = max(1, (cpus or os.cpu_count() or 1) // parallel)
    log(
        f"search: {search.max_trials} trials, {parallel} at a time, strategy {search.strategy}, "
        f"objective {searching.objective_name(spec.metric)} ({searching.direction(spec)}), seed {seed}"
    )
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelops-search-", dir=work_dir) as tmp:
        root = Path(tmp)
        storage: Any = (
            optuna.storages.InMemoryStorage() if parallel == 1 else _journal(str(root / "journal.log"))
        )
        study = optuna.create_study(
            study_name="search",
            storage=storage,
            direction="minimize" if minimize else "maximize",
            sampler=make_sampler(search, seed, parallel),
            pruner=make_pruner(search, max_epochs),
        )

        def task_for(trial: Any) -> TrialTask:
            params = decode(trial.params)
            return TrialTask(
                number=trial.number,
                trial_id=trial._trial_id,
                params=params,
                data_path=str(data_path),
                spec_json=searching.apply_params(spec, params).model_dump_json(),
                metric=spec.metric,
                trial_dir=str(root / f"trial-{trial.number:03d}"),
                hyperparameters=hps,
                mixed_precision=mixed_precision,
                storage=str(root / "journal.log") if parallel > 1 else "",
                study_name="search",
                pruner=("hyperband" if search.strategy == "hyperband" else "median", max_epochs),
                threads=threads if parallel > 1 else 0,
            )

        def finish(trial: Any, doc: dict[str, Any]) -> None:
            state = {
                "complete": optuna.trial.TrialState.COMPLETE,
                "pruned": optuna.trial.TrialState.PRUNED,
                "failed": optuna.trial.TrialState.FAIL,
            }[doc["state"]]
            study.tell(trial, doc["value"] if doc["state"] == "complete" else None, state=state)
            trials.append(doc)
            shown = f"{doc['value']:.6g}" if doc["value"] is not None else "-"
            log(
                f"search: trial {doc['number']} {doc['state']} {searching.objective_name(spec.metric)}={shown} "
                f"params={json.dumps(doc['params'], sort_keys=True)}"
                + (f" error={doc['error']}" if doc.get("error") else "")
            )

        if parallel == 1:
            for _ in range(search.max_trials):
                trial = study.ask(dists)

                def report(epoch: int, value: float, trial: Any = trial) -> bool:
                    trial.report(value, epoch)
                    return bool(trial.should_prune())

                task = task_for(trial)
                finish(trial, execute(task, runner, report, _prefixed(task.number, log)))
        else:
            _run_pool(study, dists, search.max_trials, parallel, threads, task_for, finish, runner)

        best = searching.best_trial(trials, minimize)
        if best is None:
            raise SearchFailedError(searching.failure_reason(trials))
        doc = searching.summary(
            spec,
            trials,
            backend_mode="in_job",
            extra={"parallel": parallel, "duration_s": round(time.time() - started, 3)},
        )
        best_dir = root / f"trial-{int(best['number']):03d}"
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(best_dir, model_dir, dirs_exist_ok=True)
    record_path = model_dir / "training_record.json"
    record = json.loads(record_path.read_text())
    record["search"] = {k: v for k, v in doc.items() if k != "trials"}
    record["duration_s"] = doc["duration_s"]
    trainer.write_json(record_path, record)
    trainer.write_json(model_dir / searching.TRIALS_FILE, doc)
    if output_data_dir is not None:
        out = Path(output_data_dir)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "metrics.json", out / "metrics.json")
        trainer.write_json(out / searching.TRIALS_FILE, doc)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for name, value in sorted(metrics.items()):
        if not name.startswith("n_") and isinstance(value, int | float):
            log(f"validation:{name}={value:.6g}")
    log(
        f"search done in {doc['duration_s']}s: best trial {best['number']} "
        f"{searching.objective_name(spec.metric)}={best['value']:.6g} ({doc['counts']})"
    )
    return doc


def _run_pool(
    study: Any,
    dists: dict[str, Any],
    n_trials: int,
    parallel: int,
    threads: int,
    task_for: Callable[[Any], TrialTask],
    finish: Callable[[Any, dict[str, Any]], None],
    runner: Runner,
) -> None:
    """Keep ``parallel`` trials running in spawned workers; ask the study for the next trial only when a
    slot frees up (so a Bayesian sampler learns from every finished trial)."""
    ctx = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=parallel, mp_context=ctx, initializer=_worker_init, initargs=(threads,)
        )

    def run_alone(task: TrialTask) -> dict[str, Any]:
        with ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_worker_init, initargs=(threads,)
        ) as alone:
            try:
                return alone.submit(_worker, task, runner).result()
            except BrokenProcessPool as exc:
                return searching.trial_doc(
                    task.number, task.params, "failed", error=f"the trial's worker process died ({exc})"
                )
            except Exception as exc:  # noqa: BLE001 - as below
                return searching.trial_doc(
                    task.number, task.params, "failed", error=searching.short_error(exc)
                )

    pool = new_pool()
    running: dict[Future[dict[str, Any]], tuple[Any, TrialTask]] = {}
    asked = 0
    try:
        while asked < n_trials or running:
            while asked < n_trials and len(running) < parallel:
                trial = study.ask(dists)
                task = task_for(trial)
                try:
                    fut = pool.submit(_worker, task, runner)
                except BrokenProcessPool:  # a worker died: its trials fail on their own; go on in a new pool
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = new_pool()
                    fut = pool.submit(_worker, task, runner)
                running[fut] = (trial, task)
                asked += 1
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: running[f][1].number):
                trial, task = running.pop(fut)
                try:
                    doc = fut.result()
                except BrokenProcessPool:
                    # A worker died and broke the pool: every trial in it fails, the culprit and its
                    # bystanders alike. Each gets one run alone, so only the culprit stays failed.
                    doc = run_alone(task)
                except Exception as exc:  # noqa: BLE001 - e.g. the task could not be pickled
                    doc = searching.trial_doc(
                        task.number, task.params, "failed", error=searching.short_error(exc)
                    )
                finish(trial, doc)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
