"""Alarms, event rules and the operations dashboard, all notifying one encrypted SNS topic.

Infrastructure only: which metric, statistic, threshold and comparison each alarm uses is defined
once in ``monitoring/alarms.py`` (the local run evaluates the same specs against moto CloudWatch).
"""

from __future__ import annotations

import re

import jsii
from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from monitoring import metrics as m
from monitoring.alarms import AlarmSpec, alarm_specs, event_rule_specs
from settings.config import TABLES, Config
from stacks.data_stack import DataStack
from stacks.factories.cloudwatch import cw_metric
from stacks.factories.storage import removal_policy


def _upper_snake(name: str) -> str:
    """CloudWatch's API spelling (``GreaterThanThreshold``) -> the CDK enum member (``GREATER_THAN_THRESHOLD``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _metric(ref: m.MetricRef, stat: str, period_s: int) -> cw.Metric:
    return cw_metric(ref, stat, Duration.seconds(period_s))


def alarm_metric(spec: AlarmSpec) -> cw.IMetric:
    """The spec's metric, or its metric-math expression over the named metrics."""
    if spec.expression is None:
        _, ref, stat = spec.metrics[0]
        return _metric(ref, stat, spec.period_s)
    return cw.MathExpression(
        expression=spec.expression,
        using_metrics={mid: _metric(ref, stat, spec.period_s) for mid, ref, stat in spec.metrics},
        label=spec.key,
        period=Duration.seconds(spec.period_s),
    )


def alarm_topic(scope: Construct, cfg: Config) -> sns.Topic:
    """SSE-KMS topic, TLS only. Its publishers are services: CloudWatch (the alarms) and EventBridge (the rules).

    A TopicPolicy replaces SNS's default policy, so CloudWatch and EventBridge need their own Allows, each held
    to this account's ``<prefix>-*`` alarms or rules by ``aws:SourceArn``/``aws:SourceAccount``; both need the
    topic key's ``kms:GenerateDataKey*``/``kms:Decrypt`` (SECURITY.md). EventBridge's key statement carries no source
    conditions: AWS documents that its KMS requests do not carry them, so they would drop every event."""
    stack = Stack.of(scope)
    account, partition, region = stack.account, stack.partition, stack.region
    source = {
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account}:alarm:{cfg.prefix}-*"},
        "StringEquals": {"aws:SourceAccount": account},
    }
    rules = {
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:events:{region}:{account}:rule/{cfg.prefix}-*"},
        "StringEquals": {"aws:SourceAccount": account},
    }
    key = kms.Key(
        scope,
        "AlarmTopicKey",
        description=f"{cfg.prefix}: encrypts alarm notifications",
        enable_key_rotation=True,
        removal_policy=removal_policy(cfg),
    )
    key_actions = ["kms:Decrypt", "kms:GenerateDataKey*"]
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=key_actions,
            resources=["*"],  # in a key policy, "*" is this key
            conditions=source,
        )
    )
    key.grant(iam.ServicePrincipal("events.amazonaws.com"), *key_actions)
    topic = sns.Topic(
        scope,
        "AlarmTopic",
        topic_name=f"{cfg.prefix}-alarms",
        display_name=f"{cfg.prefix} alarms",
        master_key=key,
        enforce_ssl=True,
    )
    for service, conditions in (("cloudwatch.amazonaws.com", source), ("events.amazonaws.com", rules)):
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(service)],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions=conditions,
            )
        )
    if cfg.alarm_email:
        topic.add_subscription(subs.EmailSubscription(cfg.alarm_email))
    return topic


@jsii.implements(events.IRuleTarget)
class _RuleTopic:
    """The alarm topic as a rule target, without ``targets.SnsTopic``'s unconditioned ``sns:Publish`` grant to
    every EventBridge rule of every account: :func:`alarm_topic`'s policy allows only this stack's rules."""

    def __init__(self, topic: sns.ITopic) -> None:
        self._topic = topic

    def bind(self, _rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._topic.topic_arn)


class MonitoringStack(Stack):
    """Attributes: ``topic``, ``alarms`` (by spec key), ``endpoint_alarm_names`` (for a deploy rollback)."""

    def __init__(self, scope: Construct, construct_id: str, *, cfg: Config, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.topic = alarm_topic(self, cfg)
        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}
        self.specs = alarm_specs(cfg)
        for spec in self.specs:
            alarm = cw.Alarm(
                self,
                f"Alarm-{spec.key}",
                alarm_name=spec.name(cfg),
                alarm_description=spec.description,
                metric=alarm_metric(spec),
                threshold=spec.threshold,
                evaluation_periods=spec.evaluation_periods,
                comparison_operator=cw.ComparisonOperator[_upper_snake(spec.comparison)],
                treat_missing_data=cw.TreatMissingData[_upper_snake(spec.treat_missing)],
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[spec.key] = alarm
        self.endpoint_alarm_names = [s.name(cfg) for s in self.specs if s.signal == "endpoint"]

        self.rules: dict[str, events.Rule] = {}
        for rule in event_rule_specs(cfg):
            self.rules[rule.key] = events.Rule(
                self,
                f"Rule-{rule.key}",
                rule_name=rule.name(cfg),
                description=rule.description,
                event_pattern=events.EventPattern(
                    source=rule.pattern["source"],
                    detail_type=rule.pattern["detail-type"],
                    detail=rule.pattern["detail"],
                ),
                targets=[_RuleTopic(self.topic)],
            )

        self.dashboard = self._dashboard(cfg)
        CfnOutput(self, "AlarmTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"{cfg.prefix}-operations")

    def _dashboard(self, cfg: Config) -> cw.Dashboard:
        """One row per signal: an alarm widget per alarm, plus the raw series behind the model and data rows."""
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{cfg.prefix}-operations")
        dashboard.add_widgets(
            cw.TextWidget(
                markdown=(
                    f"# {cfg.prefix} recommender operations\n"
                    f"Endpoint `{cfg.endpoint_name}`, pipeline `{cfg.pipeline_name}`, database `{cfg.glue_database}`. "
                    f"Pipeline, DataBrew and crawler failures arrive on SNS `{cfg.prefix}-alarms` (event rules)."
                ),
                width=24,
                height=2,
            )
        )
        for signal in ("endpoint", "model", "data", "drift"):
            widgets: list[cw.IWidget] = [
                cw.AlarmWidget(alarm=self.alarms[s.key], title=s.key, width=8, height=5)
                for s in self.specs
                if s.signal == signal
            ]
            dashboard.add_widgets(*widgets)
        group = cfg.model_package_group
        day = Duration.days(1)
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Model quality per evaluation (NDCG@10, popularity NDCG@10, coverage@10)",
                left=[
                    cw_metric(m.model_metric(group, name), "Maximum", day)
                    for name in (m.NDCG_AT_10, m.POPULARITY_NDCG_AT_10, m.COVERAGE_AT_10)
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Rows in / quarantined per table",
                left=[
                    cw_metric(m.data_metric(cfg.glue_database, table, name), "Sum", day, f"{table} {name}")
                    for table in TABLES
                    for name in (m.ROWS_IN, m.ROWS_QUARANTINED)
                ],
                width=12,
            ),
        )
        return dashboard
