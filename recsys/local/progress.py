"""What the local run prints, stage by stage, and its clock; events routed with their route printed.

The main job's stages print through :class:`Progress` (numbered stages with their duration); :func:`routed` and
:func:`night` send an event or the passing night through the rules of ``cdk.out`` and say where it went.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from recsys.local.events import Firing, LocalClock, Route, Rule, describe, route


class Progress:
    """Numbered stage lines with their duration: what the job did, in order."""

    def __init__(self) -> None:
        self.stage = 0
        self.t0 = time.perf_counter()
        self.clock = LocalClock()  # the rehearsal's time: advancing it fires the schedule rules of cdk.out

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.stage += 1
        print(f"\n[{self.stage}] {title}", flush=True)
        start = time.perf_counter()
        yield
        print(f"    ({time.perf_counter() - start:.1f} s)", flush=True)

    def info(self, line: str) -> None:
        print(f"    {line}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def show(progress: Progress, title: str, df: pd.DataFrame, rows: int = 8) -> None:
    progress.info(f"{title} ({len(df):,} rows)")
    for line in df.head(rows).convert_dtypes().to_string(index=False, max_colwidth=40).splitlines():
        progress.info(f"  {line}")


def routed(progress: Progress, rules: list[Rule], evt: dict, what: str, *, quiet: bool = False) -> list[Route]:
    routes = route(rules, evt)
    if not quiet:
        progress.info(f"EventBridge: {what} -> {describe(routes)}")
    return routes


def first_route(routes: list[Route], kind: str) -> Route | None:
    """The first route to a target of ``kind`` (state machine, pipeline, function ...), as the template says."""
    return next((r for r in routes if r.kind == kind), None)


def night(progress: Progress, cfg, rules: list[Rule]) -> list[Firing]:
    """Advance the local clock to the next schedule firing that starts a state machine (at most 8 days), printing
    every firing on the way: the nightly run happens only if a schedule rule of ``cdk.out`` says so."""
    fired = progress.clock.advance(rules, cfg.region, stop=lambda f: first_route(f.routes, "state machine") is not None)
    for firing in fired:
        progress.info(f"clock: {firing.label} -> {describe(firing.routes)}")
    return fired
