"""The clickstream consumer on moto: recent items, dead letters with reasons, replays, partial failures."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from glue_jobs.schema import EVENT_TYPES
from lambdas.stream_consumer import handler as consumer
from recsys.local.moto_server import LocalAws
from recsys.local.streaming import StreamingResources, provision_streaming
from settings.config import load_project_config

SHARD = "shardId-000000000000"


def record(payload: Any, seq: int, *, raw: bytes | None = None) -> dict[str, Any]:
    data = raw if raw is not None else json.dumps(payload).encode()
    return {
        "kinesis": {
            "partitionKey": payload.get("user_id", "x") if isinstance(payload, dict) else "x",
            "sequenceNumber": str(49_000_000_000_000_000_000 + seq),
            "data": base64.b64encode(data).decode(),
        },
        "eventID": f"{SHARD}:{49_000_000_000_000_000_000 + seq}",
        "eventSourceARN": "arn:aws:kinesis:ap-south-1:123456789012:stream/test",
    }


def view(user: str, product: str, ts: int, event_type: str = "view", **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "product_id": product, "event_type": event_type, "rating": "", "timestamp": ts, **extra}


@pytest.fixture
def res(aws_env: LocalAws) -> StreamingResources:
    return provision_streaming(load_project_config(), aws_env)


def run(aws: LocalAws, res: StreamingResources, records: list[dict], **kwargs: Any) -> consumer.BatchResult:
    return consumer.process_batch(
        {"Records": records},
        settings=kwargs.pop("settings", res.settings()),
        dynamodb=kwargs.pop("dynamodb", aws.client("dynamodb")),
        sqs=aws.client("sqs"),
        clock=lambda: 1_800_000_000.0,
        **kwargs,
    )


def item(aws: LocalAws, res: StreamingResources, user: str) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    raw = aws.client("dynamodb").get_item(TableName=res.names.table, Key={"user_id": {"S": user}})["Item"]
    return {k: TypeDeserializer().deserialize(v) for k, v in raw.items()}


def dlq_bodies(aws: LocalAws, res: StreamingResources) -> list[dict]:
    sqs = aws.client("sqs")
    out = []
    while messages := sqs.receive_message(QueueUrl=res.dlq_url, MaxNumberOfMessages=10).get("Messages", []):
        out += [json.loads(m["Body"]) for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=res.dlq_url, ReceiptHandle=m["ReceiptHandle"])
    return out


def test_event_types_match_the_raw_schema():
    assert consumer.EVENT_TYPES == EVENT_TYPES


def test_good_batch_keeps_recent_distinct_products_newest_first_with_counts_and_ttl(aws_env, res):
    base = 1_700_000_000
    records = [
        record(view("u1", "p1", base), 1),
        record(view("u1", "p2", base + 10), 2),
        record(view("u1", "p1", base + 20, "add_to_cart"), 3),
        record(view("u2", "p9", "2024-05-01T10:00:00+05:30"), 4),
    ]
    result = run(aws_env, res, records)
    assert (result.applied, result.dead_lettered, result.failed) == (4, 0, [])
    u1 = item(aws_env, res, "u1")
    assert u1["recent_product_ids"] == ["p1", "p2"]
    assert u1["event_counts"] == {"view": 2, "add_to_cart": 1}
    assert u1["last_seen_ms"]["p1"] == (base + 20) * 1000
    assert u1["expires_at"] == 1_800_000_000 + consumer.DEFAULT_TTL_DAYS * 86_400
    assert item(aws_env, res, "u2")["recent_product_ids"] == ["p9"]


def test_only_the_most_recent_n_products_are_kept(aws_env, res):
    settings = consumer.Settings(table=res.names.table, dlq_url=res.dlq_url, recent_n=3)
    records = [record(view("u1", f"p{i}", 1_700_000_000 + i), i) for i in range(6)]
    run(aws_env, res, records, settings=settings)
    assert item(aws_env, res, "u1")["recent_product_ids"] == ["p5", "p4", "p3"]


def test_mixed_batch_dead_letters_bad_records_with_reason_and_payload_and_goes_on(aws_env, res):
    bad = [
        (record(None, 2, raw=b"{not json"), "not_json"),
        (record(view("u1", "p2", 1_700_000_000, "wishlist"), 3), "unknown_event_type"),
        (record(view("", "p3", 1_700_000_000), 4), "missing_user_id"),
        (record(view("u1", "p4", "yesterday"), 5), "invalid_timestamp"),
        (record(view("u1", "p5", 1_700_000_000, "rating"), 6), "invalid_rating"),
        (record({"foo": 1}, 7), "unknown_schema"),
        (record(None, 8, raw=b"\xff\xfe\x00"), "not_json"),
    ]
    good = [record(view("u1", "p1", 1_700_000_000), 1), record(view("u1", "p6", 1_700_000_001, "rating", rating=4), 9)]
    result = run(aws_env, res, [good[0], *(r for r, _ in bad), good[1]])
    assert (result.applied, result.dead_lettered, result.failed) == (2, len(bad), [])
    letters = dlq_bodies(aws_env, res)
    assert sorted(b["reason"] for b in letters) == sorted(reason for _, reason in bad)
    by_seq = {b["sequence_number"]: b for b in letters}
    wishlist = by_seq[bad[1][0]["kinesis"]["sequenceNumber"]]
    assert json.loads(wishlist["payload"])["event_type"] == "wishlist"
    binary = by_seq[bad[6][0]["kinesis"]["sequenceNumber"]]
    assert binary["payload_encoding"] == "base64" and base64.b64decode(binary["payload"]) == b"\xff\xfe\x00"
    assert item(aws_env, res, "u1")["recent_product_ids"] == ["p6", "p1"]


def test_replayed_batch_does_not_double_count(aws_env, res):
    records = [record(view("u1", "p1", 1_700_000_000), 1), record(view("u1", "p2", 1_700_000_001), 2)]
    first = run(aws_env, res, records)
    again = run(aws_env, res, records)
    assert (first.applied, again.applied, again.duplicates) == (2, 0, 2)
    assert item(aws_env, res, "u1")["event_counts"] == {"view": 2}
    # A retry that starts mid-batch (after a partial failure) applies only the new record.
    more = run(aws_env, res, [records[1], record(view("u1", "p3", 1_700_000_002), 3)])
    assert (more.applied, more.duplicates) == (1, 1)
    assert item(aws_env, res, "u1")["event_counts"] == {"view": 3}


class FlakyDynamo:
    """Throttles writes for one user: that user's records must come back as batch item failures."""

    def __init__(self, real: Any, user: str) -> None:
        self.real, self.user = real, user

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_item(self, **kw: Any) -> Any:
        if kw["Item"]["user_id"]["S"] == self.user:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")
        return self.real.put_item(**kw)


def test_transient_write_errors_are_reported_as_batch_item_failures(aws_env, res):
    records = [record(view("u1", "p1", 1_700_000_000), 1), record(view("u2", "p2", 1_700_000_000), 2)]
    result = run(aws_env, res, records, dynamodb=FlakyDynamo(aws_env.client("dynamodb"), "u2"))
    assert result.failed == [records[1]["kinesis"]["sequenceNumber"]]
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": records[1]["kinesis"]["sequenceNumber"]}]}
    # Lambda retries from the failed record; u1 is not applied twice.
    retry = run(aws_env, res, records)
    assert (retry.applied, retry.duplicates) == (1, 1)
    assert item(aws_env, res, "u1")["event_counts"] == {"view": 1}


class RacingDynamo:
    """Before our first write, another invocation writes the same user: the conditional put must lose and merge."""

    def __init__(self, real: Any, aws: LocalAws, res: StreamingResources) -> None:
        self.real, self.aws, self.res, self.raced = real, aws, res, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_item(self, **kw: Any) -> Any:
        if not self.raced:
            self.raced = True
            run(self.aws, self.res, [record(view("u1", "p0", 1_700_000_000), 1)])
        return self.real.put_item(**kw)


def test_a_concurrent_write_is_merged_not_overwritten(aws_env, res):
    racing = RacingDynamo(aws_env.client("dynamodb"), aws_env, res)
    result = run(aws_env, res, [record(view("u1", "p1", 1_700_000_005), 2)], dynamodb=racing)
    assert racing.raced and result.applied == 1 and result.failed == []
    u1 = item(aws_env, res, "u1")
    assert u1["recent_product_ids"] == ["p1", "p0"] and u1["event_counts"] == {"view": 2} and u1["version"] == 2


def test_unreachable_dead_letter_queue_makes_the_bad_record_retry_instead_of_vanishing(aws_env, res):
    settings = consumer.Settings(table=res.names.table, dlq_url=res.dlq_url + "-missing")
    bad = record(None, 1, raw=b"nope")
    result = run(aws_env, res, [bad, record(view("u1", "p1", 1_700_000_000), 2)], settings=settings)
    assert result.failed == [bad["kinesis"]["sequenceNumber"]]
    assert result.applied == 1


def test_handler_reads_its_settings_from_the_environment_and_returns_only_the_failures(aws_env, res, monkeypatch):
    monkeypatch.setenv(consumer.ENV_TABLE, res.names.table)
    monkeypatch.setenv(consumer.ENV_DLQ_URL, res.dlq_url)
    monkeypatch.setitem(consumer._CLIENTS, "dynamodb", aws_env.client("dynamodb"))
    monkeypatch.setitem(consumer._CLIENTS, "sqs", aws_env.client("sqs"))
    response = consumer.handler({"Records": [record(view("u1", "p1", 1_700_000_000), 1)]}, None)
    assert response == {"batchItemFailures": []}
    assert item(aws_env, res, "u1")["recent_product_ids"] == ["p1"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1_700_000_000, True), ("1700000000", True), ("2024-01-01T00:00:00Z", True), ("2024-01-01T00:00:00", True),
     ("1999-12-31T23:59:59+00:00", False), (True, False), (None, False), ("soon", False), (float("nan"), False)],
)  # fmt: skip
def test_timestamps_follow_the_raw_contract(value, ok):
    if ok:
        assert consumer.parse_timestamp(value) > 0
    else:
        with pytest.raises((ValueError, TypeError)):
            consumer.parse_timestamp(value)
