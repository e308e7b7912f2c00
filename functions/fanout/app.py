"""fanout: the MonitorStateMachine's steps (``modelops.stages.fanout``).

``plan_handler`` (MonitorPlanFunction) cuts the window's capture objects into chunks, ``chunk_handler``
(MonitorChunkFunction) is one Distributed Map child, ``reduce_handler`` (MonitorReduceFunction) merges
the chunks and finishes the window as the single-pass monitor does. Failures raise: the map retries.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import fanout, runtime


@runtime.logger.inject_lambda_context(log_event=False)
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return fanout.plan(event)


@runtime.logger.inject_lambda_context(log_event=False)
def chunk_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return fanout.chunk(event)


@runtime.logger.inject_lambda_context(log_event=False)
def reduce_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return fanout.reduce(event)
