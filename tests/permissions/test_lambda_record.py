"""The committed record of the Lambdas' AWS calls (``lambda_calls.json``) is exactly what their tests call.

Each Lambda test already fails on a call missing from the record (``recorder.record_lambda_calls``); this test
re-runs those tests in a child process with the recorder writing, so a call the code no longer makes cannot stay
in the record either (it would hide a grant that nothing uses). It does not depend on which tests ran before.
"""

from __future__ import annotations

import pytest

from tests.permissions.recorder import LAMBDAS, RECORD, _function_on_stack, iam_calls, load_record, record_calls

pytestmark = pytest.mark.xdist_group("lambda-record")


def test_the_committed_record_is_exactly_what_the_lambda_tests_call(tmp_path):
    recorded = record_calls(tmp_path / "calls.jsonl")
    committed = load_record()
    assert recorded, "the Lambda tests recorded nothing: is the fixture still installed in their conftest?"
    assert sorted(recorded - committed) == [], f"calls missing from {RECORD.name}: python -m tests.permissions.recorder"
    assert sorted(committed - recorded) == [], f"calls no test makes any more in {RECORD.name}: rewrite it"


def test_a_call_is_the_functions_only_under_its_handler_module():
    """Set-up code of a test is not recorded; code run beneath ``lambdas/<function>/handler.py`` is."""
    assert _function_on_stack() is None
    namespace: dict = {"probe": _function_on_stack}
    exec(compile("def entry():\n    return probe()\n", str(LAMBDAS / "erasure" / "handler.py"), "exec"), namespace)
    assert namespace["entry"]() == "erasure"
    exec(compile("def helper():\n    return probe()\n", str(LAMBDAS / "erasure" / "core.py"), "exec"), namespace)
    assert namespace["helper"]() is None  # a helper only tests call (the verification scan)


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("sqs", "SendMessageBatch", {"QueueUrl": "http://localhost:5000/123456789012/dlq", "Entries": []},
         [("sqs:SendMessage", "arn:aws:sqs:ap-south-1:123456789012:dlq", {})]),
        ("s3", "GetObject", {"Bucket": "b", "Key": "k", "VersionId": "v"},
         [("s3:GetObjectVersion", "arn:aws:s3:::b/k", {})]),
        ("s3", "ListObjectVersions", {"Bucket": "b", "Prefix": "raw/"},
         [("s3:ListBucketVersions", "arn:aws:s3:::b", {"s3:prefix": "raw/"})]),
        ("s3", "ListBuckets", {}, [("s3:ListAllMyBuckets", "*", {})]),
        ("sagemaker", "CreateModel", {"ModelName": "M-1", "ExecutionRoleArn": "arn:aws:iam::1:role/r"},
         [("sagemaker:CreateModel", "arn:aws:sagemaker:ap-south-1:123456789012:model/m-1", {}),
          ("iam:PassRole", "arn:aws:iam::1:role/r", {"iam:PassedToService": "sagemaker.amazonaws.com"})]),
        ("sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "e", "Body": b"{}"},
         [("sagemaker:InvokeEndpoint", "arn:aws:sagemaker:ap-south-1:123456789012:endpoint/e", {})]),
        ("application-autoscaling", "RegisterScalableTarget",
         {"ServiceNamespace": "sagemaker", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
          "ResourceId": "endpoint/e/variant/v"},
         [("application-autoscaling:RegisterScalableTarget",
           "arn:aws:application-autoscaling:ap-south-1:123456789012:scalable-target/<generated-id>",
           {"application-autoscaling:service-namespace": "sagemaker",
            "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount"})]),
    ],
)  # fmt: skip
def test_api_calls_map_to_the_iam_action_and_resource_that_authorize_them(service, operation, params, expected):
    assert iam_calls(service, operation, params, "ap-south-1", "123456789012") == expected


def test_a_key_under_today_s_date_is_recorded_without_the_date():
    """The erasure audit writes under ``erasure/audit/<today>/``: a dated record would fail the next day."""
    from tests.permissions.recorder import _generalise

    key = "arn:aws:s3:::b/erasure/audit/2031-01-05/0f8fad5b-d9cb-469f-a165-70867728950e.json"
    assert _generalise(key) == "arn:aws:s3:::b/erasure/audit/<date>/<uuid>.json"
    assert _generalise("arn:aws:s3:::b/capture/2026/01/02/03/c.jsonl") == "arn:aws:s3:::b/capture/2026/01/02/03/c.jsonl"
