"""Alarm specs follow the config, and the local evaluation gives CloudWatch's states from moto metrics."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime

import pandas as pd
import pytest
from moto.events.models import EventPattern

from monitoring import metrics as m
from monitoring.alarms import (
    ALARM,
    INSUFFICIENT,
    OK,
    alarm_specs,
    endpoint_alarm_names,
    event_rule_specs,
    instance_vcpus,
)
from recsys.local.alarms import create_alarms, evaluate, evaluate_alarms
from recsys.local.curation import cdk_out
from recsys.local.monitoring import run_monitoring
from settings.config import load_project_config
from tests.monitoring.conftest import EVALUATION

CFG = load_project_config("dev")
PROD = load_project_config("prod")


def _spec(key: str, cfg=CFG):
    return next(s for s in alarm_specs(cfg) if s.key == key)


def test_thresholds_come_from_config():
    assert _spec("endpoint-latency-p99").threshold == CFG.alarm_latency_p99_ms * 1000
    assert _spec("endpoint-5xx-rate").threshold == CFG.alarm_5xx_rate
    assert _spec("endpoint-4xx-rate").threshold == CFG.alarm_4xx_rate
    assert _spec("model-ndcg-below-gate").threshold == CFG.quality_threshold_ndcg_at_10
    assert _spec("data-quarantine-interactions").threshold == CFG.alarm_quarantine_ratio
    assert _spec("drift-score").threshold == CFG.alarm_drift_score
    assert _spec("drift-score", PROD).threshold == PROD.alarm_drift_score != CFG.alarm_drift_score


def test_cpu_and_memory_alarms_only_for_instance_endpoints():
    assert not {"endpoint-cpu", "endpoint-memory"} & {s.key for s in alarm_specs(CFG)}  # dev: serverless
    assert _spec("endpoint-cpu", PROD).threshold == pytest.approx(
        0.8 * 100 * instance_vcpus(PROD.endpoint_instance_type)
    )
    assert instance_vcpus("ml.c5.large") == 2 and instance_vcpus("ml.m5.4xlarge") == 16


def test_endpoint_alarm_names_do_not_collide_with_the_deploy_rollback_alarms():
    from stacks.deploy_stack import alarm_names

    assert not set(endpoint_alarm_names(PROD)) & set(alarm_names(PROD).values())
    assert all(n.startswith("recsys-prod-endpoint-") for n in endpoint_alarm_names(PROD))


def test_model_alarm_fires_below_the_gate_and_clears_above(aws_env):
    cw = aws_env.client("cloudwatch")
    spec = _spec("model-ndcg-below-gate")
    assert evaluate(cw, spec)[0] == OK  # no evaluation yet: notBreaching
    low = {"metrics": {"ndcg_at_10": {"value": CFG.quality_threshold_ndcg_at_10 / 2}}}
    m.publish_model_quality(cw, low, "v1", model_group=CFG.model_package_group)
    assert evaluate(cw, spec) == (ALARM, [CFG.quality_threshold_ndcg_at_10 / 2])
    aws_env.reset()
    high = {"metrics": {"ndcg_at_10": {"value": CFG.quality_threshold_ndcg_at_10 * 2}}}
    m.publish_model_quality(cw, high, "v2", model_group=CFG.model_package_group)
    assert evaluate(cw, spec)[0] == OK


def test_endpoint_states_follow_traffic(aws_env):
    cw = aws_env.client("cloudwatch")
    latency, no_traffic = _spec("endpoint-latency-p99"), _spec("endpoint-no-invocations")
    assert evaluate(cw, latency)[0] == INSUFFICIENT  # treat missing as missing
    assert evaluate(cw, no_traffic)[0] == ALARM  # treat missing as breaching
    m.publish_endpoint_sample(cw, CFG.endpoint_name, [CFG.alarm_latency_p99_ms * 2.0] * 5, errors_5xx=1)
    assert evaluate(cw, latency)[0] == ALARM  # the only evaluated period breaches
    assert evaluate(cw, no_traffic)[0] == OK
    state, values = evaluate(cw, _spec("endpoint-5xx-rate"))
    assert (state, values) == (ALARM, [pytest.approx(0.2)])  # metric math: 1 error / 5 invocations


def test_4xx_rate_treats_absent_errors_as_zero(aws_env):
    cw = aws_env.client("cloudwatch")
    ref = m.endpoint_metric(CFG.endpoint_name, m.INVOCATIONS)
    cw.put_metric_data(
        Namespace=ref.namespace,
        MetricData=[{"MetricName": ref.name, "Dimensions": ref.api_dimensions(), "Value": 10.0}],
    )
    state, values = evaluate(cw, _spec("endpoint-4xx-rate"))
    assert state == OK and values[-1] == 0.0


def test_alarms_are_created_in_cloudwatch_with_state_and_sns_action(aws_env):
    cw = aws_env.client("cloudwatch")
    topic = aws_env.client("sns").create_topic(Name=f"{CFG.prefix}-alarms")["TopicArn"]  # the template's topic
    specs = create_alarms(cw, CFG)
    m.publish_data_quality(cw, "users", 10, 5, 5, database=CFG.glue_database)
    states = {s.name: s.state for s in evaluate_alarms(cw, CFG, datetime.now(UTC))}
    described = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert set(described) == {s.name(CFG) for s in specs}
    assert (
        described[f"{CFG.prefix}-data-quarantine-users"]["StateValue"]
        == ALARM
        == states[f"{CFG.prefix}-data-quarantine-users"]
    )
    assert all(a["AlarmActions"] == [topic] for a in described.values())
    math_alarm = described[f"{CFG.prefix}-endpoint-5xx-rate"]
    assert sorted(q["Id"] for q in math_alarm["Metrics"]) == ["e5xx", "expr_1", "inv"]
    assert {s.name(CFG): s.threshold for s in specs} == {s.name(CFG): s.threshold for s in alarm_specs(CFG)}


def test_the_local_alarms_follow_a_changed_monitoring_template(aws_env, tiny_athena, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cdk.out"
    out.mkdir()
    for path in cdk_out().glob(f"{CFG.prefix}-*.template.json"):
        shutil.copy(path, out)
    template = out / f"{CFG.prefix}-monitoring.template.json"
    doc = json.loads(template.read_text())
    alarms = {
        r["Properties"]["AlarmName"]: k for k, r in doc["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    doc["Resources"][alarms[f"{CFG.prefix}-model-ndcg-below-gate"]]["Properties"]["Threshold"] = 0.001
    del doc["Resources"][alarms[f"{CFG.prefix}-drift-score"]]
    template.write_text(json.dumps(doc))
    monkeypatch.setenv("CDK_OUTDIR", str(out))
    cw = aws_env.client("cloudwatch")
    m.publish_model_quality(cw, EVALUATION, "v1", model_group=CFG.model_package_group)  # NDCG 0.01

    class Progress:
        def info(self, line: str) -> None:
            print(line)

    run_monitoring(CFG, aws_env, tiny_athena, tmp_path, Progress(), data_quality_published=True)
    printed = capsys.readouterr().out
    described = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert described[f"{CFG.prefix}-model-ndcg-below-gate"]["Threshold"] == 0.001
    assert f"OK                {CFG.prefix}-model-ndcg-below-gate" in printed  # 0.01 >= 0.001: no longer alarms
    assert f"{CFG.prefix}-drift-score" not in described and f"{CFG.prefix}-drift-score" not in printed
    assert f"{len(alarms) - 1} alarms, 3 event rules" in printed


@pytest.mark.parametrize(
    ("rule", "detail", "matches"),
    [
        ("pipeline-failed", {"currentPipelineExecutionStatus": "Failed", "pipelineArn": "PIPE"}, True),
        ("pipeline-failed", {"currentPipelineExecutionStatus": "Succeeded", "pipelineArn": "PIPE"}, False),
        ("databrew-job-failed", {"state": "FAILED", "jobName": "recsys-dev-users-curated"}, True),
        ("databrew-job-failed", {"state": "FAILED", "jobName": "other-team-job"}, False),
        ("crawler-failed", {"state": "Failed", "crawlerName": "recsys-dev-curated"}, True),
    ],
)
def test_event_rules_match_only_this_environments_failures(rule, detail, matches):
    spec = next(r for r in event_rule_specs(CFG) if r.key == rule)
    detail = {
        k: (f"arn:aws:sagemaker:ap-south-1:123456789012:pipeline/{CFG.pipeline_name}" if v == "PIPE" else v)
        for k, v in detail.items()
    }
    event = {
        "id": "1", "account": "123456789012", "time": "2024-03-01T00:00:00Z", "region": CFG.region, "resources": [],
        "source": spec.pattern["source"][0], "detail-type": spec.pattern["detail-type"][0], "detail": detail,
    }  # fmt: skip
    # moto's TestEventPattern API is a stub; its rule matcher (what routes put_events) is real.
    assert EventPattern.load(json.dumps(spec.pattern)).matches_event(event) is matches


def test_run_monitoring_publishes_evaluates_and_writes_the_dashboard(aws_env, tiny_athena, tmp_path, capsys):
    class Progress:
        def info(self, line: str) -> None:
            print(line)

    quarantine = tmp_path / "quarantine_interactions.parquet"  # 1 quarantined row beside 23 curated ones
    pd.DataFrame({"user_id": ["u9"], "quarantine_reason": ["duplicate_row"]}).to_parquet(quarantine)
    tiny_athena.register("quarantine_interactions", quarantine)
    cw = aws_env.client("cloudwatch")  # what the pipeline's PublishMetrics step published
    m.publish_model_quality(cw, EVALUATION, "v1", model_group=CFG.model_package_group)
    path = run_monitoring(
        dataclasses.replace(CFG), aws_env, tiny_athena, tmp_path, Progress(),
        model_metrics_history=[m.model_metrics_record(EVALUATION, "v1", datetime.now(UTC))],
        endpoint_latencies_ms=[5.0, 7.0],
    )  # fmt: skip
    out = capsys.readouterr().out
    assert path.is_file() and path.name == "dashboard.html"
    assert f"ALARM             {CFG.prefix}-model-ndcg-below-gate" in out  # 0.01 < dev gate 0.02
    assert f"OK                {CFG.prefix}-data-quarantine-interactions" in out  # 1 of 24 = 4.2% < 5%
    assert "data interactions  quarantined ratio 0.0417 (1 of 24 rows)" in out
    assert "data users         nothing published" in out  # no quarantine table catalogued: as on AWS
    assert cw.list_dashboards()["DashboardEntries"][0]["DashboardName"] == f"{CFG.prefix}-operations"
    assert len(aws_env.client("events").list_rules()["Rules"]) == 3
