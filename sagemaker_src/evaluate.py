"""Processing-job style evaluation: a trained model dir + held-out (later) interactions in,
``evaluation.json`` (SageMaker model-quality style) + a markdown report with plots out.

The model is compared with the popularity baseline on exactly the same users and exclusions;
``popularity_ndcg_at_<k>`` sits next to ``ndcg_at_<k>`` for the pipeline's quality gate. Main
metrics cover users seen in training; ``all_users_ndcg_at_<k>`` adds new users, who receive the
popularity fallback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from recsys_core.artifacts import resolve_model_dir  # noqa: E402
from recsys_core.bundle import Bundle  # noqa: E402
from recsys_core.data import load_interactions, run_entry_point  # noqa: E402
from recsys_core.ensemble import Ensemble, sequences_for  # noqa: E402
from recsys_core.evaluation import build_targets, evaluate_scores  # noqa: E402
from recsys_core.report import grouped_bars, markdown_table  # noqa: E402

RANKING = ("precision", "recall", "f1", "ndcg", "map", "hit_rate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", default="/opt/ml/processing/model")
    p.add_argument("--test-dir", default="/opt/ml/processing/test")
    p.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    p.add_argument("--k", type=int, default=10)
    return p.parse_args(argv)


def evaluate_bundle(bundle: Bundle, test, k: int = 10) -> dict[str, dict[str, Any]]:  # noqa: ANN001
    """Metrics for the served ensemble and for popularity on the same users."""
    targets = build_targets(test, bundle.users, bundle.items, bundle.hist)
    profiles = bundle.ensemble.profiles(bundle.hist)
    def scorer(ens: Ensemble):  # noqa: ANN202 - scores of a batch of user indices
        return lambda u: ens.score(profiles[u], u, sequences=sequences_for(ens, bundle.hist, u))

    model, _ = evaluate_scores(scorer(bundle.ensemble), bundle.hist, targets, k,
                               popularity=bundle.popularity)
    pop = bundle.popularity
    baseline, _ = evaluate_scores(lambda u: np.broadcast_to(pop, (len(u), len(pop))), bundle.hist, targets, k,
                                  popularity=pop)
    results = {"model": model, "popularity": baseline}
    if len(bundle.ensemble.models) > 1:  # each blended model alone, for the report
        for m in bundle.ensemble.models:
            alone = Ensemble([m], [1.0], bundle.ensemble.decay_half_life, 0.0, bundle.ensemble.popularity,
                             recency_boost=bundle.ensemble.recency_boost)
            results[f"component: {m.name}"], _ = evaluate_scores(scorer(alone), bundle.hist, targets, k)
    return results


def to_model_quality(results: dict[str, dict[str, Any]], k: int) -> dict[str, Any]:
    model, pop = results["model"], results["popularity"]
    metrics: dict[str, dict[str, float]] = {}
    for name in (*RANKING, "coverage", "novelty"):
        metrics[f"{name}_at_{k}"] = {"value": float(model[name])}
        metrics[f"popularity_{name}_at_{k}"] = {"value": float(pop[name])}
    if "all_users_ndcg" in model:
        metrics[f"all_users_ndcg_at_{k}"] = {"value": float(model["all_users_ndcg"])}
        metrics[f"popularity_all_users_ndcg_at_{k}"] = {"value": float(pop["all_users_ndcg"])}
    lift = model["ndcg"] / pop["ndcg"] if pop["ndcg"] > 0 else float("inf") if model["ndcg"] > 0 else 1.0
    metrics[f"ndcg_lift_over_popularity_at_{k}"] = {"value": float(min(lift, 1e6))}
    metrics["users_evaluated"] = {"value": float(model["users"])}
    metrics["cold_users_evaluated"] = {"value": float(model.get("cold_users", 0))}
    return {"metrics": metrics}


def write_report(out_dir: Path, bundle: Bundle, results: dict[str, dict[str, Any]], k: int) -> Path:
    model, pop = results["model"], results["popularity"]
    names = [*RANKING, "coverage"]
    grouped_bars(out_dir / "model_vs_popularity.png", [f"{n}@{k}" for n in names],
                 {bundle.ensemble.name[:40]: [model[n] for n in names], "popularity": [pop[n] for n in names]},
                 "Test metrics: model vs popularity")
    rows = [{"metric": f"{n}@{k}", "model": float(model[n]), "popularity": float(pop[n])} for n in (*names, "novelty")]
    lines = [
        "# Recommender evaluation\n",
        f"Model version `{bundle.model_version}`: **{bundle.ensemble.name}**  ",
        f"Users evaluated: {model['users']} seen in training, {model.get('cold_users', 0)} new (popularity fallback)\n",
        "![model vs popularity](model_vs_popularity.png)\n",
        markdown_table(rows, ["metric", "model", "popularity"]),
    ]
    parts = [{"model": name, **{f"{n}@{k}": float(r[n]) for n in ("ndcg", "precision", "recall", "coverage")}}
             for name, r in results.items()]
    lines += ["\n## Served model, its components and popularity on the same test users\n",
              markdown_table(parts, ["model", *(f"{n}@{k}" for n in ("ndcg", "precision", "recall", "coverage"))])]
    selection = bundle.meta.get("selection") or []
    if selection:
        lines += ["\n## Model selection on validation (carved from training data)\n",
                  markdown_table(selection, ["model", "ndcg", "parts", "fit_s", "step", "skipped"])]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(resolve_model_dir(Path(args.model_dir)))
    test, quarantine = load_interactions(args.test_dir)
    print(f"[evaluate] model {bundle.model_version}; {len(test)} test rows ({len(quarantine)} quarantined)", flush=True)
    results = evaluate_bundle(bundle, test, args.k)
    doc = to_model_quality(results, args.k)
    selection = bundle.meta.get("selection_summary")
    if selection:  # which validation split chose this model, on how many users, and why
        doc["selection"] = selection
    (out_dir / "evaluation.json").write_text(json.dumps(doc, indent=2, default=str))
    write_report(out_dir, bundle, results, args.k)
    m = doc["metrics"]
    print(f"[evaluate] ndcg@{args.k}={m[f'ndcg_at_{args.k}']['value']:.4f} "
          f"popularity={m[f'popularity_ndcg_at_{args.k}']['value']:.4f} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, "evaluate"))
