"""predict's configuration: the function's environment (template.yaml, PredictFunction)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelops.stages.runtime import StageSettings

LAMBDA_RESPONSE_LIMIT = 6_291_556
"""Bytes of a synchronous Lambda invocation's response; over it API Gateway answers 502."""


class Settings(StageSettings):
    """``REGISTRY_BUCKET``, ``CAPTURE_STREAM``, ... (each field's name in upper case); a variable set to
    the empty string counts as unset (``CAPTURE_STREAM=""``: no capture)."""

    model_config = SettingsConfigDict(env_ignore_empty=True)

    registry_bucket: Annotated[str, Field(min_length=3)]
    capture_stream: str | None = None
    alias_cache_ttl_seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 10.0
    settings_ttl_seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 60.0
    """How long a model's monitoring settings (``models/{model}/config.json``: the capture sample rate
    set by ``modelops models config``) are kept before predict reads them again."""
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_body_bytes: Annotated[int, Field(ge=1024, le=6 * 1024 * 1024)] = 1_048_576
    max_response_bytes: Annotated[int, Field(ge=4096, le=LAMBDA_RESPONSE_LIMIT)] = 6_000_000
    """A request whose answer could be larger (``render.answer_bound``) is refused before inference
    (413 ``response_too_large``); the default leaves ~290 KB of Lambda's limit as headroom."""
    artifact_dir: str = "/tmp/modelops-artifacts"
    max_loaded_versions: Annotated[int, Field(ge=1, le=256)] = 8
    event_bus_name: str = "default"
