"""Erasure in the local run: the erasure function as deployed (its ``cdk.out`` asset's ``handler``, with the
template's environment: store list, records bucket, retention) on the moto server, plus the workdir's own copies
(``raw/``, ``lake/``, ``pipeline/``), which only exist locally, erased with the same code (``core.forget``).

``python -m recsys forget --user-id U`` after a run: the run's moto server (an in-memory account) ended
with the run, so the CLI erases from the workdir, and also from a live local AWS when ``--endpoint-url``
names one (a moto server you keep up). The last stage of ``make run`` forgets one shopper of the generated
shop against the live server and verifies with :func:`lambdas.erasure.core.every_store`, a scan of every
bucket (every version), every table and the workdir.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lambdas.erasure import core
from recsys.local.moto_server import LocalAws
from recsys.local.provision import LocalResources
from settings.config import Config
from settings.erasure import ENV_BUCKET, function_name, retention
from settings.streaming import streaming_names


def workdir_stores(workdir: Path) -> list[core.Store]:
    """Every folder of the workdir (``raw/``, ``lake/``, ``pipeline/`` and whatever a later stage adds), one store
    each: found by listing, not from a list."""
    workdir = Path(workdir)
    folders = sorted(d for d in workdir.iterdir() if d.is_dir()) if workdir.is_dir() else []
    return [core.DirStore(f"workdir {d.name}/", d) for d in folders]


@dataclass
class LocalErasure:
    result: core.ErasureResult
    seconds: float
    findings: dict[str, list[str]] = field(default_factory=dict)  # store -> places still holding rows
    models: list[str] = field(default_factory=list)  # model bundles (arrays, archives) re-written or deleted
    scanned: int = 0  # stores scanned by the verification
    audit: dict = field(default_factory=dict)  # the audit record written

    @property
    def gone(self) -> bool:
        return not self.findings


def forget_locally(
    cfg: Config,
    user_id: str,
    workdir: Path,
    aws: LocalAws | None = None,
    *,
    after_store=None,
    stubs: dict | None = None,
) -> LocalErasure:
    """Erase ``user_id`` from the local AWS (when given) and the workdir, then scan everything for them.

    On the local AWS the erasure function runs as deployed (``recsys/local/functions.py``): its ``cdk.out``
    asset's ``handler`` with its template's environment, so the store list, records bucket and retention are
    the template's. The workdir's copies (local only) are erased after it under the same suppression key, so
    the same subject hash. ``after_store`` sees the workdir's stores; ``stubs`` go to the function's calls."""
    start = time.perf_counter()
    workdir = Path(workdir)
    lake = core.DirRecords(workdir / "lake")  # the suppression list and audit kept with the lake
    s3 = dynamodb = None
    aws_result, audit = None, {}
    if aws is not None:
        from recsys.local.functions import find_function, invoke

        function = find_function(cfg, function_name(cfg))
        answer = invoke(function, {"user_id": user_id, "requested_by": "local"}, aws, stubs=stubs)
        s3, dynamodb = aws.client("s3"), aws.client("dynamodb")
        records = core.S3Records(s3, function.environment[ENV_BUCKET])
        audit = records.get(answer["audit_key"]) or {}
        lake.put(core.SUPPRESSION_KEY, records.get(core.SUPPRESSION_KEY) or {})
        lake.put(answer["audit_key"], audit)
        aws_result = core.ErasureResult(answer["request_id"], answer["subject_hash"], audit_key=answer["audit_key"],
                                        resumed=answer["resumed"],
                                        removed={n: core.Removed(**r) for n, r in answer["stores"].items()})
    local = core.forget(user_id, workdir_stores(workdir), [lake], requested_by="local", after_store=after_store,
                        retention=retention(cfg))
    if aws_result is None:
        result, audit = local, lake.get(local.audit_key) or {}
    else:
        result = aws_result
        result.removed.update(local.removed)
    dirs = [workdir]  # the verification reads the whole workdir
    everything = core.every_store(s3, dynamodb, dirs)
    findings = core.find_everywhere(user_id, everything)
    models = sorted({m for r in result.removed.values() for m in r.models})
    return LocalErasure(result, time.perf_counter() - start, findings, models, len(everything), audit)


def report_lines(done: LocalErasure) -> list[str]:
    """What the run and the CLI print: per-store counts, the audit record, the scan's verdict."""
    r = done.result
    counts = ", ".join(f"{name} {removed.total:,}" for name, removed in r.removed.items() if removed.total)
    versions = sum(x.versions_deleted for x in r.removed.values())
    lines = [
        f"request {r.request_id} (subject hmac-sha256 {r.subject[:12]}...){' resumed' if r.resumed else ''}",
        f"removed rows/items per store: {counts or 'none (already erased)'}; "
        f"{versions} object version(s) holding them deleted",
        f"audit record (no raw id): .../{r.audit_key}; suppression list: .../{core.SUPPRESSION_KEY} "
        f"(the next training's PrepareData drops the user)",
    ]
    if done.models:
        lines.append(f"model bundles re-written without the user (arrays.npz, model.tar.gz): {len(done.models)}; "
                     "the endpoint answers them as a new shopper from the suppression list at once")  # fmt: skip
    where = "every bucket and version, every table, the workdir; model bundles, capture and stream errors read"
    if done.gone:  # said only when the scan found nothing: never a "yes" it did not check
        lines.append(f"scan of {done.scanned} stores ({where}): user gone from every store scanned: yes "
                     f"({done.seconds:.2f} s)")  # fmt: skip
    else:
        lines.append(f"scan of {done.scanned} stores ({where}): the user is STILL in {len(done.findings)} store(s) "
                     f"({done.seconds:.2f} s)")  # fmt: skip
    for store, places in done.findings.items():
        lines += [f"  still in {store}: {p}" for p in places[:5]]
    audit = done.audit
    if audit.get("not_erased_at_once"):
        lines.append(f"not erased at once, expiring on their own (last copy by {audit['last_copy_expires']}): "
                     + "; ".join(f"{r['store']} {r['days']} d" for r in audit["not_erased_at_once"]))
    return lines


def pick_shopper(training: pd.DataFrame) -> str | None:
    """A shopper of the generated shop with a typical history (the median of the active ones), deterministic."""
    if "user_id" not in training or training.empty:
        return None
    counts = training["user_id"].astype(str).value_counts()
    counts = counts[counts.index.str.match(r"^u\d+$")] if counts.index.str.match(r"^u\d+$").any() else counts
    return str(counts.index[len(counts) // 2])


def _stream_a_view(cfg: Config, aws: LocalAws, user_id: str, training: pd.DataFrame) -> bool:
    """The shopper views a product on the app: through Kinesis and the consumer, so the recent-items table
    holds them too (when the streaming stage provisioned it)."""
    from recsys.local import streaming

    if streaming_names(cfg).table not in aws.client("dynamodb").list_tables().get("TableNames", []):
        return False
    sres = streaming.provision_streaming(cfg, aws)
    product = str(training.loc[training["user_id"] == user_id, "product_id"].iloc[-1])
    view = {"user_id": user_id, "product_id": product, "event_type": "view", "rating": None,
            "timestamp": int(time.time())}  # fmt: skip
    streaming.replay_events(aws, sres, [view])
    streaming.consume_once(aws, sres)
    return bool(streaming.recent_items(aws, sres, user_id))


def forget_stage(progress: Any, cfg: Config, aws: LocalAws, res: LocalResources, workdir: Path,
                 training: pd.DataFrame) -> LocalErasure | None:  # fmt: skip
    """The run's last stage: forget one generated shopper everywhere and show the scan's verdict."""
    user_id = pick_shopper(training)
    with progress.step("Erasure (DPDP/GDPR): python -m recsys forget, the erasure Lambda's code on the local AWS"):
        if user_id is None:
            progress.info("no shopper in the training set: nothing to forget")
            return None
        streamed = _stream_a_view(cfg, aws, user_id, training)
        progress.info(f"forgetting shopper {user_id}" + (" (who also just viewed a product on the stream)"
                                                          if streamed else ""))  # fmt: skip
        done = forget_locally(cfg, user_id, workdir, aws)
        for line in report_lines(done):
            progress.info(line)
    return done
