"""QuickSight analytics: only with enable_analytics; datasets from sql/, dashboard visuals from the chart specs."""

from __future__ import annotations

import json

import pytest

from monitoring.dashboard import CHARTS, DATASETS
from settings.config import load_project_config
from sql.library import deployed_query
from stacks.analytics_stack import custom_sql
from tests import HEAVY_TIMEOUT_S
from tests.monitoring import conftest as monitoring_fixtures
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]
tiny_athena = monitoring_fixtures.tiny_athena  # the small curated tables, as a fixture here too


@pytest.fixture(scope="module")
def prod(synth):
    _, templates = synth("prod")
    return templates["recsys-prod-analytics"]


def test_analytics_stack_is_built_only_when_enabled(synth):
    assert load_project_config("dev").enable_analytics is False
    _, dev = synth("dev")
    assert "recsys-dev-analytics" not in dev
    assert "recsys-prod-analytics" in synth("prod")[1]


def test_data_source_queries_the_athena_workgroup_with_its_own_role(prod):
    (source,) = resources(prod, "AWS::QuickSight::DataSource").values()
    athena = source["Properties"]["DataSourceParameters"]["AthenaParameters"]
    assert athena["WorkGroup"] == load_project_config("prod").athena_workgroup
    assert "RoleArn" in athena


def test_datasets_use_the_same_sql_and_declare_its_columns(prod, tiny_athena):
    datasets = {
        d["Properties"]["DataSetId"]: d["Properties"] for d in resources(prod, "AWS::QuickSight::DataSet").values()
    }
    assert set(datasets) == {f"recsys-prod-{k}" for k in DATASETS}
    for spec in DATASETS.values():
        (table,) = datasets[f"recsys-prod-{spec.id}"]["PhysicalTableMap"].values()
        if spec.query:
            cfg = load_project_config("prod")
            settings = (cfg.attribution_window_hours, cfg.experiment_alpha)
            assert table["CustomSql"]["SqlQuery"] == custom_sql(spec.query, *settings)
            assert custom_sql(spec.query, *settings) in deployed_query(spec.query, *settings)
            ran = tiny_athena.query(deployed_query(spec.query, *settings))
            assert [c for c, _ in spec.columns] == list(ran.columns)
        else:
            assert table["RelationalTable"]["Name"] == "model_metrics"


def test_dashboard_has_a_visual_per_chart_and_grants_the_principal(prod):
    (dash,) = resources(prod, "AWS::QuickSight::Dashboard").values()
    props = dash["Properties"]
    text = json.dumps(props["Definition"])
    for chart in CHARTS:
        assert f'"VisualId": "{chart.id}"' in text
    assert [s["Name"] for s in props["Definition"]["Sheets"]] == ["Sales", "Model"]
    assert props["Permissions"][0]["Principal"] == load_project_config("prod").quicksight_principal_arn


def _columns_used(node, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        if set(node) == {"DataSetIdentifier", "ColumnName"}:
            out.append((node["DataSetIdentifier"], node["ColumnName"]))
        for value in node.values():
            _columns_used(value, out)
    elif isinstance(node, list):
        for value in node:
            _columns_used(value, out)
    return out


def test_every_column_a_visual_reads_is_a_dataset_column_or_a_calculated_field(prod):
    (dash,) = resources(prod, "AWS::QuickSight::Dashboard").values()
    definition = dash["Properties"]["Definition"]
    calculated = {(f["DataSetIdentifier"], f["Name"]) for f in definition["CalculatedFields"]}
    declared = {(d, c) for d, spec in DATASETS.items() for c, _ in spec.columns}
    used = _columns_used(definition, [])
    assert used and set(used) <= declared | calculated, set(used) - declared - calculated


def test_rates_are_ratios_of_sums_and_top_n_folds_the_rest_into_other(prod):
    (dash,) = resources(prod, "AWS::QuickSight::Dashboard").values()
    definition = dash["Properties"]["Definition"]
    fields = {f["Name"]: f["Expression"] for f in definition["CalculatedFields"]}
    assert fields["view_to_cart"] == "sum({carts}) / sum({views})"
    assert fields["cart_to_purchase"] == "sum({purchases}) / sum({carts})"
    visuals = {next(iter(v.values()))["VisualId"]: v for s in definition["Sheets"] for v in s["Visuals"]}
    revenue = visuals["revenue_by_day"]["LineChartVisual"]["ChartConfiguration"]["SortConfiguration"]
    assert revenue["ColorItemsLimitConfiguration"] == {"ItemsLimit": 5, "OtherCategories": "INCLUDE"}
    top = visuals["top_products"]["BarChartVisual"]["ChartConfiguration"]["SortConfiguration"]
    assert top["CategoryItemsLimit"] == {"ItemsLimit": 10, "OtherCategories": "EXCLUDE"}
    model = visuals["model_ndcg"]["LineChartVisual"]["ChartConfiguration"]["SortConfiguration"]["CategorySort"]
    assert model[0]["ColumnSort"]["SortBy"]["ColumnName"] == "evaluated_at"


def test_sales_sheet_has_a_tile_per_kpi_and_a_date_range_over_all_dated_datasets(prod):
    from monitoring.dashboard import TILES

    (dash,) = resources(prod, "AWS::QuickSight::Dashboard").values()
    definition = dash["Properties"]["Definition"]
    sales = definition["Sheets"][0]
    kpis = [v["KPIVisual"] for v in sales["Visuals"] if "KPIVisual" in v]
    assert [k["VisualId"] for k in kpis] == [f"tile_{t.id}" for t in TILES]
    assert all(k["ChartConfiguration"]["FieldWells"]["TrendGroups"] for k in kpis)
    (group,) = definition["FilterGroups"]
    assert group["CrossDataset"] == "ALL_DATASETS"
    (control,) = sales["FilterControls"]
    assert control["DateTimePicker"]["SourceFilterId"] == group["Filters"][0]["TimeRangeFilter"]["FilterId"]
    dated = [d for d, spec in DATASETS.items() if "event_date" in dict(spec.columns)]
    assert {"kpi_daily_funnel", "enriched_interactions"} <= set(dated)


def test_the_attribution_dataset_uses_the_configured_window() -> None:
    assert "INTERVAL '48' HOUR" in custom_sql("attribution_daily", 48, 0.05)
    assert "INTERVAL '48' HOUR" not in custom_sql("attribution_daily", 24, 0.05)
    assert custom_sql("kpi_daily_funnel", 48, 0.05) == custom_sql("kpi_daily_funnel", 24, 0.01)


def test_the_verdict_dataset_carries_the_configured_window_and_alpha(prod) -> None:
    cfg = load_project_config("prod")
    sql = custom_sql("ab_verdict", 48, 0.01)
    assert "INTERVAL '48' HOUR" in sql and "CAST(0.01 AS DOUBLE) AS alpha" in sql and not sql.startswith("--")
    (dataset,) = [d for d in resources(prod, "AWS::QuickSight::DataSet").values()
                  if d["Properties"]["DataSetId"] == "recsys-prod-ab_verdict"]  # fmt: skip
    (table,) = dataset["Properties"]["PhysicalTableMap"].values()
    assert f"CAST({cfg.experiment_alpha!r} AS DOUBLE) AS alpha" in table["CustomSql"]["SqlQuery"]


def test_the_model_sheet_has_the_verdict_table_with_every_column_of_its_spec(prod) -> None:
    from monitoring.dashboard import TABLES

    (dash,) = resources(prod, "AWS::QuickSight::Dashboard").values()
    model = dash["Properties"]["Definition"]["Sheets"][1]
    tables = {v["TableVisual"]["VisualId"]: v["TableVisual"] for v in model["Visuals"] if "TableVisual" in v}
    (spec,) = TABLES
    wells = tables[spec.id]["ChartConfiguration"]["FieldWells"]["TableAggregatedFieldWells"]
    shown = [next(iter(f.values()))["Column"]["ColumnName"] for f in wells["GroupBy"] + wells["Values"]]
    assert sorted(shown) == sorted(c for c, _ in spec.columns)
    assert [next(iter(f.values()))["Column"]["ColumnName"] for f in wells["GroupBy"]] == ["metric", "verdict"]
