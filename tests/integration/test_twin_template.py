"""The twin reads templates as CloudFormation would (no AWS, no moto needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops_local.cfn import Template
from modelops_local.errors import TemplateError
from modelops_local.lambdas import module_for

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests/fixtures/twin/template.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_real_template_resolves_names_env_and_conditions() -> None:
    t = Template(ROOT / "template.yaml", seed=7)

    # Conditions come from the parameter defaults: no Batch resources, IAM auth.
    assert t.conditions["UseBatch"] is False
    assert "BatchComputeEnvironment" not in t.resources and "BatchComputeEnvironment" in t.all_resources
    # Buckets get CloudFormation-style lower-case names; functions keep their logical id's case.
    data = t.name("DataBucket")
    assert data.startswith("modelops-databucket-") and data == data.lower() and len(data) <= 63
    env = t.resolve(t.props("TrainTriggerFunction"))["Environment"]["Variables"]
    # Globals merged with the function's own variables; !If on a false condition gives "".
    assert env["DATA_BUCKET"] == data
    assert env["POWERTOOLS_SERVICE_NAME"] == "train_trigger"
    assert env["BATCH_JOB_QUEUE"] == ""
    assert env["TRAINING_ROLE_ARN"] == f"arn:aws:iam::123456789012:role/{t.name('TrainingJobRole')}"
    log_group = t.resolve(t.props("TrainTriggerLogs"))["LogGroupName"]
    assert log_group == f"/aws/lambda/{t.name('TrainTriggerFunction')}"


def test_parameter_overrides_flip_conditions_and_are_checked(tmp_path: Path) -> None:
    t = Template(ROOT / "template.yaml", parameters={"ApiAuth": "API_KEY"})
    assert t.conditions["UseApiKey"] is True and t.conditions["UseIamAuth"] is False
    auth = t.resolve(t.props("PredictApi"))["Auth"]
    assert auth["ApiKeyRequired"] is True
    assert "DefaultAuthorizer" not in auth  # AWS::NoValue removes the key

    with pytest.raises(TemplateError, match="ApiAuth='OAUTH' is not one of"):
        Template(ROOT / "template.yaml", parameters={"ApiAuth": "OAUTH"})
    with pytest.raises(TemplateError, match="unknown template parameter"):
        Template(ROOT / "template.yaml", parameters={"NoSuchParameter": "x"})


def test_intrinsics(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
Parameters:
  Names: {Type: CommaDelimitedList, Default: "a,b,c"}
  Env: {Type: String, Default: prod}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Or [!Condition NotProd, !Equals [1, 1]]]
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties: {QueueName: my-queue}
  T:
    Type: AWS::SNS::Topic
Outputs:
  Sub: {Value: !Sub "${AWS::StackName}:${Q.QueueName}:${!Literal}:${T}"}
  SubVars: {Value: !Sub ["${x}-${AWS::Region}", {x: !Select [1, !Ref Names]}]}
  Join: {Value: !Join ["/", !Split [",", "p,q"]]}
  If: {Value: !If [Both, yes-both, no]}
  Arn: {Value: !GetAtt Q.Arn}
  Url: {Value: !Ref Q}
  Gone: {Condition: NotProd, Value: never}
""",
    )
    t = Template(path, stack_name="st", endpoint="http://127.0.0.1:9")
    out = t.outputs()
    assert out["Sub"] == f"st:my-queue:${{Literal}}:arn:aws:sns:us-east-1:123456789012:{t.name('T')}"
    assert out["SubVars"] == "b-us-east-1"
    assert out["Join"] == "p/q"
    assert out["If"] == "yes-both"
    assert out["Arn"] == "arn:aws:sqs:us-east-1:123456789012:my-queue"
    assert out["Url"] == "http://127.0.0.1:9/123456789012/my-queue"
    assert "Gone" not in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Resources: [1, 2", "not valid YAML"),
        ("- just\n- a list\n", "is not a mapping"),
        ("Description: nothing\n", "has no Resources"),
        ("Resources:\n  A: {Properties: {}}\n", "resource A has no Type"),
        (
            "Resources:\n  A: {Type: AWS::SNS::Topic, Properties: {DisplayName: !Ref Nope}}\n",
            "Ref to unknown name Nope",
        ),
        (
            "Resources:\n  A: {Type: AWS::SNS::Topic, Properties: {DisplayName: !GetAtt Nope.Arn}}\n",
            "GetAtt of unknown resource Nope",
        ),
        (
            "Resources:\n  A: {Type: AWS::SNS::Topic, Properties: {DisplayName: !Sub '${Nope}'}}\n",
            "Sub refers to unknown name Nope",
        ),
        ("Resources:\n  A: {Type: AWS::SNS::Topic, Condition: Nope}\n", "unknown condition Nope"),
        (
            "Parameters: {P: {Type: String}}\nResources:\n  A: {Type: AWS::SNS::Topic}\n",
            "parameter P has no Default",
        ),
    ],
)
def test_invalid_templates_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as exc:
        Template(write(tmp_path, text))
    assert "\n" not in str(exc.value)


def test_missing_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="template not found"):
        Template(tmp_path / "nope.yaml")


def test_handler_modules_are_named_like_the_tests_import_them(tmp_path: Path) -> None:
    assert module_for(ROOT / "functions/train_trigger", "app.lambda_handler", [ROOT]) == (
        "functions.train_trigger.app",
        "lambda_handler",
        None,
    )
    # The deepest root wins: the fixture's handlers are named from the repository root.
    assert module_for(FAKE.parent / "handlers", "app.record", [ROOT, FAKE.parent])[0] == "handlers.app"
    assert module_for(FAKE.parent / "handlers", "app.record", [ROOT])[0] == "tests.fixtures.twin.handlers.app"
    # A folder that cannot be a dotted name is loaded from its file.
    odd = tmp_path / "my-function"
    name, attr, file = module_for(odd, "main.handler", [tmp_path])
    assert attr == "handler" and file == odd / "main.py" and name.endswith(".main")
    with pytest.raises(ValueError, match="module.function"):
        module_for(odd, "handler", [tmp_path])
