"""CDK assertions on the deploy stack: the Lambda, its triggers, DLQ, rollback alarms and IAM scoping."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from lambdas.deploy_endpoint.handler import SCALABLE_DIMENSION, Settings, deployable_variants, rollback_alarms_for
from settings.config import load_project_config
from stacks.deploy_stack import ERRORS_5XX_THRESHOLD, alarm_names
from stacks.factories.storage import deploy_dlq_name
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]
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
    tokens = {
        "EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/r",
        "ENDPOINT_KMS_KEY_ARN": "arn:aws:kms:r:1:key/k",
        "CAPTURE_S3_URI": "s3://bucket/capture",  # a Fn::Join of the account's bucket name
    }
    settings = Settings.from_env({**literal, **tokens})
    assert settings.endpoint_name == cfg.endpoint_name
    assert settings.experiment_mode == cfg.experiment_mode
    assert settings.model_package_group == cfg.model_package_group
    assert settings.serverless is cfg.serverless_endpoint
    assert settings.instance_type == cfg.endpoint_instance_type
    assert list(settings.rollback_alarms) == list(alarm_names(cfg).values())
    assert "Fn::GetAtt" in env["EXECUTION_ROLE_ARN"]
    assert "DataKey" in json.dumps(env["ENDPOINT_KMS_KEY_ARN"])  # endpoint configs' KmsKeyId: the data key


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


def _data_key_arn(props_value) -> bool:
    """A reference to the data stack's key (exported from recsys-<env>-data)."""
    text = json.dumps(props_value)
    return "Fn::ImportValue" in text and "DataKey" in text


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_dlq_is_encrypted_with_the_data_key_and_tls_only(synth, env_name):
    cfg = DEV if env_name == "dev" else PROD
    t = synth(env_name)[1][f"{cfg.prefix}-deploy"]
    [queue] = resources(t, "AWS::SQS::Queue").values()
    props = queue["Properties"]
    assert props["QueueName"] == deploy_dlq_name(cfg)  # the name the data key's policy admits EventBridge for
    assert _data_key_arn(props["KmsMasterKeyId"])
    assert "SqsManagedSseEnabled" not in props and props["MessageRetentionPeriod"] == 1209600
    policy = json.dumps(resources(t, "AWS::SQS::QueuePolicy"))
    assert '"aws:SecureTransport": "false"' in policy


def test_lambda_can_send_to_its_kms_encrypted_dlq(dev):
    """Lambda writes failed async events as the function's role: SQS SendMessage plus the key's data keys."""
    by_action = {a: s for s in _statements(dev, "DeployerRole") for a in _actions(s)}
    assert "DeployDlq" in json.dumps(by_action["sqs:SendMessage"]["Resource"])
    assert _data_key_arn(by_action["kms:GenerateDataKey*"]["Resource"])


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_lambda_environment_is_encrypted_with_the_data_key_its_role_can_decrypt(synth, env_name):
    cfg = DEV if env_name == "dev" else PROD
    t = synth(env_name)[1][f"{cfg.prefix}-deploy"]
    assert _data_key_arn(_function(t)["KmsKeyArn"])
    decrypt = [s for s in _statements(t, "DeployerRole") if "kms:Decrypt" in _actions(s)]
    assert decrypt and all(_data_key_arn(s["Resource"]) for s in decrypt)


def test_autoscaling_writes_are_held_to_sagemaker_variant_instance_counts(dev):
    """The scanner's "write on Resource '*'": the writes name scalable targets and carry both condition keys;
    only the Describe reads (no resource-level permission) stay on '*'."""
    statements = _statements(dev, "DeployerRole")
    writes = {"RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy"}
    on_star = {a for s in statements if s["Resource"] == "*" for a in _actions(s)}
    assert not {a for a in on_star if a.startswith("application-autoscaling:")} - {
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
    }
    [scoped] = [s for s in statements if "application-autoscaling:RegisterScalableTarget" in _actions(s)]
    assert {a.partition(":")[2] for a in _actions(scoped)} == writes
    assert ":scalable-target/*" in json.dumps(scoped["Resource"])
    assert scoped["Condition"] == {
        "StringEquals": {
            "application-autoscaling:service-namespace": "sagemaker",
            "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION,
        }
    }


@pytest.mark.parametrize("role_prefix", ["DeployerRole", "ModelExecutionRole"])
def test_roles_may_let_sagemaker_encrypt_endpoint_volumes_with_the_data_key(dev, role_prefix):
    statements = _statements(dev, role_prefix)
    [create_grant] = [s for s in statements if "kms:CreateGrant" in _actions(s)]
    assert _actions(create_grant) == ["kms:CreateGrant"]
    assert create_grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert _data_key_arn(create_grant["Resource"])
    assert any("kms:DescribeKey" in _actions(s) and _data_key_arn(s["Resource"]) for s in statements)


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


def _settings(template) -> Settings:
    env = _function(template)["Environment"]["Variables"]
    tokens = {"EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/r", "ENDPOINT_KMS_KEY_ARN": "k", "CAPTURE_S3_URI": "s3://b/c"}
    return Settings.from_env({**{k: v for k, v in env.items() if isinstance(v, str)}, **tokens})


def test_an_instance_endpoint_with_experiments_gets_rollback_alarms_on_each_experiment_variant(synth_with):
    template = synth_with("prod", experiment_mode="ab")[f"{PROD.prefix}-deploy"]
    for variant in ("AllTraffic", "Champion", "Challenger"):
        dims = [{"Name": "EndpointName", "Value": PROD.endpoint_name}, {"Name": "VariantName", "Value": variant}]
        names = alarm_names(PROD, variant)
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {"AlarmName": names["errors"], "MetricName": "Invocation5XXErrors", "Dimensions": dims},
        )
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm", {"AlarmName": names["latency"], "MetricName": "ModelLatency", "Dimensions": dims}
        )
    settings = _settings(template)
    assert deployable_variants(settings) == ("AllTraffic", "Champion", "Challenger")
    alarms, why_not = rollback_alarms_for(settings, ["Champion", "Challenger"])
    expected = [*alarm_names(PROD, "Champion").values(), *alarm_names(PROD, "Challenger").values()]
    assert (alarms, why_not) == (expected, "")


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_no_experiment_rollback_alarms_where_no_experiment_can_run(synth, env_name):
    """dev: serverless (one production variant); prod: experiment_mode off. Only the AllTraffic alarms exist."""
    cfg = DEV if env_name == "dev" else PROD
    template = synth(env_name)[1][f"{cfg.prefix}-deploy"]
    names = {a["Properties"]["AlarmName"] for a in resources(template, "AWS::CloudWatch::Alarm").values()}
    assert names == set(alarm_names(cfg).values())
    assert "EXPERIMENT_ROLLBACK_ALARMS" not in _function(template)["Environment"]["Variables"]
    assert deployable_variants(_settings(template)) == ("AllTraffic",)


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
    writes = [s for s in s3 if "s3:PutObject" in _actions(s)]  # data capture only (test_data_capture_stack.py)
    assert all("/capture/*" in json.dumps(s["Resource"]) for s in writes)
    assert all("s3:DeleteObject*" not in _actions(s) for s in s3)
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
