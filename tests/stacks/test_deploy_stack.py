"""CDK assertions on the deploy stack: the Lambda, its triggers, DLQ, rollback alarms and IAM scoping."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from lambdas.deploy_endpoint.handler import Settings
from stacks.config import load_project_config
from stacks.deploy_stack import ERRORS_5XX_THRESHOLD, alarm_names
from tests.stacks.conftest import resources

pytestmark = pytest.mark.xdist_group("synth")
DEV, PROD = load_project_config("dev"), load_project_config("prod")


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev")[1][f"{DEV.prefix}-deploy"]


@pytest.fixture(scope="module")
def prod(synth):
    return synth("prod")[1][f"{PROD.prefix}-deploy"]


def _function(t) -> dict:
    [fn] = resources(t, "AWS::Lambda::Function").values()
    return fn["Properties"]


def _statements(t, role_prefix: str) -> list[dict]:
    return [
        s
        for logical_id, p in resources(t, "AWS::IAM::Policy").items()
        if logical_id.startswith(role_prefix)
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else a


def test_lambda_runs_python_312_alone_with_dlq_and_its_own_log_group(dev):
    props = _function(dev)
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "handler.handler"
    assert props["ReservedConcurrentExecutions"] == 1
    assert "TargetArn" in props["DeadLetterConfig"]
    assert "LogGroup" in props["LoggingConfig"]
    dev.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": f"/aws/lambda/{DEV.prefix}-deploy-endpoint", "RetentionInDays": 30}
    )
    dev.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": f"/aws/sagemaker/Endpoints/{DEV.endpoint_name}", "RetentionInDays": 30}
    )
    dev.has_resource_properties("AWS::Lambda::EventInvokeConfig", {"MaximumRetryAttempts": 2})


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_lambda_environment_is_a_valid_handler_configuration(synth, env_name):
    cfg = DEV if env_name == "dev" else PROD
    env = _function(synth(env_name)[1][f"{cfg.prefix}-deploy"])["Environment"]["Variables"]
    literal = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = Settings.from_env({**literal, "EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/r"})
    assert settings.endpoint_name == cfg.endpoint_name
    assert settings.model_package_group == cfg.model_package_group
    assert settings.serverless is cfg.serverless_endpoint
    assert settings.instance_type == cfg.endpoint_instance_type
    assert list(settings.rollback_alarms) == list(alarm_names(cfg).values())
    assert "Fn::GetAtt" in env["EXECUTION_ROLE_ARN"]


def test_approval_rule_matches_this_group_approved_packages_with_retries_and_dlq(dev):
    dev.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {"ModelPackageGroupName": [DEV.model_package_group], "ModelApprovalStatus": ["Approved"]},
            },
            "Targets": [
                Match.object_like(
                    {
                        "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
                        "DeadLetterConfig": {"Arn": Match.any_value()},
                    }
                )
            ],
        },
    )


def test_endpoint_state_rule_sends_in_service_and_failed_states_for_both_endpoint_kinds(dev, prod):
    """Serverless endpoints roll back too, so both get the rule (the Lambda judges the deployment)."""
    statuses = ["IN_SERVICE", "FAILED", "UPDATE_ROLLBACK_FAILED"]
    for template, cfg in ((dev, DEV), (prod, PROD)):
        template.has_resource_properties(
            "AWS::Events::Rule",
            {
                "EventPattern": Match.object_like(
                    {
                        "detail-type": ["SageMaker Endpoint State Change"],
                        "detail": {"EndpointName": [cfg.endpoint_name], "EndpointStatus": statuses},
                    }
                )
            },
        )


def test_dlq_is_encrypted_and_tls_only(dev):
    dev.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600})
    policy = json.dumps(resources(dev, "AWS::SQS::QueuePolicy"))
    assert '"aws:SecureTransport": "false"' in policy


def test_rollback_alarms_watch_5xx_and_p99_latency_of_the_endpoint(dev):
    dims = [{"Name": "EndpointName", "Value": DEV.endpoint_name}, {"Name": "VariantName", "Value": "AllTraffic"}]
    dev.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": alarm_names(DEV)["errors"],
            "MetricName": "Invocation5XXErrors",
            "Namespace": "AWS/SageMaker",
            "Dimensions": dims,
            "Statistic": "Sum",
            "Threshold": ERRORS_5XX_THRESHOLD,
            "TreatMissingData": "notBreaching",
        },
    )
    dev.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": alarm_names(DEV)["latency"],
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            "Dimensions": dims,
            "Threshold": DEV.alarm_latency_p99_ms * 1000,
        },
    )


def test_deployer_role_is_scoped_to_this_endpoint_its_names_and_the_execution_role(dev):
    statements = _statements(dev, "DeployerRole")
    by_action = {a: s for s in statements for a in _actions(s)}
    text = json.dumps(by_action["sagemaker:UpdateEndpoint"]["Resource"])
    assert f":endpoint/{DEV.endpoint_name}" in text and f":endpoint-config/{DEV.endpoint_name}-*" in text
    assert f":model/{DEV.endpoint_name}-*" in json.dumps(by_action["sagemaker:CreateModel"]["Resource"])
    package = json.dumps(by_action["sagemaker:DescribeModelPackage"]["Resource"])
    assert f":model-package/{DEV.model_package_group}/*" in package
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "ModelExecutionRole" in json.dumps(pass_role["Resource"])
    assert all(not a.endswith(":*") and a != "*" for s in statements for a in _actions(s))
    assert not any(a.startswith("sagemaker:Delete") for s in statements for a in _actions(s))


def test_model_execution_role_reads_only_pipeline_artefacts(dev):
    statements = _statements(dev, "ModelExecutionRole")
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert s3 and all("s3:PutObject" not in _actions(s) and "s3:DeleteObject*" not in _actions(s) for s in s3)
    assert "/pipeline/*" in json.dumps([s["Resource"] for s in s3])
    assert any("kms:Decrypt" in _actions(s) for s in statements)
    dev.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]}
            )
        },
    )
