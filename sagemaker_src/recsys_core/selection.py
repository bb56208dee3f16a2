"""Model selection on validation carved from the training rows only (never from test rows).

1. ``split.plan_validation`` picks the validation the data supports: a global time cut where the
   log has a shared clock and enough returning users, else a per-user holdout of each user's latest
   rows plus a random draw of their older rows ("what next" and "what else", scored on the same
   users; the objective is the geometric mean of the two NDCGs, so neither is traded away).
2. Every family that fits the data is fitted at its default configuration, cheapest first; then
   each family, best first, is tuned by a coordinate search along its ``search_axes``.
3. The best model of each family is blended in greedily where it helps; then recency weighting
   of profiles and the repeat knob are tuned on the blend.

Work is bounded by a budget in *reference seconds* estimated from the data's shape (each family's
``cost``), not by the clock: the same data and seed give the same recipe on a busy or an idle
machine. The chosen recipe (configs, weights, knobs) is refitted on all training rows by
``fit_recipe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .data import IdMap
from .ensemble import Ensemble, row_max_normalize, sequences_for, top_k
from .evaluation import Targets, build_targets
from .metrics import hit_matrix, ndcg_per_user
from .models import FAMILIES, Model
from .models.base import EVAL_SECONDS_PER_CELL, DataShape
from .models.content import ContentConfig, SegmentPopConfig
from .models.ease import EASEConfig
from .models.item_knn import ItemKNNConfig
from .models.mf import MFConfig
from .models.popularity import PopularityConfig
from .models.rp3beta import RP3betaConfig
from .models.sasrec import SASRecConfig
from .models.sequence import SequenceConfig
from .models.user_knn import UserKNNConfig
from .prepare import Prepared, prepare
from .split import HoldoutConfig, ValidationPlan, plan_validation


@dataclass(frozen=True)
class Candidate:
    family: str
    config: Any

    def build(self) -> Model:
        return FAMILIES[self.family](self.config)

    @property
    def name(self) -> str:
        return self.build().name


def default_candidates() -> list[Candidate]:
    """Each family's starting point, cheapest first; selection tunes them from here."""
    return [
        Candidate("popularity", PopularityConfig()),
        Candidate("popularity", PopularityConfig(half_life_fraction=0.05)),
        Candidate("rp3beta", RP3betaConfig()),
        Candidate("item_knn", ItemKNNConfig("cosine", k=100)),
        Candidate("sequence", SequenceConfig()),
        Candidate("user_knn", UserKNNConfig()),
        Candidate("segment_pop", SegmentPopConfig()),
        Candidate("content", ContentConfig()),
        Candidate("ease", EASEConfig()),
        Candidate("mf", MFConfig("als")),
        Candidate("sasrec", SASRecConfig()),
    ]


def strongest_fitting(shape: DataShape) -> Candidate:
    """The model used when selection cannot run: EASE where its dense solve fits, else RP3beta."""
    ease = Candidate("ease", EASEConfig())
    return ease if FAMILIES["ease"].fits(ease.config, shape) is None else Candidate("rp3beta", RP3betaConfig())


@dataclass(frozen=True)
class SelectionConfig:
    k: int = 10
    holdout: HoldoutConfig = HoldoutConfig()
    #: Selection work in reference seconds (see ``models.base``); None = from the data's shape:
    #: ``budget_base + budget_per_million * nnz / 1e6``, plus room for ``ease_fits`` fits of the
    #: dense EASE solve where it fits (the strongest single model on catalogues up to ~20k items).
    work_budget: float | None = None
    budget_base: float = 20.0
    budget_per_million: float = 40.0
    ease_fits: int = 4
    #: ... and for this many fits of the sequential family (SASRec), which trains for minutes where the
    #: others take seconds; 0 = it competes for the shared budget only (and is skipped, said so, at scale).
    sasrec_fits: int = 2
    #: Validation users x items scored per candidate, bounding the memory of cached score matrices (320 MB
    #: each). 80M rather than 40M: on Amazon Sports (18k products) 40M scored 2,179 of the 4,000 held-out
    #: shoppers, too few for any blend step to clear ``min_z``; all 4,000 took the random test from 0.0517
    #: (RP3beta alone) to 0.0553 (a 4-member blend; bench/bench_public_data.py).
    eval_cells: int = 80_000_000
    min_eval_users: int = 300
    cache_bytes: float = 2e9
    #: Fewer validation users than this: no selection, the strongest model that fits is used.
    min_val_users: int = 20
    max_components: int = 4
    partner_min_ratio: float = 0.5  # blend partners must reach this share of the best objective
    #: Each blending round tries this many remaining families: each validation part's specialist first
    #: (the family best on that part, e.g. a sequential model on "latest"), then the best by the objective.
    partners_per_round: int = 3
    #: A step (tuning, blending, recency) must beat the best so far by this factor *and* by
    #: ``min_z`` standard errors of the paired per-user difference: no noise-level complexity.
    #: 1.0 rather than 1.5: on the real logs (bench/bench_public_data.py) 1.5 refused blends whose
    #: test gain was real (MovieLens random 0.3803 -> 0.3855, Toys random 0.0770 -> 0.0813) and
    #: changed no other cell by more than 1 %.
    min_gain: float = 1.005
    min_z: float = 1.0
    blend_grid: tuple[float, ...] = (0.2, 0.4)
    #: The family the blend starts from when it is within noise of the best (the best does not beat it by
    #: ``min_gain`` and ``min_z``): EASE, the strongest single model where its dense solve fits (Steck 2019;
    #: the best baseline on four of the seven real-data test sets). None = always the best on validation.
    lead_prior: str | None = "ease"
    #: Recency weighting of profiles: pure decay half-lives (only with a shared clock: a pure decay
    #: forgets a user's older tastes), and (half-life, boost) pairs.
    decay_grid: tuple[float, ...] = (16.0,)
    boost_grid: tuple[tuple[float, float], ...] = ((1.0, 0.5), (1.0, 1.0), (4.0, 0.5), (4.0, 1.0))
    #: The mild boost tried first and kept unless validation shows it hurting (None = no prior).
    recency_default: tuple[float, float] | None = (1.0, 0.25)
    #: With the per-user holdout, recency may not cost the random part ("what else") more than this share.
    recency_guard: float = 0.02
    repeat_grid: tuple[float, ...] = (0.3, 1.0)
    tune: bool = True  # coordinate search around each family's default
    candidates: tuple[Candidate, ...] = field(default_factory=lambda: tuple(default_candidates()))

    def budget(self, shape: DataShape) -> float:
        if self.work_budget is not None:
            return self.work_budget
        extra = 0.0
        ease = FAMILIES["ease"]
        if ease.fits(EASEConfig(), shape) is None:
            extra = self.ease_fits * ease.cost(EASEConfig(), shape)
        sasrec = FAMILIES["sasrec"]
        if self.sasrec_fits and sasrec.fits(SASRecConfig(), shape) is None:
            extra += self.sasrec_fits * sasrec.cost(SASRecConfig(), shape)
        return self.budget_base + self.budget_per_million * shape.nnz / 1e6 + extra


@dataclass
class Recipe:
    """What to refit on the full training data."""

    candidates: list[Candidate]
    weights: list[float]
    decay_half_life: float = 0.0
    repeat_weight: float = 0.0
    recency_boost: float = 0.0
    #: Members the refit may continue from rather than fit from scratch (``Model.warm_start``): by member
    #: position, the model selection fitted and the item ids it was fitted on. Never saved.
    warm_from: dict[int, tuple[Model, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class SelectionResult:
    recipe: Recipe
    table: list[dict[str, Any]]  # one row per candidate / tuning step, for the report
    val_ndcg: float  # the objective of the chosen recipe (geometric mean over validation parts)
    popularity_val_ndcg: float
    notes: list[str]
    plan: ValidationPlan | None = None
    parts: tuple[str, ...] = ()
    chosen_parts: dict[str, float] = field(default_factory=dict)
    budget: float = 0.0
    spent: float = 0.0
    scored_users: int = 0

    def summary(self) -> dict[str, Any]:
        """What the log and evaluation.json say about selection: split, users, choice and why."""
        plan = self.plan
        return {
            "split": plan.kind if plan else "none",
            "split_reason": plan.reason if plan else "",
            "validation_users": self.scored_users,
            "validation_rows": plan.val_rows if plan else 0,
            "objective": "geometric mean of NDCG@k over " + " and ".join(self.parts) if self.parts else "none",
            "validation_ndcg": self.val_ndcg, "popularity_validation_ndcg": self.popularity_val_ndcg,
            "validation_ndcg_per_part": self.chosen_parts,
            "work_budget_reference_s": round(self.budget, 1), "work_spent_reference_s": round(self.spent, 1),
            "notes": self.notes,
        }


class _Fold:
    """One validation fold: its fit part prepared, its users and what they did next, per part."""

    def __init__(self, prep: Prepared, parts: list[Targets], k: int):
        self.prep, self.k = prep, k
        self.pop = FAMILIES["popularity"]().fit(prep.hist.matrix(), prep.ctx).pop
        self.users = np.unique(np.concatenate([t.users for t in parts])) if parts else np.zeros(0, np.int64)
        self.relevant: list[list[np.ndarray]] = []
        self.n_relevant: list[np.ndarray] = []
        for t in parts:  # align each part's targets to the union of users (empty where a user has none)
            where = {int(u): j for j, u in enumerate(t.users)}
            self.relevant.append([t.relevant[where[u]] if u in where else np.zeros(0, np.int64)
                                  for u in self.users.tolist()])
            self.n_relevant.append(np.array([t.n_relevant[where[u]] if u in where else 0
                                             for u in self.users.tolist()], dtype=np.int64))
        # What iterative models stop early on: the first part's targets ("what next", or after the cut).
        self.ctx = replace(prep.ctx, validation=(self.users, self.relevant[0])) if parts else prep.ctx
        strong = prep.hist.matrix(prep.hist.strong.astype(np.float32)).copy()  # own arrays: see Bundle
        strong.eliminate_zeros()
        self.exclude = strong[self.users]
        self._profiles: dict[tuple[float, float], Any] = {}

    @property
    def cells(self) -> int:
        return len(self.users) * self.prep.hist.n_items

    def profiles(self, half_life: float = 0.0, boost: float = 0.0):  # noqa: ANN201 - csr rows
        key = (half_life, boost)
        if key not in self._profiles:
            self._profiles[key] = self.prep.hist.profile(half_life, boost)[self.users]
        return self._profiles[key]

    def component(self, model: Model, half_life: float = 0.0, boost: float = 0.0,
                  batch_cells: int = 20_000_000) -> np.ndarray:
        profiles = self.profiles(half_life, boost)
        n_items = self.prep.hist.n_items
        batch = max(1, batch_cells // max(n_items, 1))
        out = np.empty((len(self.users), n_items), dtype=np.float32)
        for lo in range(0, len(self.users), batch):
            sl = slice(lo, lo + batch)
            seqs = sequences_for(model, self.prep.hist, self.users[sl])
            out[sl] = row_max_normalize(model.score(profiles[sl], self.users[sl], sequences=seqs))
        return out

    def repeat(self, half_life: float, boost: float) -> np.ndarray:
        return row_max_normalize(self.profiles(half_life, boost).toarray().astype(np.float32))

    def per_user_ndcg(self, scores: np.ndarray, batch_cells: int = 20_000_000) -> list[np.ndarray]:
        # In row batches: on a catalogue of a million items one more full copy of the matrix is gigabytes.
        batch = max(1, batch_cells // max(scores.shape[1], 1))
        recs: list[np.ndarray] = []
        for lo in range(0, len(scores), batch):
            sl = slice(lo, lo + batch)
            recs += top_k(scores[sl] + 1e-4 * self.pop[None, :], self.k, self.exclude[sl])
        out = []
        for rel, n in zip(self.relevant, self.n_relevant, strict=True):
            has = np.flatnonzero(n > 0)
            out.append(ndcg_per_user(hit_matrix([recs[i] for i in has], [rel[i] for i in has], self.k), n[has]))
        return out


class _Validator:
    """All folds: scores are lists (one matrix per fold); NDCG per part pools every fold's users."""

    def __init__(self, folds: list[_Fold], names: tuple[str, ...]):
        self.folds, self.names = folds, names

    @property
    def cells(self) -> int:
        return sum(f.cells for f in self.folds)

    @property
    def n_users(self) -> int:
        return sum(len(f.users) for f in self.folds)

    def measure(self, scores: list[np.ndarray]) -> Score:
        """NDCG per part and per user; the objective is the geometric mean over the parts."""
        per_fold = [fold.per_user_ndcg(s) for fold, s in zip(self.folds, scores, strict=True)]
        per_user = [np.concatenate([f[p] for f in per_fold]) for p in range(len(self.names))]
        parts = [float(u.mean()) if len(u) else 0.0 for u in per_user]
        return Score(float(np.prod(parts) ** (1.0 / len(parts))), parts, per_user)


@dataclass
class Score:
    """A candidate's validation result: objective, NDCG per part, and per-user NDCG per part
    (same users in the same order for every candidate, for paired comparisons)."""

    value: float
    parts: list[float]
    per_user: list[np.ndarray]

    def costs_part(self, other: Score, part: int, tolerance: float) -> bool:
        """Whether this score loses more than ``tolerance`` of ``other``'s NDCG on ``part``."""
        return self.parts[part] < other.parts[part] * (1 - tolerance)

    def beats(self, other: Score, min_gain: float, min_z: float) -> bool:
        """Better than ``other`` by ``min_gain`` and by ``min_z`` standard errors of the paired
        difference (delta method on the log of the geometric mean)."""
        if self.value <= other.value * min_gain:
            return False
        n_parts = len(self.parts)
        mean = var = 0.0
        for mine, theirs, level in zip(self.per_user, other.per_user, other.parts, strict=True):
            if not len(mine):
                continue
            rel = (mine - theirs) / max(level, 1e-12)
            mean += rel.mean() / n_parts
            var += rel.var(ddof=1) / len(rel) / n_parts**2 if len(rel) > 1 else 0.0
        return var == 0.0 or mean / np.sqrt(var) >= min_z


@dataclass
class _Fitted:
    cand: Candidate
    models: list[Model]  # one per fold
    result: Score

    @property
    def score(self) -> float:
        return self.result.value

    @property
    def refit(self) -> Candidate:
        """What the recipe refits on all rows: the candidate, with what its fit learned about itself
        (SASRec: the epoch count its early stopping chose)."""
        return Candidate(self.cand.family, self.models[0].refit_config())


class _Search:
    """Bookkeeping shared by the stages: budget, score cache, result table and log."""

    def __init__(self, val: _Validator, config: SelectionConfig, budget: float, log: Callable[[str], None]):
        self.val, self.config, self.budget, self.log = val, config, budget, log
        self.shape = val.folds[0].prep.shape
        self.spent = 0.0
        self.table: list[dict[str, Any]] = []
        self.fitted: dict[Candidate, _Fitted] = {}
        self.winners: dict[str, _Fitted] = {}
        self.cache: dict[Candidate, list[np.ndarray]] = {}
        self.eval_cost = EVAL_SECONDS_PER_CELL * val.cells
        self.max_cached = max(2, int(config.cache_bytes // (4 * max(val.cells, 1))))

    def row(self, name: str, score: Score | None, step: str | None = None, fit_s: float | None = None,
            skipped: str | None = None, cost: float | None = None) -> None:
        self.table.append({"model": name, "ndcg": score.value if score else None,
                           "parts": [round(p, 5) for p in score.parts] if score else None,
                           "step": step, "fit_s": None if fit_s is None else round(fit_s, 2),
                           "cost_ref_s": None if cost is None else round(cost, 1), "skipped": skipped})

    def affordable(self, cost: float, reserve: float = 0.0) -> bool:
        return self.spent + cost <= self.budget - reserve

    def why_not(self, cand: Candidate) -> str | None:
        cls = FAMILIES[cand.family]
        prep = self.val.folds[0].prep
        reason = cls.fits(cand.config, self.shape)
        if reason is None and getattr(cls, "needs_item_features", False) and not prep.item_features.known:
            reason = "no products table (category/price) to build content features from"
        if reason is None and getattr(cls, "needs_user_features", False) and prep.ctx.user_segment is None:
            reason = "no users table (age/gender/location) to build segments from"
        return reason

    def evaluate(self, cand: Candidate, step: str | None = None, reserve: float = 0.0) -> _Fitted | None:
        """Fit and score one candidate on every fold if it fits the data and the budget (less ``reserve``)."""
        if cand in self.fitted:
            return self.fitted[cand]
        name = cand.name
        reason = self.why_not(cand)
        cost = len(self.val.folds) * FAMILIES[cand.family].cost(cand.config, self.shape) + self.eval_cost
        if reason is None and not self.affordable(cost, reserve):
            reason = (f"work budget: needs ~{cost:.0f} reference s, {self.budget - self.spent:.0f} of "
                      f"{self.budget:.0f} left")
        if reason is not None:
            if step is None:  # tuning steps that do not fit are not worth a line each
                self.log(f"[select] skip {name}: {reason}")
                self.row(name, None, step, skipped=reason, cost=cost)
            return None
        cls = FAMILIES[cand.family]
        # What this fit may use at most: the budget left after what the blend and recency need.
        left = (self.budget - self.spent - reserve - self.eval_cost) / len(self.val.folds)
        run = Candidate(cand.family, cls.bounded(cand.config, self.shape, left))
        self.spent += cost
        t = time.perf_counter()
        try:
            models = [run.build().fit(f.prep.hist.matrix(), f.ctx) for f in self.val.folds]
        except Exception as exc:  # one failing candidate must not sink training
            self.log(f"[select] {name} failed: {exc!r}")
            self.row(name, None, step, skipped=f"failed: {exc!r}", cost=cost)
            return None
        fit_s = time.perf_counter() - t
        charged = [m.charged(self.shape) for m in models]
        if all(c is not None for c in charged):  # the work it did, not the typical work assumed beforehand
            cost = sum(charged) + self.eval_cost
            self.spent += cost - (len(self.val.folds) * cls.cost(cand.config, self.shape) + self.eval_cost)
        scores = [f.component(m) for f, m in zip(self.val.folds, models, strict=True)]
        result = self.val.measure(scores)
        note = models[0].fit_note()
        if note and charged[0] is not None:
            note += f"; work {cost:.0f} reference s"
        self.log(f"[select] {step + ' ' if step else ''}{name}: {self.describe(result)} (fit {fit_s:.1f}s"
                 + (f"; {note})" if note else ")"))
        self.row(name, result, step, fit_s=fit_s, cost=cost)
        fitted = _Fitted(cand, models, result)
        self.fitted[cand] = fitted
        self.cache[cand] = scores
        if len(self.cache) > self.max_cached:  # keep the best-scoring models' matrices for blending
            worst = min(self.cache, key=lambda c: self.fitted[c].score)
            del self.cache[worst]
        return fitted

    def scores_of(self, fitted: _Fitted) -> list[np.ndarray]:
        if fitted.cand not in self.cache:
            self.spent += self.eval_cost
            return [f.component(m) for f, m in zip(self.val.folds, fitted.models, strict=True)]
        return self.cache[fitted.cand]

    def describe(self, result: Score) -> str:
        text = f"ndcg@{self.config.k}={result.value:.4f}"
        if len(result.parts) > 1:
            text += " (" + ", ".join(f"{n} {p:.4f}" for n, p in zip(self.val.names, result.parts, strict=True)) + ")"
        return text

    def measure(self, name: str, step: str, scores: list[np.ndarray]) -> Score:
        self.spent += self.eval_cost
        result = self.val.measure(scores)
        self.row(name, result, step)
        self.log(f"[select] {step} {name}: {self.describe(result)}")
        return result

    def better(self, new: Score, old: Score) -> bool:
        return new.beats(old, self.config.min_gain, self.config.min_z)

    def best_of(self, family: str) -> _Fitted | None:
        """The family's tuned winner; before tuning, its best-scoring fit. (A tuning trial that
        scores a hair higher without clearing ``better`` does not win.)"""
        if family in self.winners:
            return self.winners[family]
        options = [f for f in self.fitted.values() if f.cand.family == family]
        return max(options, key=lambda f: f.score) if options else None

    def tune(self, start: _Fitted, reserve: float) -> _Fitted:
        """Coordinate search from ``start`` along its family's axes: step to a neighbouring value
        while that improves the objective, one axis after the other."""
        cls = FAMILIES[start.cand.family]
        best = start
        for axis, values in cls.search_axes:
            if getattr(best.cand.config, axis) not in values:
                continue
            for direction in (1, -1):
                pos = values.index(getattr(best.cand.config, axis))
                moved = False
                while 0 <= pos + direction < len(values):
                    pos += direction
                    cand = Candidate(best.cand.family, replace(best.cand.config, **{axis: values[pos]}))
                    trial = self.evaluate(cand, step="tune", reserve=reserve)
                    if trial is None or not self.better(trial.result, best.result):
                        break
                    best, moved = trial, True
                if moved:
                    break  # improved going one way: no need to try the other
        self.winners[start.cand.family] = best
        return best


def _lead(ranked: list[_Fitted], config: SelectionConfig, log: Callable[[str], None]) -> _Fitted:
    """The blend's first member: the best on validation, or the prior family when the best is not
    significantly better than it (a tie within noise goes to the prior, as recency's default does)."""
    top = ranked[0]
    prior = next((f for f in ranked if f.cand.family == config.lead_prior), None)
    if prior is None or prior is top or top.result.beats(prior.result, config.min_gain, config.min_z):
        return top
    log(f"[select] lead {prior.cand.name} ({prior.score:.4f}): {top.cand.name} ({top.score:.4f}) is not "
        f"significantly better, so the prior family leads")
    return prior


def _partners(lead: _Fitted, ranked: list[_Fitted], names: tuple[str, ...], config: SelectionConfig,
              log: Callable[[str], None]) -> list[_Fitted]:
    """Blend partners in the order they are tried: first each validation part's specialist (the family
    best on that part, where that beats the lead on it), whatever its combined score, then the others
    by the objective down to ``partner_min_ratio`` of the lead's.

    A model best at "what next" (a sequential model on the latest items) is weak at "what else" and so
    ranks low on the geometric mean, yet it is the partner that complements a lead strong at "what
    else": ranking partners by the combined score alone never tried it (issue 26)."""
    specialists: list[_Fitted] = []
    for p, part in enumerate(names if len(names) > 1 else ()):
        top = max(ranked, key=lambda f: f.result.parts[p])
        if top is lead or top in specialists or top.result.parts[p] <= lead.result.parts[p]:
            continue
        specialists.append(top)
        log(f"[select] partner {top.cand.name}: best on {part} ({top.result.parts[p]:.4f} vs the lead's "
            f"{lead.result.parts[p]:.4f}), tried first whatever its ndcg@{config.k} ({top.score:.4f})")
    rest = [f for f in ranked if f is not lead and f not in specialists
            and f.score >= config.partner_min_ratio * lead.score]
    return specialists + rest


def _mix(a: list[np.ndarray], wa: float, b: list[np.ndarray], wb: float) -> list[np.ndarray]:
    out = []
    for x, y in zip(a, b, strict=True):  # wa * x + wb * y, one temporary fewer
        mixed = wa * x
        mixed += wb * y
        out.append(mixed)
    return out


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
    folds, plan = plan_validation(train, config.holdout)
    log(f"[select] validation: {plan.kind}: {plan.reason}")
    if plan.kind == "none":
        return _fallback(train, products, users, weights, num_threads, plan, log,
                         "no validation split possible: " + plan.reason)
    names = ("latest", "random") if plan.kind == "user_holdout" else ("after cut",)
    built = []
    for fit_part, parts in folds:
        prep = prepare(fit_part, products, users, weights, num_threads)
        targets = [build_targets(p, prep.users, prep.items, prep.hist) for p in parts]
        n_eval = int(np.clip(config.eval_cells // max(prep.hist.n_items, 1) // len(folds),
                             config.min_eval_users, config.holdout.max_users))
        keep = _sample_users(np.unique(np.concatenate([t.users for t in targets])), n_eval, config.holdout.seed)
        built.append(_Fold(prep, [_restrict(t, keep) for t in targets], config.k))
    val = _Validator(built, names)
    if val.n_users < config.min_val_users:
        return _fallback(train, products, users, weights, num_threads, plan, log,
                         f"only {val.n_users} validation users (need {config.min_val_users})")
    shape = built[0].prep.shape
    budget = config.budget(shape) * len(folds)
    log(f"[select] fit part {len(folds[0][0])} rows; {val.n_users} validation users"
        + (f" over {len(folds)} folds" if len(folds) > 1 else "")
        + f" scored on {' + '.join(names)}; work budget {budget:.0f} reference s from the data's shape")
    search = _Search(val, config, budget, log)
    # Blending and recency are worth more than one more family or tuning step: keep their work.
    n_recency = len(config.decay_grid) + len(config.boost_grid) + 1 + len(config.repeat_grid)
    reserve = search.eval_cost * (len(config.blend_grid) * config.partners_per_round * (config.max_components - 1)
                                  + 2 * n_recency)

    # 1. Every family at its default, in the configured order (popularity always: the reference).
    for cand in config.candidates:
        if cand.family == "popularity" and cand.config.half_life_fraction > 0 and plan.kind != "global_cut":
            reason = "trending needs a shared clock (the validation is a per-user holdout)"
            search.row(cand.name, None, skipped=reason)
            log(f"[select] skip {cand.name}: {reason}")
            continue
        search.evaluate(cand, reserve=0.0 if cand.family == "popularity" else min(reserve, budget / 2))
    if not search.fitted:
        return _fallback(train, products, users, weights, num_threads, plan, log, "no candidate could be fitted")
    pop_fit = search.fitted.get(Candidate("popularity", PopularityConfig()))
    pop_score = pop_fit.score if pop_fit else 0.0

    # 2. Tune each family, best first, while the budget lasts (keeping what blending and recency need).
    families = sorted({c.family for c in search.fitted}, key=lambda f: -search.best_of(f).score)
    if config.tune:
        for family in families:
            if FAMILIES[family].search_axes:
                search.tune(search.best_of(family), reserve)

    # 3. Forward stepwise blend: each round adds the family (at the weight) that helps most.
    ranked = sorted((search.best_of(f) for f in families), key=lambda f: -f.score)
    lead = _lead(ranked, config, log)
    ranked = [lead, *(f for f in ranked if f is not lead)]
    best = lead.result
    recipe = Recipe([lead.refit], [1.0])
    members = [lead]
    current = search.scores_of(lead)
    partners = _partners(lead, ranked, names, config, log)
    while partners and len(members) < config.max_components:
        trying = partners[: config.partners_per_round]
        if not search.affordable(len(config.blend_grid) * len(trying) * search.eval_cost):
            log("[select] blending stopped: work budget spent")
            break
        gain = None
        for other in trying:
            other_scores = search.scores_of(other)
            for w in config.blend_grid:
                weights_ = [*(x * (1 - w) for x in recipe.weights), w]
                name = Ensemble([*(m.models[0] for m in members), other.models[0]], weights_).name
                trial = search.measure(name, "blend", _mix(current, 1 - w, other_scores, w))
                if search.better(trial, best if gain is None else gain[0]):
                    gain = (trial, other, w, weights_)
        if gain is None:
            log(f"[select] blend: no partner of {', '.join(o.cand.name for o in trying)} beats "
                f"{search.describe(best)} by {config.min_gain:g}x and {config.min_z:g} standard errors")
            break
        log(f"[select] blend keeps {gain[1].cand.name} at weight {gain[2]:g}: {search.describe(gain[0])}, "
            f"was {search.describe(best)}")
        best, other, w, weights_ = gain
        current = _mix(current, 1 - w, search.scores_of(other), w)
        recipe = Recipe([*recipe.candidates, other.refit], weights_)
        members.append(other)
        partners.remove(other)

    # 4. Recency weighting of profiles, then the repeat knob, on the blend.
    def combined(half_life: float, boost: float) -> list[np.ndarray]:
        if half_life == 0:
            return current
        search.spent += search.eval_cost * len(members)
        return [sum(w * fold.component(m.models[j], half_life, boost)
                    for m, w in zip(members, recipe.weights, strict=True))
                for j, fold in enumerate(val.folds)]

    def recency_name(half_life: float, boost: float) -> str:
        return Ensemble([m.models[0] for m in members], recipe.weights, half_life, recency_boost=boost).name

    guarded_part = names.index("random") if plan.kind == "user_holdout" else None
    no_recency = best
    if config.recency_default is not None and search.affordable(search.eval_cost * (len(members) + 1)):
        # A mild boost of the latest items is the prior ("what next" gains, "what else" keeps): kept
        # unless validation shows it hurting.
        h, b = config.recency_default
        trial = search.measure(recency_name(h, b), "recency default", combined(h, b))
        hurts = no_recency.beats(trial, 1.0, config.min_z) or (
            guarded_part is not None and trial.costs_part(no_recency, guarded_part, config.recency_guard))
        if not hurts:
            best = trial
            recipe = replace(recipe, decay_half_life=h, recency_boost=b)
    decays = config.decay_grid if plan.kind == "global_cut" else ()
    options = [(h, 0.0) for h in decays] + list(config.boost_grid)
    for half_life, boost in options:
        if (half_life, boost) == config.recency_default:
            continue
        if not search.affordable(search.eval_cost * (len(members) + 1)):
            log("[select] recency tuning stopped: work budget spent")
            break
        trial = search.measure(recency_name(half_life, boost), "recency", combined(half_life, boost))
        guarded = guarded_part is not None and trial.costs_part(no_recency, guarded_part, config.recency_guard)
        if search.better(trial, best) and not guarded:
            best = trial
            recipe = replace(recipe, decay_half_life=half_life, recency_boost=boost)
    if not all(f.prep.hist.strong.all() for f in val.folds):  # some items stay showable: show them again?
        base = combined(recipe.decay_half_life, recipe.recency_boost)
        for r in config.repeat_grid:
            if not search.affordable(search.eval_cost):
                break
            name = Ensemble([m.models[0] for m in members], recipe.weights, recipe.decay_half_life, r,
                            recency_boost=recipe.recency_boost).name
            again = [b_ + r * fold.repeat(recipe.decay_half_life, recipe.recency_boost)
                     for b_, fold in zip(base, val.folds, strict=True)]
            trial = search.measure(name, "repeat", again)
            if search.better(trial, best):
                best = trial
                recipe = replace(recipe, repeat_weight=r)
    # The refit may continue from these fits (the first fold's, on its item ids) where the family can.
    recipe = replace(recipe, warm_from={j: (m.models[0], val.folds[0].prep.items.ids) for j, m in enumerate(members)
                                        if type(m.models[0]).warm_start is not Model.warm_start})
    chosen = Ensemble([m.models[0] for m in members], recipe.weights, recipe.decay_half_life, recipe.repeat_weight,
                      recency_boost=recipe.recency_boost)
    log(f"[select] chosen {chosen.name}: validation {search.describe(best)} vs popularity {pop_score:.4f}; "
        f"work {search.spent:.0f} of {budget:.0f} reference s ({time.perf_counter() - t0:.1f}s)")
    return SelectionResult(recipe, search.table, best.value, pop_score, [], plan, names,
                           dict(zip(names, best.parts, strict=True)), budget, search.spent, val.n_users)


def _sample_users(users: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(users) <= n:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, n, replace=False))


def _restrict(t: Targets, keep: np.ndarray) -> Targets:
    idx = np.flatnonzero(np.isin(t.users, keep))
    return Targets(t.users[idx], [t.relevant[i] for i in idx], t.n_relevant[idx], t.cold_relevant, t.cold_n_relevant)


def _fallback(train: pd.DataFrame, products: pd.DataFrame | None, users: pd.DataFrame | None, weights: Any,
              num_threads: int, plan: ValidationPlan, log: Callable[[str], None], why: str) -> SelectionResult:
    """No selection possible: say so, and use the strongest model that fits the data size."""
    shape = prepare(train, products, users, weights, num_threads).shape
    cand = strongest_fitting(shape)
    note = f"selection did not run ({why}); using {cand.name}, the strongest model that fits {shape.n_items} items"
    log(f"[select] {note}")
    plan = replace(plan, kind="none") if plan.kind != "none" else plan
    return SelectionResult(Recipe([cand], [1.0]), [], float("nan"), float("nan"), [note], plan)


def fit_recipe(recipe: Recipe, prep: Prepared) -> Ensemble:
    """Refit the recipe's models on the full training data (continuing from selection's fit where the
    family supports it: ``Recipe.warm_from``)."""
    X = prep.hist.matrix()
    pop = FAMILIES["popularity"]().fit(X, prep.ctx).pop
    models = []
    for j, c in enumerate(recipe.candidates):
        model = c.build()
        if j in recipe.warm_from:
            fitted, item_ids = recipe.warm_from[j]
            model.warm_start(fitted, IdMap(np.asarray(item_ids)).index(prep.items.ids))
        models.append(model.fit(X, prep.ctx))
    return Ensemble(models, list(recipe.weights), recipe.decay_half_life, recipe.repeat_weight, pop,
                    recency_boost=recipe.recency_boost)


__all__ = ["Candidate", "Recipe", "SelectionConfig", "SelectionResult", "default_candidates", "fit_recipe",
           "prepare", "select", "strongest_fitting"]
