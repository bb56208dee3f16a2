"""Pipeline step PublishMetrics: the producer of the model-quality and drift metrics on AWS.

Runs after EvaluateModel, beside the quality gate (a model that fails the gate is exactly what the
"model NDCG below gate" alarm is for). It publishes, with the names and dimensions of
``monitoring/metrics.py`` (packed into the source archive, so both engines use the same module):

- the evaluated model's NDCG@10, popularity NDCG@10, coverage and lift (per group and per version);
- the drift score of the newest fifth of the training set against the rest, and each feature's index;
- one JSON line per evaluated model under ``--history-uri`` (the ``model_metrics`` Glue table that
  the QuickSight model sheet and the local dashboard read).

    python publish_metrics.py --evaluation-dir DIR --data-dir DIR --model-group G --model-version V \
        --history-uri s3://bucket/monitoring/model_metrics --region ap-south-1
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recsys_core.data import DataError, read_table, run_entry_point  # noqa: E402

from monitoring import metrics as m  # noqa: E402 - packed beside this script in the source archive
from monitoring.drift import drift_score, split_by_time  # noqa: E402

#: Fewer training rows than this: no drift score (a fifth of a handful of rows says nothing).
MIN_DRIFT_ROWS = 10
#: What the drift score compares (monitoring/drift.py); the training-set extraction joins them in.
DRIFT_COLUMNS = ("user_id", "category", "price")


def _training_frame(data_dir: Path):  # noqa: ANN202 - a DataFrame or None
    files = sorted(p for p in data_dir.rglob("*") if p.suffix in (".parquet", ".csv") and p.is_file())
    if not files:
        return None
    import pandas as pd

    return pd.concat([read_table(p) for p in files], ignore_index=True)


def _history_key(history_uri: str, model_version: str) -> tuple[str, str]:
    if not history_uri.startswith("s3://"):
        raise DataError(f"--history-uri must be an s3:// URI, got {history_uri!r}")
    bucket, _, prefix = history_uri[5:].partition("/")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model_version.rsplit("/", 1)[-1])
    return bucket, f"{prefix.strip('/')}/{safe}.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--evaluation-dir", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True, help="the training-set extraction (drift)")
    p.add_argument("--model-group", required=True)
    p.add_argument("--model-version", required=True, help="the pipeline execution that evaluated the model")
    p.add_argument("--history-uri", required=True)
    p.add_argument("--region", required=True)
    args = p.parse_args(argv)

    report = args.evaluation_dir / "evaluation.json"
    if not report.is_file():
        raise DataError(f"{report}: no evaluation report (EvaluateModel writes it)")
    evaluation = json.loads(report.read_text())
    now = datetime.now(UTC)
    cloudwatch = boto3.client("cloudwatch", region_name=args.region)
    values = m.publish_model_quality(cloudwatch, evaluation, args.model_version, model_group=args.model_group, when=now)
    print(f"model {args.model_version}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))

    bucket, key = _history_key(args.history_uri, args.model_version)
    record = m.model_metrics_record(evaluation, args.model_version, now)
    boto3.client("s3", region_name=args.region).put_object(
        Bucket=bucket, Key=key, Body=(json.dumps(record) + "\n").encode(), ContentType="application/x-ndjson"
    )
    print(f"model-metrics row -> s3://{bucket}/{key}")

    training = _training_frame(args.data_dir)
    if training is None or len(training) < MIN_DRIFT_ROWS:
        print(f"drift: skipped (fewer than {MIN_DRIFT_ROWS} training rows)")
        return 0
    missing = sorted(set(DRIFT_COLUMNS) - set(training.columns))
    if missing:
        print(f"drift: skipped (the training set has no {', '.join(missing)} column)")
        return 0
    drift = drift_score(*split_by_time(training))
    m.publish_drift(cloudwatch, drift, model_group=args.model_group, when=now)
    per = ", ".join(f"{k} {v:.4f}" for k, v in drift.per_feature.items())
    print(f"drift (latest 20% of the training set vs the rest): score {drift.score:.4f} ({per})")
    return 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, "publish_metrics"))
