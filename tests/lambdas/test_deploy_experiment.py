"""The deploy Lambda's A/B and shadow configs: the serving model is the champion, the approved one the challenger.

Requests are built by the same pure functions the handler calls; the end-to-end cases run against moto
(UpdateEndpoint recorded, as in test_deploy_endpoint.py).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from lambdas.deploy_endpoint import handler as h
from tests.lambdas.test_deploy_endpoint import (
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

AB = {"EXPERIMENT_MODE": "ab", "EXPERIMENT_CHALLENGER_PERCENT": "10"}
SHADOW = {"EXPERIMENT_MODE": "shadow", "EXPERIMENT_CHALLENGER_PERCENT": "25"}


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


def test_leaving_an_experiment_is_a_plain_update_and_staying_in_one_is_too():
    off = settings(PROD)
    experiment = h.experiment_config_request(settings(PROD, **AB), "m1", "m2", 2)
    single = h.endpoint_config_request(off, "m2", 3)
    leaving = h.update_request(off, single, experiment)
    assert "DeploymentConfig" not in leaving and leaving["RetainAllVariantProperties"] is False
    same_names = h.update_request(off, h.endpoint_config_request(off, "m3", 4), single)
    assert "DeploymentConfig" in same_names  # single variant to single variant: blue/green as before


def test_experiment_settings_are_validated_by_name():
    with pytest.raises(h.ConfigurationError, match="EXPERIMENT_MODE"):
        settings(PROD, EXPERIMENT_MODE="canary")
    with pytest.raises(h.ConfigurationError, match="EXPERIMENT_CHALLENGER_PERCENT must be from 1 to 99"):
        settings(PROD, EXPERIMENT_MODE="ab", EXPERIMENT_CHALLENGER_PERCENT="100")
    with pytest.raises(h.ConfigurationError, match="CAPTURE_S3_URI"):
        settings(PROD, EXPERIMENT_MODE="shadow", CAPTURE_S3_URI="")
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
