"""The alert stage: turn alarms and stage events into one readable message each on AlertsTopic.

Input (:func:`run`), one of: an SNS event whose messages are CloudWatch alarm state changes (the
template's AlarmTopic), an EventBridge event with ``source: "modelops"`` and a known detail-type (or
the same shape invoked directly), or anything else, which is published once as an "unrecognised
notification" alert (a notification we cannot read may still matter) and acted on in no other way.
Parsing, fingerprints and the message text are :mod:`modelops.domain.alerts`; which alarm transitions
are published and which are ``suppressed`` too.

**Trust.** Stage events reach this function from the rule on the stack's own ``StageEventBus``, whose
bus policy lets no principal but the stack's function roles put events on it, and each role only the
detail-types it publishes (template.yaml); that policy is what stops a forged ``DriftDetected``. A
modelops-shaped message inside an SNS record is not a stage event ("unknown"). Behind that, a rollback
only ever clears the version the registry's production alias itself names as its canary (step 2), and
every string an alert repeats is cleaned and cut (:func:`modelops.domain.alerts.clip`, ``clean_body``).

For each alert, :class:`Alerter`:

1. claims its fingerprint in the :class:`~modelops.storage.dedup.DedupStore` (a duplicate within
   ``DEDUP_WINDOW_SECONDS``, or one being published right now, publishes nothing);
2. **rolls back a canary** the alert names (a ``DriftDetected`` event, the drift alarm's latest
   reports, or an alarm with ``Model``/``Version`` dimensions): the production alias drops that canary
   by compare-and-swap (:func:`modelops.domain.canary.rollback`, which writes nothing unless the
   alias's current canary is that version), ``CanaryRolledBack`` is published on ``EVENT_BUS_NAME`` and
   pre-marked as announced, and the alert says so;
3. publishes to AlertsTopic (``MessageStructure="json"``: the plain text for e-mail, SQS and Lambda
   subscribers, the AWS Chatbot custom-notification JSON for HTTPS ones, a Chatbot channel among them:
   :func:`modelops.domain.alerts.sns_message`) and marks the claim complete. When the publish fails (after botocore's
   retries) the claims are released and the error raised, so Lambda's async retry publishes and the
   DLQ keeps the event if it never works.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from modelops import aws
from modelops.aws import AwsError
from modelops.domain import alerts, canary
from modelops.domain.alerts import Alert
from modelops.domain.alias import PRODUCTION
from modelops.domain.errors import ModelOpsError
from modelops.stages.runtime import StageSettings, logger
from modelops.storage.dedup import DedupStore
from modelops.storage.events import EventBus
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore
from modelops.storage.s3 import ObjectStore

_FAILURES: tuple[type[BaseException], ...] = (ModelOpsError, *AwsError)


class Settings(StageSettings):
    """The alert function's environment (template.yaml)."""

    alerts_topic_arn: str
    dedup_table: str
    registry_bucket: str | None = None
    dedup_window_seconds: int = 3600
    event_bus_name: str = "default"  # the stack's StageEventBus (CanaryRolledBack goes there)


class Alerter:
    """Alerts in, messages out. Takes its stores and its SNS client; builds none (see :func:`build`).
    Without ``reports`` the drift alarm names no model; without ``registry`` nothing is rolled back."""

    def __init__(
        self,
        topic_arn: str,
        *,
        sns: Any,
        dedup: DedupStore,
        reports: ReportStore | None = None,
        registry: Registry | None = None,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
        report_max_age_seconds: float = alerts.REPORT_MAX_AGE_SECONDS,
    ):
        self.topic_arn = topic_arn
        self.sns = sns
        self.dedup = dedup
        self.reports = reports
        self.registry = registry
        self.bus = bus
        self.clock = clock
        self.report_max_age_seconds = report_max_age_seconds

    # ------------------------------------------------------------------ entry point
    def handle(self, event: Any) -> dict[str, Any]:
        """Process every notification in ``event``; raise the first publish failure after trying all."""
        results: list[dict[str, Any]] = []
        failure: BaseException | None = None
        for shape, payload in alerts.split_notifications(event):
            try:
                results.append(self.process(shape, payload))
            except _FAILURES as exc:
                logger.error("alert not published; the event will be retried", exc_info=True)
                failure = failure or exc
        if failure is not None:
            raise failure
        return {"alerts": results}

    def alert_of(self, shape: str, payload: Any) -> Alert:
        if shape == "alarm":
            return alerts.from_alarm(payload, self.latest_drift_reports)
        if shape == "event":
            return alerts.from_event(payload)
        logger.warning("unrecognised notification: %s", json.dumps(payload, default=str)[:500])
        return alerts.unrecognised(payload)

    def process(self, shape: str, payload: Any) -> dict[str, Any]:
        alert = self.alert_of(shape, payload)
        if alert.suppressed:
            logger.info("alarm transition not worth a message: %s", alert.subject)
            return {"status": "suppressed", "fingerprint": alert.fingerprint, "kind": alert.kind}
        if not self.dedup.claim(alert.fingerprint):
            logger.info("duplicate alert %s dropped", alert.fingerprint)
            return {"status": "duplicate", "fingerprint": alert.fingerprint, "kind": alert.kind}
        rolled: list[dict[str, Any]] = []
        try:
            rolled = self.rollback_canaries(alert)
            alert.add_rollbacks(rolled)
            resp = self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=alerts.clean_subject(alert.subject),
                Message=alerts.sns_message(alert),  # plain text as "default", Chatbot JSON as "https"
                MessageStructure="json",
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
            "subject": alerts.clean_subject(alert.subject),
            "rolled_back": rolled,
        }

    # ------------------------------------------------------------------ drift reports
    def latest_drift_reports(self, when: float | None) -> list[dict[str, Any]]:
        """Models whose latest monitor report shows drift, at most ``report_max_age_seconds`` older than
        ``when`` (the alarm's time; now when unknown). An S3 failure part-way is logged, and what was
        read before it is used."""
        if self.reports is None:
            return []
        now = when if when is not None else self.clock()
        latest: list[tuple[str, Any]] = []
        try:
            for item in self.reports.iter_latest():
                latest.append(item)
        except _FAILURES:
            logger.warning("could not read the latest monitor reports", exc_info=True)
        return alerts.drifted_reports(latest, now, self.report_max_age_seconds)

    # ------------------------------------------------------------------ canary rollback
    def rollback_canaries(self, alert: Alert) -> list[dict[str, Any]]:
        """Clear the production canary when the alert names it (CAS; a no-op when it moved on)."""
        if self.registry is None or not alert.targets:
            return []
        done = []
        for model, version in alert.targets:
            reason = alert.rollback_note(version)
            try:
                new = self.registry.update_alias(
                    model,
                    PRODUCTION,
                    functools.partial(canary.rollback, version=version),
                    reason=reason,
                    actor="alert",
                )
            except ModelOpsError:
                logger.warning("canary rollback of %s v%s failed", model, version, exc_info=True)
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
            fp = alerts.event_fingerprint("CanaryRolledBack", model, version, detail)
            if self.bus is not None:
                try:
                    self.bus.publish("CanaryRolledBack", detail)
                except Exception:  # the rollback is done: this alert announces it either way
                    logger.warning(
                        "CanaryRolledBack event for %s v%s not published", model, version, exc_info=True
                    )
                else:
                    self.dedup.mark(fp)  # announced in this alert; the event's own delivery is a duplicate
            done.append({"model": model, "version": version, "production": new.version, "fingerprint": fp})
        return done


# ---------------------------------------------------------------------------------------------- entry
@functools.cache
def build() -> Alerter:
    """The stage with its settings, stores and clients: built once per warm container, never at import."""
    cfg = Settings()
    objects = ObjectStore(aws.client("s3"), cfg.registry_bucket) if cfg.registry_bucket else None
    return Alerter(
        cfg.alerts_topic_arn,
        sns=aws.client("sns"),
        dedup=DedupStore(aws.client("dynamodb"), cfg.dedup_table, cfg.dedup_window_seconds),
        reports=ReportStore(objects) if objects is not None else None,
        registry=Registry.over(objects, actor="alert") if objects is not None else None,
        bus=EventBus(aws.client("events"), cfg.event_bus_name),
    )


def run(event: Any) -> dict[str, Any]:
    """One invocation: every notification in ``event`` handled, the outcome logged and returned."""
    result = build().handle(event)
    logger.info("alert run", extra=result)
    return result
