"""Batch scoring's Lambda steps (functions/score/app.py): ``start`` (ScoreStartFunction: an upload of
``datasets/{model}/score/NAME.csv``, delivered by EventBridge, starts one ScoreStateMachine execution),
``plan``, ``chunk`` and ``reduce`` (the state machine's steps). The logic is
:mod:`modelops.stages.scoring` (docs/scoring.md)."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops import aws
from modelops.stages import runtime, scoring
from modelops.stages.scoring import run as steps
from modelops.storage.scores import ScoreInputs, ScoringStarter

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Settings(scoring.Settings, runtime.StageSettings):
    """The score functions' environment: the scoring settings, and the state machine to start."""

    score_state_machine_arn: str = ""
    """``SCORE_STATE_MACHINE_ARN`` (ScoreStartFunction only)."""


def run_name(key: str, version_id: str | None) -> str:
    """The execution's name (and the run's): the input's name and a digest of its key and object
    version, so that one upload delivered twice starts one run (Step Functions refuses a name twice)."""
    digest = hashlib.sha256(f"{key}\n{version_id or ''}".encode()).hexdigest()[:16]
    stem = _UNSAFE.sub("-", Path(key).stem).strip("-")[:40] or "input"
    return f"{stem}-{digest}"


def start_request(event: Any) -> dict[str, Any]:
    """``{"bucket", "key", "version_id"}`` of an S3 ``Object Created`` event (EventBridge) or of a direct
    request with those keys."""
    if not isinstance(event, dict):
        raise steps.ScoringError("not an S3 Object Created event")
    detail = event.get("detail")
    if isinstance(detail, dict):
        bucket = (detail.get("bucket") or {}).get("name")
        obj = detail.get("object") or {}
        key, version_id = obj.get("key"), obj.get("version-id")
    else:
        bucket, key, version_id = event.get("bucket"), event.get("key"), event.get("version_id")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise steps.ScoringError("the event names no bucket and key")
    return {"bucket": bucket, "key": key, "version_id": version_id if isinstance(version_id, str) else None}


@dataclass
class Score:
    settings: Settings
    stores: steps.Stores
    starter: ScoringStarter | None
    models: steps.Models

    def start(self, event: Any) -> dict[str, Any]:
        req = start_request(event)
        if req["bucket"] != self.settings.data_bucket or ScoreInputs.model_of(req["key"]) is None:
            runtime.logger.warning("not a scoring input: ignored", extra={"request": req})
            return {"started": False, "reason": "not a scoring input (datasets/MODEL/score/NAME.csv)"}
        if self.starter is None:
            raise steps.ScoringError("SCORE_STATE_MACHINE_ARN is not set")
        name = run_name(req["key"], req["version_id"])
        arn, now = self.starter.start(name, req)
        runtime.logger.info("scoring run", extra={"run": name, "started": now, "request": req})
        return {"started": now, "run": name, "execution": arn}

    def plan(self, event: Any) -> dict[str, Any]:
        run, req = steps.plan_request(event, self.settings.data_bucket)
        out = steps.plan(
            self.stores,
            run,
            req,
            chunk_rows=self.settings.score_chunk_rows,
            tolerated_failure_percent=self.settings.score_tolerated_failure_percent,
        )
        shown = {k: out.get(k) for k in ("ok", "run", "model", "version", "rows", "chunks", "reason")}
        runtime.logger.info("scoring run planned", extra={"plan": shown})
        return out

    def chunk(self, event: Any) -> dict[str, Any]:
        return steps.chunk(self.stores, self.models, steps.chunk_request(event, self.settings.data_bucket))


@functools.cache
def build() -> Score:
    """Settings, clients, stores and the model cache: once per warm container."""
    settings = Settings()
    stores = scoring.build_stores(settings, with_bus=False)
    # on the twin the stepfunctions client goes to its interpreter (AWS_ENDPOINT_URL_SFN, docs/local-twin.md)
    starter = (
        ScoringStarter(aws.client("stepfunctions"), settings.score_state_machine_arn)
        if settings.score_state_machine_arn
        else None
    )
    return Score(settings, stores, starter, steps.Models(stores.registry, Path(settings.score_workdir)))


def start(event: Any) -> dict[str, Any]:
    return build().start(event)


def plan(event: Any) -> dict[str, Any]:
    return build().plan(event)


def chunk(event: Any) -> dict[str, Any]:
    return build().chunk(event)


def reduce(event: Any) -> dict[str, Any]:
    return scoring.reduce(event)
