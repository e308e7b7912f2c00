"""boto3 clients, built once per warm container (never at import time)."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
INTERACTIVE_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=5
)
"""For calls on a request path (predict): API Gateway gives up after 29 s, so fail fast and answer 503."""


@functools.cache
def client(
    service: str, region: str | None = None, endpoint_url: str | None = None, config: Config = RETRY_CONFIG
) -> Any:
    """A boto3 client with standard-mode retries, cached per (service, region, endpoint).

    ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) is honoured by boto3 itself,
    which is how the local twin points every client at moto.
    """
    session: Any = boto3.session.Session()
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def clear_cache() -> None:
    """Forget cached clients (tests that switch endpoints or mocks call this)."""
    client.cache_clear()
