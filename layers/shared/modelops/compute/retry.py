"""Bounded retries of a backend's calls: throttling, quota and 5xx answers are retried with jittered
backoff, then :class:`~modelops.domain.errors.BackendError` is raised so that Lambda's retries and the
DLQ keep the event. A request the backend refused as invalid is not retried at all (:func:`refused`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelops import aws
from modelops.compute.request import JobRejectedError
from modelops.domain.errors import BackendError

MAX_REFUSAL_CHARS = 600
"""How much of a backend's own explanation a rejection carries (it ends up in an alert)."""


@dataclass
class RetryPolicy:
    """Bounded retries with jittered exponential backoff ("equal jitter": half fixed, half random)."""

    attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        d = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return d / 2 + self.rng.uniform(0, d / 2)

    def call[T](self, what: str, fn: Callable[[], T], retryable: Callable[[Exception], str | None]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                code = retryable(exc)
                if code is None:
                    raise
                if attempt == self.attempts:
                    raise BackendError(
                        f"{what}: still {code} after {self.attempts} attempts; failing so that the event "
                        "is retried (and kept in the DLQ if it keeps failing)"
                    ) from exc
                self.sleep(self.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover


def aws_retryable(exc: Exception) -> str | None:
    """What makes an AWS failure worth another attempt here (throttling, quotas, 5xx, timeouts: the one
    classifier's ``TRANSIENT``, plus any HTTP 429 or 5xx whatever its code), else None."""
    status = aws.error_status(exc)
    if aws.classify(exc) is aws.ErrorKind.TRANSIENT or status >= 500 or status == 429:
        return aws.error_code(exc) or (str(status) if status else type(exc).__name__)
    return None


def refused(
    what: str, job: str, exc: BaseException, field_of: Callable[[str], str | None] | None = None
) -> BackendError:
    """The error to raise for a backend call that failed with ``exc`` (after :class:`RetryPolicy`): an
    invalid request (``aws.classify``: ``INVALID``, e.g. ``ValidationException``) is a
    :class:`~modelops.compute.request.JobRejectedError` carrying the backend's explanation and, via
    ``field_of(explanation)``, the field it named; anything else a plain ``BackendError`` (retried)."""
    code = aws.error_code(exc) or type(exc).__name__
    if aws.classify(exc) is not aws.ErrorKind.INVALID:
        return BackendError(f"{what} refused {job}: {code}")
    detail = getattr(exc, "response", {}).get("Error", {}).get("Message") or str(exc)
    detail = " ".join(str(detail).split())[:MAX_REFUSAL_CHARS]
    return JobRejectedError(
        f"{what} refused {job} as invalid ({code}: {detail}); retrying the same request cannot help",
        field=field_of(detail) if field_of else None,
    )
