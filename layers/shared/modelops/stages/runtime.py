"""What every stage shares, at one level: Powertools Logger, Metrics and Tracer, the settings pattern,
and where idempotency is applied.

- **Telemetry**: one :data:`logger` and one :data:`metrics` per container, created here and nowhere else.
  ``functions/<stage>/app.py`` decorates its handler with ``logger.inject_lambda_context`` and
  ``metrics.log_metrics``; the stage modules log and add metrics through these two objects. The service
  name and namespace come from ``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``
  (template.yaml Globals).
- **Settings**: one :class:`StageSettings` subclass per stage (pydantic-settings, from the function's
  environment), read once per container by the stage's cached ``build()``.
- **Idempotency**: every stage that acts on an event applies Powertools Idempotency in its ``build()``
  with :func:`idempotent` (a DynamoDB persistence layer on the stack's idempotency table), keyed by what
  makes the event the same event; the handler never wraps it itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "modelops"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ModelOps"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class StageSettings(BaseSettings):
    """Base of every stage's settings: read from the environment (case-insensitive names, e.g.
    ``REGISTRY_BUCKET`` -> ``registry_bucket``), unknown variables ignored, immutable once read."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)


def idempotent[F: Callable[..., Any]](
    fn: F,
    *,
    table: str,
    dynamodb: Any,
    key_jmespath: str,
    expires_after_seconds: int,
    data_keyword_argument: str = "event",
    raise_on_no_idempotency_key: bool = False,
    key_prefix: str | None = None,
) -> tuple[F, Any]:
    """``fn`` wrapped by Powertools' ``idempotent_function`` on ``table``; returns it with its config
    (call ``config.register_lambda_context(context)`` in the handler so in-progress records expire
    with the invocation)."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    config = IdempotencyConfig(
        event_key_jmespath=key_jmespath,
        expires_after_seconds=expires_after_seconds,
        raise_on_no_idempotency_key=raise_on_no_idempotency_key,
    )
    store = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
    wrapped = idempotent_function(
        data_keyword_argument=data_keyword_argument,
        config=config,
        persistence_store=store,
        key_prefix=key_prefix,
    )(fn)
    return wrapped, config


def invoke_idempotent(built: tuple[Callable[..., Any], Any], event: Any, context: Any) -> Any:
    """Call a stage's idempotent handler (``idempotent(...)``'s pair, built once per container) for one
    invocation: the Lambda context is registered first, so an in-progress record expires with it."""
    handle, config = built
    config.register_lambda_context(context)
    return handle(event=event)


def traced[F: Callable[..., Any]](fn: F) -> F:
    """Wrap with Powertools Tracer only when ``POWERTOOLS_TRACE_DISABLED`` is explicitly false (X-Ray's
    SDK costs cold-start time that a stack without tracing should not pay)."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").lower() not in ("0", "false"):
        return fn
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE).capture_lambda_handler(fn)  # type: ignore[return-value]
