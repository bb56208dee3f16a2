"""The scoring interface every model family implements (``score``/``score_row`` with ``sequences``,
``sequence`` and ``candidates``), checked by one mixin run on every family in ``FAMILIES``.

A new family gets these checks by adding a ``Test<Family>`` subclass below; a test fails when a
registered family has none.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
from recsys_core.models import FAMILIES, Model

N_USERS, N_ITEMS = 120, 90


@pytest.fixture(scope="module")
def prep():
    from recsys_core.data import clean_interactions
    from recsys_core.prepare import prepare
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    tables = synthetic_tables(SyntheticConfig(n_users=N_USERS, n_items=N_ITEMS, events_per_user=12, seed=3))
    clean, _ = clean_interactions(tables["interactions"])
    return prepare(clean, tables["products"], tables["users"], num_threads=1)


def _rows(prep) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Profile rows as the server sends them: known users (own factor), the same rows folded in, a
    non-canonical session row (duplicates, unsorted) and an empty row."""
    X = prep.hist.matrix()
    out = []
    for u in (0, 7, 33, N_USERS - 1):
        row = X[u]
        out += [(row.indices, row.data, u), (row.indices, row.data, -1)]
    out.append((np.array([5, 2, 5, 40], np.int32), np.ones(4, np.float32), -1))
    out.append((np.zeros(0, np.int32), np.zeros(0, np.float32), -1))
    return out


class ScoringInterfaceMixin:
    """What the server and retrieval rely on, for one family: subclasses set ``family`` and ``config``."""

    family: ClassVar[str]
    config: ClassVar[Any] = None
    #: Embedding models' candidate scores come from a BLAS product over fewer rows, which may sum in
    #: another order than the full product: equal to float32 rounding (this share of the row's largest
    #: magnitude), not bit for bit. 0 = bit for bit.
    candidate_tolerance: ClassVar[float] = 0.0

    @pytest.fixture(scope="class")
    def model(self, prep) -> Model:
        cls = FAMILIES[self.family]
        return cls(self.config if self.config is not None else cls.Config()).fit(prep.hist.matrix(), prep.ctx)

    def test_score_row_equals_score(self, model, prep):
        """No keywords: the one-row serving path equals batch scoring (as before the interface)."""
        n = prep.hist.n_items
        for indices, data, user in _rows(prep):
            row = sp.csr_matrix((data, indices, np.array([0, len(indices)])), shape=(1, n))
            np.testing.assert_allclose(model.score_row(indices, data, user, n), model.score(row, np.array([user]))[0],
                                       rtol=0, atol=1e-9)

    def test_candidates_score_as_the_full_row_at_their_positions(self, model, prep):
        n = prep.hist.n_items
        rng = np.random.default_rng(1)
        for indices, data, user in _rows(prep):
            full = model.score_row(indices, data, user, n)
            for cand in (rng.permutation(n)[:17], np.array([3, 3, 0, n - 1]), np.arange(n)[::-1], np.zeros(0, int)):
                got = model.score_row(indices, data, user, n, candidates=cand)
                assert got.shape == (len(cand),)
                atol = self.candidate_tolerance * float(np.abs(full).max(initial=0.0))
                np.testing.assert_allclose(got, full[cand], rtol=0, atol=atol)

    def test_sequences_are_accepted_everywhere(self, model, prep):
        """``sequences``/``sequence`` reach the model; a model that reads none scores exactly as without."""
        n, users = prep.hist.n_items, np.array([0, 7, -1])
        seqs = prep.hist.sequences(users, 5)
        rows = prep.hist.matrix()[[0, 7, 8]]
        with_seq = model.score(rows, users, sequences=seqs)
        assert with_seq.shape == (3, n)
        row = prep.hist.matrix()[7]
        one = model.score_row(row.indices, row.data, 7, n, sequence=prep.hist.sequence(7, 5))
        assert one.shape == (n,)
        if model.sequence_length == 0:
            np.testing.assert_array_equal(with_seq, model.score(rows, users))
            np.testing.assert_array_equal(one, model.score_row(row.indices, row.data, 7, n))


class TestPopularity(ScoringInterfaceMixin):
    family = "popularity"


class TestItemKNN(ScoringInterfaceMixin):
    family = "item_knn"


class TestRP3beta(ScoringInterfaceMixin):
    family = "rp3beta"


class TestEASE(ScoringInterfaceMixin):
    family = "ease"


class TestUserKNN(ScoringInterfaceMixin):
    family = "user_knn"


class TestUserKNNFewNeighbours(ScoringInterfaceMixin):
    family = "user_knn"

    @classmethod
    def setup_class(cls) -> None:
        from recsys_core.models.user_knn import UserKNNConfig

        cls.config = UserKNNConfig(k=5)


class TestMF(ScoringInterfaceMixin):
    family = "mf"
    candidate_tolerance = 1e-6

    @classmethod
    def setup_class(cls) -> None:
        from recsys_core.models.mf import MFConfig

        cls.config = MFConfig("als", factors=8, iterations=3)

    def test_scores_are_item_vectors_times_the_query_vector(self, model, prep):
        n = prep.hist.n_items
        Y = model.item_vectors()
        assert Y.dtype == np.float32 and Y.shape[0] == n
        for indices, data, user in _rows(prep):
            q = model.query_vector(indices, data, user)
            assert q.shape == (Y.shape[1],)
            np.testing.assert_allclose(Y @ q, model.score_row(indices, data, user, n), rtol=1e-5, atol=1e-6)


class TestBPR(TestMF):
    @classmethod
    def setup_class(cls) -> None:
        from recsys_core.models.mf import MFConfig

        cls.config = MFConfig("bpr", factors=8, iterations=2)


class TestContent(ScoringInterfaceMixin):
    family = "content"


class TestSegmentPop(ScoringInterfaceMixin):
    family = "segment_pop"


class TestSequenceNeighbours(ScoringInterfaceMixin):
    family = "sequence"


def test_every_family_runs_the_mixin():
    covered = {cls.family for cls in ScoringInterfaceMixin.__subclasses__()}
    covered |= {sub.family for cls in ScoringInterfaceMixin.__subclasses__() for sub in cls.__subclasses__()}
    assert set(FAMILIES) <= covered, f"families without a ScoringInterfaceMixin test: {set(FAMILIES) - covered}"


# ------------------------------------------------------------------ sequences and the ensemble
def test_history_sequence_is_oldest_to_newest(prep):
    h = prep.hist
    for u in range(h.n_users):
        lo, hi = h.indptr[u], h.indptr[u + 1]
        seq = h.sequence(u)
        rec = dict(zip(h.indices[lo:hi].tolist(), h.recency[lo:hi].tolist(), strict=True))
        assert sorted(seq.tolist()) == sorted(h.indices[lo:hi].tolist())
        assert [rec[i] for i in seq.tolist()] == sorted(rec.values(), reverse=True)  # recency 0 (newest) last
        np.testing.assert_array_equal(h.sequence(u, 3), seq[-3:])


def test_history_sequences_match_one_by_one(prep):
    h = prep.hist
    users = np.array([5, -1, 0, 5, h.n_users - 1])
    for max_len in (0, 1, 4):
        indptr, items = h.sequences(users, max_len)
        for r, u in enumerate(users):
            want = h.sequence(int(u), max_len) if u >= 0 else np.zeros(0, np.int64)
            np.testing.assert_array_equal(items[indptr[r] : indptr[r + 1]], want)


class _SequenceSpy(Model):
    """A model that records the sequences it is given (and scores the last item's index)."""

    family = "spy"
    Config = dict
    seen: list[Any]

    def __init__(self, length: int = 4):
        super().__init__({})
        self.length, self.seen = length, []

    @property
    def sequence_length(self) -> int:
        return self.length

    def fit(self, X, ctx):  # noqa: ANN001, ANN201
        return self

    def score(self, profiles, users, *, sequences=None):  # noqa: ANN001, ANN201
        self.seen.append(sequences)
        return np.ones(profiles.shape, dtype=np.float32)

    def score_row(self, indices, data, user, n_items, *, sequence=None, candidates=None):  # noqa: ANN001, ANN201
        self.seen.append(None if sequence is None else list(sequence))
        out = np.arange(n_items, dtype=np.float32)
        return out if candidates is None else out[candidates]

    def state(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_state(cls, config, state):  # noqa: ANN001, ANN206
        return cls()


def test_ensemble_passes_sequences_and_candidates_through(prep):
    from recsys_core.ensemble import Ensemble, sequences_for

    spy = _SequenceSpy(3)
    pop = FAMILIES["popularity"]().fit(prep.hist.matrix(), prep.ctx)
    ens = Ensemble([spy, pop], [0.5, 0.5], repeat_weight=0.3, popularity=pop.pop)
    assert ens.sequence_length == 3
    users = np.array([2, 4])
    seqs = sequences_for(ens, prep.hist, users)
    ens.score(prep.hist.matrix()[users], users, sequences=seqs)
    assert spy.seen[-1] is seqs
    n = prep.hist.n_items
    row = prep.hist.matrix()[2]
    full = ens.score_row(row.indices, row.data, 2, n, sequence=np.array([9, 8]))
    assert spy.seen[-1] == [9, 8]
    # holding each member's largest-magnitude item (the spy's is the last item): equal to the full row
    cand = np.array([n - 1, 0, 17, int(np.argmax(pop.pop)), *row.indices[:3], n - 1])
    np.testing.assert_array_equal(ens.score_row(row.indices, row.data, 2, n, candidates=cand), full[cand])
    # without popularity's best item its scale is that of the best candidate: an approximation, not equal
    cand = cand[cand != int(np.argmax(pop.pop))]
    assert not np.array_equal(ens.score_row(row.indices, row.data, 2, n, candidates=cand), full[cand])
    assert sequences_for(FAMILIES["popularity"](), prep.hist, users) is None  # nobody reads them: none built


def test_bundle_sends_history_then_session_oldest_to_newest(prep):
    """Known items by recency, then the request's recent_product_ids (sent newest first) reversed;
    a product page or cart: the shopper's items, then the products."""
    from recsys_core.bundle import Bundle
    from recsys_core.ensemble import Ensemble
    from recsys_core.features import item_popularity

    spy = _SequenceSpy(6)
    pop = item_popularity(prep.hist)
    b = Bundle("v", prep.users, prep.items, prep.hist, Ensemble([spy], [1.0]), [], pop / pop.max(),
               prep.item_features.category, prep.item_features.category_names)
    u = 10
    ids = prep.items.ids
    hist_seq = prep.hist.sequence(u).tolist()
    user_id = str(prep.users.ids[u])
    b.recommend(user_id)
    assert spy.seen[-1] == hist_seq[-6:]
    b.recommend(user_id, recent_product_ids=[str(ids[4]), str(ids[1])])  # 4 is the newest
    assert spy.seen[-1] == (hist_seq + [1, 4])[-6:]
    b.recommend("someone-new", recent_product_ids=[str(ids[4]), "unknown", str(ids[1])])
    assert spy.seen[-1] == [1, 4]
    b.recommend(user_id, product_id=str(ids[3]))
    assert spy.seen[-1] == (hist_seq + [3])[-6:]
    b.recommend(None, cart_product_ids=[str(ids[2]), str(ids[5])])
    assert spy.seen[-1] == [2, 5]


class TestSASRec(ScoringInterfaceMixin):
    family = "sasrec"
    candidate_tolerance = 1e-6

    @classmethod
    def setup_class(cls) -> None:
        from recsys_core.models.sasrec import SASRecConfig

        cls.config = SASRecConfig(dim=8, blocks=1, max_len=6, epochs=1, min_nnz=0)

    def test_scores_are_item_vectors_times_the_query_vector(self, model, prep):
        n = prep.hist.n_items
        Y = model.item_vectors()
        assert Y.dtype == np.float32 and Y.shape[0] == n
        for indices, data, user in _rows(prep):
            for seq in (None, prep.hist.sequence(max(user, 0), 6)):
                q = model.query_vector(indices, data, user, seq)
                np.testing.assert_allclose(Y @ q, model.score_row(indices, data, user, n, sequence=seq),
                                           rtol=1e-5, atol=1e-6)
