"""Parquet round trips through the local S3 without touching process-wide settings."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from recsys.local.moto_server import LocalAws
from recsys.local.s3io import list_data_keys, read_parquet, split_s3_uri, write_parquet


@pytest.fixture
def bucket(aws_env: LocalAws) -> str:
    aws_env.client("s3").create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    return "data"


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": ["p1", "p2"],
            "price": [199.0, 349.5],
            "stock": [3, 0],
            "event_time": pd.to_datetime(["2024-05-01 10:00", "2024-05-02 11:30"]),
        }
    )


def test_prefix_round_trip_keeps_values_and_types(aws_env: LocalAws, bucket: str) -> None:
    uri = write_parquet(aws_env, _frame(), f"s3://{bucket}/curated/products/")
    assert uri == f"s3://{bucket}/curated/products/part-00000.parquet"
    back = read_parquet(aws_env, f"s3://{bucket}/curated/products")
    pd.testing.assert_frame_equal(back, _frame(), check_dtype=False)
    assert str(back["stock"].dtype) == "int64" and str(back["event_time"].dtype).startswith("datetime64")


def test_writing_a_prefix_again_replaces_its_data(aws_env: LocalAws, bucket: str) -> None:
    write_parquet(aws_env, _frame(), f"s3://{bucket}/curated/products/")
    write_parquet(aws_env, _frame().head(1), f"s3://{bucket}/curated/products/")
    assert len(read_parquet(aws_env, f"s3://{bucket}/curated/products/")) == 1
    assert list_data_keys(aws_env, bucket, "curated/products/") == ["curated/products/part-00000.parquet"]


def test_reading_a_prefix_concatenates_files_and_skips_markers(aws_env: LocalAws, bucket: str) -> None:
    write_parquet(aws_env, pa.table({"a": [1]}), f"s3://{bucket}/t/one.parquet")
    write_parquet(aws_env, pa.table({"a": [2], "b": ["x"]}), f"s3://{bucket}/t/two.parquet")
    aws_env.client("s3").put_object(Bucket=bucket, Key="t/_SUCCESS", Body=b"")
    back = read_parquet(aws_env, f"s3://{bucket}/t/")
    assert back["a"].tolist() == [1, 2] and back["b"].isna().tolist() == [True, False]


def test_reading_an_empty_prefix_names_it(aws_env: LocalAws, bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nothing"):
        read_parquet(aws_env, f"s3://{bucket}/nothing/")


@pytest.mark.parametrize("uri", ["/tmp/x.parquet", "s3:///key", "data/x"])
def test_non_s3_uris_are_rejected(uri: str) -> None:
    with pytest.raises(ValueError):
        split_s3_uri(uri)
