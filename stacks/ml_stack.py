"""The training pipeline on AWS: model registry, pipeline code, the SageMaker Pipeline and its triggers.

Infrastructure only: the step graph is ``pipeline_steps/definition.py`` (the local runner walks the
same one). The definition is produced at synth time, offline, with ``${...}`` placeholders for
the values only CloudFormation knows (the account-specific bucket, role, key and asset names),
which ``Fn::Sub`` fills in. That is why it is a ``PipelineDefinitionBody`` rather than an S3
definition location: an S3 object is fixed at synth time and cannot carry deploy-time values.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jsii
from aws_cdk import Aws, CfnOutput, Fn, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from monitoring.metrics import MODEL_METRICS_PREFIX
from pipeline_steps.definition import definition_json, framework_image, pack_source, spark_image
from settings.config import BATCH_PREFIX, PIPELINE_PREFIX, TRAINING_PREFIX, Config
from stacks.buckets import CURATED
from stacks.data_stack import DataStack
from stacks.factories.cloudwatch import put_metric_data_statement
from stacks.factories.storage import grant_data_key, grant_volume_key
from stacks.nag import acknowledge_wildcards, partition_text

#: Weekly safety net; the usual trigger is the curation workflow succeeding (nightly and on upload).
RETRAIN_SCHEDULE = "cron(0 4 ? * SUN *)"


@jsii.implements(events.IRuleTarget)
class SageMakerPipelineTarget:
    """EventBridge target that starts a SageMaker pipeline with its default parameters.

    aws-cdk-lib 2.275 has no such target in ``aws_events_targets``; EventBridge supports it natively.
    """

    def __init__(self, pipeline_arn: str, role: iam.IRole) -> None:
        self.pipeline_arn, self.role = pipeline_arn, role

    def bind(self, _rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self.pipeline_arn, role=self.role)


def pipeline_definition(cfg: Config, region: str) -> str:
    """The definition JSON with ``${Name}`` placeholders for Fn::Sub (see module docstring)."""
    return definition_json(
        cfg,
        role_arn="arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${PipelineRoleName}",
        bucket="${DataBucket}",
        code_uri="s3://${CodeBucket}/${CodeKey}",
        region=region,
        kms_key_arn="${DataKeyArn}",
    )


class MlStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, cfg: Config, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        region = cfg.region
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=cfg.model_package_group,
            model_package_group_description=f"{cfg.prefix} recommender models, registered by {cfg.pipeline_name}",
        )
        with tempfile.TemporaryDirectory(prefix="recsys-pipeline-code-") as tmp:
            self.code = s3_assets.Asset(self, "PipelineCode", path=str(pack_source(Path(tmp))))

        self.role = self._execution_role(cfg, data, region)
        self.definition = pipeline_definition(cfg, region)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "TrainingPipeline",
            pipeline_name=cfg.pipeline_name,
            pipeline_description="prepare, train, evaluate, quality gate, package, register (pipeline_steps/)",
            role_arn=self.role.role_arn,
            pipeline_definition={
                "PipelineDefinitionBody": Fn.sub(
                    self.definition,
                    {
                        "PipelineRoleName": self.role.role_name,
                        "DataBucket": data.destination.bucket_name,
                        "DataKeyArn": data.key.key_arn,
                        "CodeBucket": self.code.s3_bucket_name,
                        "CodeKey": self.code.s3_object_key,
                    },
                )
            },
        )
        # Executions need the role's policy in place, not just the role the definition names.
        self.pipeline.node.add_dependency(self.role.node.find_child("DefaultPolicy"))
        self.pipeline.node.add_dependency(self.model_package_group)
        self.pipeline_arn = self.format_arn(service="sagemaker", resource="pipeline", resource_name=cfg.pipeline_name)
        self._triggers(cfg, data)
        self.node.add_dependency(data)  # the data bucket is referenced by name

        CfnOutput(self, "PipelineName", value=cfg.pipeline_name)
        CfnOutput(self, "ModelPackageGroupName", value=cfg.model_package_group)

    def _execution_role(self, cfg: Config, data: DataStack, region: str) -> iam.Role:
        """One role for the pipeline and its jobs: read training data and code, write pipeline outputs."""
        role = iam.Role(
            self,
            "PipelineRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{cfg.pipeline_name}: runs the pipeline and its processing/training jobs",
        )
        # By its configured name (the data stack's bucket): statements and cdk-nag findings then read
        # "recsys-dev-curated-<account>-<region>/training/*" instead of a cross-stack export token.
        bucket = s3.Bucket.from_bucket_name(self, "DataBucket", cfg.bucket_name(CURATED, Aws.ACCOUNT_ID, region))
        bucket.grant_read(role, f"{TRAINING_PREFIX}/*")
        bucket.grant_read(role, f"{PIPELINE_PREFIX}/*")
        bucket.grant_put(role, f"{PIPELINE_PREFIX}/*")  # SageMaker writes job outputs; nothing deletes them
        bucket.grant_put(role, f"{MODEL_METRICS_PREFIX}/*")  # PublishMetrics: one row per evaluated model
        bucket.grant_put(role, f"{BATCH_PREFIX}/*")  # BatchRecommend: the latest lists, fixed file names
        grant_data_key(role, data.key)
        # Every processing step and TrainModel set VolumeKmsKeyId: SageMaker creates the volume's grant as this role.
        grant_volume_key(role, data.key)
        # PublishMetrics feeds the model-quality and drift alarms; PutMetricData has no resource-level
        # permissions, so the statement is held to the project's namespace instead.
        role.add_to_policy(put_metric_data_statement())
        # The code archive only (grant_read on the asset would open the whole bootstrap bucket).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[f"arn:{self.partition}:s3:::{self.code.s3_bucket_name}/{self.code.s3_object_key}"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[f"arn:{self.partition}:s3:::{self.code.s3_bucket_name}"],
                conditions={"StringEquals": {"s3:prefix": [self.code.s3_object_key]}},
            )
        )
        role.grant_pass_role(role)  # the pipeline hands its own role to the jobs it starts

        arn = f"arn:{self.partition}:sagemaker:{region}:{Aws.ACCOUNT_ID}"
        # Pipeline-started jobs are named "pipelines-<execution>-<step>-<suffix>" by SageMaker. With Spark training
        # (training_engine spark/auto) every job is a processing job: no training-job grants.
        single = cfg.training_engine == "single"
        jobs = [f"{arn}:processing-job/pipelines-*"] + ([f"{arn}:training-job/pipelines-*"] if single else [])
        training = ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    *(training if single else []),
                    "sagemaker:AddTags",
                ],
                resources=jobs,
            )
        )
        group = f"{arn}:model-package-group/{cfg.model_package_group}"
        packages = f"{arn}:model-package/{cfg.model_package_group}/*"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:AddTags",
                ],
                resources=[group, packages],
            )
        )
        log_groups = f"arn:{self.partition}:logs:{region}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_groups],
            )
        )
        images = [framework_image(region, scope) for scope in ("training", "inference")]
        if cfg.training_engine != "single":  # TrainModel runs on the SageMaker Spark container (issue 23)
            images.append(spark_image(region))
        repositories = [
            f"arn:{self.partition}:ecr:{region}:{uri.split('.', 1)[0]}:repository/{uri.split('/', 1)[1].split(':')[0]}"
            for uri in images
        ]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=repositories,
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))

        partition = partition_text(role)
        sm_arn = f"arn:{partition}:sagemaker:{region}:<AWS::AccountId>"
        data_arn = f"arn:{partition}:s3:::{cfg.bucket_name(CURATED, '<AWS::AccountId>', region)}"
        acknowledge_wildcards(
            role,
            {
                f"{data_arn}/{TRAINING_PREFIX}/*": "Reads the training-set extraction only.",
                f"{data_arn}/{PIPELINE_PREFIX}/*": "Writes splits, models, evaluations per run.",
                f"{data_arn}/{MODEL_METRICS_PREFIX}/*": "Appends one model-metrics row per evaluated model.",
                f"{data_arn}/{BATCH_PREFIX}/*": "Writes the batch recommendations of the latest model.",
                f"{sm_arn}:processing-job/pipelines-*": "SageMaker names pipeline jobs; the prefix is all we know.",
                **({f"{sm_arn}:training-job/pipelines-*": "SageMaker names pipeline jobs; the prefix is all we know."}
                   if single else {}),
                f"{sm_arn}:model-package/{cfg.model_package_group}/*": "New versions in this project's group only.",
                f"arn:{partition}:logs:{region}:<AWS::AccountId>:log-group:/aws/sagemaker/*": (
                    "SageMaker jobs log to its own /aws/sagemaker/ groups, named per job type."
                ),
                "*": (
                    "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions; "
                    "image pulls are scoped, metric writes held to the project's namespace by a condition."
                ),
            },
        )
        return role

    def _triggers(self, cfg: Config, data: DataStack) -> None:
        events_role = iam.Role(self, "StartPipelineRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"))
        events_role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])
        )
        target = SageMakerPipelineTarget(self.pipeline_arn, events_role)
        events.Rule(
            self,
            "OnCurationSucceeded",
            description="Curated data and features refreshed -> retrain",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": ["SUCCEEDED"], "stateMachineArn": [data.workflow.state_machine_arn]},
            ),
            targets=[target],
        )
        events.Rule(
            self,
            "WeeklyRetrain",
            description="Weekly retrain even when no curation run succeeded",
            schedule=events.Schedule.expression(RETRAIN_SCHEDULE),
            targets=[target],
        )
