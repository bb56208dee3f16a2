"""Local clickstream on moto: replay -> consume -> recent items -> a recommendation request that follows them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from glue_jobs.raw_reader import read_raw
from glue_jobs.recipe_jobs import run_recipe
from recsys.local.moto_server import LocalAws
from recsys.local.streaming import (
    STREAM_ARCHIVE_PREFIX,
    StreamingResources,
    archive_events,
    consume_once,
    dead_letters,
    provision_streaming,
    recent_items,
    recommend,
    replay_events,
    runtime_invoke,
    streaming_names,
)
from settings.config import load_project_config

T0 = 1_700_000_000


def views(user: str, products: list[str], start: int = T0) -> list[dict]:
    return [
        {"user_id": user, "product_id": p, "event_type": "view", "rating": "", "timestamp": start + i}
        for i, p in enumerate(products)
    ]


def echo(request: dict) -> dict:
    """Stands in for the model: 'recommends' the session's products, so the answer shows what it was given."""
    recs = [{"product_id": p, "score": 1.0} for p in request["recent_product_ids"][: request["k"]]]
    return {"user_id": request["user_id"], "recommendations": recs, "strategy": "echo"}


@pytest.fixture
def res(aws_env: LocalAws) -> StreamingResources:
    return provision_streaming(load_project_config(), aws_env)


def test_provisioning_is_idempotent_and_uses_the_stack_names(aws_env, res):
    again = provision_streaming(load_project_config(), aws_env)
    assert again == res
    names = streaming_names(load_project_config())
    ttl = aws_env.client("dynamodb").describe_time_to_live(TableName=names.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_replay_then_consume_updates_recent_items(aws_env, res):
    events = views("u1", ["p1", "p2", "p3"]) + views("u2", ["p9"])
    assert replay_events(aws_env, res, events) == 4
    stats = consume_once(aws_env, res, batch_size=2)
    assert (stats.records, stats.processed, stats.dead_lettered, stats.failed, stats.batches) == (4, 4, 0, 0, 2)
    assert stats.events_per_second > 0
    assert recent_items(aws_env, res, "u1") == ["p3", "p2", "p1"]
    assert recent_items(aws_env, res, "nobody") == []


def test_consuming_the_stream_again_is_a_no_op(aws_env, res):
    replay_events(aws_env, res, views("u1", ["p1", "p2"]))
    consume_once(aws_env, res)
    again = consume_once(aws_env, res)  # TRIM_HORIZON: the same records again, as after a failed checkpoint
    assert (again.records, again.processed, again.duplicates) == (2, 0, 2)


def test_checkpoint_reads_only_new_records(aws_env, res):
    checkpoint: dict[str, str] = {}
    replay_events(aws_env, res, views("u1", ["p1"]))
    assert consume_once(aws_env, res, after=checkpoint).records == 1
    replay_events(aws_env, res, views("u1", ["p2"], start=T0 + 60))
    assert consume_once(aws_env, res, after=checkpoint).records == 1
    assert recent_items(aws_env, res, "u1") == ["p2", "p1"]


def test_malformed_replayed_records_are_dead_lettered_not_lost(aws_env, res):
    bad = ["{broken", {"user_id": "u1", "product_id": "p1", "event_type": "like", "timestamp": T0}]
    replay_events(aws_env, res, [*views("u1", ["p1"]), *bad])
    stats = consume_once(aws_env, res)
    assert (stats.processed, stats.dead_lettered) == (1, 2)
    assert stats.reasons == {"not_json": 1, "unknown_event_type": 1}
    assert sorted(letter["reason"] for letter in dead_letters(aws_env, res)) == ["not_json", "unknown_event_type"]


def test_a_burst_of_views_changes_the_recommendation_request(aws_env, res):
    replay_events(aws_env, res, views("u1", ["p1", "p2"]))
    consume_once(aws_env, res)
    before = recommend(aws_env, res, "u1", 3, echo)
    replay_events(aws_env, res, views("u1", ["p7", "p8", "p9"], start=T0 + 600))
    consume_once(aws_env, res)
    after = recommend(aws_env, res, "u1", 3, echo)
    assert before["status"] == after["status"] == 200
    ids = [[r["product_id"] for r in x["body"]["recommendations"]] for x in (before, after)]
    assert ids == [["p2", "p1"], ["p9", "p8", "p7"]]


class _Endpoint(BaseHTTPRequestHandler):
    """What SageMaker Runtime answers: 200 with the model's body, or 424 ModelError when the model fails."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/endpoints/recsys-dev-endpoint/invocations" or body["user_id"] == "boom":
            self.send_response(424)
            self.send_header("x-amzn-ErrorType", "ModelError")
            self.end_headers()
            self.wfile.write(b'{"message": "Received server error (500) from primary"}')
            return
        out = json.dumps(echo(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def test_runtime_invoke_calls_invoke_endpoint_and_maps_model_errors_to_502(aws_env, res):
    server = HTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        invoke = runtime_invoke(aws_env, f"http://127.0.0.1:{server.server_port}", "recsys-dev-endpoint")
        replay_events(aws_env, res, views("u1", ["p1"]))
        consume_once(aws_env, res)
        ok = recommend(aws_env, res, "u1", 5, invoke)
        assert ok == {"status": 200, "body": echo({"user_id": "u1", "k": 5, "recent_product_ids": ["p1"]})}
        failed = recommend(aws_env, res, "boom", 5, invoke)
        assert failed["status"] == 502 and "ModelError" in failed["body"]["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_archive_writes_gzip_json_lines_that_the_interactions_recipe_curates_or_quarantines(aws_env):
    """Firehose's local stand-in: every record put on the stream is archived, malformed ones included."""
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="src", CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    records = [*views("u1", ["p1", "p2"]), b"{not json", {"user_id": "u1", "product_id": "p3", "event_type": "zap"}]
    key = archive_events(aws_env, "src", records)
    assert key.startswith(f"{STREAM_ARCHIVE_PREFIX}year=") and "/month=" in key and key.endswith(".jsonl.gz")
    raw = read_raw(s3.get_object(Bucket="src", Key=key)["Body"].read(), "interactions", name=key)
    assert len(raw.frame) == 3 and len(raw.malformed) == 1
    result = run_recipe("interactions", raw.frame)
    assert result.curated["product_id"].tolist() == ["p1", "p2"]
    assert len(result.quarantine) == 1  # the unknown event type (and its missing timestamp)
