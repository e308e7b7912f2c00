"""predict's errors and the one place that turns an exception into an HTTP answer.

Every error has one shape, ``{"error": {"code", "message", "request_id"}}``; no stack trace, bucket
name or key ever reaches a body (details go to the log under the request id).
"""

from __future__ import annotations

import orjson

from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    ModelNotFoundError,
    ModelOpsError,
    RegistryUnavailableError,
    SpecError,
    VersionNotFoundError,
)
from modelops.stages.predict.serving import ArtifactLoadError, ModelUnavailableError, NoProductionVersionError
from modelops.stages.predict.telemetry import telemetry
from modelops.stages.runtime import logger

JSON = "application/json"


class RequestError(ModelOpsError):
    """Bad input, with the HTTP status and stable code it maps to."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


# (status, code, fixed message or None to show the exception's own, which our code writes without internals)
_ERROR_MAP: tuple[tuple[type[Exception], int, str, str | None], ...] = (
    (NoProductionVersionError, 503, "no_production_version", None),
    (ArtifactLoadError, 503, "model_unavailable", None),
    (ModelUnavailableError, 503, "model_unavailable", None),
    (ModelNotFoundError, 404, "model_not_found", None),
    (SpecError, 404, "model_not_found", None),
    (VersionNotFoundError, 404, "version_not_found", None),
    (AliasNotFoundError, 404, "alias_not_found", None),
    (
        RegistryUnavailableError,
        503,
        "registry_unavailable",
        "the model registry is unavailable; try again shortly",
    ),
    (
        CorruptDocumentError,
        503,
        "model_unavailable",
        "the registry holds a malformed document for this model",
    ),
)


def error_result(
    exc: Exception,
    request_id: str,
    version: int | None = None,
    *,
    caller: str | None = None,
    model: str | None = None,
    rows: int | None = None,
) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) for ``exc``; its EMF line counts it as the invocation's ``Errors``
    metric and carries the request's log fields (``telemetry.Telemetry.error``)."""
    if isinstance(exc, RequestError):
        status, code, message = exc.status, exc.code, str(exc)
    else:
        mapped = next((m for m in _ERROR_MAP if isinstance(exc, m[0])), None)
        if mapped is not None:
            _, status, code, fixed = mapped
            message = fixed or str(exc)
        else:
            logger.exception("unhandled error", extra={"request_id": request_id})
            status, code = 500, "internal_error"
            message = "internal error; quote the request id when reporting it"
    if status >= 500 and status != 500:
        logger.warning("%s: %s", code, exc, extra={"request_id": request_id})
    telemetry().error(code, status, request_id, caller, model, version, rows)
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}}).decode()
    headers = {"Content-Type": JSON, "X-Request-Id": request_id}
    if status == 503:
        headers["Retry-After"] = "10"
    if version is not None:
        headers["X-Model-Version"] = str(version)
    return status, body, headers
