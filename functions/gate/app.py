"""gate: a published version -> the promotion gate -> the production alias (``modelops.stages.gate``).

Triggered by EventBridge (``ModelVersionPublished``, which convert sends). A zip function on the shared
layer: no TensorFlow and no code a training job wrote, which is why it, not convert, may move aliases
(docs/convert.md "Trust boundary"). Real failures raise, so Lambda's async retries and the DLQ keep the
event.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import gate, runtime


@runtime.logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return gate.run(event, context)
