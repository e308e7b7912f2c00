"""monitor: drift and quality of the last window of captured traffic (``modelops.stages.monitor``).

Runs on the template's schedule (hourly by default) or on a direct invoke
``{"model": "demo", "window_seconds": 3600}``. Real failures raise, so the async retries and the
DLQ keep the event. numpy only: no tensorflow, scipy or pandas on this import path.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelops import aws
from modelops.stages import monitor as monitoring

logger = Logger()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    data_bucket: str
    registry_bucket: str
    powertools_metrics_namespace: str = "ModelOps"
    monitor_window_seconds: int = 3600
    min_samples: int = 100


@functools.cache
def settings() -> Settings:
    return Settings()


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    cfg = settings()
    model, window = monitoring.request_from_event(event)
    summary = monitoring.run_monitor(
        monitoring.MonitorSettings(
            data_bucket=cfg.data_bucket,
            registry_bucket=cfg.registry_bucket,
            namespace=cfg.powertools_metrics_namespace,
            window_seconds=window or cfg.monitor_window_seconds,
            min_samples=cfg.min_samples,
            model=model,
        ),
        s3=aws.client("s3"),
        cloudwatch=aws.client("cloudwatch"),
        events=aws.client("events"),
    )
    logger.info(
        "monitor run",
        extra={"summary": {k: v for k, v in summary.items() if k != "models"}, "models": summary["models"]},
    )
    return summary
