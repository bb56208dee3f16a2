"""The main job: the whole flow rehearsed locally, a thin driver over the engines of ``recsys/local/``.

raw files -> source bucket (moto S3) -> the curation workflow from cdk.out (DataBrew recipes, crawlers, Athena
on DuckDB: features, the training set) -> the SageMaker pipeline from cdk.out -> the deploy function and a real
HTTP endpoint -> the clickstream (Kinesis, consumer, API) whose archive feeds the next training set -> an A/B
test -> monitoring -> erasure. The driver provisions, uploads, advances the local clock and prints; what runs
and in which order comes from the templates, through the stage modules (``workflow``, ``pipeline``,
``deployment``, ``storefront``, ``experiment``, ``monitoring``, ``erasure``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from glue_jobs.raw_reader import RawDataError
from glue_jobs.schema import BATCH_FOLDERS
from lambdas.erasure.core import SUPPRESSION_KEY
from recsys.generator import GeneratorConfig, generate_to_dir
from recsys.local.athena import LocalAthena
from recsys.local.catalog import list_tables, register_prefix
from recsys.local.curation import cdk_out
from recsys.local.deployment import deploy_approved
from recsys.local.events import (
    Route,
    Rule,
    load_rules,
    model_package_state_change,
    pipeline_status_change,
    s3_object_created,
)
from recsys.local.monitoring import model_metrics_history
from recsys.local.moto_server import LocalAws, local_aws
from recsys.local.pipeline_report import batch_counts, pipeline_lines
from recsys.local.progress import Progress, first_route, night, routed, show
from recsys.local.provision import LocalResources, provision, restore_kept, upload_raw
from recsys.local.s3io import read_parquet
from recsys.local.storefront import clickstream_demo, latency_burst, storefront_requests
from recsys.local.workflow import find_raw_files, publish_absent, require_rows, run_curation_workflow
from settings.config import (
    BATCH_PREFIX,
    CLICKSTREAM,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    load_project_config,
)


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
            require_rows(files["interactions"])
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
            publish_absent(progress, aws, res, uris, lake)
            rules = load_rules(cfg)  # EventBridge: the upload starts the workflow only if a rule says so
            key = uris["interactions"].split(f"s3://{res.source_bucket}/", 1)[1]
            uploaded = s3_object_created(res.source_bucket, key, cfg.region)
            started = first_route(routed(progress, rules, uploaded, f"Object Created {key}"), "state machine")
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

        training_route = first_route(routes, "pipeline")
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
                batch = batch_counts(aws, res)
                progress.info("batch recommendations: " + ", ".join(f"{n} {c}" for n, c in batch.items()))
            tables = list_tables(aws, res.glue_database)
            progress.info(f"glue tables in {res.glue_database}: {', '.join(tables)}")
            daily = kpis.groupby("event_date")[["views", "carts", "purchases", "revenue"]].sum().reset_index().tail(5)
            show(progress, "funnel and revenue, last 5 days (all categories)", daily)
            show(progress, "best-selling product per category", top[top.category_rank == 1], rows=15)
        latencies: list[float] = []
        served = deploy_approved(progress, cfg, aws, workdir, rules, pipeline) if pipeline.passed_gate else None
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
                model_metrics_history=model_metrics_history(aws, res, lake),
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
    fired = night(progress, cfg, rules)
    retrains = [r for f in fired for r in f.routes if r.kind == "pipeline"]
    nightly = next((f for f in fired if first_route(f.routes, "state machine")), None)
    if nightly is None:
        progress.info("no schedule rule in cdk.out starts the curation workflow: the archive waits, uncurated")
        return retrains
    counts, routes, unloaded = run_curation_workflow(
        progress, cfg, aws, res, lake, athena, rules=rules, brief=True,
        started=first_route(nightly.routes, "state machine"), trigger=nightly.event,  # type: ignore[arg-type]
    )  # fmt: skip
    retrains += [r for r in routes if r.kind == "pipeline"]
    if CLICKSTREAM not in counts:
        progress.info("clickstream: the workflow skipped its jobs; the training set keeps the exports only")
    for location, rows in unloaded.items():
        progress.info(f"training set for the next pipeline run: {rows:,} rows ({rows - rows_before:+,} from the "
                      f"clickstream) -> {location} (the workflow's UNLOAD)")  # fmt: skip
    return retrains


PIPELINE_TITLE = "SageMaker pipeline run locally (pipeline_steps/): prepare, train, evaluate, gate, register"


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
            routed(progress, rules, failed, "pipeline execution Failed")
            return None
        pipeline_lines(progress, result, workdir, aws, compare=title == PIPELINE_TITLE)
        if result.passed_gate:
            progress.info(f"quality gate passed; model package {result.model_package_arn} ({result.approval_status})")
        else:
            progress.info("quality gate FAILED: no model registered, no endpoint started")
    return result


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
        active = storefront_requests(progress, url, training)
        stream_events = clickstream_demo(progress, cfg, aws, url, training)
        latencies = latency_burst(url, [*active, "new-shopper-003"])
        if generated is not None and capture is not None:  # shoppers act on what they were served
            from recsys.local.attribution import shopping_session

            stream_events += shopping_session(progress, url, generated, capture, invoke)
        progress.info(
            f"{len(latencies)} requests: p50 {np.percentile(latencies, 50):.1f} ms, "
            f"p99 {np.percentile(latencies, 99):.1f} ms (in-process client, one connection at a time)"
        )
    return latencies, stream_events


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
    to = first_route(routed(progress, rules, approved, f"model package {retrained.approval_status}"), "function")
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


