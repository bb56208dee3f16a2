"""The main job end to end on small data, and what a user sees when their files are bad."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import pytest

from recsys.cli import main
from tests import HEAVY_TIMEOUT_S

pytestmark = pytest.mark.timeout(HEAVY_TIMEOUT_S)  # runs the whole local flow

SMALL = ["--users", "150", "--products", "60", "--interactions", "3000", "--days", "30"]


def test_main_job_runs_end_to_end_and_reconciles_rows(tmp_path, capsys):
    assert main(["run", "--workdir", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    for table in ("users", "products", "interactions"):
        line = next(line for line in out.splitlines() if line.strip().startswith(table) and "curated" in line)
        rows_in, curated, quarantined = (int(n.replace(",", "")) for n in re.findall(r"[\d,]+(?=\s|$)", line)[:3])
        assert rows_in == curated + quarantined, line
        if table == "interactions":
            assert quarantined > 0, "the generator's dirty rows must reach quarantine"
    assert "MISMATCH" not in out
    # the upload's event starts curation; the local clock's 02:00 firing of the Nightly rule starts the nightly run
    assert "states executed, input the Object Created event (aws.s3)" in out
    assert re.search(r"clock: \w{3} [\d-]+ 02:00 UTC, cron\(0 2 \* \* \? \*\) -> recsys-dev-data/Nightly", out), out
    assert "states executed, input the Scheduled Event (aws.events)" in out
    for name in ("feature_recently_viewed", "feature_purchased_together", "feature_category_popularity"):
        assert f"feature table {name}" in out
        assert (tmp_path / "lake" / "features" / name).exists()
    assert "quarantine_interactions" in out  # registered in the (moto) Glue catalogue
    training = pq.read_table(tmp_path / "lake" / "training" / "interactions")  # the workflow's UNLOAD, mirrored
    assert {"user_id", "product_id", "event_type", "timestamp"} <= set(training.column_names)
    # the stream's archive (n views + 1 malformed record) reaches the next training set, nothing lost
    views = int(re.search(r"clickstream: (\d+) views", out).group(1))
    assert views >= 1
    # plus the SIMULATED shoppers' clicks, carts and purchases on captured answers (recsys/local/attribution.py)
    shop = re.search(r"SIMULATED shoppers: .* -> ([\d,]+) clicks, ([\d,]+) carts, ([\d,]+) purchases", out)
    simulated = sum(int(n.replace(",", "")) for n in shop.groups())
    assert simulated > 0 and "attribution (sql/attribution_daily.sql on DuckDB, window 24 h), SIMULATED" in out
    rows = views + simulated
    assert re.search(rf"clickstream\s+in\s+{rows + 1:,}\s+curated\s+{rows:,}\s+quarantined\s+1\s", out), out
    before = int(re.search(r"training set ([\d,]+) rows", out).group(1).replace(",", ""))
    assert f"next pipeline run: {before + rows:,} rows (+{rows:,} from the clickstream)" in out
    stream_rows = training.filter(pa.compute.equal(training["user_id"], "stream-shopper-001"))
    assert stream_rows.num_rows == views
    # dev's experiment_mode ab: the nightly retrain's version is served as the Challenger beside the Champion
    assert "model-package/recsys-dev-recommender/2 (Approved" in out
    assert "production variant Champion   model recsys-dev-recommender-1-" in out
    assert "production variant Challenger model recsys-dev-recommender-2-" in out
    served = re.search(r"requests answered by Champion ([\d,]+), Challenger ([\d,]+)", out)
    assert served and all(int(n.replace(",", "")) > 0 for n in served.groups())
    verdicts = re.findall(r"A/B verdict \((CTR|purchase rate), two-proportion z-test\), SIMULATED: Champion: .* "
                          r"p = [\d.e-]+: (Champion wins|Challenger wins|no significant difference) at alpha 0.05", out)
    assert [m for m, _ in verdicts] == ["CTR", "purchase rate"], out
    # the last stage: a shopper forgotten in every store, and the deployed endpoint (its Model's Environment names the
    # suppression list) answers them as a new shopper from then on
    assert "user gone from every store scanned: yes" in out
    assert re.search(r"endpoint after the forget: u\d+ -> \[\w+\] .* = a new shopper's answer: not personalised "
                     r"\(was \[personalized.*; suppression list s3://recsys-dev-\S+/training/erasure_suppression.json, "
                     r"from the deployed Model's Environment\)", out), out


def test_main_job_on_user_files_with_interactions_only(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text(
        "user_id,product_id,event_type,rating,timestamp\n"
        "u1,p1,view,,2026-01-01T10:00:00+05:30\n"
        "u1,p2,purchase,,1767250000\n"
        "u2,p1,teleport,,2026-01-01T11:00:00Z\n"
        "u2,p1,view,,2026-01-01T11:00:00Z,extra-field\n"
    )
    (data / "clickstream.jsonl").write_text(  # an archive of stream events, as Firehose writes them
        '{"user_id": "u3", "product_id": "p1", "event_type": "view", "timestamp": 1767260000}\n'
        '{"user_id": "u3", "product_id": "p2", "event_type": "add_to_cart", "rating": null, "timestamp": "bad"}\n'
        "{truncated\n"
    )
    assert main(["run", "--data", str(data), "--workdir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"interactions\s+in\s+4\s+curated\s+2\s+quarantined\s+2", out), out
    assert re.search(r"clickstream\s+in\s+3\s+curated\s+1\s+quarantined\s+2", out), out
    assert "training set 3 rows" in out  # 2 curated interactions + 1 curated stream event
    assert "unknown_event_type" in out and "malformed_line" in out
    assert "products      not provided" in out


def test_a_real_shops_order_lines_without_categories_give_revenue_and_finish(tmp_path, capsys):
    """A real retailer's export: order lines with quantity and unit price, a catalogue with prices but no
    category column, a quarter of the lines without a customer and a few returns (negative quantity)."""
    data = tmp_path / "data"
    data.mkdir()
    lines = ["user_id,product_id,event_type,rating,timestamp,quantity,unit_price"]
    for n in range(400):
        user = "" if n % 4 == 0 else f"c{n % 37}"
        quantity = "-1" if n % 50 == 7 else str(1 + n % 3)
        lines.append(f"{user},sku{(n * 7) % 23},purchase,,{1767250000 + 3600 * n},{quantity},{2.5 + n % 5}")
    (data / "interactions.csv").write_text("\n".join(lines) + "\n")
    (data / "products.csv").write_text(
        "product_id,product_url,price\n" + "".join(f"sku{i},https://shop.example/sku{i},{3 + i}\n" for i in range(23))
    )
    assert main(["run", "--data", str(data), "--workdir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"products\s+in\s+23\s+curated\s+23\s+quarantined\s+0", out), out
    assert "missing_user_id" in out and "invalid_quantity" in out
    funnel = out[out.index("funnel and revenue") :].splitlines()[1:7]
    header = funnel[0].split()
    revenue = [float(line.split()[header.index("revenue")]) for line in funnel[1:] if line.strip()]
    assert revenue and all(r > 0 for r in revenue), funnel


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,product_id,event_type,rating\nu1,p1,view,\n", "timestamp"),  # missing required column
        ("", "empty"),
    ],
)
def test_bad_user_file_gives_one_clear_line_not_a_traceback(tmp_path, capsys, content, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text(content)
    assert main(["run", "--data", str(data), "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err.lower() and "Traceback" not in err


def test_a_header_without_rows_stops_before_anything_is_provisioned(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,product_id,event_type,rating,timestamp\n")
    assert main(["run", "--data", str(data), "--workdir", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "no rows" in captured.err and "Traceback" not in captured.err
    assert "Local AWS" not in captured.out and not (tmp_path / "run" / "lake").exists()


def test_a_file_whose_every_row_is_quarantined_stops_after_curation_and_keeps_the_rows(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text(
        "user_id,product_id,event_type,rating,timestamp\n,p1,view,,2026-01-01\nu1,p2,teleport,,2026-01-01\n")
    assert main(["run", "--data", str(data), "--workdir", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert "none of its 2 rows passed" in captured.err and "missing_user_id" in captured.err
    assert "SageMaker pipeline" not in captured.out
    assert (tmp_path / "run" / "lake" / "quarantine" / "interactions").exists()  # never lost


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path / "nope")]) == 2
    assert "--data folder not found" in capsys.readouterr().err
