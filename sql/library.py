"""The Athena queries in this folder, as both runtimes read them: by name, and as CTAS statements.

The ``.sql`` files are the single source of truth, in Athena's (Trino) dialect. The CDK stacks turn
them into named queries and the curation workflow's CTAS states; the local engine
(``recsys/local/athena.py``) transpiles the same text to DuckDB. Nothing here needs an engine.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlglot import exp

from sql.stats import critical_z

READ_DIALECT = "athena"

#: Where the Athena queries live (repository root ``sql/``).
SQL_DIR: Path = Path(__file__).resolve().parent

#: Prefix of the queries that are materialised as feature tables (CTAS on AWS).
FEATURE_PREFIX = "feature_"

#: CTAS storage formats Athena accepts, and those that take ``write_compression``.
CTAS_FORMATS = ("PARQUET", "ORC", "AVRO", "JSON", "TEXTFILE")
_COMPRESSED_FORMATS = {"PARQUET": "SNAPPY", "ORC": "SNAPPY"}

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def list_queries() -> dict[str, Path]:
    """Every ``.sql`` under SQL_DIR by file stem; stems must be unique (they become table names)."""
    queries: dict[str, Path] = {}
    for path in sorted(SQL_DIR.rglob("*.sql")):
        if path.stem in queries:
            raise ValueError(f"duplicate query name {path.stem!r}: {queries[path.stem]} and {path}")
        queries[path.stem] = path
    return queries


def read_query(name: str) -> str:
    """The Athena-dialect text of query ``name`` (header comment included)."""
    queries = list_queries()
    if name not in queries:
        raise KeyError(f"no query named {name!r} in {SQL_DIR} (known: {', '.join(sorted(queries))})")
    return queries[name].read_text(encoding="utf-8")


def feature_queries() -> list[str]:
    """Names of the feature-table queries, i.e. the CTAS targets, sorted."""
    return sorted(name for name in list_queries() if name.startswith(FEATURE_PREFIX))


def statement_body(sql: str) -> str:
    """The statement without trailing whitespace or semicolon, so it can be wrapped."""
    return sql.rstrip().rstrip(";").rstrip()


def ctas_statement(name: str, location: str | None, fmt: str = "PARQUET") -> str:
    """Athena CTAS text for query ``name``, writing table ``name`` at S3 ``location``.

    The query text is kept verbatim (comments included) so the named query in the console reads like
    the file. Athena refuses a CTAS into a non-empty location: the caller drops the table and empties
    the prefix before re-running. ``location`` may contain CDK tokens; only its quoting matters here.
    ``location=None`` omits ``external_location``: Athena then writes under the workgroup's result
    location, which suits a saved query whose bucket is not known when the text is built.
    """
    fmt = fmt.upper()
    if fmt not in CTAS_FORMATS:
        raise ValueError(f"unsupported CTAS format {fmt!r}; use one of {', '.join(CTAS_FORMATS)}")
    if location is not None and not location.startswith("s3://"):
        raise ValueError(f"CTAS external_location must be an s3:// URI, got {location!r}")
    if not _TABLE_NAME.match(name):
        raise ValueError(f"query name {name!r} is not a valid Athena table name")
    body = statement_body(read_query(name))
    props = [f"format = {exp.Literal.string(fmt).sql(READ_DIALECT)}"]
    if fmt in _COMPRESSED_FORMATS:
        props.append(f"write_compression = {exp.Literal.string(_COMPRESSED_FORMATS[fmt]).sql(READ_DIALECT)}")
    if location is not None:
        location = location if location.endswith("/") else location + "/"
        props.append(f"external_location = {exp.Literal.string(location).sql(READ_DIALECT)}")
    return f"CREATE TABLE {name}\nWITH ({', '.join(props)})\nAS\n{body}\n"


#: UNLOAD's output formats (Athena's UNLOAD properties: ``format``, ``compression``).
UNLOAD_FORMATS = ("PARQUET", "ORC", "AVRO", "JSON", "TEXTFILE")
_UNLOAD = re.compile(r"^\s*UNLOAD\s*\((.*)\)\s*TO\s+'(s3://[^']+)'\s*WITH\s*\((.*)\)\s*;?\s*$", re.S | re.I)


def unload_statement(name: str, location: str, fmt: str = "PARQUET") -> str:
    """Athena ``UNLOAD (<query name>) TO '<location>' WITH (format ...)``: the query's rows as files, no table.

    Why UNLOAD, not CTAS: the training set is a file set PrepareData reads, not a table anyone queries. The
    statement without its header comment (the saved query keeps it). Athena refuses a non-empty ``location``:
    the caller empties it first. ``location`` may contain CDK tokens; only its quoting matters here."""
    fmt = fmt.upper()
    if fmt not in UNLOAD_FORMATS:
        raise ValueError(f"unsupported UNLOAD format {fmt!r}; use one of {', '.join(UNLOAD_FORMATS)}")
    if not location.startswith("s3://"):
        raise ValueError(f"UNLOAD location must be an s3:// URI, got {location!r}")
    location = location if location.endswith("/") else location + "/"
    body = statement_body(split_header(read_query(name))[1])
    props = [f"format = {exp.Literal.string(fmt).sql(READ_DIALECT)}"]
    if fmt in _COMPRESSED_FORMATS:
        props.append(f"compression = {exp.Literal.string(_COMPRESSED_FORMATS[fmt]).sql(READ_DIALECT)}")
    return f"UNLOAD (\n{body}\n)\nTO {exp.Literal.string(location).sql(READ_DIALECT)}\nWITH ({', '.join(props)})\n"


def parse_unload(sql: str) -> tuple[str, str, dict[str, str]] | None:
    """(the SELECT, the ``TO`` location, the WITH properties lower-cased) of an UNLOAD statement, else None."""
    m = _UNLOAD.match(sql)
    if not m:
        return None
    pairs = (p.split("=", 1) for p in m.group(3).split(",") if "=" in p)
    props = {k.strip().lower(): v.strip().strip("'") for k, v in pairs}
    return m.group(1), m.group(2), props


#: The attribution query and the one literal in it that the setting ``attribution_window_hours`` replaces.
ATTRIBUTION_QUERY = "attribution_daily"
_WINDOW = re.compile(r"INTERVAL '(\d+)' HOUR")


def deployed_query(name: str, attribution_window_hours: int, experiment_alpha: float) -> str:
    """A query as the stacks deploy it and the local dashboard runs it: the attribution query with the configured
    window, the A/B verdict over it with the configured alpha, the others as written."""
    if name == ATTRIBUTION_QUERY:
        return attribution_query(attribution_window_hours)
    if name == AB_VERDICT_QUERY:
        return ab_verdict_query(attribution_window_hours, experiment_alpha)
    return read_query(name)


def attribution_query(window_hours: int) -> str:
    """``attribution_daily.sql`` with its attribution window set to ``window_hours`` (settings/config.py).

    The file keeps a literal (24 hours) so it parses and runs as written; exactly one window is in it, so
    there is one place to set."""
    if not isinstance(window_hours, int) or isinstance(window_hours, bool) or window_hours <= 0:
        raise ValueError(f"the attribution window must be a positive number of hours, got {window_hours!r}")
    text = read_query(ATTRIBUTION_QUERY)
    if len(_WINDOW.findall(text)) != 1:
        raise ValueError(f"{ATTRIBUTION_QUERY}.sql must hold exactly one INTERVAL '<n>' HOUR (the window)")
    return _WINDOW.sub(f"INTERVAL '{window_hours}' HOUR", text)


#: The A/B verdict query; it reads ``attribution_daily`` rows, and its one params line holds alpha and its critical z.
AB_VERDICT_QUERY = "ab_verdict"
_PARAMS = re.compile(r"CAST\([0-9.eE+-]+ AS DOUBLE\) AS alpha, CAST\([0-9.eE+-]+ AS DOUBLE\) AS z_critical")


def split_header(sql: str) -> tuple[str, str]:
    """(the leading comment lines, the statement): QuickSight and a CTE take the statement alone."""
    lines = sql.splitlines(keepends=True)
    n = 0
    while n < len(lines) and (lines[n].lstrip().startswith("--") or not lines[n].strip()):
        n += 1
    return "".join(lines[:n]), "".join(lines[n:])


def ab_verdict_sql(alpha: float) -> str:
    """``ab_verdict.sql`` with ``alpha`` and z_critical = the standard normal quantile at 1 - alpha / 2 (settings
    ``experiment_alpha``) in its params line; it reads a relation named ``attribution_daily``."""
    z = critical_z(alpha)
    text = read_query(AB_VERDICT_QUERY)
    if len(_PARAMS.findall(text)) != 1:
        raise ValueError(f"{AB_VERDICT_QUERY}.sql must hold exactly one params line (alpha, z_critical)")
    return _PARAMS.sub(f"CAST({float(alpha)!r} AS DOUBLE) AS alpha, CAST({z!r} AS DOUBLE) AS z_critical", text)


def ab_verdict_query(window_hours: int, alpha: float) -> str:
    """:func:`ab_verdict_sql` over :func:`attribution_query` (a CTE named ``attribution_daily``): one statement, so
    it runs as a saved query, as QuickSight custom SQL and on DuckDB alike."""
    header, body = split_header(ab_verdict_sql(alpha))
    if not body.startswith("WITH "):
        raise ValueError(f"{AB_VERDICT_QUERY}.sql must start with WITH (the attribution CTE goes first)")
    attribution = statement_body(split_header(attribution_query(window_hours))[1])
    inner = "".join(f"    {line}" if line.strip() else line for line in attribution.splitlines(keepends=True))
    return f"{header}WITH {ATTRIBUTION_QUERY} AS (\n{inner}\n),\n{body[len('WITH '):]}"
