"""Create in moto what the template declares, and wire each function's event sources to queues.

Everything AWS-side is moto's: buckets, topics, queues, tables, streams, roles, log groups, alarms,
the REST API and its key. The twin adds, per function event, an SQS queue it owns
(``{stack}-twin-{Function}-{Event}``) as the target of the S3 notification, the SNS subscription or
the EventBridge rule, so that moto itself does the filtering (prefix/suffix rules, filter policies,
event patterns) and the twin only polls. Schedules and API routes are recorded for the twin.
Resources moto or the twin cannot emulate (policies, Batch, dashboards, ...) are listed in
``skipped`` with the reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops_local.api import Route
from modelops_local.cfn import Template
from modelops_local.errors import TemplateError
from modelops_local.lambdas import FunctionSpec, module_for

log = logging.getLogger("modelops.twin")

_FUNCTION_TYPES = ("AWS::Serverless::Function",)
_NOT_EMULATED = {
    "AWS::S3::BucketPolicy": "policies are not enforced locally",
    "AWS::SQS::QueuePolicy": "policies are not enforced locally",
    "AWS::SNS::TopicPolicy": "policies are not enforced locally",
    "AWS::Events::EventBusPolicy": "policies are not enforced locally",
    "AWS::IAM::Policy": "policies are not enforced locally",
    "AWS::IAM::ManagedPolicy": "policies are not enforced locally",
    "AWS::Lambda::Permission": "permissions are not enforced locally",
    "AWS::CloudWatch::Dashboard": "dashboards are console-only",
    "AWS::Serverless::LayerVersion": "layers are on sys.path in-process",
    "AWS::Lambda::LayerVersion": "layers are on sys.path in-process",
}


@dataclass
class Source:
    """A queue the twin polls, and what its messages mean."""

    kind: str  # s3 | sns | eventbridge | sqs
    function: str
    event: str
    queue_url: str
    queue_arn: str
    owned: bool = True  # a twin queue (deleted messages = accepted events) or a template queue (ESM)
    subscription_arn: str = ""
    target: dict[str, Any] = field(default_factory=dict)  # Input / InputPath of a rule target
    batch_size: int = 10
    report_failures: bool = False


@dataclass
class Schedule:
    function: str
    event: str
    expression: str
    arn: str
    scheduler: bool
    enabled: bool = True
    input: Any = None


@dataclass
class Provisioned:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_keys: dict[str, str] = field(default_factory=dict)  # key id -> value
    queues: dict[str, str] = field(default_factory=dict)  # template queue logical id -> URL
    layer_dirs: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unsupported_events: list[str] = field(default_factory=list)


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


def _attr_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class Provisioner:
    def __init__(self, template: Template, clients: Any, *, code_roots: list[Path]) -> None:
        self.t = template
        self.c = clients  # callable: service -> boto3 client
        self.code_roots = code_roots
        self.out = Provisioned()
        self._notifications: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._fn_by_arn: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers

    def _best_effort(self, what: str, call: Any, **kwargs: Any) -> Any:
        try:
            return call(**kwargs)
        except Exception as exc:  # noqa: BLE001 - moto lacks some settings; the resource still exists
            log.debug("twin: %s not applied: %s", what, exc)
            return None

    def _twin_queue(self, function: str, event: str) -> tuple[str, str]:
        base = f"{self.t.stack_name}-twin-{function}-{event}"[:80]
        url = self.c("sqs").create_queue(QueueName=base, Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        arn = self.t.arn("sqs", base)
        return url, arn

    def _queue_url(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        return self.c("sqs").get_queue_url(QueueName=name)["QueueUrl"]

    def _bucket_logical(self, name: str) -> str | None:
        for logical in self.t.of_type("AWS::S3::Bucket"):
            if self.t.name(logical) == name:
                return logical
        return None

    # ------------------------------------------------------------------ resources

    def run(self) -> Provisioned:
        t = self.t
        order = [
            ("AWS::SQS::Queue", self._queue),
            ("AWS::SNS::Topic", self._topic),
            ("AWS::S3::Bucket", self._bucket),
            ("AWS::DynamoDB::Table", self._table),
            ("AWS::IAM::Role", self._role),
            ("AWS::IAM::InstanceProfile", self._instance_profile),
            ("AWS::Logs::LogGroup", self._log_group),
            ("AWS::Events::EventBus", self._event_bus),
            ("AWS::KinesisFirehose::DeliveryStream", self._firehose),
            ("AWS::Serverless::Api", self._api),
            ("AWS::SNS::Subscription", self._subscription),
        ]
        handled = {k for k, _ in order} | {
            "AWS::Serverless::Function",
            "AWS::CloudWatch::Alarm",
            "AWS::Events::Rule",
            # run by moto's States Language interpreter in the twin's process (modelops_local.sfn)
            "AWS::Serverless::StateMachine",
            "AWS::StepFunctions::StateMachine",
        }
        self._queue_redrives: list[tuple[str, Any]] = []
        for rtype, fn in order:
            for logical in t.of_type(rtype):
                fn(logical)
        for url, policy in self._queue_redrives:
            self._best_effort(
                "RedrivePolicy",
                self.c("sqs").set_queue_attributes,
                QueueUrl=url,
                Attributes={"RedrivePolicy": json.dumps(policy)},
            )
        for logical in t.of_type(*_FUNCTION_TYPES):
            self._function(logical)
        for logical in t.of_type("AWS::Events::Rule"):
            self._rule(logical)
        for logical in t.of_type("AWS::SNS::Subscription"):
            self._lambda_subscription(logical)
        for bucket, config in self._notifications.items():
            self.c("s3").put_bucket_notification_configuration(
                Bucket=bucket,
                # EventBridgeConfiguration is an empty object when on: keep it (S3 -> EventBridge)
                NotificationConfiguration={
                    k: v for k, v in config.items() if v or k == "EventBridgeConfiguration"
                },
            )
        for logical in t.of_type("AWS::CloudWatch::Alarm"):
            self._alarm(logical)
        for logical, res in t.resources.items():
            rtype = res["Type"]
            if rtype in handled:
                continue
            reason = _NOT_EMULATED.get(rtype, "not emulated by the twin")
            self.out.skipped[logical] = f"{rtype}: {reason}"
        for logical in t.of_type("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            uri = t.resolve(t.props(logical).get("ContentUri") or t.props(logical).get("Content"))
            if isinstance(uri, str):
                d = (t.dir / uri).resolve()
                for cand in (d / "python", d):
                    if cand.is_dir():
                        self.out.layer_dirs.append(cand)
                        break
        return self.out

    def _queue(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        attrs = {}
        for key in (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "FifoQueue",
            "ContentBasedDeduplication",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
            "SqsManagedSseEnabled",
            "DeduplicationScope",
            "FifoThroughputLimit",
            "RedriveAllowPolicy",
        ):
            if key in props:
                attrs[key] = _attr_str(props[key])
        url = self.c("sqs").create_queue(QueueName=self.t.name(logical), Attributes=attrs)["QueueUrl"]
        self.t.overrides.setdefault(logical, {})["Ref"] = url
        self.t.overrides[logical]["QueueUrl"] = url
        self.out.queues[logical] = url
        if "RedrivePolicy" in props:
            self._queue_redrives.append((url, props["RedrivePolicy"]))

    def _topic(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        attrs = {
            k: _attr_str(props[k])
            for k in ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")
            if k in props
        }
        arn = self.c("sns").create_topic(Name=self.t.name(logical), Attributes=attrs)["TopicArn"]
        self.t.overrides.setdefault(logical, {})["Ref"] = arn
        for sub in props.get("Subscription") or []:
            self._subscribe(arn, sub.get("Protocol"), sub.get("Endpoint"), {}, f"{logical}.Subscription")

    def _subscribe(self, topic: str, protocol: Any, endpoint: Any, attrs: dict[str, str], where: str) -> None:
        if protocol == "lambda":
            return  # wired with the functions
        resp = self._best_effort(
            f"subscription {where}",
            self.c("sns").subscribe,
            TopicArn=topic,
            Protocol=str(protocol),
            Endpoint=str(endpoint),
            Attributes=attrs,
            ReturnSubscriptionArn=True,
        )
        if resp is None:
            log.warning("twin: subscription %s (%s) could not be created", where, protocol)

    def _subscription(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        attrs = {}
        for key in ("FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy"):
            if key in props:
                attrs[key] = _attr_str(props[key])
        self._subscribe(props.get("TopicArn"), props.get("Protocol"), props.get("Endpoint"), attrs, logical)

    def _bucket(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        name = self.t.name(logical)
        s3 = self.c("s3")
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.t.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.t.region}
        if _bool(props.get("ObjectLockEnabled")):
            kwargs["ObjectLockEnabledForBucket"] = True
        s3.create_bucket(**kwargs)
        if props.get("VersioningConfiguration"):
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
        if props.get("BucketEncryption"):
            rules = props["BucketEncryption"].get("ServerSideEncryptionConfiguration") or []
            self._best_effort(
                "BucketEncryption",
                s3.put_bucket_encryption,
                Bucket=name,
                ServerSideEncryptionConfiguration={"Rules": rules},
            )
        if props.get("PublicAccessBlockConfiguration"):
            self._best_effort(
                "PublicAccessBlock",
                s3.put_public_access_block,
                Bucket=name,
                PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
            )
        if props.get("OwnershipControls"):
            self._best_effort(
                "OwnershipControls",
                s3.put_bucket_ownership_controls,
                Bucket=name,
                OwnershipControls=props["OwnershipControls"],
            )
        if props.get("ObjectLockConfiguration"):
            self._best_effort(
                "ObjectLockConfiguration",
                s3.put_object_lock_configuration,
                Bucket=name,
                ObjectLockConfiguration=props["ObjectLockConfiguration"],
            )
        if props.get("Tags"):
            self._best_effort("Tags", s3.put_bucket_tagging, Bucket=name, Tagging={"TagSet": props["Tags"]})
        config = self._notifications.setdefault(
            name, {"QueueConfigurations": [], "TopicConfigurations": [], "LambdaFunctionConfigurations": []}
        )
        own = props.get("NotificationConfiguration") or {}
        for kind, arn_key, api_key in (
            ("QueueConfigurations", "Queue", "QueueArn"),
            ("TopicConfigurations", "Topic", "TopicArn"),
        ):
            for item in own.get(kind) or []:
                entry = {api_key: item[arn_key], "Events": [item["Event"]]}
                rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules")
                if rules:
                    entry["Filter"] = {"Key": {"FilterRules": rules}}
                config[kind].append(entry)
        if (own.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
            config["EventBridgeConfiguration"] = {}  # type: ignore[assignment]

    def _table(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        ddb = self.c("dynamodb")
        kwargs: dict[str, Any] = {
            "TableName": self.t.name(logical),
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props.get("ProvisionedThroughput") or {
                "ReadCapacityUnits": 5,
                "WriteCapacityUnits": 5,
            }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "TableClass"):
            if key in props:
                kwargs[key] = props[key]
        if props.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            self._best_effort(
                "TimeToLive",
                ddb.update_time_to_live,
                TableName=kwargs["TableName"],
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": _bool(ttl.get("Enabled", True)),
                },
            )

    def _role(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        iam = self.c("iam")
        name = self.t.name(logical)
        kwargs: dict[str, Any] = {
            "RoleName": name,
            "AssumeRolePolicyDocument": json.dumps(props.get("AssumeRolePolicyDocument") or {}),
        }
        for key in ("Path", "Description", "MaxSessionDuration"):
            if key in props:
                kwargs[key] = props[key]
        iam.create_role(**kwargs)
        for pol in props.get("Policies") or []:
            self._best_effort(
                "inline policy",
                iam.put_role_policy,
                RoleName=name,
                PolicyName=pol["PolicyName"],
                PolicyDocument=json.dumps(pol["PolicyDocument"]),
            )
        for arn in props.get("ManagedPolicyArns") or []:
            self._best_effort("managed policy", iam.attach_role_policy, RoleName=name, PolicyArn=arn)

    def _instance_profile(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        iam = self.c("iam")
        name = self.t.name(logical)
        iam.create_instance_profile(InstanceProfileName=name)
        for role in props.get("Roles") or []:
            self._best_effort(
                "instance profile role",
                iam.add_role_to_instance_profile,
                InstanceProfileName=name,
                RoleName=role,
            )

    def _log_group(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        logs = self.c("logs")
        name = self.t.name(logical)
        self._best_effort("log group", logs.create_log_group, logGroupName=name)
        if props.get("RetentionInDays"):
            self._best_effort(
                "retention",
                logs.put_retention_policy,
                logGroupName=name,
                retentionInDays=int(props["RetentionInDays"]),
            )

    def _event_bus(self, logical: str) -> None:
        self.c("events").create_event_bus(Name=self.t.name(logical))
        self.t.overrides.setdefault(logical, {})["Ref"] = self.t.name(logical)

    def _firehose(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        kwargs: dict[str, Any] = {
            "DeliveryStreamName": self.t.name(logical),
            "DeliveryStreamType": props.get("DeliveryStreamType", "DirectPut"),
        }
        for key in ("ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"):
            if key in props:
                kwargs[key] = props[key]
        self.c("firehose").create_delivery_stream(**kwargs)

    def _api(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        api_id = self.t.ref(logical)
        name = str(props.get("Name") or self.t.stack_name)
        apigw = self.c("apigateway")
        apigw.create_rest_api(name=name, tags={"_custom_id_": api_id})
        auth = props.get("Auth") or {}
        if _bool(auth.get("ApiKeyRequired")):
            key = apigw.create_api_key(
                name=f"{self.t.stack_name}-{logical}-ApiKey", enabled=True, generateDistinctId=True
            )
            self.out.api_keys[key["id"]] = key["value"]
            plan = self._best_effort(
                "usage plan",
                apigw.create_usage_plan,
                name=f"{self.t.stack_name}-{logical}-UsagePlan",
                apiStages=[{"apiId": api_id, "stage": str(props.get("StageName"))}],
            )
            if plan:
                self._best_effort(
                    "usage plan key",
                    apigw.create_usage_plan_key,
                    usagePlanId=plan["id"],
                    keyId=key["id"],
                    keyType="API_KEY",
                )

    def _alarm(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        props["AlarmName"] = self.t.name(logical)
        cw = self.c("cloudwatch")
        kwargs = {k: v for k, v in props.items() if k not in ("Tags",)}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        if "ActionsEnabled" in kwargs:
            kwargs["ActionsEnabled"] = _bool(kwargs["ActionsEnabled"])
        for m in kwargs.get("Metrics") or []:
            if "ReturnData" in m:
                m["ReturnData"] = _bool(m["ReturnData"])
            if "MetricStat" in m:
                m["MetricStat"]["Period"] = int(m["MetricStat"]["Period"])
        cw.put_metric_alarm(**kwargs)
        cw.set_alarm_state(
            AlarmName=props["AlarmName"],
            StateValue="INSUFFICIENT_DATA",
            StateReason="Unchecked: Initial alarm creation",
        )
        self.out.alarms[logical] = props

    # ------------------------------------------------------------------ functions

    def _function(self, logical: str) -> None:
        t = self.t
        raw = t.all_resources[logical]
        props = t.resolve(t.props(logical))
        name = t.name(logical)
        arn = t.getatt(logical, "Arn")
        self._fn_by_arn[arn] = logical
        runtime = str(props.get("Runtime") or "python3.12")
        if props.get("PackageType") == "Image":
            meta = raw.get("Metadata") or {}
            dockerfile = meta.get("Dockerfile")
            if not dockerfile:
                self.out.skipped[logical] = "image function without Metadata.Dockerfile"
                return
            code_dir = (t.dir / str(meta.get("DockerContext") or ".") / str(dockerfile)).parent
            command = (props.get("ImageConfig") or {}).get("Command") or []
            handler = str(command[0]) if command else "app.lambda_handler"
        else:
            if not runtime.startswith("python"):
                self.out.skipped[logical] = f"runtime {runtime} is not run by the twin"
                return
            code_uri = props.get("CodeUri")
            if not isinstance(code_uri, str):
                self.out.skipped[logical] = "CodeUri is not a local folder"
                return
            code_dir = t.dir / code_uri
            handler = str(props.get("Handler") or "")
        try:
            module, attr, file = module_for(code_dir, handler, self.code_roots)
        except ValueError as exc:
            raise TemplateError(f"function {logical}: {exc}") from None
        env = {
            str(k): ("true" if v is True else "false" if v is False else str(v))
            for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()
        }
        if "CAPTURE_BUFFER_SECONDS" in env:
            # moto's Firehose has no buffer: a captured record is in S3 at once, so the monitor's
            # window needs no lag on the twin (docs/local-twin.md)
            env["CAPTURE_BUFFER_SECONDS"] = "0"
        if "REPORT_BASE_URL" in env and not env["REPORT_BASE_URL"]:
            # a report's link on the twin opens in the fleet page (`modelops ui`, docs/ui.md)
            env["REPORT_BASE_URL"] = "http://127.0.0.1:8765"
        invoke_cfg = props.get("EventInvokeConfig") or {}
        dests = invoke_cfg.get("DestinationConfig") or {}

        def dest(key: str) -> tuple[str, str] | None:
            d = dests.get(key)
            if not d:
                return None
            return str(d.get("Type")), str(d.get("Destination"))

        dlq = props.get("DeadLetterQueue")
        spec = FunctionSpec(
            logical_id=logical,
            name=name,
            arn=arn,
            module=module,
            attr=attr,
            file=file,
            code_dir=code_dir.resolve(),
            timeout=float(props.get("Timeout") or 3),
            memory=int(props.get("MemorySize") or 128),
            environment=env,
            max_retries=int(invoke_cfg.get("MaximumRetryAttempts", 2)),
            max_event_age_s=int(invoke_cfg.get("MaximumEventAgeInSeconds", 21600)),
            dead_letter=(str(dlq["Type"]), str(dlq["TargetArn"])) if dlq else None,
            on_failure=dest("OnFailure"),
            on_success=dest("OnSuccess"),
            events=props.get("Events") or {},
            log_group=f"/aws/lambda/{name}",
        )
        self.out.functions[logical] = spec
        for event_name, event in (props.get("Events") or {}).items():
            self._event(logical, str(event_name), event)

    def _event(self, fn: str, name: str, event: dict[str, Any]) -> None:
        etype = str(event.get("Type"))
        p = event.get("Properties") or {}
        if etype == "S3":
            bucket = str(p.get("Bucket"))
            if self._bucket_logical(bucket) is None:
                raise TemplateError(f"function {fn} event {name}: S3 events need a bucket of this template")
            url, arn = self._twin_queue(fn, name)
            events = p.get("Events")
            entry: dict[str, Any] = {
                "Id": f"{fn}{name}",
                "QueueArn": arn,
                "Events": events if isinstance(events, list) else [events],
            }
            rules = ((p.get("Filter") or {}).get("S3Key") or {}).get("Rules")
            if rules:
                entry["Filter"] = {
                    "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
                }
            self._notifications[bucket]["QueueConfigurations"].append(entry)
            self.out.sources.append(Source("s3", fn, name, url, arn))
        elif etype == "SNS":
            url, arn = self._twin_queue(fn, name)
            attrs = {k: _attr_str(p[k]) for k in ("FilterPolicy", "FilterPolicyScope") if k in p}
            sub = self.c("sns").subscribe(
                TopicArn=str(p.get("Topic")),
                Protocol="sqs",
                Endpoint=arn,
                Attributes=attrs,
                ReturnSubscriptionArn=True,
            )
            self.out.sources.append(
                Source("sns", fn, name, url, arn, subscription_arn=sub["SubscriptionArn"])
            )
        elif etype in ("EventBridgeRule", "CloudWatchEvent"):
            pattern = p.get("Pattern") or p.get("EventPattern")
            bus = str(p.get("EventBusName") or "default")
            rule = str(p.get("RuleName") or f"{self.t.stack_name}-{fn}{name}"[:64])
            state = p.get("State") or ("DISABLED" if p.get("Enabled") is False else "ENABLED")
            self._rule_to_function(
                rule,
                bus,
                pattern,
                state,
                fn,
                name,
                {k: p[k] for k in ("Input", "InputPath", "InputTransformer") if k in p},
            )
        elif etype in ("Schedule", "ScheduleV2"):
            enabled = (
                p.get("Enabled", True) is not False and str(p.get("State", "ENABLED")).upper() != "DISABLED"
            )
            rule_name = str(p.get("Name") or f"{self.t.stack_name}-{fn}{name}"[:64])
            scheduler = etype == "ScheduleV2"
            arn = (
                self.t.arn("scheduler", f"schedule/default/{rule_name}")
                if scheduler
                else self.t.arn("events", f"rule/{rule_name}")
            )
            expression = str(p.get("ScheduleExpression") or p.get("Schedule"))
            raw_input = p.get("Input")
            payload = json.loads(raw_input) if isinstance(raw_input, str) else raw_input
            self.out.schedules.append(Schedule(fn, name, expression, arn, scheduler, enabled, payload))
        elif etype == "Api":
            rest = p.get("RestApiId")
            api_logical = next(
                (a for a in self.t.of_type("AWS::Serverless::Api") if self.t.ref(a) == rest), None
            )
            if rest is not None and api_logical is None:
                raise TemplateError(
                    f"function {fn} event {name}: RestApiId is not an AWS::Serverless::Api of this template"
                )
            if api_logical is None:
                api_logical, stage, api_name, key_default = (
                    "ServerlessRestApi",
                    "Prod",
                    self.t.stack_name,
                    False,
                )
            else:
                api_props = self.t.resolve(self.t.props(api_logical))
                stage = str(api_props.get("StageName"))
                api_name = str(api_props.get("Name") or self.t.stack_name)
                key_default = _bool((api_props.get("Auth") or {}).get("ApiKeyRequired"))
            auth = p.get("Auth") or {}
            key_required = _bool(auth["ApiKeyRequired"]) if "ApiKeyRequired" in auth else key_default
            method = str(p.get("Method", "any")).upper()
            self.out.routes.append(
                Route(api_logical, api_name, stage, str(p.get("Path", "/")), method, fn, key_required)
            )
        elif etype == "SQS":
            queue_arn = str(p.get("Queue"))
            url = self._queue_url(queue_arn)
            types = p.get("FunctionResponseTypes") or []
            self.out.sources.append(
                Source(
                    "sqs",
                    fn,
                    name,
                    url,
                    queue_arn,
                    owned=False,
                    batch_size=int(p.get("BatchSize", 10)),
                    report_failures="ReportBatchItemFailures" in types,
                )
            )
        else:
            self.out.unsupported_events.append(f"{fn}.{name} ({etype})")
            log.warning("twin: event %s of %s has type %s, which the twin does not emulate", name, fn, etype)

    def _rule_to_function(
        self, rule: str, bus: str, pattern: Any, state: str, fn: str, name: str, target: dict[str, Any]
    ) -> None:
        events = self.c("events")
        url, arn = self._twin_queue(fn, name)
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern), State=str(state))
        tgt: dict[str, Any] = {"Id": "twin", "Arn": arn}
        if "InputTransformer" in target:
            tgt["InputTransformer"] = target["InputTransformer"]
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[tgt])
        self.out.sources.append(
            Source(
                "eventbridge",
                fn,
                name,
                url,
                arn,
                target={k: v for k, v in target.items() if k != "InputTransformer"},
            )
        )

    def _rule(self, logical: str) -> None:
        """A plain ``AWS::Events::Rule``: moto gets it as written; targets that are template functions
        go through a twin queue; a schedule becomes a twin schedule."""
        props = self.t.resolve(self.t.props(logical))
        name = self.t.name(logical)
        bus = str(props.get("EventBusName") or "default")
        targets = props.get("Targets") or []
        others = [tg for tg in targets if tg.get("Arn") not in self._fn_by_arn]
        if props.get("ScheduleExpression"):
            for tg in targets:
                fn = self._fn_by_arn.get(tg.get("Arn"))
                if fn:
                    inp = json.loads(tg["Input"]) if isinstance(tg.get("Input"), str) else tg.get("Input")
                    self.out.schedules.append(
                        Schedule(
                            fn,
                            logical,
                            str(props["ScheduleExpression"]),
                            self.t.arn("events", f"rule/{name}"),
                            False,
                            str(props.get("State", "ENABLED")).upper() != "DISABLED",
                            inp,
                        )
                    )
            return
        pattern = props.get("EventPattern")
        events = self.c("events")
        events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=json.dumps(pattern),
            State=str(props.get("State", "ENABLED")),
        )
        if others:
            self._best_effort(
                f"targets of {logical}", events.put_targets, Rule=name, EventBusName=bus, Targets=others
            )
        for tg in targets:
            fn = self._fn_by_arn.get(tg.get("Arn"))
            if fn:
                self._rule_to_function(
                    f"{name}-{tg.get('Id', 'fn')}"[:64],
                    bus,
                    pattern,
                    "ENABLED",
                    fn,
                    f"{logical}{tg.get('Id', '')}",
                    {k: tg[k] for k in ("Input", "InputPath", "InputTransformer") if k in tg},
                )

    def _lambda_subscription(self, logical: str) -> None:
        props = self.t.resolve(self.t.props(logical))
        if props.get("Protocol") != "lambda":
            return
        fn = self._fn_by_arn.get(str(props.get("Endpoint")))
        if fn is None:
            log.warning("twin: subscription %s targets a function outside the template", logical)
            return
        self._event(
            fn,
            logical,
            {
                "Type": "SNS",
                "Properties": {
                    "Topic": props.get("TopicArn"),
                    **{k: props[k] for k in ("FilterPolicy", "FilterPolicyScope") if k in props},
                },
            },
        )
