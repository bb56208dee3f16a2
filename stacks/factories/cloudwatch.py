"""CloudWatch metrics from the project's metric references (``monitoring.metrics``): one spelling of each
namespace, metric name and dimension set for alarms and dashboards in every stack."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam

from monitoring.metrics import NAMESPACE, MetricRef


def cw_metric(ref: MetricRef, statistic: str, period: Duration, label: str | None = None) -> cw.Metric:
    return cw.Metric(
        namespace=ref.namespace,
        metric_name=ref.name,
        dimensions_map=ref.dimensions_map,
        statistic=statistic,
        period=period,
        label=label,
    )


def put_metric_data_statement() -> iam.PolicyStatement:
    """PutMetricData has no resource-level permission: the statement is held to the project's namespace."""
    return iam.PolicyStatement(
        actions=["cloudwatch:PutMetricData"],
        resources=["*"],
        conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
    )
