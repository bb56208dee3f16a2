"""EventBridge rules from the synthesized templates route the local run's events; a missing rule stops it."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from recsys.cli import main
from recsys.local.curation import cdk_out
from recsys.local.events import (
    LocalClock,
    Route,
    Rule,
    check_pattern,
    execution_status_change,
    load_rules,
    matches,
    model_package_state_change,
    parse_schedule,
    route,
    s3_object_created,
)
from settings.config import LOCAL_ACCOUNT, load_project_config
from tests import HEAVY_TIMEOUT_S

pytestmark = pytest.mark.xdist_group("data_template")  # the session's synthesized template, built once
CFG = load_project_config("dev")
SMALL = ["--users", "150", "--products", "60", "--interactions", "3000", "--days", "30"]
MACHINE = f"arn:aws:states:{CFG.region}:{LOCAL_ACCOUNT}:stateMachine:{CFG.curation_state_machine}"
PIPELINE = f"arn:aws:sagemaker:{CFG.region}:{LOCAL_ACCOUNT}:pipeline/{CFG.pipeline_name}"
SOURCE = CFG.bucket_name("source", LOCAL_ACCOUNT)


@pytest.fixture(autouse=True)
def _no_outdir_from_the_environment(monkeypatch):
    monkeypatch.delenv("CDK_OUTDIR", raising=False)
    yield


def test_pattern_matching_follows_eventbridge_content_filtering():
    evt = {"source": "aws.s3", "detail": {"object": {"key": "raw/interactions/a.csv", "size": 10}, "tags": ["x", "y"]}}
    assert matches({"source": ["aws.s3"], "detail": {"object": {"key": [{"prefix": "raw/interactions/"}]}}}, evt)
    assert not matches({"detail": {"object": {"key": [{"prefix": "raw/users/"}]}}}, evt)
    assert matches({"detail": {"tags": ["y"]}}, evt)  # an array field matches if any element does
    sized = {"key": [{"suffix": ".csv"}], "size": [{"numeric": [">", 5, "<=", 10]}]}
    assert matches({"detail": {"object": sized}}, evt)
    assert matches({"detail": {"gone": [{"exists": False}]}, "source": [{"anything-but": ["aws.glue"]}]}, evt)
    assert not matches({"detail": {"object": {"key": [{"exists": False}]}}}, evt)
    assert not matches({"detail-type": ["Object Created"]}, evt)  # a field the event lacks never matches a value


@pytest.mark.parametrize(
    ("numeric", "matching", "not_matching"),
    [
        ([">", 50.5], [51, 50.6, 1e3], [10, 50, 50.5, -1]),  # an int against a float bound (was always a match)
        ([">=", 50.5], [50.5, 51], [50, 10]),
        (["<", 50.5], [50, -3, 50.4], [50.5, 51, 100]),
        (["<=", 50], [50, 50.0, 49.9], [50.1, 51]),
        (["=", 3.0], [3, 3.0], [3.1, 2]),
        ([">", 0, "<=", 5], [5, 0.1, 3], [0, 5.5, -1]),
        ([">=", 0, "<", 5.5], [0, 5, 5.4], [5.5, -0.1]),
    ],
)
def test_numeric_matching_compares_ints_and_floats_for_every_operator_and_range(numeric, matching, not_matching):
    pattern = {"detail": {"size": [{"numeric": numeric}]}}
    for value in matching:
        assert matches(pattern, {"detail": {"size": value}}), (numeric, value)
    for value in not_matching:
        assert not matches(pattern, {"detail": {"size": value}}), (numeric, value)


def test_numeric_matching_never_matches_strings_booleans_nulls_or_a_missing_field():
    pattern = {"size": [{"numeric": [">", 0]}]}
    for value in ("10", True, None, [], {"n": 1}):
        assert not matches(pattern, {"size": value}), value
    assert not matches(pattern, {})
    assert matches(pattern, {"size": ["a", 3]})  # an array field matches if any element does


@pytest.mark.parametrize(
    ("numeric", "why"),
    [
        ([">"], "expected"),
        ([">", 1, "<"], "expected"),
        ([">", 1, "<", 2, "<", 3], "expected"),
        (["!=", 1], "operators"),
        ([">", "5"], "numbers"),
        ([">", True], "numbers"),
        (["<", 5, ">", 1], "lower bound"),
        (["=", 1, "<", 2], "lower bound"),
        ({">": 1}, "expected"),
    ],
)
def test_malformed_numeric_patterns_are_refused_naming_the_field(numeric, why):
    with pytest.raises(ValueError, match=f"field detail.size: numeric matcher .*{why}"):
        check_pattern({"detail": {"size": [{"numeric": numeric}]}})
    with pytest.raises(ValueError, match=why):
        matches({"size": [{"numeric": numeric}]}, {"size": 1})


def test_patterns_with_unknown_operators_or_shapes_are_refused():
    for pattern, why in [({"a": [{"wildcard": "x*"}]}, "operator 'wildcard'"), ({"a": "x"}, "non-empty list"),
                         ({"a": []}, "non-empty list"), ({"a": [{"prefix": "x", "suffix": "y"}]}, "one operator"),
                         ({"a": [{"exists": "yes"}]}, "true or false")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            check_pattern(pattern)


def test_a_malformed_rule_in_the_templates_is_refused_naming_the_rule(data_template_path, tmp_path):
    out = tmp_path / "cdk.out"
    shutil.copytree(data_template_path.parent, out)
    data = out / f"{CFG.prefix}-data.template.json"
    doc = json.loads(data.read_text())
    (rule,) = [k for k in doc["Resources"] if k.startswith("OnRawInteractions")]
    doc["Resources"][rule]["Properties"]["EventPattern"]["detail"]["object"]["size"] = [{"numeric": [">"]}]
    data.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{CFG.prefix}-data/{rule}: event pattern field detail.object.size"):
        load_rules(CFG, out)


def test_the_templates_chain_upload_to_curation_to_pipeline_to_deploy(data_template_path):
    rules = load_rules(CFG, data_template_path.parent)
    upload = route(rules, s3_object_created(SOURCE, "raw/interactions/x.csv", CFG.region))
    assert [r.target for r in upload] == [MACHINE]
    assert route(rules, s3_object_created(SOURCE, "raw/users/u.csv", CFG.region)) == []  # users alone: no run
    assert [r.target for r in route(rules, execution_status_change(MACHINE, "SUCCEEDED", CFG.region))] == [PIPELINE]
    assert route(rules, execution_status_change(MACHINE, "FAILED", CFG.region)) == []
    approved = route(rules, model_package_state_change(CFG.model_package_group, "Approved", "arn:x", CFG.region))
    assert len(approved) == 1 and ":function:" in approved[0].target
    pending = model_package_state_change(CFG.model_package_group, "PendingManualApproval", "a", CFG.region)
    assert route(rules, pending) == []  # prod's manual approval: nothing deploys until someone approves


def test_without_the_rule_that_starts_training_the_local_run_stops_before_the_pipeline(
    data_template_path, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "cdk.out"
    shutil.copytree(data_template_path.parent, out)
    ml = out / f"{CFG.prefix}-ml.template.json"
    doc = json.loads(ml.read_text())
    (rule,) = [k for k, r in doc["Resources"].items() if k.startswith("OnCurationSucceeded")]
    del doc["Resources"][rule]
    ml.write_text(json.dumps(doc))
    monkeypatch.setenv("CDK_OUTDIR", str(out))
    assert main(["run", "--workdir", str(tmp_path / "run"), *SMALL]) == 1
    printed = capsys.readouterr().out
    assert "EventBridge: curation SUCCEEDED -> no rule matches" in printed
    assert f"no EventBridge rule starts {CFG.pipeline_name}" in printed and "SageMaker pipeline" not in printed


@pytest.mark.timeout(HEAVY_TIMEOUT_S)
def test_without_the_nightly_schedule_rule_no_nightly_run_happens_and_the_weekly_rule_retrains(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "cdk.out"
    shutil.copytree(cdk_out(), out)  # make synth's cdk.out: the deploy function's asset folder is in it
    data = out / f"{CFG.prefix}-data.template.json"
    doc = json.loads(data.read_text())
    (rule,) = [
        k for k, r in doc["Resources"].items() if r["Properties"].get("ScheduleExpression", "").startswith("cron")
    ]
    del doc["Resources"][rule]
    data.write_text(json.dumps(doc))
    monkeypatch.setenv("CDK_OUTDIR", str(out))
    assert main(["run", "--workdir", str(tmp_path / "run"), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "no schedule rule in cdk.out starts the curation workflow: the archive waits, uncurated" in printed
    assert printed.count(f"state machine {CFG.curation_state_machine} from") == 1  # the upload's run only
    assert "Scheduled Event" not in printed and rule not in printed
    assert re.search(r"clock: Sun [\d-]+ 04:00 UTC, cron\(0 4 \? \* SUN \*\) -> recsys-dev-ml/WeeklyRetrain", printed)
    assert "Nightly retrain (WeeklyRetrain" in printed  # the weekly rule still retrains, on the unchanged set


def test_rules_resolve_cross_stack_imports_to_local_names(data_template_path):
    rules = {r.logical_id.rstrip("0123456789ABCDEF"): r for r in load_rules(CFG, data_template_path.parent)}
    curation = [r for k, r in rules.items() if k.startswith("OnCurationSucceeded")]
    assert curation and curation[0].pattern["detail"]["stateMachineArn"] == [MACHINE]  # was Fn::ImportValue


def _rule(schedule: str | None = None, pattern: dict | None = None, **spec) -> Rule:
    return Rule("s", "R", pattern, schedule, (MACHINE,), ({"Arn": MACHINE, "Id": "T", **spec},), "", CFG.region)


def test_cron_and_rate_schedules_fire_when_eventbridge_would_and_malformed_ones_are_refused():
    monday = datetime(2026, 12, 7, 13, 1, tzinfo=UTC)  # a Monday
    clock = LocalClock(monday)
    nightly, weekly = _rule("cron(0 2 * * ? *)"), _rule("cron(0 4 ? * SUN *)")
    fired = clock.advance([nightly, weekly], CFG.region, until=monday + timedelta(days=7))
    assert [f"{f.moment:%a %H:%M}" for f in fired] == [
        "Tue 02:00",
        "Wed 02:00",
        "Thu 02:00",
        "Fri 02:00",
        "Sat 02:00",
        "Sun 02:00",
        "Sun 04:00",
        "Mon 02:00",
    ]
    assert fired[-2].rule is weekly and fired[-2].event["detail-type"] == "Scheduled Event"
    assert fired[0].event["resources"] == [nightly.arn] and fired[0].event["time"] == "2026-12-08T02:00:00Z"
    stopped = LocalClock(monday).advance([nightly, weekly], CFG.region, stop=lambda f: f.rule is weekly)
    assert stopped[-1].rule is weekly and len(stopped) == 7  # the clock stops at the first accepted firing
    every = LocalClock(monday).advance([_rule("rate(6 hours)")], CFG.region, until=monday + timedelta(days=1))
    assert [f"{f.moment:%H:%M}" for f in every] == ["19:01", "01:01", "07:01", "13:01"]
    assert parse_schedule("cron(*/15 8-10 1,15 JAN-MAR ? 2027)").fields[0] == frozenset({0, 15, 30, 45})
    for bad in ("cron(0 2 * * * *)", "cron(0 2 L * ? *)", "cron(0 25 * * ? *)", "cron(0 2 * *)", "rate(1 hours)",
                "rate(0 days)", "every day"):  # fmt: skip
        with pytest.raises(ValueError, match="schedule"):
            parse_schedule(bad)


def test_a_target_receives_the_event_or_its_input_path_constant_input_or_input_transformer():
    evt = s3_object_created(SOURCE, "raw/interactions/x.csv", CFG.region)
    assert Route(_rule(), MACHINE, _rule().specs[0]).input(evt) == evt  # no input settings: the whole event
    path = _rule(InputPath="$.detail.object")
    assert Route(path, MACHINE, path.specs[0]).input(evt) == {"key": "raw/interactions/x.csv"}
    constant = _rule(Input='{"run": "nightly"}')
    assert Route(constant, MACHINE, constant.specs[0]).input(evt) == {"run": "nightly"}
    template = '{"file": "<key>", "bucket": <b>, "rule": "<aws.events.rule-name>"}'
    paths = {"key": "$.detail.object.key", "b": "$.detail.bucket"}
    transformer = _rule(InputTransformer={"InputPathsMap": paths, "InputTemplate": template})
    assert Route(transformer, MACHINE, transformer.specs[0]).input(evt) == {
        "file": "raw/interactions/x.csv", "bucket": {"name": SOURCE}, "rule": "R"}  # fmt: skip


def test_a_routes_kind_and_resource_come_from_the_targets_arn_in_the_template(data_template_path):
    rules = load_rules(CFG, data_template_path.parent)
    kinds = {(r.kind, r.resource) for rule in rules for r in [Route(rule, t) for t in rule.targets]}
    assert ("state machine", CFG.curation_state_machine) in kinds and ("pipeline", CFG.pipeline_name) in kinds
    assert {k for k, _ in kinds} == {"state machine", "pipeline", "function", "topic"}
    schedules = {r.logical_id.rstrip("0123456789ABCDEF"): r.schedule for r in rules if r.schedule}
    assert schedules == {"Nightly": "cron(0 2 * * ? *)", "WeeklyRetrain": "cron(0 4 ? * SUN *)"}


def test_crawler_and_pipeline_failures_reach_the_alarm_topic_and_successes_do_not(data_template_path):
    from recsys.local.events import crawler_state_change, pipeline_status_change

    rules = load_rules(CFG, data_template_path.parent)
    failed = route(rules, crawler_state_change(f"{CFG.prefix}-curated", "Failed", "cannot read", CFG.region))
    assert [(r.kind, r.rule.stack) for r in failed] == [("topic", f"{CFG.prefix}-monitoring")]
    assert route(rules, crawler_state_change(f"{CFG.prefix}-curated", "Succeeded", "", CFG.region)) == []
    assert [r.kind for r in route(rules, pipeline_status_change(PIPELINE, "Failed", CFG.region))] == ["topic"]
    assert route(rules, pipeline_status_change(PIPELINE, "Succeeded", CFG.region)) == []
