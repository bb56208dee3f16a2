"""A table's two DataBrew recipe jobs (curated, quarantine) run locally on one raw frame, with counts that reconcile.

Composes ``glue_jobs/recipe.py`` (which steps) with ``glue_jobs/recipe_executor.py`` (what each step does);
neither of those imports this module.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from glue_jobs.recipe import load_recipe, row_filter_step
from glue_jobs.recipe_executor import CURATED_STATUS, QUARANTINE_STATUS, RecipeStepError, apply_steps
from glue_jobs.schema import (
    CURATED_COLUMNS,
    OPTIONAL_RAW_COLUMNS,
    QUARANTINE_REASON_COLUMN,
    QUARANTINE_STEP_COLUMN,
    RAW_COLUMNS,
)


@dataclass
class RecipeResult:
    """Curated rows, quarantined rows (raw columns + reason + step) and counts that always reconcile."""

    curated: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _pandas_dtype(t: pa.DataType) -> object:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    if pa.types.is_integer(t):
        return "Int64"
    if pa.types.is_floating(t):
        return "float64"
    if pa.types.is_timestamp(t):
        return f"datetime64[{t.unit}]"
    return pd.ArrowDtype(t)


def typed_curated(table: str, df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in CURATED_COLUMNS[table] if c not in df.columns]
    if missing:
        raise RecipeStepError(f"the {table} curated steps did not produce columns {missing}")
    return df.astype({c: _pandas_dtype(t) for c, t in CURATED_COLUMNS[table].items()})


def curated_arrow_table(table: str, df: pd.DataFrame) -> pa.Table:
    """Curated frame -> Arrow with exactly the CURATED_COLUMNS types (extra columns keep inferred types)."""
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    schema = pa.schema([pa.field(f.name, CURATED_COLUMNS[table].get(f.name, f.type)) for f in arrow.schema])
    return arrow.cast(schema)


def as_raw_strings(table: str, raw: pd.DataFrame) -> pd.DataFrame:
    """Raw columns as strings; optional raw columns absent from the file are added empty, so steps can run."""
    out = raw.reset_index(drop=True)
    out = out.astype({c: "str" for c in out.columns if not pd.api.types.is_string_dtype(out[c].dtype)})
    for c in (*RAW_COLUMNS[table], *OPTIONAL_RAW_COLUMNS[table]):
        if c not in out.columns:
            out[c] = pd.Series(pd.NA, index=out.index, dtype="str")
    return out


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Rows per reason; a row with two reasons counts once under each (reasons are space-separated tokens)."""
    if quarantine.empty:
        return {}
    tokens = Counter(t for r in quarantine[QUARANTINE_REASON_COLUMN].dropna() for t in str(r).split())
    return dict(tokens.most_common())


def run_recipe(table: str, raw: pd.DataFrame) -> RecipeResult:
    """Run ``<table>-curated`` and ``<table>-quarantine`` on the same raw frame, as the two DataBrew jobs do.

    The flag steps are shared by both recipes, so they run once here; the composition is otherwise exactly
    ``recipe_steps(table, output)`` (a test checks the two agree).
    """
    recipe = load_recipe(table)
    base = apply_steps(as_raw_strings(table, raw), recipe["flag_steps"])
    curated = apply_steps(base, [row_filter_step(CURATED_STATUS), *recipe["curated_steps"]])
    quarantine = apply_steps(base, [row_filter_step(QUARANTINE_STATUS), *recipe["quarantine_steps"]])
    curated = typed_curated(table, curated)
    for c in (QUARANTINE_REASON_COLUMN, QUARANTINE_STEP_COLUMN):
        if c not in quarantine.columns:
            raise RecipeStepError(f"the {table} quarantine steps did not produce column {c!r}")
    counts = {"rows_in": len(raw), "curated": len(curated), "quarantined": len(quarantine)}
    counts.update({f"reason:{k}": v for k, v in reason_counts(quarantine).items()})
    if counts["rows_in"] != counts["curated"] + counts["quarantined"]:
        raise RecipeStepError(
            f"{table}: {counts['rows_in']} rows in but {counts['curated']} curated "
            f"+ {counts['quarantined']} quarantined; a step dropped or duplicated rows"
        )
    return RecipeResult(curated=curated, quarantine=quarantine, counts=counts)
