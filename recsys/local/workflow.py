"""The curation workflow as the local run starts it: the user's raw files found, absent tables made empty, the data
stack's state machine executed from ``cdk.out`` (``curation.py``) as the route of the triggering event starts it,
its counts printed and its events (failed jobs and crawlers, the execution's status) routed by the rules.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from glue_jobs.raw_reader import RawDataError, read_raw
from glue_jobs.schema import CURATED_COLUMNS
from recsys.local.athena import LocalAthena
from recsys.local.curation import CurationCounts, curation_counts, run_curation
from recsys.local.events import Route, Rule, crawler_state_change, databrew_job_state_change, execution_status_change
from recsys.local.moto_server import LocalAws
from recsys.local.progress import Progress, routed
from recsys.local.provision import LocalResources
from recsys.local.s3io import delete_data, write_parquet
from recsys.local.states import state_lines
from settings.config import (
    CLICKSTREAM,
    CLICKSTREAM_RECIPE,
    CURATED_PREFIX,
    FEATURES_PREFIX,
    PROJECT_ROOT,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    TABLES,
)

RAW_SUFFIXES = (".csv", ".parquet")


#: An optional clickstream archive in a user's --data folder (JSON lines, as Firehose writes them).
CLICKSTREAM_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def require_rows(path: Path) -> None:
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
            routed(progress, rules, databrew_job_state_change(job, "FAILED", cfg.region), f"DataBrew job {job} FAILED")
        routed(progress, rules, execution_status_change(started.target, ex.status, cfg.region), f"curation {ex.status}")
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
        routed(progress, rules, databrew_job_state_change(job, "FAILED", cfg.region), f"DataBrew job {job} FAILED")
    for crawl in (c for c in run.crawls.values() if c.status == "FAILED"):
        failed = crawler_state_change(crawl.name, "Failed", crawl.message, cfg.region)
        routed(progress, rules, failed, f"crawler {crawl.name} Failed ({crawl.message})")
    status = execution_status_change(started.target, ex.status, cfg.region)
    return counts, routed(progress, rules, status, f"curation {ex.status}", quiet=brief), run.unloaded


def _shown(value: object) -> str:
    """An execution input in a few words: an event by its type and source, anything else as short JSON."""
    if isinstance(value, dict) and "detail-type" in value:
        kind = str(value["detail-type"])
        return f"the {kind if kind.endswith(' Event') else kind + ' event'} ({value.get('source')})"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def clear_raw(aws: LocalAws, res: LocalResources, table: str) -> None:
    """A table not in this load: its earlier raw objects go (versioning keeps them), as upload_raw does for the rest."""
    s3 = aws.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=res.source_bucket, Prefix=f"{RAW_PREFIX}/{table}/")
    stale = [{"Key": o["Key"]} for page in pages for o in page.get("Contents", [])]
    if stale:
        s3.delete_objects(Bucket=res.source_bucket, Delete={"Objects": stale, "Quiet": True})


def clear_quarantine(aws: LocalAws, res: LocalResources, name: str, lake: Path) -> None:
    """Nothing quarantined this time: an earlier run's quarantine (same workdir) must not be catalogued again."""
    shutil.rmtree(lake / QUARANTINE_PREFIX / name, ignore_errors=True)
    delete_data(aws, f"s3://{res.destination_bucket}/{QUARANTINE_PREFIX}/{name}/")



def publish(aws: LocalAws, res: LocalResources, name: str, prefix: str, frame: pd.DataFrame | pa.Table, lake: Path):
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


def publish_absent(progress: Progress, aws: LocalAws, res: LocalResources, uris: dict[str, str], lake: Path) -> None:
    """Tables not in this load (``uris``: what was uploaded): each exists, empty, so the SQL's joins keep working;
    an earlier load's raw file and quarantine must not be curated or catalogued as this one's."""
    for table in TABLES:
        if table not in uris:  # an earlier load's raw file must not be curated as this one's
            clear_raw(aws, res, table)
            publish(aws, res, table, CURATED_PREFIX, empty_curated(table), lake)
            clear_quarantine(aws, res, table, lake)
            progress.info(f"{table:<13} not provided: an empty curated table keeps joins working")
    if CLICKSTREAM not in uris:  # no archive yet: the declared table exists, empty
        publish(aws, res, CLICKSTREAM, CURATED_PREFIX, empty_curated(CLICKSTREAM_RECIPE), lake)
        clear_quarantine(aws, res, CLICKSTREAM, lake)
