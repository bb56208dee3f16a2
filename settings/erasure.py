"""Where a shopper's rows live: the stores an erasure request visits, one line each (``lambdas/erasure/core.py``).

One list for the erasure Lambda (the stack passes it in the function's environment) and the local run, so a
new place that keeps shopper rows is one line here; the verification scan (``core.every_store``) looks at
every bucket and table regardless, so a store missing here shows up as a finding, not as silence.
"""

from __future__ import annotations

from settings.config import (
    ATHENA_RESULTS_PREFIX,
    BATCH_PREFIX,
    CURATED_PREFIX,
    FEATURES_PREFIX,
    PIPELINE_PREFIX,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    TRAINING_PREFIX,
    Config,
)
from settings.streaming import STREAM_ERRORS_PREFIX

#: The endpoint's captured requests and impressions in the destination bucket (issue 14 item 1).
CAPTURE_PREFIX = "capture"
#: Environment variable carrying the store list (JSON) to the Lambda.
ENV_STORES = "ERASURE_STORES"
ENV_BUCKET = "ERASURE_RECORDS_BUCKET"
ENV_RETENTION = "ERASURE_RETENTION"
#: The suppression list (keyed hashes of forgotten shoppers) in the destination bucket: written first by the
#: erasure function (``lambdas/erasure/core.py`` ``SUPPRESSION_KEY``), read by PrepareData and by the endpoint.
SUPPRESSION_KEY = "training/erasure_suppression.json"
#: The endpoint container's variable naming it (``sagemaker_src/recsys_core/suppression.py`` ``SUPPRESSION_ENV``).
SUPPRESSION_ENV = "RECSYS_SUPPRESSION_URI"


def function_name(cfg: Config) -> str:
    """The erasure Lambda's name: the stack names it so, the local run finds it in cdk.out by it."""
    return f"{cfg.prefix}-erasure"


def erasure_stores(*, source: str, destination: str, results: str, recent_items_table: str | None) -> list[dict]:
    """Plain specs in the order they are erased: raw first (it feeds everything else), serving state last."""
    stores = [
        {"name": "raw", "bucket": source, "prefix": f"{RAW_PREFIX}/"},
        {"name": "stream errors", "bucket": source, "prefix": STREAM_ERRORS_PREFIX},
        {"name": "curated", "bucket": destination, "prefix": f"{CURATED_PREFIX}/"},
        {"name": "quarantine", "bucket": destination, "prefix": f"{QUARANTINE_PREFIX}/"},
        {"name": "features", "bucket": destination, "prefix": f"{FEATURES_PREFIX}/"},
        {"name": "training sets", "bucket": destination, "prefix": f"{TRAINING_PREFIX}/"},
        {"name": "pipeline splits", "bucket": destination, "prefix": f"{PIPELINE_PREFIX}/"},
        {"name": "batch outputs", "bucket": destination, "prefix": f"{BATCH_PREFIX}/"},
        {"name": "captured requests", "bucket": destination, "prefix": f"{CAPTURE_PREFIX}/"},
        {"name": "athena results", "bucket": results, "prefix": f"{ATHENA_RESULTS_PREFIX}/"},
    ]
    if recent_items_table:
        stores.append({"name": "recent items", "table": recent_items_table})
    return stores

#: The erasure records (audit, progress) in the destination bucket: ``lambdas.erasure.core.AUDIT_PREFIX``'s parent.
RECORDS_PREFIX = "erasure/"

#: pyarrow for the Lambda: the AWS SDK for pandas managed layer (Python 3.12, arm64), published by AWS in
#: account 336392948345 in most regions (https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html). The
#: version number differs per region and release: check the table for the deployment region before a deploy
#: (not verified against an account here).
PANDAS_LAYER_ACCOUNT = "336392948345"
PANDAS_LAYER_NAME = "AWSSDKPandas-Python312-Arm64"
PANDAS_LAYER_VERSION = 26




def retention(cfg: Config) -> list[dict]:
    """What an erasure cannot reach at once, how many days until it expires and what enforces that; the audit
    record copies it and names the day the last copy expires (docs/erasure.md)."""
    return [
        {"store": "clickstream (Kinesis)", "days": 1, "enforced_by": "stream retention 24 h (streaming stack)"},
        {"store": "stream and erasure dead-letter queues (SQS)", "days": 14,
         "enforced_by": "queue MessageRetentionPeriod 14 days"},
        {"store": "recent-items point-in-time backups (DynamoDB)", "days": 35,
         "enforced_by": "point-in-time recovery window 35 days"},
        {"store": "copies written after the erasure ran (raw/, stream-errors/, capture/, athena-results/)",
         "days": cfg.raw_expiry_days,
         "enforced_by": "S3 lifecycle rules tier-and-expire-raw, expire-late-copies-stream-errors, "
                        "expire-late-copies-capture, expire-results (stacks/buckets.py)"},
        {"store": "old object versions", "days": cfg.noncurrent_version_expiry_days,
         "enforced_by": "S3 lifecycle rule expire-noncurrent (the erasure also deletes each version it finds)"},
    ]  # fmt: skip
