"""Recommender benchmark: quality per model per temporal split, training time, serving latency, memory.

    .venv/bin/python bench/bench_recommender.py            # quality (300k rows) + 1M training + latency
    .venv/bin/python bench/bench_recommender.py --quick    # small sizes, ~2 min
    .venv/bin/python bench/bench_recommender.py --big      # also 1M users x 1M products x 10M interactions
                                                           # (training time, peak memory, predict_fn latency)

Data comes from the project's generator (``recsys.generator``); ``--source synthetic`` uses the
small low-rank generator shipped in ``sagemaker_src`` instead. Every number printed is measured
in this run; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "sagemaker_src"
sys.path[:0] = [str(SRC), str(ROOT)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from recsys_core.data import clean_interactions  # noqa: E402
from recsys_core.ensemble import Ensemble  # noqa: E402
from recsys_core.evaluation import build_targets, evaluate_scores  # noqa: E402
from recsys_core.models import FAMILIES  # noqa: E402
from recsys_core.prepare import prepare  # noqa: E402
from recsys_core.selection import SelectionConfig, default_candidates, fit_recipe, select  # noqa: E402
from recsys_core.split import leave_last_out, temporal_split  # noqa: E402


def tables(source: str, n_users: int, n_products: int, n_interactions: int, seed: int = 42) -> dict[str, pd.DataFrame]:
    if source == "generator":
        from recsys.generator import GeneratorConfig, generate_tables

        return generate_tables(
            GeneratorConfig(n_users=n_users, n_products=n_products, n_interactions=n_interactions, seed=seed)
        )
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    return synthetic_tables(
        SyntheticConfig(n_users=n_users, n_items=n_products, events_per_user=n_interactions / n_users, seed=seed)
    )


def write_dataset(source: str, out: Path, n_users: int, n_products: int, n_interactions: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if source == "generator":
        from recsys.generator import GeneratorConfig, generate_to_dir

        generate_to_dir(out, GeneratorConfig(n_users=n_users, n_products=n_products, n_interactions=n_interactions))
        return
    for name, df in tables(source, n_users, n_products, n_interactions).items():
        df.to_csv(out / f"{name}.csv", index=False)


def fmt_table(rows: list[dict], columns: list[str]) -> str:
    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- quality
def evaluate_row(ens: Ensemble, prep, targets, pop: np.ndarray) -> dict:  # noqa: ANN001
    profiles = ens.profiles(prep.hist)
    m, _ = evaluate_scores(lambda u: ens.score(profiles[u], u), prep.hist, targets, 10, popularity=pop)
    keys = ("ndcg", "precision", "recall", "f1", "map", "hit_rate", "coverage", "novelty", "users")
    return {key: m[key] for key in keys}


def quality(source: str, sizes: tuple[int, int, int]) -> list[dict]:
    t = tables(source, *sizes)
    clean, quarantine = clean_interactions(t["interactions"])
    print(
        f"\n## Quality: {source} data, {len(clean):,} clean rows ({len(quarantine):,} quarantined), "
        f"{clean['user_id'].nunique():,} users, {clean['product_id'].nunique():,} products",
        flush=True,
    )
    rows: list[dict] = []
    splits = (("temporal", temporal_split(clean, 0.2)), ("leave_last_out", leave_last_out(clean)))
    for split_name, (train, test) in splits:
        prep = prepare(train, t["products"], t["users"])
        targets = build_targets(test, prep.users, prep.items, prep.hist)
        X = prep.hist.matrix()
        pop = FAMILIES["popularity"]().fit(X, prep.ctx).pop
        for cand in default_candidates():
            cls = FAMILIES[cand.family]
            reason = cls.fits(cand.config, prep.shape)
            if (
                reason
                or (getattr(cls, "needs_item_features", False) and not prep.item_features.known)
                or (getattr(cls, "needs_user_features", False) and prep.ctx.user_segment is None)
            ):
                continue
            t0 = time.perf_counter()
            model = cand.build().fit(X, prep.ctx)
            rows.append(
                evaluate_row(Ensemble([model], [1.0], popularity=pop), prep, targets, pop)
                | {"split": split_name, "model": model.name, "fit_s": round(time.perf_counter() - t0, 1)}
            )
        t0 = time.perf_counter()
        result = select(
            train, t["products"], t["users"], SelectionConfig(), log=lambda _msg: None
        )
        ens = fit_recipe(result.recipe, prep)
        rows.append(
            evaluate_row(ens, prep, targets, pop)
            | {"split": split_name, "model": "SELECTED: " + ens.name, "fit_s": round(time.perf_counter() - t0, 1)}
        )
        base = next(r["ndcg"] for r in rows if r["split"] == split_name and r["model"] == "popularity")
        for r in rows:
            if r["split"] == split_name:
                r["x_pop"] = round(r["ndcg"] / base, 2) if base else float("inf")
        print(
            f"{split_name}: train {len(train):,} rows, test {len(test):,} rows, {targets.users.size:,} warm test users",
            flush=True,
        )
    print(
        fmt_table(
            rows,
            [
                "split",
                "model",
                "ndcg",
                "x_pop",
                "precision",
                "recall",
                "f1",
                "map",
                "hit_rate",
                "coverage",
                "novelty",
                "fit_s",
            ],
        )
    )
    return rows


# --------------------------------------------------------------------------------------------- training
def train_run(data_dir: Path, work: Path, label: str, extra: list[str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | {
        "SM_CHANNEL_TRAIN": str(data_dir),
        "SM_MODEL_DIR": str(work / "model"),
        "SM_OUTPUT_DATA_DIR": str(work / "output"),
        "OPENBLAS_NUM_THREADS": "1",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SRC / "train.py"), *(extra or [])], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    doc = json.loads((work / "model" / "model.json").read_text())
    size = sum(p.stat().st_size for p in (work / "model").iterdir())
    chosen = doc["ensemble"]
    print(
        f"{label}: {wall:.1f}s wall, peak RSS {max(peak, before) / 1024:.0f} MB, artefacts {size / 1e6:.1f} MB, "
        f"chosen {chosen}",
        flush=True,
    )
    sel = [line for line in proc.stdout.splitlines() if "skip" in line or "chosen" in line]
    for line in sel:
        print("   ", line)
    return {"label": label, "wall_s": wall, "peak_rss_mb": peak / 1024, "artefact_mb": size / 1e6, "chosen": chosen}


# --------------------------------------------------------------------------------------------- latency
def latency(model_dir: Path, n_requests: int = 2000, seed: int = 0) -> None:
    import tracemalloc

    import inference

    t0 = time.perf_counter()
    inference.model_fn(str(model_dir))
    load_s = time.perf_counter() - t0  # timed without tracing, which slows allocation down
    tracemalloc.start()
    model = inference.model_fn(str(model_dir))
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(p.stat().st_size for p in Path(model_dir).iterdir())
    print(f"\n## Serving ({model.ensemble.name}; {len(model.items):,} products, {len(model.users):,} users)")
    print(
        f"artefacts {size / 1e6:.1f} MB on disk; model_fn {load_s * 1000:.0f} ms; model state in memory "
        f"{held / 1e6:.0f} MB (peak while loading {peak / 1e6:.0f} MB)",
        flush=True,
    )
    rng = np.random.default_rng(seed)
    users = model.users.ids[rng.integers(0, len(model.users), n_requests)]
    items = model.items.ids[np.argsort(-model.popularity)[:5000]]
    kinds = rng.choice(
        ["personalized", "popular", "session", "personalized+session", "rules", "product_page", "cart"],
        n_requests, p=[0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
    )
    prices = model.catalogue.price[np.isfinite(model.catalogue.price)] if model.catalogue is not None else []
    band = (float(np.quantile(prices, 0.2)), float(np.quantile(prices, 0.8))) if len(prices) else (0.0, 1e9)
    times: dict[str, list[float]] = {}
    for user, kind in zip(users, kinds, strict=True):
        req: dict = {"user_id": str(user), "k": 10}
        if kind in ("popular", "session"):
            req["user_id"] = f"new-{rng.integers(1e9)}"
        if kind.endswith("session"):
            req["recent_product_ids"] = [str(x) for x in rng.choice(items, 3)]
        if kind == "rules":  # a price band, in stock only, a promotion with 2 slots, 10% exploration
            req |= {"filters": {"price_min": band[0], "price_max": band[1], "in_stock_only": True},
                    "promotion": {"product_ids": [str(x) for x in rng.choice(items, 50)], "slots": 2},
                    "exploration": {"share": 0.1}}
        if kind == "product_page":
            req = {"product_id": str(rng.choice(items)), "k": 10}
        if kind == "cart":
            req = {"cart_product_ids": [str(x) for x in rng.choice(items, 3)], "k": 10}
        t = time.perf_counter()
        resp = inference.predict_fn(req, model)
        label = resp["strategy"] + ("+rules" if kind == "rules" else "")
        times.setdefault(label, []).append((time.perf_counter() - t) * 1000)
    rows = []
    everything = np.concatenate([np.asarray(v) for v in times.values()])
    for name, vals in [*times.items(), ("ALL", list(everything))]:
        v = np.asarray(vals)
        rows.append(
            {
                "strategy": name,
                "n": len(v),
                "p50_ms": float(np.percentile(v, 50)),
                "p99_ms": float(np.percentile(v, 99)),
                "max_ms": float(v.max()),
            }
        )
    print(fmt_table(rows, ["strategy", "n", "p50_ms", "p99_ms", "max_ms"]))


def batch_throughput(model_dir: Path, out: Path) -> None:
    """The pipeline's BatchRecommend step on this model: every user's and every product's list, as Parquet."""
    t = time.perf_counter()
    # glue_jobs/schema.py travels in the source archive beside the script; from the repository it is on ROOT
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(SRC / "batch_recommend.py"), "--model-dir", str(model_dir),
                           "--output-dir", str(out)], capture_output=True, text=True, check=True, env=env)
    print(f"\n## Batch recommendations ({time.perf_counter() - t:.0f} s wall)")
    for line in proc.stdout.splitlines():
        print(line)


def family_latency(data_dir: Path, work: Path, families: list[str]) -> None:
    """Latency per model family on the same catalogue (train.py restricted to one family each)."""
    for fam in families:
        try:
            train_run(data_dir, work / fam, f"train --models {fam}", ["--models", fam, "--no-blend"])
            latency(work / fam / "model", n_requests=1000)
        except RuntimeError as exc:
            print(f"{fam}: failed {exc}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=["generator", "synthetic"], default="generator")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--big", action="store_true", help="also 1M users, 1M products, 10M interactions")
    p.add_argument("--skip", default="", help="comma list of sections to skip: quality,train,latency,batch")
    p.add_argument("--families", default="", help="also measure latency per family, e.g. rp3beta,mf,item_knn")
    args = p.parse_args()
    skip = set(args.skip.split(","))
    print(f"# bench_recommender ({os.cpu_count()} cores, source={args.source})")
    if "quality" not in skip:
        quality(args.source, (4000, 1000, 60_000) if args.quick else (20_000, 5_000, 300_000))
    sizes = [(20_000, 100_000, 200_000)] if args.quick else [(100_000, 100_000, 1_000_000)]
    if args.big:
        sizes.append((1_000_000, 1_000_000, 10_000_000))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n_users, n_products, n_inter in sizes:
            data = tmp / f"data_{n_inter}"
            t0 = time.perf_counter()
            write_dataset(args.source, data, n_users, n_products, n_inter)
            print(
                f"\n## Training: {n_inter:,} interactions, {n_users:,} users, {n_products:,} products "
                f"(generated in {time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
            if "train" in skip and "latency" in skip:
                continue
            work = tmp / f"run_{n_inter}"
            train_run(data, work, f"train.py defaults on {n_inter:,}")
            if "latency" not in skip:
                latency(work / "model")
            if "batch" not in skip and n_inter == sizes[0][2]:
                batch_throughput(work / "model", tmp / "batch")
                if args.families and n_inter == sizes[0][2]:
                    family_latency(data, tmp / "families", args.families.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
