"""The AWS Chatbot channel in template.yaml: created only when both Slack ids are given, refused at
deploy (template ``Rules``) when one is missing, notifications only (a role without permissions and
the AWSDenyAll guardrail), and harmless to the twin when off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelops_local.cfn import Template
from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
T = load(ROOT / "template.yaml")
R = T["Resources"]
PAIR = ("ChatbotSlackWorkspaceId", "ChatbotSlackChannelId")


def evaluate(expr: Any, params: dict[str, str]) -> Any:
    """The intrinsic functions the Rules and Conditions below use, as CloudFormation evaluates them."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((key, arg),) = expr.items()
        if key == "Ref":
            return params.get(arg, T["Parameters"][arg].get("Default"))
        if key == "Fn::Equals":
            return evaluate(arg[0], params) == evaluate(arg[1], params)
        if key == "Fn::Not":
            return not evaluate(arg[0], params)
        if key == "Fn::And":
            return all(evaluate(a, params) for a in arg)
        if key == "Fn::Or":
            return any(evaluate(a, params) for a in arg)
        raise AssertionError(f"unexpected function {key}")
    return expr


def refused(params: dict[str, str]) -> list[str]:
    """AssertDescriptions of the Rules that fail for ``params`` (what CloudFormation reports)."""
    out = []
    for rule in T["Rules"].values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], params):
            continue
        out += [a["AssertDescription"] for a in rule["Assertions"] if not evaluate(a["Assert"], params)]
    return out


def test_parameters_default_to_off_and_only_take_ids() -> None:
    for name in PAIR:
        spec = T["Parameters"][name]
        assert spec["Type"] == "String" and spec["Default"] == ""
        assert spec["AllowedPattern"] == "^([A-Z0-9]{1,64})?$"


@pytest.mark.parametrize(
    ("workspace", "channel", "created", "errors"),
    [
        ("", "", False, []),
        ("T01234567", "C0123456789", True, []),
        ("T01234567", "", False, ["ChatbotSlackChannelId is empty"]),
        ("", "C0123456789", False, ["ChatbotSlackWorkspaceId is empty"]),
    ],
)
def test_both_ids_create_the_channel_and_a_half_filled_pair_is_refused(
    workspace: str, channel: str, created: bool, errors: list[str]
) -> None:
    params = {"ChatbotSlackWorkspaceId": workspace, "ChatbotSlackChannelId": channel}
    assert evaluate(T["Conditions"]["HasChatbotSlack"], params) is created
    got = refused(params)
    assert len(got) == len(errors)
    for message, expected in zip(got, errors, strict=True):
        assert expected in message and "give both" in message
    # the other Rules (Batch) are untouched by these parameters
    assert refused({}) == []


def test_channel_is_subscribed_to_alerts_topic_and_can_run_nothing() -> None:
    channel, role = R["ChatbotSlackChannel"], R["ChatbotChannelRole"]
    assert channel["Type"] == "AWS::Chatbot::SlackChannelConfiguration"
    assert channel["Condition"] == role["Condition"] == "HasChatbotSlack"
    props = channel["Properties"]
    assert props["SnsTopicArns"] == [{"Ref": "AlertsTopic"}]
    assert props["SlackWorkspaceId"] == {"Ref": "ChatbotSlackWorkspaceId"}
    assert props["SlackChannelId"] == {"Ref": "ChatbotSlackChannelId"}
    assert props["IamRoleArn"] == {"Fn::GetAtt": ["ChatbotChannelRole", "Arn"]}
    assert props["GuardrailPolicies"] == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSDenyAll"}]
    assert props["UserRoleRequired"] is False
    # the role: assumable by Chatbot only, with no permissions of its own
    (stmt,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert stmt["Principal"] == {"Service": "chatbot.amazonaws.com"} and stmt["Action"] == "sts:AssumeRole"
    assert not {"Policies", "ManagedPolicyArns"} & set(role["Properties"])


def test_the_twin_reads_the_template_with_the_channel_off_and_on() -> None:
    off = Template(ROOT / "template.yaml", seed=7)
    assert off.conditions["HasChatbotSlack"] is False
    assert "ChatbotSlackChannel" not in off.resources and "ChatbotSlackChannel" in off.all_resources
    on = Template(
        ROOT / "template.yaml",
        seed=7,
        parameters={"ChatbotSlackWorkspaceId": "T01234567", "ChatbotSlackChannelId": "C0123456789"},
    )
    assert on.conditions["HasChatbotSlack"] is True and "ChatbotSlackChannel" in on.resources
