"""The deployed Lambdas run locally from their cdk.out asset, through ``handler``, with the template's environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.local.curation import cdk_out
from recsys.local.functions import FunctionNotFoundError, find_function, invoke
from recsys.local.moto_server import LocalAws
from settings.config import load_project_config

DEV = load_project_config("dev")
DEPLOY = f"{DEV.prefix}-deploy-endpoint"
IMAGE = "720646828776.dkr.ecr.ap-south-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def approval(aws: LocalAws) -> dict:
    """An Approved package in the dev group, and the event SageMaker sends for it."""
    sm = aws.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=DEV.model_package_group)
    arn = sm.create_model_package(
        ModelPackageGroupName=DEV.model_package_group,
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/pipeline/1/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
    detail = {
        "ModelPackageGroupName": DEV.model_package_group,
        "ModelPackageArn": arn,
        "ModelApprovalStatus": "Approved",
    }
    return {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change", "detail": detail}


def test_the_deploy_function_is_found_with_its_asset_and_resolved_environment():
    function = find_function(DEV, DEPLOY)
    assert function.code_dir.parent == cdk_out() and function.code_dir.name.startswith("asset.")
    assert (function.code_dir / "handler.py").is_file() and function.handler == "handler.handler"
    assert function.environment["ENDPOINT_NAME"] == DEV.endpoint_name
    assert function.environment["EXECUTION_ROLE_ARN"].startswith("arn:aws:iam::")  # a GetAtt, resolved
    assert function.environment["CAPTURE_S3_URI"].startswith("s3://recsys-dev-curated-")  # an Fn::Join, resolved
    with pytest.raises(FunctionNotFoundError, match="no Lambda function 'nope'"):
        find_function(DEV, "nope")


def test_the_deploy_function_creates_the_endpoint_through_its_handler(aws_env: LocalAws):
    result = invoke(find_function(DEV, DEPLOY), approval(aws_env), aws_env)
    assert result["action"] == "created"
    sm = aws_env.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName=DEV.endpoint_name)[
        "EndpointConfigName"])  # fmt: skip
    assert config["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 2048


def _mutated_copy(tmp_path: Path, function: str, variable: str, value: str) -> Path:
    """The environment's templates and the function's asset, copied, with one environment variable changed."""
    source = cdk_out()
    found = find_function(DEV, function, source)
    for path in source.glob(f"{DEV.prefix}-*.template.json"):
        doc = json.loads(path.read_text())
        if path.name == f"{found.stack}.template.json":
            doc["Resources"][found.logical_id]["Properties"]["Environment"]["Variables"][variable] = value
        (tmp_path / path.name).write_text(json.dumps(doc))
    shutil.copytree(found.code_dir, tmp_path / found.code_dir.name)
    return tmp_path


def test_changing_the_deploy_functions_environment_in_cdk_out_changes_what_it_deploys(aws_env: LocalAws, tmp_path):
    changed = _mutated_copy(tmp_path, DEPLOY, "SERVERLESS_MEMORY_MB", "3072")
    invoke(find_function(DEV, DEPLOY, changed), approval(aws_env), aws_env)
    sm = aws_env.client("sagemaker")
    name = sm.describe_endpoint(EndpointName=DEV.endpoint_name)["EndpointConfigName"]
    assert sm.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]["ServerlessConfig"][
        "MemorySizeInMB"] == 3072  # fmt: skip


def test_a_stub_answers_only_the_call_moto_lacks(aws_env: LocalAws):
    """moto has no UpdateEndpoint: a second approval's update is answered by the stub, which sees the request."""
    function = find_function(DEV, DEPLOY)
    invoke(function, approval(aws_env), aws_env)
    sm = aws_env.client("sagemaker")
    second = sm.create_model_package(
        ModelPackageGroupName=DEV.model_package_group,
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/pipeline/2/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
    detail = {
        "ModelPackageGroupName": DEV.model_package_group,
        "ModelPackageArn": second,
        "ModelApprovalStatus": "Approved",
    }
    updates: list[dict] = []

    def update_endpoint(request: dict) -> dict:
        updates.append(request)
        return {"EndpointArn": sm.describe_endpoint(EndpointName=request["EndpointName"])["EndpointArn"]}

    result = invoke(
        function,
        {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change", "detail": detail},
        aws_env,
        stubs={"sagemaker.UpdateEndpoint": update_endpoint},
    )
    assert result["action"] == "updated"
    [request] = updates
    assert request["EndpointConfigName"] == result["endpoint_config_name"] and "DeploymentConfig" in request
