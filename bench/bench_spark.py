"""Spark training (issue 23) against train.py: quality parity on real logs, and scale on generated shops.

    .venv/bin/python bench/bench_spark.py --parity                       # Toys and Sports, bench_public_data's splits
    .venv/bin/python bench/bench_spark.py --parity --sets Amazon_Toys_and_Games --protocols user_temporal
    .venv/bin/python bench/bench_spark.py --scale 10000000               # a generated 10M-interaction shop
    .venv/bin/python bench/bench_spark.py --plan-only                    # the 1B / 10B plan from the last scale run

Parity: on each set and protocol of ``bench/public_data.py`` (the splits ``bench_public_data.py`` uses), train.py
and spark_train.py (``local[2]``, 1.5 GB driver) each train on the same training rows as SageMaker runs them, and
``inference.predict_fn`` answers every evaluated user; NDCG@10 side by side and their ratio (the target: >= 0.95).
Scale: both on one generated shop (``recsys.generator``): wall time, peak memory (the job and its JVM), model size,
load time and validation NDCG@10 of the chosen model against segment popularity on the same validation users.
The plan for 1B and 10B interactions is derived from the measured Spark throughput per core, arithmetic shown.
Tables go to stdout and ``out/bench/spark.md`` / ``spark.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import public_data as pdata  # noqa: E402
from bench_public_data import _import_inference, fmt, run_project, split_hash  # noqa: E402

ROOT = pdata.ROOT
SRC = ROOT / "sagemaker_src"
OUT = ROOT / "out" / "bench"
#: Instance types the plan considers (vCPU, memory GB): the SageMaker Spark processing cluster.
PLAN_INSTANCES = {"ml.r5.4xlarge": (16, 128), "ml.r5.12xlarge": (48, 384), "ml.m5.4xlarge": (16, 64)}
#: The share of a core's throughput a cluster keeps (shuffles cross the network; local[2] shuffles in memory).
CLUSTER_EFFICIENCY = 0.5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_tree(cmd: list[str], env: dict[str, str], log_path: Path) -> tuple[int, float, float]:
    """(exit status, seconds, peak GB) of ``cmd``: the peak is the largest sum of RSS over its whole process tree
    (Python and the JVM it starts), sampled every half second."""
    import threading

    import psutil

    peak = [0]
    t = time.perf_counter()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            root = psutil.Process(proc.pid)
            while not done.wait(0.5):
                try:
                    tree = [root, *root.children(recursive=True)]
                    peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
                except psutil.Error:
                    pass

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        status = proc.wait()
        done.set()
        watcher.join()
    return status, time.perf_counter() - t, round(peak[0] / 1e9, 2)


def run_spark(train_dir: Path, work: Path, extra: list[str] | None = None) -> dict:
    """spark_train.py as the pipeline's Spark step runs it (no tuning flags unless ``extra``), timed; its peak
    includes the JVM."""
    model, out = work / "spark_model", work / "spark_output"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | {"OPENBLAS_NUM_THREADS": "1"}
    status, seconds, peak_gb = run_tree([sys.executable, str(SRC / "spark_train.py"), "--train-dir", str(train_dir),
                                         "--model-dir", str(model), "--output-dir", str(out), *(extra or [])],
                                        env, work / "spark.log")
    if status != 0:
        raise RuntimeError(f"spark_train.py failed ({status}); log: {work / 'spark.log'}")
    meta = json.loads((model / "model.json").read_text())["meta"]
    stages = json.loads((out / "spark_stages.json").read_text())
    return {"model": model, "seconds": round(seconds, 1), "peak_gb": peak_gb, "meta": meta,
            "stages": stages, "chosen": meta["selection_summary"]["chosen"]}


def parity(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in args.sets.split(","):
        df = pdata.load_set(name, args.data_dir)
        for protocol in [p for p in args.protocols.split(",") if p in pdata.protocols_for(name)]:
            train, test = pdata.split_protocol(df, protocol)
            ev = pdata.build_eval(train, test)
            log(f"\n== {name}/{protocol}: train {len(train):,} rows, {len(ev.users):,} users evaluated "
                f"(split {split_hash(train, test)})")
            digest = split_hash(train, test)
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                single = recorded_single(args.single_json, f"{name}/{protocol}", digest)
                if single is not None:
                    log(f"  train.py: ndcg@10 {single['ndcg']:.4f} recorded in {single['source']} (same split)")
                elif args.spark_only:
                    single = {"ndcg": None, "train_s": None, "recipe": "not run (--spark-only)"}
                else:
                    single = run_project(train, ev, work / "single")
                    log(f"  train.py: ndcg@10 {single['ndcg']:.4f} ({single['train_s']} s, {single['recipe']})")
                data = work / "single" / "train"
                if not (data / "interactions.csv").is_file():
                    data.mkdir(parents=True, exist_ok=True)
                    train.to_csv(data / "interactions.csv", index=False)
                try:
                    spark = run_spark(data, work, args.spark_args.split() if args.spark_args else None)
                finally:  # the job's log (stages, every candidate's validation NDCG) outlives the temp folder
                    if (work / "spark.log").is_file():
                        (args.out / f"spark_{name}_{protocol}.log").write_text((work / "spark.log").read_text())
                for r in spark["meta"]["selection"]:
                    log(f"    spark validation {r['model']}: {r['ndcg']:.4f}")
                bundle = _import_inference().model_fn(str(spark["model"]))
                recs = {u: [r["product_id"] for r in _import_inference().predict_fn(
                    {"user_id": str(u), "k": pdata.K}, bundle)["recommendations"]] for u in ev.users}
                score = ev.score(recs)
                log(f"  spark_train.py: ndcg@10 {score['ndcg']:.4f} ({spark['seconds']} s, {spark['chosen']})")
            ratio = round(score["ndcg"] / max(single["ndcg"], 1e-12), 3) if single["ndcg"] is not None else None
            rows.append({"set": name, "protocol": protocol, "split": digest, "users": len(ev.users),
                         "train.py": single["ndcg"], "spark": score["ndcg"], "ratio": ratio,
                         "train.py s": single["train_s"], "spark s": spark["seconds"],
                         "spark peak GB": spark["peak_gb"], "spark model": spark["chosen"],
                         "train.py model": single.get("recipe", ""),
                         "spark validation": spark["meta"]["validation_ndcg"]})
    return rows


def recorded_single(path: Path | None, key: str, digest: str) -> dict | None:
    """train.py's row for ``key`` from an earlier ``bench_public_data.py`` JSON, if it was run on the same split."""
    if path is None or not path.is_file():
        return None
    found = json.loads(path.read_text()).get("results", {}).get(key, {})
    proj = found.get("project") if found.get("split") == digest else None
    return None if not proj else {"ndcg": proj["ndcg"], "train_s": proj.get("train_s"),
                                  "recipe": proj.get("recipe", ""), "source": str(path)}


#: The Spark job's flags at scale on one 2-core machine (recorded beside the figures): a 6 GB driver, one value per
#: grid (each grid point is another pass over the data), 1,000 validation shoppers, 50 neighbours per item.
SCALE_SPARK_ARGS = ("--driver-memory 6g --als-reg-grid 0.05 --rp3-beta-grid 0.2 --seq-beta-grid 0.5 "
                    "--val-max-users 1000 --neighbours 50")


def scale(n_interactions: int, work: Path, engines: set[str], spark_args: str, previous: dict | None = None) -> dict:
    """Both engines, one after the other (never together: memory), on one generated shop (10 interactions per
    user, as many products as users); the shop is generated once into ``work`` and kept for a later run."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from recsys.generator import GeneratorConfig, generate_to_dir

    n_users = max(1000, n_interactions // 10)
    data = work / "shop"
    if not (data / "interactions.csv").is_file():
        t = time.perf_counter()
        generate_to_dir(data, GeneratorConfig(n_users=n_users, n_products=n_users, n_interactions=n_interactions))
        log(f"generated {n_interactions:,} interactions, {n_users:,} users and products "
            f"({time.perf_counter() - t:.0f} s) in {data}")
    out = dict(previous or {}) if (previous or {}).get("interactions") == n_interactions else {}
    out |= {"interactions": n_interactions, "users": n_users, "products": n_users}
    if "spark" in engines:
        log(f"spark_train.py {spark_args} ({os.getloadavg()[0]:.1f} load)")
        out["load_before_spark"] = round(os.getloadavg()[0], 1)
        spark = run_spark(data, work, spark_args.split())
        stats = _model_stats(spark["model"])
        table = {r["model"]: r.get("ndcg") for r in spark["meta"]["selection"]}
        seg = next((v for k, v in table.items() if k.startswith("segment_pop")), None)
        out |= {"spark_args": spark_args, "spark_s": spark["seconds"], "spark_peak_gb": spark["peak_gb"],
                "spark_model": spark["chosen"], "spark_validation_ndcg": spark["meta"]["validation_ndcg"],
                "segment_pop_validation_ndcg": seg,
                "popularity_validation_ndcg": spark["meta"]["validation_popularity_ndcg"],
                "spark_validation_users": spark["meta"]["selection_summary"].get("validation_users"),
                "spark_selection": spark["meta"]["selection"],
                "spark_stages": spark["stages"]["stages"], **{f"spark_{k}": v for k, v in stats.items()}}
        log(f"  spark: {spark['seconds']} s, peak {spark['peak_gb']} GB, {spark['chosen']}, validation "
            f"{out['spark_validation_ndcg']:.4f} vs segment popularity {seg}")
    if "single" in engines:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        env |= {"SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(work / "single_model"),
                "SM_OUTPUT_DATA_DIR": str(work / "single_out"), "OPENBLAS_NUM_THREADS": "1"}
        out["load_before_single"] = round(os.getloadavg()[0], 1)
        status, seconds, peak_gb = run_tree([sys.executable, str(SRC / "train.py")], env, work / "train.log")
        if status == 0:
            meta = json.loads((work / "single_model" / "model.json").read_text())["meta"]
            table = {r["model"]: r.get("ndcg") for r in meta.get("selection", []) if isinstance(r, dict)}
            out |= {"single_s": round(seconds, 1), "single_peak_gb": peak_gb,
                    "single_model": meta["selection_summary"]["chosen"],
                    "single_validation_ndcg": meta["validation_ndcg"],
                    "single_segment_pop_validation_ndcg": next(
                        (v for k, v in table.items() if k.startswith("segment_pop")), None),
                    **{f"single_{k}": v for k, v in _model_stats(work / "single_model").items()}}
            log(f"  train.py: {out['single_s']} s, peak {peak_gb} GB, {out['single_model']}")
        else:
            out["single_error"] = f"train.py exited {status}; log {work / 'train.log'}"
    return out


def _model_stats(model_dir: Path) -> dict:
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    t = time.perf_counter()
    _import_inference().model_fn(str(model_dir))
    return {"model_mb": round(size / 2**20, 1), "load_s": round(time.perf_counter() - t, 2)}


def plan(measured: dict, cores: int = 2) -> list[dict]:
    """Instances and hours for 1B and 10B interactions from the measured interactions per core-second (the whole
    job's wall time in ``local[2]``, start-up and driver work included), priced from bench_cost's price table."""
    prices = json.loads((ROOT / "bench" / "prices_ap_south_1.json").read_text())["prices"]
    per_core_s = measured["interactions"] / (measured["spark_s"] * cores)
    rows = []
    for target in (1_000_000_000, 10_000_000_000):
        for itype, (vcpu, mem) in PLAN_INSTANCES.items():
            # memory: the aggregated pairs (~40 B each in Spark's columnar cache) twice over, spread on the cluster
            need_mem_gb = target * 40 * 2 / 1e9
            count = max(2, math.ceil(need_mem_gb / (0.6 * mem)))
            hours = target / (per_core_s * CLUSTER_EFFICIENCY * vcpu * count) / 3600
            price = prices.get(f"sagemaker_processing_{itype}_hour", {}).get("usd")
            usd = round(hours * count * price) if price else None
            rows.append({"interactions": f"{target:.0e}", "instance": itype, "count": count, "hours": round(hours, 1),
                         "usd per run": usd, "note": "over the 20-instance bound of settings" if count > 20 else "",
                         "arithmetic": f"{target:.0e} / ({per_core_s:,.0f}/core-s x {CLUSTER_EFFICIENCY} x "
                                       f"{vcpu} vCPU x {count}) / 3600; memory {need_mem_gb:,.0f} GB / "
                                       f"(0.6 x {mem} GB)"})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parity", action="store_true")
    p.add_argument("--sets", default="Amazon_Toys_and_Games,Amazon_Sports_and_Outdoors")
    p.add_argument("--protocols", default=",".join(pdata.PROTOCOLS), help="those that apply to each set are run")
    p.add_argument("--data-dir", type=Path, default=pdata.DATA_DIR)
    p.add_argument("--single-json", type=Path, help="a bench_public_data.py JSON: train.py's NDCG from it where "
                   "its split hash matches (train.py is not re-run); otherwise train.py runs here")
    p.add_argument("--spark-only", action="store_true", help="parity: do not run train.py where no figure is recorded")
    p.add_argument("--spark-args", default="", help="extra spark_train.py flags (default: none, as the pipeline)")
    p.add_argument("--scale", type=int, default=0, help="interactions of a generated shop (e.g. 10000000)")
    p.add_argument("--engines", default="spark,single", help="--scale: which engines run (one after the other)")
    p.add_argument("--scale-spark-args", default=SCALE_SPARK_ARGS, help="spark_train.py's flags at --scale")
    p.add_argument("--work", type=Path, help="--scale: keep the generated shop and the models here (reused)")
    p.add_argument("--plan-only", action="store_true")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "spark.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    if args.parity:
        doc["parity"] = parity(args)
        print("\n## Parity: NDCG@10, same splits as bench_public_data.py\n\n" + fmt(doc["parity"], list(
            doc["parity"][0]) if doc["parity"] else []))
    if args.scale:
        engines = {e.strip() for e in args.engines.split(",") if e.strip()}
        if args.work:
            args.work.mkdir(parents=True, exist_ok=True)
            doc["scale"] = scale(args.scale, args.work, engines, args.scale_spark_args, doc.get("scale"))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                doc["scale"] = scale(args.scale, Path(tmp), engines, args.scale_spark_args, doc.get("scale"))
        print("\n## Scale\n\n" + json.dumps(doc["scale"], indent=1))
    if doc.get("scale", {}).get("spark_s"):
        doc["plan"] = plan(doc["scale"])
        print("\n## Plan\n\n" + fmt(doc["plan"], ["interactions", "instance", "count", "hours", "usd per run",
                                                               "note", "arithmetic"]))
    path.write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
