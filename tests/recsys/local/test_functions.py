"""The deployed Lambdas run locally from their cdk.out asset, through ``handler``, with the template's environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.local import streaming
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


# ---- the stream consumer, as its event source mapping invokes it; the API, as API Gateway does ------------------

T0 = 1_700_000_000
CONSUMER = f"{DEV.prefix}-stream-consumer"


def views(user: str, products: list[str], start: int = T0) -> list[dict]:
    return [{"user_id": user, "product_id": p, "event_type": "view", "timestamp": start + i}
            for i, p in enumerate(products)]  # fmt: skip


def test_the_consumer_reads_from_latest_in_batches_of_the_templates_size(aws_env: LocalAws):
    res = streaming.provision_streaming(DEV, aws_env)
    streaming.replay_events(aws_env, res, views("before", ["p0"]))  # on the stream before the mapping exists
    mapping = streaming.enable_mapping(DEV, aws_env, res)
    assert (mapping.properties["StartingPosition"], mapping.batch_size, mapping.bisect) == ("LATEST", 100, True)
    streaming.replay_events(aws_env, res, views("u1", [f"p{i}" for i in range(250)]))
    stats = streaming.poll(aws_env, mapping, res)
    assert (stats.records, stats.batches, stats.failed) == (250, 3, 0)
    assert streaming.recent_items(aws_env, res, "before") == []  # LATEST: not read
    assert streaming.recent_items(aws_env, res, "u1")[:2] == ["p249", "p248"]


def test_a_batch_failing_every_retry_goes_to_the_on_failure_queue_described(aws_env: LocalAws):
    res = streaming.provision_streaming(DEV, aws_env)
    mapping = streaming.enable_mapping(DEV, aws_env, res)
    streaming.replay_events(aws_env, res, views("u1", ["p1", "p2"]))
    aws_env.client("dynamodb").delete_table(TableName=res.names.table)  # every write fails from now on
    stats = streaming.poll(aws_env, mapping, res)
    assert stats.failed == 2 and stats.batches >= 1 + mapping.retries
    sqs = aws_env.client("sqs")
    url = sqs.get_queue_url(QueueName=res.names.failure_queue)["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    info = json.loads(message["Body"])
    assert info["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert info["KinesisBatchInfo"]["streamArn"] == res.stream_arn and info["KinesisBatchInfo"]["batchSize"] >= 1


def test_changing_the_consumers_environment_in_cdk_out_changes_what_it_keeps(aws_env: LocalAws, tmp_path):
    changed = _mutated_copy(tmp_path, CONSUMER, "RECENT_ITEMS_N", "3")
    res = streaming.provision_streaming(DEV, aws_env)
    mapping = streaming.enable_mapping(DEV, aws_env, res, changed)
    streaming.replay_events(aws_env, res, views("u1", ["p1", "p2", "p3", "p4", "p5"]))
    streaming.poll(aws_env, mapping, res)
    assert streaming.recent_items(aws_env, res, "u1") == ["p5", "p4", "p3"]


def test_the_api_function_answers_through_its_handler_with_the_local_endpoint(aws_env: LocalAws):
    """Only InvokeEndpoint is stubbed (moto answers canned results): it posts to the endpoint given."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recs = [{"product_id": p, "score": 1.0} for p in request.get("recent_product_ids", [])]
            body = json.dumps({"user_id": request["user_id"], "recommendations": recs, "strategy": "echo"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Echo)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = streaming.provision_streaming(DEV, aws_env)
        mapping = streaming.enable_mapping(DEV, aws_env, res)
        streaming.replay_events(aws_env, res, views("u1", ["p1", "p2"]))
        streaming.poll(aws_env, mapping, res)
        answer = streaming.recommend_through_api(DEV, aws_env, "u1", 5, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert answer["status"] == 200
    assert [r["product_id"] for r in answer["body"]["recommendations"]] == ["p2", "p1"]
