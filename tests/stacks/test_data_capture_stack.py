"""Template assertions: the deploy Lambda configures data capture to the destination bucket's capture/ prefix with
the data key, and the endpoint's role may write there with that key."""

from __future__ import annotations

import json

import pytest

from settings.config import load_project_config
from settings.erasure import CAPTURE_PREFIX
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_deploy_lambda_sets_data_capture_to_the_capture_prefix_with_the_data_key(synth, env_name):
    cfg = load_project_config(env_name)
    template = synth(env_name)[1][f"{cfg.prefix}-deploy"]
    [fn] = resources(template, "AWS::Lambda::Function").values()
    env = fn["Properties"]["Environment"]["Variables"]
    parts = env["CAPTURE_S3_URI"]["Fn::Join"][1]
    assert parts[0] == f"s3://{cfg.prefix}-curated-" and parts[-1] == f"-{cfg.region}/{CAPTURE_PREFIX}"
    assert "DataKey" in json.dumps(env["ENDPOINT_KMS_KEY_ARN"])  # DataCaptureConfig.KmsKeyId comes from it
    assert env["CAPTURE_SAMPLING_PERCENT"] == str(cfg.capture_sampling_percent)
    # The experiment the Lambda sets up for the next approval (lambdas/deploy_endpoint: Settings.from_env).
    assert env["EXPERIMENT_MODE"] == cfg.experiment_mode
    assert env["EXPERIMENT_CHALLENGER_PERCENT"] == str(cfg.experiment_challenger_percent)


def test_model_role_writes_only_the_capture_prefix_and_may_encrypt_with_the_data_key(synth):
    cfg = load_project_config("prod")
    template = synth("prod")[1][f"{cfg.prefix}-deploy"]
    statements = [
        s
        for logical_id, p in resources(template, "AWS::IAM::Policy").items()
        if logical_id.startswith("ModelExecutionRole")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = [(a if isinstance(a, list) else [a], s) for s in statements for a in [s["Action"]]]
    puts = [s for acts, s in actions if "s3:PutObject" in acts]
    assert puts and all(f"/{CAPTURE_PREFIX}/*" in json.dumps(s["Resource"]) for s in puts)
    kms = [s for acts, s in actions if "kms:GenerateDataKey*" in acts]
    assert kms and all("DataKey" in json.dumps(s["Resource"]) for s in kms)
