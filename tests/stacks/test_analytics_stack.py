"""QuickSight analytics: only with enable_analytics; datasets from sql/, dashboard visuals from the chart specs."""

from __future__ import annotations

import json

import pytest

from monitoring.dashboard import CHARTS, DATASETS
from settings.config import load_project_config
from sql.library import read_query
from stacks.analytics_stack import custom_sql
from tests.monitoring import conftest as monitoring_fixtures
from tests.stacks.conftest import resources

pytestmark = pytest.mark.xdist_group("synth")
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
            assert table["CustomSql"]["SqlQuery"] == custom_sql(spec.query)
            assert custom_sql(spec.query) in read_query(spec.query)
            assert [c for c, _ in spec.columns] == [c for c in tiny_athena.query(spec.query).columns]
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
