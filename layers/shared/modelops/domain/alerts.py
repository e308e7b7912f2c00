"""Alerts: reading the notifications the alert stage receives and writing the message each becomes.

- **Parsing**: :func:`split_notifications` sorts an invocation's payload into CloudWatch alarm state
  changes (SNS records or direct), modelops stage events (EventBridge or direct, never inside an SNS
  message: stage events come only from the stack's own bus) and anything else.
- **Alerts**: :func:`from_alarm`, :func:`from_event` and :func:`unrecognised` turn one notification into
  an :class:`Alert` (severity, subject, plain-text body with "What to do next", message attributes, the
  ``(model, version)`` pairs it names for a canary rollback). OK <-> INSUFFICIENT_DATA transitions come
  back ``suppressed``.
- **Fingerprints**: an alarm transition is ``AlarmName + NewStateValue + StateChangeTime``; a stage
  event is its detail-type + model + version + its detail without times and locations
  (:func:`event_fingerprint`); one drift (models, versions, drifted features) has one fingerprint,
  shared by the drift alarm and ``DriftDetected`` (:func:`drift_fingerprint`).
- **Drift reports**: :func:`drifted_reports` picks, from each model's ``latest.json``, the recent ones
  that show drift, which the drift alarm's message names.
- **Untrusted text**: every string an alert repeats from a notification (model, feature, alarm and job
  names, reasons, descriptions, report locations) goes through :func:`clip`: control and format
  characters become spaces and it is cut at :data:`NAME_MAX` or :data:`TEXT_MAX` characters; a body
  lists at most :data:`FEATURES_MAX` features and :data:`FIELDS_MAX` detail fields and is cut at
  :data:`BODY_MAX` (:func:`clean_body`). A forged or broken event cannot put unbounded text, escape
  sequences or bidi overrides into an e-mail.
- **Chat**: :func:`chatbot_payload` gives an alert in the AWS Chatbot (Amazon Q Developer in chat
  applications) custom-notification format and :func:`sns_message` the ``MessageStructure="json"``
  message the alert stage publishes: the plain text as ``default`` (e-mail, SQS, Lambda subscribers)
  and the Chatbot JSON as ``https`` (a Chatbot channel subscribes to a topic as an HTTPS endpoint,
  and drops plain text). Text repeated from a notification goes into a code block, so it cannot add
  links or mentions in a chat channel.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelops.domain.events import DETAIL_TYPES, SOURCE

SUBJECT_MAX = 99
BODY_EXCERPT = 2000
NAME_MAX = 128
"""Longest name an alert repeats (model, feature, alarm, job, role, time); longer ones are cut."""
TEXT_MAX = 1000
"""Longest free text an alert repeats (a reason, an alarm description, a report location)."""
VALUE_MAX = 300
"""Longest rendering of one other detail field."""
FEATURES_MAX = 20
"""Most drifted features one drift message lists (the rest are counted)."""
FIELDS_MAX = 30
"""Most other detail fields one event's message lists (the rest are counted)."""
BODY_MAX = 16_000
"""Longest message body (SNS allows 256 KB; an e-mail this long is already unreadable)."""
CHAT_TITLE_MAX = 250
"""Longest chat title (one line)."""
CHAT_DESCRIPTION_MAX = 3000
"""Longest chat description: a chat card is for reading at a glance; the full text goes to e-mail."""
CHAT_STEPS_MAX = 5
"""Most next steps a chat notification lists."""
CHAT_KEYWORDS_MAX = 10
"""Most keywords a chat notification carries."""
_CHAT_ICON = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
_NEXT_HEADING = "\nWhat to do next:\n"
# Unicode categories never repeated: control, format (bidi overrides, zero-width), line/paragraph separators
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})
DRIFT_METRIC = "MaxPsiRatio"
NEW_CATEGORY_METRIC = "MaxNewCategoryRatio"
"""The monitor's new-category counterpart of :data:`DRIFT_METRIC` (rise over baseline / threshold); an
alarm on it (alone, or with ``MaxPsiRatio`` in one metric-math alarm) reads as the drift alarm."""
REPORT_MAX_AGE_SECONDS = 6 * 3600
"""A ``latest.json`` older than this (at the alarm's time) is not named by the drift alarm's message."""

_VOLATILE = {
    "at",
    "time",
    "timestamp",
    "created_at",
    "report",
    "report_html",
    "report_url",
    "report_url_expires_at",
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
    "ScoringFailed": "warning",
    "ScoringCompleted": "info",
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
    "PromotionRejected": "The new version did not beat production clearly enough on the same evaluation rows (the "
    "interval's lower bound must clear the policy's min_improvement); production is unchanged. "
    "`modelops models compare MODEL PRODUCTION CANDIDATE` shows the numbers; promote by hand "
    "(`modelops models promote`) only if you know better.",
    "DriftDetected": "Open the report and compare the drifted features' bins with the baseline. If an upstream "
    "producer changed (units, a pipeline bug), fix it; if the world changed, retrain on recent labelled data.",
    "CanaryRolledBack": "The canary no longer takes traffic. Look at its monitor report before trying it again.",
    "ModelPromoted": "Nothing to do; the monitor compares traffic against the new version's baseline from now on.",
    "ModelVersionPublished": "Nothing to do unless you promote by hand.",
    "TrainingJobStarted": "Nothing to do; a ModelVersionPublished or a failure follows.",
    "ScoringFailed": "Nothing was scored (or too many chunks failed): the reason names the cause. A model "
    "with no production version: promote one, then upload the input again. Failed chunks: "
    "score-runs/{run}/failures/ says why; the manifest lists them (docs/scoring.md).",
    "ScoringCompleted": "Nothing to do; the scores and the manifest are under the run's folder.",
}
_STAGED_ARCHIVE_CHANGED = (
    "The training job's staged archive changed after convert first read it (jobs/{job}.artifact.json pins "
    "its SHA-256): nothing was loaded or published. Find out who wrote to the job's staging prefix; to "
    "retrain, upload the dataset again (a new job), never replace a finished job's archive."
)
_STAGED_ARCHIVE_TAMPERED = (
    "The training job's archive key was written more than once, deleted, or written outside the job's "
    "run (convert accepts exactly one version written during the run): nothing was loaded or published. "
    "Find out which job or principal wrote it (the versions are listed above; S3 server access logs or "
    "CloudTrail data events name the writer); to retrain, upload the dataset again (a new job)."
)


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
        """SNS message attributes (subscribers filter on them)."""
        return {
            "severity": {"DataType": "String", "StringValue": self.severity},
            "model": {"DataType": "String", "StringValue": clip(self.model or "none", NAME_MAX) or "none"},
            "kind": {"DataType": "String", "StringValue": self.kind},
        }

    def add_rollbacks(self, rolled: list[dict[str, Any]]) -> None:
        """Say in the message which canaries were rolled back (``{"model", "version", "production"}``)."""
        if not rolled:
            return
        lines = [
            f"- {clip(r['model'], NAME_MAX)}: canary v{r['version']} rolled back; production stays on v{r['production']}."
            for r in rolled
        ]
        self.body = "Canary rollback done:\n" + "\n".join(lines) + "\n\n" + self.body
        self.subject = clean_subject(self.subject + " [canary rolled back]")

    def rollback_note(self, version: int) -> str:
        """The alias history's reason when this alert rolls back canary ``version``."""
        return f"auto-rollback: {clip(self.rollback_reason or self.kind, NAME_MAX)} named canary v{version}"


# ---------------------------------------------------------------------------------------------- helpers
def _sha(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def clip(value: Any, limit: int = TEXT_MAX) -> str:
    """Text from a notification made safe to repeat in an alert (and an alias history's reason):
    control and format characters (newlines, terminal escapes, bidi overrides) become spaces, runs of
    white space one space, and at most ``limit`` characters are kept (``...`` marks a cut)."""
    raw = value if isinstance(value, str) else str(value)
    raw = raw[: 4 * limit + 16]  # enough to fill ``limit`` unless most of it is white space
    s = " ".join("".join(" " if unicodedata.category(c) in _UNSAFE else c for c in raw).split())
    return s if len(s) <= limit else s[: max(limit - 3, 0)] + "..."


def clean_body(text: str) -> str:
    """A message body cut at :data:`BODY_MAX` characters (its parts are already :func:`clip`-ped)."""
    if len(text) <= BODY_MAX:
        return text
    return text[: BODY_MAX - 40] + "\n... (message truncated)\n"


def clean_subject(text: str) -> str:
    """SNS subjects: printable ASCII, one line, under 100 characters."""
    s = "".join(c if 32 <= ord(c) < 127 else "?" for c in " ".join(text.split()))
    return s if len(s) <= SUBJECT_MAX else s[: SUBJECT_MAX - 3] + "..."


def drift_fingerprint(items: list[tuple[str, int, list[str]]]) -> str:
    """Identity of a drift (models, versions, drifted features), shared by the alarm and the event."""
    return "drift-" + _sha(sorted((m, int(v), sorted(f)) for m, v, f in items))


def event_fingerprint(
    detail_type: str, model: str | None, version: int | None, detail: dict[str, Any]
) -> str:
    """Identity of a stage event: what it says, without its times and report locations."""
    numbers = {k: v for k, v in sorted(detail.items()) if k not in _VOLATILE}
    return "event-" + _sha(detail_type, model, version, numbers)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return clip(v, 32)


def parse_time(text: Any) -> float | None:
    """Epoch seconds of CloudWatch's ``2026-01-01T00:00:00.000+0000`` (or ISO with ``Z``); None if not."""
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
def split_notifications(
    event: Any, source: str = SOURCE, detail_types: Iterable[str] = DETAIL_TYPES
) -> list[tuple[str, Any]]:
    """[(shape, payload)]: shape is "alarm", "event" (``source`` with one of ``detail_types``) or "unknown".

    A stage event counts only as the invocation itself (EventBridge, from the rule on the stack's bus,
    or a direct invoke): one inside an SNS message is "unknown", since AlarmTopic is not the bus and
    whoever may publish to it must not be able to pass for a stage."""
    types = frozenset(detail_types)
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
            out.append(_classify(msg, source, types, events=False))
        return out
    return [_classify(event, source, types)]


def _classify(doc: Any, source: str, detail_types: frozenset[str], *, events: bool = True) -> tuple[str, Any]:
    if isinstance(doc, dict):
        if isinstance(doc.get("AlarmName"), str) and isinstance(doc.get("NewStateValue"), str):
            return ("alarm", doc)
        if (
            events
            and doc.get("source") == source
            and doc.get("detail-type") in detail_types
            and isinstance(doc.get("detail"), dict)
        ):
            return ("event", doc)
    return ("unknown", doc)


# ---------------------------------------------------------------------------------------------- alarms
DriftReports = Callable[[float | None], list[dict[str, Any]]]
"""Given the alarm's time (epoch seconds, or None), the drifted reports to name (see :func:`drifted_reports`)."""


def from_alarm(a: dict[str, Any], drift_reports: DriftReports) -> Alert:
    """The alert of a CloudWatch alarm state change. ``drift_reports`` is called only for the drift
    alarm in ALARM."""
    name, state = clip(a["AlarmName"], NAME_MAX), clip(a["NewStateValue"], 32)
    old = clip(a.get("OldStateValue", "?"), 32)
    raw_trigger = a.get("Trigger")
    trigger: dict[str, Any] = raw_trigger if isinstance(raw_trigger, dict) else {}
    metric = str(trigger.get("MetricName") or "")
    if not metric:  # metric-math alarms name their metrics inside Trigger.Metrics
        metric = ",".join(
            str(((m.get("MetricStat") or {}).get("Metric") or {}).get("MetricName", ""))
            for m in trigger.get("Metrics") or []
            if isinstance(m, dict)
        ).strip(",")
    reason = clip(a.get("NewStateReason", ""))
    when = clip(a.get("StateChangeTime", ""), NAME_MAX)
    fp = "alarm-" + _sha(a["AlarmName"], a["NewStateValue"], a.get("StateChangeTime", ""))
    if state != "ALARM" and old != "ALARM":
        # OK <-> INSUFFICIENT_DATA: nothing was wrong and nothing is now (CloudWatch still notifies)
        return Alert("alarm", "info", clean_subject(f"{name}: {old} -> {state}"), "", fp, suppressed=True)
    dims = _dims(trigger)
    header = (
        f"Alarm {name} moved {old} -> {state} at {when or 'an unknown time'}.\n"
        f"Reason: {reason or '-'}\n"
        + (f"Description: {clip(a['AlarmDescription'])}\n" if a.get("AlarmDescription") else "")
    )
    drift_alarm = DRIFT_METRIC in metric or NEW_CATEGORY_METRIC in metric
    if state == "ALARM":
        severity = "warning" if drift_alarm or metric == "Duration" else "critical"
    else:
        severity = "info"
    if drift_alarm:
        if state != "ALARM":
            return _drift_alarm(name, state, header, fp, severity, [])
        return _drift_alarm(name, state, header, fp, severity, drift_reports(parse_time(when)))
    model = dims.get("Model")
    raw_version = dims.get("Version", "")
    version = (
        int(raw_version)
        if raw_version.isascii() and raw_version.isdigit() and len(raw_version) <= 9
        else None
    )
    shown = clip(model, NAME_MAX) if model else ""
    what = f"{shown} v{version}" if shown and version else shown
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


def _drift_alarm(
    name: str, state: str, header: str, fp: str, severity: str, reports: list[dict[str, Any]]
) -> Alert:
    if state != "ALARM":
        subject = f"[INFO] Drift alarm {name} is {state}"
        body = header + "\nNo production model's inputs drift beyond its threshold any more. Nothing to do.\n"
        return Alert("drift", "info", clean_subject(subject), body, fp)
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
                _drift_text(
                    rep["model"],
                    v,
                    rep.get("report_html"),
                    rep.get("report"),
                    rep.get("window"),
                    (rep.get("report_url"), rep.get("report_url_expires_at")),
                )
            )
    first_model, first_version, first_feats = items[0]
    model_attr = first_model if len({m for m, _, _ in items}) == 1 else "multiple"
    subject = f"[WARNING] Input drift: {clip(first_model, NAME_MAX)} v{first_version} - " + ", ".join(
        clip(f, NAME_MAX) for f in first_feats[:FEATURES_MAX]
    )
    if len(items) > 1:
        subject += f" (+{len(items) - 1} more)"
    body = "\n".join(sections) + "\n" + header + "\nWhat to do next:\n" + _NEXT_STEPS["DriftDetected"] + "\n"
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


def drifted_reports(
    latest: Iterable[tuple[str, Any]], now: float, max_age_seconds: float = REPORT_MAX_AGE_SECONDS
) -> list[dict[str, Any]]:
    """From ``(model, latest.json)`` pairs, the reports that show drift and are at most ``max_age_seconds``
    older than ``now``: each is the document with ``model`` and ``drifted_versions`` (the versions with
    drifted features) added."""
    out = []
    for model, doc in latest:
        if not isinstance(doc, dict) or not doc.get("drift"):
            continue
        at = parse_time(doc.get("at"))
        if at is not None and now - at > max_age_seconds:
            continue
        drifted = [v for v in doc.get("versions") or [] if isinstance(v, dict) and v.get("drifted_features")]
        if drifted:
            out.append({**doc, "model": str(doc.get("model") or model), "drifted_versions": drifted})
    return out


# ---------------------------------------------------------------------------------------------- events
def from_event(e: dict[str, Any]) -> Alert:
    """The alert of a modelops stage event."""
    dt = str(e["detail-type"])  # one of DETAIL_TYPES (split_notifications)
    d = dict(e["detail"])
    model = str(d["model"]) if d.get("model") is not None else None
    shown = clip(model, NAME_MAX) if model else ""
    version = (
        d.get("version")
        if isinstance(d.get("version"), int) and not isinstance(d.get("version"), bool)
        else None
    )
    severity = _EVENT_SEVERITY.get(dt, "warning")
    what = f"{shown} v{version}" if shown and version else shown
    if dt == "DriftDetected" and model and version:
        raw_feats = d.get("features")
        feats = [f for f in raw_feats if isinstance(f, dict)] if isinstance(raw_feats, list) else []
        names = [str(f.get("name")) for f in feats]
        subject = f"[WARNING] Input drift: {shown} v{version} - {', '.join(clip(n, NAME_MAX) for n in names[:FEATURES_MAX])}"
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
            (d.get("report_url"), d.get("report_url_expires_at")),
        )
        retrain = d.get("retrain")
        if isinstance(retrain, dict) and retrain.get("dataset"):
            body += f"Retraining: {'started from' if retrain.get('started') else 'not started;'} {clip(retrain['dataset'])}\n"
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
    shown_apart: tuple[str, ...] = ()
    comparison: list[str] = []
    if dt in _GATE_EVENTS:
        comparison = _gate_comparison(d)
        shown_apart = _GATE_FIELDS
    summary = clip(d.get("reason") or d.get("message") or d.get("error") or "")
    warnings = _warnings(d)
    if isinstance(d.get("warnings"), list):  # listed apart (an empty list: no line at all)
        shown_apart = (*shown_apart, "warnings")
    n_warnings = len(d["warnings"]) if warnings else 0
    subject = (
        f"[{severity.upper()}] {dt}"
        + (f": {what}" if what else "")
        + (f" ({n_warnings} warning{'s' if n_warnings > 1 else ''})" if n_warnings else "")
        + (f" - {summary}" if summary else "")
    )
    lines = [f"{dt}" + (f" for {what}" if what else "") + "."]
    if summary:
        lines.append(f"Reason: {summary}")
    lines.extend(comparison)
    lines.extend(warnings)
    fields = [
        k
        for k in numbers
        if k not in ("model", "version", "reason", "message", "error") and k not in shown_apart
    ]
    for k in fields[:FIELDS_MAX]:
        lines.append(f"{clip(k, NAME_MAX)}: {clip(json.dumps(numbers[k], default=str), VALUE_MAX)}")
    if len(fields) > FIELDS_MAX:
        lines.append(f"... and {len(fields) - FIELDS_MAX} more fields")
    if (href := link(d.get("report_url"))) is not None:
        lines.append(f"Report link: {href}")
    for k in ("report_html", "report"):
        if d.get(k):
            lines.append(f"{k}: {clip(d[k])}")
    steps = _NEXT_STEPS.get(dt, "See the details above.")
    if dt == "ArtifactIntegrityFailed" and d.get("role") == "training_artifact":
        steps = (
            _STAGED_ARCHIVE_TAMPERED if d.get("reason") == "artifact_tampered" else _STAGED_ARCHIVE_CHANGED
        )
    if dt == "PromotionRejected" and d.get("needs"):
        steps = f"Add what the gate needs: {clip(d['needs'])}. Production is unchanged."
    body = "\n".join(lines) + "\n\nWhat to do next:\n" + steps + "\n"
    return Alert(
        "event",
        severity,
        clean_subject(subject),
        body,
        event_fingerprint(dt, model, version, d),
        model,
        version,
    )


def unrecognised(payload: Any) -> Alert:
    """A notification that is neither an alarm nor a modelops event, forwarded with an excerpt."""
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


# ---------------------------------------------------------------------------------------------- text
_GATE_EVENTS = frozenset({"ModelPromoted", "PromotionRejected"})
_GATE_FIELDS = (
    "candidate_value",
    "production_value",
    "improvement",
    "min_improvement",
    "canary_weight",
    "interval",
    "evaluation",
    "policy",
    "claims",
    "needs",
    "source",
    "metric",
)
"""A gate decision's fields shown by :func:`_gate_comparison` rather than listed one by one."""


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "n/a"
    return f"{v:.4g}"


def _gate_comparison(d: dict[str, Any]) -> list[str]:
    """A gate decision's comparison, readably: both models' metric on the same rows, the interval,
    the evaluation set, the policy, and the jobs' own claims (never decided on)."""
    lines: list[str] = []
    metric = clip(d.get("metric") or "metric", NAME_MAX)
    cand, prod = d.get("candidate"), d.get("production")
    raw_ev = d.get("evaluation")
    ev: dict[str, Any] = raw_ev if isinstance(raw_ev, dict) else {}
    source = clip(d.get("source") or ev.get("source") or "", NAME_MAX)
    rows = ev.get("rows")
    if source and source != "job_claim" and isinstance(rows, int) and not isinstance(rows, bool):
        raw_tables = ev.get("sha256")
        tables: list[Any] = raw_tables if isinstance(raw_tables, list) else []
        digests = [clip(x, 12) for x in tables[:3] if isinstance(x, str)]
        more = len(tables) - len(digests)
        lines.append(
            f"Evaluation set: {rows} {source} rows"
            + (f" (sha256 {', '.join(digests)}{f' +{more} more' if more > 0 else ''})" if digests else "")
        )
    if d.get("candidate_value") is not None or d.get("production_value") is not None:
        lines.append(
            f"On the same rows: candidate v{_fmt(cand)} {metric} {_num(d.get('candidate_value'))}, "
            f"production v{_fmt(prod)} {metric} {_num(d.get('production_value'))}"
        )
    iv = d.get("interval") if isinstance(d.get("interval"), dict) else None
    if iv:
        conf = iv.get("confidence")
        pct = f"{conf:.0%}" if isinstance(conf, float) else "95%"
        lines.append(
            f"Improvement {_num(iv.get('improvement'))}, {pct} interval [{_num(iv.get('lower'))}, "
            f"{_num(iv.get('upper'))}] ({_fmt(iv.get('resamples'))} paired bootstrap resamples, seed "
            f"{clip(iv.get('seed'), 24)}); promoted only when the lower bound is above "
            f"{_num(d.get('min_improvement'))}"
        )
    policy = d.get("policy") if isinstance(d.get("policy"), dict) else None
    if policy:
        parts = [
            f"{clip(k, NAME_MAX)} {_num(v.get('value'))} ({clip(v.get('from'), 16)})"
            for k, v in list(policy.items())[:FIELDS_MAX]
            if isinstance(v, dict)
        ]
        lines.append("Policy: " + ", ".join(parts))
    claims = d.get("claims") if isinstance(d.get("claims"), dict) else None
    if claims:
        lines.append(
            f"The training jobs' own {metric} (not used by the gate): candidate {_num(claims.get('candidate'))}, "
            f"production {_num(claims.get('production'))}"
        )
    if d.get("needs"):
        lines.append(f"Needs: {clip(d['needs'])}")
    return lines


URL_MAX = 4096
"""Longest link an alert repeats; a presigned URL signed with a role's session is ~1,500 characters."""
_URL_RE = re.compile(r"^https?://[!#-;=?-\[\]_a-z~]+$", re.IGNORECASE)


def link(value: Any) -> str | None:
    """A report link safe to repeat whole: http(s), printable URL characters only (no spaces, quotes,
    angle brackets or control characters), at most :data:`URL_MAX`; None otherwise (a link is shown
    whole or not at all: a cut URL opens nothing)."""
    if not isinstance(value, str) or len(value) > URL_MAX or not _URL_RE.match(value):
        return None
    return value


def _drift_text(
    model: str, v: dict[str, Any], html: Any, js: Any, window: Any, url: tuple[Any, Any] = (None, None)
) -> str:
    feats = v.get("drifted_features") or []
    lines = [
        f"Input drift on {clip(model, NAME_MAX)} v{_fmt(v.get('version'))}"
        + (f" ({clip(v['role'], NAME_MAX)})" if v.get("role") else "")
        + ":"
    ]
    for f in feats[:FEATURES_MAX]:
        if not isinstance(f, dict):
            continue
        categorical = f.get("type") == "categorical"
        lines.append(
            f"- feature {clip(f.get('name'), NAME_MAX)}"
            + (" (categorical)" if categorical else "")
            + f": PSI {_fmt(f.get('psi'))}"
            + (f" (threshold {_fmt(v.get('psi_threshold'))})" if v.get("psi_threshold") is not None else "")
            + (f", KS {_fmt(f.get('ks'))}" if f.get("ks") is not None else "")
            + (_new_categories(f) if categorical else "")
        )
    if len(feats) > FEATURES_MAX:
        lines.append(f"- ... and {len(feats) - FEATURES_MAX} more features")
    if v.get("samples") is not None:
        lines.append(f"Rows in the window: {_fmt(v['samples'])}")
    if isinstance(window, dict) and window.get("start"):
        lines.append(f"Window: {clip(window.get('start'), NAME_MAX)} to {clip(window.get('end'), NAME_MAX)}")
    if (href := link(url[0])) is not None:
        until = f" (link valid until {clip(url[1], NAME_MAX)} at most)" if url[1] else ""
        lines.append(f"Report link: {href}{until}")
    if html:
        lines.append(f"Report: {clip(html)}")
    if js:
        lines.append(f"Report data: {clip(js)}")
    return "\n".join(lines) + "\n"


def _pct(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "n/a"
    return f"{100 * v:.3g}%"


def _new_categories(f: dict[str, Any]) -> str:
    """A categorical feature's new-category numbers, saying when they are what drifted."""
    rate, base, limit = (
        f.get("new_category_rate"),
        f.get("baseline_new_category_rate"),
        f.get("new_category_threshold"),
    )
    raw = f.get("reasons")
    reasons: list[Any] = raw if isinstance(raw, list) else []
    text = f"; new categories {_pct(rate)} of rows (baseline {_pct(base)})"
    if "new_category_rate" in reasons:
        text += f": new-category rate rose more than {_pct(limit)} over the baseline"
    return text


def _warnings(d: dict[str, Any]) -> list[str]:
    """The ``warnings`` of an event's detail (a list of texts: a dataset's class coverage, ...) as
    alert lines, each :func:`clip`-ped; at most :data:`FEATURES_MAX` (the rest counted)."""
    raw = d.get("warnings")
    if not isinstance(raw, list) or not raw:
        return []
    lines = ["Warnings:"]
    lines.extend(f"- {clip(w)}" for w in raw[:FEATURES_MAX])
    if len(raw) > FEATURES_MAX:
        lines.append(f"- ... and {len(raw) - FEATURES_MAX} more warnings")
    return lines


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


# ---------------------------------------------------------------------------------------------- chat
def _chat_line(text: str, limit: int, *, code: bool = False) -> str:
    """One line of chat text: :func:`clip`-ped, without ``<`` (which opens a link or a mention in Slack)
    and, unless ``code``, backticks (code spans)."""
    safe = text.replace("<", "(")
    return clip(safe if code else safe.replace("`", "'"), limit)


def _code_block(text: str, limit: int) -> str:
    """``text`` as a chat code block (nothing in it renders as markdown, links or mentions); backticks
    inside become quotes so the block cannot be closed early, and it is cut at ``limit`` characters."""
    inner = text.replace("`", "'").strip("\n")
    if len(inner) > limit - 8:
        inner = inner[: max(limit - 30, 0)] + "\n... (see the e-mail)"
    return f"```\n{inner}\n```"


def chatbot_payload(alert: Alert) -> dict[str, Any]:
    """The alert as an AWS Chatbot custom notification (``version`` 1.0, ``source`` custom,
    ``client-markdown``): the title is the subject with a severity icon, the description the body's
    facts in a code block, ``nextSteps`` the body's "What to do next" lines, ``keywords`` severity,
    kind, model and version (filterable in the channel), ``metadata`` the same as the SNS attributes."""
    body = clean_body(alert.body)
    # the last heading is the alert's own (a forwarded excerpt may contain the words too)
    facts, heading, steps_text = body.rpartition(_NEXT_HEADING)
    if not heading:  # no steps (a cleared drift alarm, or a body cut before them)
        facts, steps_text = body, ""
    steps = [_chat_line(s, TEXT_MAX, code=True) for s in steps_text.splitlines() if s.strip()]
    steps = steps[:CHAT_STEPS_MAX]
    icon = _CHAT_ICON.get(alert.severity, ":grey_question:")
    title = _chat_line(f"{icon} {clean_subject(alert.subject)}", CHAT_TITLE_MAX)
    keywords = [alert.severity, alert.kind]
    if alert.model:
        keywords.append(_chat_line(alert.model, NAME_MAX))
    if alert.version is not None:
        keywords.append(f"v{alert.version}")
    content: dict[str, Any] = {
        "textType": "client-markdown",
        "title": title,
        "nextSteps": steps,
        "keywords": [k for k in keywords if k][:CHAT_KEYWORDS_MAX],
    }
    if facts.strip():
        content["description"] = _code_block(facts, CHAT_DESCRIPTION_MAX)
    context = {"severity": alert.severity, "kind": alert.kind, "fingerprint": alert.fingerprint}
    if alert.model:
        context["model"] = clip(alert.model, NAME_MAX)
    if alert.version is not None:
        context["version"] = str(alert.version)
    return {
        "version": "1.0",
        "source": "custom",
        "id": alert.fingerprint,
        "content": content,
        "metadata": {
            "summary": clean_subject(alert.subject),
            "eventType": f"modelops.{alert.kind}",
            "additionalContext": context,
        },
    }


def sns_message(alert: Alert) -> str:
    """The ``Message`` of a ``MessageStructure="json"`` publish: ``default`` is the plain-text body
    (what every subscriber got before: e-mail, SQS, Lambda), ``https`` the :func:`chatbot_payload` as a
    JSON string (what an AWS Chatbot channel subscribed to the topic reads)."""
    return json.dumps(
        {"default": clean_body(alert.body), "https": json.dumps(chatbot_payload(alert), ensure_ascii=False)},
        ensure_ascii=False,
    )
