"""Soak run of the local endpoint: steady mixed load for a bounded time; errors, latency and server memory over time.

    .venv/bin/python bench/bench_soak.py                          # train on generated data, serve, soak 90 s
    .venv/bin/python bench/bench_soak.py --model-dir DIR --duration 300 --rate 300
    .venv/bin/python bench/bench_soak.py --sighup-every 20        # also hot-reload the model under load

The endpoint runs as ``python -m recsys serve`` in its own process (its own session, stopped with
it); the load runs in this process: ``--concurrency`` threads, each on one keep-alive connection,
paced to ``--rate`` requests/s in total (a steady load, not a saturating one: ``bench_endpoint.py``
measures the maximum). Only 127.0.0.1 is ever targeted and the run is bounded by ``--duration``.

The mix covers every request shape of CONTRACTS §3: known users, unknown users, sessions
(``recent_product_ids``), a ``category`` filter, ``exclude`` modes, ``exclude_product_ids``, small
``instances`` batches, plus ~3% bad requests that must be answered 400. Every ``--window`` seconds
a row shows requests, errors (a good request not answered 200, or a bad one not answered 400),
5xx, timeouts, p50/p99 latency, and the server's memory: VmRSS summed over the server process and
its workers (shared copy-on-write pages are counted once per process) and its open descriptors.
The verdict: zero errors, zero 5xx, zero timeouts, and RSS growth from the first warm window (the
second; the first is warm-up) to the last under ``--rss-bound-mb``. A plot of p50/p99 and RSS over
time is written to ``--plot``. Exit code 1 if the verdict fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_endpoint import LOCAL_HOSTS, ROOT, stop_server, train_default_model, wait_for_url, wait_ready  # noqa: E402

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
DEFAULT_PLOT = ROOT / "out" / "bench" / "soak.png"
TIMEOUT_S = 5.0


# ------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Req:
    body: bytes
    headers: dict[str, str]
    good: bool  # a valid request (must be 200) or a deliberately bad one (must be 400)
    kind: str


def soak_requests(
    users: list[str], items: list[str], categories: list[str], n: int = 5000, seed: int = 0, bad_share: float = 0.03
) -> list[Req]:
    """A shuffled mix of every CONTRACTS §3 request shape, with ``bad_share`` bad requests."""
    rng = random.Random(seed)
    shapes: list[tuple[float, str, Callable[[int], dict]]] = [
        (0.30, "known", lambda i: {"user_id": rng.choice(users), "k": 10}),
        (0.10, "known+category", lambda i: {"user_id": rng.choice(users), "k": 10, "category": rng.choice(categories)}),
        (0.07, "exclude=interacted", lambda i: {"user_id": rng.choice(users), "k": 10, "exclude": "interacted"}),
        (0.05, "exclude=none", lambda i: {"user_id": rng.choice(users), "k": 10, "exclude": "none"}),
        (
            0.05,
            "exclude_product_ids",
            lambda i: {"user_id": rng.choice(users), "k": 10, "exclude_product_ids": rng.sample(items, 5)},
        ),
        (0.15, "unknown", lambda i: {"user_id": f"new-{i}", "k": 10}),
        (
            0.10,
            "unknown+session",
            lambda i: {"user_id": f"new-{i}", "k": 10, "recent_product_ids": rng.sample(items, 3)},
        ),
        (
            0.05,
            "known+session",
            lambda i: {"user_id": rng.choice(users), "k": 10, "recent_product_ids": rng.sample(items, 2)},
        ),
        (
            0.05,
            "batch",
            lambda i: {"instances": [{"user_id": rng.choice(users), "k": 5}, {"user_id": f"new-{i}", "k": 5}]},
        ),
    ]
    bad: list[tuple[bytes, dict[str, str], str]] = [
        (b'{"user_id": ', JSON_HEADERS, "bad:not-json"),
        (b'{"k": 10}', JSON_HEADERS, "bad:no-user_id"),
        (b'{"user_id": "u1", "k": 0}', JSON_HEADERS, "bad:k=0"),
        (b'{"user_id": "u1"}', {"Content-Type": "text/csv"}, "bad:content-type"),
        (b'{"user_id": "u1", "exclude": "everything"}', JSON_HEADERS, "bad:exclude"),
    ]
    total = sum(w for w, _, _ in shapes)
    out = []
    for i in range(n):
        if rng.random() < bad_share:
            body, headers, kind = rng.choice(bad)
            out.append(Req(body, headers, False, kind))
            continue
        r, acc = rng.random() * total, 0.0
        for weight, kind, make in shapes:
            acc += weight
            if r < acc:
                out.append(Req(json.dumps(make(i)).encode(), JSON_HEADERS, True, kind))
                break
    return out


def model_requests(model_dir: Path, n: int = 5000, seed: int = 0) -> list[Req]:
    """The mix over a trained model's own users, products and categories."""
    import numpy as np

    with np.load(model_dir / "arrays.npz", allow_pickle=False) as npz:
        users, items = [str(u) for u in npz["user_ids"]], [str(i) for i in npz["item_ids"]]
        categories = [str(c) for c in npz["category_names"]] or ["none"]
    return soak_requests(users, items, categories, n, seed)


# ------------------------------------------------------------------------------- load
@dataclass
class _Client:
    """One paced client's results: (end time, latency ms, status or 0 on timeout/connection error, good)."""

    done: list[tuple[float, float, int, bool]] = field(default_factory=list)


def _client(
    host: str,
    port: int,
    reqs: list[Req],
    index: int,
    clients: int,
    rate: float,
    start: float,
    stop: float,
    out: _Client,
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    j = 0
    while True:
        due = start + (j * clients + index) / rate  # this client's slot in the global schedule
        if due >= stop:
            break
        time.sleep(max(0.0, due - time.perf_counter()))
        req = reqs[(j * clients + index) % len(reqs)]
        j += 1
        t = time.perf_counter()
        try:
            conn.request("POST", "/invocations", req.body, req.headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        end = time.perf_counter()
        out.done.append((end, (end - t) * 1000, status, req.good))
    conn.close()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc), for memory readings of pre-forked servers."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def memory(pids: list[int]) -> tuple[float, int]:
    """(VmRSS summed over ``pids`` in MB, open file descriptors summed)."""
    rss_kb, fds = 0, 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kb += int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, AttributeError):
            continue
    return rss_kb / 1024, fds


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def run_soak(
    url: str,
    reqs: list[Req],
    duration: float = 90.0,
    window: float = 10.0,
    rate: float = 200.0,
    concurrency: int = 4,
    server_pids: Callable[[], list[int]] | None = None,
    rss_bound_mb: float = 20.0,
    every_window: Callable[[int], None] | None = None,
    out: Callable[[str], None] = print,
) -> dict:
    """Paced mixed load on ``url`` for ``duration`` s; one row per ``window``; returns the report (rows + verdict)."""
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to load {url}: the soak only targets 127.0.0.1")
    start = time.perf_counter() + 0.2
    stop = start + duration
    results = [_Client() for _ in range(concurrency)]
    threads = [
        threading.Thread(
            target=_client, args=(parts.hostname, parts.port, reqs, i, concurrency, rate, start, stop, results[i])
        )
        for i in range(concurrency)
    ]
    for th in threads:
        th.start()
    header = f"{'t s':>5} {'requests':>8} {'errors':>6} {'5xx':>4} {'timeouts':>8} {'p50 ms':>7} {'p99 ms':>7} "
    header += f"{'RSS MB':>7} {'fds':>4}"
    out(header)
    rows: list[dict] = []
    cursors = [0] * concurrency
    n_windows = max(1, round(duration / window))
    for w in range(n_windows):
        w_end = start + min(duration, (w + 1) * window)
        time.sleep(max(0.0, w_end - time.perf_counter()))
        if w == n_windows - 1:
            for th in threads:
                th.join(timeout=TIMEOUT_S + 5)
        records = []
        for i, r in enumerate(results):
            end = len(r.done)
            records.extend(r.done[cursors[i] : end])
            cursors[i] = end
        rss, fds = memory(server_pids()) if server_pids else (float("nan"), 0)
        lat = [ms for _, ms, status, _ in records if status]
        row = {
            "t": round(min(duration, (w + 1) * window), 1),
            "requests": len(records),
            "errors": sum(1 for _, _, s, good in records if s and (s != 200 if good else s != 400)),
            "5xx": sum(1 for _, _, s, _ in records if s >= 500),
            "timeouts": sum(1 for _, _, s, _ in records if s == 0),
            "p50_ms": _percentile(lat, 50),
            "p99_ms": _percentile(lat, 99),
            "rss_mb": rss,
            "fds": fds,
        }
        rows.append(row)
        out(
            f"{row['t']:>5.0f} {row['requests']:>8} {row['errors']:>6} {row['5xx']:>4} {row['timeouts']:>8} "
            f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['rss_mb']:>7.1f} {row['fds']:>4}"
        )
        if every_window is not None and w < n_windows - 1:
            every_window(w)
    return {"rows": rows, "verdict": verdict(rows, rss_bound_mb), "rate": rate, "concurrency": concurrency}


def verdict(rows: list[dict], rss_bound_mb: float) -> dict:
    """Pass = no errors, 5xx or timeouts anywhere, and RSS growth first warm window -> last under the bound."""
    warm = rows[1] if len(rows) > 1 else rows[0]
    growth = rows[-1]["rss_mb"] - warm["rss_mb"]
    totals = {key: sum(r[key] for r in rows) for key in ("requests", "errors", "5xx", "timeouts")}
    rss_ok = not growth >= rss_bound_mb  # NaN (no server pids to read) is not a failure of the server
    return {
        **totals,
        "rss_first_warm_mb": warm["rss_mb"],
        "rss_last_mb": rows[-1]["rss_mb"],
        "rss_growth_mb": growth,
        "rss_growth_pct": 100 * growth / warm["rss_mb"] if warm["rss_mb"] else float("nan"),
        "rss_bound_mb": rss_bound_mb,
        "rss_ok": rss_ok,
        "ok": rss_ok and totals["requests"] > 0 and not (totals["errors"] or totals["5xx"] or totals["timeouts"]),
    }


def plot(report: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    t = [r["t"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(t, [r["p50_ms"] for r in rows], marker="o", label="p50")
    ax1.plot(t, [r["p99_ms"] for r in rows], marker="o", label="p99")
    ax1.set_ylabel("latency per window (ms)")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax1.set_title(textwrap.fill(title, 110), fontsize=8)
    ax2.plot(t, [r["rss_mb"] for r in rows], marker="o", color="tab:green")
    ax2.set_ylabel("server VmRSS (MB)")
    ax2.set_xlabel("time (s, end of window)")
    ax2.grid(alpha=0.3)
    v = report["verdict"]
    ax2.set_title(f"RSS {v['rss_growth_mb']:+.1f} MB first warm window -> last (bound < {v['rss_bound_mb']:g} MB)",
                  fontsize=8)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- server
def start_cli_server(model_dir: Path, workers: int, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m recsys serve`` on a free port of 127.0.0.1, in its own session (stopped with its workers).

    Its log (stderr: model loads, reloads, waitress warnings) goes to ``log``.
    """
    cmd = [sys.executable, "-m", "recsys", "serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
           "--port", "0", "--workers", str(workers), "--threads", str(threads)]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
    return proc, wait_for_url(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, help="serve this model (default: train one on generated data)")
    p.add_argument("--workdir", type=Path, help="where generated data and the model go (default: a temp dir)")
    p.add_argument("--duration", type=float, default=90.0, help="seconds of load (default 90, at most 3600)")
    p.add_argument("--window", type=float, default=10.0, help="seconds per report row (default 10)")
    p.add_argument("--rate", type=float, default=200.0, help="requests/s in total (default 200)")
    p.add_argument("--concurrency", type=int, default=4, help="client threads, one keep-alive connection each")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    p.add_argument("--threads", type=int, default=2, help="waitress threads per worker (default 2)")
    p.add_argument("--rss-bound-mb", type=float, default=20.0, help="allowed RSS growth, first warm window -> last")
    p.add_argument("--sighup-every", type=float, default=0.0, help="send SIGHUP (model reload) every N s (0 = never)")
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help=f"PNG to write (default {DEFAULT_PLOT})")
    args = p.parse_args(argv)
    if not 0 < args.duration <= 3600 or not 0 < args.window <= args.duration:
        p.error("--duration must be 0..3600 s and --window 0..duration")
    if not 0 < args.rate <= 5000 or not 1 <= args.concurrency <= 64:
        p.error("--rate must be 0..5000 and --concurrency 1..64")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or train_default_model(args.workdir or Path(tmp))
        reqs = model_requests(model_dir)
        server_log = args.plot.with_name(args.plot.stem + "-server.log")
        proc, url = start_cli_server(model_dir, args.workers, args.threads, server_log)
        try:
            wait_ready(url)
            every = None
            if args.sighup_every > 0:
                per = max(1, round(args.sighup_every / args.window))
                every = lambda w: os.kill(proc.pid, signal.SIGHUP) if (w + 1) % per == 0 else None  # noqa: E731
            setup = (
                f"python -m recsys serve --workers {args.workers} --threads {args.threads}; "
                f"{args.rate:g} req/s paced over {args.concurrency} keep-alive connections; "
                f"{os.cpu_count()} CPUs shared with the load"
                + (f"; SIGHUP reload every ~{args.sighup_every:g} s" if every else "")
            )
            print(f"soak: {args.duration:g} s against {url} ({setup})\n")
            report = run_soak(
                url, reqs, args.duration, args.window, args.rate, args.concurrency,
                server_pids=lambda: process_tree(proc.pid), rss_bound_mb=args.rss_bound_mb, every_window=every,
            )  # fmt: skip
        finally:
            stop_server(proc)
    v = report["verdict"]
    print(
        f"\n{v['requests']} requests: {v['errors']} errors, {v['5xx']} 5xx, {v['timeouts']} timeouts; "
        f"RSS {v['rss_first_warm_mb']:.1f} MB (first warm window) -> {v['rss_last_mb']:.1f} MB "
        f"({v['rss_growth_mb']:+.1f} MB, {v['rss_growth_pct']:+.1f}%; bound < {v['rss_bound_mb']:g} MB)"
    )
    logged = server_log.read_text().splitlines()
    print(
        f"server log: {sum(' ERROR ' in x for x in logged)} errors, {sum('reloaded:' in x for x in logged)} reloads "
        f"-> {server_log}"
    )
    print(f"verdict: {'PASS' if v['ok'] else 'FAIL'}")
    print(f"plot: {plot(report, args.plot, 'soak: ' + setup)}")
    return 0 if v["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
