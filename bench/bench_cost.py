"""What this stack costs to operate each month, against Amazon Personalize for the same load (issue 23).

    .venv/bin/python bench/bench_cost.py                                   # 100k, 1M, 10M, 100M shoppers
    .venv/bin/python bench/bench_cost.py --spark-json out/bench/spark.json  # Spark throughput from a scale run
    .venv/bin/python bench/bench_cost.py --shoppers 50000,2000000 --env dev

Three inputs, all data in the repository: the price table (``bench/prices_ap_south_1.json``: every price with its
source page and the date it was recorded), the load and the measured throughputs (``bench/cost_assumptions.json``:
each throughput names the benchmark it comes from) and the instance types of ``cdk.json``'s environment. Compute
is priced from throughput: a job's instance-hours are the work (interactions, shoppers) over the measured
interactions per core-second times the instance's vCPUs, plus a billed start-up per instance. Personalize gets
the same load: data ingested, training hours for the same compute, TPS-hours provisioned at the peak, and a batch
list per shopper as often as the pipeline writes one. The rest of the stack (curation, analytics, streaming, API)
is shared by both columns. Tables go to stdout and ``out/bench/cost.md`` / ``cost.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PRICES = BENCH / "prices_ap_south_1.json"
ASSUMPTIONS = BENCH / "cost_assumptions.json"
OUT = ROOT / "out" / "bench"
SHOPPERS = (100_000, 1_000_000, 10_000_000, 100_000_000)
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30.4
#: Personalize's training caps (interactions considered): the v2 recipes, and every other recipe.
PERSONALIZE_CAP_V2, PERSONALIZE_CAP = 3_000_000_000, 500_000_000
#: Sections of the table: what SageMaker runs (Personalize replaces it), what both alternatives keep.
ML, SHARED, PERSONALIZE = "SageMaker (this stack)", "shared by both", "Amazon Personalize"


class CostError(ValueError):
    """A price table or assumptions file that cannot be priced from (named in the message)."""


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CostError(f"{path}: not a readable JSON {what} ({exc})") from exc
    if not isinstance(doc, dict):
        raise CostError(f"{path}: not a JSON {what} (an object is expected)")
    return doc


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    """The price table, checked: every price has a number, a unit, a source page and the date it was recorded."""
    doc = _read(path, "price table")
    for name, line in doc.get("prices", {}).items():
        missing = [k for k in ("usd", "unit", "source", "recorded") if not line.get(k) and line.get(k) != 0]
        if missing:
            raise CostError(f"{path}: price {name!r} has no {', '.join(missing)}")
        if not str(line["source"]).startswith("https://"):
            raise CostError(f"{path}: price {name!r}: source must be the page's https:// address")
    if not doc.get("prices"):
        raise CostError(f"{path}: no prices")
    return doc


def load_assumptions(path: Path = ASSUMPTIONS) -> dict[str, Any]:
    doc = _read(path, "assumptions file")
    for name, line in doc.get("measured", {}).items():
        if not line.get("source"):
            raise CostError(f"{path}: measured {name!r} has no source")
    return doc


def tiered(quantity: float, line: dict[str, Any]) -> float:
    """Cost of ``quantity`` units under a line's monthly tiers ([[units in tier, price], ..., [null, price]])."""
    tiers = line.get("tiers")
    if not tiers:
        return quantity * line["usd"]
    cost, left = 0.0, quantity
    for size, price in tiers:
        take = left if size is None else min(left, size)
        cost += take * price
        left -= take
        if left <= 0:
            break
    return cost


def spark_throughput_from(path: Path) -> tuple[float, str]:
    """Interactions per core-second of the Spark path from ``bench_spark.py --scale``'s JSON (local[2])."""
    doc = json.loads(path.read_text())
    scale = doc.get("scale") or {}
    if not scale.get("spark_s"):
        raise CostError(f"{path}: no scale run (run bench/bench_spark.py --scale N first)")
    value = scale["interactions"] / (scale["spark_s"] * 2)
    return value, (f"{path.name}: spark_train.py on {scale['interactions']:,} interactions in {scale['spark_s']} s "
                   f"on local[2]: {scale['interactions']:,} / ({scale['spark_s']} s x 2)")


class Model:
    """The monthly bill of one shop size: ``lines`` of (section, item, quantity, unit, USD)."""

    def __init__(self, prices: dict[str, Any], assumptions: dict[str, Any], instances: dict[str, Any]) -> None:
        self.p = prices["prices"]
        self.a = {k: v["value"] for k, v in assumptions["load"].items()}
        self.m = {k: v["value"] for k, v in assumptions["measured"].items()}
        self.vcpu = assumptions["instances"]["vcpu"]
        self.mem = assumptions["instances"]["memory_gb"]
        self.i = instances
        self.lines: list[dict[str, Any]] = []

    def price(self, name: str) -> dict[str, Any]:
        if name not in self.p:
            raise CostError(f"{PRICES.name}: no price {name!r}")
        return self.p[name]

    def add(self, section: str, item: str, quantity: float, unit: str, price: str, detail: str = "",
            usd: float | None = None) -> None:
        """One line of the bill; ``item`` is the same at every size (the tables align on it), ``detail`` is not."""
        cost = tiered(quantity, self.price(price)) if usd is None else usd
        self.lines.append({"section": section, "item": item, "detail": detail, "quantity": quantity,
                           "unit": unit, "usd": cost, "price": price})

    def job_hours(self, work: float, per_core_s: float, itype: str, count: int = 1, efficiency: float = 1.0) -> float:
        """Instance-hours of one job: the work over the cluster's throughput, plus billed start-up per instance."""
        seconds = work / (per_core_s * efficiency * self.vcpu[itype] * count)
        return count * (seconds / 3600 + self.a["job_overhead_minutes"] / 60)

    def bill(self, shoppers: int) -> dict[str, Any]:
        a, m, i = self.a, self.m, self.i
        self.lines = []
        runs = a["pipeline_runs_per_month"]
        events = shoppers * a["events_per_shopper_per_month"]
        window = events * a["training_window_months"]
        requests = shoppers * a["requests_per_shopper_per_day"] * DAYS_PER_MONTH
        mean_rps = requests / (DAYS_PER_MONTH * 86400)
        peak_rps = mean_rps * a["peak_to_mean"]
        peak_eps = events / (DAYS_PER_MONTH * 86400) * a["peak_to_mean"]

        # --- SageMaker: training (train.py below the auto threshold, else the Spark cluster), evaluate, batch.
        if window < i["spark_min_interactions"]:
            itype, engine = i["training_instance_type"], "train.py"
            hours = self.job_hours(window, m["single_interactions_per_core_second"], itype)
            count = 1
        else:
            itype, engine = i["spark_instance_type"], "Spark"
            need_gb = window * a["spark_bytes_per_interaction_in_memory"] / 1e9
            count = min(i["spark_max_instances"], max(2, math.ceil(need_gb / (0.6 * self.mem[itype]))))
            hours = self.job_hours(window, m["spark_interactions_per_core_second"], itype, count,
                                   a["spark_cluster_efficiency"])
        train_price = f"sagemaker_{'training' if engine == 'train.py' else 'processing'}_{itype}_hour"
        self.add(ML, "training (train.py below spark_min_interactions, else Spark)", hours * runs, "instance-hours",
                 train_price, f"{engine} on {count} x {itype}")
        ptype = i["processing_instance_type"]
        batch_h = self.job_hours(shoppers, m["batch_shoppers_per_core_second"], ptype)
        eval_h = self.job_hours(min(shoppers, 100_000), m["batch_shoppers_per_core_second"], ptype)
        self.add(ML, "processing: evaluate + BatchRecommend", (batch_h + eval_h) * runs, "instance-hours",
                 f"sagemaker_processing_{ptype}_hour", ptype)
        etype = i["endpoint_instance_type"]
        capacity = m["endpoint_requests_per_vcpu_second"] * self.vcpu[etype] * a["endpoint_target_utilisation"]
        n_inst = max(a["endpoint_min_instances"], math.ceil(peak_rps / capacity))
        inst_cost = tiered(n_inst * HOURS_PER_MONTH, self.price(f"sagemaker_hosting_{etype}_hour"))
        gb_s = requests * a["serverless_seconds_per_request"] * a["serverless_memory_gb"]
        serverless_ok = peak_rps * a["serverless_seconds_per_request"] <= a["serverless_max_concurrency"]
        serverless_cost = (tiered(gb_s, self.price("sagemaker_serverless_gb_second"))
                           + tiered(requests * a["request_bytes"] / 1e9, self.price("sagemaker_serverless_data_gb")))
        if serverless_ok and serverless_cost < inst_cost:
            self.add(ML, "endpoint (serverless or instances, the cheaper)", gb_s, "see each size",
                     "sagemaker_serverless_gb_second",
                     f"GB-s serverless {a['serverless_memory_gb']} GB; {n_inst} x {etype}: {inst_cost:,.0f} USD",
                     usd=serverless_cost)
        else:
            self.add(ML, "endpoint (serverless or instances, the cheaper)", n_inst * HOURS_PER_MONTH, "see each size",
                     f"sagemaker_hosting_{etype}_hour",
                     f"instance-hours: {n_inst} x {etype} for a peak of {peak_rps:,.0f} req/s")

        # --- shared: curation, catalogue, queries, storage, streaming, API, analytics.
        daily = events / DAYS_PER_MONTH
        node_rate = m["curation_interactions_per_core_second"] * 4  # a DataBrew node: 4 vCPU, 16 GB
        work_node_h = daily / node_rate / 3600
        min_node_h = a["databrew_jobs_per_run"] * a["databrew_nodes_per_job"] * a["databrew_min_minutes_per_job"] / 60
        self.add(SHARED, "DataBrew curation (a day's new events a run)", (work_node_h + min_node_h) * runs,
                 "node-hours", "databrew_node_hour")
        self.add(SHARED, "Glue crawler (10-minute minimum, 1 DPU)", runs * 10 / 60, "DPU-hours",
                 "glue_crawler_dpu_hour")
        scanned_tb = window * a["curated_bytes_per_interaction"] * a["athena_scans_per_run"] * runs / 1e12
        self.add(SHARED, "Athena (the window's curated data, scans per run x runs)", scanned_tb, "TB scanned",
                 "athena_tb_scanned")
        stored_gb = (window * (a["raw_bytes_per_event"] + a["curated_bytes_per_interaction"])
                     + a["models_kept"] * window * a["bundle_bytes_per_interaction"]
                     + 2 * shoppers * a["batch_bytes_per_shopper"]
                     + a["capture_retention_months"] * requests * a["request_bytes"]) / 1e9
        self.add(SHARED, "S3 (raw + curated window, models, batch lists, endpoint capture)", stored_gb, "GB-months",
                 "s3_standard_gb_month")
        shards = max(1, math.ceil(peak_eps / a["kinesis_records_per_shard_second"]))
        self.add(SHARED, "Kinesis shards", shards * HOURS_PER_MONTH, "shard-hours", "kinesis_shard_hour",
                 f"{shards} shard(s) for a peak of {peak_eps:,.0f} events/s")
        self.add(SHARED, "Kinesis PUT payload units", events / 1e6, "million", "kinesis_put_payload_units_million")
        invocations = requests + events / a["consumer_batch_size"]
        self.add(SHARED, "Lambda requests (API + stream consumer)", invocations / 1e6, "million",
                 "lambda_requests_million")
        lambda_gb_s = a["lambda_memory_gb"] * (requests * a["api_lambda_seconds"] + events / a["consumer_batch_size"]
                                               * a["consumer_lambda_seconds_per_batch"])
        self.add(SHARED, "Lambda compute (Arm)", lambda_gb_s, "GB-seconds", "lambda_arm_gb_second")
        self.add(SHARED, "DynamoDB writes (recent items per event)", events * a["dynamodb_item_kb"] / 1e6,
                 "million WRU", "dynamodb_ondemand_write_million")
        self.add(SHARED, "DynamoDB reads (per API request, eventually consistent)", requests * 0.5 / 1e6,
                 "million RRU", "dynamodb_ondemand_read_million")
        self.add(SHARED, "DynamoDB storage", shoppers * a["dynamodb_item_kb"] / 1e6, "GB-months",
                 "dynamodb_storage_gb_month")
        self.add(SHARED, "API Gateway REST calls", requests / 1e6, "million", "apigateway_rest_million")
        self.add(SHARED, "CloudWatch Logs (API access + Lambda logs)", requests * a["log_bytes_per_request"] / 1e9,
                 "GB ingested", "cloudwatch_logs_ingest_gb")
        if i["enable_analytics"]:
            self.add(SHARED, "QuickSight authors", a["quicksight_authors"], "author-months", "quicksight_author_month")
            self.add(SHARED, "QuickSight readers (at the monthly cap)", a["quicksight_readers"], "reader-months",
                     "quicksight_reader_month_cap")
        self.add(SHARED, "KMS keys", a["kms_keys"], "key-months", "kms_key_month")

        # --- Personalize for the same load (replaces the SageMaker lines).
        self.add(PERSONALIZE, "data ingestion (the month's events, streamed)", events * a["raw_bytes_per_event"] / 1e9,
                 "GB", "personalize_ingestion_gb")
        spark_core_h = window / m["spark_interactions_per_core_second"] / 3600
        self.add(PERSONALIZE, "training (the Spark job's compute, 4 vCPU per training hour)",
                 spark_core_h / 4 * a["personalize_compute_factor"] * runs, "training hours",
                 "personalize_training_hour")
        tps = max(1.0, peak_rps * a["personalize_tps_provisioned_share_of_peak"])
        self.add(PERSONALIZE, "real-time recommendations (minProvisionedTPS at the peak)", tps * HOURS_PER_MONTH,
                 "TPS-hours", "personalize_tps_hour", f"{tps:,.0f} TPS")
        batch = shoppers * a["personalize_batch_runs_per_month"]
        self.add(PERSONALIZE, "batch recommendations (a list per shopper a run)", batch / 1000, "thousand",
                 "personalize_batch_thousand")
        tps_mean = max(1.0, mean_rps) * HOURS_PER_MONTH  # autoscaled from a low minimum: billed the actual TPS
        tps_saving = self.lines[-2]["usd"] - tiered(tps_mean, self.price("personalize_tps_hour"))
        total = {s: round(sum(r["usd"] for r in self.lines if r["section"] == s), 2) for s in (ML, SHARED, PERSONALIZE)}
        caps = ("over every Personalize cap" if window > PERSONALIZE_CAP_V2 else
                "v2 recipes only (over 500M)" if window > PERSONALIZE_CAP else "within Personalize's caps")
        return {"shoppers": shoppers, "events_per_month": events, "training_interactions": window,
                "requests_per_month": requests, "peak_rps": round(peak_rps, 1), "lines": self.lines,
                "this_stack_usd": round(total[ML] + total[SHARED], 2),
                "personalize_usd": round(total[PERSONALIZE] + total[SHARED], 2), "sections": total,
                "personalize_autoscaled_usd": round(total[PERSONALIZE] + total[SHARED] - tps_saving, 2),
                "personalize_caps": caps}


def instances_of(env: str) -> dict[str, Any]:
    """The instance types and thresholds of ``cdk.json``'s environment (the stack's one source of settings)."""
    sys.path.insert(0, str(ROOT))
    from settings.config import MAX_SPARK_INSTANCES, load_project_config

    cfg = load_project_config(env)
    return {"training_instance_type": cfg.training_instance_type, "processing_instance_type":
            cfg.processing_instance_type, "spark_instance_type": cfg.spark_instance_type,
            "endpoint_instance_type": cfg.endpoint_instance_type, "spark_min_interactions": cfg.spark_min_interactions,
            "spark_max_instances": MAX_SPARK_INSTANCES, "enable_analytics": cfg.enable_analytics}


def usd(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:,.2f}"


def table(bills: list[dict[str, Any]]) -> str:
    heads = [f"{b['shoppers']:,} shoppers" for b in bills]
    lines = ["| section | item | " + " | ".join(heads) + " |",
             "|---|---|" + "---:|" * len(bills)]
    for n, row in enumerate(bills[-1]["lines"]):
        cells = [usd(b["lines"][n]["usd"]) for b in bills]
        lines.append(f"| {row['section']} | {row['item']} | " + " | ".join(cells) + " |")
    for label, key in (("**this stack, USD/month**", "this_stack_usd"),
                       ("**Personalize + the shared lines, USD/month**", "personalize_usd"),
                       ("Personalize, TPS autoscaled from a low minimum (billed the mean)",
                        "personalize_autoscaled_usd")):
        lines.append(f"| | {label} | " + " | ".join(f"**{usd(b[key])}**" for b in bills) + " |")
    lines.append("| | training set (interactions) | " + " | ".join(f"{b['training_interactions']:,.0f}"
                                                                   for b in bills) + " |")
    lines.append("| | Personalize's training caps | " + " | ".join(b["personalize_caps"] for b in bills) + " |")
    return "\n".join(lines)


def quantities(bills: list[dict[str, Any]]) -> str:
    heads = [f"{b['shoppers']:,}" for b in bills]
    lines = ["| item | unit | " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(bills)]
    for n, row in enumerate(bills[-1]["lines"]):
        cells = [f"{b['lines'][n]['quantity']:,.1f}" + (f" ({b['lines'][n]['detail']})" if b['lines'][n]['detail']
                                                          else "") for b in bills]
        lines.append(f"| {row['item']} | {row['unit']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shoppers", default=",".join(str(s) for s in SHOPPERS))
    p.add_argument("--env", default="prod", help="cdk.json environment whose instance types are priced")
    p.add_argument("--prices", type=Path, default=PRICES)
    p.add_argument("--assumptions", type=Path, default=ASSUMPTIONS)
    p.add_argument("--spark-json", type=Path, help="bench_spark.py's JSON: the Spark throughput of its scale run")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    try:
        prices, assumptions = load_prices(args.prices), load_assumptions(args.assumptions)
        if args.spark_json:
            value, source = spark_throughput_from(args.spark_json)
            assumptions["measured"]["spark_interactions_per_core_second"] = {"value": value, "source": source}
        sizes = [int(float(s)) for s in args.shoppers.split(",") if s.strip()]
    except (CostError, OSError, ValueError) as exc:
        print(f"bench_cost: {exc}", file=sys.stderr)
        return 2
    model = Model(prices, assumptions, instances_of(args.env))
    bills = [model.bill(n) for n in sizes]
    measured = "\n".join(f"- {k}: {v['value']:,.0f} ({v['source']})" for k, v in assumptions["measured"].items())
    load = "\n".join(f"- {k} = {v['value']}: {v['why']}" for k, v in assumptions["load"].items())
    md = (f"# Monthly cost, {prices['region']} ({args.env} instance types), USD\n\n{table(bills)}\n\n"
          f"Quantities:\n\n{quantities(bills)}\n\nPrices: {prices['label']}\n\nMeasured throughputs:\n\n{measured}\n\n"
          f"Load assumptions:\n\n{load}\n")
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.md").write_text(md)
    (args.out / "cost.json").write_text(json.dumps({"env": args.env, "bills": bills,
                                                    "measured": assumptions["measured"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
