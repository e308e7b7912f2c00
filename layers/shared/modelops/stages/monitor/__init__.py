"""The monitor stage: drift and quality of a window of captured traffic against each version's baseline
(docs/monitoring.md).

- :mod:`.scan`: capture objects decoded in blocks and folded into per-(model, version) partials,
  then each version's verdict (:func:`evaluate`);
- :mod:`.run`: the run (captures and labels in, reports, metrics, events and retrain datasets out),
  the stage's :class:`Settings` and its cached :func:`build`.
"""

from modelops.domain.drift import VersionContext
from modelops.stages.monitor.run import (
    MAX_WINDOW_SECONDS,
    Monitor,
    MonitorSettings,
    Settings,
    Stores,
    build,
    load_context,
    metric_data,
    request_from_event,
    run,
    run_monitor,
    run_window,
)
from modelops.stages.monitor.scan import BAD_REASONS, GroupState, WindowScan, evaluate

__all__ = [
    "BAD_REASONS",
    "MAX_WINDOW_SECONDS",
    "GroupState",
    "Monitor",
    "MonitorSettings",
    "Settings",
    "Stores",
    "VersionContext",
    "WindowScan",
    "build",
    "evaluate",
    "load_context",
    "metric_data",
    "request_from_event",
    "run",
    "run_monitor",
    "run_window",
]
