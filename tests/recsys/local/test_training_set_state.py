"""The deployed curation workflow builds the training set (an Athena UNLOAD of sql/training_set.sql), and the local
run follows the template: where the state writes, PrepareData reads; without the state, PrepareData has no input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lambdas.erasure.core import SUPPRESSION_KEY
from recsys.local.athena import LocalAthena
from recsys.local.curation import Resolver, run_curation
from recsys.local.moto_server import LocalAws
from recsys.local.pipeline import PipelineStepError, TemplatePipeline, run_pipeline_locally
from recsys.local.provision import LocalResources, provision, upload_raw
from recsys.local.s3io import list_data_keys, read_parquet
from settings.config import TRAINING_SET_PREFIX, load_project_config

pytestmark = pytest.mark.xdist_group("data_template")  # the session's synthesized template, built once
CFG = load_project_config("dev")
BUILD = "Build training set"
TRAINING_STATES = ("List old training set", "Old training set?", "Clear old training set", BUILD)


def _data(aws: LocalAws, tmp_path: Path) -> LocalResources:
    res = provision(CFG, aws)
    files = {
        "interactions": "user_id,product_id,event_type,rating,timestamp\n"
        "u1,p1,view,,2026-01-01T10:00:00Z\nu2,p1,purchase,,2026-01-02T10:00:00Z\n",
        "users": "user_id,signup_date,city,age_band\nu1,2025-01-01,Pune,25-34\n",
        "products": "product_id,category,price\np1,Sarees,499\n",
    }
    for table, text in files.items():
        (tmp_path / f"{table}.csv").write_text(text)
    upload_raw(aws, res, {table: tmp_path / f"{table}.csv" for table in files})
    return res


def _machine(doc: dict) -> dict:
    (machine,) = [r for r in doc["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return machine["Properties"]


def _changed(template: Path, change, path: Path) -> Path:
    """A copy of the template whose (resolved) definition ``change`` edited in place."""
    doc = json.loads(template.read_text())
    definition = json.loads(Resolver(doc, CFG.region)(_machine(doc)["DefinitionString"]))
    change(definition)
    changed = copy.deepcopy(doc)
    _machine(changed)["DefinitionString"] = json.dumps(definition)
    path.write_text(json.dumps(changed))
    return path


def _run(aws: LocalAws, res: LocalResources, tmp_path: Path, template: Path):
    run = run_curation(CFG, aws, res, tmp_path / "lake", LocalAthena({}), template=template)
    assert run.execution.status == "SUCCEEDED", run.execution.cause
    return run


def test_the_workflow_unloads_the_training_set_where_prepare_data_reads_it(aws_env, tmp_path, data_template_path):
    res = _data(aws_env, tmp_path)
    run = _run(aws_env, res, tmp_path, data_template_path)
    location = f"s3://{res.destination_bucket}/{TRAINING_SET_PREFIX}/"
    assert run.unloaded == {location: 2}
    frame = read_parquet(aws_env, location)
    assert sorted(frame["user_id"]) == ["u1", "u2"] and "timestamp" in frame and "category" in frame
    names = [s.name for s in run.execution.steps if not s.path]
    assert names.index(BUILD) > max(i for i, n in enumerate(names) if n.startswith("Build feature_"))


def test_a_rerun_replaces_the_old_training_set_and_keeps_the_suppression_list(aws_env, tmp_path, data_template_path):
    res = _data(aws_env, tmp_path)
    s3 = aws_env.client("s3")
    s3.put_object(Bucket=res.destination_bucket, Key=SUPPRESSION_KEY, Body=b'{"key": "00", "user_keys": []}')
    for i in range(3):  # a stale training set: UNLOAD would refuse the non-empty folder
        s3.put_object(Bucket=res.destination_bucket, Key=f"{TRAINING_SET_PREFIX}/stale_{i}", Body=b"old")
    _run(aws_env, res, tmp_path, data_template_path)
    run = _run(aws_env, res, tmp_path, data_template_path)  # the nightly run after the upload's
    keys = list_data_keys(aws_env, res.destination_bucket, f"{TRAINING_SET_PREFIX}/")
    assert len(keys) == 1 and not any("stale" in k for k in keys)
    assert s3.get_object(Bucket=res.destination_bucket, Key=SUPPRESSION_KEY)["Body"].read().startswith(b'{"key"')
    deleted = [s for s in run.execution.steps if s.name == "Delete old training file"]
    assert len(deleted) == 1  # the first run's file, and only it


def test_the_unload_target_comes_from_the_template(aws_env, tmp_path, data_template_path):
    def elsewhere(definition: dict) -> None:
        params = definition["States"][BUILD]["Parameters"]
        params["QueryString"] = params["QueryString"].replace(f"/{TRAINING_SET_PREFIX}/", "/somewhere-else/")

    res = _data(aws_env, tmp_path)
    run = _run(aws_env, res, tmp_path, _changed(data_template_path, elsewhere, tmp_path / "moved.template.json"))
    assert run.unloaded == {f"s3://{res.destination_bucket}/somewhere-else/": 2}
    assert list_data_keys(aws_env, res.destination_bucket, "somewhere-else/")
    assert not list_data_keys(aws_env, res.destination_bucket, f"{TRAINING_SET_PREFIX}/")


def test_without_the_training_set_states_prepare_data_fails_for_want_of_input(aws_env, tmp_path, data_template_path):
    def without(definition: dict) -> None:
        states = definition["States"]
        entry = next(n for n, s in states.items() if s.get("Next") == TRAINING_STATES[0])
        states[entry]["Next"] = states[BUILD]["Next"]
        for name in TRAINING_STATES:
            del states[name]

    res = _data(aws_env, tmp_path)
    run = _run(aws_env, res, tmp_path, _changed(data_template_path, without, tmp_path / "without.template.json"))
    assert run.unloaded == {}
    pipeline = TemplatePipeline.load(data_template_path.parent / f"{CFG.prefix}-ml.template.json", CFG.pipeline_name)
    with pytest.raises(PipelineStepError, match=r"PrepareData: no data for input channel 'input' at s3://.*/training/"):
        run_pipeline_locally(CFG, aws_env, res, tmp_path / "work", lambda _: None, template=pipeline)
