"""The online loop in the local run: SIMULATED shoppers act on what the endpoint served, the clicks carry the
answer's recommendation_id, and the attribution SQL computes click-through, conversion and revenue from the
captured impressions (issue 14).

Shoppers come from the generator's known tastes (as ``recsys/shopper_sim.py``): a product in slot ``pos``
(0-based) is clicked with probability ``sigmoid(CLICK_BIAS + taste . product) / log2(pos + 2)``; a clicked
product is put in the cart with probability ``sigmoid(CART_BIAS + taste . product)`` and a carted one bought
with ``BUY_GIVEN_CART``. Some purchases come ``LATE_HOURS`` after the answer, beyond a 24 h attribution
window, so the window visibly matters. Everything printed from it says SIMULATED: on AWS the same SQL reads
real captured answers and real clickstream events.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.ab_test import CHALLENGER, CHAMPION, experiment_verdicts
from monitoring.metrics import (
    CLICK_THROUGH_RATE,
    CLICK_THROUGH_RATIO,
    NAMESPACE,
    click_through_row,
    click_through_sql,
)
from recsys.generator import GeneratorConfig, build_world, product_ids
from recsys.local.athena import LocalAthena
from recsys.local.capture import CaptureWriter, capture_glob, download_capture, register_capture_table
from recsys.shopper_sim import CLICK_BIAS
from sql.library import attribution_query

#: Logit of putting a clicked product of neutral taste in the cart (about 27 %).
CART_BIAS = -1.0
#: Share of carted products bought.
BUY_GIVEN_CART = 0.5
#: Share of purchases made LATE_HOURS after the answer (outside a 24 h window).
LATE_SHARE, LATE_HOURS = 0.1, 30

Invoke = Callable[[str, dict], dict]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulated_shopping(url: str, invoke: Invoke, generated: GeneratorConfig, *, requests: int = 400,
                       k: int = 10, seed: int = 0, start: float | None = None) -> tuple[list[dict], dict[str, int]]:
    """Ask the endpoint for ``requests`` random shoppers' lists and simulate what each did with it.

    Returns the clickstream events (each carrying its answer's ``recommendation_id``) and counts."""
    world = build_world(generated)
    index = {pid: i for i, pid in enumerate(product_ids(len(world.item_vec)))}
    taste = world.user_vec * np.float32(world.params.taste_strength)
    rng = np.random.default_rng(seed)
    now = int(start if start is not None else time.time())
    events: list[dict] = []
    counts = {"answers": 0, "shown": 0, "views": 0, "carts": 0, "purchases": 0, "late": 0}
    for n in range(requests):
        user = int(rng.integers(len(taste)))
        answer = invoke(f"{url}/invocations", {"user_id": f"u{user + 1}", "k": k})
        served = [r["product_id"] for r in answer.get("recommendations", [])]
        rid = answer.get("recommendation_id")
        counts["answers"] += 1
        counts["shown"] += len(served)
        t0 = now + n  # one answer a second
        for pos, pid in enumerate(served):
            if pid not in index:
                continue
            affinity = float(world.item_vec[index[pid]] @ taste[user])
            if rng.random() >= _sigmoid(np.float64(CLICK_BIAS + affinity)) / np.log2(pos + 2):
                continue
            base = {"user_id": f"u{user + 1}", "product_id": pid, "rating": None, "recommendation_id": rid}
            events.append({**base, "event_type": "view", "timestamp": t0 + 5 + pos})
            counts["views"] += 1
            if rng.random() >= _sigmoid(np.float64(CART_BIAS + affinity)):
                continue
            events.append({**base, "event_type": "add_to_cart", "timestamp": t0 + 60 + pos})
            counts["carts"] += 1
            if rng.random() >= BUY_GIVEN_CART:
                continue
            late = rng.random() < LATE_SHARE
            events.append({**base, "event_type": "purchase",
                           "timestamp": t0 + (LATE_HOURS * 3600 if late else 120) + pos})
            counts["purchases"] += 1
            counts["late"] += int(late)
    return events, counts


def register_capture(athena: LocalAthena, captures: CaptureWriter | Iterable[CaptureWriter], lake: Path) -> None:
    """Flush the capture (one writer per variant) to the bucket and read every capture object there back as the
    ``endpoint_capture`` table: before the nightly workflow runs, so its click-through states (the alarm's producer
    on AWS) find the impressions."""
    writers = [captures] if isinstance(captures, CaptureWriter) else list(captures)
    for writer in writers:
        writer.flush()
    capture = writers[0]
    folder = lake / "capture-copy"
    shutil.rmtree(folder, ignore_errors=True)  # the bucket is the truth: an earlier run's copy must not count
    download_capture(capture.s3, capture.bucket, folder)
    register_capture_table(athena, capture_glob(folder))


def summarise(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per production variant, model version and strategy; per position; per variant (the A/B test's arms):
    impressions, rates and revenue, for printing."""
    def totals(keys: list[str]) -> pd.DataFrame:
        g = frame.groupby(keys, as_index=False)[["impressions", "clicks", "carts", "purchases", "revenue"]].sum()
        g = g.astype({c: "int64" for c in ("impressions", "clicks", "carts", "purchases")})
        g["ctr"] = (g["clicks"] / g["impressions"]).round(4)
        g["cart_rate"] = (g["carts"] / g["impressions"]).round(4)
        g["purchase_rate"] = (g["purchases"] / g["impressions"]).round(4)
        g["revenue"] = g["revenue"].round(0)
        return g

    return totals(["variant", "model_version", "strategy"]), totals(["position"]), totals(["variant", "model_version"])


def shopping_session(progress: Any, url: Any, generated: GeneratorConfig, capture: CaptureWriter,
                     invoke: Invoke) -> list[dict]:
    """The endpoint stage's simulated shoppers, with data capture on (``url.endpoint`` is the served app): the
    session's answers are the captured impressions (the load test and the A/B requests are not shoppers, so the
    local run captures only this session). Returns the clickstream events for the Firehose archive."""
    url.endpoint.capture = capture
    try:
        events, counts = simulated_shopping(url, invoke, generated, seed=generated.seed)
    finally:
        url.endpoint.capture = None
    progress.info(
        f"SIMULATED shoppers: {counts['answers']:,} answers captured to s3://{capture.bucket}/capture/ "
        f"({counts['shown']:,} impressions) -> {counts['views']:,} clicks, {counts['carts']:,} carts, "
        f"{counts['purchases']:,} purchases ({counts['late']:,} of them {LATE_HOURS} h later), each event echoing "
        "its answer's recommendation_id (to the clickstream archive)"
    )
    return events


def attribution_stage(progress: Any, athena: LocalAthena, window_hours: int, cloudwatch: Any,
                      alpha: float = 0.05) -> pd.DataFrame:
    """Print the attribution table of the simulated sessions (``make run``), per production variant, the A/B
    verdict when a Champion and a Challenger served, and the click-through metrics the curation workflow's states
    published from the same SQL (no second producer here); returns the SQL's rows."""
    frame = athena.query(attribution_query(window_hours))
    published = cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName=CLICK_THROUGH_RATIO)["Metrics"]
    if published:
        values = click_through_row(athena.query(click_through_sql(attribution_query(window_hours))).iloc[0])
        progress.info(
            f"CloudWatch {NAMESPACE} (published by the curation workflow's click-through states): {CLICK_THROUGH_RATE} "
            f"{values['ctr']:.4f}, trailing 7 days {values['ctr_trailing']:.4f}, ratio {values['ctr_ratio']:.2f} "
            "(alarm below alarm_ctr_drop_share), SIMULATED"
        )
    else:
        progress.info(f"CloudWatch {NAMESPACE}: no click-through published (the workflow's states found nothing)")
    if frame.empty:
        progress.info("attribution: no captured impressions")
        return frame
    by_model, by_position, by_variant = summarise(frame)
    progress.info(f"attribution (sql/attribution_daily.sql on DuckDB, window {window_hours} h), SIMULATED:")
    for line in by_model.to_string(index=False).splitlines():
        progress.info(f"  {line}")
    progress.info("click-through and conversion by position, SIMULATED:")
    for line in by_position.to_string(index=False).splitlines():
        progress.info(f"  {line}")
    verdicts = experiment_verdicts(frame.to_dict("records"), alpha)
    if verdicts:
        progress.info(f"A/B test per production variant ({CHAMPION} = the serving version, {CHALLENGER} = the new "
                      "one), SIMULATED shoppers:")
        for line in by_variant[by_variant["variant"].isin([CHAMPION, CHALLENGER])].to_string(index=False).splitlines():
            progress.info(f"  {line}")
        for verdict in verdicts:
            progress.info(f"A/B verdict ({verdict.metric}, two-proportion z-test), SIMULATED: {verdict.summary()}")
    return frame
