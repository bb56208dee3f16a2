"""What a sequential member buys and costs in a blend, on the test set of each protocol (issue 26).

    .venv/bin/python bench/bench_blend_frontier.py --set Amazon_Toys_and_Games \
        --base "0.38*rp3beta(alpha=0.4,beta=0),0.26*item_knn(shrink=50),0.16*sequence(window=10),0.2*mf(alpha=20)" \
        --base "ease(lambda_factor=2)" --base "rp3beta(alpha=0.4,beta=0)"

For each protocol of ``bench_public_data`` (same splits), every member of the ``--base`` recipes and the ``--add``
model are fitted once on the training rows and score a sample of the test shoppers; then each
``(1 - w) * base + w * add`` is ranked and scored (NDCG@10, seen items excluded, the test's warm shoppers), for every
weight ``w``. Selection never sees these numbers: the point is the trade-off itself, which train.py's validation has
to judge blind. Members are combined as ``recsys_core.ensemble.Ensemble.score`` does (each scaled by its row's
largest magnitude, profiles weighted by ``--recency``). Tables go to stdout and ``--out`` (JSON and Markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "sagemaker_src"))
import public_data as pdata  # noqa: E402
from recsys_core.data import load_interactions  # noqa: E402
from recsys_core.ensemble import row_max_normalize, sequences_for, top_k  # noqa: E402
from recsys_core.evaluation import build_targets  # noqa: E402
from recsys_core.metrics import hit_matrix, ndcg_per_user  # noqa: E402
from recsys_core.prepare import prepare  # noqa: E402
from recsys_core.selection import Candidate  # noqa: E402
from train import _recipe  # noqa: E402

K = 10


@dataclass
class Blend:
    """A base recipe (its members and weights) and the text it was given as."""

    text: str
    members: list[Candidate]
    weights: list[float]


def _parse(text: str) -> Blend:
    """train.py's ``--recipe`` reader (its ArgumentTypeError is argparse's one-line error), weights summing to 1."""
    recipe = _recipe(text)
    total = sum(recipe.weights)
    return Blend(text, recipe.candidates, [w / total for w in recipe.weights])


def _weights(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"--weights {text!r}: want comma-separated values in [0, 1)")
    return values


def frontier(train: pd.DataFrame, test: pd.DataFrame, bases: list[Blend], add: Candidate, weights: list[float],
             users: int = 8000, recency: tuple[float, float] = (1.0, 0.25), seed: int = 0,
             log=print) -> dict[str, float]:  # noqa: ANN001 - a print-like callable
    """Test NDCG@K of each ``(1 - w) * base + w * add`` and of each member alone, keyed by name."""
    with tempfile.TemporaryDirectory() as tmp:  # read as train.py reads its channel: same cleaning and dtypes
        train.to_csv(Path(tmp) / "interactions.csv", index=False)
        clean, _ = load_interactions(tmp)
    prep = prepare(clean)
    hist = prep.hist
    targets = build_targets(test, prep.users, prep.items, hist)
    keep = np.arange(len(targets.users))
    if len(keep) > users:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), users, replace=False))
    who = targets.users[keep]
    relevant = [targets.relevant[i] for i in keep]
    n_relevant = targets.n_relevant[keep]
    profiles = hist.profile(*recency)
    seen = hist.matrix(hist.strong.astype(np.float32)).copy()
    seen.eliminate_zeros()
    pop = np.asarray(hist.matrix().sum(axis=0)).ravel().astype(np.float32)
    pop /= max(float(pop.max()), 1.0)

    scores: dict[Candidate, np.ndarray] = {}
    for cand in [*(c for b in bases for c in b.members), add]:
        if cand in scores:
            continue
        t = time.perf_counter()
        model = cand.build().fit(hist.matrix(), prep.ctx)
        out = np.empty((len(who), hist.n_items), np.float32)
        for lo in range(0, len(who), 1000):
            u = who[lo : lo + 1000]
            raw = model.score(profiles[u], u, sequences=sequences_for(model, hist, u))
            out[lo : lo + 1000] = row_max_normalize(raw)
        scores[cand] = out
        log(f"  {cand.name}: fitted and scored in {time.perf_counter() - t:.0f}s")

    def ndcg(mix: list[tuple[Candidate, float]]) -> float:
        total = 1e-4 * pop[None, :] + sum(w * scores[c] for c, w in mix if w)
        recs: list[np.ndarray] = []
        for lo in range(0, len(who), 2000):
            recs += top_k(total[lo : lo + 2000], K, seen[who[lo : lo + 2000]])
        return float(ndcg_per_user(hit_matrix(recs, relevant, K), n_relevant).mean())

    result = {cand.name: ndcg([(cand, 1.0)]) for cand in scores}
    for base in bases:
        for w in weights:
            mix = [*((c, v * (1 - w)) for c, v in zip(base.members, base.weights, strict=True)), (add, w)]
            result[f"{base.text} + {w:g}*{add.family}"] = ndcg(mix)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="Amazon_Toys_and_Games", choices=pdata.SETS)
    p.add_argument("--protocols", default="random,user_temporal")
    p.add_argument("--data-dir", type=Path, default=pdata.DATA_DIR)
    p.add_argument("--base", type=_parse, action="append", required=True,
                   help="a recipe in train.py's --recipe syntax (repeat for several)")
    p.add_argument("--add", type=_parse, default=_parse("sasrec(epochs=58)"),
                   help="the one model blended into each base (default: SASRec, 58 epochs)")
    p.add_argument("--weights", type=_weights, default=_weights("0,0.1,0.2,0.3,0.4,0.5"))
    p.add_argument("--users", type=int, default=8000, help="test shoppers scored (a seeded sample)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "blend_frontier")
    args = p.parse_args(argv)
    if len(args.add.members) != 1:
        p.error("--add: one model")
    df = pdata.load_set(args.set, args.data_dir)
    table: dict[str, dict[str, float]] = {}
    for protocol in args.protocols.split(","):
        train, test = pdata.split_protocol(df, protocol)
        print(f"== {args.set}/{protocol}: train {len(train):,} rows, test {len(test):,}", file=sys.stderr, flush=True)
        got = frontier(train, test, args.base, args.add.members[0], args.weights, args.users,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
        for name, value in got.items():
            table.setdefault(name, {})[protocol] = value
    protocols = args.protocols.split(",")
    lines = ["| recipe | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    lines += [f"| {name} | " + " | ".join(f"{row.get(p, float('nan')):.4f}" for p in protocols) + " |"
              for name, row in table.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.set}.json").write_text(json.dumps(table, indent=1))
    (args.out / f"{args.set}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
