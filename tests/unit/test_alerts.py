"""Alert parsing, fingerprints and subjects (``modelops.domain.alerts``), and the alert stage over fakes
(no AWS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st

from modelops.domain import alerts
from modelops.stages import alert as alerting
from modelops.storage.dedup import DedupStore
from modelops.storage.events import DETAIL_TYPES, SOURCE
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore
from tests.fakes import FakeBus, MemoryObjectStore

EVENTS = Path(__file__).resolve().parents[2] / "events"


class FakeSns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.published.append(kwargs)
        return {"MessageId": f"m{len(self.published)}"}


class FakeDynamo:
    """Claims keyed by id; a put with a condition fails when the id exists (enough for these tests)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put_item(self, TableName: str, Item: dict[str, Any], **kw: Any) -> None:  # noqa: N803
        from botocore.exceptions import ClientError

        if "ConditionExpression" in kw and Item["id"]["S"] in self.items:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "PutItem")
        self.items[Item["id"]["S"]] = Item

    def update_item(self, **kw: Any) -> None:
        self.items[kw["Key"]["id"]["S"]]["status"] = {"S": "COMPLETE"}

    def delete_item(self, TableName: str, Key: dict[str, Any]) -> None:  # noqa: N803
        self.items.pop(Key["id"]["S"], None)


def alerter() -> tuple[alerting.Alerter, FakeSns]:
    sns = FakeSns()
    return alerting.Alerter("arn:topic", sns=sns, dedup=DedupStore(FakeDynamo(), "table", window=3600)), sns


def split(event: Any) -> list[tuple[str, Any]]:
    return alerts.split_notifications(event, SOURCE, DETAIL_TYPES)


def no_reports(_when: float | None) -> list[dict[str, Any]]:
    return []


def test_split_notifications_recognises_each_shape() -> None:
    sns_alarm = json.loads((EVENTS / "alert_drift_alarm_sns.json").read_text())
    bridge = {"source": "modelops", "detail-type": "DriftDetected", "detail": {"model": "m", "version": 1}}
    sns_bridge = {"Records": [{"Sns": {"Message": json.dumps(bridge)}}]}
    assert [s for s, _ in split(sns_alarm)] == ["alarm"]
    assert [s for s, _ in split(bridge)] == ["event"]
    # a stage event comes only from the stack's bus: inside an SNS message (AlarmTopic) it is not one
    assert [s for s, _ in split(sns_bridge)] == ["unknown"]
    assert split({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})[0][0] == "unknown"
    assert split({"source": "modelops", "detail-type": "Nope", "detail": {}})[0][0] == "unknown"
    assert split({"Records": [{"eventSource": "aws:s3"}]})[0][0] == "unknown"
    assert split([1, 2])[0][0] == "unknown"
    assert split(None)[0][0] == "unknown"


@given(st.text(max_size=400))
def test_subjects_are_printable_ascii_under_100(text: str) -> None:
    s = alerts.clean_subject(text)
    assert len(s) < 100 and all(32 <= ord(c) < 127 for c in s)


def test_drift_fingerprint_ignores_order() -> None:
    a = alerts.drift_fingerprint([("m", 1, ["b", "a"]), ("n", 2, ["c"])])
    b = alerts.drift_fingerprint([("n", 2, ["c"]), ("m", 1, ["a", "b"])])
    assert a == b != alerts.drift_fingerprint([("m", 1, ["a"])])


def test_alarm_with_model_dimensions_targets_that_version() -> None:
    alarm = {
        "AlarmName": "canary-errors",
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "StateChangeTime": "2026-01-01T00:00:00.000+0000",
        "Trigger": {
            "MetricName": "Errors",
            "Dimensions": [{"name": "Model", "value": "demo"}, {"name": "Version", "value": "4"}],
        },
    }
    got = alerts.from_alarm(alarm, no_reports)
    assert (got.model, got.version, got.targets, got.severity) == ("demo", 4, [("demo", 4)], "critical")
    assert "demo v4" in got.subject


def test_metric_math_alarm_names_its_metrics() -> None:
    alarm = {
        "AlarmName": "DLQDepthAlarm",
        "NewStateValue": "ALARM",
        "StateChangeTime": "2026-01-01T00:00:00.000+0000",
        "Trigger": {
            "Metrics": [
                {"Id": "total", "Expression": "SUM(METRICS())"},
                {"Id": "q1", "MetricStat": {"Metric": {"MetricName": "ApproximateNumberOfMessagesVisible"}}},
            ]
        },
    }
    got = alerts.from_alarm(alarm, no_reports)
    assert "dead-letter queue" in got.body and got.severity == "critical"


def test_same_alarm_three_times_publishes_once_with_fakes() -> None:
    a, sns = alerter()
    event = json.loads((EVENTS / "alert_drift_alarm_sns.json").read_text())
    got = [a.handle(event)["alerts"][0]["status"] for _ in range(3)]
    assert got == ["published", "duplicate", "duplicate"] and len(sns.published) == 1
    attrs = sns.published[0]["MessageAttributes"]
    assert {k: v["StringValue"] for k, v in attrs.items()} == {
        "severity": "warning",
        "model": "none",
        "kind": "drift",
    }


def test_an_event_with_a_new_number_is_a_new_alert() -> None:
    a, sns = alerter()
    base: dict[str, Any] = {
        "source": "modelops",
        "detail-type": "PromotionRejected",
        "detail": {"model": "m", "version": 3, "metric": "rmse", "candidate": 0.5, "production": 0.4},
    }
    changed = {**base, "detail": {**base["detail"], "candidate": 0.45}}
    assert [a.handle(e)["alerts"][0]["status"] for e in (base, base, changed)] == [
        "published",
        "duplicate",
        "published",
    ]
    assert sns.published[0]["Subject"].startswith("[WARNING] PromotionRejected: m v3")


def test_only_transitions_that_matter_are_published() -> None:
    a, sns = alerter()

    def alarm(old: str, new: str, when: str) -> dict[str, Any]:
        return {
            "AlarmName": "DriftAlarm",
            "OldStateValue": old,
            "NewStateValue": new,
            "StateChangeTime": when,
            "Trigger": {"MetricName": "MaxPsiRatio"},
        }

    got = [
        a.process("alarm", alarm("INSUFFICIENT_DATA", "OK", "2026-01-01T00:00:00.000+0000"))["status"],
        a.process("alarm", alarm("OK", "INSUFFICIENT_DATA", "2026-01-01T01:00:00.000+0000"))["status"],
        a.process("alarm", alarm("OK", "ALARM", "2026-01-01T02:00:00.000+0000"))["status"],
        a.process("alarm", alarm("ALARM", "INSUFFICIENT_DATA", "2026-01-01T03:00:00.000+0000"))["status"],
    ]
    assert got == ["suppressed", "suppressed", "published", "published"]
    assert [m["MessageAttributes"]["severity"]["StringValue"] for m in sns.published] == ["warning", "info"]


# ---------------------------------------------------------------------------------------------- canary
def canary_registry(store: MemoryObjectStore) -> None:
    """demo v1 in production with v2 as its canary, and a latest report showing drift on v2."""
    for v in (1, 2):
        store.put_json(
            f"models/demo/versions/{v}/manifest.json", {"model": "demo", "version": v, "artifacts": {}}
        )
    store.put_json(
        "models/demo/aliases/production.json",
        {"alias": "production", "version": 1, "previous": None, "canary": {"version": 2, "weight": 0.1}},
    )
    store.put_json(
        "monitoring/demo/latest.json",
        {
            "model": "demo",
            "drift": True,
            "at": "2026-01-01T00:00:00Z",
            "versions": [{"version": 2, "role": "canary", "drifted_features": [{"name": "f2", "psi": 0.9}]}],
        },
    )


def drift_alarm() -> dict[str, Any]:
    return {
        "AlarmName": "DriftAlarm",
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "StateChangeTime": "2026-01-01T00:30:00.000+0000",
        "Trigger": {"MetricName": "MaxPsiRatio"},
    }


def canary_alerter(
    memory: MemoryObjectStore, fake_bus: FakeBus, sns: Any
) -> tuple[alerting.Alerter, FakeDynamo]:
    store: Any = memory  # stands in for an ObjectStore
    bus: Any = fake_bus  # and for an EventBus
    table = FakeDynamo()
    a = alerting.Alerter(
        "arn:topic",
        sns=sns,
        dedup=DedupStore(table, "table", window=3600),
        reports=ReportStore(store),
        registry=Registry.over(store, actor="alert"),
        bus=bus,
    )
    return a, table


def test_a_drift_alarm_naming_the_canary_rolls_it_back_once(
    memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    canary_registry(memory_store)
    sns = FakeSns()
    a, _ = canary_alerter(memory_store, bus, sns)

    (result,) = a.handle(drift_alarm())["alerts"]

    assert [(r["model"], r["version"], r["production"]) for r in result["rolled_back"]] == [("demo", 2, 1)]
    alias = memory_store.json("models/demo/aliases/production.json")
    assert (alias["version"], alias["canary"], alias["updated_by"]) == (1, None, "alert")
    assert alias["reason"] == "auto-rollback: drift alarm DriftAlarm named canary v2"
    (rolled,) = bus.of("CanaryRolledBack")
    assert (rolled["version"], rolled["production_version"]) == (2, 1)
    # the CanaryRolledBack event coming back to the alert function was announced by this alert
    back = {"source": "modelops", "detail-type": "CanaryRolledBack", "detail": rolled}
    assert a.handle(back)["alerts"][0]["status"] == "duplicate"
    (msg,) = sns.published
    text = json.loads(msg["Message"])["default"]
    assert msg["Subject"].endswith("[canary rolled back]") and "canary v2 rolled back" in text
    chat = json.loads(json.loads(msg["Message"])["https"])
    assert "canary v2 rolled back" in chat["content"]["description"]


def test_a_failed_publish_releases_the_alert_and_the_rollback_announcement(
    memory_store: MemoryObjectStore, bus: FakeBus
) -> None:
    canary_registry(memory_store)

    class DownSns:
        def publish(self, **kwargs: Any) -> dict[str, str]:
            raise EndpointConnectionError(endpoint_url="https://sns")

    a, table = canary_alerter(memory_store, bus, DownSns())
    with pytest.raises(EndpointConnectionError):
        a.handle(drift_alarm())
    # both claims released: a retry publishes, and the CanaryRolledBack event's own delivery is not
    # suppressed (the rollback is done, so that is where it gets announced)
    assert table.items == {}
    assert bus.types() == ["CanaryRolledBack"]


# ---------------------------------------------------------------------------------------------- forged events
def registry_snapshot(store: MemoryObjectStore) -> dict[str, str]:
    """Every registry object and its ETag: any write (alias, history) changes it."""
    return {k: v[1] for k, v in store.objects.items() if k.startswith("models/")}


def drift_event(version: int, source: str = "modelops", detail_type: str = "DriftDetected") -> dict[str, Any]:
    return {
        "source": source,
        "detail-type": detail_type,
        "detail": {"model": "demo", "version": version, "features": [{"name": "f2", "psi": 0.9}]},
    }


@pytest.mark.parametrize(
    "event",
    [
        drift_event(2, source="modelops.forged"),
        drift_event(2, source="aws.events"),
        drift_event(2, detail_type="Drift Detected"),
        # the right shape, but inside an SNS message (anyone allowed sns:Publish on AlarmTopic)
        {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(drift_event(2))}}]},
    ],
    ids=["other-source", "aws-source", "unknown-detail-type", "inside-sns"],
)
def test_an_event_not_from_the_stage_bus_is_reported_as_unrecognised_and_writes_nothing(
    memory_store: MemoryObjectStore, bus: FakeBus, event: dict[str, Any]
) -> None:
    """Finding 3: a forged DriftDetected naming the canary cleared it. Only a modelops event with a
    known detail-type, delivered as the invocation itself (the rule on the stack's bus), is acted on."""
    canary_registry(memory_store)
    sns = FakeSns()
    a, _ = canary_alerter(memory_store, bus, sns)
    before = registry_snapshot(memory_store)

    (result,) = a.handle(event)["alerts"]

    assert result["kind"] == "unrecognised" and result["rolled_back"] == []
    assert registry_snapshot(memory_store) == before  # no alias move, no history line
    assert bus.sent == []
    (msg,) = sns.published
    assert msg["Subject"] == "[WARNING] Unrecognised notification"


@pytest.mark.parametrize("version", [1, 3, 99])
def test_a_drift_event_naming_a_version_that_is_not_the_canary_writes_nothing(
    memory_store: MemoryObjectStore, bus: FakeBus, version: int
) -> None:
    """Even a genuine DriftDetected only clears the version the registry's alias names as its canary
    (v2 here): production (v1), a version without a canary role (3) or none at all (99) write nothing."""
    canary_registry(memory_store)
    memory_store.put_json(
        "models/demo/versions/3/manifest.json", {"model": "demo", "version": 3, "artifacts": {}}
    )
    a, _ = canary_alerter(memory_store, bus, FakeSns())
    before = registry_snapshot(memory_store)

    (result,) = a.handle(drift_event(version))["alerts"]

    assert result["status"] == "published" and result["rolled_back"] == []
    assert registry_snapshot(memory_store) == before
    assert bus.sent == []


UNSAFE = ("\x1b", "\r", "\x00", "\u202e", "\u2028", "\x85", "\u200b")


def strings(doc: Any) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in strings(v)]
    return []


def assert_clean(msg: dict[str, Any]) -> None:
    assert msg["MessageStructure"] == "json"
    structured = json.loads(msg["Message"])
    body = structured["default"]
    chat = json.loads(structured["https"])
    for text in strings(chat):
        assert not any(c in text for c in UNSAFE), [c for c in UNSAFE if c in text]
    content = chat["content"]
    assert len(content["title"]) <= alerts.CHAT_TITLE_MAX and "<" not in content["title"]
    assert len(content.get("description", "")) <= alerts.CHAT_DESCRIPTION_MAX
    assert content.get("description", "```\n```").count("```") == 2  # one code block, never closed early
    assert all(len(s) <= alerts.TEXT_MAX and "<" not in s for s in content["nextSteps"])
    assert len(content["nextSteps"]) <= alerts.CHAT_STEPS_MAX
    assert len(body) <= alerts.BODY_MAX
    assert not any(c in body for c in UNSAFE), [c for c in UNSAFE if c in body]
    longest = max(len(line) for line in body.splitlines())
    assert longest <= alerts.TEXT_MAX + 100, longest
    assert len(msg["Subject"]) < 100 and msg["Subject"].isascii() and msg["Subject"].isprintable()
    model = msg["MessageAttributes"]["model"]["StringValue"]
    assert len(model) <= alerts.NAME_MAX and model.isprintable()


def test_untrusted_text_is_cleaned_and_capped_in_the_message() -> None:
    """Finding 3: forged (or broken) events put unbounded attacker text into alert e-mails. Names,
    reasons, report locations and every other field are cleaned and cut; the body has a ceiling."""
    evil = "\x1b[2J\x1b[31mclick http://evil.example\r\n\u202eepyt\u2028\x85\u200b\x00"
    long_name = evil + "n" * 50_000
    drift = {
        "source": "modelops",
        "detail-type": "DriftDetected",
        "detail": {
            "model": long_name,
            "version": 2,
            "role": long_name,
            "features": [{"name": f"{evil}{i}" + "f" * 5_000, "psi": evil} for i in range(500)],
            "report_html": long_name,
            "window_start": long_name,
            "window_end": long_name,
            "samples": long_name,
            "retrain": {"dataset": long_name, "started": True},
        },
    }
    failed = {
        "source": "modelops",
        "detail-type": "TrainingJobFailed",
        "detail": {
            "model": long_name,
            "version": 1,
            "reason": evil * 20_000,
            **{f"{evil}field{i}" + "k" * 500: evil * 100 for i in range(1_000)},
        },
    }
    a, sns = alerter()
    for event in (drift, failed):
        assert a.handle(event)["alerts"][0]["status"] == "published"
    drift_msg, failed_msg = sns.published
    for msg in (drift_msg, failed_msg):
        assert_clean(msg)
    assert "... and 480 more features" in drift_msg["Message"]
    assert f"... and {1_000 - alerts.FIELDS_MAX} more fields" in failed_msg["Message"]
    assert "click http://evil.example" in failed_msg["Message"]  # cleaned, not hidden: the reader sees it


def test_alarm_text_from_the_alarm_topic_is_cleaned_and_capped_too() -> None:
    evil = "\x1b[31m\u202e" + "x" * 20_000
    alarm = {
        "AlarmName": evil,
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "NewStateReason": evil,
        "AlarmDescription": evil,
        "StateChangeTime": evil,
        "Trigger": {"MetricName": "Errors", "Dimensions": [{"name": "Model", "value": evil}]},
    }
    a, sns = alerter()
    a.handle({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(alarm)}}]})
    (msg,) = sns.published
    assert_clean(msg)


@given(st.text(max_size=3000), st.integers(min_value=4, max_value=1000))
def test_clip_keeps_no_control_or_format_character_and_respects_the_limit(text: str, limit: int) -> None:
    import unicodedata

    out = alerts.clip(text, limit)
    assert len(out) <= limit
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in out)
    if len(" ".join(text.split())) <= limit and text.isprintable():
        assert out == " ".join(text.split())  # ordinary text is left alone


def test_a_changed_staged_archive_says_so_not_registry_advice() -> None:
    e = {
        "source": "modelops",
        "detail-type": "ArtifactIntegrityFailed",
        "detail": {
            "model": "demo",
            "role": "training_artifact",
            "job": "modelops-demo-abc",
            "reason": "changed",
        },
    }
    alert = alerts.from_event(e)
    assert "staged archive changed after convert first read it" in alert.body
    registry = alerts.from_event({**e, "detail": {**e["detail"], "role": "model_tflite"}})
    assert "does not match its manifest" in registry.body
    tampered = alerts.from_event({**e, "detail": {**e["detail"], "reason": "artifact_tampered"}})
    assert "written more than once, deleted, or written outside the job's run" in tampered.body
    assert "changed after convert first read it" not in tampered.body


# ---------------------------------------------------------------------------------------------- chat
def test_chatbot_payload_has_the_custom_notification_shape() -> None:
    alert = alerts.from_event(
        {
            "source": "modelops",
            "detail-type": "TrainingJobFailed",
            "detail": {"model": "demo", "job": "modelops-demo-1", "reason": "loss became NaN"},
        }
    )
    chat = alerts.chatbot_payload(alert)
    assert set(chat) == {"version", "source", "id", "content", "metadata"}
    assert (chat["version"], chat["source"], chat["id"]) == ("1.0", "custom", alert.fingerprint)
    content = chat["content"]
    assert set(content) == {"textType", "title", "description", "nextSteps", "keywords"}
    assert content["textType"] == "client-markdown"
    assert content["title"] == ":rotating_light: " + alert.subject
    assert content["description"].startswith("```\n") and content["description"].endswith("\n```")
    assert "loss became NaN" in content["description"] and "What to do next" not in content["description"]
    assert content["nextSteps"] == [
        "Read the training job's logs (CloudWatch /aws/sagemaker/TrainingJobs or the Batch job), fix the data "
        "or the spec, and upload the dataset again."
    ]
    assert content["keywords"] == ["critical", "event", "demo"]
    assert chat["metadata"]["eventType"] == "modelops.event"
    assert chat["metadata"]["additionalContext"] == {
        "severity": "critical",
        "kind": "event",
        "fingerprint": alert.fingerprint,
        "model": "demo",
    }
    assert all(isinstance(v, str) for v in chat["metadata"]["additionalContext"].values())


def test_sns_message_keeps_the_plain_text_as_default_and_the_chat_json_for_https() -> None:
    alert = alerts.from_alarm(json.loads((EVENTS / "alert_predict_5xx_alarm.json").read_text()), no_reports)
    doc = json.loads(alerts.sns_message(alert))
    assert set(doc) == {"default", "https"}
    assert doc["default"] == alerts.clean_body(alert.body)  # e-mail, SQS and Lambda get today's text
    assert json.loads(doc["https"]) == alerts.chatbot_payload(alert)


def test_chat_text_cannot_open_links_or_close_its_code_block() -> None:
    forged = {
        "source": "modelops",
        "detail-type": "PromotionRejected",
        "detail": {
            "model": "m",
            "version": 2,
            "reason": "```\n<https://evil.example|click here> <!channel>",
            "needs": "<https://evil.example|more rows>",
        },
    }
    content = alerts.chatbot_payload(alerts.from_event(forged))["content"]
    assert content["description"].count("```") == 2 and "evil.example" in content["description"]
    assert all("<" not in s for s in [content["title"], *content["nextSteps"], *content["keywords"]])


def test_a_long_body_is_cut_for_chat_but_not_for_e_mail() -> None:
    body = "".join(f"feature f{i}: PSI 0.5\n" for i in range(400)) + "\nWhat to do next:\nFind the sender.\n"
    alert = alerts.Alert("drift", "warning", "[WARNING] Input drift", body, "fp")
    assert len(alerts.sns_message(alert)) > alerts.CHAT_DESCRIPTION_MAX
    assert json.loads(alerts.sns_message(alert))["default"] == body
    chat = alerts.chatbot_payload(alert)
    assert len(chat["content"]["description"]) <= alerts.CHAT_DESCRIPTION_MAX
    assert "(see the e-mail)" in chat["content"]["description"]
    assert chat["content"]["nextSteps"][0].startswith("Find the sender")


# ---------------------------------------------------------------------------------------------- categorical features
def test_categorical_drift_names_the_new_category_rate_with_its_numbers() -> None:
    event = {
        "source": "modelops",
        "detail-type": "DriftDetected",
        "detail": {
            "model": "shop",
            "version": 3,
            "psi_threshold": 0.2,
            "samples": 1000,
            "features": [
                {
                    "name": "plan",
                    "type": "categorical",
                    "psi": 0.08,
                    "ks": None,
                    "reasons": ["new_category_rate"],
                    "new_category_rate": 0.12,
                    "baseline_new_category_rate": 0.02,
                    "new_category_threshold": 0.05,
                },
                {"name": "age", "psi": 0.31, "ks": 0.2, "wasserstein_norm": 0.4},
            ],
        },
    }
    alert = alerts.from_event(event)
    assert alert.kind == "drift" and alert.subject == "[WARNING] Input drift: shop v3 - plan, age"
    assert (
        "- feature plan (categorical): PSI 0.08 (threshold 0.2); new categories 12% of rows (baseline 2%): "
        "new-category rate rose more than 5% over the baseline" in alert.body
    )
    assert "- feature age: PSI 0.31 (threshold 0.2), KS 0.2\n" in alert.body  # numeric: as before
    # a categorical PSI breach without a new-category breach gives the rates but no breach sentence
    event["detail"]["features"][0].update(psi=0.5, reasons=["psi"], new_category_rate=0.03)
    body = alerts.from_event(event).body
    assert "plan (categorical): PSI 0.5 (threshold 0.2); new categories 3% of rows (baseline 2%)\n" in body


def _dataset_event(detail_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": "modelops",
        "detail-type": detail_type,
        "detail": {"model": "churn", "reason": "class_coverage: class 'yes' has 1 row", **extra},
    }


@pytest.mark.parametrize("detail_type", ["DatasetRejected", "TrainingJobStarted"])
def test_warnings_of_a_dataset_are_listed_in_the_alert(detail_type: str) -> None:
    warnings = ["class 'no' is missing from this dataset", "class 'maybe' has 3 rows (floor 10)"]
    alert = alerts.from_event(_dataset_event(detail_type, warnings=warnings))
    assert (
        "Warnings:\n- class 'no' is missing from this dataset\n- class 'maybe' has 3 rows (floor 10)\n"
        in (alert.body)
    )
    assert "warnings:" not in alert.body  # not listed a second time as a raw field
    assert "(2 warnings)" in alert.subject


@pytest.mark.parametrize("detail_type", ["DatasetRejected", "TrainingJobStarted"])
def test_an_event_without_warnings_reads_as_before(detail_type: str) -> None:
    plain = alerts.from_event(_dataset_event(detail_type))
    assert "Warnings" not in plain.body and "warning" not in plain.subject.removeprefix("[WARNING]")
    assert plain.body.startswith(f"{detail_type} for churn.\nReason: class_coverage: class 'yes' has 1 row\n")
    # an empty list changes nothing either
    empty = alerts.from_event(_dataset_event(detail_type, warnings=[]))
    assert (empty.subject, empty.body) == (plain.subject, plain.body)


def test_hostile_warnings_are_cleaned_capped_and_cannot_open_chat_links() -> None:
    evil = "\x1b[31m<https://evil.example|click> <!channel>\u202e" + "w" * 5000
    alert = alerts.from_event(_dataset_event("DatasetRejected", warnings=[evil] * 50))
    lines = alert.body.splitlines()
    assert lines.count(lines[lines.index("Warnings:") + 1]) == alerts.FEATURES_MAX
    assert f"- ... and {50 - alerts.FEATURES_MAX} more warnings" in lines
    assert "\x1b" not in alert.body and "\u202e" not in alert.body
    assert max(len(line) for line in lines) <= alerts.TEXT_MAX + 2
    content = alerts.chatbot_payload(alert)["content"]
    assert content["description"].startswith("```\n") and content["description"].count("```") == 2
    assert "<" not in content["title"]


def test_the_alert_stage_publishes_the_warnings_of_a_training_job_started() -> None:
    a, sns = alerter()
    event = _dataset_event(
        "TrainingJobStarted", warnings=["class 'maybe' has 3 rows (floor 10)"], version=None
    )
    assert a.handle(event)["alerts"][0]["status"] == "published"
    (msg,) = sns.published
    assert "- class 'maybe' has 3 rows (floor 10)" in json.loads(msg["Message"])["default"]
    assert msg["Subject"].startswith("[INFO] TrainingJobStarted: churn (1 warning)")


@pytest.mark.parametrize(
    "trigger",
    [
        {"MetricName": "MaxNewCategoryRatio", "Dimensions": []},
        {  # one metric-math alarm over both ratios
            "Metrics": [
                {"Id": "p", "MetricStat": {"Metric": {"MetricName": "MaxPsiRatio"}}},
                {"Id": "n", "MetricStat": {"Metric": {"MetricName": "MaxNewCategoryRatio"}}},
                {"Id": "worst", "Expression": "MAX([p, n])"},
            ]
        },
    ],
)
def test_an_alarm_on_the_new_category_ratio_reads_as_the_drift_alarm(trigger: dict[str, Any]) -> None:
    alarm = {
        "AlarmName": "modelops-NewCategoryAlarm",
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "StateChangeTime": "2026-01-01T00:00:00.000+0000",
        "Trigger": trigger,
    }
    report = {
        "model": "shop",
        "report_html": "s3://registry/monitoring/shop/x/report.html",
        "drifted_versions": [
            {
                "version": 2,
                "psi_threshold": 0.2,
                "drifted_features": [
                    {
                        "name": "plan",
                        "type": "categorical",
                        "psi": 0.05,
                        "reasons": ["new_category_rate"],
                        "new_category_rate": 0.2,
                        "baseline_new_category_rate": 0.01,
                        "new_category_threshold": 0.05,
                    }
                ],
            }
        ],
    }
    got = alerts.from_alarm(alarm, lambda _when: [report])
    assert got.kind == "drift" and got.severity == "warning" and got.targets == [("shop", 2)]
    assert got.subject == "[WARNING] Input drift: shop v2 - plan"
    assert "new categories 20% of rows (baseline 1%): new-category rate rose more than 5%" in got.body
