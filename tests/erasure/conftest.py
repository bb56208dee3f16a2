"""A local run's stores in miniature: the buckets, prefixes, table and workdir folders ``make run`` fills,
with a target shopper's rows in each (and in old object versions), plus other shoppers who must stay."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from recsys.local import streaming
from recsys.local.moto_server import LocalAws
from recsys.local.provision import LocalResources, provision
from recsys.local.s3io import write_parquet
from settings.config import Config, load_project_config
from tests.aws_api_model import requests_within_api_limits

TARGET = "u17"
OTHERS = ("u1", "u170", "u7")  # u170: the target id as a prefix must not match


@dataclass
class Shop:
    cfg: Config
    aws: LocalAws
    res: LocalResources
    workdir: Path
    user: str = TARGET


def _interactions(users: tuple[str, ...], n: int = 3) -> pd.DataFrame:
    rows = [
        {"user_id": u, "product_id": f"p{i}", "event_type": "view", "rating": None, "timestamp": 1_700_000_000 + i}
        for u in users
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


@pytest.fixture
def shop(aws_env: LocalAws, tmp_path: Path) -> Shop:
    cfg = load_project_config()
    res = provision(cfg, aws_env)
    s3 = aws_env.client("s3")
    everyone = (TARGET, *OTHERS)
    frame = _interactions(everyone)
    users = pd.DataFrame({"user_id": list(everyone), "age": [30] * 4, "gender": ["f"] * 4, "location": ["Pune"] * 4})
    # raw: two uploads of the same key (two versions) and a deleted earlier file (only old versions hold it)
    s3.put_object(Bucket=res.source_bucket, Key="raw/interactions/interactions.csv", Body=_csv(frame.head(6)))
    s3.put_object(Bucket=res.source_bucket, Key="raw/interactions/interactions.csv", Body=_csv(frame))
    s3.put_object(Bucket=res.source_bucket, Key="raw/users/old.csv", Body=_csv(users))
    s3.delete_object(Bucket=res.source_bucket, Key="raw/users/old.csv")
    s3.put_object(Bucket=res.source_bucket, Key="raw/users/users.csv", Body=_csv(users))
    stream_lines = [json.dumps(r) for r in frame.to_dict("records")] + ['{"user_id": "u17", broken']
    s3.put_object(Bucket=res.source_bucket, Key="raw/clickstream/year=2026/month=01/day=02/x.jsonl.gz",
                  Body=gzip.compress("\n".join(stream_lines).encode()))  # fmt: skip
    dest = res.destination_bucket
    for prefix in ("curated/interactions/", "quarantine/interactions/", "features/feature_recently_viewed/",
                   "batch/user_recommendations/", "pipeline/exec-1/PrepareData/train/"):  # fmt: skip
        write_parquet(aws_env, frame, f"s3://{dest}/{prefix}")
    write_parquet(aws_env, users, f"s3://{dest}/curated/users/")
    write_parquet(aws_env, frame, f"s3://{dest}/training/interactions.parquet")
    capture = [
        {"captureData": {"endpointInput": {"data": json.dumps({"user_id": u, "k": 5}), "encoding": "JSON"},
                         "endpointOutput": {"data": json.dumps({"recommendations": []})}},
         "eventMetadata": {"eventId": f"e{i}"}}
        for i, u in enumerate(everyone)
    ]  # fmt: skip
    s3.put_object(Bucket=dest, Key="capture/endpoint/AllTraffic/2026/01/02/03/c.jsonl",
                  Body="\n".join(json.dumps(c) for c in capture).encode())  # fmt: skip
    s3.put_object(Bucket=res.athena_results_bucket, Key="athena-results/q-1.csv", Body=_csv(frame))
    # the recent-items table, fed through the consumer Lambda's code
    sres = streaming.provision_streaming(cfg, aws_env)
    streaming.replay_events(aws_env, sres, frame.to_dict("records"))
    streaming.consume_once(aws_env, sres)
    # the workdir's own copies
    workdir = tmp_path / "run"
    (workdir / "raw").mkdir(parents=True)
    frame.to_csv(workdir / "raw" / "interactions.csv", index=False)
    for sub in ("lake/curated/interactions", "pipeline/exec-1/PrepareData/processing/train", "capture/attribution"):
        (workdir / sub).mkdir(parents=True)
        frame.to_parquet(workdir / sub / "part-00000.parquet", index=False)
    return Shop(cfg, aws_env, res, workdir)


# The erasure Lambda's tests record the AWS calls its code makes (tests/permissions/recorder.py).
from tests.permissions.recorder import record_lambda_calls  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _requests_within_api_limits() -> Iterator[None]:
    """Every boto3 request these tests make is checked against the AWS API model (tests/aws_api_model.py)."""
    yield from requests_within_api_limits()
