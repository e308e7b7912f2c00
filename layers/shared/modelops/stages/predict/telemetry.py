"""predict's metrics, written as CloudWatch Embedded Metric Format lines, and its log context.

Same namespace, metric names, units and dimensions as Powertools Metrics wrote them (docs/predict.md
"Observability"); one line per outcome of an invocation, written straight to stdout:

- served: ``Latency`` (Milliseconds) and ``Rows`` (Count), dimensions ``Model``, ``Version``, ``service``;
- failed: ``Errors`` (Count), dimensions ``Code``, ``service``;
- ``CaptureFailures`` (Count), ``CatalogueReads`` (Count): dimension ``service``;
- ``OutOfVocabulary`` (Count): cells of a served request whose category the feature's vocabulary
  does not hold (answered with the out-of-vocabulary bucket), one line per categorical feature that
  had any, dimensions ``Model``, ``Version``, ``Feature``, ``service``;
- the container's first invocation: ``ColdStart`` (Count), dimensions ``function_name``, ``service``.

The line of a request's outcome (served, failed, catalogue read) is also its access log: the
properties ``request_id``, ``caller`` (the identity API Gateway names), ``model``, ``version``,
``rows`` and ``status`` (null when not known), never the inputs. They sit at the top level of the
document, where Powertools' ``add_metadata`` puts them: one write per request, no second log line.

Powertools Metrics costs ~18 µs per invocation (unit validation, serialisation with the stdlib
``json``, an environment read per flush); this costs ~1.3 µs: all but the timestamp and the values
of a document is serialised once per model version (or error code) and kept.

``start`` gives the logger the keys that ``Logger.inject_lambda_context`` sets (cold start, the
Lambda context, API Gateway's request id as correlation id), without its JMESPath lookup, and only
when the invocation logs: ``start`` keeps the event and context, and a filter on the logger's handler
appends the keys before the invocation's first record is formatted (most answers log nothing; an
``append_keys`` per invocation cost ~1.5 µs). ``end`` forgets them, so that a record logged after
the invocation (by the capture sender, or another function's handler on the twin) never gets them:
it carries the keys last appended, those of the last invocation that logged.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from typing import Any

import orjson

from modelops.stages.runtime import logger

_TRUE = ("1", "true", "yes", "on", "y", "t")
_SERVED = (("Latency", "Milliseconds"), ("Rows", "Count"))
_ERRORS = (("Errors", "Count"),)
_CAPTURE_FAILURES = (("CaptureFailures", "Count"),)
_CATALOGUE_READS = (("CatalogueReads", "Count"),)
_COLD_START = (("ColdStart", "Count"),)
_OUT_OF_VOCABULARY = (("OutOfVocabulary", "Count"),)
_MAX_FRAMES = 1024
_MAX_NAME = 128


class _InvocationKeys(logging.Filter):
    """Appends the current invocation's log keys (those of ``inject_lambda_context``) to the logger's
    the first time a record passes the logger's handler during the invocation."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: tuple[dict[str, Any], Any, bool] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        pending = self.pending
        if pending is not None:
            self.pending = None
            event, context, cold = pending
            logger.append_keys(
                cold_start=cold,
                function_name=context.function_name,
                function_memory_size=context.memory_limit_in_mb,
                function_arn=context.invoked_function_arn,
                function_request_id=context.aws_request_id,
                correlation_id=(event.get("requestContext") or {}).get("requestId"),
            )
        return True


_INVOCATION_KEYS = _InvocationKeys()


class Telemetry:
    """Writes predict's EMF lines and sets its log keys; one per container (``telemetry()``)."""

    def __init__(self, namespace: str, service: str, *, disabled: bool = False, log_event: bool = False):
        self.namespace = namespace
        self.service = service
        self.disabled = disabled
        self.log_event = log_event
        self.cold = True
        self._frames: dict[tuple[Any, ...], str] = {}
        logger.registered_handler.addFilter(_INVOCATION_KEYS)  # once: a filter is added only once

    @classmethod
    def from_env(cls) -> Telemetry:
        """Configured by the variables Powertools reads (``POWERTOOLS_METRICS_NAMESPACE``,
        ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_DISABLED``, ``POWERTOOLS_LOGGER_LOG_EVENT``)."""
        env = os.environ
        return cls(
            env.get("POWERTOOLS_METRICS_NAMESPACE") or "ModelOps",
            env.get("POWERTOOLS_SERVICE_NAME") or "predict",
            disabled=env.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() in _TRUE,
            log_event=env.get("POWERTOOLS_LOGGER_LOG_EVENT", "").strip().lower() in _TRUE,
        )

    # ------------------------------------------------------------------ per invocation
    def start(self, event: dict[str, Any], context: Any) -> None:
        """Log keys for this invocation (those ``inject_lambda_context`` sets, all of them, appended
        when the invocation first logs: the twin runs every function's handler in one process, with
        one logger), and the ``ColdStart`` metric on the container's first."""
        cold, self.cold = self.cold, False
        _INVOCATION_KEYS.pending = (event, context, cold)
        if cold:
            self._emit(
                self._keep(
                    ("cold",), {"function_name": context.function_name, "service": self.service}, _COLD_START
                ),
                {"ColdStart": [1.0]},
            )
        if self.log_event:
            logger.info(event)

    def end(self) -> None:
        """The invocation is over: its log keys, if it logged nothing, are never appended."""
        _INVOCATION_KEYS.pending = None

    def served(
        self, model: str, version: int, milliseconds: float, rows: int, request_id: str, caller: str | None
    ) -> None:
        """A served request's line: its metrics and its log fields (status 200)."""
        key = ("served", model, version)
        self._emit(
            self._frames.get(key)
            or self._keep(
                key,
                {"Model": model, "Version": str(version), "service": self.service},
                _SERVED,
                {"model": model, "version": version, "status": 200},
            ),
            {
                "request_id": request_id,
                "caller": caller,
                "rows": rows,
                "Latency": [milliseconds],
                "Rows": [float(rows)],
            },
        )

    def error(
        self,
        code: str,
        status: int,
        request_id: str,
        caller: str | None,
        model: str | None = None,
        version: int | None = None,
        rows: int | None = None,
    ) -> None:
        """A failed request's line: the ``Errors`` metric and its log fields (``model`` is the name
        the request gave, cut to ``_MAX_NAME`` characters; what is not known yet is null)."""
        key = ("error", code)
        self._emit(
            self._frames.get(key) or self._keep(key, {"Code": code, "service": self.service}, _ERRORS),
            {
                "request_id": request_id,
                "caller": caller,
                "model": model[:_MAX_NAME] if model is not None else None,
                "version": version,
                "rows": rows,
                "status": status,
                "Errors": [1.0],
            },
        )

    def capture_failures(self, lost: int) -> None:
        key = ("capture",)
        self._emit(
            self._frames.get(key) or self._keep(key, {"service": self.service}, _CAPTURE_FAILURES),
            {"CaptureFailures": [float(lost)]},
        )

    def out_of_vocabulary(self, model: str, version: int, counts: dict[str, int]) -> None:
        """``OutOfVocabulary`` per categorical feature with unknown values in a served request."""
        for feature, n in counts.items():
            if not n:
                continue
            key = ("oov", model, version, feature)
            self._emit(
                self._frames.get(key)
                or self._keep(
                    key,
                    {"Model": model, "Version": str(version), "Feature": feature, "service": self.service},
                    _OUT_OF_VOCABULARY,
                ),
                {"OutOfVocabulary": [float(n)]},
            )

    def catalogue_read(self, request_id: str, caller: str | None, model: str | None = None) -> None:
        """A catalogue route's answer (status 200): ``CatalogueReads`` and the request's log fields."""
        key = ("catalogue",)
        self._emit(
            self._frames.get(key) or self._keep(key, {"service": self.service}, _CATALOGUE_READS),
            {
                "request_id": request_id,
                "caller": caller,
                "model": model[:_MAX_NAME] if model is not None else None,
                "version": None,
                "rows": None,
                "status": 200,
                "CatalogueReads": [1.0],
            },
        )

    # ------------------------------------------------------------------ EMF
    def _emit(self, frame: str, values: dict[str, Any]) -> None:
        """One EMF document: ``{"_aws": {"Timestamp", "CloudWatchMetrics"}, dimension: value, ...,
        property: value, ..., metric: [value], ...}``: the kept ``frame`` (``_keep``) with the
        timestamp and the ``values`` (the request's log fields, then the metrics' values, named in
        the order of the frame's metrics)."""
        if self.disabled:
            return
        numbers = orjson.dumps(values)
        sys.stdout.write(f'{{"_aws":{{"Timestamp":{int(time.time() * 1000)}{frame}{numbers[1:].decode()}\n')

    def _keep(
        self,
        key: tuple[Any, ...],
        dimensions: dict[str, str],
        metrics: tuple[tuple[str, str], ...],
        properties: dict[str, Any] | None = None,
    ) -> str:
        """The frame of ``key``'s documents (what they are about): everything but the timestamp and
        the values, serialised once and kept (the callers look it up in ``_frames`` first)."""
        if len(self._frames) >= _MAX_FRAMES:
            self._frames.clear()
        frame = self._frames[key] = self._frame(dimensions, metrics, properties or {})
        return frame

    def _frame(
        self, dimensions: dict[str, str], metrics: tuple[tuple[str, str], ...], properties: dict[str, Any]
    ) -> str:
        """The document from after the timestamp to the values: the directive, the dimensions and
        the ``properties`` that every document of the frame carries."""
        directive = {
            "Namespace": self.namespace,
            "Dimensions": [list(dimensions)],
            "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics],
        }
        cloudwatch = orjson.dumps([directive]).decode()
        fields = orjson.dumps({**dimensions, **properties}).decode()[1:-1]
        return f',"CloudWatchMetrics":{cloudwatch}}},{fields},'


@functools.cache
def telemetry() -> Telemetry:
    """The container's ``Telemetry``, configured from the environment at its first use."""
    return Telemetry.from_env()
