"""KMS key and S3 buckets of the data plane: small factories so every bucket gets the same guards."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import ATHENA_RESULTS_PREFIX, LOG_RETENTION_DAYS, RAW_PREFIX, Config


def removal_policy(cfg: Config) -> RemovalPolicy:
    """Dev stacks may be torn down with their data; prod keeps it."""
    return RemovalPolicy.RETAIN if cfg.retain else RemovalPolicy.DESTROY


def log_retention(cfg: Config) -> logs.RetentionDays:
    """CDK's enum lists the same allowed periods, in the same order, as the config check."""
    members = [r for r in logs.RetentionDays if r.name != "INFINITE"]
    assert len(members) == len(LOG_RETENTION_DAYS), "aws-cdk-lib changed its RetentionDays enum"
    return dict(zip(LOG_RETENTION_DAYS, members, strict=True))[cfg.log_retention_days]


def data_key(scope: Construct, cfg: Config) -> kms.Key:
    """One customer-managed key for data at rest: buckets, DataBrew output, Athena results, logs."""
    return kms.Key(
        scope,
        "DataKey",
        alias=f"alias/{cfg.prefix}-data",
        description=f"{cfg.prefix}: encrypts raw, curated and query-result data",
        enable_key_rotation=True,
        removal_policy=removal_policy(cfg),
    )


def access_log_bucket(scope: Construct, cfg: Config, account: str) -> s3.Bucket:
    """Server access logs target. S3 log delivery supports only SSE-S3 here, not SSE-KMS."""
    return s3.Bucket(
        scope,
        "AccessLogsBucket",
        bucket_name=cfg.bucket_name("access-logs", account),
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        lifecycle_rules=[
            s3.LifecycleRule(id="expire-logs", expiration=Duration.days(cfg.raw_expiry_days)),
            s3.LifecycleRule(
                id="expire-noncurrent", noncurrent_version_expiration=Duration.days(cfg.noncurrent_version_expiry_days)
            ),
        ],
        removal_policy=removal_policy(cfg),
    )


def data_bucket(
    scope: Construct,
    construct_id: str,
    cfg: Config,
    *,
    kind: str,
    account: str,
    key: kms.IKey,
    logs: s3.IBucket,
    lifecycle_rules: list[s3.LifecycleRule],
) -> s3.Bucket:
    """A private, TLS-only, versioned, KMS-encrypted bucket that logs access and emits EventBridge events."""
    return s3.Bucket(
        scope,
        construct_id,
        bucket_name=cfg.bucket_name(kind, account),
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        server_access_logs_bucket=logs,
        server_access_logs_prefix=f"{kind}/",
        event_bridge_enabled=True,
        lifecycle_rules=[
            *lifecycle_rules,
            s3.LifecycleRule(
                id="expire-noncurrent",
                noncurrent_version_expiration=Duration.days(cfg.noncurrent_version_expiry_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
            ),
        ],
        removal_policy=removal_policy(cfg),
    )


def raw_lifecycle(cfg: Config) -> list[s3.LifecycleRule]:
    """Raw uploads are re-read rarely once curated: tier them early, expire them per config."""
    return [
        s3.LifecycleRule(
            id="tier-and-expire-raw",
            prefix=f"{RAW_PREFIX}/",
            transitions=[
                s3.Transition(storage_class=s3.StorageClass.INTELLIGENT_TIERING, transition_after=Duration.days(30))
            ]
            if cfg.raw_expiry_days > 30
            else [],
            expiration=Duration.days(cfg.raw_expiry_days),
        )
    ]


def curated_lifecycle(cfg: Config) -> list[s3.LifecycleRule]:
    """Curated data is the training history: keep it, but move cold objects to cheaper storage."""
    return [
        s3.LifecycleRule(
            id="tier-curated",
            transitions=[
                s3.Transition(storage_class=s3.StorageClass.INTELLIGENT_TIERING, transition_after=Duration.days(30))
            ],
        )
    ]


def results_lifecycle(cfg: Config) -> list[s3.LifecycleRule]:
    """Query results are disposable; feature CTAS output lives under them and is rebuilt daily."""
    return [
        s3.LifecycleRule(
            id="expire-results", prefix=f"{ATHENA_RESULTS_PREFIX}/", expiration=Duration.days(cfg.raw_expiry_days)
        )
    ]
