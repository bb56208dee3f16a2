"""Parquet in and out of the local S3, with pyarrow and an explicit client.

awswrangler reaches a custom endpoint only through process-wide settings
(``AWS_ENDPOINT_URL`` or ``wr.config.s3_endpoint_url``); these helpers take the endpoint from
:class:`LocalAws` instead, so tests and the local run never depend on global state.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.local.moto_server import LocalAws

PARQUET_SUFFIX = ".parquet"
PART_NAME = "part-00000.parquet"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); a clear error for anything else."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in S3 URI {uri!r}")
    return bucket, key


def is_data_key(key: str) -> bool:
    """Data files, not markers: Spark/Glue write ``_SUCCESS`` and hidden ``.`` files next to them."""
    name = key.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith(("_", "."))


def list_data_keys(aws: LocalAws, bucket: str, prefix: str) -> list[str]:
    """Keys of the data files under ``prefix`` (sorted, so reads are deterministic)."""
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    keys = [
        obj["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if is_data_key(obj["Key"]) and obj.get("Size", 1) > 0
    ]
    return sorted(keys)


def _prefix(key: str) -> str:
    return key if not key or key.endswith("/") else f"{key}/"


def write_parquet(aws: LocalAws, df: pd.DataFrame | pa.Table, s3_uri: str) -> str:
    """Write ``df`` to ``s3_uri`` and return the object's URI.

    A URI ending in ``.parquet`` is one object; anything else is a dataset prefix whose old data
    files are replaced by a single ``part-00000.parquet`` (overwrite, as a recipe job output).

    Safe to repeat and to interrupt: the new object is written first (an S3 PUT replaces a key
    atomically), then the prefix's other data files are deleted. A failed write leaves the
    previous output whole, never an empty or doubled prefix; a rerun converges to one file.
    """
    bucket, key = split_s3_uri(s3_uri)
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    s3 = aws.client("s3")
    prefix = None if key.endswith(PARQUET_SUFFIX) else _prefix(key)
    if prefix is not None:
        key = f"{prefix}{PART_NAME}"
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue(), ContentType="application/vnd.apache.parquet")
    if prefix is not None:
        stale = [k for k in list_data_keys(aws, bucket, prefix) if k != key]
        if stale:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale], "Quiet": True})
    return f"s3://{bucket}/{key}"


def delete_data(aws: LocalAws, s3_uri: str) -> int:
    """Remove the data files under the prefix ``s3_uri`` (an output that no longer exists); returns how many."""
    bucket, key = split_s3_uri(s3_uri)
    keys = list_data_keys(aws, bucket, _prefix(key))
    if keys:
        aws.client("s3").delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    return len(keys)


def read_parquet_table(aws: LocalAws, s3_uri: str) -> pa.Table:
    """One object, or every data file under a prefix concatenated (schemas unified)."""
    bucket, key = split_s3_uri(s3_uri)
    keys = [key] if key.endswith(PARQUET_SUFFIX) else list_data_keys(aws, bucket, _prefix(key))
    if not keys:
        raise FileNotFoundError(f"no Parquet data under {s3_uri}")
    s3 = aws.client("s3")
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def read_parquet(aws: LocalAws, s3_uri: str) -> pd.DataFrame:
    """:func:`read_parquet_table` as a DataFrame."""
    return read_parquet_table(aws, s3_uri).to_pandas()


def read_parquet_schema(aws: LocalAws, bucket: str, key: str) -> pa.Schema:
    """The schema from one object's footer (the whole object is fetched: local files are small)."""
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_schema(io.BytesIO(body))
