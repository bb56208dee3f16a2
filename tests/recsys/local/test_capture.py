"""The local endpoint's data capture: every answered request as a SageMaker capture record, in the moto bucket."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recsys.local.capture import CaptureWriter
from recsys.local.endpoint import EndpointError, invoke, serve_endpoint
from recsys.local.moto_server import LocalAws
from tests.tiny_model import train_tiny_model

BUCKET = "capture-test"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("capture"))


def test_answers_are_captured_in_sagemaker_layout_with_their_recommendation_id(aws_env: LocalAws, model_dir: Path):
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    writer = CaptureWriter(s3, BUCKET, "recsys-dev-recommender")
    with serve_endpoint(model_dir, capture=writer) as url:
        answers = [invoke(f"{url}/invocations", {"user_id": u, "k": 3}) for u in ("u1", "nobody")]
        with pytest.raises(EndpointError):
            invoke(f"{url}/invocations", {"k": 3})  # refused (400): SageMaker captures no answer for it here
    keys = writer.flush()
    assert writer.written == 2 and keys
    pattern = r"^capture/recsys-dev-recommender/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/capture-[0-9a-f]+\.jsonl$"
    assert all(re.match(pattern, k) for k in keys), keys
    lines = [json.loads(line) for k in keys for line in s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().splitlines()]
    outputs = [json.loads(r["captureData"]["endpointOutput"]["data"]) for r in lines]
    assert [o["recommendation_id"] for o in outputs] == [a["recommendation_id"] for a in answers]
    assert json.loads(lines[0]["captureData"]["endpointInput"]["data"]) == {"user_id": "u1", "k": 3}
    assert lines[0]["captureData"]["endpointOutput"]["encoding"] == "JSON" and lines[0]["eventVersion"] == "0"
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", lines[0]["eventMetadata"]["inferenceTime"])
    assert writer.flush() == []  # nothing new, nothing written
