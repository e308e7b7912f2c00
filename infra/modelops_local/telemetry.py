"""What AWS services publish on their own and moto does not: Lambda and API Gateway metrics,
CloudWatch Logs of each invocation, and metrics that handlers print in Embedded Metric Format.

Everything is buffered and written to moto (``PutMetricData``, ``PutLogEvents``) by a background
thread once a second, off the request path; ``flush()`` writes now (alarm evaluation and
``Twin.wait_idle`` call it). moto computes no percentiles, so the values the twin itself publishes
are also kept for an hour in memory, where alarms with ``ExtendedStatistic: pNN`` read them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("modelops.twin")

_KEEP_S = 3600.0
DimKey = tuple[tuple[str, str], ...]


def dims_key(dimensions: dict[str, str] | list[dict[str, str]] | None) -> DimKey:
    if not dimensions:
        return ()
    if isinstance(dimensions, dict):
        return tuple(sorted((str(k), str(v)) for k, v in dimensions.items()))
    return tuple(sorted((str(d["Name"]), str(d["Value"])) for d in dimensions))


def emf_metrics(line: str) -> list[tuple[str, dict[str, Any]]]:
    """``(namespace, MetricDatum)`` pairs from one line of Embedded Metric Format, or []."""
    line = line.strip()
    if not (line.startswith("{") and '"_aws"' in line):
        return []
    try:
        doc = json.loads(line)
        meta = doc["_aws"]
        ts = datetime.fromtimestamp(float(meta.get("Timestamp", time.time() * 1000)) / 1000.0, UTC)
        out: list[tuple[str, dict[str, Any]]] = []
        for directive in meta.get("CloudWatchMetrics", []):
            ns = str(directive["Namespace"])
            dim_sets = directive.get("Dimensions") or [[]]
            for metric in directive.get("Metrics", []):
                name = str(metric["Name"])
                if name not in doc:
                    continue
                raw = doc[name]
                values = [float(v) for v in (raw if isinstance(raw, list) else [raw])]
                for dim_set in dim_sets:
                    dims = [{"Name": str(k), "Value": str(doc[k])} for k in dim_set if k in doc]
                    datum: dict[str, Any] = {"MetricName": name, "Dimensions": dims, "Timestamp": ts}
                    if metric.get("Unit"):
                        datum["Unit"] = str(metric["Unit"])
                    if len(values) == 1:
                        datum["Value"] = values[0]
                    else:
                        datum["Values"] = values
                    out.append((ns, datum))
        return out
    except (KeyError, TypeError, ValueError):
        return []


class Telemetry:
    """Buffers metrics and log events for moto; keeps recent raw values for percentiles."""

    def __init__(self, cloudwatch: Any, logs: Any, interval_s: float = 1.0) -> None:
        self._cw = cloudwatch
        self._logs = logs
        self._interval = interval_s
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._metrics: list[tuple[str, dict[str, Any]]] = []
        self._events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._known_streams: set[tuple[str, str]] = set()
        self._ledger: dict[tuple[str, str, DimKey], deque[tuple[float, float]]] = defaultdict(deque)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="twin-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - telemetry must never stop the twin
                log.warning("telemetry flush failed: %s", exc)

    # ---------------------------------------------------------------- record

    def metric(
        self,
        namespace: str,
        name: str,
        value: float,
        unit: str = "None",
        dimensions: dict[str, str] | None = None,
        ts: float | None = None,
    ) -> None:
        when = time.time() if ts is None else ts
        datum = {
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()],
            "Value": float(value),
            "Unit": unit,
            "Timestamp": datetime.fromtimestamp(when, UTC),
        }
        with self._lock:
            self._metrics.append((namespace, datum))
            self._remember(namespace, name, dims_key(dimensions), when, [float(value)])

    def emf(self, lines: list[str]) -> int:
        """Take the EMF lines out of a handler's output; returns how many metrics were found."""
        found = 0
        for line in lines:
            for ns, datum in emf_metrics(line):
                values = datum.get("Values") or [datum["Value"]]
                with self._lock:
                    self._metrics.append((ns, datum))
                    self._remember(
                        ns,
                        datum["MetricName"],
                        dims_key(datum["Dimensions"]),
                        datum["Timestamp"].timestamp(),
                        values,
                    )
                found += 1
        return found

    def log_events(self, group: str, stream: str, lines: list[str], ts: float | None = None) -> None:
        if not group:
            return
        ms = int((time.time() if ts is None else ts) * 1000)
        with self._lock:
            self._events[(group, stream)].extend({"timestamp": ms, "message": line} for line in lines if line)

    def _remember(self, ns: str, name: str, dims: DimKey, when: float, values: list[float]) -> None:
        series = self._ledger[(ns, name, dims)]
        for v in values:
            series.append((when, v))
        cutoff = time.time() - _KEEP_S
        while series and series[0][0] < cutoff:
            series.popleft()

    def values(
        self, namespace: str, name: str, dimensions: Any, start: float, end: float
    ) -> list[float] | None:
        """Raw values the twin saw in [start, end), or None when it never saw this metric."""
        with self._lock:
            series = self._ledger.get((namespace, name, dims_key(dimensions)))
            if series is None:
                return None
            return [v for t, v in series if start <= t < end]

    # ---------------------------------------------------------------- write to moto

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                metrics, self._metrics = self._metrics, []
                events, self._events = self._events, defaultdict(list)
            by_ns: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for ns, datum in metrics:
                by_ns[ns].append(datum)
            for ns, data in by_ns.items():
                for i in range(0, len(data), 500):
                    try:
                        self._cw.put_metric_data(Namespace=ns, MetricData=data[i : i + 500])
                    except Exception as exc:  # noqa: BLE001
                        log.warning(
                            "could not publish %d metric(s) to %s: %s", len(data[i : i + 500]), ns, exc
                        )
            for (group, stream), evs in events.items():
                self._put_logs(group, stream, sorted(evs, key=lambda e: e["timestamp"]))

    def _put_logs(self, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        if (group, stream) not in self._known_streams:
            for call, kwargs in (
                (self._logs.create_log_group, {"logGroupName": group}),
                (self._logs.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
            ):
                try:
                    call(**kwargs)
                except self._logs.exceptions.ResourceAlreadyExistsException:
                    pass
                except Exception as exc:  # noqa: BLE001
                    log.warning("could not create log stream %s/%s: %s", group, stream, exc)
                    return
            self._known_streams.add((group, stream))
        for i in range(0, len(events), 5000):
            try:
                self._logs.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=events[i : i + 5000]
                )
            except Exception as exc:  # noqa: BLE001
                log.warning("could not write %d log event(s) to %s: %s", len(events), group, exc)
