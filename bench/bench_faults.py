"""Fault campaign on the local flow: each stage and pipeline step interrupted once and run again, and
S3 errors injected on moto (transient ones spread over a run, persistent ones reported).

Usage: ``.venv/bin/python bench/bench_faults.py [--transient 8] [--skip-pipeline]``

Every scenario starts from an empty moto account and a fresh workdir; after the fault the flow is
run again (without the fault) in the same workdir and account, and what a consumer sees (curated,
quarantine, features and training objects with their rows and content, raw objects, Glue tables,
local lake files; for the pipeline, the last execution's splits and evaluation and the registered
packages) is compared with an uninterrupted run. The main job runs with short training and without
its endpoint, clickstream-archive and monitoring stages (``tests/reliability/test_faults_pipeline.py``,
whose helpers this reuses). Injected S3 errors are botocore ``before-send`` responses
(``recsys.local.faults``): the real retry policy answers them, with its real backoff.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline_steps.definition import EVALUATE, PACKAGE, PREPARE, REGISTER, TRAIN  # noqa: E402
from recsys.cli import main  # noqa: E402
from recsys.local import pipeline as local_pipeline  # noqa: E402
from recsys.local.faults import S3Fault, inject_s3_faults  # noqa: E402
from recsys.local.moto_server import MAX_ATTEMPTS, LocalAws, local_aws  # noqa: E402
from recsys.local.provision import provision  # noqa: E402
from tests.reliability.test_faults_pipeline import (  # noqa: E402
    CFG,
    FAST,
    SMALL,
    STAGE_CRASHES,
    Interrupted,
    _crash_after_script,
    _partial_upload,
    consumer_view,
    crash_after,
    execution_outputs,
    quick_main_job,
    training_files,
)

DATA_KEYS = ("data", "raw", "glue", "lake")
Row = tuple[str, str, str, str, float]


def run_job(workdir: Path, pipeline: bool, patch: Callable[[pytest.MonkeyPatch], None] | None = None) -> tuple:
    """The quick main job in-process, its output swallowed; returns (exit code or exception, stderr, results)."""
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, quick_main_job(mp, pipeline=pipeline) as results:
        if patch:
            patch(mp)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code: Any = main(["run", "--workdir", str(workdir), *SMALL])
            except Interrupted as exc:
                code = exc
    return code, err.getvalue().strip(), results


def same(view: dict[str, Any], ref: dict[str, Any], keys: tuple[str, ...]) -> str:
    diff = [k for k in keys if view[k] != ref[k]]
    return "yes" if not diff else f"NO ({', '.join(diff)})"


def baseline(aws: LocalAws, root: Path) -> tuple[dict[str, Any], Any, dict[str, bytes]]:
    aws.reset()
    code, err, results = run_job(root / "baseline", pipeline=True)
    if code != 0:
        sys.exit(f"the uninterrupted run failed ({code}): {err}")
    view = consumer_view(aws, root / "baseline", results[-1])
    return view, results[-1], training_files(aws)


def stage_crashes(aws: LocalAws, root: Path, ref: dict[str, Any]) -> list[Row]:
    rows = []
    for where, (module, name, calls) in STAGE_CRASHES.items():
        aws.reset()
        workdir, t0 = root / f"stage-{name}", time.perf_counter()

        def crash(mp: pytest.MonkeyPatch, module=module, name: str = name, calls: int = calls) -> None:
            mp.setattr(module, name, crash_after(getattr(module, name), calls))

        first, _, _ = run_job(workdir, pipeline=False, patch=crash)
        code, err, _ = run_job(workdir, pipeline=False)
        ok = isinstance(first, Interrupted) and code == 0
        view = consumer_view(aws, workdir, None)
        rows.append(
            (
                "crash",
                f"main job: {where}",
                "recovered" if ok else f"FAILED {err}",
                same(view, ref, DATA_KEYS),
                time.perf_counter() - t0,
            )
        )
    return rows


STEPS: dict[str, tuple[str, Callable[[], Any], bool, str]] = {
    PREPARE: ("upload", lambda: _partial_upload(PREPARE), True, "part of output uploaded"),
    TRAIN: ("run_script", lambda: _crash_after_script(TRAIN), False, "trained, not uploaded"),
    EVALUATE: ("upload", lambda: _partial_upload(EVALUATE), True, "part of output uploaded"),
    PACKAGE: ("run_script", lambda: _crash_after_script(PACKAGE), True, "packed, not uploaded"),
    REGISTER: ("register_model", lambda: crash_after(local_pipeline.register_model), False, "package created"),
}


def step_crashes(aws: LocalAws, root: Path, ref: dict[str, Any], ref_result: Any,
                 training: dict[str, bytes]) -> list[Row]:  # fmt: skip
    rows = []
    for step_name, (attribute, replacement, same_execution, what) in STEPS.items():
        aws.reset()
        t0, workdir = time.perf_counter(), root / f"step-{step_name}"
        res = provision(CFG, aws)
        for key, body in training.items():  # the training set the baseline's workflow wrote
            aws.client("s3").put_object(Bucket=res.destination_bucket, Key=key, Body=body)
        interrupted_id = local_pipeline.new_execution_id()
        outcome = "FAILED: no crash"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(local_pipeline, attribute, replacement())
            try:
                local_pipeline.run_pipeline_locally(
                    CFG, aws, res, workdir, lambda _: None, hyperparameters=FAST, execution_id=interrupted_id
                )
            except Interrupted:
                outcome = "recovered"
        result = local_pipeline.run_pipeline_locally(
            CFG,
            aws,
            res,
            workdir,
            lambda _: None,
            hyperparameters=FAST,
            execution_id=interrupted_id if same_execution else None,
        )
        view = consumer_view(aws, workdir, result)
        identical = same(view, ref, ("pipeline", "evaluation", "packages"))
        if execution_outputs(aws, result.execution_id) != ref["pipeline"]:
            identical = "NO (execution prefix)"
        mode = "same execution" if same_execution else "new execution"
        rows.append(("crash", f"{step_name}: {what}; rerun: {mode}", outcome, identical, time.perf_counter() - t0))
    assert ref_result.training_fingerprint
    return rows


def s3_faults(aws: LocalAws, root: Path, ref: dict[str, Any], transient: int) -> list[Row]:
    rows = []
    spread = [
        (S3Fault("PutObject", "SlowDown", times=transient, every=2), "every 2nd PutObject"),
        (S3Fault("GetObject", "InternalError", times=transient, every=2), "every 2nd GetObject"),
        (S3Fault("PutObject", "InternalError", times=MAX_ATTEMPTS - 1), "first PutObject, back to back"),
    ]
    for fault, where in spread:
        aws.reset()
        t0, workdir = time.perf_counter(), root / f"s3-{fault.operation}-{fault.kind}-{fault.every}"
        with inject_s3_faults(fault):
            code, err, _ = run_job(workdir, pipeline=False)
        view = consumer_view(aws, workdir, None)
        outcome = "recovered" if code == 0 else f"FAILED: {err[:80]}"
        rows.append(
            (f"S3 {fault.kind} x{fault.injected}", where, outcome, same(view, ref, DATA_KEYS), time.perf_counter() - t0)
        )
    persistent = [
        (S3Fault("PutObject", "AccessDenied", times=None, key_contains="curated/interactions/"), "PutObject"),
        (S3Fault("GetObject", "InternalError", times=None, key_contains="raw/interactions/"), "GetObject"),
    ]
    for fault, where in persistent:
        aws.reset()
        t0, workdir = time.perf_counter(), root / f"s3-persistent-{fault.operation}"
        with inject_s3_faults(fault):
            code, err, _ = run_job(workdir, pipeline=False)
        reported = code == 1 and err.startswith("error: AWS request failed:") and "s3://" in err
        glue_empty = aws.client("glue").get_tables(DatabaseName=CFG.glue_database)["TableList"] == []
        rerun, _, _ = run_job(workdir, pipeline=False)  # the fault is gone: run again
        view = consumer_view(aws, workdir, None)
        outcome = "reported" if reported and glue_empty else f"NOT CLEAN: {err[:80]}"
        key = err.split("(s3://")[-1].rstrip(")").partition("/")[2]  # the object the error names
        rows.append(
            (
                f"S3 {fault.kind} x{fault.injected}, persistent",
                f"{where}, error names {key}",
                outcome,
                same(view, ref, DATA_KEYS) if rerun == 0 else "NO (rerun failed)",
                time.perf_counter() - t0,
            )
        )
    return rows


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transient", type=int, default=8, help="spread transient S3 errors per kind (default 8)")
    parser.add_argument("--skip-pipeline", action="store_true", help="only data-plane crashes and S3 faults")
    args = parser.parse_args()

    start = time.perf_counter()
    with local_aws(CFG.region) as aws, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        ref, ref_result, training = baseline(aws, root)
        rows: list[Row] = [("none", "uninterrupted main job (reference)", "ok", "-", time.perf_counter() - t0)]
        rows += stage_crashes(aws, root, ref)
        if not args.skip_pipeline:
            rows += step_crashes(aws, root, ref, ref_result, training)
        rows += s3_faults(aws, root, ref, args.transient)

    print(f"{'fault':<32} {'where':<62} {'outcome':<10} {'rerun identical':<15} {'time s':>6}")
    for fault, where, outcome, identical, seconds in rows:
        print(f"{fault:<32} {where:<62} {outcome:<10} {identical:<15} {seconds:>6.1f}")
    faults = rows[1:]
    survived = sum(r[2] in ("recovered", "reported") for r in faults)
    identical = sum(r[3] == "yes" for r in faults)
    print(
        f"\n{len(faults)} faults: {survived} survived (recovered or cleanly reported), {identical} reruns identical "
        f"to the uninterrupted run; retries: standard mode, {MAX_ATTEMPTS} attempts; "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main_bench()
