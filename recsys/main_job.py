"""The main job: the whole flow rehearsed locally, with the same definitions a deploy uses.

raw files -> source bucket (moto S3) -> the DataBrew recipes (pandas executor) -> curated and
quarantine Parquet in the destination bucket -> Glue tables (the crawler's local equivalent)
-> Athena SQL on DuckDB: feature tables (CTAS), the training set (UNLOAD), KPIs -> the SageMaker pipeline
steps -> a real HTTP endpoint -> the clickstream (Kinesis, consumer, API) whose archive feeds the
next training set -> monitoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from glue_jobs.raw_reader import RawDataError, read_raw
from glue_jobs.schema import BATCH_COLUMNS, BATCH_FOLDERS, CURATED_COLUMNS
from lambdas.erasure.core import SUPPRESSION_KEY
from monitoring.metrics import MODEL_METRICS_PREFIX
from pipeline_steps.definition import BATCH, PUBLISH
from recsys.generator import GeneratorConfig, generate_to_dir
from recsys.local.athena import LocalAthena
from recsys.local.catalog import list_tables, register_prefix
from recsys.local.curation import CurationCounts, cdk_out, curation_counts, run_curation
from recsys.local.events import (
    Firing,
    LocalClock,
    Route,
    Rule,
    crawler_state_change,
    databrew_job_state_change,
    describe,
    execution_status_change,
    load_rules,
    model_package_state_change,
    pipeline_status_change,
    route,
    s3_object_created,
)
from recsys.local.moto_server import LocalAws, local_aws
from recsys.local.provision import LocalResources, provision, restore_kept, upload_raw
from recsys.local.s3io import delete_data, read_parquet, write_parquet
from recsys.local.states import state_lines
from settings.config import (
    BATCH_PREFIX,
    CLICKSTREAM,
    CLICKSTREAM_RECIPE,
    CURATED_PREFIX,
    FEATURES_PREFIX,
    PIPELINE_PREFIX,
    PROJECT_ROOT,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    TABLES,
    load_project_config,
)

RAW_SUFFIXES = (".csv", ".parquet")
#: An optional clickstream archive in a user's --data folder (JSON lines, as Firehose writes them).
CLICKSTREAM_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


class Progress:
    """Numbered stage lines with their duration: what the job did, in order."""

    def __init__(self) -> None:
        self.stage = 0
        self.t0 = time.perf_counter()
        self.clock = LocalClock()  # the rehearsal's time: advancing it fires the schedule rules of cdk.out

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.stage += 1
        print(f"\n[{self.stage}] {title}", flush=True)
        start = time.perf_counter()
        yield
        print(f"    ({time.perf_counter() - start:.1f} s)", flush=True)

    def info(self, line: str) -> None:
        print(f"    {line}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _require_rows(path: Path) -> None:
    """Stop before anything is provisioned when the interactions file has no data rows."""
    if not len(read_raw(path, "interactions", name=str(path)).frame):
        raise RawDataError(f"{path}: has a header but no rows; nothing to curate or train on")


def find_raw_files(folder: Path) -> dict[str, Path]:
    """``users``/``products``/``interactions`` files in a user's folder (only interactions is required),
    and optionally a ``clickstream.jsonl[.gz]`` archive of stream events."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--data folder not found: {folder}")
    found: dict[str, Path] = {}
    for table in (*TABLES, CLICKSTREAM):
        suffixes = CLICKSTREAM_SUFFIXES if table == CLICKSTREAM else RAW_SUFFIXES
        matches = [folder / f"{table}{suffix}" for suffix in suffixes if (folder / f"{table}{suffix}").is_file()]
        if len(matches) > 1:
            raise ValueError(f"both {matches[0].name} and {matches[1].name} in {folder}: keep one")
        if matches:
            found[table] = matches[0]
    if "interactions" not in found:
        raise FileNotFoundError(
            f"no interactions.csv or interactions.parquet in {folder} (required; users and products are optional)"
        )
    return found


def _local_parquet(df: pd.DataFrame | pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path)


def empty_curated(table: str) -> pa.Table:
    """An absent optional table still exists, empty, so joins in the SQL keep working."""
    return pa.schema(CURATED_COLUMNS[table]).empty_table()


def run_curation_workflow(progress: Progress, cfg, aws: LocalAws, res: LocalResources, lake: Path,  # fmt: skip
                          athena: LocalAthena, *, rules: list[Rule], started: Route, trigger: dict,
                          brief: bool = False) -> tuple[dict[str, CurationCounts], list[Route], dict[str, int]]:
    """The data stack's curation state machine, executed from the synthesized template (recsys/local/curation.py),
    as ``started`` (the route of the ``trigger`` event to it) starts it: its input is what that target receives.

    Prints the states as executed (``brief``: one line), each table's counts (``brief``: the clickstream's) and what
    its UNLOAD states wrote (the training set); a job the workflow skipped is named with the reason. Its events
    (failed jobs, the execution's status) go through the templates' EventBridge rules; returns the counts, where
    the status event went and the UNLOAD locations with their rows."""
    if started.resource != cfg.curation_state_machine:
        raise RawDataError(f"{started.label}: no local engine for state machine {started.resource}")
    execution_input = started.input(trigger)
    run = run_curation(cfg, aws, res, lake, athena, execution_input=execution_input)
    ex = run.execution
    where = run.template.relative_to(PROJECT_ROOT) if run.template.is_relative_to(PROJECT_ROOT) else run.template
    progress.info(f"state machine {cfg.curation_state_machine} from {where} (definition sha256 {run.sha256[:12]}): "
                  f"{ex.status}, {len(ex.steps)} states executed, input {_shown(execution_input)}")  # fmt: skip
    if not brief:
        for line in state_lines(ex.steps):
            progress.info(line)
    if ex.status != "SUCCEEDED":  # the failed jobs' and the execution's events go where the rules say, then stop
        for job in (r.job for r in run.runs.values() if r.error):
            _route(progress, rules, databrew_job_state_change(job, "FAILED", cfg.region), f"DataBrew job {job} FAILED")
        _route(progress, rules, execution_status_change(started.target, ex.status, cfg.region), f"curation {ex.status}")
        raise RawDataError(f"the curation workflow failed: {ex.error}: {ex.cause}")
    counts = curation_counts(run.runs)
    for table in (CLICKSTREAM,) if brief else (*TABLES, CLICKSTREAM):
        if table in counts:
            _print_counts(progress, table, counts[table])
    skipped = [r["job"] for r in ex.output.get("jobs", []) if r.get("skipped")]
    if skipped:
        reasons = sorted({run.runs[j].error or "failed" for j in skipped if j in run.runs})
        progress.info(f"skipped by the workflow (CurationJobsSkipped): {', '.join(skipped)}: {'; '.join(reasons)}")
    if not brief:
        for name, rows in run.features.items():
            progress.info(f"feature table {name:<28} {rows:>9,} rows -> s3://.../{FEATURES_PREFIX}/{name}/")
    for location, rows in run.unloaded.items() if not brief else ():
        progress.info(f"training set {rows:,} rows -> {location} (the workflow's UNLOAD)")
    for job in skipped if not brief else ():
        _route(progress, rules, databrew_job_state_change(job, "FAILED", cfg.region), f"DataBrew job {job} FAILED")
    for crawl in (c for c in run.crawls.values() if c.status == "FAILED"):
        failed = crawler_state_change(crawl.name, "Failed", crawl.message, cfg.region)
        _route(progress, rules, failed, f"crawler {crawl.name} Failed ({crawl.message})")
    status = execution_status_change(started.target, ex.status, cfg.region)
    return counts, _route(progress, rules, status, f"curation {ex.status}", quiet=brief), run.unloaded


def _shown(value: object) -> str:
    """An execution input in a few words: an event by its type and source, anything else as short JSON."""
    if isinstance(value, dict) and "detail-type" in value:
        kind = str(value["detail-type"])
        return f"the {kind if kind.endswith(' Event') else kind + ' event'} ({value.get('source')})"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _starts(routes: list[Route], kind: str) -> Route | None:
    """The first route to a target of ``kind`` (state machine, pipeline, function ...), as the template says."""
    return next((r for r in routes if r.kind == kind), None)


def _night(progress: Progress, cfg, rules: list[Rule]) -> list[Firing]:
    """Advance the local clock to the next schedule firing that starts a state machine (at most 8 days), printing
    every firing on the way: the nightly run happens only if a schedule rule of ``cdk.out`` says so."""
    fired = progress.clock.advance(rules, cfg.region, stop=lambda f: _starts(f.routes, "state machine") is not None)
    for firing in fired:
        progress.info(f"clock: {firing.label} -> {describe(firing.routes)}")
    return fired


def _route(progress: Progress, rules: list[Rule], evt: dict, what: str, *, quiet: bool = False) -> list[Route]:
    routes = route(rules, evt)
    if not quiet:
        progress.info(f"EventBridge: {what} -> {describe(routes)}")
    return routes


def _clear_raw(aws: LocalAws, res: LocalResources, table: str) -> None:
    """A table not in this load: its earlier raw objects go (versioning keeps them), as upload_raw does for the rest."""
    s3 = aws.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=res.source_bucket, Prefix=f"{RAW_PREFIX}/{table}/")
    stale = [{"Key": o["Key"]} for page in pages for o in page.get("Contents", [])]
    if stale:
        s3.delete_objects(Bucket=res.source_bucket, Delete={"Objects": stale, "Quiet": True})


def _clear_quarantine(aws: LocalAws, res: LocalResources, name: str, lake: Path) -> None:
    """Nothing quarantined this time: an earlier run's quarantine (same workdir) must not be catalogued again."""
    shutil.rmtree(lake / QUARANTINE_PREFIX / name, ignore_errors=True)
    delete_data(aws, f"s3://{res.destination_bucket}/{QUARANTINE_PREFIX}/{name}/")


def _raw_format(key: str) -> str | None:
    """The format a key's name gives (``.jsonl.gz`` -> jsonl); None lets the reader sniff the bytes."""
    suffixes = [x.lstrip(".") for x in Path(key).suffixes if x != ".gz"]
    return suffixes[-1] if suffixes and suffixes[-1] in ("csv", "parquet", "jsonl", "json") else None


def _publish(aws: LocalAws, res: LocalResources, name: str, prefix: str, frame: pd.DataFrame | pa.Table, lake: Path):
    """One output of a recipe job: replaces ``<prefix>/<name>/`` locally and in the destination bucket."""
    _local_parquet(frame, lake / prefix / name / "part-00000.parquet")
    write_parquet(aws, frame, f"s3://{res.destination_bucket}/{prefix}/{name}/")


def _print_counts(progress: Progress, table: str, c: CurationCounts) -> None:
    ok = "ok" if c.rows_in == c.curated + c.quarantined else "MISMATCH"
    progress.info(
        f"{table:<13} in {c.rows_in:>10,}  curated {c.curated:>10,}  quarantined {c.quarantined:>7,}  "
        f"(in = curated + quarantined: {ok})"
    )
    for reason, n in sorted(c.reasons.items(), key=lambda kv: -kv[1])[:6]:
        progress.info(f"{'':<15}{n:>7,}  {reason}")


def _show(progress: Progress, title: str, df: pd.DataFrame, rows: int = 8) -> None:
    progress.info(f"{title} ({len(df):,} rows)")
    for line in df.head(rows).convert_dtypes().to_string(index=False, max_colwidth=40).splitlines():
        progress.info(f"  {line}")


def run_main_job(args: argparse.Namespace, gen_cfg: GeneratorConfig) -> int:
    cfg = load_project_config(args.env)
    workdir = Path(args.workdir)
    lake = workdir / "lake"
    progress = Progress()
    print(f"recsys-mlops local run: environment '{cfg.env_name}', region {cfg.region}, workdir {workdir}")

    with progress.step("Raw data"):
        if args.data:
            files = find_raw_files(Path(args.data))
            progress.info(f"using your files from {args.data}: {', '.join(p.name for p in files.values())}")
            _require_rows(files["interactions"])
        else:
            summary = generate_to_dir(workdir / "raw", gen_cfg, progress=progress.info)
            files = dict(summary.paths)
            progress.info(
                "generated " + ", ".join(f"{t} {n:,}" for t, n in summary.rows.items()) + f" (seed {gen_cfg.seed})"
            )

    with local_aws(cfg.region) as aws:
        with progress.step(f"Local AWS (moto server at {aws.url}): buckets, KMS key, Glue database, Athena workgroup"):
            res = provision(cfg, aws)
            for kind, name in res.buckets.items():
                progress.info(f"s3://{name:<58} ({kind})")
            progress.info(f"glue database {res.glue_database}, athena workgroup {res.athena_workgroup}")
            uris = upload_raw(aws, res, files)
            for table, uri in uris.items():
                progress.info(f"uploaded {table:<13} -> {uri}")
            # An earlier run's erasure requests: on AWS the list stays in the bucket, beside the training set, where
            # PrepareData drops the forgotten shoppers; moto starts empty, so the workdir's copy goes back.
            for key in restore_kept(aws, res, lake, (SUPPRESSION_KEY,)):
                progress.info(f"restored {key} from the workdir (kept between runs, as on AWS)")

        with progress.step("Curation workflow: the data stack's state machine from cdk.out, on the local engines"):
            athena = LocalAthena({})
            for table in TABLES:
                if table not in uris:  # an earlier load's raw file must not be curated as this one's
                    _clear_raw(aws, res, table)
                    _publish(aws, res, table, CURATED_PREFIX, empty_curated(table), lake)
                    _clear_quarantine(aws, res, table, lake)
                    progress.info(f"{table:<13} not provided: an empty curated table keeps joins working")
            if CLICKSTREAM not in uris:  # no archive yet: the declared table exists, empty
                _publish(aws, res, CLICKSTREAM, CURATED_PREFIX, empty_curated(CLICKSTREAM_RECIPE), lake)
                _clear_quarantine(aws, res, CLICKSTREAM, lake)
            rules = load_rules(cfg)  # EventBridge: the upload starts the workflow only if a rule says so
            key = uris["interactions"].split(f"s3://{res.source_bucket}/", 1)[1]
            uploaded = s3_object_created(res.source_bucket, key, cfg.region)
            started = _starts(_route(progress, rules, uploaded, f"Object Created {key}"), "state machine")
            if started is None:
                raise RawDataError(f"no EventBridge rule in cdk.out starts {cfg.curation_state_machine} for {key}")
            counts, routes, unloaded = run_curation_workflow(progress, cfg, aws, res, lake, athena, rules=rules,
                                                             started=started, trigger=uploaded)  # fmt: skip
            if counts["interactions"].curated == 0:
                raise RawDataError(
                    f"{files['interactions'].name}: none of its {counts['interactions'].rows_in:,} rows passed the "
                    f"recipe (quarantine reasons: {', '.join(sorted(counts['interactions'].reasons)) or 'none'}); "
                    f"nothing to train on. The rows are in {lake / QUARANTINE_PREFIX / 'interactions'}")

        with progress.step("Athena SQL on DuckDB (sql/*.sql, transpiled by sqlglot): KPIs"):
            kpis = athena.query("kpi_daily_funnel")
            top = athena.query("top_products_by_category")

        training_route = _starts(routes, "pipeline")
        if training_route is None:
            print(f"\nstopped after {progress.elapsed:.1f} s: no EventBridge rule starts {cfg.pipeline_name} when "
                  "curation succeeds (see above), so it would not run on AWS either")
            return 1
        pipeline = _pipeline_stage(progress, cfg, aws, res, workdir, rules=rules, started=training_route)
        if pipeline is None:
            print(f"\nstopped after {progress.elapsed:.1f} s: the pipeline failed (see above); curated data in {lake}")
            return 1
        training = read_parquet(aws, next(reversed(unloaded)))  # what the workflow wrote and PrepareData read

        with progress.step("Results"):
            if pipeline.passed_gate:  # the batch step's outputs, catalogued as the stack declares them
                for name, folder in BATCH_FOLDERS.items():
                    register_prefix(aws, res.glue_database, res.destination_bucket, f"{BATCH_PREFIX}/{folder}", name)
                batch = _batch_counts(aws, res)
                progress.info("batch recommendations: " + ", ".join(f"{n} {c}" for n, c in batch.items()))
            tables = list_tables(aws, res.glue_database)
            progress.info(f"glue tables in {res.glue_database}: {', '.join(tables)}")
            daily = kpis.groupby("event_date")[["views", "carts", "purchases", "revenue"]].sum().reset_index().tail(5)
            _show(progress, "funnel and revenue, last 5 days (all categories)", daily)
            _show(progress, "best-selling product per category", top[top.category_rank == 1], rows=15)
        latencies: list[float] = []
        served = _deploy(progress, cfg, aws, workdir, rules, pipeline) if pipeline.passed_gate else None
        deployed = served is not None
        if served is not None:
            world = None if args.data else gen_cfg  # simulated shoppers need the generator's tastes
            from recsys.local.capture import CaptureWriter

            capture = CaptureWriter(aws.client("s3"), res.destination_bucket, cfg.endpoint_name)  # data capture
            latencies, stream_events = _endpoint_stage(progress, cfg, aws, served, training, world, capture)
            if world is not None and stream_events:
                from recsys.local.attribution import register_capture

                register_capture(athena, capture, lake)  # the endpoint_capture table the nightly workflow reads
            if stream_events:
                with progress.step("Clickstream archive -> the next training set (Firehose and the clickstream jobs)"):
                    nightly = _archive_to_training(progress, cfg, aws, res, athena, lake, stream_events,
                                                   len(training), rules)  # fmt: skip
            if world is not None and stream_events:
                _experiment(progress, cfg, aws, res, athena, workdir, world, rules, capture, len(training),
                            started=nightly)  # fmt: skip
                from recsys.local.attribution import attribution_stage

                with progress.step("Attribution: captured impressions x clickstream (sql/attribution_daily.sql)"):
                    attribution_stage(progress, athena, cfg.attribution_window_hours, aws.client("cloudwatch"),
                                      cfg.experiment_alpha)

        with progress.step("Monitoring: custom metrics and alarms in (moto) CloudWatch, the analysts' dashboard"):
            from recsys.local.monitoring import run_monitoring

            dashboard = run_monitoring(
                cfg,
                aws,
                athena,
                workdir,
                progress,
                model_metrics_history=_model_metrics_history(aws, res, lake),
                endpoint_latencies_ms=latencies or None,
                data_quality_published=True,
            )
            progress.info(f"dashboard: {dashboard.resolve()} (open it in a browser)")

        from recsys.local.erasure import forget_stage  # the last stage: one shopper forgotten everywhere

        forget_stage(progress, cfg, aws, res, workdir, training)
    print(f"\ndone in {progress.elapsed:.1f} s; local outputs in {lake}; raw in s3 under {RAW_PREFIX}/")
    if args.serve and deployed:
        from recsys.local.endpoint import serve_forever

        print(f"\n--serve: the registered model stays up ({served}); Ctrl-C stops it")
        serve_forever(served)
    return 0


def _archive_to_training(
    progress: Progress,
    cfg,
    aws: LocalAws,
    res: LocalResources,
    athena: LocalAthena,
    lake: Path,
    events: list[dict | str],
    rows_before: int,
    rules: list[Rule],
) -> list[Route]:
    """What the nightly workflow does with the stream: archive (Firehose) -> the night passes on the local clock ->
    the schedule rule starts the curation workflow, whose UNLOAD state writes the next training set. Returns the
    night's routes to the pipeline (curation SUCCEEDED, a weekly retrain on the way): none, no retrain."""
    from recsys.local import streaming

    key = streaming.archive_events(aws, res.source_bucket, events)
    progress.info(f"firehose (local): {len(events)} records -> s3://{res.source_bucket}/{key}")
    fired = _night(progress, cfg, rules)
    retrains = [r for f in fired for r in f.routes if r.kind == "pipeline"]
    nightly = next((f for f in fired if _starts(f.routes, "state machine")), None)
    if nightly is None:
        progress.info("no schedule rule in cdk.out starts the curation workflow: the archive waits, uncurated")
        return retrains
    counts, routes, unloaded = run_curation_workflow(
        progress, cfg, aws, res, lake, athena, rules=rules, brief=True,
        started=_starts(nightly.routes, "state machine"), trigger=nightly.event,  # type: ignore[arg-type]
    )  # fmt: skip
    retrains += [r for r in routes if r.kind == "pipeline"]
    if CLICKSTREAM not in counts:
        progress.info("clickstream: the workflow skipped its jobs; the training set keeps the exports only")
    for location, rows in unloaded.items():
        progress.info(f"training set for the next pipeline run: {rows:,} rows ({rows - rows_before:+,} from the "
                      f"clickstream) -> {location} (the workflow's UNLOAD)")  # fmt: skip
    return retrains


#: Metrics shown from evaluation.json (SageMaker model-quality style), model vs popularity baseline.
SHOWN_METRICS = ("ndcg", "precision", "recall", "f1", "map", "hit_rate", "coverage", "novelty")


def _batch_counts(aws: LocalAws, res: LocalResources) -> dict[str, str]:
    """Rows and distinct keys of each batch table, read from where its Glue table points."""
    out = {}
    for name, folder in BATCH_FOLDERS.items():
        frame = read_parquet(aws, f"s3://{res.destination_bucket}/{BATCH_PREFIX}/{folder}/")
        key = next(iter(BATCH_COLUMNS[name]))
        out[name] = f"{len(frame):,} rows ({frame[key].nunique():,} {key}s)"
    return out


def _model_metrics_history(aws: LocalAws, res: LocalResources, lake: Path) -> list[dict]:
    """Every model_metrics row: this run's (from the bucket, where PublishMetrics put them) and, since the
    local AWS starts empty each run, the earlier runs' rows kept in the workdir's lake."""
    folder = lake / MODEL_METRICS_PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    s3 = aws.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=res.destination_bucket, Prefix=MODEL_METRICS_PREFIX)
    for obj in (o for page in pages for o in page.get("Contents", [])):
        body = s3.get_object(Bucket=res.destination_bucket, Key=obj["Key"])["Body"].read()
        (folder / Path(obj["Key"]).name).write_bytes(body)
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


PIPELINE_TITLE = "SageMaker pipeline run locally (pipeline_steps/): prepare, train, evaluate, gate, register"


def _engine_lines(progress: Progress, result, workdir: Path, aws: LocalAws, compare: bool) -> None:  # noqa: ANN001
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


def _pipeline_stage(progress: Progress, cfg, aws: LocalAws, res: LocalResources, workdir: Path,
                    title: str = PIPELINE_TITLE, *, rules: list[Rule], started: Route):  # fmt: skip
    """prepare -> train -> evaluate -> quality gate -> register, as the SageMaker pipeline defines them; started by
    the ``started`` route (its target is the pipeline), a failure is an execution status event routed by the rules."""
    from recsys.local.pipeline import PipelineStepError, TemplatePipeline, run_pipeline_locally

    with progress.step(title):
        try:
            template = TemplatePipeline.load(cdk_out() / f"{cfg.prefix}-ml.template.json", cfg.pipeline_name)
            result = run_pipeline_locally(cfg, aws, res, workdir, progress.info, template=template)
        except PipelineStepError as err:
            first, *tail = str(err).splitlines()
            progress.info(f"pipeline FAILED: {first}")
            for line in tail:
                progress.info(f"    {line}")
            progress.info("no model registered, no endpoint started; the step's full log is in the folder above")
            failed = pipeline_status_change(started.target, "Failed", cfg.region)
            _route(progress, rules, failed, "pipeline execution Failed")
            return None
        metrics = result.evaluation.get("metrics", {})
        rows = [
            {
                "metric": f"{m}@10",
                "model": metrics.get(f"{m}_at_10", {}).get("value"),
                "popularity": metrics.get(f"popularity_{m}_at_10", {}).get("value"),
            }
            for m in SHOWN_METRICS
        ]
        _show(progress, "evaluation on the temporal test split", pd.DataFrame(rows).round(4), rows=len(rows))
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
        _engine_lines(progress, result, workdir, aws, compare=title == PIPELINE_TITLE)
        if result.passed_gate:
            progress.info(f"quality gate passed; model package {result.model_package_arn} ({result.approval_status})")
        else:
            progress.info("quality gate FAILED: no model registered, no endpoint started")
    return result


def _deploy(progress: Progress, cfg, aws: LocalAws, workdir: Path, rules: list[Rule], pipeline) -> Path | None:
    """The approval event through the rules to the deploy function, run from its cdk.out asset; returns the model
    the endpoint then serves (its config's Model archive: the registered package, unpacked), or None if no rule
    sends the event to a function or the endpoint failed (its state event routed by the rules either way)."""
    from recsys.local.deployment import route_endpoint_state, start_endpoint
    from recsys.local.experiment import describe_deployment, run_deploy_function

    approved = model_package_state_change(
        cfg.model_package_group, pipeline.approval_status, pipeline.model_package_arn, cfg.region)  # fmt: skip
    to = _starts(_route(progress, rules, approved, f"model package {pipeline.approval_status}"), "function")
    if to is None:
        return None
    deployment = run_deploy_function(cfg, aws, to.resource, to.input(approved))
    progress.info(describe_deployment(deployment))
    if "endpoint_config_name" not in deployment.result:
        return None
    started = start_endpoint(aws, deployment.config_name, Path(workdir) / "endpoint")
    for line in route_endpoint_state(cfg, aws, rules, started):
        progress.info(line)
    if started.failure:
        return None
    [model] = started.models.values()
    return model


def _endpoint_stage(
    progress: Progress, cfg, aws: LocalAws, model_dir: Path, training: pd.DataFrame,
    generated: GeneratorConfig | None = None, capture: object | None = None,
) -> tuple[list[float], list[dict | str]]:
    """Serve the registered model over real HTTP and show a few answers, as a shopper's app would get them.

    Returns the measured latencies and the clickstream records put on Kinesis (for the archive step)."""
    from recsys.local.endpoint import deployed_model, invoke, serve_endpoint

    title = "Endpoint: sagemaker_src/inference.py over HTTP on 127.0.0.1 (GET /ping, POST /invocations)"
    environment = deployed_model(aws, cfg.endpoint_name, model_dir.parent).environment  # the Model's, as on AWS
    with progress.step(title), serve_endpoint(model_dir, environment=environment, s3=aws.client("s3")) as url:
        progress.info(f"serving at {url}")
        active = training["user_id"].value_counts().index[:2].tolist()
        popular = training["product_id"].value_counts().index[:2].tolist()
        requests = [
            *({"user_id": u, "k": 5} for u in active),
            {"user_id": "new-shopper-001", "k": 5},
            {"user_id": "new-shopper-002", "k": 5, "recent_product_ids": popular},
        ]
        for request in requests:
            answer = invoke(f"{url}/invocations", request)
            recs = ", ".join(r["product_id"] for r in answer.get("recommendations", []))
            steer = f" after viewing {request['recent_product_ids']}" if "recent_product_ids" in request else ""
            progress.info(f"{request['user_id']}{steer}: [{answer.get('strategy')}] {recs}")
        for label, request in _feature_requests(training, active[0] if active else "u1", popular):
            answer = invoke(f"{url}/invocations", request)
            recs = ", ".join(
                r["product_id"] + "".join(f" ({flag})" for flag in ("promoted", "explored") if r.get(flag))
                for r in answer.get("recommendations", [])
            )
            progress.info(f"{label}: [{answer.get('strategy')}] {recs}")
        stream_events = _clickstream_demo(progress, cfg, aws, url, training)
        latencies = _latency_burst(url, [*active, "new-shopper-003"])
        if generated is not None and capture is not None:  # shoppers act on what they were served
            from recsys.local.attribution import shopping_session

            stream_events += shopping_session(progress, url, generated, capture, invoke)
        progress.info(
            f"{len(latencies)} requests: p50 {np.percentile(latencies, 50):.1f} ms, "
            f"p99 {np.percentile(latencies, 99):.1f} ms (in-process client, one connection at a time)"
        )
    return latencies, stream_events


def _feature_requests(training: pd.DataFrame, user: str, popular: list[str]) -> list[tuple[str, dict]]:
    """A product page, a cart, trending, and a filtered + promoted list (README: request fields)."""
    out: list[tuple[str, dict]] = []
    if popular:
        out.append((f"product page {popular[0]}", {"product_id": popular[0], "k": 5}))
        out.append((f"cart {popular[:2]}", {"cart_product_ids": popular[:2], "k": 5}))
    out.append(("trending now", {"strategy": "trending", "k": 5}))
    prices = pd.to_numeric(training.get("price", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(prices):
        low, high = (float(round(prices.quantile(q))) for q in (0.25, 0.75))
        promoted = training["product_id"].value_counts().index[10:40].tolist()
        request = {"user_id": user, "k": 5, "filters": {"price_min": low, "price_max": high},
                   "promotion": {"name": "festival", "product_ids": promoted, "slots": 1}}
        out.append((f"{user}, price {low:.0f}-{high:.0f} INR, 1 promoted slot", request))
    return out


def _clickstream_demo(progress: Progress, cfg, aws: LocalAws, url: str, training: pd.DataFrame) -> list[dict | str]:
    """Kinesis -> consumer Lambda -> DynamoDB -> API Lambda -> endpoint, on moto: a new shopper's
    recommendations before and after a burst of views (issue 7's real-time path). Both functions run through their
    handlers from their cdk.out assets with the template's environment: the consumer as its event source mapping
    invokes it (batch size, starting position, retries, bisection, on-failure queue from the template), the API
    as API Gateway does (InvokeEndpoint, which moto only fakes, answered by the local endpoint). One malformed
    record rides along: the consumer dead-letters it, the archive keeps it, the recipe quarantines it."""
    from recsys.local import streaming

    sres = streaming.provision_streaming(cfg, aws)
    mapping = streaming.enable_mapping(cfg, aws, sres)  # StartingPosition LATEST: from now on
    shopper = "stream-shopper-001"
    known = training["category"].dropna() if "category" in training else pd.Series(dtype="str")
    known = known[known != "unknown"]  # a catalogue without categories (or none at all) still gets a demo
    category = known.mode().iloc[0] if len(known) else None
    pool = training[training["category"] == category] if category is not None else training
    ranked = pool["product_id"].value_counts().index.tolist()
    viewed = ranked[5:10] or ranked[:5]
    if not viewed:
        progress.info("clickstream: no products in the training set to view; the real-time demo is skipped")
        return []

    def show(label: str) -> None:
        answer = streaming.recommend_through_api(cfg, aws, shopper, 5, url)["body"]
        recs = ", ".join(r["product_id"] for r in answer.get("recommendations", []))
        progress.info(f"{label:<30} [{answer.get('strategy')}] {recs}")

    show(f"{shopper} before any event")
    now = int(time.time())
    views: list[dict | str] = [
        {"user_id": shopper, "product_id": p, "event_type": "view", "rating": None, "timestamp": now + i}
        for i, p in enumerate(viewed)
    ]
    malformed = {"user_id": shopper, "product_id": viewed[0], "event_type": "wishlist", "timestamp": now}
    start = time.perf_counter()
    streaming.replay_events(aws, sres, [*views, malformed])
    stats = streaming.poll(aws, mapping, sres)
    peek = aws.client("sqs").receive_message(QueueUrl=sres.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    reasons = sorted(json.loads(m["Body"]).get("reason", "?") for m in peek.get("Messages", []))
    progress.info(
        f"clickstream: {len(views)} views of {category or 'popular products'} + 1 malformed record put on Kinesis; "
        f"consumer {mapping.function.name} (cdk.out/{mapping.function.code_dir.name[:12]}..., its event source "
        f"mapping: {mapping.properties['StartingPosition']}, batches of {mapping.batch_size}) read {stats.records} in "
        f"{stats.batches} batch(es), {stats.failed} failed; dead-letter queue: {', '.join(reasons) or 'empty'}; "
        f"{(time.perf_counter() - start) * 1000:.0f} ms; recent items {streaming.recent_items(aws, sres, shopper)}"
    )
    show(f"{shopper} after the views")
    return [*views, malformed]


def _experiment(
    progress: Progress, cfg, aws: LocalAws, res: LocalResources, athena: LocalAthena, workdir: Path,
    world: GeneratorConfig, rules: list[Rule], capture, rows_before: int, *, started: list[Route],
) -> None:
    """An A/B (or shadow) test between two model VERSIONS, as the deploy function sets it up on AWS: the nightly
    retrain on the next training set registers a second version; its approval goes to the function (run from its
    cdk.out asset), which serves it beside the current one (settings experiment_*); SIMULATED shoppers act on both
    variants' answers, captured per variant; their events are archived and curated like any clickstream, so the
    attribution stage computes the table and the verdict per variant (recsys/local/experiment.py)."""
    if cfg.experiment_mode == "off":
        progress.info(f"experiment_mode is off in {cfg.env_name}: the next approval would replace the model (no A/B)")
        return
    if not started:
        progress.info("no rule started the pipeline after the night's curation run: no retrain, no second version")
        return
    why = " and ".join(sorted({r.rule.logical_id.rstrip("0123456789ABCDEF") for r in started}))
    retrained = _pipeline_stage(progress, cfg, aws, res, workdir, rules=rules, started=started[0], title=(
        f"Nightly retrain ({why}): the same pipeline on the next training set (exports + clickstream) -> a second "
        "version"))  # fmt: skip
    if retrained is None or not retrained.passed_gate:
        return
    approved = model_package_state_change(
        cfg.model_package_group, retrained.approval_status, retrained.model_package_arn, cfg.region)  # fmt: skip
    to = _starts(_route(progress, rules, approved, f"model package {retrained.approval_status}"), "function")
    if to is None:
        return
    from recsys.local.attribution import register_capture
    from recsys.local.experiment import (
        describe_deployment,
        describe_plan,
        experiment_plan,
        experiment_session,
        run_deploy_function,
    )

    title = (f"A/B test of two model versions (experiment_mode {cfg.experiment_mode}, challenger "
             f"{cfg.experiment_challenger_percent} %): the deploy function's variants, SIMULATED shoppers")
    with progress.step(title):
        deployment = run_deploy_function(cfg, aws, to.resource, to.input(approved), instance_endpoint=True)
        progress.info(describe_deployment(deployment))
        plan = experiment_plan(aws, deployment, Path(workdir) / "endpoint")
        for line in describe_plan(plan):
            progress.info(line)
        if not plan.running:
            return
        events, writers = experiment_session(progress, plan, aws.client("s3"), res.destination_bucket,
                                             cfg.endpoint_name, world)
    register_capture(athena, [capture, *writers], Path(workdir) / "lake")  # before the nightly workflow re-runs
    with progress.step("Clickstream archive: the A/B shoppers' events (Firehose and the clickstream jobs)"):
        _archive_to_training(progress, cfg, aws, res, athena, Path(workdir) / "lake", events, rows_before, rules)


def _latency_burst(url: str, users: list[str], n: int = 200) -> list[float]:
    """A short sequential burst, so the endpoint alarms are computed from measured latencies."""
    from recsys.local.endpoint import invoke

    out = []
    for i in range(n):
        start = time.perf_counter()
        invoke(f"{url}/invocations", {"user_id": users[i % len(users)], "k": 10})
        out.append((time.perf_counter() - start) * 1000)
    return out
