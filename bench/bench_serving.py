"""Serving at every shape, in one run: each case trained by train.py, served by the documented command and
loaded over HTTP by an outside load generator.

    .venv/bin/python bench/bench_serving.py                         # every case (trains what is missing)
    .venv/bin/python bench/bench_serving.py --cases wholesale,wholesale-ease-als --duration 20
    .venv/bin/python bench/bench_serving.py --list                  # the cases and how each is made

Each case: data (generated here, or a real log from ``../shared/data``), ``sagemaker_src/train.py`` on it
(hyperparameters as listed; the model is kept under ``--workdir`` and reused unless ``--retrain``), then
``.venv/bin/python -m recsys serve --model-dir DIR --workers 2`` (the README's command: 2 pre-forked
workers) and ``wrk`` (Debian's package; the Python closed-loop client of ``bench_endpoint.py`` when wrk is
missing, and the table says which) with 8 connections on 2 threads for ``--duration`` seconds after a warm-up.
Requests are k=10 over a shop's mix: 60 % known shoppers (drawn uniformly, so wholesale buyers come up as
often as they exist), 15 % known shoppers with a 3-product session, 10 % new shoppers with a session,
5 % new shoppers, 10 % product pages. Target on 2 cores: >= 500 req/s and p99 < 20 ms.

The table also gives, per case, the model's size on disk, the time ``model_fn`` takes to load it, each
worker's memory (RSS, and PSS: what it does not share with its sibling) and the handler's own time per
request kind, in process (``--handler``). Load generator, server and other jobs share the machine's
cores: the header prints the load average, and figures are upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import bench_endpoint as be  # noqa: E402
import serving_shapes  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
TARGET_RPS, TARGET_P99_MS, CONNECTIONS, WORKERS = 500.0, 20.0, 8, 2
MIX = (("known", 0.60), ("known+session", 0.15), ("new+session", 0.10), ("new", 0.05), ("product page", 0.10))


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    make_data: Callable[[Path], None]
    train_args: tuple[str, ...] = ()
    train_timeout_s: int = 3600
    extra: dict = field(default_factory=dict)


def _generated(users: int, products: int, interactions: int) -> Callable[[Path], None]:
    def make(out: Path) -> None:
        from recsys.generator import GeneratorConfig, generate_to_dir

        generate_to_dir(out, GeneratorConfig(n_users=users, n_products=products, n_interactions=interactions,
                                             fmt="parquet"))

    return make


def _wholesale(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, df in serving_shapes.wholesale_shop().items():
        df.to_csv(out / f"{name}.csv", index=False)


def _public(name: str) -> Callable[[Path], None]:
    def make(out: Path) -> None:
        import public_data

        out.mkdir(parents=True, exist_ok=True)
        public_data.load_set(name, shared_data()).to_csv(out / "interactions.csv", index=False)

    return make


def shared_data() -> Path:
    """``../shared/data`` of the checkout (a worktree's is one level further up)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    raise SystemExit("no ../shared/data next to the repository: the real-log cases need it")


CASES = [
    Case("generated", "the generator's default shop: 2,000 shoppers, 500 products, 60k interactions",
         _generated(2_000, 500, 60_000)),
    Case("generated-100k", "a generated shop of 20,000 shoppers, 100,000 products, 1M interactions",
         _generated(20_000, 100_000, 1_000_000)),
    Case("wholesale", "a wholesaler's purchase log (bench/serving_shapes.py): 3,900 products, 4,300 shoppers, "
         "4 % buying hundreds to thousands of lines", _wholesale),
    Case("wholesale-ease-als", "the same log, the blend issue 22 was reported on (0.8 EASE + 0.2 ALS)",
         _wholesale, ("--recipe", "0.8*ease,0.2*mf")),
    Case("amazon-toys", "Amazon Toys and Games 5-core (19k shoppers, 12k products)",
         _public("Amazon_Toys_and_Games")),
    Case("amazon-sports", "Amazon Sports and Outdoors 5-core (36k shoppers, 18k products; families at their "
         "default settings: tuning EASE at 18k products takes an hour on 2 cores)",
         _public("Amazon_Sports_and_Outdoors"), ("--no-tune",)),
    Case("movielens-small", "MovieLens latest-small (671 raters, 9k movies, up to 2.4k ratings each)",
         _public("ml-latest-small-ratings")),
    Case("retrieval-2m", "a generated shop of 300,000 shoppers, 2,000,000 products, 5M interactions: past "
         "retrieval_min_items, so requests score retrieved candidates (an ALS index + item-kNN neighbours)",
         _generated(300_000, 2_000_000, 5_000_000), ("--recipe", "0.6*item_knn(k=50),0.4*mf(factors=64)")),
]


# ------------------------------------------------------------------------------- train
def trained(case: Case, workdir: Path, retrain: bool) -> tuple[Path, float | None]:
    """The case's model dir (trained now if missing); the training seconds when trained in this run."""
    base = workdir / case.name
    data, model = base / "data", base / "model"
    if (model / "model.json").is_file() and not retrain:
        return model, None
    if data.exists() and retrain:
        shutil.rmtree(data)
    if not data.exists():
        print(f"[{case.name}] generating data ...", flush=True)
        case.make_data(data)
    if model.exists():
        shutil.rmtree(model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env |= {"SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(model), "SM_OUTPUT_DATA_DIR": str(base / "output")}
    print(f"[{case.name}] train.py {' '.join(case.train_args)} ...", flush=True)
    t = time.perf_counter()
    with open(base / "train.log", "w") as log:
        try:
            subprocess.run([str(PYTHON), str(ROOT / "sagemaker_src" / "train.py"), *case.train_args], env=env,
                           stdout=log, stderr=subprocess.STDOUT, check=True, timeout=case.train_timeout_s)
        except subprocess.TimeoutExpired:  # a hang or an overloaded machine: name the case, no traceback
            bound = f"{case.train_timeout_s:.0f} s"
            sys.exit(f"[{case.name}] train.py did not finish within {bound} (log: {base / 'train.log'})")
        except subprocess.CalledProcessError as err:
            sys.exit(f"[{case.name}] train.py failed (exit {err.returncode}; log: {base / 'train.log'})")
    return model, time.perf_counter() - t


# ------------------------------------------------------------------------------- requests
def request_bodies(model: Path, n: int = 6000, seed: int = 0) -> list[dict]:
    """k=10 requests in ``MIX``'s shares, ids drawn from the model's own shoppers and products."""
    with np.load(model / "arrays.npz", allow_pickle=False) as npz:
        users, items = npz["user_ids"].astype(str), npz["item_ids"].astype(str)
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(MIX), size=n, p=[share for _, share in MIX])
    out = []
    for j, kind in enumerate(kinds.tolist()):
        name = MIX[kind][0]
        session = [str(x) for x in rng.choice(items, 3)]
        if name == "known":
            req = {"user_id": str(rng.choice(users)), "k": 10}
        elif name == "known+session":
            req = {"user_id": str(rng.choice(users)), "k": 10, "recent_product_ids": session}
        elif name == "new+session":
            req = {"user_id": f"new-{j}", "k": 10, "recent_product_ids": session}
        elif name == "new":
            req = {"user_id": f"new-{j}", "k": 10}
        else:
            req = {"product_id": session[0], "k": 10}
        out.append(req)
    return out


# ------------------------------------------------------------------------------- serve and load
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """The documented command, in its own session (so its workers stop with it)."""
    port = free_port()
    proc = subprocess.Popen([str(PYTHON), "-m", "recsys", "serve", "--model-dir", str(model), "--workers",
                             str(workers), "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        be.wait_ready(url, timeout=300)
    except SystemExit:
        be.stop_server(proc)
        raise
    return proc, url


def worker_memory_mb(server_pid: int) -> tuple[float, float]:
    """Mean (RSS, PSS) of the server's worker processes, from /proc."""
    try:
        kids = [int(c) for c in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()]
    except OSError:
        return float("nan"), float("nan")
    rss, pss = [], []
    for pid in kids or [server_pid]:
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                          if ":" in line)
            rss.append(int(fields["Rss"].split()[0]) / 1024)
            pss.append(int(fields["Pss"].split()[0]) / 1024)
    return (float(np.mean(rss)), float(np.mean(pss))) if rss else (float("nan"), float("nan"))


WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local counter = 1
function setup(thread)
  thread:set("offset", counter * 997)
  counter = counter + 1
end
function init(args)
  i = tonumber(offset) or 0
end
function request()
  i = i + 1
  return wrk.format("POST", "/invocations", {["Content-Type"] = "application/json"}, bodies[(i %% #bodies) + 1])
end
"""


def run_wrk(url: str, bodies: list[dict], duration: float, tmp: Path) -> dict:
    body_file = tmp / "bodies.jsonl"
    body_file.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
    script = tmp / "mix.lua"
    script.write_text(WRK_SCRIPT % body_file)
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration:g}s", "--latency", "-s", str(script), url]
    subprocess.run(cmd[:3] + ["-d2s"] + cmd[4:], capture_output=True, text=True, check=True)  # warm-up
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out) | {"load generator": "wrk 2 threads"}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def parse_wrk(out: str) -> dict:
    pct = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+(?:us|ms|s))\s*$", out, re.M))
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50 ms": _ms(pct["50"]), "p90 ms": _ms(pct["90"]), "p99 ms": _ms(pct["99"]),
            "requests": int(total.group(1)) if total else 0,
            "errors": (int(errors.group(1)) if errors else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def run_python_client(url: str, bodies: list[dict], duration: float) -> dict:
    raw = [json.dumps(b).encode() for b in bodies]
    be.load_level(url, raw, CONNECTIONS, 2.0, 10**9)  # warm-up
    row = be.load_level(url, raw, CONNECTIONS, duration, 10**9)
    return {"req/s": row["req/s"], "p50 ms": row["p50 ms"], "p90 ms": float("nan"), "p99 ms": row["p99 ms"],
            "requests": row["requests"], "errors": row["errors"],
            "load generator": f"python raw-socket clients x{CONNECTIONS} (no wrk)"}


# ------------------------------------------------------------------------------- handler alone
def load_model(model: Path) -> tuple[Any, Any, float]:
    """(the handler module, the loaded model, seconds ``model_fn`` took) in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_serving_inference", ROOT / "sagemaker_src" / "inference.py")
    inference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inference)
    t = time.perf_counter()
    bundle = inference.model_fn(str(model))
    return inference, bundle, time.perf_counter() - t


def handler_alone(inference: Any, bundle: Any, bodies: list[dict], seconds: float = 3.0) -> dict[str, float]:
    """p99 ms of ``predict_fn`` per request kind, in this process."""
    lat: dict[str, list[float]] = {}
    start = time.perf_counter()
    for body in bodies:
        if time.perf_counter() - start > seconds:
            break
        t = time.perf_counter()
        inference.predict_fn(dict(body), bundle)
        lat.setdefault(_kind(body), []).append((time.perf_counter() - t) * 1000)
    return {k: float(np.percentile(v, 99)) for k, v in lat.items()}


def _kind(body: dict) -> str:
    if "product_id" in body:
        return "product page"
    new = str(body.get("user_id", "")).startswith("new-")
    return ("new" if new else "known") + ("+session" if "recent_product_ids" in body else "")


# ------------------------------------------------------------------------------- retrieval
def retrieval_figures(bundle: Any, model: Path, n_users: int = 200, k: int = 100, seed: int = 0) -> dict:
    """For a model that serves by retrieval: recall@k of the served lists against scoring every product
    (the same shoppers, plain requests), ``predict_fn``'s time for them, the index's own recall, size and
    build time (from training)."""
    doc = json.loads((model / "model.json").read_text())
    if not doc.get("indexes") or not bundle._retrieval:
        return {}
    rng = np.random.default_rng(seed)
    users = rng.choice(len(bundle.users), size=min(n_users, len(bundle.users)), replace=False)
    recall, served_ms = [], []
    try:
        for u in users.tolist():
            user_id = str(bundle.users.ids[u])
            bundle._retrieval = True
            t = time.perf_counter()
            got = bundle.recommend(user_id, k=k)
            served_ms.append((time.perf_counter() - t) * 1000)
            bundle._retrieval = False  # the same model scoring every product
            ids = {r["product_id"] for r in bundle.recommend(user_id, k=k)["recommendations"]}
            recall.append(len(ids & {r["product_id"] for r in got["recommendations"]}) / max(len(ids), 1))
    finally:
        bundle._retrieval = True
    reports = list(doc["indexes"].values())
    return {"recall@100 served vs exact": float(np.mean(recall)), "index recall@100": reports[0]["recall"],
            "index build s": sum(r["build_s"] for r in reports), "index MB": sum(r["bytes"] for r in reports) / 2**20,
            "k=100 p99 ms": float(np.percentile(served_ms, 99))}


# ------------------------------------------------------------------------------- main
def describe(model: Path) -> dict:
    doc = json.loads((model / "model.json").read_text())
    with np.load(model / "arrays.npz", allow_pickle=False) as npz:
        per_user = np.diff(npz["hist_indptr"])
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    return {"products": doc["n_items"], "shoppers": doc["n_users"], "max items/shopper": int(per_user.max()),
            "recipe": doc["ensemble"], "model MB": size / 2**20}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma list (default: every case)")
    p.add_argument("--workdir", type=Path, default=ROOT / "out" / "bench" / "serving",
                   help="where data and models are kept between runs")
    p.add_argument("--retrain", action="store_true", help="regenerate data and retrain even if a model exists")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per case (after a 2 s warm-up)")
    p.add_argument("--handler", action="store_true", help="also time the handler alone, per request kind")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: wrk if installed (auto), or the Python clients")
    p.add_argument("--train-only", action="store_true", help="train the cases' missing models, then stop")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name:20s} {c.what}" + (f" [train.py {' '.join(c.train_args)}]" if c.train_args else ""))
        return 0
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    known = {c.name: c for c in CASES}
    if unknown := [c for c in wanted if c not in known]:
        p.error(f"unknown case(s) {unknown}; see --list")
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if args.client == "wrk" and shutil.which("wrk") is None:
        p.error("wrk is not installed (Debian: apt-get install wrk); use --client python")
    rows = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores", flush=True)
    for name in wanted:
        case = known[name]
        model, train_s = trained(case, args.workdir, args.retrain)
        if args.train_only:
            continue
        bodies = request_bodies(model)
        row = {"case": name, **describe(model)}
        if train_s is not None:
            row["train s"] = train_s
        if args.handler or "retrieval" in name:
            inference, bundle, row["load s"] = load_model(model)
            row.update({f"{k} p99 ms": v for k, v in handler_alone(inference, bundle, bodies).items()})
            row.update(retrieval_figures(bundle, model))
            del inference, bundle  # the server loads its own
        proc, url = start_server(model, WORKERS)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                load = run_wrk(url, bodies, args.duration, Path(tmp)) if use_wrk else \
                    run_python_client(url, bodies, args.duration)
            row["worker RSS MB"], row["worker PSS MB"] = worker_memory_mb(proc.pid)
        finally:
            be.stop_server(proc)
        row.update(load)
        row["load avg"] = os.getloadavg()[0]
        row["target met"] = row["req/s"] >= TARGET_RPS and row["p99 ms"] < TARGET_P99_MS and not row["errors"]
        rows.append(row)
        print(f"[{name}] {row['req/s']:.0f} req/s, p50 {row['p50 ms']:.1f} ms, p99 {row['p99 ms']:.1f} ms, "
              f"{row['errors']} errors ({row['load generator']}; load {row['load avg']:.1f})", flush=True)
    print()
    print(table(rows))
    out = ROOT / "out" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(rows, indent=2, default=str))
    (out / "serving.md").write_text(table(rows) + "\n")
    return 0 if all(r["target met"] for r in rows) else 1


def table(rows: list[dict]) -> str:
    cols = ["case", "products", "shoppers", "max items/shopper", "recipe", "model MB", "req/s", "p50 ms", "p99 ms",
            "errors", "worker RSS MB", "worker PSS MB", "load avg", "target met"]
    cols += sorted({k for r in rows for k in r if k.endswith("p99 ms") and k != "p99 ms"} | {
        k for r in rows for k in r if k in ("load s", "train s") or "recall" in k or k.startswith("index")})

    def cell(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return "-" if v != v else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}")
        return "-" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
