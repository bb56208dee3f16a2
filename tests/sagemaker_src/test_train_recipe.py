"""train.py --recipe: a pinned blend instead of selection, with per-family settings."""

from __future__ import annotations

import argparse

import pytest


def test_recipe_reads_weights_families_and_settings():
    from train import _recipe

    r = _recipe("0.6*item_knn(k=50, shrink=10),0.4*mf(factors=64,method=bpr),rp3beta")
    assert [c.family for c in r.candidates] == ["item_knn", "mf", "rp3beta"]
    assert r.weights == [0.6, 0.4, 1.0]
    assert (r.candidates[0].config.k, r.candidates[0].config.shrink) == (50, 10.0)
    assert (r.candidates[1].config.factors, r.candidates[1].config.method) == (64, "bpr")


@pytest.mark.parametrize("bad", ["0.5*nosuch", "0.5*mf(foo=1)", "x*ease", "0.5*mf(factors=many)"])
def test_a_bad_recipe_is_one_clear_error(bad):
    from train import _recipe

    with pytest.raises((argparse.ArgumentTypeError, ValueError)):
        _recipe(bad)
