"""predict: POST /models/{name}/predict, GET /models, GET /models/{name}, GET /openapi.json.

The API lives in ``modelops.stages.predict`` (docs/predict.md). ``handle`` gives the log records
the keys that ``Logger.inject_lambda_context`` would set and writes its EMF metrics itself (cold
start included): the Powertools decorators cost ~25 µs per invocation, against ~13 µs for the whole
warm answer (docs/predict.md "Performance"). Under SnapStart (template.yaml ``PredictSnapStart``) the
stage's runtime hooks are registered at import (``modelops.stages.predict.snapstart``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages.predict import snapstart
from modelops.stages.predict.api import handle
from modelops.stages.runtime import traced

snapstart.register()  # SnapStart's runtime hooks, only when Lambda initialises for a snapshot


@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
