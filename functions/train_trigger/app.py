"""train_trigger: a dataset dropped under ``datasets/{model}/*.csv`` starts exactly one training job.

S3 ``ObjectCreated`` events (possibly several records, keys URL-encoded); everything it does is in
``modelops.stages.train_trigger`` (docs/training.md). Real failures raise, so Lambda's async retries and then
the DLQ keep the event; a bad dataset is quarantined and reported instead.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import runtime, train_trigger


@runtime.logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return train_trigger.build().handle_event(event, context)
