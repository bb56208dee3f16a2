"""Synthetic Meesho-like marketplace data in the raw schema (CONTRACTS.md §1).

Why synthetic: the project must run end to end with no AWS account and no proprietary data, yet
the recommender, the cleaning recipes and the SQL need data with the structure of a real shop:
a long tail of popularity, tastes tied to demographics *and* to latent factors (so collaborative
filtering beats popularity), a view -> cart -> purchase -> rating funnel, drift over time, cold
starts, and a known amount of dirt. ``docs/generator.md`` explains every knob.

Everything is vectorised numpy over integer codes; strings are only built at the end, as Arrow
arrays (``take`` from small vocabularies), and interactions are simulated and written in chunks
of days so 10M+ rows never sit in memory at once. Randomness comes from independent streams
keyed by ``(seed, stream, chunk)``, so the same config always gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from glue_jobs.schema import EVENT_TYPES, RAW_COLUMNS

TABLES = ("users", "products", "interactions")

#: Dirty-row kinds per table, in the order they are drawn. Each dirty row has exactly one kind.
DIRTY_KINDS: dict[str, tuple[str, ...]] = {
    "users": ("missing_user_id", "impossible_age", "blank_gender"),
    "products": ("negative_price", "zero_price", "non_numeric_price", "missing_category", "duplicate_product_id"),
    "interactions": (
        "missing_user_id",
        "missing_product_id",
        "unknown_event_type",
        "rating_out_of_range",
        "rating_on_non_rating_event",
        "unparseable_timestamp",
        "duplicate_row",
    ),
}
# Dirty values avoid pandas' default NA tokens ("N/A", "null", ...) so a file reads back unchanged.
_BAD_AGES = ("-5", "-1", "0", "150", "212", "999")
_BAD_PRICE_TEXT = ("free", "TBD", "Rs.299", "price on request")
_UNKNOWN_EVENTS = ("wishlist", "click", "share", "remove_from_cart")
_BAD_RATINGS = ("0", "6", "7", "-1", "10")
_BAD_TIMESTAMPS = ("not-a-timestamp", "2026-13-45T25:61:00+05:30", "31/02/2026 10:00", "??")

IST_OFFSET_S = 5 * 3600 + 30 * 60
DAY_S = 86_400


@dataclass(frozen=True)
class CategorySpec:
    """A top-level category: its catalogue share and how demographics, price and time shift it."""

    name: str
    share: float  # share of the catalogue and of baseline demand
    female_affinity: float  # + favoured by women, - by men (logit shift)
    age_peak: float  # age with the highest affinity
    price_median: float  # INR, log-normal median
    price_sigma: float  # log-normal sigma
    festive: float  # logit boost at the festive peak
    trend: float  # logit drift from the start to the end of the range
    sub_categories: tuple[str, ...]


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("Sarees", 0.13, 1.8, 38, 600, 0.60, 0.9, 0.0,
                 ("Silk Sarees", "Cotton Sarees", "Georgette Sarees", "Chiffon Sarees", "Banarasi Sarees")),
    CategorySpec("Kurtis", 0.14, 1.6, 28, 450, 0.50, 0.5, 0.1,
                 ("Anarkali Kurtis", "Straight Kurtis", "Kurti Sets", "Printed Kurtis")),
    CategorySpec("Women Western Wear", 0.08, 1.5, 23, 420, 0.50, 0.0, 0.3,
                 ("Tops", "Dresses", "Jeans", "Co-ord Sets")),
    CategorySpec("Men Tshirts", 0.08, -1.8, 24, 320, 0.45, 0.0, 0.2,
                 ("Polo Tshirts", "Round Neck Tshirts", "Oversized Tshirts")),
    CategorySpec("Men Shirts and Kurtas", 0.05, -1.6, 32, 480, 0.50, 0.4, 0.0,
                 ("Casual Shirts", "Formal Shirts", "Men Kurtas")),
    CategorySpec("Kids Wear", 0.07, 0.8, 32, 380, 0.50, 0.4, 0.0,
                 ("Boys Sets", "Girls Frocks", "Infant Wear")),
    CategorySpec("Jewellery", 0.09, 1.7, 30, 260, 0.65, 0.9, 0.0,
                 ("Earrings", "Necklace Sets", "Bangles", "Anklets", "Mangalsutras")),
    CategorySpec("Home Decor", 0.07, 0.5, 38, 420, 0.60, 0.7, 0.0,
                 ("Wall Decor", "Bedsheets", "Curtains", "Cushion Covers")),
    CategorySpec("Kitchen", 0.06, 0.7, 40, 350, 0.60, 0.2, -0.1,
                 ("Storage Containers", "Cookware", "Kitchen Tools")),
    CategorySpec("Footwear", 0.07, 0.0, 29, 480, 0.50, 0.2, -0.2,
                 ("Women Sandals", "Men Sports Shoes", "Slippers", "Flats")),
    CategorySpec("Bags", 0.05, 1.0, 27, 420, 0.55, 0.2, 0.0,
                 ("Handbags", "Backpacks", "Wallets", "Sling Bags")),
    CategorySpec("Beauty", 0.05, 1.4, 26, 240, 0.60, 0.3, 0.4,
                 ("Lipsticks", "Skincare", "Hair Care", "Nail Polish")),
    CategorySpec("Electronics Accessories", 0.06, -1.0, 25, 350, 0.70, 0.1, 0.5,
                 ("Earphones", "Phone Covers", "Chargers", "Smartwatches")),
)  # fmt: skip

#: (city, tier, relative population of shoppers). Tier 2/3 dominate, as on Meesho.
CITIES: tuple[tuple[str, int, float], ...] = (
    ("Delhi", 1, 6.0), ("Mumbai", 1, 5.0), ("Bengaluru", 1, 4.0), ("Hyderabad", 1, 3.5), ("Kolkata", 1, 3.5),
    ("Chennai", 1, 3.0), ("Pune", 1, 2.5), ("Ahmedabad", 1, 2.5), ("Jaipur", 2, 3.0), ("Lucknow", 2, 3.0),
    ("Patna", 2, 2.8), ("Indore", 2, 2.2), ("Bhopal", 2, 1.8), ("Surat", 2, 2.2), ("Kanpur", 2, 2.0),
    ("Nagpur", 2, 1.8), ("Visakhapatnam", 2, 1.6), ("Coimbatore", 2, 1.5), ("Guwahati", 2, 1.5),
    ("Bhubaneswar", 2, 1.4), ("Ranchi", 2, 1.4), ("Raipur", 2, 1.3), ("Varanasi", 3, 1.6), ("Agra", 3, 1.4),
    ("Gorakhpur", 3, 1.5), ("Muzaffarpur", 3, 1.3), ("Gaya", 3, 1.2), ("Bareilly", 3, 1.1), ("Siliguri", 3, 1.0),
    ("Madurai", 3, 1.0), ("Vijayawada", 3, 1.1), ("Jodhpur", 3, 1.0), ("Udaipur", 3, 0.8), ("Ajmer", 3, 0.8),
    ("Jhansi", 3, 0.8), ("Bilaspur", 3, 0.8), ("Darbhanga", 3, 0.9), ("Cuttack", 3, 0.8), ("Nashik", 3, 1.0),
    ("Aurangabad", 3, 0.9),
)  # fmt: skip

_ADJECTIVES = (
    "trendy", "elegant", "stylish", "classic", "fancy", "graceful", "pretty", "attractive", "designer", "comfy",
    "latest", "charming", "beautiful", "modern", "ethnic", "casual", "premium", "unique", "glamorous", "chic",
)  # fmt: skip
_VARIANTS = ("", "", "", "combo", "pack-of-2", "new", "printed", "solid", "floral", "embroidered")
_HOUR_WEIGHTS = np.array(
    [0.6, 0.3, 0.15, 0.1, 0.1, 0.15, 0.4, 0.8, 1.2, 1.5, 1.7, 1.9, 2.1, 2.2, 2.0, 1.8, 1.8, 1.9, 2.1, 2.4, 2.8, 3.0,
     2.6, 1.5]
)  # fmt: skip


@dataclass(frozen=True)
class MarketParams:
    """Behavioural knobs. Defaults give a plausible shop; see docs/generator.md for each one."""

    latent_dim: int = 8
    taste_strength: float = 1.0  # weight of the low-rank user x item term in choice
    category_noise: float = 1.2  # per-user idiosyncratic category taste (sd of logit noise)
    zipf_exponent: float = 1.05  # product popularity ~ rank ** -exponent
    n_candidates: int = 24  # popularity-proposed candidates per view, re-weighted by taste
    activity_sigma: float = 1.2  # user activity ~ lognormal(0, sigma): heavy tail
    newcomer_activity: float = 0.5  # activity multiplier for users who sign up within the range
    mean_extra_views: float = 2.6  # views per session = 1 + geometric with this mean
    max_views: int = 30
    secondary_category_p: float = 0.25  # share of a session's views outside its main category
    revisit_p: float = 0.10  # share of views that go back to one of the user's considered items
    n_considered: int = 3  # items per user that they keep coming back to
    cart_bias: float = -3.0  # logit of add_to_cart for an average view
    purchase_bias: float = -1.3  # logit of purchase given add_to_cart
    rating_p: float = 0.35  # share of purchases later rated
    rating_mean: float = 3.9
    disappointed_p: float = 0.12  # share of ratings that are 1-2 stars whatever the taste (J-shaped reviews)
    price_sensitivity_mean: float = 1.0  # lognormal mean of the per-user price aversion
    festive_center: float = 0.6  # position of the festive-sale peak in the date range (0..1)
    festive_width_days: float = 5.0
    festive_amplitude: float = 1.5  # extra traffic at the peak (x(1 + amplitude))
    growth: float = 0.3  # traffic grows by this fraction across the range
    popularity_drift_sd: float = 0.8  # per-product popularity trend (logit over the range)
    novelty_boost: float = 1.0  # extra logit for a just-launched product, decaying over ~10 days
    new_product_window: tuple[float, float] = (0.3, 0.95)  # launch window of new products (share of range)
    epoch_timestamp_share: float = 0.10  # rows with epoch-seconds timestamps
    utc_timestamp_share: float = 0.05  # rows with ISO timestamps in +00:00 instead of +05:30
    max_sessions_per_chunk: int = 250_000
    view_batch: int = 8192  # small batches keep the (batch, candidates, k) gather in cache


DEFAULT_PARAMS = MarketParams()


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. ``n_interactions`` is a target: the session count is calibrated to hit it."""

    n_users: int = 2000
    n_products: int = 500
    n_interactions: int = 60_000
    seed: int = 42
    start_date: str = "2026-01-01"
    days: int = 120
    dirty_fraction: float = 0.01
    new_user_fraction: float = 0.05
    new_product_fraction: float = 0.05
    fmt: str = "csv"


@dataclass
class GenerationSummary:
    """What ``generate_to_dir`` wrote: files, row counts, injected dirty rows per kind, wall time."""

    paths: dict[str, Path]
    rows: dict[str, int]
    dirty_rows: dict[str, dict[str, int]]
    seconds: float


def validate_config(cfg: GeneratorConfig) -> None:
    """Raise ``ValueError`` naming the offending field, before any work is done."""
    for name in ("n_users", "n_products", "n_interactions", "days"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    limits = {"dirty_fraction": 0.5, "new_user_fraction": 1.0, "new_product_fraction": 0.9}
    for name, hi in limits.items():
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or not 0.0 <= value <= hi:
            raise ValueError(f"{name} must be between 0 and {hi}, got {value!r}")
    try:
        dt.date.fromisoformat(cfg.start_date)
    except (TypeError, ValueError):
        raise ValueError(f"start_date must be an ISO date like 2026-01-01, got {cfg.start_date!r}") from None
    if cfg.fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {cfg.fmt!r}")


# --------------------------------------------------------------------------------------------- world


@dataclass
class World:
    """The latent state behind the tables: who likes what, and when things exist.

    Exposed (not part of the raw files) so tests can check ground truth such as launch days.
    """

    cfg: GeneratorConfig
    params: MarketParams
    t0: int  # epoch seconds of start_date 00:00 IST
    # users
    age: np.ndarray
    gender: np.ndarray  # 0 female, 1 male, 2 other
    city: np.ndarray
    signup_day: np.ndarray  # day index relative to start_date (negative: before the range)
    activity: np.ndarray
    pref: np.ndarray  # (n_users, n_categories) category preference, rows sum to 1
    user_vec: np.ndarray  # (n_users, k) latent taste
    price_beta: np.ndarray  # price aversion
    considered: np.ndarray  # (n_users, n_considered) products a user keeps returning to
    # products
    category: np.ndarray
    sub_category: np.ndarray  # index into the category's sub_categories
    price: np.ndarray  # INR, integer-valued
    rel_log_price: np.ndarray  # log(price / category median)
    popularity: np.ndarray
    item_vec: np.ndarray
    pop_trend: np.ndarray
    launch_day: np.ndarray  # day index from which the product can be seen; < 0 for the back catalogue
    # time
    day_rate: np.ndarray  # relative traffic per day (intensity x active shoppers)
    category_boost: np.ndarray  # (days, n_categories) multiplicative drift of category demand
    # sampling helpers
    by_category: np.ndarray = field(repr=False)  # product indices sorted by category
    alias_prob: np.ndarray = field(repr=False)  # Walker alias tables over by_category positions,
    alias: np.ndarray = field(repr=False)  # one table per category (popularity-weighted)
    cat_lo: np.ndarray = field(repr=False)  # index range of each category in by_category
    cat_hi: np.ndarray = field(repr=False)
    fallback: np.ndarray = field(repr=False)  # per category: a back-catalogue product
    signup_order: np.ndarray = field(repr=False)  # users sorted by signup day
    signup_sorted: np.ndarray = field(repr=False)
    cum_activity: np.ndarray = field(repr=False)  # cumulative activity in signup order

    @property
    def n_users(self) -> int:
        return len(self.age)

    @property
    def n_products(self) -> int:
        return len(self.category)

    @property
    def has_new_products(self) -> bool:
        return bool((self.launch_day >= 0).any())


def _rng(cfg: GeneratorConfig, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream, chunk])


def _start_epoch_ist(cfg: GeneratorConfig) -> int:
    start = dt.datetime.fromisoformat(cfg.start_date).replace(tzinfo=dt.UTC)
    return int(start.timestamp()) - IST_OFFSET_S


def build_world(cfg: GeneratorConfig, params: MarketParams | None = None) -> World:
    """Draw users, products and the time profile (no interactions yet)."""
    validate_config(cfg)
    params = params or DEFAULT_PARAMS
    n_cat = len(CATEGORIES)
    k = params.latent_dim
    share = np.array([c.share for c in CATEGORIES])
    share /= share.sum()

    # ---- products
    rng = _rng(cfg, 1)
    n_p = cfg.n_products
    category = rng.choice(n_cat, size=n_p, p=share).astype(np.int16)
    n_sub = np.array([len(c.sub_categories) for c in CATEGORIES])
    sub = (rng.random(n_p) * n_sub[category]).astype(np.int16)
    med = np.array([c.price_median for c in CATEGORIES])[category]
    sig = np.array([c.price_sigma for c in CATEGORIES])[category]
    raw_price = med * np.exp(sig * rng.standard_normal(n_p))
    price = np.clip(np.round(raw_price / 10.0) * 10.0 - 1.0, 49.0, 9999.0)  # Meesho-style 349, 499 ...
    rel_log_price = np.log(price / med).astype(np.float32)
    ranks = rng.permutation(n_p) + 1
    popularity = ranks.astype(np.float64) ** -params.zipf_exponent
    cat_centroid = rng.standard_normal((n_cat, k))
    item_vec = (0.6 * cat_centroid[category] + 0.8 * rng.standard_normal((n_p, k))).astype(np.float32)
    pop_trend = (params.popularity_drift_sd * rng.standard_normal(n_p)).astype(np.float32)
    # New products launch late; the most popular product of each category stays in the back
    # catalogue so every category always has something to show.
    by_category = np.lexsort((-popularity, category)).astype(np.int64)
    cat_lo = np.searchsorted(category[by_category], np.arange(n_cat), side="left")
    cat_hi = np.searchsorted(category[by_category], np.arange(n_cat), side="right")
    present = cat_hi > cat_lo
    fallback = np.where(present, by_category[np.minimum(cat_lo, n_p - 1)], -1)
    launch_day = np.full(n_p, -1, dtype=np.int32)
    eligible = np.setdiff1d(np.arange(n_p), fallback[present])
    n_new = min(round(cfg.new_product_fraction * n_p), len(eligible))
    if n_new:
        new = rng.choice(eligible, size=n_new, replace=False)
        lo, hi = params.new_product_window
        launch_day[new] = np.floor(cfg.days * (lo + (hi - lo) * rng.random(n_new))).astype(np.int32)
    alias_prob, alias = _alias_tables(popularity[by_category], cat_lo, cat_hi)

    # ---- users
    rng = _rng(cfg, 2)
    n_u = cfg.n_users
    gender = rng.choice(3, size=n_u, p=[0.62, 0.36, 0.02]).astype(np.int8)
    age = np.clip(np.round(18 + rng.gamma(2.2, 6.0, n_u)), 18, 75).astype(np.int16)
    city_w = np.array([c[2] for c in CITIES])
    city = rng.choice(len(CITIES), size=n_u, p=city_w / city_w.sum()).astype(np.int16)
    tier = np.array([c[1] for c in CITIES])[city]
    signup_day = -1 - np.minimum(rng.exponential(400.0, n_u), 2000).astype(np.int32)
    activity = rng.lognormal(0.0, params.activity_sigma, n_u)
    n_new_u = round(cfg.new_user_fraction * n_u)
    if n_new_u:
        # Sign-ups accelerate through the range (density ~ t) and newcomers browse less at first.
        new_u = rng.choice(n_u, size=n_new_u, replace=False)
        signup_day[new_u] = np.floor(cfg.days * np.sqrt(rng.random(n_new_u))).astype(np.int32)
        activity[new_u] *= params.newcomer_activity
    # Category taste: base share, shifted by gender and age, plus idiosyncratic noise.
    fem = np.array([c.female_affinity for c in CATEGORIES])
    peak = np.array([c.age_peak for c in CATEGORIES])
    gsign = np.select([gender == 0, gender == 1], [1.0, -1.0], 0.0)
    logit = (
        np.log(share)[None, :]
        + gsign[:, None] * fem[None, :]
        - ((age[:, None] - peak[None, :]) / 15.0) ** 2
        + params.category_noise * rng.standard_normal((n_u, n_cat))
    )
    logit[:, ~present] = -np.inf
    logit -= logit.max(axis=1, keepdims=True)
    pref = np.exp(logit)
    pref = (pref / pref.sum(axis=1, keepdims=True)).astype(np.float32)
    user_vec = (rng.standard_normal((n_u, k)) / math.sqrt(k)).astype(np.float32)
    beta_mean = params.price_sensitivity_mean * np.array([0.0, 0.8, 1.0, 1.25])[tier]
    price_beta = (beta_mean * rng.lognormal(-0.18, 0.6, n_u)).astype(np.float32)

    # ---- time profile
    d = np.arange(cfg.days)
    t_frac = (d + 0.5) / cfg.days
    weekday = np.array([(dt.date.fromisoformat(cfg.start_date) + dt.timedelta(days=int(i))).weekday() for i in d])
    festive = np.exp(-0.5 * ((d - params.festive_center * (cfg.days - 1)) / params.festive_width_days) ** 2)
    intensity = (
        (1 + params.growth * t_frac) * np.where(weekday >= 5, 1.12, 1.0) * (1 + params.festive_amplitude * festive)
    )
    fest_c = np.array([c.festive for c in CATEGORIES])
    trend_c = np.array([c.trend for c in CATEGORIES])
    category_boost = np.exp(festive[:, None] * fest_c[None, :] + (t_frac - 0.5)[:, None] * trend_c[None, :])
    signup_order = np.argsort(signup_day, kind="stable")
    signup_sorted = signup_day[signup_order]
    cum_activity = np.cumsum(activity[signup_order])
    n_active = np.searchsorted(signup_sorted, d, side="right")
    active_mass = np.where(n_active > 0, cum_activity[np.maximum(n_active - 1, 0)], 0.0)
    day_rate = intensity * active_mass

    world = World(
        cfg=cfg, params=params, t0=_start_epoch_ist(cfg),
        age=age, gender=gender, city=city, signup_day=signup_day, activity=activity, pref=pref,
        user_vec=user_vec, price_beta=price_beta, considered=np.zeros((n_u, 0), dtype=np.int64),
        category=category, sub_category=sub, price=price, rel_log_price=rel_log_price, popularity=popularity,
        item_vec=item_vec, pop_trend=pop_trend, launch_day=launch_day,
        day_rate=day_rate, category_boost=category_boost,
        by_category=by_category, alias_prob=alias_prob, alias=alias, cat_lo=cat_lo, cat_hi=cat_hi, fallback=fallback,
        signup_order=signup_order, signup_sorted=signup_sorted, cum_activity=cum_activity,
    )  # fmt: skip
    # Items each user keeps considering (drawn like a first-day view from the back catalogue).
    # In blocks of users so the (rows, categories) temporaries stay small at 1M users.
    rng = _rng(cfg, 3)
    n_c = params.n_considered
    world.considered = np.empty((n_u, n_c), dtype=np.int64)
    for lo in range(0, n_u, 100_000):
        users = np.repeat(np.arange(lo, min(lo + 100_000, n_u)), n_c)
        cats = _sample_categories(world, rng, users, np.zeros(len(users), dtype=np.int64))
        picked = _choose_items(world, rng, users, cats, np.full(len(users), -1))
        world.considered[lo : lo + 100_000] = picked.reshape(-1, n_c)
    return world


# ------------------------------------------------------------------------------------------ behaviour


def _sample_categories(world: World, rng: np.random.Generator, users: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One category per row from the user's taste times that day's category drift."""
    p = world.pref[users] * world.category_boost[np.clip(days, 0, None)]
    cum = np.cumsum(p, axis=1)
    u = rng.random(len(users)) * cum[:, -1]
    idx = np.minimum((cum <= u[:, None]).sum(axis=1), cum.shape[1] - 1)
    # Rounding can land on a zero-probability category (one with no products): use the favourite.
    zero = p[np.arange(len(idx)), idx] == 0
    return np.where(zero, np.argmax(p, axis=1), idx)


def _choose_items(
    world: World, rng: np.random.Generator, users: np.ndarray, cats: np.ndarray, days: np.ndarray
) -> np.ndarray:
    """Pick one product per view: popularity proposes, taste/price/trend re-weight (SIR).

    Exact softmax over a 100k catalogue per view is too slow; drawing ``n_candidates`` from the
    category by popularity and then Gumbel-max sampling by the personal score keeps the long tail
    of popularity and adds low-rank personal signal and noise at O(candidates) per view.
    """
    p = world.params
    out = np.empty(len(users), dtype=np.int64)
    nc = p.n_candidates
    novelty = (p.novelty_boost * np.exp(-np.arange(world.cfg.days + 2) / 10.0)).astype(np.float32)
    for s in range(0, len(users), p.view_batch):
        u, c, d = users[s : s + p.view_batch], cats[s : s + p.view_batch], days[s : s + p.view_batch]
        lo, size = world.cat_lo[c][:, None], (world.cat_hi[c] - world.cat_lo[c])[:, None]
        # Walker alias draw by popularity within the category: O(1) per candidate.
        pos = lo + (rng.random((len(u), nc)) * size).astype(np.int64)
        pos = np.where(rng.random((len(u), nc), dtype=np.float32) < world.alias_prob[pos], pos, world.alias[pos])
        cand = world.by_category[pos]
        vecs = np.take(world.item_vec, cand.ravel(), axis=0).reshape(*cand.shape, -1)  # take >> fancy indexing
        score = np.matmul(vecs, (world.user_vec[u] * np.float32(p.taste_strength))[:, :, None])[..., 0]
        score -= world.price_beta[u][:, None] * world.rel_log_price[cand]
        t_frac = ((d + 0.5) / world.cfg.days - 0.5).astype(np.float32)
        score += world.pop_trend[cand] * t_frac[:, None]
        launch = world.launch_day[cand]
        age_days = d[:, None].astype(np.int32) - launch
        if p.novelty_boost and world.has_new_products:
            score += np.where(launch >= 0, novelty[np.clip(age_days, 0, len(novelty) - 1)], np.float32(0))
        score = np.where(age_days >= 0, score, -np.inf)
        # Gumbel-max: -log(Exp(1)) is Gumbel(0, 1), and the exponential sampler is the fast one.
        noisy = score - np.log(np.maximum(rng.standard_exponential(score.shape, dtype=np.float32), 1e-30))
        pick = np.argmax(noisy, axis=1)
        chosen = cand[np.arange(len(u)), pick]
        none_live = np.isneginf(score[np.arange(len(u)), pick])
        out[s : s + len(u)] = np.where(none_live, world.fallback[c], chosen)
    return out


def _alias_tables(weights: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables, one per segment [lo, hi) of ``weights`` (global positions).

    Built once (a Python loop over the catalogue, ~0.1 s per 100k), they make every later
    popularity draw two random numbers and two lookups instead of a binary search.
    """
    prob = np.ones(len(weights), dtype=np.float32)
    alias = np.arange(len(weights), dtype=np.int64)
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        if b <= a:
            continue
        scaled = (weights[a:b] * ((b - a) / weights[a:b].sum())).tolist()
        small = [i for i, v in enumerate(scaled) if v < 1.0]
        large = [i for i, v in enumerate(scaled) if v >= 1.0]
        while small and large:
            sm, lg = small.pop(), large[-1]
            prob[a + sm], alias[a + sm] = scaled[sm], a + lg
            scaled[lg] -= 1.0 - scaled[sm]
            if scaled[lg] < 1.0:
                small.append(large.pop())
    return prob, alias


def _sample_sessions(
    world: World, rng: np.random.Generator, day_lo: int, day_hi: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions in [day_lo, day_hi): day by traffic, user by activity among those signed up by then."""
    rate = world.day_rate[day_lo:day_hi]
    cum = np.cumsum(rate)
    days = day_lo + np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(rate) - 1)
    n_active = np.searchsorted(world.signup_sorted, days, side="right")
    mass = world.cum_activity[n_active - 1]
    pos = np.minimum(np.searchsorted(world.cum_activity, rng.random(n) * mass, side="right"), n_active - 1)
    users = world.signup_order[pos]
    hours = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    start = world.t0 + days.astype(np.int64) * DAY_S + hours * 3600 + rng.integers(0, 3600, n)
    return users, days, start


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _simulate(
    world: World, rng: np.random.Generator, users: np.ndarray, days: np.ndarray, start: np.ndarray
) -> dict[str, np.ndarray]:
    """Turn sessions into events: views within 1-2 categories, then the cart/purchase/rating funnel."""
    p = world.params
    n = len(users)
    prim = _sample_categories(world, rng, users, days)
    sec = _sample_categories(world, rng, users, days)
    n_views = np.minimum(rng.geometric(1.0 / (1.0 + p.mean_extra_views), n), p.max_views)
    sess = np.repeat(np.arange(n), n_views)
    first = np.cumsum(n_views) - n_views
    pos = np.arange(len(sess)) - first[sess]
    vu, vd = users[sess], days[sess]
    cats = np.where((pos == 0) | (rng.random(len(sess)) >= p.secondary_category_p), prim[sess], sec[sess])
    items = _choose_items(world, rng, vu, cats, vd)
    if world.considered.shape[1]:
        revisit = rng.random(len(sess)) < p.revisit_p
        pick = world.considered[vu, rng.integers(0, world.considered.shape[1], len(sess))]
        items = np.where(revisit, pick, items)
    # Gaps >= 20 s and cart offsets < 20 s keep every event of a session at a distinct second.
    gaps = 20 + rng.exponential(40.0, len(sess)).astype(np.int64)
    csum = np.cumsum(gaps)
    view_ts = start[sess] + csum - (csum[first] - gaps[first])[sess]
    session_end = view_ts[first + n_views - 1]
    affinity = np.einsum("nk,nk->n", world.user_vec[vu], world.item_vec[items]) * p.taste_strength
    price_pain = world.price_beta[vu] * world.rel_log_price[items]
    cart = rng.random(len(sess)) < _sigmoid(p.cart_bias + 0.9 * affinity - 0.5 * price_pain)
    cart_ts = view_ts + rng.integers(2, 19, len(sess))
    buy = cart & (rng.random(len(sess)) < _sigmoid(p.purchase_bias + 0.6 * affinity - 0.7 * price_pain))
    buy_ts = session_end[sess] + rng.integers(30, 900, n)[sess] + pos
    rate = buy & (rng.random(len(sess)) < p.rating_p)
    rate_ts = buy_ts + rng.integers(2 * DAY_S, 12 * DAY_S, len(sess))
    stars = np.clip(np.round(p.rating_mean + 0.6 * affinity + 0.9 * rng.standard_normal(len(sess))), 1, 5)
    disappointed = rng.random(len(sess)) < p.disappointed_p * _sigmoid(-affinity) * 2
    stars = np.where(disappointed, rng.choice([1, 1, 2], size=len(sess)), stars)
    cart_i, buy_i, rate_i = np.flatnonzero(cart), np.flatnonzero(buy), np.flatnonzero(rate)
    ev = {
        "user": np.concatenate([vu, vu[cart_i], vu[buy_i], vu[rate_i]]).astype(np.int64),
        "product": np.concatenate([items, items[cart_i], items[buy_i], items[rate_i]]),
        "event": np.concatenate(
            [
                np.zeros(len(sess), np.int8),
                np.ones(len(cart_i), np.int8),
                np.full(len(buy_i), 2, np.int8),
                np.full(len(rate_i), 3, np.int8),
            ]
        ),  # fmt: skip
        "rating": np.concatenate(
            [np.zeros(len(sess) + len(cart_i) + len(buy_i), np.int8), stars[rate_i].astype(np.int8)]
        ),
        "ts": np.concatenate([view_ts, cart_ts[cart_i], buy_ts[buy_i], rate_ts[rate_i]]),
    }
    # Events after the export cut-off have not happened yet (late ratings, midnight sessions).
    keep = ev["ts"] < world.t0 + world.cfg.days * DAY_S
    order = np.argsort(ev["ts"][keep], kind="stable")
    return {key: val[keep][order] for key, val in ev.items()}


def plan_chunks(world: World) -> list[tuple[int, int, int]]:
    """(day_lo, day_hi, n_sessions) per chunk, with the session total calibrated to the target.

    A pilot of sessions on a separate stream measures events per session, so ``n_interactions``
    is met within a few percent whatever the knobs; chunks are contiguous day ranges so output is
    roughly chronological and each chunk is bounded in memory.
    """
    cfg, p = world.cfg, world.params
    rng = _rng(cfg, 4)
    n_pilot = int(min(20_000, max(2_000, cfg.n_interactions // 20)))
    pilot = _simulate(world, rng, *_sample_sessions(world, rng, 0, cfg.days, n_pilot))
    per_session = max(len(pilot["ts"]) / n_pilot, 1e-9)
    total = max(1, round(cfg.n_interactions / per_session))
    cum = np.rint(total * np.cumsum(world.day_rate) / world.day_rate.sum()).astype(np.int64)
    per_day = np.diff(cum, prepend=0)
    chunks: list[tuple[int, int, int]] = []
    lo, acc = 0, 0
    for d in range(cfg.days):
        if acc and acc + per_day[d] > p.max_sessions_per_chunk:
            chunks.append((lo, d, acc))
            lo, acc = d, 0
        acc += int(per_day[d])
    chunks.append((lo, cfg.days, acc))
    return [c for c in chunks if c[2] > 0]


# ------------------------------------------------------------------------------------------- tables


def _dirty_count(n: int, share: float) -> int:
    """Rows to spoil; at least one when dirt is on and the table is big enough, so every kind shows up."""
    return max(round(n * share), 1 if share > 0 and n >= 100 else 0)


def _dirty_counts(n: int, kinds: tuple[str, ...], fraction: float) -> dict[str, int]:
    return dict.fromkeys(kinds, _dirty_count(n, fraction / len(kinds)))


def _split_rows(rng: np.random.Generator, pool: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """Disjoint random rows from ``pool`` (clipped to what is available), one array per count."""
    take = min(sum(counts), len(pool))
    rows = rng.choice(pool, size=take, replace=False) if take else pool[:0]
    return np.split(rows, np.cumsum(counts)[:-1].clip(max=take))


def _strings(values: list[str] | tuple[str, ...]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _take(vocab: pa.Array, codes: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return vocab.take(pa.array(codes, mask=null))


def _iso_dates(start: str, day_offsets: np.ndarray) -> pa.Array:
    """YYYY-MM-DD strings, formatting each distinct day once (1M sign-ups span ~2k days)."""
    lo = int(day_offsets.min()) if len(day_offsets) else 0
    span = np.datetime64(start, "D") + np.arange(lo, int(day_offsets.max(initial=lo)) + 1).astype("timedelta64[D]")
    vocab = pa.array(np.datetime_as_string(span, unit="D"), type=pa.string())
    return vocab.take(pa.array(day_offsets.astype(np.int64) - lo))


def users_table(world: World) -> tuple[pa.Table, dict[str, int]]:
    """The users table as strings, with its dirty rows (mutated in place, so ids stay unique)."""
    cfg = world.cfg
    rng = _rng(cfg, 5)
    n = world.n_users
    user_id = _user_ids(n)
    age = pc.cast(pa.array(world.age.astype(np.int64)), pa.string())
    counts = _dirty_counts(n, DIRTY_KINDS["users"], cfg.dirty_fraction)
    miss, bad_age, blank = _split_rows(rng, np.arange(n), list(counts.values()))
    user_id = pc.replace_with_mask(user_id, _mask(n, miss), pa.nulls(len(miss), pa.string()))
    bad = _strings(_BAD_AGES).take(pa.array(rng.integers(0, len(_BAD_AGES), len(bad_age))))
    age = pc.replace_with_mask(age, _mask(n, bad_age), bad)
    gender = _take(_strings(("female", "male", "other")), world.gender.astype(np.int64), _mask(n, blank))
    table = pa.table(
        {
            "user_id": user_id,
            "age": age,
            "gender": gender,
            "location": _take(_strings([c[0] for c in CITIES]), world.city.astype(np.int64)),
            "signup_date": _iso_dates(cfg.start_date, world.signup_day),
        }
    )
    return table, {"missing_user_id": len(miss), "impossible_age": len(bad_age), "blank_gender": len(blank)}


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


def _user_ids(n: int) -> pa.Array:
    return pc.binary_join_element_wise("u", pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), "")


def product_ids(n: int) -> list[str]:
    """Opaque Meesho-like base-36 codes (``p7x48c8``); a bijection of the index so ids are unique."""
    codes = (np.arange(n, dtype=np.int64) * 2_654_435_761 + 1_234_567) % 36**6
    alphabet = np.array(list("0123456789abcdefghijklmnopqrstuvwxyz"))
    chars = [np.full(n, "p")] + [alphabet[(codes // 36**i) % 36] for i in range(5, -1, -1)]
    return np.ascontiguousarray(np.stack(chars, axis=1)).view("<U7").ravel().tolist()


def products_table(world: World) -> tuple[pa.Table, dict[str, int]]:
    """The catalogue as strings; dirty rows mutate prices/categories, duplicates are re-listings."""
    cfg = world.cfg
    rng = _rng(cfg, 6)
    n = world.n_products
    ids = product_ids(n)
    adj = rng.integers(0, len(_ADJECTIVES), n)
    var = rng.integers(0, len(_VARIANTS), n)
    sub_vocab = [s for c in CATEGORIES for s in c.sub_categories]
    sub_offset = np.cumsum([0] + [len(c.sub_categories) for c in CATEGORIES])[:-1]
    sub_code = (sub_offset[world.category] + world.sub_category).astype(np.int64)
    id_array = _strings(ids)
    slug = pc.binary_join_element_wise(
        _strings([a + "-" for a in _ADJECTIVES]).take(pa.array(adj)),
        _strings([v + "-" if v else "" for v in _VARIANTS]).take(pa.array(var)),
        _strings([x.lower().replace(" ", "-") for x in sub_vocab]).take(pa.array(sub_code)),
        "",
    )
    urls = pc.binary_join_element_wise("https://www.meesho.com/", slug, "/p/", id_array, "")
    price = world.price.astype(np.int64)
    counts = _dirty_counts(n, DIRTY_KINDS["products"], cfg.dirty_fraction)
    neg, zero, text, nocat, dup = _split_rows(rng, np.arange(n), list(counts.values()))
    price_s = pc.cast(pa.array(price), pa.string())
    price_s = pc.replace_with_mask(price_s, _mask(n, neg), pa.array([f"-{v}" for v in price[neg]], pa.string()))
    price_s = pc.replace_with_mask(price_s, _mask(n, zero), pa.array(["0"] * len(zero), pa.string()))
    bad_text = _strings(_BAD_PRICE_TEXT).take(pa.array(rng.integers(0, len(_BAD_PRICE_TEXT), len(text))))
    price_s = pc.replace_with_mask(price_s, _mask(n, text), bad_text)
    table = pa.table(
        {
            "product_id": id_array,
            "product_url": urls,
            "category": _take(_strings([c.name for c in CATEGORIES]), world.category.astype(np.int64), _mask(n, nocat)),
            "sub_category": _take(
                _strings(sub_vocab), (sub_offset[world.category] + world.sub_category).astype(np.int64)
            ),
            "price": price_s,
        }
    )
    # Re-listed at a new price: same id, appended later in the export (needs clean source rows).
    if len(dup):
        relisted = table.take(pa.array(dup))
        new_price = pc.cast(pa.array(np.round(price[dup] * 1.1 / 10) * 10 - 1).cast(pa.int64()), pa.string())
        relisted = relisted.set_column(4, "price", new_price)
        table = pa.concat_tables([table, relisted])
    kinds = DIRTY_KINDS["products"]
    return table, {k: len(r) for k, r in zip(kinds, (neg, zero, text, nocat, dup), strict=True)}


class _TimestampFormatter:
    """Seconds -> ISO-8601 strings via two small lookup tables (day prefix, time-of-day suffix).

    Formatting 10M datetimes one by one is the slowest part of a naive writer; ``take`` + join
    from precomputed vocabularies runs at Arrow speed.
    """

    def __init__(self, world: World) -> None:
        self.t0_utc = world.t0 + IST_OFFSET_S  # start_date 00:00 UTC
        offsets = np.arange(-1, world.cfg.days + 2)
        self.day_lo = -1
        self.days = pc.binary_join_element_wise(_iso_dates(world.cfg.start_date, offsets), "T", "")
        one_day = np.datetime64("2000-01-01T00:00:00") + np.arange(DAY_S).astype("timedelta64[s]")
        hms = pc.utf8_slice_codeunits(pa.array(np.datetime_as_string(one_day, unit="s")), 11)  # "HH:MM:SS"
        self.ist = pc.binary_join_element_wise(hms, "+05:30", "")
        self.utc = pc.binary_join_element_wise(hms, "+00:00", "")

    def format(self, ts: np.ndarray, style: np.ndarray) -> pa.Array:
        """style 0: ISO IST, 1: ISO UTC, 2: epoch seconds."""
        local = ts + IST_OFFSET_S - self.t0_utc
        utc = np.where(style == 1, ts - self.t0_utc, local)
        day = pa.array(utc // DAY_S - self.day_lo)
        tod = pa.array(utc % DAY_S)
        iso = pc.if_else(
            pa.array(style == 1),
            pc.binary_join_element_wise(self.days.take(day), self.utc.take(tod), ""),
            pc.binary_join_element_wise(self.days.take(day), self.ist.take(tod), ""),
        )
        return pc.if_else(pa.array(style == 2), pc.cast(pa.array(ts), pa.string()), iso)


def _interaction_chunk(
    world: World, fmt: _TimestampFormatter, user_ids: pa.Array, prod_ids: pa.Array, index: int, chunk: tuple
) -> tuple[pa.Table, dict[str, int]]:
    """Simulate one chunk of days, inject its share of dirt, render strings."""
    cfg, p = world.cfg, world.params
    rng = _rng(cfg, 10, index)
    ev = _simulate(world, rng, *_sample_sessions(world, rng, *chunk))
    n = len(ev["ts"])
    kinds = DIRTY_KINDS["interactions"]
    counts = _dirty_counts(n, kinds, cfg.dirty_fraction)
    is_rating = ev["event"] == 3
    rating_rows = np.flatnonzero(is_rating)
    other_rows = np.flatnonzero(~is_rating)
    # Ratings are rare (~1.5% of rows): spoil the same share of them as of the table, not 1/7 of 1%
    # of all rows, which would make one rating in ten invalid.
    counts["rating_out_of_range"] = min(
        _dirty_count(n, cfg.dirty_fraction * len(rating_rows) / max(n, 1)), len(rating_rows)
    )
    (out_of_range,) = _split_rows(rng, rating_rows, [counts["rating_out_of_range"]])
    mutate = [counts[k] for k in kinds if k not in ("rating_out_of_range", "duplicate_row")]
    miss_u, miss_p, unknown, rated, bad_ts = _split_rows(rng, other_rows, mutate)
    dirty_mask = _mask(n, np.concatenate([out_of_range, miss_u, miss_p, unknown, rated, bad_ts]))
    (dups,) = _split_rows(rng, np.flatnonzero(~dirty_mask), [counts["duplicate_row"]])

    event_vocab = _strings(EVENT_TYPES + _UNKNOWN_EVENTS)
    event = ev["event"].astype(np.int64)
    event[unknown] = len(EVENT_TYPES) + rng.integers(0, len(_UNKNOWN_EVENTS), len(unknown))
    # rating codes: 0 empty, 1..5 stars, 6.. out-of-range tokens
    rating_vocab = _strings(("",) + tuple(str(i) for i in range(1, 6)) + _BAD_RATINGS)
    rating = ev["rating"].astype(np.int64)
    rating[out_of_range] = 6 + rng.integers(0, len(_BAD_RATINGS), len(out_of_range))
    rating[rated] = rng.integers(1, 6, len(rated))
    style = rng.choice(3, size=n, p=[1 - p.epoch_timestamp_share - p.utc_timestamp_share, p.utc_timestamp_share,
                                     p.epoch_timestamp_share])  # fmt: skip
    ts = fmt.format(ev["ts"], style)
    bad = _strings(_BAD_TIMESTAMPS).take(pa.array(rng.integers(0, len(_BAD_TIMESTAMPS), len(bad_ts))))
    ts = pc.replace_with_mask(ts, _mask(n, bad_ts), bad)
    table = pa.table(
        {
            "user_id": _take(user_ids, ev["user"], _mask(n, miss_u)),
            "product_id": _take(prod_ids, ev["product"], _mask(n, miss_p)),
            "event_type": _take(event_vocab, event),
            "rating": _take(rating_vocab, rating, rating == 0),
            "timestamp": ts,
        }
    )
    if len(dups):  # double-fired events: an exact copy right after the original
        idx = np.concatenate([np.arange(n), np.sort(dups)])
        table = table.take(pa.array(idx[np.argsort(idx, kind="stable")]))
    sizes = (miss_u, miss_p, unknown, out_of_range, rated, bad_ts, dups)
    return table, {k: len(r) for k, r in zip(kinds, sizes, strict=True)}


def iter_interaction_chunks(
    world: World, progress: Callable[[str], None] | None = None
) -> Iterator[tuple[pa.Table, dict[str, int]]]:
    """Yield (table, dirty counts) per chunk of days, reporting progress on long runs."""
    chunks = plan_chunks(world)
    fmt = _TimestampFormatter(world)
    user_ids = _user_ids(world.n_users)
    prod_ids = _strings(product_ids(world.n_products))
    done = 0
    for i, chunk in enumerate(chunks):
        table, counts = _interaction_chunk(world, fmt, user_ids, prod_ids, i, chunk)
        done += table.num_rows
        if progress and len(chunks) > 1:
            progress(f"interactions: {done:,} / ~{world.cfg.n_interactions:,} rows")
        yield table, counts


def generate_tables(cfg: GeneratorConfig) -> dict[str, pd.DataFrame]:
    """All three raw tables in memory, as string columns (missing values are NaN).

    Meant for small and medium scale (tests, notebooks); use ``generate_to_dir`` for millions.
    """
    world = build_world(cfg)
    users, _ = users_table(world)
    products, _ = products_table(world)
    parts = [t for t, _ in iter_interaction_chunks(world)]
    interactions = pa.concat_tables(parts) if parts else _empty("interactions")
    return {"users": users.to_pandas(), "products": products.to_pandas(), "interactions": interactions.to_pandas()}


def _empty(table: str) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in RAW_COLUMNS[table]})


class _Writer:
    """CSV (header once, minimal quoting, nulls as empty) or Parquet (one row group per chunk)."""

    def __init__(self, path: Path, fmt: str, columns: tuple[str, ...]) -> None:
        self.fmt = fmt
        self.schema = pa.schema([(c, pa.string()) for c in columns])
        if fmt == "csv":
            self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
            self.fh.write((",".join(columns) + "\n").encode())
        else:
            self.pq = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        table = table.cast(self.schema)
        if self.fmt == "csv":
            # No quotes unless a value needs them (Arrow's "needed" quotes every string): smaller,
            # readable files. Arrow refuses unquoted structural characters, then we quote the chunk.
            buf = pa.BufferOutputStream()
            try:
                pa_csv.write_csv(table, buf, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
            except pa.ArrowInvalid:
                buf = pa.BufferOutputStream()
                pa_csv.write_csv(table, buf, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
            self.fh.write(buf.getvalue())
        else:
            self.pq.write_table(table)

    def close(self) -> None:
        if self.fmt == "csv":
            self.fh.close()
        else:
            self.pq.close()


def _write_table(path: Path, fmt: str, table: pa.Table) -> None:
    w = _Writer(path, fmt, tuple(table.column_names))
    try:
        w.write(table)
    finally:
        w.close()


def generate_to_dir(
    out_dir: Path, cfg: GeneratorConfig, progress: Callable[[str], None] | None = None
) -> GenerationSummary:
    """Write users/products/interactions files into ``out_dir``, streaming interactions by chunk."""
    t_start = time.perf_counter()
    validate_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    world = build_world(cfg)
    paths = {t: out_dir / f"{t}.{cfg.fmt}" for t in TABLES}
    rows: dict[str, int] = {}
    dirty: dict[str, dict[str, int]] = {}
    for name, build in (("users", users_table), ("products", products_table)):
        table, counts = build(world)
        _write_table(paths[name], cfg.fmt, table)
        rows[name], dirty[name] = table.num_rows, counts
        say(f"{name}: {table.num_rows:,} rows")
    writer = _Writer(paths["interactions"], cfg.fmt, RAW_COLUMNS["interactions"])
    totals = dict.fromkeys(DIRTY_KINDS["interactions"], 0)
    n_rows = 0
    try:
        for table, counts in iter_interaction_chunks(world, say):
            writer.write(table)
            n_rows += table.num_rows
            for k, v in counts.items():
                totals[k] += v
    finally:
        writer.close()
    rows["interactions"], dirty["interactions"] = n_rows, totals
    return GenerationSummary(paths=paths, rows=rows, dirty_rows=dirty, seconds=time.perf_counter() - t_start)
