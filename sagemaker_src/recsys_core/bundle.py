"""The trained artefact: everything needed to answer a request, saved as one .npz + one .json.

``model.json`` holds the recipe (families, configs, weights, knobs), ids-free metadata and the
selection log; ``arrays.npz`` holds the id maps, the training history (for profiles and
exclusions), popularity, catalogue codes and each model's state, uncompressed so that loading
is a few reads with no unpickling.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .data import IdMap
from .ensemble import Ensemble, top_k
from .features import History
from .models import FAMILIES
from .models.base import distinct, embedding_query, embedding_vectors, is_embedding, sorted_lookup
from .models.content import SegmentPopularity
from .retrieval import IndexReport, ItemIndex
from .rules import (
    Blocked,
    CandidateScores,
    Catalogue,
    ExplorationConfig,
    ExplorationIndex,
    explore_picks,
    merge,
    ranked,
    ranked_among,
)
from .serving import ServingConfig

FORMAT_VERSION = 1
EXCLUDE_MODES = ("purchased", "interacted", "none")


class BadRequest(ValueError):
    """A request that can never succeed as sent; the serving layer answers HTTP 400 ``{"error": str(exc)}``."""

    status_code = 400


@dataclass
class Bundle:
    model_version: str
    users: IdMap
    items: IdMap
    hist: History
    ensemble: Ensemble
    recipe: list[dict[str, Any]]  # [{"family", "config", "weight"}]
    popularity: np.ndarray  # all-time, normalised
    item_category: np.ndarray
    category_names: np.ndarray
    segments: SegmentPopularity | None = None
    segment_users: IdMap | None = None
    segment_of: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    trending: np.ndarray | None = None  # time-decayed popularity, normalised (None: the log has no clock)
    catalogue: Catalogue | None = None  # prices, availability, exploration candidates (issue 13)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    cold_start: str = "popular"  # what a shopper the model never saw gets (recsys_core/cold_start.py)
    serving: ServingConfig = field(default_factory=ServingConfig)
    index_reports: dict[int, IndexReport] = field(default_factory=dict)  # what building each index measured

    def __post_init__(self) -> None:
        self._profiles = self.ensemble.profiles(self.hist)
        # copy(): hist.matrix shares hist.indices, which eliminate_zeros would compact in place.
        self._strong = self.hist.matrix(self.hist.strong.astype(np.float32)).copy()
        self._strong.eliminate_zeros()
        self._any = self.hist.matrix(np.ones(self.hist.nnz, dtype=np.float32))
        self._popular_order = np.argsort(-self.popularity, kind="stable")
        if self.catalogue is None:  # a model saved before issue 13: no prices, everything available
            n = self.hist.n_items
            self.catalogue = Catalogue(np.full(n, np.nan, np.float32), np.ones(n, bool), self.item_category,
                                       self.category_names, np.zeros(n, bool))
        self._explore_index = ExplorationIndex.build(self.catalogue, self.popularity)
        self._retrieval = False  # prepare_serving decides (load calls it)
        self._popular_head = np.zeros(0, dtype=np.int64)

    # ---------------------------------------------------------------- serving
    def recommend(
        self,
        user_id: str,
        k: int = 10,
        recent_product_ids: list[str] | None = None,
        exclude_product_ids: list[str] | None = None,
        exclude: str = "purchased",
        category: str | None = None,
        product_id: str | None = None,
        cart_product_ids: list[str] | None = None,
        trending: bool = False,
        filters: dict[str, Any] | None = None,
        promotion: tuple[list[str], int, str] | None = None,
        exploration_share: float = 0.0,
    ) -> dict[str, Any]:
        """One response object per CONTRACTS §3, plus the README's extensions: a product page
        (``product_id``), a cart (``cart_product_ids``), ``trending``, ``filters``, a ``promotion`` and
        ``exploration_share`` (see recsys_core/rules.py). Without them the answer is exactly as before."""
        if product_id is not None or cart_product_ids or trending:
            return self._item_based(user_id, k, product_id, cart_product_ids, trending, exclude_product_ids,
                                    category, filters, promotion, exploration_share)
        if exclude not in EXCLUDE_MODES:
            raise BadRequest(f"'exclude' must be one of {list(EXCLUDE_MODES)}, got {exclude!r}")
        n = self.hist.n_items
        u = self.users.index_one(user_id)
        recent = self.items.index(list(recent_product_ids)) if recent_product_ids else np.zeros(0, dtype=np.int64)
        recent = recent[recent >= 0]
        # Profiles go to the models as stored CSR entries (indices, data), not scipy rows: building
        # matrices per request cost more than the scoring. A session row is the canonical CSR of
        # the recent items (sorted, deduplicated, all ones).
        session = np.unique(recent) if len(recent) else None
        mask = np.zeros(n, dtype=bool)
        sequence = self._sequence(u, recent[::-1])  # recent_product_ids come newest first (the stream's order)
        if u >= 0:
            lo, hi = self._profiles.indptr[u], self._profiles.indptr[u + 1]
            p_idx, p_val = self._profiles.indices[lo:hi], self._profiles.data[lo:hi]
            if session is not None:
                peak = float(p_val.max(initial=0.0)) or 1.0
                steered = self._profiles[u] + self._session_row(session) * peak  # scipy's exact sum
                scores = self._score(steered.indices, steered.data, -1, sequence, promotion,  # fold the session in
                                     steer=(u, session, peak))
                strategy = "personalized+session"
            else:
                scores = self._score(p_idx, p_val, u, sequence, promotion)
                strategy = "personalized"
            if exclude != "none":
                owned = self._strong if exclude == "purchased" else self._any
                mask[owned.indices[owned.indptr[u] : owned.indptr[u + 1]]] = True
        elif session is not None:
            scores = self._score(session.astype(np.int32), np.ones(len(session), np.float32), -1, sequence, promotion)
            strategy = "session"
        else:
            scores, strategy = self._cold_scores(user_id)
        if exclude == "interacted" and len(recent):
            mask[recent] = True
        self._exclude(mask, exclude_product_ids, category)
        k = min(k, n)
        if filters or promotion or exploration_share > 0 or isinstance(scores, CandidateScores):
            user_items = self.hist.indices[self.hist.indptr[u] : self.hist.indptr[u + 1]] if u >= 0 else recent
            return self._with_rules(user_id, strategy, scores, mask, k, filters, promotion, exploration_share,
                                    user_items)
        if strategy.startswith("popular") and not mask.any():
            ranked = self._popular_order[:k] if strategy == "popular" else top_k(scores[None, :], k)[0]
        else:
            scores = np.where(mask, -np.inf, scores)
            ranked = top_k(scores[None, :], k)[0]
        return {
            "user_id": user_id,
            "recommendations": [
                {"product_id": str(self.items.ids[i]), "score": round(float(scores[i]), 6)} for i in ranked
            ],
            "strategy": strategy,
            "model_version": self.model_version,
        }

    # ---------------------------------------------------------------- issue 13: pages, carts, rules
    def _item_based(self, user_id: str | None, k: int, product_id: str | None, cart: list[str] | None,
                    trending: bool, exclude_ids: list[str] | None, category: str | None,
                    filters: dict[str, Any] | None, promotion: tuple[list[str], int, str] | None,
                    exploration_share: float) -> dict[str, Any]:
        """Similar / bought-with for a product page, frequently bought together for a cart, or trending:
        from the trained item-item signal (the model scoring the products as a session)."""
        n = self.hist.n_items
        seeds = [product_id] if product_id is not None else list(cart or [])
        idx = self.items.index(seeds) if seeds else np.zeros(0, dtype=np.int64)
        known = np.unique(idx[idx >= 0])
        mask = np.zeros(n, dtype=bool)
        mask[known] = True  # never the product itself, nor what is already in the cart
        without_history = len(known) == 1 and product_id is not None and self.popularity[known[0]] == 0
        content = None
        if without_history and self._retrieval:  # a huge catalogue: its nearest in price, not every product
            content = self.catalogue.content_candidates(int(known[0]), self.popularity,
                                                        max(self.serving.retrieval_candidates, 2 * k))
        elif without_history:
            content = self.catalogue.content_scores(int(known[0]), self.popularity)
        if trending:
            scores = self.trending if self.trending is not None else self.popularity  # read only: no copy
            strategy = "trending" if self.trending is not None else "popular"
        elif content is not None:  # in the catalogue, never interacted with: its category, nearest in price
            scores, strategy = content, "similar_content"
        elif len(known):
            u = self.users.index_one(user_id) if user_id is not None else -1
            scores = self._score(known.astype(np.int32), np.ones(len(known), np.float32), -1,
                                 self._sequence(u, idx[idx >= 0]), promotion)
            strategy = "similar" if product_id is not None else "cart"
        else:  # a product the catalogue does not know: the popular list
            scores, strategy = self.popularity, "popular"
        self._exclude(mask, exclude_ids, category)
        return self._with_rules(user_id, strategy, scores, mask, min(k, n), filters, promotion, exploration_share,
                                known)

    def _with_rules(self, user_id: str | None, strategy: str, scores: np.ndarray, mask: np.ndarray, k: int,
                    filters: dict[str, Any] | None, promotion: tuple[list[str], int, str] | None,
                    exploration_share: float, user_items: np.ndarray) -> dict[str, Any]:
        """Filters before top-k; then a promotion's slots and exploration's slots, spread through the list."""
        assert self.catalogue is not None
        if not isinstance(scores, CandidateScores):
            scores = np.asarray(scores)
        blocked = Blocked(mask, self.catalogue, filters)  # filters checked only on the items a ranking looks at
        special: list[tuple[int, str]] = []
        if promotion is not None:
            ids, slots, _ = promotion
            idx = self.items.index(ids)
            picks = ranked_among(idx[idx >= 0], scores, blocked, slots)
            special += [(int(i), "promoted") for i in picks]
        n_explore = int(round(k * exploration_share))
        if n_explore > 0:
            taken = blocked.plus(np.asarray([i for i, _ in special], dtype=np.int64))
            cats = self.catalogue.category[user_items] if len(user_items) else np.zeros(0, dtype=np.int32)
            picks = explore_picks(self._explore_index, self.catalogue, cats, self.popularity, taken, n_explore)
            special += [(int(i), "explored") for i in picks]
        special = special[:k]
        base = ranked(scores, blocked, k).tolist()
        items = merge(base, special, k) if special else [(i, "") for i in base]
        recs = []
        values = scores[np.asarray([i for i, _ in items], dtype=np.int64)] if items else []  # one lookup for all
        for (i, flag), value in zip(items, values, strict=True):
            rec: dict[str, Any] = {"product_id": str(self.items.ids[i]), "score": round(_finite(value), 6)}
            if flag:
                rec[flag] = True
            recs.append(rec)
        out: dict[str, Any] = {"user_id": user_id, "recommendations": recs, "strategy": strategy,
                               "model_version": self.model_version}
        if promotion is not None:
            out["promotion"] = promotion[2]
        return out

    def _score(self, indices: np.ndarray, data: np.ndarray, user: int, sequence: np.ndarray | None,
               promotion: tuple[list[str], int, str] | None, steer: tuple[int, np.ndarray, float] | None = None,
               ) -> np.ndarray | CandidateScores:
        """A profile row's scores: every item's, or on a catalogue past ``serving.retrieval_min_items`` only
        the retrieved candidates' (plus best sellers and the promotion's products: ``Ensemble.retrieve``).
        ``steer`` = (known shopper, session, peak) when the row is that shopper's profile plus a session."""
        n = self.hist.n_items
        if self._retrieval:
            extra = self._popular_head
            if promotion is not None:
                promo = self.items.index(promotion[0])
                extra = np.concatenate([extra, promo[promo >= 0]])
            got = self.ensemble.retrieve(indices, data, user, n, sequence=sequence, steer=steer, extra=extra,
                                         limit=self.serving.retrieval_candidates)
            if got is not None:
                return CandidateScores(got[0], got[1], self.popularity)
        if steer is not None:
            return self.ensemble.score_steered(steer[0], steer[1], steer[2], indices, data, n, sequence=sequence)
        return self.ensemble.score_row(indices, data, user, n, sequence=sequence)

    def _sequence(self, u: int, tail: np.ndarray) -> np.ndarray | None:
        """What sequential members read: the shopper's known items oldest -> newest (by recency), then
        ``tail`` (the request's session or cart items, oldest -> newest), the newest ones the ensemble
        reads; None when no member reads sequences."""
        n = self.ensemble.sequence_length
        if n <= 0:
            return None
        known = self.hist.sequence(u, n) if u >= 0 else np.zeros(0, dtype=np.int64)
        return np.concatenate([known, np.asarray(tail, dtype=np.int64)])[-n:]

    def _exclude(self, mask: np.ndarray, exclude_ids: list[str] | None, category: str | None) -> None:
        """Mark (in place) the request's excluded products and, with a category, every product outside it."""
        if exclude_ids:
            ex = self.items.index(list(exclude_ids))
            mask[ex[ex >= 0]] = True
        if category is not None:
            mask |= ~self._category_mask(category)

    def _session_row(self, items: np.ndarray) -> sp.csr_matrix:
        """Recent items as a canonical 1 x n_items CSR row of ones."""
        return sp.csr_matrix((np.ones(len(items), np.float32), items.astype(np.int32), np.array([0, len(items)])),
                             shape=(1, self.hist.n_items))

    def _cold_scores(self, user_id: str) -> tuple[np.ndarray, str]:
        if self.segments is not None and self.segment_users is not None and self.segment_of is not None:
            idx = self.segment_users.index_one(user_id)
            seg = int(self.segment_of[idx]) if idx >= 0 else -1
            top = self.segments.top
            if self._retrieval and 0 <= seg < top.shape[0] and top.indptr[seg + 1] > top.indptr[seg]:  # huge: sparse
                return self._segment_candidates(seg), "popular_segment"
            seg_scores = self.segments.scores(seg)
            if seg_scores is not None:
                # Segment favourites first, then overall popularity for the rest of the list.
                return seg_scores / max(seg_scores.max(), 1e-9) + 1e-3 * self.popularity, "popular_segment"
        if self.cold_start == "trending" and self.trending is not None:  # it beat popularity at training time
            return self.trending, "trending"
        return self.popularity, "popular"  # read only: no copy

    def _segment_candidates(self, seg: int) -> CandidateScores:
        """The segment-favourites scores of ``_cold_scores`` at the segment's items and the best sellers; every
        other product scores 1e-3 x its popularity, below those best sellers, so the fill keeps the order."""
        top = self.segments.top
        lo, hi = top.indptr[seg], top.indptr[seg + 1]
        order = np.argsort(top.indices[lo:hi])
        favourites, counts = top.indices[lo:hi][order].astype(np.int64), top.data[lo:hi][order]
        items = distinct(np.concatenate([favourites, self._popular_head]))
        at, hit = sorted_lookup(favourites, items)
        values = np.where(hit, counts[at], 0.0) / max(float(counts.max()), 1e-9)
        return CandidateScores(items, values + 1e-3 * self.popularity[items], self.popularity)

    def _category_mask(self, category: str) -> np.ndarray:
        names = self.category_names
        hit = np.nonzero(names == category)[0]
        if not len(hit):
            hit = np.nonzero(np.char.lower(names.astype(str)) == category.strip().lower())[0]
        if not len(hit):
            return np.zeros(self.hist.n_items, dtype=bool)
        return self.item_category == hit[0]

    # ---------------------------------------------------------------- persistence
    def save(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "user_ids": self.users.ids, "item_ids": self.items.ids,
            "hist_indptr": self.hist.indptr, "hist_indices": self.hist.indices, "hist_value": self.hist.value,
            "hist_strong": self.hist.strong, "hist_recency": self.hist.recency,
            "popularity": self.popularity, "item_category": self.item_category,
            "category_names": self.category_names.astype(str),
        }
        if self.ensemble.popularity is not None:
            arrays["ensemble_popularity"] = self.ensemble.popularity
        for j, model in enumerate(self.ensemble.models):
            arrays.update({f"m{j}_{key}": v for key, v in model.state().items()})
        if self.segments is not None and self.segment_users is not None and self.segment_of is not None:
            top = self.segments.top.tocsr()
            arrays.update({"seg_data": top.data, "seg_indices": top.indices, "seg_indptr": top.indptr,
                           "seg_shape": np.asarray(top.shape), "seg_user_ids": self.segment_users.ids,
                           "seg_of": self.segment_of})
        if self.trending is not None:
            arrays["trending"] = self.trending
        if self.catalogue is not None:
            arrays.update({"cat_price": self.catalogue.price, "cat_available": self.catalogue.available,
                           "cat_explorable": self.catalogue.explorable})
        np.savez(model_dir / "arrays.npz", **arrays)
        for j, index in self.ensemble.indexes.items():
            index.save(model_dir / f"index_m{j}.faiss")
        doc = {
            "format_version": FORMAT_VERSION,
            "model_version": self.model_version,
            "ensemble": self.ensemble.name,
            "decay_half_life": self.ensemble.decay_half_life,
            "repeat_weight": self.ensemble.repeat_weight,
            "recency_boost": self.ensemble.recency_boost,
            "components": self.recipe,
            "exploration": asdict(self.exploration),
            "cold_start": self.cold_start,
            "serving": asdict(self.serving),
            "indexes": {str(j): asdict(r) for j, r in self.index_reports.items()},
            "n_users": len(self.users), "n_items": len(self.items), "nnz": self.hist.nnz,
            "meta": self.meta,
        }
        (model_dir / "model.json").write_text(json.dumps(doc, indent=2, default=_json_default))

    @classmethod
    def load(cls, model_dir: str | Path) -> Bundle:
        model_dir = Path(model_dir)
        doc = json.loads((model_dir / "model.json").read_text())
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported model format {doc.get('format_version')!r}")
        with np.load(model_dir / "arrays.npz", allow_pickle=False) as npz:
            a = {key: npz[key] for key in npz.files}
        items = IdMap(a["item_ids"])
        hist = History(a["hist_indptr"], a["hist_indices"], a["hist_value"], a["hist_strong"], a["hist_recency"],
                       len(items))
        models = []
        for j, comp in enumerate(doc["components"]):
            cls_ = FAMILIES[comp["family"]]
            prefix = f"m{j}_"
            state = {key[len(prefix):]: v for key, v in a.items() if key.startswith(prefix)}
            models.append(cls_.from_state(cls_.Config(**comp["config"]), state))
        ensemble = Ensemble(models, [c["weight"] for c in doc["components"]], doc["decay_half_life"],
                            doc["repeat_weight"], a.get("ensemble_popularity"),
                            recency_boost=float(doc.get("recency_boost", 0.0)))
        segments = seg_users = seg_of = None
        if "seg_data" in a:
            shape = tuple(int(x) for x in a["seg_shape"])
            segments = SegmentPopularity(sp.csr_matrix((a["seg_data"], a["seg_indices"], a["seg_indptr"]), shape=shape))
            seg_users, seg_of = IdMap(a["seg_user_ids"]), a["seg_of"]
        catalogue = None
        if "cat_price" in a:
            catalogue = Catalogue(a["cat_price"], a["cat_available"], a["item_category"], a["category_names"],
                                  a["cat_explorable"])
        bundle = cls(doc["model_version"], IdMap(a["user_ids"]), items, hist, ensemble, doc["components"],
                   a["popularity"], a["item_category"], a["category_names"], segments, seg_users, seg_of,
                   doc.get("meta", {}), a.get("trending"), catalogue,
                   ExplorationConfig(**doc.get("exploration", {})), doc.get("cold_start", "popular"),
                   ServingConfig(**doc.get("serving", {})))
        for j, report in doc.get("indexes", {}).items():
            ensemble.indexes[int(j)] = ItemIndex.load(model_dir / f"index_m{j}.faiss", report["breadth"])
            bundle.index_reports[int(j)] = IndexReport(**report)
        bundle.prepare_serving()
        return bundle

    def prepare_serving(self) -> None:
        """Precompute what the costliest shoppers' requests need (``Ensemble.prepare_serving``) and decide
        whether requests score retrieved candidates; ``load`` does it once, before a server forks its
        workers, so they share it."""
        self.ensemble.prepare_serving(self._profiles, self.serving)
        self._retrieval = self.uses_retrieval and not self.ensemble.cannot_retrieve
        # Candidates besides the members' own: enough best sellers for a list (the rules fill longer ones).
        self._popular_head = np.sort(self._popular_order[: min(self.serving.retrieval_candidates, 256)])

    @property
    def uses_retrieval(self) -> bool:
        """Whether the catalogue is past ``serving.retrieval_min_items`` (candidates, not every product)."""
        return self.hist.n_items >= self.serving.retrieval_min_items

    def build_indexes(self, threads: int = 0, sample_users: int = 256, seed: int = 0) -> dict[int, IndexReport]:
        """At training, on a catalogue past ``serving.retrieval_min_items``: an ``ItemIndex`` over each
        embedding member's item vectors, tuned on sampled shoppers' query vectors (saved with the model)."""
        if not self.uses_retrieval:
            return {}
        rng = np.random.default_rng(seed)
        active = np.flatnonzero(np.diff(self._profiles.indptr) > 0)
        users = rng.choice(active, size=min(sample_users, len(active)), replace=False) if len(active) else active
        reports = {}
        for j, model in enumerate(self.ensemble.models):
            if not is_embedding(model):
                continue
            queries = np.array([embedding_query(model, model.query_vector(*self._row(int(u)), int(u),
                                                                          self._sequence(int(u), np.zeros(0))))
                                for u in users], dtype=np.float32)
            index, reports[j] = ItemIndex.build(embedding_vectors(model), queries, recall=self.serving.index_recall,
                                                candidates=self.serving.retrieval_candidates,
                                                head_items=self.serving.index_exact_items, threads=threads)
            self.ensemble.indexes[j] = index
        self.index_reports = reports
        self.prepare_serving()
        return reports

    def _row(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._profiles.indptr[u], self._profiles.indptr[u + 1]
        return self._profiles.indices[lo:hi], self._profiles.data[lo:hi]


def _finite(value: Any) -> float:
    """A score as JSON can carry it (``np.nan_to_num(v, neginf=0.0)`` for one value, without its overhead)."""
    v = float(value)
    if math.isfinite(v):
        return v
    return _FLOAT_MAX if v > 0 else 0.0


_FLOAT_MAX = float(np.finfo(np.float64).max)


def recipe_doc(candidates: list[Any], weights: list[float]) -> list[dict[str, Any]]:
    return [{"family": c.family, "config": asdict(c.config), "weight": float(w)}
            for c, w in zip(candidates, weights, strict=True)]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
