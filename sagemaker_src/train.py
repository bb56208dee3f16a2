"""SageMaker script-mode training entry point (CONTRACTS §2).

Reads ``interactions.*`` (and optional ``products.*``, ``users.*``) from ``SM_CHANNEL_TRAIN``,
quarantines dirty rows, chooses a model (or blend) on a validation split carved from these rows,
refits it on all of them and writes ``model.json`` + ``arrays.npz`` to ``SM_MODEL_DIR``. The
selection table, quarantine and a report go to ``SM_OUTPUT_DATA_DIR``. No flag is required.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit runs its own threads; nested BLAS threads thrash
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from recsys_core.bundle import Bundle, recipe_doc  # noqa: E402
from recsys_core.cold_start import choose_cold_start  # noqa: E402
from recsys_core.data import load_interactions, load_optional, run_entry_point  # noqa: E402
from recsys_core.features import EventWeights, item_popularity  # noqa: E402
from recsys_core.models.content import SegmentPopularity  # noqa: E402
from recsys_core.prepare import prepare, user_segments  # noqa: E402
from recsys_core.report import bar_chart, markdown_table  # noqa: E402
from recsys_core.rules import ExplorationConfig, build_catalogue  # noqa: E402
from recsys_core.selection import (  # noqa: E402
    Recipe,
    SelectionConfig,
    SelectionResult,
    default_candidates,
    fit_recipe,
    select,
)
from recsys_core.serving import ServingConfig  # noqa: E402
from recsys_core.split import HoldoutConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--k", type=int, default=10, help="list length optimised on validation")
    p.add_argument("--models", default="auto",
                   help="'auto' (all candidates) or comma list of families to consider: "
                        "popularity,item_knn,rp3beta,ease,user_knn,mf,content,segment_pop,sequence,sasrec")
    p.add_argument("--val-max-users", type=int, default=HoldoutConfig.max_users,
                   help="validation users scored per candidate (a per-user holdout draws this many)")
    p.add_argument("--work-budget", type=float, default=0.0,
                   help="selection work in reference seconds (estimated from the data's shape, not timed); "
                        "0 = from the data's size")
    p.add_argument("--no-tune", action="store_true", help="each family at its default settings only")
    p.add_argument("--no-blend", action="store_true", help="select a single model only")
    p.add_argument("--recipe", type=_recipe, default=None,
                   help="skip selection and fit this blend of families at their defaults, e.g. '0.8*ease,0.2*mf'")
    p.add_argument("--heavy-ms", type=float, default=ServingConfig.heavy_ms,
                   help="serving: precompute, at load, the state of shoppers whose rows take this long to score")
    p.add_argument("--heavy-memory-mb", type=float, default=ServingConfig.heavy_memory_mb,
                   help="serving: memory per worker for that state")
    p.add_argument("--retrieval-min-items", type=int, default=ServingConfig.retrieval_min_items,
                   help="serving: from this many products on, requests score retrieved candidates, and an index "
                        "is built over each embedding model's item vectors")
    p.add_argument("--retrieval-candidates", type=int, default=ServingConfig.retrieval_candidates,
                   help="serving: items an index returns per request")
    p.add_argument("--index-recall", type=float, default=ServingConfig.index_recall,
                   help="serving: tune each index to find this share of a shopper's exact top 100")
    p.add_argument("--index-exact-items", type=int, default=ServingConfig.index_exact_items,
                   help="serving: the longest item vectors, searched exactly rather than through the index")
    p.add_argument("--weight-view", type=float, default=EventWeights.view)
    p.add_argument("--weight-cart", type=float, default=EventWeights.add_to_cart)
    p.add_argument("--weight-purchase", type=float, default=EventWeights.purchase)
    p.add_argument("--exploration-share", type=float, default=ExplorationConfig.share,
                   help='share of slots a request with "exploration": true gives to new or under-exposed products')
    p.add_argument("--new-days", type=float, default=ExplorationConfig.new_days,
                   help="a product first seen this many days before the end of the log, or later, counts as new")
    p.add_argument("--num-threads", type=int, default=0, help="0 = all cores")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--model-version", default="",
                   help="defaults to $TRAINING_JOB_NAME on SageMaker, else a UTC timestamp + chosen family")
    p.add_argument("--train-dir", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    p.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    p.add_argument("--output-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"[train] ignoring unknown arguments: {unknown}", flush=True)
    return args


def _recipe(text: str) -> Recipe:
    """``'0.8*ease,0.2*mf(factors=64)'``: families at their default configuration (``default_candidates``),
    with the fields in brackets changed, weighted."""
    defaults = {}
    for cand in default_candidates():
        defaults.setdefault(cand.family, cand)
    candidates, weights = [], []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        m = re.fullmatch(r"\s*(?:([\d.eE+-]+)\s*\*)?\s*(\w+)\s*(?:\((.*)\))?\s*", part)
        if m is None or m.group(2) not in defaults:
            raise argparse.ArgumentTypeError(f"cannot read {part.strip()!r} in {text!r}: want weight*family, "
                                             f"family one of {sorted(defaults)}")
        weight, family, fields = m.groups()
        config = defaults[family].config
        changes = {}
        for item in filter(None, (f.strip() for f in (fields or "").split(","))):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in {f.name for f in dataclasses.fields(config)}:
                raise argparse.ArgumentTypeError(f"{family} has no setting {key!r}")
            kind = type(getattr(config, key))
            changes[key] = value.strip().lower() in ("1", "true", "yes") if kind is bool else kind(value.strip())
        candidates.append(replace(defaults[family], config=replace(config, **changes)))
        weights.append(float(weight) if weight else 1.0)
    return Recipe(candidates, weights)


def _recipe_name(recipe: Recipe) -> str:
    return " + ".join(f"{w:g}*{c.family}" for c, w in zip(recipe.candidates, recipe.weights, strict=True))


def log(msg: str) -> None:
    print(msg, flush=True)


GPU_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-gpu.txt"


def prepare_accelerator(env: dict[str, str] | None = None) -> int:
    """On a SageMaker GPU instance (``SM_NUM_GPUS`` > 0) install the pinned JAX CUDA plugin, so SASRec
    trains on the GPU with the same code; anywhere else (CPU instances, the local run, tests) nothing
    happens and JAX runs on the CPU. Returns the GPU count.

    SageMaker's training toolkit installs ``requirements.txt`` only, and one source archive serves CPU
    and GPU jobs, so the GPU-only packages are installed here, before anything imports JAX.
    """
    env = os.environ if env is None else env
    gpus = int(env.get("SM_NUM_GPUS", "0") or 0)
    if gpus > 0:
        import subprocess

        log(f"[train] {gpus} GPU(s): installing {GPU_REQUIREMENTS.name}")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r",
                        str(GPU_REQUIREMENTS)], check=True)
    return gpus


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    prepare_accelerator()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = EventWeights(view=args.weight_view, add_to_cart=args.weight_cart, purchase=args.weight_purchase)

    log(f"[train] reading {args.train_dir}")
    clean, quarantine = load_interactions(args.train_dir)
    products = load_optional(args.train_dir, "products")
    users = load_optional(args.train_dir, "users")
    reasons = quarantine["quarantine_reason"].value_counts().to_dict() if len(quarantine) else {}
    log(f"[train] {len(clean)} clean rows, {len(quarantine)} quarantined {reasons}; "
        f"products={'yes' if products is not None else 'no'} users={'yes' if users is not None else 'no'} "
        f"({time.perf_counter() - t0:.1f}s)")
    if len(quarantine):
        quarantine.to_csv(out_dir / "quarantine_interactions.csv", index=False)

    candidates = default_candidates()
    if args.models != "auto":
        wanted = {m.strip() for m in args.models.split(",") if m.strip()}
        candidates = [c for c in candidates if c.family in wanted or c.family == "popularity"]
    sel_config = SelectionConfig(
        k=args.k, holdout=replace(HoldoutConfig(), max_users=args.val_max_users, seed=args.seed),
        work_budget=args.work_budget or None, tune=not args.no_tune, candidates=tuple(candidates),
    )
    if args.no_blend:
        sel_config = replace(sel_config, max_components=1)
    if args.recipe is not None:
        result = SelectionResult(args.recipe, [], 0.0, 0.0, [f"recipe pinned by --recipe, not selected: "
                                                             f"{_recipe_name(args.recipe)}"])
    else:
        result = select(clean, products, users, sel_config, weights, args.num_threads, log)
    log(f"[train] selection done ({time.perf_counter() - t0:.1f}s): {_describe(result)}")

    prep = prepare(clean, products, users, weights, args.num_threads, args.seed)
    ensemble = fit_recipe(result.recipe, prep)
    log(f"[train] refitted {ensemble.name} on {prep.hist.nnz} user-item pairs ({time.perf_counter() - t0:.1f}s)")
    for member in ensemble.models:
        if note := member.fit_note():
            log(f"[train] refit {member.name}: {note}")

    segments = None
    seg_of = user_segments(prep)
    if (seg_of >= 0).any() and prep.user_features is not None:
        segments = SegmentPopularity.fit(prep.hist.matrix(), seg_of)
    exploration = ExplorationConfig(share=min(max(args.exploration_share, 0.0), 1.0), new_days=args.new_days)
    catalogue, trending = _catalogue_and_trending(prep, products, exploration)
    cold = choose_cold_start(clean, args.k, has_clock=trending is not None)
    log(f"[train] new shoppers get {cold.strategy} ({cold.reason})")
    version = (args.model_version or os.environ.get("TRAINING_JOB_NAME")
               or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{result.recipe.candidates[0].family}")
    bundle = Bundle(
        model_version=version, users=prep.users, items=prep.items, hist=prep.hist, ensemble=ensemble,
        recipe=recipe_doc(result.recipe.candidates, result.recipe.weights),
        popularity=_normalised(item_popularity(prep.hist)),
        item_category=prep.item_features.category, category_names=prep.item_features.category_names,
        segments=segments,
        segment_users=prep.user_features.user_ids if segments is not None and prep.user_features else None,
        segment_of=prep.user_features.segment if segments is not None and prep.user_features else None,
        meta={
            "trained_at": datetime.now(UTC).isoformat(), "k": args.k, "rows": len(clean),
            "quarantined": len(quarantine), "quarantine_reasons": reasons, "event_weights": asdict(weights),
            "validation_ndcg": result.val_ndcg, "validation_popularity_ndcg": result.popularity_val_ndcg,
            "selection_summary": result.summary() | {"chosen": ensemble.name},
            "selection": result.table, "notes": result.notes,
            "cold_start": {"strategy": cold.strategy, "reason": cold.reason},
        },
        trending=trending, catalogue=catalogue, cold_start=cold.strategy, exploration=exploration,
        serving=ServingConfig(heavy_ms=args.heavy_ms, heavy_memory_mb=args.heavy_memory_mb,
                              retrieval_min_items=args.retrieval_min_items,
                              retrieval_candidates=args.retrieval_candidates, index_recall=args.index_recall,
                              index_exact_items=args.index_exact_items),
    )
    _build_retrieval(bundle, args.num_threads)
    bundle.save(args.model_dir)
    log(f"[train] saved model {version} to {args.model_dir} ({time.perf_counter() - t0:.1f}s)")
    _write_selection_report(out_dir, result, ensemble.name, args.k)
    log(f"[train] done in {time.perf_counter() - t0:.1f}s")
    return 0


def _build_retrieval(bundle: Bundle, threads: int) -> None:
    """Say which serving path the catalogue's size chose; past ``retrieval_min_items``, build the indexes."""
    n, limit = bundle.hist.n_items, bundle.serving.retrieval_min_items
    if not bundle.uses_retrieval:
        log(f"[train] serving: {n} products < retrieval_min_items {limit}: requests score every product")
        return
    log(f"[train] serving: {n} products >= retrieval_min_items {limit}: requests score retrieved candidates "
        "(item-item neighbours, best sellers, an index per embedding model), not every product")
    t = time.perf_counter()
    for j, r in bundle.build_indexes(threads).items():
        log(f"[train] serving: index over {bundle.ensemble.models[j].name}'s item vectors: {r.kind} on {r.n_items} "
            f"x {r.dims}, nprobe {r.breadth}, recall@{r.recall_at} {r.recall:.3f} among "
            f"{bundle.serving.retrieval_candidates} candidates, {r.bytes / 2**20:.0f} MB, {r.build_s:.1f}s")
    if bundle.ensemble.cannot_retrieve:
        log(f"[train] serving: {', '.join(bundle.ensemble.cannot_retrieve)} cannot name candidates: "
            "requests score every product")
    log(f"[train] serving: retrieval ready ({time.perf_counter() - t:.1f}s)")


def _describe(result) -> str:  # noqa: ANN001 - a SelectionResult
    s = result.summary()
    if s["split"] == "none":
        return "; ".join(s["notes"])
    return (f"validated on {s['split']} ({s['validation_users']} users, {s['objective']}), "
            f"ndcg@k {s['validation_ndcg']:.4f} vs popularity {s['popularity_validation_ndcg']:.4f}")


def _catalogue_and_trending(prep, products, exploration=None):  # noqa: ANN001, ANN202 - Prepared, DataFrame | None
    """What the serving rules read (prices, availability, new or under-exposed products) and trending
    (popularity with a half-life of a tenth of the log's span); trending is None without a usable clock."""
    hist = prep.hist
    counts = np.bincount(hist.indices, minlength=hist.n_items).astype(np.float64)
    first_seen = np.full(hist.n_items, np.inf)
    has_clock = len(hist.last_ts) == hist.nnz and hist.nnz > 0 and float(np.ptp(hist.last_ts)) > 0
    if has_clock:
        np.minimum.at(first_seen, hist.indices, hist.last_ts)
    first_seen[np.isinf(first_seen)] = np.nan
    log_end = float(hist.last_ts.max()) if has_clock else 0.0
    catalogue = build_catalogue(products, prep.items.ids, prep.item_features.category,
                                prep.item_features.category_names, counts, first_seen, log_end,
                                exploration or ExplorationConfig())
    trending = _normalised(item_popularity(hist, half_life_fraction=0.1)) if has_clock else None
    return catalogue, trending


def _normalised(pop):  # noqa: ANN001 - numpy array in, numpy array out
    return (pop / max(float(pop.max(initial=0.0)), 1e-12)).astype("float32")


def _write_selection_report(out_dir: Path, result, chosen: str, k: int) -> None:  # noqa: ANN001
    summary = result.summary() | {"chosen": chosen}
    (out_dir / "selection.json").write_text(json.dumps(summary | {"table": result.table}, indent=2, default=str))
    scored = [r for r in result.table if r.get("ndcg") is not None and not r.get("step")]
    lines = ["# Model selection (validation carved from training data)\n", f"Chosen: **{chosen}**  ",
             f"Validation: {summary['split']} ({summary['validation_users']} users): {summary['split_reason']}  ",
             f"Validation NDCG@{k}: {result.val_ndcg:.4f} (popularity {result.popularity_val_ndcg:.4f})\n"]
    lines += [f"- {n}" for n in result.notes]
    if scored:
        bar_chart(out_dir / "selection_ndcg.png", [r["model"] for r in scored], [r["ndcg"] for r in scored],
                  f"Validation NDCG@{k} per candidate", f"NDCG@{k}")
        lines.append("![validation ndcg](selection_ndcg.png)\n")
    lines.append(markdown_table(result.table, ["model", "ndcg", "parts", "fit_s", "cost_ref_s", "step", "skipped"]))
    (out_dir / "selection_report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(run_entry_point(main, "train"))
