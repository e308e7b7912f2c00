"""The parsed template against issue 17 finding 3: stage events could be forged.

On the default bus any principal of the account with ``events:PutEvents`` (predict's internet-facing
role among them, unconditioned) could send ``source: modelops`` events, and the alert function acted on
them (a forged ``DriftDetected`` clears a canary). The fix these tests hold: the stages' events travel
on the stack's own ``StageEventBus``, whose policy denies ``PutEvents`` to every principal but the
stack's function roles; each role may put only ``source: modelops`` and the detail-types its stage's
code publishes; the rules that consume stage events are on that bus, the AWS service rules stay on the
default bus; every stage is told the bus (``EVENT_BUS_NAME``) and reads it. The template as it was
before the fix fails every test here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

from modelops.domain.events import DETAIL_TYPES, SOURCE
from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
STAGES = ROOT / "layers/shared/modelops/stages"
T = load(ROOT / "template.yaml")
R: dict[str, Any] = T["Resources"]
FUNCTIONS = {k: v for k, v in R.items() if v["Type"] == "AWS::Serverless::Function"}
BUS = {"Ref": "StageEventBus"}
BUS_ARN = {"Fn::GetAtt": ["StageEventBus", "Arn"]}
_PUBLISH = re.compile(r"\.publish\(\s*\"(\w+)\"")


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def stage_of(function: str) -> str:
    """The stage a function runs (its ``POWERTOOLS_SERVICE_NAME`` is the stage's name)."""
    env = FUNCTIONS[function]["Properties"]["Environment"]["Variables"]
    return str(env["POWERTOOLS_SERVICE_NAME"])


def published_by(stage: str) -> set[str]:
    """The detail-types the stage's code publishes: every ``.publish("X", ...)`` in its module or package."""
    files = (
        [STAGES / f"{stage}.py"]
        if (STAGES / f"{stage}.py").is_file()
        else sorted((STAGES / stage).rglob("*.py"))
    )
    assert files, stage
    return {m for f in files for m in _PUBLISH.findall(f.read_text())}


def put_events_statements(function: str) -> list[dict[str, Any]]:
    docs = [p for p in FUNCTIONS[function]["Properties"].get("Policies", []) if isinstance(p, dict)]
    return [
        st
        for doc in docs
        for st in doc["Statement"]
        if isinstance(st, dict)
        and any(a in ("events:PutEvents", "events:*") for a in as_list(st.get("Action")))
    ]


def role_of(function: str) -> str:
    """The logical id of a function's execution role: the one it names, else the one SAM makes."""
    role = FUNCTIONS[function]["Properties"].get("Role")
    return str(role["Fn::GetAtt"][0]) if isinstance(role, dict) else f"{function}Role"


def bus_policies() -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in R.values()
        if r["Type"] == "AWS::Events::EventBusPolicy" and r["Properties"].get("EventBusName") == BUS
    ]


# ---------------------------------------------------------------------------------------------- the bus


def test_stage_events_have_a_bus_of_the_stacks_own() -> None:
    assert R["StageEventBus"]["Type"] == "AWS::Events::EventBus"


def test_the_bus_policy_denies_put_events_to_every_principal_but_the_stacks_function_roles() -> None:
    """Same-account principals need no bus policy to publish: only an explicit Deny keeps an admin's
    ``events:*`` (or another account, or a service) off the bus. The policy grants nothing itself: a
    same-account Allow naming a role would bypass that role's own detail-type limits."""
    policies = bus_policies()
    assert policies, "no AWS::Events::EventBusPolicy on StageEventBus"
    statements = [p["Statement"] for p in policies]
    assert all(st["Effect"] == "Deny" for st in statements), "the bus policy must grant nothing"
    [deny] = [st for st in statements if "events:PutEvents" in as_list(st["Action"])]
    assert deny["Principal"] == "*"
    assert deny["Resource"] == BUS_ARN
    allowed = {a["Fn::GetAtt"][0] for a in as_list(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])}
    assert allowed == {role_of(fn) for fn in FUNCTIONS}  # each function's execution role
    assert set(deny["Condition"]) == {"ArnNotEquals"}


# ---------------------------------------------------------------------------------------------- the roles


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_role_puts_only_its_stages_detail_types_with_source_modelops_on_the_stage_bus(
    function: str,
) -> None:
    types = published_by(stage_of(function))
    assert types <= DETAIL_TYPES, f"{function} publishes undeclared detail-types {types - DETAIL_TYPES}"
    statements = put_events_statements(function)
    if not types:
        assert statements == [], f"{function} publishes nothing, so may put nothing"
        return
    [st] = statements
    assert st["Effect"] == "Allow" and as_list(st["Action"]) == ["events:PutEvents"]
    assert st["Resource"] == BUS_ARN, f"{function} may put events on {st['Resource']}"
    cond = st["Condition"]
    assert set(cond) == {"StringEquals"}
    assert cond["StringEquals"]["events:source"] == SOURCE
    assert set(as_list(cond["StringEquals"]["events:detail-type"])) == types, function


def test_predict_the_internet_facing_role_may_only_report_artifact_integrity_failures() -> None:
    [st] = put_events_statements("PredictFunction")
    assert as_list(st["Condition"]["StringEquals"]["events:detail-type"]) == ["ArtifactIntegrityFailed"]
    assert st["Resource"] == BUS_ARN


def test_no_role_of_the_stack_may_put_events_on_the_default_bus_or_any_bus() -> None:
    for name, res in R.items():
        docs: list[Any] = []
        if res["Type"] == "AWS::Serverless::Function":
            docs = [p for p in res["Properties"].get("Policies", []) if isinstance(p, dict)]
        elif res["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = res["Properties"]
            docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
            docs += [props["PolicyDocument"]] if "PolicyDocument" in props else []
        for doc in docs:
            for st in doc["Statement"]:
                if not isinstance(st, dict) or st.get("Effect") != "Allow":
                    continue
                if any(a in ("events:PutEvents", "events:*", "*") for a in as_list(st.get("Action"))):
                    assert as_list(st["Resource"]) == [BUS_ARN], f"{name}: {st['Resource']}"


# ---------------------------------------------------------------------------------------------- the rules


def rules() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{fn}.{name}", ev["Properties"])
        for fn, res in FUNCTIONS.items()
        for name, ev in res["Properties"].get("Events", {}).items()
        if ev["Type"] in ("EventBridgeRule", "CloudWatchEvent")
    ] + [(name, r["Properties"]) for name, r in R.items() if r["Type"] == "AWS::Events::Rule"]


def test_rules_for_stage_events_are_on_the_stage_bus_and_aws_events_stay_on_the_default_bus() -> None:
    stage_rules = 0
    for name, p in rules():
        pattern = p.get("Pattern") or p.get("EventPattern") or {}
        sources = as_list(pattern.get("source", []))
        if SOURCE in sources:
            stage_rules += 1
            assert sources == [SOURCE], name
            assert p.get("EventBusName") == BUS, f"{name} listens for stage events off the stage bus"
            assert set(as_list(pattern["detail-type"])) <= DETAIL_TYPES, name
        else:
            assert sources and all(s.startswith("aws.") for s in sources), name
            assert p.get("EventBusName") in (None, "default"), (
                f"{name}: AWS puts its events on the default bus"
            )
    assert stage_rules >= 1  # the alert function's


def test_the_alert_rules_dead_letter_policy_names_the_rule_on_the_stage_bus() -> None:
    """A rule on a custom bus has the ARN ``rule/{bus}/{rule}``: the DLQ policy must say so, or the
    rule's dead letters are refused."""
    [alert_rule] = [p for name, p in rules() if name.startswith("AlertFunction.")]
    [st] = [
        s
        for s in R["RuleDeadLetterPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if s["Resource"] == {"Fn::GetAtt": ["AlertDLQ", "Arn"]}
    ]
    arn = st["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert arn.endswith(":rule/${StageEventBus}/" + alert_rule["RuleName"]["Fn::Sub"])


# ---------------------------------------------------------------------------------------------- the stages


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_stage_is_told_the_stage_bus_and_reads_it(function: str) -> None:
    stage = stage_of(function)
    env = FUNCTIONS[function]["Properties"]["Environment"]["Variables"]
    assert env.get("EVENT_BUS_NAME") == BUS, f"{function} would publish on the default bus"
    package = importlib.import_module(f"modelops.stages.{stage}")
    for sub in pkgutil.iter_modules(getattr(package, "__path__", [])):
        importlib.import_module(f"{package.__name__}.{sub.name}")
    from modelops.stages.runtime import StageSettings

    def every_subclass(cls: type) -> list[type]:
        return [d for c in cls.__subclasses__() for d in (c, *every_subclass(c))]

    name = package.__name__
    [settings] = {
        c
        for c in every_subclass(StageSettings)
        if c.__module__ == name or c.__module__.startswith(name + ".")
    }
    assert "event_bus_name" in settings.model_fields, f"{settings.__module__}.Settings ignores EVENT_BUS_NAME"
