"""The erasure Lambda: ``{"user_id": "u42"}`` in, the shopper's rows erased from every store, an audit record out.

Invoked by an operator (``aws lambda invoke``) or a ticketing integration, asynchronously: a failed request
is retried by Lambda and then lands in the function's dead-letter queue, and a retry is safe (each store's
step is redone; ``core.forget`` keeps the request id). The work itself is ``core.forget``, the code the
local CLI (``python -m recsys forget``) runs against the moto server: one implementation, no twin.

The response (and the log) carries the request id, the keyed hash and per-store counts, never the raw id.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from typing import Any

import boto3

try:  # the deployed bundle is this folder; tests import it as a package
    from . import core
except ImportError:  # pragma: no cover - the Lambda runtime
    import core  # type: ignore[no-redef]

LOG = logging.getLogger(__name__)
LOG.setLevel(logging.INFO)

#: Environment variables the stack sets (``settings.erasure`` has the same names).
ENV_STORES = "ERASURE_STORES"
ENV_BUCKET = "ERASURE_RECORDS_BUCKET"
ENV_RETENTION = "ERASURE_RETENTION"


def handler(event: dict[str, Any], context: Any = None, *, s3: Any = None, dynamodb: Any = None) -> dict[str, Any]:
    user_id = str(event.get("user_id") or "").strip()
    if not user_id:
        raise ValueError("the event needs a non-empty 'user_id'")
    s3 = s3 or boto3.client("s3")
    dynamodb = dynamodb or boto3.client("dynamodb")
    stores = core.build_stores(json.loads(os.environ[ENV_STORES]), s3, dynamodb)
    records = core.S3Records(s3, os.environ[ENV_BUCKET])
    requested_by = str(event.get("requested_by") or getattr(context, "aws_request_id", "") or "")
    retention = json.loads(os.environ.get(ENV_RETENTION) or "[]")
    result = core.forget(user_id, stores, [records], requested_by=requested_by, retention=retention)
    answer = {
        "request_id": result.request_id,
        "subject_hash": result.subject,
        "removed": result.summary(),
        "stores": {name: asdict(removed) for name, removed in result.removed.items()},
        "model_versions_touched": sorted({m for r in result.removed.values() for m in r.models}),
        "audit": f"s3://{records.bucket}/{result.audit_key}",
        "audit_key": result.audit_key,
        "resumed": result.resumed,
    }
    LOG.info(json.dumps(answer))
    return answer
