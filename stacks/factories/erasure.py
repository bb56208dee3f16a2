"""The erasure workflow on AWS: one Lambda (``lambdas/erasure``) that forgets a shopper everywhere.

Why a Lambda and not a state machine: the steps are the stores of ``settings.erasure`` in order, each redone
safely on a retry (``lambdas/erasure/core.py``), and one request fits well inside 15 minutes at the project's
data sizes; Lambda's async retries plus the DLQ give the rerun-after-crash behaviour a state machine would.
Reserved concurrency 1: two requests never race on the suppression list's read-modify-write.

Least privilege: object reads/writes/version deletes only under the stores' prefixes and the erasure records'
prefix, bucket listing of the three buckets, Scan/DeleteItem/DescribeTable on the recent-items table, the data
key for SSE-KMS, its own log group and DLQ.
"""

from __future__ import annotations

import json

from aws_cdk import Aws, Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from settings.config import PROJECT_ROOT, Config
from settings.erasure import (
    ENV_BUCKET,
    ENV_RETENTION,
    ENV_STORES,
    PANDAS_LAYER_ACCOUNT,
    PANDAS_LAYER_NAME,
    PANDAS_LAYER_VERSION,
    RECORDS_PREFIX,
    erasure_stores,
    function_name,
    retention,
)
from stacks.buckets import ATHENA_RESULTS, CURATED, SOURCE
from stacks.factories import storage
from stacks.nag import LAMBDA_OUTSIDE_VPC, acknowledge, acknowledge_wildcards

CODE = PROJECT_ROOT / "lambdas" / "erasure"


def erasure_function(
    scope: Construct, cfg: Config, *, key: kms.IKey, table: dynamodb.ITable | None
) -> lambda_.Function:
    """The function, its role, log group and dead-letter queue."""
    name = function_name(cfg)
    buckets = {kind: cfg.bucket_name(kind, Aws.ACCOUNT_ID) for kind in (SOURCE, CURATED, ATHENA_RESULTS)}
    specs = erasure_stores(source=buckets[SOURCE], destination=buckets[CURATED], results=buckets[ATHENA_RESULTS],
                           recent_items_table=table.table_name if table is not None else None)  # fmt: skip
    log_group = logs.LogGroup(
        scope,
        "ErasureLogs",
        log_group_name=f"/aws/lambda/{name}",
        retention=storage.log_retention(cfg),
        encryption_key=key,
        removal_policy=storage.removal_policy(cfg),
    )
    dlq = sqs.Queue(
        scope,
        "ErasureDlq",
        queue_name=f"{name}-dlq",
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),  # the maximum: time to see the failed request and run it again
        removal_policy=storage.removal_policy(cfg),
    )
    acknowledge(dlq, "AwsSolutions-SQS3", "This queue is itself the erasure function's dead-letter queue.")
    role = iam.Role(scope, "ErasureRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    log_group.grant(role, "logs:CreateLogStream", "logs:PutLogEvents")
    arn = {kind: f"arn:{Aws.PARTITION}:s3:::{bucket}" for kind, bucket in buckets.items()}
    objects = sorted({f"arn:{Aws.PARTITION}:s3:::{s['bucket']}/{s['prefix']}*" for s in specs if "bucket" in s})
    role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket", "s3:ListBucketVersions"],
                                           resources=sorted(arn.values())))  # fmt: skip
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObjectVersion"],
            resources=[*objects, f"{arn[CURATED]}/{RECORDS_PREFIX}*"],
        )
    )
    if table is not None:
        table.grant(role, "dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:DescribeTable")
    key.grant(role, "kms:Decrypt", "kms:GenerateDataKey")  # SSE-KMS objects, the table, env, the DLQ
    dlq.grant_send_messages(role)
    layer = lambda_.LayerVersion.from_layer_version_arn(
        scope,
        "PandasLayer",
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{PANDAS_LAYER_ACCOUNT}:layer:{PANDAS_LAYER_NAME}:"
        f"{PANDAS_LAYER_VERSION}",
    )
    fn = lambda_.Function(
        scope,
        "Erasure",
        function_name=name,
        description="Forgets one shopper (DPDP/GDPR): every store, all object versions, audit record",
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=lambda_.Architecture.ARM_64,
        handler="handler.handler",
        code=lambda_.Code.from_asset(str(CODE), exclude=["__pycache__", "*.pyc"]),
        layers=[layer],  # pyarrow for the Parquet stores
        role=role,
        log_group=log_group,
        memory_size=2048,
        timeout=Duration.minutes(15),
        reserved_concurrent_executions=1,  # the suppression list is read, extended and written back
        environment_encryption=key,
        environment={ENV_STORES: json.dumps(specs), ENV_BUCKET: buckets[CURATED],
                     ENV_RETENTION: json.dumps(retention(cfg))},  # fmt: skip
        dead_letter_queue=dlq,
        retry_attempts=2,  # safe: each store's step is redone, the request id is kept
        max_event_age=Duration.hours(6),
    )
    acknowledge(fn, "NIST.800.53.R5-LambdaInsideVPC", LAMBDA_OUTSIDE_VPC)
    nag_buckets = {kind: cfg.bucket_name(kind, "<AWS::AccountId>") for kind in buckets}
    nag_specs = erasure_stores(source=nag_buckets[SOURCE], destination=nag_buckets[CURATED],
                               results=nag_buckets[ATHENA_RESULTS], recent_items_table=None)  # fmt: skip
    acknowledge_wildcards(
        role,
        {
            **{
                f"arn:<AWS::Partition>:s3:::{s['bucket']}/{s['prefix']}*": (
                    f"The {s['name']} store: every object (and version) under this prefix may hold the shopper's "
                    "rows; which objects do is known only by reading them."
                )
                for s in nag_specs
            },
            f"arn:<AWS::Partition>:s3:::{nag_buckets[CURATED]}/{RECORDS_PREFIX}*": (
                "The erasure's own audit and progress records, named by request."
            ),
        },
    )
    return fn
