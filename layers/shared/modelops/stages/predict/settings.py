"""predict's configuration: the function's environment (template.yaml, PredictFunction)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelops.stages.runtime import StageSettings


class Settings(StageSettings):
    """``REGISTRY_BUCKET``, ``CAPTURE_STREAM``, ... (each field's name in upper case); a variable set to
    the empty string counts as unset (``CAPTURE_STREAM=""``: no capture)."""

    model_config = SettingsConfigDict(env_ignore_empty=True)

    registry_bucket: Annotated[str, Field(min_length=3)]
    capture_stream: str | None = None
    alias_cache_ttl_seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 10.0
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_body_bytes: Annotated[int, Field(ge=1024, le=6 * 1024 * 1024)] = 1_048_576
    artifact_dir: str = "/tmp/modelops-artifacts"
    max_loaded_versions: Annotated[int, Field(ge=1, le=256)] = 8
    event_bus_name: str = "default"
