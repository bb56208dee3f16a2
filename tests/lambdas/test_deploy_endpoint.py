"""The deploy Lambda against moto: real SageMaker/autoscaling calls, except UpdateEndpoint.

moto 5.2.5 does not implement UpdateEndpoint, so the handler's ``Clients.update_endpoint`` is a
recorder here and the tests assert the exact request SageMaker would receive.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.deploy_endpoint import handler as h
from settings.config import load_project_config
from stacks.deploy_stack import function_environment
from tests.permissions.recorder import answering

DEV, PROD = load_project_config("dev"), load_project_config("prod")
ROLE_ARN = "arn:aws:iam::123456789012:role/model-execution"
KEY_ARN = "arn:aws:kms:ap-south-1:123456789012:key/11111111-2222-3333-4444-555555555555"
ALARMS = ["recsys-x-recommender-5xx", "recsys-x-recommender-p99-latency"]
IMAGE = "720646828776.dkr.ecr.ap-south-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def settings(cfg, **overrides: str) -> h.Settings:
    return h.Settings.from_env({**function_environment(cfg, ROLE_ARN, ALARMS, KEY_ARN), **overrides})


class Recorder:
    """Stands in for SageMaker's UpdateEndpoint; optionally checks the world at call time."""

    def __init__(self, on_call=None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.on_call = on_call

    def __call__(self, **request: Any) -> dict[str, Any]:
        if self.on_call:
            self.on_call()
        self.calls.append(request)
        answer = {"EndpointArn": f"arn:aws:sagemaker:ap-south-1:123456789012:endpoint/{request['EndpointName']}"}
        # Through a botocore client answering offline: the request is validated and recorded like a real one.
        return answering("sagemaker", "update_endpoint", answer)(**request)


def clients(aws, recorder: Recorder | None = None) -> h.Clients:
    _, sm, aas = aws
    return h.Clients(sm, aas, recorder or Recorder())


def register(sm, cfg, status: str = "Approved", data: str = "s3://bucket/pipeline/exec-1/model.tar.gz") -> str:
    return sm.create_model_package(
        ModelPackageGroupName=cfg.model_package_group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {"Image": IMAGE, "ModelDataUrl": data, "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}}
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]


def event(cfg, arn: str, status: str = "Approved", **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": h.PACKAGE_EVENT,
        "source": "aws.sagemaker",
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": cfg.model_package_group,
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
            **detail,
        },
    }


def in_service(name: str, status: str = "IN_SERVICE") -> dict[str, Any]:
    return {
        "detail-type": h.ENDPOINT_EVENT,
        "source": "aws.sagemaker",
        "detail": {"EndpointName": name, "EndpointStatus": status},
    }


def scalable_targets(aas) -> list[dict[str, Any]]:
    return aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]


# ---- first approval ----------------------------------------------------------------------------


def test_first_approval_creates_model_config_and_serverless_endpoint_in_dev(aws):
    _, sm, aas = aws
    arn = register(sm, DEV)
    result = h.process(event(DEV, arn), settings(DEV), clients(aws))

    assert result["action"] == "created"
    endpoint = sm.describe_endpoint(EndpointName=DEV.endpoint_name)
    assert endpoint["EndpointConfigName"] == result["endpoint_config_name"]
    variant = sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])["ProductionVariants"][0]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["ModelName"] == result["model_name"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 10}
    assert "InstanceType" not in variant
    # A serverless variant has no instance volume to encrypt: no KmsKeyId (see test_endpoint_config_kms_key_*).
    assert "KmsKeyId" not in sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    model = sm.describe_model(ModelName=result["model_name"])
    assert model["ExecutionRoleArn"] == ROLE_ARN
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://bucket/pipeline/exec-1/model.tar.gz"
    assert result["autoscaling"] == "not applicable (serverless)"
    assert scalable_targets(aas) == []


def test_first_approval_in_prod_creates_instance_endpoint_with_target_tracking_autoscaling(aws):
    _, sm, aas = aws
    result = h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))

    assert result["action"] == "created"
    variant = sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (PROD.endpoint_instance_type, 2)
    config = sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    assert config["KmsKeyId"] == KEY_ARN  # the instances' storage volumes use the data key
    assert result["autoscaling"] == "registered"
    resource_id = f"endpoint/{PROD.endpoint_name}/variant/AllTraffic"
    [target] = scalable_targets(aas)
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (resource_id, 2, 6)
    [policy] = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == 600.0


def test_names_start_with_the_endpoint_name_and_fit_sagemaker_limits(aws):
    _, sm, _ = aws
    result = h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))
    for name in (result["model_name"], result["endpoint_config_name"]):
        assert name.startswith(f"{PROD.endpoint_name}-1-")  # the IAM policy allows only this prefix
        assert len(name) <= 63
    longest = "a" * 55  # a 21-char project and env name: the longest endpoint name config allows
    name = h.resource_name(longest, 12345, {"x": 1})
    assert len(name) == 63 and name.startswith(f"{longest}-")
    assert name != h.resource_name(longest, 12345, {"x": 2})
    with pytest.raises(h.ConfigurationError, match="too long"):
        h.resource_name("a" * 58, 1, {})


@pytest.mark.parametrize(
    ("overrides", "expect_key"),
    [
        ({}, True),  # prod: ml.c5.xlarge, EBS-backed
        ({"INSTANCE_TYPE": "ml.m5.large"}, True),
        ({"INSTANCE_TYPE": "ml.c5d.xlarge"}, False),  # local NVMe storage: SageMaker refuses a key
        ({"INSTANCE_TYPE": "ml.g4dn.xlarge"}, False),
        ({"INSTANCE_TYPE": "ml.g5.xlarge"}, False),
        ({"SERVERLESS": "true"}, False),  # no instance volume
    ],
    ids=["prod", "m5", "c5d", "g4dn", "g5", "serverless"],
)
def test_endpoint_config_kms_key_is_the_data_key_wherever_sagemaker_takes_one(overrides, expect_key):
    config = h.endpoint_config_request(settings(PROD, **overrides), "m", 1)
    assert config.get("KmsKeyId") == (KEY_ARN if expect_key else None)
    assert h.volume_kms_supported(settings(PROD, **overrides)) is expect_key


def test_a_different_key_makes_a_different_endpoint_config_name():
    """The name is a digest of what is deployed: re-keying deploys a new config instead of 'already deployed'."""
    other = settings(PROD, ENDPOINT_KMS_KEY_ARN=KEY_ARN.replace("1111", "9999"))
    first = h.endpoint_config_request(settings(PROD), "m", 1)["EndpointConfigName"]
    assert h.endpoint_config_request(other, "m", 1)["EndpointConfigName"] != first


# ---- later approvals ---------------------------------------------------------------------------


def test_next_approval_creates_new_config_and_updates_blue_green_with_canary_and_rollback_alarms(aws):
    _, sm, _ = aws
    first = h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))
    recorder = Recorder()
    second_arn = register(sm, PROD, data="s3://bucket/pipeline/exec-2/model.tar.gz")
    result = h.process(event(PROD, second_arn), settings(PROD), clients(aws, recorder))

    assert result["action"] == "updated"
    assert result["endpoint_config_name"] != first["endpoint_config_name"]
    assert result["model_name"] != first["model_name"]
    assert result["previous_endpoint_config_name"] == first["endpoint_config_name"]
    assert sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    assert recorder.calls == [
        {
            "EndpointName": PROD.endpoint_name,
            "EndpointConfigName": result["endpoint_config_name"],
            "RetainAllVariantProperties": True,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                        "WaitIntervalInSeconds": 600,
                    },
                    "TerminationWaitInSeconds": 600,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in ALARMS]},
            },
        }
    ]


def test_serverless_update_shifts_all_at_once_and_still_rolls_back_on_alarms(aws):
    _, sm, _ = aws
    h.process(event(DEV, register(sm, DEV)), settings(DEV), clients(aws))
    recorder = Recorder()
    h.process(
        event(DEV, register(sm, DEV, data="s3://b/pipeline/2/model.tar.gz")), settings(DEV), clients(aws, recorder)
    )

    [request] = recorder.calls
    assert request["RetainAllVariantProperties"] is False
    policy = request["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": a} for a in ALARMS]


def test_instance_type_change_deregisters_autoscaling_before_the_update(aws):
    _, sm, aas = aws
    h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))
    assert scalable_targets(aas)
    seen_at_update: list[list] = []
    recorder = Recorder(on_call=lambda: seen_at_update.append(scalable_targets(aas)))
    bigger = settings(PROD, INSTANCE_TYPE="ml.c5.2xlarge")
    h.process(event(PROD, register(sm, PROD, data="s3://b/pipeline/2/m.tar.gz")), bigger, clients(aws, recorder))

    assert seen_at_update == [[]]  # AWS refuses UpdateEndpoint on an autoscaled variant changing type
    assert recorder.calls[0]["RetainAllVariantProperties"] is False  # take the new type's sizing


def test_repeated_event_is_idempotent_and_does_not_redeploy(aws, capsys):
    _, sm, _ = aws
    approved = event(PROD, register(sm, PROD))
    first = h.process(approved, settings(PROD), clients(aws))
    recorder = Recorder()
    again = h.process(approved, settings(PROD), clients(aws, recorder))

    assert again["action"] == "skipped" and again["reason"] == "skipped: already deployed"
    assert again["endpoint_config_name"] == first["endpoint_config_name"]
    assert recorder.calls == []
    assert len(sm.list_models()["Models"]) == 1
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1


# ---- nothing to do -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_unapproved_package_does_nothing(aws, status):
    _, sm, _ = aws
    arn = register(sm, PROD, status=status)
    result = h.process(event(PROD, arn, status=status), settings(PROD), clients(aws))

    assert result == {"action": "skipped", "reason": f"skipped: approval status is {status}", "model_package_arn": arn}
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoints()["Endpoints"] == []


def test_package_of_another_group_is_skipped(aws):
    _, sm, _ = aws
    arn = register(sm, DEV)
    result = h.process(event(DEV, arn), settings(PROD), clients(aws))
    assert result["action"] == "skipped"
    assert DEV.model_package_group in result["reason"]
    assert sm.list_models()["Models"] == []


def test_late_approved_event_for_a_package_since_rejected_is_skipped(aws):
    _, sm, _ = aws
    arn = register(sm, PROD, status="Rejected")
    result = h.process(event(PROD, arn, status="Approved"), settings(PROD), clients(aws))
    assert result["reason"] == "skipped: approval status is now Rejected"
    assert sm.list_endpoints()["Endpoints"] == []


# ---- errors ------------------------------------------------------------------------------------


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda e: _without(e, "detail"), "no 'detail' object"),
        (lambda e: {**e, "source": "aws.s3"}, "source must be 'aws.sagemaker'"),
        (lambda e: {**e, "detail-type": "Object Created"}, "detail-type must be"),
        (lambda e: {**e, "detail": _without(e["detail"], "ModelPackageArn")}, "no 'ModelPackageArn'"),
        (lambda e: {**e, "detail": _without(e["detail"], "ModelApprovalStatus")}, "no 'ModelApprovalStatus'"),
        (lambda e: "not an event", "must be a JSON object"),
    ],
    ids=["no-detail", "wrong-source", "wrong-type", "no-arn", "no-status", "not-object"],
)
def test_malformed_event_raises_a_clear_value_error(aws, bad, message):
    good = event(PROD, "arn:aws:sagemaker:ap-south-1:123456789012:model-package/x/1")
    with pytest.raises(h.MalformedEventError, match=message) as raised:
        h.process(bad(good), settings(PROD), clients(aws))
    assert isinstance(raised.value, ValueError)


def test_endpoint_busy_raises_so_lambda_retries_and_the_dlq_keeps_the_event(aws):
    _, sm, aas = aws
    h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))

    class Updating:
        def __getattr__(self, name: str) -> Any:
            return getattr(sm, name)

        def describe_endpoint(self, **kwargs: Any) -> dict[str, Any]:
            return {**sm.describe_endpoint(**kwargs), "EndpointStatus": "Updating"}

    recorder = Recorder()
    busy = h.Clients(Updating(), aas, recorder)
    with pytest.raises(h.EndpointBusyError, match="is Updating"):
        h.process(event(PROD, register(sm, PROD, data="s3://b/pipeline/2/m.tar.gz")), settings(PROD), busy)
    assert recorder.calls == []


def test_missing_setting_is_named():
    env = function_environment(PROD, ROLE_ARN, ALARMS, KEY_ARN)
    with pytest.raises(h.ConfigurationError, match="EXECUTION_ROLE_ARN"):
        h.Settings.from_env(_without(env, "EXECUTION_ROLE_ARN"))
    with pytest.raises(h.ConfigurationError, match="ENDPOINT_KMS_KEY_ARN"):
        h.Settings.from_env(_without(env, "ENDPOINT_KMS_KEY_ARN"))
    with pytest.raises(h.ConfigurationError, match="CANARY_PERCENT must be from 1 to 50"):
        h.Settings.from_env({**env, "CANARY_PERCENT": "80"})


# ---- endpoint in service -----------------------------------------------------------------------


def test_endpoint_in_service_event_registers_autoscaling_and_ignores_other_endpoints(aws):
    _, sm, aas = aws
    created = h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))
    aas.deregister_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=settings(PROD).scalable_resource_id,
        ScalableDimension=h.SCALABLE_DIMENSION,
    )
    assert h.process(in_service("someone-else"), settings(PROD), clients(aws))["action"] == "skipped"
    assert h.process(in_service(PROD.endpoint_name, "UPDATING"), settings(PROD), clients(aws))["action"] == "skipped"
    assert scalable_targets(aas) == []

    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws))
    assert result == {
        "action": "completed",  # the creation this function started is judged done
        "endpoint": PROD.endpoint_name,
        "endpoint_status": "InService",
        "endpoint_config_name": created["endpoint_config_name"],
        "autoscaling": "registered",
    }
    assert len(scalable_targets(aas)) == 1


# ---- the Lambda entry point ----------------------------------------------------------------------


def test_handler_reads_its_environment_and_logs_one_json_line_per_decision(aws, monkeypatch, capsys):
    _, sm, _ = aws
    for name, value in function_environment(DEV, ROLE_ARN, ALARMS, KEY_ARN).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(h, "make_clients", lambda: clients(aws))
    result = h.handler(event(DEV, register(sm, DEV)), None)

    assert result["action"] == "created"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["decision"] for line in lines] == ["model created", "endpoint config created", "endpoint created"]

    with pytest.raises(h.MalformedEventError):
        h.handler({"source": "aws.sagemaker"}, None)
    assert json.loads(capsys.readouterr().out)["decision"] == "failed"
