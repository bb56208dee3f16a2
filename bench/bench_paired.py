"""Is the project's NDCG@10 on one test set really above or below a baseline's? A paired bootstrap per test user.

    .venv/bin/python bench/bench_paired.py --set Amazon_Sports_and_Outdoors --protocol user_temporal \\
        --ease 30,100

Trains the project exactly as ``bench_public_data.py`` does (train.py as SageMaker runs it, predict_fn per test
user), fits EASE at each lambda on the same split, and prints each ratio with a 95 % bootstrap interval over
test users (1,000 resamples, seed 0) and the paired per-user NDCG difference with its normal 95 % interval.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_public_data as bench  # noqa: E402
import public_data as pdata  # noqa: E402


def per_user_ndcg(ev: pdata.Eval, recs: dict[str, list[str]]) -> np.ndarray:
    """NDCG@K of each evaluated user (NaN for a user with nothing relevant), as ``Eval.score`` averages it."""
    return pdata.ndcg_per_user(ev.hits(recs), ev.n_relevant)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", required=True)
    p.add_argument("--protocol", required=True)
    p.add_argument("--ease", default="30,100", help="EASE lambdas to compare with")
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args()
    train, test = pdata.split_protocol(pdata.load_set(args.set), args.protocol)
    ev = pdata.build_eval(train, test)
    print(f"{args.set}/{args.protocol}: {len(ev.users):,} test users (split {bench.split_hash(train, test)})")
    lists: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        row = bench.run_project(train, ev, Path(tmp), lists)
    project = per_user_ndcg(ev, lists)
    print(f"project {np.nanmean(project):.5f} ({row['recipe']})")
    keep = ~np.isnan(project)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, keep.sum(), keep.sum()) for _ in range(args.resamples)]
    for lam, scorer in pdata.ease(ev.X, [float(x) for x in args.ease.split(",")]):
        a, b = project[keep], per_user_ndcg(ev, pdata.recommend(ev, scorer))[keep]
        ratios = [a[i].mean() / b[i].mean() for i in draws]
        d = a - b
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
        print(f"  vs EASE(lambda={lam:g}) {b.mean():.5f}: ratio {a.mean() / b.mean():.3f} (95 % bootstrap "
              f"{np.percentile(ratios, 2.5):.3f}-{np.percentile(ratios, 97.5):.3f}); per-user difference "
              f"{d.mean():+.5f} +- {half:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
