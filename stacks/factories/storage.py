"""KMS key and S3 buckets of the data plane: small factories so every bucket gets the same guards."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from settings.config import LOG_RETENTION_DAYS, Config
from stacks.buckets import TRANSITION_STORAGE_CLASS, BucketSpec, kms_alias
from stacks.nag import acknowledge


def removal_policy(cfg: Config) -> RemovalPolicy:
    """Dev stacks may be torn down with their data; prod keeps it."""
    return RemovalPolicy.RETAIN if cfg.retain else RemovalPolicy.DESTROY


def log_retention(cfg: Config) -> logs.RetentionDays:
    """CDK's enum lists the same allowed periods, in the same order, as the config check."""
    members = [r for r in logs.RetentionDays if r.name != "INFINITE"]
    assert len(members) == len(LOG_RETENTION_DAYS), "aws-cdk-lib changed its RetentionDays enum"
    return dict(zip(LOG_RETENTION_DAYS, members, strict=True))[cfg.log_retention_days]


def deploy_dlq_name(cfg: Config) -> str:
    """The deploy Lambda's dead-letter queue (deploy stack); the data key's policy names it by this name."""
    return f"{cfg.prefix}-deploy-endpoint-dlq"


def data_key(scope: Construct, cfg: Config) -> kms.Key:
    """One customer-managed key for data at rest: buckets, DataBrew output, Athena results, logs, queues.

    CloudWatch Logs encrypts with the key as itself, not as a role, so the key policy must name it;
    the condition limits that to log groups of this account and region. EventBridge, too, sends failed
    deploy events to the deploy dead-letter queue as itself: its statement is limited to SQS calls for
    that one queue (SQS puts the queue's ARN in the encryption context of every data key it asks for).
    """
    key = kms.Key(
        scope,
        "DataKey",
        alias=kms_alias(cfg),
        description=f"{cfg.prefix}: encrypts raw, curated and query-result data",
        enable_key_rotation=True,
        removal_policy=removal_policy(cfg),
    )
    region = Stack.of(scope).region
    log_groups = f"arn:{Aws.PARTITION}:logs:{region}:{Aws.ACCOUNT_ID}:log-group:*"
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
        )
    )
    deploy_dlq = f"arn:{Aws.PARTITION}:sqs:{region}:{Aws.ACCOUNT_ID}:{deploy_dlq_name(cfg)}"
    key.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=["*"],  # in a key policy, "*" is this key
            # Only SQS sets this context (the queue the data key is for); no kms:ViaService on top, which adds
            # nothing here and cannot be checked without an account.
            conditions={"StringEquals": {"kms:EncryptionContext:aws:sqs:arn": deploy_dlq}},
        )
    )
    return key


def grant_data_key(grantee: iam.IGrantable, key: kms.IKey) -> None:
    """Use ``key`` the way S3, SQS, Kinesis, Athena and SageMaker do for a caller: decrypt what it reads and generate
    data keys for what it writes. Not ``grant_encrypt_decrypt``: no role encrypts or re-encrypts with the key itself
    (``kms:Encrypt``/``kms:ReEncrypt*`` were granted and never used, tests/permissions)."""
    key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey*")


def grant_volume_key(role: iam.IRole, key: kms.IKey) -> None:
    """What SageMaker needs from the role whose job or endpoint names ``key`` as its volume key
    (``VolumeKmsKeyId``, an endpoint config's ``KmsKeyId``): look the key up and create the volume's
    grant (sagemaker-roles.html, SECURITY.md). Grants only for AWS resources, never for a principal."""
    key.grant(role, "kms:DescribeKey")
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["kms:CreateGrant"],
            resources=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )
    )


def lifecycle_rules(spec: BucketSpec) -> list[s3.LifecycleRule]:
    """CDK form of the shared rule specs (stacks/buckets.py), so local and AWS buckets age alike."""
    return [
        s3.LifecycleRule(
            id=rule.id,
            prefix=rule.prefix or None,
            expiration=Duration.days(rule.expiration_days) if rule.expiration_days else None,
            noncurrent_version_expiration=(
                Duration.days(rule.noncurrent_expiration_days) if rule.noncurrent_expiration_days else None
            ),
            abort_incomplete_multipart_upload_after=(
                Duration.days(rule.abort_multipart_days) if rule.abort_multipart_days else None
            ),
            transitions=[
                s3.Transition(
                    storage_class=s3.StorageClass(TRANSITION_STORAGE_CLASS),
                    transition_after=Duration.days(rule.transition_days),
                )
            ]
            if rule.transition_days
            else None,
        )
        for rule in spec.lifecycle
    ]


def bucket(
    scope: Construct,
    construct_id: str,
    cfg: Config,
    spec: BucketSpec,
    *,
    account: str,
    key: kms.IKey,
    logs_bucket: s3.IBucket | None,
) -> s3.Bucket:
    """A private, TLS-only, versioned, encrypted bucket; data buckets also log access and emit events.

    The access-log bucket uses SSE-S3: S3 log delivery cannot write with a customer key.
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=cfg.bucket_name(spec.kind, account),
        encryption=s3.BucketEncryption.KMS if spec.kms else s3.BucketEncryption.S3_MANAGED,
        encryption_key=key if spec.kms else None,
        bucket_key_enabled=spec.kms or None,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        server_access_logs_bucket=logs_bucket if spec.log_to_access_logs else None,
        server_access_logs_prefix=f"{spec.kind}/" if spec.log_to_access_logs else None,
        event_bridge_enabled=spec.log_to_access_logs or None,
        lifecycle_rules=lifecycle_rules(spec),
        removal_policy=removal_policy(cfg),
    )
    acknowledge(
        bucket,
        "NIST.800.53.R5-S3BucketReplicationEnabled",
        "S3 already stores objects across at least three AZs, and these buckets are versioned (and retained in prod); "
        "a second-region copy is a disaster-recovery choice that doubles storage cost, left to the deployer.",
    )
    if not spec.kms:
        acknowledge(
            bucket,
            "NIST.800.53.R5-S3DefaultEncryptionKMS",
            "Server access log target: S3 log delivery supports only SSE-S3 on the target bucket, not SSE-KMS.",
        )
    return bucket
