"""A local engine that runs the Athena queries in ``sql/`` (``sql/library.py``) unchanged on DuckDB.

The ``.sql`` files are the single source of truth, written in Athena's (Trino) dialect: on AWS
they become named queries and CTAS statements; locally sqlglot transpiles them to DuckDB, which
reads the curated Parquet files in place of the Glue catalogue. No query text is edited by hand
on the way, so what the tests check is what Athena runs.

Known dialect traps (see :func:`dialect_traps`) are constructs that transpile and run but give a
different answer on DuckDB, or do not run there at all; the queries in ``sql/`` avoid them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from sql.library import (  # noqa: F401 - re-exported: the queries this engine runs
    CTAS_FORMATS,
    FEATURE_PREFIX,
    READ_DIALECT,
    SQL_DIR,
    ctas_statement,
    feature_queries,
    list_queries,
    read_query,
)
from sql.library import statement_body as _body

WRITE_DIALECT = "duckdb"

_REAL_TYPES = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DECIMAL}



class AthenaQueryError(RuntimeError):
    """A query failed locally; names the query and carries DuckDB's own message."""

    def __init__(self, query: str, message: str, sql: str | None = None) -> None:
        self.query = query
        self.message = message
        self.sql = sql
        super().__init__(f"query {query!r} failed: {message}")


class MissingTableError(AthenaQueryError):
    """A query reads a table that is not registered (on AWS: not in the Glue database)."""

    def __init__(self, query: str, missing: list[str], registered: list[str]) -> None:
        self.missing = missing
        self.registered = registered
        message = (
            f"table(s) {', '.join(missing)} not registered "
            f"(registered: {', '.join(registered) if registered else 'none'})"
        )
        super().__init__(query, message)


def to_duckdb(sql: str) -> str:
    """Transpile one Athena (Trino) statement to DuckDB with sqlglot; never edited by hand."""
    statements = sqlglot.transpile(_body(sql), read=READ_DIALECT, write=WRITE_DIALECT, comments=False)
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def _is_real(node: exp.Expression) -> bool:
    """True when the expression is visibly non-integer, so Trino will not truncate a division."""
    if isinstance(node, exp.Paren | exp.Nullif | exp.Coalesce):
        return _is_real(node.this)
    if isinstance(node, exp.Cast | exp.TryCast):
        return node.to.this in _REAL_TYPES
    return isinstance(node, exp.Literal) and not node.is_string and not node.is_int


def dialect_traps(sql: str) -> list[str]:
    """Constructs that transpile but would not give Athena's answer on DuckDB (empty list: none).

    - ``a / b`` on integers truncates in Trino and not in DuckDB: cast an operand to DOUBLE.
    - ``date_diff`` counts whole elapsed units in Trino, crossed boundaries in DuckDB: compare
      timestamps with intervals or epoch seconds instead.
    - functions sqlglot does not know pass through verbatim and may not exist in DuckDB
      (e.g. ``to_iso8601``, ``format_datetime``).
    """
    traps: list[str] = []
    tree = sqlglot.parse_one(_body(sql), read=READ_DIALECT)
    for div in tree.find_all(exp.Div):
        if not (_is_real(div.this) or _is_real(div.expression)):
            traps.append(f"possible integer division {div.sql(READ_DIALECT)!r}: cast an operand to DOUBLE")
    for diff in tree.find_all(exp.DateDiff):
        traps.append(f"date_diff differs between Trino and DuckDB: {diff.sql(READ_DIALECT)!r}")
    for fn in tree.find_all(exp.Anonymous):
        traps.append(f"function {fn.name!r} is not translated by sqlglot and may not exist in DuckDB")
    return traps


def tables_read(sql: str) -> set[str]:
    """Names of the catalogue tables a query reads (CTE names excluded), lower-cased."""
    tree = sqlglot.parse_one(_body(sql), read=READ_DIALECT)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    return {t.name.lower() for t in tree.find_all(exp.Table) if t.name and t.name.lower() not in ctes}


class LocalAthena:
    """DuckDB over Parquet files, standing in for Athena plus the Glue catalogue.

    Each table is a view over its Parquet file(s), so SQL refers to tables unqualified as it does
    in the workgroup's database, and nothing is copied into memory until a query needs it. A source
    that does not exist is not an error until a query reads it: only ``interactions`` is required,
    so queries over it alone must still run when ``users`` or ``products`` never arrived.
    """

    def __init__(self, tables: dict[str, str | Path]) -> None:
        self._con = duckdb.connect()
        self._tables: set[str] = set()
        self._absent: dict[str, str] = {}  # table -> the source that did not exist
        for name, source in tables.items():
            self.register(name, source)

    @property
    def tables(self) -> list[str]:
        """Registered table names, sorted."""
        return sorted(self._tables)

    def register(self, name: str, source: str | Path) -> None:
        """Expose a Parquet file, a directory of Parquet files (recursively) or a glob as table ``name``."""
        path = Path(source)
        if path.is_dir():
            pattern = str(path / "**" / "*.parquet")
        elif path.exists() or any(ch in str(source) for ch in "*?["):
            pattern = str(source)
        else:
            self._absent[name.lower()] = str(source)
            return
        try:
            self._con.read_parquet(pattern, union_by_name=True).create_view(name.lower(), replace=True)
        except duckdb.Error as err:
            raise AthenaQueryError(f"register {name}", str(err)) from err
        self._tables.add(name.lower())
        self._absent.pop(name.lower(), None)

    def register_json(
        self, name: str, pattern: str | Path, columns: dict[str, str], *, path_column: bool = False
    ) -> None:
        """Expose newline-delimited JSON files (a glob) as table ``name`` with the declared ``columns`` (DuckDB
        types; nested objects are structs), as Athena's JSON SerDe reads them: the endpoint's data capture.
        ``path_column``: each row's file as ``"$path"``, Athena's hidden column of the object a row came from.
        No file yet: the table is absent."""
        try:
            relation = self._con.read_json(
                str(pattern), format="newline_delimited", columns=columns, filename=path_column
            )
            if path_column:
                relation = relation.project('* EXCLUDE (filename), filename AS "$path"')
            relation.create_view(name.lower(), replace=True)
        except duckdb.IOException:
            self._absent[name.lower()] = str(pattern)
            return
        except duckdb.Error as err:
            raise AthenaQueryError(f"register {name}", str(err)) from err
        self._tables.add(name.lower())
        self._absent.pop(name.lower(), None)

    def declare(self, name: str, columns: dict[str, str]) -> None:
        """A table declared in the catalogue whose location holds no file yet: readable, with no rows, as Athena
        reads an empty location. ``columns``: name -> Glue/Hive type (DuckDB reads these type names)."""
        select = ", ".join(f'CAST(NULL AS {kind}) AS "{col}"' for col, kind in columns.items())
        try:
            self._con.execute(f'CREATE OR REPLACE VIEW "{name.lower()}" AS SELECT {select} WHERE false')
        except duckdb.Error as err:
            raise AthenaQueryError(f"declare {name}", str(err)) from err
        self._tables.add(name.lower())
        self._absent.pop(name.lower(), None)

    def drop(self, name: str) -> None:
        """DROP TABLE IF EXISTS: the table is no longer readable (its files stay, as with Athena)."""
        self._con.execute(f'DROP VIEW IF EXISTS "{name.lower()}"')
        self._tables.discard(name.lower())

    def _resolve(self, name_or_sql: str) -> tuple[str, str]:
        """(label for errors, Athena SQL) for a named query or raw SQL."""
        if name_or_sql in list_queries():
            return name_or_sql, read_query(name_or_sql)
        snippet = " ".join(name_or_sql.split())[:60]
        return f"<sql: {snippet}>", name_or_sql

    def _prepare(self, name_or_sql: str) -> tuple[str, str]:
        """Check the tables exist and transpile; returns (label, DuckDB SQL)."""
        label, sql = self._resolve(name_or_sql)
        try:
            missing = sorted(tables_read(sql) - self._tables)
            traps = dialect_traps(sql)
            duck_sql = to_duckdb(sql)
        except (sqlglot.errors.SqlglotError, ValueError) as err:
            raise AthenaQueryError(label, f"cannot parse as Athena SQL: {err}") from err
        if missing:
            notes = [f"{t} (no such file: {self._absent[t]})" if t in self._absent else t for t in missing]
            raise MissingTableError(label, notes, self.tables)
        for trap in traps:
            warnings.warn(f"{label}: {trap}", stacklevel=3)
        return label, duck_sql

    def query(self, name_or_sql: str) -> pd.DataFrame:
        """Run a named query from ``sql/`` or raw Athena SQL; the result as a DataFrame."""
        label, duck_sql = self._prepare(name_or_sql)
        try:
            return self._con.execute(duck_sql).df()
        except duckdb.Error as err:
            raise AthenaQueryError(label, str(err), duck_sql) from err

    def ctas(self, name: str, out_dir: Path, sql: str | None = None) -> Path:
        """Materialise query ``name`` (or ``sql``, a CTAS body) as Parquet under ``out_dir/<name>/`` and register
        it as table ``name``.

        Mirrors Athena CTAS: the location is emptied of earlier Parquet output first (Athena would
        refuse a non-empty one), and later queries can read the new table by name.
        """
        if sql is None and name not in list_queries():
            raise KeyError(f"no query named {name!r} in {SQL_DIR}")
        label, duck_sql = self._prepare(sql if sql is not None else name)
        target = Path(out_dir) / name
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*.parquet"):
            old.unlink()
        out_file = target / "part-00000.parquet"
        try:
            self._con.sql(duck_sql).write_parquet(str(out_file), compression="snappy")
        except duckdb.Error as err:
            raise AthenaQueryError(label, str(err), duck_sql) from err
        self.register(name, target)
        return target
