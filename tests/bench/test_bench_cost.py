"""bench/bench_cost.py: the price table is sourced and dated, and the bill is the arithmetic it claims."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_cost  # noqa: E402

INSTANCES = {"training_instance_type": "ml.m5.xlarge", "processing_instance_type": "ml.m5.xlarge",
             "spark_instance_type": "ml.r5.4xlarge", "endpoint_instance_type": "ml.c5.large",
             "spark_min_interactions": 10_000, "spark_max_instances": 20, "enable_analytics": False}


def test_every_price_names_its_source_page_and_the_date_it_was_recorded() -> None:
    doc = bench_cost.load_prices()
    assert doc["region"] == "ap-south-1" and "not re-verified online" in doc["label"]
    for name, line in doc["prices"].items():
        assert line["source"].startswith("https://aws.amazon.com/"), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", line["recorded"]), name
        assert line["usd"] > 0 and line["unit"], name
    for name, line in bench_cost.load_assumptions()["measured"].items():
        assert line["source"], name


def test_a_price_without_a_source_is_refused_naming_the_file_and_the_price(tmp_path: Path) -> None:
    doc = json.loads(bench_cost.PRICES.read_text())
    del doc["prices"]["athena_tb_scanned"]["source"]
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(bench_cost.CostError, match=r"prices\.json: price 'athena_tb_scanned' has no source"):
        bench_cost.load_prices(bad)
    assert bench_cost.main(["--prices", str(bad), "--out", str(tmp_path)]) == 2


def test_tiers_charge_each_band_at_its_own_price() -> None:
    line = {"usd": 0.2, "tiers": [[20_000, 0.2], [180_000, 0.1], [None, 0.05]]}
    assert bench_cost.tiered(25_000, line) == pytest.approx(20_000 * 0.2 + 5_000 * 0.1)
    assert bench_cost.tiered(300_000, line) == pytest.approx(4_000 + 18_000 + 100_000 * 0.05)
    assert bench_cost.tiered(7, {"usd": 3.0}) == 21.0


def tiny_model() -> bench_cost.Model:
    """1,000 shoppers with round numbers: every price 1 USD a unit (no tiers), every overhead zero."""
    prices = copy.deepcopy(bench_cost.load_prices())
    for line in prices["prices"].values():
        line["usd"] = 1.0
        line.pop("tiers", None)
    assumptions = copy.deepcopy(bench_cost.load_assumptions())
    load = {"events_per_shopper_per_month": 3, "training_window_months": 2, "pipeline_runs_per_month": 2,
            "requests_per_shopper_per_day": 1, "job_overhead_minutes": 0, "athena_scans_per_run": 5,
            "curated_bytes_per_interaction": 100, "personalize_batch_runs_per_month": 4,
            "personalize_tps_provisioned_share_of_peak": 1.0, "peak_to_mean": 3, "raw_bytes_per_event": 1000}
    for key, value in load.items():
        assumptions["load"][key]["value"] = value
    assumptions["measured"]["single_interactions_per_core_second"]["value"] = 100
    return bench_cost.Model(prices, assumptions, INSTANCES)


def test_the_bill_of_a_tiny_shop_is_the_hand_computed_arithmetic() -> None:
    bill = tiny_model().bill(1_000)
    line = {r["item"].split(" (")[0]: r for r in bill["lines"] if r["section"] != bench_cost.ML}
    line["training"] = bill["lines"][0]
    # 1,000 x 3 events x 2 months = 6,000 interactions < 10,000: train.py on ml.m5.xlarge (4 vCPU) at 100/core-s:
    # 15 s a run, 2 runs = 1/120 instance-hours at 1 USD.
    assert bill["training_interactions"] == 6_000
    assert "train.py on 1 x ml.m5.xlarge" in line["training"]["detail"]
    assert line["training"]["quantity"] == pytest.approx(6_000 / (100 * 4) * 2 / 3600)
    # Athena: 6,000 x 100 B x 5 scans x 2 runs = 6 MB = 6e-6 TB.
    assert line["Athena"]["quantity"] == pytest.approx(6e-6)
    # Personalize: the month's 3,000 events x 1,000 B = 0.003 GB; batch 1,000 x 4 runs = 4 thousand lists.
    assert line["data ingestion"]["quantity"] == pytest.approx(0.003)
    assert line["batch recommendations"]["usd"] == pytest.approx(4.0)
    # Requests: 1,000 a day -> the peak is 3 x the mean (under 1 TPS): 1 TPS provisioned for 730 hours.
    assert line["real-time recommendations"]["quantity"] == pytest.approx(730)
    assert bill["requests_per_month"] == pytest.approx(1_000 * bench_cost.DAYS_PER_MONTH)
    sections = bill["sections"]
    assert bill["this_stack_usd"] == pytest.approx(sections[bench_cost.ML] + sections[bench_cost.SHARED])
    assert sections[bench_cost.SHARED] == pytest.approx(sum(r["usd"] for r in bill["lines"]
                                                            if r["section"] == bench_cost.SHARED), abs=0.01)


def test_above_spark_min_interactions_the_spark_cluster_trains() -> None:
    bill = tiny_model().bill(10_000)  # 60,000 interactions
    training = bill["lines"][0]
    assert training["detail"] == "Spark on 2 x ml.r5.4xlarge" and training["price"].startswith("sagemaker_processing")
