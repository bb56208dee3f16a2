"""The Glue crawler's local equivalent: register Parquet prefixes as Glue tables on moto.

On AWS a crawler reads the curated Parquet and writes the Data Catalog; moto has crawler
resources but does not run them. This module does the crawler's job the way it does it
(Parquet SerDe, Hive type names, lower-case columns, ``key=value`` folders as partition keys),
so Athena-dialect SQL sees the same tables in both runtimes. :class:`LocalCrawlers` answers StartCrawler and
GetCrawler as AWS does (RUNNING, then READY), so the workflow's polling loop runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError

from glue_jobs.catalog_types import (  # noqa: F401 - re-exported: the crawler's types
    PARQUET_INPUT_FORMAT,
    PARQUET_OUTPUT_FORMAT,
    PARQUET_SERDE,
    glue_columns,
    glue_type,
)
from recsys.local.moto_server import LocalAws
from recsys.local.s3io import list_data_keys, read_parquet_schema


def _storage_descriptor(location: str, columns: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "Columns": columns,
        "Location": location,
        "InputFormat": PARQUET_INPUT_FORMAT,
        "OutputFormat": PARQUET_OUTPUT_FORMAT,
        "Compressed": False,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        "StoredAsSubDirectories": False,
    }


def register_table(
    aws: LocalAws,
    database: str,
    table: str,
    location: str,
    schema: pa.Schema,
    kind: str = "curated",
    partition_keys: tuple[str, ...] = (),
) -> None:
    """Create or update the Glue table ``database.table`` over Parquet at ``location``.

    ``kind`` (curated, quarantine, features ...) is kept as a table parameter so a reader can
    tell the layers apart. Partition keys are strings: folder names carry no type.
    """
    if not location.startswith("s3://"):
        raise ValueError(f"table location must be an s3:// URI, got {location!r}")
    location = location if location.endswith("/") else f"{location}/"
    keys = tuple(k.lower() for k in partition_keys)
    table_input = {
        "Name": table.lower(),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "compressionType": "none",
            "typeOfData": "file",
            "EXTERNAL": "TRUE",
            "layer": kind,
        },
        "StorageDescriptor": _storage_descriptor(location, glue_columns(schema, frozenset(keys))),
        "PartitionKeys": [{"Name": k, "Type": "string"} for k in keys],
    }
    glue = aws.client("glue")
    try:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
            raise
        glue.update_table(DatabaseName=database, TableInput=table_input)


def _partition_values(relative_key: str) -> tuple[tuple[str, str], ...]:
    """``dt=2024-01-01/part.parquet`` -> (("dt", "2024-01-01"),): Hive-style folders only."""
    folders = relative_key.split("/")[:-1]
    pairs = tuple(tuple(f.split("=", 1)) for f in folders if "=" in f)
    return pairs if len(pairs) == len(folders) else ()  # type: ignore[return-value]


def _register_partitions(
    aws: LocalAws, database: str, table: str, location: str, columns: list[dict[str, str]], values: set[tuple[str, ...]]
) -> None:
    glue = aws.client("glue")
    for vals in sorted(values):
        path = location + "/".join(vals) + "/"
        spec = [v.split("=", 1)[1] for v in vals]
        partition = {"Values": spec, "StorageDescriptor": _storage_descriptor(path, columns)}
        try:
            glue.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                raise


def register_prefix(
    aws: LocalAws, database: str, bucket: str, prefix: str, table: str, kind: str = "curated"
) -> pa.Schema:
    """Crawl ``s3://bucket/prefix/``: unify the Parquet schemas found there and register the table.

    Returns the unified Arrow schema (without partition columns). A prefix with no data files is
    an error: a crawler would create nothing, and the next query would fail far from the cause.
    """
    prefix = prefix.strip("/") + "/"
    keys = list_data_keys(aws, bucket, prefix)
    if not keys:
        raise FileNotFoundError(f"no data files under s3://{bucket}/{prefix} to register as {database}.{table}")
    schemas = [read_parquet_schema(aws, bucket, k) for k in keys]
    schema = schemas[0] if len(schemas) == 1 else pa.unify_schemas(schemas, promote_options="permissive")
    schema = schema.remove_metadata()

    parts = [_partition_values(k[len(prefix) :]) for k in keys]
    key_names = tuple(name for name, _ in parts[0]) if parts and all(parts) else ()
    if key_names and any(tuple(n for n, _ in p) != key_names for p in parts):
        key_names = ()  # inconsistent folder layout: register files only, as a crawler would mix them
    location = f"s3://{bucket}/{prefix}"
    register_table(aws, database, table, location, schema, kind=kind, partition_keys=key_names)
    if key_names:
        columns = glue_columns(schema, frozenset(key_names))
        values = {tuple(f"{n}={v}" for n, v in p) for p in parts}
        _register_partitions(aws, database, table.lower(), location, columns, values)
    return schema


def list_tables(aws: LocalAws, database: str) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, type)], partition keys last, for printing what the catalogue holds."""
    paginator = aws.client("glue").get_paginator("get_tables")
    tables: dict[str, list[tuple[str, str]]] = {}
    for page in paginator.paginate(DatabaseName=database):
        for t in page.get("TableList", []):
            cols = t.get("StorageDescriptor", {}).get("Columns", []) + t.get("PartitionKeys", [])
            tables[t["Name"]] = [(c["Name"], c["Type"]) for c in cols]
    return dict(sorted(tables.items()))


@dataclass
class CrawlerRun:
    """One crawler's state as GetCrawler reports it, and its last crawl."""

    name: str
    polls_left: int = 0  # GetCrawler answers RUNNING this many more times
    status: str | None = None  # LastCrawl.Status: SUCCEEDED | FAILED
    message: str = ""
    tables: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "RUNNING" if self.polls_left else "READY"


class LocalCrawlers:
    """Glue crawlers polled as on AWS: after StartCrawler, GetCrawler answers ``RUNNING`` (``polls`` times), then
    ``READY`` with the last crawl's status, so a workflow's Wait/GetCrawler/Choice loop runs as deployed. The
    crawl itself (``crawl``: what it catalogues) runs at the start; a second start while running is refused
    (``CrawlerRunningException``), and a crawl that cannot read its data ends ``FAILED``, as AWS reports it."""

    def __init__(self, polls: int = 1) -> None:
        self.polls = polls
        self.runs: dict[str, CrawlerRun] = {}

    def running(self, name: str) -> bool:
        return name in self.runs and self.runs[name].state == "RUNNING"

    def start(self, name: str, crawl: Callable[[], list[str]]) -> CrawlerRun:
        if self.running(name):
            raise CrawlerRunningError(f"crawler {name} is already running")
        run = self.runs[name] = CrawlerRun(name, polls_left=self.polls)
        try:
            run.tables = crawl()
            run.status = "SUCCEEDED"
        except (pa.ArrowInvalid, ClientError, OSError, ValueError) as err:
            run.status, run.message = "FAILED", str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        return run

    def get(self, name: str) -> dict[str, Any]:
        """GetCrawler's ``Crawler``: its state (one RUNNING answer fewer each poll) and last crawl."""
        run = self.runs.get(name)
        if run is None:
            return {"Name": name, "State": "READY"}
        state = run.state
        run.polls_left = max(0, run.polls_left - 1)
        last = {"Status": run.status, **({"ErrorMessage": run.message} if run.message else {})}
        return {"Name": name, "State": state, **({"LastCrawl": last} if state == "READY" else {})}


class CrawlerRunningError(RuntimeError):
    """StartCrawler on a running crawler (Glue's ``CrawlerRunningException``)."""
