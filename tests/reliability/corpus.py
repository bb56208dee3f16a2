"""Hand-written nasties and the helpers that judge them, shared by the reliability tests and
``bench/bench_robustness.py`` (which runs the same corpora at a much larger scale).

Two families:

- HTTP: whole requests as raw bytes (so framing itself can be broken), sent on a fresh socket with
  a hard timeout; ``Exchange`` records what came back (or that the server closed, or that nothing
  came: a hang).
- Raw data: corrupted variants of an interactions CSV, each with the outcome CONTRACTS §1 allows
  (a ``RawDataError`` whose message names the file, or an exact row count), and ``curate``, the
  main job's reconciliation (read_raw -> run_recipe -> malformed + quarantine) without S3.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pandas as pd

from glue_jobs.raw_reader import read_raw
from glue_jobs.recipe_jobs import reason_counts, run_recipe
from glue_jobs.schema import QUARANTINE_REASON_COLUMN, RAW_COLUMNS
from recsys.local.endpoint import HARD_BODY_LIMIT, MAX_BODY

JSON = "application/json"
GOOD = b'{"user_id": "u1", "k": 3}'

# ---------------------------------------------------------------------------------------------- HTTP


@dataclass
class Exchange:
    """One raw HTTP exchange: status None means the server closed without answering."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float
    timed_out: bool = False

    @property
    def json_error(self) -> str | None:
        """The ``error`` message of a JSON error body, else None."""
        if "application/json" not in self.headers.get("content-type", ""):
            return None
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        return doc.get("error") if isinstance(doc, dict) and isinstance(doc.get("error"), str) else None


def exchange(url: str, data: bytes, timeout: float = 10.0, half_close: bool = True) -> Exchange:
    """Send ``data`` as is, optionally half-close, and read until the server closes (or ``timeout``)."""
    parts = urlsplit(url)
    t0 = time.perf_counter()
    raw = b""
    timed_out = False
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early (e.g. 413) and closed: read what it said
        deadline = t0 + timeout
        while True:
            sock.settimeout(max(deadline - time.perf_counter(), 0.001))
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                timed_out = True
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            raw += chunk
    return _parse(raw, time.perf_counter() - t0, timed_out)


def _parse(raw: bytes, seconds: float, timed_out: bool) -> Exchange:
    """The first final (non-1xx) response in ``raw`` (requests say ``Connection: close``, so there is one)."""
    status, headers, body = None, {}, b""
    rest = raw
    while rest.startswith(b"HTTP/"):
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status >= 200:
            body = rest[: int(headers.get("content-length", len(rest)))]
            break
    return Exchange(status, headers, body, seconds, timed_out)


def http_request(
    body: bytes | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/invocations",
    content_length: int | None = None,
) -> bytes:
    """A well-framed HTTP/1.1 request as bytes (``Connection: close``), headers sent exactly as given."""
    hdrs = {"Host": "127.0.0.1", "Connection": "close", **(headers if headers is not None else {"Content-Type": JSON})}
    if body is not None and "Transfer-Encoding" not in hdrs:
        hdrs.setdefault("Content-Length", str(len(body) if content_length is None else content_length))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(parts: list[bytes], terminate: bool = True) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + (b"0\r\n\r\n" if terminate else b"")


def mutated_bodies(seed: int, n: int) -> list[bytes]:
    """Seeded byte-level mutations of valid requests: flips, inserts, deletions, truncations, splices."""
    rng = random.Random(seed)
    seeds = [
        GOOD,
        b'{"instances": [{"user_id": "u1", "k": 2}, {"user_id": "new"}]}',
        b'{"user_id": "u3", "k": 5, "recent_product_ids": ["p1", "p2"], "exclude": "interacted"}',
    ]
    out = []
    for _ in range(n):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(body) + 1)
            op = rng.randrange(5)
            if op == 0 and body:
                body[min(pos, len(body) - 1)] = rng.randrange(256)
            elif op == 1:
                body[pos:pos] = bytes(
                    rng.choice(b'{}[]",:\\0123456789aenlrstu \x00\xff') for _ in range(rng.randint(1, 3))
                )
            elif op == 2:
                del body[pos : pos + rng.randint(1, 4)]
            elif op == 3:
                body = body[:pos]
            else:
                body[pos:pos] = rng.choice(seeds)
        out.append(bytes(body))
    return out


# What a nasty may get back. APP: the app answered, 4xx with a JSON {"error"}. OK: 200 with a valid
# answer. WIRE: broken HTTP framing; waitress itself answers 4xx (text/plain) or just closes.
APP, OK, WIRE = "app-4xx-json", "200", "wire-4xx-or-close"

TE_CHUNKED = {"Content-Type": JSON, "Transfer-Encoding": "chunked"}


def http_nasties() -> dict[str, tuple[str, bytes, str]]:
    """name -> (category, raw request, expected outcome). Deterministic; ~30 MiB in total."""
    deep = b"[" * 100_000 + b"]" * 100_000
    pad_to = MAX_BODY - len(GOOD)
    return {
        "empty body": ("body", http_request(b""), APP),
        "no body, no length": ("body", http_request(None), APP),
        "whitespace body": ("body", http_request(b" \r\n\t "), APP),
        "exactly 1 MiB (valid)": ("size", http_request(GOOD[:-1] + b" " * pad_to + b"}"), OK),
        "1 MiB + 1": ("size", http_request(GOOD[:-1] + b" " * (pad_to + 1) + b"}"), APP),
        "20 MiB body (waitress 413)": ("size", http_request(b"x" * (20 << 20)), WIRE),
        "declared 20 MiB, sent 10 bytes": ("size", http_request(b"0123456789", content_length=20 << 20), WIRE),
        "deep JSON nesting 100k": ("json", http_request(deep), APP),
        "deep nesting inside k": (
            "json",
            http_request(b'{"user_id": "u1", "k": ' + b"[" * 3000 + b"]" * 3000 + b"}"),
            APP,
        ),
        "5000-digit integer k": ("json", http_request(b'{"user_id": "u1", "k": ' + b"9" * 5000 + b"}"), APP),
        "5000-digit integer user_id": ("json", http_request(b'{"user_id": ' + b"1" * 5000 + b"}"), APP),
        "invalid UTF-8": ("encoding", http_request(b'{"user_id": "u\xff\xfe1"}'), APP),
        "UTF-8 BOM": ("encoding", http_request(b"\xef\xbb\xbf" + GOOD), APP),
        "UTF-16 body": ("encoding", http_request(GOOD.decode().encode("utf-16")), APP),
        "latin-1 charset declared": (
            "encoding",
            http_request('{"user_id": "Ren\xe9"}'.encode("latin-1"), {"Content-Type": f"{JSON}; charset=latin-1"}),
            APP,
        ),
        "NaN k": ("json", http_request(b'{"user_id": "u1", "k": NaN}'), APP),
        "Infinity k": ("json", http_request(b'{"user_id": "u1", "k": Infinity}'), APP),
        "-Infinity user_id": ("json", http_request(b'{"user_id": -Infinity}'), APP),
        "NaN in an ignored key": ("json", http_request(b'{"user_id": "u1", "k": 2, "extra": NaN}'), OK),
        "duplicate keys (last wins)": ("json", http_request(b'{"user_id": "u1", "k": 0, "k": 2}'), OK),
        "duplicate keys, bad last": ("json", http_request(b'{"user_id": "u1", "k": 2, "k": -1}'), APP),
        "lone surrogate user_id": ("unicode", http_request(b'{"user_id": "\\ud800", "k": 2}'), OK),
        "NUL in user_id": ("unicode", http_request(b'{"user_id": "u\\u00001", "k": 2}'), OK),
        "huge k": ("type", http_request(b'{"user_id": "u1", "k": 1000000000000}'), APP),
        "1001 recent ids": (
            "type",
            http_request(json.dumps({"user_id": "u1", "recent_product_ids": [f"p{n}" for n in range(1001)]}).encode()),
            APP,
        ),
        "1001 instances": ("type", http_request(json.dumps({"instances": [{"user_id": "u1"}] * 1001}).encode()), APP),
        "1000 instances x k=1000 (valid)": (
            "load",
            http_request(
                json.dumps({"instances": [{"user_id": f"u{n % 70}", "k": 1000} for n in range(1000)]}).encode()
            ),
            OK,
        ),
        "text/plain content type": ("header", http_request(GOOD, {"Content-Type": "text/plain"}), APP),
        "form content type": ("header", http_request(GOOD, {"Content-Type": "application/x-www-form-urlencoded"}), APP),
        "no content type": ("header", http_request(GOOD, {}), APP),
        "non-ASCII content type": ("header", http_request(GOOD, {"Content-Type": f"{JSON}\xff"}), APP),
        "Accept text/csv": ("header", http_request(GOOD, {"Content-Type": JSON, "Accept": "text/csv"}), APP),
        "chunked (valid)": ("framing", http_request(chunked([GOOD[:9], GOOD[9:]]), TE_CHUNKED), OK),
        "chunked 2 MiB": ("framing", http_request(chunked([b" " * 65536] * 32), TE_CHUNKED), APP),
        "chunked 20 MiB (waitress 413)": ("framing", http_request(chunked([b" " * 65536] * 320), TE_CHUNKED), WIRE),
        "chunked, bad chunk size": ("framing", http_request(b"ZZ\r\nabc\r\n0\r\n\r\n", TE_CHUNKED), WIRE),
        "chunked, never terminated": ("framing", http_request(chunked([GOOD], terminate=False), TE_CHUNKED), WIRE),
        "Content-Length > body": ("framing", http_request(GOOD, content_length=len(GOOD) + 10), WIRE),
        "Content-Length < body": ("framing", http_request(GOOD[:-1] + b', "x": 1}', content_length=len(GOOD) - 1), APP),
        "Content-Length not a number": (
            "framing",
            http_request(GOOD, content_length=0).replace(b"Content-Length: 0", b"Content-Length: abc"),
            WIRE,
        ),
        "Content-Length negative": ("framing", http_request(GOOD, content_length=-1), WIRE),
        "two Content-Lengths": (
            "framing",
            http_request(GOOD).replace(b"Connection: close\r\n", b"Connection: close\r\nContent-Length: 3\r\n"),
            WIRE,
        ),
        "garbage request line": ("framing", b"GARBAGE\r\n\r\n", WIRE),
        "bare LF line endings": ("framing", http_request(GOOD).replace(b"\r\n", b"\n"), WIRE),
        "headers never finished": ("framing", b"POST /invocations HTTP/1.1\r\nHost: x\r\n", WIRE),
        "300 KB header (waitress 431)": (
            "framing",
            http_request(GOOD, {"Content-Type": JSON, "X-Big": "a" * 300_000}),
            WIRE,
        ),
        "HTTP/2 preface": ("framing", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", APP),
        "NUL in path": ("path", http_request(GOOD, path="/invo\x00cations"), APP),
        "unknown path": ("path", http_request(GOOD, path="/predict"), APP),
        "GET /invocations": ("path", http_request(None, method="GET"), APP),
    }


assert HARD_BODY_LIMIT < 20 << 20  # the "20 MiB" nasties must exceed waitress's hard limit


def judge(name: str, expected: str, ex: Exchange) -> list[str]:
    """Contract violations of one exchange (empty = fine)."""
    problems = []
    if ex.timed_out:
        problems.append(f"{name}: no answer and no close within {ex.seconds:.1f}s (hang)")
    if ex.status is not None and ex.status >= 500:
        problems.append(f"{name}: server error {ex.status} {ex.body[:200]!r}")
    if expected == OK and ex.status != 200:
        problems.append(f"{name}: expected 200, got {ex.status} {ex.body[:200]!r}")
    if expected == APP and not (ex.status and 400 <= ex.status < 500 and ex.json_error):
        problems.append(f"{name}: expected 4xx with a JSON error message, got {ex.status} {ex.body[:200]!r}")
    if expected == WIRE and ex.status is not None and not 400 <= ex.status < 500:
        problems.append(f"{name}: expected a 4xx or a close, got {ex.status} {ex.body[:200]!r}")
    return problems


# ------------------------------------------------------------------------------------------ raw data

HEADER = ",".join(RAW_COLUMNS["interactions"])
GOOD_ROW = "u1,p1,view,,2025-01-01T00:00:00+00:00"


@dataclass
class Curation:
    """The main job's counts for one file: in = read rows + malformed lines; out = curated + quarantined."""

    rows_in: int
    curated: int
    quarantined: int
    quarantine: pd.DataFrame = field(repr=False)
    curated_rows: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    @property
    def reasons(self) -> dict[str, int]:
        return reason_counts(self.quarantine)


def curate(data: bytes, table: str = "interactions", fmt: str | None = "csv", name: str = "raw.csv") -> Curation:
    """read_raw -> run_recipe -> malformed lines + recipe quarantine, exactly as recsys.main_job combines them."""
    raw = read_raw(data, table, fmt=fmt, name=name)
    result = run_recipe(table, raw.frame)
    quarantine = (
        pd.concat([raw.malformed, result.quarantine], ignore_index=True) if len(raw.malformed) else result.quarantine
    )
    return Curation(
        len(raw.frame) + len(raw.malformed), len(result.curated), len(quarantine), quarantine, result.curated
    )


def reconciliation_problems(c: Curation, expected_rows: int) -> list[str]:
    problems = []
    if c.rows_in != expected_rows:
        problems.append(f"{expected_rows} rows in the file but the reader accounted for {c.rows_in}")
    if c.curated + c.quarantined != expected_rows:
        problems.append(f"{expected_rows} rows in but {c.curated} curated + {c.quarantined} quarantined")
    if c.quarantined:
        reasons = c.quarantine[QUARANTINE_REASON_COLUMN].fillna("").astype(str).str.strip()
        if (reasons == "").any():
            problems.append(f"{int((reasons == '').sum())} quarantined rows have no reason")
    return problems


def csv_records(text: str) -> int:
    """Data records by Python's csv module (independent of the reader's pyarrow): blank lines are not records."""
    previous = csv.field_size_limit(1 << 30)  # the default 128 KiB would refuse long values
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    finally:
        csv.field_size_limit(previous)
    return sum(1 for r in rows[1:] if r)


def _lines(*rows: str, eol: str = "\n") -> str:
    return eol.join(rows) + eol


def corrupted_files(rows: list[str] | None = None) -> dict[str, tuple[bytes, int | str]]:
    """name -> (file bytes given as CSV, expected data rows or a regex the RawDataError message must match).

    ``rows`` are valid interactions lines (default: a few); every variant is built from them, so the
    expected row count is known by construction, not from the reader.
    """
    rows = rows or [GOOD_ROW, "u2,p2,purchase,,1735689600", "u3,p3,rating,5,2025-02-01T10:00:00+05:30"]
    n = len(rows)
    text = _lines(HEADER, *rows)
    cols = HEADER.split(",")
    parquet = io.BytesIO()
    pd.DataFrame([r.split(",") for r in rows], columns=cols).to_parquet(parquet)
    shuffled = [cols[i] for i in (4, 2, 0, 3, 1)]
    shuffled_rows = [",".join(r.split(",")[cols.index(c)] for c in shuffled) for r in rows]
    return {
        "clean": (text.encode(), n),
        "CRLF line endings": (_lines(HEADER, *rows, eol="\r\n").encode(), n),
        "CR-only line endings": (_lines(HEADER, *rows, eol="\r").encode(), n),
        "UTF-8 BOM": (b"\xef\xbb\xbf" + text.encode(), n),
        "no final newline": (text.rstrip("\n").encode(), n),
        "blank lines between rows": (_lines(HEADER, "", *[f"{r}\n" for r in rows]).encode(), n),
        "truncated mid-row": (text.encode()[: len(text) - len(rows[-1]) // 2 - 1], n),
        "truncated mid-header": (HEADER[:12].encode(), r"lacks required column"),
        "empty file": (b"", r"empty"),
        "only newlines": (b"\n\n\r\n", r"empty"),
        "header only": (_lines(HEADER).encode(), 0),
        "header only, CRLF": (_lines(HEADER, eol="\r\n").encode(), 0),
        "binary garbage": (bytes(range(256)) * 40, r"not UTF-8"),
        "gzip of the CSV": (gzip.compress(text.encode()), n),  # recognised by its magic bytes
        "damaged gzip": (gzip.compress(text.encode())[:30], r"gzip"),
        "Parquet given as CSV": (parquet.getvalue(), r"not UTF-8"),
        "Latin-1 encoded": (_lines(HEADER, *rows, "Ren\xe9,p1,view,,1735689600").encode("latin-1"), r"not UTF-8.*line"),
        "UTF-16 encoded": (text.encode("utf-16"), r"not UTF-8"),
        "double BOM": (b"\xef\xbb\xbf\xef\xbb\xbf" + text.encode(), r"lacks required column.*user_id"),
        "missing required columns": (
            _lines("user_id,product_id", "u1,p1").encode(),
            r"lacks required column.*event_type.*timestamp",
        ),
        "duplicate column": (_lines(HEADER + ",user_id", *[f"{r},x" for r in rows]).encode(), r"more than once"),
        "extra columns": (_lines(HEADER + ",extra,more", *[f"{r},a,b" for r in rows]).encode(), n),
        "shuffled columns": (_lines(",".join(shuffled), *shuffled_rows).encode(), n),
        "optional column missing": (
            _lines(
                "user_id,product_id,event_type,timestamp",
                *[",".join(r.split(",")[:3] + r.split(",")[4:]) for r in rows],
            ).encode(),
            n,
        ),
        "semicolon delimiter": (
            _lines(HEADER.replace(",", ";"), *[r.replace(",", ";") for r in rows]).encode(),
            r"lacks required column",
        ),
        "tab delimiter": (
            _lines(HEADER.replace(",", "\t"), *[r.replace(",", "\t") for r in rows]).encode(),
            r"lacks required column",
        ),
        "unbalanced quote swallows the rest": (_lines(HEADER, 'u9,"p9,view,,1735689600', *rows).encode(), 1),
        "unbalanced quote on the last row": (_lines(HEADER, *rows, 'u9,"p9,view,,1735689600').encode(), n + 1),
        "quoted newline in a value": (_lines(HEADER, *rows, 'u9,"p\n9",view,,1735689600').encode(), n + 1),
        "too few fields": (_lines(HEADER, *rows, "u9,p9,view").encode(), n + 1),
        "too many fields": (_lines(HEADER, *rows, "u9,p9,view,,1735689600,extra,more").encode(), n + 1),
        "whitespace-only row": (_lines(HEADER, *rows, "   ").encode(), n + 1),
        "2 MiB field (longer than a parse block)": (
            _lines(HEADER, *rows, f"u9,{'x' * (2 << 20)},view,,1735689600").encode(),
            n + 1,
        ),
        "NUL and form feed in values": (_lines(HEADER, *rows, "u\x009,p\x0c9,view,,1735689600").encode(), n + 1),
        "timestamps beyond pandas' range": (
            _lines(
                HEADER, "u9,p9,view,,9999-12-31T23:59:59+14:00", "u9,p9,view,,0001-01-01T00:00:00Z", "u9,p9,view,,1e300"
            ).encode(),
            3,
        ),
    }
