"""Model deployment on approval: an approved package in the registry becomes the live endpoint.

EventBridge sends the registry's "Model Package State Change" (Approved, this project's group) to
a Lambda (``lambdas/deploy_endpoint``) that creates the Model and a new EndpointConfig and then
creates the endpoint or updates it blue/green, rolled back by the two CloudWatch alarms defined
here. In prod (``model_approval: manual``) a person approves in the registry; in dev the pipeline
registers packages already Approved: the same rule covers both. Infrastructure only; the
deployment logic is the Lambda's.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lambdas.deploy_endpoint.handler import EXPERIMENT_VARIANTS, SCALABLE_DIMENSION, VARIANT_NAME
from monitoring.metrics import INVOCATION_5XX, MODEL_LATENCY, endpoint_metric
from settings.config import PIPELINE_PREFIX, PROJECT_ROOT, Config
from settings.erasure import CAPTURE_PREFIX, SUPPRESSION_KEY
from stacks.buckets import CURATED
from stacks.data_stack import DataStack
from stacks.factories.cloudwatch import cw_metric
from stacks.factories.storage import deploy_dlq_name, grant_data_key, grant_volume_key, log_retention, removal_policy
from stacks.nag import LAMBDA_OUTSIDE_VPC, acknowledge, acknowledge_wildcards, partition_text

LAMBDA_DIR: Path = PROJECT_ROOT / "lambdas" / "deploy_endpoint"
#: Endpoint State Change statuses sent to the Lambda (its ``HANDLED_ENDPOINT_EVENTS``; a test keeps them equal).
ENDPOINT_EVENT_STATUSES = ("IN_SERVICE", "FAILED", "UPDATE_ROLLBACK_FAILED")


def _nag_arn(service: str) -> str:
    """How cdk-nag prints an ARN built from ``Aws.PARTITION``/``Aws.REGION``/``Aws.ACCOUNT_ID``."""
    return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>"


# ---- deployment tunables (constants: not per-environment settings yet; change here) -----------------
#: Canary: this share of the new fleet's capacity takes traffic first, for CANARY_WAIT_SECONDS.
CANARY_PERCENT = 10
CANARY_WAIT_SECONDS = 600
#: The old fleet is kept (and the alarms watched) this long after all traffic has moved.
BAKE_SECONDS = 600
#: Instance endpoints start with 2 instances: a 10% canary of one instance would be the whole fleet.
INSTANCE_COUNT = 2
AUTOSCALING_MIN, AUTOSCALING_MAX = 2, 6
#: Target invocations per instance per minute (~10 req/s): a starting point to revisit after a load test.
AUTOSCALING_TARGET_INVOCATIONS = 600
SERVERLESS_MEMORY_MB = 2048
SERVERLESS_MAX_CONCURRENCY = 10

# ---- rollback alarm thresholds (constants) ----------------------------------------------------------
#: Any burst of server errors during a deployment rolls it back: >= 5 5XX responses in one minute.
ERRORS_5XX_THRESHOLD = 5
#: p99 model latency above ``cfg.alarm_latency_p99_ms`` (the same setting the monitoring alarm uses)
#: for 3 consecutive minutes; ModelLatency is reported in microseconds.
LATENCY_PERIODS = 3


def capture_uri(cfg: Config, account: str) -> str:
    """Where the endpoint's data capture writes: the destination bucket's capture/ prefix (the erasure store)."""
    return f"s3://{cfg.bucket_name(CURATED, account)}/{CAPTURE_PREFIX}"


def function_environment(
    cfg: Config, execution_role_arn: str, alarm_names: list[str], kms_key_arn: str, account: str = Aws.ACCOUNT_ID
) -> dict[str, str]:
    """The Lambda's settings (read by ``Settings.from_env``); also used by its tests, so both agree."""
    return {
        "CAPTURE_S3_URI": capture_uri(cfg, account),
        "CAPTURE_SAMPLING_PERCENT": str(cfg.capture_sampling_percent),
        "ENDPOINT_NAME": cfg.endpoint_name,
        "MODEL_PACKAGE_GROUP": cfg.model_package_group,
        "EXECUTION_ROLE_ARN": execution_role_arn,
        "ENDPOINT_KMS_KEY_ARN": kms_key_arn,
        "SERVERLESS": "true" if cfg.serverless_endpoint else "false",
        "SERVERLESS_MEMORY_MB": str(SERVERLESS_MEMORY_MB),
        "SERVERLESS_MAX_CONCURRENCY": str(SERVERLESS_MAX_CONCURRENCY),
        "INSTANCE_TYPE": cfg.endpoint_instance_type,
        "INSTANCE_COUNT": str(INSTANCE_COUNT),
        "AUTOSCALING_MIN": str(AUTOSCALING_MIN),
        "AUTOSCALING_MAX": str(AUTOSCALING_MAX),
        "AUTOSCALING_TARGET_INVOCATIONS": str(AUTOSCALING_TARGET_INVOCATIONS),
        "CANARY_PERCENT": str(CANARY_PERCENT),
        "CANARY_WAIT_SECONDS": str(CANARY_WAIT_SECONDS),
        "BAKE_SECONDS": str(BAKE_SECONDS),
        "ROLLBACK_ALARMS": ",".join(alarm_names),
        # A/B or shadow test of a newly approved version against the serving one (settings experiment_*).
        "EXPERIMENT_MODE": cfg.experiment_mode,
        "EXPERIMENT_CHALLENGER_PERCENT": str(cfg.experiment_challenger_percent),
    } | experiment_alarm_environment(cfg)


def experiment_variants(cfg: Config) -> tuple[str, ...]:
    """The experiment variants the deploy function can create here (its ``deployable_variants``): none when
    experiments are off or the endpoint is serverless (one production variant)."""
    return () if cfg.serverless_endpoint else EXPERIMENT_VARIANTS[cfg.experiment_mode]


def experiment_alarm_environment(cfg: Config) -> dict[str, str]:
    """EXPERIMENT_ROLLBACK_ALARMS (``<variant>:<alarm>`` pairs) when an experiment can run, else nothing."""
    pairs = [f"{v}:{name}" for v in experiment_variants(cfg) for name in alarm_names(cfg, v).values()]
    return {"EXPERIMENT_ROLLBACK_ALARMS": ",".join(pairs)} if pairs else {}


def alarm_names(cfg: Config, variant: str = VARIANT_NAME) -> dict[str, str]:
    """The rollback alarms of one variant: ``<endpoint>-5xx`` for AllTraffic, ``<endpoint>-<variant>-5xx`` else."""
    stem = cfg.endpoint_name if variant == VARIANT_NAME else f"{cfg.endpoint_name}-{variant.lower()}"
    return {"errors": f"{stem}-5xx", "latency": f"{stem}-p99-latency"}


def rollback_alarms(scope: Construct, cfg: Config) -> list[cw.Alarm]:
    """Alarms SageMaker watches during a blue/green deployment: on AllTraffic, and on each experiment variant
    where a test can run (SageMaker publishes the metrics per variant, so alarms on AllTraffic get no data
    during a test; a further approval then is a blue/green update of the experiment's variants)."""
    alarms = []
    for variant in (VARIANT_NAME, *experiment_variants(cfg)):
        alarms += _variant_rollback_alarms(scope, cfg, variant)
    return alarms


def _variant_rollback_alarms(scope: Construct, cfg: Config, variant: str) -> list[cw.Alarm]:
    """5XX count and p99 latency of one variant; no traffic is not a failure."""
    names = alarm_names(cfg, variant)
    suffix = "" if variant == VARIANT_NAME else variant
    what = cfg.endpoint_name if variant == VARIANT_NAME else f"{cfg.endpoint_name} variant {variant}"
    errors = cw.Alarm(
        scope,
        f"Endpoint5xxAlarm{suffix}",
        alarm_name=names["errors"],
        alarm_description=f"{what}: 5XX errors; rolls back a deployment in progress",
        metric=cw_metric(endpoint_metric(cfg.endpoint_name, INVOCATION_5XX, variant), "Sum", Duration.minutes(1)),
        threshold=ERRORS_5XX_THRESHOLD,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
    latency = cw.Alarm(
        scope,
        f"EndpointLatencyAlarm{suffix}",
        alarm_name=names["latency"],
        alarm_description=f"{what}: p99 model latency; rolls back a deployment in progress",
        metric=cw_metric(endpoint_metric(cfg.endpoint_name, MODEL_LATENCY, variant), "p99", Duration.minutes(1)),
        threshold=cfg.alarm_latency_p99_ms * 1000,
        evaluation_periods=LATENCY_PERIODS,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
    return [errors, latency]


def model_execution_role(scope: Construct, cfg: Config, data: DataStack) -> iam.Role:
    """What the endpoint's container may do: read pipeline artefacts, decrypt them, pull its image, log."""
    role = iam.Role(
        scope,
        "ModelExecutionRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=f"{cfg.endpoint_name}: runs the recommender model behind the endpoint",
    )
    # By its config-derived name rather than a cross-stack export: the same name the data stack gives it.
    artefacts = s3.Bucket.from_bucket_name(scope, "ModelArtefactsBucket", cfg.bucket_name(CURATED, Aws.ACCOUNT_ID))
    artefacts.grant_read(role, f"{PIPELINE_PREFIX}/*")
    # The erasure suppression list, one object: shoppers on it are answered as new ones (docs/erasure.md).
    artefacts.grant_read(role, SUPPRESSION_KEY)
    # Data capture (instance endpoints): SageMaker writes the captured requests as this role, with the data key.
    artefacts.grant_put(role, f"{CAPTURE_PREFIX}/*")
    grant_data_key(role, data.key)
    grant_volume_key(role, data.key)  # the endpoint config's KmsKeyId: the instance volume
    role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:*:repository/*"],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[
                f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:"
                f"/aws/sagemaker/Endpoints/{cfg.endpoint_name}:*"
            ],
        )
    )
    acknowledge_wildcards(
        role,
        {
            f"arn:{partition_text(role)}:s3:::{cfg.bucket_name(CURATED, '<AWS::AccountId>')}/{PIPELINE_PREFIX}/*": (
                "Model artefacts the training pipeline writes under pipeline/<execution>/; nothing else."
            ),
            f"arn:{partition_text(role)}:s3:::{cfg.bucket_name(CURATED, '<AWS::AccountId>')}/{CAPTURE_PREFIX}/*": (
                "Data capture writes one object per hour and variant under capture/<endpoint>/<variant>/; nothing else."
            ),
            "*": "ecr:GetAuthorizationToken has no resource-level permission; it only returns a registry login.",
            "arn:<AWS::Partition>:ecr:<AWS::Region>:*:repository/*": (
                "Pull-only: SageMaker's framework images live in AWS-owned accounts that differ by region."
            ),
            f"{_nag_arn('logs')}:log-group:/aws/sagemaker/Endpoints/{cfg.endpoint_name}:*": (
                "Log streams of this endpoint's own log group, which SageMaker names per instance."
            ),
        },
    )
    return role


def deployer_role(
    scope: Construct, cfg: Config, execution_role: iam.IRole, log_group: logs.ILogGroup, key: kms.IKey
) -> iam.Role:
    """Least privilege for the Lambda: only this endpoint, its prefixed models/configs, this group."""
    role = iam.Role(
        scope,
        "DeployerRole",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"{cfg.endpoint_name}: deploys approved model packages",
    )
    sm = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    endpoint = f"{sm}:endpoint/{cfg.endpoint_name}"
    configs = f"{sm}:endpoint-config/{cfg.endpoint_name}-*"
    models = f"{sm}:model/{cfg.endpoint_name}-*"
    statements = [
        (["sagemaker:DescribeModelPackage"], [f"{sm}:model-package/{cfg.model_package_group}/*"]),
        # Mark a package Rejected after SageMaker rolled its deployment back (this group's packages only).
        (["sagemaker:UpdateModelPackage"], [f"{sm}:model-package/{cfg.model_package_group}/*"]),
        (["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:AddTags"], [models]),
        (["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig"], [configs]),
        (["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"], [endpoint, configs]),
        (["sagemaker:DescribeEndpoint"], [endpoint]),
        # RegisterScalableTarget checks that its caller may scale the variant itself (Application Auto Scaling's
        # documented target-service permissions); the Lambda never calls it.
        (["sagemaker:UpdateEndpointWeightsAndCapacities"], [endpoint]),
        # The deployment in flight and its verdict are recorded as tags on this endpoint.
        (["sagemaker:AddTags", "sagemaker:ListTags"], [endpoint]),
        (["cloudwatch:DescribeAlarms"], ["*"]),
        (["application-autoscaling:DescribeScalableTargets"], ["*"]),
        # Target tracking creates and replaces its own alarms, named after the scaled resource.
        (
            ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
            [
                f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:TargetTracking-endpoint/{cfg.endpoint_name}/*"
            ],
        ),
    ]
    for actions, resources in statements:
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
    # Scalable targets get their ARN (a generated id) only when registered, so the writes cannot name this
    # endpoint's target; they are held to this account's SageMaker variant instance counts instead.
    role.add_to_policy(
        iam.PolicyStatement(
            actions=[
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
            ],
            resources=[f"arn:{Aws.PARTITION}:application-autoscaling:{Aws.REGION}:{Aws.ACCOUNT_ID}:scalable-target/*"],
            conditions={
                "StringEquals": {
                    "application-autoscaling:service-namespace": "sagemaker",
                    "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION,
                }
            },
        )
    )
    grant_volume_key(role, key)  # endpoint configs carry KmsKeyId: SageMaker checks the caller
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
    )
    autoscaling_service = "sagemaker.application-autoscaling.amazonaws.com"
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["iam:CreateServiceLinkedRole"],
            resources=[
                f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/{autoscaling_service}/"
                "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
            ],
            conditions={"StringLike": {"iam:AWSServiceName": autoscaling_service}},
        )
    )
    log_group.grant_write(role)
    return role


class DeployStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, cfg: Config, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        alarms = rollback_alarms(self, cfg)
        for alarm in alarms:
            acknowledge(
                alarm,
                "NIST.800.53.R5-CloudWatchAlarmAction",
                "SageMaker reads this alarm to roll back a deployment; the monitoring stack's endpoint alarms on the "
                "same metrics notify the SNS topic.",
            )
        # Created here so its retention follows the config (SageMaker would create it without one).
        logs.LogGroup(
            self,
            "EndpointLogs",
            log_group_name=f"/aws/sagemaker/Endpoints/{cfg.endpoint_name}",
            retention=log_retention(cfg),
            encryption_key=data.key,
            removal_policy=removal_policy(cfg),
        )
        self.execution_role = model_execution_role(self, cfg, data)

        function_name = f"{cfg.prefix}-deploy-endpoint"
        log_group = logs.LogGroup(
            self,
            "DeployerLogs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=log_retention(cfg),
            encryption_key=data.key,
            removal_policy=removal_policy(cfg),
        )
        # The data key, like every other store: its key policy lets EventBridge (the rules below) encrypt for
        # this queue only (stacks/factories/storage.py), and the Lambda's role gets a grant.
        self.dlq = sqs.Queue(
            self,
            "DeployDlq",
            queue_name=deploy_dlq_name(cfg),
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=data.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dlq,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the deploy Lambda and of its EventBridge rules.",
        )
        role = deployer_role(self, cfg, self.execution_role, log_group, data.key)
        self.dlq.grant_send_messages(role)  # Lambda sends failed events as the function's role (SQS + the key)
        data.key.grant_decrypt(role)  # the environment variables are encrypted with the data key
        self.function = lambda_.Function(
            self,
            "DeployEndpointFunction",
            function_name=function_name,
            description="Deploys approved model packages to the recommender endpoint (blue/green, or A/B challenger)",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=["__pycache__", "*.pyc", "README.md"]),
            timeout=Duration.minutes(2),
            memory_size=256,
            reserved_concurrent_executions=1,  # two approvals never race on one endpoint
            role=role,
            log_group=log_group,
            environment=function_environment(
                cfg, self.execution_role.role_arn, list(alarm_names(cfg).values()), data.key.key_arn
            ),
            environment_encryption=data.key,
            dead_letter_queue=self.dlq,  # failed runs after Lambda's own retries
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )
        for alarm in alarms:  # named by config (literal in the environment); exist before any deployment
            self.function.node.add_dependency(alarm)
        acknowledge(self.function, "NIST.800.53.R5-LambdaInsideVPC", LAMBDA_OUTSIDE_VPC)
        acknowledge_wildcards(
            role,
            {
                "*": "cloudwatch:DescribeAlarms and application-autoscaling:DescribeScalableTargets are reads without "
                "resource-level permissions.",
                f"{_nag_arn('application-autoscaling')}:scalable-target/*": (
                    "A scalable target's ARN is a generated id known only after registration; the writes are held to "
                    "SageMaker variant instance counts by the service-namespace and scalable-dimension conditions."
                ),
                f"{_nag_arn('sagemaker')}:model-package/{cfg.model_package_group}/*": (
                    "Any version of this project's one model package group."
                ),
                f"{_nag_arn('sagemaker')}:model/{cfg.endpoint_name}-*": (
                    "Models the Lambda names <endpoint>-<version>-<digest>: one per deployed package version."
                ),
                f"{_nag_arn('sagemaker')}:endpoint-config/{cfg.endpoint_name}-*": (
                    "Endpoint configs the Lambda names <endpoint>-<version>-<digest>: one per deployment."
                ),
                f"{_nag_arn('cloudwatch')}:alarm:TargetTracking-endpoint/{cfg.endpoint_name}/*": (
                    "The alarms that target tracking creates for this endpoint's variant."
                ),
            },
        )

        retry = {"retry_attempts": 4, "max_event_age": Duration.hours(2), "dead_letter_queue": self.dlq}
        events.Rule(
            self,
            "OnModelApproved",
            description=f"Approved package in {cfg.model_package_group} -> deploy to {cfg.endpoint_name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [cfg.model_package_group], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(self.function, **retry)],
        )
        # Serverless endpoints roll back too (ALL_AT_ONCE with the same alarms): both kinds need the verdict.
        events.Rule(
            self,
            "OnEndpointInService",
            description=f"{cfg.endpoint_name} in service or failed -> judge the deployment, register autoscaling",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [cfg.endpoint_name], "EndpointStatus": list(ENDPOINT_EVENT_STATUSES)},
            ),
            targets=[targets.LambdaFunction(self.function, **retry)],
        )

        CfnOutput(self, "EndpointName", value=cfg.endpoint_name)
        CfnOutput(self, "DeployFunctionName", value=self.function.function_name)
        CfnOutput(self, "DeployDeadLetterQueueUrl", value=self.dlq.queue_url)
        CfnOutput(self, "ModelExecutionRoleArn", value=self.execution_role.role_arn)
