"""The API-model checker (tests/aws_api_model.py) finds what botocore's validator lets through, and only that."""

from __future__ import annotations

import copy

import pytest
from botocore.model import ShapeResolver
from botocore.validate import validate_parameters

from tests.aws_api_model import (
    RequestViolation,
    UntranslatablePattern,
    check_request,
    checked_requests,
    java_pattern,
    operation_model,
    shape_violations,
    stubbed_client,
    violations,
)

ROLE = "arn:aws:iam::123456789012:role/pipeline"
#: The shell line the five processing steps carried before the bootstrap script (299 characters).
OLD_ENTRYPOINT = (
    'set -eu; mkdir -p /opt/ml/processing/source; for archive in /opt/ml/processing/code/*; do tar -xzf "$archive" '
    "-C /opt/ml/processing/source; done; python -m pip install --quiet --no-cache-dir -r "
    '/opt/ml/processing/source/requirements.txt; exec python /opt/ml/processing/source/batch_recommend.py "$@"'
)
PROCESSING_JOB = {
    "ProcessingJobName": "pipelines-kytlemm1lvpq-PrepareData-cIpzShs3Qp",
    "RoleArn": ROLE,
    "AppSpecification": {"ImageUri": "763104351884.dkr.ecr.ap-south-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312"},
    "ProcessingResources": {
        "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
    },
    "ProcessingInputs": [
        {"InputName": "code", "S3Input": {"S3Uri": "s3://b/k.gz", "LocalPath": "/opt/ml/processing/code",
                                          "S3DataType": "S3Prefix", "S3InputMode": "File"}},
    ],
}  # fmt: skip


def _job(**changes) -> dict:
    job = copy.deepcopy(PROCESSING_JOB)
    job.update(changes)
    return job


def test_a_valid_request_breaks_no_limit():
    assert violations("sagemaker", "CreateProcessingJob", PROCESSING_JOB) == []
    check_request("sagemaker", "create_processing_job", PROCESSING_JOB)  # snake case names the same operation


def test_an_entrypoint_item_longer_than_256_is_named_with_its_path_shape_and_limit_where_botocore_sees_nothing():
    entrypoint = ["/bin/bash", "-c", OLD_ENTRYPOINT, "batch_recommend.py"]
    job = _job(AppSpecification={**PROCESSING_JOB["AppSpecification"], "ContainerEntrypoint": entrypoint})
    validate_parameters(job, operation_model("sagemaker", "CreateProcessingJob").input_shape)  # botocore: fine
    (found,) = violations("sagemaker", "CreateProcessingJob", job)
    assert str(found) == "AppSpecification.ContainerEntrypoint[2] (ContainerEntrypointString): length 299 > max 256"
    with pytest.raises(RequestViolation, match=r"sagemaker CreateProcessingJob \(step X\): AppSpecification"):
        check_request("sagemaker", "CreateProcessingJob", job, where="step X")


def test_an_instance_type_outside_the_transform_enum_is_refused():
    spec = {
        "Containers": [{"Image": "img"}],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
        "SupportedTransformInstanceTypes": ["ml.c5.large"],
    }
    request = {"ModelPackageGroupName": "g", "InferenceSpecification": spec}
    (found,) = violations("sagemaker", "CreateModelPackage", request)
    assert found.path == "InferenceSpecification.SupportedTransformInstanceTypes[0]"
    assert found.shape == "TransformInstanceType" and "not one of the" in found.problem
    request["InferenceSpecification"]["SupportedTransformInstanceTypes"] = ["ml.m5.large"]
    assert violations("sagemaker", "CreateModelPackage", request) == []


def test_a_pattern_must_match_the_whole_value_as_the_service_applies_it():
    """SageMaker refused an 85-character job name under its name pattern (zenml-io/zenml#1502), which a search
    would match in part: the model's patterns are unanchored and the service matches them whole."""
    name = "basic-zenml-project-pipeline-2023-04-24-12-22-59-886794-step-show-sagemaker-s3-link"
    problems = {v.problem.split(" ")[-1] if "max" in v.problem else "pattern"
                for v in violations("sagemaker", "CreateProcessingJob", _job(ProcessingJobName=name))}  # fmt: skip
    assert problems == {"63", "pattern"}
    assert [v.problem for v in violations("sagemaker", "CreateProcessingJob", _job(ProcessingJobName="bad_name"))] == [
        "'bad_name' does not match pattern '[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}'"
    ]


def test_list_sizes_number_ranges_required_and_unknown_members_are_checked():
    inputs = PROCESSING_JOB["ProcessingInputs"] * 11
    cluster = {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 0}
    job = _job(ProcessingInputs=inputs, ProcessingResources={"ClusterConfig": cluster}, Extra=1)
    del job["RoleArn"]
    found = {str(v) for v in violations("sagemaker", "CreateProcessingJob", job)}
    assert found == {
        "ProcessingInputs (ProcessingInputs): list size 11 > max 10",
        "ProcessingResources.ClusterConfig.VolumeSizeInGB (ProcessingVolumeSizeInGB): value 0 < min 1",
        "<request> (CreateProcessingJobRequest): required member RoleArn is missing",
        next(s for s in found if s.startswith("<request> (CreateProcessingJobRequest): unknown member Extra")),
    }


def test_map_keys_and_values_and_types_are_checked():
    job = _job(Environment={"K" * 257: "v", "OK": 5})
    found = [str(v) for v in violations("sagemaker", "CreateProcessingJob", job)]
    assert any(s.startswith("Environment key 'KKK") and "length 257 > max 256" in s for s in found)
    assert "Environment['OK'] (ProcessingEnvironmentValue): expected a string, got int 5" in found


def test_lengths_count_utf16_units_as_java_does():
    emoji = "\U0001f600"  # one character, two UTF-16 units
    assert violations("sagemaker", "CreateProcessingJob", _job(Environment={"K": emoji * 128})) == []
    (found,) = violations("sagemaker", "CreateProcessingJob", _job(Environment={"K": emoji * 128 + "x"}))
    assert found.problem == "length 257 > max 256"


@pytest.mark.parametrize(
    ("pattern", "matches", "refuses"),
    [
        (r"[\p{L}\p{N}]+", ["Ünïcode9", "日本"], ["a!", "a b"]),
        (r"\p{Alnum}+", ["abc123"], ["é"]),  # Java's POSIX classes are ASCII
        (r"[\P{C}]+", ["a b"], ["a\x00"]),
        (r".*", ["any text"], ["line\rbreak", "line\nbreak"]),  # Java's "." stops at every line terminator
        (r"(?s).*", ["line\nbreak"], []),
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", ["tab\tand \U0001f600"], ["\x01"]),
        (r"[\w-_]+", ["a-b_c"], ["a.b"]),  # "-" after a class escape is literal in Java
        (r"([\p{L}_]*)${1,128}", ["key_"], ["key:"]),  # a repeated anchor (CustomerMetadataKey)
        (r"[a-z]+(?<!-)", ["abc"], ["ab-"]),
        (r"(?<name>[0-9]+)\z", ["123"], ["123\n"]),
        (r"\w+", ["abc_1"], ["é"]),  # Java's \w is ASCII
    ],
)
def test_java_patterns_mean_the_same_in_python(pattern, matches, refuses):
    compiled = java_pattern(pattern)
    assert all(compiled.fullmatch(text) for text in matches)
    assert not any(compiled.fullmatch(text) for text in refuses)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"\Qa.b\E", "quoting"), (r"[a-z&&[^b]]", "class"), (r"a(?i)b", "flag"), (r"\p{InGreek}", "POSIX"),
     (r"[\uD800-\uDBFF]", "lone surrogate"), (r"\v", "vertical")],
)  # fmt: skip
def test_a_pattern_that_cannot_be_translated_is_refused(pattern, why):
    with pytest.raises(UntranslatablePattern, match=why):
        java_pattern(pattern)


def test_an_untranslatable_pattern_is_a_violation_never_a_silent_pass():
    shape = ShapeResolver({"Name": {"type": "string", "pattern": r"\Qliteral\E"}}).get_shape_by_name("Name")
    (found,) = shape_violations(shape, "literal", "Name")
    assert found.problem.startswith(r"pattern '\\Qliteral\\E' cannot be checked: quoting")


def _stubbed_sagemaker():
    return stubbed_client("sagemaker", "create_processing_job", {"ProcessingJobArn": "arn:aws:sagemaker:x:1:y/z"})


def test_checked_requests_logs_a_breach_of_a_client_created_before_the_block_and_lets_the_call_through():
    client = _stubbed_sagemaker()
    entrypoint = ["/bin/bash", "-c", OLD_ENTRYPOINT, "batch_recommend.py"]
    with checked_requests() as log:
        client.create_processing_job(**_job(AppSpecification={**PROCESSING_JOB["AppSpecification"],
                                                               "ContainerEntrypoint": entrypoint}))  # fmt: skip
    assert log.checked == {"sagemaker CreateProcessingJob": 1}
    assert log.violations == [
        "sagemaker CreateProcessingJob: AppSpecification.ContainerEntrypoint[2] (ContainerEntrypointString): "
        "length 299 > max 256"
    ]
    client = _stubbed_sagemaker()
    client.create_processing_job(**_job(AppSpecification={**PROCESSING_JOB["AppSpecification"],
                                                           "ContainerEntrypoint": entrypoint}))  # fmt: skip
    assert log.checked == {"sagemaker CreateProcessingJob": 1}  # outside the block: not checked
