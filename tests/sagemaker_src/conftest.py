"""Shared fixtures: tiny logs with obvious right answers. sagemaker_src is imported as SageMaker does
(its folder on sys.path), never as a package of this repo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
SRC = Path(__file__).resolve().parents[2] / "sagemaker_src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def make_log(rows: list[tuple[str, str, str, float | None, int]]) -> pd.DataFrame:
    """Clean interactions from (user, item, event, rating, epoch-seconds) tuples."""
    return pd.DataFrame(rows, columns=["user_id", "product_id", "event_type", "rating", "ts"]).astype(
        {"rating": "float64", "ts": "float64"}
    )


@pytest.fixture
def two_groups() -> pd.DataFrame:
    """Users u0-u9 interact only with items a0-a4, users v0-v9 only with b0-b4.

    Within a group each user has each item independently (seeded), so items of one group
    co-occur positively and never with the other group's items.
    """
    rng = np.random.default_rng(7)
    rows = []
    t = 0
    for group, prefix in (("u", "a"), ("v", "b")):
        for n in range(10):
            owned = np.nonzero(rng.random(5) < 0.6)[0]
            if len(owned) < 2:
                owned = np.array([n % 5, (n + 1) % 5])
            for item in owned:
                t += 1
                rows.append((f"{group}{n}", f"{prefix}{item}", "purchase", None, t))
    return make_log(rows)
