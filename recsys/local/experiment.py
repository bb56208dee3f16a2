"""The deploy function, run from its ``cdk.out`` asset on the approval events, and the A/B (or shadow) test it
sets up between two registered model versions, rehearsed locally.

Each Approved package's event goes through the templates' rules to the deploy function, which runs through its
``handler`` with the environment of the synthesized deploy stack (``recsys/local/functions.py``): it creates the
Model from the package, the endpoint config and the endpoint in (moto) SageMaker, or updates it. moto has no
UpdateEndpoint, so that one call is stubbed and recorded: the endpoint then serves the config the update names.
The local endpoint serves what the endpoint config says: each variant's Model's ``ModelDataUrl`` archive, the
registered package, unpacked, with its container Environment (``endpoint.deployed_containers``).

The nightly retrain registers a second version; the function makes the version serving now the ``Champion``
variant and the new one the ``Challenger`` with ``experiment_challenger_percent`` of the requests (or a ``Shadow``
that gets copies). The local endpoint hosts both as those variants (weighted routing with a seeded RNG, each
variant captured under its own name, as SageMaker writes ``capture/<endpoint>/<variant>/``), and SIMULATED
shoppers (the generator's known tastes, as ``recsys/local/attribution.py`` simulates them) click, cart and buy from
what each variant served. The attribution SQL and the verdict per variant follow in the attribution stage.

What is not AWS here: the two variants are two ``LocalEndpoint`` objects in one process, not two fleets; dev's
endpoint is serverless on AWS, where SageMaker hosts one production variant and captures nothing (the function
then deploys the new version to all traffic), so the rehearsal runs the function with ``SERVERLESS=false`` for the
experiment and says so. moto 5.2.5's DescribeEndpointConfig drops ``ShadowProductionVariants``, so a shadow test's
copy is not rehearsed (the A/B split is).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.generator import GeneratorConfig
from recsys.local.attribution import simulated_shopping
from recsys.local.capture import CaptureWriter
from recsys.local.endpoint import deployed_containers, invoke, one_environment, serve_variants
from recsys.local.functions import Stub, find_function
from recsys.local.functions import invoke as invoke_function
from recsys.local.moto_server import LocalAws
from settings.config import Config
from settings.erasure import CAPTURE_PREFIX

#: Requests the SIMULATED shoppers send during the test (each answer shows k = 10 products).
AB_REQUESTS = 2000
#: The result fields the deploy function returns about an experiment.
EXPERIMENT_FIELDS = ("experiment", "champion_model", "challenger_model", "challenger_percent")


@dataclass(frozen=True)
class Deployment:
    """What the deploy function did with one approval event, run from its cdk.out asset."""

    function: str  # its name
    asset: str  # the cdk.out asset folder its code came from
    result: dict[str, Any]  # handler's return value
    update: dict[str, Any] | None  # the UpdateEndpoint request (the stubbed call), None when it created the endpoint
    decisions: list[str]  # its log lines' decisions, in order
    note: str  # how the rehearsal's environment differs from the template's ("" when it does not)

    @property
    def config_name(self) -> str:
        """The config the endpoint serves once the call is done (SageMaker applies the update; moto cannot)."""
        return self.result["endpoint_config_name"]


def run_deploy_function(
    cfg: Config, aws: LocalAws, function_name: str, event: Any, *, instance_endpoint: bool = False,
    stubs: Mapping[str, Stub] | None = None,
) -> Deployment:
    """The routed deploy function (``function_name``: the rule target's) through its handler on ``event`` (what the
    target receives). ``instance_endpoint``: rehearse an experiment dev's serverless endpoint cannot run.
    ``stubs``: calls answered by the local runtime (besides UpdateEndpoint, which moto lacks)."""
    function = find_function(cfg, function_name)
    environment, note = {}, ""
    if instance_endpoint and function.environment.get("SERVERLESS") == "true":
        environment["SERVERLESS"] = "false"
        note = ("on AWS this environment's endpoint is serverless, where SageMaker hosts one variant and captures "
                "nothing (the function deploys the new version to all traffic); run with SERVERLESS=false here")
    sagemaker, updates = aws.client("sagemaker"), []

    def update_endpoint(request: dict[str, Any]) -> dict[str, Any]:  # moto has no UpdateEndpoint
        updates.append(request)
        return {"EndpointArn": sagemaker.describe_endpoint(EndpointName=request["EndpointName"])["EndpointArn"]}

    log = io.StringIO()
    with redirect_stdout(log):
        result = invoke_function(function, event, aws, stubs={"sagemaker.UpdateEndpoint": update_endpoint,
                                                               **(stubs or {})}, environment=environment)  # fmt: skip
    decisions = [json.loads(line)["decision"] for line in log.getvalue().splitlines() if line.startswith("{")]
    return Deployment(function.name, function.code_dir.name, result, updates[-1] if updates else None, decisions, note)


def describe_deployment(deployment: Deployment) -> str:
    """One line: what the function did, from where."""
    r = deployment.result
    target = f" -> EndpointConfig {r['endpoint_config_name']}" if "endpoint_config_name" in r else ""
    return (f"deploy function {deployment.function} (cdk.out/{deployment.asset}/handler.py): {r.get('action')}"
            f"{target}; log: {', '.join(deployment.decisions)}")


@dataclass(frozen=True)
class ExperimentPlan:
    """What the deploy function deployed for the new version (``config`` is the endpoint config, from SageMaker)."""

    config: dict[str, Any]
    update: dict[str, Any]  # the UpdateEndpoint request it sent
    experiment: dict[str, Any]  # the fields it returned (mode, champion/challenger models, or why there is none)
    variants: dict[str, tuple[Path, float]]  # production variant -> (model folder, weight)
    shadow: tuple[str, Path, float] | None  # (variant, model folder, share of requests copied)
    note: str  # how the rehearsal's settings differ from the environment's on AWS ("" when they do not)
    rollback: str = ""  # what rolls the update back, as the function logged it
    environment: dict[str, str] = field(default_factory=dict)  # the variants' Models' container Environment

    @property
    def running(self) -> bool:
        return len(self.variants) > 1 or self.shadow is not None


def experiment_plan(aws: LocalAws, deployment: Deployment, folder: Path) -> ExperimentPlan:
    """The endpoint config the function deployed, each variant served from its registered package."""
    config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=deployment.config_name)
    deployed = deployed_containers(aws, deployment.config_name, folder)
    dirs = {name: model.model_dir for name, model in deployed.items()}
    variants = {v["VariantName"]: (dirs[v["VariantName"]], float(v.get("InitialVariantWeight", 1.0)))
                for v in config["ProductionVariants"]}  # fmt: skip
    shadow = next(((v["VariantName"], dirs[v["VariantName"]], float(v["InitialVariantWeight"]))
                   for v in config.get("ShadowProductionVariants", [])), None)  # fmt: skip
    experiment = {k: deployment.result[k] for k in EXPERIMENT_FIELDS if k in deployment.result}
    return ExperimentPlan(config, deployment.update or {}, experiment, variants, shadow, deployment.note,
                          deployment.result.get("rollback", ""), one_environment(deployed.values()))  # fmt: skip


def experiment_session(
    progress: Any, plan: ExperimentPlan, s3: Any, bucket: str, endpoint_name: str, generated: GeneratorConfig,
    *, requests: int = AB_REQUESTS,
) -> tuple[list[dict], list[CaptureWriter]]:
    """Serve the plan's variants and let SIMULATED shoppers act on their answers; returns the clickstream events
    (for the archive) and the per-variant capture writers (for the attribution table)."""
    names = [*plan.variants, *([plan.shadow[0]] if plan.shadow else [])]
    writers = {name: CaptureWriter(s3, bucket, endpoint_name, name) for name in names}
    with serve_variants(plan.variants, shadow=plan.shadow, captures=writers, seed=generated.seed,
                        environment=plan.environment, s3=s3) as url:
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
    """What the deploy function deployed, for printing."""
    name = plan.config["EndpointConfigName"]
    lines = [f"EndpointConfig {name}:"]
    for v in plan.config["ProductionVariants"]:
        lines.append(f"  production variant {v['VariantName']:<10} model {v['ModelName']} "
                     f"weight {float(v.get('InitialVariantWeight', 1.0)):.2f}")
    for v in plan.config.get("ShadowProductionVariants", []):
        lines.append(f"  shadow variant     {v['VariantName']:<10} model {v['ModelName']} "
                     f"weight {float(v['InitialVariantWeight']):.2f} (share of requests copied)")
    capture = plan.config.get("DataCaptureConfig")
    how = "blue/green" if "DeploymentConfig" in plan.update else "plain update"
    lines.append(f"  data capture {'on, ' + str(capture['InitialSamplingPercentage']) + ' %' if capture else 'off'}; "
                 f"UpdateEndpoint (stubbed: moto lacks it): {how}; rollback: {plan.rollback or 'n/a'}")
    if not plan.running:
        lines.append(f"  no experiment: {plan.experiment.get('experiment', 'experiment_mode is off')}")
    if plan.note:
        lines.append(f"  note: {plan.note}")
    return lines
