"""Least privilege across every synthesised stack: no wildcard actions, and ``Resource: "*"`` only
for actions AWS offers without resource-level permissions (each listed with why)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.xdist_group("synth")

#: Actions that have no resource-level form (per the AWS Service Authorization Reference).
RESOURCE_STAR_OK = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions for trace submission",
    "xray:PutTelemetryRecords": "same",
    "xray:GetSamplingRules": "same",
    "xray:GetSamplingTargets": "same",
    "logs:CreateLogDelivery": "vended-log delivery APIs (Step Functions, API Gateway) take no resource",
    "logs:GetLogDelivery": "same",
    "logs:UpdateLogDelivery": "same",
    "logs:DeleteLogDelivery": "same",
    "logs:ListLogDeliveries": "same",
    "logs:PutResourcePolicy": "same",
    "logs:DescribeResourcePolicies": "same",
    "logs:DescribeLogGroups": "same",
    "lakeformation:GetDataAccess": "Athena checks it on every query; no resource form",
    "ecr:GetAuthorizationToken": "account-wide token; the image pull itself is scoped to repositories",
    "application-autoscaling:DescribeScalableTargets": "Describe* take no resource",
    "application-autoscaling:DescribeScalingPolicies": "same",
    "application-autoscaling:RegisterScalableTarget": "the target's ARN is assigned by the service on registration",
    "application-autoscaling:DeregisterScalableTarget": "same",
    "application-autoscaling:PutScalingPolicy": "same",
    "cloudwatch:DescribeAlarms": "read-only, no resource form for the list call",
}


def _statements(template: dict):
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs = [props["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        else:
            continue
        for doc in docs:
            for statement in doc["Statement"]:
                if statement.get("Effect") == "Allow":
                    yield logical_id, statement


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_no_policy_allows_wildcard_actions(synth, env_name):
    outdir, _ = synth(env_name)
    for path in outdir.glob("*.template.json"):
        for logical_id, statement in _statements(json.loads(path.read_text())):
            for action in _as_list(statement.get("Action", [])):
                assert action != "*" and not action.endswith(":*"), f"{path.name} {logical_id}: {action}"


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_resource_star_only_for_actions_without_resource_level_permissions(synth, env_name):
    outdir, _ = synth(env_name)
    offenders = []
    for path in outdir.glob("*.template.json"):
        for logical_id, statement in _statements(json.loads(path.read_text())):
            if "*" in _as_list(statement.get("Resource", [])):
                offenders += [
                    f"{path.name} {logical_id}: {a}" for a in _as_list(statement["Action"]) if a not in RESOURCE_STAR_OK
                ]
    assert offenders == []
