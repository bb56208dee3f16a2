"""Security properties of every synthesised template (dev and prod): encryption at rest and in
transit, no secrets, and cdk-nag's two packs clean with reasoned acknowledgements only.

The rules live in ``stacks/security.py`` (shared with ``bench/bench_security.py``); each has a
negative test here on a hand-written template, so a check that can no longer fail is noticed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from stacks.nag import APP_WIDE, GRANT_ACTIONS, NIST, PACKS, acknowledge, register_nag
from stacks.security import (
    SERVICE_KEY_OK,
    buckets_without_tls_policy,
    encryption_of,
    encryption_offenders,
    find_secrets,
    lambdas_with_unencrypted_environment,
    repository_files,
    scan_files,
    unknown_store_types,
    unrotated_keys,
)
from tests import HEAVY_TIMEOUT_S

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]

ENVS = ["dev", "prod"]
ROOT = Path(__file__).resolve().parents[2]


def _templates(synth, env_name: str) -> dict[str, dict]:
    outdir, _ = synth(env_name)
    return {path.name: json.loads(path.read_text()) for path in sorted(outdir.glob("*.template.json"))}


def _report(synth, env_name: str) -> dict:
    outdir, _ = synth(env_name)
    return json.loads((outdir / "validation-report.json").read_text())


def _per_template(templates: dict[str, dict], check: Callable[[dict], Collection[str]]) -> dict[str, Collection[str]]:
    return {name: found for name, t in templates.items() if (found := check(t))}


# ---- at rest ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", ENVS)
def test_every_data_store_is_encrypted_with_the_customer_key_or_a_listed_reason(synth, env_name):
    templates = _templates(synth, env_name)
    assert _per_template(templates, encryption_offenders) == {}
    kinds = {type_ for t in templates.values() for type_, _ in encryption_of(t).values()}
    assert {"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Kinesis::Stream"} <= kinds
    assert {"AWS::SNS::Topic", "AWS::Logs::LogGroup", "AWS::KinesisFirehose::DeliveryStream"} <= kinds


@pytest.mark.parametrize("env_name", ENVS)
def test_the_encryption_check_knows_every_data_service_resource_type(synth, env_name):
    assert _per_template(_templates(synth, env_name), unknown_store_types) == {}


@pytest.mark.parametrize("env_name", ENVS)
def test_every_customer_key_rotates(synth, env_name):
    templates = _templates(synth, env_name)
    assert sum(r["Type"] == "AWS::KMS::Key" for t in templates.values() for r in t["Resources"].values()) >= 2
    assert _per_template(templates, unrotated_keys) == {}


def test_service_owned_keys_are_allowed_only_where_listed():
    """The check can fail: SSE-S3, SSE-SQS, DynamoDB's default key and a plain log group are reported."""
    template = {
        "Resources": {
            "RawBucket1": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    }
                },
            },
            "Queue1": {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}},
            "Logs1": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
            "Table1": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        }
    }
    assert sorted(o.split(" ")[0] for o in encryption_offenders(template)) == [
        "Logs1",
        "Queue1",
        "RawBucket1",
        "Table1",
    ]
    listed = {f"{prefix}X": template["Resources"]["Queue1"] for prefix in SERVICE_KEY_OK}
    assert encryption_offenders({"Resources": listed}) == []


def test_an_unknown_data_store_type_is_reported():
    template = {"Resources": {"Db": {"Type": "AWS::RDS::DBInstance", "Properties": {}}}}
    assert unknown_store_types(template) == {"AWS::RDS::DBInstance"}


@pytest.mark.parametrize("env_name", ENVS)
def test_every_lambda_environment_is_encrypted_with_the_customer_key(synth, env_name):
    templates = _templates(synth, env_name)
    functions = [r for t in templates.values() for r in t["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    with_env = [f for f in functions if f["Properties"].get("Environment", {}).get("Variables")]
    assert len(with_env) >= 3  # the deploy, clickstream consumer and recommendations API functions
    assert all("DataKey" in json.dumps(f["Properties"]["KmsKeyArn"]) for f in with_env)
    assert _per_template(templates, lambdas_with_unencrypted_environment) == {}


def test_a_lambda_environment_without_a_customer_key_is_reported():
    """The check can fail: variables without KmsKeyArn are reported; no variables, nothing to encrypt."""
    fn = {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": {"TABLE": "t"}}}}
    keyed = {"Type": "AWS::Lambda::Function", "Properties": {**fn["Properties"], "KmsKeyArn": "arn:aws:kms:r:1:key/k"}}
    bare = {"Type": "AWS::Lambda::Function", "Properties": {}}
    template = {"Resources": {"Plain": fn, "Keyed": keyed, "Provider": bare}}
    assert lambdas_with_unencrypted_environment(template) == ["Plain"]


# ---- in transit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", ENVS)
def test_every_bucket_policy_denies_requests_without_tls(synth, env_name):
    templates = _templates(synth, env_name)
    assert sum(r["Type"] == "AWS::S3::Bucket" for t in templates.values() for r in t["Resources"].values()) >= 4
    assert _per_template(templates, buckets_without_tls_policy) == {}


def test_a_bucket_without_a_tls_deny_is_reported():
    """The check can fail: a policy that only allows, or denies on another condition, does not count."""
    allow_only = {"Effect": "Allow", "Action": "s3:GetObject", "Principal": {"AWS": "*"}}
    other_deny = {"Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}
    template = {
        "Resources": {
            "Open": {"Type": "AWS::S3::Bucket", "Properties": {}},
            "OpenPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "Open"}, "PolicyDocument": {"Statement": [allow_only, other_deny]}},
            },
        }
    }
    assert buckets_without_tls_policy(template) == ["Open"]
    tls = {"Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    template["Resources"]["OpenPolicy"]["Properties"]["PolicyDocument"]["Statement"].append(tls)
    assert buckets_without_tls_policy(template) == []


@pytest.mark.parametrize("env_name", ENVS)
def test_apis_are_iam_authorised_and_throttled(synth, env_name):
    templates = _templates(synth, env_name)
    resources = [r for t in templates.values() for r in t["Resources"].values()]
    methods = [r["Properties"] for r in resources if r["Type"] == "AWS::ApiGateway::Method"]
    assert methods and all(m["AuthorizationType"] == "AWS_IAM" for m in methods if m["HttpMethod"] != "OPTIONS")
    stages = [r["Properties"] for r in resources if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stages and all(
        s["MethodSettings"][0]["ThrottlingRateLimit"] > 0 and not s["MethodSettings"][0]["DataTraceEnabled"]
        for s in stages
    )


# ---- secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", ENVS)
def test_templates_contain_no_secrets(synth, env_name):
    outdir, _ = synth(env_name)
    templates = sorted(outdir.glob("*.template.json"))
    assert templates and scan_files(templates) == {}


def test_repository_contains_no_secrets():
    files = repository_files(ROOT)
    assert len(files) > 50 and any(f.name == "moto_server.py" for f in files)  # the fake "testing" keys are fine
    assert scan_files(files) == {}


def test_secret_scan_finds_planted_credentials(tmp_path):
    """The check can fail. Planted values are assembled at run time so this file stays clean."""
    key_id = "AKIA" + "Z7Q2" * 4
    secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCY" + "0123456789"
    pem = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE..."
    planted = tmp_path / "settings.py"
    planted.write_text(f'KEY = "{key_id}"\naws_secret_access_key = "{secret}"\n{pem}\n')
    assert scan_files([planted]) == {str(planted): ["AWS access key id", "AWS secret access key", "private key"]}
    assert find_secrets('aws_secret_access_key = "testing"\nAWS_ACCESS_KEY_ID=testing') == []


# ---- cdk-nag ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", ENVS)
def test_both_nag_packs_ran_and_passed(synth, env_name):
    reports = {r["pluginName"]: r for r in _report(synth, env_name)["pluginReports"]}
    assert set(PACKS) <= set(reports)
    assert all(reports[p]["conclusion"] == "success" and reports[p]["violations"] == [] for p in PACKS)


@pytest.mark.parametrize("env_name", ENVS)
def test_every_acknowledged_finding_has_a_reason_and_only_listed_ones_are_app_wide(synth, env_name):
    app_wide = {*APP_WIDE, *(f"AwsSolutions-IAM5[{f}]" for f in GRANT_ACTIONS)}
    for plugin in _report(synth, env_name)["pluginReports"]:
        for finding in plugin["suppressedViolations"]:
            rule = finding["acknowledgedId"].partition("::")[2]
            # The rule id already names the resource (e.g. an IAM5 prefix), so five words can be specific enough.
            assert len(finding["reason"].split()) >= 5, f"{rule}: give a reason a reviewer can check"
            if finding.get("acknowledgedAt", "") == "":
                assert rule in app_wide, f"{rule} is acknowledged for the whole app; acknowledge it where it occurs"


def test_nist_pack_fails_synth_on_an_unacknowledged_finding(tmp_path):
    """The check can fail: an SSE-S3 bucket passes AwsSolutions (with its acknowledgements) but not NIST."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bad")
    bucket = s3.Bucket(stack, "Plain", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True, versioned=True)
    acknowledge(bucket, "AwsSolutions-S1", "A test bucket with no access logs, to isolate the NIST finding here.")
    acknowledge(bucket, f"{NIST}-S3BucketLoggingEnabled", "A test bucket with no access logs, to isolate the finding.")
    acknowledge(bucket, f"{NIST}-S3BucketReplicationEnabled", "A test bucket without replication, to isolate it.")
    register_nag(app)
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*NIST\.800\.53\.R5-S3DefaultEncryptionKMS"):
        app.synth()


def test_acknowledging_a_rule_of_no_registered_pack_is_an_error():
    with pytest.raises(ValueError, match="HIPAA.Security-LambdaDLQ"):
        acknowledge(cdk.App(), "HIPAA.Security-LambdaDLQ", "A pack this project does not run: a typo or stale rule.")
