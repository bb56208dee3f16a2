"""Simulated shoppers for a local A/B test: the generator's own latent tastes decide what gets clicked.

Only the local run can do this: the generator knows each shopper's taste vector and each product's, so a
served list can be "shown" to the shopper who asked for it. A product in slot ``pos`` (0-based) is clicked
with probability ``sigmoid(CLICK_BIAS + taste . product) / log2(pos + 2)`` (tastes as the generator uses
them for carts and purchases, with the usual position decay). Everything printed from it is labelled
simulated; on AWS the same verdict is computed from real impressions and clicks. ``simulated_ab`` counts
clicks in memory (the verdict's statistical tests use it); ``make run``'s A/B test between two model versions
sends the same shoppers through the endpoint's variants, the capture and the attribution SQL
(``recsys/local/experiment.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monitoring.ab_test import Verdict
from recsys.generator import GeneratorConfig, build_world, product_ids

#: Logit of a click on a product of neutral taste in the first slot (about 8 %).
CLICK_BIAS = -2.5

Serve = Callable[[str], list[str]]


def simulated_ab(
    cfg: GeneratorConfig, a: tuple[str, Serve], b: tuple[str, Serve], *, requests: int = 2000,
    share_b: float = 0.5, seed: int = 0, alpha: float = 0.05,
) -> Verdict:
    """Send ``requests`` random shoppers of the generated shop to variant B with probability ``share_b``
    (else A), show each the list its variant serves and count simulated clicks per impression."""
    world = build_world(cfg)
    index = {pid: i for i, pid in enumerate(product_ids(len(world.item_vec)))}
    rng = np.random.default_rng(seed)
    taste = world.user_vec * np.float32(world.params.taste_strength)
    shown = {a[0]: 0, b[0]: 0}
    clicks = {a[0]: 0, b[0]: 0}
    for _ in range(requests):
        user = int(rng.integers(len(taste)))
        name, serve = b if rng.random() < share_b else a
        items = [index[p] for p in serve(f"u{user + 1}") if p in index]
        if not items:
            continue
        affinity = world.item_vec[items] @ taste[user]
        p_click = 1.0 / (1.0 + np.exp(-(CLICK_BIAS + affinity))) / np.log2(np.arange(len(items)) + 2)
        shown[name] += len(items)
        clicks[name] += int((rng.random(len(items)) < p_click).sum())
    return Verdict(a[0], b[0], shown[a[0]], clicks[a[0]], shown[b[0]], clicks[b[0]], alpha)
