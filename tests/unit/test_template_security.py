"""The parsed template against the template findings of the security review (issue 17).

Each test names the finding it covers; docs/threat-model.md maps assets to these tests. The template
as it was before the fixes fails every one of them.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
T = load(ROOT / "template.yaml")
P: dict[str, Any] = T["Parameters"]
R: dict[str, Any] = T["Resources"]
FUNCTIONS = {k: v for k, v in R.items() if v["Type"] == "AWS::Serverless::Function"}


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def branches(node: Any) -> list[Any]:
    """Both values of an ``Fn::If`` (recursively), or the node itself."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, yes, no = node["Fn::If"]
        return [*branches(yes), *branches(no)]
    return [node]


def statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity-policy statement of the stack: (owner, statement), both sides of each Fn::If."""
    for name, res in R.items():
        props = res.get("Properties", {})
        docs = []
        if res["Type"] == "AWS::Serverless::Function":
            docs = [p for p in props.get("Policies", []) if isinstance(p, dict)]
        elif res["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        for doc in docs:
            for st in doc["Statement"]:
                for s in branches(st):
                    if isinstance(s, dict) and "Effect" in s:
                        yield name, s


def sub_text(v: Any) -> str:
    """The text of a ``!Sub`` (or a plain string), for matching ARNs written in the template."""
    if isinstance(v, dict) and "Fn::Sub" in v:
        arg = v["Fn::Sub"]
        return arg[0] if isinstance(arg, list) else arg
    if isinstance(v, dict) and set(v) == {"Fn::GetAtt"}:
        return f"${{{v['Fn::GetAtt'][0]}.Arn}}"
    return v if isinstance(v, str) else json.dumps(v)


def default(param: str) -> Any:
    return P[param]["Default"]


# ---------------------------------------------------------------------------- predict: 5xx from valid requests


def test_stage_burst_is_predict_reserved_concurrency_so_throttles_are_429_not_500() -> None:
    """Finding: reserved concurrency (50) below the stage burst (200) turns bursts into Lambda throttles,
    which API Gateway answers with a 500. The rule: burst <= reserved concurrency, tied by one parameter."""
    reserved = FUNCTIONS["PredictFunction"]["Properties"]["ReservedConcurrentExecutions"]
    api = R["PredictApi"]["Properties"]
    [setting] = api["MethodSettings"]
    assert setting["ThrottlingBurstLimit"] == reserved == {"Ref": "PredictReservedConcurrency"}
    # the usage plan (ApiAuth=API_KEY) follows the same rule
    throttle = api["Auth"]["UsagePlan"]["Throttle"]
    assert throttle["BurstLimit"] == reserved
    assert throttle["RateLimit"] == setting["ThrottlingRateLimit"]
    # steady state: rate x p99 latency (the latency alarm's threshold) fits in the reserved concurrency
    rate = default(setting["ThrottlingRateLimit"]["Ref"])
    p99_ms = R["PredictLatencyAlarm"]["Properties"]["Threshold"]
    assert rate * p99_ms / 1000 <= default("PredictReservedConcurrency")


GATEWAY_RESPONSES = {
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "THROTTLED",
    "ACCESS_DENIED",
    "REQUEST_TOO_LARGE",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
}


def _gateway_body(template: str) -> dict[str, Any]:
    # $context.error.messageString is already a quoted JSON string; the others sit inside quotes.
    doc = json.loads(template.replace("$context.error.messageString", '"Too Many Requests"'))
    assert isinstance(doc, dict)
    return doc


def test_gateway_responses_use_the_predict_error_shape() -> None:
    """Finding: API Gateway's own 403/413/429/5xx answers do not use our error shape."""
    from modelops.stages.predict.errors import RequestError, error_result

    _, app_body, _ = error_result(RequestError(413, "payload_too_large", "too big"), "rid")
    app_shape = {k: sorted(v) for k, v in json.loads(app_body).items()}

    responses = R["PredictApi"]["Properties"].get("GatewayResponses", {})
    assert GATEWAY_RESPONSES <= responses.keys()
    codes = {}
    for kind, resp in responses.items():
        assert resp["ResponseParameters"]["Headers"]["Content-Type"] == "'application/json'", kind
        body = _gateway_body(resp["ResponseTemplates"]["application/json"])
        assert {k: sorted(v) for k, v in body.items()} == app_shape, kind
        assert body["error"]["request_id"] == "$context.requestId", kind
        code = body["error"]["code"]
        assert re.fullmatch(r"[a-z][a-z_]+", code), f"{kind}: not a stable code: {code!r}"
        codes[kind] = code
    assert len(set(codes.values())) == len(codes), f"one code per response type: {codes}"
    # where API Gateway refuses what the function would refuse, the code is the same
    assert codes["REQUEST_TOO_LARGE"] == "payload_too_large"
    assert codes["THROTTLED"] == "throttled"


# ---------------------------------------------------------------------------- who called predict


ACCESS_LOG_FIELDS = {
    "$context.requestId",
    "$context.identity.userArn",
    "$context.identity.caller",
    "$context.resourcePath",
    "$context.status",
    "$context.responseLatency",
}


def test_api_access_logs_record_the_caller_without_bodies() -> None:
    """Finding: no record of who called predict (API access logs off)."""
    setting = R["PredictApi"]["Properties"].get("AccessLogSetting")
    assert setting, "API access logs are off"
    [group, attr] = setting["DestinationArn"]["Fn::GetAtt"]
    assert attr == "Arn" and R[group]["Type"] == "AWS::Logs::LogGroup"
    assert R[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fmt = json.loads(setting["Format"])  # one JSON object per request
    values = set(fmt.values())
    assert ACCESS_LOG_FIELDS <= values, ACCESS_LOG_FIELDS - values
    assert not any(re.search(r"\$input|body|requestOverride|querystring", v, re.I) for v in values)


def test_access_logs_can_be_delivered_and_their_suppressions_are_gone() -> None:
    """The account-wide API Gateway CloudWatch role is set by the stack (or declared existing), before
    the stage; the checkov/cfn-lint suppressions for 'access logs off' are gone."""
    assert P["ApiGatewayCloudWatchRole"]["AllowedValues"] == ["create", "existing"]
    account = R["ApiGatewayAccount"]
    assert account["Type"] == "AWS::ApiGateway::Account"
    assert account["Condition"] == "CreateApiGatewayLogsRole"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]}
    # account-wide setting: kept when the stack goes, so other APIs of the region keep logging
    for name in ("ApiGatewayAccount", "ApiGatewayLogsRole"):
        assert R[name]["DeletionPolicy"] == R[name]["UpdateReplacePolicy"] == "Retain"
    handle = R[R["PredictApi"]["DependsOn"]]
    assert handle["Metadata"]["Account"]["Fn::If"][1] == {"Ref": "ApiGatewayAccount"}

    checkov = yaml.safe_load((ROOT / ".checkov.yaml").read_text())
    cfnlint = yaml.safe_load((ROOT / ".cfnlintrc.yaml").read_text())
    assert "CKV_AWS_76" not in checkov.get("skip-check", [])
    assert "ES2000" not in cfnlint.get("ignore_checks", [])


# ---------------------------------------------------------------------------- spend


def test_spend_limits_are_parameters_passed_to_train_trigger() -> None:
    """Finding: uploaders control GPU spend (any ml.* type, 50 parallel trials of 24 h)."""
    assert P["TrainingInstanceTypes"]["Type"] == "CommaDelimitedList"
    assert P["TrainingMaxParallelTrials"]["Type"] == "Number"
    assert P["TrainingMaxRuntimeSeconds"]["Type"] == "Number"
    env = FUNCTIONS["TrainTriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ALLOWED_INSTANCE_TYPES"] == {"Fn::Join": [",", {"Ref": "TrainingInstanceTypes"}]}
    assert env["MAX_PARALLEL_TRIALS"] == {"Ref": "TrainingMaxParallelTrials"}
    assert env["MAX_RUNTIME_SECONDS"] == {"Ref": "TrainingMaxRuntimeSeconds"}
    # Batch attempts are capped by the same runtime
    jobdef = R["TrainingJobDefinition"]["Properties"]
    assert jobdef["Timeout"]["AttemptDurationSeconds"] == {"Ref": "TrainingMaxRuntimeSeconds"}


def test_defaults_admit_what_the_code_asks_for_today() -> None:
    """The IAM caps must not deny the jobs train_trigger starts now: the default spec's instance type
    is allowed and the default runtime it requests is within the cap."""
    from modelops.compute import create_training_job_request
    from modelops.domain.spec import TrainingSpec

    assert TrainingSpec().instance_type in default("TrainingInstanceTypes").split(",")
    requested = inspect.signature(create_training_job_request).parameters["max_runtime_s"].default
    assert requested <= default("TrainingMaxRuntimeSeconds")


@pytest.mark.parametrize("action", ["sagemaker:CreateTrainingJob", "sagemaker:CreateHyperParameterTuningJob"])
def test_job_creation_is_allowed_only_within_the_spend_limits(action: str) -> None:
    """IAM enforces the limits too: every statement that lets a role start a job carries them."""
    allowing = [(owner, st) for owner, st in statements() if action in as_list(st["Action"])]
    assert allowing, action
    for owner, st in allowing:
        assert st["Effect"] == "Allow"
        cond = st.get("Condition", {})
        assert cond.get("ForAllValues:StringEquals", {}).get("sagemaker:InstanceTypes") == {
            "Ref": "TrainingInstanceTypes"
        }, owner
        assert cond.get("Null", {}).get("sagemaker:InstanceTypes") == "false", owner  # the key must be there
        runtime = cond.get("NumericLessThanEquals") or cond.get("NumericLessThanEqualsIfExists") or {}
        assert runtime.get("sagemaker:MaxRuntimeInSeconds") == {"Ref": "TrainingMaxRuntimeSeconds"}, owner
    if action == "sagemaker:CreateTrainingJob":  # a training job always carries its runtime: no IfExists
        assert all("NumericLessThanEquals" in st["Condition"] for _, st in allowing)


# ---------------------------------------------------------------------------- the training role


def _training_role_statements() -> list[dict[str, Any]]:
    return [st for owner, st in statements() if owner == "TrainingJobRole"]


def _image_pulls(parameters: dict[str, str]) -> list[str]:
    """The ECR repositories the training role may pull from, resolved as CloudFormation would."""
    from modelops_local.cfn import Template

    t = Template(ROOT / "template.yaml", parameters=parameters, seed=1)
    role = t.resolve(t.props("TrainingJobRole"))
    return [
        arn
        for pol in role["Policies"]
        for st in pol["PolicyDocument"]["Statement"]
        if "ecr:BatchGetImage" in as_list(st["Action"])
        for arn in as_list(st["Resource"])
    ]


@pytest.mark.parametrize(
    ("uri", "repository"),
    [
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/modelops-training:1.2", "modelops-training"),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/modelops-training@sha256:ab12", "modelops-training"),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/team/trainer:latest", "team/trainer"),
    ],
)
def test_training_role_pulls_only_the_given_training_image(uri: str, repository: str) -> None:
    """Finding: the training role can pull ECR images from any account. With TrainingImageUri: that
    image's account and repository (a namespaced one by its first path segment)."""
    first = repository.split("/")[0]
    expected = {f"arn:aws:ecr:us-east-1:111122223333:repository/{r}" for r in (first, f"{first}/*")}
    assert set(_image_pulls({"TrainingImageUri": uri})) == expected


def test_training_role_pulls_only_the_aws_tensorflow_image_by_default() -> None:
    """Without TrainingImageUri: the AWS TensorFlow training repository of the Deep Learning Containers
    account of every region the code knows, and nothing else."""
    from modelops.compute import aws_tensorflow_image, sagemaker

    pulls = _image_pulls({})
    for arn in pulls:
        assert re.fullmatch(r"arn:aws:ecr:us-east-1:\d{12}:repository/tensorflow-training", arn), arn
    for region in [*sagemaker._DLC_ACCOUNTS, "us-east-1", "eu-west-1"]:
        account = aws_tensorflow_image(region, "ml.g5.xlarge").split(".")[0]
        assert f"arn:aws:ecr:us-east-1:{account}:repository/tensorflow-training" in pulls, region


def test_training_role_lists_only_the_prefixes_it_uses() -> None:
    """Finding: the training role lists both buckets unscoped."""
    lists = [st for st in _training_role_statements() if "s3:ListBucket" in as_list(st["Action"])]
    assert lists
    for st in lists:
        prefixes = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        assert prefixes and all(re.fullmatch(r"[a-z][a-z/-]*/\*", p) for p in as_list(prefixes)), st


def test_training_role_trust_is_limited_to_this_account() -> None:
    """Finding: the training role's trust policy has no aws:SourceAccount (confused deputy)."""
    trust = R["TrainingJobRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    services = set()
    for st in trust:
        services |= set(as_list(st["Principal"]["Service"]))
        cond = st.get("Condition", {})
        assert cond.get("StringEquals", {}).get("aws:SourceAccount") == {"Ref": "AWS::AccountId"}, st
        source_arn = sub_text(cond.get("ArnLike", {}).get("aws:SourceArn"))
        assert source_arn.startswith("arn:${AWS::Partition}:") and ":${AWS::AccountId}:" in source_arn, st
    assert services == {"sagemaker.amazonaws.com", "ecs-tasks.amazonaws.com"}


# ---------------------------------------------------------------------------- dead letters, capture, Batch


def _rules_targeting(queue: str) -> list[str]:
    """ARNs (as !Sub text) of the EventBridge rules whose dead letters go to ``queue``."""
    arns = []
    for fn in FUNCTIONS.values():
        for ev in fn["Properties"].get("Events", {}).values():
            p = ev["Properties"]
            if ev["Type"] == "EventBridgeRule" and p.get("DeadLetterConfig", {}).get("Arn") == {
                "Fn::GetAtt": [queue, "Arn"]
            }:
                assert "RuleName" in p, "a rule's ARN is only known here when the template names it"
                bus = p.get("EventBusName")
                # a rule on a custom bus is named rule/{bus}/{rule}
                prefix = "${" + bus["Ref"] + "}/" if isinstance(bus, dict) and "Ref" in bus else ""
                arns.append(
                    "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
                    + prefix
                    + sub_text(p["RuleName"])
                )
    return arns


def test_dlq_policy_accepts_only_the_rules_that_target_each_queue() -> None:
    """Finding: the DLQ policy checks aws:SourceAccount, not aws:SourceArn."""
    policy = R["RuleDeadLetterPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    for st in policy:
        if st["Effect"] != "Allow":
            continue
        [queue] = [r["Fn::GetAtt"][0] for r in as_list(st["Resource"])]
        allowed = sorted(
            sub_text(a) for a in as_list(st["Condition"].get("ArnEquals", {}).get("aws:SourceArn"))
        )
        assert allowed == sorted(_rules_targeting(queue)), queue
    queues = {r["Fn::GetAtt"][0] for st in policy for r in as_list(st["Resource"])}
    assert queues == {"ConvertDLQ", "AlertDLQ"}


def test_rule_names_fit_eventbridge_for_stack_names_up_to_41_characters() -> None:
    for fn in FUNCTIONS.values():
        for ev in fn["Properties"].get("Events", {}).values():
            if "RuleName" in ev["Properties"]:
                name = sub_text(ev["Properties"]["RuleName"]).replace("${AWS::StackName}", "s" * 41)
                assert len(name) <= 64, name


def test_capture_stream_role_can_write_every_prefix_the_stream_uses() -> None:
    """Finding: the capture stream's role cannot write the capture-errors/ prefix it is configured with."""
    for name, res in R.items():
        if res["Type"] != "AWS::KinesisFirehose::DeliveryStream":
            continue
        dest = res["Properties"]["ExtendedS3DestinationConfiguration"]
        role = dest["RoleARN"]["Fn::GetAtt"][0]
        bucket = sub_text(dest["BucketARN"])
        writable = {
            sub_text(r)
            for owner, st in statements()
            if owner == role and "s3:PutObject" in as_list(st["Action"])
            for r in as_list(st["Resource"])
        }
        for prefix in (dest["Prefix"], dest["ErrorOutputPrefix"]):
            assert f"{bucket}/{prefix}*" in writable, f"{name}: {prefix}"


def test_batch_rule_matches_only_this_stacks_job_queue() -> None:
    """Finding: the Batch EventBridge rule has no job-queue filter."""
    rules = [
        ev["Properties"]["Pattern"]
        for fn in FUNCTIONS.values()
        for ev in fn["Properties"].get("Events", {}).values()
        if ev["Type"] == "EventBridgeRule" and "aws.batch" in ev["Properties"]["Pattern"].get("source", [])
    ]
    assert rules
    for pattern in rules:
        queues = [q for entry in pattern["detail"].get("jobQueue", []) for q in branches(entry)]
        assert {"Ref": "TrainingJobQueue"} in queues
        assert all(not isinstance(q, dict) or "prefix" not in q for q in queues)


# ---------------------------------------------------------------------------- the registry bucket


def _registry_denies() -> list[dict[str, Any]]:
    st = R["RegistryBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    return [s for s in st if s["Effect"] == "Deny" and s["Principal"] == "*"]


@pytest.mark.parametrize("part", ["blobs", "versions", "aliases", "history"])
def test_registry_objects_cannot_be_deleted(part: str) -> None:
    """Finding: aliases and blobs have no bucket-policy protection (defence in depth: reads verify
    SHA-256). Deletes (and permanent version deletes) are denied to everyone but the break-glass role."""
    key = f"${{RegistryBucket.Arn}}/models/*/{part}/*"
    denying = [
        s
        for s in _registry_denies()
        if {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(as_list(s["Action"]))
        and key in {sub_text(r) for r in as_list(s["Resource"])}
    ]
    assert denying, part
    for s in denying:
        cond = s.get("Condition")
        if cond is not None:  # the only exception: the optional break-glass role
            cond_if = cond["Fn::If"]
            assert cond_if[0] == "HasBreakGlassRole" and cond_if[2] == {"Ref": "AWS::NoValue"}
            assert cond_if[1] == {"ArnNotEquals": {"aws:PrincipalArn": {"Ref": "RegistryBreakGlassRoleArn"}}}
    assert default("RegistryBreakGlassRoleArn") == ""


@pytest.mark.parametrize(
    ("part", "required"),
    [
        ("blobs", {"s3:if-none-match"}),
        ("history", {"s3:if-none-match"}),
        ("aliases", {"s3:if-none-match", "s3:if-match"}),
    ],
)
def test_registry_writes_are_create_only_or_compare_and_swap(part: str, required: set[str]) -> None:
    """Blobs and history are written create-only (like manifests); an alias moves only by CAS."""
    key = f"${{RegistryBucket.Arn}}/models/*/{part}/*"
    denying = [
        s
        for s in _registry_denies()
        if as_list(s["Action"]) == ["s3:PutObject"] and key in {sub_text(r) for r in as_list(s["Resource"])}
    ]
    assert len(denying) == 1, part
    assert denying[0]["Condition"] == {"Null": {k: "true" for k in required}}


def test_only_this_stacks_alarms_may_publish_to_the_alarm_topic() -> None:
    """Finding (events): an alarm-shaped message naming a model and version, published by anyone with
    sns:Publish, would make alert roll the canary back."""
    [policy] = [
        r
        for r in R.values()
        if r["Type"] == "AWS::SNS::TopicPolicy" and {"Ref": "AlarmTopic"} in r["Properties"]["Topics"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and allow["Action"] == "sns:Publish"
    assert sub_text(allow["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(":alarm:${AWS::StackName}-*")
    [deny] = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "sns:Publish"
    assert deny["Condition"] == {"StringNotEquals": {"aws:PrincipalServiceName": "cloudwatch.amazonaws.com"}}


def test_a_jobs_archive_link_is_create_only() -> None:
    statements = R["RegistryBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [st] = [s for s in statements if s.get("Sid") == "JobArtifactLinksAreCreateOnly"]
    assert st["Effect"] == "Deny" and st["Action"] == "s3:PutObject"
    assert sub_text(st["Resource"]).endswith("/jobs/*.artifact.json")
    assert st["Condition"] == {"Null": {"s3:if-none-match": "true"}}
