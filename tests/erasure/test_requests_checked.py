"""This folder's autouse fixture (conftest.py) checks every boto3 request against the AWS API model."""

from __future__ import annotations

from tests.aws_api_model import ACTIVE, stubbed_client


def test_every_boto3_request_of_these_tests_is_checked_against_the_api_model():
    assert ACTIVE, "no checked_requests block is open: the conftest's autouse fixture is missing"
    before = ACTIVE[-1].checked["dynamodb DescribeTable"]
    stubbed_client("dynamodb", "describe_table", {}).describe_table(TableName="recent-items")
    assert ACTIVE[-1].checked["dynamodb DescribeTable"] == before + 1
