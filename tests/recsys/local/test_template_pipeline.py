"""The local pipeline run follows the ml stack's synthesized pipeline definition: its steps, order and condition."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from monitoring.metrics import NAMESPACE, NDCG_AT_10
from recsys.generator import GeneratorConfig, generate_tables
from recsys.local.pipeline import PipelineStepError, TemplatePipeline, run_pipeline_locally
from recsys.local.provision import provision
from recsys.local.s3io import write_parquet
from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S

# one synth per run
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("data_template"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]
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


def test_the_run_executes_the_templates_steps_so_a_step_removed_from_it_is_not_run(
    loaded, tmp_path, data_template_path
):
    """One run on a copy of the template without PublishMetrics: the steps run are the template's (in its order,
    the condition's branch after it), the reported hash is the changed definition's, and the model metrics that
    step publishes are missing (the model alarm would have no data)."""
    aws, res = loaded
    shipped = TemplatePipeline.load(_ml(data_template_path), CFG.pipeline_name)
    body = _body(json.loads(_ml(data_template_path).read_text()))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert shipped.sha256 == hashlib.sha256(canonical).hexdigest()
    assert "PublishMetrics" in [s["Name"] for s in shipped.definition["Steps"]]

    def drop_publish(definition: dict) -> None:
        definition["Steps"] = [s for s in definition["Steps"] if s["Name"] != "PublishMetrics"]

    template = _changed(data_template_path, tmp_path, drop_publish)
    lines: list[str] = []
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lines.append, hyperparameters=FAST, template=template)
    assert result.status == "Succeeded" and result.passed_gate
    top = [s["Name"] for s in template.definition["Steps"]]
    (condition,) = [s for s in template.definition["Steps"] if s["Type"] == "Condition"]
    branch = [s["Name"].split("-", 1)[0] for s in condition["Arguments"]["IfSteps"]]
    assert [s.name for s in result.steps] == [*top, *branch] and "PublishMetrics" not in top
    assert template.sha256 != shipped.sha256 and lines[0].startswith(f"definition from ml.template.json (sha256 "
                                                                      f"{template.sha256[:12]})")  # fmt: skip
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
    assert result.gate_message.startswith("quality gate failed: ") and "value 2.0000 (no)" in result.gate_message


def test_a_hyperparameter_and_a_parameter_default_changed_in_the_definition_reach_the_run(
    loaded, tmp_path, data_template_path
):
    """The training request's hyperparameter reaches train.py (its hyperparameters.json and its log), and the
    definition's QualityThreshold default, not the settings', is what the executed condition compares with."""
    aws, res = loaded

    def edit(definition: dict) -> None:
        (train,) = [s for s in definition["Steps"] if s["Type"] == "Training"]
        train["Arguments"]["HyperParameters"]["model-version"] = json.dumps("mutated-v9")
        (threshold,) = [p for p in definition["Parameters"] if p["Name"] == "QualityThreshold"]
        threshold["DefaultValue"] = 1.5

    template = _changed(data_template_path, tmp_path, edit)
    lines: list[str] = []
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lines.append, hyperparameters=FAST, template=template)
    job = tmp_path / "pipeline" / result.execution_id / "TrainModel"
    assert json.loads((job / "input" / "config" / "hyperparameters.json").read_text())["model-version"] == "mutated-v9"
    assert "saved model mutated-v9" in (job / "logs" / "stdout.log").read_text()
    assert result.parameters["QualityThreshold"] == 1.5 and not result.passed_gate and result.status == "Failed"
    assert "QualityThreshold 1.5000 (no)" in result.gate_message
    assert "must be >= 1.5" in lines[-1]  # the Fail step's ErrorMessage, filled from the same parameter


def test_a_variable_the_local_run_cannot_fill_is_refused_naming_the_step_and_field(
    loaded, tmp_path, data_template_path
):
    aws, res = loaded

    def other_variable(definition: dict) -> None:
        (first,) = [s for s in definition["Steps"] if s["Name"] == "PrepareData"]
        first["Arguments"]["Environment"]["CODE"] = "s3://${CodeBucket}/x"

    template = _changed(data_template_path, tmp_path, other_variable)
    with pytest.raises(PipelineStepError, match=r"PrepareData Environment.CODE: \$\{CodeBucket\}.*not interpreted"):
        run_pipeline_locally(CFG, aws, res, tmp_path, lambda _: None, hyperparameters=FAST, template=template)


def test_a_template_step_the_local_specs_cannot_run_as_written_is_refused(tmp_path, data_template_path):
    def other_script(definition: dict) -> None:
        definition["Steps"][0]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][-1] = "other.py"
        definition["Steps"].append({"Name": "Tune", "Type": "Tuning", "Arguments": {}})

    template = _changed(data_template_path, tmp_path, other_script)
    first, *_, unknown = template.definition["Steps"]
    with pytest.raises(PipelineStepError, match="the template runs other.py"):
        template.spec(first)
    with pytest.raises(PipelineStepError, match="Tuning is not run locally"):
        template.spec(unknown)


def test_the_job_requests_arguments_and_s3_uris_come_from_the_template(loaded, tmp_path, data_template_path):
    """PublishMetrics' --model-group and EvaluateModel's output URI edited in the template: the run publishes under
    the edited group, writes the report where the template says, and the steps that reference it read it there."""
    aws, res = loaded

    def edit(definition: dict) -> None:
        steps = {s["Name"]: s for s in definition["Steps"]}
        args = steps["PublishMetrics"]["Arguments"]["AppSpecification"]["ContainerArguments"]
        args[args.index("--model-group") + 1] = "edited-group"
        (out,) = steps["EvaluateModel"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        out["S3Output"]["S3Uri"] = {"Std:Join": {"On": "/", "Values": [
            "s3://${DataBucket}/elsewhere", {"Get": "Execution.PipelineExecutionId"}]}}  # fmt: skip
        (condition,) = [s for s in definition["Steps"] if s["Type"] == "Condition"]
        (register,) = [s for s in condition["Arguments"]["IfSteps"] if s["Type"] == "RegisterModel"]
        register["Arguments"]["ModelPackageDescription"] = "edited description"

    template = _changed(data_template_path, tmp_path, edit)
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lambda _: None, hyperparameters=FAST, template=template)
    assert result.status == "Succeeded" and result.passed_gate
    assert result.evaluation_uri.startswith(f"s3://{res.destination_bucket}/elsewhere/{result.execution_id}/")
    metrics = aws.client("cloudwatch").list_metrics(Namespace=NAMESPACE, MetricName=NDCG_AT_10)["Metrics"]
    groups = {d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "ModelPackageGroup"}
    assert groups == {"edited-group"}
    package = aws.client("sagemaker").describe_model_package(ModelPackageName=result.model_package_arn)
    assert package["ModelPackageDescription"] == "edited description"


def test_a_reference_the_local_run_cannot_resolve_is_refused(loaded, tmp_path, data_template_path):
    aws, res = loaded

    def odd_reference(definition: dict) -> None:
        (first,) = [s for s in definition["Steps"] if s["Name"] == "PrepareData"]
        first["Arguments"]["ProcessingInputs"][-1]["S3Input"]["S3Uri"] = {"Get": "Steps.PrepareData.Properties.Odd"}

    template = _changed(data_template_path, tmp_path, odd_reference)
    with pytest.raises(PipelineStepError, match="is not interpreted locally"):
        run_pipeline_locally(CFG, aws, res, tmp_path, lambda _: None, hyperparameters=FAST, template=template)
