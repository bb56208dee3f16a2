"""Erasure in the local run: the erasure function as deployed (its ``cdk.out`` asset's ``handler``, with the
template's environment: store list, records bucket, retention) on the moto server, plus the workdir's own copies
(``raw/``, ``lake/``, ``pipeline/``), which only exist locally, erased with the same code (``core.forget``).

``python -m recsys forget --user-id U`` after a run: the run's moto server (an in-memory account) ended
with the run, so the CLI erases from the workdir, and also from a live local AWS when ``--endpoint-url``
names one (a moto server you keep up). The last stage of ``make run`` forgets one shopper of the generated
shop against the live server and verifies with :func:`lambdas.erasure.core.every_store`, a scan of every
bucket (every version), every table and the workdir. Meanwhile it serves the deployed endpoint (the Model the
local AWS records, with its container Environment) and asks it for the shopper before and after: the answer after
must be a new shopper's (:class:`ServedCheck`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lambdas.erasure import core
from recsys.local.moto_server import LocalAws
from recsys.local.provision import LocalResources
from settings.config import Config
from settings.erasure import ENV_BUCKET, function_name, retention


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
    holds them too. The streaming stack's stream and table exist on AWS whatever else ran, and the erasure
    function visits the table: provisioned here when no earlier stage did (a run whose model failed the gate)."""
    from recsys.local import streaming

    sres = streaming.provision_streaming(cfg, aws)
    product = str(training.loc[training["user_id"] == user_id, "product_id"].iloc[-1])
    view = {"user_id": user_id, "product_id": product, "event_type": "view", "rating": None,
            "timestamp": int(time.time())}  # fmt: skip
    streaming.replay_events(aws, sres, [view])
    streaming.consume_once(aws, sres)
    return bool(streaming.recent_items(aws, sres, user_id))


#: The shopper the endpoint check compares with: in no model, so answered as a new shopper.
NEW_SHOPPER = "new-shopper-erasure-check"


def _shown(answer: dict) -> tuple[str, list[str]]:
    return str(answer.get("strategy")), [str(r["product_id"]) for r in answer.get("recommendations", [])]


@dataclass
class ServedCheck:
    """What the deployed endpoint answered the forgotten shopper before and after the forget, and a new shopper."""

    user: str
    before: dict
    after: dict
    new_shopper: dict
    suppression_uri: str  # the Model's RECSYS_SUPPRESSION_URI; "" when its Environment names none

    @property
    def personalised_before(self) -> bool:
        return _shown(self.before) != _shown(self.new_shopper)

    @property
    def non_personalised(self) -> bool:
        """The answer after the forget is a new shopper's: same strategy, same products in the same order."""
        return _shown(self.after) == _shown(self.new_shopper)

    def line(self) -> str:
        strategy, products = _shown(self.after)
        answered = f"[{strategy}] {', '.join(products[:5])}"
        where = "the deployed Model's Environment names no suppression list"
        if self.suppression_uri:
            where = f"suppression list {self.suppression_uri}, from the deployed Model's Environment"
        if not self.personalised_before:
            return (f"endpoint after the forget: {self.user} -> {answered}; they were not personalised before either, "
                    f"so this shows nothing ({where})")  # fmt: skip
        if self.non_personalised:
            return (f"endpoint after the forget: {self.user} -> {answered} = a new shopper's answer: not personalised "
                    f"(was [{_shown(self.before)[0]}]; {where})")  # fmt: skip
        return f"endpoint after the forget: {self.user} -> {answered}: STILL PERSONALISED ({where})"


@contextmanager
def deployed_endpoint(cfg: Config, aws: LocalAws, workdir: Path) -> Iterator[Any]:
    """The environment's endpoint as the local AWS records it (its config's Model: the archive and the container's
    Environment, which the deploy function copied from the registered package), served over HTTP; None when no
    endpoint is deployed."""
    from botocore.exceptions import ClientError

    from recsys.local.endpoint import deployed_model, serve_endpoint

    try:
        deployed = deployed_model(aws, cfg.endpoint_name, Path(workdir) / "endpoint")
    except ClientError:  # the quality gate stopped the run before a deployment
        yield None
        return
    with serve_endpoint(deployed.model_dir, environment=deployed.environment, s3=aws.client("s3")) as url:
        yield url


def forget_served(cfg: Config, user_id: str, workdir: Path, aws: LocalAws, url: Any,
                  **kwargs: Any) -> tuple[LocalErasure, ServedCheck]:  # fmt: skip
    """:func:`forget_locally` while the deployed endpoint at ``url`` serves: its answer for the shopper before and
    after, and a new shopper's. Between the two the endpoint's background re-read of the list (every 30 s on AWS)
    runs at once: the local clock moves past it."""
    from recsys.local.endpoint import invoke

    def ask(user: str) -> dict:
        return invoke(url, {"user_id": user, "k": 5})

    before, new_shopper = ask(user_id), ask(NEW_SHOPPER)
    done = forget_locally(cfg, user_id, workdir, aws, **kwargs)
    reader = url.endpoint.suppression
    if reader is not None and reader.uri.startswith("s3://"):
        reader.refresh_s3()
    check = ServedCheck(user_id, before, ask(user_id), new_shopper, reader.uri if reader is not None else "")
    return done, check


def forget_stage(progress: Any, cfg: Config, aws: LocalAws, res: LocalResources, workdir: Path,
                 training: pd.DataFrame) -> LocalErasure | None:  # fmt: skip
    """The run's last stage: forget one generated shopper everywhere, show the scan's verdict and what the deployed
    endpoint answers them afterwards."""
    user_id = pick_shopper(training)
    with progress.step("Erasure (DPDP/GDPR): python -m recsys forget, the erasure Lambda's code on the local AWS"):
        if user_id is None:
            progress.info("no shopper in the training set: nothing to forget")
            return None
        streamed = _stream_a_view(cfg, aws, user_id, training)
        progress.info(f"forgetting shopper {user_id}" + (" (who also just viewed a product on the stream)"
                                                          if streamed else ""))  # fmt: skip
        check = None
        with deployed_endpoint(cfg, aws, workdir) as url:
            if url is None:
                done = forget_locally(cfg, user_id, workdir, aws)
            else:
                done, check = forget_served(cfg, user_id, workdir, aws, url)
        for line in report_lines(done):
            progress.info(line)
        progress.info(check.line() if check is not None else "no endpoint deployed: no served answer to check")
    return done
