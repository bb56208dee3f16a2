"""A local run's stores in miniature: the buckets, prefixes, table and workdir folders ``make run`` fills,
with a target shopper's rows in each (and in old object versions), plus other shoppers who must stay."""

from __future__ import annotations

import base64
import gzip
import io
import json
import shutil
import tarfile
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
    model_dir: Path | None = None  # the served model's folder in the workdir (arrays.npz, model.json)


def _interactions(users: tuple[str, ...], n: int = 3) -> pd.DataFrame:
    rows = [
        {"user_id": u, "product_id": f"p{i}", "event_type": "view", "rating": None, "timestamp": 1_700_000_000 + i}
        for u in users
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def model_archive(model_dir: Path) -> bytes:
    """``model.tar.gz`` as SageMaker's training job writes it: the model folder's files at the top."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return out.getvalue()


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A real model trained on a shop where u0..u59 shop (u17 and u7 among them): item_knn, ~3 s."""
    from tests.tiny_model import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("erasure-model"))


@pytest.fixture
def shop(aws_env: LocalAws, tmp_path: Path, trained_model: Path) -> Shop:
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
    buffer = io.BytesIO()  # the training set as the curation workflow's Athena UNLOAD names it: no extension
    frame.to_parquet(buffer, index=False)
    s3.put_object(Bucket=dest, Key="training/interactions/3f9c1e2a-7b4d-4e8f-9a6b-0c5d2e1f8a7b_00000",
                  Body=buffer.getvalue())  # fmt: skip
    capture = [
        {"captureData": {"endpointInput": {"data": json.dumps({"user_id": u, "k": 5}), "encoding": "JSON"},
                         "endpointOutput": {"data": json.dumps({"recommendations": []})}},
         "eventMetadata": {"eventId": f"e{i}"}}
        for i, u in enumerate(everyone)
    ]  # fmt: skip
    s3.put_object(Bucket=dest, Key="capture/endpoint/AllTraffic/2026/01/02/03/c.jsonl",
                  Body="\n".join(json.dumps(c) for c in capture).encode())  # fmt: skip
    s3.put_object(Bucket=res.athena_results_bucket, Key="athena-results/q-1.csv", Body=_csv(frame))
    # dead-lettered stream records: Firehose's error output (no suffix, the record base64 in rawData)
    failed = [{"attemptsMade": 4, "errorCode": "S3.AccessDenied", "rawData": base64.b64encode(json.dumps(
        {"user_id": u, "product_id": "p1", "event_type": "view"}).encode()).decode()} for u in everyone]  # fmt: skip
    s3.put_object(Bucket=res.source_bucket, Key="stream-errors/interactions/failed/2026/01/02/03/x-1",
                  Body="\n".join(json.dumps(f) for f in failed).encode())  # fmt: skip
    # two model versions: an earlier one (training output) and the registered package, both holding the target
    archive = model_archive(trained_model)
    for key in ("pipeline/exec-0/TrainModel/output/model.tar.gz", "pipeline/exec-1/PackageModel/packaged/model.tar.gz"):
        s3.put_object(Bucket=dest, Key=key, Body=archive)
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
    served = workdir / "pipeline" / "exec-1" / "TrainModel" / "model"
    shutil.copytree(trained_model, served)
    (served.parent / "model.tar.gz").write_bytes(archive)
    return Shop(cfg, aws_env, res, workdir, model_dir=served)


# The erasure Lambda's tests record the AWS calls its code makes (tests/permissions/recorder.py).
from tests.permissions.recorder import record_lambda_calls  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _requests_within_api_limits() -> Iterator[None]:
    """Every boto3 request these tests make is checked against the AWS API model (tests/aws_api_model.py)."""
    yield from requests_within_api_limits()
