"""The online-ctr-drop alarm's producer on AWS: the curation workflow runs the click-through query over the
attribution SQL (the configured window) on Athena and puts the three click-through metrics."""

from __future__ import annotations

import pytest

from monitoring.metrics import CLICK_THROUGH_COLUMNS, NAMESPACE, click_through_sql
from settings.config import load_project_config
from sql.library import attribution_query
from tests import HEAVY_TIMEOUT_S
from tests.stacks.test_data_stack import _state_machine_definition

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


def test_workflow_publishes_attributed_click_through_from_the_attribution_sql(data_template):
    cfg = load_project_config("dev")
    states = _state_machine_definition(data_template)["States"]
    query, read = states["Attributed click-through"], states["Read click-through"]
    publish = states["Publish click-through"]
    assert query["Parameters"]["QueryString"] == click_through_sql(attribution_query(cfg.attribution_window_hours))
    assert (query["Next"], read["Next"]) == ("Read click-through", "Publish click-through")
    assert publish["Parameters"]["Namespace"] == NAMESPACE
    data = publish["Parameters"]["MetricData"]
    assert [d["MetricName"] for d in data] == [name for _, name, _ in CLICK_THROUGH_COLUMNS]
    assert all(d["Dimensions"] == [{"Name": "EndpointName", "Value": cfg.endpoint_name}] for d in data)
    for state in (query, read, publish):  # nothing captured yet: nothing published, the run goes on
        assert state["Catch"][0]["Next"] == "click-through done"
