"""bench/bench_serving.py: its request mix, its reading of wrk's report, and one case end to end (small)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_model import train_tiny_model

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
import bench_serving  # noqa: E402

WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:40123
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.05ms    2.10ms  31.20ms   80.00%
    Req/Sec     1.01k   120.00     1.30k    70.00%
  Latency Distribution
     50%    3.61ms
     75%    4.90ms
     90%    6.80ms
     99%   12.40ms
  40321 requests in 20.00s, 20.10MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   2016.05
Transfer/sec:      1.00MB
"""


def test_wrk_report_is_read_with_units():
    got = bench_serving.parse_wrk(WRK_OUTPUT)
    assert got == {"req/s": 2016.05, "p50 ms": 3.61, "p90 ms": 6.8, "p99 ms": 12.4, "requests": 40321, "errors": 3}
    assert bench_serving._ms("850.00us") == pytest.approx(0.85) and bench_serving._ms("1.20s") == 1200.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("bench_serving"))


def test_request_mix_follows_the_shares_and_the_models_ids(tiny):
    bodies = bench_serving.request_bodies(tiny, n=4000)
    kinds = [bench_serving._kind(b) for b in bodies]
    for name, share in bench_serving.MIX:
        assert abs(kinds.count(name) / len(kinds) - share) < 0.03, name
    with np.load(tiny / "arrays.npz") as npz:
        users, items = set(npz["user_ids"].astype(str)), set(npz["item_ids"].astype(str))
    assert all(b["user_id"] in users for b in bodies if bench_serving._kind(b).startswith("known"))
    assert all(set(b.get("recent_product_ids", [])) <= items for b in bodies)
    assert all(b["k"] == 10 for b in bodies)


def test_a_case_is_served_by_the_documented_command_and_loaded(tiny):
    """The README's command with 2 pre-forked workers answers the mix; each worker's memory is read."""
    from recsys.local.endpoint import invoke

    bodies = bench_serving.request_bodies(tiny, n=60)
    proc, url = bench_serving.start_server(tiny, 2)
    try:
        answers = [invoke(url, body, timeout=30) for body in bodies]
        rss, pss = bench_serving.worker_memory_mb(proc.pid)
    finally:
        bench_serving.be.stop_server(proc)
    assert all(len(a["recommendations"]) == 10 for a in answers)
    assert {a["strategy"] for a in answers} >= {"personalized", "personalized+session", "similar"}
    assert rss > 0 and 0 < pss <= rss
    described = bench_serving.describe(tiny)
    assert described["products"] == 50 and described["model MB"] > 0


def test_handler_alone_times_every_request_kind(tiny):
    inference, bundle, load_s = bench_serving.load_model(tiny)
    per_kind = bench_serving.handler_alone(inference, bundle, bench_serving.request_bodies(tiny, n=500), seconds=5)
    assert load_s > 0 and set(per_kind) == {name for name, _ in bench_serving.MIX}
    assert bench_serving.retrieval_figures(bundle, tiny) == {}  # 50 products: every product is scored
