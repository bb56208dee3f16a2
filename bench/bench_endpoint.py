"""Load test of the local SageMaker-style endpoint: throughput and latency per concurrency level.

    .venv/bin/python bench/bench_endpoint.py                      # generate default data, train, serve, load
    .venv/bin/python bench/bench_endpoint.py --model-dir DIR      # serve an existing model
    .venv/bin/python bench/bench_endpoint.py --url http://127.0.0.1:8080 --model-dir DIR   # load a running one
    .venv/bin/python bench/bench_endpoint.py --workers 2 --profile

    .venv/bin/python bench/bench_endpoint.py --workers 1 --threads 2 --pin   # server on CPU 0, clients on CPU 1

The endpoint runs in its own process (``serve_forever``), the load in others: one process per
concurrent client, each a closed loop on one keep-alive connection (``--new-connection``: one
per request), so client work never shares a GIL with the server. The default client sends
pre-built requests on a raw socket, about a third of the CPU per request of ``http.client``
(``--client http.client``): on a 2-core box every client cycle is taken from the server. Every
level is bounded in time (``--duration``) and count (``--max-requests``) and only ever targets
127.0.0.1. Requests are k=10 over a mix of known users, unknown users and sessions
(``recent_product_ids``). The handler alone (in-process, no HTTP) is timed first, so the table
shows what HTTP and queueing add; the CPU columns show where the cores went (client and server
CPU per second and per answer, from /proc). The header states the configuration and the load
average, because on a shared box other jobs compete for the same cores: treat figures as upper
bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
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
def _raw_request(host: str, port: int, body: bytes, close: bool) -> bytes:
    close_header = "Connection: close\r\n" if close else ""
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n{close_header}\r\n"
    )
    return head.encode() + body


def _raw_exchange(sock: socket.socket, data: bytes) -> int:
    """Send one pre-built request, read one whole response (Content-Length framed); its status."""
    sock.sendall(data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = next((int(x.split(b":", 1)[1]) for x in lines[1:] if x[:15].lower() == b"content-length:"), 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        rest += chunk
    return status


def client(args: tuple) -> tuple[list[float], int, float, float]:
    """One closed-loop client: (latencies ms, errors, end time, CPU seconds this client used).

    ``kind`` "raw": pre-built requests on a plain socket (the lightest client Python has, so the
    load steals as little as possible of the cores it shares with the server); "http.client": the
    standard library client. ``new_conn``: a new TCP connection per request (``Connection: close``)
    instead of one keep-alive connection, the way SageMaker's runtime front end reuses connections.
    """
    host, port, bodies, offset, start_at, stop_at, max_requests, kind, new_conn, cpus = args
    if cpus:
        os.sched_setaffinity(0, cpus)
    raw = [_raw_request(host, port, b, new_conn) for b in bodies] if kind == "raw" else []
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    conn: http.client.HTTPConnection | socket.socket | None = None
    lat: list[float] = []
    errors = 0
    n = offset
    while len(lat) + errors < max_requests and time.time() < stop_at:
        i = n % len(bodies)
        n += 7
        t = time.perf_counter()
        try:
            if kind == "raw":
                if conn is None:
                    conn = socket.create_connection((host, port), timeout=10)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ok = _raw_exchange(conn, raw[i]) == 200
            else:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                headers = {**HEADERS, "Connection": "close"} if new_conn else HEADERS
                conn.request("POST", "/invocations", bodies[i], headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
        except (OSError, http.client.HTTPException, ValueError, IndexError):
            ok = False
            new_conn_now = True
        else:
            new_conn_now = new_conn
        if new_conn_now and conn is not None:
            conn.close()
            conn = None
        if ok:
            lat.append((time.perf_counter() - t) * 1000)
        else:
            errors += 1
    if conn is not None:
        conn.close()
    return lat, errors, time.time(), time.process_time() - cpu0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` and its children, from /proc (0 when not ours to read)."""
    if pid is None:
        return 0.0
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def load_level(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    max_requests: int,
    kind: str = "raw",
    new_conn: bool = False,
    client_cpus: set[int] | None = None,
    server_pid: int | None = None,
) -> dict:
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"refusing to load {url}: this benchmark only targets 127.0.0.1")
    start_at = time.time() + 0.5  # processes start before the clock does
    per_client = max(1, max_requests // concurrency)
    jobs = [
        (parts.hostname, parts.port, bodies, i * 997, start_at, start_at + duration, per_client, kind, new_conn,
         client_cpus)
        for i in range(concurrency)
    ]  # fmt: skip
    with mp.get_context("fork").Pool(concurrency) as pool:
        server_cpu0 = cpu_seconds(server_pid)
        results = pool.map(client, jobs)
        server_cpu = cpu_seconds(server_pid) - server_cpu0
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results) - start_at
    row = summary(concurrency, len(lat) + errors, elapsed, lat, errors)
    row["client cores"] = sum(r[3] for r in results) / elapsed if elapsed > 0 else 0.0
    row["server cores"] = server_cpu / elapsed if elapsed > 0 and server_pid else float("nan")
    row["server CPU ms/req"] = 1000 * server_cpu / len(lat) if lat and server_pid else float("nan")
    row["client CPU ms/req"] = 1000 * sum(r[3] for r in results) / len(lat) if lat else float("nan")
    return row


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
    cols = ["concurrency", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "client cores", "server cores",
            "client CPU ms/req", "server CPU ms/req"]  # fmt: skip

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v):  # NaN: not measured
            return "-"
        return (
            f"{v:.2f}"
            if isinstance(v, float) and abs(v) < 10 and v != int(v)
            else (f"{v:.1f}" if isinstance(v, float) else str(v))
        )

    widths = [max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell(r.get(c)).rjust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
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
    model_dir: Path,
    threads: int,
    workers: int,
    log_file: Path | None,
    handler: Path | None = None,
    cpus: set[int] | None = None,
    switch_interval: float | None = None,
) -> tuple[subprocess.Popen, str]:
    """``serve_forever`` in a new process (its own session, so its workers are stopped with it).

    ``cpus`` pins the server (and so its workers) to those cores; ``switch_interval`` overrides
    serve_forever's GIL switch interval (seconds).
    """
    code = (
        "import logging, os, sys; from pathlib import Path; from recsys.local.endpoint import serve_forever, "
        "DEFAULT_HANDLER\n"
        "log, cpus, switch = sys.argv[4], sys.argv[6], sys.argv[7]\n"
        "if cpus: os.sched_setaffinity(0, {int(c) for c in cpus.split(',')})\n"
        "logging.basicConfig(level=logging.WARNING, filename=log or None)\n"
        "logging.getLogger('recsys.local.endpoint.access').setLevel(logging.INFO if log else logging.WARNING)\n"
        "logging.getLogger('waitress.queue').setLevel(logging.ERROR)  # saturation is the point here\n"
        "serve_forever(Path(sys.argv[1]), '127.0.0.1', 0, int(sys.argv[2]), workers=int(sys.argv[3]),\n"
        "              handler_path=Path(sys.argv[5]) if sys.argv[5] else DEFAULT_HANDLER,\n"
        "              **({'switch_interval': float(switch)} if switch else {}))\n"
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
            ",".join(map(str, sorted(cpus))) if cpus else "",
            "" if switch_interval is None else str(switch_interval),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc, wait_for_url(proc)


def wait_for_url(proc: subprocess.Popen) -> str:
    """The base URL ``python -m recsys serve`` announces on stdout; stops the process if it never does."""
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1)
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
    p.add_argument(
        "--client",
        choices=("raw", "http.client"),
        default="raw",
        help="load client: pre-built requests on raw sockets (light, default) or the stdlib http.client",
    )
    p.add_argument(
        "--new-connection", action="store_true", help="a new TCP connection per request (default keep-alive)"
    )
    p.add_argument(
        "--pin", action="store_true", help="pin the server to CPU 0 and the load clients to CPU 1 (use --workers 1)"
    )
    p.add_argument(
        "--switch-interval", type=float, help="server's GIL switch interval in s (default: serve_forever's, 0.001)"
    )
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

    server_cpus = client_cpus = None
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2 or args.url:
            p.error("--pin needs 2 usable CPUs and a server this benchmark starts")
        server_cpus, client_cpus = {0}, {1}
    load_before = os.getloadavg()
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
                proc, url = start_server(
                    model_dir, args.threads, args.workers, log_file, handler, server_cpus, args.switch_interval
                )
            wait_ready(url)
            pid = proc.pid if proc else None
            load = {"kind": args.client, "new_conn": args.new_connection, "client_cpus": client_cpus, "server_pid": pid}
            load_level(url, bodies, 2, 1.0, 500, **load)  # warm-up: connections, caches, lazy imports
            for c in levels:
                rows.append(load_level(url, bodies, c, args.duration, args.max_requests, **load))
                print(f"  concurrency {c}: {rows[-1]['req/s']:.0f} req/s, p99 {rows[-1]['p99 ms']:.1f} ms", flush=True)
        finally:
            if proc is not None:
                stop_server(proc)
    server = "external" if args.url else f"{args.workers} worker(s) x {args.threads} threads"
    switch = args.switch_interval if args.switch_interval is not None else 0.001
    server += f", GIL switch interval {switch * 1000:g} ms"
    if args.null_handler:
        server += ", NULL handler (HTTP stack only)"
    placement = "server on CPU 0, clients on CPU 1" if args.pin else f"server and clients share {os.cpu_count()} CPUs"
    print(
        f"\nendpoint: {server}; {placement}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
        f"(other work on the box makes figures noisy)\n"
        f"clients: {args.client}, {'new connection per request' if args.new_connection else 'keep-alive'}, "
        f"one process each, closed loop; {args.duration:g} s per level; "
        f"k=10, ~70% known / 20% unknown / 10% session requests"
        f"{'; request logging on' if args.log_requests else ''}\n"
        f"client/server cores: CPU time used per second of wall time (2.0 = both cores); CPU ms/req: per answer\n"
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
