"""Custom metrics land in (moto) CloudWatch under the namespace and dimensions the alarms watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import metrics as m
from monitoring.alarms import alarm_specs
from monitoring.drift import DriftReport
from settings.config import load_project_config
from tests.monitoring.conftest import EVALUATION

CFG = load_project_config()


def _stat(cw, ref: m.MetricRef, stat: str = "Maximum") -> float | None:
    now = datetime.now(UTC)
    points = cw.get_metric_statistics(
        Namespace=ref.namespace,
        MetricName=ref.name,
        Dimensions=ref.api_dimensions(),
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=1),
        Period=3600,
        Statistics=[stat],
    )["Datapoints"]
    return points[0][stat] if points else None


def test_model_quality_lands_per_group_and_per_version(aws_env):
    cw = aws_env.client("cloudwatch")
    values = m.publish_model_quality(cw, EVALUATION, "v7", model_group=CFG.model_package_group)
    assert values[m.NDCG_AT_10] == 0.01
    assert _stat(cw, m.model_metric(CFG.model_package_group, m.NDCG_AT_10)) == pytest.approx(0.01)
    listed = cw.list_metrics(Namespace=m.NAMESPACE, MetricName=m.NDCG_AT_10)["Metrics"]
    dims = sorted(tuple(sorted(d["Name"] for d in x["Dimensions"])) for x in listed)
    assert dims == [("ModelPackageGroup",), ("ModelPackageGroup", "ModelVersion")]


def test_model_quality_without_ndcg_is_rejected(aws_env):
    with pytest.raises(ValueError, match="ndcg_at_10"):
        m.publish_model_quality(aws_env.client("cloudwatch"), {"metrics": {}}, "v1", model_group="g")


def test_data_quality_publishes_counts_and_the_quarantined_ratio(aws_env):
    cw = aws_env.client("cloudwatch")
    ratio = m.publish_data_quality(cw, "interactions", 200, 190, 10, database=CFG.glue_database)
    assert ratio == pytest.approx(0.05)
    ref = m.data_metric(CFG.glue_database, "interactions", m.QUARANTINED_RATIO)
    assert _stat(cw, ref) == pytest.approx(0.05)
    assert _stat(cw, m.data_metric(CFG.glue_database, "interactions", m.ROWS_IN), "Sum") == 200


def test_data_quality_refuses_counts_that_do_not_reconcile(aws_env):
    with pytest.raises(ValueError, match="rows in 10"):
        m.publish_data_quality(aws_env.client("cloudwatch"), "users", 10, 8, 1, database="db")


def test_drift_publishes_score_and_each_feature(aws_env):
    cw = aws_env.client("cloudwatch")
    report = DriftReport(0.4, {"category_mix": 0.4, "price": 0.1, "activity_per_user": 0.0}, 10, 5)
    m.publish_drift(cw, report, model_group=CFG.model_package_group)
    assert _stat(cw, m.drift_metric(CFG.model_package_group)) == pytest.approx(0.4)
    features = cw.list_metrics(Namespace=m.NAMESPACE, MetricName=m.FEATURE_DRIFT)["Metrics"]
    assert len(features) == 3


def test_every_custom_alarm_watches_a_metric_we_publish():
    published = set(m.MODEL_QUALITY_METRICS.values()) | {m.QUARANTINED_RATIO, m.DRIFT_SCORE, m.CURATION_JOBS_SKIPPED}
    published |= {name for _, name, _ in m.CLICK_THROUGH_COLUMNS}  # publish_click_through
    for spec in alarm_specs(CFG):
        for _, ref, _ in spec.metrics:
            if ref.namespace == m.NAMESPACE:
                assert ref.name in published, spec.key


def test_model_metrics_record_is_one_history_row():
    row = m.model_metrics_record(EVALUATION, "v3", datetime(2024, 3, 1, 12, tzinfo=UTC))
    assert row == {
        "model_version": "v3",
        "evaluated_at": "2024-03-01 12:00:00",
        "ndcg_at_10": 0.01,
        "popularity_ndcg_at_10": 0.008,
        "coverage_at_10": 0.3,
    }
