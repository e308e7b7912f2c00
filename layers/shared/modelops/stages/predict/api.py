"""The predict Lambda's entry (docs/contracts.md "Predict API"; docs/predict.md is the reference).

Routes: ``POST /models/{name}/predict``, ``GET /models``, ``GET /models/{name}``, ``GET /openapi.json``.
``handle`` starts the invocation's log context and cold-start metric (``telemetry``; ended on
return), then sends POST
predict down a lean path (``proxy.predict_event``) that skips the Powertools resolver's per-request
routing and its imports; everything else goes to the resolver (``routes``), whose own POST predict
route calls the same function, so both answer identically.
"""

from __future__ import annotations

from typing import Any

from modelops.stages.predict.proxy import PREDICT_RESOURCE, predict_event, proxy_result
from modelops.stages.predict.telemetry import telemetry


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry: POST predict on the lean path; everything else through the Powertools
    resolver (``modelops.stages.predict.routes``, imported on first use: it costs ~150 ms of imports
    that a container serving only predictions never pays)."""
    tel = telemetry()
    tel.start(event, context)
    try:
        if event.get("resource") == PREDICT_RESOURCE and event.get("httpMethod") == "POST":
            return proxy_result(predict_event(event, context))
        from modelops.stages.predict.routes import app

        result: dict[str, Any] = app.resolve(event, context)
        return result
    finally:
        tel.end()
