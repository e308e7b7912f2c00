"""monitor: drift and quality of the last window of captured traffic (``modelops.stages.monitor``).

Runs on the template's schedule (hourly by default) or on a direct invoke
``{"model": "demo", "window_seconds": 3600}``. Real failures raise, so the async retries and the
DLQ keep the event. numpy only: no tensorflow, scipy or pandas on this import path.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import monitor, runtime


@runtime.logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return monitor.run(event)
