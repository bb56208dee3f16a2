"""The local crawler: Parquet prefixes on moto S3 become Glue tables typed as a Glue crawler types them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from glue_jobs.schema import CURATED_COLUMNS
from recsys.local.catalog import PARQUET_SERDE, glue_type, list_tables, register_prefix, register_table
from recsys.local.moto_server import LocalAws
from recsys.local.s3io import write_parquet

DB = "recsys_test"
BUCKET = "curated-bucket"


@pytest.mark.parametrize(
    ("arrow", "glue"),
    [
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.int64(), "bigint"),
        (pa.int32(), "int"),
        (pa.int16(), "smallint"),
        (pa.float64(), "double"),
        (pa.float32(), "float"),
        (pa.bool_(), "boolean"),
        (pa.date32(), "date"),
        (pa.timestamp("ms"), "timestamp"),
        (pa.timestamp("ns", tz="UTC"), "timestamp"),
        (pa.decimal128(10, 2), "decimal(10,2)"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.list_(pa.string()), "array<string>"),
        (pa.struct([("Id", pa.int64()), ("score", pa.float64())]), "struct<id:bigint,score:double>"),
        (pa.map_(pa.string(), pa.int32()), "map<string,int>"),
    ],
)
def test_arrow_types_map_to_crawler_types(arrow: pa.DataType, glue: str) -> None:
    assert glue_type(arrow) == glue


def test_an_all_null_column_has_no_type_to_register() -> None:
    with pytest.raises(TypeError, match="null"):
        glue_type(pa.null())


@pytest.fixture
def aws(aws_env: LocalAws) -> LocalAws:
    aws_env.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    aws_env.client("glue").create_database(DatabaseInput={"Name": DB})
    return aws_env


def _curated(table: str, rows: int = 2) -> pa.Table:
    schema = pa.schema(CURATED_COLUMNS[table])
    return pa.table({name: pa.nulls(rows, type=t) for name, t in zip(schema.names, schema.types, strict=True)})


def test_register_prefix_creates_the_table_with_columns_types_and_location(aws: LocalAws) -> None:
    write_parquet(aws, _curated("interactions"), f"s3://{BUCKET}/curated/interactions/")
    schema = register_prefix(aws, DB, BUCKET, "curated/interactions", "interactions")
    assert schema.names == list(CURATED_COLUMNS["interactions"])
    table = aws.client("glue").get_table(DatabaseName=DB, Name="interactions")["Table"]
    sd = table["StorageDescriptor"]
    assert sd["Location"] == f"s3://{BUCKET}/curated/interactions/"
    assert sd["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert table["Parameters"]["classification"] == "parquet" and table["Parameters"]["layer"] == "curated"
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("user_id", "string"),
        ("product_id", "string"),
        ("event_type", "string"),
        ("rating", "double"),
        ("event_time", "timestamp"),
        ("quantity", "double"),
        ("unit_price", "double"),
        ("recommendation_id", "string"),
    ]


def test_registering_again_updates_the_table_like_a_crawler_rerun(aws: LocalAws) -> None:
    write_parquet(aws, pa.table({"user_id": ["u1"]}), f"s3://{BUCKET}/curated/users/")
    register_prefix(aws, DB, BUCKET, "curated/users/", "users")
    write_parquet(aws, _curated("users"), f"s3://{BUCKET}/curated/users/")
    register_prefix(aws, DB, BUCKET, "curated/users/", "users")
    assert list_tables(aws, DB)["users"] == [
        ("user_id", "string"),
        ("age", "bigint"),
        ("gender", "string"),
        ("location", "string"),
        ("signup_date", "date"),
    ]


def test_files_with_different_columns_are_unified_and_names_lowercased(aws: LocalAws) -> None:
    write_parquet(aws, pa.table({"Product_ID": ["p1"]}), f"s3://{BUCKET}/curated/products/a.parquet")
    write_parquet(aws, pa.table({"Product_ID": ["p2"], "price": [1.0]}), f"s3://{BUCKET}/curated/products/b.parquet")
    register_prefix(aws, DB, BUCKET, "curated/products", "products")
    assert list_tables(aws, DB)["products"] == [("product_id", "string"), ("price", "double")]


def test_hive_style_folders_become_partition_keys_and_partitions(aws: LocalAws) -> None:
    for day in ("2024-05-01", "2024-05-02"):
        write_parquet(aws, pa.table({"user_id": ["u1"]}), f"s3://{BUCKET}/features/daily/dt={day}/part.parquet")
    register_prefix(aws, DB, BUCKET, "features/daily", "daily", kind="features")
    glue = aws.client("glue")
    table = glue.get_table(DatabaseName=DB, Name="daily")["Table"]
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["user_id"]
    partitions = glue.get_partitions(DatabaseName=DB, TableName="daily")["Partitions"]
    assert sorted((p["Values"][0], p["StorageDescriptor"]["Location"]) for p in partitions) == [
        ("2024-05-01", f"s3://{BUCKET}/features/daily/dt=2024-05-01/"),
        ("2024-05-02", f"s3://{BUCKET}/features/daily/dt=2024-05-02/"),
    ]


def test_an_empty_prefix_is_an_error_naming_it(aws: LocalAws) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/curated/users/"):
        register_prefix(aws, DB, BUCKET, "curated/users", "users")
    assert list_tables(aws, DB) == {}


def test_register_table_rejects_a_non_s3_location(aws: LocalAws) -> None:
    with pytest.raises(ValueError, match="s3://"):
        register_table(aws, DB, "t", "/tmp/t", pa.schema([("a", pa.string())]))


def test_list_tables_is_sorted_by_table(aws: LocalAws) -> None:
    for name in ("users", "interactions"):
        register_table(aws, DB, name, f"s3://{BUCKET}/curated/{name}/", pa.schema([("user_id", pa.string())]))
    assert list(list_tables(aws, DB)) == ["interactions", "users"]


def test_local_crawlers_answer_running_then_ready_and_refuse_a_second_start_while_running():
    from recsys.local.catalog import CrawlerRunningError, LocalCrawlers

    crawlers = LocalCrawlers(polls=2)
    assert crawlers.get("c")["State"] == "READY"  # never started
    crawlers.start("c", lambda: ["t"])
    with pytest.raises(CrawlerRunningError):
        crawlers.start("c", lambda: ["t"])
    assert [crawlers.get("c")["State"] for _ in range(3)] == ["RUNNING", "RUNNING", "READY"]
    assert crawlers.get("c")["LastCrawl"] == {"Status": "SUCCEEDED"}

    def unreadable() -> list[str]:
        raise ValueError("cannot unify schemas")

    crawlers.start("c", unreadable)  # READY again: it may start; the crawl fails as AWS reports it
    assert [crawlers.get("c")["State"] for _ in range(2)] == ["RUNNING", "RUNNING"]
    assert crawlers.get("c")["LastCrawl"] == {"Status": "FAILED", "ErrorMessage": "cannot unify schemas"}
