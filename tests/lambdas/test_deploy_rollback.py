"""The deploy Lambda after a blue/green deployment: completed, rolled back by an alarm, or failed.

moto has no UpdateEndpoint, so after the recorded update the moto endpoint stays on its old
config: exactly what a rolled-back endpoint looks like once SageMaker has restored it. Other
end states (deployment completed, Failed, UpdateRollbackFailed, still pending) are shown to the
handler by overriding DescribeEndpoint's answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from lambdas.deploy_endpoint import handler as h
from settings.config import load_project_config
from tests.lambdas.test_deploy_endpoint import (
    ALARMS,
    Recorder,
    event,
    in_service,
    register,
    scalable_targets,
    settings,
)

PROD = load_project_config("prod")
SECOND = "s3://bucket/pipeline/exec-2/model.tar.gz"


@pytest.fixture
def aws(aws_env):
    sm = aws_env.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=PROD.model_package_group)
    return aws_env, sm, aws_env.client("application-autoscaling"), aws_env.client("cloudwatch")


class Describing:
    """The SageMaker client with DescribeEndpoint's answer changed by ``change``."""

    def __init__(self, sm: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.sm, self.change = sm, change

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sm, name)

    def describe_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        return self.change(self.sm.describe_endpoint(**kwargs))


def clients(aws, recorder: Recorder | None = None, change=None) -> h.Clients:
    _, sm, aas, cw = aws
    return h.Clients(Describing(sm, change) if change else sm, aas, recorder or Recorder(), cw)


def deploy_two(aws, cfg_settings: h.Settings | None = None) -> tuple[dict, dict, str, Recorder]:
    """Package 1 live, package 2 approved and its blue/green update started."""
    _, sm, _, _ = aws
    first = h.process(event(PROD, register(sm, PROD)), settings(PROD), clients(aws))
    recorder = Recorder()
    second_arn = register(sm, PROD, data=SECOND)
    second = h.process(event(PROD, second_arn), cfg_settings or settings(PROD), clients(aws, recorder))
    assert second["action"] == "updated" and len(recorder.calls) == 1
    return first, second, second_arn, recorder


def fire_alarm(cw, name: str) -> None:
    cw.put_metric_alarm(
        AlarmName=name,
        MetricName="Invocation5XXErrors",
        Namespace="AWS/SageMaker",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="5 5XX errors in 1 minute during the canary")


def endpoint_tags(sm) -> dict[str, str]:
    arn = sm.describe_endpoint(EndpointName=PROD.endpoint_name)["EndpointArn"]
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def decisions(capsys) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_update_records_the_deployment_in_flight_on_the_endpoint(aws):
    _, sm, _, _ = aws
    _, second, second_arn, _ = deploy_two(aws)
    assert endpoint_tags(sm) == {
        h.TARGET_CONFIG_TAG: second["endpoint_config_name"],
        h.TARGET_PACKAGE_TAG: second_arn,
        h.VERDICT_TAG: "pending",
    }


def test_rollback_by_an_alarm_rejects_the_package_naming_the_alarm_and_logs_rolled_back(aws, capsys):
    _, sm, _, cw = aws
    first, second, second_arn, _ = deploy_two(aws)
    fire_alarm(cw, ALARMS[0])
    capsys.readouterr()

    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws))

    assert result["action"] == "rolled_back"
    assert result["restored_endpoint_config_name"] == first["endpoint_config_name"]
    assert result["target_endpoint_config_name"] == second["endpoint_config_name"]
    assert result["model_package_arn"] == second_arn
    package = sm.describe_model_package(ModelPackageName=second_arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert ALARMS[0] in package["ApprovalDescription"] and "Rolled back" in package["ApprovalDescription"]
    [line] = [d for d in decisions(capsys) if d["decision"] == "rolled_back"]
    assert line["alarms"] == [ALARMS[0]] and ALARMS[0] in line["failure_reason"]
    assert line["endpoint_config_name"] == first["endpoint_config_name"]
    assert endpoint_tags(sm)[h.VERDICT_TAG] == "rolled_back"  # judged once


def test_rejected_package_is_not_redeployed_by_a_repeated_approval_event(aws):
    _, sm, _, cw = aws
    _, _, second_arn, _ = deploy_two(aws)
    fire_alarm(cw, ALARMS[1])
    h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws))

    recorder = Recorder()
    again = h.process(event(PROD, second_arn), settings(PROD), clients(aws, recorder))  # EventBridge redelivery
    assert again["reason"] == "skipped: approval status is now Rejected"
    assert recorder.calls == []
    repeat = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws))  # a repeated state event
    assert repeat["action"] == "autoscaling"
    assert sm.describe_model_package(ModelPackageName=second_arn)["ModelApprovalStatus"] == "Rejected"


def test_rollback_reason_falls_back_to_sagemakers_failure_reason(aws):
    _, sm, _, _ = aws
    _, _, second_arn, _ = deploy_two(aws)
    reason = "Deployment was rolled back: the new fleet failed the health check (ping)"
    result = h.process(
        in_service(PROD.endpoint_name), settings(PROD), clients(aws, change=lambda e: {**e, "FailureReason": reason})
    )
    assert result["action"] == "rolled_back" and result["failure_reason"] == reason
    assert reason in sm.describe_model_package(ModelPackageName=second_arn)["ApprovalDescription"]


def test_autoscaling_after_a_rollback_targets_the_restored_variant(aws):
    _, sm, aas, cw = aws
    bigger = settings(PROD, INSTANCE_TYPE="ml.c5.2xlarge")  # the update dropped the scalable target first
    first, _, _, _ = deploy_two(aws, bigger)
    assert scalable_targets(aas) == []
    fire_alarm(cw, ALARMS[0])

    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws))

    assert result["action"] == "rolled_back" and result["autoscaling"] == "registered"
    restored = sm.describe_endpoint_config(EndpointConfigName=result["restored_endpoint_config_name"])
    [variant] = restored["ProductionVariants"]
    assert result["restored_endpoint_config_name"] == first["endpoint_config_name"]
    assert variant["InstanceType"] == PROD.endpoint_instance_type  # the old sizing serves again
    [target] = scalable_targets(aas)
    assert target["ResourceId"] == f"endpoint/{PROD.endpoint_name}/variant/{variant['VariantName']}"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)


def test_completed_deployment_clears_the_mark_and_keeps_the_package_approved(aws):
    _, sm, _, _ = aws
    _, second, second_arn, _ = deploy_two(aws)
    live = {"EndpointConfigName": second["endpoint_config_name"]}
    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws, change=lambda e: {**e, **live}))

    assert result["action"] == "completed" and result["autoscaling"] == "registered"
    assert sm.describe_model_package(ModelPackageName=second_arn)["ModelApprovalStatus"] == "Approved"
    assert endpoint_tags(sm)[h.VERDICT_TAG] == "completed"


def test_in_service_with_the_deployment_still_pending_is_not_a_rollback(aws):
    _, sm, _, _ = aws
    _, second, second_arn, _ = deploy_two(aws)
    pending = {"PendingDeploymentSummary": {"EndpointConfigName": second["endpoint_config_name"]}}
    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws, change=lambda e: {**e, **pending}))

    assert result["action"] == "autoscaling"
    assert sm.describe_model_package(ModelPackageName=second_arn)["ModelApprovalStatus"] == "Approved"
    assert endpoint_tags(sm)[h.VERDICT_TAG] == "pending"  # judged when the deployment ends


def test_a_newer_approval_waiting_for_the_busy_endpoint_is_not_taken_for_a_rollback(aws):
    _, sm, _, _ = aws
    _, second, second_arn, _ = deploy_two(aws)
    third_arn = register(sm, PROD, data="s3://bucket/pipeline/exec-3/model.tar.gz")
    updating = clients(aws, change=lambda e: {**e, "EndpointStatus": "Updating"})
    with pytest.raises(h.EndpointBusyError):
        h.process(event(PROD, third_arn), settings(PROD), updating)

    live = {"EndpointConfigName": second["endpoint_config_name"]}
    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws, change=lambda e: {**e, **live}))
    assert result["action"] == "completed"
    for arn in (second_arn, third_arn):
        assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


@pytest.mark.parametrize(
    ("event_status", "status", "advice"),
    [("FAILED", "Failed", "only DeleteEndpoint"), ("UPDATE_ROLLBACK_FAILED", "UpdateRollbackFailed", "a person")],
)
def test_failed_deployment_is_reported_with_its_failure_reason(aws, capsys, event_status, status, advice):
    _, sm, _, _ = aws
    _, _, second_arn, _ = deploy_two(aws)
    reason = "Unable to locate at least 2 instance(s) of ml.m5.large"
    failed = clients(aws, change=lambda e: {**e, "EndpointStatus": status, "FailureReason": reason})
    capsys.readouterr()

    result = h.process(in_service(PROD.endpoint_name, event_status), settings(PROD), failed)

    assert result["action"] == "failed" and result["failure_reason"] == reason
    assert result["model_package_arn"] == second_arn
    assert status in result["message"] and reason in result["message"] and advice in result["message"]
    [line] = decisions(capsys)
    assert line["decision"] == "deployment failed" and line["failure_reason"] == reason
    assert sm.describe_model_package(ModelPackageName=second_arn)["ModelApprovalStatus"] == "Approved"


def test_the_stack_sends_exactly_the_endpoint_states_the_handler_judges():
    from stacks.deploy_stack import ENDPOINT_EVENT_STATUSES

    assert tuple(ENDPOINT_EVENT_STATUSES) == h.HANDLED_ENDPOINT_EVENTS


def test_first_deployment_is_judged_too(aws):
    """A failed CreateEndpoint is reported with its package; a successful one completes (no rollback then)."""
    _, sm, _, _ = aws
    arn = register(sm, PROD)
    created = h.process(event(PROD, arn), settings(PROD), clients(aws))
    failed = clients(aws, change=lambda e: {**e, "EndpointStatus": "Failed", "FailureReason": "image not found"})
    assert h.process(in_service(PROD.endpoint_name, "FAILED"), settings(PROD), failed)["model_package_arn"] == arn

    result = h.process(in_service(PROD.endpoint_name), settings(PROD), clients(aws))
    assert result["action"] == "completed" and result["endpoint_config_name"] == created["endpoint_config_name"]
