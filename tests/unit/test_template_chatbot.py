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
        if key in ("Condition", "Fn::Condition"):
            return evaluate(T["Conditions"][arg], params)
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
    assert channel["Condition"] == "HasChatbotSlack" and role["Condition"] == "HasChatbot"
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


TEAMS = ("ChatbotTeamsTenantId", "ChatbotTeamsTeamId", "ChatbotTeamsChannelId")
TENANT, TEAM, CHANNEL = (
    "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809",
    "19:abcdef0123456789@thread.tacv2",
)


@pytest.mark.parametrize(
    ("ids", "created", "refusals"),
    [
        ((TENANT, TEAM, CHANNEL), True, 0),
        (("", "", ""), False, 0),
        ((TENANT, "", ""), False, 1),
        ((TENANT, TEAM, ""), False, 2),
        (("", "", CHANNEL), False, 1),
    ],
)
def test_teams_needs_all_three_ids_and_a_partial_set_is_refused(
    ids: tuple[str, str, str], created: bool, refusals: int
) -> None:
    params = dict(zip(TEAMS, ids, strict=True))
    assert evaluate(T["Conditions"]["HasChatbotTeams"], params) is created
    assert evaluate(T["Conditions"]["HasChatbot"], params) is created  # the role comes with a channel
    got = refused(params)
    assert len(got) == refusals and all("give all three Microsoft Teams ids" in m for m in got)


def test_teams_channel_is_subscribed_to_alerts_topic_and_can_run_nothing() -> None:
    channel = R["ChatbotTeamsChannel"]
    assert channel["Type"] == "AWS::Chatbot::MicrosoftTeamsChannelConfiguration"
    assert channel["Condition"] == "HasChatbotTeams"
    props = channel["Properties"]
    assert props["SnsTopicArns"] == [{"Ref": "AlertsTopic"}]
    assert (props["TeamsTenantId"], props["TeamId"], props["TeamsChannelId"]) == tuple(
        {"Ref": n} for n in TEAMS
    )
    assert props["IamRoleArn"] == {"Fn::GetAtt": ["ChatbotChannelRole", "Arn"]}
    assert props["GuardrailPolicies"] == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSDenyAll"}]
    for name in TEAMS:
        assert T["Parameters"][name]["Default"] == ""
    on = Template(
        ROOT / "template.yaml", seed=7, parameters=dict(zip(TEAMS, (TENANT, TEAM, CHANNEL), strict=True))
    )
    assert on.conditions["HasChatbotTeams"] is True and on.conditions["HasChatbot"] is True
    assert "ChatbotTeamsChannel" in on.resources and "ChatbotChannelRole" in on.resources
    assert "ChatbotSlackChannel" not in on.resources
