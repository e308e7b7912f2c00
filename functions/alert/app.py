"""alert: de-duplicate, enrich and publish alarms and stage events to AlertsTopic (``modelops.stages.alert``).

Subscribed to the alarm topic (SNS records) and to this stack's EventBridge events. A failed publish
raises (after botocore's retries and after releasing the de-duplication claim), so Lambda's async
retries and then the DLQ keep the notification.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import alert, runtime


@runtime.logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return alert.run(event)
