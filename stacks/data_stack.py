"""The data plane: KMS, S3 (source, destination, results, access logs), DataBrew, Glue, Athena and
the workflow that chains them. Infrastructure only: recipes and SQL are loaded from their files."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from constructs import Construct

from settings.config import Config
from stacks.buckets import ACCESS_LOGS, ATHENA_RESULTS, CURATED, SOURCE, bucket_specs
from stacks.factories import storage
from stacks.factories.athena import named_queries, workgroup
from stacks.factories.catalog import catalog
from stacks.factories.databrew import databrew_jobs
from stacks.factories.workflow import curation_workflow
from stacks.nag import acknowledge


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, cfg: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        account = Aws.ACCOUNT_ID
        self.key = storage.data_key(self, cfg)
        specs = bucket_specs(cfg)
        self.access_logs = storage.bucket(
            self, "AccessLogsBucket", cfg, specs[ACCESS_LOGS], account=account, key=self.key, logs_bucket=None
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the server-access-log target bucket; logging it to itself would loop.",
        )
        common = {"account": account, "key": self.key, "logs_bucket": self.access_logs}
        self.source = storage.bucket(self, "SourceBucket", cfg, specs[SOURCE], **common)
        self.destination = storage.bucket(self, "DestinationBucket", cfg, specs[CURATED], **common)
        self.results = storage.bucket(self, "AthenaResultsBucket", cfg, specs[ATHENA_RESULTS], **common)
        self.jobs = databrew_jobs(self, cfg, self.source, self.destination, self.key)
        self.catalog = catalog(self, cfg, self.destination, self.key)
        self.workgroup = workgroup(self, cfg, self.results, self.key)
        self.queries = named_queries(self, cfg, self.workgroup)
        for q in self.queries.values():
            q.node.add_dependency(self.catalog.database)
        self.workflow = curation_workflow(
            self, cfg, self.jobs, self.catalog.crawler_names, self.source, self.destination, self.results, self.key
        )

        CfnOutput(self, "SourceBucketName", value=self.source.bucket_name, description="Upload raw/<table>/ files here")
        CfnOutput(self, "DestinationBucketName", value=self.destination.bucket_name)
        CfnOutput(self, "GlueDatabase", value=cfg.glue_database)
        CfnOutput(self, "AthenaWorkGroup", value=cfg.athena_workgroup)
        CfnOutput(self, "CurationWorkflowArn", value=self.workflow.state_machine_arn)
