"""convert: a finished training job -> verified LiteRT artifacts, a registry version, the promotion gate.

Triggered by EventBridge (SageMaker training and tuning job / Batch job state changes of this stack's
jobs); everything it does is in ``modelops.stages.convert.handle_event`` (docs/convert.md). Real failures raise, so Lambda's
async retries and the DLQ keep the event; a permanently bad artifact is reported (ConversionFailed)
instead of retried.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelops import aws
from modelops.stages import convert as conversion
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry

logger = Logger()
metrics = Metrics()

# One completion per job and status: replays inside the expiry window return the first answer; the
# registry's dedup_key (the job name) covers replays after it. Batch is keyed by job id: the children of
# an array job share their parent's name (and are ignored), so a child's answer must not stand for it.
IDEMPOTENCY_KEY = (
    "[detail.TrainingJobName || detail.HyperParameterTuningJobName || detail.jobId || detail.jobName, "
    "detail.TrainingJobStatus || detail.HyperParameterTuningJobStatus || detail.status]"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    registry_bucket: str
    # Required: it stops concurrent deliveries of one event (Registry._claim lets a retry of the same
    # event take over its own claim, which is safe only when deliveries never run at once).
    idempotency_table: str = Field(min_length=1)
    event_bus_name: str = "default"
    convert_work_dir: str | None = None
    max_tflite_bytes: int = conversion.Options.max_tflite_bytes
    max_single_row_latency_us: float = conversion.Options.max_single_row_latency_us


def _process(deps: conversion.Deps, event: dict[str, Any]) -> dict[str, Any]:
    result = conversion.handle_event(event, deps)
    for name, (unit, value) in result.metrics.items():
        metrics.add_metric(name=name, unit=unit, value=value)
    logger.info("convert finished", extra=result.to_dict())
    return result.to_dict()


@functools.cache
def runtime() -> tuple[Callable[..., dict[str, Any]], IdempotencyConfig]:
    """Clients, registry, event bus and the (idempotent) processing function: once per warm container."""
    settings = Settings()
    s3 = aws.client("s3")
    deps = conversion.Deps(
        s3=s3,
        registry=Registry(s3, settings.registry_bucket, actor="convert"),
        bus=EventBus(aws.client("events"), settings.event_bus_name),
        sagemaker=aws.client("sagemaker"),
        options=conversion.Options(
            work_dir=settings.convert_work_dir,
            max_tflite_bytes=settings.max_tflite_bytes,
            max_single_row_latency_us=settings.max_single_row_latency_us,
        ),
    )
    config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, expires_after_seconds=6 * 3600)

    def process(event: dict[str, Any]) -> dict[str, Any]:
        return _process(deps, event)

    store = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, boto3_client=aws.client("dynamodb")
    )
    process = idempotent_function(data_keyword_argument="event", config=config, persistence_store=store)(
        process
    )
    return process, config


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    process, config = runtime()
    config.register_lambda_context(context)
    return process(event=event)
