"""provision() builds, on moto, the data stack the CDK app declares; upload_raw() loads the source bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from recsys.local.moto_server import LocalAws
from recsys.local.provision import (
    ACCESS_LOGS,
    BUCKET_KINDS,
    LocalResources,
    bucket_policy,
    bucket_specs,
    kms_alias,
    moto_compatible_policy,
    provision,
    upload_raw,
)
from settings.config import LOCAL_ACCOUNT, Config, load_project_config


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_project_config()


@pytest.fixture
def res(aws_env: LocalAws, cfg: Config) -> LocalResources:
    """Just the source bucket (versioned, SSE-KMS): what upload_raw touches; full provision is slower."""
    s3, kms = aws_env.client("s3"), aws_env.client("kms")
    key = kms.create_key()["KeyMetadata"]
    name = cfg.bucket_name("source", LOCAL_ACCOUNT)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}}]
        },
    )
    return LocalResources(name, "", "", "", key["KeyId"], cfg.glue_database, cfg.athena_workgroup, key["Arn"])


class TestProvisionedAccount:
    """Read-only checks share one provisioned account (provisioning is ~40 HTTP calls)."""

    @pytest.fixture(scope="class")
    def aws(self, moto_endpoint: LocalAws) -> LocalAws:
        moto_endpoint.reset()
        return moto_endpoint

    @pytest.fixture(scope="class")
    def res(self, aws: LocalAws, cfg: Config) -> LocalResources:
        return provision(cfg, aws)

    def test_bucket_names_come_from_config_for_every_kind(
        self, res: LocalResources, cfg: Config, aws: LocalAws
    ) -> None:
        expected = {kind: cfg.bucket_name(kind, LOCAL_ACCOUNT) for kind in BUCKET_KINDS}
        assert res.buckets == expected
        assert (res.source_bucket, res.destination_bucket, res.athena_results_bucket, res.access_logs_bucket) == tuple(
            expected[k] for k in ("source", "curated", "athena-results", "access-logs")
        )
        listed = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
        assert listed == set(expected.values())

    def test_every_bucket_is_versioned_private_and_encrypted(self, res: LocalResources, aws: LocalAws) -> None:
        s3 = aws.client("s3")
        for kind, name in res.buckets.items():
            assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled", kind
            block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            assert block == dict.fromkeys(
                ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
            ), kind
            rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
            default = rule["ApplyServerSideEncryptionByDefault"]
            if kind == ACCESS_LOGS:  # S3 log delivery target: SSE-S3
                assert default == {"SSEAlgorithm": "AES256"}
            else:
                assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": res.kms_key_arn}, kind

    def test_every_bucket_policy_denies_plain_http(self, res: LocalResources, aws: LocalAws) -> None:
        s3 = aws.client("s3")
        for kind, name in res.buckets.items():
            statements = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])["Statement"]
            deny = [s for s in statements if s["Effect"] == "Deny"]
            assert len(deny) == 1, kind
            assert deny[0]["Action"] == "s3:*"
            assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            assert f"arn:aws:s3:::{name}" in deny[0]["Resource"]

    def test_access_log_bucket_admits_log_delivery_from_our_buckets_only(
        self, res: LocalResources, aws: LocalAws
    ) -> None:
        s3 = aws.client("s3")
        policy = json.loads(s3.get_bucket_policy(Bucket=res.access_logs_bucket)["Policy"])
        allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
        assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
        sources = allow["Condition"]["ArnLike"]["aws:SourceArn"]
        assert sorted(sources) == sorted(f"arn:aws:s3:::{n}" for k, n in res.buckets.items() if k != ACCESS_LOGS)
        for kind, name in res.buckets.items():
            logging = s3.get_bucket_logging(Bucket=name).get("LoggingEnabled")
            if kind == ACCESS_LOGS:
                assert logging is None
            else:
                assert logging == {"TargetBucket": res.access_logs_bucket, "TargetPrefix": f"{kind}/"}

    def test_lifecycle_rules_follow_config(self, res: LocalResources, aws: LocalAws, cfg: Config) -> None:
        s3 = aws.client("s3")
        for kind, name in res.buckets.items():
            rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]}
            assert set(rules) == {r.id for r in bucket_specs(cfg)[kind].lifecycle}
            noncurrent = rules["expire-noncurrent"]["NoncurrentVersionExpiration"]["NoncurrentDays"]
            assert noncurrent == cfg.noncurrent_version_expiry_days
        rules = s3.get_bucket_lifecycle_configuration(Bucket=res.source_bucket)["Rules"]
        raw = next(r for r in rules if r["ID"] == "tier-and-expire-raw")
        assert raw["Filter"] == {"Prefix": "raw/"} and raw["Expiration"] == {"Days": cfg.raw_expiry_days}
        assert raw["Transitions"] == [{"Days": 30, "StorageClass": "INTELLIGENT_TIERING"}]

    def test_uploads_to_a_data_bucket_reach_eventbridge(self, res: LocalResources, aws: LocalAws) -> None:
        """moto omits EventBridgeConfiguration from GetBucketNotification, so observe the event itself."""
        sqs, events = aws.client("sqs"), aws.client("events")
        queue = sqs.create_queue(QueueName="s3-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {"source": ["aws.s3"], "detail": {"bucket": {"name": [res.source_bucket]}}}
        events.put_rule(Name="raw-uploads", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="raw-uploads", Targets=[{"Id": "q", "Arn": arn}])
        aws.client("s3").put_object(Bucket=res.source_bucket, Key="raw/users/u.csv", Body=b"user_id\n")
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        # moto may emit more than one event per PUT; what matters is that the upload arrives.
        assert {json.loads(m["Body"])["detail"]["object"]["key"] for m in messages} == {"raw/users/u.csv"}

    def test_objects_are_encrypted_with_the_data_key_by_default(self, res: LocalResources, aws: LocalAws) -> None:
        s3 = aws.client("s3")
        s3.put_object(Bucket=res.destination_bucket, Key="curated/x/a.txt", Body=b"x")
        head = s3.head_object(Bucket=res.destination_bucket, Key="curated/x/a.txt")
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == res.kms_key_arn
        assert head["VersionId"] not in (None, "null")

    def test_kms_key_has_the_config_alias_and_rotation(self, res: LocalResources, aws: LocalAws, cfg: Config) -> None:
        kms = aws.client("kms")
        assert kms.describe_key(KeyId=kms_alias(cfg))["KeyMetadata"]["KeyId"] == res.kms_key_id
        assert kms.get_key_rotation_status(KeyId=res.kms_key_id)["KeyRotationEnabled"] is True

    def test_glue_database_and_enforced_athena_workgroup(self, res: LocalResources, aws: LocalAws, cfg: Config) -> None:
        assert aws.client("glue").get_database(Name=cfg.glue_database)["Database"]["Name"] == res.glue_database
        wg = aws.client("athena").get_work_group(WorkGroup=cfg.athena_workgroup)["WorkGroup"]["Configuration"]
        assert wg["EnforceWorkGroupConfiguration"] is True
        assert wg["BytesScannedCutoffPerQuery"] == cfg.athena_bytes_scanned_cutoff_mb * 1024 * 1024
        assert wg["ResultConfiguration"] == {
            "OutputLocation": f"s3://{res.athena_results_bucket}/athena-results/",
            "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": res.kms_key_arn},
        }

    def test_provisioning_again_changes_nothing(self, res: LocalResources, aws: LocalAws, cfg: Config) -> None:
        """Last in the class: it re-runs provision on the shared account."""
        assert provision(cfg, aws) == res
        assert len(aws.client("kms").list_keys()["Keys"]) == 1
        assert len(aws.client("s3").list_buckets()["Buckets"]) == len(BUCKET_KINDS)
        names = [w["Name"] for w in aws.client("athena").list_work_groups()["WorkGroups"]]
        assert names.count(cfg.athena_workgroup) == 1
        policy = aws.client("s3").get_bucket_policy(Bucket=res.source_bucket)["Policy"]
        assert len(json.loads(policy)["Statement"]) == 1


def test_provision_repairs_a_drifted_workgroup(aws_env: LocalAws, cfg: Config) -> None:
    athena = aws_env.client("athena")
    athena.create_work_group(Name=cfg.athena_workgroup, Configuration={"EnforceWorkGroupConfiguration": False})
    provision(cfg, aws_env)
    wg = athena.get_work_group(WorkGroup=cfg.athena_workgroup)["WorkGroup"]["Configuration"]
    assert wg["EnforceWorkGroupConfiguration"] is True and "ResultConfiguration" in wg


def test_moto_still_applies_the_tls_deny_unconditionally_so_objects_need_the_narrowed_policy(
    aws_env: LocalAws,
) -> None:
    """If this starts failing, moto evaluates policy conditions: drop moto_compatible_policy."""
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="tls-only", CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    s3.put_bucket_policy(Bucket="tls-only", Policy=json.dumps(bucket_policy("tls-only", "curated", [], LOCAL_ACCOUNT)))
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="tls-only", Key="x.txt", Body=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    s3.put_bucket_policy(
        Bucket="tls-only",
        Policy=json.dumps(moto_compatible_policy(bucket_policy("tls-only", "curated", [], LOCAL_ACCOUNT))),
    )
    s3.put_object(Bucket="tls-only", Key="x.txt", Body=b"x")


# ---- upload_raw -------------------------------------------------------------------------


def _csv(tmp_path: Path, name: str, text: str = "user_id\nu1\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_upload_puts_each_table_under_raw_and_returns_uris(
    res: LocalResources, aws_env: LocalAws, tmp_path: Path
) -> None:
    files = {"users": _csv(tmp_path, "users.csv"), "interactions": _csv(tmp_path, "events.csv", "user_id\nu2\n")}
    uris = upload_raw(aws_env, res, files)
    assert uris == {
        "users": f"s3://{res.source_bucket}/raw/users/users.csv",
        "interactions": f"s3://{res.source_bucket}/raw/interactions/events.csv",
    }
    body = aws_env.client("s3").get_object(Bucket=res.source_bucket, Key="raw/interactions/events.csv")["Body"]
    assert body.read() == b"user_id\nu2\n"


def test_upload_replaces_a_tables_previous_raw_file(res: LocalResources, aws_env: LocalAws, tmp_path: Path) -> None:
    upload_raw(aws_env, res, {"users": _csv(tmp_path, "old.csv")})
    upload_raw(aws_env, res, {"users": _csv(tmp_path, "new.csv")})
    listed = aws_env.client("s3").list_objects_v2(Bucket=res.source_bucket, Prefix="raw/users/")["Contents"]
    assert [o["Key"] for o in listed] == ["raw/users/new.csv"]


def test_missing_file_is_named_and_nothing_is_uploaded(res: LocalResources, aws_env: LocalAws, tmp_path: Path) -> None:
    files = {"users": _csv(tmp_path, "users.csv"), "interactions": tmp_path / "nope.csv"}
    with pytest.raises(FileNotFoundError, match=r"interactions: .*nope\.csv"):
        upload_raw(aws_env, res, files)
    assert "Contents" not in aws_env.client("s3").list_objects_v2(Bucket=res.source_bucket)


def test_unknown_table_is_rejected(res: LocalResources, aws_env: LocalAws, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="orders"):
        upload_raw(aws_env, res, {"orders": _csv(tmp_path, "orders.csv")})
