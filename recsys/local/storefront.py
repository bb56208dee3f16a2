"""The storefront's calls to the served model in the local run: a few requests of each kind, the real-time path
(Kinesis, the consumer and API functions from ``cdk.out``) for one shopper, and a latency burst for the alarms.
"""

from __future__ import annotations

import json
import time

import pandas as pd

from recsys.local.moto_server import LocalAws
from recsys.local.progress import Progress


def feature_requests(training: pd.DataFrame, user: str, popular: list[str]) -> list[tuple[str, dict]]:
    """A product page, a cart, trending, and a filtered + promoted list (README: request fields)."""
    out: list[tuple[str, dict]] = []
    if popular:
        out.append((f"product page {popular[0]}", {"product_id": popular[0], "k": 5}))
        out.append((f"cart {popular[:2]}", {"cart_product_ids": popular[:2], "k": 5}))
    out.append(("trending now", {"strategy": "trending", "k": 5}))
    prices = pd.to_numeric(training.get("price", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(prices):
        low, high = (float(round(prices.quantile(q))) for q in (0.25, 0.75))
        promoted = training["product_id"].value_counts().index[10:40].tolist()
        request = {"user_id": user, "k": 5, "filters": {"price_min": low, "price_max": high},
                   "promotion": {"name": "festival", "product_ids": promoted, "slots": 1}}
        out.append((f"{user}, price {low:.0f}-{high:.0f} INR, 1 promoted slot", request))
    return out


def clickstream_demo(progress: Progress, cfg, aws: LocalAws, url: str, training: pd.DataFrame) -> list[dict | str]:
    """Kinesis -> consumer Lambda -> DynamoDB -> API Lambda -> endpoint, on moto: a new shopper's
    recommendations before and after a burst of views (issue 7's real-time path). Both functions run through their
    handlers from their cdk.out assets with the template's environment: the consumer as its event source mapping
    invokes it (batch size, starting position, retries, bisection, on-failure queue from the template), the API
    as API Gateway does (InvokeEndpoint, which moto only fakes, answered by the local endpoint). One malformed
    record rides along: the consumer dead-letters it, the archive keeps it, the recipe quarantines it."""
    from recsys.local import streaming

    sres = streaming.provision_streaming(cfg, aws)
    mapping = streaming.enable_mapping(cfg, aws, sres)  # StartingPosition LATEST: from now on
    shopper = "stream-shopper-001"
    known = training["category"].dropna() if "category" in training else pd.Series(dtype="str")
    known = known[known != "unknown"]  # a catalogue without categories (or none at all) still gets a demo
    category = known.mode().iloc[0] if len(known) else None
    pool = training[training["category"] == category] if category is not None else training
    ranked = pool["product_id"].value_counts().index.tolist()
    viewed = ranked[5:10] or ranked[:5]
    if not viewed:
        progress.info("clickstream: no products in the training set to view; the real-time demo is skipped")
        return []

    def show(label: str) -> None:
        answer = streaming.recommend_through_api(cfg, aws, shopper, 5, url)["body"]
        recs = ", ".join(r["product_id"] for r in answer.get("recommendations", []))
        progress.info(f"{label:<30} [{answer.get('strategy')}] {recs}")

    show(f"{shopper} before any event")
    now = int(time.time())
    views: list[dict | str] = [
        {"user_id": shopper, "product_id": p, "event_type": "view", "rating": None, "timestamp": now + i}
        for i, p in enumerate(viewed)
    ]
    malformed = {"user_id": shopper, "product_id": viewed[0], "event_type": "wishlist", "timestamp": now}
    start = time.perf_counter()
    streaming.replay_events(aws, sres, [*views, malformed])
    stats = streaming.poll(aws, mapping, sres)
    peek = aws.client("sqs").receive_message(QueueUrl=sres.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    reasons = sorted(json.loads(m["Body"]).get("reason", "?") for m in peek.get("Messages", []))
    progress.info(
        f"clickstream: {len(views)} views of {category or 'popular products'} + 1 malformed record put on Kinesis; "
        f"consumer {mapping.function.name} (cdk.out/{mapping.function.code_dir.name[:12]}..., its event source "
        f"mapping: {mapping.properties['StartingPosition']}, batches of {mapping.batch_size}) read {stats.records} in "
        f"{stats.batches} batch(es), {stats.failed} failed; dead-letter queue: {', '.join(reasons) or 'empty'}; "
        f"{(time.perf_counter() - start) * 1000:.0f} ms; recent items {streaming.recent_items(aws, sres, shopper)}"
    )
    show(f"{shopper} after the views")
    return [*views, malformed]


def latency_burst(url: str, users: list[str], n: int = 200) -> list[float]:
    """A short sequential burst, so the endpoint alarms are computed from measured latencies."""
    from recsys.local.endpoint import invoke

    out = []
    for i in range(n):
        start = time.perf_counter()
        invoke(f"{url}/invocations", {"user_id": users[i % len(users)], "k": 10})
        out.append((time.perf_counter() - start) * 1000)
    return out


def storefront_requests(progress: Progress, url: str, training: pd.DataFrame) -> list[str]:
    """A few requests of each kind to the served model (known shoppers, new ones, a product page, a cart, trending,
    a filtered and promoted list), each answer printed; returns the two most active shoppers."""
    from recsys.local.endpoint import invoke

    active = training["user_id"].value_counts().index[:2].tolist()
    popular = training["product_id"].value_counts().index[:2].tolist()
    requests = [
        *({"user_id": u, "k": 5} for u in active),
        {"user_id": "new-shopper-001", "k": 5},
        {"user_id": "new-shopper-002", "k": 5, "recent_product_ids": popular},
    ]
    for request in requests:
        answer = invoke(f"{url}/invocations", request)
        recs = ", ".join(r["product_id"] for r in answer.get("recommendations", []))
        steer = f" after viewing {request['recent_product_ids']}" if "recent_product_ids" in request else ""
        progress.info(f"{request['user_id']}{steer}: [{answer.get('strategy')}] {recs}")
    for label, request in feature_requests(training, active[0] if active else "u1", popular):
        answer = invoke(f"{url}/invocations", request)
        recs = ", ".join(
            r["product_id"] + "".join(f" ({flag})" for flag in ("promoted", "explored") if r.get(flag))
            for r in answer.get("recommendations", [])
        )
        progress.info(f"{label}: [{answer.get('strategy')}] {recs}")
    return active
