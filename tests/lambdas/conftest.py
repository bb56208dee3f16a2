"""Fixtures shared by the deploy function's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from settings.config import load_project_config
from tests.aws_api_model import requests_within_api_limits


@pytest.fixture
def aws(aws_env):
    """Moto SageMaker with this project's dev and prod package groups, and application autoscaling."""
    sm, aas = aws_env.client("sagemaker"), aws_env.client("application-autoscaling")
    for env in ("dev", "prod"):
        sm.create_model_package_group(ModelPackageGroupName=load_project_config(env).model_package_group)
    return aws_env, sm, aas


# Every Lambda test records the AWS calls its function's code makes (tests/permissions/recorder.py).
from tests.permissions.recorder import record_lambda_calls  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _requests_within_api_limits() -> Iterator[None]:
    """Every boto3 request these tests make is checked against the AWS API model (tests/aws_api_model.py)."""
    yield from requests_within_api_limits()
