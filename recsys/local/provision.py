"""Create, on the local AWS (moto), what the CDK data stack declares: key, buckets, database, workgroup.

The bucket layout comes from :mod:`stacks.buckets`, the same specs the CDK data stack builds from.
:func:`provision` is idempotent: re-running it converges to the same state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from recsys.local.moto_server import LocalAws
from settings.config import CLICKSTREAM, LOCAL_ACCOUNT, RAW_PREFIX, TABLES, Config
from settings.streaming import ARCHIVE_DATE_LAYOUT
from sql.workgroup import workgroup_configuration
from stacks.buckets import (
    ACCESS_LOGS,
    ATHENA_RESULTS,
    BUCKET_KINDS,
    CURATED,
    SOURCE,
    BucketSpec,
    bucket_specs,
    kms_alias,
)


@dataclass
class LocalResources:
    """Names of what :func:`provision` created; everything downstream takes them from here."""

    source_bucket: str
    destination_bucket: str
    athena_results_bucket: str
    access_logs_bucket: str
    kms_key_id: str
    glue_database: str
    athena_workgroup: str
    kms_key_arn: str = ""
    buckets: dict[str, str] = field(default_factory=dict)  # kind -> name


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ensure_kms_key(cfg: Config, aws: LocalAws) -> dict[str, Any]:
    kms = aws.client("kms")
    alias = kms_alias(cfg)
    try:
        return kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as exc:
        if _error_code(exc) != "NotFoundException":
            raise
    meta = kms.create_key(
        Description=f"{cfg.prefix} data at rest (S3, Athena results)",
        KeyUsage="ENCRYPT_DECRYPT",
        Tags=[{"TagKey": "project", "TagValue": cfg.project_name}, {"TagKey": "env", "TagValue": cfg.env_name}],
    )["KeyMetadata"]
    kms.enable_key_rotation(KeyId=meta["KeyId"])
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    return meta


def tls_only_statement(bucket: str) -> dict[str, Any]:
    """The statement CDK's ``enforce_ssl=True`` adds: deny every request not made over TLS."""
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _log_delivery_statement(log_bucket: str, source_buckets: list[str], account: str) -> dict[str, Any]:
    """Let S3 log delivery write the access logs of our own buckets only (confused-deputy guard)."""
    return {
        "Sid": "AllowS3ServerAccessLogs",
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{log_bucket}/*",
        "Condition": {
            "ArnLike": {"aws:SourceArn": [f"arn:aws:s3:::{b}" for b in source_buckets]},
            "StringEquals": {"aws:SourceAccount": account},
        },
    }


def bucket_policy(bucket: str, kind: str, logged_buckets: list[str], account: str) -> dict[str, Any]:
    """The bucket policy as on AWS: TLS only; the access-logs bucket also admits S3 log delivery."""
    statements = [tls_only_statement(bucket)]
    if kind == ACCESS_LOGS:
        statements.append(_log_delivery_statement(bucket, logged_buckets, account))
    return {"Version": "2012-10-17", "Statement": statements}


def moto_compatible_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """``policy`` with Deny statements narrowed to the bucket ARN, for the moto server.

    moto 5.2.5 enforces a bucket policy's Deny on object requests but ignores the statement's
    Condition, so the TLS-only Deny (``aws:SecureTransport`` false) would refuse every object
    read and write, even ones that would be over TLS. Keeping it on the bucket ARN keeps the
    statement visible (moto does not enforce bucket-level denies) without blocking the data.
    """
    statements = []
    for st in policy["Statement"]:
        if st.get("Effect") == "Deny":
            st = {**st, "Resource": [r for r in st["Resource"] if not r.endswith("/*")]}
        statements.append(st)
    return {**policy, "Statement": statements}


def _ensure_bucket(aws: LocalAws, name: str) -> None:
    """Create the bucket; one we already own is fine (us-east-1 answers 200, other regions an error)."""
    kwargs: dict[str, Any] = {"Bucket": name}
    if aws.region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    try:
        aws.client("s3").create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) != "BucketAlreadyOwnedByYou":
            raise


def _configure_bucket(aws: LocalAws, name: str, spec: BucketSpec, kms_key_arn: str, policy: dict[str, Any]) -> None:
    s3 = aws.client("s3")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if spec.kms:
        default: dict[str, Any] = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn}
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
    else:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    s3.put_bucket_lifecycle_configuration(
        Bucket=name, LifecycleConfiguration={"Rules": [r.to_s3() for r in spec.lifecycle]}
    )


def _ensure_glue_database(cfg: Config, aws: LocalAws) -> None:
    glue = aws.client("glue")
    try:
        glue.get_database(Name=cfg.glue_database)
    except ClientError as exc:
        if _error_code(exc) != "EntityNotFoundException":
            raise
        glue.create_database(
            DatabaseInput={"Name": cfg.glue_database, "Description": f"{cfg.prefix} curated tables and features"}
        )


def _ensure_workgroup(cfg: Config, aws: LocalAws, configuration: Mapping[str, Any]) -> None:
    """Create the workgroup, or replace it when its configuration drifted (moto has no UpdateWorkGroup)."""
    athena = aws.client("athena")
    current: dict[str, Any] | None = None
    try:
        # AWS raises for an unknown workgroup; moto answers {"WorkGroup": null}.
        found = athena.get_work_group(WorkGroup=cfg.athena_workgroup).get("WorkGroup")
        current = found.get("Configuration", {}) if found else None
    except ClientError as exc:
        if _error_code(exc) not in ("InvalidRequestException", "ResourceNotFoundException"):
            raise
    # moto echoes defaults (RequesterPaysEnabled ...): compare only what we set.
    if current is not None and all(current.get(k) == v for k, v in configuration.items()):
        return
    if current is not None:
        athena.delete_work_group(WorkGroup=cfg.athena_workgroup, RecursiveDeleteOption=False)
    athena.create_work_group(
        Name=cfg.athena_workgroup,
        Configuration=dict(configuration),
        Description=f"{cfg.prefix} analytics: results encrypted, scan cutoff enforced",
        Tags=[{"Key": "project", "Value": cfg.project_name}, {"Key": "env", "Value": cfg.env_name}],
    )


def provision(cfg: Config, aws: LocalAws) -> LocalResources:
    """Create (or converge) the data stack's resources on the local AWS and return their names."""
    key = _ensure_kms_key(cfg, aws)
    specs = bucket_specs(cfg)
    names = {kind: cfg.bucket_name(kind, LOCAL_ACCOUNT, aws.region) for kind in BUCKET_KINDS}
    for name in names.values():
        _ensure_bucket(aws, name)

    log_bucket = names[ACCESS_LOGS]
    logged = [kind for kind in BUCKET_KINDS if specs[kind].log_to_access_logs]
    # The access-logs bucket first: its policy must allow log delivery before logging is enabled.
    for kind in sorted(BUCKET_KINDS, key=lambda k: k != ACCESS_LOGS):
        policy = bucket_policy(names[kind], kind, [names[k] for k in logged], LOCAL_ACCOUNT)
        _configure_bucket(aws, names[kind], specs[kind], key["Arn"], moto_compatible_policy(policy))
    s3 = aws.client("s3")
    for kind in logged:
        # Data buckets emit EventBridge events (CDK event_bridge_enabled=True): uploads can trigger runs.
        s3.put_bucket_notification_configuration(
            Bucket=names[kind], NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        s3.put_bucket_logging(
            Bucket=names[kind],
            BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": log_bucket, "TargetPrefix": f"{kind}/"}},
        )

    _ensure_glue_database(cfg, aws)
    _ensure_workgroup(cfg, aws, workgroup_configuration(cfg, names[ATHENA_RESULTS], key["Arn"]))
    return LocalResources(
        source_bucket=names[SOURCE],
        destination_bucket=names[CURATED],
        athena_results_bucket=names[ATHENA_RESULTS],
        access_logs_bucket=log_bucket,
        kms_key_id=key["KeyId"],
        glue_database=cfg.glue_database,
        athena_workgroup=cfg.athena_workgroup,
        kms_key_arn=key["Arn"],
        buckets=names,
    )


_CONTENT_TYPES = {
    ".csv": "text/csv",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".gz": "application/gzip",
}


def upload_raw(aws: LocalAws, res: LocalResources, files: Mapping[str, Path]) -> dict[str, str]:
    """Upload each table's file to ``s3://<source>/raw/<table>/<file name>``; return table -> URI.

    Every path is checked before anything is uploaded, so a typo never leaves a half-loaded
    source bucket. A table's previous raw objects are removed (versioning keeps them), because
    the recipe job reads the whole ``raw/<table>/`` prefix and must see only this load.
    """
    known = (*TABLES, CLICKSTREAM)
    unknown = sorted(set(files) - set(known))
    if unknown:
        raise ValueError(f"unknown raw table(s) {unknown}; expected some of {list(known)}")
    missing = {t: Path(p) for t, p in files.items() if not Path(p).is_file()}
    if missing:
        listed = ", ".join(f"{t}: {p}" for t, p in missing.items())
        raise FileNotFoundError(f"raw input file(s) not found: {listed}")

    s3 = aws.client("s3")
    uris: dict[str, str] = {}
    for table, raw_path in files.items():
        path = Path(raw_path)
        prefix = f"{RAW_PREFIX}/{table}/"
        # A clickstream file lands in a dated folder, as Firehose writes it (the dataset reads those folders only).
        folder = datetime.now(UTC).strftime(ARCHIVE_DATE_LAYOUT) if table == CLICKSTREAM else ""
        key = f"{prefix}{folder}{path.name}"
        stale = [
            {"Key": obj["Key"]}
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=res.source_bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if obj["Key"] != key
        ]
        if stale:
            s3.delete_objects(Bucket=res.source_bucket, Delete={"Objects": stale, "Quiet": True})
        content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        s3.upload_file(str(path), res.source_bucket, key, ExtraArgs={"ContentType": content_type})
        uris[table] = f"s3://{res.source_bucket}/{key}"
    return uris


def restore_kept(aws: LocalAws, res: LocalResources, lake: Path, keys: tuple[str, ...]) -> list[str]:
    """Objects an earlier run left in the destination bucket that a deployment keeps between runs (the erasure
    suppression list): moto starts empty each run, so the workdir's copies (``lake/<key>``) go back where they
    were. Returns the keys restored."""
    restored = []
    for key in keys:
        if (Path(lake) / key).is_file():
            aws.client("s3").upload_file(str(Path(lake) / key), res.destination_bucket, key)
            restored.append(key)
    return restored
