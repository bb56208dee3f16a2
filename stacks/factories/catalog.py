"""Glue Data Catalog: the database, the crawlers that turn curated Parquet into tables, and the
declared clickstream table (it must exist before the stream has delivered anything, because the
training-set query reads it)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
from aws_cdk import Aws
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from glue_jobs.catalog_types import PARQUET_INPUT_FORMAT, PARQUET_OUTPUT_FORMAT, PARQUET_SERDE, glue_columns
from glue_jobs.schema import BATCH_COLUMNS, BATCH_FOLDERS, CAPTURE_SCHEMA, CURATED_COLUMNS
from settings.config import (
    BATCH_PREFIX,
    CLICKSTREAM,
    CLICKSTREAM_RECIPE,
    CURATED_PREFIX,
    QUARANTINE_PREFIX,
    TABLES,
    Config,
)
from settings.erasure import CAPTURE_PREFIX
from stacks.nag import acknowledge_wildcards, arn_token

#: crawler suffix -> (prefix it reads, table-name prefix). Quarantine tables get their own names.
CRAWLED = {"curated": (CURATED_PREFIX, ""), "quarantine": (QUARANTINE_PREFIX, "quarantine_")}
#: crawler suffix -> the tables it crawls; curated clickstream is a declared table (see clickstream_table).
CRAWLED_TABLES = {"curated": TABLES, "quarantine": (*TABLES, CLICKSTREAM)}


@dataclass
class Catalog:
    database: glue.CfnDatabase
    crawler_names: dict[str, str]
    role: iam.Role


def crawler_role(scope: Construct, cfg: Config, bucket: s3.IBucket, key: kms.IKey) -> iam.Role:
    """Reads only the crawled prefixes and writes only this project's database and tables."""
    role = iam.Role(scope, "CrawlerRole", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"))
    for prefix, _ in CRAWLED.values():
        bucket.grant_read(role, f"{prefix}/*")
    key.grant_decrypt(role)
    key.grant_encrypt(role)  # the security configuration encrypts the crawler's CloudWatch logs
    arn = f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    role.add_to_policy(
        iam.PolicyStatement(
            actions=[
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:GetTables",
                "glue:CreateTable",
                "glue:UpdateTable",
                "glue:GetPartition",
                "glue:GetPartitions",
                "glue:BatchCreatePartition",
                "glue:BatchGetPartition",
                "glue:UpdatePartition",
                "glue:BatchUpdatePartition",
            ],
            resources=[f"{arn}:catalog", f"{arn}:database/{cfg.glue_database}", f"{arn}:table/{cfg.glue_database}/*"],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
            resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws-glue/crawlers*"],
        )
    )
    acknowledge_wildcards(
        role,
        {
            **{
                f"{arn_token(bucket)}/{p}/*": f"Crawls the Parquet objects under {p}/ only."
                for p, _ in CRAWLED.values()
            },
            f"arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:table/{cfg.glue_database}/*": (
                "Crawlers create and update tables whose names are known only at run time, in this database only."
            ),
            "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws-glue/crawlers*": (
                "Glue writes crawler logs to its fixed /aws-glue/crawlers group (and its -role/... KMS variant)."
            ),
        },
    )
    return role


def catalog(scope: Construct, cfg: Config, bucket: s3.IBucket, key: kms.IKey) -> Catalog:
    database = glue.CfnDatabase(
        scope,
        "Database",
        catalog_id=Aws.ACCOUNT_ID,
        database_input=glue.CfnDatabase.DatabaseInputProperty(
            name=cfg.glue_database, description=f"{cfg.prefix}: curated marketplace tables and features"
        ),
    )
    security = glue.CfnSecurityConfiguration(
        scope,
        "CrawlerSecurity",
        name=f"{cfg.prefix}-crawler",
        encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
            cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
            ),
            job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=key.key_arn
            ),
            s3_encryptions=[
                glue.CfnSecurityConfiguration.S3EncryptionProperty(
                    s3_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
                )
            ],
        ),
    )
    role = crawler_role(scope, cfg, bucket, key)
    names: dict[str, str] = {}
    for suffix, (prefix, table_prefix) in CRAWLED.items():
        crawler = glue.CfnCrawler(
            scope,
            f"{suffix.title()}Crawler",
            name=f"{cfg.prefix}-{suffix}",
            role=role.role_arn,
            database_name=cfg.glue_database,
            table_prefix=table_prefix or None,
            crawler_security_configuration=security.name,
            description=f"Catalogues {prefix}/<table>/ Parquet written by the DataBrew {suffix} jobs",
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(path=f"s3://{bucket.bucket_name}/{prefix}/{table}/")
                    for table in CRAWLED_TABLES[suffix]
                ]
            ),
            schedule=glue.CfnCrawler.ScheduleProperty(schedule_expression=cfg.crawler_schedule),
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="UPDATE_IN_DATABASE", delete_behavior="LOG"
            ),
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(recrawl_behavior="CRAWL_EVERYTHING"),
            configuration=json.dumps({"Version": 1.0, "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"}}),
        )
        crawler.node.add_dependency(database)
        crawler.node.add_dependency(security)
        names[suffix] = crawler.name
    clickstream_table(scope, cfg, bucket).node.add_dependency(database)
    capture_table(scope, cfg, bucket).node.add_dependency(database)
    for table in batch_tables(scope, cfg, bucket):
        table.node.add_dependency(database)
    return Catalog(database=database, crawler_names=names, role=role)


def external_table(
    scope: Construct,
    construct_id: str,
    cfg: Config,
    *,
    name: str,
    description: str,
    location: str,
    columns: list[tuple[str, str]],
    classification: str,
    formats: tuple[str, str],
    serde: str,
    serde_parameters: dict[str, str] | None = None,
) -> glue.CfnTable:
    """An external Glue table in the project's database: files under ``location`` read by ``serde``."""
    return glue.CfnTable(
        scope,
        construct_id,
        catalog_id=Aws.ACCOUNT_ID,
        database_name=cfg.glue_database,
        table_input=glue.CfnTable.TableInputProperty(
            name=name,
            description=description,
            table_type="EXTERNAL_TABLE",
            parameters={"classification": classification},
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                location=location,
                input_format=formats[0],
                output_format=formats[1],
                serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=serde, parameters=serde_parameters),
                columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in columns],
            ),
        ),
    )


def declared_table(
    scope: Construct,
    cfg: Config,
    bucket: s3.IBucket,
    construct_id: str,
    name: str,
    prefix: str,
    schema: pa.Schema,
    description: str,
) -> glue.CfnTable:
    """A Parquet table declared with its schema (not crawled), so SQL over it works before data arrives."""
    return external_table(
        scope,
        construct_id,
        cfg,
        name=name,
        description=description,
        location=f"s3://{bucket.bucket_name}/{prefix}/",
        columns=[(c["Name"], c["Type"]) for c in glue_columns(schema)],
        classification="parquet",
        formats=(PARQUET_INPUT_FORMAT, PARQUET_OUTPUT_FORMAT),
        serde=PARQUET_SERDE,
        serde_parameters={"serialization.format": "1"},
    )


def clickstream_table(scope: Construct, cfg: Config, bucket: s3.IBucket) -> glue.CfnTable:
    """curated/clickstream/ as a table with the curated interactions schema, empty until the first job run."""
    return declared_table(
        scope,
        cfg,
        bucket,
        "ClickstreamTable",
        CLICKSTREAM,
        f"{CURATED_PREFIX}/{CLICKSTREAM}",
        pa.schema(CURATED_COLUMNS[CLICKSTREAM_RECIPE]),
        "Clickstream archive curated by the interactions recipe (DataBrew clickstream-curated job)",
    )


def batch_tables(scope: Construct, cfg: Config, bucket: s3.IBucket) -> list[glue.CfnTable]:
    """The pipeline's BatchRecommend outputs under batch/, readable by Athena and QuickSight."""
    return [
        declared_table(
            scope,
            cfg,
            bucket,
            f"BatchTable{folder.title().replace('_', '')}",
            name,
            f"{BATCH_PREFIX}/{folder}",
            pa.schema(list(BATCH_COLUMNS[name].items())),
            f"What the endpoint answers, for every {'user' if 'user' in name else 'product'} "
            "(SageMaker pipeline step BatchRecommend)",
        )
        for name, folder in BATCH_FOLDERS.items()
    ]


#: The endpoint's data capture as a table (read by sql/attribution_daily.sql; the local run's name too).
CAPTURE_TABLE = "endpoint_capture"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
TEXT_INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"


def json_lines_table(
    scope: Construct,
    construct_id: str,
    cfg: Config,
    *,
    name: str,
    description: str,
    location: str,
    columns: list[tuple[str, str]],
    serde_parameters: dict[str, str] | None = None,
) -> glue.CfnTable:
    """An external Glue table over JSON lines under ``location`` (Athena reads it with the OpenX JSON SerDe)."""
    return external_table(
        scope,
        construct_id,
        cfg,
        name=name,
        description=description,
        location=location,
        columns=columns,
        classification="json",
        formats=(TEXT_INPUT_FORMAT, TEXT_OUTPUT_FORMAT),
        serde=JSON_SERDE,
        serde_parameters=serde_parameters,
    )


def capture_table(scope: Construct, cfg: Config, bucket: s3.IBucket) -> glue.CfnTable:
    """capture/ (SageMaker data capture JSON lines, every endpoint/variant/hour folder below it) as a JSON
    table declared with ``glue_jobs.schema.CAPTURE_SCHEMA``: the impressions, before anything is captured."""
    return json_lines_table(
        scope, "EndpointCaptureTable", cfg, name=CAPTURE_TABLE,
        description="Endpoint data capture: each request and answer (with its recommendation_id) as JSON lines",
        location=f"s3://{bucket.bucket_name}/{CAPTURE_PREFIX}/",
        columns=[(c["Name"], c["Type"]) for c in glue_columns(CAPTURE_SCHEMA)],
        serde_parameters={"ignore.malformed.json": "true"},
    )  # fmt: skip
