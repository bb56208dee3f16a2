"""The endpoint's data capture, locally: each answered request as SageMaker writes it, to the same bucket and prefix.

SageMaker data capture (DataCaptureConfig on the endpoint config, ``lambdas/deploy_endpoint``) writes JSON lines
under ``s3://<destination>/capture/<endpoint>/<variant>/yyyy/mm/dd/hh/`` with one record per invocation::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "<request text>", "encoding": "JSON"},
                     "endpointOutput": {... "mode": "OUTPUT", "data": "<response text>", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-01-02T03:04:05Z"}, "eventVersion": "0"}

(JSON encoding because the endpoint config lists application/json in ``CaptureContentTypeHeader``; otherwise
SageMaker base64-encodes ``data``.) The local endpoint hands every 200 answer to a ``CaptureWriter`` that
writes the same records to the moto destination bucket, so ``sql/attribution_daily.sql`` reads both alike and
the erasure workflow finds captured requests where it looks on AWS.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from glue_jobs.schema import CAPTURE_SCHEMA
from settings.erasure import CAPTURE_PREFIX

#: The variant name of a single-variant endpoint (``lambdas.deploy_endpoint.handler.VARIANT_NAME``).
DEFAULT_VARIANT = "AllTraffic"
JSON = "application/json"
#: The Glue table over the capture records (``stacks/factories/catalog.py`` declares it), read by the attribution SQL.
CAPTURE_TABLE = "endpoint_capture"


def _text(body: bytes | str) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", errors="replace")


def capture_record(request: bytes | str, response: bytes | str, *, when: datetime, event_id: str | None = None,
                   content_type: str = JSON) -> dict[str, Any]:
    """One invocation as a SageMaker data-capture record (JSON encoding)."""
    return {
        "captureData": {
            "endpointInput": {"observedContentType": content_type or JSON, "mode": "INPUT", "data": _text(request),
                              "encoding": "JSON"},
            "endpointOutput": {"observedContentType": JSON, "mode": "OUTPUT", "data": _text(response),
                               "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": event_id or str(uuid.uuid4()),
                          "inferenceTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0",
    }


def capture_key(endpoint: str, variant: str, when: datetime, name: str) -> str:
    """SageMaker's layout: ``capture/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``."""
    return f"{CAPTURE_PREFIX}/{endpoint}/{variant}/{when.astimezone(UTC):%Y/%m/%d/%H}/{name}.jsonl"


class CaptureWriter:
    """Collects capture records (thread-safe: the endpoint answers on several threads) and writes them as
    JSON lines to ``s3://<bucket>/capture/...`` on ``flush`` (SageMaker also buffers and writes files)."""

    def __init__(self, s3: Any, bucket: str, endpoint: str, variant: str = DEFAULT_VARIANT) -> None:
        self.s3, self.bucket, self.endpoint, self.variant = s3, bucket, endpoint, variant
        self._records: list[tuple[datetime, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.written = 0

    def __call__(self, request: bytes, content_type: str, response: bytes) -> None:
        now = datetime.now(UTC)
        record = capture_record(request, response, when=now, content_type=content_type)
        with self._lock:
            self._records.append((now, record))

    @property
    def pending(self) -> int:
        """Records captured and not yet written."""
        with self._lock:
            return len(self._records)

    def flush(self) -> list[str]:
        """Write what was captured since the last flush, one object per hour folder; returns the keys."""
        with self._lock:
            records, self._records = self._records, []
        by_hour: dict[str, list[str]] = {}
        for when, record in records:
            key = capture_key(self.endpoint, self.variant, when, f"capture-{when:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
            folder = key.rsplit("/", 1)[0]
            by_hour.setdefault(folder, []).append(json.dumps(record))
        keys = []
        for folder, lines in by_hour.items():
            key = f"{folder}/capture-{uuid.uuid4().hex}.jsonl"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=("\n".join(lines) + "\n").encode(),
                               ContentType="application/jsonlines")
            keys.append(key)
        self.written += len(records)
        return keys


def download_capture(s3: Any, bucket: str, folder: Path) -> int:
    """Copy every capture object to ``folder`` (same relative keys), for DuckDB; returns the number of files."""
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{CAPTURE_PREFIX}/"):
        for obj in page.get("Contents", []):
            target = folder / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            n += 1
    return n


def capture_glob(folder: Path) -> str:
    """The files ``download_capture`` wrote, as a glob for ``LocalAthena.register_json``."""
    return str(folder / CAPTURE_PREFIX / "**" / "*.jsonl")


def duckdb_type(dtype: pa.DataType) -> str:
    """The DuckDB type of a capture column (strings and structs of them), so nothing is auto-detected: the
    Glue table declares ``inferenceTime`` a string, and so must the local table be."""
    if pa.types.is_struct(dtype):
        return "STRUCT(" + ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in dtype) + ")"
    if pa.types.is_string(dtype):
        return "VARCHAR"
    raise TypeError(f"no DuckDB type for {dtype} in the capture schema")


#: ``LocalAthena.register_json`` columns of the capture table.
CAPTURE_COLUMNS: dict[str, str] = {f.name: duckdb_type(f.type) for f in CAPTURE_SCHEMA}


def register_capture_table(athena: Any, pattern: str | Path) -> None:
    """The capture files (a glob) as the ``endpoint_capture`` table of a ``LocalAthena``, with Athena's ``"$path"``:
    the attribution SQL reads the answering variant from each object's key, as on AWS."""
    athena.register_json(CAPTURE_TABLE, pattern, CAPTURE_COLUMNS, path_column=True)
