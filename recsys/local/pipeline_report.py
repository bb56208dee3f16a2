"""What a local pipeline run printed: the evaluation beside the popularity baseline, the training engine and the
batch step's tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from glue_jobs.schema import BATCH_COLUMNS, BATCH_FOLDERS
from pipeline_steps.definition import BATCH, PUBLISH
from recsys.local.moto_server import LocalAws
from recsys.local.progress import Progress, show
from recsys.local.provision import LocalResources
from recsys.local.s3io import read_parquet
from settings.config import BATCH_PREFIX, PIPELINE_PREFIX

#: Metrics shown from evaluation.json (SageMaker model-quality style), model vs popularity baseline.
SHOWN_METRICS = ("ndcg", "precision", "recall", "f1", "map", "hit_rate", "coverage", "novelty")


def batch_counts(aws: LocalAws, res: LocalResources) -> dict[str, str]:
    """Rows and distinct keys of each batch table, read from where its Glue table points."""
    out = {}
    for name, folder in BATCH_FOLDERS.items():
        frame = read_parquet(aws, f"s3://{res.destination_bucket}/{BATCH_PREFIX}/{folder}/")
        key = next(iter(BATCH_COLUMNS[name]))
        out[name] = f"{len(frame):,} rows ({frame[key].nunique():,} {key}s)"
    return out


def engine_lines(progress: Progress, result, workdir: Path, aws: LocalAws, compare: bool) -> None:  # noqa: ANN001
    """Which engine trained (training_engine), the Spark job's stages, and on Spark the NDCG@10 of train.py on the
    same split beside the Spark model's (issue 23)."""
    from recsys.local.pipeline import engine_report, single_path_ndcg

    report = engine_report(result, workdir)
    if report is None:
        progress.info("training engine: single (train.py as the TrainModel training job)")
        return
    if report["engine"] == "single":
        progress.info(f"training engine: auto -> single ({report['rows']:,} interactions < spark_min_interactions "
                      f"{report['threshold']:,}): train.py on the Spark step's driver, no Spark started")
        return
    progress.info(f"training engine: spark (spark_train.py, the pipeline's Spark step), {report['seconds']:.1f} s "
                  f"in {len(report['stages'])} stages:")
    for i, s in enumerate(report["stages"], 1):
        progress.info(f"  {i}. {s['stage']:<38} {s['seconds']:6.1f} s  {s['detail']}")
    if compare:
        single = single_path_ndcg(result, workdir, aws.subprocess_env())
        spark = result.evaluation.get("metrics", {}).get("ndcg_at_10", {}).get("value", float("nan"))
        progress.info(f"ndcg@10 on the same test split: spark {spark:.4f} | single-instance train.py "
                      f"{single['ndcg_at_10']:.4f} | popularity {single['popularity_ndcg_at_10']:.4f}")


def pipeline_lines(progress: Progress, result, workdir: Path, aws: LocalAws, compare: bool) -> None:  # noqa: ANN001
    """The run's evaluation beside the popularity baseline, how the model was selected, what PublishMetrics and
    BatchRecommend logged, and the training engine (``compare``: on Spark, train.py's NDCG@10 beside it)."""
    metrics = result.evaluation.get("metrics", {})
    rows = [
        {
            "metric": f"{m}@10",
            "model": metrics.get(f"{m}_at_10", {}).get("value"),
            "popularity": metrics.get(f"popularity_{m}_at_10", {}).get("value"),
        }
        for m in SHOWN_METRICS
    ]
    show(progress, "evaluation on the temporal test split", pd.DataFrame(rows).round(4), rows=len(rows))
    selection = result.evaluation.get("selection")
    if selection:  # which validation chose the model, and why (train.py's own summary)
        progress.info(f"model selection: {selection['split']} validation, {selection['validation_users']:,} users "
                      f"-> {selection.get('chosen', '?')}")
        for note in selection.get("notes", []):
            progress.info(f"  {note}")
    for step_name in (PUBLISH, BATCH):  # what the metrics and batch steps say they did
        log = Path(workdir) / PIPELINE_PREFIX / result.execution_id / step_name / "logs" / "stdout.log"
        for line in log.read_text().splitlines() if log.is_file() else []:
            progress.info(f"{step_name}: {line}")
    engine_lines(progress, result, workdir, aws, compare)
