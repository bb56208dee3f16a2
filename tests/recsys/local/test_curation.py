"""The local run executes the curation state machine the data stack synthesizes, and reports what it lacks."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import pytest

from monitoring import metrics as m
from monitoring.alarms import ALARM, alarm_specs
from recsys.local.alarms import evaluate
from recsys.local.athena import LocalAthena
from recsys.local.curation import run_curation
from recsys.local.moto_server import LocalAws
from recsys.local.provision import provision, upload_raw
from settings.config import load_project_config

pytestmark = pytest.mark.xdist_group("data_template")  # the session's synthesized template, built once
CFG = load_project_config("dev")
HEADER = "user_id,product_id,event_type,rating,timestamp\n"


@pytest.fixture(scope="module")
def template(data_template_path) -> Path:
    """The data stack as ``cdk synth`` writes it (synthesized for the session, so never a stale cdk.out)."""
    return data_template_path


def _data(aws: LocalAws, tmp_path: Path):
    res = provision(CFG, aws)
    files = {
        "interactions": HEADER + "u1,p1,view,,2026-01-01T10:00:00Z\nu2,p1,purchase,,2026-01-02T10:00:00Z\n"
        "u2,p2,teleport,,2026-01-02T11:00:00Z\n",
        "users": "user_id,signup_date,city,age_band\nu1,2025-01-01,Pune,25-34\nu2,2025-02-01,Delhi,18-24\n",
        "products": "product_id,category,price\np1,Sarees,499\np2,Kurtis,-3\n",
    }
    paths = {}
    for table, text in files.items():
        (tmp_path / f"{table}.csv").write_text(text)
        paths[table] = tmp_path / f"{table}.csv"
    upload_raw(aws, res, paths)
    return res


def _machine(doc: dict) -> dict:
    (machine,) = [r for r in doc["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return machine["Properties"]


def _definition(doc: dict) -> dict:
    """The ASL with CloudFormation token ``i`` replaced by the placeholder ``TOKEN<i>`` (read independently of the
    runner)."""
    body = _machine(doc)["DefinitionString"]
    tokens = iter(range(len(body["Fn::Join"][1])))
    return json.loads("".join(p if isinstance(p, str) else f"TOKEN{next(tokens)}" for p in body["Fn::Join"][1]))


def _with_definition(doc: dict, definition: dict, path: Path) -> Path:
    """A copy of the template whose state machine is ``definition``, its placeholders the original tokens again
    (an ``Fn::Join`` as CloudFormation would read it)."""
    changed = copy.deepcopy(doc)
    tokens = [p for p in _machine(doc)["DefinitionString"]["Fn::Join"][1] if not isinstance(p, str)]
    parts = re.split(r"TOKEN(\d+)", json.dumps(definition))
    joined = [tokens[int(p)] if i % 2 else p for i, p in enumerate(parts)]
    _machine(changed)["DefinitionString"] = {"Fn::Join": ["", joined]}
    path.write_text(json.dumps(changed))
    return path


def _alarm(aws: LocalAws, key: str) -> tuple[str, list[float | None]]:
    """(state, value per period): a value None means the alarm's metric had no datapoint."""
    (spec,) = [s for s in alarm_specs(CFG) if s.key == key]
    return evaluate(aws.client("cloudwatch"), spec)


def test_the_run_executes_the_templates_definition_and_reports_its_hash(aws_env, tmp_path, template):
    doc = json.loads(template.read_text())
    res = _data(aws_env, tmp_path)
    run = run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}), template=template)
    body = json.dumps(_machine(doc)["DefinitionString"], sort_keys=True, separators=(",", ":"))
    assert run.sha256 == hashlib.sha256(body.encode()).hexdigest()
    assert run.execution.status == "SUCCEEDED", run.execution.cause
    definition = _definition(doc)
    top = [s.name for s in run.execution.steps if not s.path]
    assert top[0] == definition["StartAt"] and top[-1] == "Curated and features built"
    for here, there in zip(top, top[1:], strict=False):  # every move is one the definition allows
        state = definition["States"][here]
        allowed = {state.get("Next"), state.get("Default"), *(c["Next"] for c in state.get("Choices", []))}
        allowed |= {c["Next"] for c in state.get("Catch", [])}  # e.g. click-through with nothing captured yet
        assert there in allowed, (here, there)
    assert run.runs[f"{CFG.prefix}-interactions-curated"].rows_out == 2
    assert run.runs[f"{CFG.prefix}-interactions-quarantine"].reasons == {"unknown_event_type": 1}
    assert run.features and all(n.startswith("feature_") for n in run.features)


def test_a_skipped_optional_job_is_in_the_output_as_a_metric_and_raises_its_alarm(aws_env, tmp_path, template):
    res = _data(aws_env, tmp_path)  # no clickstream archive: its two jobs fail, are caught and skipped
    run = run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}), template=template)
    assert run.execution.status == "SUCCEEDED"
    skipped = {r["job"]: r for r in run.execution.output["jobs"] if r["skipped"]}
    assert set(skipped) == {f"{CFG.prefix}-clickstream-curated", f"{CFG.prefix}-clickstream-quarantine"}
    assert all("no objects" in r["cause"] for r in skipped.values())
    assert _alarm(aws_env, "data-curation-job-skipped") == (ALARM, [1.0])
    assert _alarm(aws_env, "data-quarantine-products") == (ALARM, [0.5])  # p2's price -3: quarantined


def test_removing_a_producer_state_from_the_template_leaves_its_alarm_without_data(aws_env, tmp_path, template):
    doc = json.loads(template.read_text())
    definition = _definition(doc)
    for branch in definition["States"][definition["StartAt"]]["Branches"]:  # drop every skipped-job counter
        for name in [n for n in branch["States"] if n.startswith("Count ") and n.endswith(" skipped")]:
            del branch["States"][name]
        for state in branch["States"].values():
            if state.get("Next", "").endswith(" skipped") and state["Next"] not in branch["States"]:
                state.pop("Next")
                state["End"] = True
    states = definition["States"]
    del states["Publish users quality"]
    states["Read users counts"]["Next"] = "users quality done"
    res = _data(aws_env, tmp_path)
    run = run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}),
                       template=_with_definition(doc, definition, tmp_path / "changed.template.json"))  # fmt: skip
    assert run.execution.status == "SUCCEEDED"  # the workflow still "works" ...
    assert _alarm(aws_env, "data-curation-job-skipped")[1] == [None]  # ... but nothing feeds these alarms
    assert _alarm(aws_env, "data-quarantine-users")[1] == [None]
    assert _alarm(aws_env, "data-quarantine-interactions") == (ALARM, [pytest.approx(1 / 3)])  # still produced
    assert not aws_env.client("cloudwatch").list_metrics(MetricName=m.CURATION_JOBS_SKIPPED)["Metrics"]


def test_the_crawler_polls_running_then_ready_so_the_workflows_wait_loop_runs(aws_env, tmp_path, template):
    res = _data(aws_env, tmp_path)
    run = run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}), template=template)
    crawler = f"{CFG.prefix}-curated"
    names = [s.name for s in run.execution.steps if not s.path and crawler in s.name.split()]
    assert names == [f"Start {crawler}", f"Wait {crawler}", f"Get {crawler}", f"{crawler} ready?",
                     f"Wait {crawler}", f"Get {crawler}", f"{crawler} ready?", f"{crawler} done"]  # fmt: skip
    gets = [s.note for s in run.execution.steps if s.name == f"Get {crawler}"]
    assert gets == ["RUNNING", "READY (last crawl SUCCEEDED)"]
    assert run.execution.waited >= 2 * 30 * 2  # two Waits per crawler on the local clock, never slept


def test_the_templates_timeout_seconds_and_a_retry_added_to_it_are_what_the_local_run_follows(
    aws_env, tmp_path, template
):
    doc = json.loads(template.read_text())
    definition = _definition(doc)
    definition["TimeoutSeconds"] = 100  # the crawlers' polling alone takes 2 x 60 s on the local clock
    res = _data(aws_env, tmp_path)
    run = run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}),
                       template=_with_definition(doc, definition, tmp_path / "timeout.template.json"))  # fmt: skip
    assert (run.execution.status, run.execution.error) == ("FAILED", "States.Timeout")
    definition = _definition(doc)
    branch = next(b for b in definition["States"][definition["StartAt"]]["Branches"] if "clickstream-curated" in
                  b["StartAt"])  # fmt: skip
    branch["States"][branch["StartAt"]]["Retry"] = [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 5,
                                                     "MaxAttempts": 2}]  # fmt: skip
    run = run_curation(CFG, aws_env, res, tmp_path / "lake2", LocalAthena({}),
                       template=_with_definition(doc, definition, tmp_path / "retry.template.json"))  # fmt: skip
    assert run.execution.status == "SUCCEEDED"  # no clickstream archive: retried twice, then caught as before
    attempts = [s for s in run.execution.steps if s.name == branch["StartAt"]]
    assert [s.waited for s in attempts] == [5.0, 10.0, 0.0] and attempts[-1].note.startswith("caught")


def test_a_jsonata_state_in_the_template_is_refused_before_anything_runs(aws_env, tmp_path, template):
    from recsys.local.states import DefinitionError

    doc = json.loads(template.read_text())
    definition = _definition(doc)
    definition["States"]["Curated and features built"] = {"Type": "Pass", "Output": "{% $states.input %}",
                                                          "QueryLanguage": "JSONata", "End": True}  # fmt: skip
    res = _data(aws_env, tmp_path)
    with pytest.raises(DefinitionError, match="state 'Curated and features built': field QueryLanguage"):
        run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}),
                     template=_with_definition(doc, definition, tmp_path / "jsonata.template.json"))  # fmt: skip
    assert not (tmp_path / "lake").exists()  # no job ran


def test_a_failed_workflow_routes_its_failed_job_and_its_status_before_the_run_stops(
    aws_env, tmp_path, template, capsys, monkeypatch
):
    import shutil

    from glue_jobs.raw_reader import RawDataError
    from recsys.local.events import load_rules, route, s3_object_created
    from recsys.local.progress import Progress
    from recsys.local.workflow import run_curation_workflow

    doc = json.loads(template.read_text())
    definition = _definition(doc)
    job = f"{CFG.prefix}-clickstream-curated"
    branch = next(b for b in definition["States"][definition["StartAt"]]["Branches"] if job in b["StartAt"])
    del branch["States"][branch["StartAt"]]["Catch"]  # no clickstream archive, and nothing catches it now
    out = tmp_path / "cdk.out"
    shutil.copytree(template.parent, out)
    _with_definition(doc, definition, out / template.name)
    monkeypatch.setenv("CDK_OUTDIR", str(out))
    res = _data(aws_env, tmp_path)
    rules = load_rules(CFG, out)
    uploaded = s3_object_created(res.source_bucket, "raw/interactions/interactions.csv", CFG.region)
    (started,) = route(rules, uploaded)
    with pytest.raises(RawDataError, match="the curation workflow failed: States.TaskFailed"):
        run_curation_workflow(Progress(), CFG, aws_env, res, tmp_path / "lake", LocalAthena({}), rules=rules,
                              started=started, trigger=uploaded)  # fmt: skip
    printed = capsys.readouterr().out
    assert f"EventBridge: DataBrew job {job} FAILED -> {CFG.prefix}-monitoring/Ruledatabrewjobfailed" in printed
    assert "EventBridge: curation FAILED -> no rule matches" in printed


def test_the_definition_gets_its_substitutions_and_unresolved_cloudformation_is_refused_not_passed_through():
    from recsys.local.curation import machine_definition
    from recsys.local.states import DefinitionError, Interpreter

    doc = {"Resources": {"Job": {"Type": "AWS::DataBrew::Job", "Properties": {"Name": "recsys-dev-x"}}}}
    asl = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::databrew:startJobRun.sync",
                                            "Parameters": {"Name": "${JobName}"}, "End": True}}}  # fmt: skip
    props = {"DefinitionString": json.dumps(asl), "DefinitionSubstitutions": {"JobName": {"Ref": "Job"}}}
    assert machine_definition(doc, props, CFG.region)["States"]["T"]["Parameters"] == {"Name": "recsys-dev-x"}
    assert machine_definition(doc, {"Definition": asl, "DefinitionSubstitutions": {"JobName": "j"}}, CFG.region)
    leftover = machine_definition(doc, {"DefinitionString": json.dumps(asl)}, CFG.region)
    with pytest.raises(DefinitionError, match=r"state 'T', field Parameters: unresolved substitution \$\{JobName\}"):
        Interpreter(leftover, lambda r, p: ({}, ""))
    for props, why in [({"DefinitionString": {"Fn::Sub": json.dumps(asl)}}, "unresolved CloudFormation Fn::Sub"),
                       ({"DefinitionString": {"Fn::Join": ["", ['{"StartAt": ', {"Fn::Sub": "x"}, "}"]]}},
                        "Fn::Join: part .*Fn::Sub.* is unresolved CloudFormation"),
                       ({"DefinitionS3Location": {}}, "DefinitionS3Location is not read locally"),
                       ({"DefinitionString": "{not json"}, "not JSON")]:  # fmt: skip
        with pytest.raises(DefinitionError, match=why):
            machine_definition(doc, props, CFG.region)
