"""The clickstream on the local AWS (moto): stream, recent-items table and dead-letter queue, fed by
a replay of interaction events and drained by the *same* consumer code the Lambda runs.

moto cannot invoke Lambdas (no Docker), so :func:`enable_mapping` and :func:`poll` play the consumer's event
source mapping as the streaming template declares it, invoking the function's ``handler`` from its cdk.out asset
(``make run``); :func:`recommend_through_api` calls the API function's handler the same way.
:func:`consume_once` and :func:`recommend` call the project's copies directly with given settings (unit tests, and
the erasure stage's setup).

Names and settings live once in ``settings/streaming.py``, which ``stacks/streaming_stack.py`` imports too.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lambdas.recommend_api import handler as recommend_api
from lambdas.stream_consumer import handler as consumer
from recsys.local.functions import LocalFunction, find_function
from recsys.local.functions import invoke as invoke_function
from recsys.local.moto_server import LocalAws
from settings.config import Config
from settings.streaming import (  # noqa: F401 - re-exported for the local run and its tests
    ARCHIVE_DATE_LAYOUT,
    CONSUMER_BATCH_SIZE,
    CONSUMER_MAX_BATCHING_SECONDS,
    CONSUMER_RETRY_ATTEMPTS,
    PUT_RECORDS_MAX,
    RECENT_ITEMS_N,
    RECENT_TTL_DAYS,
    STREAM_ARCHIVE_PREFIX,
    STREAM_ERRORS_PREFIX,
    STREAM_SHARDS,
    StreamingNames,
    streaming_names,
)


@dataclass(frozen=True)
class StreamingResources:
    names: StreamingNames
    stream_arn: str
    dlq_url: str
    recent_n: int = RECENT_ITEMS_N
    ttl_days: int = RECENT_TTL_DAYS

    def settings(self) -> consumer.Settings:
        return consumer.Settings(
            table=self.names.table, dlq_url=self.dlq_url, recent_n=self.recent_n, ttl_days=self.ttl_days
        )


@dataclass
class ConsumerStats:
    records: int = 0
    processed: int = 0  # applied to a user's recent items
    duplicates: int = 0  # skipped: already applied (replays)
    dead_lettered: int = 0
    failed: int = 0  # reported as batch item failures (would be retried)
    batches: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def provision_streaming(cfg: Config, aws: LocalAws, *, shards: int = STREAM_SHARDS) -> StreamingResources:
    """Create (idempotently) what the streaming stack declares and the local run can use."""
    names = streaming_names(cfg)
    kinesis, ddb, sqs = aws.client("kinesis"), aws.client("dynamodb"), aws.client("sqs")
    if names.stream not in kinesis.list_streams()["StreamNames"]:
        kinesis.create_stream(StreamName=names.stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=names.stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    arn = kinesis.describe_stream_summary(StreamName=names.stream)["StreamDescriptionSummary"]["StreamARN"]
    if names.table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=names.table,
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.update_time_to_live(
            TableName=names.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": consumer.TTL_ATTR}
        )
    dlq_url = sqs.create_queue(QueueName=names.dlq)["QueueUrl"]
    sqs.create_queue(QueueName=names.failure_queue)
    return StreamingResources(names=names, stream_arn=arn, dlq_url=dlq_url)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay_events(aws: LocalAws, res: StreamingResources, events: Iterable[dict | bytes | str]) -> int:
    """put_records in batches of 500, partition key = user_id (keeps a user's events in order on one shard).

    Dicts are sent as JSON; bytes/str as they are (to replay malformed records too). Returns records put.
    """
    kinesis = aws.client("kinesis")
    put = 0
    for batch in _batches(events, PUT_RECORDS_MAX):
        entries = []
        for e in batch:
            data = json.dumps(e).encode() if isinstance(e, dict) else e.encode() if isinstance(e, str) else e
            key = str(e.get("user_id") or "unknown") if isinstance(e, dict) else "malformed"
            entries.append({"Data": data, "PartitionKey": key[:256] or "unknown"})
        for attempt in range(5):
            response = kinesis.put_records(StreamName=res.names.stream, Records=entries)
            failed = [entries[i] for i, r in enumerate(response["Records"]) if "ErrorCode" in r]
            put += len(entries) - len(failed)
            if not failed:
                break
            entries = failed
            time.sleep(0.05 * 2**attempt)
        else:
            raise RuntimeError(f"{len(entries)} record(s) not accepted by {res.names.stream}")
    return put


def archive_events(
    aws: LocalAws, bucket: str, records: Iterable[dict | bytes | str], *, name: str = "local-archive"
) -> str:
    """Firehose's job, done once: the records as gzip JSON lines under raw/clickstream/<date>/; returns the key.

    Records are archived as they were put on the stream, malformed ones included (Firehose does not
    validate): the clickstream recipe job quarantines them with a reason, so nothing is lost.
    """
    lines = [
        r if isinstance(r, bytes) else (r.encode() if isinstance(r, str) else json.dumps(r).encode()) for r in records
    ]
    now = datetime.now(UTC)
    key = (
        f"{STREAM_ARCHIVE_PREFIX}{now.strftime(ARCHIVE_DATE_LAYOUT)}"
        f"{name}-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.jsonl.gz"
    )
    body = gzip.compress(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    return key


def _kinesis_event(records: list[dict[str, Any]], shard_id: str, res: StreamingResources, region: str) -> dict:
    """The event Lambda's Kinesis event source mapping delivers (base64 data, eventID = shard:sequence)."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode("ascii"),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "awsRegion": region,
                "eventSourceARN": res.stream_arn,
            }
            for r in records
        ]
    }


def consume_once(
    aws: LocalAws,
    res: StreamingResources,
    *,
    batch_size: int = CONSUMER_BATCH_SIZE,
    start: str = "TRIM_HORIZON",
    after: dict[str, str] | None = None,
) -> ConsumerStats:
    """Drain every shard once, in batches of ``batch_size``, through the consumer Lambda's code.

    ``after`` (shard id -> last sequence number read) resumes where a previous call stopped and is
    updated in place, like the event source mapping's checkpoint; without it every call reads from
    ``start`` (TRIM_HORIZON re-reads the stream: the consumer's sequence guard makes that a no-op).
    """
    kinesis, ddb, sqs = aws.client("kinesis"), aws.client("dynamodb"), aws.client("sqs")
    settings = res.settings()
    stats = ConsumerStats()
    began = time.perf_counter()
    for shard in kinesis.list_shards(StreamName=res.names.stream)["Shards"]:
        shard_id = shard["ShardId"]
        kwargs: dict[str, Any] = {"StreamName": res.names.stream, "ShardId": shard_id}
        if after is not None and shard_id in after:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after[shard_id])
        else:
            kwargs["ShardIteratorType"] = start
        iterator = kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=batch_size)
            records = page["Records"]
            if not records:
                break
            result = consumer.process_batch(
                _kinesis_event(records, shard_id, res, aws.region), settings=settings, dynamodb=ddb, sqs=sqs
            )
            stats.batches += 1
            stats.records += result.received
            stats.processed += result.applied
            stats.duplicates += result.duplicates
            stats.dead_lettered += result.dead_lettered
            stats.failed += len(result.failed)
            for reason, n in result.reasons.items():
                stats.reasons[reason] = stats.reasons.get(reason, 0) + n
            if after is not None:
                after[shard_id] = records[-1]["SequenceNumber"]
            iterator = page.get("NextShardIterator")
    stats.seconds = time.perf_counter() - began
    return stats


def recent_items(aws: LocalAws, res: StreamingResources, user_id: str) -> list[str]:
    """The user's recent products as the serving Lambda reads them (most recent first)."""
    return recommend_api.recent_product_ids(user_id, table=res.names.table, dynamodb=aws.client("dynamodb"))


def dead_letters(aws: LocalAws, res: StreamingResources, max_messages: int = 100) -> list[dict[str, Any]]:
    """Read (and delete) up to ``max_messages`` dead-letter bodies: for the run's report and tests."""
    sqs = aws.client("sqs")
    out: list[dict[str, Any]] = []
    while len(out) < max_messages:
        messages = sqs.receive_message(
            QueueUrl=res.dlq_url, MaxNumberOfMessages=min(10, max_messages - len(out)), WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        for m in messages:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=res.dlq_url, ReceiptHandle=m["ReceiptHandle"])
    return out


def runtime_invoke(aws: LocalAws, endpoint_url: str, endpoint_name: str) -> recommend_api.Invoke:
    """The serving Lambda's production ``invoke`` (boto3 ``sagemaker-runtime`` InvokeEndpoint), pointed at the
    local endpoint, which answers the SageMaker Runtime API: the Lambda's own code path runs unchanged."""
    from botocore.config import Config as BotoConfig

    client = aws.session().client(
        "sagemaker-runtime", endpoint_url=endpoint_url, config=BotoConfig(retries={"max_attempts": 1})
    )

    def invoke(request: dict[str, Any]) -> dict[str, Any]:
        return recommend_api.sagemaker_invoke(request, endpoint_name=endpoint_name, client=client)

    return invoke


def api_gateway_event(user_id: str, k: int) -> dict[str, Any]:
    """The proxy-integration event API Gateway sends the recommendation function for GET /recommendations/{user_id}."""
    return {
        "httpMethod": "GET",
        "resource": "/recommendations/{user_id}",
        "path": f"/recommendations/{user_id}",
        "pathParameters": {"user_id": user_id},
        "queryStringParameters": {"k": str(k)},
    }


def recommend(
    aws: LocalAws, res: StreamingResources, user_id: str, k: int, invoke: recommend_api.Invoke
) -> dict[str, Any]:
    """Call the serving Lambda's handler as API Gateway would; returns {"status": ..., "body": ...}."""
    event = api_gateway_event(user_id, k)
    response = recommend_api.handler(event, invoke=invoke, table=res.names.table, dynamodb=aws.client("dynamodb"))
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


# ---- the deployed functions, run as the event source mapping and API Gateway invoke them ------------------------


@dataclass
class EventSourceMapping:
    """The consumer's Kinesis event source mapping as the streaming template declares it, played locally: it reads
    each shard from its checkpoint in batches of ``BatchSize``, invokes the function's handler (from its cdk.out
    asset) with the event Lambda delivers, retries a failed batch from its first reported failure (or, on a function
    error with ``BisectBatchOnFunctionError``, as two halves) up to ``MaximumRetryAttempts`` times, then sends the
    batch's description to the ``OnFailure`` destination and moves on."""

    function: LocalFunction
    properties: dict[str, Any]
    #: shard id -> last sequence number read; set when the mapping is enabled (``StartingPosition``)
    checkpoints: dict[str, str | None] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.properties.get("BatchSize", 100))

    @property
    def retries(self) -> int:
        return int(self.properties.get("MaximumRetryAttempts", -1))  # -1: until the records expire

    @property
    def bisect(self) -> bool:
        return bool(self.properties.get("BisectBatchOnFunctionError", False))

    @property
    def on_failure(self) -> str | None:
        return self.properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")


def enable_mapping(cfg: Config, aws: LocalAws, res: StreamingResources, out_dir: Any = None) -> EventSourceMapping:
    """The consumer function and its mapping from cdk.out, enabled now: with ``StartingPosition`` LATEST only the
    records put from now on are read (TRIM_HORIZON: everything the stream holds)."""
    function = find_function(cfg, res.names.consumer_function, out_dir)
    [props] = [m for m in function.event_sources if m.get("EventSourceArn") == res.stream_arn] or [None]
    if props is None:
        raise LookupError(f"no event source mapping from {res.stream_arn} to {function.name} in cdk.out")
    position = props.get("StartingPosition")
    if position not in ("LATEST", "TRIM_HORIZON"):
        raise ValueError(f"{function.name}: StartingPosition {position!r} is not rehearsed (LATEST, TRIM_HORIZON)")
    kinesis = aws.client("kinesis")
    mapping = EventSourceMapping(function, props)
    for shard in kinesis.list_shards(StreamName=res.names.stream)["Shards"]:
        last = shard["SequenceNumberRange"].get("EndingSequenceNumber")
        if position == "LATEST":  # the newest record now: read from after it
            iterator = kinesis.get_shard_iterator(StreamName=res.names.stream, ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
            while True:
                page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                if page["Records"]:
                    last = page["Records"][-1]["SequenceNumber"]
                if not page["Records"] or not page.get("NextShardIterator"):
                    break
                iterator = page["NextShardIterator"]
        mapping.checkpoints[shard["ShardId"]] = last if position == "LATEST" else None
    return mapping


def _failure_record(mapping: EventSourceMapping, shard_id: str, records: list[dict], invokes: int, res) -> dict:
    """What Lambda sends to a Kinesis mapping's on-failure destination: the batch's description, not its data."""
    return {
        "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": mapping.function.name,
                           "condition": "RetryAttemptsExhausted", "approximateInvokeCount": invokes},
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["SequenceNumber"],
            "endSequenceNumber": records[-1]["SequenceNumber"],
            "batchSize": len(records),
            "streamArn": res.stream_arn,
        },
    }  # fmt: skip


def _deliver(aws: LocalAws, mapping: EventSourceMapping, res: StreamingResources, shard_id: str,
             batch: list[dict], stats: ConsumerStats) -> None:  # fmt: skip
    """One batch through the handler, with the mapping's retries, bisection and on-failure destination."""
    pending, attempts = [batch], 0
    while pending:
        records = pending.pop(0)
        invokes = attempts + 1
        try:
            response = invoke_function(mapping.function, _kinesis_event(records, shard_id, res, aws.region), aws)
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
            error = False
        except Exception:  # noqa: BLE001 - a function error: the mapping retries or bisects
            failed, error = {r["SequenceNumber"] for r in records}, True
        stats.batches += 1
        if not failed:
            stats.records += len(records)
            continue
        if mapping.retries != -1 and attempts >= mapping.retries:
            stats.records += len(records)
            stats.failed += len(records)
            if mapping.on_failure:
                queue = aws.client("sqs").get_queue_url(QueueName=mapping.on_failure.rsplit(":", 1)[-1])["QueueUrl"]
                aws.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(
                    _failure_record(mapping, shard_id, records, invokes, res)))  # fmt: skip
            continue
        attempts += 1
        if error and mapping.bisect and len(records) > 1:
            half = len(records) // 2
            pending[:0] = [records[:half], records[half:]]
        else:  # retry from the first failed record (ReportBatchItemFailures' checkpoint)
            first = next(i for i, r in enumerate(records) if r["SequenceNumber"] in failed)
            stats.records += first
            pending.insert(0, records[first:])


def poll(aws: LocalAws, mapping: EventSourceMapping, res: StreamingResources) -> ConsumerStats:
    """Read every shard from the mapping's checkpoint to its end, delivering each batch through the handler."""
    kinesis = aws.client("kinesis")
    stats = ConsumerStats()
    began = time.perf_counter()
    for shard_id, after in mapping.checkpoints.items():
        kwargs: dict[str, Any] = {"StreamName": res.names.stream, "ShardId": shard_id}
        if after:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        iterator = kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=mapping.batch_size)
            if not page["Records"]:
                break
            _deliver(aws, mapping, res, shard_id, page["Records"], stats)
            mapping.checkpoints[shard_id] = page["Records"][-1]["SequenceNumber"]
            iterator = page.get("NextShardIterator")
    stats.seconds = time.perf_counter() - began
    return stats


def endpoint_stub(endpoint_url: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """SageMaker Runtime's InvokeEndpoint, answered by the local endpoint (moto's answers canned results): the
    one call of the API function that is stubbed."""
    import io
    import urllib.request

    from botocore.response import StreamingBody

    def invoke_endpoint(request: dict[str, Any]) -> dict[str, Any]:
        body = request["Body"]
        post = urllib.request.Request(f"{endpoint_url}/invocations", data=body if isinstance(body, bytes) else
                                      body.encode(), headers={"Content-Type": request.get("ContentType",
                                      "application/json")}, method="POST")  # fmt: skip
        with urllib.request.urlopen(post, timeout=30) as answer:
            data = answer.read()
            kind = answer.headers.get("Content-Type", "application/json")
        return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": kind}

    return invoke_endpoint


def recommend_through_api(
    cfg: Config, aws: LocalAws, user_id: str, k: int, endpoint_url: str, out_dir: Any = None
) -> dict[str, Any]:
    """The API function's handler (from its cdk.out asset, with its template environment) on the event API
    Gateway's proxy integration sends; returns {"status": ..., "body": ...}."""
    function = find_function(cfg, streaming_names(cfg).api_function, out_dir)
    event = api_gateway_event(user_id, k)
    response = invoke_function(function, event, aws, stubs={"sagemaker-runtime.InvokeEndpoint":
                                                             endpoint_stub(endpoint_url)})  # fmt: skip
    return {"status": response["statusCode"], "body": json.loads(response["body"])}
