"""The parsed template: least privilege, storage hardening, nothing lost on async failures, auth on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
T = load(ROOT / "template.yaml")
R: dict[str, Any] = T["Resources"]
FUNCTIONS = {k: v for k, v in R.items() if v["Type"] == "AWS::Serverless::Function"}
ASYNC_EVENT_TYPES = {"S3", "SNS", "EventBridgeRule", "Schedule", "ScheduleV2", "CloudWatchEvent"}


def statements(fn: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for pol in fn["Properties"].get("Policies", []):
        assert isinstance(pol, dict) and "Statement" in pol, f"policy templates are not used: {pol}"
        for st in pol["Statement"]:
            if isinstance(st, dict) and "Fn::If" in st:
                st = st["Fn::If"][1]
            if isinstance(st, dict) and "Effect" in st:
                out.append(st)
    return out


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def text(v: Any) -> str:
    return json.dumps(v)


def test_every_function_uses_python312_or_an_image() -> None:
    for name, fn in FUNCTIONS.items():
        props = fn["Properties"]
        assert props.get("Runtime") == "python3.12" or props.get("PackageType") == "Image", name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_no_broad_policy_templates_and_no_star_resources(name: str) -> None:
    fn = FUNCTIONS[name]
    for pol in fn["Properties"].get("Policies", []):
        assert not (
            isinstance(pol, dict)
            and {"S3CrudPolicy", "S3FullAccessPolicy", "AmazonS3FullAccess"} & pol.keys()
        )
        assert pol not in ("AmazonS3FullAccess", "AdministratorAccess")
    for st in statements(fn):
        actions = as_list(st["Action"])
        assert all("*" not in a for a in actions), f"{name}: wildcard action {actions}"
        if st["Resource"] == "*":
            # Only actions that AWS cannot scope to a resource: metrics with a namespace condition,
            # and Batch's read-only ListJobs (which has no resource-level permissions).
            assert (actions == ["cloudwatch:PutMetricData"] and "Condition" in st) or actions == [
                "batch:ListJobs"
            ], f"{name}: {st}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_s3_access_is_scoped_to_prefixes(name: str) -> None:
    for st in statements(FUNCTIONS[name]):
        if not any(a.startswith("s3:") for a in as_list(st["Action"])):
            continue
        if {"s3:ListBucket", "s3:ListBucketVersions"} & set(as_list(st["Action"])):  # the bucket itself
            continue  # ListBucket applies to the bucket itself
        for res in as_list(st["Resource"]):
            s = text(res)
            assert re.search(r"\}/[a-z]", s), f"{name}: object access to every key of a bucket: {s}"


def test_predict_is_read_only_on_models_and_cannot_write_the_registry() -> None:
    sts = statements(FUNCTIONS["PredictFunction"])
    writes = [
        st for st in sts if any(a in ("s3:PutObject", "s3:DeleteObject") for a in as_list(st["Action"]))
    ]
    assert writes == []
    reads = [text(st["Resource"]) for st in sts if "s3:GetObject" in as_list(st["Action"])]
    assert reads and all("/models/*" in r for r in reads)


def test_pass_role_only_with_its_service_condition() -> None:
    for name, fn in FUNCTIONS.items():
        for st in statements(fn):
            if "iam:PassRole" in as_list(st["Action"]):
                assert st["Resource"] != "*", name
                cond = st["Condition"]["StringEquals"]["iam:PassedToService"]
                assert set(as_list(cond)) <= {"sagemaker.amazonaws.com", "ecs-tasks.amazonaws.com"}, name


@pytest.mark.parametrize("bucket", ["DataBucket", "RegistryBucket", "AccessLogsBucket"])
def test_buckets_block_public_access_encrypt_version_and_deny_plain_http(bucket: str) -> None:
    props = R[bucket]["Properties"]
    assert all(
        props["PublicAccessBlockConfiguration"][k] is True
        for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    policies = [
        r
        for r in R.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    assert len(policies) == 1
    denies = [s for s in policies[0]["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in denies)


def test_manifests_cannot_be_overwritten_by_policy() -> None:
    st = R["RegistryBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    rule = next(s for s in st if s.get("Sid") == "ManifestsAreCreateOnly")
    assert rule["Effect"] == "Deny" and "manifest.json" in text(rule["Resource"])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_async_functions_keep_failed_events(name: str) -> None:
    props = FUNCTIONS[name]["Properties"]
    events = props.get("Events", {})
    if not any(e["Type"] in ASYNC_EVENT_TYPES for e in events.values()):
        return
    cfg = props.get("EventInvokeConfig", {})
    on_failure = cfg.get("DestinationConfig", {}).get("OnFailure") or props.get("DeadLetterQueue")
    assert on_failure, f"{name} is invoked asynchronously but keeps no failed events"
    assert cfg.get("MaximumRetryAttempts") == 2
    for ev_name, ev in events.items():
        if ev["Type"] == "EventBridgeRule":
            assert "DeadLetterConfig" in ev["Properties"], f"{name}/{ev_name}: rule target without a DLQ"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_log_retention_is_set(name: str) -> None:
    groups = [
        r
        for r in R.values()
        if r["Type"] == "AWS::Logs::LogGroup" and f"${{{name}}}" in text(r["Properties"]["LogGroupName"])
    ]
    assert len(groups) == 1 and groups[0]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_api_requires_iam_auth_by_default() -> None:
    assert T["Parameters"]["ApiAuth"]["Default"] == "IAM"
    auth = R["PredictApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == {"Fn::If": ["UseIamAuth", "AWS_IAM", {"Ref": "AWS::NoValue"}]}


def test_predict_deploys_as_a_canary_with_rollback_alarms() -> None:
    props = FUNCTIONS["PredictFunction"]["Properties"]
    assert props["AutoPublishAlias"] == "live"
    pref = props["DeploymentPreference"]
    assert pref["Type"].startswith("Canary") and pref["Alarms"]


def test_outputs_name_everything_a_client_needs() -> None:
    assert {"DataBucketName", "RegistryBucketName", "AlertsTopicArn", "ApiUrl"} <= T["Outputs"].keys()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_deploys_through_an_alias_with_rollback_alarms(name: str) -> None:
    props = FUNCTIONS[name]["Properties"]
    assert props["AutoPublishAlias"] == "live"
    assert props["DeploymentPreference"]["Alarms"], name


def test_only_the_state_machines_working_files_expire() -> None:
    """Plans, map items, partials and per-part files expire (docs/scale.md "Working files"); no rule
    reaches a model, a job record, an input, a report or a score."""
    registry = R["RegistryBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    prefixes = sorted(rule["Prefix"] for rule in registry)
    assert prefixes == ["dataset-runs/", "monitor-runs/", "score-runs/"]
    for rule in registry:
        assert rule["Status"] == "Enabled" and "Filter" not in rule
        assert rule["ExpirationInDays"] >= 7
