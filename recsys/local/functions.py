"""The deployed Lambdas, run locally as deployed: the code of the function's ``cdk.out`` asset, its ``handler``, and
the environment of its synthesized template (CloudFormation references resolved to the local names).

moto cannot invoke a Lambda (no Docker), so :func:`invoke` does what the Lambda service does: it imports the
asset's handler module, sets the function's environment (plus the variables that point boto3 at the local AWS),
and calls ``handler(event, context)``. Where moto lacks a service call the function makes, only that call is
stubbed, by name (``stubs``: ``"sagemaker.UpdateEndpoint"`` -> a function of the request returning the answer),
through botocore's ``before-call`` event, so the function's own client and request code still run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from recsys.local.curation import Resolver, cdk_out, stack_templates
from recsys.local.moto_server import LocalAws
from settings.config import Config

#: A stubbed call: the request's parameters -> the answer botocore parses as the service's.
Stub = Callable[[dict[str, Any]], dict[str, Any]]


class FunctionNotFoundError(LookupError):
    """No function of that name in the synthesized templates."""


@dataclass(frozen=True)
class LocalFunction:
    """One ``AWS::Lambda::Function`` of ``cdk.out``: where its code is and what it is configured with."""

    name: str  # FunctionName
    stack: str
    logical_id: str
    code_dir: Path  # cdk.out/asset.<hash>: the bundle CloudFormation uploads
    handler: str  # "handler.handler": module.attribute
    environment: dict[str, str]  # Environment.Variables, resolved
    properties: dict[str, Any] = field(repr=False, default_factory=dict)  # every property, resolved
    event_sources: tuple[dict[str, Any], ...] = ()  # its AWS::Lambda::EventSourceMapping properties, resolved


class _LocalResolver(Resolver):
    """Also gives IAM roles, KMS keys and Kinesis streams ARNs of their kind, and queues their URL (Ref)."""

    def _ref(self, name: str) -> str:
        resource = self.template["Resources"].get(name, {})
        if resource.get("Type") == "AWS::SQS::Queue":  # Ref of a queue is its URL
            region, account = self.pseudo["AWS::Region"], self.pseudo["AWS::AccountId"]
            return f"https://sqs.{region}.amazonaws.com/{account}/{self._name(name)[1]}"
        return super()._ref(name)

    def _get_att(self, logical: str, attr: str) -> str:
        resource = self.template["Resources"].get(logical, {})
        region, account = self.pseudo["AWS::Region"], self.pseudo["AWS::AccountId"]
        if attr == "Arn" and resource.get("Type") == "AWS::IAM::Role":
            return f"arn:aws:iam::{account}:role/{logical}"
        if attr == "Arn" and resource.get("Type") == "AWS::KMS::Key":
            return f"arn:aws:kms:{region}:{account}:key/{logical}"
        if attr == "Arn" and resource.get("Type") == "AWS::Kinesis::Stream":
            return f"arn:aws:kinesis:{region}:{account}:stream/{self._name(logical)[1]}"
        return super()._get_att(logical, attr)


def find_function(cfg: Config, name: str, out_dir: Path | None = None) -> LocalFunction:
    """The function named ``name`` (its FunctionName) in the environment's templates of ``out_dir`` (cdk.out)."""
    out_dir = Path(out_dir or cdk_out())
    templates = stack_templates(cfg, out_dir)
    exports = {
        output["Export"]["Name"]: (output["Value"], doc)
        for doc in templates.values()
        for output in doc.get("Outputs", {}).values()
        if "Export" in output
    }
    for stack, doc in templates.items():
        resolve = _LocalResolver(doc, cfg.region, exports=exports)
        for logical_id, resource in doc["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function" or resource["Properties"].get("FunctionName") != name:
                continue
            asset = resource.get("Metadata", {}).get("aws:asset:path")
            if not asset or not (out_dir / asset).is_dir():
                raise FileNotFoundError(
                    f"{out_dir}: function {name} has no code asset folder ({asset}); run make synth"
                )
            props = resolve(resource["Properties"])
            sources = tuple(
                resolve(r["Properties"])
                for r in doc["Resources"].values()
                if r["Type"] == "AWS::Lambda::EventSourceMapping"
                and r["Properties"].get("FunctionName") in ({"Ref": logical_id}, name)
            )
            env = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
            return LocalFunction(name, stack, logical_id, out_dir / asset, props["Handler"], env, props, sources)
    raise FunctionNotFoundError(f"no Lambda function {name!r} in {out_dir}/{cfg.prefix}-*.template.json")


def load_module(function: LocalFunction, container: str = "") -> ModuleType:
    """The asset's handler module, imported from the asset folder under a private name (never the project's copy),
    once per ``container`` (a warm Lambda container keeps its module-level clients: one per local AWS here)."""
    module_name, _, _ = function.handler.rpartition(".")
    path = function.code_dir / f"{module_name.replace('.', '/')}.py"
    tag = f"{function.code_dir.name[-12:]}_{abs(hash(container)):x}"
    private = f"_recsys_lambda_{function.name.replace('-', '_')}_{tag}"
    if private in sys.modules:
        return sys.modules[private]
    spec = importlib.util.spec_from_file_location(private, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot load the handler of {function.name}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(function.code_dir))  # the bundle's own modules, as the Lambda runtime puts them
    sys.modules[private] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[private]
        raise
    finally:
        sys.path.remove(str(function.code_dir))
    return module


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stub_handler(stub: Stub) -> Callable[..., tuple[AWSResponse, dict[str, Any]]]:
    def before_call(params: dict[str, Any], context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        answer = stub(context["recsys_request"])
        return AWSResponse("local://stub", 200, {}, None), {**answer, "ResponseMetadata": {"HTTPStatusCode": 200}}

    return before_call


def _remember_request(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["recsys_request"] = dict(params)


def invoke(
    function: LocalFunction,
    event: Any,
    aws: LocalAws,
    *,
    stubs: Mapping[str, Stub] | None = None,
    environment: Mapping[str, str] | None = None,
) -> Any:
    """``handler(event, context)`` of the asset, with the template's environment (``environment`` overrides
    variables, for what the rehearsal must change and says so) and boto3 pointed at the local AWS."""
    module = load_module(function, aws.url)
    module_name, _, attribute = function.handler.rpartition(".")
    entry = getattr(module, attribute)
    session = aws.session()
    for operation, stub in (stubs or {}).items():
        service, _, name = operation.partition(".")
        session.events.register(f"before-parameter-build.{service}.{name}", _remember_request)
        session.events.register(f"before-call.{service}.{name}", _stub_handler(stub))
    values = {
        **function.environment,
        **(environment or {}),
        **aws.env(),
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
    }
    context = SimpleNamespace(
        function_name=function.name, aws_request_id="local", get_remaining_time_in_millis=lambda: 60_000
    )
    saved_session = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = session  # the handler's boto3.client(...) calls: fake credentials, the local region
    try:
        with _environment(values):
            return entry(event, context)
    finally:
        boto3.DEFAULT_SESSION = saved_session
