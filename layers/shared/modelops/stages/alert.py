"""The alert stage: turn alarms and stage events into one readable message each on AlertsTopic.

Input (``handle``), one of:

* an SNS event (``Records[].Sns.Message``) whose message is a CloudWatch alarm state change
  (``AlarmName``, ``NewStateValue``, ``OldStateValue``, ``NewStateReason``, ``StateChangeTime``,
  ``Trigger``...), as the template's AlarmTopic delivers it;
* an EventBridge event with ``source: "modelops"`` (detail-types in ``modelops/events.py``), or the
  same shape invoked directly;
* anything else: logged and published as one generic "unrecognised notification" alert (severity
  warning, with an excerpt), never dropped, because a notification we cannot read may still matter.

Alarm transitions that matter are published: anything -> ALARM, and ALARM -> OK or
INSUFFICIENT_DATA (a recovery). OK <-> INSUFFICIENT_DATA is logged and dropped (``suppressed``):
CloudWatch notifies OKActions when a fresh alarm first sees data, which is nobody's news.

Each notification becomes an :class:`Alert` with a fingerprint. **De-duplication**: a conditional
``PutItem`` of ``alert#{fingerprint}`` on the idempotency table claims it for
``DEDUP_WINDOW_SECONDS``; a second delivery finds the claim and publishes nothing. The claim is
``INPROGRESS`` while publishing (a lease, so a crashed attempt does not block its retry for long) and
``COMPLETE`` after; when the publish fails (after botocore's retries) the claim is deleted and the
error re-raised, so Lambda's async retry publishes and the DLQ keeps the event if it never works.

Fingerprints: an alarm transition is ``AlarmName + NewStateValue + StateChangeTime``; a stage event
is its detail-type + model + version + its numbers (the detail without times and locations).
Drift is special: the drift alarm (metric ``MaxPsiRatio``) in ALARM and a ``DriftDetected`` event
describing the same drift (model, version, drifted features) share one fingerprint, so people get
one drift message, whichever arrives first.

**Canary rollback**: when a ``DriftDetected`` event, the drift alarm's latest reports, or an alarm
with ``Model``/``Version`` dimensions name the version that is the production alias's canary, the
canary is cleared by compare-and-swap, ``CanaryRolledBack`` is published, and the alert says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelops.domain.errors import ModelOpsError
from modelops.storage.events import DETAIL_TYPES, SOURCE, EventBus
from modelops.storage.registry import AliasDoc, Registry

log = logging.getLogger(__name__)

DEDUP_PREFIX = "alert#"
SUBJECT_MAX = 99
BODY_EXCERPT = 2000
DRIFT_METRIC = "MaxPsiRatio"
REPORT_MAX_AGE_SECONDS = 6 * 3600
_VOLATILE = {
    "at",
    "time",
    "timestamp",
    "created_at",
    "report",
    "report_html",
    "window_start",
    "window_end",
    "request_id",
    "event_id",
    "updated_at",
}

_EVENT_SEVERITY = {
    "TrainingJobFailed": "critical",
    "ConversionFailed": "critical",
    "ArtifactIntegrityFailed": "critical",
    "DatasetRejected": "warning",
    "PromotionRejected": "warning",
    "DriftDetected": "warning",
    "CanaryRolledBack": "warning",
    "ModelPromoted": "info",
    "ModelVersionPublished": "info",
    "TrainingJobStarted": "info",
}
_NEXT_STEPS = {
    "TrainingJobFailed": "Read the training job's logs (CloudWatch /aws/sagemaker/TrainingJobs or the Batch job), "
    "fix the data or the spec, and upload the dataset again.",
    "ConversionFailed": "The model was trained but not published. Check the convert function's log for the failed "
    "step (unsupported op, parity, serving budget); production keeps serving the current version.",
    "ArtifactIntegrityFailed": "An artifact in the registry does not match its manifest's SHA-256. It was not "
    "loaded and is kept for inspection; find out who wrote it, and republish the version from its training job.",
    "DatasetRejected": "Fix the dataset (the reason names the column or row) and upload it again; the rejected "
    "object is kept.",
    "PromotionRejected": "The new version did not beat production on the promotion metric; production is unchanged. "
    "Promote it by hand (`modelops models promote`) only if you know better.",
    "DriftDetected": "Open the report and compare the drifted features' bins with the baseline. If an upstream "
    "producer changed (units, a pipeline bug), fix it; if the world changed, retrain on recent labelled data.",
    "CanaryRolledBack": "The canary no longer takes traffic. Look at its monitor report before trying it again.",
    "ModelPromoted": "Nothing to do; the monitor compares traffic against the new version's baseline from now on.",
    "ModelVersionPublished": "Nothing to do unless you promote by hand.",
    "TrainingJobStarted": "Nothing to do; a ModelVersionPublished or a failure follows.",
}


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AlertSettings:
    topic_arn: str
    dedup_table: str
    registry_bucket: str | None = None
    dedup_window_seconds: int = 3600
    lease_seconds: int = 120  # an INPROGRESS claim older than this is taken over (crashed attempt)
    report_max_age_seconds: int = REPORT_MAX_AGE_SECONDS


@dataclass
class Alert:
    kind: str  # "drift", "alarm", "event", "unrecognised"
    severity: str  # "critical", "warning", "info"
    subject: str
    body: str
    fingerprint: str
    model: str | None = None
    version: int | None = None
    targets: list[tuple[str, int]] = field(default_factory=list)  # (model, version) pairs it is about
    rollback_reason: str = ""
    suppressed: bool = False  # a transition nobody needs to hear about (for example INSUFFICIENT_DATA -> OK)

    def attributes(self) -> dict[str, dict[str, str]]:
        return {
            "severity": {"DataType": "String", "StringValue": self.severity},
            "model": {"DataType": "String", "StringValue": self.model or "none"},
            "kind": {"DataType": "String", "StringValue": self.kind},
        }


# ---------------------------------------------------------------------------------------------- helpers
def _sha(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def clean_subject(text: str) -> str:
    """SNS subjects: printable ASCII, one line, under 100 characters."""
    s = "".join(c if 32 <= ord(c) < 127 else "?" for c in " ".join(text.split()))
    return s if len(s) <= SUBJECT_MAX else s[: SUBJECT_MAX - 3] + "..."


def drift_fingerprint(items: list[tuple[str, int, list[str]]]) -> str:
    """Identity of a drift (models, versions, drifted features), shared by the alarm and the event."""
    return "drift-" + _sha(sorted((m, int(v), sorted(f)) for m, v, f in items))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text.replace("Z", "+0000"), fmt).timestamp()
        except ValueError:
            continue
    return None


def _dims(trigger: dict[str, Any]) -> dict[str, str]:
    out = {}
    for d in trigger.get("Dimensions") or []:
        if isinstance(d, dict):
            name = d.get("name", d.get("Name"))
            value = d.get("value", d.get("Value"))
            if name is not None and value is not None:
                out[str(name)] = str(value)
    return out


# ---------------------------------------------------------------------------------------------- parsing
def split_notifications(event: Any) -> list[tuple[str, Any]]:
    """[(shape, payload)]: shape is "alarm", "event" or "unknown"."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list) and event["Records"]:
        out = []
        for rec in event["Records"]:
            sns = rec.get("Sns") if isinstance(rec, dict) else None
            if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
                out.append(("unknown", rec))
                continue
            try:
                msg = json.loads(sns["Message"])
            except ValueError:
                out.append(("unknown", {"Subject": sns.get("Subject"), "Message": sns["Message"]}))
                continue
            out.append(_classify(msg))
        return out
    return [_classify(event)]


def _classify(doc: Any) -> tuple[str, Any]:
    if isinstance(doc, dict):
        if isinstance(doc.get("AlarmName"), str) and isinstance(doc.get("NewStateValue"), str):
            return ("alarm", doc)
        if (
            doc.get("source") == SOURCE
            and doc.get("detail-type") in DETAIL_TYPES
            and isinstance(doc.get("detail"), dict)
        ):
            return ("event", doc)
    return ("unknown", doc)


# ---------------------------------------------------------------------------------------------- dedup
class DedupStore:
    """Claims on the idempotency table (``id = alert#{fingerprint}``, TTL attribute ``expiration``)."""

    def __init__(
        self, dynamodb: Any, table: str, window: int, lease: int, clock: Callable[[], float] = time.time
    ):
        self.db, self.table, self.window, self.lease, self.clock = dynamodb, table, window, lease, clock

    def _key(self, fp: str) -> dict[str, Any]:
        return {"id": {"S": DEDUP_PREFIX + fp}}

    def claim(self, fp: str) -> bool:
        """True when this caller now owns the fingerprint; False when it was seen within the window."""
        now = int(self.clock())
        try:
            self.db.put_item(
                TableName=self.table,
                Item={
                    **self._key(fp),
                    "status": {"S": "INPROGRESS"},
                    "expiration": {"N": str(now + self.window)},
                    "lease_until": {"N": str(now + self.lease)},
                },
                ConditionExpression="attribute_not_exists(id) OR expiration < :now OR "
                "(#s = :inprogress AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":inprogress": {"S": "INPROGRESS"}},
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def complete(self, fp: str, message_id: str) -> None:
        try:
            self.db.update_item(
                TableName=self.table,
                Key=self._key(fp),
                UpdateExpression="SET #s = :done, message_id = :mid",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":done": {"S": "COMPLETE"}, ":mid": {"S": message_id}},
            )
        except (ClientError, BotoCoreError):  # the message is out; an INPROGRESS claim still dedups
            log.warning("could not mark alert %s complete", fp, exc_info=True)

    def mark(self, fp: str) -> None:
        """Record a fingerprint as already announced (for example inside another alert)."""
        now = int(self.clock())
        self.db.put_item(
            TableName=self.table,
            Item={
                **self._key(fp),
                "status": {"S": "COMPLETE"},
                "expiration": {"N": str(now + self.window)},
                "lease_until": {"N": str(now)},
            },
        )

    def release(self, fp: str) -> None:
        self.db.delete_item(TableName=self.table, Key=self._key(fp))


# ---------------------------------------------------------------------------------------------- alerter
class Alerter:
    """The alert domain. Takes its AWS clients; builds none."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        sns: Any,
        dynamodb: Any,
        s3: Any | None = None,
        events: Any | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.sns = sns
        self.s3 = s3
        self.bus = EventBus(events) if events is not None else None
        self.clock = clock
        self.dedup = DedupStore(
            dynamodb, settings.dedup_table, settings.dedup_window_seconds, settings.lease_seconds, clock
        )
        self.registry = (
            Registry(s3, settings.registry_bucket, actor="alert")
            if s3 is not None and settings.registry_bucket
            else None
        )

    # ------------------------------------------------------------------ entry point
    def handle(self, event: Any) -> dict[str, Any]:
        """Process every notification in ``event``; raise the first publish failure after trying all."""
        results: list[dict[str, Any]] = []
        failure: BaseException | None = None
        for shape, payload in split_notifications(event):
            try:
                results.append(self.process(shape, payload))
            except (ClientError, BotoCoreError, ModelOpsError) as exc:
                log.error("alert not published; the event will be retried", exc_info=True)
                failure = failure or exc
        if failure is not None:
            raise failure
        return {"alerts": results}

    def process(self, shape: str, payload: Any) -> dict[str, Any]:
        if shape == "alarm":
            alert = self.from_alarm(payload)
        elif shape == "event":
            alert = self.from_event(payload)
        else:
            log.warning("unrecognised notification: %s", json.dumps(payload, default=str)[:500])
            alert = self.unrecognised(payload)
        if alert.suppressed:
            log.info("alarm transition not worth a message: %s", alert.subject)
            return {"status": "suppressed", "fingerprint": alert.fingerprint, "kind": alert.kind}
        if not self.dedup.claim(alert.fingerprint):
            log.info("duplicate alert %s dropped", alert.fingerprint)
            return {"status": "duplicate", "fingerprint": alert.fingerprint, "kind": alert.kind}
        rolled: list[dict[str, Any]] = []
        try:
            rolled = self.rollback_canaries(alert)
            if rolled:
                lines = [
                    f"- {r['model']}: canary v{r['version']} rolled back; production stays on v{r['production']}."
                    for r in rolled
                ]
                alert.body = "Canary rollback done:\n" + "\n".join(lines) + "\n\n" + alert.body
                alert.subject = clean_subject(alert.subject + " [canary rolled back]")
            resp = self.sns.publish(
                TopicArn=self.settings.topic_arn,
                Subject=clean_subject(alert.subject),
                Message=alert.body,
                MessageAttributes=alert.attributes(),
            )
        except BaseException:
            self.dedup.release(alert.fingerprint)
            for r in rolled:
                self.dedup.release(r["fingerprint"])
            raise
        message_id = str(resp.get("MessageId", ""))
        self.dedup.complete(alert.fingerprint, message_id)
        return {
            "status": "published",
            "fingerprint": alert.fingerprint,
            "kind": alert.kind,
            "severity": alert.severity,
            "model": alert.model,
            "message_id": message_id,
            "subject": clean_subject(alert.subject),
            "rolled_back": rolled,
        }

    # ------------------------------------------------------------------ alarms
    def from_alarm(self, a: dict[str, Any]) -> Alert:
        name, state = str(a["AlarmName"]), str(a["NewStateValue"])
        old = str(a.get("OldStateValue", "?"))
        raw_trigger = a.get("Trigger")
        trigger: dict[str, Any] = raw_trigger if isinstance(raw_trigger, dict) else {}
        metric = str(trigger.get("MetricName") or "")
        if not metric:  # metric-math alarms name their metrics inside Trigger.Metrics
            metric = ",".join(
                str(((m.get("MetricStat") or {}).get("Metric") or {}).get("MetricName", ""))
                for m in trigger.get("Metrics") or []
                if isinstance(m, dict)
            ).strip(",")
        reason = str(a.get("NewStateReason", ""))
        when = str(a.get("StateChangeTime", ""))
        fp = "alarm-" + _sha(name, state, when)
        if state != "ALARM" and old != "ALARM":
            # OK <-> INSUFFICIENT_DATA: nothing was wrong and nothing is now (CloudWatch still notifies)
            return Alert("alarm", "info", clean_subject(f"{name}: {old} -> {state}"), "", fp, suppressed=True)
        dims = _dims(trigger)
        header = (
            f"Alarm {name} moved {old} -> {state} at {when or 'an unknown time'}.\n"
            f"Reason: {reason or '-'}\n"
            + (f"Description: {a['AlarmDescription']}\n" if a.get("AlarmDescription") else "")
        )
        if state == "ALARM":
            severity = "warning" if metric in (DRIFT_METRIC, "Duration") else "critical"
        else:
            severity = "info"
        if metric == DRIFT_METRIC or DRIFT_METRIC in metric:
            return self._drift_alarm(name, state, header, fp, severity, when)
        model = dims.get("Model")
        version = int(dims["Version"]) if dims.get("Version", "").isdigit() else None
        what = f"{model} v{version}" if model and version else (model or "")
        subject = f"[{severity.upper()}] {state}: {name}" + (f" ({what})" if what else "")
        steps = _alarm_steps(name, metric, state)
        body = header + (f"Model: {what}\n" if what else "") + f"\nWhat to do next:\n{steps}\n"
        targets = [(model, version)] if model and version and state == "ALARM" else []
        return Alert(
            "alarm",
            severity,
            clean_subject(subject),
            body,
            fp,
            model,
            version,
            targets,
            rollback_reason=f"alarm {name} in ALARM",
        )

    def _drift_alarm(self, name: str, state: str, header: str, fp: str, severity: str, when: str) -> Alert:
        if state != "ALARM":
            subject = f"[INFO] Drift alarm {name} is {state}"
            body = (
                header
                + "\nNo production model's inputs drift beyond its threshold any more. Nothing to do.\n"
            )
            return Alert("drift", "info", clean_subject(subject), body, fp)
        reports = self.latest_drift_reports(_parse_time(when))
        if not reports:
            subject = f"[WARNING] Input drift: {name} in ALARM"
            body = header + (
                "\nNo recent monitor report names a drifted model (reports are under monitoring/ in the "
                "registry bucket). Run `modelops monitor run` to see the current numbers.\n\nWhat to do next:\n"
                + _NEXT_STEPS["DriftDetected"]
                + "\n"
            )
            return Alert("drift", severity, clean_subject(subject), body, fp)
        items: list[tuple[str, int, list[str]]] = []
        sections = []
        targets = []
        for rep in reports:
            for v in rep["drifted_versions"]:
                feats = [f["name"] for f in v["drifted_features"]]
                items.append((rep["model"], int(v["version"]), feats))
                targets.append((rep["model"], int(v["version"])))
                sections.append(
                    _drift_text(rep["model"], v, rep.get("report_html"), rep.get("report"), rep.get("window"))
                )
        first_model, first_version, first_feats = items[0]
        model_attr = first_model if len({m for m, _, _ in items}) == 1 else "multiple"
        subject = f"[WARNING] Input drift: {first_model} v{first_version} - {', '.join(first_feats)}"
        if len(items) > 1:
            subject += f" (+{len(items) - 1} more)"
        body = (
            "\n".join(sections) + "\n" + header + "\nWhat to do next:\n" + _NEXT_STEPS["DriftDetected"] + "\n"
        )
        return Alert(
            "drift",
            severity,
            clean_subject(subject),
            body,
            drift_fingerprint(items),
            model_attr,
            first_version if model_attr != "multiple" else None,
            targets,
            rollback_reason=f"drift alarm {name}",
        )

    def latest_drift_reports(self, when: float | None) -> list[dict[str, Any]]:
        """Models whose latest monitor report (``monitoring/{model}/latest.json``) shows drift."""
        if self.s3 is None or not self.settings.registry_bucket:
            return []
        bucket = self.settings.registry_bucket
        now = when if when is not None else self.clock()
        out = []
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            prefixes = [
                cp["Prefix"]
                for page in paginator.paginate(Bucket=bucket, Prefix="monitoring/", Delimiter="/")
                for cp in page.get("CommonPrefixes", []) or []
            ]
            for prefix in sorted(prefixes):
                try:
                    doc = json.loads(
                        self.s3.get_object(Bucket=bucket, Key=prefix + "latest.json")["Body"].read()
                    )
                except ClientError:
                    continue
                except ValueError:
                    continue
                if not isinstance(doc, dict) or not doc.get("drift"):
                    continue
                at = _parse_time(doc.get("at"))
                if at is not None and now - at > self.settings.report_max_age_seconds:
                    continue
                drifted = [
                    v for v in doc.get("versions") or [] if isinstance(v, dict) and v.get("drifted_features")
                ]
                if drifted:
                    out.append(
                        {
                            **doc,
                            "model": str(doc.get("model") or prefix.split("/")[1]),
                            "drifted_versions": drifted,
                        }
                    )
        except (ClientError, BotoCoreError):
            log.warning("could not read the latest monitor reports", exc_info=True)
        return out

    # ------------------------------------------------------------------ events
    def from_event(self, e: dict[str, Any]) -> Alert:
        dt = str(e["detail-type"])
        d = dict(e["detail"])
        model = str(d["model"]) if d.get("model") is not None else None
        version = (
            d.get("version")
            if isinstance(d.get("version"), int) and not isinstance(d.get("version"), bool)
            else None
        )
        severity = _EVENT_SEVERITY.get(dt, "warning")
        what = f"{model} v{version}" if model and version else (model or "")
        if dt == "DriftDetected" and model and version:
            feats = [f for f in d.get("features") or [] if isinstance(f, dict)]
            names = [str(f.get("name")) for f in feats]
            subject = f"[WARNING] Input drift: {model} v{version} - {', '.join(names)}"
            body = _drift_text(
                model,
                {
                    "version": version,
                    "role": d.get("role"),
                    "drifted_features": feats,
                    "samples": d.get("samples"),
                    "psi_threshold": d.get("psi_threshold"),
                },
                d.get("report_html"),
                d.get("report"),
                {"start": d.get("window_start"), "end": d.get("window_end")},
            )
            retrain = d.get("retrain")
            if isinstance(retrain, dict) and retrain.get("dataset"):
                body += f"Retraining: {'started from' if retrain.get('started') else 'not started;'} {retrain['dataset']}\n"
            body += "\nWhat to do next:\n" + _NEXT_STEPS[dt] + "\n"
            return Alert(
                "drift",
                severity,
                clean_subject(subject),
                body,
                drift_fingerprint([(model, int(version), names)]),
                model,
                version,
                [(model, version)],
                rollback_reason="DriftDetected",
            )
        numbers = {k: v for k, v in sorted(d.items()) if k not in _VOLATILE}
        summary = d.get("reason") or d.get("message") or d.get("error") or ""
        subject = (
            f"[{severity.upper()}] {dt}"
            + (f": {what}" if what else "")
            + (f" - {summary}" if summary else "")
        )
        lines = [f"{dt}" + (f" for {what}" if what else "") + "."]
        if summary:
            lines.append(f"Reason: {summary}")
        for k, v in numbers.items():
            if k in ("model", "version", "reason", "message", "error"):
                continue
            lines.append(f"{k}: {json.dumps(v, default=str)[:300]}")
        for k in ("report_html", "report"):
            if d.get(k):
                lines.append(f"{k}: {d[k]}")
        body = (
            "\n".join(lines) + "\n\nWhat to do next:\n" + _NEXT_STEPS.get(dt, "See the details above.") + "\n"
        )
        fp = "event-" + _sha(dt, model, version, numbers)
        return Alert("event", severity, clean_subject(subject), body, fp, model, version)

    def unrecognised(self, payload: Any) -> Alert:
        text = json.dumps(payload, sort_keys=True, default=str, indent=1)
        body = (
            "The alert function received a notification it does not recognise (neither a CloudWatch alarm nor "
            "a modelops event). It is forwarded as it came, so nothing is lost.\n\n"
            + text[:BODY_EXCERPT]
            + ("\n... (truncated)" if len(text) > BODY_EXCERPT else "")
            + "\n\nWhat to do next:\nFind the sender (an alarm or rule added outside template.yaml?) and point it "
            "at the documented shapes (docs/monitoring.md).\n"
        )
        return Alert(
            "unrecognised", "warning", "[WARNING] Unrecognised notification", body, "unknown-" + _sha(text)
        )

    # ------------------------------------------------------------------ canary rollback
    def rollback_canaries(self, alert: Alert) -> list[dict[str, Any]]:
        """Clear the production canary when the alert names it (CAS; a no-op when it moved on)."""
        if self.registry is None or not alert.targets:
            return []
        done = []
        for model, version in alert.targets:
            reason = f"auto-rollback: {alert.rollback_reason or alert.kind} named canary v{version}"

            def mutate(cur: AliasDoc | None, v: int = version) -> AliasDoc | None:
                if cur is None or not cur.canary or int(cur.canary["version"]) != v:
                    return None  # no canary, or another one now: leave the alias alone
                return AliasDoc(alias=cur.alias, version=cur.version, previous=cur.previous, canary=None)

            try:
                new = self.registry.update_alias(model, "production", mutate, reason=reason, actor="alert")
            except ModelOpsError:
                log.warning("canary rollback of %s v%s failed", model, version, exc_info=True)
                continue
            if new is None:
                continue
            detail = {
                "model": model,
                "version": version,
                "production_version": new.version,
                "reason": reason,
                "by": "alert",
            }
            fp = "event-" + _sha(
                "CanaryRolledBack",
                model,
                version,
                {k: v for k, v in sorted(detail.items()) if k not in _VOLATILE},
            )
            if self.bus is not None:
                try:
                    self.bus.publish("CanaryRolledBack", detail)
                except Exception:  # the rollback is done: this alert announces it either way
                    log.warning(
                        "CanaryRolledBack event for %s v%s not published", model, version, exc_info=True
                    )
                else:
                    self.dedup.mark(fp)  # announced in this alert; the event's own delivery is a duplicate
            done.append({"model": model, "version": version, "production": new.version, "fingerprint": fp})
        return done


def _drift_text(model: str, v: dict[str, Any], html: Any, js: Any, window: Any) -> str:
    feats = v.get("drifted_features") or []
    lines = [
        f"Input drift on {model} v{v.get('version')}" + (f" ({v['role']})" if v.get("role") else "") + ":"
    ]
    for f in feats:
        lines.append(
            f"- feature {f.get('name')}: PSI {_fmt(f.get('psi'))}"
            + (f" (threshold {_fmt(v.get('psi_threshold'))})" if v.get("psi_threshold") is not None else "")
            + (f", KS {_fmt(f.get('ks'))}" if f.get("ks") is not None else "")
        )
    if v.get("samples") is not None:
        lines.append(f"Rows in the window: {v['samples']}")
    if isinstance(window, dict) and window.get("start"):
        lines.append(f"Window: {window.get('start')} to {window.get('end')}")
    if html:
        lines.append(f"Report: {html}")
    if js:
        lines.append(f"Report data: {js}")
    return "\n".join(lines) + "\n"


def _alarm_steps(name: str, metric: str, state: str) -> str:
    if state != "ALARM":
        return "Nothing to do: the alarm is no longer firing."
    if "5XX" in metric.upper() or "5xx" in name:
        return (
            "The predict API returns server errors. Check the predict function's log; if a new version "
            "went live just before, roll back with `modelops models rollback MODEL`."
        )
    if metric == "Duration":
        return (
            "Predict is slow at p99. Check for cold starts (concurrency spikes), the model's size "
            "(serving_budget in its manifest) and throttling."
        )
    if "ApproximateNumberOfMessagesVisible" in metric or "DLQ" in name:
        return (
            "Events are waiting in a dead-letter queue. Read one to find the cause, fix it, then replay "
            "the messages (they are kept 14 days)."
        )
    if "Errors" in metric or "Throttles" in metric:
        return (
            "A modelops function is failing or throttled. Check its log group (/aws/lambda/...) for the "
            "error; failed async events wait in its DLQ for a replay."
        )
    return "Check the alarm's metric in CloudWatch and the logs of the function it watches."
