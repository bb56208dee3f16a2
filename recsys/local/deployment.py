"""The endpoint the deploy function created, started as SageMaker hosts it, and its state event routed.

On AWS, CreateEndpoint ends ``InService`` or ``Failed`` (say, a model archive the container cannot load), and
SageMaker puts a ``SageMaker Endpoint State Change`` event on the default bus. Locally the endpoint starts by
unpacking each variant's Model archive (``endpoint.deployed_containers``) and loading it with
``sagemaker_src/inference.py``'s ``model_fn`` in the Model's container environment, as the container would.
Its outcome becomes that event (``events.endpoint_state_change``), routed by the rules read from ``cdk.out``;
each target acts as the template says: a function target runs its ``handler`` from its ``cdk.out`` asset, a topic
is named. moto's endpoint is always ``InService``, so while a function handles a ``FAILED`` event its
DescribeEndpoint is answered with the local endpoint's status and ``FailureReason``: that one answer is stubbed.
No rule, nothing runs.

Only the first deployment (CreateEndpoint) is started this way: an update's outcome (blue/green, rollback) needs
UpdateEndpoint, which moto lacks (``experiment.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.local.endpoint import (
    DEFAULT_HANDLER,
    container_environment,
    deployed_containers,
    deployed_models,
    load_handler,
    one_environment,
)
from recsys.local.events import Rule, describe, endpoint_state_change, model_package_state_change, route
from recsys.local.experiment import describe_deployment, run_deploy_function
from recsys.local.moto_server import LocalAws
from recsys.local.progress import Progress, first_route, routed
from settings.config import Config

#: DescribeEndpoint's status for each event status the local endpoint can end in (the event spells it in upper
#: snake case).
_DESCRIBED = {"IN_SERVICE": "InService", "FAILED": "Failed"}


@dataclass(frozen=True)
class EndpointStart:
    """How the endpoint serving ``config_name`` started: each variant's model folder, or why it failed."""

    endpoint: dict[str, Any]  # DescribeEndpoint's answer (moto's)
    models: dict[str, Path]  # variant -> unpacked model folder; empty when the endpoint failed
    failure: str  # "" when every variant's model loaded

    @property
    def status(self) -> str:
        """The event's ``EndpointStatus``."""
        return "FAILED" if self.failure else "IN_SERVICE"


def start_endpoint(aws: LocalAws, config_name: str, folder: Path) -> EndpointStart:
    """Start the endpoint that serves ``config_name``: download and load every variant's model as the container
    would; any error (an unreadable archive, a model ``model_fn`` cannot load) fails the endpoint, as on AWS."""
    sm = aws.client("sagemaker")
    [name] = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]
              if sm.describe_endpoint(EndpointName=e["EndpointName"])["EndpointConfigName"] == config_name]  # fmt: skip
    endpoint = sm.describe_endpoint(EndpointName=name)
    try:
        containers = deployed_containers(aws, config_name, folder)
        handler = load_handler(DEFAULT_HANDLER)
        with container_environment(one_environment(containers.values()), aws.client("s3")):
            for container in containers.values():
                handler.model_fn(str(container.model_dir))
    except Exception as err:  # noqa: BLE001 - whatever stops the container from loading the model fails the endpoint
        return EndpointStart(endpoint, {}, " ".join(f"{type(err).__name__}: {err}".split())[:1024])  # one line
    return EndpointStart(endpoint, {variant: c.model_dir for variant, c in containers.items()}, "")


def route_endpoint_state(cfg: Config, aws: LocalAws, rules: list[Rule], started: EndpointStart) -> list[str]:
    """The endpoint's state event through the rules, each function target run through its handler; returns the
    lines to print (the route, then what each function did)."""
    evt = endpoint_state_change(started.endpoint, started.status, cfg.region)
    routes = route(rules, evt)
    why = f" ({started.failure})" if started.failure else ""
    lines = [f"EventBridge: endpoint {started.endpoint['EndpointName']} {started.status}{why} -> {describe(routes)}"]
    described = {"EndpointStatus": _DESCRIBED[started.status], **({"FailureReason": started.failure} if why else {})}
    sagemaker = aws.client("sagemaker")

    def describe_endpoint(request: dict[str, Any]) -> dict[str, Any]:  # the local endpoint's status, not moto's
        return {**sagemaker.describe_endpoint(**request), **described}

    for to in (r for r in routes if r.kind == "function"):
        stubs = {"sagemaker.DescribeEndpoint": describe_endpoint} if started.failure else {}
        deployment = run_deploy_function(cfg, aws, to.resource, to.input(evt), stubs=stubs)
        message = deployment.result.get("message") or deployment.result.get("autoscaling") or ""
        lines.append(describe_deployment(deployment) + (f"; {message}" if message else ""))
    return lines


def deploy_approved(progress: Progress, cfg: Config, aws: LocalAws, workdir: Path, rules: list[Rule],
                    pipeline: Any) -> Path | None:  # fmt: skip
    """The approval event through the rules to the deploy function, run from its cdk.out asset; returns the model
    the endpoint then serves (its config's Model archive: the registered package, unpacked), or None if no rule
    sends the event to a function or the new endpoint failed (its state event routed by the rules either way).
    An update of an existing endpoint (a second run against the same moto account) serves the config it names:
    its outcome would need UpdateEndpoint, which moto lacks, so no state event is sent for it."""
    approved = model_package_state_change(
        cfg.model_package_group, pipeline.approval_status, pipeline.model_package_arn, cfg.region)  # fmt: skip
    to = first_route(routed(progress, rules, approved, f"model package {pipeline.approval_status}"), "function")
    if to is None:
        return None
    deployment = run_deploy_function(cfg, aws, to.resource, to.input(approved))
    progress.info(describe_deployment(deployment))
    if "endpoint_config_name" not in deployment.result:
        return None
    if deployment.result.get("action") != "created":  # an update (stubbed): SageMaker's outcome is not rehearsed
        [model] = deployed_models(aws, deployment.config_name, Path(workdir) / "endpoint").values()
        return model
    started = start_endpoint(aws, deployment.config_name, Path(workdir) / "endpoint")
    for line in route_endpoint_state(cfg, aws, rules, started):
        progress.info(line)
    if started.failure:
        return None
    [model] = started.models.values()
    return model
