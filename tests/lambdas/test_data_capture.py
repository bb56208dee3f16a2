"""Data capture in the endpoint configs the deploy Lambda creates: the impressions, written with the data key."""

from __future__ import annotations

import pytest

from lambdas.deploy_endpoint import handler as h
from settings.config import load_project_config
from stacks.deploy_stack import capture_uri, function_environment

DEV, PROD = load_project_config("dev"), load_project_config("prod")
ROLE_ARN = "arn:aws:iam::123456789012:role/model-execution"
KEY_ARN = "arn:aws:kms:ap-south-1:123456789012:key/11111111-2222-3333-4444-555555555555"
ALARMS = ["a-5xx", "a-p99"]


def _settings(cfg, **overrides: str) -> h.Settings:
    env = function_environment(cfg, ROLE_ARN, ALARMS, KEY_ARN, account="123456789012")
    return h.Settings.from_env({**env, **overrides})


def test_instance_endpoint_config_captures_input_and_output_as_json_with_the_data_key() -> None:
    config = h.endpoint_config_request(_settings(PROD), "m", 3)
    capture = config["DataCaptureConfig"]
    assert capture["KmsKeyId"] == KEY_ARN == config["KmsKeyId"]
    assert capture["DestinationS3Uri"] == capture_uri(PROD, "123456789012")
    assert capture["DestinationS3Uri"].startswith("s3://recsys-prod-curated-123456789012-")
    assert capture["DestinationS3Uri"].endswith("/capture")
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == PROD.capture_sampling_percent
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}


def test_serverless_endpoint_configs_carry_no_capture_sagemaker_does_not_offer_it_there() -> None:
    assert "DataCaptureConfig" not in h.endpoint_config_request(_settings(DEV), "m", 3)


def test_capture_changes_the_config_name_so_a_redeploy_picks_it_up() -> None:
    with_capture = h.endpoint_config_request(_settings(PROD), "m", 3)["EndpointConfigName"]
    without = h.endpoint_config_request(_settings(PROD, CAPTURE_S3_URI=""), "m", 3)["EndpointConfigName"]
    assert with_capture != without


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"CAPTURE_S3_URI": "https://x/capture"}, "s3://"), ({"CAPTURE_SAMPLING_PERCENT": "0"}, "1 to 100")],
)
def test_a_bad_capture_setting_is_a_configuration_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(h.ConfigurationError, match=message):
        _settings(PROD, **overrides)
