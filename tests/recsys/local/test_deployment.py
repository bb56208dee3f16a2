"""An endpoint that cannot load its model fails as on AWS, and its state event goes where cdk.out's rules send it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.local.curation import cdk_out
from recsys.local.deployment import route_endpoint_state, start_endpoint
from recsys.local.events import endpoint_state_change, load_rules, route
from settings.config import LOCAL_ACCOUNT, load_project_config

CFG = load_project_config("dev")
BUCKET = "deployment-test-models"
CONFIG = "recsys-dev-recommender-1-test"
TOPIC = f"arn:aws:sns:{CFG.region}:{LOCAL_ACCOUNT}:{CFG.prefix}-alarms"


@pytest.fixture(autouse=True)
def _no_outdir_from_the_environment(monkeypatch):
    monkeypatch.delenv("CDK_OUTDIR", raising=False)


@pytest.fixture
def broken_endpoint(aws_env):
    """The endpoint the deploy function would create, its Model archive not a tar.gz (as a bad package would be)."""
    s3, sm = aws_env.client("s3"), aws_env.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": CFG.region})
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=b"not an archive")
    sm.create_model(ModelName="m1", ExecutionRoleArn=f"arn:aws:iam::{LOCAL_ACCOUNT}:role/r",
                    PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"})  # fmt: skip
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    sm.create_endpoint_config(EndpointConfigName=CONFIG, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m1", "ServerlessConfig": serverless}])  # fmt: skip
    sm.create_endpoint(EndpointName=CFG.endpoint_name, EndpointConfigName=CONFIG)
    return aws_env


def _deploy_template_copy(tmp_path: Path, change) -> Path:  # noqa: ANN001 - a function of the template dict
    out = tmp_path / "cdk.out"
    shutil.copytree(cdk_out(), out, ignore=shutil.ignore_patterns("asset.*"))
    path = out / f"{CFG.prefix}-deploy.template.json"
    template = json.loads(path.read_text())
    change(template["Resources"])
    path.write_text(json.dumps(template))
    return out


def _state_rule(resources: dict) -> str:
    [logical] = [k for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"
                 and r["Properties"].get("EventPattern", {}).get("detail-type") == ["SageMaker Endpoint State Change"]]
    return logical


def test_an_endpoint_whose_model_cannot_load_fails_and_the_deploy_function_reports_it(broken_endpoint, tmp_path):
    started = start_endpoint(broken_endpoint, CONFIG, tmp_path / "endpoint")
    assert started.status == "FAILED" and started.models == {} and "ReadError" in started.failure
    lines = route_endpoint_state(CFG, broken_endpoint, load_rules(CFG, cdk_out()), started)
    assert f"endpoint {CFG.endpoint_name} FAILED" in lines[0] and "function:" in lines[0]
    assert len(lines) == 2 and ": failed" in lines[1] and "deployment failed" in lines[1]
    assert f"endpoint {CFG.endpoint_name} is Failed: ReadError" in lines[1]  # the handler read the local status


def test_without_the_endpoint_state_rule_a_failed_endpoint_runs_nothing(broken_endpoint, tmp_path):
    out = _deploy_template_copy(tmp_path, lambda resources: resources.pop(_state_rule(resources)))
    started = start_endpoint(broken_endpoint, CONFIG, tmp_path / "endpoint")
    lines = route_endpoint_state(CFG, broken_endpoint, load_rules(CFG, out), started)
    assert lines == [f"EventBridge: endpoint {CFG.endpoint_name} FAILED ({started.failure}) -> no rule matches: "
                     "nothing runs on AWS either"]  # fmt: skip


def test_a_rule_retargeted_to_the_alarm_topic_sends_the_failure_there_and_runs_no_function(broken_endpoint, tmp_path):
    def retarget(resources: dict) -> None:
        resources[_state_rule(resources)]["Properties"]["Targets"] = [{"Id": "alarms", "Arn": TOPIC}]

    out = _deploy_template_copy(tmp_path, retarget)
    started = start_endpoint(broken_endpoint, CONFIG, tmp_path / "endpoint")
    lines = route_endpoint_state(CFG, broken_endpoint, load_rules(CFG, out), started)
    topic = TOPIC.split(":", 5)[-1]
    assert len(lines) == 1 and lines[0].endswith(f"-> {CFG.prefix}-deploy/{_state_rule_id(out)} -> {topic}")


def _state_rule_id(out: Path) -> str:
    return _state_rule(json.loads((out / f"{CFG.prefix}-deploy.template.json").read_text())["Resources"])


def test_the_template_routes_in_service_and_failed_endpoint_events_but_not_creating(broken_endpoint):
    endpoint = broken_endpoint.client("sagemaker").describe_endpoint(EndpointName=CFG.endpoint_name)
    rules = load_rules(CFG, cdk_out())
    assert [r.kind for r in route(rules, endpoint_state_change(endpoint, "IN_SERVICE", CFG.region))] == ["function"]
    assert [r.kind for r in route(rules, endpoint_state_change(endpoint, "FAILED", CFG.region))] == ["function"]
    assert route(rules, endpoint_state_change(endpoint, "CREATING", CFG.region)) == []
