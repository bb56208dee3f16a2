"""Data shapes the serving benchmark trains models on, generated here (nothing is downloaded).

``wholesale_shop``: a purchase log shaped like a real gift-ware wholesaler's (the shape of issue 22's
case, not its data): about 4k products and 4k shoppers, most buying a few dozen order lines over a
year and a few percent buying thousands (wholesale buyers reordering much of the catalogue). What
makes it hard to serve is that shape: a shopper's profile can hold most of the catalogue, and an
item-item model with hundreds of neighbours per item then touches millions of weights per request.

``big_catalogue``: item factors for a catalogue of millions of products (retrieval), with a latent
category structure so that nearest neighbours mean something.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WholesaleConfig:
    n_products: int = 3_900
    n_shoppers: int = 4_300
    n_categories: int = 40
    #: Share of shoppers who buy wholesale (hundreds to thousands of order lines each).
    wholesale_share: float = 0.04
    #: Order lines of a retail shopper: lognormal with this median.
    retail_median_lines: float = 40.0
    #: Order lines of a wholesale shopper: lognormal with this median (capped at ``max_lines``).
    wholesale_median_lines: float = 1_500.0
    max_lines: int = 8_000
    #: Share of a shopper's picks from their own few categories (the rest: anywhere, by popularity).
    taste: float = 0.8
    #: A wholesale buyer reorders: this share of their lines repeat a product they bought before.
    reorder_share: float = 0.3
    days: int = 365
    seed: int = 7


def wholesale_shop(c: WholesaleConfig = WholesaleConfig()) -> dict[str, pd.DataFrame]:
    """``interactions`` (purchases with quantity and unit price) and ``products`` in the raw schema."""
    rng = np.random.default_rng(c.seed)
    cat = rng.integers(0, c.n_categories, c.n_products)
    pop = 1.0 / (1.0 + rng.permutation(c.n_products)) ** 0.9
    price = np.round(rng.lognormal(5.0, 0.8, c.n_products), 2)
    by_cat = [np.flatnonzero(cat == k) for k in range(c.n_categories)]
    cat_p = [pop[m] / pop[m].sum() for m in by_cat]
    pop_p = pop / pop.sum()

    wholesale = rng.random(c.n_shoppers) < c.wholesale_share
    lines = np.where(wholesale, rng.lognormal(np.log(c.wholesale_median_lines), 0.7, c.n_shoppers),
                     rng.lognormal(np.log(c.retail_median_lines), 0.9, c.n_shoppers))
    lines = np.clip(lines.astype(np.int64), 2, c.max_lines)
    users, items, when = [], [], []
    for u in range(c.n_shoppers):
        n = int(lines[u])
        n_cats = rng.integers(10, 30) if wholesale[u] else rng.integers(2, 6)
        cats = rng.choice(c.n_categories, size=n_cats, replace=False)
        own = rng.random(n) < c.taste
        picked = np.empty(n, dtype=np.int64)
        k = rng.choice(cats, size=int(own.sum()))
        for j in np.unique(k):  # within a liked category, by popularity
            at = np.flatnonzero(own)[k == j]
            picked[at] = rng.choice(by_cat[j], size=len(at), p=cat_p[j])
        picked[~own] = rng.choice(c.n_products, size=int((~own).sum()), p=pop_p)
        if wholesale[u] and n > 10:  # reorders: a line repeats an earlier line's product
            again = np.flatnonzero(rng.random(n) < c.reorder_share)
            again = again[again > 0]
            picked[again] = picked[(rng.random(len(again)) * again).astype(np.int64)]
        users.append(np.full(n, u))
        items.append(picked)
        when.append(np.sort(rng.uniform(0, c.days * 86_400, n)))
    u = np.concatenate(users)
    i = np.concatenate(items)
    t = np.concatenate(when) + 1_700_000_000
    qty = np.where(np.repeat(wholesale, lines), rng.integers(6, 96, len(u)), rng.integers(1, 4, len(u)))
    interactions = pd.DataFrame({
        "user_id": "c" + pd.Series(u).astype(str), "product_id": "s" + pd.Series(i).astype(str),
        "event_type": "purchase", "rating": "", "timestamp": t.astype(np.int64),
        "quantity": qty, "unit_price": price[i],
    })
    products = pd.DataFrame({
        "product_id": "s" + pd.Series(np.arange(c.n_products)).astype(str),
        "product_url": "https://example.invalid/s" + pd.Series(np.arange(c.n_products)).astype(str),
        "category": "cat" + pd.Series(cat).astype(str), "sub_category": "", "price": price,
    })
    return {"interactions": interactions, "products": products}
