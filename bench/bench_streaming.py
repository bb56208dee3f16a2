"""Clickstream consumer throughput and event-to-recent-items latency on the local AWS (moto).

Usage: ``.venv/bin/python bench/bench_streaming.py [--events 1000] [--batch-sizes 10,100,500] [--probes 20]``

Throughput: replay ``--events`` generated views into Kinesis, then drain the stream through the
consumer Lambda's code at each batch size (a fresh account each time). Latency: put one event,
consume from the checkpoint, read the user's recent items; repeated ``--probes`` times.
moto answers over local HTTP in one process, so these are the code's costs plus moto's, not AWS's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys.local.moto_server import local_aws  # noqa: E402
from recsys.local.streaming import consume_once, provision_streaming, recent_items, replay_events  # noqa: E402
from settings.config import load_project_config  # noqa: E402

MAX_SECONDS = 120  # the whole bench stops adding rows after this


def events(n: int, users: int = 200, products: int = 500, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    t0 = 1_700_000_000
    return [
        {
            "user_id": f"u{rng.randrange(users)}",
            "product_id": f"p{rng.randrange(products)}",
            "event_type": rng.choice(["view"] * 8 + ["add_to_cart", "purchase"]),
            "rating": "",
            "timestamp": t0 + i,
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="10,100,500")
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    cfg = load_project_config()
    data = events(args.events)
    began = time.perf_counter()
    with local_aws(region=cfg.region) as aws:
        print(f"{'batch size':>10} {'events':>7} {'batches':>8} {'consume s':>10} {'events/s':>9}")
        for size in (int(s) for s in args.batch_sizes.split(",")):
            if time.perf_counter() - began > MAX_SECONDS:
                print(f"{size:>10} skipped (time bound {MAX_SECONDS}s)")
                continue
            aws.reset()
            res = provision_streaming(cfg, aws)
            replay_events(aws, res, data)
            stats = consume_once(aws, res, batch_size=size)
            assert stats.processed == len(data), stats
            rate = stats.events_per_second
            print(f"{size:>10} {stats.records:>7} {stats.batches:>8} {stats.seconds:>10.2f} {rate:>9.0f}")

        aws.reset()
        res = provision_streaming(cfg, aws)
        checkpoint: dict[str, str] = {}
        latencies = []
        for i in range(args.probes):
            event = {"user_id": "probe", "product_id": f"p{i}", "event_type": "view", "timestamp": 1_700_000_000 + i}
            start = time.perf_counter()
            replay_events(aws, res, [event])
            consume_once(aws, res, after=checkpoint)
            assert recent_items(aws, res, "probe")[0] == f"p{i}"
            latencies.append((time.perf_counter() - start) * 1000)
        q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19
        print(
            f"\nevent -> recent items (put, consume, read), {len(latencies)} probes: "
            f"median {statistics.median(latencies):.1f} ms, p95 {q[18]:.1f} ms, max {max(latencies):.1f} ms"
        )
        print("(on AWS add the event source mapping's batching window: at most 1 s here, plus Lambda start-up)")


if __name__ == "__main__":
    main()
