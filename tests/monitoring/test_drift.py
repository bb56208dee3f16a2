"""Drift is ~0 for identical traffic and large when the category mix or prices shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import drift_score, psi, split_by_time


def _traffic(seed: int, sarees_share: float, price_scale: float = 1.0, n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    category = np.where(rng.random(n) < sarees_share, "Sarees", "Kurtis")
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 400, n).astype(str),
            "category": category,
            "price": rng.lognormal(6.0, 0.5, n) * price_scale,
            "timestamp": np.arange(n),
        }
    )


def test_identical_data_has_zero_drift():
    ref = _traffic(1, 0.5)
    report = drift_score(ref, ref.copy())
    assert report.score == pytest.approx(0.0, abs=1e-9)


def test_same_distribution_resampled_stays_below_moderate():
    assert drift_score(_traffic(1, 0.5), _traffic(2, 0.5)).score < 0.1


def test_shifted_category_mix_is_a_major_drift_named_by_feature():
    report = drift_score(_traffic(1, 0.5), _traffic(2, 0.95))
    assert report.score > 0.25
    assert report.worst_feature == "category_mix"


def test_price_shift_is_detected_on_its_own():
    report = drift_score(_traffic(1, 0.5), _traffic(2, 0.5, price_scale=2.0))
    assert report.per_feature["price"] > 1.0 and report.per_feature["category_mix"] < 0.01


def test_psi_floors_empty_bins_instead_of_infinity():
    assert np.isfinite(psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="price"):
        drift_score(pd.DataFrame({"user_id": ["a"], "category": ["x"]}), _traffic(1, 0.5))


def test_split_by_time_keeps_the_latest_fifth_as_current():
    ref, cur = split_by_time(_traffic(1, 0.5, n=100).iloc[::-1])
    assert len(cur) == 20 and cur["timestamp"].min() > ref["timestamp"].max()


def test_activity_drift_does_not_depend_on_window_length():
    """Steady shoppers (1 to 5 events a day each) in a 10-day window vs a 40-day window: no activity drift.
    Raw counts per user would differ 4x between the windows and read as a large shift."""

    def window(days: int, start_day: int) -> pd.DataFrame:
        rows = [
            {"user_id": f"u{u}", "category": "Sarees", "price": 300.0, "timestamp": (start_day + d) * 86_400 + e * 60}
            for u in range(50)
            for d in range(days)
            for e in range(1 + u % 5)
        ]
        return pd.DataFrame(rows)

    report = drift_score(window(40, 0), window(10, 40))
    assert report.per_feature["activity_per_user"] < 0.01
