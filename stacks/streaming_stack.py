"""The clickstream: Kinesis -> consumer Lambda -> per-user recent items (DynamoDB) -> serving API,
plus a Firehose copy of the stream into the source bucket for the next training run.

Infrastructure only: the Lambda code is ``lambdas/stream_consumer`` and ``lambdas/recommend_api``;
names and settings come from ``recsys/local/streaming.py``, which the local run uses too. Data at
rest uses the data stack's key; every role gets only the actions its code calls.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lambdas.recommend_api import handler as api_code
from lambdas.stream_consumer import handler as consumer_code
from settings.config import PROJECT_ROOT, Config
from settings.streaming import (
    CONSUMER_BATCH_SIZE,
    CONSUMER_MAX_BATCHING_SECONDS,
    CONSUMER_RETRY_ATTEMPTS,
    RECENT_ITEMS_N,
    RECENT_TTL_DAYS,
    STREAM_ARCHIVE_PREFIX,
    STREAM_ERRORS_PREFIX,
    STREAM_SHARDS,
    streaming_names,
)
from stacks.buckets import SOURCE
from stacks.data_stack import DataStack
from stacks.factories import storage
from stacks.factories.erasure import erasure_function
from stacks.nag import LAMBDA_OUTSIDE_VPC, acknowledge, acknowledge_wildcards

LAMBDAS = PROJECT_ROOT / "lambdas"
#: API stage throttling (requests/s and burst): protects the endpoint's capacity from one caller.
API_RATE_LIMIT, API_BURST_LIMIT = 50, 100
API_STAGE = "v1"
#: Firehose flushes at most this often: its objects land under raw/clickstream/, outside the interactions dataset.
FIREHOSE_BUFFER_SECONDS, FIREHOSE_BUFFER_MIB = 900, 64


def _code(folder: str) -> lambda_.Code:
    return lambda_.Code.from_asset(str(LAMBDAS / folder), exclude=["__pycache__", "*.pyc"])


class StreamingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, cfg: Config, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.names = names = streaming_names(cfg)
        self.key = key = data.key

        self.stream = kinesis.Stream(
            self,
            "Clickstream",
            stream_name=names.stream,
            shard_count=STREAM_SHARDS,
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=key,
            retention_period=Duration.hours(24),
            removal_policy=storage.removal_policy(cfg),
        )
        acknowledge(
            self.stream,
            "AwsSolutions-KDS3",
            "One customer-managed data key encrypts every store of the project, so one key policy governs access.",
        )
        self.table = dynamodb.Table(
            self,
            "RecentItems",
            table_name=names.table,
            partition_key=dynamodb.Attribute(name="user_id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=consumer_code.TTL_ATTR,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            removal_policy=storage.removal_policy(cfg),
        )
        acknowledge(
            self.table,
            "NIST.800.53.R5-DynamoDBInBackupPlan",
            "Point-in-time recovery is on (35 days); the table only caches each user's last clicks with a TTL and "
            "refills from the stream, so an AWS Backup plan would add cost without a recovery need.",
        )
        self.dlq = self._queue("DeadLetterQueue", names.dlq, cfg, data)
        self.failure_queue = self._queue("FailedBatchesQueue", names.failure_queue, cfg, data)

        self.consumer = self._consumer(cfg, data)
        self.api_function = self._api_function(cfg, data)
        self.api = self._api(cfg)
        self.firehose = self._firehose(cfg, data)
        # Erasure sees the data stack's stores and this stack's table, so it lives here (stacks/factories/erasure.py).
        self.erasure = erasure_function(self, cfg, key=data.key, table=self.table)

        CfnOutput(self, "StreamName", value=self.stream.stream_name, description="Producers put interactions here")
        CfnOutput(self, "RecentItemsTable", value=self.table.table_name)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dlq.queue_url)
        CfnOutput(self, "RecommendationsUrl", value=self.api.url_for_path("/recommendations"))
        CfnOutput(self, "ErasureFunction", value=self.erasure.function_name, description='Invoke with {"user_id": ...}')

    # ---- pieces -----------------------------------------------------------------------
    def _queue(self, construct_id: str, name: str, cfg: Config, data: DataStack) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            construct_id,
            queue_name=name,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=data.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),  # the maximum: time to inspect and redrive
            removal_policy=storage.removal_policy(cfg),
        )
        acknowledge(queue, "AwsSolutions-SQS3", "This queue is itself a dead-letter queue; nothing redrives into it.")
        return queue

    def _function_role(self, construct_id: str, function_name: str, cfg: Config) -> tuple[iam.Role, logs.LogGroup]:
        """Its own role and log group: writes only its own logs (no AWSLambdaBasicExecutionRole)."""
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=storage.log_retention(cfg),
            encryption_key=self.key,
            removal_policy=storage.removal_policy(cfg),
        )
        role = iam.Role(self, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        log_group.grant(role, "logs:CreateLogStream", "logs:PutLogEvents")
        return role, log_group

    def _consumer(self, cfg: Config, data: DataStack) -> lambda_.Function:
        role, log_group = self._function_role("Consumer", self.names.consumer_function, cfg)
        self.table.grant(role, "dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem")
        # The table, the queues, the stream and the function's environment variables share the data key.
        storage.grant_data_key(role, data.key)
        self.dlq.grant_send_messages(role)
        fn = lambda_.Function(
            self,
            "Consumer",
            function_name=self.names.consumer_function,
            description="Clickstream -> per-user recent items; malformed records -> DLQ",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=_code("stream_consumer"),
            role=role,
            log_group=log_group,
            memory_size=256,
            timeout=Duration.seconds(60),
            reserved_concurrent_executions=STREAM_SHARDS,  # one batch per shard at a time: all it can use
            environment_encryption=self.key,
            environment={
                consumer_code.ENV_TABLE: self.table.table_name,
                consumer_code.ENV_DLQ_URL: self.dlq.queue_url,
                consumer_code.ENV_RECENT_N: str(RECENT_ITEMS_N),
                consumer_code.ENV_TTL_DAYS: str(RECENT_TTL_DAYS),
            },
        )
        fn.add_event_source(
            sources.KinesisEventSource(
                self.stream,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=CONSUMER_BATCH_SIZE,
                max_batching_window=Duration.seconds(CONSUMER_MAX_BATCHING_SECONDS),
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=CONSUMER_RETRY_ATTEMPTS,
                max_record_age=Duration.hours(1),  # a recent-items update older than this is not worth blocking on
                on_failure=sources.SqsDlq(self.failure_queue),
            )
        )
        acknowledge(
            fn,
            "NIST.800.53.R5-LambdaDLQ",
            "Invoked by a Kinesis event source mapping, not asynchronously: failed batches go to the mapping's "
            "on-failure queue and malformed records to the DLQ; a function DLQ would never receive anything.",
        )
        acknowledge(fn, "NIST.800.53.R5-LambdaInsideVPC", LAMBDA_OUTSIDE_VPC)
        return fn

    def _api_function(self, cfg: Config, data: DataStack) -> lambda_.Function:
        role, log_group = self._function_role("RecommendApi", self.names.api_function, cfg)
        self.table.grant(role, "dynamodb:GetItem")
        data.key.grant_decrypt(role)  # the table's items and the function's environment variables
        endpoint_arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:endpoint/{cfg.endpoint_name}"
        role.add_to_policy(iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn]))
        fn = lambda_.Function(
            self,
            "RecommendApi",
            function_name=self.names.api_function,
            description="GET /recommendations/{user_id}: recent items + SageMaker endpoint",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=_code("recommend_api"),
            role=role,
            log_group=log_group,
            memory_size=256,
            timeout=Duration.seconds(10),
            # Reserved (so the account's other functions cannot starve it) and capped (so a burst cannot take the
            # account's pool); the stage throttle below bounds the request rate, this bounds the fan-out.
            reserved_concurrent_executions=cfg.api_reserved_concurrency,
            environment_encryption=self.key,
            environment={api_code.ENV_TABLE: self.table.table_name, api_code.ENV_ENDPOINT: cfg.endpoint_name},
        )
        acknowledge(
            fn,
            "NIST.800.53.R5-LambdaDLQ",
            "Invoked synchronously by API Gateway: an error goes back to the caller, there is no event to keep.",
        )
        acknowledge(fn, "NIST.800.53.R5-LambdaInsideVPC", LAMBDA_OUTSIDE_VPC)
        return fn

    def _api(self, cfg: Config) -> apigw.RestApi:
        access_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            log_group_name=f"/aws/apigateway/{self.names.api}",
            retention=storage.log_retention(cfg),
            encryption_key=self.key,
            removal_policy=storage.removal_policy(cfg),
        )
        api = apigw.RestApi(
            self,
            "RecommendationsApi",
            rest_api_name=self.names.api,
            description="Recommendations refreshed by the clickstream (IAM-signed callers only)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,  # execution logging needs the account's API Gateway log role
            cloud_watch_role_removal_policy=storage.removal_policy(cfg),
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                throttling_rate_limit=API_RATE_LIMIT,
                throttling_burst_limit=API_BURST_LIMIT,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies would put user ids into execution logs
                metrics_enabled=True,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        # Rejects a call without the path parameter before it reaches Lambda (GET has no body to check).
        validator = api.add_request_validator(
            "ParamsValidator", validate_request_parameters=True, validate_request_body=True
        )
        api.root.add_resource("recommendations").add_resource("{user_id}").add_method(
            "GET",
            apigw.LambdaIntegration(self.api_function),
            authorization_type=apigw.AuthorizationType.IAM,
            request_validator=validator,
            request_parameters={"method.request.path.user_id": True, "method.request.querystring.k": False},
        )
        acknowledge(
            api,
            "AwsSolutions-APIG3",
            "Regional API callable only with SigV4-signed IAM credentials and stage throttling; a WAF web ACL "
            "is an account-level choice left to the deployer.",
        )
        acknowledge(
            api,
            "AwsSolutions-COG4",
            "Callers are backend services (the storefront's servers), authorised with IAM, not end users in Cognito.",
        )
        acknowledge(
            api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role: AWS's managed policy only lets API Gateway write its logs.",
        )
        acknowledge(
            api,
            "NIST.800.53.R5-APIGWAssociatedWithWAF",
            "Same as AwsSolutions-APIG3: only SigV4-signed IAM callers, stage throttling; a web ACL is the deployer's "
            "account-level choice.",
        )
        acknowledge(
            api,
            "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
            "No cache, by design: answers are per user and change with the clickstream within seconds (each click "
            "updates the user's recent items); a stage cache would serve stale recommendations (and bill per hour). "
            "Nothing is cached, so nothing needs cache encryption.",
        )
        acknowledge(
            api,
            "NIST.800.53.R5-APIGWSSLEnabled",
            "The stage client certificate authenticates API Gateway to HTTP backends; this API's only integration "
            "is a Lambda proxy, invoked over AWS's own TLS API. Clients reach the API over HTTPS only.",
        )
        return api

    def _firehose(self, cfg: Config, data: DataStack) -> firehose.CfnDeliveryStream:
        """Stream -> source bucket raw/clickstream/ as JSON lines (gzip), encrypted with the data key."""
        log_group = logs.LogGroup(
            self,
            "ArchiveLogs",
            log_group_name=f"/aws/kinesisfirehose/{self.names.firehose}",
            retention=storage.log_retention(cfg),
            encryption_key=self.key,
            removal_policy=storage.removal_policy(cfg),
        )
        log_stream = log_group.add_stream("S3Delivery", log_stream_name="S3Delivery")
        role = iam.Role(self, "ArchiveRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com"))
        self.stream.grant_read(role)
        # Built from the name (not the bucket's ARN export) so the policy reads as the paths it allows.
        bucket_arn = f"arn:{Aws.PARTITION}:s3:::{cfg.bucket_name(SOURCE, Aws.ACCOUNT_ID)}"
        for prefix in (STREAM_ARCHIVE_PREFIX, STREAM_ERRORS_PREFIX):
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=[f"{bucket_arn}/{prefix}*"]
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket_arn],
            )
        )
        storage.grant_data_key(role, data.key)
        log_group.grant(role, "logs:PutLogEvents")
        nag_arn = f"arn:<AWS::Partition>:s3:::{cfg.bucket_name(SOURCE, '<AWS::AccountId>')}"
        acknowledge_wildcards(
            role,
            {
                f"{nag_arn}/{STREAM_ARCHIVE_PREFIX}*": "Firehose writes the archive objects here only.",
                f"{nag_arn}/{STREAM_ERRORS_PREFIX}*": "Firehose writes failed deliveries here only.",
            },
        )
        date = "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
        stream = firehose.CfnDeliveryStream(
            self,
            "Archive",
            delivery_stream_name=self.names.firehose,
            delivery_stream_type="KinesisStreamAsSource",
            kinesis_stream_source_configuration=firehose.CfnDeliveryStream.KinesisStreamSourceConfigurationProperty(
                kinesis_stream_arn=self.stream.stream_arn, role_arn=role.role_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=bucket_arn,
                role_arn=role.role_arn,
                prefix=f"{STREAM_ARCHIVE_PREFIX}{date}",
                error_output_prefix=f"{STREAM_ERRORS_PREFIX}!{{firehose:error-output-type}}/{date}",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=FIREHOSE_BUFFER_SECONDS, size_in_m_bs=FIREHOSE_BUFFER_MIB
                ),
                compression_format="GZIP",
                file_extension=".jsonl.gz",
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=data.key.key_arn
                    )
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="AppendDelimiterToRecord",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="Delimiter", parameter_value="\\n"
                                )
                            ],
                        )
                    ],
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True, log_group_name=log_group.log_group_name, log_stream_name=log_stream.log_stream_name
                ),
            ),
        )
        # Firehose checks its access when created: the role's policy must exist first.
        stream.node.add_dependency(role.node.find_child("DefaultPolicy"))
        acknowledge(
            stream,
            "AwsSolutions-KDF1",
            "A Kinesis-sourced delivery stream cannot enable its own SSE: records stay encrypted in the source "
            "stream (data key) and objects are written SSE-KMS with the same key.",
        )
        return stream
