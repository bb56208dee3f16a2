"""The local flow interrupted at a stage or step, then run again: same outputs, nothing duplicated.

One uninterrupted main job (module fixture) is the reference. Each test crashes a run in a reset
moto account at one point, after that point has written part or all of its output, then runs
again in the same workdir and the same account, and compares what a consumer sees: every object
in the destination bucket outside ``pipeline/`` (keys, row counts, content), the raw objects, the
Glue tables, the local lake files, the training splits and evaluation of the last pipeline
execution, and the model packages registered in the group.

To stay within CI time the main job runs with short training (``FAST``) and without the stages
that come after the data plane and the pipeline (endpoint, clickstream archive, monitoring).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import recsys.local.erasure as local_erasure
import recsys.local.monitoring
from monitoring.metrics import MODEL_METRICS_PREFIX
from pipeline_steps.definition import PREPARE, REGISTER, TRAIN
from recsys import main_job
from recsys.cli import main
from recsys.local import curation
from recsys.local import pipeline as local_pipeline
from recsys.local.athena import LocalAthena
from recsys.local.moto_server import _CONFLICTING_ENV, LocalAws
from recsys.local.pipeline import LocalPipelineResult, run_pipeline_locally
from recsys.local.provision import provision, upload_raw
from recsys.local.s3io import list_data_keys, read_parquet, split_s3_uri, write_parquet
from settings.config import BATCH_PREFIX, LOCAL_ACCOUNT, PIPELINE_PREFIX, TRAINING_SET_PREFIX, load_project_config
from stacks.buckets import CURATED, SOURCE
from tests import HEAVY_TIMEOUT_S

pytestmark = [pytest.mark.slow, pytest.mark.timeout(HEAVY_TIMEOUT_S)]
CFG = load_project_config("dev")
SMALL = ["--users", "150", "--products", "60", "--interactions", "3000", "--days", "30"]
FAST = {"models": "popularity,item_knn", "max-eval-users": "300"}


class Interrupted(RuntimeError):
    """The injected crash (a killed process, an expired session ...)."""


# ---- running the main job with a crash injected ---------------------------------------------------


@contextmanager
def quick_main_job(mp: pytest.MonkeyPatch, pipeline: bool = True) -> Iterator[list[LocalPipelineResult]]:
    """Short training (or, ``pipeline=False``, none: the pipeline tests below cover it); endpoint,
    clickstream archive and monitoring skipped; pipeline results collected."""
    results: list[LocalPipelineResult] = []
    real_stage = main_job._pipeline_stage

    def stage(*args: Any, **kwargs: Any) -> LocalPipelineResult | None:
        result = real_stage(*args, **kwargs) if pipeline else LocalPipelineResult("skipped", "Succeeded")
        results.append(result)
        return result

    mp.setattr(local_pipeline, "TRAINING_HYPERPARAMETERS", {**local_pipeline.TRAINING_HYPERPARAMETERS, **FAST})
    real_run = local_pipeline.run_pipeline_locally  # the main job runs the template's definition: FAST on top of it
    mp.setattr(local_pipeline, "run_pipeline_locally", lambda *a, **k: real_run(*a, **{"hyperparameters": FAST, **k}))
    mp.setattr(main_job, "_pipeline_stage", stage)
    mp.setattr(main_job, "_endpoint_stage", lambda *a, **k: ([], []))
    mp.setattr(main_job, "_archive_to_training", lambda *a, **k: None)
    mp.setattr(recsys.local.monitoring, "run_monitoring", lambda *a, **k: Path("dashboard.html"))
    mp.setattr(local_erasure, "forget_stage", lambda *a, **k: None)  # per-request outputs; tests/erasure reruns it
    yield results


def crash_after(real: Callable[..., Any], calls: int = 1) -> Callable[..., Any]:
    """``real``, but the process 'dies' right after its ``calls``-th call has done its work."""
    seen = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        seen[0] += 1
        if seen[0] == calls:
            raise Interrupted(f"crashed after {getattr(real, '__name__', real)} call {calls}")
        return out

    return wrapper


# ---- what a consumer sees ---------------------------------------------------------------------------


#: An Athena query id in a key: the workflow's UNLOAD names its files after the query, new on every run.
_QUERY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _stable(key: str) -> str:
    return _QUERY_ID.sub("<query-id>", key)


def _digest(body: bytes, key: str) -> tuple[int, str] | str:
    """Parquet by content (rows, hash of the sorted rows: a SQL result has no order); anything else by bytes."""
    if key.endswith(".parquet") or body[:4] == b"PAR1":  # UNLOAD's files have no extension
        frame = pq.read_table(io.BytesIO(body)).to_pandas()
        rows = sorted(frame.to_csv(index=False).splitlines())
        return len(frame), hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return hashlib.sha256(body).hexdigest()


def _objects(aws: LocalAws, bucket: str, prefix: str = "") -> dict[str, Any]:
    s3 = aws.client("s3")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    return {_stable(k): _digest(s3.get_object(Bucket=bucket, Key=k)["Body"].read(), k) for k in keys}


def _bucket(kind: str, aws: LocalAws) -> str:
    return CFG.bucket_name(kind, LOCAL_ACCOUNT, aws.region)


def training_files(aws: LocalAws) -> dict[str, bytes]:
    """The training set the curation workflow's UNLOAD wrote: key -> bytes."""
    bucket, s3 = _bucket(CURATED, aws), aws.client("s3")
    keys = list_data_keys(aws, bucket, f"{TRAINING_SET_PREFIX}/")
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def execution_outputs(aws: LocalAws, execution_id: str) -> dict[str, Any]:
    """One execution's S3 outputs by step-relative key; only the training splits and evaluation.json by
    content (model archives and report.md carry timestamps and the execution id)."""
    prefix = f"{PIPELINE_PREFIX}/{execution_id}/"
    out = {}
    for key, digest in _objects(aws, _bucket(CURATED, aws), prefix).items():
        rel = key[len(prefix) :]
        out[rel] = digest if rel.startswith(f"{PREPARE}/") or rel.endswith("evaluation.json") else "present"
    return out


PER_EXECUTION = (f"{PIPELINE_PREFIX}/", f"{MODEL_METRICS_PREFIX}/", f"{BATCH_PREFIX}/")  # pipeline outputs


def _files(root: Path) -> list[str]:
    return [_stable(p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()]


def consumer_view(aws: LocalAws, workdir: Path, result: LocalPipelineResult | None) -> dict[str, Any]:
    dest = _bucket(CURATED, aws)
    sm = aws.client("sagemaker")
    packages = [
        sm.describe_model_package(ModelPackageName=p["ModelPackageArn"])
        for p in sm.list_model_packages(ModelPackageGroupName=CFG.model_package_group)["ModelPackageSummaryList"]
    ]
    tables = aws.client("glue").get_tables(DatabaseName=CFG.glue_database)["TableList"]
    return {
        # pipeline/ and monitoring/model_metrics/ are per pipeline execution (their keys carry its id)
        "data": {k: v for k, v in _objects(aws, dest).items() if not k.startswith(PER_EXECUTION)},
        "raw": sorted(_objects(aws, _bucket(SOURCE, aws))),
        "glue": {  # the batch tables are catalogued after a pipeline run passes the gate
            t["Name"]: t["StorageDescriptor"]["Location"] for t in tables if not t["Name"].startswith("batch_")
        },
        "lake": sorted(rel for rel in _files(workdir / "lake") if not rel.startswith(PER_EXECUTION)),
        "pipeline": execution_outputs(aws, result.execution_id) if result else None,
        "evaluation": result.evaluation if result else None,
        "packages": [
            (p["ModelApprovalStatus"], (p.get("CustomerMetadataProperties") or {}).get("training-fingerprint"))
            for p in packages
        ],
    }


@pytest.fixture(scope="module")
def baseline(moto_endpoint: LocalAws, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run every interrupted-then-rerun one must reproduce."""
    workdir = tmp_path_factory.mktemp("baseline")
    moto_endpoint.reset()
    with pytest.MonkeyPatch.context() as mp:
        for name in _CONFLICTING_ENV:
            mp.delenv(name, raising=False)
        with quick_main_job(mp) as results:
            assert main(["run", "--workdir", str(workdir), *SMALL]) == 0
    [result] = results
    assert result.passed_gate and result.registration == "created"
    training = training_files(moto_endpoint)
    view = consumer_view(moto_endpoint, workdir, result)
    assert view["packages"] == [("Approved", result.training_fingerprint)]
    return {"view": view, "training_parquet": training, "result": result}


# ---- data-plane stages of the main job ----------------------------------------------------------------

STAGE_CRASHES: dict[str, tuple[Any, str, int]] = {
    "raw upload": (main_job, "upload_raw", 1),  # every raw object written, nothing curated
    "recipes, mid-stage": (curation, "write_parquet", 2),  # one job's output written, the other jobs' not
    "catalogue, mid-stage": (curation, "register_prefix", 2),  # two of the Glue tables registered
    "athena, end of stage": (curation.LocalEngines, "_unload", 1),  # features and training set written, no pipeline
}
# The pipeline stage is covered step by step below, on the baseline's training set.


@pytest.mark.parametrize("where", sorted(STAGE_CRASHES))
def test_main_job_interrupted_in_a_data_stage_then_rerun_reproduces_the_outputs_without_duplicates(
    aws_env: LocalAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: dict[str, Any], where: str
) -> None:
    module, name, calls = STAGE_CRASHES[where]
    with quick_main_job(monkeypatch, pipeline=False), monkeypatch.context() as crash:
        crash.setattr(module, name, crash_after(getattr(module, name), calls))
        with pytest.raises(Interrupted):
            main(["run", "--workdir", str(tmp_path), *SMALL])

    with quick_main_job(monkeypatch, pipeline=False):
        assert main(["run", "--workdir", str(tmp_path), *SMALL]) == 0
    view = consumer_view(aws_env, tmp_path, None)
    expected = baseline["view"]
    assert view["data"] == expected["data"]  # same keys: no extra part files, same rows and content
    for key in ("raw", "glue", "lake"):
        assert view[key] == expected[key], key


# ---- pipeline steps -----------------------------------------------------------------------------------


def _partial_upload(step_name: str) -> Callable[..., int]:
    """local_pipeline.upload that, for ``step_name``, writes only the first file of the output and dies."""
    real = local_pipeline.upload

    def upload(aws: LocalAws, src: Path, uri: str) -> int:
        if f"/{step_name}/" not in uri:
            return real(aws, src, uri)
        first = sorted(p for p in src.rglob("*") if p.is_file())[0]
        bucket, key = split_s3_uri(uri)
        aws.client("s3").upload_file(str(first), bucket, f"{key.rstrip('/')}/{first.relative_to(src).as_posix()}")
        raise Interrupted(f"crashed while uploading {step_name}'s output")

    return upload


def _crash_after_script(step_name: str) -> Callable[..., None]:
    """The step's script ran (its local output exists), then the runner died before uploading it."""
    real = local_pipeline.run_script

    def run_script(spec: Any, *args: Any, **kwargs: Any) -> None:
        real(spec, *args, **kwargs)
        if spec.name == step_name:
            raise Interrupted(f"crashed after {step_name}'s script")

    return run_script


#: step -> (the patched local_pipeline function, its replacement, rerun as the same execution?).
#: Same execution = SageMaker's RetryPipelineExecution; a new one = what the main job does.
#: Representative points (a partial output, a lost local result, a registration whose step died);
#: ``bench/bench_faults.py`` interrupts every step.
STEP_CRASHES: dict[str, tuple[str, Callable[[], Any], bool]] = {
    PREPARE: ("upload", lambda: _partial_upload(PREPARE), True),
    TRAIN: ("run_script", lambda: _crash_after_script(TRAIN), False),
    REGISTER: ("create_model_package", lambda: crash_after(local_pipeline.create_model_package), False),  # created
}


@pytest.mark.parametrize("step_name", list(STEP_CRASHES))
def test_pipeline_interrupted_in_a_step_then_rerun_gives_the_same_model_and_no_duplicate_package(
    aws_env: LocalAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: dict[str, Any], step_name: str
) -> None:
    res = provision(CFG, aws_env)
    for key, body in baseline["training_parquet"].items():  # the training set the baseline's workflow wrote
        aws_env.client("s3").put_object(Bucket=res.destination_bucket, Key=key, Body=body)
    attribute, replacement, same_execution = STEP_CRASHES[step_name]
    interrupted_id = local_pipeline.new_execution_id()
    # the definition the baseline's main job ran (its hyperparameters are part of the training fingerprint)
    ml_template = curation.cdk_out() / f"{CFG.prefix}-ml.template.json"
    template = local_pipeline.TemplatePipeline.load(ml_template, CFG.pipeline_name)
    with monkeypatch.context() as crash, pytest.raises(Interrupted):
        crash.setattr(local_pipeline, attribute, replacement())
        run_pipeline_locally(
            CFG, aws_env, res, tmp_path, lambda _: None, hyperparameters=FAST, execution_id=interrupted_id,
            template=template,
        )

    rerun_id = interrupted_id if same_execution else None
    result = run_pipeline_locally(
        CFG, aws_env, res, tmp_path, lambda _: None, hyperparameters=FAST, execution_id=rerun_id, template=template
    )

    reference: LocalPipelineResult = baseline["result"]
    assert result.status == "Succeeded" and result.passed_gate
    assert result.training_fingerprint == reference.training_fingerprint
    assert result.evaluation == reference.evaluation
    assert execution_outputs(aws_env, result.execution_id) == baseline["view"]["pipeline"]  # no stale objects
    assert consumer_view(aws_env, tmp_path, result)["packages"] == baseline["view"]["packages"]  # one package
    assert result.registration == ("already registered" if step_name == REGISTER else "created")


# ---- the building blocks ----------------------------------------------------------------------------


def test_rewriting_a_parquet_prefix_replaces_it_instead_of_appending(aws_env: LocalAws) -> None:
    bucket = _bucket(CURATED, aws_env)
    aws_env.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    frame = pd.DataFrame({"user_id": ["u1", "u2"]})
    write_parquet(aws_env, frame, f"s3://{bucket}/curated/users/part-00001.parquet")  # e.g. left by a Spark job
    for _ in range(2):
        write_parquet(aws_env, frame, f"s3://{bucket}/curated/users/")
    assert list_data_keys(aws_env, bucket, "curated/users/") == ["curated/users/part-00000.parquet"]
    assert len(read_parquet(aws_env, f"s3://{bucket}/curated/users/")) == 2


def test_a_retried_step_output_holds_exactly_the_new_files(aws_env: LocalAws, tmp_path: Path) -> None:
    bucket = _bucket(CURATED, aws_env)
    aws_env.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws_env.region})
    uri = f"s3://{bucket}/pipeline/e1/EvaluateModel/evaluation"
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "partial.tmp").write_text("half")
    local_pipeline.upload(aws_env, tmp_path / "first", uri)
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "evaluation.json").write_text(json.dumps({"metrics": {}}))
    assert local_pipeline.upload(aws_env, tmp_path / "second", uri) == 1
    assert list(_objects(aws_env, bucket, "pipeline/e1/")) == ["pipeline/e1/EvaluateModel/evaluation/evaluation.json"]


@pytest.mark.xdist_group("data_template")
def test_a_rerun_with_nothing_to_quarantine_replaces_the_earlier_quarantine(
    aws_env: LocalAws, tmp_path: Path, data_template_path: Path
) -> None:
    """The quarantine job overwrites its output (as the stack's job says): an earlier run's rows never stay."""
    res = provision(CFG, aws_env)
    header = "user_id,product_id,event_type,rating,timestamp\n"
    good, bad = "u1,p1,view,,2026-01-01T10:00:00Z\n", "u2,p1,teleport,,2026-01-01T11:00:00Z\n"
    raw = tmp_path / "interactions.csv"
    for content, quarantined in ((header + good + bad, 1), (header + good, 0)):
        raw.write_text(content)
        upload_raw(aws_env, res, {"interactions": raw})
        run = curation.run_curation(CFG, aws_env, res, tmp_path / "lake", LocalAthena({}), template=data_template_path)
        assert curation.curation_counts(run.runs)["interactions"].quarantined == quarantined
    (key,) = list_data_keys(aws_env, res.destination_bucket, "quarantine/interactions/")
    assert len(read_parquet(aws_env, f"s3://{res.destination_bucket}/{key}")) == 0
    assert len(pd.read_parquet(tmp_path / "lake" / "quarantine" / "interactions")) == 0
    assert list_data_keys(aws_env, res.destination_bucket, "curated/interactions/") != []


@pytest.mark.xdist_group("data_template")
def test_a_rerun_without_a_clickstream_archive_does_not_catalogue_the_earlier_clickstream_quarantine(
    aws_env: LocalAws, tmp_path: Path, data_template_path: Path
) -> None:
    """Same workdir, fresh moto account: the earlier run's local quarantine/clickstream must not be catalogued."""
    res = provision(CFG, aws_env)
    stale = tmp_path / "lake" / "quarantine" / "clickstream"
    stale.mkdir(parents=True)
    (stale / "part-00000.parquet").write_bytes(b"left by an earlier run")
    files = {
        "interactions": "user_id,product_id,event_type,rating,timestamp\nu1,p1,view,,2026-01-01T10:00:00Z\n",
        "users": "user_id,signup_date,city,age_band\nu1,2025-01-01,Pune,25-34\n",
        "products": "product_id,category,price\np1,Sarees,499\n",
    }
    for table, text in files.items():
        (tmp_path / f"{table}.csv").write_text(text)
    upload_raw(aws_env, res, {table: tmp_path / f"{table}.csv" for table in files})
    athena = LocalAthena({})
    run = curation.run_curation(CFG, aws_env, res, tmp_path / "lake", athena, template=data_template_path)
    assert run.execution.status == "SUCCEEDED"
    assert {r["job"] for r in run.execution.output["jobs"] if r["skipped"]} >= {f"{CFG.prefix}-clickstream-quarantine"}
    tables = {t["Name"] for t in aws_env.client("glue").get_tables(DatabaseName=res.glue_database)["TableList"]}
    assert "quarantine_clickstream" not in tables and "quarantine_clickstream" not in athena.tables
