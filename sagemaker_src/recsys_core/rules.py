"""Business rules a request can carry: filters, promotions and exploration (issue 13).

All three work on the catalogue the model was trained on, as arrays aligned to the item index:

- **filters** narrow the candidates *before* top-k, so k results come back wherever k products pass;
- a **promotion** gives a named set of products a share of the slots (``slots`` or ``percent``), best
  scored first, never repeated, never one the filters or exclusions removed;
- **exploration** gives a share of the slots to new or under-exposed products that match the user's
  categories, so new catalogue gets impressions; it too only picks products that pass the filters.

Request shapes (validated here; a bad value is a ``BadRequest``, i.e. HTTP 400)::

    "filters": {"price_min": 100, "price_max": 500, "categories": ["Sarees"],
                "exclude_categories": ["Kurtis"], "in_stock_only": true}
    "promotion": {"name": "diwali", "product_ids": ["p1", "p2"], "slots": 2}   # or "percent": 20
    "exploration": {"share": 0.2}                                             # or true: the model's default
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .models.base import sorted_lookup

#: How much a request may ask for (bounded so a request cannot make serving slow).
MAX_LIST = 1000
FILTER_KEYS = ("price_min", "price_max", "categories", "exclude_categories", "in_stock_only")


class RuleError(ValueError):
    """A rule a request cannot have; the serving layer answers 400."""

    status_code = 400


@dataclass(frozen=True)
class ExplorationConfig:
    """What counts as "new or under-exposed", and the default share (train-time settings, saved in the model)."""

    share: float = 0.0
    """Default share of slots for exploration when a request says ``"exploration": true`` (0 = off)."""
    new_days: float = 14.0
    """A product first seen this many days before the end of the training log, or later, is new."""
    under_exposed_quantile: float = 0.2
    """Products in this lowest share of interaction counts are under-exposed."""


@dataclass
class Catalogue:
    """Per-item arrays the rules read: price (NaN unknown), availability, category code, exposure."""

    price: np.ndarray
    available: np.ndarray
    category: np.ndarray
    category_names: np.ndarray
    explorable: np.ndarray  # new or under-exposed (bool)

    def content_scores(self, item: int, popularity: np.ndarray) -> np.ndarray | None:
        """For a catalogue product nobody has interacted with yet: its category's products, nearest in price
        first, popularity breaking ties (None when its category is unknown)."""
        category = self.category[item]
        if category < 0:
            return None
        same = np.flatnonzero(self.category == category)  # scored: its category only (a sliver of the catalogue)
        out = np.full(len(self.category), -np.inf)
        out[same] = self._content_of(same, float(self.price[item]), popularity)
        return out

    def content_candidates(self, item: int, popularity: np.ndarray, limit: int) -> CandidateScores | None:
        """``content_scores`` for a huge catalogue: only the ``limit`` products of the category nearest in price
        on each side (and those without a price when the category is small) are scored; the others read -inf.
        A product outside that window can outscore one inside only through its popularity (at most x1.1)."""
        category = self.category[item]
        if category < 0:
            return None
        order, starts, prices = self._by_category_and_price()
        lo, hi = starts[category], starts[category + 1]
        members = order[lo:hi]  # by price, unknown prices (inf here) last
        price = float(self.price[item])
        if len(members) > 4 * limit and np.isfinite(price) and price > 0:
            priced = int(np.searchsorted(prices[lo:hi], np.inf))
            at = int(np.searchsorted(prices[lo : lo + priced], price))
            members = members[max(at - limit, 0) : min(at + limit, priced)]
        members = np.sort(members)
        return CandidateScores(members, self._content_of(members, price, popularity), None)

    def _content_of(self, items: np.ndarray, price: float, popularity: np.ndarray) -> np.ndarray:
        closeness = np.ones(len(items))
        if np.isfinite(price) and price > 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                gap = np.abs(np.log(self.price[items] / price))
            closeness = 1.0 / (1.0 + np.nan_to_num(gap, nan=2.0, posinf=2.0))
        return closeness * (1.0 + 0.1 * popularity[items])

    def _by_category_and_price(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items grouped by category (unknown category dropped), each group by price (unknown last, as inf), group
        starts, and the prices in that order; built once."""
        cached = self.__dict__.get("_category_price")
        if cached is None:
            known = np.flatnonzero(self.category >= 0)
            price = np.where(np.isfinite(self.price[known]), self.price[known], np.inf)
            order = np.lexsort((known, price, self.category[known]))
            counts = np.bincount(self.category[known], minlength=int(self.category.max(initial=-1)) + 1)
            cached = self.__dict__["_category_price"] = (known[order], np.r_[0, np.cumsum(counts)], price[order])
        return cached


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleError(f"'{name}' must be a finite number, got {type(value).__name__}")
    return float(value)


def _names(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"'{name}' must be a list of strings")
    if len(value) > MAX_LIST:
        raise RuleError(f"'{name}' has more than {MAX_LIST} entries")
    return value


def parse_filters(value: Any) -> dict[str, Any] | None:
    """The validated ``filters`` object (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RuleError("'filters' must be an object")
    unknown = sorted(set(value) - set(FILTER_KEYS))
    if unknown:
        raise RuleError(f"unknown filter(s) {unknown}; known: {list(FILTER_KEYS)}")
    out: dict[str, Any] = {}
    for key in ("price_min", "price_max"):
        if value.get(key) is not None:
            out[key] = _number(value[key], f"filters.{key}")
    if "price_min" in out and "price_max" in out and out["price_min"] > out["price_max"]:
        raise RuleError("'filters.price_min' is above 'filters.price_max'")
    for key in ("categories", "exclude_categories"):
        if value.get(key) is not None:
            out[key] = _names(value[key], f"filters.{key}")
    if value.get("in_stock_only") is not None:
        if not isinstance(value["in_stock_only"], bool):
            raise RuleError("'filters.in_stock_only' must be true or false")
        out["in_stock_only"] = value["in_stock_only"]
    return out


def parse_promotion(value: Any, k: int) -> tuple[list[str], int, str] | None:
    """(product ids, slots, name) of a validated ``promotion`` (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RuleError("'promotion' must be an object")
    ids = value.get("product_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str | int) and not isinstance(i, bool)
                                                       for i in ids):
        raise RuleError("'promotion.product_ids' must be a non-empty list of product ids")
    if len(ids) > MAX_LIST:
        raise RuleError(f"'promotion.product_ids' has more than {MAX_LIST} ids")
    name = value.get("name", "promotion")
    if not isinstance(name, str):
        raise RuleError("'promotion.name' must be a string")
    has_slots, has_percent = value.get("slots") is not None, value.get("percent") is not None
    if has_slots == has_percent:
        raise RuleError("'promotion' needs exactly one of 'slots' (an integer) or 'percent' (0-100)")
    if has_slots:
        slots = value["slots"]
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 0:
            raise RuleError("'promotion.slots' must be a non-negative integer")
    else:
        percent = _number(value["percent"], "promotion.percent")
        if not 0 <= percent <= 100:
            raise RuleError("'promotion.percent' must be between 0 and 100")
        slots = int(math.floor(k * percent / 100 + 1e-9))
    return [str(i) for i in ids], min(slots, k), name


def parse_exploration(value: Any, default: ExplorationConfig) -> float:
    """The share of slots to explore: ``true`` = the model's default, an object sets ``share``."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return default.share
    if not isinstance(value, dict) or set(value) - {"share"}:
        raise RuleError("'exploration' must be true, false or {\"share\": 0..1}")
    share = _number(value.get("share", default.share), "exploration.share")
    if not 0 <= share <= 1:
        raise RuleError("'exploration.share' must be between 0 and 1")
    return share


def _category_codes(names: np.ndarray, wanted: list[str]) -> np.ndarray:
    lower = np.char.lower(names.astype(str)) if len(names) else names.astype(str)
    codes = [int(np.nonzero(lower == w.strip().lower())[0][0]) for w in wanted if (lower == w.strip().lower()).any()]
    return np.asarray(codes, dtype=np.int64)


def filter_mask(catalogue: Catalogue, filters: dict[str, Any] | None, items: np.ndarray | None = None) -> np.ndarray:
    """True for every item (of ``items``; default the whole catalogue) a request's filters rule out (unknown
    prices fail a price filter)."""
    at = slice(None) if items is None else items
    out = np.zeros(len(catalogue.category) if items is None else len(items), dtype=bool)
    if not filters:
        return out
    price = catalogue.price[at]
    if "price_min" in filters:
        out |= ~(price >= filters["price_min"])  # NaN compares False: ruled out
    if "price_max" in filters:
        out |= ~(price <= filters["price_max"])
    if "categories" in filters:
        out |= ~np.isin(catalogue.category[at], _category_codes(catalogue.category_names, filters["categories"]))
    if "exclude_categories" in filters:
        wanted = _category_codes(catalogue.category_names, filters["exclude_categories"])
        out |= np.isin(catalogue.category[at], wanted)
    if filters.get("in_stock_only"):
        out |= ~catalogue.available[at]
    return out


@dataclass(frozen=True)
class Blocked:
    """What a request rules out: a dense mask of its exclusions plus its filters, evaluated only where asked.

    A ranking looks at a few hundred items of a million; checking the filters on those alone (``at``) keeps a
    filtered request as fast as an unfiltered one. ``dense()`` is the whole-catalogue mask, for the fallbacks.
    """

    mask: np.ndarray
    catalogue: Catalogue | None = None
    filters: dict[str, Any] | None = None

    def at(self, items: np.ndarray) -> np.ndarray:
        out = self.mask[items]
        if self.filters and self.catalogue is not None:
            out |= filter_mask(self.catalogue, self.filters, items)
        return out

    def dense(self) -> np.ndarray:
        if self.filters and self.catalogue is not None:
            return self.mask | filter_mask(self.catalogue, self.filters)
        return self.mask

    def plus(self, items: np.ndarray) -> Blocked:
        """These rules with ``items`` blocked as well (e.g. products a promotion already placed)."""
        mask = self.mask.copy()
        mask[items] = True
        return Blocked(mask, self.catalogue, self.filters)


def _blocked(blocked: np.ndarray | Blocked) -> Blocked:
    return blocked if isinstance(blocked, Blocked) else Blocked(np.asarray(blocked, dtype=bool))


def sampled_top(scores: np.ndarray, n: int,
                blocked_at: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray | None:
    """The n best finite items (unblocked too, with ``blocked_at``), best first and ties by index, without a
    pass that sorts or partitions the whole catalogue; None where this cannot decide, so the caller ranks in full.

    The n-th best (unblocked) item of every 16th is a lower bound on the n-th best of all, so only the items at
    or above it are checked and sorted: a few hundred instead of a million. None on a small catalogue, when the
    bound is not finite, when ties flood it, or when fewer than n items at or above it pass.
    """
    stride = 16
    if n <= 0 or len(scores) < 64 * stride * n:
        return None
    sample = scores[::stride]
    if blocked_at is not None:
        sample = np.where(blocked_at(np.arange(0, len(scores), stride)), -np.inf, sample)
    bound = np.sort(sample)[len(sample) - n]  # NaN sorts last; sorting beats partitioning when ties abound
    if not np.isfinite(bound):
        return None
    candidates = np.flatnonzero(scores >= bound)  # NaN and -inf never pass
    if len(candidates) > len(scores) // stride:
        return None
    keep = np.isfinite(scores[candidates])
    if blocked_at is not None:
        keep &= ~blocked_at(candidates)
    candidates = candidates[keep]
    if len(candidates) < n:
        return None
    return candidates[np.lexsort((candidates, -scores[candidates]))[:n]]


class CandidateScores:
    """A request's scores when only retrieved candidates were scored (huge catalogues): the candidates'
    scores, every other item reads -inf. :func:`ranked` ranks the candidates, then fills the list from
    ``backfill`` (popularity; None: no fill), so k products still come back wherever k pass the request's rules."""

    def __init__(self, items: np.ndarray, values: np.ndarray, backfill: np.ndarray | None) -> None:
        self.items, self.values, self.backfill = items, values, backfill  # items sorted, distinct

    def __getitem__(self, idx: Any) -> Any:
        at, hit = sorted_lookup(self.items, np.asarray(idx))
        return np.where(hit, self.values[at] if len(self.items) else -np.inf, -np.inf)

    def ranked(self, blocked: Blocked, n: int) -> np.ndarray:
        """Up to n unblocked candidates with a finite score, best first (ties by index): ``ranked_among`` over
        the candidates, reading their scores directly and sorting only the best of them."""
        ok = ~blocked.at(self.items) & np.isfinite(self.values)
        items, values = self.items[ok], self.values[ok]
        if len(items) > n > 0:  # everything at or above the n-th best value, so ties are kept whole
            keep = values >= values[np.argpartition(-values, n - 1)[n - 1]]
            items, values = items[keep], values[keep]
        return items[np.lexsort((items, -values))][: max(n, 0)]


def ranked(scores: np.ndarray | CandidateScores, blocked: np.ndarray | Blocked, n: int) -> np.ndarray:
    """Up to n unblocked items, best score first (ties by index), with a finite score only: by
    :func:`sampled_top` on a large catalogue, else (or when it cannot decide) by :func:`ranked_full`.
    ``CandidateScores``: the candidates, then best sellers when fewer than n candidates pass."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    blocked = _blocked(blocked)
    if isinstance(scores, CandidateScores):
        top = scores.ranked(blocked, n)
        if len(top) < n and scores.backfill is not None:
            top = np.concatenate([top, ranked(scores.backfill, blocked.plus(scores.items), n - len(top))])
        return top
    top = sampled_top(scores, n, blocked.at)
    return top if top is not None else ranked_full(scores, blocked.dense(), n)


def ranked_among(items: np.ndarray, scores: np.ndarray, blocked: np.ndarray | Blocked, n: int) -> np.ndarray:
    """:func:`ranked` restricted to ``items`` (e.g. a promotion's products), without a whole-catalogue pass."""
    items = np.unique(np.asarray(items, dtype=np.int64))
    items = items[~_blocked(blocked).at(items) & np.isfinite(scores[items])]
    return items[np.lexsort((items, -scores[items]))][: max(n, 0)]


def ranked_full(scores: np.ndarray, blocked: np.ndarray, n: int) -> np.ndarray:
    """:func:`ranked` by a partition over every allowed item (small catalogues; the reference)."""
    allowed = np.flatnonzero(~blocked & np.isfinite(scores))
    if len(allowed) > n:
        values = scores[allowed]
        nth = values[np.argpartition(-values, n - 1)[n - 1]]
        above, tied = allowed[values > nth], allowed[values == nth]  # ties at the n-th: lowest index first
        allowed = np.concatenate([above, tied[: n - len(above)]])
    order = np.lexsort((allowed, -scores[allowed]))
    return allowed[order]


def slot_positions(k: int, slots: int) -> list[int]:
    """Where ``slots`` special items go in a list of k: evenly spread, never the first position (slots < k)."""
    if slots <= 0:
        return []
    if slots >= k:
        return list(range(k))
    return [int((i + 1) * k / (slots + 1)) for i in range(slots)]  # step >= 1: distinct, all >= 1


def merge(base: list[int], special: list[tuple[int, str]], k: int) -> list[tuple[int, str]]:
    """The final list of (item, flag): ``special`` at spread-out positions, ``base`` in order elsewhere, no
    item twice. When ``base`` runs out, the rest of ``special`` follows; the list is at most k long."""
    positions = set(slot_positions(k, len(special)))
    taken = {item for item, _ in special}
    specials, fill = iter(special), iter([b for b in base if b not in taken])
    out: list[tuple[int, str]] = []
    for pos in range(k):
        item = next(specials, None) if pos in positions else None
        if item is None:
            nxt = next(fill, None)
            item = (nxt, "") if nxt is not None else next(specials, None)
        if item is None:
            break
        out.append(item)
    return out


@dataclass(frozen=True)
class ExplorationIndex:
    """Explorable items grouped by category, each group by popularity (best first, ties by index).

    Built once per model: an item's exploration score is its category's share of the user's history
    plus a popularity term, so within a category the order never changes. The best n overall are
    among the best n unblocked of each category; :func:`explore_picks` scores only those.
    """

    order: np.ndarray  # explorable item indices, grouped by category, then by popularity
    starts: np.ndarray  # group g is order[starts[g]:starts[g + 1]]

    @classmethod
    def build(cls, catalogue: Catalogue, popularity: np.ndarray) -> ExplorationIndex:
        idx = np.flatnonzero(catalogue.explorable)
        cats = catalogue.category[idx]
        order = idx[np.lexsort((idx, -popularity[idx], cats))]
        sorted_cats = catalogue.category[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_cats)) + 1, len(order)]
        return cls(order, starts)


def explore_picks(index: ExplorationIndex, catalogue: Catalogue, user_categories: np.ndarray,
                  popularity: np.ndarray, blocked: np.ndarray | Blocked, n: int) -> np.ndarray:
    """The n explorable, unblocked items with the best :func:`exploration_scores_of`, best first (ties by
    index): what ranking every explorable item would give, without scoring the whole catalogue."""
    if n <= 0 or not len(index.order):
        return np.zeros(0, dtype=np.int64)
    blocked = _blocked(blocked)
    # The head (4n items) of every group is checked against the rules in one call; only a group with
    # fewer than n unblocked items there reads further, in growing chunks.
    starts, sizes = index.starts[:-1], np.diff(index.starts)
    head = np.minimum(sizes, 4 * n)
    offsets = np.cumsum(head) - head
    group = np.repeat(np.arange(len(head)), head)
    positions = np.repeat(starts, head) + np.arange(int(head.sum())) - np.repeat(offsets, head)
    items = index.order[positions]
    ok = ~blocked.at(items)
    items, group = items[ok], group[ok]
    rank = np.arange(len(items)) - np.searchsorted(group, group)  # rank among its group's unblocked items
    picked: list[np.ndarray] = [items[rank < n]]
    found = np.bincount(group, minlength=len(head))
    for g in np.flatnonzero((found < n) & (sizes > head)):
        members = index.order[index.starts[g] : index.starts[g + 1]]
        take, lo, step = [], int(head[g]), 16 * n
        while len(take) < n - found[g] and lo < len(members):  # the next unblocked of this group
            chunk = members[lo : lo + step]
            take.extend(chunk[~blocked.at(chunk)][: n - found[g] - len(take)].tolist())
            lo, step = lo + step, step * 4
        picked.append(np.asarray(take, dtype=np.int64))
    candidates = np.concatenate(picked)
    scores = exploration_scores_of(candidates, catalogue, user_categories, popularity)
    return candidates[np.lexsort((candidates, -scores))[:n]]


def exploration_scores_of(items: np.ndarray, catalogue: Catalogue, user_categories: np.ndarray,
                          popularity: np.ndarray) -> np.ndarray:
    """Content similarity of explorable items to the user's tastes: their category's share of the user's
    history, then the item's popularity as a tie-break."""
    cats = catalogue.category[items]
    affinity = np.zeros(len(items), dtype=np.float64)
    mine = user_categories[user_categories >= 0] if len(user_categories) else user_categories
    known = cats >= 0
    if len(mine) and known.any():
        counts = np.bincount(mine, minlength=int(max(cats.max(), mine.max())) + 1)
        affinity[known] = (counts / max(counts.sum(), 1))[cats[known]]
    return affinity + 1e-3 * popularity[items]


_FALSE = {"false", "0", "no", "n", "f"}
#: Products-table columns that can say a product is not on sale (missing or unreadable: available).
AVAILABILITY_COLUMNS = ("in_stock", "active", "is_active", "available")


def build_catalogue(
    products: Any, item_ids: np.ndarray, category: np.ndarray, category_names: np.ndarray,
    counts: np.ndarray, first_seen: np.ndarray, log_end: float, config: ExplorationConfig,
) -> Catalogue:
    """Catalogue arrays aligned to the item index, from the optional products table and the training log.

    ``counts``: distinct users per item; ``first_seen``: epoch seconds of each item's earliest interaction
    (NaN unknown); ``log_end``: the log's latest time (0 = no usable clock: nothing counts as new).
    """
    import pandas as pd

    n = len(item_ids)
    price = np.full(n, np.nan, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    if products is not None and "product_id" in products.columns:
        index = pd.Index(pd.Series(item_ids).astype(str))
        p = products.drop_duplicates("product_id")
        pos = index.get_indexer(p["product_id"].astype(str))
        keep = pos >= 0
        if "price" in p.columns:
            values = pd.to_numeric(p["price"], errors="coerce").to_numpy(dtype=np.float64)
            price[pos[keep]] = np.where(values[keep] > 0, values[keep], np.nan)
        for col in AVAILABILITY_COLUMNS:
            if col in p.columns:
                text = p[col].astype("string").str.strip().str.lower().fillna("")
                off = text.isin(_FALSE).to_numpy() & keep
                available[pos[off]] = False
                break
    under = counts <= np.quantile(counts, config.under_exposed_quantile) if n else np.zeros(0, dtype=bool)
    new = (first_seen >= log_end - config.new_days * 86_400) if log_end > 0 else np.zeros(n, dtype=bool)
    return Catalogue(price, available, category, category_names, under | new)
