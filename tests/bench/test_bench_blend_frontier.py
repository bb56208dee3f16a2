"""bench/bench_blend_frontier.py: the blend trade-off is scored on the test rows, per weight, on the bench's splits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_blend_frontier as frontier_bench  # noqa: E402
import public_data as pdata  # noqa: E402


def _cyclic_log(users: int = 80, items: int = 80, per_user: int = 12) -> pd.DataFrame:
    """Each shopper walks the catalogue in order from a random start: what comes next is the next product."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"p{(start + i) % items}", "purchase", "", u * 100 + i)
            for u in range(users) for start in [int(rng.integers(items))] for i in range(per_user)]
    return pd.DataFrame(rows, columns=["user_id", "product_id", "event_type", "rating", "timestamp"])


def test_each_weight_is_scored_on_the_test_rows_and_the_order_model_wins_the_per_user_temporal_test():
    train, test = pdata.split_protocol(_cyclic_log(), "user_temporal")
    bases = [frontier_bench._parse("popularity")]
    add = frontier_bench._parse("sequence(window=1)").members[0]
    got = frontier_bench.frontier(train, test, bases, add, [0.0, 0.5], log=lambda _: None)
    assert set(got) == {"popularity", add.name, "popularity + 0*sequence", "popularity + 0.5*sequence"}
    assert got["popularity + 0*sequence"] == pytest.approx(got["popularity"])
    # the next products follow the last one: the transition model ranks them, popularity cannot
    assert got[add.name] > 2 * got["popularity"]
    assert got["popularity + 0.5*sequence"] > got["popularity"]


def test_a_recipe_it_cannot_read_or_a_weight_out_of_range_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        frontier_bench.main(["--base", "0.5*nosuchfamily"])
    assert "cannot read '0.5*nosuchfamily'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        frontier_bench.main(["--base", "ease", "--weights", "0.2,1.5"])
    assert "want comma-separated values in [0, 1)" in capsys.readouterr().err
