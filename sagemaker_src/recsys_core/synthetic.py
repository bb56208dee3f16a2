"""A small synthetic marketplace log in the raw schema, for tests, smoke runs and benchmarks.

Users like a few categories and one "style" (a latent group of items inside every category);
items have Zipf popularity. Each pick is a view, sometimes followed by a cart and a purchase.
So there is real collaborative signal (co-interest within a style) beyond popularity, and known
right answers exist without copying anyone's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 500
    n_items: int = 400
    n_categories: int = 8
    n_styles: int = 6
    events_per_user: float = 20.0
    style_affinity: float = 0.7  # share of picks from the user's own style
    days: int = 90
    seed: int = 0


def synthetic_tables(config: SyntheticConfig | None = None) -> dict[str, pd.DataFrame]:
    c = config or SyntheticConfig()
    rng = np.random.default_rng(c.seed)
    item_cat = rng.integers(0, c.n_categories, c.n_items)
    item_style = rng.integers(0, c.n_styles, c.n_items)
    item_pop = 1.0 / (1.0 + rng.permutation(c.n_items)) ** 0.8
    user_style = rng.integers(0, c.n_styles, c.n_users)
    user_cats = rng.dirichlet(np.full(c.n_categories, 0.3), c.n_users)

    n_picks = np.maximum(1, rng.poisson(c.events_per_user / 1.4, c.n_users))
    u = np.repeat(np.arange(c.n_users), n_picks)
    cat = (user_cats.cumsum(axis=1)[u] < rng.random(len(u))[:, None]).sum(axis=1).clip(0, c.n_categories - 1)
    own_style = rng.random(len(u)) < c.style_affinity
    # Group items by (category, style) and by category; sample by popularity within the group.
    item = np.empty(len(u), dtype=np.int64)
    for by_style, key_items, key_pick in (
        (True, item_cat * c.n_styles + item_style, np.where(own_style, cat * c.n_styles + user_style[u], -1)),
        (False, item_cat, np.where(own_style, -1, cat)),
    ):
        for g in np.unique(key_pick[key_pick >= 0]):
            members = np.nonzero(key_items == g)[0]
            rows = np.nonzero(key_pick == g)[0]
            if len(members) == 0:
                members = np.nonzero(item_cat == (g // c.n_styles if by_style else g))[0]
            if len(members) == 0:
                members = np.arange(c.n_items)
            p = item_pop[members] / item_pop[members].sum()
            item[rows] = rng.choice(members, len(rows), p=p)

    start = pd.Timestamp("2025-01-01", tz="UTC").value // 10**9
    t = start + rng.random(len(u)) * c.days * 86400
    rows = [pd.DataFrame({"u": u, "i": item, "event_type": "view", "t": t})]
    cart = rng.random(len(u)) < 0.35
    rows.append(pd.DataFrame({"u": u[cart], "i": item[cart], "event_type": "add_to_cart", "t": t[cart] + 600}))
    buy = cart & (rng.random(len(u)) < 0.5)
    rows.append(pd.DataFrame({"u": u[buy], "i": item[buy], "event_type": "purchase", "t": t[buy] + 1200}))
    ev = pd.concat(rows, ignore_index=True).sort_values("t", kind="stable")
    interactions = pd.DataFrame({
        "user_id": "u" + ev["u"].astype(str),
        "product_id": "p" + ev["i"].astype(str),
        "event_type": ev["event_type"].to_numpy(),
        "rating": "",
        "timestamp": pd.to_datetime(ev["t"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    })
    products = pd.DataFrame({
        "product_id": "p" + pd.Series(np.arange(c.n_items)).astype(str),
        "product_url": "https://example.invalid/p" + pd.Series(np.arange(c.n_items)).astype(str),
        "category": "cat" + pd.Series(item_cat).astype(str),
        "sub_category": "style" + pd.Series(item_style).astype(str),
        "price": np.round(rng.lognormal(6, 0.6, c.n_items), 2),
    })
    users = pd.DataFrame({
        "user_id": "u" + pd.Series(np.arange(c.n_users)).astype(str),
        "age": rng.integers(18, 60, c.n_users),
        "gender": rng.choice(["f", "m"], c.n_users),
        "location": rng.choice(["Delhi", "Mumbai", "Jaipur"], c.n_users),
        "signup_date": "2024-12-01",
    })
    return {"users": users, "products": products, "interactions": interactions.reset_index(drop=True)}
