"""The local endpoint's data capture: every answered request as a SageMaker capture record, in the moto bucket."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recsys.local.capture import CaptureWriter
from recsys.local.endpoint import EndpointError, invoke, request, serve_endpoint, serve_variants
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


def _count_by_variant(s3, keys: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        variant = key.split("/")[2]
        counts[variant] = counts.get(variant, 0) + len(
            s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()
        )
    return counts


def test_a_two_variant_endpoint_routes_by_weight_and_captures_each_variant_under_its_name(
    aws_env: LocalAws, model_dir: Path
):
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    writers = {v: CaptureWriter(s3, BUCKET, "recsys-dev-recommender", v) for v in ("Champion", "Challenger")}
    variants = {"Champion": (model_dir, 0.7), "Challenger": (model_dir, 0.3)}
    with serve_variants(variants, captures=writers, seed=3) as url:
        for n in range(300):
            invoke(f"{url}/invocations", {"user_id": f"u{n % 60}", "k": 3})
        status, headers, _ = request(
            url, "POST", "/invocations", b'{"user_id": "u1"}', {"Content-Type": "application/json"}
        )
        invoked = dict(url.endpoint.invoked)
    assert status == 200 and headers["X-Amzn-Invoked-Production-Variant"] in variants
    assert sum(invoked.values()) == 301
    assert abs(invoked["Challenger"] / 301 - 0.3) < 4 * (0.3 * 0.7 / 301) ** 0.5  # the weight, within 4 sd
    keys = [k for w in writers.values() for k in w.flush()]
    assert all(re.match(r"^capture/recsys-dev-recommender/(Champion|Challenger)/\d{4}/", k) for k in keys), keys
    assert _count_by_variant(s3, keys) == invoked  # each answer captured once, by the variant that gave it


def test_a_shadow_variant_gets_copies_but_never_answers(aws_env: LocalAws, model_dir: Path):
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    writers = {v: CaptureWriter(s3, BUCKET, "recsys-dev-recommender", v) for v in ("Champion", "Shadow")}
    with serve_variants({"Champion": (model_dir, 1.0)}, shadow=("Shadow", model_dir, 0.5), captures=writers) as url:
        for n in range(200):
            status, headers, _ = request(
                url,
                "POST",
                "/invocations",
                json.dumps({"user_id": f"u{n % 60}"}).encode(),
                {"Content-Type": "application/json"},
            )
            assert status == 200 and headers["X-Amzn-Invoked-Production-Variant"] == "Champion"
    counts = _count_by_variant(s3, [k for w in writers.values() for k in w.flush()])
    assert counts["Champion"] == 200 and 60 < counts["Shadow"] < 140  # about half copied (binomial, p = 0.5)
