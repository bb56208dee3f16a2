"""The data stack declares the capture table the attribution SQL reads: JSON lines under capture/, nested columns."""

from __future__ import annotations

import pytest

from recsys.local.capture import CAPTURE_TABLE as LOCAL_NAME
from settings.config import load_project_config
from stacks.factories.catalog import CAPTURE_TABLE, JSON_SERDE
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


def test_capture_table_is_json_over_the_capture_prefix_with_the_capture_columns(synth):
    cfg = load_project_config("dev")
    template = synth("dev")[1][f"{cfg.prefix}-data"]
    [table] = [
        t["Properties"]["TableInput"]
        for t in resources(template, "AWS::Glue::Table").values()
        if t["Properties"]["TableInput"]["Name"] == CAPTURE_TABLE
    ]
    assert CAPTURE_TABLE == LOCAL_NAME
    sd = table["StorageDescriptor"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == JSON_SERDE
    assert str(sd["Location"]["Fn::Join"][1][-1]).endswith("/capture/")
    columns = {c["Name"]: c["Type"] for c in sd["Columns"]}
    assert columns["eventmetadata"] == "struct<eventid:string,inferencetime:string>"
    assert "endpointoutput:struct<" in columns["capturedata"] and "data:string" in columns["capturedata"]
