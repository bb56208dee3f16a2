"""The recommender on real public logs, side by side with strong baselines in one run.

    .venv/bin/python bench/bench_public_data.py                 # every set x protocol, full grids (~1 h on 2 cores)
    .venv/bin/python bench/bench_public_data.py --quick         # small baseline grids
    .venv/bin/python bench/bench_public_data.py --sets ml-latest-small-ratings --protocols random
    .venv/bin/python bench/bench_public_data.py --self-check    # the metric code on a hand-computed example

For each data set in ``../shared/data`` and each protocol that applies (``bench/public_data.py``),
the project is run exactly as SageMaker runs it: ``sagemaker_src/train.py`` as a subprocess with
only the ``SM_*`` variables and no flags, then ``inference.model_fn`` / ``predict_fn`` for every
evaluated user. In the same run every baseline configuration (MostPop, item-kNN, RP3beta, EASE,
implicit ALS, SASRec; grids in ``public_data.baseline_grid``) is fitted on the same training rows. The
ratio compares the project with the best baseline configuration *on that test set* (an
oracle-tuned bar: the baselines' settings are picked on the test set, the project's never are).
Tables go to stdout, ``out/bench/public_data.md`` and ``public_data.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import public_data as pdata  # noqa: E402

ROOT = pdata.ROOT
SRC = ROOT / "sagemaker_src"
COLUMNS = ["method", "ndcg", "precision", "recall", "map", "hit_rate", "coverage", "train_s", "predict_ms",
           "predict_p99_ms"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_project(train, ev: pdata.Eval, work: Path,  # noqa: ANN001 - a DataFrame
                recs_out: dict[str, list[str]] | None = None, keep_log: Path | None = None) -> dict:
    """train.py as SageMaker runs it, then predict_fn for every evaluated user (their lists into ``recs_out``;
    train.py's log copied to ``keep_log``: why selection chose or skipped each family)."""
    data, model, out = work / "train", work / "model", work / "output"
    for d in (data, model, out):
        d.mkdir(parents=True, exist_ok=True)
    train.to_csv(data / "interactions.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env |= {"SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(model), "SM_OUTPUT_DATA_DIR": str(out),
            "OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    t = time.perf_counter()
    with open(work / "train.log", "w") as logf:
        proc = subprocess.Popen([sys.executable, str(SRC / "train.py")], env=env, stdout=logf, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    train_s = time.perf_counter() - t
    train_log = (work / "train.log").read_text()
    if keep_log is not None:
        keep_log.parent.mkdir(parents=True, exist_ok=True)
        keep_log.write_text(train_log)
    if status != 0:
        raise RuntimeError(f"train.py failed ({status}); log: {keep_log or work / 'train.log'}")
    for line in train_log.splitlines():
        if any(s in line for s in ("[select] validation:", "[select] chosen", "selection done", "sasrec")):
            log("    " + line.strip())
    inference = _import_inference()
    bundle = inference.model_fn(str(model))
    recs, ms = {}, []
    for u in ev.users:
        t0 = time.perf_counter()
        resp = inference.predict_fn({"user_id": str(u), "k": pdata.K}, bundle)
        ms.append(1000 * (time.perf_counter() - t0))
        recs[u] = [r["product_id"] for r in resp["recommendations"]]
    if recs_out is not None:
        recs_out.update(recs)
    doc = json.loads((model / "model.json").read_text())
    summary = doc.get("meta", {}).get("selection_summary", {})
    return {"method": "project (train.py defaults)", "family": "project", **ev.score(recs),
            "train_s": round(train_s, 1),
            "train_peak_gb": round(usage.ru_maxrss / 1e6, 2), "predict_ms": round(float(np.mean(ms)), 3),
            "predict_p99_ms": round(float(np.percentile(ms, 99)), 3), "recipe": doc.get("ensemble", ""),
            "validation": summary.get("split", ""), "validation_users": summary.get("validation_users", 0)}


def _import_inference():  # noqa: ANN202 - the module
    if "inference" in sys.modules:
        return sys.modules["inference"]
    spec = importlib.util.spec_from_file_location("inference", SRC / "inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    return module


def split_hash(train, test) -> str:  # noqa: ANN001 - DataFrames
    h = hashlib.sha256()
    for df in (train, test):
        h.update(pd_bytes(df))
    return h.hexdigest()[:16]


def pd_bytes(df) -> bytes:  # noqa: ANN001 - a DataFrame
    return (df["user_id"].astype(str) + "\t" + df["product_id"].astype(str)).str.cat(sep="\n").encode()


def fmt(rows: list[dict], columns: list[str]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(pdata.SETS))
    p.add_argument("--protocols", default=",".join(pdata.PROTOCOLS), help="those that apply to each set are run")
    p.add_argument("--data-dir", type=Path, default=pdata.DATA_DIR)
    p.add_argument("--quick", action="store_true", help="small baseline grids")
    p.add_argument("--project-only", action="store_true")
    p.add_argument("--baselines-only", action="store_true")
    p.add_argument("--families", help="comma-separated baseline families to run (default: all of "
                   + ", ".join(pdata.FAMILIES) + ")")
    p.add_argument("--reuse-baselines", type=Path, action="append", default=[],
                   help="baseline rows from an earlier run's JSON (same split hash); repeat to merge runs")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    p.add_argument("--self-check", action="store_true")
    args = p.parse_args()
    pdata.self_check()
    if args.self_check:
        print("metric self-check: ok")
        return 0
    families = tuple(args.families.split(",")) if args.families else pdata.FAMILIES
    if unknown := set(families) - set(pdata.FAMILIES):
        p.error(f"--families: unknown {', '.join(sorted(unknown))} (choose from {', '.join(pdata.FAMILIES)})")
    reuse = merged_baselines(args.reuse_baselines)
    results, summary, md = {}, [], ""
    t_all = time.perf_counter()
    for name in args.sets.split(","):
        df = pdata.load_set(name, args.data_dir)
        for protocol in [x for x in args.protocols.split(",") if x in pdata.protocols_for(name)]:
            key = f"{name}/{protocol}"
            train, test = pdata.split_protocol(df, protocol)
            ev = pdata.build_eval(train, test)
            digest = split_hash(train, test)
            log(f"\n== {key}: train {len(train):,} rows, test {len(test):,}; {len(ev.users):,} users evaluated, "
                f"{len(ev.items):,} candidate items (split {digest})")
            rows = []
            if not args.baselines_only:
                with tempfile.TemporaryDirectory() as tmp:
                    log("  project: train.py (SageMaker contract, no flags) + predict_fn per user")
                    rows.append(run_project(train, ev, Path(tmp), keep_log=args.out / f"train_{name}_{protocol}.log"))
                    log(f"    project: ndcg@{pdata.K}={rows[0]['ndcg']:.4f} ({rows[0]['train_s']}s)")
            if reused := reuse.get((key, digest)):
                log(f"  baselines: {len(reused)} reused from " + ", ".join(map(str, args.reuse_baselines)))
                baselines = reused
            elif args.project_only:
                baselines = []
            else:
                log("  baselines:")
                baselines = pdata.run_baselines(ev, args.quick, log, families, train)
            rows += baselines
            proj = next((r for r in rows if r["family"] == "project"), None)
            results[key] = {"split": digest, "users": len(ev.users), "items": len(ev.items), "project": proj,
                            "baselines": baselines}
            print(f"\n### {key}: {len(ev.users):,} users, {len(ev.items):,} items\n")
            print(fmt(rows, COLUMNS))
            best = max(baselines, key=lambda r: r["ndcg"]) if baselines else None
            if proj and best:
                summary.append({"set": name, "protocol": protocol, "users": len(ev.users), "project": proj["ndcg"],
                                "best baseline": best["method"], "baseline": best["ndcg"],
                                "ratio": round(proj["ndcg"] / best["ndcg"], 3), "recipe": proj["recipe"],
                                "train_s": proj["train_s"], "validation": proj["validation"]})
            # after every cell, so a long run stopped part-way keeps (and can --reuse-baselines) what it measured
            md = write_results(args.out, summary, results, time.perf_counter() - t_all)
    print("\n## Summary\n\n" + md + f"\n\n(total {(time.perf_counter() - t_all) / 60:.1f} min)")
    return 0


def merged_baselines(paths: list[Path]) -> dict[tuple[str, str], list[dict]]:
    """(cell, split hash) -> the baseline rows of every earlier run given (say, one run per family), each
    configuration once."""
    merged: dict[tuple[str, str], dict[str, dict]] = {}
    for path in paths:
        try:
            results = json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"--reuse-baselines {path}: not a bench_public_data JSON ({e})") from None
        for key, cell in results.items():
            for row in cell.get("baselines", []):
                merged.setdefault((key, cell["split"]), {})[row["method"]] = row
    return {k: list(v.values()) for k, v in merged.items()}


def write_results(out: Path, summary: list[dict], results: dict, total_s: float) -> str:
    """``public_data.json`` and ``public_data.md`` under ``out``; returns the summary table."""
    columns = ["set", "protocol", "users", "project", "best baseline", "baseline", "ratio", "train_s", "validation",
               "recipe"]
    md = ["# Public data: project vs the best baseline configuration (NDCG@10)\n", fmt(summary, columns)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "public_data.json").write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    details = [f"\n## {k}\n\n" + fmt([r for r in (v["project"], *v["baselines"]) if r], COLUMNS)
               for k, v in results.items()]
    (out / "public_data.md").write_text("\n".join(md + details) + f"\n\nTotal {total_s / 60:.1f} min.\n")
    return md[1]


if __name__ == "__main__":
    sys.exit(main())
