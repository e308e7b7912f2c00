"""The event shapes AWS services give Lambda, built from what moto delivers to the twin's queues."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

_PRINCIPAL = "AWS:AIDAJDPLRKLG7UEXAMPLE"


def iso_now(ms: bool = False) -> str:
    now = datetime.now(UTC)
    if ms:
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_s3_test_event(body: Any) -> bool:
    """S3 sends ``s3:TestEvent`` to a queue when a notification is configured; Lambda never sees it."""
    return isinstance(body, dict) and body.get("Event") == "s3:TestEvent"


def s3_records(body: dict[str, Any], s3: Any) -> list[dict[str, Any]]:
    """Each record of an S3 notification as AWS sends it to Lambda (one record per event).

    moto's record lacks ``versionId``, ``sequencer`` and the identity fields; the twin adds them.
    The version is the newest one of that key with the record's ETag.
    """
    out = []
    for record in body.get("Records", []):
        rec = json.loads(json.dumps(record))
        rec.setdefault("userIdentity", {"principalId": _PRINCIPAL})
        rec.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        rec.setdefault(
            "responseElements",
            {
                "x-amz-request-id": secrets.token_hex(8).upper(),
                "x-amz-id-2": base64.b64encode(secrets.token_bytes(48)).decode(),
            },
        )
        s3part = rec.setdefault("s3", {})
        s3part.setdefault("bucket", {}).setdefault("ownerIdentity", {"principalId": _PRINCIPAL[4:]})
        obj = s3part.setdefault("object", {})
        # moto encodes "/" too (quote_plus); S3 keeps the slashes of a key and form-encodes the rest.
        obj["key"] = quote_plus(unquote_plus(str(obj.get("key", ""))), safe="/")
        obj.setdefault("sequencer", f"{time.time_ns():018X}"[-18:])
        if "versionId" not in obj and rec.get("eventName", "").startswith("ObjectCreated"):
            version = _version_of(
                s3, s3part["bucket"].get("name", ""), unquote_plus(obj.get("key", "")), obj.get("eTag")
            )
            if version:
                obj["versionId"] = version
        out.append({"Records": [rec]})
    return out


def _version_of(s3: Any, bucket: str, key: str, etag: str | None) -> str | None:
    try:
        resp = s3.list_object_versions(Bucket=bucket, Prefix=key)
    except Exception:  # noqa: BLE001 - an unversioned or vanished bucket: no version id
        return None
    candidates = [
        v
        for v in resp.get("Versions", [])
        if v.get("Key") == key and (etag is None or v.get("ETag", "").strip('"') == etag.strip('"'))
    ]
    if not candidates:
        return None
    best = max(candidates, key=lambda v: (v.get("LastModified"), v.get("IsLatest", False)))
    version = best.get("VersionId")
    return None if version in (None, "null") else str(version)


def sns_event(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """An SNS notification (the JSON SNS delivers to SQS) as SNS delivers it to Lambda."""
    attrs = {
        k: {"Type": v.get("Type", "String"), "Value": v.get("Value")}
        for k, v in (envelope.get("MessageAttributes") or {}).items()
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {
                    "Type": envelope.get("Type", "Notification"),
                    "MessageId": envelope.get("MessageId", str(uuid.uuid4())),
                    "TopicArn": envelope.get("TopicArn"),
                    "Subject": envelope.get("Subject"),
                    "Message": envelope.get("Message"),
                    "Timestamp": envelope.get("Timestamp", iso_now(ms=True)),
                    "SignatureVersion": envelope.get("SignatureVersion", "1"),
                    "Signature": envelope.get("Signature", "EXAMPLE"),
                    "SigningCertUrl": envelope.get("SigningCertURL", ""),
                    "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
                    "MessageAttributes": attrs,
                },
            }
        ]
    }


def eventbridge_event(body: dict[str, Any], target: dict[str, Any] | None = None) -> Any:
    """An EventBridge event as a Lambda target receives it (``Input``/``InputPath`` applied)."""
    event = dict(body)
    event.pop("ingestion-time", None)
    if isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(float(event["time"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    target = target or {}
    if target.get("Input") is not None:
        raw = target["Input"]
        return json.loads(raw) if isinstance(raw, str) else raw
    if target.get("InputPath"):
        node: Any = event
        for part in str(target["InputPath"]).lstrip("$").strip(".").split("."):
            if part:
                node = node.get(part) if isinstance(node, dict) else None
        return node
    return event


def scheduled_event(
    resource_arn: str, region: str, account: str, *, scheduler: bool = False
) -> dict[str, Any]:
    """What an EventBridge schedule (or EventBridge Scheduler, ``source: aws.scheduler``) sends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler" if scheduler else "aws.events",
        "account": account,
        "time": iso_now(),
        "region": region,
        "resources": [resource_arn],
        "detail": {},
    }


def sqs_records(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """A batch of SQS messages as an SQS event source mapping gives them to Lambda."""
    records = []
    for m in messages:
        attrs = {
            k: {
                "stringValue": v.get("StringValue"),
                "binaryValue": v.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": v.get("DataType"),
            }
            for k, v in (m.get("MessageAttributes") or {}).items()
        }
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes") or {}),
                "messageAttributes": attrs,
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}
