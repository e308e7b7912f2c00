"""CloudWatch alarm evaluation, which moto does not do.

For each ``AWS::CloudWatch::Alarm`` of the template: read the last ``EvaluationPeriods`` periods of
its metric from moto (``GetMetricData``; percentiles from the twin's own record of what it
published, since moto computes none), decide the state the way CloudWatch does (``Threshold``,
``ComparisonOperator``, ``DatapointsToAlarm``, ``TreatMissingData``), store it in moto
(``SetAlarmState``) and, on a transition, publish CloudWatch's JSON message to each action topic of
the new state. Metric math: ``SUM|MAX|MIN|AVG(METRICS())`` (or of ``[id, ...]``) and a plain id.

Simplifications (documented in docs/local-twin.md): periods end at the moment of evaluation
instead of on period boundaries; with ``TreatMissingData: missing`` a partly missing window is
judged on the datapoints present.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops_local.telemetry import Telemetry

log = logging.getLogger("modelops.twin")

REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-north-1": "EU (Stockholm)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ca-central-1": "Canada (Central)",
    "sa-east-1": "South America (Sao Paulo)",
}

_OPS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}
_TWIN_NAMESPACES = {"AWS/Lambda", "AWS/ApiGateway", "AWS/SQS"}
_STANDARD_STATS = {"Sum", "Average", "Minimum", "Maximum", "SampleCount"}
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")
_AGG = re.compile(
    r"^\s*(SUM|MAX|MIN|AVG)\s*\(\s*(METRICS\s*\(\s*(?:'([^']*)'|\"([^\"]*)\")?\s*\)|\[([^\]]*)\])\s*\)\s*$",
    re.I,
)


@dataclass
class AlarmResult:
    """One alarm after one evaluation."""

    logical_id: str
    name: str
    old_state: str
    new_state: str
    reason: str
    values: list[float | None] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.old_state != self.new_state

    def summary(self) -> dict[str, Any]:
        return {
            "alarm": self.logical_id,
            "name": self.name,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "changed": self.changed,
            "reason": self.reason,
            "values": self.values,
            "notified": self.notified,
        }


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _fmt(v: float) -> str:
    return repr(float(v))


class AlarmEvaluator:
    """Evaluates the template's alarms (resolved properties keyed by logical id)."""

    def __init__(
        self,
        alarms: dict[str, dict[str, Any]],
        *,
        cloudwatch: Any,
        sns: Any,
        telemetry: Telemetry,
        region: str,
        account_id: str,
        before: Callable[[], None] | None = None,
    ) -> None:
        self.alarms = alarms
        self._cw = cloudwatch
        self._sns = sns
        self._telemetry = telemetry
        self._region = region
        self._account = account_id
        self._before = before
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    # ------------------------------------------------------------------ data

    def _series(
        self, metric_stats: dict[str, dict[str, Any]], periods: int, period: int, now: float
    ) -> dict[str, list[float | None]]:
        """Per query id, one value (or None) per period, oldest first, the last ending now."""
        end = math.floor(now) + 1  # moto drops sub-seconds: include the current second
        start = end - periods * period
        out: dict[str, list[float | None]] = {qid: [None] * periods for qid in metric_stats}
        queries = []
        for qid, ms in metric_stats.items():
            stat = str(ms["Stat"])
            if stat in _STANDARD_STATS:
                queries.append(
                    {
                        "Id": qid,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": ms["Metric"]["Namespace"],
                                "MetricName": ms["Metric"]["MetricName"],
                                "Dimensions": [
                                    {"Name": str(d["Name"]), "Value": str(d["Value"])}
                                    for d in ms["Metric"].get("Dimensions") or []
                                ],
                            },
                            "Period": int(ms.get("Period", period)),
                            "Stat": stat,
                        },
                        "ReturnData": True,
                    }
                )
                continue
            pct = _PCT.match(stat)
            if not pct:
                self._warn_once(f"stat:{stat}", "alarm statistic %s is not evaluated by the twin", stat)
                continue
            m = ms["Metric"]
            for i in range(periods):
                lo = start + i * period
                vals = self._telemetry.values(
                    m["Namespace"], m["MetricName"], m.get("Dimensions"), lo, lo + period
                )
                if vals is None and m["Namespace"] in _TWIN_NAMESPACES:
                    vals = []  # the twin publishes these itself: nothing seen yet means no data
                if vals is None:
                    self._warn_once(
                        f"pct:{m['Namespace']}:{m['MetricName']}",
                        "%s %s %s: moto computes no percentiles, and only metrics the twin saw (its own, EMF) "
                        "have them locally; treated as missing data",
                        m["Namespace"],
                        m["MetricName"],
                        stat,
                    )
                    break
                if vals:
                    out[qid][i] = _percentile(vals, float(pct.group(1)))
        if queries:
            resp = self._cw.get_metric_data(
                MetricDataQueries=queries,
                StartTime=datetime.fromtimestamp(start, UTC),
                EndTime=datetime.fromtimestamp(end, UTC),
            )
            for result in resp.get("MetricDataResults", []):
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    idx = int((ts.timestamp() - start) // period)
                    if 0 <= idx < periods:
                        out[result["Id"]][idx] = float(value)
        return out

    def _values(self, alarm: dict[str, Any], now: float) -> tuple[list[float | None], int, str]:
        periods = int(alarm.get("EvaluationPeriods", 1))
        metrics = alarm.get("Metrics")
        if not metrics:
            stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic") or "Average"
            period = int(alarm.get("Period", 60))
            ms = {
                "Metric": {
                    "Namespace": alarm.get("Namespace"),
                    "MetricName": alarm.get("MetricName"),
                    "Dimensions": alarm.get("Dimensions") or [],
                },
                "Period": period,
                "Stat": stat,
            }
            return self._series({"m": ms}, periods, period, now)["m"], period, str(stat)
        stats = {str(m["Id"]): m["MetricStat"] for m in metrics if "MetricStat" in m}
        returned = [
            m
            for m in metrics
            if m.get("ReturnData", True) is True or str(m.get("ReturnData")).lower() == "true"
        ]
        if len(returned) != 1:
            raise ValueError("a metric-math alarm needs exactly one query with ReturnData: true")
        top = returned[0]
        period = int(top.get("Period") or next((int(s.get("Period", 60)) for s in stats.values()), 60))
        series = self._series(stats, periods, period, now)
        if "MetricStat" in top:
            return series[str(top["Id"])], period, str(top["MetricStat"]["Stat"])
        expr = str(top.get("Expression", ""))
        if expr.strip() in series:
            return series[expr.strip()], period, expr
        agg = _AGG.match(expr)
        if not agg:
            raise ValueError(f"metric math {expr!r} is not supported by the twin")
        func = agg.group(1).upper()
        if agg.group(5) is not None:
            ids = [x.strip() for x in agg.group(5).split(",") if x.strip()]
        else:
            prefix = agg.group(3) or agg.group(4) or ""
            ids = [qid for qid in stats if qid.startswith(prefix)]
        combined: list[float | None] = []
        for i in range(periods):
            present = [series[q][i] for q in ids if q in series and series[q][i] is not None]
            vals = [float(v) for v in present if v is not None]
            if not vals:
                combined.append(None)
            elif func == "SUM":
                combined.append(sum(vals))
            elif func == "MAX":
                combined.append(max(vals))
            elif func == "MIN":
                combined.append(min(vals))
            else:
                combined.append(sum(vals) / len(vals))
        return combined, period, expr

    # ------------------------------------------------------------------ state

    @staticmethod
    def decide(alarm: dict[str, Any], values: list[float | None], current: str) -> tuple[str, str]:
        """``(state, reason)`` for these period values (oldest first), as CloudWatch decides."""
        op_name = str(alarm.get("ComparisonOperator", "GreaterThanThreshold"))
        if op_name not in _OPS:
            return current, f"ComparisonOperator {op_name} is not evaluated by the twin"
        op, words = _OPS[op_name]
        threshold = float(alarm.get("Threshold", 0))
        n = len(values)
        m = int(alarm.get("DatapointsToAlarm") or n)
        treat = str(alarm.get("TreatMissingData") or "missing")
        present = [v for v in values if v is not None]
        missing = n - len(present)
        plural = "s" if n != 1 else ""
        if not present:
            if treat == "breaching":
                return "ALARM", (
                    f"Threshold Crossed: no datapoints were received for {n} period{plural} and {n} missing "
                    f"datapoint{plural} {'were' if n != 1 else 'was'} treated as [Breaching]."
                )
            if treat == "notBreaching":
                return "OK", (
                    f"Threshold Crossed: no datapoints were received for {n} period{plural} and {n} missing "
                    f"datapoint{plural} {'were' if n != 1 else 'was'} treated as [NonBreaching]."
                )
            if treat == "ignore":
                return current, "No datapoints: the alarm keeps its state (TreatMissingData: ignore)."
            return (
                "INSUFFICIENT_DATA",
                f"Insufficient Data: {n} datapoint{plural} {'were' if n != 1 else 'was'} unknown.",
            )
        breaching = sum(
            1 for v in values if (v is not None and op(v, threshold)) or (v is None and treat == "breaching")
        )
        shown = ", ".join(_fmt(v) for v in reversed(present))
        if breaching >= m:
            return "ALARM", (
                f"Threshold Crossed: {breaching} out of the last {n} datapoint{plural} [{shown}] "
                f"{'were' if breaching != 1 else 'was'} {words} the threshold ({_fmt(threshold)}) "
                f"(minimum {m} datapoint{'s' if m != 1 else ''} for OK -> ALARM transition)."
            )
        extra = f" ({missing} missing)" if missing else ""
        return "OK", (
            f"Threshold Crossed: {len(present)} datapoint{'s' if len(present) != 1 else ''} [{shown}]{extra} "
            f"{'were' if len(present) != 1 else 'was'} not {words} the threshold ({_fmt(threshold)})."
        )

    def _trigger(self, alarm: dict[str, Any], period: int) -> dict[str, Any]:
        def dims(ds: Any) -> list[dict[str, str]]:
            return [{"value": str(d["Value"]), "name": str(d["Name"])} for d in ds or []]

        common = {
            "Period": period,
            "EvaluationPeriods": int(alarm.get("EvaluationPeriods", 1)),
            "DatapointsToAlarm": int(alarm.get("DatapointsToAlarm") or alarm.get("EvaluationPeriods", 1)),
            "ComparisonOperator": alarm.get("ComparisonOperator"),
            "Threshold": float(alarm.get("Threshold", 0)),
            "TreatMissingData": alarm.get("TreatMissingData") or "missing",
            "EvaluateLowSampleCountPercentile": alarm.get("EvaluateLowSampleCountPercentile") or "",
        }
        if alarm.get("Metrics"):
            metrics = []
            for q in alarm["Metrics"]:
                entry: dict[str, Any] = {"Id": q["Id"], "ReturnData": bool(q.get("ReturnData", True))}
                if "Expression" in q:
                    entry["Expression"] = q["Expression"]
                    entry["Label"] = q.get("Label", q["Id"])
                if "MetricStat" in q:
                    ms = q["MetricStat"]
                    entry["MetricStat"] = {
                        "Metric": {
                            "Dimensions": dims(ms["Metric"].get("Dimensions")),
                            "MetricName": ms["Metric"]["MetricName"],
                            "Namespace": ms["Metric"]["Namespace"],
                        },
                        "Period": int(ms.get("Period", period)),
                        "Stat": ms["Stat"],
                    }
                metrics.append(entry)
            return {**common, "Metrics": metrics}
        trigger: dict[str, Any] = {
            "MetricName": alarm.get("MetricName"),
            "Namespace": alarm.get("Namespace"),
            "Unit": alarm.get("Unit"),
            "Dimensions": dims(alarm.get("Dimensions")),
        }
        if alarm.get("ExtendedStatistic"):
            trigger.update(
                {"StatisticType": "ExtendedStatistic", "ExtendedStatistic": alarm["ExtendedStatistic"]}
            )
        else:
            trigger.update(
                {"StatisticType": "Statistic", "Statistic": str(alarm.get("Statistic", "Average")).upper()}
            )
        return {**trigger, **common}

    def message(
        self, alarm: dict[str, Any], old: str, new: str, reason: str, period: int, when: datetime
    ) -> dict[str, Any]:
        """The JSON CloudWatch publishes to an alarm's SNS actions."""
        name = alarm["AlarmName"]
        return {
            "AlarmName": name,
            "AlarmDescription": alarm.get("AlarmDescription"),
            "AWSAccountId": self._account,
            "AlarmConfigurationUpdatedTimestamp": self._created,
            "NewStateValue": new,
            "NewStateReason": reason,
            "StateChangeTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000",
            "Region": REGION_NAMES.get(self._region, self._region),
            "AlarmArn": f"arn:aws:cloudwatch:{self._region}:{self._account}:alarm:{name}",
            "OldStateValue": old,
            "OKActions": list(alarm.get("OKActions") or []),
            "AlarmActions": list(alarm.get("AlarmActions") or []),
            "InsufficientDataActions": list(alarm.get("InsufficientDataActions") or []),
            "Trigger": self._trigger(alarm, period),
        }

    def evaluate(self, now: float | None = None) -> list[AlarmResult]:
        with self._lock:
            if self._before is not None:
                self._before()
            self._telemetry.flush()
            when = time.time() if now is None else now
            names = [a["AlarmName"] for a in self.alarms.values()]
            current: dict[str, str] = {}
            for i in range(0, len(names), 100):
                resp = self._cw.describe_alarms(AlarmNames=names[i : i + 100])
                for a in resp.get("MetricAlarms", []) + resp.get("CompositeAlarms", []):
                    current[a["AlarmName"]] = a["StateValue"]
            results = []
            for logical, alarm in self.alarms.items():
                name = alarm["AlarmName"]
                old = current.get(name, "INSUFFICIENT_DATA")
                try:
                    values, period, stat = self._values(alarm, when)
                except Exception as exc:  # noqa: BLE001 - one bad alarm must not stop the others
                    self._warn_once(f"alarm:{logical}", "alarm %s is not evaluated: %s", logical, exc)
                    continue
                new, reason = self.decide(alarm, values, old)
                result = AlarmResult(logical, name, old, new, reason, values)
                if new != old:
                    self._transition(alarm, result, period, stat, when)
                results.append(result)
            return results

    def _transition(
        self, alarm: dict[str, Any], result: AlarmResult, period: int, stat: str, when: float
    ) -> None:
        stamp = datetime.fromtimestamp(when, UTC)
        data = {
            "version": "1.0",
            "queryDate": stamp.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "statistic": stat,
            "period": period,
            "recentDatapoints": [v for v in result.values if v is not None],
            "threshold": float(alarm.get("Threshold", 0)),
        }
        self._cw.set_alarm_state(
            AlarmName=result.name,
            StateValue=result.new_state,
            StateReason=result.reason[:1023],
            StateReasonData=json.dumps(data),
        )
        log.info(
            "alarm %s: %s -> %s (%s)", result.logical_id, result.old_state, result.new_state, result.reason
        )
        if str(alarm.get("ActionsEnabled", True)).lower() == "false":
            return
        key = {"ALARM": "AlarmActions", "OK": "OKActions", "INSUFFICIENT_DATA": "InsufficientDataActions"}[
            result.new_state
        ]
        actions = list(alarm.get(key) or [])
        if not actions:
            return
        body = self.message(alarm, result.old_state, result.new_state, result.reason, period, stamp)
        region = REGION_NAMES.get(self._region, self._region)
        subject = f'{result.new_state}: "{result.name}" in {region}'
        if len(subject) > 100:
            subject = subject[:97] + "..."
        for arn in actions:
            if not str(arn).startswith("arn:aws:sns:"):
                self._warn_once(
                    f"action:{arn}", "alarm action %s is not an SNS topic; the twin skips it", arn
                )
                continue
            try:
                self._sns.publish(TopicArn=arn, Subject=subject, Message=json.dumps(body))
                result.notified.append(str(arn))
            except Exception as exc:  # noqa: BLE001
                log.warning("alarm %s: could not publish to %s: %s", result.logical_id, arn, exc)
