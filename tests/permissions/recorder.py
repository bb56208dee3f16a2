"""Records the AWS calls each deployed Lambda's code makes while its own tests run.

A botocore event hook (``before-parameter-build``) on every client the test uses sees each call's service,
operation and parameters; the call is attributed to the function whose code (``lambdas/<function>/``) is on the
stack, so a test's own set-up calls are not recorded. Each call becomes (function, IAM action, resource): the
resource from the parameters (bucket/key, table, queue URL, endpoint name, ...).

The record is ``lambda_calls.json`` beside this file, committed. Each Lambda test checks that what it recorded is
in the record (so a new call fails the test that makes it, whatever the test order); with
``RECSYS_RECORD_LAMBDA_CALLS=<file>`` the calls are appended to that file instead, which is how the record is
written (``python -m tests.permissions.recorder``) and how ``test_lambda_record.py`` checks it is exact.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.stub import Stubber

from settings.config import PROJECT_ROOT

RECORD = Path(__file__).with_name("lambda_calls.json")
ENV_OUT = "RECSYS_RECORD_LAMBDA_CALLS"
LAMBDAS = PROJECT_ROOT / "lambdas"
#: The tests that run the Lambdas' code (the record is exactly what they call).
LAMBDA_TESTS = ("tests/lambdas", "tests/erasure")
HOOK_ID = "recsys-permissions-recorder"

Entry = tuple[str, str, str, str]  # (function folder, IAM action, resource, request context as sorted JSON)
Authorization = tuple[str, str, dict[str, str]]  # (IAM action, resource, condition keys the request carries)

#: botocore service name -> IAM service prefix, where they differ.
IAM_PREFIX = {"sagemaker-runtime": "sagemaker", "monitoring": "cloudwatch"}


def _function_on_stack() -> str | None:
    """The ``lambdas/<function>`` whose deployed code made this call: its module ``handler.py`` (the entry point the
    Lambda runs) is on the stack. A helper of the same folder that only tests or the local run call (the erasure's
    verification scan) is not the function's call."""
    for frame in inspect.stack(context=0):
        path = Path(frame.filename)
        if path.is_relative_to(LAMBDAS) and path.name == "handler.py" and len(path.relative_to(LAMBDAS).parts) == 2:
            return path.relative_to(LAMBDAS).parts[0]
    return None


def _arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def iam_calls(service: str, operation: str, params: dict[str, Any], region: str, account: str) -> list[Authorization]:
    """(IAM action, resource ARN, condition context) that authorize one API call (Service Authorization Reference).
    Calls whose IAM action or resource differs from ``<prefix>:<Operation>`` on the named resource are spelled out;
    the context holds the condition keys this project's policies test."""
    found = _iam_calls(service, operation, params, region, account)
    return [(action, resource, rest[0] if rest else {}) for action, resource, *rest in found]


def _iam_calls(service: str, operation: str, params: dict[str, Any], region: str, account: str) -> list[tuple]:
    prefix = IAM_PREFIX.get(service, service)
    if service == "s3":
        bucket, key = params.get("Bucket", ""), params.get("Key")
        versioned = "VersionId" in params
        by_operation = {
            "GetObject": "s3:GetObjectVersion" if versioned else "s3:GetObject",
            "HeadObject": "s3:GetObjectVersion" if versioned else "s3:GetObject",
            "PutObject": "s3:PutObject",
            "DeleteObject": "s3:DeleteObjectVersion" if versioned else "s3:DeleteObject",
            "ListObjectsV2": "s3:ListBucket",
            "ListObjects": "s3:ListBucket",
            "ListObjectVersions": "s3:ListBucketVersions",
            "HeadBucket": "s3:ListBucket",
            "ListBuckets": "s3:ListAllMyBuckets",
            "CreateMultipartUpload": "s3:PutObject",
            "UploadPart": "s3:PutObject",
            "CompleteMultipartUpload": "s3:PutObject",
            "AbortMultipartUpload": "s3:AbortMultipartUpload",
        }
        if operation == "DeleteObjects":
            objects = params.get("Delete", {}).get("Objects", [])
            return [(_delete_action(o), f"arn:aws:s3:::{bucket}/{o['Key']}") for o in objects]
        if operation == "CopyObject":
            source = params["CopySource"]
            source = source if isinstance(source, str) else f"{source['Bucket']}/{source['Key']}"
            source_arn = f"arn:aws:s3:::{source.split('?')[0]}"
            return [("s3:GetObject", source_arn), ("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")]
        action = by_operation.get(operation, f"s3:{operation}")
        if not bucket:
            return [(action, "*")]
        if operation.startswith("List") and "Prefix" in params:  # the s3:prefix condition key
            return [(action, f"arn:aws:s3:::{bucket}", {"s3:prefix": params["Prefix"]})]
        return [(action, f"arn:aws:s3:::{bucket}/{key}" if key is not None else f"arn:aws:s3:::{bucket}")]
    if service == "dynamodb":
        tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
        return [(f"dynamodb:{operation}", _arn("dynamodb", region, account, f"table/{t}")) for t in tables]
    if service == "sqs":
        url = params["QueueUrl"].rstrip("/").split("/")
        action = operation.removesuffix("Batch")  # SendMessageBatch is authorized as sqs:SendMessage
        return [(f"sqs:{action}", _arn("sqs", region, url[-2], url[-1]))]
    if service in ("sagemaker", "sagemaker-runtime"):
        return _sagemaker_calls(operation, params, region, account)
    if service == "application-autoscaling":
        # Scalable targets get a generated ARN only when registered; the Describe calls take no resource.
        if operation.startswith("Describe"):
            return [(f"application-autoscaling:{operation}", "*")]
        context = {"application-autoscaling:service-namespace": params["ServiceNamespace"],
                   "application-autoscaling:scalable-dimension": params["ScalableDimension"]}  # fmt: skip
        target = _arn("application-autoscaling", region, account, "scalable-target/<generated-id>")
        return [(f"application-autoscaling:{operation}", target, context)]
    if service == "cloudwatch" and operation == "DescribeAlarms":
        return [("cloudwatch:DescribeAlarms", "*")]
    return [(f"{prefix}:{operation}", "*")]


def _delete_action(target: dict[str, Any]) -> str:
    return "s3:DeleteObjectVersion" if "VersionId" in target else "s3:DeleteObject"


def _sagemaker_calls(operation: str, params: dict[str, Any], region: str, account: str) -> list[tuple]:
    """SageMaker ARNs use the lower-cased resource name."""
    calls = _sagemaker_resources(operation, params, region, account)
    if operation.startswith("Create") and params.get("Tags"):  # tagging on create is authorized as AddTags too
        created = [resource for action, resource, *_ in calls if action == f"sagemaker:{operation}"]
        calls += [("sagemaker:AddTags", resource) for resource in created]
    return calls


def _sagemaker_resources(operation: str, params: dict[str, Any], region: str, account: str) -> list[tuple]:
    def arn(kind: str, name: str) -> str:
        return _arn("sagemaker", region, account, f"{kind}/{name.lower()}")

    if "ResourceArn" in params:
        return [(f"sagemaker:{operation}", params["ResourceArn"])]
    if "ModelPackageName" in params or "ModelPackageArn" in params:
        return [(f"sagemaker:{operation}", params.get("ModelPackageName") or params["ModelPackageArn"])]
    calls: list[tuple] = []
    if operation in ("CreateEndpointConfig", "DescribeEndpointConfig"):
        calls.append((f"sagemaker:{operation}", arn("endpoint-config", params["EndpointConfigName"])))
        if params.get("KmsKeyId"):  # SageMaker checks the caller may use the volume key (CreateGrant, DescribeKey)
            calls += [("kms:CreateGrant", params["KmsKeyId"], {"kms:GrantIsForAWSResource": "true"}),
                      ("kms:DescribeKey", params["KmsKeyId"])]  # fmt: skip
    elif "EndpointName" in params:
        calls.append((f"sagemaker:{operation}", arn("endpoint", params["EndpointName"])))
        if "EndpointConfigName" in params:
            calls.append((f"sagemaker:{operation}", arn("endpoint-config", params["EndpointConfigName"])))
    elif "ModelName" in params:
        calls.append((f"sagemaker:{operation}", arn("model", params["ModelName"])))
        if "ExecutionRoleArn" in params:
            passed = {"iam:PassedToService": "sagemaker.amazonaws.com"}
            calls.append(("iam:PassRole", params["ExecutionRoleArn"], passed))
    else:
        calls.append((f"sagemaker:{operation}", "*"))
    return calls


class Recording:
    """The calls recorded in this test, and the hook that records them."""

    def __init__(self) -> None:
        self.entries: set[Entry] = set()

    def hook(self, params: dict[str, Any], model: Any, region: str = "", **_: Any) -> None:
        function = _function_on_stack()
        if function is None:
            return
        service = model.service_model.service_name
        account = "123456789012"  # moto's default account (tests/permissions/templates.py: ACCOUNT)
        for action, resource, context in iam_calls(service, model.name, params, region, account):
            context = {key: _generalise(value) for key, value in context.items()}
            self.entries.add((function, action, _generalise(resource), json.dumps(context, sort_keys=True)))


#: Parts of a resource that differ per run (S3 keys under a dated or generated folder): kept as a wildcard-free
#: shape so the record is stable; the ``<...>`` placeholders mark what varies. ``<date>``: today's date in a key
#: (the erasure audit's ``erasure/audit/<yyyy-mm-dd>/``), or the record would fail the day after it was written.
_VARYING = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b"), "<date>"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"), "<hex>"),  # digests in generated names
]


def _generalise(resource: str) -> str:
    for pattern, placeholder in _VARYING:
        resource = pattern.sub(placeholder, resource)
    return resource


def answering(service: str, operation: str, response: dict[str, Any], region: str = "ap-south-1") -> Callable[..., Any]:
    """``client.<operation>`` of a real botocore client that answers ``response`` without sending anything: for an
    API moto does not serve (UpdateEndpoint, InvokeEndpoint). The request still goes through botocore, so it is
    validated against the API model and recorded like any other call."""
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    ).client(service)
    stubber = Stubber(client)
    stubber.activate()
    method = getattr(client, operation)

    def call(**request: Any) -> Any:
        stubber.add_response(operation, response)
        return method(**request)

    return call


def load_record() -> set[Entry]:
    return {tuple(e) for e in json.loads(RECORD.read_text())} if RECORD.exists() else set()  # type: ignore[misc]


@pytest.fixture(autouse=True)
def record_lambda_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recording]:
    """Install the hook on every client this test calls (also clients cached before it), then check or write."""
    recording = Recording()
    original = botocore.client.BaseClient._make_api_call

    def make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        hook = functools.partial(recording.hook, region=client.meta.region_name)
        client.meta.events.register("before-parameter-build.*.*", hook, unique_id=HOOK_ID)
        try:
            return original(client, operation_name, api_params)
        finally:
            client.meta.events.unregister("before-parameter-build.*.*", unique_id=HOOK_ID)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    yield recording
    out = os.environ.get(ENV_OUT)
    if out:
        with open(out, "a") as f:
            f.writelines(json.dumps(list(e)) + "\n" for e in sorted(recording.entries))
        return
    missing = recording.entries - load_record()
    assert not missing, (
        f"calls not in {RECORD.relative_to(PROJECT_ROOT)} (the permissions test checks them against the templates): "
        f"{sorted(missing)}; rewrite the record with: python -m tests.permissions.recorder"
    )


def record_calls(path: Path) -> set[Entry]:
    """Run the Lambda tests in a subprocess with the hook appending to ``path``; the calls they made."""
    path.unlink(missing_ok=True)
    path.touch()
    env = {**os.environ, ENV_OUT: str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *LAMBDA_TESTS],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the Lambda tests failed while recording:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return {tuple(json.loads(line)) for line in path.read_text().splitlines() if line}  # type: ignore[misc]


def main(argv: list[str] | None = None) -> None:
    """Rewrite ``lambda_calls.json`` from a run of the Lambda tests."""
    import argparse

    argparse.ArgumentParser(description=f"Rewrite {RECORD.name}: the AWS calls each Lambda's tests make").parse_args(
        argv
    )
    scratch = PROJECT_ROOT / "out" / "lambda_calls.jsonl"
    scratch.parent.mkdir(exist_ok=True)
    entries = record_calls(scratch)
    RECORD.write_text("[\n" + ",\n".join(json.dumps(list(e)) for e in sorted(entries)) + "\n]\n")
    print(f"{RECORD.relative_to(PROJECT_ROOT)}: {len(entries)} calls")


if __name__ == "__main__":
    main()
