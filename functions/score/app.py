"""score: batch scoring (``modelops.stages.score``, docs/scoring.md).

``start_handler`` (ScoreStartFunction) starts a run for an uploaded ``datasets/{model}/score/*.csv``;
``plan_handler``, ``chunk_handler`` (one Distributed Map child) and ``reduce_handler`` are the
ScoreStateMachine's steps. Failures raise: the map retries a chunk, then records why it failed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import runtime, score


@runtime.logger.inject_lambda_context(log_event=False)
def start_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return score.start(event)


@runtime.logger.inject_lambda_context(log_event=False)
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return score.plan(event)


@runtime.logger.inject_lambda_context(log_event=False)
def chunk_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return score.chunk(event)


@runtime.logger.inject_lambda_context(log_event=False)
def reduce_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return score.reduce(event)
