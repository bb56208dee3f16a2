"""The raw-data path (CONTRACTS §1) under corrupted files and dirty rows: a file is either refused with a
``RawDataError`` whose message names the file and the problem, or read, and then every row ends curated or
quarantined with a reason, with in = curated + quarantined exactly. Row counts come from how each file was
built (or Python's csv module), never from the reader under test.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glue_jobs.raw_reader import RawDataError
from glue_jobs.schema import EVENT_TYPES, QUARANTINE_REASON_COLUMN, RAW_COLUMNS
from recsys.generator import GeneratorConfig, generate_to_dir
from recsys.local.athena import LocalAthena
from recsys.local.curation import curation_counts, run_curation
from recsys.local.moto_server import LocalAws
from recsys.local.provision import provision, upload_raw
from settings.config import QUARANTINE_PREFIX, load_project_config

from .corpus import HEADER, corrupted_files, csv_records, curate, reconciliation_problems

pytestmark = pytest.mark.xdist_group("reliability-raw")
CORRUPTED = corrupted_files()
#: Every reason the interactions recipe and the reader may give (glue_jobs/recipes/interactions.json).
REASONS = {
    "duplicate_row",
    "missing_user_id",
    "missing_product_id",
    "unknown_event_type",
    "invalid_rating",
    "rating_on_non_rating_event",
    "invalid_timestamp",
    "malformed_line",
}
COLUMNS = list(RAW_COLUMNS["interactions"])
#: Generator dirt kinds (recsys.generator) that must end in quarantine, by reason; the rest (impossible ages,
#: blank genders, missing categories) are repaired in the curated table instead.
QUARANTINED_DIRT = {
    "users": {"missing_user_id": ["missing_user_id"]},
    "products": {
        "invalid_price": ["negative_price", "zero_price", "non_numeric_price"],
        "duplicate_product_id": ["duplicate_product_id"],
    },
    "interactions": {
        "missing_user_id": ["missing_user_id"],
        "missing_product_id": ["missing_product_id"],
        "unknown_event_type": ["unknown_event_type"],
        "invalid_rating": ["rating_out_of_range"],
        "rating_on_non_rating_event": ["rating_on_non_rating_event"],
        "invalid_timestamp": ["unparseable_timestamp"],
        "duplicate_row": ["duplicate_row"],
    },
}


def assert_curated_rows_meet_the_contract(table: str, curated: pd.DataFrame) -> None:
    """What downstream may rely on for every curated interaction (CONTRACTS §1, glue_jobs/schema.py)."""
    if table != "interactions" or curated.empty:
        return
    assert (curated["user_id"].astype(str).str.strip() != "").all() and curated["user_id"].notna().all()
    assert (curated["product_id"].astype(str).str.strip() != "").all() and curated["product_id"].notna().all()
    assert curated["event_type"].isin(EVENT_TYPES).all()
    is_rating = curated["event_type"] == "rating"
    assert curated.loc[is_rating, "rating"].between(1, 5).all()
    assert curated.loc[~is_rating, "rating"].isna().all()
    assert curated["event_time"].notna().all()
    assert curated["event_time"].between(pd.Timestamp("2000-01-01"), pd.Timestamp("2100-01-01")).all()


@pytest.mark.parametrize("name", list(CORRUPTED))
def test_corrupted_file_is_refused_by_name_or_fully_reconciled(name: str) -> None:
    data, expect = CORRUPTED[name]
    file_name = f"s3://source/raw/interactions/{name}.csv"
    if isinstance(expect, str):
        with pytest.raises(RawDataError) as info:
            curate(data, name=file_name)
        message = str(info.value)
        assert message.startswith(f"{file_name}: "), "the message names the file first"
        assert re.search(expect, message), message
        assert "Traceback" not in message and len(message) < 600
        return
    result = curate(data, name=file_name)
    assert not reconciliation_problems(result, expect)
    assert set(result.reasons) <= REASONS
    try:  # a second, independent count where the bytes are plain UTF-8 CSV
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return
    if "\x1f\x8b" not in text[:2]:
        assert csv_records(text) == expect


def test_a_row_longer_than_a_parse_block_is_read_not_a_crash() -> None:
    """Regression: pyarrow's CSV reader raised ArrowInvalid ("straddling object") for a row over 1 MiB."""
    data = f"{HEADER}\nu1,{'x' * (3 << 20)},view,,1735689600\nu2,p2,view,,1735689600\n".encode()
    result = curate(data)
    assert (result.rows_in, result.curated) == (2, 2)


def test_a_quoted_newline_on_a_block_boundary_does_not_split_its_row() -> None:
    """Regression: without newlines_in_values, a quoted newline falling where pyarrow cut its 1 MiB blocks
    turned one valid row into two malformed ones (60,000 rows in, 60,001 accounted for)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 60_000
    writer.writerows([f"u{i}", f"p\n{i}" if i % 7 == 0 else f"p{i}", "view", "", "1735689600"] for i in range(n))
    result = curate(buf.getvalue().encode())
    assert not reconciliation_problems(result, n)
    assert result.curated == n


def test_timestamps_beyond_the_nanosecond_range_are_quarantined_not_a_crash() -> None:
    """Regression: '9999-12-31T23:59:59+14:00' raised OutOfBoundsDatetime inside UNIX_TIME."""
    data = f"{HEADER}\nu1,p1,view,,9999-12-31T23:59:59+14:00\nu2,p2,view,,0001-01-01T00:00:00Z\n".encode()
    result = curate(data)
    assert not reconciliation_problems(result, 2)
    assert result.reasons == {"invalid_timestamp": 2}


# ----------------------------------------------------------------------- generated dirty tables

ids = st.sampled_from(["u1", "u2", "p1", "p2", " u3 ", "", "   ", "ü-id", "a,b", 'q"t', "new\nline", "\x00"]) | st.text(
    st.characters(exclude_categories=("Cs",)), max_size=8
)
event_types = st.sampled_from([*EVENT_TYPES, "VIEW", " view", "purchase ", "click", "", "rating\n"]) | st.text(
    max_size=6
)
ratings = st.sampled_from(["", "1", "5", "3.0", " 4 ", "0", "6", "2.5", "-1", "nan", "inf", "abc", "1e400", "5.00"])
timestamps = st.sampled_from(
    [
        "2025-01-01T00:00:00+00:00",
        "2025-06-01T12:00:00Z",
        "2025-02-01T10:00:00+05:30",
        "1735689600",
        "1735689600.5",
        " 1735689600 ",
        "",
        "garbage",
        "2025-13-45T00:00:00Z",
        "9999-12-31T23:59:59+14:00",
        "0",
        "-1",
        "1e300",
        "2025-01-01",
        "2025-01-01T00:00:00",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:01Z",
        "NaN",
        "2025-01-01T00:00:00+25:00",
    ]
) | st.integers(-(2**63), 2**63).map(str)
rows = st.lists(st.tuples(ids, ids, event_types, ratings, timestamps), max_size=60)


def _table_bytes(table_rows: list[tuple[str, ...]], fmt: str) -> bytes:
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(
            pa.table({c: pa.array([r[i] for r in table_rows], pa.string()) for i, c in enumerate(COLUMNS)}), buf
        )
        return buf.getvalue()
    buf = io.StringIO()
    writer = csv.writer(buf)  # quotes delimiters, quotes and line breaks inside cells
    writer.writerow(COLUMNS)
    writer.writerows(table_rows)
    return buf.getvalue().encode("utf-8")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_rows=rows, duplicates=st.lists(st.integers(0, 59), max_size=5), fmt=st.sampled_from(["csv", "parquet"]))
def test_generated_dirty_interactions_reconcile_and_only_clean_rows_are_curated(
    table_rows: list[tuple[str, ...]], duplicates: list[int], fmt: str
) -> None:
    table_rows = table_rows + [table_rows[i] for i in duplicates if i < len(table_rows)]
    data = _table_bytes(table_rows, fmt)
    if fmt == "csv":
        assert csv_records(data.decode("utf-8")) == len(table_rows)  # the writer's own framing is sound
    result = curate(data, fmt=fmt, name=f"interactions.{fmt}")
    assert not reconciliation_problems(result, len(table_rows))
    assert set(result.reasons) <= REASONS, result.reasons
    assert_curated_rows_meet_the_contract("interactions", result.curated_rows)
    if duplicates and any(i < len(table_rows) - len(duplicates) for i in duplicates):
        assert result.quarantined >= 1  # an exact copy of a row is never curated twice


# ----------------------------------------------------------------------------- generator data


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], dict[str, dict[str, int]]]:
    out = tmp_path_factory.mktemp("generated")
    summary = generate_to_dir(
        out, GeneratorConfig(n_users=200, n_products=80, n_interactions=4000, days=20, dirty_fraction=0.05)
    )
    return out, summary.rows, summary.dirty_rows


def _corrupt_lines(text: str, seed: int) -> str:
    """Break ~5% of the data lines in ways that keep one record per line: cut fields, add fields, garble."""
    rng = np.random.default_rng(seed)
    lines = text.splitlines()
    for i in rng.choice(np.arange(1, len(lines)), size=max(1, len(lines) // 20), replace=False):
        kind = int(rng.integers(3))
        lines[i] = (
            lines[i].rsplit(",", 2)[0]
            if kind == 0
            else lines[i] + ",extra"
            if kind == 1
            else lines[i].replace(",", ",\u00a0\ufffd", 1)
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("table", ["users", "products", "interactions"])
def test_generator_data_with_broken_lines_reconciles_and_catches_every_injected_dirty_row(
    table: str, generated: tuple[Path, dict[str, int], dict[str, dict[str, int]]]
) -> None:
    folder, counts, dirty = generated
    text = (folder / f"{table}.csv").read_text(encoding="utf-8")
    clean = curate(text.encode(), table=table, name=f"{table}.csv")
    assert not reconciliation_problems(clean, counts[table])
    for reason, kinds in QUARANTINED_DIRT[table].items():  # the generator's injected dirt, by the reason it gets
        assert clean.reasons.get(reason, 0) >= sum(dirty[table][k] for k in kinds), (reason, clean.reasons)
    broken = curate(_corrupt_lines(text, seed=len(table)).encode(), table=table, name=f"{table}.csv")
    assert not reconciliation_problems(broken, counts[table])
    assert broken.reasons.get("malformed_line", 0) >= 1


@pytest.mark.xdist_group("data_template")
def test_the_main_job_reconciles_a_corrupted_file_through_moto_s3(
    aws_env: LocalAws, tmp_path: Path, data_template_path: Path
) -> None:
    """The real main-job step (the curation workflow's jobs: S3 get -> read_raw -> recipes -> curated + quarantine
    Parquet), not the helper."""
    rows = [
        "u1,p1,view,,1735689600",
        "u1,p1,view,,1735689600",
        ",p2,view,,1735689600",
        "u3,p3,click,,1735689600",
        "u4,p4,rating,9,1735689600",
        "u5,p5,view,,yesterday",
        "u6,p6",
        'u7,"p\n7",view,,1735689600',
        "u8,p8,purchase,,2025-03-01T10:00:00+05:30,extra",
    ]
    raw = tmp_path / "interactions.csv"
    raw.write_bytes(("\ufeff" + HEADER + "\r\n" + "\r\n".join(rows) + "\r\n").encode())
    res = provision(load_project_config(), aws_env)
    uri = upload_raw(aws_env, res, {"interactions": raw})["interactions"]
    assert uri.endswith("interactions.csv")
    lake = tmp_path / "lake"
    run = run_curation(load_project_config(), aws_env, res, lake, LocalAthena({}), template=data_template_path)
    counts = curation_counts(run.runs)["interactions"]
    curated = pd.read_parquet(tmp_path / "lake" / "curated" / "interactions")
    assert (counts.rows_in, counts.curated, counts.quarantined) == (len(rows), 2, 7)
    assert sorted(curated["user_id"]) == ["u1", "u7"]
    quarantine = pd.read_parquet(tmp_path / "lake" / QUARANTINE_PREFIX / "interactions")
    assert len(quarantine) == 7 and quarantine[QUARANTINE_REASON_COLUMN].str.strip().astype(bool).all()
    assert set(counts.reasons) == REASONS - {"missing_product_id", "rating_on_non_rating_event"}
