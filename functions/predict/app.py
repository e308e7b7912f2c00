"""predict: POST /models/{name}/predict, GET /models, GET /models/{name}, GET /openapi.json.

The API lives in ``modelops.stages.predict.api`` (docs/predict.md); this handler only adds Powertools'
logging (API Gateway request id as correlation id) and EMF metrics (with the cold-start metric).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages.predict.api import handle, logger, metrics, traced


@traced
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
