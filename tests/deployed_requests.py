"""Every AWS API request the synthesized templates fully determine, with representative values filled in.

:func:`deployed_requests` reads a cloud assembly (``cdk.out`` or a synth into a temp folder) and returns one
:class:`Request` per call the deployed flow makes with parameters written in the templates:

- each SageMaker pipeline step's job request (``Processing`` -> CreateProcessingJob, ``Training`` ->
  CreateTrainingJob, ``RegisterModel`` -> CreateModelPackage, ``Model`` -> CreateModel, ``Transform`` ->
  CreateTransformJob) and the stack's CreatePipeline;
- each Step Functions ``Task`` state's ``Parameters`` (optimised integrations and ``aws-sdk:*``);
- each EventBridge rule's PutRule and PutTargets and what each target starts (StartPipelineExecution,
  StartExecution, Invoke, Publish);
- each ``Custom::AWS`` SDK call (Create, Update, Delete).

Values the templates leave open are replaced by representative ones: CloudFormation's pseudo parameters and
physical names (an unnamed resource gets CloudFormation's ``<stack>-<logical id>-<13 characters>`` at the
type's length limit), pipeline parameters by their defaults, execution-time values (execution ids, job names,
query ids, metric values) by their longest plausible form (:data:`EXECUTION_ID`, :data:`STATE_VALUES`).
Anything this module does not know (a resource type, an intrinsic, a step type, an integration, a ``.$``
expression) raises :class:`UnknownShape` naming it: it is never skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Pseudo parameters. An account id is always 12 digits; the region and partition come from the environment.
ACCOUNT = "123456789012"
#: A SageMaker pipeline execution id as the service makes them (12 lowercase letters and digits).
EXECUTION_ID = "kytlemm1lvpq"
#: What AWS generates as a unique id (KMS key ids, Athena query execution ids, idempotency tokens).
UUID = "3f9c1e2a-7b4d-4e8f-9a6b-0c5d2e1f8a7b"
#: CloudFormation's random suffix of a generated physical name (13 characters).
CFN_SUFFIX = "1A2B3C4D5E6F7"
#: The random suffix SageMaker Pipelines appends to a step's job name ("pipelines-<id>-<step>-<10>").
JOB_SUFFIX = "cIpzShs3Qp"


class UnknownShape(KeyError):
    """Something in a template this module cannot turn into a request; the message names it."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Request:
    """One API call: where it comes from (``origin``), botocore's service name, the operation, its parameters."""

    origin: str
    service: str
    operation: str
    params: dict[str, Any]


# ---- CloudFormation values ------------------------------------------------------------------

#: Length limit of a generated physical name, per resource type (CloudFormation truncates the logical id).
_NAME_LIMITS = {"AWS::IAM::Role": 64, "AWS::Lambda::Function": 64, "AWS::SQS::Queue": 80, "AWS::SNS::Topic": 256,
                "AWS::Events::Rule": 64, "AWS::StepFunctions::StateMachine": 80, "AWS::S3::Bucket": 63,
                "AWS::Logs::LogGroup": 512}  # fmt: skip
#: The property that names a resource of each type (absent: CloudFormation generates the name).
_NAME_PROPERTIES = {"AWS::IAM::Role": "RoleName", "AWS::Lambda::Function": "FunctionName",
                    "AWS::SQS::Queue": "QueueName", "AWS::SNS::Topic": "TopicName", "AWS::Events::Rule": "Name",
                    "AWS::StepFunctions::StateMachine": "StateMachineName", "AWS::S3::Bucket": "BucketName",
                    "AWS::Logs::LogGroup": "LogGroupName", "AWS::SageMaker::Pipeline": "PipelineName",
                    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName"}  # fmt: skip
#: ``Ref`` of each type (CloudFormation's documented return value), from its name ``{n}``.
_REF = {"AWS::IAM::Role": "{n}", "AWS::Lambda::Function": "{n}", "AWS::S3::Bucket": "{n}",
        "AWS::Logs::LogGroup": "{n}", "AWS::Events::Rule": "{n}", "AWS::SageMaker::Pipeline": "{n}",
        "AWS::KMS::Key": UUID, "AWS::SNS::Topic": "arn:{p}:sns:{r}:{a}:{n}",
        "AWS::SQS::Queue": "https://sqs.{r}.amazonaws.com/{a}/{n}",
        "AWS::StepFunctions::StateMachine": "arn:{p}:states:{r}:{a}:stateMachine:{n}",
        "AWS::SageMaker::ModelPackageGroup": "arn:{p}:sagemaker:{r}:{a}:model-package-group/{n}"}  # fmt: skip
#: ``Fn::GetAtt <resource>.Arn`` of each type.
_ARN = {"AWS::IAM::Role": "arn:{p}:iam::{a}:role/{n}", "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{n}",
        "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{n}", "AWS::KMS::Key": f"arn:{{p}}:kms:{{r}}:{{a}}:key/{UUID}",
        "AWS::S3::Bucket": "arn:{p}:s3:::{n}",
        "AWS::StepFunctions::StateMachine": _REF["AWS::StepFunctions::StateMachine"],
        "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{n}:*"}  # fmt: skip


class Assembly:
    """The templates of one synthesized environment (``<stack>.template.json`` files of a cloud assembly)."""

    def __init__(self, out_dir: Path, region: str) -> None:
        self.region = region
        self.partition = "aws-cn" if region.startswith("cn-") else "aws"
        self.templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text())
                          for p in sorted(Path(out_dir).glob("*.template.json"))}  # fmt: skip
        self.exports = {
            out["Export"]["Name"]: (stack, out["Value"])
            for stack, template in self.templates.items()
            for out in template.get("Outputs", {}).values()
            if isinstance(out.get("Export", {}).get("Name"), str)
        }

    def values(self, stack: str) -> Values:
        return Values(self, stack)


class Values:
    """CloudFormation intrinsics of one stack's template resolved to representative deployed values."""

    def __init__(self, assembly: Assembly, stack: str) -> None:
        self.assembly, self.stack = assembly, stack
        self.resources = assembly.templates[stack]["Resources"]
        self.pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": assembly.region, "AWS::Partition": assembly.partition,
                       "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack}  # fmt: skip

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()  # fmt: skip
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg))
            if key == "Fn::Join":
                return arg[0].join(str(self(v)) for v in self(arg[1]))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, {k: self(v) for k, v in variables.items()})
            if key == "Fn::ImportValue":
                name = self(arg)
                if name not in self.assembly.exports:
                    raise UnknownShape(f"Fn::ImportValue {name!r}: no stack of the assembly exports it")
                stack, value = self.assembly.exports[name]
                return self.assembly.values(stack)(value)
            if key.startswith("Fn::"):
                raise UnknownShape(f"{self.stack}: the intrinsic {key} is not resolved by tests/deployed_requests.py")
        return {k: self(v) for k, v in node.items()}

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        """``Fn::Sub``: ``${Name}`` from ``variables``, pseudo parameters or a resource's Ref; ``${!x}`` is literal."""

        def one(m: re.Match[str]) -> str:
            name = m[1]
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resource(self, logical: str) -> dict[str, Any]:
        if logical not in self.resources:
            raise UnknownShape(f"{self.stack}: {logical!r} is not a resource of the template")
        return self.resources[logical]

    def name(self, logical: str) -> str:
        """The physical name: the template's, or CloudFormation's generated one at the type's length limit."""
        resource = self.resource(logical)
        kind = resource["Type"]
        prop = _NAME_PROPERTIES.get(kind)
        if prop and prop in resource.get("Properties", {}):
            return str(self(resource["Properties"][prop]))
        if kind not in _NAME_LIMITS:
            raise UnknownShape(f"{self.stack}: no physical name for {logical} ({kind}) in tests/deployed_requests.py")
        stem = f"{self.stack}-{logical}"[: _NAME_LIMITS[kind] - len(CFN_SUFFIX) - 1]
        name = f"{stem}-{CFN_SUFFIX}"
        return name.lower() if kind == "AWS::S3::Bucket" else name

    def _format(self, pattern: str, logical: str) -> str:
        name = self.name(logical) if "{n}" in pattern else ""
        return pattern.format(p=self.pseudo["AWS::Partition"], r=self.pseudo["AWS::Region"], a=ACCOUNT, n=name)

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        kind = self.resource(name)["Type"]
        if kind not in _REF:
            raise UnknownShape(f"{self.stack}: Ref of {name} ({kind}) is not known to tests/deployed_requests.py")
        return self._format(_REF[kind], name)

    def get_att(self, logical: str, attribute: str) -> Any:
        kind = self.resource(logical)["Type"]
        if attribute == "Arn" and kind in _ARN:
            return self._format(_ARN[kind], logical)
        if (kind, attribute) == ("AWS::SNS::Topic", "TopicArn"):
            return self.ref(logical)
        raise UnknownShape(f"{self.stack}: Fn::GetAtt {logical}.{attribute} ({kind}) is not known")


def _resources(assembly: Assembly, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for stack, template in assembly.templates.items():
        for logical, resource in template.get("Resources", {}).items():
            if resource["Type"] == kind:
                yield stack, logical, resource.get("Properties", {})


# ---- SageMaker pipelines --------------------------------------------------------------------

#: Pipeline step type -> (operation, the job-name member SageMaker Pipelines fills in, or "").
_STEP_OPERATIONS = {
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "Transform": ("CreateTransformJob", "TransformJobName"),
    "Tuning": ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
    "Model": ("CreateModel", "ModelName"),
    "RegisterModel": ("CreateModelPackage", ""),
}
#: Step types that make no API request of their own.
_NO_REQUEST_STEPS = ("Condition", "Fail")


class PipelineValues:
    """A pipeline definition's ``Get`` and ``Std:Join`` resolved: parameters by their defaults, the execution by
    :data:`EXECUTION_ID`, other steps' properties by what those steps' requests make them."""

    def __init__(self, definition: Mapping[str, Any], pipeline_name: str, values: Values) -> None:
        self.pipeline_name, self.values = pipeline_name, values
        self.steps = {s["Name"]: s for s in _all_steps(definition["Steps"])}
        self.parameters = {p["Name"]: p for p in definition.get("Parameters", [])}
        self.resolved: dict[str, dict[str, Any]] = {}

    def job_name(self, step: str) -> str:
        return f"pipelines-{EXECUTION_ID}-{step}-{JOB_SUFFIX}"

    def arguments(self, step: str) -> dict[str, Any]:
        if step not in self.resolved:
            if step not in self.steps:
                raise UnknownShape(f"pipeline {self.pipeline_name}: a reference to the unknown step {step!r}")
            self.resolved[step] = self(self.steps[step].get("Arguments", {}))
        return self.resolved[step]

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(v) for v in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Get"}:
            return self.get(node["Get"])
        if set(node) == {"Std:Join"}:
            return node["Std:Join"]["On"].join(str(self(v)) for v in node["Std:Join"]["Values"])
        unknown = [k for k in node if k.startswith("Std:")]
        if unknown:
            raise UnknownShape(f"pipeline {self.pipeline_name}: {unknown[0]} in a request is not resolved")
        return {k: self(v) for k, v in node.items()}

    def get(self, ref: str) -> Any:
        if ref.startswith("Parameters."):
            parameter = self.parameters.get(ref.removeprefix("Parameters."))
            if parameter is None or "DefaultValue" not in parameter:
                raise UnknownShape(f"pipeline {self.pipeline_name}: {ref} has no default value to stand for it")
            return parameter["DefaultValue"]
        execution = {
            "Execution.PipelineExecutionId": EXECUTION_ID,
            "Execution.PipelineName": self.pipeline_name,
            "Execution.PipelineExecutionArn": f"arn:{self.values.pseudo['AWS::Partition']}:sagemaker:"
            f"{self.values.pseudo['AWS::Region']}:{ACCOUNT}:pipeline/{self.pipeline_name}/execution/{EXECUTION_ID}",
        }
        if ref in execution:
            return execution[ref]
        output = re.fullmatch(r"Steps\.(\w+)\.ProcessingOutputConfig\.Outputs\['(\w+)'\]\.S3Output\.S3Uri", ref)
        if output:
            outputs = self.arguments(output[1]).get("ProcessingOutputConfig", {}).get("Outputs", [])
            for item in outputs:
                if item["OutputName"] == output[2]:
                    return item["S3Output"]["S3Uri"]
        model = re.fullmatch(r"Steps\.(\w+)\.ModelArtifacts\.S3ModelArtifacts", ref)
        if model:  # SageMaker writes <S3OutputPath>/<training job name>/output/model.tar.gz
            path = self.arguments(model[1])["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            return f"{path}/{self.job_name(model[1])}/output/model.tar.gz"
        raise UnknownShape(f"pipeline {self.pipeline_name}: no representative value for Get {ref!r}")


def _all_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        if step["Type"] == "Condition":
            yield from _all_steps(step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", []))


def pipeline_requests(assembly: Assembly) -> Iterator[Request]:
    """CreatePipeline of every ``AWS::SageMaker::Pipeline`` and one request per step of its definition."""
    for stack, logical, props in _resources(assembly, "AWS::SageMaker::Pipeline"):
        values = assembly.values(stack)
        name = str(values(props["PipelineName"]))
        body = props["PipelineDefinition"].get("PipelineDefinitionBody")
        if body is None:
            raise UnknownShape(f"{stack}: pipeline {name} has no inline PipelineDefinitionBody (an S3 location?)")
        text = str(values(body))
        create = {"PipelineName": name, "PipelineDefinition": text, "RoleArn": values(props["RoleArn"]),
                  "ClientRequestToken": UUID}  # fmt: skip
        for key in ("PipelineDescription", "PipelineDisplayName", "Tags", "ParallelismConfiguration"):
            if key in props:
                create[key] = values(props[key])
        yield Request(f"{stack}: pipeline {name} ({logical})", "sagemaker", "CreatePipeline", create)
        definition = json.loads(text)
        resolve = PipelineValues(definition, name, values)
        for step in _all_steps(definition["Steps"]):
            kind = step["Type"]
            if kind in _NO_REQUEST_STEPS:
                continue
            if kind not in _STEP_OPERATIONS:
                raise UnknownShape(f"pipeline {name}: step {step['Name']} of type {kind} has no API operation here")
            operation, name_member = _STEP_OPERATIONS[kind]
            params = dict(resolve.arguments(step["Name"]))
            if name_member:
                params[name_member] = resolve.job_name(step["Name"])
            yield Request(f"{stack}: pipeline {name}, step {step['Name']}", "sagemaker", operation, params)


# ---- Step Functions -------------------------------------------------------------------------

#: Representative values of the JSONPath expressions Task states pass (``"Key.$": expression``): what each yields
#: at run time, at its longest plausible. An expression matching none fails the test by name.
STATE_VALUES: list[tuple[str, Any, str]] = [
    (r"\$\.\w+\.id", UUID, "an Athena QueryExecutionId kept by ResultSelector {'id.$': '$.QueryExecution...Id'}"),
    (r"States\.StringToJson\(\$\.\w+\.data\[\d+\]\.VarCharValue\)", 1.0e12, "a numeric cell of an Athena result row"),
    (r"\$\.record\.skipped", 1, "the count a Pass state records for a skipped job"),
    (r"\$\.Key", f"training/interactions/20261207_131207_00042_ab3cd_{UUID}",
     "an object key a Map item takes from an S3 listing: an Athena UNLOAD file of the training set"),
]

#: Step Functions' service names (in ``aws-sdk:<service>:<action>``) that botocore names otherwise.
_SDK_SERVICES = {"sfn": "stepfunctions", "cloudwatchlogs": "logs", "sagemakerruntime": "sagemaker-runtime",
                 "elasticloadbalancingv2": "elbv2", "databasemigration": "dms", "eventbridge": "events"}  # fmt: skip
#: Optimised integrations (``arn:aws:states:::<service>:<action>``): botocore service, operation and the members
#: Step Functions serialises from JSON into the string or bytes the API takes. Any other is refused by name.
_OPTIMISED = {
    "athena:startQueryExecution": ("athena", "StartQueryExecution", ()),
    "athena:getQueryExecution": ("athena", "GetQueryExecution", ()),
    "athena:getQueryResults": ("athena", "GetQueryResults", ()),
    "athena:stopQueryExecution": ("athena", "StopQueryExecution", ()),
    "databrew:startJobRun": ("databrew", "StartJobRun", ()),
    "glue:startJobRun": ("glue", "StartJobRun", ()),
    "lambda:invoke": ("lambda", "Invoke", ("Payload",)),
    "sns:publish": ("sns", "Publish", ("Message",)),
    "sqs:sendMessage": ("sqs", "SendMessage", ("MessageBody",)),
    "states:startExecution": ("stepfunctions", "StartExecution", ("Input",)),
    "events:putEvents": ("events", "PutEvents", ()),
    "dynamodb:getItem": ("dynamodb", "GetItem", ()),
    "dynamodb:putItem": ("dynamodb", "PutItem", ()),
    "dynamodb:updateItem": ("dynamodb", "UpdateItem", ()),
    "dynamodb:deleteItem": ("dynamodb", "DeleteItem", ()),
    "sagemaker:createProcessingJob": ("sagemaker", "CreateProcessingJob", ()),
    "sagemaker:createTrainingJob": ("sagemaker", "CreateTrainingJob", ()),
    "sagemaker:createTransformJob": ("sagemaker", "CreateTransformJob", ()),
    "sagemaker:createModel": ("sagemaker", "CreateModel", ()),
    "sagemaker:createEndpoint": ("sagemaker", "CreateEndpoint", ()),
    "sagemaker:createEndpointConfig": ("sagemaker", "CreateEndpointConfig", ()),
    "sagemaker:updateEndpoint": ("sagemaker", "UpdateEndpoint", ()),
}


def task_operation(resource: str) -> tuple[str, str, tuple[str, ...]]:
    """(botocore service, operation, JSON-serialised members) of a Task state's ``Resource``."""
    m = re.fullmatch(r"arn:[\w-]+:states:::(?:aws-sdk:)?([\w-]+):(\w+)(?:\.(?:sync(?::2)?|waitForTaskToken))?",
                     resource)  # fmt: skip
    if m is None:
        raise UnknownShape(f"Task resource {resource!r} is not a service integration known here")
    service, action = m[1], m[2]
    if ":aws-sdk:" in resource:
        return _SDK_SERVICES.get(service, service), action[:1].upper() + action[1:], ()
    if f"{service}:{action}" not in _OPTIMISED:
        raise UnknownShape(f"the optimised integration {service}:{action} is not mapped in tests/deployed_requests.py")
    return _OPTIMISED[f"{service}:{action}"]


def state_value(expression: str, where: str) -> Any:
    for pattern, value, _why in STATE_VALUES:
        if re.fullmatch(pattern, expression):
            return value
    raise UnknownShape(f"{where}: no representative value for the path {expression!r} (add one to STATE_VALUES)")


def task_parameters(parameters: Any, where: str) -> Any:
    """``Parameters`` with every ``"Key.$": expression`` replaced by ``"Key": <representative value>``."""
    if isinstance(parameters, list):
        return [task_parameters(v, where) for v in parameters]
    if not isinstance(parameters, dict):
        return parameters
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if key.endswith(".$"):
            out[key[:-2]] = state_value(value, where)
        else:
            out[key] = task_parameters(value, where)
    return out


def _json_members(params: dict[str, Any], members: tuple[str, ...]) -> dict[str, Any]:
    return {k: (json.dumps(v) if k in members and not isinstance(v, str) else v) for k, v in params.items()}


def _states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _states(state[key]["States"])


def state_machine_requests(assembly: Assembly) -> Iterator[Request]:
    """One request per ``Task`` state of every ``AWS::StepFunctions::StateMachine``."""
    for stack, logical, props in _resources(assembly, "AWS::StepFunctions::StateMachine"):
        values = assembly.values(stack)
        machine = str(values(props.get("StateMachineName", logical)))
        if "DefinitionString" not in props:
            raise UnknownShape(f"{stack}: state machine {machine} has no inline DefinitionString")
        definition = json.loads(str(values(props["DefinitionString"])))
        if definition.get("QueryLanguage") == "JSONata":
            raise UnknownShape(f"{stack}: state machine {machine} uses JSONata; its Arguments are not resolved here")
        for name, state in _states(definition["States"]):
            if state["Type"] != "Task":
                continue
            where = f"{stack}: state machine {machine}, state {name!r}"
            if "Arguments" in state or state.get("QueryLanguage") == "JSONata":
                raise UnknownShape(f"{where}: JSONata Arguments are not resolved here")
            if "Parameters" not in state:
                raise UnknownShape(f"{where}: no Parameters, so the request is the state's input (not resolved)")
            service, operation, json_members = task_operation(state["Resource"])
            params = _json_members(task_parameters(state["Parameters"], where), json_members)
            yield Request(where, service, operation, params)


# ---- EventBridge ----------------------------------------------------------------------------


def _event(pattern: Mapping[str, Any] | None, schedule: bool, region: str) -> str:
    """A representative event the rule matches (its source and detail-type), as the target receives it."""
    def first(key: str, default: str) -> str:
        values = (pattern or {}).get(key, [default])
        return values[0] if values and isinstance(values[0], str) else default

    return json.dumps({
        "version": "0", "id": UUID, "account": ACCOUNT, "time": "2026-12-31T23:59:59Z", "region": region,
        "source": "aws.events" if schedule else first("source", "aws.events"),
        "detail-type": "Scheduled Event" if schedule else first("detail-type", "Event"),
        "resources": [], "detail": {},
    })  # fmt: skip


def _target_request(target: Mapping[str, Any], event: str, where: str) -> Request:
    """What EventBridge calls for ``target`` (by the service in its ARN)."""
    if any(k in target for k in ("InputPath", "InputTransformer")):
        raise UnknownShape(f"{where}: InputPath/InputTransformer are not resolved here")
    arn = str(target["Arn"])
    payload = target.get("Input", event)
    service = arn.split(":")[2] if arn.startswith("arn:") else ""
    if service == "sagemaker" and ":pipeline/" in arn:
        params: dict[str, Any] = {"PipelineName": arn.split(":pipeline/", 1)[1], "ClientRequestToken": UUID}
        pipeline_parameters = target.get("SageMakerPipelineParameters", {}).get("PipelineParameterList")
        if pipeline_parameters:
            params["PipelineParameters"] = pipeline_parameters
        return Request(where, "sagemaker", "StartPipelineExecution", params)
    if service == "states":
        return Request(where, "stepfunctions", "StartExecution", {"stateMachineArn": arn, "input": payload})
    if service == "lambda":
        return Request(where, "lambda", "Invoke", {"FunctionName": arn, "InvocationType": "Event", "Payload": payload})
    if service == "sns":
        return Request(where, "sns", "Publish", {"TopicArn": arn, "Message": payload})
    raise UnknownShape(f"{where}: a target of service {service!r} ({arn}) is not mapped in tests/deployed_requests.py")


def rule_requests(assembly: Assembly) -> Iterator[Request]:
    """PutRule and PutTargets of every ``AWS::Events::Rule``, and the call each target receives."""
    for stack, logical, props in _resources(assembly, "AWS::Events::Rule"):
        values = assembly.values(stack)
        props = values(props)
        name = values.name(logical)
        where = f"{stack}: rule {name}"
        rule = {"Name": name, **{k: v for k, v in props.items() if k not in ("Targets", "Name")}}
        if "EventPattern" in rule:
            rule["EventPattern"] = json.dumps(rule["EventPattern"])
        yield Request(where, "events", "PutRule", rule)
        targets = props.get("Targets", [])
        if targets:
            put_targets = {"Rule": name, "Targets": targets}
            if "EventBusName" in props:
                put_targets["EventBusName"] = props["EventBusName"]
            yield Request(where, "events", "PutTargets", put_targets)
        event = _event(props.get("EventPattern"), "ScheduleExpression" in props, assembly.region)
        for target in targets:
            yield _target_request(target, event, f"{where}, target {target['Id']}")


# ---- Custom::AWS (AwsCustomResource) --------------------------------------------------------


def custom_resource_requests(assembly: Assembly) -> Iterator[Request]:
    """The SDK call of each ``Custom::AWS`` resource's Create, Update and Delete."""
    for stack, logical, props in _resources(assembly, "Custom::AWS"):
        values = assembly.values(stack)
        for event in ("Create", "Update", "Delete"):
            if event not in props:
                continue
            call = json.loads(str(values(props[event])))
            service = call["service"].removeprefix("@aws-sdk/client-").replace("-", "").lower()
            service = _SDK_SERVICES.get(service, service)
            params = call.get("parameters", {})
            if "PHYSICAL:RESOURCEID" in json.dumps(params):
                raise UnknownShape(f"{stack}: {logical} {event} uses the physical id marker (not resolved here)")
            operation = call["action"][:1].upper() + call["action"][1:]
            yield Request(f"{stack}: {logical} ({event})", service, operation, params)


#: Every kind of request, in the order the report lists them.
SOURCES: tuple[Callable[[Assembly], Iterator[Request]], ...] = (
    pipeline_requests,
    state_machine_requests,
    rule_requests,
    custom_resource_requests,
)


def deployed_requests(out_dir: Path, region: str) -> list[Request]:
    """Every request the templates in ``out_dir`` fully determine (see the module docstring)."""
    assembly = Assembly(out_dir, region)
    return [request for source in SOURCES for request in source(assembly)]
