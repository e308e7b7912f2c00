"""alert: de-duplicate, enrich and publish alarms and stage events to AlertsTopic (``modelops.stages.alert``).

Subscribed to the alarm topic (SNS records) and to this stack's EventBridge events. A failed publish
raises (after botocore's retries and after releasing the de-duplication claim), so Lambda's async
retries and then the DLQ keep the notification.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelops import aws
from modelops.stages import alert as alerting

logger = Logger()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    alerts_topic_arn: str
    dedup_table: str
    registry_bucket: str | None = None
    dedup_window_seconds: int = 3600


@functools.cache
def alerter() -> alerting.Alerter:
    """Built once per warm container."""
    cfg = Settings()
    return alerting.Alerter(
        alerting.AlertSettings(
            topic_arn=cfg.alerts_topic_arn,
            dedup_table=cfg.dedup_table,
            registry_bucket=cfg.registry_bucket,
            dedup_window_seconds=cfg.dedup_window_seconds,
        ),
        sns=aws.client("sns"),
        dynamodb=aws.client("dynamodb"),
        s3=aws.client("s3"),
        events=aws.client("events"),
    )


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = alerter().handle(event)
    logger.info("alert run", extra=result)
    return result
