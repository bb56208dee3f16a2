"""CDK assertions on the data stack: each resource of the data plane with its key properties."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from glue_jobs.datasets import dataset_key
from glue_jobs.recipe import recipe_steps
from glue_jobs.schema import BATCH_COLUMNS, BATCH_FOLDERS, CURATED_COLUMNS
from monitoring.metrics import DATA_QUALITY_COLUMNS, NAMESPACE, data_quality_sql
from settings.config import CLICKSTREAM, TABLES, load_project_config
from sql.library import feature_queries, list_queries
from stacks.factories.databrew import JOB_LOG_GROUP_PREFIX
from stacks.factories.storage import deploy_dlq_name
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]
CFG = load_project_config("dev")


def _buckets(t):
    return {
        r["Properties"]["BucketName"]["Fn::Join"][1][0].split("-")[2]: r
        for r in resources(t, "AWS::S3::Bucket").values()
    }


def test_kms_key_rotates(data_template):
    data_template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_four_buckets_all_private_versioned_and_encrypted(data_template):
    buckets = resources(data_template, "AWS::S3::Bucket")
    assert len(buckets) == 4
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["LifecycleConfiguration"]["Rules"]


def test_data_buckets_use_the_kms_key_and_log_access(data_template):
    kms_encrypted = [
        b
        for b in resources(data_template, "AWS::S3::Bucket").values()
        if b["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    ]
    assert len(kms_encrypted) == 3  # source, curated, athena-results; the log bucket must use SSE-S3
    for bucket in kms_encrypted:
        assert "LoggingConfiguration" in bucket["Properties"]


def test_every_bucket_policy_denies_non_tls(data_template):
    policies = resources(data_template, "AWS::S3::BucketPolicy")
    assert len(policies) == 4
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )


def test_removal_policy_follows_environment(data_template, prod_data_template):
    for bucket in resources(data_template, "AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Delete"
    for bucket in resources(prod_data_template, "AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"


def test_raw_data_expires_after_configured_days(data_template):
    data_template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {"Prefix": "raw/", "ExpirationInDays": CFG.raw_expiry_days, "Status": "Enabled"}
                        )
                    ]
                )
            }
        },
    )


def test_databrew_dataset_per_raw_table_csv_and_the_clickstream_archive_as_json_lines(data_template):
    datasets = {
        d["Properties"]["Input"]["S3InputDefinition"]["Key"]: d["Properties"]
        for d in resources(data_template, "AWS::DataBrew::Dataset").values()
    }
    archive = dataset_key(CLICKSTREAM)  # its dated folders: tests/stacks/test_clickstream_dataset.py
    assert sorted(datasets) == sorted([*(f"raw/{t}/" for t in TABLES), archive])
    assert {datasets[f"raw/{t}/"]["Format"] for t in TABLES} == {"CSV"}
    assert datasets[archive]["Format"] == "JSON"
    assert datasets[archive]["FormatOptions"] == {"Json": {"MultiLine": False}}


@pytest.mark.parametrize("output", ["curated", "quarantine"])
def test_clickstream_jobs_run_the_interactions_recipes_into_their_own_prefix(data_template, output):
    data_template.has_resource_properties(
        "AWS::DataBrew::Job",
        {
            "Name": f"recsys-dev-clickstream-{output}",
            "DatasetName": "recsys-dev-clickstream-raw",
            "Recipe": {"Name": f"recsys-dev-interactions-{output}"},
            "EncryptionMode": "SSE-KMS",
            "Outputs": [Match.object_like({"Location": Match.object_like({"Key": f"{output}/clickstream/"})})],
        },
    )


def test_clickstream_table_is_declared_with_the_curated_interactions_schema(data_template):
    (table,) = [
        t for t in resources(data_template, "AWS::Glue::Table").values()
        if t["Properties"]["TableInput"]["Name"] == CLICKSTREAM
    ]
    props = table["Properties"]["TableInput"]
    assert props["StorageDescriptor"]["Location"]["Fn::Join"][1][-1] == "/curated/clickstream/"
    columns = [c["Name"] for c in props["StorageDescriptor"]["Columns"]]
    assert columns == list(CURATED_COLUMNS["interactions"])
    assert "ParquetHiveSerDe" in props["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("output", ["curated", "quarantine"])
def test_recipe_steps_come_from_the_recipe_json(data_template, table, output):
    data_template.has_resource_properties(
        "AWS::DataBrew::Recipe", {"Name": f"recsys-dev-{table}-{output}", "Steps": recipe_steps(table, output)}
    )


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("output", ["curated", "quarantine"])
def test_recipe_job_writes_encrypted_parquet_to_its_prefix(data_template, table, output):
    data_template.has_resource_properties(
        "AWS::DataBrew::Job",
        {
            "Name": f"recsys-dev-{table}-{output}",
            "Type": "RECIPE",
            "EncryptionMode": "SSE-KMS",
            "Outputs": [
                Match.object_like({"Format": "PARQUET", "Location": Match.object_like({"Key": f"{output}/{table}/"})})
            ],
        },
    )


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_every_databrew_job_logs_to_a_group_with_the_configured_retention_and_the_data_key(
    data_template, prod_data_template, env_name
):
    """DataBrew would create /aws-glue-databrew/jobs/<job> itself, with no retention: the stack creates it first."""
    template, cfg = (data_template, CFG) if env_name == "dev" else (prod_data_template, load_project_config("prod"))
    groups = {
        g["Properties"]["LogGroupName"]: (lid, g["Properties"])
        for lid, g in resources(template, "AWS::Logs::LogGroup").items()
        if g["Properties"]["LogGroupName"].startswith(JOB_LOG_GROUP_PREFIX)
    }
    jobs = resources(template, "AWS::DataBrew::Job")
    assert len(jobs) == 2 * (len(TABLES) + 1)
    assert set(groups) == {f"{JOB_LOG_GROUP_PREFIX}{j['Properties']['Name']}" for j in jobs.values()}
    for job in jobs.values():
        assert job["Properties"]["LogSubscription"] == "ENABLE"
        lid, props = groups[f"{JOB_LOG_GROUP_PREFIX}{job['Properties']['Name']}"]
        assert props["RetentionInDays"] == cfg.log_retention_days
        assert "DataKey" in json.dumps(props["KmsKeyId"])
        assert lid in job["DependsOn"]  # exists before a run could create it without a retention


def test_data_key_lets_eventbridge_encrypt_only_for_the_deploy_dead_letter_queue(data_template):
    [key] = resources(data_template, "AWS::KMS::Key").values()
    policy = key["Properties"]["KeyPolicy"]["Statement"]
    [statement] = [s for s in policy if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    [(operator, condition)] = statement["Condition"].items()
    assert operator == "StringEquals" and list(condition) == ["kms:EncryptionContext:aws:sqs:arn"]
    assert json.dumps(condition["kms:EncryptionContext:aws:sqs:arn"]).endswith(f':{deploy_dlq_name(CFG)}"]]}}')


def test_recipes_are_published_for_jobs(data_template):
    publishers = resources(data_template, "Custom::AWS")
    assert len(publishers) == 6
    assert all("publishRecipe" in str(p["Properties"]["Create"]) for p in publishers.values())


def test_glue_database_and_crawlers_over_curated_and_quarantine(data_template):
    data_template.has_resource_properties(
        "AWS::Glue::Database", {"DatabaseInput": {"Name": "recsys_dev", "Description": Match.any_value()}}
    )
    crawlers = {
        c["Properties"]["Name"]: c["Properties"] for c in resources(data_template, "AWS::Glue::Crawler").values()
    }
    assert set(crawlers) == {"recsys-dev-curated", "recsys-dev-quarantine"}
    for name, props in crawlers.items():
        layer = name.rsplit("-", 1)[1]
        paths = [t["Path"]["Fn::Join"][1][-1] for t in props["Targets"]["S3Targets"]]
        # curated clickstream is a declared table; its quarantine is crawled like the others
        expected = (*TABLES, CLICKSTREAM) if layer == "quarantine" else TABLES
        assert paths == [f"/{layer}/{t}/" for t in expected]
        assert props["Schedule"] == {"ScheduleExpression": CFG.crawler_schedule}
        assert props["CrawlerSecurityConfiguration"]
    assert crawlers["recsys-dev-quarantine"]["TablePrefix"] == "quarantine_"


def test_crawler_role_reads_only_crawled_prefixes(data_template):
    policies = [p for k, p in resources(data_template, "AWS::IAM::Policy").items() if k.startswith("CrawlerRole")]
    (policy,) = policies
    s3_resources = [
        r
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(a.startswith("s3:") for a in s["Action"])
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    object_paths = [r["Fn::Join"][1][-1] for r in s3_resources if isinstance(r, dict) and "Fn::Join" in r]
    assert sorted(object_paths) == ["/curated/*", "/quarantine/*"]


def test_athena_workgroup_is_enforced_encrypted_and_capped(data_template):
    data_template.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": CFG.athena_workgroup,
            "WorkGroupConfiguration": Match.object_like(
                {
                    "EnforceWorkGroupConfiguration": True,
                    "BytesScannedCutoffPerQuery": CFG.athena_bytes_scanned_cutoff_mb * 1024 * 1024,
                    "ResultConfiguration": {
                        "OutputLocation": Match.any_value(),
                        "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": Match.any_value()},
                    },
                }
            ),
        },
    )


def test_named_query_for_every_sql_file_and_feature_ctas(data_template):
    names = {q["Properties"]["Name"] for q in resources(data_template, "AWS::Athena::NamedQuery").values()}
    expected = {f"recsys-dev-{n}" for n in list_queries()} | {f"recsys-dev-{n}_ctas" for n in feature_queries()}
    assert names == expected


def test_workflow_runs_jobs_then_crawlers_then_features(data_template):
    (machine,) = resources(data_template, "AWS::StepFunctions::StateMachine").values()
    definition = str(machine["Properties"]["DefinitionString"])
    jobs, crawl, ctas = (definition.find(s) for s in ("databrew:startJobRun.sync", "startCrawler", "CREATE TABLE"))
    assert 0 <= jobs < crawl < ctas
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}


def test_workflow_starts_on_raw_interactions_and_nightly(data_template):
    rules = resources(data_template, "AWS::Events::Rule")
    patterns = [r["Properties"].get("EventPattern") for r in rules.values() if r["Properties"].get("EventPattern")]
    assert any(p["detail"]["object"]["key"] == [{"prefix": "raw/interactions/"}] for p in patterns)
    assert any(r["Properties"].get("ScheduleExpression") == CFG.crawler_schedule for r in rules.values())


def _state_machine_definition(template) -> dict:
    """The ASL with every CloudFormation token replaced by a placeholder string."""
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    body = machine["Properties"]["DefinitionString"]
    if isinstance(body, dict):
        body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
    return json.loads(body)


def test_workflow_publishes_every_tables_data_quality_after_the_features(data_template):
    """The data alarms' producer on AWS: the same query the local run executes on DuckDB, then PutMetricData."""
    states = _state_machine_definition(data_template)["States"]
    for table in ("users", "products", "interactions"):
        query, read, publish = (
            states[f"Count {table} rows"],
            states[f"Read {table} counts"],
            states[f"Publish {table} quality"],
        )
        assert query["Parameters"]["QueryString"] == data_quality_sql(table)
        assert (query["Next"], read["Next"]) == (f"Read {table} counts", f"Publish {table} quality")
        assert publish["Parameters"]["Namespace"] == NAMESPACE
        names = [d["MetricName"] for d in publish["Parameters"]["MetricData"]]
        assert names == [name for _, name, _ in DATA_QUALITY_COLUMNS]
        assert {"Name": "Table", "Value": table} in publish["Parameters"]["MetricData"][0]["Dimensions"]
        for state in (query, read, publish):  # a table without data publishes nothing and the run goes on
            assert state["Catch"][0]["Next"] == f"{table} quality done"
    assert states["interactions quality done"]["Next"] == "Attributed click-through"  # then tests/stacks/...
    assert states["click-through done"]["Next"] == "Curated and features built"  # test_click_through_state.py


def test_batch_outputs_are_glue_tables_with_the_batch_steps_schema(data_template):
    tables = {
        t["Properties"]["TableInput"]["Name"]: t["Properties"]["TableInput"]
        for t in resources(data_template, "AWS::Glue::Table").values()
    }
    for name, folder in BATCH_FOLDERS.items():
        sd = tables[name]["StorageDescriptor"]
        assert [c["Name"] for c in sd["Columns"]] == list(BATCH_COLUMNS[name])
        assert json.dumps(sd["Location"]).endswith(f'/batch/{folder}/"]]}}')
