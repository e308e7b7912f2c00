"""A dataset of many parts (docs/training.md "Datasets of many parts"): ``datasets/{model}/{name}/part-*``
closed by ``_SUCCESS``, validated part by part on ``DatasetStateMachine``'s Distributed Map, then exactly
one training job whose ``train`` channel is the parts' training rows.

- **start** (train_trigger, on the marker's S3 record): ``StartExecution`` of ``DatasetStateMachine``,
  named after the marker's key and version, so a replayed record starts nothing new.
- **plan** (DatasetPlanFunction): the spec (read once, for every part), the folder's parts in key
  order -> ``dataset-runs/{run}/plan.json`` and ``items.json`` (the map's items).
- **part** (DatasetPartFunction, one map child per part): the part validated by the same streaming
  validator as a single dataset (``validate_part``: ``Limits.max_bytes`` applies per part), its rows
  split by the platform's split (hash of the row's content, so a row lands on the same side whichever
  part holds it) -> ``dataset-runs/{run}/reports|train|evaluation/part-NNNNN.*``.
- **reduce** (DatasetReduceFunction): the parts' reports merged (``merge_parts``: a bad part rejects the
  whole dataset, named; parts must agree on columns and feature kinds), then, accepted, train_trigger's
  own start path with the parts' split: the train rows copied to ``inputs/{model}/{job}/train/``, the
  evaluation rows joined into the gate's held-out set; job name from the parts' SHA-256s and the spec.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from modelops import aws
from modelops.domain.dataset import DatasetReport, Problem, merge_parts, validate_part
from modelops.domain.encoding import SchemaError
from modelops.domain.errors import SpecError
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.domain.split import (
    SplitPlan,
    check_split,
    join_csv_parts,
    merge_parts_split,
    part_summary,
    split_csv,
)
from modelops.stages import train_trigger
from modelops.stages.runtime import logger
from modelops.stages.train_trigger import S3Object, StagedSplit, TrainTrigger, canonical_spec_json
from modelops.storage.datasets import DatasetRuns, list_parts, marker_folder
from modelops.storage.s3 import ObjectStore

MAX_PARTS = 10_000


class Settings(train_trigger.Settings):
    """train_trigger's environment, and how many parts a dataset may have."""

    max_dataset_parts: int = Field(default=MAX_PARTS, ge=1, le=MAX_PARTS)


# ---------------------------------------------------------------------------- the three steps
@dataclass
class DatasetParts:
    """Plan, part and reduce over train_trigger's stage (its stores, limits, backends, rejection)."""

    stage: TrainTrigger
    runs: DatasetRuns
    max_parts: int = MAX_PARTS

    def plan(self, event: Any) -> dict[str, Any]:
        run = _run(event)
        request = event.get("request") if isinstance(event, dict) else None
        marker = request.get("marker") if isinstance(request, dict) else None
        if not isinstance(marker, dict) or not isinstance(marker.get("key"), str):
            raise ValueError("the plan needs request.marker {bucket, key, version_id, etag}")
        found = marker_folder(marker["key"])
        if found is None:
            raise ValueError(f"{marker['key'][:200]!r} is not a datasets/{{model}}/{{name}}/_SUCCESS key")
        model, folder = found
        bucket = str(marker["bucket"])
        doc: dict[str, Any] = {"run": run, "model": model, "folder": folder, "marker": marker, "parts": []}
        try:
            spec = self.stage._load_spec(bucket, model)
            self.stage.settings.spend().check(spec)
            doc["spec"] = canonical_spec_json(spec)
            parts = list_parts(self.stage.datasets, bucket, folder, self.max_parts)
        except SpecError as exc:
            doc["rejected"] = {"code": exc.code, "reason": str(exc)}
            parts = []
        except ValueError as exc:  # too many parts
            doc["rejected"] = {"code": "too_many_parts", "reason": str(exc)}
            parts = []
        if not parts and "rejected" not in doc:
            doc["rejected"] = {
                "code": "no_parts",
                "reason": f"{folder} holds no part-* files beside _SUCCESS",
            }
        doc["parts"] = [p.to_dict() for p in parts]
        self.runs.put_doc(run, "plan.json", doc)
        items = self.runs.put_doc(run, "items.json", doc["parts"])
        out = {"run": run, "parts": len(parts), "items": items}
        logger.info("dataset of parts planned", extra={"plan": out, "folder": folder})
        return out

    def part(self, event: Any) -> dict[str, Any]:
        run = _run(event)
        index, key = event.get("index"), event.get("key")
        if not isinstance(index, int) or not isinstance(key, str):
            raise ValueError("a part needs index and key")
        plan = self.runs.get_doc(run, "plan.json")
        if not isinstance(plan, dict) or "spec" not in plan:
            raise ValueError(f"run {run} has no plan with a spec")
        spec = parse_spec(plan["spec"])
        bucket, model = str(plan["marker"]["bucket"]), str(plan["model"])
        obj = S3Object(bucket, key, None, event.get("etag"), None, "")
        doc: dict[str, Any] = {"index": index, "key": key}
        with tempfile.TemporaryDirectory(prefix="modelops-part-") as tmp:
            work = Path(tmp)
            try:
                production = self.stage._production(model, spec)
            except SchemaError as exc:
                report = DatasetReport(target=spec.target)
                report.problems.append(Problem("schema_unreadable", f"production's input schema: {exc}"))
            else:
                got = self.stage._validate(obj, spec, work / "part.csv", validate_part, production=production)
                if got is None:
                    report = DatasetReport(target=spec.target)
                    report.problems.append(Problem("part_gone", "the part was deleted before it was read"))
                else:
                    report = got
            if report.ok:
                split = split_csv(
                    work / "part.csv",
                    SplitPlan.for_dataset(spec, report.columns, report.features),
                    work / "train.csv",
                    work / "evaluation.csv",
                    spec.task,
                )
                self.runs.put_part_rows(run, "train", index, split.train.path)
                self.runs.put_part_rows(run, "evaluation", index, split.evaluation.path)
                doc["split"] = part_summary(split)
        doc["report"] = report.to_part_dict()
        self.runs.put_part_report(run, index, doc)
        return {"index": index, "ok": report.ok, "rows": report.rows}

    def reduce(self, event: Any) -> dict[str, Any]:
        run = _run(event)
        plan = self.runs.get_doc(run, "plan.json")
        if not isinstance(plan, dict):
            raise ValueError(f"run {run} has no plan")
        marker, model = plan["marker"], str(plan["model"])
        obj = S3Object(
            str(marker["bucket"]), str(marker["key"]), marker.get("version_id"), marker.get("etag"), None, ""
        )
        if "rejected" in plan:
            out = self.stage._reject(obj, model, plan["rejected"]["code"], plan["rejected"]["reason"])
            return self._done(run, out)
        spec = parse_spec(plan["spec"])
        docs = self.runs.part_reports(run, len(plan["parts"]))
        missing = [p["key"] for p, d in zip(plan["parts"], docs, strict=True) if d is None]
        if missing:  # a child failed after its retries: nothing is judged; a new _SUCCESS runs again
            result = {"complete": False, "run": run, "missing_parts": missing[:100]}
            self.runs.put_doc(run, "result.json", result)
            logger.error("dataset of parts incomplete", extra=result)
            return result
        reports = [(str(d["key"]), DatasetReport.from_part_dict(d["report"])) for d in docs if d]
        merged = merge_parts(reports, spec, self.stage.limits)
        if not merged.ok:
            bad = [(k, r) for k, r in reports if not r.ok]
            for key, _ in bad[:100]:  # the bad parts beside the marker, in quarantine
                self.stage.datasets.quarantine(
                    obj.bucket, key, None, None, {"model": model, "run": run, "reason": merged.reason}
                )
            field = bad[0][0] if bad else _named_part(merged)
            out = self.stage._reject(
                obj, model, merged.code or "invalid_dataset", merged.reason, merged, field=field
            )
            return self._done(run, out)
        summaries = [d["split"] for d in docs if d]
        with tempfile.TemporaryDirectory(prefix="modelops-reduce-") as tmp:
            work = Path(tmp)
            production = self.stage._production(model, spec)
            out = self.stage._accept(
                obj,
                model,
                spec,
                merged,
                work,
                production,
                split=functools.partial(self._split, run, summaries),
                lineage={"folder": plan["folder"], "parts": len(summaries)},
            )
        return self._done(run, out)

    def _split(
        self,
        run: str,
        summaries: list[dict[str, Any]],
        spec: ModelSpec,
        report: DatasetReport,
        work: Path,
        model: str,
        job: str,
    ) -> StagedSplit:
        paths = []
        for i in range(len(summaries)):
            path = work / f"evaluation-{i:05d}.csv"
            self.runs.download_part_rows(run, "evaluation", i, path)
            paths.append(path)
        evaluation = join_csv_parts(paths, work / "evaluation.csv")
        plan = SplitPlan.for_dataset(spec, report.columns, report.features)
        result = merge_parts_split(plan, summaries, evaluation)
        folder = self.runs.train_folder(model, job)
        stage = self.stage

        def store() -> dict[str, Any]:
            staged = self.runs.stage_train_parts(run, model, job, len(summaries))
            heldout = stage.evaluation.put_heldout_file(model, evaluation.path, evaluation.sha256)
            summary = result.record()
            summary["train"].update(key=folder, uri=stage.jobs.staging_uri(folder), parts=len(staged))
            summary["evaluation"].update(key=heldout, uri=stage.jobs.staging_uri(heldout))
            return summary

        return StagedSplit(
            train_key=folder,
            train_sha256=result.train.sha256,
            train_rows=result.train.rows,
            evaluation_rows=result.evaluation.rows,
            problem=check_split(result, spec, stage.limits),
            store=store,
        )

    def _done(self, run: str, out: dict[str, Any]) -> dict[str, Any]:
        result = {"complete": True, "run": run, **out}
        self.runs.put_doc(run, "result.json", result)
        logger.info("dataset of parts judged", extra={"outcome": result})
        return result


def _named_part(report: DatasetReport) -> str | None:
    """The part a ``schema_mismatch`` names (its reason starts ``part {key} ...``)."""
    for p in report.problems:
        if p.message.startswith("part "):
            return p.message.split(" ", 2)[1]
    return None


def _run(event: Any) -> str:
    run = event.get("run") if isinstance(event, dict) else None
    if not isinstance(run, str) or not run or len(run) > 80 or "/" in run:
        raise ValueError("the step needs the execution's name as run")
    return run


# ---------------------------------------------------------------------------- wiring
def assemble(settings: Settings, client: Callable[[str], Any]) -> DatasetParts:
    stage = train_trigger.assemble(settings, client)
    return DatasetParts(
        stage=stage,
        runs=DatasetRuns(ObjectStore(client("s3"), settings.registry_bucket)),
        max_parts=settings.max_dataset_parts,
    )


@functools.cache
def build() -> DatasetParts:
    return assemble(Settings(), aws.client)


def plan(event: Any) -> dict[str, Any]:
    return build().plan(event)


def part(event: Any) -> dict[str, Any]:
    return build().part(event)


def reduce(event: Any) -> dict[str, Any]:
    return build().reduce(event)
