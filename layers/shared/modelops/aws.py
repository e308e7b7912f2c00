"""The AWS client factory: boto3 clients built once per warm container (never at import time), and the one
classifier of AWS errors (:func:`classify`: missing / conflict / transient / denied / invalid)."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

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


# ---------------------------------------------------------------------------- errors
# The one place (with modelops.storage) that knows botocore's exception types. Every other module
# asks ``classify(exc)`` what an AWS failure means and catches ``AwsError``.
AwsError: tuple[type[BaseException], ...] = (ClientError, BotoCoreError)
"""Catch this tuple for "any failure of an AWS call"; then ask :func:`classify` what it was."""


class ErrorKind(StrEnum):
    MISSING = "missing"
    """The key, object, bucket entry or resource is not there (404, NoSuchKey, ResourceNotFound)."""
    CONFLICT = "conflict"
    """A condition failed: the object exists (If-None-Match), its ETag moved (If-Match), a name is taken."""
    TRANSIENT = "transient"
    """Worth retrying: throttling, 5xx, timeouts, connection errors."""
    DENIED = "denied"
    """Credentials or IAM: 403, AccessDenied, expired tokens."""
    INVALID = "invalid"
    """The request itself is wrong (ValidationException, 400): retrying cannot help."""
    NOT_MODIFIED = "not_modified"
    """A conditional GET (If-None-Match) found the object unchanged (304)."""
    OTHER = "other"


MISSING_CODES = frozenset(
    {"NoSuchKey", "404", "NotFound", "NoSuchUpload", "ResourceNotFoundException", "ResourceNotFound"}
)
CONFLICT_CODES = frozenset(
    {
        "PreconditionFailed",
        "ConditionalRequestConflict",
        "412",
        "409",
        "ConditionalCheckFailedException",
        "ResourceInUse",
        "ResourceInUseException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ResourceLimitExceeded",
        "LimitExceededException",
        "500",
        "502",
        "503",
        "504",
    }
)
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "403",
        "Forbidden",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
    }
)
INVALID_CODES = frozenset({"ValidationException", "ValidationError", "InvalidParameterValue", "400"})
"""Retrying cannot help. (Not Batch's ClientException: Batch also answers it for states of the stack
itself, a disabled queue or a job definition deregistered during a deploy, which a retry outlives.)"""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` ("" for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_status(exc: BaseException) -> int:
    """The HTTP status of a ``ClientError`` (0 for anything else)."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def classify(exc: BaseException) -> ErrorKind:
    """What an AWS failure means. Codes are checked before statuses (S3's 409 on a conditional write is a
    conflict, a 409 ``OperationAborted`` is transient); botocore's own errors (timeouts, connection
    resets, endpoint errors) are transient."""
    if isinstance(exc, BotoCoreError):
        return ErrorKind.TRANSIENT
    if not isinstance(exc, ClientError):
        return ErrorKind.OTHER
    code, status = error_code(exc), error_status(exc)
    if code == "OperationAborted":
        return ErrorKind.TRANSIENT
    if code in ("304", "NotModified") or status == 304:
        return ErrorKind.NOT_MODIFIED
    for codes, kind in (
        (MISSING_CODES, ErrorKind.MISSING),
        (CONFLICT_CODES, ErrorKind.CONFLICT),
        (TRANSIENT_CODES, ErrorKind.TRANSIENT),
        (DENIED_CODES, ErrorKind.DENIED),
        (INVALID_CODES, ErrorKind.INVALID),
    ):
        if code in codes:
            return kind
    if status == 404:
        return ErrorKind.MISSING
    if status in (409, 412):
        return ErrorKind.CONFLICT
    if status == 429 or status >= 500:
        return ErrorKind.TRANSIENT
    if status == 403:
        return ErrorKind.DENIED
    return ErrorKind.OTHER


def is_kind(exc: BaseException, *kinds: ErrorKind) -> bool:
    return classify(exc) in kinds
