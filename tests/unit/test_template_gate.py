"""The parsed template against issue 17 finding 4 (convert executes SavedModels that any training job can
overwrite): convert, which runs a training job's program, cannot move an alias; the promotion gate is its
own function, without TensorFlow, and the only stage role that moves the production alias on a new
version. On the template as it was (convert moving aliases itself, no GateFunction) these tests fail."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from tests.cfn import load

ROOT = Path(__file__).resolve().parents[2]
T = load(ROOT / "template.yaml")
R: dict[str, Any] = T["Resources"]
REG = "arn:${AWS::Partition}:s3:::${RegistryBucket}"


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def sub_text(v: Any) -> str:
    if isinstance(v, dict) and "Fn::Sub" in v:
        arg = v["Fn::Sub"]
        return str(arg[0] if isinstance(arg, list) else arg)
    return str(v)


def statements(function: str) -> list[dict[str, Any]]:
    out = []
    for doc in R[function]["Properties"].get("Policies", []):
        for st in doc["Statement"]:
            if isinstance(st, dict) and "Fn::If" in st:
                st = st["Fn::If"][1]
            if isinstance(st, dict) and "Effect" in st:
                out.append(st)
    return out


def allowed(function: str, action: str, key: str) -> bool:
    """Whether ``function``'s role may do ``action`` on the registry bucket's ``key`` (IAM wildcards;
    an explicit Deny wins)."""
    arn = f"{REG}/{key}"

    def hits(st: dict[str, Any]) -> bool:
        return action in as_list(st["Action"]) and any(
            fnmatch.fnmatchcase(arn, sub_text(r)) for r in as_list(st["Resource"])
        )

    sts = statements(function)
    if any(st["Effect"] == "Deny" and hits(st) for st in sts):
        return False
    return any(st["Effect"] == "Allow" and hits(st) for st in sts)


def writable_prefixes(function: str) -> set[str]:
    return {
        sub_text(r)
        for st in statements(function)
        if st["Effect"] == "Allow" and "s3:PutObject" in as_list(st["Action"])
        for r in as_list(st["Resource"])
    }


ALIAS = "models/demo/aliases/production.json"
HISTORY = "models/demo/history/production/20250101T000000000000Z-abc.json"


def test_convert_cannot_move_an_alias_or_write_its_history() -> None:
    for key in (ALIAS, HISTORY):
        assert not allowed("ConvertFunction", "s3:PutObject", key), key
        assert not allowed("ConvertFunction", "s3:DeleteObject", key), key
    # an explicit Deny too, so a broader Allow added later cannot give it back
    denies = [st for st in statements("ConvertFunction") if st["Effect"] == "Deny"]
    assert any(
        fnmatch.fnmatchcase(f"{REG}/{ALIAS}", sub_text(r)) for st in denies for r in as_list(st["Resource"])
    )


def test_convert_still_creates_versions_and_links_job_artifacts() -> None:
    for key in (
        "models/demo/blobs/sha256/" + "ab" * 32,
        "models/demo/versions/3/manifest.json",
        "models/demo/dedup/" + "cd" * 32 + ".json",
        "jobs/modelops-demo-0123456789ab.artifact.json",
    ):
        assert allowed("ConvertFunction", "s3:PutObject", key), key
    # but not the job records train_trigger writes, nor what training jobs stage
    assert not allowed("ConvertFunction", "s3:PutObject", "jobs/modelops-demo-0123456789ab.json")
    assert not allowed("ConvertFunction", "s3:PutObject", "staging/demo/job/output/model.tar.gz")


def test_the_gate_is_a_zip_on_the_shared_and_litert_layers_without_tensorflow() -> None:
    props = R["GateFunction"]["Properties"]
    assert props.get("PackageType", "Zip") == "Zip" and props["CodeUri"] == "functions/gate/"
    assert props["Handler"] == "app.lambda_handler" and props["Runtime"] == "python3.12"
    # LiteRT to score both versions' .tflite (issue 14), like predict; never the convert image
    assert props["Layers"] == [{"Ref": "SharedLayer"}, {"Ref": "LiteRTLayer"}]
    assert "tensorflow" not in str(R["LiteRTLayer"]).lower()


def test_the_stack_policy_reaches_the_gate_as_parameters() -> None:
    """Issue 14: the stack's floors are template parameters (an uploaded spec tightens, never loosens them)."""
    params = T["Parameters"]
    env = R["GateFunction"]["Properties"]["Environment"]["Variables"]
    for name, var, default in (
        ("GateMinImprovement", "GATE_MIN_IMPROVEMENT", 0),
        ("GateMinEvalRows", "GATE_MIN_EVAL_ROWS", 30),
        ("GateMaxCanaryWeight", "GATE_MAX_CANARY_WEIGHT", 0.5),
    ):
        assert params[name]["Type"] == "Number" and float(params[name]["Default"]) == default
        assert env[var] == {"Ref": name}
    assert params["GateMaxCanaryWeight"]["MaxValue"] < 1
    assert int(env["GATE_MAX_EVAL_ROWS"]) == 20_000


def test_the_gate_moves_aliases_and_writes_nothing_else() -> None:
    assert writable_prefixes("GateFunction") == {f"{REG}/models/*/aliases/*", f"{REG}/models/*/history/*"}
    for key in (ALIAS, HISTORY):
        assert allowed("GateFunction", "s3:PutObject", key)
    # it reads manifests, the artifacts it scores and the evaluation rows (issue 14), never a job's staging
    for key in (
        "models/demo/versions/3/manifest.json",
        "models/demo/blobs/sha256/" + "ab" * 32,
        "evaluation/demo/heldout/" + "cd" * 32 + ".csv",
        "evaluation/demo/pinned/" + "ef" * 32 + ".csv",
        "evaluation/demo/pinned.json",
    ):
        assert allowed("GateFunction", "s3:GetObject", key), key
    for key in ("staging/demo/job/output/model.tar.gz", "inputs/demo/job/train.csv", "jobs/x.json"):
        assert not allowed("GateFunction", "s3:GetObject", key), key
    for key in ("evaluation/demo/pinned.json", "models/demo/blobs/sha256/" + "ab" * 32):
        assert not allowed("GateFunction", "s3:PutObject", key), key
    actions = {a for st in statements("GateFunction") for a in as_list(st["Action"])}
    assert actions <= {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "events:PutEvents",
    }


def published_types(function: str) -> set[str]:
    found: set[str] = set()
    for st in statements(function):
        if "events:PutEvents" in as_list(st["Action"]):
            found |= set(
                as_list(st.get("Condition", {}).get("StringEquals", {}).get("events:detail-type", []))
            )
    return found


def test_only_the_gate_publishes_the_gates_decisions() -> None:
    # and ArtifactIntegrityFailed when an artifact fails its checksum during the comparison (issue 14)
    assert published_types("GateFunction") == {
        "ModelPromoted",
        "PromotionRejected",
        "ArtifactIntegrityFailed",
    }
    convert = published_types("ConvertFunction")
    assert {"ModelVersionPublished", "ArtifactIntegrityFailed"} <= convert
    assert not convert & {"ModelPromoted", "PromotionRejected"}


def test_the_gate_runs_on_model_version_published_with_a_dlq_and_alarms() -> None:
    [rule] = [e["Properties"] for e in R["GateFunction"]["Properties"]["Events"].values()]
    assert rule["Pattern"] == {"source": ["modelops"], "detail-type": ["ModelVersionPublished"]}
    bus = rule.get("EventBusName")
    # the stage bus where the stack has one (convert publishes there), else the default bus
    assert bus == ({"Ref": "StageEventBus"} if "StageEventBus" in R else None)
    assert rule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["GateDLQ", "Arn"]}}
    props = R["GateFunction"]["Properties"]
    assert props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["GateDLQ", "Arn"]
    }
    # the DLQ accepts dead letters from that rule only
    [st] = R["GateDeadLetterPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    arn = sub_text(st["Condition"]["ArnEquals"]["aws:SourceArn"])
    prefix = "rule/${StageEventBus}/" if bus else "rule/"
    assert arn.endswith(prefix + sub_text(rule["RuleName"]))
    # its errors and its DLQ's depth are watched like the other stages'
    alarm_text = str(R["FunctionErrorsAlarm"]["Properties"]["Metrics"])
    assert "'Ref': 'GateFunction'" in alarm_text
    assert "GateDLQ" in str(R["DLQDepthAlarm"]["Properties"]["Metrics"])
