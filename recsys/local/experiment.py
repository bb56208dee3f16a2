"""The deploy Lambda's A/B (or shadow) test of two registered model versions, rehearsed locally.

The nightly retrain registers a second Approved version; EventBridge sends the approval to the deploy Lambda.
Here the Lambda's own request builder (``lambdas/deploy_endpoint/handler.planned_config``, with the environment
the synthesized deploy stack gives the function) decides the endpoint config: the version serving now as the
``Champion`` variant, the new one as the ``Challenger`` with ``experiment_challenger_percent`` of the requests
(or as a ``Shadow`` that gets copies). The local endpoint then hosts both model folders as those variants
(weighted routing with a seeded RNG, each variant captured under its own name, as SageMaker writes
``capture/<endpoint>/<variant>/``), and SIMULATED shoppers (the generator's known tastes, as
``recsys/local/attribution.py`` simulates them) click, cart and buy from what each variant served. The
attribution SQL and the verdict per variant follow in the attribution stage.

What is not AWS here: the two variants are two ``LocalEndpoint`` objects in one process, not two fleets; dev's
endpoint is serverless on AWS, where SageMaker hosts one production variant and captures nothing (the Lambda then
deploys the new version to all traffic), so the rehearsal builds the config as for an instance endpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lambdas.deploy_endpoint import handler as deploy
from recsys.generator import GeneratorConfig
from recsys.local.attribution import simulated_shopping
from recsys.local.capture import CaptureWriter
from recsys.local.curation import cdk_out
from recsys.local.endpoint import invoke, serve_variants
from settings.config import LOCAL_ACCOUNT, Config
from settings.erasure import CAPTURE_PREFIX

#: Requests the SIMULATED shoppers send during the test (each answer shows k = 10 products).
AB_REQUESTS = 2000


@dataclass(frozen=True)
class ExperimentPlan:
    """What the deploy Lambda's builder decided for the new version (``config`` is its CreateEndpointConfig)."""

    config: dict[str, Any]
    update: dict[str, Any]  # the UpdateEndpoint request it would send
    experiment: dict[str, Any]  # the fields it logs (mode, champion/challenger models, or why there is none)
    variants: dict[str, tuple[Path, float]]  # production variant -> (model folder, weight)
    shadow: tuple[str, Path, float] | None  # (variant, model folder, share of requests copied)
    note: str  # how the rehearsal's settings differ from the environment's on AWS ("" when they do not)

    @property
    def running(self) -> bool:
        return len(self.variants) > 1 or self.shadow is not None


def lambda_settings(cfg: Config, bucket: str, kms_key_arn: str = "") -> deploy.Settings:
    """The deploy Lambda's settings from its environment in the synthesized deploy stack: the literals as they
    deploy, the CloudFormation references (role, key, capture bucket) as their local stand-ins."""
    template = cdk_out() / f"{cfg.prefix}-deploy.template.json"
    resources = json.loads(template.read_text())["Resources"]
    name = f"{cfg.prefix}-deploy-endpoint"
    function = next(
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("FunctionName") == name
    )
    env = {k: v for k, v in function["Environment"]["Variables"].items() if isinstance(v, str)}
    env |= {
        "EXECUTION_ROLE_ARN": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{cfg.prefix}-model-execution",
        "ENDPOINT_KMS_KEY_ARN": kms_key_arn or f"arn:aws:kms:{cfg.region}:{LOCAL_ACCOUNT}:key/local",
        "CAPTURE_S3_URI": f"s3://{bucket}/{CAPTURE_PREFIX}",
    }
    return deploy.Settings.from_env(env)


def plan_experiment(settings: deploy.Settings, sagemaker: Any, serving_arn: str, new_arn: str,
                    model_dirs: dict[str, Path]) -> ExperimentPlan:
    """The deploy Lambda's decision for ``new_arn`` while ``serving_arn`` serves (deployed by the same Lambda as
    its single-variant config); ``model_dirs`` maps each package ARN to its model folder."""
    note = ""
    if settings.serverless and settings.experiment_mode != "off":
        note = ("on AWS this environment's endpoint is serverless, where SageMaker hosts one variant and captures "
                "nothing (the Lambda deploys the new version to all traffic); rehearsed as an instance endpoint")
        settings = replace(settings, serverless=False)
    packages = {arn: sagemaker.describe_model_package(ModelPackageName=arn) for arn in (serving_arn, new_arn)}
    models = {deploy.model_request(settings, p)["ModelName"]: arn for arn, p in packages.items()}
    serving_model = next(m for m, arn in models.items() if arn == serving_arn)
    new_model = next((m for m, arn in models.items() if arn == new_arn), serving_model)
    current = deploy.endpoint_config_request(settings, serving_model, packages[serving_arn].get("ModelPackageVersion"))
    config, experiment = deploy.planned_config(
        settings, new_model, packages[new_arn].get("ModelPackageVersion"), current, serving=True
    )
    folder = {m: model_dirs[arn] for m, arn in models.items()}
    variants = {v["VariantName"]: (folder[v["ModelName"]], float(v.get("InitialVariantWeight", 1.0)))
                for v in config["ProductionVariants"]}
    shadow = next(((v["VariantName"], folder[v["ModelName"]], float(v["InitialVariantWeight"]))
                   for v in config.get("ShadowProductionVariants", [])), None)
    update = deploy.update_request(settings, config, current)
    return ExperimentPlan(config, update, experiment, variants, shadow, note)


def experiment_session(
    progress: Any, plan: ExperimentPlan, s3: Any, bucket: str, endpoint_name: str, generated: GeneratorConfig,
    *, requests: int = AB_REQUESTS,
) -> tuple[list[dict], list[CaptureWriter]]:
    """Serve the plan's variants and let SIMULATED shoppers act on their answers; returns the clickstream events
    (for the archive) and the per-variant capture writers (for the attribution table)."""
    names = [*plan.variants, *([plan.shadow[0]] if plan.shadow else [])]
    writers = {name: CaptureWriter(s3, bucket, endpoint_name, name) for name in names}
    with serve_variants(plan.variants, shadow=plan.shadow, captures=writers, seed=generated.seed) as url:
        events, counts = simulated_shopping(url, invoke, generated, requests=requests, seed=generated.seed + 1)
        invoked = dict(url.endpoint.invoked)
    split = ", ".join(f"{name} {n:,}" for name, n in invoked.items())
    copied = f"; {plan.shadow[0]} got {writers[plan.shadow[0]].pending:,} copies" if plan.shadow else ""
    progress.info(
        f"SIMULATED shoppers: {counts['answers']:,} requests answered by {split}{copied} ({counts['shown']:,} "
        f"impressions) -> {counts['views']:,} clicks, {counts['carts']:,} carts, {counts['purchases']:,} purchases, "
        f"captured under s3://{bucket}/{CAPTURE_PREFIX}/{endpoint_name}/<variant>/"
    )
    return events, list(writers.values())


def describe_plan(plan: ExperimentPlan) -> list[str]:
    """What the deploy Lambda would do, for printing."""
    name = plan.config["EndpointConfigName"]
    lines = [f"deploy Lambda (lambdas/deploy_endpoint: planned_config) -> EndpointConfig {name}:"]
    for v in plan.config["ProductionVariants"]:
        lines.append(f"  production variant {v['VariantName']:<10} model {v['ModelName']} "
                     f"weight {float(v.get('InitialVariantWeight', 1.0)):.2f}")
    for v in plan.config.get("ShadowProductionVariants", []):
        lines.append(f"  shadow variant     {v['VariantName']:<10} model {v['ModelName']} "
                     f"weight {float(v['InitialVariantWeight']):.2f} (share of requests copied)")
    capture = plan.config.get("DataCaptureConfig")
    lines.append(f"  data capture {'on, ' + str(capture['InitialSamplingPercentage']) + ' %' if capture else 'off'}; "
                 f"UpdateEndpoint: {'blue/green' if 'DeploymentConfig' in plan.update else 'plain update'}"
                 + ("" if "DeploymentConfig" in plan.update else " (variant names change: SageMaker's blue/green "
                    "needs them equal, so no canary, bake or alarm rollback)"))
    if not plan.running:
        lines.append(f"  no experiment: {plan.experiment.get('experiment', 'experiment_mode is off')}")
    if plan.note:
        lines.append(f"  note: {plan.note}")
    return lines
