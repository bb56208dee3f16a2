"""QuickSight on the Athena workgroup: a data source, the dashboard datasets and the dashboard itself.

Infrastructure only: datasets and visuals come from ``monitoring/dashboard.py`` (the local HTML dashboard draws
the same charts and tables from the same SQL, the A/B verdict included). The model-metrics history is a Glue table
of JSON lines (one per evaluated model, :func:`monitoring.metrics.model_metrics_record`) under the destination
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

from monitoring.dashboard import (
    CHARTS,
    DATASETS,
    MODEL_METRICS_PREFIX,
    MODEL_METRICS_TABLE,
    SHEETS,
    TABLES,
    TILES,
    TILES_DATASET,
    ChartSpec,
    Rate,
    TableSpec,
    TileSpec,
)
from settings.config import ATHENA_RESULTS_PREFIX, Config
from sql.library import deployed_query
from stacks.buckets import ATHENA_RESULTS, CURATED
from stacks.data_stack import DataStack
from stacks.factories.athena import athena_caller_statements
from stacks.factories.catalog import json_lines_table
from stacks.factories.storage import grant_data_key
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


def custom_sql(name: str, attribution_window_hours: int, experiment_alpha: float) -> str:
    """The deployed query text without its header comment (QuickSight wraps custom SQL in a sub-query)."""
    lines = deployed_query(name, attribution_window_hours, experiment_alpha).splitlines()
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return re.sub(r";\s*$", "", "\n".join(lines).rstrip())


def _column(dataset: str, name: str) -> dict[str, str]:
    return {"DataSetIdentifier": dataset, "ColumnName": name}


# Where the two renderers differ (said here and in the README, shown on neither as the same):
# QuickSight's KPI visual compares the latest period of its trend granularity with the one before
# (a week with the week before); the local page compares the chosen date range with the equal range
# before it. Alarm states live on the CloudWatch dashboard, not in QuickSight.
KPI_TREND_GRANULARITY = "WEEK"
DATE_FILTER_COLUMN = "event_date"  # the column every dated dataset shares (ALL_DATASETS filter)
DEFAULT_RANGE = "addDateTime(-28, 'DD', truncDate('DD', now()))"  # the page also opens on 28 days


def rate_expression(rate: Rate) -> str:
    """A rate as QuickSight computes it after grouping: a ratio of sums, like :func:`chart_frame`."""
    return f"sum({{{rate.numerator}}}) / sum({{{rate.denominator}}})"


def calculated_fields() -> list[dict[str, str]]:
    """One calculated field per (dataset, rate) named by the chart and tile specs."""
    fields: dict[tuple[str, str], dict[str, str]] = {}
    for chart in CHARTS:
        for rate in chart.rates:
            fields[(chart.dataset, rate.name)] = {
                "DataSetIdentifier": chart.dataset, "Name": rate.name, "Expression": rate_expression(rate)
            }  # fmt: skip
    for tile in TILES:
        if tile.denominator:
            rate = tile_rate(tile)
            fields[(TILES_DATASET, rate.name)] = {
                "DataSetIdentifier": TILES_DATASET, "Name": rate.name, "Expression": rate_expression(rate)
            }  # fmt: skip
    return list(fields.values())


def tile_rate(tile: TileSpec) -> Rate:
    assert tile.denominator, tile
    return Rate(f"{tile.id}_rate", tile.numerator, tile.denominator)


def _measure(field_id: str, dataset: str, column: str, aggregation: str | None) -> dict[str, Any]:
    field: dict[str, Any] = {"FieldId": field_id, "Column": _column(dataset, column)}
    if aggregation:  # None: an aggregated calculated field (a rate), already one value per group
        field["AggregationFunction"] = {"SimpleNumericalAggregation": aggregation}
    return {"NumericalMeasureField": field}


def _dimension(field_id: str, dataset: str, column: str) -> dict[str, Any]:
    if dict(DATASETS[dataset].columns)[column] == "DATETIME":
        date = {"FieldId": field_id, "Column": _column(dataset, column), "DateGranularity": "DAY"}
        return {"DateDimensionField": date}
    return {"CategoricalDimensionField": {"FieldId": field_id, "Column": _column(dataset, column)}}


def _limit(chart: ChartSpec) -> dict[str, Any]:
    return {"ItemsLimit": chart.top_n, "OtherCategories": "INCLUDE" if chart.other else "EXCLUDE"}


def _sort(chart: ChartSpec) -> list[dict[str, Any]]:
    if chart.order_by:  # one point per evaluation, oldest first
        return [
            {
                "ColumnSort": {
                    "SortBy": _column(chart.dataset, chart.order_by),
                    "Direction": "ASC",
                    "AggregationFunction": {"DateAggregationFunction": "MAX"},
                }
            }
        ]
    return [{"FieldSort": {"FieldId": f"{chart.id}.{chart.y[0]}", "Direction": "DESC"}}]


def visual(chart: ChartSpec) -> dict[str, Any]:
    """One QuickSight visual (CloudFormation JSON) for a chart spec: the same grouping, rates, top N and order."""
    values = [
        _measure(f"{chart.id}.{y}", chart.dataset, y, None if chart.rate(y) else chart.aggregation) for y in chart.y
    ]
    wells: dict[str, Any] = {"Category": [_dimension(f"{chart.id}.x", chart.dataset, chart.x)], "Values": values}
    if chart.color:
        wells["Colors"] = [_dimension(f"{chart.id}.color", chart.dataset, chart.color)]
    title = {"Visibility": "VISIBLE", "FormatText": {"PlainText": chart.title}}
    if chart.kind == "line":
        line: dict[str, Any] = {"FieldWells": {"LineChartAggregatedFieldWells": wells}, "Type": "LINE"}
        sort: dict[str, Any] = {}
        if chart.top_n and chart.color:
            sort["ColorItemsLimitConfiguration"] = _limit(chart)
        elif chart.top_n:
            sort["CategoryItemsLimitConfiguration"] = _limit(chart)
        if chart.order_by:
            sort["CategorySort"] = _sort(chart)
        if sort:
            line["SortConfiguration"] = sort
        return {"LineChartVisual": {"VisualId": chart.id, "Title": title, "ChartConfiguration": line}}
    config: dict[str, Any] = {
        "FieldWells": {"BarChartAggregatedFieldWells": wells},
        "Orientation": "HORIZONTAL" if chart.kind == "hbar" else "VERTICAL",
        "BarsArrangement": "CLUSTERED",
    }
    if chart.top_n or chart.order_by:
        config["SortConfiguration"] = {"CategorySort": _sort(chart)}
        if chart.top_n:
            config["SortConfiguration"]["ColorItemsLimit" if chart.color else "CategoryItemsLimit"] = _limit(chart)
    return {"BarChartVisual": {"VisualId": chart.id, "Title": title, "ChartConfiguration": config}}


def table_visual(table: TableSpec) -> dict[str, Any]:
    """A table of the dataset's rows: text columns grouped by, numbers as the MAX of the one row per group."""
    kinds = dict(DATASETS[table.dataset].columns)
    group_by, values = [], []
    for column, _unit in table.columns:
        field_id = f"{table.id}.{column}"
        if kinds[column] == "STRING":
            group_by.append(_dimension(field_id, table.dataset, column))
        else:
            values.append(_measure(field_id, table.dataset, column, "MAX"))
    first = f"{table.id}.{table.columns[0][0]}"  # rows in the query's key order
    return {
        "TableVisual": {
            "VisualId": table.id,
            "Title": {"Visibility": "VISIBLE", "FormatText": {"PlainText": table.title}},
            "ChartConfiguration": {
                "FieldWells": {"TableAggregatedFieldWells": {"GroupBy": group_by, "Values": values}},
                "SortConfiguration": {"RowSort": [{"FieldSort": {"FieldId": first, "Direction": "ASC"}}]},
            },
        }
    }


def kpi_visual(tile: TileSpec) -> dict[str, Any]:
    """A headline tile: the period's value and its change against the period before."""
    field_id = f"tile.{tile.id}"
    shoppers = tile.numerator == "shoppers"  # distinct shoppers are not additive over days: count the events
    dataset = "enriched_interactions" if shoppers else TILES_DATASET
    if shoppers:
        value = {
            "CategoricalMeasureField": {
                "FieldId": field_id,
                "Column": _column(dataset, "user_id"),
                "AggregationFunction": "DISTINCT_COUNT",
            }
        }
    else:
        column, aggregation = (tile_rate(tile).name, None) if tile.denominator else (tile.numerator, "SUM")
        value = _measure(field_id, dataset, column, aggregation)
    trend = {
        "DateDimensionField": {
            "FieldId": f"tile.{tile.id}.trend",
            "Column": _column(dataset, DATE_FILTER_COLUMN),
            "DateGranularity": KPI_TREND_GRANULARITY,
        }
    }
    return {
        "KPIVisual": {
            "VisualId": f"tile_{tile.id}",
            "Title": {"Visibility": "VISIBLE", "FormatText": {"PlainText": tile.title}},
            "ChartConfiguration": {
                "FieldWells": {"Values": [value], "TrendGroups": [trend]},
                "KPIOptions": {"Comparison": {"ComparisonMethod": "PERCENT_DIFFERENCE"}},
            },
        }
    }


def date_filter(sheet_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Sales sheet's date range (filter group + its picker): one filter over every dated dataset."""
    filter_id = f"{sheet_id}-date-range"
    group = {
        "FilterGroupId": f"{filter_id}-group",
        "CrossDataset": "ALL_DATASETS",
        "Status": "ENABLED",
        "ScopeConfiguration": {
            "SelectedSheets": {"SheetVisualScopingConfigurations": [{"SheetId": sheet_id, "Scope": "ALL_VISUALS"}]}
        },
        "Filters": [
            {
                "TimeRangeFilter": {
                    "FilterId": filter_id,
                    "Column": _column(TILES_DATASET, DATE_FILTER_COLUMN),
                    "NullOption": "NON_NULLS_ONLY",
                    "IncludeMinimum": True,
                    "IncludeMaximum": True,
                    "TimeGranularity": "DAY",
                    "RangeMinimumValue": {"RollingDate": {"Expression": DEFAULT_RANGE}},
                }
            }
        ],
    }
    control = {
        "DateTimePicker": {
            "FilterControlId": f"{filter_id}-control",
            "SourceFilterId": filter_id,
            "Title": "Dates",
            "Type": "DATE_RANGE",
        }
    }
    return group, control


def dashboard_definition(dataset_arns: dict[str, str]) -> dict[str, Any]:
    """Sheets from :data:`SHEETS`: the tiles and the date filter on the first, each chart on its sheet."""
    sales = SHEETS[0].lower()
    group, control = date_filter(sales)
    sheets = []
    for sheet in SHEETS:
        visuals = [kpi_visual(t) for t in TILES] if sheet.lower() == sales else []
        visuals += [visual(c) for c in CHARTS if c.sheet == sheet]
        visuals += [table_visual(t) for t in TABLES if t.sheet == sheet]
        body: dict[str, Any] = {"SheetId": sheet.lower(), "Name": sheet, "Visuals": visuals}
        if sheet.lower() == sales:
            body["FilterControls"] = [control]
        sheets.append(body)
    return {
        "DataSetIdentifierDeclarations": [{"Identifier": k, "DataSetArn": arn} for k, arn in dataset_arns.items()],
        "CalculatedFields": calculated_fields(),
        "FilterGroups": [group],
        "Sheets": sheets,
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
                        data_source_arn=source.attr_arn,
                        name=spec.id,
                        sql_query=custom_sql(spec.query, cfg.attribution_window_hours, cfg.experiment_alpha),
                        columns=columns,
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
        grant_data_key(role, data.key)
        for statement in athena_caller_statements():  # QuickSight runs the queries as this role (SECURITY.md)
            role.add_to_policy(statement)
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
                "*": "lakeformation:GetDataAccess, which Athena checks on every query, has no resource-level form.",
            },
        )
        return role

    def _model_metrics_table(self, cfg: Config, data: DataStack) -> glue.CfnTable:
        """JSON lines, one per evaluated model; the pipeline's PublishMetrics step appends them."""
        spec = DATASETS[MODEL_METRICS_TABLE]
        return json_lines_table(
            self, "ModelMetricsTable", cfg, name=MODEL_METRICS_TABLE,
            description="Offline metrics per evaluated model version (monitoring.metrics.model_metrics_record)",
            location=f"s3://{data.destination.bucket_name}/{MODEL_METRICS_PREFIX}/",
            columns=[(n, _GLUE_TYPES[t]) for n, t in spec.columns],
        )  # fmt: skip
