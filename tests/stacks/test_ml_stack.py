"""The ML stack: registry, pipeline (definition from pipeline_steps), least-privilege role, triggers."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


@pytest.fixture(scope="module")
def ml(synth):
    _, templates = synth("dev")
    return templates["recsys-dev-ml"]


@pytest.fixture(scope="module")
def cfg():
    return load_project_config("dev")


def _pipeline(template) -> dict:
    (pipeline,) = resources(template, "AWS::SageMaker::Pipeline").values()
    return pipeline["Properties"]


def _definition(template) -> tuple[dict, dict]:
    body, variables = _pipeline(template)["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    return json.loads(body), variables


def test_model_package_group_is_named_by_the_config(ml, cfg):
    ml.has_resource_properties("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": cfg.model_package_group})


def test_pipeline_definition_comes_from_pipeline_steps_with_deploy_time_values_substituted(ml, cfg):
    props = _pipeline(ml)
    assert props["PipelineName"] == cfg.pipeline_name
    assert props["RoleArn"]["Fn::GetAtt"][0].startswith("PipelineRole")
    definition, variables = _definition(ml)
    assert [s["Name"] for s in definition["Steps"]] == [
        "PrepareData",
        "TrainModel",
        "EvaluateModel",
        "PublishMetrics",
        "CheckQuality",
    ]
    assert set(variables) == {"PipelineRoleName", "DataBucket", "DataKeyArn", "CodeBucket", "CodeKey"}
    text = json.dumps(definition)
    for name in variables:
        assert "${" + name + "}" in text
    params = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert params["InputDataUri"] == "s3://${DataBucket}/training/"
    assert params["ModelApprovalStatus"] == "Approved"  # dev: model_approval auto
    # Inline body: CloudFormation must substitute account-specific names; keep well under the 1 MB limits.
    assert len(_pipeline(ml)["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0]) < 100_000


def test_pipeline_role_may_publish_only_the_projects_metrics_and_model_rows(ml):
    statements = [
        st
        for policy in resources(ml, "AWS::IAM::Policy").values()
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (metrics,) = [st for st in statements if st["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "RecSys/MLOps"}}
    puts = [st for st in statements if "s3:PutObject" in st["Action"]]
    assert any("monitoring/model_metrics/*" in json.dumps(st["Resource"]) for st in puts)


def test_code_archive_is_an_s3_asset(synth):
    outdir, _ = synth("dev")
    manifest = json.loads((outdir / "recsys-dev-ml.assets.json").read_text())
    packaging = [f["source"].get("packaging") for f in manifest["files"].values()]
    assert "file" in packaging  # sourcedir.tar.gz uploaded as-is (a directory asset would be zipped)


def test_prod_registers_models_pending_manual_approval(synth):
    _, templates = synth("prod")
    definition, _ = _definition(templates["recsys-prod-ml"])
    params = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert params["ModelApprovalStatus"] == "PendingManualApproval"
    assert params["QualityThreshold"] == load_project_config("prod").quality_threshold_ndcg_at_10


def _statements(template, role_prefix: str) -> list[dict]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"]]
        if any(r.startswith(role_prefix) for r in roles):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _resources_of(statement: dict) -> list:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


def test_pipeline_role_is_scoped_to_named_prefixes_group_logs_and_itself(ml, cfg):
    statements = _statements(ml, "PipelineRole")
    assert statements
    text = json.dumps(statements)
    star = [s for s in statements if "*" in _resources_of(s)]
    assert [s["Action"] for s in star] == ["cloudwatch:PutMetricData", "ecr:GetAuthorizationToken"]
    s3_resources = {
        json.dumps(r)
        for s in statements
        if any(a.startswith("s3:") for a in _listify(s["Action"]))
        for r in _resources_of(s)
    }
    # Objects: four prefixes of the data bucket and the one code archive; buckets: for listing only.
    buckets = {r for r in s3_resources if r.endswith('-ap-south-1"]]}') or r.endswith('-ap-south-1"}]]}')}
    objects = s3_resources - buckets
    assert len(objects) == 5, objects
    assert sum(r.endswith('/training/*"]]}') for r in objects) == 1
    assert sum(r.endswith('/monitoring/model_metrics/*"]]}') for r in objects) == 1
    assert sum(r.endswith('/batch/*"]]}') for r in objects) == 1
    assert sum(r.endswith('/pipeline/*"]]}') for r in objects) == 1
    assert sum("cdk-" in r and r.endswith('.gz"]]}') for r in objects) == 1  # the archive, not the bootstrap bucket
    assert not any(r.endswith('/*"]]}') and "cdk-" in r for r in s3_resources)
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"]["Fn::GetAtt"][0].startswith("PipelineRole")
    assert f"model-package-group/{cfg.model_package_group}" in text
    assert f"model-package/{cfg.model_package_group}/*" in text
    assert "log-group:/aws/sagemaker/*" in text
    assert "kms:Decrypt" in text
    assert "DataKey" in text


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def test_pipeline_role_is_assumed_by_sagemaker_only(ml):
    ml.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]}
            )
        },
    )


def test_curation_success_and_a_schedule_start_the_pipeline(ml, cfg):
    rules = list(resources(ml, "AWS::Events::Rule").values())
    on_success = [r for r in rules if "EventPattern" in r["Properties"]]
    scheduled = [r for r in rules if "ScheduleExpression" in r["Properties"]]
    assert len(on_success) == 1 and len(scheduled) == 1
    pattern = on_success[0]["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["status"] == ["SUCCEEDED"]
    assert "CurationWorkflow" in json.dumps(pattern["detail"]["stateMachineArn"])
    for rule in on_success + scheduled:
        (target,) = rule["Properties"]["Targets"]
        assert f":pipeline/{cfg.pipeline_name}" in json.dumps(target["Arn"])
    (start,) = [s for s in _statements(ml, "StartPipelineRole")]
    assert start["Action"] == "sagemaker:StartPipelineExecution"
    assert f":pipeline/{cfg.pipeline_name}" in json.dumps(start["Resource"])
