"""From clean tables to the indexed structures every model and the evaluation share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import IdMap
from .features import EventWeights, History, ItemFeatures, UserFeatures, build_history, build_item_features
from .models.base import DataShape, FitContext


@dataclass
class Prepared:
    users: IdMap
    items: IdMap
    hist: History
    item_features: ItemFeatures
    user_features: UserFeatures | None
    ctx: FitContext

    @property
    def shape(self) -> DataShape:
        per_user = np.diff(self.hist.indptr).astype(np.float64)
        return DataShape(self.hist.n_users, self.hist.n_items, self.hist.nnz, float(np.square(per_user).sum()))


def prepare(
    interactions: pd.DataFrame,
    products: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    weights: EventWeights | None = None,
    num_threads: int = 0,
    seed: int = 42,
) -> Prepared:
    """Index users (those with interactions) and items (interacted or in the catalogue)."""
    user_map = IdMap.from_values(interactions["user_id"].to_numpy())
    item_values = [interactions["product_id"].to_numpy()]
    if products is not None and "product_id" in products.columns:
        item_values.append(products["product_id"].astype(str).to_numpy())
    item_map = IdMap.from_values(*item_values)
    hist = build_history(interactions, user_map, item_map, weights)
    feats = build_item_features(products, item_map)
    user_features = UserFeatures.build(users)
    segment = None
    if user_features is not None and len(user_features.segment):  # a users table with no rows carries no segments
        idx = user_features.user_ids.index(user_map.ids)
        segment = np.where(idx >= 0, user_features.segment[np.maximum(idx, 0)], -1).astype(np.int32)
        if not (segment >= 0).any():
            segment = None
    ctx = FitContext(
        item_category=feats.category if feats.known else None,
        item_sub_category=feats.sub_category if feats.known else None,
        item_price_band=feats.price_band if feats.known else None,
        entry_last_ts=hist.last_ts,
        entry_recency=hist.recency,
        user_segment=segment,
        num_threads=num_threads,
        seed=seed,
    )
    return Prepared(user_map, item_map, hist, feats, user_features, ctx)


def user_segments(prep: Prepared) -> np.ndarray:
    """Demographic segment per indexed user (-1 when unknown)."""
    if prep.ctx.user_segment is None:
        return np.full(len(prep.users), -1, dtype=np.int32)
    return prep.ctx.user_segment
