"""Read a CloudFormation / SAM template the way CloudFormation would, for the twin.

- YAML with the short tags (``!Ref``, ``!GetAtt``, ``!Sub``, ``!If``, ``!Split``, ...) and JSON.
- Parameters (defaults, overrides checked against ``AllowedValues``/``AllowedPattern``), pseudo
  parameters, ``Conditions`` (a resource or output whose condition is false does not exist).
- Physical names generated like CloudFormation (``{stack}-{LogicalId}-{RANDOM}``, lower case for
  buckets) unless the template names the resource; ``Ref`` and ``Fn::GetAtt`` give what AWS gives
  (a queue's URL, a topic's ARN, a function's name, ...).
- ``Globals`` of the SAM transform merged into each function and API (maps merged, lists appended).
"""

from __future__ import annotations

import copy
import random
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from modelops_local.errors import TemplateError

ACCOUNT_ID = "123456789012"  # moto's default account


class _NoValue:
    """``AWS::NoValue``: the property (or list item) is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NOVALUE = _NoValue()


# ------------------------------------------------------------------ loading


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short tags; dates stay strings (as CloudFormation reads them)."""


_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if suffix in ("Ref", "Condition"):
        key = suffix
    else:
        key = f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
        return {key: value}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    return {key: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _short_tag)


def load_document(path: str | Path) -> dict[str, Any]:
    """Parse a template file; any problem is a one-line :class:`TemplateError`."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise TemplateError(f"template not found: {p}") from None
    except OSError as exc:
        raise TemplateError(f"cannot read template {p}: {exc.strerror or exc}") from None
    try:
        doc = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(f"template {p} is not valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise TemplateError(f"template {p} is not a mapping (got {type(doc).__name__})")
    resources = doc.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError(f"template {p} has no Resources")
    for logical, res in resources.items():
        if not isinstance(res, dict) or not isinstance(res.get("Type"), str):
            raise TemplateError(f"template {p}: resource {logical} has no Type")
        props = res.get("Properties", {})
        if props is not None and not isinstance(props, dict):
            raise TemplateError(f"template {p}: resource {logical} has Properties that are not a mapping")
    return doc


# ------------------------------------------------------------------ naming

# type -> (property naming the resource, max length, lower case)
_NAMING: dict[str, tuple[str | None, int, bool]] = {
    "AWS::S3::Bucket": ("BucketName", 63, True),
    "AWS::SNS::Topic": ("TopicName", 256, False),
    "AWS::SQS::Queue": ("QueueName", 80, False),
    "AWS::DynamoDB::Table": ("TableName", 255, False),
    "AWS::IAM::Role": ("RoleName", 64, False),
    "AWS::IAM::InstanceProfile": ("InstanceProfileName", 128, False),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", 128, False),
    "AWS::Logs::LogGroup": ("LogGroupName", 512, False),
    "AWS::KinesisFirehose::DeliveryStream": ("DeliveryStreamName", 64, False),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255, False),
    "AWS::Serverless::StateMachine": ("Name", 80, False),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", 80, False),
    "AWS::Serverless::Function": ("FunctionName", 64, False),
    "AWS::Lambda::Function": ("FunctionName", 64, False),
    "AWS::Serverless::LayerVersion": ("LayerName", 64, False),
    "AWS::Lambda::LayerVersion": ("LayerName", 64, False),
    "AWS::Events::Rule": ("Name", 64, False),
    "AWS::Events::EventBus": ("Name", 256, False),
    "AWS::Scheduler::Schedule": ("Name", 64, False),
    "AWS::Batch::JobQueue": ("JobQueueName", 128, False),
    "AWS::Batch::JobDefinition": ("JobDefinitionName", 128, False),
    "AWS::Batch::ComputeEnvironment": ("ComputeEnvironmentName", 128, False),
}

PSEUDO = (
    "AWS::AccountId",
    "AWS::Region",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::Partition",
    "AWS::URLSuffix",
    "AWS::NoValue",
    "AWS::NotificationARNs",
)

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
_API_TYPES = ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi")


def _merge_globals(glob: Any, own: Any) -> Any:
    """SAM's Globals rule: maps are merged, lists are added to, a function's own scalar wins."""
    if isinstance(glob, dict) and isinstance(own, dict):
        out = dict(glob)
        for k, v in own.items():
            out[k] = _merge_globals(glob[k], v) if k in glob else v
        return out
    if isinstance(glob, list) and isinstance(own, list):
        return list(glob) + list(own)
    return own


class Template:
    """A parsed template with its parameters, conditions and physical names resolved.

    Parameters
    ----------
    path:
        The template file (YAML or JSON).
    parameters:
        Overrides of the template's parameter defaults (``sam deploy --parameter-overrides``).
    endpoint:
        The AWS endpoint the resources live behind (queue URLs are built from it).
    seed:
        Seeds the random suffixes of generated names (tests); ``None`` uses fresh randomness.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        parameters: dict[str, str] | None = None,
        region: str = "us-east-1",
        stack_name: str = "modelops",
        account_id: str = ACCOUNT_ID,
        endpoint: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.path = Path(path).resolve()
        self.dir = self.path.parent
        self.doc = load_document(self.path)
        self.region = region
        self.stack_name = stack_name
        self.account_id = account_id
        self.endpoint = endpoint or f"https://sqs.{region}.amazonaws.com"
        self._rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self.all_resources: dict[str, dict[str, Any]] = self.doc["Resources"]
        self.globals: dict[str, Any] = self.doc.get("Globals") or {}
        #: resources the SAM transform adds that the template may name (a function's ``{Logical}Role``):
        #: referable (a bus policy naming the stages' roles), never created on the twin
        self.implicit: dict[str, dict[str, Any]] = self._sam_implicit()
        self._check_references()
        self.parameters = self._parameters(parameters or {})
        self.conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        for name in self.doc.get("Conditions") or {}:
            self.condition(name)
        self.resources: dict[str, dict[str, Any]] = {
            k: v for k, v in self.all_resources.items() if self._included(v.get("Condition"))
        }
        self._names: dict[str, str] = {}
        self._naming: set[str] = set()
        #: values learnt from the emulator after creation (actual queue URLs, API ids...)
        self.overrides: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ parameters, conditions

    def _parameters(self, overrides: dict[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.doc.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in overrides:
                value: Any = overrides[name]
                allowed = spec.get("AllowedValues")
                if allowed is not None and str(value) not in [str(a) for a in allowed]:
                    raise TemplateError(
                        f"parameter {name}={value!r} is not one of {', '.join(str(a) for a in allowed)}"
                    )
                pattern = spec.get("AllowedPattern")
                if pattern and not re.fullmatch(pattern, str(value)):
                    raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default: pass it as an override")
            ptype = str(spec.get("Type", "String"))
            if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
                value = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
            elif ptype == "Number" and isinstance(value, str):
                try:
                    value = int(value) if re.fullmatch(r"-?\d+", value) else float(value)
                except ValueError:
                    raise TemplateError(f"parameter {name}={value!r} is not a Number") from None
            values[name] = value
        return values

    def condition(self, name: str) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        declared = self.doc.get("Conditions") or {}
        if name not in declared:
            raise TemplateError(f"unknown condition {name}")
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself")
        self._evaluating.add(name)
        try:
            value = bool(self._cond(declared[name]))
        finally:
            self._evaluating.discard(name)
        self.conditions[name] = value
        return value

    def _included(self, cond: Any) -> bool:
        return True if cond is None else self.condition(str(cond))

    def _cond(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Condition":
                return self.condition(str(arg))
            if key == "Fn::Equals":
                a, b = (self._cond(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self._cond(arg[0])
            if key == "Fn::And":
                return all(self._cond(x) for x in arg)
            if key == "Fn::Or":
                return any(self._cond(x) for x in arg)
        return self.resolve(node)

    # ------------------------------------------------------------ names, Ref, GetAtt

    def _sam_implicit(self) -> dict[str, dict[str, Any]]:
        glob = self.globals.get("Function") if isinstance(self.globals.get("Function"), dict) else {}
        out: dict[str, dict[str, Any]] = {}
        for logical, res in self.all_resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            if "Role" in (res.get("Properties") or {}) or "Role" in (glob or {}):
                continue
            role = {"Type": "AWS::IAM::Role", "Properties": {}}
            if res.get("Condition") is not None:
                role["Condition"] = res["Condition"]
            out.setdefault(f"{logical}Role", role)
        return {k: v for k, v in out.items() if k not in self.all_resources}

    def _resource(self, logical: str) -> dict[str, Any]:
        return self.all_resources[logical] if logical in self.all_resources else self.implicit[logical]

    def rtype(self, logical: str) -> str:
        return str(self._resource(logical)["Type"])

    def props(self, logical: str) -> dict[str, Any]:
        """A resource's Properties as written, with the SAM Globals merged in (still unresolved)."""
        res = self.all_resources[logical]
        props = copy.deepcopy(res.get("Properties") or {})
        section = {"AWS::Serverless::Function": "Function", "AWS::Serverless::Api": "Api"}.get(res["Type"])
        if section and isinstance(self.globals.get(section), dict):
            props = _merge_globals(copy.deepcopy(self.globals[section]), props)
        return props

    def _suffix(self, n: int, lower: bool) -> str:
        alphabet = (string.ascii_lowercase if lower else string.ascii_uppercase) + string.digits
        return "".join(self._rng.choice(alphabet) for _ in range(n))

    def name(self, logical: str) -> str:
        """The physical name (as the template gives it, or generated like CloudFormation)."""
        if logical in self._names:
            return self._names[logical]
        if logical not in self.all_resources and logical not in self.implicit:
            raise TemplateError(f"unknown resource {logical}")
        if logical in self._naming:
            raise TemplateError(f"the name of {logical} depends on itself")
        self._naming.add(logical)
        try:
            rtype = self.rtype(logical)
            prop, maxlen, lower = _NAMING.get(rtype, (None, 128, False))
            raw = (self._resource(logical).get("Properties") or {}).get(prop) if prop else None
            if raw is not None:
                value = self.resolve(raw)
                name = str(value)
            elif rtype in _API_TYPES:
                name = self._suffix(10, lower=True)
            else:
                suffix = self._suffix(12, lower)
                base = f"{self.stack_name}-{logical}"
                if lower:
                    base = base.lower()
                fifo = self._is_fifo(logical)
                room = maxlen - len(suffix) - 1 - (5 if fifo else 0)
                name = f"{base[:room]}-{suffix}" + (".fifo" if fifo else "")
        finally:
            self._naming.discard(logical)
        self._names[logical] = name
        return name

    def _is_fifo(self, logical: str) -> bool:
        props = self._resource(logical).get("Properties") or {}
        flag = props.get("FifoQueue") if self.rtype(logical) == "AWS::SQS::Queue" else props.get("FifoTopic")
        return str(self.resolve(flag)).lower() == "true" if flag is not None else False

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        r = self.region if region else ""
        a = self.account_id if account else ""
        return f"arn:aws:{service}:{r}:{a}:{resource}"

    def ref(self, logical: str) -> Any:
        """What ``!Ref Logical`` gives for a resource."""
        if "Ref" in self.overrides.get(logical, {}):
            return self.overrides[logical]["Ref"]
        rtype = self.rtype(logical)
        if rtype == "AWS::SNS::Topic":
            return self.arn("sns", self.name(logical))
        if rtype == "AWS::SQS::Queue":
            return f"{self.endpoint.rstrip('/')}/{self.account_id}/{self.name(logical)}"
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return self.arn("lambda", f"layer:{self.name(logical)}:1")
        if rtype == "AWS::SNS::Subscription":
            return self.arn("sns", f"{logical}:{self._suffix(8, True)}")
        if rtype in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return self.arn("states", f"stateMachine:{self.name(logical)}")  # Ref gives the ARN
        if rtype.startswith("AWS::Batch::"):
            kind = {"JobQueue": "job-queue", "JobDefinition": "job-definition"}.get(
                rtype.rsplit("::", 1)[1], "compute-environment"
            )
            tail = ":1" if kind == "job-definition" else ""
            return self.arn("batch", f"{kind}/{self.name(logical)}{tail}")
        return self.name(logical)

    def getatt(self, logical: str, attr: str) -> Any:
        over = self.overrides.get(logical, {})
        if attr in over:
            return over[attr]
        rtype = self.rtype(logical)
        name = self.name(logical)
        table: dict[str, Callable[[], Any]] = {}
        if rtype == "AWS::S3::Bucket":
            table = {
                "Arn": lambda: f"arn:aws:s3:::{name}",
                "DomainName": lambda: f"{name}.s3.amazonaws.com",
                "RegionalDomainName": lambda: f"{name}.s3.{self.region}.amazonaws.com",
                "DualStackDomainName": lambda: f"{name}.s3.dualstack.{self.region}.amazonaws.com",
                "WebsiteURL": lambda: f"http://{name}.s3-website-{self.region}.amazonaws.com",
            }
        elif rtype == "AWS::SNS::Topic":
            table = {"TopicArn": lambda: self.ref(logical), "TopicName": lambda: name}
        elif rtype == "AWS::SQS::Queue":
            table = {
                "Arn": lambda: self.arn("sqs", name),
                "QueueName": lambda: name,
                "QueueUrl": lambda: self.ref(logical),
            }
        elif rtype == "AWS::DynamoDB::Table":
            table = {
                "Arn": lambda: self.arn("dynamodb", f"table/{name}"),
                "StreamArn": lambda: self.arn("dynamodb", f"table/{name}/stream/1970-01-01T00:00:00.000"),
            }
        elif rtype == "AWS::IAM::Role":
            table = {
                "Arn": lambda: self.arn("iam", f"role/{name}", region=False),
                "RoleId": lambda: "AROA" + self._suffix(17, False),
            }
        elif rtype == "AWS::IAM::InstanceProfile":
            table = {"Arn": lambda: self.arn("iam", f"instance-profile/{name}", region=False)}
        elif rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            table = {"Arn": lambda: self.arn("lambda", f"function:{name}")}
        elif rtype == "AWS::Logs::LogGroup":
            table = {"Arn": lambda: self.arn("logs", f"log-group:{name}:*")}
        elif rtype == "AWS::KinesisFirehose::DeliveryStream":
            table = {"Arn": lambda: self.arn("firehose", f"deliverystream/{name}")}
        elif rtype == "AWS::CloudWatch::Alarm":
            table = {"Arn": lambda: self.arn("cloudwatch", f"alarm:{name}")}
        elif rtype == "AWS::Events::Rule":
            # a rule on a custom bus is rule/{bus}/{rule} (EventBusName may be the bus's name or ARN)
            bus = self.resolve((self.all_resources[logical].get("Properties") or {}).get("EventBusName"))
            bus = str(bus).rsplit("event-bus/", 1)[-1] if bus else "default"
            path = name if bus == "default" else f"{bus}/{name}"
            table = {"Arn": lambda: self.arn("events", f"rule/{path}")}
        elif rtype == "AWS::Events::EventBus":
            table = {"Arn": lambda: self.arn("events", f"event-bus/{name}"), "Name": lambda: name}
        elif rtype == "AWS::Scheduler::Schedule":
            table = {"Arn": lambda: self.arn("scheduler", f"schedule/default/{name}")}
        elif rtype in _API_TYPES:
            table = {"RootResourceId": lambda: self._suffix(10, True)}
        if attr not in table:
            if attr == "Arn":
                return self.arn(rtype.split("::")[1].lower(), name)
            raise TemplateError(
                f"Fn::GetAtt {logical}.{attr}: the twin does not know this attribute of {rtype}"
            )
        value = table[attr]()
        self.overrides.setdefault(logical, {})[attr] = value
        return value

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.arn(
                "cloudformation", f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NOVALUE,
            "AWS::NotificationARNs": [],
        }[name]

    # ------------------------------------------------------------ intrinsics

    def _ref_name(self, name: str) -> Any:
        if name in PSEUDO:
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.all_resources:
            if name not in self.resources:
                raise TemplateError(f"Ref {name}: that resource's condition is false")
            return self.ref(name)
        if name in self.implicit and self._included(self.implicit[name].get("Condition")):
            return self.ref(name)
        base, _, tail = name.partition(".")
        if tail in ("Alias", "Version") and base in self.resources:
            alias = self.resolve((self.props(base)).get("AutoPublishAlias")) or "live"
            return f"{self.getatt(base, 'Arn')}:{alias if tail == 'Alias' else '1'}"
        raise TemplateError(f"Ref to unknown name {name}")

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return str(variables[inner])
            if "." in inner and (
                inner.split(".", 1)[0] in self.all_resources or inner.split(".", 1)[0] in self.implicit
            ):
                logical, attr = inner.split(".", 1)
                return str(self.getatt(logical, attr))
            return str(self._ref_name(inner))

        return _SUB_VAR.sub(repl, text)

    def resolve(self, node: Any) -> Any:
        """Resolve every intrinsic function in ``node`` (a property value, an output...)."""
        if isinstance(node, list):
            out = [self.resolve(x) for x in node]
            return [x for x in out if x is not NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self._ref_name(str(arg))
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                logical, attr = str(parts[0]), str(self.resolve(parts[1]))
                if logical not in self.resources and not (
                    logical in self.implicit and self._included(self.implicit[logical].get("Condition"))
                ):
                    raise TemplateError(f"Fn::GetAtt of unknown (or excluded) resource {logical}")
                return self.getatt(logical, attr)
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
                else:
                    text, variables = arg, {}
                return self._sub(str(self.resolve(text)), variables)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(str(cond)) else no)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return self._cond(node)
            if key == "Fn::Join":
                delim, items = arg
                return str(delim).join(str(x) for x in self.resolve(items))
            if key == "Fn::Split":
                delim, text = arg
                return str(self.resolve(text)).split(str(delim))
            if key == "Fn::Select":
                index, items = arg
                items = self.resolve(items)
                return items[int(self.resolve(index))]
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(x) for x in arg[:3])
                try:
                    return self.doc["Mappings"][mapping][first][second]
                except (KeyError, TypeError):
                    raise TemplateError(f"Fn::FindInMap {mapping}/{first}/{second}: no such entry") from None
            if key == "Fn::GetAZs":
                return [f"{self.region}{z}" for z in "abc"]
            if key == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::Length":
                return len(self.resolve(arg))
            if key == "Fn::ToJsonString":
                import json

                return json.dumps(self.resolve(arg), separators=(",", ":"))
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local twin")
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NOVALUE}

    # ------------------------------------------------------------ checks, outputs

    def _check_references(self) -> None:
        """Every Ref/GetAtt/Sub/Condition names something that exists (as CloudFormation checks)."""
        params = set((self.doc.get("Parameters") or {}).keys())
        conds = set((self.doc.get("Conditions") or {}).keys())
        res = set(self.all_resources) | set(self.implicit)
        known = params | res | set(PSEUDO)
        functions = {k for k in res if self.rtype(k) == "AWS::Serverless::Function"}

        def ok_ref(name: str) -> bool:
            base, _, tail = name.partition(".")
            return name in known or (tail in ("Alias", "Version") and base in functions)

        def walk(node: Any, where: str, variables: frozenset[str] = frozenset()) -> None:
            if isinstance(node, list):
                for x in node:
                    walk(x, where, variables)
                return
            if not isinstance(node, dict):
                return
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref" and isinstance(arg, str) and not ok_ref(arg):
                    raise TemplateError(f"{where}: Ref to unknown name {arg}")
                if key == "Fn::GetAtt":
                    parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                    if not parts or parts[0] not in res:
                        raise TemplateError(
                            f"{where}: Fn::GetAtt of unknown resource {parts[0] if parts else arg}"
                        )
                if key == "Condition" and isinstance(arg, str) and arg not in conds:
                    raise TemplateError(f"{where}: unknown condition {arg}")
                if key == "Fn::If" and (not isinstance(arg, list) or len(arg) != 3 or arg[0] not in conds):
                    raise TemplateError(
                        f"{where}: Fn::If needs [condition, value, value] with a known condition"
                    )
                if key == "Fn::Sub":
                    text = arg[0] if isinstance(arg, list) else arg
                    local = set((arg[1] or {}).keys()) if isinstance(arg, list) and len(arg) > 1 else set()
                    if isinstance(text, str):
                        for inner in _SUB_VAR.findall(text):
                            if inner.startswith("!") or inner in local:
                                continue
                            base = inner.split(".", 1)[0]
                            if not (ok_ref(inner) or base in res):
                                raise TemplateError(f"{where}: Fn::Sub refers to unknown name {inner}")
            for v in node.values():
                walk(v, where, variables)

        for logical, r in self.all_resources.items():
            cond = r.get("Condition")
            if cond is not None and cond not in conds:
                raise TemplateError(f"resource {logical}: unknown condition {cond}")
            depends = r.get("DependsOn") or []
            for dep in [depends] if isinstance(depends, str) else depends:
                if dep not in res:
                    raise TemplateError(f"resource {logical}: DependsOn unknown resource {dep}")
            walk(r.get("Properties"), f"resource {logical}")
        for name, out in (self.doc.get("Outputs") or {}).items():
            walk(out, f"output {name}")
        walk(self.globals, "Globals")
        walk(self.doc.get("Conditions"), "Conditions")

    def outputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in (self.doc.get("Outputs") or {}).items():
            if not isinstance(spec, dict) or not self._included(spec.get("Condition")):
                continue
            value = self.resolve(spec.get("Value"))
            out[name] = ",".join(map(str, value)) if isinstance(value, list) else value
        return out

    def of_type(self, *types: str) -> list[str]:
        return [k for k, v in self.resources.items() if v["Type"] in types]
