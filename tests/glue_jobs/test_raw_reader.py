"""Raw files: read as text, nothing lost, clear errors for files that cannot be processed at all."""

from __future__ import annotations

import gzip
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glue_jobs.raw_reader import MALFORMED_REASON, RawDataError, read_raw

HEADER = b"user_id,product_id,event_type,rating,timestamp"


def test_a_line_with_the_wrong_field_count_goes_to_malformed_and_the_rest_is_read():
    data = HEADER + b"\nu1,p1,view,,1700000000\nu2,p2,view\nu3,p3,rating,5,1700000000\n"
    r = read_raw(data, "interactions", name="i.csv")
    assert r.frame["user_id"].tolist() == ["u1", "u3"]
    bad = r.malformed.iloc[0]
    assert (bad["line_number"], bad["raw_line"], bad["quarantine_reason"]) == ("3", "u2,p2,view", MALFORMED_REASON)
    assert "expected 5 fields, found 3" in bad["detail"]


def test_missing_required_columns_are_named_with_the_file():
    with pytest.raises(RawDataError, match=r"i\.csv.*\['event_type', 'timestamp'\]"):
        read_raw(b"user_id,product_id\nu1,p1\n", "interactions", name="i.csv")


def test_an_empty_file_is_an_error_but_a_header_only_file_is_an_empty_table():
    with pytest.raises(RawDataError, match="empty"):
        read_raw(b"", "interactions", name="i.csv")
    r = read_raw(HEADER + b"\n", "interactions")
    assert r.frame.empty and list(r.frame.columns) == HEADER.decode().split(",")


def test_a_utf8_bom_is_tolerated_and_header_names_are_stripped():
    r = read_raw(b"\xef\xbb\xbfuser_id , product_id,event_type,rating,timestamp\nu1,p1,view,,1\n", "interactions")
    assert r.frame.columns[0] == "user_id" and r.frame["product_id"].tolist() == ["p1"]


def test_non_utf8_bytes_raise_naming_the_file_and_line():
    with pytest.raises(RawDataError, match=r"u\.csv: not UTF-8 .*line 2"):
        read_raw(b"user_id,age\nRen\xe9,30\n", "users", name="u.csv")


def test_values_stay_text_and_empty_cells_become_null():
    r = read_raw(HEADER + b"\n007,p1,view,,1700000000\n", "interactions")
    row = r.frame.iloc[0]
    assert row["user_id"] == "007" and pd.isna(row["rating"])
    assert all(pd.api.types.is_string_dtype(t) for t in r.frame.dtypes)


def test_extra_columns_are_passed_through():
    r = read_raw(HEADER + b",campaign\nu1,p1,view,,1,summer\n", "interactions")
    assert r.frame["campaign"].tolist() == ["summer"]


def test_parquet_is_read_with_every_column_as_text(tmp_path):
    table = pa.table(
        {
            "user_id": ["u1"],
            "product_id": ["p1"],
            "event_type": ["view"],
            "rating": [None],
            "timestamp": [1700000000],
            "score": [2.5],
        }
    )
    path = tmp_path / "interactions.parquet"
    pq.write_table(table, path)
    r = read_raw(path, "interactions")
    assert r.frame.iloc[0][["timestamp", "score"]].tolist() == ["1700000000", "2.5"]
    assert r.malformed.empty and r.source == str(path)


def test_parquet_bytes_are_detected_without_a_format_hint():
    buf = io.BytesIO()
    pq.write_table(pa.table({"user_id": ["u1"], "age": [30]}), buf)
    assert read_raw(buf.getvalue(), "users").frame["age"].tolist() == ["30"]


# ---- JSON lines (the clickstream archive Firehose writes) ------------------------------------------

_EVENT = '{"user_id": "u1", "product_id": "p1", "event_type": "view", "rating": null, "timestamp": 1767250000}'


def test_gzip_json_lines_are_read_as_text_with_every_contract_column():
    body = gzip.compress(f'{_EVENT}\n{{"user_id": "u2", "event_type": "rating", "rating": 4.0, "ok": true}}\n'.encode())
    raw = read_raw(body, "interactions", name="s3://b/raw/clickstream/x.jsonl.gz")
    assert list(raw.frame.columns) == ["user_id", "product_id", "event_type", "rating", "timestamp", "ok"]
    first, second = raw.frame.iloc[0], raw.frame.iloc[1]
    assert (first.timestamp, pd.isna(first.rating)) == ("1767250000", True)  # numbers keep their JSON text
    assert (second.rating, second.ok) == ("4.0", "true")
    assert pd.isna(second.product_id) and pd.isna(second.timestamp)  # absent keys are nulls for the recipe
    assert len(raw.malformed) == 0


def test_a_json_line_that_is_not_an_object_goes_to_malformed_with_its_line_number():
    body = f"{_EVENT}\n\n[1, 2]\nnot json\n{_EVENT}\n".encode()
    raw = read_raw(body, "interactions", fmt="jsonl", name="events.jsonl")
    assert len(raw.frame) == 2  # the blank line is Firehose's trailing delimiter, not a row
    assert raw.malformed["line_number"].tolist() == ["3", "4"]
    assert set(raw.malformed["quarantine_reason"]) == {MALFORMED_REASON}
    assert "not an object" in raw.malformed["detail"].iloc[0] and "not JSON" in raw.malformed["detail"].iloc[1]


def test_json_lines_are_detected_by_content_without_a_name_or_hint():
    raw = read_raw(f"{_EVENT}\n".encode(), "interactions")
    assert raw.frame["user_id"].tolist() == ["u1"]


def test_a_damaged_gzip_file_is_an_error_naming_the_file():
    with pytest.raises(RawDataError, match=r"x\.jsonl\.gz.*cannot be decompressed"):
        read_raw(gzip.compress(_EVENT.encode())[:-9], "interactions", name="x.jsonl.gz")
