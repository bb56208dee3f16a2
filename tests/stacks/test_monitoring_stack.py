"""The monitoring stack: every alarm from the specs, all notifying one encrypted topic; failure events routed."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from monitoring.alarms import alarm_specs, endpoint_alarm_names, event_rule_specs
from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


@pytest.fixture(scope="module", params=["dev", "prod"])
def env_template(request, synth):
    _, templates = synth(request.param)
    return load_project_config(request.param), templates[f"recsys-{request.param}-monitoring"]


def test_one_alarm_per_spec_with_config_threshold_and_topic_action(env_template):
    cfg, template = env_template
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    specs = {s.name(cfg): s for s in alarm_specs(cfg)}
    assert set(alarms) == set(specs)
    topic_id = next(iter(resources(template, "AWS::SNS::Topic")))
    for name, props in alarms.items():
        assert props["Threshold"] == specs[name].threshold
        assert props["ComparisonOperator"] == specs[name].comparison
        assert props["AlarmActions"] == [{"Ref": topic_id}] and props["OKActions"] == [{"Ref": topic_id}]


def test_error_rate_alarms_use_metric_math(env_template):
    cfg, template = env_template
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"{cfg.prefix}-endpoint-4xx-rate",
            "Metrics": Match.array_with([Match.object_like({"Expression": "FILL(e4xx, 0) / inv", "Id": "expr_1"})]),
        },
    )


def test_topic_is_kms_encrypted_and_mails_only_when_configured(env_template):
    cfg, template = env_template
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    subs = resources(template, "AWS::SNS::Subscription")
    assert [s["Properties"]["Endpoint"] for s in subs.values()] == ([cfg.alarm_email] if cfg.alarm_email else [])


def test_topic_admits_each_publishing_service_only_from_this_stacks_alarms_or_rules(env_template):
    cfg, template = env_template
    (topic_policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    allows = [s for s in topic_policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    kinds = {"cloudwatch.amazonaws.com": f":alarm:{cfg.prefix}-*", "events.amazonaws.com": f":rule/{cfg.prefix}-*"}
    assert sorted(s["Principal"]["Service"] for s in allows) == sorted(kinds)
    for statement in allows:
        source = str(statement["Condition"]["ArnLike"]["aws:SourceArn"])
        assert kinds[statement["Principal"]["Service"]] in source, statement
        assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]


def test_failure_rules_send_pipeline_databrew_and_crawler_events_to_the_topic(env_template):
    cfg, template = env_template
    rules = resources(template, "AWS::Events::Rule")
    assert {r["Properties"]["Name"] for r in rules.values()} == {s.name(cfg) for s in event_rule_specs(cfg)}
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like(
                {"detail": {"currentPipelineExecutionStatus": ["Failed"], "pipelineArn": Match.any_value()}}
            ),
            "Targets": [Match.object_like({"Arn": Match.any_value()})],
        },
    )


def test_dashboard_has_a_widget_per_alarm(env_template):
    cfg, template = env_template
    (dash,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = str(dash["Properties"]["DashboardBody"])
    assert body.count('\\"type\\":\\"metric\\"') + body.count('"type":"metric"') >= len(alarm_specs(cfg))


def test_instance_endpoint_alarms_exist_only_in_prod(env_template):
    cfg, _ = env_template
    names = endpoint_alarm_names(cfg)
    assert (f"{cfg.prefix}-endpoint-cpu" in names) is (not cfg.serverless_endpoint)
