"""Batch scoring (docs/scoring.md): ``run`` holds the ScoreStateMachine's plan, chunk and reduce steps,
``rows`` reads a chunk's CSV rows as predict reads rows and writes predict's answers as CSV. The
Lambda entries are ``modelops.stages.score`` (functions/score/app.py); the reduce step, which
publishes ScoringCompleted and ScoringFailed, runs as this stage (``POWERTOOLS_SERVICE_NAME: scoring``).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import Field

from modelops import aws
from modelops.stages import runtime
from modelops.stages.scoring.run import (
    DEFAULT_CHUNK_ROWS,
    MAX_CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    ScoringError,
    Stores,
    check_run,
)
from modelops.stages.scoring.run import reduce as reduce_run
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry
from modelops.storage.s3 import ObjectStore
from modelops.storage.scores import ScoreInputs, ScoreOutputs, ScoreRuns

__all__ = ["ScoringError", "Settings", "Stores", "build_stores", "reduce"]


class Settings(runtime.StageSettings):
    """The scoring functions' environment (template.yaml)."""

    data_bucket: str
    registry_bucket: str
    event_bus_name: str = "default"
    """The stack's StageEventBus: ScoringCompleted and ScoringFailed go there (the reduce step)."""
    score_chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=MIN_CHUNK_ROWS, le=MAX_CHUNK_ROWS)
    """Rows per map child (``SCORE_CHUNK_ROWS``); a request's ``chunk_rows`` overrides it."""
    score_tolerated_failure_percent: float = Field(default=0.0, ge=0.0, le=100.0)
    """Chunks that may fail their retries, in percent of the run's chunks, before the run is
    ScoringFailed (the map's ``ToleratedFailurePercentagePath`` and the reduce both apply it)."""
    score_workdir: str = "/tmp/scoring"


def build_stores(settings: Settings, *, with_bus: bool) -> Stores:
    s3 = aws.client("s3")
    return Stores(
        registry=Registry(s3, settings.registry_bucket),
        inputs=ScoreInputs(ObjectStore(s3, settings.data_bucket)),
        outputs=ScoreOutputs(ObjectStore(s3, settings.data_bucket)),
        runs=ScoreRuns(ObjectStore(s3, settings.registry_bucket)),
        bus=EventBus(aws.client("events"), settings.event_bus_name) if with_bus else None,
    )


@functools.cache
def build() -> tuple[Settings, Stores]:
    """The reduce step's settings and stores: once per warm container."""
    settings = Settings()
    return settings, build_stores(settings, with_bus=True)


def reduce(event: Any) -> dict[str, Any]:
    """The reduce step: ``{"run": execution name, "plan_error"?: the plan's error}``."""
    if not isinstance(event, dict):
        raise ScoringError("the reduce step needs {'run': ...}")
    _, stores = build()
    out = reduce_run(stores, check_run(event.get("run")), event.get("plan_error"))
    (runtime.logger.info if out["ok"] else runtime.logger.error)("scoring run", extra={"outcome": out})
    return out
