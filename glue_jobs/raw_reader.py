"""Read a raw table file (CSV, Parquet or JSON lines, optionally gzip) as strings, keeping every line:
unparseable lines are returned, not lost.

Choices (see glue_jobs/README.md):
- Everything is read as text, so no value is coerced before the recipe decides what is valid. An empty CSV
  cell is a null (as in DataBrew); blanks and other text are kept verbatim. Column names are stripped.
- UTF-8 only (a BOM is tolerated). Other encodings raise RawDataError instead of guessing latin-1: a wrong guess
  would silently create different ids for the same user.
- A file with no header at all raises; a header-only file is a valid empty drop and returns zero rows.
- A line with the wrong number of fields goes to ``malformed`` with a reason; the rest of the file is read.
- JSON lines (the clickstream archive Firehose writes: one object per line, gzip) have no header: every
  contract column is present (null where a record lacks it) and the recipe quarantines what is missing; a
  line that is not a JSON object goes to ``malformed``. Scalars become their JSON text (``true``, ``4.0``).
- gzip is recognised by its magic bytes, whatever the file is called.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from glue_jobs.schema import QUARANTINE_REASON_COLUMN, QUARANTINE_STEP_COLUMN, RAW_COLUMNS, REQUIRED_RAW_COLUMNS

READ_STEP = "read_raw"
MALFORMED_REASON = "malformed_line"
MALFORMED_COLUMNS = ("line_number", "raw_line", QUARANTINE_REASON_COLUMN, QUARANTINE_STEP_COLUMN, "detail")
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
FORMATS = ("csv", "parquet", "jsonl")
#: File name endings read as JSON lines (``.gz`` is stripped first).
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


class RawDataError(ValueError):
    """A raw file that cannot be processed at all; the message names the file, the problem and the fix."""


@dataclass
class RawReadResult:
    table: str
    frame: pd.DataFrame  # every column as text (pandas "str"), extra columns kept, file order
    malformed: pd.DataFrame  # MALFORMED_COLUMNS, one row per unparseable line
    source: str


def _empty_malformed() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str") for c in MALFORMED_COLUMNS})


def _detect_format(data: bytes, name: str, fmt: str | None) -> str:
    if fmt:
        fmt = fmt.lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise RawDataError(f"{name}: format {fmt!r} is not supported; give a .csv, .parquet or .jsonl file")
        return fmt
    lower = name.lower().removesuffix(".gz")
    if data[:4] == b"PAR1" or lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(_JSON_SUFFIXES) or data[:4096].lstrip(_BOM + b" \t\r\n")[:1] == b"{":
        return "jsonl"
    return "csv"


def _gunzip(data: bytes, name: str) -> bytes:
    """Decompress a gzip file (Firehose archives are gzip); a damaged one is an error naming the file."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise RawDataError(
            f"{name}: looks gzip-compressed but cannot be decompressed ({exc}); upload it again"
        ) from exc


def _check_columns(columns: list[str], table: str, name: str) -> None:
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise RawDataError(f"{name}: column(s) {dupes} appear more than once in the header; rename or remove them")
    missing = [c for c in REQUIRED_RAW_COLUMNS[table] if c not in columns]
    if missing:
        raise RawDataError(
            f"{name}: the {table} file lacks required column(s) {missing} (found {columns}); "
            f"the header must name at least {list(REQUIRED_RAW_COLUMNS[table])} "
            f"(full contract: {list(RAW_COLUMNS[table])})"
        )


def _utf8(data: bytes, name: str) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RawDataError(
            f"{name}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line} cannot be decoded); "
            "re-save the file as UTF-8 (e.g. 'iconv -f latin1 -t utf-8') and upload it again"
        ) from exc


def _read_csv(data: bytes, table: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    text = _utf8(data, name)
    if not text.strip():
        raise RawDataError(
            f"{name}: the file is empty (no header row); expected a header naming {list(RAW_COLUMNS[table])}"
        )
    header = [c.strip() for c in next(csv.reader(io.StringIO(text.splitlines()[0])))]
    _check_columns(header, table, name)

    bad: list[dict[str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(
            {
                "line_number": "" if row.number is None else str(row.number),
                "raw_line": row.text,
                QUARANTINE_REASON_COLUMN: MALFORMED_REASON,
                QUARANTINE_STEP_COLUMN: READ_STEP,
                "detail": f"expected {row.expected_columns} fields, found {row.actual_columns}",
            }
        )
        return "skip"

    payload = text.encode("utf-8")

    def parse(block_size: int | None) -> pa.Table:
        bad.clear()
        return pacsv.read_csv(
            io.BytesIO(payload),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=block_size),
            # A quoted value may hold a newline: without this, one falling on a block boundary splits its row in two.
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )

    try:
        try:
            table_ = parse(None)
        except pa.ArrowInvalid as exc:  # a row longer than a block (1 MiB): parse the file as one block
            if "straddl" not in str(exc) or len(payload) >= 2**31 - 1:
                raise
            table_ = parse(len(payload) + 1)
    except pa.ArrowInvalid as exc:
        raise RawDataError(f"{name}: cannot be parsed as CSV ({exc}); check quoting and delimiters") from exc
    frame = (
        table_.to_pandas().astype("str")
        if table_.num_rows
        else pd.DataFrame({c: pd.Series(dtype="str") for c in header})
    )
    if not bad:
        return frame, _empty_malformed()
    _fill_line_numbers(bad, text)
    return frame, pd.DataFrame(bad, columns=list(MALFORMED_COLUMNS)).astype("str")


def _fill_line_numbers(bad: list[dict[str, str]], text: str) -> None:
    """pyarrow does not always know the physical line; find each bad line's 1-based number in file order."""
    wanted = {r["raw_line"] for r in bad if not r["line_number"]}
    seen: dict[str, list[int]] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        if line in wanted and no > 1:
            seen.setdefault(line, []).append(no)
    for r in bad:
        if not r["line_number"] and seen.get(r["raw_line"]):
            r["line_number"] = str(seen[r["raw_line"]].pop(0))


def _read_parquet(data: bytes, table: str, name: str) -> pd.DataFrame:
    try:
        arrow = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise RawDataError(f"{name}: not a readable Parquet file ({exc}); re-export it or send CSV") from exc
    _check_columns(arrow.column_names, table, name)
    cols = {}
    for field in arrow.schema:
        try:
            cols[field.name] = arrow[field.name].cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise RawDataError(
                f"{name}: column {field.name!r} has type {field.type}, which cannot be read as text; flatten it"
            ) from exc
    return (
        pa.table(cols).to_pandas().astype("str")
        if arrow.num_rows
        else pd.DataFrame({c: pd.Series(dtype="str") for c in arrow.column_names})
    )


def _json_text(value: object) -> str | None:
    """A JSON value as the text a CSV cell would hold: null stays null, scalars keep their JSON spelling."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _read_jsonl(data: bytes, table: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    text = _utf8(data, name)
    rows: list[dict[str, str | None]] = []
    bad: list[dict[str, str]] = []
    columns = list(RAW_COLUMNS[table])
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # Firehose's record delimiter leaves a final newline; blank lines carry no row
        try:
            record = json.loads(line)
        except ValueError as exc:
            record, detail = None, f"not JSON: {exc}"
        else:
            detail = f"a JSON {type(record).__name__}, not an object"
        if not isinstance(record, dict):
            bad.append(
                {
                    "line_number": str(number),
                    "raw_line": line,
                    QUARANTINE_REASON_COLUMN: MALFORMED_REASON,
                    QUARANTINE_STEP_COLUMN: READ_STEP,
                    "detail": detail,
                }
            )
            continue
        row = {str(k).strip(): _json_text(v) for k, v in record.items()}
        columns.extend(k for k in row if k not in columns)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns).astype("str") if rows else _empty_text_frame(columns)
    malformed = pd.DataFrame(bad, columns=list(MALFORMED_COLUMNS)).astype("str") if bad else _empty_malformed()
    return frame, malformed


def _empty_text_frame(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str") for c in columns})


def read_raw(source: str | Path | bytes, table: str, fmt: str | None = None, name: str = "") -> RawReadResult:
    """Read one raw file for ``table``; ``source`` is a path or the file's bytes (e.g. an S3 object body)."""
    if table not in RAW_COLUMNS:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(RAW_COLUMNS)}")
    if isinstance(source, bytes):
        data, name = source, name or f"<{table} bytes>"
    else:
        path = Path(source)
        name = name or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RawDataError(f"{name}: cannot be read ({exc.strerror})") from exc
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, name)
    kind = _detect_format(data, name, fmt)
    if kind == "parquet":
        frame, malformed = _read_parquet(data, table, name), _empty_malformed()
    elif kind == "jsonl":
        frame, malformed = _read_jsonl(data, table, name)
    else:
        frame, malformed = _read_csv(data, table, name)
    return RawReadResult(table=table, frame=frame, malformed=malformed, source=name)
