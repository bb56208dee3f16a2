"""The buckets of the data stack as plain data: kinds, encryption, lifecycle rules.

Both the CDK data stack (``stacks/factories/storage.py``) and the local provisioning
(``recsys/local/provision.py``) build their buckets from :func:`bucket_specs`, so a rule or a
day count is written once. No AWS or CDK import: the local run uses it without jsii.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from settings.config import ATHENA_RESULTS_PREFIX, RAW_PREFIX, Config
from settings.erasure import CAPTURE_PREFIX
from settings.streaming import STREAM_ERRORS_PREFIX

#: Every bucket of the data stack, by kind (the ``kind`` part of ``Config.bucket_name``).
BUCKET_KINDS = ("source", "curated", "athena-results", "access-logs")
SOURCE, CURATED, ATHENA_RESULTS, ACCESS_LOGS = BUCKET_KINDS

#: Incomplete multipart uploads are never useful and are billed: abort them after this many days.
ABORT_MULTIPART_DAYS = 7
#: Cold objects move to Intelligent-Tiering after TIER_AFTER_DAYS (it has no retrieval fee).
TRANSITION_STORAGE_CLASS = "INTELLIGENT_TIERING"
TIER_AFTER_DAYS = 30


@dataclass(frozen=True)
class LifecycleRuleSpec:
    """One S3 lifecycle rule, in terms both boto3 and ``aws_s3.LifecycleRule`` can express."""

    id: str
    prefix: str = ""  # "" = the whole bucket
    expiration_days: int | None = None
    noncurrent_expiration_days: int | None = None
    abort_multipart_days: int | None = None
    transition_days: int | None = None  # move to TRANSITION_STORAGE_CLASS after this many days

    def to_s3(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"ID": self.id, "Status": "Enabled", "Filter": {"Prefix": self.prefix}}
        if self.transition_days is not None:
            rule["Transitions"] = [{"Days": self.transition_days, "StorageClass": TRANSITION_STORAGE_CLASS}]
        if self.expiration_days is not None:
            rule["Expiration"] = {"Days": self.expiration_days}
        if self.noncurrent_expiration_days is not None:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": self.noncurrent_expiration_days}
        if self.abort_multipart_days is not None:
            rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": self.abort_multipart_days}
        return rule


@dataclass(frozen=True)
class BucketSpec:
    """How one bucket is configured; versioning, public access block and TLS-only apply to all."""

    kind: str
    kms: bool  # SSE-KMS with the data key; False = SSE-S3
    lifecycle: tuple[LifecycleRuleSpec, ...]
    log_to_access_logs: bool  # server access logs go to the access-logs bucket under "<kind>/"


def kms_alias(cfg: Config) -> str:
    """The data key's alias (one key encrypts buckets and Athena results)."""
    return f"alias/{cfg.prefix}-data"


def bucket_specs(cfg: Config) -> dict[str, BucketSpec]:
    """The bucket layout of the data stack, keyed by kind (rule ids as in ``stacks/factories/storage.py``).

    Raw uploads tier after 30 days and expire after ``raw_expiry_days`` (they are re-creatable);
    curated data is the training history, kept but tiered; query results and access logs expire
    after ``raw_expiry_days``; old versions after ``noncurrent_version_expiry_days``. The
    access-logs bucket uses SSE-S3: S3 log delivery does not write with a customer key.
    """
    noncurrent = LifecycleRuleSpec(
        id="expire-noncurrent",
        noncurrent_expiration_days=cfg.noncurrent_version_expiry_days,
        abort_multipart_days=ABORT_MULTIPART_DAYS,
    )
    raw = LifecycleRuleSpec(
        id="tier-and-expire-raw",
        prefix=f"{RAW_PREFIX}/",
        transition_days=TIER_AFTER_DAYS if cfg.raw_expiry_days > TIER_AFTER_DAYS else None,
        expiration_days=cfg.raw_expiry_days,
    )
    results = LifecycleRuleSpec(
        id="expire-results", prefix=f"{ATHENA_RESULTS_PREFIX}/", expiration_days=cfg.raw_expiry_days
    )
    # Erasure (docs/erasure.md): a copy of a forgotten shopper's rows written after their erasure ran (a stream
    # delivery that failed late, the hour's capture file) expires with the raw data: the retention it states.
    stream_errors = LifecycleRuleSpec(
        id="expire-late-copies-stream-errors", prefix=STREAM_ERRORS_PREFIX, expiration_days=cfg.raw_expiry_days
    )
    capture = LifecycleRuleSpec(
        id="expire-late-copies-capture", prefix=f"{CAPTURE_PREFIX}/", expiration_days=cfg.raw_expiry_days
    )
    return {
        SOURCE: BucketSpec(SOURCE, kms=True, lifecycle=(raw, stream_errors, noncurrent), log_to_access_logs=True),
        CURATED: BucketSpec(
            CURATED,
            kms=True,
            lifecycle=(LifecycleRuleSpec(id="tier-curated", transition_days=TIER_AFTER_DAYS), capture, noncurrent),
            log_to_access_logs=True,
        ),
        ATHENA_RESULTS: BucketSpec(ATHENA_RESULTS, kms=True, lifecycle=(results, noncurrent), log_to_access_logs=True),
        ACCESS_LOGS: BucketSpec(
            ACCESS_LOGS,
            kms=False,
            lifecycle=(
                LifecycleRuleSpec(id="expire-logs", expiration_days=cfg.raw_expiry_days),
                LifecycleRuleSpec(
                    id="expire-noncurrent", noncurrent_expiration_days=cfg.noncurrent_version_expiry_days
                ),
            ),
            log_to_access_logs=False,
        ),
    }
