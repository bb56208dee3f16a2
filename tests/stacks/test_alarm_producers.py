"""Every alarm watches a metric that something in the deployed flow publishes.

Read from the synthesized templates, not from the local run: an alarm on a metric no state, step or
service of the deployed flow produces would sit in INSUFFICIENT_DATA forever on AWS.

Producers: SageMaker itself for the endpoint's ``AWS/SageMaker`` and ``/aws/sagemaker/Endpoints``
metrics (of the endpoint the deploy function creates, per variant: only a variant name its configs can have, as
its environment in the template decides, ever gets data); the state machines' PutMetricData states
(their metric names are literals in the definitions); and the pipeline's PublishMetrics step, whose
published names are recorded by running its publishing functions against a recording client.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from lambdas.deploy_endpoint.handler import Settings, deployable_variants
from monitoring import metrics as m
from monitoring.drift import DriftReport
from pipeline_steps.definition import PUBLISH
from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]

SERVICE_NAMESPACES = (m.SAGEMAKER_NAMESPACE, m.ENDPOINT_INSTANCE_NAMESPACE)


class RecordingCloudWatch:
    """A CloudWatch client that only remembers the metric names it was asked to put."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:  # noqa: N803 - boto3's
        assert Namespace == m.NAMESPACE
        self.names |= {d["MetricName"] for d in MetricData}


def _strings(node: Any) -> list[str]:
    """The literal text of a CloudFormation value (Fn::Join / Fn::Sub pieces; references dropped)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    return []


def _alarm_metrics(template: Any) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        stats = [q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q]
        if "MetricName" in props:
            stats.append(props)
        for metric in stats:
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            out.append((metric["Namespace"], metric["MetricName"], dims))
    return out


def _state_machine_metric_names(templates: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for template in templates.values():
        for machine in resources(template, "AWS::StepFunctions::StateMachine").values():
            text = "".join(_strings(machine["Properties"].get("DefinitionString", "")))
            if "cloudwatch:putMetricData" in text:
                names |= set(re.findall(r'"MetricName"\s*:\s*"([^"$]+)"', text))
    return names


def _pipeline_metric_names(templates: dict[str, Any]) -> set[str]:
    """What PublishMetrics publishes, if the deployed pipeline definition runs it."""
    text = json.dumps([t.to_json() for name, t in templates.items() if name.endswith("-ml")])
    if f'\\"Name\\":\\"{PUBLISH}\\"' not in text:
        return set()
    client = RecordingCloudWatch()
    evaluation = {"metrics": {key: {"value": 0.1} for key in m.MODEL_QUALITY_METRICS}}
    m.publish_model_quality(client, evaluation, "v1", model_group="g")
    m.publish_drift(client, DriftReport(0.1, {"price": 0.1}, 100, 100), model_group="g")
    return client.names


def _deployed_variants(deploy: Any) -> tuple[str, ...]:
    """The variant names the deploy function's configs can have, from its environment in the template."""
    [function] = resources(deploy, "AWS::Lambda::Function").values()
    env = {k: v for k, v in function["Properties"]["Environment"]["Variables"].items() if isinstance(v, str)}
    tokens = {"EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/r", "ENDPOINT_KMS_KEY_ARN": "k", "CAPTURE_S3_URI": "s3://b/c"}
    return deployable_variants(Settings.from_env({**env, **tokens}))


def _orphans(templates: dict[str, Any], env_name: str) -> list[tuple[str, str, dict[str, Any]]]:
    cfg = load_project_config(env_name)
    produced = _state_machine_metric_names(templates) | _pipeline_metric_names(templates)
    deploy = json.dumps(templates[f"{cfg.prefix}-deploy"].to_json())
    variants = _deployed_variants(templates[f"{cfg.prefix}-deploy"])
    alarms = [a for t in templates.values() for a in _alarm_metrics(t)]
    assert alarms
    orphans = []
    for namespace, name, dims in alarms:
        if namespace in SERVICE_NAMESPACES:  # SageMaker publishes them for the endpoint the deploy function makes
            if (
                dims.get("EndpointName") != cfg.endpoint_name
                or cfg.endpoint_name not in deploy
                or dims.get("VariantName", m.VARIANT_NAME) not in variants
            ):
                orphans.append((namespace, name, dims))
        elif namespace != m.NAMESPACE or name not in produced:
            orphans.append((namespace, name, dims))
    return orphans


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_every_alarm_metric_has_a_producer_in_the_deployed_flow(synth, env_name: str) -> None:
    orphans = _orphans(synth(env_name)[1], env_name)
    assert not orphans, f"alarms on metrics nothing in the deployed flow publishes: {orphans}"


def test_every_alarm_of_an_experiment_variant_has_a_producer(synth_with) -> None:
    """prod with A/B tests: the rollback alarms on Champion and Challenger watch variants the function deploys."""
    orphans = _orphans(synth_with("prod", experiment_mode="ab"), "prod")
    assert not orphans, f"alarms on metrics nothing in the deployed flow publishes: {orphans}"


def test_the_producer_check_notices_an_alarm_on_a_variant_never_deployed(synth_with) -> None:
    """A shadow test has no Challenger: the A/B alarms on Challenger, added to shadow mode's templates, are orphans."""
    from aws_cdk.assertions import Template

    stack = f"{load_project_config('prod').prefix}-deploy"
    templates = dict(synth_with("prod", experiment_mode="shadow"))
    deploy = copy.deepcopy(templates[stack].to_json())
    ab_alarms = resources(synth_with("prod", experiment_mode="ab")[stack], "AWS::CloudWatch::Alarm")
    deploy["Resources"] |= {f"Ab{logical_id}": alarm for logical_id, alarm in ab_alarms.items()}
    templates[stack] = Template.from_json(deploy)
    assert {dims["VariantName"] for _, _, dims in _orphans(templates, "prod")} == {"Challenger"}


def test_the_producer_check_notices_a_missing_producer(synth) -> None:
    """Without the state machines, the data-quality alarms have no producer left: the check is not vacuous."""
    _, templates = synth("dev")
    without = {k: v for k, v in templates.items() if not resources(v, "AWS::StepFunctions::StateMachine")}
    produced = _state_machine_metric_names(without) | _pipeline_metric_names(without)
    assert m.QUARANTINED_RATIO not in produced and m.NDCG_AT_10 in produced
