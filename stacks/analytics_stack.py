"""QuickSight on the Athena workgroup: a data source, the dashboard datasets and the dashboard itself.

Infrastructure only: datasets and visuals come from ``monitoring/dashboard.py`` (the local HTML
dashboard draws the same charts from the same SQL). The model-metrics history is a Glue table of JSON
lines (one per evaluated model, :func:`monitoring.metrics.model_metrics_record`) under the destination
bucket's ``monitoring/model_metrics/``. Only built when ``enable_analytics`` is true; the account must
already be subscribed to QuickSight (CloudFormation cannot do that).
"""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_quicksight as qs
from constructs import Construct

from monitoring.dashboard import CHARTS, DATASETS, MODEL_METRICS_PREFIX, MODEL_METRICS_TABLE, SHEETS, ChartSpec
from settings.config import ATHENA_RESULTS_PREFIX, Config
from sql.library import read_query
from stacks.buckets import ATHENA_RESULTS, CURATED
from stacks.data_stack import DataStack
from stacks.nag import acknowledge_wildcards

DATA_SOURCE_ACTIONS = [
    "quicksight:DescribeDataSource",
    "quicksight:DescribeDataSourcePermissions",
    "quicksight:PassDataSource",
]
DATASET_ACTIONS = [
    "quicksight:DescribeDataSet",
    "quicksight:DescribeDataSetPermissions",
    "quicksight:PassDataSet",
    "quicksight:DescribeIngestion",
    "quicksight:ListIngestions",
]
DASHBOARD_ACTIONS = ["quicksight:DescribeDashboard", "quicksight:ListDashboardVersions", "quicksight:QueryDashboard"]
_GLUE_TYPES = {"STRING": "string", "DATETIME": "timestamp", "DECIMAL": "double", "INTEGER": "bigint"}


def custom_sql(name: str) -> str:
    """The query text without its header comment (QuickSight wraps custom SQL in a sub-query)."""
    lines = read_query(name).splitlines()
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return re.sub(r";\s*$", "", "\n".join(lines).rstrip())


def _column(dataset: str, name: str) -> dict[str, str]:
    return {"DataSetIdentifier": dataset, "ColumnName": name}


def visual(chart: ChartSpec) -> dict[str, Any]:
    """One QuickSight visual (CloudFormation JSON) for a chart spec."""
    date_x = dict(DATASETS[chart.dataset].columns)[chart.x] == "DATETIME"
    x_field = (
        {
            "DateDimensionField": {
                "FieldId": f"{chart.id}.x",
                "Column": _column(chart.dataset, chart.x),
                "DateGranularity": "DAY",
            }
        }
        if date_x
        else {"CategoricalDimensionField": {"FieldId": f"{chart.id}.x", "Column": _column(chart.dataset, chart.x)}}
    )
    values = [
        {
            "NumericalMeasureField": {
                "FieldId": f"{chart.id}.{y}",
                "Column": _column(chart.dataset, y),
                "AggregationFunction": {"SimpleNumericalAggregation": chart.aggregation},
            }
        }
        for y in chart.y
    ]
    wells: dict[str, Any] = {"Category": [x_field], "Values": values}
    if chart.color:
        wells["Colors"] = [
            {
                "CategoricalDimensionField": {
                    "FieldId": f"{chart.id}.color",
                    "Column": _column(chart.dataset, chart.color),
                }
            }
        ]
    title = {"Visibility": "VISIBLE", "FormatText": {"PlainText": chart.title}}
    if chart.kind == "line":
        return {
            "LineChartVisual": {
                "VisualId": chart.id,
                "Title": title,
                "ChartConfiguration": {"FieldWells": {"LineChartAggregatedFieldWells": wells}, "Type": "LINE"},
            }
        }
    config: dict[str, Any] = {
        "FieldWells": {"BarChartAggregatedFieldWells": wells},
        "Orientation": "HORIZONTAL" if chart.kind == "hbar" else "VERTICAL",
        "BarsArrangement": "CLUSTERED",
    }
    if chart.top_n:
        config["SortConfiguration"] = {
            "CategorySort": [{"FieldSort": {"FieldId": f"{chart.id}.{chart.y[0]}", "Direction": "DESC"}}],
            "CategoryItemsLimit": {"ItemsLimit": chart.top_n, "OtherCategories": "EXCLUDE"},
        }
    return {"BarChartVisual": {"VisualId": chart.id, "Title": title, "ChartConfiguration": config}}


def dashboard_definition(dataset_arns: dict[str, str]) -> dict[str, Any]:
    return {
        "DataSetIdentifierDeclarations": [{"Identifier": k, "DataSetArn": arn} for k, arn in dataset_arns.items()],
        "Sheets": [
            {
                "SheetId": sheet.lower(),
                "Name": sheet,
                "Visuals": [visual(c) for c in CHARTS if c.sheet == sheet],
            }
            for sheet in SHEETS
        ],
    }


class AnalyticsStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, cfg: Config, data: DataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        account = Aws.ACCOUNT_ID
        role = self._athena_role(cfg, data)
        principal = cfg.quicksight_principal_arn
        source = qs.CfnDataSource(
            self,
            "AthenaDataSource",
            aws_account_id=account,
            data_source_id=f"{cfg.prefix}-athena",
            name=f"{cfg.prefix} Athena ({cfg.athena_workgroup})",
            type="ATHENA",
            data_source_parameters=qs.CfnDataSource.DataSourceParametersProperty(
                athena_parameters=qs.CfnDataSource.AthenaParametersProperty(
                    work_group=cfg.athena_workgroup, role_arn=role.role_arn
                )
            ),
            permissions=[qs.CfnDataSource.ResourcePermissionProperty(principal=principal, actions=DATA_SOURCE_ACTIONS)],
        )
        self.model_metrics_table = self._model_metrics_table(cfg, data)
        self.datasets: dict[str, qs.CfnDataSet] = {}
        for spec in DATASETS.values():
            columns = [qs.CfnDataSet.InputColumnProperty(name=n, type=t) for n, t in spec.columns]
            if spec.query:
                table = qs.CfnDataSet.PhysicalTableProperty(
                    custom_sql=qs.CfnDataSet.CustomSqlProperty(
                        data_source_arn=source.attr_arn, name=spec.id, sql_query=custom_sql(spec.query), columns=columns
                    )
                )
            else:
                table = qs.CfnDataSet.PhysicalTableProperty(
                    relational_table=qs.CfnDataSet.RelationalTableProperty(
                        data_source_arn=source.attr_arn,
                        catalog="AwsDataCatalog",
                        schema=cfg.glue_database,
                        name=MODEL_METRICS_TABLE,
                        input_columns=columns,
                    )
                )
            dataset = qs.CfnDataSet(
                self,
                f"DataSet-{spec.id}",
                aws_account_id=account,
                data_set_id=f"{cfg.prefix}-{spec.id}",
                name=f"{cfg.prefix} {spec.title}",
                import_mode="DIRECT_QUERY",  # Athena answers each visual: no SPICE capacity to size
                physical_table_map={spec.id.replace("_", "-"): table},  # keys: [0-9a-zA-Z-]
                permissions=[qs.CfnDataSet.ResourcePermissionProperty(principal=principal, actions=DATASET_ACTIONS)],
            )
            if spec.query is None:
                dataset.node.add_dependency(self.model_metrics_table)
            self.datasets[spec.id] = dataset
        self.dashboard = qs.CfnDashboard(
            self,
            "Dashboard",
            aws_account_id=account,
            dashboard_id=f"{cfg.prefix}-analytics",
            name=f"{cfg.prefix} marketplace and model",
            permissions=[qs.CfnDashboard.ResourcePermissionProperty(principal=principal, actions=DASHBOARD_ACTIONS)],
        )
        self.dashboard.add_property_override(
            "Definition", dashboard_definition({k: d.attr_arn for k, d in self.datasets.items()})
        )
        CfnOutput(self, "DashboardId", value=f"{cfg.prefix}-analytics")

    def _athena_role(self, cfg: Config, data: DataStack) -> iam.Role:
        """What QuickSight may do through this data source: run queries in the workgroup, read the tables."""
        role = iam.Role(
            self,
            "QuickSightAthenaRole",
            assumed_by=iam.ServicePrincipal("quicksight.amazonaws.com"),
            description=f"{cfg.prefix}: QuickSight queries the Athena workgroup {cfg.athena_workgroup}",
        )
        region, account = Aws.REGION, Aws.ACCOUNT_ID
        partition = self.partition  # a literal when the region is known (what cdk-nag prints)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                    "athena:GetWorkGroup",
                ],
                resources=[f"arn:{partition}:athena:{region}:{account}:workgroup/{cfg.athena_workgroup}"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions"],
                resources=[
                    f"arn:{partition}:glue:{region}:{account}:catalog",
                    f"arn:{partition}:glue:{region}:{account}:database/{cfg.glue_database}",
                    f"arn:{partition}:glue:{region}:{account}:table/{cfg.glue_database}/*",
                ],
            )
        )
        # Bucket ARNs from the configured names (not cross-stack exports), so the reviewed wildcards read plainly.
        lake, results = (f"arn:{partition}:s3:::{cfg.bucket_name(kind, account)}" for kind in (CURATED, ATHENA_RESULTS))
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetBucketLocation", "s3:ListBucket"], resources=[lake, results])
        )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{lake}/*"]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[f"{results}/{ATHENA_RESULTS_PREFIX}/*"],
            )
        )
        data.key.grant_encrypt_decrypt(role)
        results_name = cfg.bucket_name(ATHENA_RESULTS, "<AWS::AccountId>")  # as cdk-nag prints it
        acknowledge_wildcards(
            role,
            {
                f"arn:{partition}:glue:<AWS::Region>:<AWS::AccountId>:table/{cfg.glue_database}/*": (
                    "QuickSight reads every table of this project's one Glue database (curated, features, metrics)."
                ),
                f"arn:{partition}:s3:::{cfg.bucket_name(CURATED, '<AWS::AccountId>')}/*": (
                    "Athena reads curated, feature and metrics objects of this project's data lake bucket."
                ),
                f"arn:{partition}:s3:::{results_name}/{ATHENA_RESULTS_PREFIX}/*": (
                    "Athena writes and QuickSight reads query results under the workgroup's result prefix."
                ),
            },
        )
        return role

    def _model_metrics_table(self, cfg: Config, data: DataStack) -> glue.CfnTable:
        """JSON lines, one per evaluated model; the pipeline's PublishMetrics step appends them."""
        spec = DATASETS[MODEL_METRICS_TABLE]
        return glue.CfnTable(
            self,
            "ModelMetricsTable",
            catalog_id=Aws.ACCOUNT_ID,
            database_name=cfg.glue_database,
            table_input=glue.CfnTable.TableInputProperty(
                name=MODEL_METRICS_TABLE,
                description="Offline metrics per evaluated model version (monitoring.metrics.model_metrics_record)",
                table_type="EXTERNAL_TABLE",
                parameters={"classification": "json"},
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=f"s3://{data.destination.bucket_name}/{MODEL_METRICS_PREFIX}/",
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe"
                    ),
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=_GLUE_TYPES[t]) for n, t in spec.columns],
                ),
            ),
        )
