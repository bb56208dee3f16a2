"""The synthesized templates of one environment as the permissions test sees them: every intrinsic resolved to
a concrete string in one fake account, the principals with their identity policies, and the resource policies
(bucket, topic, queue, key policies and Lambda permissions) by the resource they guard.

Names CloudFormation would generate (a role without ``RoleName``, a key id) are made up deterministically from
the stack and logical id, so a policy and the call it must allow resolve to the same ARN. The account is moto's
default one, so ARNs recorded by the Lambda tests against moto need no translation.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.permissions.evaluator import Policy, Principal

ACCOUNT = "123456789012"  # moto's default account: recorded ARNs and resolved templates agree
PARTITION = "aws"

Json = dict[str, Any]


@dataclass
class Role:
    stack: str
    logical_id: str
    arn: str
    name: str
    trusted: tuple[str, ...]  # service principals in the trust policy
    policies: list[Policy] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.stack}/{self.logical_id}"

    def principal(self) -> Principal:
        return Principal(self.label, ACCOUNT, arn=self.arn)


#: AWS managed policies the templates attach, as published (AWS Managed Policy Reference, cited per entry); the
#: templates carry only their ARNs.
MANAGED_POLICIES: dict[str, Json] = {
    # https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaBasicExecutionRole.html
    "service-role/AWSLambdaBasicExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ]
    },
    # https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonAPIGatewayPushToCloudWatchLogs.html
    "service-role/AmazonAPIGatewayPushToCloudWatchLogs": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogGroups",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                    "logs:GetLogEvents",
                    "logs:FilterLogEvents",
                ],
                "Resource": "*",
            }
        ]
    },
}


class Templates:
    """All stacks of one environment, resolved."""

    def __init__(self, raw: dict[str, Json], region: str) -> None:
        self.region = region
        self.raw = raw
        self._exports: dict[str, Any] = {}
        for stack, template in raw.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    self._exports[output["Export"]["Name"]] = (stack, output["Value"])
        self.resources: dict[str, dict[str, Json]] = {
            stack: {lid: self.resolve(stack, res) for lid, res in template.get("Resources", {}).items()}
            for stack, template in raw.items()
        }

    @classmethod
    def load(cls, outdir: Path, region: str, mutate: Any = None) -> Templates:
        raw = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in outdir.glob("*.template.json")}
        if mutate is not None:
            raw = copy.deepcopy(raw)
            mutate(raw)
        return cls(raw, region)

    # ---- intrinsics -----------------------------------------------------------------------------------------

    def physical_name(self, stack: str, logical_id: str) -> str:
        """What ``Ref`` returns for a resource (its name, id, URL or ARN, depending on its type)."""
        res = self.raw[stack]["Resources"][logical_id]
        kind, props = res["Type"], res.get("Properties", {})
        name_key = {
            "AWS::IAM::Role": "RoleName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::StepFunctions::StateMachine": "StateMachineName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::Logs::LogStream": "LogStreamName",
            "AWS::Kinesis::Stream": "Name",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Events::Rule": "Name",
            "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
            "AWS::ApiGateway::Stage": "StageName",
        }.get(kind)
        name = self.resolve(stack, props.get(name_key)) if name_key and name_key in props else None
        name = name or f"{stack}-{logical_id}"
        r, a = self.region, ACCOUNT
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{r}.amazonaws.com/{a}/{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{r}:{a}:{name}"
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:{PARTITION}:states:{r}:{a}:stateMachine:{name}"
        if kind == "AWS::KMS::Key":
            return f"{stack}-{logical_id}".lower()
        return name

    def attribute(self, stack: str, logical_id: str, attr: str) -> str:
        kind = self.raw[stack]["Resources"][logical_id]["Type"]
        name, r, a, p = self.physical_name(stack, logical_id), self.region, ACCOUNT, PARTITION
        arns = {
            "AWS::IAM::Role": f"arn:{p}:iam::{a}:role/{name}",
            "AWS::S3::Bucket": f"arn:{p}:s3:::{name}",
            "AWS::KMS::Key": f"arn:{p}:kms:{r}:{a}:key/{name}",
            "AWS::SQS::Queue": f"arn:{p}:sqs:{r}:{a}:{name.rsplit('/', 1)[-1]}",
            "AWS::Lambda::Function": f"arn:{p}:lambda:{r}:{a}:function:{name}",
            "AWS::CloudWatch::Alarm": f"arn:{p}:cloudwatch:{r}:{a}:alarm:{self._alarm_name(stack, logical_id)}",
            "AWS::Logs::LogGroup": f"arn:{p}:logs:{r}:{a}:log-group:{name}:*",
            "AWS::Events::Rule": f"arn:{p}:events:{r}:{a}:rule/{name}",
            "AWS::Kinesis::Stream": f"arn:{p}:kinesis:{r}:{a}:stream/{name}",
            "AWS::DynamoDB::Table": f"arn:{p}:dynamodb:{r}:{a}:table/{name}",
        }
        if attr == "Arn" and kind in arns:
            return arns[kind]
        if (kind, attr) == ("AWS::SQS::Queue", "QueueName"):
            return name.rsplit("/", 1)[-1]
        if (kind, attr) == ("AWS::SNS::Topic", "TopicName"):
            return name.rsplit(":", 1)[-1]
        return f"{name}.{attr}"  # an attribute no policy or call here depends on (RootResourceId, QuickSight ARNs)

    def _alarm_name(self, stack: str, logical_id: str) -> str:
        props = self.raw[stack]["Resources"][logical_id].get("Properties", {})
        return self.resolve(stack, props.get("AlarmName")) or f"{stack}-{logical_id}"

    def resolve(self, stack: str, value: Any) -> Any:
        """``value`` with every Ref, GetAtt, Join, Sub, Select, Split and ImportValue replaced by its string."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (op, arg), = value.items()
            if op == "Ref":
                return self._ref(stack, arg)
            if op == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(stack, lid, attr)
            if op == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(stack, p)) for p in parts)
            if op == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(self.resolve(stack, index))]
            if op == "Fn::Split":
                sep, text = arg
                return str(self.resolve(stack, text)).split(sep)
            if op == "Fn::ImportValue":
                exporter, exported = self._exports[self.resolve(stack, arg)]
                return self.resolve(exporter, exported)
            if op == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                values = {k: str(self.resolve(stack, v)) for k, v in variables.items()}
                return re.sub(r"\$\{([^}!]+)\}", lambda m: values.get(m[1]) or self._sub_name(stack, m[1]), text)
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def _sub_name(self, stack: str, name: str) -> str:
        if "." in name:
            lid, attr = name.split(".", 1)
            return self.attribute(stack, lid, attr)
        return str(self._ref(stack, name))

    def _ref(self, stack: str, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::Region": self.region,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack,
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        params = self.raw[stack].get("Parameters", {})
        if name in params:
            return params[name].get("Default", name)
        return self.physical_name(stack, name)

    # ---- queries --------------------------------------------------------------------------------------------

    def of_type(self, kind: str) -> list[tuple[str, str, Json]]:
        """(stack, logical id, resolved resource) for every resource of ``kind``."""
        return [
            (stack, lid, res)
            for stack, resources in self.resources.items()
            for lid, res in resources.items()
            if res["Type"] == kind
        ]

    def find(self, kind: str, **props: Any) -> list[tuple[str, str, Json]]:
        return [r for r in self.of_type(kind) if all(r[2].get("Properties", {}).get(k) == v for k, v in props.items())]

    def roles(self) -> dict[str, Role]:
        """Every IAM role by ARN, with its inline, attached customer and AWS managed policies."""
        roles: dict[str, Role] = {}
        for stack, lid, res in self.of_type("AWS::IAM::Role"):
            props = res["Properties"]
            trusted = tuple(
                s
                for st in props["AssumeRolePolicyDocument"]["Statement"]
                for s in _listify(st.get("Principal", {}).get("Service", []))
            )
            role = Role(stack, lid, self.attribute(stack, lid, "Arn"), self.physical_name(stack, lid), trusted)
            for inline in props.get("Policies", []):
                role.policies.append(Policy(f"{role.label} inline {inline['PolicyName']}", inline["PolicyDocument"]))
            for arn in props.get("ManagedPolicyArns", []):
                name = arn.split(":policy/", 1)[1]
                if name not in MANAGED_POLICIES:
                    raise KeyError(f"{role.label}: AWS managed policy {name} is not in MANAGED_POLICIES")
                role.policies.append(Policy(f"AWS managed {name}", MANAGED_POLICIES[name]))
            roles[role.arn] = role
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for stack, lid, res in self.of_type(kind):
                props = res["Properties"]
                for role_name in props.get("Roles", []):
                    role = next(r for r in roles.values() if r.name == role_name)
                    role.policies.append(Policy(f"{stack}/{lid}", props["PolicyDocument"]))
        return roles

    def role_by_name(self, name: str) -> Role:
        return next(r for r in self.roles().values() if r.name == name)

    def resource_policies(self) -> list[tuple[list[str], Policy]]:
        """(ARN patterns the policy guards, policy) for bucket, topic, queue policies and Lambda permissions."""
        out: list[tuple[list[str], Policy]] = []
        for stack, lid, res in self.of_type("AWS::S3::BucketPolicy"):
            bucket = res["Properties"]["Bucket"]
            out.append(([f"arn:{PARTITION}:s3:::{bucket}", f"arn:{PARTITION}:s3:::{bucket}/*"],
                        Policy(f"{stack}/{lid}", res["Properties"]["PolicyDocument"])))  # fmt: skip
        for stack, lid, res in self.of_type("AWS::SNS::TopicPolicy"):
            out.append((res["Properties"]["Topics"], Policy(f"{stack}/{lid}", res["Properties"]["PolicyDocument"])))
        for stack, lid, res in self.of_type("AWS::SQS::QueuePolicy"):
            arns = [_queue_arn(url) for url in res["Properties"]["Queues"]]
            out.append((arns, Policy(f"{stack}/{lid}", res["Properties"]["PolicyDocument"])))
        for stack, lid, res in self.of_type("AWS::Lambda::Permission"):
            props = res["Properties"]
            function = props["FunctionName"]
            arn = function if function.startswith("arn:") else self._function_arn(function)
            statement: Json = {"Effect": "Allow", "Principal": _permission_principal(props["Principal"]),
                               "Action": props["Action"], "Resource": arn}  # fmt: skip
            conditions: Json = {}
            if "SourceArn" in props:
                conditions["ArnLike"] = {"aws:SourceArn": props["SourceArn"]}
            if "SourceAccount" in props:
                conditions["StringEquals"] = {"aws:SourceAccount": props["SourceAccount"]}
            if conditions:
                statement["Condition"] = conditions
            out.append(([arn], Policy(f"{stack}/{lid}", {"Statement": [statement]})))
        return out

    def _function_arn(self, name: str) -> str:
        return f"arn:{PARTITION}:lambda:{self.region}:{ACCOUNT}:function:{name}"

    def key_policies(self) -> dict[str, Policy]:
        """Key ARN -> its key policy."""
        return {
            self.attribute(stack, lid, "Arn"): Policy(f"{stack}/{lid} key policy", res["Properties"]["KeyPolicy"])
            for stack, lid, res in self.of_type("AWS::KMS::Key")
        }


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _permission_principal(principal: str) -> Any:
    if principal.endswith(".amazonaws.com"):
        return {"Service": principal}
    return {"AWS": principal}


def _queue_arn(url: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` (also moto's ``http://host:port/<account>/<name>``)."""
    parts = url.rstrip("/").split("/")
    account, name = parts[-2], parts[-1]
    host = parts[2]
    region = host.split(".")[1] if host.startswith("sqs.") else None
    return f"arn:{PARTITION}:sqs:{region or '*'}:{account}:{name}"
