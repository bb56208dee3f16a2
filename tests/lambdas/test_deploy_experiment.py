"""The deploy Lambda's A/B and shadow configs: the serving model is the champion, the approved one the challenger.

Requests are built by the same pure functions the handler calls; the end-to-end cases run against moto
(UpdateEndpoint recorded, as in test_deploy_endpoint.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from lambdas.deploy_endpoint import handler as h
from stacks.deploy_stack import alarm_names, experiment_alarm_environment
from tests.lambdas.test_deploy_endpoint import (
    ALARMS,
    DEV,
    KEY_ARN,
    PROD,
    Recorder,
    clients,
    event,
    in_service,
    register,
    settings,
)
from tests.lambdas.test_deploy_rollback import fire_alarm

AB = {"EXPERIMENT_MODE": "ab", "EXPERIMENT_CHALLENGER_PERCENT": "10"}
SHADOW = {"EXPERIMENT_MODE": "shadow", "EXPERIMENT_CHALLENGER_PERCENT": "25"}


def variant_alarms(mode: dict[str, str]) -> dict[str, str]:
    """EXPERIMENT_ROLLBACK_ALARMS as the stack sets it for prod switched to this experiment mode."""
    return experiment_alarm_environment(replace(PROD, experiment_mode=mode["EXPERIMENT_MODE"]))


def _variants(config: dict[str, Any], key: str = "ProductionVariants") -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in config.get(key, [])}


def test_ab_config_splits_traffic_by_the_configured_share_with_capture_on():
    config = h.experiment_config_request(settings(PROD, **AB), "model-serving", "model-new", 7)
    variants = _variants(config)
    assert set(variants) == {h.CHAMPION, h.CHALLENGER}
    assert variants[h.CHAMPION]["ModelName"] == "model-serving" and variants[h.CHALLENGER]["ModelName"] == "model-new"
    weights = {name: v["InitialVariantWeight"] for name, v in variants.items()}
    assert math.isclose(sum(weights.values()), 1.0) and math.isclose(weights[h.CHALLENGER], 0.10)
    for v in variants.values():  # each variant sized like the single-variant fleet
        assert (v["InstanceType"], v["InitialInstanceCount"]) == (PROD.endpoint_instance_type, 2)
    capture = config["DataCaptureConfig"]  # per-variant capture paths are SageMaker's: <endpoint>/<variant>/...
    assert capture["EnableCapture"] is True and capture["KmsKeyId"] == KEY_ARN
    assert config["KmsKeyId"] == KEY_ARN and "ShadowProductionVariants" not in config
    assert config["EndpointConfigName"].startswith(f"{PROD.endpoint_name}-7-")


def test_shadow_config_answers_with_the_champion_and_copies_a_share_to_the_challenger():
    config = h.experiment_config_request(settings(PROD, **SHADOW), "model-serving", "model-new", 7)
    [production] = config["ProductionVariants"]
    [shadow] = config["ShadowProductionVariants"]
    assert (production["VariantName"], production["ModelName"], production["InitialVariantWeight"]) == (
        h.CHAMPION, "model-serving", 1.0)  # fmt: skip
    assert (shadow["VariantName"], shadow["ModelName"]) == (h.SHADOW, "model-new")
    assert math.isclose(shadow["InitialVariantWeight"] / production["InitialVariantWeight"], 0.25)
    assert config["DataCaptureConfig"]["EnableCapture"] is True


def test_the_champion_is_the_model_serving_now():
    single = {"ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "m1"}]}
    running = {
        "ProductionVariants": [
            {"VariantName": h.CHALLENGER, "ModelName": "m2", "InitialVariantWeight": 0.9},
            {"VariantName": h.CHAMPION, "ModelName": "m1", "InitialVariantWeight": 0.1},
        ]
    }
    assert h.serving_model(single) == "m1"
    assert h.serving_model(running) == "m1"  # a new challenger replaces the one under test, not the champion
    assert h.serving_model({}) is None


@pytest.mark.parametrize(
    ("overrides", "champion", "reason"),
    [
        ({"EXPERIMENT_MODE": "off"}, "m1", "experiment_mode is off"),
        ({**AB, "SERVERLESS": "true"}, "m1", "serverless"),
        (AB, None, "no model is serving"),
        (AB, "m2", "is the one serving"),
    ],
    ids=["off", "serverless", "first-deploy", "same-model"],
)
def test_no_experiment_when_it_is_off_impossible_or_pointless(overrides, champion, reason):
    assert reason in h.experiment_blocker(settings(PROD, **overrides), champion, "m2")


def test_next_approval_in_ab_mode_deploys_champion_and_challenger_with_a_plain_update(aws):
    _, sm, _ = aws
    ab = settings(PROD, **AB)
    first = h.process(event(PROD, register(sm, PROD)), ab, clients(aws))
    assert first["action"] == "created"  # nothing served yet: the first version takes all traffic
    recorder = Recorder()
    second = h.process(
        event(PROD, register(sm, PROD, data="s3://b/pipeline/2/model.tar.gz")), ab, clients(aws, recorder)
    )

    assert second["action"] == "updated" and second["experiment"] == "ab"
    config = sm.describe_endpoint_config(EndpointConfigName=second["endpoint_config_name"])
    variants = _variants(config)
    assert variants[h.CHAMPION]["ModelName"] == first["model_name"]
    assert variants[h.CHALLENGER]["ModelName"] == second["model_name"]
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    [request] = recorder.calls
    # Blue/green needs the same variant names: entering an experiment is a plain update, without guardrails.
    assert "DeploymentConfig" not in request and request["RetainAllVariantProperties"] is False
    assert "plain update" in second["deployment"]


def test_a_repeated_experiment_event_reuses_the_same_model_and_config(aws):
    _, sm, _ = aws
    ab = settings(PROD, **AB)
    h.process(event(PROD, register(sm, PROD)), ab, clients(aws))
    approved = event(PROD, register(sm, PROD, data="s3://b/pipeline/2/model.tar.gz"))
    once = h.process(approved, ab, clients(aws))
    twice = h.process(approved, ab, clients(aws))
    assert twice["endpoint_config_name"] == once["endpoint_config_name"]
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 2 and len(sm.list_models()["Models"]) == 2


def test_serverless_endpoint_keeps_blue_green_to_all_traffic_and_says_why(aws):
    _, sm, _ = aws
    dev = settings(DEV, **AB)
    h.process(event(DEV, register(sm, DEV)), dev, clients(aws))
    recorder = Recorder()
    result = h.process(event(DEV, register(sm, DEV, data="s3://b/pipeline/2/m.tar.gz")), dev, clients(aws, recorder))
    assert "serverless" in result["experiment"]
    [request] = recorder.calls
    assert request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    config = sm.describe_endpoint_config(EndpointConfigName=result["endpoint_config_name"])
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["AllTraffic"]


def test_leaving_an_experiment_is_a_plain_update_that_cannot_roll_back_and_says_so():
    off = settings(PROD)
    experiment = h.experiment_config_request(settings(PROD, **AB), "m1", "m2", 2)
    single = h.endpoint_config_request(off, "m2", 3)
    leaving = h.update_request(off, single, experiment)
    assert "DeploymentConfig" not in leaving and leaving["RetainAllVariantProperties"] is False
    how, rollback = h.deployment_note(off, single, leaving)
    assert how.startswith("plain update") and rollback.startswith("none: SageMaker's blue/green needs")


def test_a_new_version_outside_an_experiment_is_blue_green_rolled_back_by_the_alltraffic_alarms():
    off = settings(PROD)
    single = h.endpoint_config_request(off, "m2", 3)
    request = h.update_request(off, h.endpoint_config_request(off, "m3", 4), single)
    alarms = request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert [a["AlarmName"] for a in alarms] == ALARMS


class Serving:
    """SageMaker whose endpoint serves what the last recorded UpdateEndpoint deployed (moto has no UpdateEndpoint);
    ``rolled_back`` drops that last update, as SageMaker's rollback restores the previous config. moto 5.2.5's
    DescribeEndpointConfig also drops ``ShadowProductionVariants``: they are answered from the create request."""

    def __init__(self, sm: Any, recorder: Recorder, rolled_back: bool = False) -> None:
        self.sm, self.recorder, self.rolled_back = sm, recorder, rolled_back
        self.shadows: dict[str, list[dict[str, Any]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sm, name)

    def create_endpoint_config(self, **request: Any) -> dict[str, Any]:
        self.shadows[request["EndpointConfigName"]] = request.get("ShadowProductionVariants", [])
        return self.sm.create_endpoint_config(**request)

    def describe_endpoint_config(self, **kwargs: Any) -> dict[str, Any]:
        answer = self.sm.describe_endpoint_config(**kwargs)
        shadows = self.shadows.get(kwargs["EndpointConfigName"])
        return {**answer, "ShadowProductionVariants": shadows} if shadows else answer

    def describe_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        answer = self.sm.describe_endpoint(**kwargs)
        applied = self.recorder.calls[:-1] if self.rolled_back else self.recorder.calls
        return {**answer, "EndpointConfigName": applied[-1]["EndpointConfigName"]} if applied else answer


def _three_approvals(aws, env: dict[str, str]) -> tuple[list[dict[str, Any]], Serving, str]:
    """Version 1 serves, version 2 enters a test as the challenger, version 3 is approved during the test."""
    _, sm, aas = aws
    recorder = Recorder()
    results, arn, serving = [], "", Serving(sm, recorder)
    for n in (1, 2, 3):
        arn = register(sm, PROD, data=f"s3://b/pipeline/{n}/model.tar.gz")
        results.append(h.process(event(PROD, arn), settings(PROD, **env), h.Clients(serving, aas, recorder)))
    return results, serving, arn


@pytest.mark.parametrize(("env", "challenger"), [(AB, h.CHALLENGER), (SHADOW, h.SHADOW)], ids=["ab", "shadow"])
def test_staying_in_a_test_replaces_the_challenger_blue_green_rolled_back_by_the_variants_alarms(aws, env, challenger):
    (first, second, third), serving, _ = _three_approvals(aws, {**env, **variant_alarms(env)})
    recorder = serving.recorder
    assert second["experiment"] == third["experiment"] == env["EXPERIMENT_MODE"]
    config = serving.describe_endpoint_config(EndpointConfigName=third["endpoint_config_name"])
    models = {v["VariantName"]: v["ModelName"] for k in ("ProductionVariants", "ShadowProductionVariants")
              for v in config.get(k, [])}  # fmt: skip
    assert models == {h.CHAMPION: first["model_name"], challenger: third["model_name"]}  # the champion stays
    entering, staying = recorder.calls
    assert "DeploymentConfig" not in entering
    deployment = staying["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    watched = [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]]
    assert watched == [name for v in (h.CHAMPION, challenger) for name in alarm_names(PROD, v).values()]
    assert staying["RetainAllVariantProperties"] is True  # same variants, same sizing: weights and counts kept
    assert third["deployment"] == "blue/green" and third["rollback"] == f"on alarm(s) {', '.join(watched)}"


def test_staying_in_a_test_without_alarms_on_its_variants_disables_rollback_and_logs_why(aws, capsys):
    (_, _, third), serving, _ = _three_approvals(aws, AB)  # no EXPERIMENT_ROLLBACK_ALARMS
    assert "AutoRollbackConfiguration" not in serving.recorder.calls[-1]["DeploymentConfig"]
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [updated] = [d for d in logged if d["decision"] == "endpoint updated" and d["deployment"] == "blue/green"]
    assert updated["rollback"] == third["rollback"]
    assert third["rollback"].startswith("disabled: no rollback alarm watches variant(s) Champion, Challenger")


def test_a_challenger_rolled_back_during_a_test_is_rejected_naming_its_variants_alarm(aws):
    env = {**AB, **variant_alarms(AB)}
    (_, second, third), serving, third_arn = _three_approvals(aws, env)
    aws_env, sm, aas = aws
    serving.rolled_back = True
    cloudwatch = aws_env.client("cloudwatch")
    fired = alarm_names(PROD, h.CHALLENGER)["errors"]
    fire_alarm(cloudwatch, fired)
    restored = h.Clients(serving, aas, serving.recorder, cloudwatch)
    result = h.process(in_service(PROD.endpoint_name), settings(PROD, **env), restored)
    assert result["action"] == "rolled_back"
    assert result["restored_endpoint_config_name"] == second["endpoint_config_name"]  # the test goes on
    assert result["target_endpoint_config_name"] == third["endpoint_config_name"]
    package = sm.describe_model_package(ModelPackageName=third_arn)
    assert package["ModelApprovalStatus"] == "Rejected" and fired in package["ApprovalDescription"]


def test_experiment_settings_are_validated_by_name():
    with pytest.raises(h.ConfigurationError, match="EXPERIMENT_MODE"):
        settings(PROD, EXPERIMENT_MODE="canary")
    with pytest.raises(h.ConfigurationError, match="EXPERIMENT_CHALLENGER_PERCENT must be from 1 to 99"):
        settings(PROD, EXPERIMENT_MODE="ab", EXPERIMENT_CHALLENGER_PERCENT="100")
    with pytest.raises(h.ConfigurationError, match="CAPTURE_S3_URI"):
        settings(PROD, EXPERIMENT_MODE="shadow", CAPTURE_S3_URI="")
    with pytest.raises(h.ConfigurationError, match="EXPERIMENT_ROLLBACK_ALARMS: 'Canary:x' is not"):
        settings(PROD, EXPERIMENT_ROLLBACK_ALARMS="Champion:a,Canary:x")
    assert settings(PROD).experiment_mode == PROD.experiment_mode == "off"


def test_in_service_on_experiment_variants_registers_no_autoscaling_for_a_variant_that_is_gone(aws):
    _, sm, aas = aws
    h.process(event(PROD, register(sm, PROD)), settings(PROD, **AB), clients(aws))

    class OnExperiment:
        def __getattr__(self, name: str) -> Any:
            return getattr(sm, name)

        def describe_endpoint(self, **kwargs: Any) -> dict[str, Any]:
            variants = [{"VariantName": h.CHAMPION}, {"VariantName": h.CHALLENGER}]
            return {**sm.describe_endpoint(**kwargs), "ProductionVariants": variants}

    result = h.process(in_service(PROD.endpoint_name), settings(PROD, **AB), h.Clients(OnExperiment(), aas, Recorder()))
    assert result["autoscaling"].startswith("not registered")
