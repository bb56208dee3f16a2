"""Names and settings of the streaming path, shared by the streaming stack and the local run."""

from __future__ import annotations

from dataclasses import dataclass

from settings.config import CLICKSTREAM, RAW_PREFIX, Config

#: Settings of the streaming path (module constants: Config stays the data plane's; see the issue note).
RECENT_ITEMS_N = 20  # distinct products kept per user
RECENT_TTL_DAYS = 30  # an idle user's item expires after this
STREAM_SHARDS = 1  # ~1 MB/s or 1,000 records/s of writes per shard
CONSUMER_BATCH_SIZE = 100
CONSUMER_MAX_BATCHING_SECONDS = 1  # "within seconds": wait at most this long to fill a batch
CONSUMER_RETRY_ATTEMPTS = 3
PUT_RECORDS_MAX = 500  # Kinesis PutRecords limit per call
#: Where Firehose archives the stream in the source bucket (the next training run reads it).
STREAM_ARCHIVE_PREFIX = f"{RAW_PREFIX}/{CLICKSTREAM}/"  # its own JSON dataset; the CSV one never reads it
STREAM_ERRORS_PREFIX = "stream-errors/interactions/"
#: The archive's date folders: Firehose's ``year=!{timestamp:yyyy}/...`` (streaming_stack.py) in strftime.
ARCHIVE_DATE_LAYOUT = "year=%Y/month=%m/day=%d/"


@dataclass(frozen=True)
class StreamingNames:
    stream: str
    table: str
    dlq: str  # malformed records, with reason and payload
    failure_queue: str  # batches that exhausted retries (event source mapping's on-failure destination)
    firehose: str
    consumer_function: str
    api_function: str
    api: str


def streaming_names(cfg: Config) -> StreamingNames:
    p = cfg.prefix
    return StreamingNames(
        stream=f"{p}-clickstream",
        table=f"{p}-user-recent-items",
        dlq=f"{p}-clickstream-dlq",
        failure_queue=f"{p}-clickstream-failed",
        firehose=f"{p}-clickstream-archive",
        consumer_function=f"{p}-stream-consumer",
        api_function=f"{p}-recommend-api",
        api=f"{p}-recommendations",
    )
