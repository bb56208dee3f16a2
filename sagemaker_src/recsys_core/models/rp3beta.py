"""RP3beta (Paudel et al. 2017): a 3-step random walk item -> user -> item, with the landing
item's popularity divided out (``beta``) so that the walk does not always end on bestsellers.

W[i, j] = sum_u (x_ui / deg_i)^a (x_uj / deg_u)^a / deg_j^b, top-k per row. Computed with a
symmetric all-pairs search: with B = D_u^(-a/2) X^a D_i^(-b), (B^T B)[i, j] ranks j within row i
exactly like W, and rows are rescaled afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import all_pairs_knn

from .base import DataShape, FitContext, ItemItemModel, drop_diagonal, item_item_cost


@dataclass(frozen=True)
class RP3betaConfig:
    #: Exponent on the interaction values (< 1 flattens heavy repeat interactions).
    alpha: float = 0.6
    #: How much the landing item's popularity is divided out (0 = plain 3-step walk).
    beta: float = 0.2
    #: Neighbours kept per item (the served matrix has items x k entries).
    k: int = 200
    #: Above this many interactions the all-pairs search is not attempted.
    max_nnz: int = 50_000_000


class RP3beta(ItemItemModel):
    family = "rp3beta"
    Config = RP3betaConfig

    @property
    def name(self) -> str:
        c = self.config
        return f"rp3beta(a={c.alpha},b={c.beta},k={c.k})"

    search_axes = (("beta", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)), ("alpha", (0.4, 0.6, 0.8, 1.0)), ("k", (100, 200, 400)))

    @classmethod
    def cost(cls, config: RP3betaConfig, shape: DataShape) -> float:
        return item_item_cost(config.k, shape)

    @classmethod
    def fits(cls, config: RP3betaConfig, shape: DataShape) -> str | None:
        if shape.nnz > config.max_nnz:
            return f"{shape.nnz} interactions > max_nnz {config.max_nnz}"
        return None

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> RP3beta:
        c = self.config
        X = X.tocsr().astype(np.float64)
        deg_u = np.asarray(X.sum(axis=1)).ravel()
        deg_i = np.asarray(X.sum(axis=0)).ravel()
        deg_u[deg_u == 0] = 1.0
        deg_i[deg_i == 0] = 1.0
        Xa = X.copy()
        Xa.data = Xa.data**c.alpha
        B = (sp.diags(deg_u ** (-c.alpha / 2)) @ Xa @ sp.diags(deg_i ** (-c.beta))).tocsr()
        sim = all_pairs_knn(B, c.k + 1, show_progress=False, num_threads=ctx.num_threads).tocsr()
        # (B^T B)[i, j] = W[i, j] * deg_i^(a - b); undo the row factor so rows compare across items.
        sim = (sp.diags(deg_i ** (c.beta - c.alpha)) @ sim).tocsr()
        self.W = drop_diagonal(sim)
        return self
