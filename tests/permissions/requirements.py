"""What AWS services do with a principal's permissions beyond the calls in our code: one row per documented
requirement, each citing the page that requires it. ``calls.py`` tags every call it derives from one of these
rows with the row's key, so a failure names both the call and why it is needed; a test keeps every row in use.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    what: str
    url: str


DOCS = "https://docs.aws.amazon.com"

REQUIREMENTS: dict[str, Requirement] = {
    # ---- calls our code or definitions make directly -----------------------------------------------------------
    "code": Requirement(
        "a call the code makes (a Lambda's boto3 call recorded by its tests, a container script's call, a state's "
        "Task resource, a target's API): its IAM action and resource per the Service Authorization Reference",
        f"{DOCS}/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html",
    ),
    # ---- Step Functions -------------------------------------------------------------------------------------------
    "sfn-athena": Requirement(
        "athena:startQueryExecution(.sync): start, poll (GetQueryExecution), stop on abort, and GetDataCatalog",
        f"{DOCS}/step-functions/latest/dg/athena-iam.html",
    ),
    "sfn-databrew": Requirement(
        "databrew:startJobRun.sync: StartJobRun, then ListJobRuns to poll and StopJobRun on abort",
        f"{DOCS}/step-functions/latest/dg/databrew-iam.html",
    ),
    "sfn-logs": Requirement(
        "a state machine logging to CloudWatch Logs: the vended-log delivery actions on '*'",
        f"{DOCS}/step-functions/latest/dg/cw-logs.html",
    ),
    "sfn-xray": Requirement(
        "a state machine with X-Ray tracing: PutTraceSegments, PutTelemetryRecords, GetSamplingRules/Targets",
        f"{DOCS}/step-functions/latest/dg/xray-iam.html",
    ),
    # ---- Athena ---------------------------------------------------------------------------------------------------
    "athena-default-db": Requirement(
        "Athena with database-level Glue policies: GetDatabase and CreateDatabase on the catalog and `default`",
        f"{DOCS}/athena/latest/ug/fine-grained-access-to-glue-resources.html#full-access-to-default-db-per-region",
    ),
    "athena-glue": Requirement(
        "a query needs the Glue action on the table or database and all its ancestors (DROP TABLE: GetTable and "
        "DeleteTable; CREATE TABLE (CTAS): GetTable and CreateTable; SELECT: GetTable)",
        f"{DOCS}/athena/latest/ug/fine-grained-access-to-glue-resources.html",
    ),
    "athena-s3": Requirement(
        "a query reads its tables' S3 data and writes its results (and CTAS/UNLOAD output) to S3 as the caller; "
        "Athena checks Lake Formation's GetDataAccess on every query",
        f"{DOCS}/athena/latest/ug/access.html",
    ),
    "athena-kms": Requirement(
        "SSE-KMS results and SSE-KMS source data: the caller needs kms:GenerateDataKey to write, kms:Decrypt to read",
        f"{DOCS}/athena/latest/ug/encryption.html",
    ),
    # ---- S3 and KMS -----------------------------------------------------------------------------------------------
    "s3-sse-kms": Requirement(
        "an object in an SSE-KMS bucket: writing it needs kms:GenerateDataKey, reading it kms:Decrypt on the key",
        f"{DOCS}/AmazonS3/latest/userguide/UsingKMSEncryption.html",
    ),
    "s3-access-logs": Requirement(
        "server access logging delivers as logging.s3.amazonaws.com, allowed by the target bucket's policy",
        f"{DOCS}/AmazonS3/latest/userguide/enable-server-access-logging.html",
    ),
    "logs-kms": Requirement(
        "a log group encrypted with a KMS key: CloudWatch Logs uses the key as logs.<region>.amazonaws.com, with "
        "the log group's ARN as encryption context",
        f"{DOCS}/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
    ),
    # ---- SageMaker ------------------------------------------------------------------------------------------------
    "sm-job-role": Requirement(
        "a processing or training job's execution role: S3 inputs (GetObject, ListBucket) and outputs (PutObject), "
        "ECR image pull, CloudWatch Logs, kms:Decrypt for SSE-KMS inputs, the output key, kms:CreateGrant for "
        "the volume key",
        f"{DOCS}/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createprocessingjob-perms",
    ),
    "sm-pipeline-role": Requirement(
        "a pipeline's role creates, describes, tags and stops its step jobs, passes the job role, registers model "
        "packages and reads property files for conditions",
        f"{DOCS}/sagemaker/latest/dg/build-and-manage-access.html",
    ),
    "sm-model-role": Requirement(
        "an endpoint's model role: the model artefacts (S3, kms:Decrypt), the image (ECR), logs, and data capture "
        "writes (PutObject with the capture key)",
        f"{DOCS}/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createmodel-perms",
    ),
    "sm-volume-key": Requirement(
        "a volume KMS key (VolumeKmsKeyId, an endpoint config's KmsKeyId): kms:CreateGrant and kms:DescribeKey",
        f"{DOCS}/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createtrainingjob-perms",
    ),
    "sm-passrole": Requirement(
        "creating a model or job with a role passes it: iam:PassRole with iam:PassedToService",
        f"{DOCS}/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-pass-role",
    ),
    "aas-sagemaker": Requirement(
        "registering a SageMaker variant with Application Auto Scaling: the caller needs DescribeEndpoint, "
        "DescribeEndpointConfig and UpdateEndpointWeightsAndCapacities, and the CloudWatch alarm actions",
        f"{DOCS}/autoscaling/application/userguide/security_iam_id-based-policy-examples.html"
        "#permissions-for-sagemaker-endpoints",
    ),
    "aas-slr": Requirement(
        "the first RegisterScalableTarget for SageMaker creates AWSServiceRoleForApplicationAutoScaling_"
        "SageMakerEndpoint: the caller needs iam:CreateServiceLinkedRole for it",
        f"{DOCS}/autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html",
    ),
    # ---- Lambda ---------------------------------------------------------------------------------------------------
    "lambda-logs": Requirement(
        "a function writes its logs as its execution role: CreateLogStream and PutLogEvents on its log group",
        f"{DOCS}/lambda/latest/dg/lambda-intro-execution-role.html",
    ),
    "lambda-env-kms": Requirement(
        "variables encrypted with a customer managed key are decrypted with it for the function",
        f"{DOCS}/lambda/latest/dg/configuration-envvars-encryption.html",
    ),
    "lambda-dlq": Requirement(
        "a function's dead-letter queue: the execution role sends the failed event (sqs:SendMessage)",
        f"{DOCS}/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq",
    ),
    "lambda-kinesis": Requirement(
        "a Kinesis event source mapping reads the stream as the function's role (and decrypts it), and sends "
        "failed batches to its on-failure destination",
        f"{DOCS}/lambda/latest/dg/with-kinesis.html",
    ),
    "sqs-kms": Requirement(
        "sending to an SSE-KMS queue needs kms:GenerateDataKey and kms:Decrypt on its key",
        f"{DOCS}/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html",
    ),
    # ---- EventBridge, CloudWatch, SNS ----------------------------------------------------------------------------
    "events-role-target": Requirement(
        "a rule's target that takes a role (Step Functions, SageMaker pipeline): the role needs the start action",
        f"{DOCS}/eventbridge/latest/userguide/eb-use-identity-based.html",
    ),
    "events-resource-target": Requirement(
        "Lambda, SNS and SQS targets are invoked as events.amazonaws.com, allowed by the target's resource policy",
        f"{DOCS}/eventbridge/latest/userguide/eb-use-resource-based.html",
    ),
    "events-dlq": Requirement(
        "a rule target's dead-letter queue: EventBridge sends as events.amazonaws.com (queue policy, queue key)",
        f"{DOCS}/eventbridge/latest/userguide/eb-rule-dlq.html",
    ),
    "sns-service-publish": Requirement(
        "a service publishing to a topic whose policy was replaced needs its own Allow (CloudWatch alarms: "
        "cloudwatch.amazonaws.com with aws:SourceArn)",
        f"{DOCS}/sns/latest/dg/sns-access-policy-use-cases.html",
    ),
    "sns-kms": Requirement(
        "a service publishing to an encrypted topic needs kms:GenerateDataKey* and kms:Decrypt in the key policy",
        f"{DOCS}/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services",
    ),
    # ---- Glue, DataBrew, Firehose, API Gateway, QuickSight, CDK providers ----------------------------------------
    "glue-crawler": Requirement(
        "a crawler's role reads the crawled S3 paths and writes tables in the catalog, and logs to /aws-glue/crawlers",
        f"{DOCS}/glue/latest/dg/crawler-prereqs.html",
    ),
    "glue-security-config": Requirement(
        "a security configuration with CloudWatch encryption: logs:AssociateKmsKey and the key for the logs",
        f"{DOCS}/glue/latest/dg/encryption-security-configuration.html",
    ),
    "databrew-role": Requirement(
        "a DataBrew job's role reads the dataset, writes (and with overwrite deletes) the outputs, uses the output "
        "key and writes its job logs",
        f"{DOCS}/databrew/latest/dg/setting-up-iam-policy-for-data-resources-role.html",
    ),
    "firehose-s3": Requirement(
        "a Firehose stream reading Kinesis and writing S3 with SSE-KMS: the role's Kinesis, S3, KMS and logs actions",
        f"{DOCS}/firehose/latest/dev/controlling-access.html#using-iam-s3",
    ),
    "apigw-lambda": Requirement(
        "API Gateway invokes a Lambda integration as apigateway.amazonaws.com, allowed by the function's policy",
        f"{DOCS}/apigateway/latest/developerguide/permissions.html",
    ),
    "apigw-logs": Requirement(
        "API Gateway's account-level CloudWatch role writes execution and access logs",
        f"{DOCS}/apigateway/latest/developerguide/set-up-logging.html",
    ),
    "quicksight-athena": Requirement(
        "QuickSight runs the data sets' Athena queries with the data source's role",
        f"{DOCS}/quicksight/latest/user/security_iam_service-with-iam.html",
    ),
    "cdk-provider": Requirement(
        "aws-cdk-lib's provider functions call the one API their custom resource names (AwsCustomResource, "
        "bucket notifications) and log with AWSLambdaBasicExecutionRole",
        f"{DOCS}/cdk/api/v2/docs/aws-cdk-lib.custom_resources-readme.html",
    ),
}
