"""The monitor's fan-out steps (MonitorPlanFunction, MonitorChunkFunction, MonitorReduceFunction),
run by the MonitorStateMachine's Distributed Map; the logic is :mod:`modelops.stages.monitor.fanout`
(docs/monitoring.md "Fan-out")."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from modelops import aws
from modelops.stages import runtime
from modelops.stages.monitor import fanout
from modelops.stages.monitor.run import MonitorSettings, Stores, stores_for, window_settings
from modelops.stages.monitor.run import Settings as MonitorFunctionSettings
from modelops.storage.reports import MonitorRuns
from modelops.storage.s3 import ObjectStore


class Settings(MonitorFunctionSettings, runtime.StageSettings):
    """The fan-out functions' environment (template.yaml): the monitor's, and how to cut chunks."""

    monitor_chunk_bytes: int = Field(default=fanout.MAX_CHUNK_BYTES, ge=1024 * 1024, le=10 * 1024**3)
    monitor_chunk_objects: int = Field(default=fanout.MAX_CHUNK_OBJECTS, ge=1, le=fanout.MAX_CHUNK_OBJECTS)


@dataclass
class Fanout:
    """The three steps, built once per container (:func:`build`)."""

    settings: Settings
    stores: Stores
    runs: MonitorRuns
    clock: Callable[[], float] = field(default=time.time)

    def base(self, model: str | None = None, window: int | None = None) -> MonitorSettings:
        return window_settings(self.settings, model, window, self.clock())

    def plan(self, event: Any) -> dict[str, Any]:
        run, model, window, chunks = fanout.plan_request(event)
        out = fanout.plan(
            self.base(model, window),
            self.stores,
            self.runs,
            run,
            max_bytes=self.settings.monitor_chunk_bytes,
            max_objects=self.settings.monitor_chunk_objects,
            chunks=chunks,
        )
        runtime.logger.info("monitor fan-out planned", extra={"plan": out})
        return out

    def chunk(self, event: Any) -> dict[str, Any]:
        run, index, keys = fanout.chunk_request(event)
        return fanout.chunk(self.base(), self.stores, self.runs, run, index, keys)

    def reduce(self, event: Any) -> dict[str, Any]:
        run = fanout.check_run(event.get("run") if isinstance(event, dict) else None)
        out = fanout.reduce(self.base(), self.stores, self.runs, run)
        if out["complete"]:
            runtime.logger.info("monitor fan-out run", extra={"outcome": out})
        else:
            runtime.logger.error("monitor window incomplete", extra={"outcome": out})
        return out


@functools.cache
def build() -> Fanout:
    """Settings, clients and stores: once per warm container."""
    settings = Settings()
    stores = stores_for(settings)
    return Fanout(settings, stores, MonitorRuns(ObjectStore(aws.client("s3"), settings.registry_bucket)))


def plan(event: Any) -> dict[str, Any]:
    return build().plan(event)


def chunk(event: Any) -> dict[str, Any]:
    return build().chunk(event)


def reduce(event: Any) -> dict[str, Any]:
    return build().reduce(event)
