"""SASRec on logs whose answer depends on order, which no set-based family can see.

Small nets (dim 16, one block) and few epochs: each test trains in seconds, most of it JAX compiling
the training step once per sequence-length bucket.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from recsys_core.models import FAMILIES, DataShape, FitContext
from recsys_core.models.sasrec import SASRec, SASRecConfig, forward, init_params, user_sequences
from recsys_core.prepare import prepare
from recsys_core.selection import Candidate, Recipe, SelectionConfig, fit_recipe, select

from .conftest import make_log

N_CYCLE = 12
SMALL = SASRecConfig(dim=16, blocks=1, max_len=8, dropout=0.1, learning_rate=5e-3, epochs=40, min_nnz=0,
                     batch_tokens=256)


@pytest.fixture(scope="module")
def chains():
    """Every user walks a cycle of 12 items from a random start, 5-7 steps, one item per step: the next
    item is always the successor of the last one. Every item is as popular and co-occurs with its
    neighbours on both sides, so a set-based model cannot tell the successor from the predecessor."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(150):
        start, steps = int(rng.integers(N_CYCLE)), int(rng.integers(5, 8))
        rows += [(f"u{u}", f"i{(start + s) % N_CYCLE}", "purchase", None, s) for s in range(steps)]
    return prepare(make_log(rows), num_threads=1)


def successor(prep, item: int) -> int:
    """Index of the item after ``item`` on the cycle."""
    return prep.items.index_one(f"i{(int(str(prep.items.ids[item])[1:]) + 1) % N_CYCLE}")


@pytest.fixture(scope="module")
def chain_model(chains):
    return SASRec(SMALL).fit(chains.hist.matrix(), chains.ctx)


def test_next_item_is_the_successor_of_the_last(chains, chain_model):
    n = chains.hist.n_items
    hits = 0
    for u in range(40):
        seq = chains.hist.sequence(u)
        row = chains.hist.matrix()[u]
        scores = chain_model.score_row(row.indices, row.data, u, n, sequence=seq)
        scores[seq] = -np.inf  # the user's own items are excluded when serving
        hits += int(np.argmax(scores) == successor(chains, int(seq[-1])))
    assert hits >= 36, f"successor ranked first for {hits} of 40 users"


def test_same_items_in_another_order_get_another_answer(chains, chain_model):
    """Order is the signal: the same two items answer with the successor of whichever came last."""
    n = chains.hist.n_items
    items = chains.items.index(["i7", "i3"])
    for seq, want in ((items, "i4"), (items[::-1], "i8")):
        scores = chain_model.score_row(np.sort(items), np.ones(2, np.float32), -1, n, sequence=seq)
        scores[items] = -np.inf
        assert chains.items.ids[int(np.argmax(scores))] == want


def test_numpy_forward_equals_the_jax_training_graph():
    """Serving runs ``forward`` on numpy, training differentiates the same function on jax.numpy."""
    jnp = pytest.importorskip("jax.numpy")
    cfg = SASRecConfig(dim=8, heads=2, blocks=2, max_len=6)
    params = init_params(20, cfg, seed=3)
    seqs = np.array([[0, 0, 3, 7, 1, 20], [0, 0, 0, 0, 0, 5], [4, 4, 9, 2, 11, 13]], dtype=np.int32)
    with_np = forward(params, seqs)
    with_jax = np.asarray(forward({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(seqs), jnp))
    np.testing.assert_allclose(with_np, with_jax, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(forward(params, seqs, last_only=True), with_np[:, -1], rtol=1e-5, atol=1e-6)


def test_left_padding_changes_nothing():
    """A sequence padded to any length reads as itself: padding is masked in attention and zeroed."""
    cfg = SASRecConfig(dim=8, heads=2, blocks=2, max_len=10)
    params = init_params(30, cfg, seed=1)
    short = np.array([[5, 9, 2]], dtype=np.int32)
    padded = np.array([[0, 0, 0, 0, 0, 5, 9, 2]], dtype=np.int32)
    # positions are right-aligned: the newest item always has the last position embedding
    np.testing.assert_allclose(forward(params, short, last_only=True), forward(params, padded, last_only=True),
                               rtol=1e-5, atol=1e-6)


def test_early_stopping_on_the_validation_split_fixes_the_refit_epochs(chains):
    """With the selection's validation (users and their next items) the fit keeps its best epoch, and the
    refit repeats that many epochs on all rows."""
    users = np.arange(30)
    nxt = [np.array([successor(chains, int(chains.hist.sequence(u)[-1]))]) for u in users]
    ctx = replace(chains.ctx, validation=(users, nxt))
    cfg = replace(SMALL, epochs=0, max_epochs=30, eval_every=2, patience=3)
    model = SASRec(cfg).fit(chains.hist.matrix(), ctx)
    log = model.fit_log
    assert 0 < log["best_epoch"] <= log["epochs_run"] <= 30
    assert log["validation_ndcg"] > 0.5
    assert model.refit_config().epochs == log["best_epoch"]
    assert SASRec(SMALL).refit_config() == SMALL  # a fixed epoch count stays as configured


def test_saved_state_reproduces_scores(chains, chain_model):
    clone = SASRec.from_state(SMALL, chain_model.state())
    users = np.arange(5)
    seqs = chains.hist.sequences(users, SMALL.max_len)
    rows = chains.hist.matrix()[users]
    np.testing.assert_array_equal(clone.score(rows, users, sequences=seqs),
                                  chain_model.score(rows, users, sequences=seqs))


def test_user_sequences_keep_the_newest_items_oldest_first(chains):
    indptr, items = user_sequences(chains.hist.matrix(), chains.hist.recency, 4)
    for u in range(10):
        np.testing.assert_array_equal(items[indptr[u]:indptr[u + 1]], chains.hist.sequence(u, 4))


def test_declines_logs_too_small_or_too_big_with_a_reason():
    cfg = SASRecConfig()
    assert "min_nnz" in SASRec.fits(cfg, DataShape(100, 50, 500))
    assert "max_items" in SASRec.fits(cfg, DataShape(10**6, 10**7, 10**8))
    assert SASRec.fits(cfg, DataShape(20_000, 12_000, 130_000)) is None
    assert "min_nnz" in SASRec.fits(cfg, DataShape(2_000, 500, 40_000))  # make run's generated log
    # full softmax costs ~ items, sampled ~ negatives: a big catalogue switches to sampled
    big = DataShape(10**6, 10**6, 10**7)
    assert SASRec.cost(cfg, big) < SASRec.cost(replace(cfg, loss="full"), big) / 10
    assert FAMILIES["sasrec"] is SASRec


def test_without_a_validation_split_it_holds_out_each_users_last_item(chains):
    model = SASRec(replace(SMALL, epochs=0, max_epochs=4, eval_every=2)).fit(chains.hist.matrix(), chains.ctx)
    assert model.fit_log["best_epoch"] in (2, 4)


def test_a_fixed_epoch_count_trains_on_every_item(chains, monkeypatch):
    """The refit after selection holds nothing out: each user's newest item is the most telling one."""
    from recsys_core.models import sasrec

    seen = {}

    def spy(seqs, n_items, config, seed, popularity, validation, init=None):  # noqa: ANN001, ANN202
        seen["positions"], seen["validation"] = sum(len(s) - 1 for s in seqs), validation
        return sasrec.init_params(n_items, config, seed), {}

    monkeypatch.setattr(sasrec, "_train", spy)
    SASRec(replace(SMALL, epochs=3)).fit(chains.hist.matrix(), chains.ctx)
    assert seen["positions"] == chains.hist.nnz - chains.hist.n_users  # every item but each user's first
    assert seen["validation"][0] == []
    SASRec(replace(SMALL, epochs=0)).fit(chains.hist.matrix(), chains.ctx)  # early stopping: last items held out
    assert seen["positions"] == chains.hist.nnz - 2 * chains.hist.n_users


def test_needs_each_users_order():
    X = sp.csr_matrix(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="order"):
        SASRec(SMALL).fit(X, FitContext())


def test_early_stopping_ndcg_is_computed_in_row_batches_with_the_same_result():
    """Validation scoring never holds a users x catalogue matrix (4,000 users x 1M items = 16 GB)."""
    from recsys_core.models.sasrec import _ndcg_at_10

    rng = np.random.default_rng(0)
    q, items = rng.standard_normal((50, 4)).astype(np.float32), rng.standard_normal((30, 4)).astype(np.float32)
    targets = [rng.choice(30, int(rng.integers(0, 3)), replace=False) for _ in range(50)]
    exclude = sp.random(50, 30, density=0.1, format="csr", random_state=1)
    whole = _ndcg_at_10(q, items, targets, exclude)
    assert _ndcg_at_10(q, items, targets, exclude, batch_cells=30 * 7) == pytest.approx(whole, abs=1e-12)
    # one user, target ranked first: NDCG 1
    best = int(np.argmax(items @ q[0]))
    assert _ndcg_at_10(q[:1], items, [np.array([best])], None) == pytest.approx(1.0)


def test_selection_log_says_where_early_stopping_stopped():
    """The training log's line for SASRec carries its fit's own account: the epoch early stopping kept,
    its validation NDCG and the rate (the refit continues from it for a share of that many epochs)."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(300):
        start, steps = int(rng.integers(N_CYCLE)), int(rng.integers(6, 9))
        rows += [(f"u{u}", f"i{(start + s) % N_CYCLE}", "purchase", None, s) for s in range(steps)]
    cand = Candidate("sasrec", replace(SMALL, epochs=0, max_epochs=12, patience=2))
    config = SelectionConfig(candidates=(Candidate("popularity", FAMILIES["popularity"].Config()), cand),
                             tune=False, max_components=1)
    said: list[str] = []
    select(make_log(rows), None, None, config, num_threads=1, log=said.append)
    line = next(x for x in said if x.startswith("[select] sasrec"))
    assert "early stopping kept epoch" in line and "positions/s" in line, line
    # its epoch cap, the work it was charged, and that the refit continues from it
    assert "(at most " in line and "reference s" in line and "continues from it" in line, line


def test_the_refit_continues_from_the_selection_fit_on_a_share_of_its_epochs(chains, chain_model, monkeypatch):
    """A warm-started refit starts from the selection's weights (fresh rows for items that fit never saw) and
    trains ``warm_refit_share`` of the epochs early stopping chose, not all of them again (issue 26: the
    retrain from scratch doubled SASRec's ~1.5 h on Toys under load)."""
    from recsys_core.models import sasrec

    n = chains.hist.n_items
    rows = np.arange(n)
    rows[3] = -1  # an item the selection's fit part did not have
    seen = {}

    def spy(seqs, n_items, config, seed, popularity, validation, init=None):  # noqa: ANN001, ANN202
        seen["epochs"], seen["init"] = config.epochs, init
        return {**(init or sasrec.init_params(n_items, config, seed))}, {"epochs_run": config.epochs, "seconds": 0.0,
                                                                 "positions_per_second": 0, "loss": "full"}

    monkeypatch.setattr(sasrec, "_train", spy)
    refit = SASRec(replace(SMALL, epochs=40, warm_refit_share=0.25))
    assert refit.warm_start(chain_model, rows)
    refit.fit(chains.hist.matrix(), chains.ctx)
    assert seen["epochs"] == 10
    item, old = seen["init"]["item"], chain_model.params["item"]
    np.testing.assert_array_equal(item[1 + np.flatnonzero(rows >= 0)], old[1 + rows[rows >= 0]])
    assert not np.array_equal(item[1 + 3], old[1 + 3]) and np.abs(item[1 + 3]).sum() > 0
    assert "warm-started" in refit.fit_note()
    refit.fit(chains.hist.matrix(), chains.ctx)  # a second fit starts afresh and trains every epoch
    assert seen["epochs"] == 40 and seen["init"] is None
    assert not SASRec(replace(SMALL, dim=8)).warm_start(chain_model, rows)  # another architecture: from scratch


def test_fit_recipe_warm_starts_the_members_selection_fitted(chains, chain_model):
    """The recipe's ``warm_from`` (what ``select`` fitted, on its item ids) reaches the refit, and the warm
    refit still ranks the successor first."""
    recipe = Recipe([Candidate("sasrec", replace(SMALL, epochs=20))], [1.0],
                    warm_from={0: (chain_model, chains.items.ids)})
    model = fit_recipe(recipe, chains).models[0]
    assert model.fit_log["warm"] and model.fit_log["epochs_run"] == 5
    n, hits = chains.hist.n_items, 0
    for u in range(40):
        seq = chains.hist.sequence(u)
        row = chains.hist.matrix()[u]
        scores = model.score_row(row.indices, row.data, u, n, sequence=seq)
        scores[seq] = -np.inf
        hits += int(np.argmax(scores) == successor(chains, int(seq[-1])))
    assert hits >= 36, f"successor ranked first for {hits} of 40 users"


def test_the_epoch_cap_follows_the_work_left_and_the_charge_the_epochs_run(chain_model):
    """Selection gives SASRec at most the epochs the work budget left pays for (one fit must not starve the
    blend and recency steps) and charges the epochs it actually ran, not the typical count ``cost`` assumes."""
    shape = DataShape(20_000, 12_000, 130_000)
    cfg = SASRecConfig()
    caps = [SASRec.bounded(cfg, shape, r).max_epochs for r in (0.0, 100.0, 300.0, 1e9)]
    assert caps[0] == cfg.eval_every and caps == sorted(caps) and caps[-1] == cfg.max_epochs
    capped = replace(cfg, max_epochs=caps[2])
    assert SASRec.cost(replace(capped, epochs=capped.max_epochs), shape) <= 300.0 + 1e-6
    assert SASRec.bounded(replace(cfg, epochs=7), shape, 0.0).epochs == 7  # a fixed count is the refit's: as is
    ran = chain_model.fit_log["epochs_run"]
    assert chain_model.charged(shape) == pytest.approx(SASRec.cost(replace(chain_model.config, epochs=ran), shape))


def test_predict_fn_serves_a_blend_with_sasrec_as_the_batch_path_ranks(chains, chain_model, tmp_path):
    """inference.py scores a recipe with SASRec in it (issue 26: the blend may now choose it): a saved bundle's
    personalised answers are the top items of ``Ensemble.score`` on the shopper's profile and sequence."""
    import inference
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.ensemble import top_k
    from recsys_core.features import item_popularity
    from recsys_core.models.ease import EASEConfig

    recipe = Recipe([Candidate("ease", EASEConfig()), Candidate("sasrec", replace(SMALL, epochs=4))], [0.6, 0.4],
                    warm_from={1: (chain_model, chains.items.ids)})
    ens = fit_recipe(recipe, chains)
    pop = item_popularity(chains.hist)
    Bundle("seq-v1", chains.users, chains.items, chains.hist, ens, recipe_doc(recipe.candidates, recipe.weights),
           pop / pop.max(), chains.item_features.category, chains.item_features.category_names).save(tmp_path)
    served = inference.model_fn(str(tmp_path))
    strong = chains.hist.matrix(chains.hist.strong.astype(np.float32)).tocsr()
    profiles = ens.profiles(chains.hist)
    for u in range(0, 60, 7):
        resp = inference.predict_fn({"user_id": str(chains.users.ids[u]), "k": 3}, served)
        assert resp["strategy"] == "personalized"
        users = np.array([u])
        scores = ens.score(profiles[u], users, sequences=chains.hist.sequences(users, SMALL.max_len))
        want = top_k(np.vstack([scores, scores]), 3, sp.vstack([strong[u], strong[u]]).tocsr())[0]
        assert [r["product_id"] for r in resp["recommendations"]] == [str(chains.items.ids[i]) for i in want]
