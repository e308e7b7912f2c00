"""The gate stage: a published version -> the promotion gate's decision -> the production alias.

:func:`run` is what ``functions/gate/app.py`` calls, for each ``ModelVersionPublished`` event that convert
sends (an EventBridge rule in template.yaml): the stage built once per container by :func:`build`
(settings, clients, stores, and Powertools Idempotency keyed by model and version), then
:func:`handle_event`. See docs/convert.md ("The promotion gate", "Trust boundary").

The gate is apart from convert on purpose: convert loads SavedModels (programs a training job wrote) with
TensorFlow, so it may create versions but never move an alias; the gate imports no TensorFlow and runs no
code a training job wrote, and it alone (with the alert stage's canary rollback and the operators' CLI)
writes ``aliases/`` and ``history/``. It takes only the model and version from the event and re-reads the
manifest (create-only, written by convert) from the registry.

The numbers it decides on are its own (issue 14): it scores the candidate's and production's verified
LiteRT artifacts (:mod:`modelops.inference`, the loader predict serves with) on the same evaluation rows
the platform holds (:class:`modelops.storage.evaluation.EvaluationStore`: the owner's pinned set, else
the evaluation rows of every dataset the model accepted; :mod:`modelops.domain.evaluation`), with the
spec's promotion metric (:mod:`modelops.domain.metrics`) and a paired bootstrap of the difference
(:mod:`modelops.domain.bootstrap`). A tensor model is fed the same rows reshaped to its one input
(:func:`select_tensor_rows`; both versions with the same inputs), or not compared at all, with the
reason (docs/convert.md "Tensor models"). The job's ``metrics.json`` (the manifest's ``metrics``) is recorded as
its claim and never decided on. An artifact that fails its SHA-256 during the comparison is never loaded:
production is kept and ``ArtifactIntegrityFailed`` is sent.

============================================  ==========================================================
event                                          outcome
============================================  ==========================================================
anything but ``ModelVersionPublished`` from     ``ignored`` (logged)
``source: "modelops"``
a model or version that the registry lacks      ``ignored`` (logged as a warning: not sent by convert)
the gate (or an operator) already decided       ``already_decided``: nothing written, no event (a replay
about the version                               of the event, or convert's replay of its job)
otherwise                                       ``decided``: the alias moved by compare-and-swap (or not), a
                                                ``kind: "gate"`` history entry, ModelPromoted or
                                                PromotionRejected
a malformed event (bad model name / version),   raises: Lambda retries, then the DLQ keeps the event
a corrupt manifest or spec, S3 / EventBridge
failures, the alias CAS retry budget spent
============================================  ==========================================================
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from modelops import aws
from modelops.domain import bootstrap, gate
from modelops.domain import evaluation as evalrows
from modelops.domain.alias import AliasDoc
from modelops.domain.errors import (
    CorruptDocumentError,
    IntegrityError,
    InvalidEventError,
    ModelNotFoundError,
    SpecError,
    VersionNotFoundError,
)
from modelops.domain.events import SOURCE
from modelops.domain.metrics import score
from modelops.domain.signature import Signature
from modelops.domain.spec import ModelSpec, check_model_name, parse_spec
from modelops.inference import (
    InterpreterFactory,
    LoadedModel,
    ModelInfo,
    check_identifier,
    litert_interpreter,
    model_info,
    predict_rows,
    predict_tensor_rows,
)
from modelops.stages import runtime
from modelops.stages.runtime import logger
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.events import EventBus
from modelops.storage.registry import Manifest, Registry

TRIGGER = "ModelVersionPublished"


class EventSink(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> str: ...


@dataclass
class Deps:
    """What the gate stage works with, built once per warm container by :func:`build`."""

    registry: Registry
    bus: EventSink
    evaluation: EvaluationStore | None = None
    stack: gate.StackPolicy = field(default_factory=gate.StackPolicy)
    max_eval_rows: int = evalrows.MAX_ROWS
    interpreter_factory: InterpreterFactory | None = None


@dataclass
class Result:
    outcome: str  # ignored | already_decided | decided
    reason: str
    model: str | None = None
    version: int | None = None
    job: str | None = None
    gate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "model": self.model,
            "version": self.version,
            "job": self.job,
            "gate": self.gate,
        }


# ---------------------------------------------------------------------------- the comparison
def _manifest_metrics(manifest: Manifest) -> Mapping[str, Any]:
    metrics = manifest.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _tensor_pair_problem(task: str, infos: tuple[ModelInfo, ModelInfo]) -> str | None:
    """Why a candidate and production of which one at least is a tensor model cannot be scored on the
    same rows (None: they can): both tensor models with the same inputs (names, shapes, dtypes), each
    with a first output the metric can read (``evaluation.output_problem``)."""
    cand, prod = infos
    if cand.signature is None or prod.signature is None:
        kinds = ["a tensor" if i.signature is not None else "a tabular" for i in infos]
        return (
            f"candidate v{cand.version} is {kinds[0]} model and production v{prod.version} {kinds[1]} one: "
            "they cannot be fed the same rows; promote by hand"
        )
    if cand.signature.inputs != prod.signature.inputs:
        return (
            f"candidate v{cand.version}: its inputs ({cand.signature.describe_inputs()}) are not production "
            f"v{prod.version}'s ({prod.signature.describe_inputs()}), so the two cannot be fed the same rows: "
            "promote by hand"
        )
    for info, role, sig in ((cand, "candidate", cand.signature), (prod, "production", prod.signature)):
        problem = evalrows.output_problem(task, info.classes, sig)
        if problem is not None:
            return f"{role} v{info.version} cannot be scored: {problem}; promote by hand"
    return None


def select_rows(
    evaluation: EvaluationStore | None,
    model: str,
    feature_columns: list[str],
    target: str,
    *,
    max_rows: int = evalrows.MAX_ROWS,
    categorical: Collection[str] = (),
    numeric: Collection[str] | None = None,
) -> tuple[str, evalrows.Rows] | None:
    """``(source, rows)`` the gate scores on: the pinned set when ``pinned.json`` names one, else the
    union of every accepted dataset's evaluation rows (deduplicated, at most ``max_rows``); None when the
    platform holds none. Columns in ``categorical`` are kept as text (``evaluation.combine``). A stored
    CSV that fails its SHA-256 raises ``IntegrityError``; one that does not parse raises
    ``CorruptDocumentError``."""
    read = read_tables(evaluation, model)
    if read is None:
        return None
    source, tables = read
    return source, evalrows.combine(
        tables, feature_columns, target, max_rows=max_rows, categorical=categorical, numeric=numeric
    )


def read_tables(evaluation: EvaluationStore | None, model: str) -> tuple[str, list[evalrows.Table]] | None:
    """``(source, tables)``: the pinned CSV when ``pinned.json`` names one, else every held-out CSV;
    None when the platform holds none. Raises as :func:`select_rows` does."""
    if evaluation is None:
        return None
    pinned = evaluation.pinned(model)
    if pinned is not None:
        source, keys = "pinned", [str(pinned.get("key", ""))]
    else:
        source, keys = "heldout", evaluation.heldout_keys(model)
    if not keys:
        return None
    tables = []
    for key in keys:
        body = evaluation.read(key)
        digest = key.rsplit("/", 1)[-1].removesuffix(".csv")
        try:
            tables.append(evalrows.parse(digest, body))
        except ValueError as exc:
            raise CorruptDocumentError(f"{key}: {exc}") from exc
    return source, tables


@dataclass(frozen=True)
class TensorRows:
    """The rows a pair of tensor models is scored on, or why they cannot be (``problem``)."""

    source: str
    rows: evalrows.Rows
    problem: str | None


def select_tensor_rows(
    evaluation: EvaluationStore | None,
    model: str,
    sig: Signature,
    target: str,
    *,
    max_rows: int = evalrows.MAX_ROWS,
    categorical: Collection[str] = (),
) -> TensorRows | None:
    """The rows a tensor model of signature ``sig`` is scored on (:func:`evalrows.combine_for_tensors`:
    every column but the target, in the CSV's order) and whether they feed it exactly
    (:func:`evalrows.feed_problem`); None when the platform holds none. Raises as :func:`select_rows`."""
    read = read_tables(evaluation, model)
    if read is None:
        return None
    source, tables = read
    size = sig.inputs[0].size if len(sig.inputs) == 1 else -1
    rows = evalrows.combine_for_tensors(tables, target, size, max_rows=max_rows)
    columns = rows.columns[:-1]
    text = evalrows.text_columns(tables, columns) if rows.unusable else []
    problem = None
    if columns or len(rows):
        problem = evalrows.feed_problem(rows, sig, categorical=categorical, text=text)
    return TensorRows(source, rows, problem)


@dataclass
class Scored:
    """One version's outputs on the evaluation rows, and its targets in its own label encoding."""

    version: int
    role: str
    sha256: str
    outputs: np.ndarray
    targets: np.ndarray


class ArtifactProblem(Exception):
    """A version's artifact cannot be scored (failed checksum, not loadable): never promoted over."""

    def __init__(self, manifest: Manifest, role: str, reason: str, error: Exception):
        super().__init__(f"{manifest.model} v{manifest.version}: {error}")
        self.manifest, self.role, self.reason, self.error = manifest, role, reason, error

    def event(self, stage_role: str) -> dict[str, Any]:
        """The ``ArtifactIntegrityFailed`` detail."""
        return {
            "model": self.manifest.model,
            "version": self.manifest.version,
            "role": self.role,
            "reason": self.reason,
            "error": type(self.error).__name__,
            "message": str(self.error)[:500],
            "stage": "gate",
            "compared_as": stage_role,
        }


def score_version(
    registry: Registry, manifest: Manifest, rows: evalrows.Rows, workdir: Path, factory: InterpreterFactory
) -> Scored:
    """The version's serving artifact (``tflite``, or ``tflite_int8`` when its spec asked for it),
    downloaded and verified against the manifest's SHA-256, loaded by LiteRT and run on ``rows``.
    Raises :class:`ArtifactProblem` when the artifact fails its checksum or cannot be loaded."""
    role = "tflite"
    try:
        info = model_info(manifest)
        role = info.role
        path = workdir / f"{manifest.version}-{info.sha256}.tflite"
        registry.download_artifact(manifest, role, path)
        loaded = LoadedModel(info, check_identifier(path), factory)
    except IntegrityError as exc:
        raise ArtifactProblem(manifest, role, "checksum_mismatch", exc) from exc
    except (CorruptDocumentError, VersionNotFoundError, ValueError, RuntimeError, OSError) as exc:
        raise ArtifactProblem(manifest, role, "load_failed", exc) from exc
    if info.signature is not None:
        first = info.signature.outputs[0].name
        outputs = predict_tensor_rows(loaded, evalrows.tensor_inputs_for(rows, info.signature), first)
    else:
        outputs = predict_rows(loaded, evalrows.inputs_for(rows, info.input_schema))
    targets = evalrows.targets_for(rows, info.task, info.classes)
    return Scored(manifest.version, role, info.sha256, outputs, targets)


class Comparer:
    """Compares one candidate with production versions on the platform's evaluation rows (one
    :class:`gate.Comparison` per production version, cached: a lost compare-and-swap that finds the same
    production re-uses it). ``integrity`` collects the artifacts that failed during the comparisons."""

    def __init__(
        self,
        registry: Registry,
        evaluation: EvaluationStore | None,
        candidate: Manifest,
        spec: ModelSpec,
        policy: gate.Policy,
        *,
        max_eval_rows: int = evalrows.MAX_ROWS,
        factory: InterpreterFactory | None = None,
        workdir: Path,
        resamples: int = bootstrap.RESAMPLES,
    ):
        self.registry, self.evaluation = registry, evaluation
        self.candidate, self.spec, self.policy = candidate, spec, policy
        # LiteRT unless told otherwise (looked up now, so a test's stand-in replaces it in one place)
        self.factory: InterpreterFactory = factory or litert_interpreter
        self.max_eval_rows, self.workdir, self.resamples = max_eval_rows, workdir, resamples
        self.integrity: list[dict[str, Any]] = []
        self._done: dict[int, gate.Comparison | None] = {}
        self._scored: dict[tuple[int, str], Scored] = {}

    def against(self, production: int) -> gate.Comparison | None:
        """The comparison with production ``production``; None when its manifest cannot be read."""
        if production not in self._done:
            self._done[production] = self._compare(production)
        return self._done[production]

    def _score(self, manifest: Manifest, rows: evalrows.Rows, rows_id: str) -> Scored:
        key = (manifest.version, rows_id)
        if key not in self._scored:
            self._scored[key] = score_version(self.registry, manifest, rows, self.workdir, self.factory)
        return self._scored[key]

    def _compare(self, production: int) -> gate.Comparison | None:
        model, metric = self.candidate.model, self.spec.metric
        try:
            prod = self.registry.get_manifest(model, production)
        except (VersionNotFoundError, CorruptDocumentError):
            return None
        claims = {
            "candidate": _manifest_metrics(self.candidate).get(metric),
            "production": _manifest_metrics(prod).get(metric),
            "note": "the training jobs' own metrics.json: recorded, never decided on",
        }
        try:
            infos = (model_info(self.candidate), model_info(prod))
        except CorruptDocumentError as exc:
            return gate.Comparison("none", claims=claims, problem=f"the versions cannot be compared: {exc}")
        if (prod.get("task") or self.spec.task) != self.spec.task:
            return gate.Comparison(
                "none",
                claims=claims,
                problem=f"production v{production} is a {prod.get('task')} model, candidate "
                f"v{self.candidate.version} a {self.spec.task} model: promote by hand if wanted",
            )
        sig = infos[0].signature
        tensor = sig is not None or infos[1].signature is not None
        if tensor:
            problem = _tensor_pair_problem(self.spec.task, infos)
            if problem is not None:
                return gate.Comparison("none", claims=claims, problem=problem)
        schemas = (infos[0].input_schema, infos[1].input_schema)
        columns = list(dict.fromkeys(name for s in schemas for name in s.names))
        kinds = [(f.name, f.categorical) for s in schemas for f in s.features]
        picked: TensorRows | None = None
        try:
            if sig is not None:
                declared = {n for n, kind in self.spec.feature_types.items() if kind == "categorical"}
                picked = select_tensor_rows(
                    self.evaluation,
                    model,
                    sig,
                    self.spec.target,
                    max_rows=self.max_eval_rows,
                    categorical=declared,
                )
                selected = None if picked is None else (picked.source, picked.rows)
            else:
                selected = select_rows(
                    self.evaluation,
                    model,
                    columns,
                    self.spec.target,
                    max_rows=self.max_eval_rows,
                    categorical={name for name, cat in kinds if cat},
                    numeric={name for name, cat in kinds if not cat},
                )
        except IntegrityError as exc:
            self.integrity.append(
                {
                    "model": model,
                    "version": self.candidate.version,
                    "role": "evaluation_rows",
                    "reason": "checksum_mismatch",
                    "error": type(exc).__name__,
                    "message": str(exc)[:500],
                    "stage": "gate",
                }
            )
            return gate.Comparison(
                "none", claims=claims, problem=f"the evaluation rows failed their SHA-256 check ({exc})"
            )
        if selected is None:
            return gate.Comparison("job_claim", evaluation={"source": "job_claim", "rows": 0}, claims=claims)
        source, rows = selected
        described = {"source": source, "max_rows": self.max_eval_rows, **rows.describe()}
        if picked is not None and sig is not None:
            described["columns"] = len(rows.columns) - 1
            described["inputs"] = [s.describe() for s in sig.inputs]
            if picked.problem is not None:
                return gate.Comparison("none", len(rows), described, claims=claims, problem=picked.problem)
        if len(rows) < self.policy.min_eval_rows:
            return gate.Comparison(source, len(rows), described, claims=claims)
        rows_id = ",".join(rows.sha256) + f"|{len(rows)}|" + ",".join(rows.columns)
        scored: list[Scored] = []
        for manifest, as_role in ((self.candidate, "candidate"), (prod, "production")):
            try:
                scored.append(self._score(manifest, rows, rows_id))
            except ArtifactProblem as exc:
                self.integrity.append(exc.event(as_role))
                what = (
                    "failed its SHA-256 check" if exc.reason == "checksum_mismatch" else "could not be loaded"
                )
                return gate.Comparison(
                    source,
                    len(rows),
                    described,
                    claims=claims,
                    problem=f"{as_role} v{manifest.version}'s {exc.role} artifact {what} during the comparison "
                    "(not loaded); nothing is promoted",
                )
        cand, prod_s = scored
        # rows whose label one of the two classifiers does not know are left out for both (paired)
        keep = np.ones(len(rows), dtype=bool)
        if self.spec.task != "regression":
            keep = (cand.targets >= 0) & (prod_s.targets >= 0)
            described["unknown_labels"] = int((~keep).sum())
        n = int(keep.sum())
        described["rows"] = n
        described["roles"] = {"candidate": cand.role, "production": prod_s.role}
        if n < self.policy.min_eval_rows:
            return gate.Comparison(source, n, described, claims=claims)
        task = self.spec.task
        yc, oc, yp, op = cand.targets[keep], cand.outputs[keep], prod_s.targets[keep], prod_s.outputs[keep]
        interval: dict[str, Any] | None = None
        try:
            interval = bootstrap.paired_bootstrap(
                task,
                metric,
                yc,
                oc,
                yp,
                op,
                seed=bootstrap.seed_for(model, self.candidate.version, production),
                resamples=self.resamples,
            ).to_dict()
        except ValueError as exc:
            logger.warning("no bootstrap interval", extra={"model": model, "error": str(exc)})
        return gate.Comparison(
            source,
            n,
            described,
            candidate_value=score(task, metric, yc, oc),
            production_value=score(task, metric, yp, op),
            interval=interval,
            claims=claims,
        )


def compare_versions(
    registry: Registry,
    evaluation: EvaluationStore | None,
    model: str,
    *,
    production: int,
    candidate: int,
    min_eval_rows: int = 1,
    max_eval_rows: int = evalrows.MAX_ROWS,
    interpreter_factory: InterpreterFactory | None = None,
) -> gate.Comparison:
    """Version ``candidate`` against version ``production`` exactly as the gate compares them (the same
    rows, the candidate's spec and metric, the same seed): ``modelops models compare`` and a re-check of a
    recorded decision. Scores even under the gate's row floor (``min_eval_rows``, 1 by default)."""
    cand = registry.get_manifest(model, candidate)
    registry.get_manifest(model, production)  # raises VersionNotFoundError for an unknown version
    spec = spec_of(cand)
    policy = gate.Policy(min_improvement=0.0, min_eval_rows=min_eval_rows, canary_weight=0.0)
    with tempfile.TemporaryDirectory(prefix="gate-compare-") as tmp:
        comparer = Comparer(
            registry,
            evaluation,
            cand,
            spec,
            policy,
            max_eval_rows=max_eval_rows,
            factory=interpreter_factory,
            workdir=Path(tmp),
        )
        got = comparer.against(production)
    if got is None:
        raise CorruptDocumentError(f"the manifest of {model} v{production} cannot be read")
    return got


# ---------------------------------------------------------------------------- the promotion gate
@dataclass(frozen=True)
class GateResult:
    decision: gate.Decision
    applied: bool
    """True when the alias was moved (production or canary) by this run."""
    evaluations: int
    """How many times the decision was made (1 + compare-and-swap conflicts)."""
    alias: AliasDoc | None
    integrity: list[dict[str, Any]] = field(default_factory=list)
    """``ArtifactIntegrityFailed`` details: artifacts (or evaluation rows) that failed during the comparison."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.decision.to_dict(),
            "applied": self.applied,
            "evaluations": self.evaluations,
            "alias": self.alias.to_dict() if self.alias is not None else None,
        }


def policy_for(spec: ModelSpec, stack: gate.StackPolicy) -> gate.Policy:
    """The stack's policy, tightened by the spec's ``promotion`` section (never loosened)."""
    return gate.effective_policy(
        stack,
        min_improvement=spec.promotion.min_improvement,
        canary_weight=spec.promotion.canary_weight,
    )


def run_gate(
    registry: Registry,
    manifest: Manifest,
    spec: ModelSpec,
    *,
    evaluation: EvaluationStore | None = None,
    stack: gate.StackPolicy | None = None,
    max_eval_rows: int = evalrows.MAX_ROWS,
    interpreter_factory: InterpreterFactory | None = None,
    alias: str = gate.ALIAS,
) -> GateResult:
    """Decide (:func:`modelops.domain.gate.decide`) and apply the promotion of ``manifest``'s version inside
    the registry's alias compare-and-swap, so a lost race re-decides against the new production (scoring
    it on the same rows); every decision that is not "none" is recorded in the alias history (``kind:
    "gate"``, with its numbers, interval, evaluation set and policy).

    Raises ``VersionConflictError`` when the alias kept moving for the registry's whole retry budget
    (the caller lets it raise, so Lambda retries the event).
    """
    model, candidate = manifest.model, manifest.version
    policy = policy_for(spec, stack or gate.StackPolicy())
    decisions: list[gate.Decision] = []
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
        comparer = Comparer(
            registry,
            evaluation,
            manifest,
            spec,
            policy,
            max_eval_rows=max_eval_rows,
            factory=interpreter_factory,
            workdir=Path(tmp),
        )

        def mutate(current: AliasDoc | None) -> AliasDoc | None:
            comparison: gate.Comparison | None = None
            readable = True
            if current is not None and current.version != candidate:
                comparison = comparer.against(current.version)
                readable = comparison is not None
            decision = gate.decide(
                candidate,
                current,
                comparison,
                metric=spec.metric,
                policy=policy,
                model=model,
                production_readable=readable,
            )
            decisions.append(decision)
            return decision.new_alias(current)

        reason = gate.attempt_reason(candidate, spec.metric)
        new = registry.update_alias(model, alias, mutate, reason=reason)
    final = decisions[-1]
    if final.action != "none":
        registry.record_decision(
            model,
            alias,
            {
                "kind": "gate",
                "decision": final.action,
                "applied": new is not None,
                "evaluations": len(decisions),
                **final.to_dict(),
            },
        )
    return GateResult(
        decision=final,
        applied=new is not None,
        evaluations=len(decisions),
        alias=new,
        integrity=list(comparer.integrity),
    )


# ---------------------------------------------------------------------------- events in
def parse_published(event: Any) -> tuple[str, int] | None:
    """``(model, version)`` of a ``ModelVersionPublished`` event; None for any other event. One whose
    model or version is unusable raises :class:`InvalidEventError` (kept by the DLQ, never guessed at)."""
    if not isinstance(event, Mapping) or event.get("source") != SOURCE or event.get("detail-type") != TRIGGER:
        return None
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEventError(f"{TRIGGER} without a detail object")
    model, version = detail.get("model"), detail.get("version")
    try:
        name = check_model_name(str(model)) if isinstance(model, str) else None
    except SpecError:
        name = None
    if name is None:
        raise InvalidEventError(f"{TRIGGER} without a valid model name: {str(model)[:80]!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidEventError(f"{TRIGGER} of {name} without a valid version: {str(version)[:40]!r}")
    return name, version


def spec_of(manifest: Manifest) -> ModelSpec:
    raw = manifest.get("spec")
    try:
        return parse_spec(raw if isinstance(raw, dict) else "null")
    except SpecError as exc:
        raise CorruptDocumentError(
            f"the spec in the manifest of {manifest.model} v{manifest.version} does not parse: {exc}"
        ) from exc


# ---------------------------------------------------------------------------- orchestration
def handle_event(event: Any, deps: Deps) -> Result:
    """Everything the gate function does for one EventBridge event."""
    parsed = parse_published(event)
    if parsed is None:
        kind = event.get("detail-type") if isinstance(event, Mapping) else None
        logger.info("ignored event", extra={"detail_type": str(kind)[:80]})
        return Result("ignored", f"not a {TRIGGER} event: {str(kind)[:80]}")
    model, version = parsed
    try:
        manifest = deps.registry.get_manifest(model, version)
    except (VersionNotFoundError, ModelNotFoundError):
        logger.warning(
            "the event names no version of the registry", extra={"model": model, "version": version}
        )
        return Result("ignored", f"{model} has no v{version} in the registry", model=model, version=version)
    job = (manifest.get("training") or {}).get("job")
    # a decision about this version (the gate's, or a hand's move) is written after its manifest; an
    # hour of slack covers the clock of a laptop that moved it by hand
    since = _before(manifest.created_at, HISTORY_SLACK_SECONDS)
    prior = gate.prior_decision(deps.registry.history(model, gate.ALIAS, since=since), version)
    if prior is not None:
        reason = f"the gate already decided about v{version}: " + str(
            prior.get("reason", prior.get("decision", ""))
        )
        logger.info("already decided", extra={"model": model, "version": version})
        return Result("already_decided", reason, model=model, version=version, job=job, gate=dict(prior))
    res = run_gate(
        deps.registry,
        manifest,
        spec_of(manifest),
        evaluation=deps.evaluation,
        stack=deps.stack,
        max_eval_rows=deps.max_eval_rows,
        interpreter_factory=deps.interpreter_factory,
    )
    for failed in res.integrity:  # an artifact (or evaluation CSV) that failed during the comparison
        deps.bus.publish("ArtifactIntegrityFailed", {**failed, "candidate": version})
    d = res.decision
    detail = {
        "model": model,
        "version": version,
        "job": job,
        **d.to_dict(),
        "applied": res.applied,
        "evaluations": res.evaluations,
    }
    if d.action in ("promote", "canary") and res.applied:
        deps.bus.publish(
            "ModelPromoted",
            {**detail, "alias": gate.ALIAS, "mode": "canary" if d.action == "canary" else "production"},
        )
    elif d.action == "keep":
        deps.bus.publish("PromotionRejected", detail)
    return Result("decided", d.reason, model=model, version=version, job=job, gate=res.to_dict())


# ---------------------------------------------------------------------------- the Lambda entry
# One decision per version: a redelivery (or convert's replay of its job) inside the expiry window returns
# the first answer; the alias history's prior decision (gate.prior_decision) covers replays after it.
IDEMPOTENCY_KEY = "[detail.model, detail.version]"
IDEMPOTENCY_SECONDS = 6 * 3600


class Settings(runtime.StageSettings):
    """The gate function's environment (template.yaml)."""

    registry_bucket: str
    # Required: it stops concurrent deliveries of one version's event from deciding twice.
    idempotency_table: str = Field(min_length=1)
    event_bus_name: str = "default"
    # The stack's promotion policy (template parameters GateMinImprovement, GateMinEvalRows,
    # GateMaxCanaryWeight): floors an uploaded spec may tighten, never loosen (domain.gate.effective_policy).
    gate_min_improvement: float = Field(default=0.0, ge=0.0)
    gate_min_eval_rows: int = Field(default=30, ge=1)
    gate_max_canary_weight: float = Field(default=0.5, ge=0.0, lt=1.0)
    # Rows scored per decision at most (a deterministic sample above it: domain.evaluation.combine).
    gate_max_eval_rows: int = Field(default=evalrows.MAX_ROWS, ge=1)


def process(event: Any, deps: Deps) -> dict[str, Any]:
    """One event handled; its outcome logged and returned."""
    result = handle_event(event, deps)
    logger.info("gate finished", extra=result.to_dict())
    return result.to_dict()


@functools.cache
def build() -> tuple[Callable[..., dict[str, Any]], Any]:
    """Settings, clients, stores and the idempotent processing function (with its idempotency config):
    once per warm container, never at import."""
    settings = Settings()
    registry = Registry(aws.client("s3"), settings.registry_bucket, actor="gate")
    deps = Deps(
        registry=registry,
        bus=EventBus(aws.client("events"), settings.event_bus_name),
        evaluation=EvaluationStore(registry.objects),
        stack=gate.StackPolicy(
            min_improvement=settings.gate_min_improvement,
            min_eval_rows=settings.gate_min_eval_rows,
            max_canary_weight=settings.gate_max_canary_weight,
        ),
        max_eval_rows=settings.gate_max_eval_rows,
    )

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        return process(event, deps)

    return runtime.idempotent(
        handle,
        table=settings.idempotency_table,
        dynamodb=aws.client("dynamodb"),
        key_jmespath=IDEMPOTENCY_KEY,
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )


HISTORY_SLACK_SECONDS = 3600


def _before(iso: str, seconds: int) -> str | None:
    """``iso`` (``now_iso``'s format) minus ``seconds``, in the same format; None (read it all) when
    the time is missing or unreadable."""
    try:
        at = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return (at - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One invocation: the event handled once per model and version (Powertools Idempotency)."""
    return runtime.invoke_idempotent(build(), event, context)
