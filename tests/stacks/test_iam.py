"""Least privilege across every synthesised stack: no wildcard actions, and ``Resource: "*"`` only
for actions AWS offers without resource-level permissions (the allow-list, with reasons, is
``stacks.security.RESOURCE_STAR_OK``)."""

from __future__ import annotations

import json

import pytest

from stacks.security import (
    RESOURCE_STAR_OK,
    UNCONDITIONED_STAR_WRITES_OK,
    key_policy_offenders,
    unconstrained_star_writes,
    unjustified_resource_star,
    wildcard_actions,
)
from tests import HEAVY_TIMEOUT_S

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


def _templates(synth, env_name: str) -> dict[str, dict]:
    outdir, _ = synth(env_name)
    return {path.name: json.loads(path.read_text()) for path in sorted(outdir.glob("*.template.json"))}


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_no_policy_allows_wildcard_actions(synth, env_name):
    templates = _templates(synth, env_name)
    assert len(templates) >= 5
    assert {name: wildcard_actions(t) for name, t in templates.items() if wildcard_actions(t)} == {}


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_resource_star_only_for_actions_without_resource_level_permissions(synth, env_name):
    templates = _templates(synth, env_name)
    assert {name: unjustified_resource_star(t) for name, t in templates.items() if unjustified_resource_star(t)} == {}


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_writes_on_resource_star_carry_a_condition_unless_aws_offers_none(synth, env_name):
    """An outside scanner's finding: a write action on Resource '*'. Each one either names a condition key that
    narrows it (cloudwatch:namespace, application-autoscaling:service-namespace, ...) or is listed with why not."""
    templates = _templates(synth, env_name)
    assert {name: unconstrained_star_writes(t) for name, t in templates.items() if unconstrained_star_writes(t)} == {}


def test_an_unconditioned_write_on_resource_star_is_reported():
    """The check can fail: PutMetricData without its namespace condition, or an autoscaling write, is reported;
    reads and listed actions are not, and a condition makes a write acceptable."""
    bare = {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData", "cloudwatch:DescribeAlarms"], "Resource": "*"}
    assert unconstrained_star_writes(_policy(bare)) == ["P: cloudwatch:PutMetricData"]
    scaling = {"Effect": "Allow", "Action": "application-autoscaling:RegisterScalableTarget", "Resource": "*"}
    assert unconstrained_star_writes(_policy(scaling)) == ["P: application-autoscaling:RegisterScalableTarget"]
    held = {**bare, "Condition": {"StringEquals": {"cloudwatch:namespace": "RecSys/MLOps"}}}
    assert unconstrained_star_writes(_policy(held)) == []
    listed = {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "logs:CreateLogDelivery"], "Resource": "*"}
    assert unconstrained_star_writes(_policy(listed)) == []


def test_every_unconditioned_star_write_is_also_a_justified_resource_star_action():
    for action, reason in UNCONDITIONED_STAR_WRITES_OK.items():
        assert action in RESOURCE_STAR_OK
        assert len(reason.split()) >= 6, f"{action}: say why no condition key can narrow it"


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_key_policies_give_all_kms_actions_only_to_the_account_root(synth, env_name):
    templates = _templates(synth, env_name)
    assert {name: key_policy_offenders(t) for name, t in templates.items() if key_policy_offenders(t)} == {}


def _policy(statement: dict) -> dict:
    return {
        "Resources": {
            "P": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Statement": [statement]}}},
        }
    }


def test_wildcard_action_and_unlisted_resource_star_are_reported():
    """The checks can fail: ``s3:*`` is a wildcard action, ``s3:GetObject`` on "*" is not allow-listed."""
    assert wildcard_actions(_policy({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b"})) == ["P: s3:*"]
    star = _policy({"Effect": "Allow", "Action": ["s3:GetObject", "ecr:GetAuthorizationToken"], "Resource": "*"})
    assert unjustified_resource_star(star) == ["P: s3:GetObject"]


def test_key_policy_granting_kms_star_to_a_service_is_reported():
    key = {
        "Type": "AWS::KMS::Key",
        "Properties": {
            "KeyPolicy": {
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*"},
                    {"Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"}, "Action": "kms:*"},
                ]
            }
        },
    }
    assert key_policy_offenders({"Resources": {"K": key}}) == ["K: {'Service': 'logs.amazonaws.com'}"]


def test_every_resource_star_action_has_a_reason():
    for action, reason in RESOURCE_STAR_OK.items():
        assert len(reason.split()) >= 6, f"{action}: say why AWS requires Resource '*'"
