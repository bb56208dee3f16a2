"""The soak logic of ``bench/bench_soak.py`` (issue #8), run for seconds in-process against ``serve_endpoint``.

The bench itself soaks a separate ``python -m recsys serve`` process for minutes; here the same
load and report code must see zero errors from the real handler and must flag a server that fails.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from recsys.local.endpoint import serve_endpoint

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "sagemaker_src"
sys.path.insert(0, str(ROOT / "bench"))
import bench_soak  # noqa: E402

from tests.tiny_model import train_tiny_model  # noqa: E402

pytestmark = pytest.mark.xdist_group("endpoint-soak")
ROW_KEYS = {"t", "requests", "errors", "5xx", "timeouts", "p50_ms", "p99_ms", "rss_mb", "fds"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model from train.py on a small synthetic shop (users u0..u59, products p0..p49)."""
    return train_tiny_model(tmp_path_factory.mktemp("soak"))


def test_request_mix_covers_every_contract_shape_and_some_bad_requests(model_dir: Path) -> None:
    reqs = bench_soak.model_requests(model_dir, n=3000)
    kinds = {r.kind for r in reqs}
    assert {"known", "known+category", "exclude=interacted", "exclude=none", "exclude_product_ids", "unknown"} <= kinds
    assert {"unknown+session", "known+session", "batch"} <= kinds
    bad = [r for r in reqs if not r.good]
    assert 0.01 < len(bad) / len(reqs) < 0.06
    assert all(r.kind.startswith("bad:") for r in bad)


def test_short_soak_of_the_real_handler_has_no_errors_and_a_row_per_window(model_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    with serve_endpoint(model_dir, threads=4) as url:
        report = bench_soak.run_soak(
            url,
            bench_soak.model_requests(model_dir, n=1000),
            duration=3.0,
            window=1.0,
            rate=150,
            concurrency=3,
            server_pids=lambda: [os.getpid()],
            rss_bound_mb=500,  # the test process is not a quiet server; the bench holds the real bound
            out=lines.append,
        )
    rows, v = report["rows"], report["verdict"]
    assert [r["t"] for r in rows] == [1.0, 2.0, 3.0]
    assert all(set(r) == ROW_KEYS for r in rows)
    assert all(r["requests"] > 0 for r in rows), rows  # traffic in every window (its rate is the bench's business)
    assert (v["errors"], v["5xx"], v["timeouts"]) == (0, 0, 0), rows
    assert v["requests"] == sum(r["requests"] for r in rows)
    assert all(r["rss_mb"] > 10 and r["fds"] > 0 and not math.isnan(r["p99_ms"]) for r in rows)
    assert v["ok"] is True
    assert len(lines) == 1 + len(rows) and "RSS MB" in lines[0]
    png = bench_soak.plot(report, tmp_path / "soak.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


FAILING_HANDLER = """
import json
def model_fn(model_dir):
    return object()
def input_fn(body, content_type):
    return json.loads(body)
def predict_fn(data, model):
    if str(data.get("user_id", "")).startswith("new-"):
        raise KeyError("unknown users crash this handler")
    return {"ok": True}
def output_fn(prediction, accept):
    return json.dumps(prediction)
"""


def test_soak_verdict_fails_when_the_server_answers_5xx(tmp_path: Path) -> None:
    handler = tmp_path / "failing_inference.py"
    handler.write_text(FAILING_HANDLER)
    reqs = bench_soak.soak_requests(["u1", "u2"], ["p1", "p2", "p3", "p4", "p5"], ["c1"], n=500)
    with serve_endpoint(tmp_path, threads=2, handler_path=handler) as url:
        report = bench_soak.run_soak(url, reqs, duration=1.0, window=0.5, rate=100, concurrency=2, out=lambda _: None)
    v = report["verdict"]
    assert v["5xx"] > 0 and v["errors"] > 0
    assert v["ok"] is False


def test_rss_growth_over_the_bound_fails_the_verdict() -> None:
    row = {"requests": 10, "errors": 0, "5xx": 0, "timeouts": 0}
    rows = [{**row, "rss_mb": 100.0}, {**row, "rss_mb": 100.0}, {**row, "rss_mb": 125.0}]
    assert bench_soak.verdict(rows, rss_bound_mb=20)["ok"] is False
    assert bench_soak.verdict(rows, rss_bound_mb=30)["ok"] is True
