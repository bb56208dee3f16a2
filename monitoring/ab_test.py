"""A/B verdicts between two model versions: click-through of what each served, compared with a two-proportion test.

The unit is an impression (one product shown in one slot); the outcome a click (click-through) or an attributed
purchase (conversion per impression). The verdict gives the difference in rates
(B - A) with a Wald confidence interval, the pooled two-proportion z statistic and its two-sided p-value,
and whether it is significant at ``alpha``. Impressions of one response are not independent, so with
few users the interval is optimistic; the local run uses thousands of simulated requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sql.stats import normal_quantile as _normal_quantile  # below monitoring/: the SQL verdict's z too

#: The deploy Lambda's experiment variants (``lambdas/deploy_endpoint/handler.py``: CHAMPION, CHALLENGER; the Lambda
#: ships alone, so the names are repeated here and a test keeps them equal).
CHAMPION, CHALLENGER = "Champion", "Challenger"
#: What a verdict compares per impression: the attribution rows' column, and its label.
OUTCOMES = {"clicks": "CTR", "purchases": "purchase rate"}


@dataclass(frozen=True)
class Verdict:
    """Click-through (or another per-impression rate, named by ``metric``) of variant B against variant A."""

    a: str
    b: str
    a_shown: int
    a_clicks: int
    b_shown: int
    b_clicks: int
    alpha: float = 0.05
    metric: str = "CTR"

    def __post_init__(self) -> None:
        for shown, clicks in ((self.a_shown, self.a_clicks), (self.b_shown, self.b_clicks)):
            if shown <= 0 or not 0 <= clicks <= shown:
                raise ValueError(f"need 0 <= clicks <= impressions and impressions > 0, got {clicks}/{shown}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def a_rate(self) -> float:
        return self.a_clicks / self.a_shown

    @property
    def b_rate(self) -> float:
        return self.b_clicks / self.b_shown

    @property
    def difference(self) -> float:
        """B's click-through minus A's."""
        return self.b_rate - self.a_rate

    @property
    def interval(self) -> tuple[float, float]:
        """The (1 - alpha) Wald interval of the difference."""
        se = math.sqrt(self.a_rate * (1 - self.a_rate) / self.a_shown + self.b_rate * (1 - self.b_rate) / self.b_shown)
        z = _normal_quantile(1 - self.alpha / 2)
        return self.difference - z * se, self.difference + z * se

    @property
    def z(self) -> float:
        """Pooled two-proportion z statistic (0 when neither variant had a click, or every impression did)."""
        pooled = (self.a_clicks + self.b_clicks) / (self.a_shown + self.b_shown)
        se = math.sqrt(pooled * (1 - pooled) * (1 / self.a_shown + 1 / self.b_shown))
        return self.difference / se if se > 0 else 0.0

    @property
    def p_value(self) -> float:
        return math.erfc(abs(self.z) / math.sqrt(2))

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def winner(self) -> str | None:
        if not self.significant:
            return None
        return self.b if self.difference > 0 else self.a

    def summary(self) -> str:
        lo, hi = self.interval
        verdict = f"{self.winner} wins" if self.winner else "no significant difference"
        return (
            f"{self.a}: {self.metric} {self.a_rate:.2%} ({self.a_clicks:,}/{self.a_shown:,}); "
            f"{self.b}: {self.metric} {self.b_rate:.2%} ({self.b_clicks:,}/{self.b_shown:,}); "
            f"difference {self.difference:+.2%} ({1 - self.alpha:.0%} CI {lo:+.2%} to {hi:+.2%}), "
            f"p = {self.p_value:.3g}: {verdict} at alpha {self.alpha:g}"
        )


def verdict_from_attribution(rows: Iterable[Mapping[str, Any]], a: str, b: str, *, key: str = "model_version",
                             alpha: float = 0.05, outcome: str = "clicks") -> Verdict:
    """The verdict of B against A from ``sql/attribution_daily.sql`` rows (impressions and attributed
    ``outcome``, clicks or purchases, summed over every day, strategy and position of each), grouped by ``key``:
    a model version, or the production variant that answered (``variant``)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    shown = {a: 0, b: 0}
    hits = {a: 0, b: 0}
    for row in rows:
        name = row[key]
        if name in shown:
            shown[name] += int(row["impressions"])
            hits[name] += int(row[outcome])
    return Verdict(a, b, shown[a], hits[a], shown[b], hits[b], alpha, OUTCOMES[outcome])


def experiment_verdicts(rows: Iterable[Mapping[str, Any]], alpha: float) -> list[Verdict]:
    """Challenger against Champion, on click-through and on purchases per impression, from attribution rows with a
    ``variant`` column; empty when the rows hold no impression of either (no A/B test ran)."""
    rows = list(rows)
    served = {row["variant"] for row in rows if int(row["impressions"]) > 0}
    if not {CHAMPION, CHALLENGER} <= served:
        return []
    return [verdict_from_attribution(rows, CHAMPION, CHALLENGER, key="variant", alpha=alpha, outcome=o)
            for o in OUTCOMES]
