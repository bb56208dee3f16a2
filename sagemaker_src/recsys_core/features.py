"""Features built from clean interactions (and optional product/user tables).

One aggregated user x item matrix feeds every model: events are weighted (view < cart < purchase,
ratings by their value), summed per (user, item) and log-compressed so that twenty views do not
outweigh one purchase. Alongside it we keep, per (user, item), whether the user *owns* the item
(purchase/rating: excluded from recommendations) and its recency rank in the user's own history
(0 = most recent) so that time decay can be applied per user when a profile is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import EVENT_TYPES, STRONG_EVENTS, IdMap


def range_positions(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lens)])`` without a Python loop: the
    stored positions of several CSR rows, in order."""
    lens = np.asarray(lens, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))


@dataclass(frozen=True)
class EventWeights:
    """Weight per event; a rating r weighs ``rating_base + rating_step * r`` (1 -> 0.4, 5 -> 1.2)."""

    view: float = 0.3
    add_to_cart: float = 0.6
    purchase: float = 1.0
    rating_base: float = 0.2
    rating_step: float = 0.2

    def of(self, event_type: np.ndarray, rating: np.ndarray) -> np.ndarray:
        return self.of_codes(event_type_codes(np.asarray(event_type)), rating)

    def of_codes(self, codes: np.ndarray, rating: np.ndarray) -> np.ndarray:
        """Weights from event codes (index into EVENT_TYPES, -1 = unknown -> 0)."""
        table = np.array([self.view, self.add_to_cart, self.purchase, 0.0, 0.0])
        w = table[np.where(codes >= 0, codes, 4)]
        is_rating = codes == EVENT_TYPES.index("rating")
        w[is_rating] = self.rating_base + self.rating_step * np.nan_to_num(rating[is_rating], nan=3.0)
        return w


@dataclass
class History:
    """Aggregated user x item interactions, CSR layout with parallel per-entry arrays."""

    indptr: np.ndarray
    indices: np.ndarray
    value: np.ndarray  # float32, log-compressed event weight sum
    strong: np.ndarray  # bool, purchased or rated
    recency: np.ndarray  # int32, 0 = user's most recent item
    n_items: int
    last_ts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float64 per entry

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def matrix(self, data: np.ndarray | None = None) -> sp.csr_matrix:
        data = self.value if data is None else data
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n_users, self.n_items))

    def sequence(self, u: int, max_len: int = 0) -> np.ndarray:
        """User ``u``'s items oldest -> newest (by ``recency``); ``max_len`` > 0 keeps the newest ``max_len``."""
        lo, hi = self.indptr[u], self.indptr[u + 1]
        rec = self.recency[lo:hi]
        keep = np.flatnonzero(rec < max_len) if max_len > 0 else np.arange(hi - lo)
        return self.indices[lo:hi][keep[np.argsort(-rec[keep], kind="stable")]].astype(np.int64)

    def sequences(self, users: np.ndarray, max_len: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``sequence`` of many users at once, as ``(indptr, items)`` (``models.base.Sequences``): row r
        holds ``users[r]``'s items oldest -> newest; an unknown user (-1) gets an empty row."""
        users = np.asarray(users, dtype=np.int64)
        known = users >= 0
        lo = np.where(known, self.indptr[np.maximum(users, 0)], 0)
        lens = np.where(known, self.indptr[np.maximum(users, 0) + 1] - lo, 0)
        rows = np.repeat(np.arange(len(users)), lens)
        pos = range_positions(lo, lens)
        rec = self.recency[pos]
        if max_len > 0:
            rows, pos, rec = rows[rec < max_len], pos[rec < max_len], rec[rec < max_len]
        order = np.lexsort((-rec, rows))
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(users)), out=indptr[1:])
        return indptr, self.indices[pos[order]].astype(np.int64)

    def profile(self, decay_half_life: float = 0.0, recency_boost: float = 0.0) -> sp.csr_matrix:
        """User profiles weighted by how many newer items the user has (``recency``).

        ``decay_half_life`` h alone: pure decay, weight 0.5^(recency / h) (old items fade out).
        With ``recency_boost`` b > 0: weight 1 + b * 0.5^(recency / h), so the latest items count up
        to 1 + b times more while older ones keep their full weight: "what next" gains without
        forgetting the rest of the user's taste. h = 0 means no recency weighting at all.
        """
        if decay_half_life and decay_half_life > 0:
            fade = 0.5 ** (self.recency / decay_half_life)
            weight = 1.0 + recency_boost * fade if recency_boost > 0 else fade
            return self.matrix((self.value * weight).astype(np.float32))
        return self.matrix()


def build_history(
    df: pd.DataFrame, users: IdMap, items: IdMap, weights: EventWeights | None = None
) -> History:
    """Aggregate clean interactions into a History over the given id maps (unknown ids are dropped)."""
    weights = weights or EventWeights()
    u = users.index(df["user_id"].to_numpy())
    i = items.index(df["product_id"].to_numpy())
    ok = (u >= 0) & (i >= 0)
    u, i = u[ok], i[ok]
    codes = event_type_codes(df["event_type"])[ok]
    w = weights.of_codes(codes, df["rating"].to_numpy(dtype=np.float64)[ok])
    strong = np.isin(codes, [EVENT_TYPES.index(e) for e in STRONG_EVENTS])
    ts = df["ts"].to_numpy(dtype=np.float64)[ok]
    n_items = len(items)
    key = u * n_items + i
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv, weights=w, minlength=len(uniq))
    strong_any = np.bincount(inv, weights=strong.astype(np.float64), minlength=len(uniq)) > 0
    last = np.full(len(uniq), -np.inf)
    np.maximum.at(last, inv, ts)
    return history_from_pairs((uniq // n_items).astype(np.int64), (uniq % n_items).astype(np.int32), total,
                              strong_any, last, len(users), n_items)


def history_from_pairs(eu: np.ndarray, ei: np.ndarray, total: np.ndarray, strong: np.ndarray, last: np.ndarray,
                       n_users: int, n_items: int) -> History:
    """A History from one row per distinct (user, item), sorted by user then item: summed event weight,
    owned or not, last time. Shared by ``build_history`` and the Spark job (which aggregates on executors)."""
    # Recency rank within user: order by (user, -last_ts), rank = position minus the user's start.
    order = np.lexsort((-last, eu))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(eu, minlength=n_users), out=indptr[1:])
    recency = np.empty(len(eu), dtype=np.int32)
    recency[order] = np.arange(len(eu)) - indptr[eu[order]]
    value = (np.log1p(total) / np.log(2.0)).astype(np.float32)
    return History(indptr, np.asarray(ei, dtype=np.int32), value, np.asarray(strong, dtype=bool), recency, n_items,
                   last_ts=np.asarray(last, dtype=np.float64))


def item_popularity(hist: History, half_life_fraction: float = 0.0) -> np.ndarray:
    """Distinct users per item; with ``half_life_fraction`` > 0, each user counts less the older
    their interaction, with a half-life that fraction of the log's time span ("trending")."""
    if half_life_fraction <= 0 or hist.nnz == 0:
        return np.bincount(hist.indices, minlength=hist.n_items).astype(np.float32)
    t_max, t_min = hist.last_ts.max(), hist.last_ts.min()
    span = max(t_max - t_min, 1.0)
    w = 0.5 ** ((t_max - hist.last_ts) / (half_life_fraction * span))
    return np.bincount(hist.indices, weights=w, minlength=hist.n_items).astype(np.float32)


def category_popularity(popularity: np.ndarray, item_category: np.ndarray) -> np.ndarray:
    """Each item's popularity relative to the most popular item of its category (0..1), so a
    niche category's bestseller scores like a big category's; unknown category -> 0."""
    out = np.zeros(len(popularity), dtype=np.float32)
    known = item_category >= 0
    if known.any():
        peak = np.zeros(int(item_category.max()) + 1)
        np.maximum.at(peak, item_category[known], popularity[known])
        denom = peak[item_category[known]]
        out[known] = np.where(denom > 0, popularity[known] / np.where(denom > 0, denom, 1), 0)
    return out


def recently_interacted(hist: History, user: int, n: int = 10) -> np.ndarray:
    """The user's ``n`` most recent distinct items (most recent first)."""
    lo, hi = hist.indptr[user], hist.indptr[user + 1]
    items, rec = hist.indices[lo:hi], hist.recency[lo:hi]
    return items[np.argsort(rec, kind="stable")[:n]]


def cooccurrence(hist: History, k: int = 20) -> sp.csr_matrix:
    """Top-``k`` co-occurring items per item (count of users sharing both), diagonal removed."""
    b = hist.matrix(np.ones(hist.nnz, dtype=np.float32))
    c = (b.T @ b).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    return keep_top_k_per_row(c, k)


def keep_top_k_per_row(m: sp.csr_matrix, k: int, by_abs: bool = False) -> sp.csr_matrix:
    """Keep the ``k`` largest entries (by value or magnitude) in each row of a CSR matrix."""
    m = m.tocsr()
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0]), counts)
    key = np.abs(m.data) if by_abs else m.data
    order = np.lexsort((-key, rows))
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = order[rank < k]
    keep.sort()
    out = sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(np.minimum(counts, k))]), shape=m.shape)
    return out


@dataclass
class ItemFeatures:
    """Encoded catalogue: category / sub-category codes, min-max price, price band within category."""

    category: np.ndarray  # int32 code, -1 unknown
    sub_category: np.ndarray
    price_norm: np.ndarray  # float32 in [0, 1], NaN unknown
    price_band: np.ndarray  # int8 0..n_bands-1 (quantile band within category), -1 unknown
    category_names: np.ndarray
    sub_category_names: np.ndarray

    @classmethod
    def empty(cls, n_items: int) -> ItemFeatures:
        neg = np.full(n_items, -1, dtype=np.int32)
        return cls(neg, neg.copy(), np.full(n_items, np.nan, np.float32), neg.astype(np.int8),
                   np.array([], dtype=str), np.array([], dtype=str))

    @property
    def known(self) -> bool:
        return bool((self.category >= 0).any())


def encode_categorical(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 for missing) and sorted names."""
    s = values.astype("string").str.strip()
    s = s.where(s != "")
    names = np.sort(s.dropna().unique().astype(str))
    codes = np.searchsorted(names, s.fillna("").to_numpy(dtype=str)).astype(np.int32)
    codes = np.where(s.isna().to_numpy(), -1, codes)
    return codes.astype(np.int32), names


def build_item_features(products: pd.DataFrame | None, items: IdMap, n_bands: int = 4) -> ItemFeatures:
    """Align the products table to the item index; items missing from it get unknown features."""
    if products is None or "product_id" not in products.columns:
        return ItemFeatures.empty(len(items))
    idx = items.index(products["product_id"].to_numpy())
    p = products.loc[idx >= 0]
    idx = idx[idx >= 0]
    out = ItemFeatures.empty(len(items))
    if "category" in p.columns:
        codes, names = encode_categorical(p["category"])
        out.category[idx] = codes
        out.category_names = names
    if "sub_category" in p.columns:
        codes, names = encode_categorical(p["sub_category"])
        out.sub_category[idx] = codes
        out.sub_category_names = names
    if "price" in p.columns:
        price = np.array(pd.to_numeric(p["price"], errors="coerce"), dtype=np.float64)
        price[~(price > 0)] = np.nan
        if np.isfinite(price).any():
            lo, hi = np.nanmin(price), np.nanmax(price)
            out.price_norm[idx] = ((price - lo) / max(hi - lo, 1e-9)).astype(np.float32)
            band = pd.Series(price).groupby(out.category[idx]).rank(pct=True).to_numpy()
            band_code = np.minimum(np.nan_to_num(band, nan=-1.0) * n_bands, n_bands - 1).astype(int)
            out.price_band[idx] = np.where(np.isnan(band), -1, band_code)
    return out


@dataclass
class UserFeatures:
    """Demographic segment per known user (age band x gender x location codes), for cold-start."""

    user_ids: IdMap
    segment: np.ndarray  # int32 segment code per row of user_ids

    @classmethod
    def build(cls, users: pd.DataFrame | None) -> UserFeatures | None:
        if users is None or "user_id" not in users.columns:
            return None
        age = pd.to_numeric(users.get("age"), errors="coerce") if "age" in users.columns else None
        parts = []
        if age is not None:
            parts.append(pd.cut(age, [0, 18, 25, 35, 45, 60, 200], labels=False).fillna(-1).astype(int).astype(str))
        for col in ("gender", "location"):
            if col in users.columns:
                parts.append(users[col].astype("string").str.strip().str.lower().fillna(""))
        if not parts:
            return None
        key = parts[0].astype(str)
        for extra in parts[1:]:
            key = key + "|" + extra.astype(str)
        ids = IdMap.from_values(users["user_id"].to_numpy())
        codes, _ = pd.factorize(key.to_numpy())
        seg = np.full(len(ids), -1, dtype=np.int32)
        seg[ids.index(users["user_id"].to_numpy())] = codes
        return cls(ids, seg)


def event_type_codes(events: np.ndarray | pd.Series) -> np.ndarray:
    """Small int code per event type (index into EVENT_TYPES, -1 unknown); hashing, not string compares."""
    return np.asarray(pd.Categorical(events, categories=list(EVENT_TYPES)).codes, dtype=np.int8)
