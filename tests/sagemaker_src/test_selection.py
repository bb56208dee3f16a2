"""Selection on validation carved from training rows: skips what does not fit, beats popularity."""

from __future__ import annotations

import numpy as np
import pytest
from recsys_core.data import clean_interactions
from recsys_core.models.ease import EASEConfig
from recsys_core.models.item_knn import ItemKNNConfig
from recsys_core.models.popularity import PopularityConfig
from recsys_core.prepare import prepare
from recsys_core.selection import Candidate, SelectionConfig, fit_recipe, select
from recsys_core.split import temporal_split
from recsys_core.synthetic import SyntheticConfig, synthetic_tables

# CPU-bound (selection fits every family on each fold): one such test at a time, so the other worker keeps a core
pytestmark = pytest.mark.xdist_group("selection")


@pytest.fixture(scope="module")
def shop():
    tables = synthetic_tables(SyntheticConfig(n_users=300, n_items=200, events_per_user=20, seed=3))
    clean, _ = clean_interactions(tables["interactions"])
    return temporal_split(clean, 0.2)


CANDIDATES = (
    Candidate("popularity", PopularityConfig()),
    Candidate("item_knn", ItemKNNConfig("cosine", k=50)),
    Candidate("ease", EASEConfig(max_items=10)),
)


def test_selection_skips_models_that_do_not_fit_and_says_why(shop):
    train, _ = shop
    result = select(train, None, None, SelectionConfig(candidates=CANDIDATES), num_threads=1, log=lambda _: None)
    skipped = {row["model"]: row["skipped"] for row in result.table if row["skipped"]}
    assert any("max_items" in reason for reason in skipped.values())
    assert result.recipe.candidates[0].family == "item_knn"
    assert result.val_ndcg > result.popularity_val_ndcg


def test_selection_only_sees_training_rows(shop, monkeypatch):
    import recsys_core.selection as blend

    train, test = shop
    seen = []
    real_prepare = blend.prepare
    monkeypatch.setattr(blend, "prepare", lambda df, *a, **k: seen.append(df["ts"].max()) or real_prepare(df, *a, **k))
    select(train, None, None, SelectionConfig(candidates=CANDIDATES[:2]), num_threads=1, log=lambda _: None)
    assert seen and max(seen) < test["ts"].min()


def test_fitted_recipe_outranks_popularity_on_held_out_test(shop):
    from recsys_core.evaluation import build_targets, evaluate_scores

    train, test = shop
    result = select(train, None, None, SelectionConfig(candidates=CANDIDATES), num_threads=1, log=lambda _: None)
    prep = prepare(train, num_threads=1)
    ens = fit_recipe(result.recipe, prep)
    targets = build_targets(test, prep.users, prep.items, prep.hist)
    prof = ens.profiles(prep.hist)
    model, _ = evaluate_scores(lambda u: ens.score(prof[u], u), prep.hist, targets, 10)
    pop, _ = evaluate_scores(lambda u: ens.popularity[None, :].repeat(len(u), 0), prep.hist, targets, 10)
    assert model["ndcg"] > pop["ndcg"]


def _fitted(family: str, per_user: list[float]):
    from recsys_core.selection import Score, _Fitted

    config = {"ease": EASEConfig(), "item_knn": ItemKNNConfig("cosine", k=50), "popularity": PopularityConfig()}
    values = np.asarray(per_user)
    return _Fitted(Candidate(family, config[family]), [], Score(float(values.mean()), [float(values.mean())], [values]))


def test_the_blend_starts_from_ease_when_the_best_is_not_significantly_better():
    from recsys_core.selection import _lead

    rng = np.random.default_rng(0)
    ease = rng.random(400) * 0.2
    tie = _fitted("item_knn", list(ease * 1.003 + rng.normal(0, 0.05, 400)))  # ahead by noise only
    ranked = sorted([tie, _fitted("ease", list(ease))], key=lambda f: -f.score)
    assert ranked[0].cand.family == "item_knn"
    said: list[str] = []
    assert _lead(ranked, SelectionConfig(), said.append).cand.family == "ease"
    assert said and "not significantly better" in said[0]
    clear = _fitted("item_knn", list(ease * 1.5))  # better for every user: it leads
    assert _lead([clear, ranked[1]], SelectionConfig(), said.append) is clear
    assert _lead(ranked, SelectionConfig(lead_prior=None), said.append) is ranked[0]


def _two_parts(family: str, latest: np.ndarray, random: np.ndarray):
    from recsys_core.models.rp3beta import RP3betaConfig
    from recsys_core.models.sasrec import SASRecConfig
    from recsys_core.selection import Score, _Fitted

    config = {"ease": EASEConfig(), "item_knn": ItemKNNConfig("cosine", k=50), "rp3beta": RP3betaConfig(),
              "sasrec": SASRecConfig()}
    parts = [float(latest.mean()), float(random.mean())]
    return _Fitted(Candidate(family, config[family]), [], Score(float(np.sqrt(parts[0] * parts[1])), parts,
                                                              [latest, random]))


def test_the_best_model_on_a_validation_part_is_tried_as_a_partner_first():
    """A sequential model best at "what next" but weak at "what else" ranks last on the geometric mean; it is
    still the first partner tried, ahead of generalists like the lead (issue 26: on Toys it was never tried)."""
    from recsys_core.selection import _partners

    rng = np.random.default_rng(0)
    base = rng.random(500) * 0.1
    lead = _two_parts("ease", base * 0.9, base * 1.5)
    rp3 = _two_parts("rp3beta", base * 0.92, base * 1.45)
    knn = _two_parts("item_knn", base * 0.88, base * 1.4)
    seq = _two_parts("sasrec", base * 1.15, base * 0.85)
    ranked = sorted([lead, rp3, knn, seq], key=lambda f: -f.score)
    assert ranked[-1] is seq  # last on the objective
    said: list[str] = []
    config = SelectionConfig()
    partners = _partners(lead, ranked, ("latest", "random"), config, said.append)
    assert partners[0] is seq and lead not in partners
    assert any("best on latest" in line and "sasrec" in line for line in said), said
    # one validation part (a global time cut): partners by the objective only, as before
    assert _partners(lead, ranked, ("after cut",), config, said.append)[0] is rp3
    # a part where the lead is best names no specialist: none beats it on "random"
    assert not any("best on random" in line for line in said)
