"""A forget request reaches the served model: the endpoint, deployed as on AWS (the deploy function from its cdk.out
asset, the Model's container Environment from the registered package), answers the forgotten shopper as a new one.
Its suppression list comes from that Environment alone: without the variable the endpoint keeps personalising, even
though every store is clean. The template-to-Model chain is followed from a changed copy of cdk.out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.local.curation import cdk_out
from recsys.local.erasure import deployed_endpoint, forget_served, pick_shopper
from recsys.local.events import model_package_state_change
from recsys.local.experiment import run_deploy_function
from recsys.local.moto_server import LocalAws
from settings.config import Config
from settings.erasure import SUPPRESSION_ENV
from tests import HEAVY_TIMEOUT_S
from tests.erasure.conftest import Shop

PACKAGED = "pipeline/exec-1/PackageModel/packaged/model.tar.gz"  # the shop's registered archive (conftest)


def _ml_template(out: Path, cfg: Config) -> Path:
    return out / f"{cfg.prefix}-ml.template.json"


def _register_container(definition: dict) -> dict:
    (condition,) = [s for s in definition["Steps"] if s["Type"] == "Condition"]
    (register,) = [s for s in condition["Arguments"]["IfSteps"] if s["Type"] == "RegisterModel"]
    (container,) = register["Arguments"]["InferenceSpecification"]["Containers"]
    return container


def _definition(doc: dict) -> tuple[dict, dict]:
    """(the pipeline resource's definition body, the definition it holds); ``${...}`` stay inside its strings."""
    (pipeline,) = [r for r in doc["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"]
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    return body, json.loads(body["Fn::Sub"][0])


def _deploy(cfg: Config, aws: LocalAws, environment: dict[str, str], model_data_url: str) -> None:
    """An Approved package with this container, and its approval event through the deploy function (cdk.out)."""
    sm = aws.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=cfg.model_package_group)
    arn = sm.create_model_package(
        ModelPackageGroupName=cfg.model_package_group, ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "123.dkr.ecr.ap-south-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312",
                            "ModelDataUrl": model_data_url, "Environment": environment}],
            "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]  # fmt: skip
    event = model_package_state_change(cfg.model_package_group, "Approved", arn, cfg.region)
    assert run_deploy_function(cfg, aws, f"{cfg.prefix}-deploy-endpoint", event).result["action"] == "created"


def _templates_environment(cfg: Config, bucket: str) -> dict[str, str]:
    """The registered container's Environment as the synthesized pipeline definition writes it."""
    _, definition = _definition(json.loads(_ml_template(cdk_out(), cfg).read_text()))
    return {k: v.replace("${DataBucket}", bucket) for k, v in _register_container(definition)["Environment"].items()}


@pytest.mark.parametrize("listed", [True, False], ids=["model-names-the-list", "variable-removed"])
def test_the_served_answer_follows_the_suppression_list_the_deployed_models_environment_names(
    shop: Shop, listed: bool
) -> None:
    environment = _templates_environment(shop.cfg, shop.res.destination_bucket)
    assert environment[SUPPRESSION_ENV] == f"s3://{shop.res.destination_bucket}/training/erasure_suppression.json"
    if not listed:
        del environment[SUPPRESSION_ENV]
    _deploy(shop.cfg, shop.aws, environment, f"s3://{shop.res.destination_bucket}/{PACKAGED}")

    with deployed_endpoint(shop.cfg, shop.aws, shop.workdir) as url:
        done, check = forget_served(shop.cfg, shop.user, shop.workdir, shop.aws, url)

    assert done.gone  # every store is clean either way: only the served model's memory differs
    assert check.personalised_before and check.before["strategy"].startswith("personalized")
    if listed:
        assert check.non_personalised and check.after["recommendations"] == check.new_shopper["recommendations"]
        assert "= a new shopper's answer: not personalised" in check.line()
    else:
        assert check.after["strategy"] == check.before["strategy"] and not check.non_personalised
        assert "STILL PERSONALISED" in check.line() and "names no suppression list" in check.line()


def test_no_deployed_endpoint_gives_none_not_an_error(shop: Shop) -> None:
    with deployed_endpoint(shop.cfg, shop.aws, shop.workdir) as url:
        assert url is None


@pytest.mark.slow
@pytest.mark.timeout(HEAVY_TIMEOUT_S)
def test_a_copy_of_cdk_out_whose_model_environment_lacks_the_list_keeps_the_endpoint_personalising(
    aws_env: LocalAws, tmp_path: Path
) -> None:
    """The whole chain from the template: the pipeline run from a copy of cdk.out whose RegisterModel container has
    no RECSYS_SUPPRESSION_URI registers the package, the deploy function (cdk.out) creates the Model from it, and
    the local endpoint serving that Model personalises the forgotten shopper still (make run shows the other case)."""
    from recsys.generator import GeneratorConfig, generate_tables
    from recsys.local import streaming
    from recsys.local.pipeline import TemplatePipeline, run_pipeline_locally
    from recsys.local.provision import provision
    from recsys.local.s3io import write_parquet
    from settings.config import load_project_config

    cfg = load_project_config("dev")
    copy = tmp_path / "cdk.out"
    copy.mkdir()
    for template in cdk_out().glob("*.template.json"):
        shutil.copy(template, copy / template.name)
    path = _ml_template(copy, cfg)
    doc = json.loads(path.read_text())
    body, definition = _definition(doc)
    del _register_container(definition)["Environment"][SUPPRESSION_ENV]
    body["Fn::Sub"][0] = json.dumps(definition)
    path.write_text(json.dumps(doc))

    tables = generate_tables(GeneratorConfig(n_users=120, n_products=60, n_interactions=3000, seed=3))
    res = provision(cfg, aws_env)
    streaming.provision_streaming(cfg, aws_env)  # the recent-items table the erasure visits
    write_parquet(aws_env, tables["interactions"], f"s3://{res.destination_bucket}/training/interactions.parquet")
    workdir = tmp_path / "run"
    pipeline = run_pipeline_locally(cfg, aws_env, res, workdir, lambda _: None, template=TemplatePipeline.load(
        path, cfg.pipeline_name), hyperparameters={"models": "popularity,item_knn", "max-eval-users": "300"})
    assert pipeline.passed_gate and pipeline.approval_status == "Approved"
    package = aws_env.client("sagemaker").describe_model_package(ModelPackageName=pipeline.model_package_arn)
    assert SUPPRESSION_ENV not in package["InferenceSpecification"]["Containers"][0]["Environment"]
    event = model_package_state_change(cfg.model_package_group, "Approved", pipeline.model_package_arn, cfg.region)
    run_deploy_function(cfg, aws_env, f"{cfg.prefix}-deploy-endpoint", event)

    user = pick_shopper(tables["interactions"])
    assert user is not None
    with deployed_endpoint(cfg, aws_env, workdir) as url:
        done, check = forget_served(cfg, user, workdir, aws_env, url)

    assert check.personalised_before and not check.non_personalised, check.line()
    assert "STILL PERSONALISED" in check.line()
