"""Kinesis clickstream -> each user's most recent products in DynamoDB, within seconds of the click.

Records are interactions (CONTRACTS.md §1) as JSON. Checks mirror the interactions recipe so the
stream and the batch path reject the same rows, with the same reason names. Bad records go to an
SQS dead-letter queue with the reason and the original payload (never dropped) and the batch goes on.

Per user the item holds the last ``RECENT_ITEMS_N`` distinct products (by event time), per-event-type
counts, a TTL, and per shard the last applied Kinesis sequence number: a retried or replayed batch
skips what was already applied, so counts never double. Writes are conditional on the item's
``version`` (optimistic locking). Transient failures are reported as ``batchItemFailures`` so Lambda
retries from the first failed record only.

Self-contained (stdlib + boto3, which the Lambda runtime provides): the deployment bundle is this
folder alone, so ``EVENT_TYPES`` is a copy of ``glue_jobs.schema.EVENT_TYPES`` (a test keeps them equal).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

LOG = logging.getLogger(__name__)
LOG.setLevel(logging.INFO)

EVENT_TYPES = ("view", "add_to_cart", "purchase", "rating")
REQUIRED_FIELDS = ("user_id", "product_id", "event_type", "timestamp")

#: Environment variables the stack sets (defaults are the local run's).
ENV_TABLE, ENV_DLQ_URL, ENV_RECENT_N, ENV_TTL_DAYS = "RECENT_ITEMS_TABLE", "DLQ_URL", "RECENT_ITEMS_N", "TTL_DAYS"
DEFAULT_RECENT_N = 20
DEFAULT_TTL_DAYS = 30

#: Item attributes; the serving Lambda reads RECENT_ATTR.
RECENT_ATTR = "recent_product_ids"  # most recent first
LAST_SEEN_ATTR = "last_seen_ms"  # product_id -> event time (epoch ms) of its latest event
COUNTS_ATTR = "event_counts"  # event_type -> count
APPLIED_ATTR = "applied_seq"  # shard id -> last applied sequence number (zero-padded)
TTL_ATTR = "expires_at"  # epoch seconds; DynamoDB deletes the item some time after
VERSION_ATTR = "version"

# Same bounds as the recipe's timestamp check (glue_jobs/recipes/interactions.json).
_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
_MAX_ID_LEN = 256
# Sequence numbers are decimal strings of varying length: zero-padding makes string order numeric order.
_SEQ_WIDTH = 128
_WRITE_ATTEMPTS = 3
# SQS accepts 256 KiB per message; bigger payloads are cut (the Firehose archive keeps the full record).
_MAX_DLQ_PAYLOAD = 200_000
_TRANSIENT_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
}

_SER, _DES = TypeSerializer(), TypeDeserializer()


class InvalidEvent(ValueError):
    """A record that can never be applied; ``reason`` is a short machine-readable name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Settings:
    table: str
    dlq_url: str
    recent_n: int = DEFAULT_RECENT_N
    ttl_days: int = DEFAULT_TTL_DAYS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            table=env[ENV_TABLE],
            dlq_url=env[ENV_DLQ_URL],
            recent_n=int(env.get(ENV_RECENT_N, DEFAULT_RECENT_N)),
            ttl_days=int(env.get(ENV_TTL_DAYS, DEFAULT_TTL_DAYS)),
        )


@dataclass(frozen=True)
class Event:
    user_id: str
    product_id: str
    event_type: str
    time_ms: int
    shard: str
    seq: str  # as Kinesis gave it (the batchItemFailures identifier)
    recommendation_id: str | None = None  # the endpoint answer it came from (kept in the archive, not the table)

    @property
    def ordered_seq(self) -> str:
        return self.seq.zfill(_SEQ_WIDTH)


@dataclass
class BatchResult:
    """What one invocation did; ``response()`` is what Lambda's event source mapping reads."""

    received: int = 0
    applied: int = 0  # events written to a user's item
    duplicates: int = 0  # already applied by an earlier (retried) invocation
    dead_lettered: int = 0
    failed: list[str] = field(default_factory=list)  # sequence numbers to retry
    reasons: dict[str, int] = field(default_factory=dict)

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failed]}


def parse_timestamp(value: Any) -> float:
    """Epoch seconds (number or numeric string) or ISO-8601 (offset honoured, none = UTC)."""
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        raise ValueError(type(value).__name__)
    if not math.isfinite(seconds) or not _MIN_TS <= seconds < _MAX_TS:
        raise ValueError("outside 2000-2100")
    return seconds


def _identifier(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"missing_{name}", f"{name} is missing or empty")
    if len(value) > _MAX_ID_LEN:
        raise InvalidEvent(f"invalid_{name}", f"{name} is longer than {_MAX_ID_LEN} characters")
    return value.strip()


def parse_event(data: bytes) -> dict[str, Any]:
    """Validate one record body; returns user_id, product_id, event_type, time_ms or raises InvalidEvent."""
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent("not_json", str(exc)[:200]) from None
    if not isinstance(payload, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(payload).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in payload]
    if len(missing) == len(REQUIRED_FIELDS):
        raise InvalidEvent("unknown_schema", f"none of {', '.join(REQUIRED_FIELDS)} present")
    user_id, product_id = _identifier(payload, "user_id"), _identifier(payload, "product_id")
    event_type = payload.get("event_type")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent("unknown_event_type", f"event_type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    rating = payload.get("rating")
    if event_type == "rating":
        try:
            ok = rating is not None and rating != "" and float(rating) in (1.0, 2.0, 3.0, 4.0, 5.0)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidEvent("invalid_rating", f"rating events need a rating from 1 to 5, got {rating!r}")
    elif rating not in (None, ""):
        raise InvalidEvent("rating_on_non_rating_event", f"{event_type} event carries rating {rating!r}")
    try:
        seconds = parse_timestamp(payload.get("timestamp"))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent("invalid_timestamp", f"timestamp {payload.get('timestamp')!r}: {exc}") from None
    return {
        "user_id": user_id,
        "product_id": product_id,
        "event_type": event_type,
        "time_ms": int(seconds * 1000),
        "recommendation_id": _recommendation_id(payload.get("recommendation_id")),
    }


def _recommendation_id(value: Any) -> str | None:
    """The optional id of the endpoint answer the event came from (issue 14), as text; None when absent or blank.

    Never a reason to refuse the event: the recipe passes the column through as given, and the stream must not
    reject what the batch path keeps. The Firehose archive keeps the record as sent, so attribution reads it there.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text[:_MAX_ID_LEN] or None


def _shard(record: Mapping[str, Any]) -> str:
    """Kinesis eventID is ``shardId-...:sequence``; the shard scopes the sequence-number guard."""
    return str(record.get("eventID", "")).split(":", 1)[0] or "shard"


def _dead_letter_body(record: Mapping[str, Any], data: bytes, exc: InvalidEvent, now: float) -> str:
    kinesis = record.get("kinesis", {})
    try:
        payload, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(data).decode("ascii"), "base64"
    body: dict[str, Any] = {
        "reason": exc.reason,
        "detail": exc.detail,
        "payload": payload,
        "payload_encoding": encoding,
        "sequence_number": kinesis.get("sequenceNumber"),
        "partition_key": kinesis.get("partitionKey"),
        "shard_id": _shard(record),
        "event_source_arn": record.get("eventSourceARN"),
        "dead_lettered_at": datetime.fromtimestamp(now, UTC).isoformat(),
    }
    if len(payload) > _MAX_DLQ_PAYLOAD:
        body.update(
            payload=payload[:_MAX_DLQ_PAYLOAD],
            payload_truncated=True,
            payload_sha256=hashlib.sha256(data).hexdigest(),
        )
    return json.dumps(body)  # ensure_ascii: control characters are escaped, so SQS accepts the body


def _send_dead_letters(sqs: Any, url: str, letters: list[tuple[str, str, str]], result: BatchResult) -> None:
    """letters: (sequence number, reason, body). A letter SQS did not take is retried with the batch."""
    for start in range(0, len(letters), 10):
        chunk = letters[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": body} for i, (_, _, body) in enumerate(chunk)]
        try:
            failed_ids = {f["Id"] for f in sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])}
        except (ClientError, BotoCoreError) as exc:
            LOG.warning("dead-letter queue unavailable, will retry %d record(s): %s", len(chunk), exc)
            failed_ids = {e["Id"] for e in entries}
        for i, (seq, reason, _) in enumerate(chunk):
            if str(i) in failed_ids:
                result.failed.append(seq)
            else:
                result.dead_lettered += 1
                result.reasons[reason] = result.reasons.get(reason, 0) + 1


def _merge(item: dict[str, Any], events: list[Event], settings: Settings, now: float) -> tuple[dict[str, Any], int]:
    """The user's item with ``events`` applied, skipping those at or below the shard's applied sequence."""
    applied: dict[str, str] = dict(item.get(APPLIED_ATTR, {}))
    fresh = [e for e in events if e.ordered_seq > applied.get(e.shard, "")]
    last_seen = {k: int(v) for k, v in item.get(LAST_SEEN_ATTR, {}).items()}
    counts = {k: int(v) for k, v in item.get(COUNTS_ATTR, {}).items()}
    for e in fresh:
        last_seen[e.product_id] = max(last_seen.get(e.product_id, 0), e.time_ms)
        counts[e.event_type] = counts.get(e.event_type, 0) + 1
        applied[e.shard] = max(applied.get(e.shard, ""), e.ordered_seq)
    recent = sorted(last_seen.items(), key=lambda kv: (-kv[1], kv[0]))[: settings.recent_n]
    new_item = {
        "user_id": events[0].user_id,
        RECENT_ATTR: [pid for pid, _ in recent],
        LAST_SEEN_ATTR: dict(recent),
        COUNTS_ATTR: counts,
        APPLIED_ATTR: applied,
        "updated_at": int(now),
        TTL_ATTR: int(now) + settings.ttl_days * 86_400,
        VERSION_ATTR: int(item.get(VERSION_ATTR, 0)) + 1,
    }
    return new_item, len(fresh)


def _load_items(ddb: Any, table: str, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every user's current item in one BatchGetItem per 100 users (consistent reads)."""
    items: dict[str, dict[str, Any]] = {}
    for start in range(0, len(user_ids), 100):
        request: dict[str, Any] = {
            table: {"Keys": [{"user_id": {"S": u}} for u in user_ids[start : start + 100]], "ConsistentRead": True}
        }
        for attempt in range(5):
            response = ddb.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(table, []):
                items[raw["user_id"]["S"]] = raw
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.01 * 2**attempt)
        else:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "BatchGetItem")
    return items


def _apply_user(
    ddb: Any, settings: Settings, events: list[Event], now: float, prefetched: dict[str, Any] | None
) -> tuple[int, int]:
    """Merge-write one user's item under optimistic locking; returns (applied, duplicates).

    ``prefetched`` is the item as the batch read it (None: no item yet); after a lost race it is re-read.
    """
    key = {"user_id": {"S": events[0].user_id}}
    raw = prefetched
    for attempt in range(_WRITE_ATTEMPTS):
        if attempt:
            raw = ddb.get_item(TableName=settings.table, Key=key, ConsistentRead=True).get("Item")
        item = {k: _DES.deserialize(v) for k, v in raw.items()} if raw else {}
        new_item, fresh = _merge(item, events, settings, now)
        if not fresh:
            return 0, len(events)
        condition: dict[str, Any] = (
            {"ConditionExpression": "#v = :v", "ExpressionAttributeValues": {":v": raw[VERSION_ATTR]}}
            if raw
            else {"ConditionExpression": "attribute_not_exists(user_id)"}
        )
        try:
            ddb.put_item(
                TableName=settings.table,
                Item={k: _SER.serialize(v) for k, v in new_item.items()},
                **({"ExpressionAttributeNames": {"#v": VERSION_ATTR}} if raw else {}),
                **condition,
            )
            return fresh, len(events) - fresh
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException" or attempt == _WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * 2**attempt)  # another writer won: re-read and merge again
    raise AssertionError("unreachable")


def process_batch(
    event: Mapping[str, Any],
    *,
    settings: Settings | None = None,
    dynamodb: Any = None,
    sqs: Any = None,
    clock: Callable[[], float] = time.time,
) -> BatchResult:
    """Apply a Kinesis batch; the counts are logged and returned (``handler`` returns only the response)."""
    settings = settings or Settings.from_env()
    dynamodb = dynamodb or _clients()["dynamodb"]
    sqs = sqs or _clients()["sqs"]
    now = clock()
    result = BatchResult()
    by_user: dict[str, list[Event]] = {}
    letters: list[tuple[str, str, str]] = []
    for record in event.get("Records", []):
        result.received += 1
        kinesis = record.get("kinesis", {})
        seq = str(kinesis.get("sequenceNumber", ""))
        try:
            data = base64.b64decode(kinesis.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            data = str(kinesis.get("data", "")).encode()
            letters.append((seq, "not_base64", _dead_letter_body(record, data, InvalidEvent("not_base64", ""), now)))
            continue
        try:
            parsed = parse_event(data)
        except InvalidEvent as exc:
            letters.append((seq, exc.reason, _dead_letter_body(record, data, exc, now)))
            continue
        e = Event(**parsed, shard=_shard(record), seq=seq)
        by_user.setdefault(e.user_id, []).append(e)
    if letters:
        _send_dead_letters(sqs, settings.dlq_url, letters, result)
    try:
        current = _load_items(dynamodb, settings.table, list(by_user)) if by_user else {}
    except (ClientError, BotoCoreError) as exc:
        LOG.warning("cannot read recent items, will retry %d record(s): %s", sum(map(len, by_user.values())), exc)
        result.failed.extend(e.seq for events in by_user.values() for e in events)
        by_user = {}
    for user_id, events in by_user.items():
        try:
            applied, duplicates = _apply_user(dynamodb, settings, events, now, current.get(user_id))
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            level = logging.WARNING if code in _TRANSIENT_CODES else logging.ERROR
            LOG.log(level, "user %s: %d event(s) not applied (%s), will retry", user_id, len(events), code)
            result.failed.extend(e.seq for e in events)
            continue
        result.applied += applied
        result.duplicates += duplicates
    LOG.info(
        json.dumps(
            {
                "received": result.received,
                "applied": result.applied,
                "duplicates": result.duplicates,
                "dead_lettered": result.dead_lettered,
                "failed": len(result.failed),
                "reasons": result.reasons,
            }
        )
    )
    return result


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point (Kinesis event source with ReportBatchItemFailures)."""
    return process_batch(event).response()


_CLIENTS: dict[str, Any] = {}


def _clients() -> dict[str, Any]:
    """Created once per container and reused by warm invocations."""
    if not _CLIENTS:
        _CLIENTS.update(dynamodb=boto3.client("dynamodb"), sqs=boto3.client("sqs"))
    return _CLIENTS
