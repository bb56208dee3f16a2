"""Load test of the local SageMaker-style endpoint: throughput and latency per concurrency level.

    .venv/bin/python bench/bench_endpoint.py                      # generate default data, train, serve, load
    .venv/bin/python bench/bench_endpoint.py --model-dir DIR      # serve an existing model
    .venv/bin/python bench/bench_endpoint.py --url http://127.0.0.1:8080 --model-dir DIR   # load a running one
    .venv/bin/python bench/bench_endpoint.py --workers 2 --profile

The endpoint runs in its own process (``serve_forever``), the load in others: one process per
concurrent client, each a closed loop on one keep-alive ``http.client`` connection, so client
work never shares a GIL with the server. Every level is bounded in time (``--duration``) and
count (``--max-requests``) and only ever targets 127.0.0.1. Requests are k=10 over a mix of
known users, unknown users and sessions (``recent_product_ids``). The handler alone (in-process,
no HTTP) is timed first, so the table shows what HTTP and queueing add. On a shared 2-core box
the load processes compete with the server for the same cores: treat figures as upper bounds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
LOCAL_HOSTS = ("127.0.0.1", "localhost")
TARGET_P99_MS, TARGET_RPS, TARGET_CONCURRENCY = 20.0, 500.0, 8


# ------------------------------------------------------------------------------- model and payloads
def train_default_model(workdir: Path) -> Path:
    """Default generator data (2k users, 500 products, ~60k interactions) -> train.py -> model dir."""
    from recsys.generator import GeneratorConfig, generate_tables

    data, model = workdir / "data", workdir / "model"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, df in generate_tables(GeneratorConfig()).items():
        df.to_csv(data / f"{name}.csv", index=False)
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(data),
        "SM_MODEL_DIR": str(model),
        "SM_OUTPUT_DATA_DIR": str(workdir / "train_output"),
    }
    subprocess.run(
        [sys.executable, str(ROOT / "sagemaker_src" / "train.py")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )
    print(f"trained a model on the default generated data in {time.perf_counter() - t0:.1f}s -> {model}")
    return model


def payloads(model_dir: Path | None, n: int = 4000, seed: int = 0) -> list[bytes]:
    """k=10 requests: ~70% known users, ~20% unknown users, ~10% unknown users with a session."""
    import numpy as np

    if model_dir is not None:
        with np.load(model_dir / "arrays.npz", allow_pickle=False) as npz:
            users, items = [str(u) for u in npz["user_ids"]], [str(i) for i in npz["item_ids"]]
    else:  # the generator's id convention, when only --url is given
        users, items = [f"u{n}" for n in range(2000)], []
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.7:
            req: dict = {"user_id": rng.choice(users), "k": 10}
        else:
            req = {"user_id": f"new-{i}", "k": 10}
            if r >= 0.9 and items:
                req["recent_product_ids"] = rng.sample(items, 3)
        out.append(json.dumps(req).encode())
    return out


# ------------------------------------------------------------------------------- handler alone
def handler_only(model_dir: Path, bodies: list[bytes], seconds: float, profile: bool) -> dict:
    """The same requests through input_fn/predict_fn/output_fn in this process: no HTTP, one thread."""
    from recsys.local.endpoint import LocalEndpoint

    app = LocalEndpoint(model_dir)
    h, model = app.handler, app.model

    def run() -> tuple[list[float], float]:
        lat: list[float] = []
        start = time.perf_counter()
        for n in range(len(bodies) * 10):
            t = time.perf_counter()
            if t - start >= seconds:
                break
            data = h.input_fn(bodies[n % len(bodies)], "application/json")
            h.output_fn(h.predict_fn(data, model), "application/json")
            lat.append((time.perf_counter() - t) * 1000)
        return lat, time.perf_counter() - start

    run()  # warm-up
    lat, elapsed = run()
    row = summary("handler only", len(lat), elapsed, lat, 0)
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(run)
        print("\nhandler profile (cumulative, top 12):")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(12)
    return row


# ------------------------------------------------------------------------------- load
def client(args: tuple) -> tuple[list[float], int, float]:
    """One closed-loop client on one keep-alive connection: (latencies ms, errors, end time)."""
    host, port, bodies, offset, start_at, stop_at, max_requests = args
    time.sleep(max(0.0, start_at - time.time()))
    conn = http.client.HTTPConnection(host, port, timeout=10)
    lat: list[float] = []
    errors = 0
    n = offset
    while len(lat) + errors < max_requests and time.time() < stop_at:
        body = bodies[n % len(bodies)]
        n += 7
        t = time.perf_counter()
        try:
            conn.request("POST", "/invocations", body, HEADERS)
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
        if ok:
            lat.append((time.perf_counter() - t) * 1000)
        else:
            errors += 1
    conn.close()
    return lat, errors, time.time()


def load_level(url: str, bodies: list[bytes], concurrency: int, duration: float, max_requests: int) -> dict:
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to load {url}: this benchmark only targets 127.0.0.1")
    start_at = time.time() + 0.5  # processes start before the clock does
    per_client = max(1, max_requests // concurrency)
    jobs = [
        (parts.hostname, parts.port, bodies, i * 997, start_at, start_at + duration, per_client)
        for i in range(concurrency)
    ]
    with mp.get_context("fork").Pool(concurrency) as pool:
        results = pool.map(client, jobs)
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results) - start_at
    return summary(concurrency, len(lat) + errors, elapsed, lat, errors)


def summary(label: object, requests: int, seconds: float, lat: list[float], errors: int) -> dict:
    import numpy as np

    p = np.percentile(lat, [50, 95, 99]) if lat else [float("nan")] * 3
    return {
        "concurrency": label,
        "requests": requests,
        "req/s": len(lat) / seconds if seconds > 0 else 0.0,
        "p50 ms": p[0],
        "p95 ms": p[1],
        "p99 ms": p[2],
        "errors": errors,
    }


def table(rows: list[dict]) -> str:
    cols = ["concurrency", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"]

    def cell(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell(r[c]).rjust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- server process
NULL_HANDLER = """\"\"\"A handler that does no work: what the HTTP stack alone costs.\"\"\"
import json
ANSWER = json.dumps({"user_id": "u", "recommendations": [{"product_id": f"p{i}", "score": 1.0} for i in range(10)],
                     "strategy": "null", "model_version": "null"})
def model_fn(model_dir):
    return object()
def input_fn(body, content_type):
    return json.loads(body)
def predict_fn(data, model):
    return data
def output_fn(prediction, accept):
    return ANSWER
"""


def start_server(
    model_dir: Path, threads: int, workers: int, log_file: Path | None, handler: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """``serve_forever`` in a new process (its own session, so its workers are stopped with it)."""
    code = (
        "import logging, sys; from pathlib import Path; from recsys.local.endpoint import serve_forever, "
        "DEFAULT_HANDLER\n"
        "log = sys.argv[4]\n"
        "logging.basicConfig(level=logging.INFO if log else logging.WARNING, filename=log or None)\n"
        "logging.getLogger('waitress.queue').setLevel(logging.ERROR)  # saturation is the point here\n"
        "serve_forever(Path(sys.argv[1]), '127.0.0.1', 0, int(sys.argv[2]), workers=int(sys.argv[3]),\n"
        "              handler_path=Path(sys.argv[5]) if sys.argv[5] else DEFAULT_HANDLER)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(model_dir),
            str(threads),
            str(workers),
            str(log_file or ""),
            str(handler or ""),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    stop_server(proc)
    raise SystemExit("the endpoint process did not start")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the session this benchmark created: server + its workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_ready(url: str, timeout: float = 30.0) -> None:
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to contact {url}: this benchmark only targets 127.0.0.1")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url}/ping never answered 200")


# ------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="load an already running endpoint on 127.0.0.1 instead of starting one")
    p.add_argument("--model-dir", type=Path, help="serve this model (default: train one on generated data)")
    p.add_argument("--workdir", type=Path, help="where generated data and the model go (default: a temp dir)")
    p.add_argument("--levels", default="1,2,4,8,16", help="comma list of concurrent clients")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    p.add_argument("--max-requests", type=int, default=20_000, help="request cap per level")
    p.add_argument("--threads", type=int, default=8, help="waitress threads per worker")
    p.add_argument("--workers", type=int, default=1, help="server worker processes (pre-forked)")
    p.add_argument("--log-requests", action="store_true", help="server writes its per-request log lines to a file")
    p.add_argument("--profile", action="store_true", help="cProfile the handler alone")
    p.add_argument(
        "--null-handler", action="store_true", help="serve a handler that does no work, to measure the HTTP stack alone"
    )
    args = p.parse_args(argv)
    if args.url and urlsplit(args.url).hostname not in LOCAL_HOSTS:
        p.error(f"--url must be on 127.0.0.1 (this benchmark never sends load elsewhere), got {args.url}")
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if any(c < 1 or c > 64 for c in levels) or args.duration <= 0 or args.duration > 60:
        p.error("levels must be 1..64 clients and --duration 0..60 s")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        model_dir = args.model_dir
        if model_dir is None and args.url is None:
            model_dir = train_default_model(workdir)
        bodies = payloads(model_dir)
        rows = []
        if model_dir is not None:
            rows.append(handler_only(model_dir, bodies, min(args.duration, 3.0), args.profile))
        proc = None
        try:
            if args.url:
                url = args.url
            else:
                log_file = workdir / "endpoint.log" if args.log_requests else None
                handler = None
                if args.null_handler:
                    handler = workdir / "null_inference.py"
                    handler.write_text(NULL_HANDLER)
                proc, url = start_server(model_dir, args.threads, args.workers, log_file, handler)
            wait_ready(url)
            load_level(url, bodies, 2, 1.0, 500)  # warm-up: connections, caches, lazy imports
            for c in levels:
                rows.append(load_level(url, bodies, c, args.duration, args.max_requests))
                print(f"  concurrency {c}: {rows[-1]['req/s']:.0f} req/s, p99 {rows[-1]['p99 ms']:.1f} ms", flush=True)
        finally:
            if proc is not None:
                stop_server(proc)
    server = "external" if args.url else f"{args.workers} worker(s) x {args.threads} threads"
    if args.null_handler:
        server += ", NULL handler (HTTP stack only)"
    print(
        f"\nendpoint: {server}; {os.cpu_count()} CPUs (shared: noisy); {args.duration:g} s per level; "
        f"k=10, ~70% known / 20% unknown / 10% session requests"
        f"{'; request logging on' if args.log_requests else ''}\n"
    )
    print(table(rows))
    at = next((r for r in rows if r["concurrency"] == TARGET_CONCURRENCY), None)
    if at:
        ok = at["p99 ms"] < TARGET_P99_MS and at["req/s"] > TARGET_RPS
        print(
            f"\ntarget at concurrency {TARGET_CONCURRENCY}: p99 < {TARGET_P99_MS:g} ms and > {TARGET_RPS:g} req/s -> "
            f"p99 {at['p99 ms']:.1f} ms, {at['req/s']:.0f} req/s: {'met' if ok else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
