"""The curation workflow: raw upload -> DataBrew jobs -> crawlers -> feature tables (Athena CTAS)
-> the training set (Athena UNLOAD of ``sql/training_set.sql`` where PrepareData reads)
-> data-quality metrics (row counts and quarantined share per table, the data alarms' producer).

A Step Functions state machine, so each stage starts when the previous one *succeeded* (the
crawler runs after the recipe jobs, the CTAS after the crawler) without any Lambda code.
Triggered by a new object under ``raw/interactions/`` (the one required table) and nightly.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from monitoring import metrics as m
from settings.config import (
    CLICKSTREAM,
    CURATED_PREFIX,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    TABLES,
    TRAINING_SET_PREFIX,
    Config,
)
from settings.erasure import CAPTURE_PREFIX
from sql.library import attribution_query, ctas_statement, feature_queries, unload_statement
from stacks.factories.athena import athena_caller_statements
from stacks.factories.cloudwatch import put_metric_data_statement
from stacks.factories.databrew import DataBrewJobs
from stacks.factories.storage import grant_data_key, log_retention, removal_policy
from stacks.nag import acknowledge_wildcards, arn_token

#: Tables whose raw data may be absent: a failed job for them does not stop the workflow (the
#: clickstream archive is empty until the stream has run; its curated table is declared, so SQL still works).
OPTIONAL_TABLES = ("users", "products", CLICKSTREAM)
#: The query the training-set states UNLOAD (``sql/training_set.sql``).
TRAINING_SET_QUERY = "training_set"
#: Keys per listing of the old training set: each listing's result travels in the state (256 KB at most), so it is
#: small and the clear loops until the listing is empty.
CLEAR_PAGE = 100
#: The Glue Data Catalog as Athena names it (each query's QueryExecutionContext.Catalog).
ATHENA_CATALOG = "AwsDataCatalog"


def _jobs_stage(scope: Construct, cfg: Config, jobs: DataBrewJobs) -> sfn.Parallel:
    """Every recipe job in parallel; the stage's output lists each job with ``skipped`` 0 or 1 under ``$.jobs``.

    An optional table's failed job is caught and skipped, so the workflow still succeeds (and training starts);
    the skip is then published as :data:`monitoring.metrics.CURATION_JOBS_SKIPPED` (0 when the job ran, so
    each run gives the alarm a datapoint) and kept, with its error, in the execution's output."""
    stage = sfn.Parallel(scope, "RunRecipeJobs", result_path="$.jobs")
    for (table, output), job_name in sorted(jobs.job_names.items()):
        run = tasks.GlueDataBrewStartJobRun(
            scope,
            f"Run {job_name}",
            name=job_name,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
        )
        record = {"job": job_name, "skipped": 0}
        optional = table in OPTIONAL_TABLES  # its publish state unwraps the record; a required job's is final
        ran = sfn.Pass(scope, f"{job_name} ran", parameters={"record": record} if optional else record)
        run.next(ran)
        if optional:
            skipped = sfn.Pass(
                scope,
                f"No {table} data ({output})",
                parameters={
                    "record": {"job": job_name, "skipped": 1, "error.$": "$.error.Error", "cause.$": "$.error.Cause"}
                },
            )
            run.add_catch(skipped, result_path="$.error")
            publish = _skip_metric_task(scope, cfg, job_name)
            ran.next(publish)
            skipped.next(publish)
        stage.branch(run)
    return stage


def _skip_metric_task(scope: Construct, cfg: Config, job_name: str) -> sfn.CustomState:
    ref = m.curation_metric(cfg.curation_state_machine)
    return sfn.CustomState(
        scope,
        f"Count {job_name} skipped",
        state_json={
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:cloudwatch:putMetricData",
            "Parameters": {
                "Namespace": ref.namespace,
                "MetricData": [
                    {
                        "MetricName": ref.name,
                        "Dimensions": ref.api_dimensions(),
                        "Value.$": "$.record.skipped",
                        "Unit": "Count",
                    }
                ],
            },
            # A Task without ResultPath replaces its input with the result (CDK drops a null ResultPath here).
            "ResultPath": "$.published",
            "OutputPath": "$.record",
        },
    )


def _crawler_stage(scope: Construct, name: str) -> tuple[sfn.IChainable, sfn.INextable]:
    """Start a crawler and poll until it is READY again (crawlers have no .sync integration)."""
    start = tasks.CallAwsService(
        scope,
        f"Start {name}",
        service="glue",
        action="startCrawler",
        parameters={"Name": name},
        iam_resources=[f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:crawler/{name}"],
        result_path=sfn.JsonPath.DISCARD,
    )
    wait = sfn.Wait(scope, f"Wait {name}", time=sfn.WaitTime.duration(Duration.seconds(30)))
    get = tasks.CallAwsService(
        scope,
        f"Get {name}",
        service="glue",
        action="getCrawler",
        parameters={"Name": name},
        iam_resources=[f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:crawler/{name}"],
        result_selector={"State.$": "$.Crawler.State"},
        result_path="$.crawler",
    )
    done = sfn.Pass(scope, f"{name} done")
    # A crawler already running (e.g. its schedule fired) is fine: wait for that run instead.
    start.add_catch(wait, errors=["Glue.CrawlerRunningException"], result_path=sfn.JsonPath.DISCARD)
    start.next(wait)
    wait.next(get)
    get.next(
        sfn.Choice(scope, f"{name} ready?")
        .when(sfn.Condition.string_equals("$.crawler.State", "READY"), done)
        .otherwise(wait)
    )
    return start, done


def _features_stage(scope: Construct, cfg: Config) -> list[sfn.IChainable]:
    """DROP + CTAS per feature table; without external_location Athena writes each run to a new
    prefix under the workgroup's result location, so a re-run never collides with old files.

    Plain ``.sync`` states rather than ``AthenaStartQueryExecution``: that task always grants
    ``s3:GetObject``/``s3:ListBucket`` on ``*``; the rights are granted narrowly in
    :func:`_grant_athena` instead."""
    steps: list[sfn.IChainable] = []
    for name in feature_queries():
        for label, sql in (("Drop", f"DROP TABLE IF EXISTS {name}"), ("Build", ctas_statement(name, location=None))):
            steps.append(
                _athena_task(
                    scope, f"{label} {name}", cfg, sql,
                    ResultSelector={"id.$": "$.QueryExecution.QueryExecutionId"}, ResultPath="$.query",
                )  # a null ResultPath would be dropped, and the query's result would replace the run's state
            )  # fmt: skip
    return steps


def _training_set_stage(scope: Construct, cfg: Config, destination: s3.IBucket) -> tuple[sfn.IChainable, sfn.INextable]:
    """List the old training set -> delete each listed object (a Map) -> list again ... -> UNLOAD the new one.

    Why clear first: Athena UNLOADs only into an empty location, so a rerun (nightly, or the next upload) would
    otherwise fail; listing again until nothing is left also covers more objects than one listing returns. The
    erasure suppression list (``training/erasure_suppression.json``) is outside the cleared folder and stays:
    PrepareData receives it with the training set and drops the forgotten shoppers. A failure here fails the
    workflow, so the pipeline never starts on a half-written or stale training set."""
    prefix = f"{TRAINING_SET_PREFIX}/"
    sdk = f"arn:{Aws.PARTITION}:states:::aws-sdk:s3"
    listing = sfn.CustomState(
        scope,
        "List old training set",
        state_json={
            "Type": "Task",
            "Resource": f"{sdk}:listObjectsV2",
            "Parameters": {"Bucket": destination.bucket_name, "Prefix": prefix, "MaxKeys": CLEAR_PAGE},
            "ResultPath": "$.old_training",  # KeyCount always; Contents (Key, Size, ...) only when there are keys
        },
    )
    delete = sfn.CustomState(
        scope,
        "Delete old training file",
        state_json={
            "Type": "Task",
            "Resource": f"{sdk}:deleteObject",
            "Parameters": {"Bucket": destination.bucket_name, "Key.$": "$.Key"},
        },
    )
    clear = sfn.Map(
        scope,
        "Clear old training set",
        items_path="$.old_training.Contents",
        item_selector={"Key.$": "$$.Map.Item.Value.Key"},
        max_concurrency=10,
        result_path=sfn.JsonPath.DISCARD,
    )
    clear.item_processor(delete)
    unload = _athena_task(
        scope, "Build training set", cfg,
        unload_statement(TRAINING_SET_QUERY, f"s3://{destination.bucket_name}/{prefix}"),
        ResultSelector={"id.$": "$.QueryExecution.QueryExecutionId"}, ResultPath="$.training",
    )  # fmt: skip
    listing.next(
        sfn.Choice(scope, "Old training set?")
        .when(sfn.Condition.number_greater_than("$.old_training.KeyCount", 0), clear.next(listing))
        .otherwise(unload)
    )
    return listing, unload


def _athena_task(scope: Construct, name: str, cfg: Config, sql: str, **fields: object) -> sfn.CustomState:
    return sfn.CustomState(
        scope,
        name,
        state_json={
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::athena:startQueryExecution.sync",
            "Parameters": {
                "QueryString": sql,
                "WorkGroup": cfg.athena_workgroup,
                "QueryExecutionContext": {"Catalog": ATHENA_CATALOG, "Database": cfg.glue_database},
            },
            **fields,
        },
    )


def _sql_metric_stage(
    scope: Construct,
    cfg: Config,
    sql: str,
    *,
    states: tuple[str, str, str, str],
    path: str,
    columns: tuple[tuple[str, str, str], ...],
    metric: Callable[[str], m.MetricRef],
) -> tuple[sfn.IChainable, sfn.INextable]:
    """A one-row query on Athena -> its row -> PutMetricData, column i as metric ``columns[i]``. ``states`` names
    the query, read, publish and done states; the row travels under ``$.<path>``; any failed task skips to done
    (a table not catalogued yet, nothing captured yet: nothing published, the workflow goes on)."""
    query_name, read_name, publish_name, done_name = states
    query = _athena_task(
        scope, query_name, cfg, sql,
        ResultSelector={"id.$": "$.QueryExecution.QueryExecutionId"}, ResultPath=f"$.{path}",
    )  # fmt: skip
    read = sfn.CustomState(
        scope,
        read_name,
        state_json={
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:athena:getQueryResults",
            "Parameters": {"QueryExecutionId.$": f"$.{path}.id"},
            "ResultSelector": {"data.$": "$.ResultSet.Rows[1].Data"},  # Rows[0] is the header
            "ResultPath": f"$.{path}",
        },
    )
    metric_data = [
        {
            "MetricName": name,
            "Dimensions": metric(name).api_dimensions(),
            "Value.$": f"States.StringToJson($.{path}.data[{i}].VarCharValue)",
            "Unit": unit,
        }
        for i, (_, name, unit) in enumerate(columns)
    ]
    publish = sfn.CustomState(
        scope,
        publish_name,
        state_json={
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:cloudwatch:putMetricData",
            "Parameters": {"Namespace": m.NAMESPACE, "MetricData": metric_data},
            "ResultPath": f"$.{path}",  # not null: CDK would drop it, and the empty result would replace the state
        },
    )
    done = sfn.Pass(scope, done_name, result_path=sfn.JsonPath.DISCARD)
    for state in (query, read, publish):
        state.add_catch(done, errors=["States.TaskFailed"], result_path=f"$.{path}_error")
    query.next(read)
    read.next(publish)
    publish.next(done)
    return query, done


def _quality_stage(scope: Construct, cfg: Config, table: str) -> tuple[sfn.IChainable, sfn.INextable]:
    """``monitoring.metrics.data_quality_sql`` -> row counts and quarantined share of one table (the local run
    publishes the same query's row from DuckDB)."""
    return _sql_metric_stage(
        scope, cfg, m.data_quality_sql(table),
        states=(f"Count {table} rows", f"Read {table} counts", f"Publish {table} quality", f"{table} quality done"),
        path="quality", columns=m.DATA_QUALITY_COLUMNS,
        metric=lambda name: m.data_metric(cfg.glue_database, table, name),
    )  # fmt: skip


def _click_through_stage(scope: Construct, cfg: Config) -> tuple[sfn.IChainable, sfn.INextable]:
    """``monitoring.metrics.click_through_sql`` over the attribution SQL (captured answers x clickstream, the
    configured window) -> click-through, its trailing level and their ratio, which the online-ctr-drop alarm
    watches. The local run publishes the same query's row from DuckDB."""
    return _sql_metric_stage(
        scope, cfg, m.click_through_sql(attribution_query(cfg.attribution_window_hours)),
        states=("Attributed click-through", "Read click-through", "Publish click-through", "click-through done"),
        path="online", columns=m.CLICK_THROUGH_COLUMNS,
        metric=lambda name: m.online_metric(cfg.endpoint_name, name),
    )  # fmt: skip


def _grant_quality(machine: sfn.StateMachine, cfg: Config, destination: s3.IBucket) -> None:
    """What the data-quality states add: query results, the quarantine tables, metrics in our namespace."""
    machine.add_to_role_policy(
        iam.PolicyStatement(
            actions=["athena:GetQueryResults"],
            resources=[f"arn:{Aws.PARTITION}:athena:{Aws.REGION}:{Aws.ACCOUNT_ID}:workgroup/{cfg.athena_workgroup}"],
        )
    )
    machine.add_to_role_policy(put_metric_data_statement())
    destination.grant_read(machine, f"{QUARANTINE_PREFIX}/*")
    destination.grant_read(machine, f"{CAPTURE_PREFIX}/*")  # the attributed click-through reads the captured answers


def _grant_training_set(machine: sfn.StateMachine, destination: s3.IBucket) -> None:
    """What the training-set states add: delete the old files and (Athena, as the caller) write the new ones, in
    the training set's folder only; listing it comes with the curated read (``s3:ListBucket`` on the bucket)."""
    machine.add_to_role_policy(
        iam.PolicyStatement(
            actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[destination.arn_for_objects(f"{TRAINING_SET_PREFIX}/*")],
        )
    )


def _grant_athena(
    machine: sfn.StateMachine, cfg: Config, destination: s3.IBucket, results: s3.IBucket, key: kms.IKey
) -> None:
    """What the DROP/CTAS queries need: this workgroup, this database, curated data in, results out."""
    arn = f"arn:{Aws.PARTITION}"
    glue = f"{arn}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    machine.add_to_role_policy(
        iam.PolicyStatement(
            actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:StopQueryExecution"],
            resources=[f"{arn}:athena:{Aws.REGION}:{Aws.ACCOUNT_ID}:workgroup/{cfg.athena_workgroup}"],
        )
    )
    machine.add_to_role_policy(
        iam.PolicyStatement(
            actions=[
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:GetTables",
                "glue:GetPartitions",
                "glue:CreateTable",
                "glue:DeleteTable",
            ],
            resources=[
                f"{glue}:catalog",
                f"{glue}:database/{cfg.glue_database}",
                f"{glue}:table/{cfg.glue_database}/*",
            ],
        )
    )
    for statement in athena_caller_statements():  # the `default` database, Lake Formation's GetDataAccess
        machine.add_to_role_policy(statement)
    # Queries name the AwsDataCatalog (QueryExecutionContext.Catalog); Step Functions' Athena integration
    # documents athena:GetDataCatalog for startQueryExecution.
    machine.add_to_role_policy(
        iam.PolicyStatement(
            actions=["athena:GetDataCatalog"],
            resources=[f"{arn}:athena:{Aws.REGION}:{Aws.ACCOUNT_ID}:datacatalog/{ATHENA_CATALOG}"],
        )
    )
    destination.grant_read(machine, f"{CURATED_PREFIX}/*")
    results.grant_read(machine)
    results.grant_put(machine)  # Athena writes results and CTAS output; it never deletes them
    grant_data_key(machine, key)


def curation_workflow(
    scope: Construct,
    cfg: Config,
    jobs: DataBrewJobs,
    crawler_names: dict[str, str],
    source: s3.IBucket,
    destination: s3.IBucket,
    results: s3.IBucket,
    key: kms.IKey,
) -> sfn.StateMachine:
    # Linked by hand: each crawler stage loops on itself, so it has one entry and one exit state.
    stages: list[tuple[sfn.IChainable, sfn.INextable]] = []
    jobs_stage = _jobs_stage(scope, cfg, jobs)
    stages.append((jobs_stage, jobs_stage))
    stages += [_crawler_stage(scope, name) for name in crawler_names.values()]
    stages += [(step, step) for step in _features_stage(scope, cfg)]
    stages.append(_training_set_stage(scope, cfg, destination))
    stages += [_quality_stage(scope, cfg, table) for table in TABLES]
    stages.append(_click_through_stage(scope, cfg))
    for (_, exit_state), (entry, _) in zip(stages, stages[1:], strict=False):
        exit_state.next(entry)
    stages[-1][1].next(sfn.Succeed(scope, "Curated and features built"))

    log_group = logs.LogGroup(
        scope,
        "WorkflowLogs",
        log_group_name=f"/aws/vendedlogs/states/{cfg.prefix}-curation",
        retention=log_retention(cfg),
        encryption_key=key,
        removal_policy=removal_policy(cfg),
    )
    machine = sfn.StateMachine(
        scope,
        "CurationWorkflow",
        state_machine_name=cfg.curation_state_machine,
        definition_body=sfn.DefinitionBody.from_chainable(jobs_stage),
        timeout=Duration.hours(3),
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
    )
    _grant_athena(machine, cfg, destination, results, key)
    _grant_training_set(machine, destination)
    _grant_quality(machine, cfg, destination)
    acknowledge_wildcards(
        machine,
        {
            "*": "Only actions AWS offers without resource-level permissions: X-Ray tracing, CloudWatch Logs "
            "delivery for the state machine, lakeformation:GetDataAccess (checked by Athena) and "
            "cloudwatch:PutMetricData (held to the project's namespace by a condition).",
            "arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:table/"
            f"{cfg.glue_database}/*": "CTAS creates, and DROP deletes, feature tables in this database only.",
            f"{arn_token(destination)}/{CURATED_PREFIX}/*": "CTAS queries read the curated tables only.",
            f"{arn_token(destination)}/{QUARANTINE_PREFIX}/*": "The data-quality query counts quarantined rows.",
            f"{arn_token(destination)}/{TRAINING_SET_PREFIX}/*": (
                "The training-set states replace the files of the training set's own folder (UNLOAD names them)."
            ),
            f"{arn_token(destination)}/{CAPTURE_PREFIX}/*": (
                "The click-through query reads the endpoint's data capture (the impressions)."
            ),
            f"{arn_token(results)}/*": "The results bucket holds only query results and CTAS output.",
        },
    )

    events.Rule(
        scope,
        "OnRawInteractions",
        description="New raw interactions -> run the curation workflow",
        event_pattern=events.EventPattern(
            source=["aws.s3"],
            detail_type=["Object Created"],
            detail={
                "bucket": {"name": [source.bucket_name]},
                "object": {"key": [{"prefix": f"{RAW_PREFIX}/interactions/"}]},
            },
        ),
        targets=[targets.SfnStateMachine(machine, role=_events_role(scope, machine))],
    )
    events.Rule(
        scope,
        "Nightly",
        description="Nightly curation run, so features stay fresh even without uploads",
        schedule=events.Schedule.expression(cfg.crawler_schedule),
        targets=[targets.SfnStateMachine(machine, role=_events_role(scope, machine, "Nightly"))],
    )
    return machine


def _events_role(scope: Construct, machine: sfn.StateMachine, suffix: str = "") -> iam.Role:
    role = iam.Role(scope, f"EventsRole{suffix}", assumed_by=iam.ServicePrincipal("events.amazonaws.com"))
    machine.grant_start_execution(role)
    return role
