"""The local backend: the same ``CreateTrainingJob`` request, POSTed as JSON to the local twin's training
service (``{MODELOPS_LOCAL_TRAINING_URL}/training-jobs``); 409 means "already started". The twin runs a
search inside the one job.

The twin's control endpoints take only requests that carry its session token
(``X-Modelops-Twin-Token``): the twin sets it in every function's environment as
``MODELOPS_LOCAL_TOKEN``, beside ``MODELOPS_LOCAL_TRAINING_URL``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from modelops import aws
from modelops.compute.request import JobRequest, StartedJob, search_base
from modelops.compute.retry import RetryPolicy
from modelops.compute.sagemaker import create_training_job_request
from modelops.domain.errors import BackendError

TOKEN_HEADER = "X-Modelops-Twin-Token"
TOKEN_ENV = "MODELOPS_LOCAL_TOKEN"


class _HttpStatus(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.code = ""
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            inner = doc.get("Error")
            err: dict[str, Any] = inner if isinstance(inner, dict) else doc
            self.code = str(err.get("Code") or err.get("code") or err.get("__type") or "").rsplit("#", 1)[-1]


def _http_retryable(exc: Exception) -> str | None:
    if isinstance(exc, _HttpStatus) and (
        exc.status == 429 or exc.status >= 500 or exc.code in aws.TRANSIENT_CODES
    ):
        return f"HTTP {exc.status} {exc.code}".strip()
    if isinstance(exc, urllib.error.URLError | ConnectionError | TimeoutError):
        return "unreachable"
    return None


class LocalBackend:
    """The twin's training service: ``POST {base_url}/training-jobs`` with the CreateTrainingJob request."""

    name = "local"

    def __init__(
        self,
        base_url: str,
        *,
        role_arn: str = "",
        image: str = "modelops-training:local",
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        token: str | None = None,
    ):
        self.url = base_url.rstrip("/") + "/training-jobs"
        # The twin's session token (train_trigger's settings read MODELOPS_LOCAL_TOKEN, which the twin
        # puts in its functions' environment); read here only when no caller passed one.
        self.token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self.role_arn = role_arn or "arn:aws:iam::123456789012:role/modelops-local-training"
        self.image = image
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()

    def request(self, req: JobRequest) -> dict[str, Any]:
        return create_training_job_request(req, image=self.image, role_arn=self.role_arn)

    def plan_search(self, req: JobRequest) -> dict[str, Any]:
        """The twin runs the whole search inside the one training job (parallel processes, Optuna)."""
        return {**search_base(req), "mode": "in_job"}

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers[TOKEN_HEADER] = self.token
        http = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(http, timeout=self.timeout_s) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            raise _HttpStatus(exc.code, exc.read().decode("utf-8", "replace")) from None
        try:
            doc = json.loads(text) if text.strip() else {}
        except ValueError:
            doc = {}
        return doc if isinstance(doc, dict) else {}

    def start(self, req: JobRequest) -> StartedJob:
        body = json.dumps(self.request(req)).encode()
        try:
            doc = self.retry.call(f"POST {self.url}", lambda: self._post(body), _http_retryable)
        except _HttpStatus as exc:
            if exc.status == 409 or exc.code == "ResourceInUse":
                return StartedJob(req.job, self.name, "", already_started=True)
            raise BackendError(f"the local training service refused {req.job}: {exc}") from exc
        return StartedJob(req.job, self.name, str(doc.get("TrainingJobArn", "")))
