"""convert: a finished training job -> verified LiteRT artifacts, a registry version, ``ModelVersionPublished``.

Triggered by EventBridge (SageMaker training and tuning job / Batch job state changes of this stack's
jobs); everything it does is in ``modelops.stages.convert`` (docs/convert.md). It loads the job's SavedModel
and never moves an alias: the gate function decides on ``ModelVersionPublished``. Real failures raise, so
Lambda's async retries and the DLQ keep the event; a permanently bad artifact is reported
(ConversionFailed) instead of retried.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import convert, runtime


@runtime.logger.inject_lambda_context(log_event=False)
@runtime.metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return convert.run(event, context)
