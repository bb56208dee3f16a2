"""Model selection and blending, decided on a validation split carved from the training data only.

1. Split the training rows again (same temporal rule) into fit / validation parts.
2. Fit every candidate that declares it fits the data size (and the time budget allows), rank
   NDCG@k on the validation users; log why anything was skipped.
3. From the best candidate, greedily tune the profile decay and the repeat weight, then try
   blending it with the best model of each other family.
The winning recipe (candidate configs + weights + knobs) is then refitted on all training rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .ensemble import Ensemble, row_max_normalize, top_k
from .evaluation import Targets, build_targets
from .metrics import hit_matrix, ranking_metrics
from .models import FAMILIES, Model
from .models.content import ContentConfig, SegmentPopConfig
from .models.ease import EASEConfig
from .models.item_knn import ItemKNNConfig
from .models.mf import MFConfig
from .models.popularity import PopularityConfig
from .models.rp3beta import RP3betaConfig
from .models.user_knn import UserKNNConfig
from .prepare import Prepared, prepare
from .split import SplitConfig, split


@dataclass(frozen=True)
class Candidate:
    family: str
    config: Any

    def build(self) -> Model:
        return FAMILIES[self.family](self.config)


def default_candidates() -> list[Candidate]:
    """Broad, cheap-first grid: each family at settings that do well across public datasets.

    Expensive variants carry their own size limits (``max_items`` etc.), so on big data the grid
    shrinks to what fits instead of blowing the time budget.
    """
    return [
        Candidate("popularity", PopularityConfig()),
        Candidate("popularity", PopularityConfig(half_life_fraction=0.05)),
        Candidate("rp3beta", RP3betaConfig(alpha=1.0, beta=0.0)),
        Candidate("rp3beta", RP3betaConfig(alpha=0.8, beta=0.3)),
        Candidate("rp3beta", RP3betaConfig(alpha=1.0, beta=0.5)),
        Candidate("item_knn", ItemKNNConfig("cosine", k=100)),
        Candidate("user_knn", UserKNNConfig(k=100)),
        Candidate("ease", EASEConfig(lambda_rel=1.0)),
        Candidate("mf", MFConfig("als", factors=64, regularization=0.05, alpha=10.0)),
        Candidate("item_knn", ItemKNNConfig("bm25", k=100)),
        Candidate("ease", EASEConfig(lambda_rel=0.25, max_items=5000)),
        Candidate("ease", EASEConfig(lambda_rel=4.0, max_items=5000)),
        Candidate("segment_pop", SegmentPopConfig()),
        Candidate("user_knn", UserKNNConfig(k=400, max_users=100_000)),
        Candidate("mf", MFConfig("als", factors=128, regularization=0.1, alpha=20.0)),
        Candidate("content", ContentConfig()),
        Candidate("mf", MFConfig("bpr", factors=64, regularization=0.01, max_nnz=500_000)),
    ]


@dataclass(frozen=True)
class SelectionConfig:
    k: int = 10
    split: SplitConfig = SplitConfig("temporal", 0.1)
    max_eval_users: int = 3000
    eval_cells: int = 30_000_000  # validation users x items, bounds validation cost
    cache_bytes: float = 1.5e9  # validation score matrices kept for blending
    #: Seconds for selection; 0 = auto, 20 s + 20 s per million training rows (1M rows trains in
    #: under a minute end to end). Cheap, strong candidates come first; later ones are skipped.
    time_budget_s: float = 0.0
    max_components: int = 3
    partner_min_ratio: float = 0.75  # blend partners must reach this share of the best single NDCG
    min_gain: float = 1.002  # a step must beat the best so far by this factor: no noise-level complexity
    decay_grid: tuple[float, ...] = (0.0, 20.0, 5.0)
    repeat_grid: tuple[float, ...] = (0.0, 0.3, 1.0)
    blend_grid: tuple[float, ...] = (0.25, 0.5, 0.75)
    min_val_users: int = 5
    candidates: tuple[Candidate, ...] = field(default_factory=lambda: tuple(default_candidates()))


@dataclass
class Recipe:
    """What to refit on the full training data."""

    candidates: list[Candidate]
    weights: list[float]
    decay_half_life: float = 0.0
    repeat_weight: float = 0.0


@dataclass
class SelectionResult:
    recipe: Recipe
    table: list[dict[str, Any]]  # one row per candidate / tuning step, for the report
    val_ndcg: float
    popularity_val_ndcg: float
    notes: list[str]


def fallback_recipe(prep_shape_items: int) -> Recipe:
    return Recipe([Candidate("rp3beta", RP3betaConfig())], [1.0])


def _expected_fit_s(cand: Candidate, fit_times: list[tuple[Candidate, float]]) -> float:
    """Fit time guessed from the last fit of the same family (MF scales with factors^1.5)."""
    for prev, seconds in reversed(fit_times):
        if prev.family == cand.family:
            if cand.family == "mf":
                same = prev.config.method == cand.config.method
                return seconds * (cand.config.factors / prev.config.factors) ** 1.5 if same else seconds
            return seconds
    return 0.0


class _Validation:
    """Scores validation users once per (model, decay) and evaluates combinations of cached scores."""

    def __init__(self, prep: Prepared, targets: Targets, k: int, pop: np.ndarray):
        self.prep, self.targets, self.k, self.pop = prep, targets, k, pop
        self.users = targets.users
        strong = prep.hist.matrix(prep.hist.strong.astype(np.float32)).copy()  # own arrays: see Bundle
        strong.eliminate_zeros()
        self.exclude = strong[self.users]
        self._profiles: dict[float, Any] = {}

    def profiles(self, decay: float):
        if decay not in self._profiles:
            self._profiles[decay] = self.prep.hist.profile(decay)[self.users]
        return self._profiles[decay]

    def component(self, model: Model, decay: float = 0.0, batch_cells: int = 20_000_000) -> np.ndarray:
        profiles = self.profiles(decay)
        n_items = self.prep.hist.n_items
        batch = max(1, batch_cells // max(n_items, 1))
        out = np.empty((len(self.users), n_items), dtype=np.float32)
        for lo in range(0, len(self.users), batch):
            sl = slice(lo, lo + batch)
            out[sl] = row_max_normalize(model.score(profiles[sl], self.users[sl]))
        return out

    def repeat(self, decay: float) -> np.ndarray:
        return row_max_normalize(self.profiles(decay).toarray().astype(np.float32))

    def ndcg(self, scores: np.ndarray) -> float:
        recs = top_k(scores + 1e-4 * self.pop[None, :], self.k, self.exclude)
        return ranking_metrics(hit_matrix(recs, self.targets.relevant, self.k), self.targets.n_relevant)["ndcg"]


def select(
    train: pd.DataFrame,
    products: pd.DataFrame | None,
    users: pd.DataFrame | None,
    config: SelectionConfig,
    weights: Any = None,
    num_threads: int = 0,
    log: Callable[[str], None] = print,
) -> SelectionResult:
    """Choose the recipe on validation carved from ``train``; never sees any test rows."""
    t0 = time.perf_counter()
    budget = config.time_budget_s or min(20.0 + 20.0 * len(train) / 1e6, 1200.0)
    fit_part, val_part = split(train, config.split)
    notes: list[str] = []
    if len(val_part) == 0 or len(fit_part) == 0:
        notes.append("no validation split possible (all rows share one timestamp?): default recipe")
        return SelectionResult(fallback_recipe(0), [], float("nan"), float("nan"), notes)
    prep = prepare(fit_part, products, users, weights, num_threads)
    targets = build_targets(val_part, prep.users, prep.items, prep.hist)
    n_eval = int(np.clip(config.eval_cells // max(prep.hist.n_items, 1), 500, config.max_eval_users))
    targets = targets.sample(n_eval)
    if len(targets.users) < config.min_val_users:
        notes.append(f"only {len(targets.users)} validation users: default recipe")
        return SelectionResult(fallback_recipe(0), [], float("nan"), float("nan"), notes)
    log(f"[select] fit part {len(fit_part)} rows, validation {len(val_part)} rows, {len(targets.users)} users scored, "
        f"time budget {budget:.0f}s")

    X = prep.hist.matrix()
    pop = FAMILIES["popularity"]().fit(X, prep.ctx).pop
    val = _Validation(prep, targets, config.k, pop)
    matrix_bytes = 4 * len(targets.users) * prep.hist.n_items
    max_cached = max(2, int(config.cache_bytes // max(matrix_bytes, 1)))
    fitted: list[tuple[Candidate, Model, float]] = []
    cache: dict[int, np.ndarray] = {}  # id(model) -> normalised validation scores
    fit_times: list[tuple[Candidate, float]] = []
    table: list[dict[str, Any]] = []
    for cand in config.candidates:
        cls = FAMILIES[cand.family]
        model_name = cls(cand.config).name
        reason = cls.fits(cand.config, prep.shape)
        if reason is None and getattr(cls, "needs_item_features", False) and not prep.item_features.known:
            reason = "no products table (category/price) to build content features from"
        if reason is None and getattr(cls, "needs_user_features", False) and prep.ctx.user_segment is None:
            reason = "no users table (age/gender/location) to build segments from"
        if reason is None and time.perf_counter() - t0 + _expected_fit_s(cand, fit_times) > 0.8 * budget:
            reason = f"time budget {budget:.0f}s would be exceeded (a fifth is kept for blending)"
        if reason is not None:
            log(f"[select] skip {model_name}: {reason}")
            table.append({"model": model_name, "ndcg": None, "fit_s": None, "skipped": reason})
            continue
        t = time.perf_counter()
        try:
            model = cand.build().fit(X, prep.ctx)
        except Exception as exc:  # one failing candidate must not sink training
            log(f"[select] {model_name} failed: {exc!r}")
            table.append({"model": model_name, "ndcg": None, "fit_s": None, "skipped": f"failed: {exc!r}"})
            continue
        fit_s = time.perf_counter() - t
        fit_times.append((cand, fit_s))
        scores = val.component(model)
        ndcg = val.ndcg(scores)
        log(f"[select] {model_name}: ndcg@{config.k}={ndcg:.4f} (fit {fit_s:.1f}s)")
        table.append({"model": model_name, "ndcg": ndcg, "fit_s": round(fit_s, 2), "skipped": None})
        fitted.append((cand, model, ndcg))
        cache[id(model)] = scores
        if len(cache) > max_cached:  # keep the best-scoring models' matrices for blending
            worst = min((f for f in fitted if id(f[1]) in cache), key=lambda f: f[2])
            del cache[id(worst[1])]

    pop_ndcg = next((n for c, _, n in fitted if c.family == "popularity" and c.config.half_life_fraction == 0), 0.0)
    fitted.sort(key=lambda r: -r[2])
    best_cand, best_model, best = fitted[0]
    recipe = Recipe([best_cand], [1.0])
    models = [best_model]

    def scores_of(model: Model) -> np.ndarray:
        return cache[id(model)] if id(model) in cache else val.component(model)

    def out_of_time() -> bool:
        return time.perf_counter() - t0 > budget

    def record(name: str, label: str, score: float) -> None:
        table.append({"model": name, "ndcg": score, "fit_s": None, "skipped": None, "step": label})
        log(f"[select] {label} {name}: ndcg@{config.k}={score:.4f}")

    # Greedy forward blending: add the best model of each other family if it really helps.
    current = scores_of(best_model)
    seen = {best_cand.family}
    for cand, model, single in fitted[1:]:
        if cand.family in seen or len(recipe.candidates) >= config.max_components or out_of_time():
            continue
        if fitted[0][2] > 0 and single < config.partner_min_ratio * fitted[0][2]:
            break  # sorted: every remaining model is far behind; blending it in would not help
        seen.add(cand.family)
        other = scores_of(model)
        gain = None
        for w in config.blend_grid:
            blend = (1 - w) * current + w * other
            score = val.ndcg(blend)
            weights_ = [*(x * (1 - w) for x in recipe.weights), w]
            record(Ensemble([*models, model], weights_).name, "blend", score)
            if score > best * config.min_gain:
                best, gain = score, (w, blend, weights_)
        if gain is not None:
            w, current, weights_ = gain
            recipe = Recipe([*recipe.candidates, cand], weights_)
            models = [*models, model]

    def combined(decay: float) -> np.ndarray:
        if decay == 0:
            return current
        return sum(w * val.component(m, decay) for m, w in zip(models, recipe.weights, strict=True))

    for h in config.decay_grid[1:]:
        if out_of_time():
            break
        score = val.ndcg(combined(h))
        record(Ensemble(models, recipe.weights, decay_half_life=h).name, "decay", score)
        if score > best * config.min_gain:
            best, recipe = score, replace(recipe, decay_half_life=h)
    base = combined(recipe.decay_half_life)
    for r in config.repeat_grid[1:]:
        if out_of_time():
            break
        score = val.ndcg(base + r * val.repeat(recipe.decay_half_life))
        record(Ensemble(models, recipe.weights, recipe.decay_half_life, r).name, "repeat", score)
        if score > best * config.min_gain:
            best, recipe = score, replace(recipe, repeat_weight=r)
    chosen = Ensemble(models, recipe.weights, recipe.decay_half_life, recipe.repeat_weight)
    log(f"[select] chosen {chosen.name}: val ndcg@{config.k}={best:.4f} vs popularity {pop_ndcg:.4f} "
        f"({time.perf_counter() - t0:.1f}s)")
    return SelectionResult(recipe, table, best, pop_ndcg, notes)


def fit_recipe(recipe: Recipe, prep: Prepared) -> Ensemble:
    """Refit the recipe's models on the full training data."""
    X = prep.hist.matrix()
    pop = FAMILIES["popularity"]().fit(X, prep.ctx).pop
    models = [c.build().fit(X, prep.ctx) for c in recipe.candidates]
    return Ensemble(models, list(recipe.weights), recipe.decay_half_life, recipe.repeat_weight, pop)


def targets_for(test: pd.DataFrame, prep: Prepared) -> Targets:
    return build_targets(test, prep.users, prep.items, prep.hist)


__all__ = ["Candidate", "Recipe", "SelectionConfig", "SelectionResult", "default_candidates", "fit_recipe",
           "prepare", "select", "targets_for"]
