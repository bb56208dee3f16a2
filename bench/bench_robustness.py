"""Robustness campaigns, much larger than CI's (tests/reliability): bad inputs tried, faults survived, rows reconciled.

    .venv/bin/python bench/bench_robustness.py                       # defaults: ~1-2 min on 2 cores
    .venv/bin/python bench/bench_robustness.py --http 50000 --inproc 100000 --interactions 500000 --budget 900

Three campaigns, each seeded and bounded by its share of ``--budget`` seconds:

1. in-process: ``input_fn -> predict_fn -> output_fn`` of sagemaker_src/inference.py on generated bad (and some
   good) requests; every outcome must be an answer or ``BadRequest``, and agree with the contract oracle
   (tests/reliability/strategies.py ``expected_problems``).
2. HTTP: the same categories plus raw bytes, mutations, wrong headers/methods/paths and the hand-written
   nasties (tests/reliability/corpus.py: oversize, chunked, broken framing, stalled clients) against a live
   ``serve_endpoint`` from 8 client threads; then the endpoint must still answer a good request exactly as before.
3. raw data: generator data (recsys.generator) plus every corrupted variant of the corpus, lines broken at
   random and random dirty-cell tables; every file is refused by name or reconciled (in = curated + quarantined).

Exit status 1 if any 500, hang, crash, oracle disagreement or reconciliation failure was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sagemaker_src"))

from glue_jobs.raw_reader import RawDataError  # noqa: E402
from recsys.generator import GeneratorConfig, generate_to_dir  # noqa: E402
from recsys.local.endpoint import request, serve_endpoint  # noqa: E402
from tests.reliability import corpus  # noqa: E402
from tests.reliability.strategies import EXCLUDE_MODES, expected_problems  # noqa: E402
from tests.tiny_model import train_tiny_model  # noqa: E402

JSON_HEADERS = {"Content-Type": "application/json"}
USERS, ITEMS = [f"u{n}" for n in range(70)], [f"p{n}" for n in range(55)]
JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    "",
    " ",
    "x",
    [],
    {},
    [1, [2]],
    {"a": {"b": None}},
    2**70,
    -(2**63),
    "\ud800",
    "\x00",
    "\ufeff",
]


# ------------------------------------------------------------------------------ request generators
def _text(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return "".join(chr(rng.randrange(0xD800, 0xE000)) for _ in range(rng.randint(1, 4)))  # lone surrogates
    if kind == 1:
        return "".join(chr(rng.randrange(0x10000, 0x10FFFF)) for _ in range(rng.randint(1, 300)))
    if kind == 2:
        return rng.choice(["\u202eu1", "u1\x00", "\ufeffu1", "ü" * 500, "u1\n", " u1 ", "\t"])
    if kind == 3:
        return "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randint(0, 20)))
    return rng.choice(USERS + ITEMS)


def _nested(rng: random.Random, depth: int) -> Any:
    if depth <= 0 or rng.random() < 0.2:
        return rng.choice(JUNK)
    return [_nested(rng, depth - 1)] if rng.random() < 0.5 else {_text(rng): _nested(rng, depth - 1)}


def _valid(rng: random.Random) -> dict[str, Any]:
    req: dict[str, Any] = {"user_id": rng.choice(USERS + ["new-user"]), "k": rng.randint(1, 50)}
    if rng.random() < 0.3:
        req["recent_product_ids"] = rng.sample(ITEMS, rng.randint(0, 5))
    if rng.random() < 0.3:
        req["exclude"] = rng.choice(EXCLUDE_MODES)
    return req


FIELDS = ("user_id", "k", "recent_product_ids", "exclude_product_ids", "exclude", "category")
REQUESTS: dict[str, Callable[[random.Random], Any]] = {
    "valid": _valid,
    "wrong type": lambda rng: {**_valid(rng), rng.choice(FIELDS): rng.choice(JUNK)},
    "k extreme": lambda rng: {
        **_valid(rng),
        "k": rng.choice(
            [0, -1, 1001, 10**12, 2**63, -(2**63), 1.0, 2.5, True, "10", None, float("nan"), 1e308, 10**300]
        ),
    },
    "unicode": lambda rng: {
        **_valid(rng),
        rng.choice(["user_id", "category", "exclude"]): _text(rng),
        "recent_product_ids": [_text(rng) for _ in range(rng.randint(0, 5))],
    },
    "huge id list": lambda rng: {
        **_valid(rng),
        rng.choice(["recent_product_ids", "exclude_product_ids"]): [
            rng.choice(ITEMS + JUNK[:8]) for _ in range(rng.choice([999, 1000, 1001, 5000]))
        ],
    },
    "nested junk": lambda rng: {**_valid(rng), rng.choice(FIELDS): _nested(rng, rng.randint(1, 60))},
    "extra keys": lambda rng: {**_valid(rng), **{_text(rng): rng.choice(JUNK) for _ in range(rng.randint(1, 200))}},
    "batch": lambda rng: {
        "instances": rng.choice(
            [[], {}, None, [None]]
            + [[rng.choice([_valid(rng), {**_valid(rng), "k": 0}, "x"]) for _ in range(rng.choice([1, 5, 1000, 1001]))]]
        )
    },
    "not an object": lambda rng: _nested(rng, rng.randint(0, 8)),
}
BYTES: dict[str, Callable[[random.Random], bytes]] = {
    "random bytes": lambda rng: rng.randbytes(rng.randint(0, 500)),
    "mutated": lambda rng: corpus.mutated_bodies(rng.randrange(2**31), 1)[0],
    "deep nesting": lambda rng: b"[" * (d := rng.randint(500, 200_000)) + b"]" * d,
    "long number": lambda rng: b'{"user_id": "u1", "k": ' + b"9" * rng.randint(4000, 100_000) + b"}",
}
CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "",
    "application/jsonx",
    "application/json; charset=latin-1",
    "multipart/form-data; boundary=x",
    "APPLICATION/JSON",
    "*/*",
]


def _body(category: str, rng: random.Random) -> tuple[Any, bytes]:
    if category in REQUESTS:
        req = REQUESTS[category](rng)
        return req, json.dumps(req).encode()
    return None, BYTES[category](rng)


# ------------------------------------------------------------------------------ campaigns
class Tally:
    def __init__(self) -> None:
        self.tried: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def add(self, category: str, outcome: str, failure: str | None = None, seconds: float = 0.0) -> None:
        with self.lock:
            self.tried[category] += 1
            self.outcomes[category][outcome] += 1
            self.latencies.append(seconds)
            if failure and len(self.failures) < 20:
                self.failures.append(f"[{category}] {failure}")


def in_process_campaign(model_dir: Path, n: int, seed: int, deadline: float) -> Tally:
    import inference

    model, tally, rng = inference.model_fn(str(model_dir)), Tally(), random.Random(seed)
    categories = list(REQUESTS) + list(BYTES) + ["content type"]
    for i in range(n):
        if time.perf_counter() > deadline:
            break
        category = categories[i % len(categories)]
        content_type = rng.choice(CONTENT_TYPES) if category == "content type" else "application/json"
        req, body = _body("valid" if category == "content type" else category, rng)
        t0 = time.perf_counter()
        try:
            inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), None)
            outcome, error = "answered", None
        except inference.BadRequest as exc:
            outcome, error = "BadRequest", str(exc)
        except Exception as exc:  # noqa: BLE001 - exactly what the campaign counts
            tally.add(category, "CRASH", f"{type(exc).__name__}: {exc} for {body[:120]!r}")
            continue
        failure = None
        if error is not None and not error.strip():
            failure = f"empty BadRequest message for {body[:120]!r}"
        elif content_type.split(";")[0].strip().lower() != "application/json":
            if error is None:
                failure = f"accepted content type {content_type!r}"
        elif req is not None and bool(expected_problems(req)) != (error is not None):
            failure = f"oracle disagrees ({error!r}) for {body[:120]!r}"
        tally.add(category, outcome + (" (WRONG)" if failure else ""), failure, time.perf_counter() - t0)
    return tally


def http_campaign(url: str, n: int, seed: int, deadline: float, clients: int) -> Tally:
    tally = Tally()
    categories = list(REQUESTS) + list(BYTES) + ["headers", "method/path"]
    nasties = list(corpus.http_nasties().items())
    reference = request(url, "POST", "/invocations", corpus.GOOD, JSON_HEADERS)[2]

    def one(i: int) -> None:
        if time.perf_counter() > deadline:
            return
        rng = random.Random(seed * 1_000_003 + i)
        if i % 50 == 0:  # the hand-written corpus, cycled: ~2% of requests, most of the bytes
            name, (category, data, expected) = nasties[(i // 50) % len(nasties)]
            ex = corpus.exchange(url, data, timeout=15.0)
            problems = corpus.judge(name, expected, ex)
            tally.add(
                f"wire: {category}",
                "timeout" if ex.timed_out else str(ex.status or "closed"),
                "; ".join(problems) or None,
                ex.seconds,
            )
            return
        category = categories[i % len(categories)]
        method, path, headers = "POST", "/invocations", dict(JSON_HEADERS)
        if category == "headers":
            headers = {"Content-Type": rng.choice(CONTENT_TYPES), "Accept": rng.choice(CONTENT_TYPES + ["text/csv"])}
            body = json.dumps(_valid(rng)).encode()
        elif category == "method/path":
            method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"])
            path = rng.choice(["/", "/ping", "/invocations/x", "/%00", "/" + "a" * 5000, "/invocations?x=1"])
            body = b"{}"
        else:
            body = _body(category, rng)[1]
        t0 = time.perf_counter()
        try:
            status, resp_headers, raw = request(url, method, path, body, headers, timeout=15.0)
        except TimeoutError:
            tally.add(category, "timeout", f"no answer in 15 s to {body[:80]!r}", time.perf_counter() - t0)
            return
        failure = None
        if status >= 500:
            failure = f"{status} for {body[:120]!r}"
        elif status != 200 and method != "HEAD":
            try:
                message = json.loads(raw).get("error", "")
            except ValueError:
                message = ""
            if not (isinstance(message, str) and message.strip()):
                failure = f"{status} without a JSON error message: {raw[:120]!r}"
        tally.add(category, str(status), failure, time.perf_counter() - t0)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(n)))
    status, _, body = request(url, "GET", "/ping")
    after = request(url, "POST", "/invocations", corpus.GOOD, JSON_HEADERS)[2]
    tally.add(
        "health after the storm",
        "ok" if status == 200 and after == reference else "BROKEN",
        None if status == 200 and after == reference else f"/ping {status}, answer changed: {after[:120]!r}",
    )
    return tally


def raw_campaign(workdir: Path, interactions: int, seed: int, deadline: float, random_tables: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    summary = generate_to_dir(workdir / "raw", GeneratorConfig(n_interactions=interactions, seed=seed))
    gen_seconds = time.perf_counter() - t0
    stats: dict[str, Any] = {
        "files": Counter(),
        "rows_in": 0,
        "curated": 0,
        "quarantined": 0,
        "refused": Counter(),
        "failures": [],
        "reasons": Counter(),
        "generated_rows": dict(summary.rows),
        "generate_s": gen_seconds,
    }

    def run(kind: str, data: bytes, table: str, expected: int | str, name: str) -> None:
        stats["files"][kind] += 1
        try:
            c = corpus.curate(data, table=table, name=name)
        except RawDataError as exc:
            ok = isinstance(expected, str) and re.search(expected, str(exc)) and str(exc).startswith(f"{name}: ")
            stats["refused"]["as expected" if ok else "UNEXPECTED"] += 1
            if not ok:
                stats["failures"].append(f"{name}: refused: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - exactly what the campaign counts
            stats["failures"].append(f"{name}: CRASH {type(exc).__name__}: {exc}")
            return
        stats["rows_in"] += c.rows_in
        stats["curated"] += c.curated
        stats["quarantined"] += c.quarantined
        stats["reasons"].update(c.reasons)
        problems = (
            corpus.reconciliation_problems(c, expected)
            if isinstance(expected, int)
            else [f"expected a refusal matching {expected!r}"]
        )
        stats["failures"].extend(f"{name}: {p}" for p in problems)

    texts = {t: p.read_text(encoding="utf-8") for t, p in summary.paths.items()}
    for table, text in texts.items():
        run("generator file", text.encode(), table, summary.rows[table], f"{table}.csv")
    rng = random.Random(seed)
    interaction_rows = texts["interactions"].splitlines()[1:]
    round_ = 0
    while time.perf_counter() < deadline and (round_ < 3 or stats["files"]["random dirty table"] < random_tables):
        sample = rng.sample(interaction_rows, min(len(interaction_rows), rng.choice([3, 50, 2000])))
        for name, (data, expected) in corpus.corrupted_files(sample).items():
            run("corpus variant", data, "interactions", expected, f"round{round_}/{name}.csv")
        for table, text in texts.items():
            broken = _break_lines(text, rng)
            run("broken lines", broken.encode(), table, summary.rows[table], f"round{round_}/{table}-broken.csv")
        for _ in range(10):
            rows = [_dirty_row(rng) for _ in range(rng.randint(0, 400))]
            rows += rng.sample(rows, min(len(rows), rng.randint(0, 5)))
            run("random dirty table", _csv(rows), "interactions", len(rows), f"round{round_}/dirty.csv")
        round_ += 1
    return stats


def _break_lines(text: str, rng: random.Random) -> str:
    """Break ~2% of the lines so that each stays one record: cut fields, add fields, garble a value."""
    lines = text.splitlines()
    for i in rng.sample(range(1, len(lines)), max(1, len(lines) // 50)):
        kind = rng.randrange(3)
        lines[i] = [lines[i].rsplit(",", 2)[0], lines[i] + ",extra", lines[i].replace(",", ",\ufffd\u00a0", 1)][kind]
    return "\n".join(lines) + "\n"


def _dirty_row(rng: random.Random) -> list[str]:
    pick = rng.choice
    return [
        pick(["u1", "u2", "", " ", "ü", "a,b", 'q"t', "x\ny"]),
        pick(["p1", "p2", "", "\x00", "p,3"]),
        pick(["view", "add_to_cart", "purchase", "rating", "VIEW", "", "click", " view"]),
        pick(["", "1", "5", "3.0", "0", "6", "2.5", "nan", "abc", "1e400"]),
        pick(
            [
                "2025-01-01T00:00:00+00:00",
                "1735689600",
                "",
                "garbage",
                "9999-12-31T23:59:59+14:00",
                "0",
                "-1",
                "1e300",
                "2025-13-45",
                "2025-01-01",
                str(rng.randint(-(2**63), 2**63)),
            ]
        ),
    ]


def _csv(rows: list[list[str]]) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(corpus.HEADER.split(","))
    writer.writerows(rows)
    return buf.getvalue().encode()


# ------------------------------------------------------------------------------ report
def _print_tally(title: str, tally: Tally) -> int:
    print(f"\n== {title}: {sum(tally.tried.values()):,} requests")
    width = max(len(c) for c in tally.tried)
    for category in sorted(tally.tried):
        hist = ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.outcomes[category].items()))
        print(f"  {category:<{width}}  {tally.tried[category]:>7,}   {hist}")
    statuses: Counter[str] = Counter()
    for c in tally.outcomes.values():
        statuses.update(c)
    print(f"  outcome histogram: {dict(sorted(statuses.items()))}")
    bad = tally.failures
    if tally.latencies:
        lat = sorted(tally.latencies)
        print(
            f"  latency: p50 {lat[len(lat) // 2] * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.0f} ms"
        )
    crashes = sum(c.get("CRASH", 0) + c.get("timeout", 0) for c in tally.outcomes.values())
    five = sum(v for c in tally.outcomes.values() for k, v in c.items() if k.isdigit() and int(k) >= 500)
    print(f"  500s: {five}   crashes/timeouts: {crashes}   contract failures: {len(bad)}")
    for f in bad[:10]:
        print(f"    ! {f}")
    return len(bad) + five + crashes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inproc", type=int, default=20_000, help="in-process requests (default 20,000)")
    p.add_argument("--http", type=int, default=10_000, help="HTTP requests (default 10,000)")
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP client threads")
    p.add_argument("--interactions", type=int, default=60_000, help="generator interactions for the raw campaign")
    p.add_argument("--random-tables", type=int, default=30, help="minimum random dirty tables in the raw campaign")
    p.add_argument("--budget", type=float, default=110.0, help="seconds for the three campaigns together")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--model-dir", type=Path, help="serve this model (default: train a tiny one, ~5 s)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-robustness-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or train_tiny_model(work / "tiny")
        print(f"model: {model_dir} ({time.perf_counter() - start:.1f} s)")
        left = args.budget - (time.perf_counter() - start)
        t = time.perf_counter()
        inproc = in_process_campaign(model_dir, args.inproc, args.seed, t + 0.25 * left)
        inproc_s = time.perf_counter() - t
        t = time.perf_counter()
        with serve_endpoint(model_dir, threads=8) as url:
            http = http_campaign(url, args.http, args.seed, t + 0.45 * left, args.clients)
        http_s = time.perf_counter() - t
        t = time.perf_counter()
        raw = raw_campaign(work, args.interactions, args.seed, t + 0.25 * left, args.random_tables)
        raw_s = time.perf_counter() - t
    failures = _print_tally(f"in-process input_fn/predict_fn/output_fn ({inproc_s:.1f} s)", inproc)
    failures += _print_tally(f"HTTP against serve_endpoint, {args.clients} clients ({http_s:.1f} s)", http)
    print(f"\n== raw data ({raw_s:.1f} s; generator wrote {raw['generated_rows']} in {raw['generate_s']:.1f} s)")
    print(f"  files tried: {sum(raw['files'].values()):,} {dict(raw['files'])}")
    print(f"  refused with RawDataError: {dict(raw['refused'])}")
    print(
        f"  rows in {raw['rows_in']:,} = curated {raw['curated']:,} + quarantined {raw['quarantined']:,}: "
        f"{'ok' if raw['rows_in'] == raw['curated'] + raw['quarantined'] else 'MISMATCH'}"
    )
    print(f"  quarantine reasons: {dict(raw['reasons'].most_common())}")
    print(f"  reconciliation failures / crashes: {len(raw['failures'])}")
    for f in raw["failures"][:10]:
        print(f"    ! {f}")
    failures += len(raw["failures"])
    print(f"\n{'PASS' if not failures else 'FAIL'}: {failures} problem(s) in {time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
