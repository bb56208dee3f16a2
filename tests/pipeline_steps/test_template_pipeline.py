"""The local pipeline run follows the ml stack's synthesized pipeline definition: its steps, order and condition."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from monitoring.metrics import NAMESPACE, NDCG_AT_10
from pipeline_steps.local_runner import TemplatePipeline, run_pipeline_locally
from recsys.generator import GeneratorConfig, generate_tables
from recsys.local.provision import provision
from recsys.local.s3io import write_parquet
from settings.config import load_project_config

pytestmark = pytest.mark.slow
CFG = load_project_config("dev")
FAST = {"models": "popularity,item_knn", "max-eval-users": "300"}


@pytest.fixture
def loaded(aws_env):
    tables = generate_tables(GeneratorConfig(n_users=120, n_products=60, n_interactions=3000, seed=3))
    res = provision(CFG, aws_env)
    write_parquet(aws_env, tables["interactions"], f"s3://{res.destination_bucket}/training/interactions.parquet")
    return aws_env, res


def _ml(data_template_path: Path) -> Path:
    return data_template_path.parent / f"{CFG.prefix}-ml.template.json"


def _body(doc: dict) -> dict:
    (pipeline,) = [r for r in doc["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"]
    return pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]


def _changed(data_template_path: Path, tmp_path: Path, change) -> TemplatePipeline:
    """A copy of the ml template whose pipeline definition ``change`` edited."""
    doc = json.loads(_ml(data_template_path).read_text())
    body = _body(doc)
    definition = json.loads(body["Fn::Sub"][0])  # ${...} substitutions sit inside JSON strings
    change(definition)
    body["Fn::Sub"][0] = json.dumps(definition)
    path = tmp_path / "ml.template.json"
    path.write_text(json.dumps(doc))
    return TemplatePipeline.load(path, CFG.pipeline_name)


def test_the_run_executes_the_templates_steps_and_reports_its_hash(loaded, tmp_path, data_template_path):
    aws, res = loaded
    template = TemplatePipeline.load(_ml(data_template_path), CFG.pipeline_name)
    body = _body(json.loads(_ml(data_template_path).read_text()))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert template.sha256 == hashlib.sha256(canonical).hexdigest()
    lines: list[str] = []
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lines.append, hyperparameters=FAST, template=template)
    assert result.status == "Succeeded" and result.passed_gate
    top = [s["Name"] for s in template.definition["Steps"]]
    (condition,) = [s for s in template.definition["Steps"] if s["Type"] == "Condition"]
    branch = [s["Name"].split("-", 1)[0] for s in condition["Arguments"]["IfSteps"]]
    assert [s.name for s in result.steps] == [*top, *branch]
    assert lines[0].startswith(f"definition from {_ml(data_template_path).name} (sha256 {template.sha256[:12]})")


def test_a_step_removed_from_the_template_is_not_run_and_its_metrics_are_missing(loaded, tmp_path, data_template_path):
    aws, res = loaded

    def drop_publish(definition: dict) -> None:
        definition["Steps"] = [s for s in definition["Steps"] if s["Name"] != "PublishMetrics"]

    template = _changed(data_template_path, tmp_path, drop_publish)
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lambda _: None, hyperparameters=FAST, template=template)
    assert result.passed_gate and "PublishMetrics" not in [s.name for s in result.steps]
    assert not aws.client("cloudwatch").list_metrics(Namespace=NAMESPACE, MetricName=NDCG_AT_10)["Metrics"]


def test_the_templates_condition_decides_the_branch(loaded, tmp_path, data_template_path):
    aws, res = loaded

    def impossible_gate(definition: dict) -> None:
        (condition,) = [s for s in definition["Steps"] if s["Type"] == "Condition"]
        condition["Arguments"]["Conditions"][0]["RightValue"] = 2.0  # NDCG@10 can never reach 2

    template = _changed(data_template_path, tmp_path, impossible_gate)
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lambda _: None, hyperparameters=FAST, template=template)
    assert result.status == "Failed" and not result.passed_gate and result.model_package_arn is None
    assert result.steps[-1].name == "QualityGateFailed"
