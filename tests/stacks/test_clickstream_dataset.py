"""The clickstream dataset reads the folders Firehose writes, through DataBrew's documented path parameters."""

from __future__ import annotations

import re

import pytest

from glue_jobs.datasets import dataset_key, path_parameters, selected_keys, template_parameters
from settings.config import CLICKSTREAM
from tests import HEAVY_TIMEOUT_S
from tests.stacks.conftest import resources

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


def _dataset(template, suffix: str) -> dict:
    datasets = resources(template, "AWS::DataBrew::Dataset").values()
    (props,) = [r["Properties"] for r in datasets if r["Properties"]["Name"].endswith(suffix)]
    return props


def _firehose_key(synth, day: str) -> str:
    """An object key as the deployed delivery stream writes it, from its Prefix in the streaming template."""
    _, templates = synth("dev")
    (stream,) = resources(templates["recsys-dev-streaming"], "AWS::KinesisFirehose::DeliveryStream").values()
    prefix = stream["Properties"]["ExtendedS3DestinationConfiguration"]["Prefix"]
    year, month, dd = day.split("-")
    values = {"yyyy": year, "MM": month, "dd": dd}
    return re.sub(r"!\{timestamp:(\w+)\}", lambda m: values[m.group(1)], prefix) + "recsys-1-2026-12-04-00-00-00-x.gz"


def test_the_clickstream_dataset_names_its_date_folders_with_path_parameters(data_template):
    props = _dataset(data_template, f"-{CLICKSTREAM}-raw")
    key = props["Input"]["S3InputDefinition"]["Key"]
    assert key == dataset_key(CLICKSTREAM)
    assert re.findall(r"\{(\w+)\}", key) == ["year", "month", "day"]
    assert template_parameters(props["PathOptions"]) == path_parameters(CLICKSTREAM)
    assert set(template_parameters(props["PathOptions"])) == {"year", "month", "day"}


def test_the_template_definition_selects_what_firehose_writes_and_nothing_beside_it(synth, data_template):
    props = _dataset(data_template, f"-{CLICKSTREAM}-raw")
    written = [_firehose_key(synth, "2026-12-04"), _firehose_key(synth, "2027-01-31")]
    stray = ["raw/clickstream/loose.jsonl", "raw/clickstream/year=2026/month=12/day=04/late/x.gz"]
    chosen = selected_keys(props["Input"]["S3InputDefinition"]["Key"], template_parameters(props["PathOptions"]),
                           [*stray, *written])  # fmt: skip
    assert chosen == sorted(written)


def test_the_table_datasets_stay_plain_folders(data_template):
    for table in ("users", "products", "interactions"):
        props = _dataset(data_template, f"-{table}-raw")
        assert props["Input"]["S3InputDefinition"]["Key"] == f"raw/{table}/"
        assert "PathOptions" not in props


def test_a_path_definition_the_local_run_cannot_read_exactly_is_refused():
    key = dataset_key(CLICKSTREAM)
    params = path_parameters(CLICKSTREAM)
    with pytest.raises(ValueError, match="filter"):
        selected_keys(key, {**params, "day": {"Name": "day", "Type": "String", "Filter": {"Expression": "x"}}}, [])
    with pytest.raises(ValueError, match="no definition"):
        selected_keys(key, {k: v for k, v in params.items() if k != "day"}, [])
    with pytest.raises(ValueError, match="regular-expression"):
        selected_keys("raw/clickstream/<.*>/", {}, [])
