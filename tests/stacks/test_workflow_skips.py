"""The curation workflow records every optional job it skips: in the execution's output and as a metric."""

from __future__ import annotations

import pytest

from monitoring import metrics as m
from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S
from tests.stacks.test_data_stack import _state_machine_definition

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]
CFG = load_project_config("dev")


def _branches(definition: dict) -> dict[str, dict]:
    """Each recipe job's branch of the jobs stage, by job name."""
    stage = definition["States"][definition["StartAt"]]
    assert stage["Type"] == "Parallel" and stage["ResultPath"] == "$.jobs"
    return {b["StartAt"].removeprefix("Run "): b for b in stage["Branches"]}


def test_optional_jobs_are_caught_counted_and_listed_required_ones_fail_the_run(data_template):
    branches = _branches(_state_machine_definition(data_template))
    optional = {j for j in branches if not j.startswith(f"{CFG.prefix}-interactions-")}
    tables = ("users", "products", "clickstream")
    assert {j.rsplit("-", 1)[0] for j in optional} == {f"{CFG.prefix}-{t}" for t in tables}
    for job, branch in branches.items():
        states = branch["States"]
        run = states[branch["StartAt"]]
        if job not in optional:
            assert "Catch" not in run  # interactions is required: its failure fails the workflow
            assert states[run["Next"]]["Parameters"] == {"job": job, "skipped": 0}
            continue
        assert states[run["Next"]]["Parameters"] == {"record": {"job": job, "skipped": 0}}
        (catch,) = run["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
        skipped = states[catch["Next"]]
        assert skipped["Type"] == "Pass"
        error = {"error.$": "$.error.Error", "cause.$": "$.error.Cause"}
        assert skipped["Parameters"] == {"record": {"job": job, "skipped": 1, **error}}
        publish = states[skipped["Next"]]
        assert states[run["Next"]]["Next"] == skipped["Next"]  # ran or skipped, the metric is published
        assert publish["Resource"].endswith(":states:::aws-sdk:cloudwatch:putMetricData")
        ref = m.curation_metric(CFG.curation_state_machine)
        (datum,) = publish["Parameters"]["MetricData"]
        assert publish["Parameters"]["Namespace"] == ref.namespace
        assert datum == {"MetricName": ref.name, "Dimensions": ref.api_dimensions(), "Value.$": "$.record.skipped",
                         "Unit": "Count"}  # fmt: skip
        assert publish.get("End") is True and publish["OutputPath"] == "$.record"  # the branch's output


def test_the_skip_alarm_watches_what_the_workflow_publishes():
    from monitoring.alarms import alarm_specs

    (spec,) = [s for s in alarm_specs(CFG) if s.key == "data-curation-job-skipped"]
    (_, ref, _), = spec.metrics
    assert ref == m.curation_metric(CFG.curation_state_machine)
    assert (spec.comparison, spec.threshold) == ("GreaterThanThreshold", 0.0)  # one skipped job is enough
