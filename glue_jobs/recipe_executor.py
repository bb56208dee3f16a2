"""Run DataBrew recipe steps locally with pandas: one function per DataBrew operation.

The recipe JSON in ``glue_jobs/recipes`` is the single source of truth. On AWS, DataBrew recipe jobs run it;
here, the same steps run with the pandas semantics below, so the local rehearsal exercises the real definitions.
Only the operations the project uses are implemented, each checked against its page in the DataBrew developer
guide (https://docs.aws.amazon.com/databrew/latest/dg/recipe-actions-reference.html). Parameters outside the
documented set raise, so a typo in a recipe fails here instead of in a paid DataBrew job run.

Operations (doc pages: https://docs.aws.amazon.com/databrew/latest/dg/<page>.html):

- FLAG_COLUMN_FROM_NULL        recipe-actions.FLAG_COLUMN_FROM_NULL
- FLAG_COLUMN_FROM_PATTERN     recipe-actions.FLAG_COLUMN_FROM_PATTERN
- FLAG_DUPLICATE_ROWS          recipe-actions.FLAG_DUPLICATE_ROWS
- FLAG_DUPLICATES_IN_COLUMN    recipe-actions.FLAG_DUPLICATES_IN_COLUMN
- MERGE                        recipe-actions.MERGE
- REMOVE_COMBINED              recipe-actions.REMOVE_COMBINED
- REMOVE_VALUES (+ conditions) recipes (section "Defining a recipe structure" / "Using conditions")
- DELETE                       recipe-actions.DELETE
- DUPLICATE                    recipe-actions.DUPLICATE
- CHANGE_DATA_TYPE             recipe-actions.CHANGE_DATA_TYPE
- UNIX_TIME                    recipe-actions.functions.UNIX_TIME
- UNIX_TIME_FORMAT             recipe-actions.functions.UNIX_TIME_FORMAT
- COALESCE                     recipe-actions.COALESCE
- FILL_WITH_NULL               recipe-actions.FILL_WITH_NULL
- FILL_WITH_CUSTOM             recipe-actions.FILL_WITH_CUSTOM
- LOWER_CASE                   recipe-actions.LOWER_CASE
- CATEGORICAL_MAPPING          recipe-actions.CATEGORICAL_MAPPING
- NORMALIZATION                recipe-actions.data-science (SCALE section; operation name NORMALIZATION)

Local conventions where the guide is silent (also listed in glue_jobs/README.md):
missing = null or empty string, and a missing value is never a duplicate; conditions are SQL-like (a null never
satisfies one); MERGE writes a null source as an empty string; duplicate checks keep the first row in file order.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Params = dict[str, str]
Handler = Callable[[pd.DataFrame, Params, "pd.Series | None"], pd.DataFrame]

ROW_STATUS_COLUMN = "row_status"
CURATED_STATUS = "curated"
QUARANTINE_STATUS = "quarantine"
#: DataBrew's documented default for UNIX_TIME_FORMAT; the only format the local executor implements.
UNIX_TIME_FORMAT_DEFAULT = "yyyy-mm-dd HH:MM:SS"


class RecipeStepError(ValueError):
    """A recipe step that this executor (and probably DataBrew) cannot run as written."""


# --------------------------------------------------------------------------- helpers


def _missing(s: pd.Series) -> pd.Series:
    """DataBrew treats an empty CSV cell as missing; a null from a failed cast is missing too."""
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        return s.isna() | (s.astype("str") == "")
    return s.isna()


def _str(s: pd.Series) -> pd.Series:
    return s if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object else s.astype("str")


def _flag(mask: pd.Series | np.ndarray, params: Params, index: pd.Index) -> pd.Series:
    true, false = params.get("trueString", "True"), params.get("falseString", "False")
    out = pc.if_else(pa.array(np.asarray(mask, dtype=bool)), true, false)
    return pd.Series(out, index=index, dtype="str")


def _arrow_text(s: pd.Series) -> pa.Array:
    arr = _str(s).array
    return pa.array(arr) if isinstance(arr, pd.arrays.ArrowStringArray) else pa.array(s, type=pa.large_string())


def _fullmatch(s: pd.Series, pattern: str) -> np.ndarray:
    """True where the *whole* value matches; null never matches. RE2 first, for speed.

    DataBrew's guide does not say whether FLAG_COLUMN_FROM_PATTERN searches the value or matches all of it, so
    the recipes write patterns that mean the same under both readings, and this executor takes the stricter
    one: a pattern that works only by matching part of a value fails the local run and its tests."""
    try:  # RE2's ``$`` without (?m) is the end of the text, so this anchors the whole value
        hit = pc.match_substring_regex(_arrow_text(s), f"^(?:{pattern})$")
        return hit.fill_null(False).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a construct RE2 lacks (e.g. lookahead): Python's re
        with warnings.catch_warnings():  # pandas warns about capture groups; DataBrew patterns may have them
            warnings.simplefilter("ignore", UserWarning)
            return _str(s).str.fullmatch(pattern, na=False).to_numpy(dtype=bool)


_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _text_to_float(s: pd.Series) -> pd.Series:
    """Spark-like string->double cast: surrounding blanks ignored, anything not a plain number becomes null."""
    arr = pc.utf8_trim_whitespace(_arrow_text(s))
    ok = pc.fill_null(pc.match_substring_regex(arr, _NUMBER), False)
    return pd.Series(pc.cast(pc.if_else(ok, arr, None), pa.float64()), index=s.index, dtype="float64")


def _json_list(params: Params, key: str) -> list[str]:
    try:
        value = json.loads(params[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise RecipeStepError(f"parameter {key!r} must be a JSON-encoded list of column names") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecipeStepError(f"parameter {key!r} must be a JSON-encoded list of column names")
    return value


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        raise RecipeStepError(f"column {name!r} does not exist (columns: {list(df.columns)})")
    return df[name]


def _bool(params: Params, key: str) -> bool:
    return params.get(key, "false").strip().lower() == "true"


# --------------------------------------------------------------------------- conditions


def _numeric(s: pd.Series) -> pd.Series:
    return s.astype("float64") if pd.api.types.is_numeric_dtype(s.dtype) else _text_to_float(s)


def _condition_mask(df: pd.DataFrame, conditions: list[dict]) -> pd.Series:
    """All conditions AND-ed (RecipeStep API); a null value never satisfies a comparison, like SQL."""
    mask = pd.Series(True, index=df.index)
    for cond in conditions:
        name, target, value = cond["Condition"], cond["TargetColumn"], cond.get("Value")
        col = _col(df, target)
        if name in ("IS", "IS_NOT"):
            values = json.loads(value) if value else []
            hit = _str(col).isin([str(v) for v in values])
            cmp = hit if name == "IS" else ~hit
            cmp = cmp & col.notna()
        elif name in ("LESS_THAN", "LESS_THAN_EQUAL", "GREATER_THAN", "GREATER_THAN_EQUAL"):
            num, bound = _numeric(col), float(value)  # type: ignore[arg-type]
            ops = {
                "LESS_THAN": num < bound,
                "LESS_THAN_EQUAL": num <= bound,
                "GREATER_THAN": num > bound,
                "GREATER_THAN_EQUAL": num >= bound,
            }
            cmp = ops[name].fillna(False).astype(bool)
        elif name == "IS_MISSING":
            cmp = _missing(col)
        elif name == "CONTAINS":
            cmp = _str(col).str.contains(value or "", regex=False, na=False).astype(bool)
        else:
            raise RecipeStepError(f"condition {name!r} is not implemented by the local executor")
        mask &= cmp.astype(bool)
    return mask


# --------------------------------------------------------------------------- operations


def _flag_from_null(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    if p.get("flagType", "Null values") != "Null values":
        raise RecipeStepError("FLAG_COLUMN_FROM_NULL needs flagType 'Null values'")
    return df.assign(**{p["targetColumn"]: _flag(_missing(_col(df, p["sourceColumn"])), p, df.index)})


def _flag_from_pattern(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    if p.get("flagType", "Pattern") != "Pattern":
        raise RecipeStepError("FLAG_COLUMN_FROM_PATTERN needs flagType 'Pattern'")
    hit = _fullmatch(_col(df, p["sourceColumn"]), p["pattern"])
    return df.assign(**{p["targetColumn"]: _flag(hit, p, df.index)})


def _flag_duplicate_rows(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    return df.assign(**{p["targetColumn"]: _flag(df.duplicated(keep="first"), p, df.index)})


def _flag_duplicates_in_column(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    src = _col(df, p["sourceColumn"])
    # A missing value duplicates nothing (SQL null semantics): missing ids are reported once, as missing.
    dup = src.duplicated(keep="first") & ~_missing(src)
    return df.assign(**{p["targetColumn"]: _flag(dup, p, df.index)})


def _merge(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    cols, delim = _json_list(p, "sourceColumns"), p.get("delimiter", "")
    out = _str(_col(df, cols[0])).fillna("")
    for c in cols[1:]:
        out = out + delim + _str(_col(df, c)).fillna("")
    return df.assign(**{p["targetColumn"]: out.astype("str")})


_REMOVE_COMBINED_FLAGS = ("collapseConsecutiveWhitespace", "removeLeadingAndTrailingWhitespace")


def _remove_combined(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    unsupported = [k for k in p if k.startswith("remove") and k not in _REMOVE_COMBINED_FLAGS and _bool(p, k)]
    if unsupported:
        raise RecipeStepError(f"REMOVE_COMBINED options not implemented locally: {unsupported}")
    src = _col(df, p["sourceColumn"])
    arr = _arrow_text(src)
    if _bool(p, "collapseConsecutiveWhitespace"):
        arr = pc.replace_substring_regex(arr, r"\s+", " ")
    if _bool(p, "removeLeadingAndTrailingWhitespace"):
        arr = pc.utf8_trim_whitespace(arr)
    return df.assign(**{p["sourceColumn"]: pd.Series(arr, index=src.index, dtype="str")})


def _remove_values(df: pd.DataFrame, p: Params, mask: pd.Series | None) -> pd.DataFrame:
    _col(df, p["sourceColumn"])
    if mask is None:
        raise RecipeStepError("REMOVE_VALUES needs ConditionExpressions saying which rows to remove")
    return df.loc[~mask].reset_index(drop=True)


def _delete(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    _col(df, p["sourceColumn"])
    return df.drop(columns=[p["sourceColumn"]])


def _duplicate(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    return df.assign(**{p["targetColumn"]: _col(df, p["sourceColumn"]).copy()})


def _to_int(s: pd.Series) -> pd.Series:
    # Spark's string->int cast ignores a fractional part ("25.0" -> 25); anything else becomes null.
    num = _numeric(s)
    num = num.where(np.isfinite(num))
    return np.trunc(num).astype("Int64")


def _to_date(s: pd.Series) -> pd.Series:
    ts = pd.to_datetime(_str(s).str.strip(), format="ISO8601", errors="coerce", utc=True).dt.tz_convert(None)
    days = ts.to_numpy(dtype="datetime64[D]")
    arr = pa.array(days, type=pa.date32(), from_pandas=True)
    return pd.Series(arr, index=s.index, dtype=pd.ArrowDtype(pa.date32()))


def _to_timestamp(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        ts = s.dt.tz_convert(None) if getattr(s.dt, "tz", None) is not None else s
    else:
        ts = pd.to_datetime(_str(s).str.strip(), format="ISO8601", errors="coerce", utc=True).dt.tz_convert(None)
    return ts.astype("datetime64[ms]")


_CASTS: dict[str, Callable[[pd.Series], pd.Series]] = {
    **dict.fromkeys(("byte", "short", "int", "long"), _to_int),
    **dict.fromkeys(("float", "double", "decimal"), lambda s: _numeric(s).astype("float64")),
    "string": lambda s: _str(s),
    "date": _to_date,
    "timestamp": _to_timestamp,
}


def _change_data_type(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    kind = p["columnDataType"]
    if kind not in _CASTS:
        raise RecipeStepError(f"CHANGE_DATA_TYPE to {kind!r} is not implemented locally (known: {sorted(_CASTS)})")
    # Documented: a value that cannot be converted becomes NULL.
    return df.assign(**{p["sourceColumn"]: _CASTS[kind](_col(df, p["sourceColumn"]))})


def _unix_time(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    s = _str(_col(df, p["sourceColumn"])).str.strip()
    # A date/time string -> seconds since the epoch, honouring its offset; no offset means UTC (as documented).
    ts = pd.to_datetime(
        s.where(~s.str.fullmatch(r"[+-]?\d+(\.\d*)?", na=False)), format="ISO8601", errors="coerce", utc=True
    )
    # In microseconds: nanoseconds (the epoch's unit) overflow after 2262 and the subtraction would raise.
    secs = (ts.dt.as_unit("us") - pd.Timestamp(0, tz="UTC").as_unit("us")) / pd.Timedelta(seconds=1)
    return df.assign(**{p["targetColumn"]: secs.astype("float64")})


def _unix_time_format(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    fmt = p.get("dateTimeFormat", UNIX_TIME_FORMAT_DEFAULT)
    if fmt != UNIX_TIME_FORMAT_DEFAULT:
        raise RecipeStepError(f"UNIX_TIME_FORMAT only implements the default format {UNIX_TIME_FORMAT_DEFAULT!r}")
    secs = _numeric(_col(df, p["sourceColumn"]))
    secs = secs.where(secs.abs() < 253402300800)  # beyond year 9999 nothing can format it
    ts = pd.to_datetime(np.floor(secs), unit="s", errors="coerce").astype("datetime64[s]")
    text = ts.astype("str").where(ts.notna())
    return df.assign(**{p["targetColumn"]: text.astype("str")})


def _coalesce(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    cols = _json_list(p, "sourceColumns")
    out = _col(df, cols[0])
    for c in cols[1:]:
        out = out.combine_first(_col(df, c))
    return df.assign(**{p["targetColumn"]: out})


def _fill_with_null(df: pd.DataFrame, p: Params, mask: pd.Series | None) -> pd.DataFrame:
    s = _col(df, p["sourceColumn"])
    where = pd.Series(True, index=df.index) if mask is None else mask
    return df.assign(**{p["sourceColumn"]: s.mask(where)})


def _fill_with_custom(df: pd.DataFrame, p: Params, mask: pd.Series | None) -> pd.DataFrame:
    s = _col(df, p["sourceColumn"])
    where = _missing(s) if mask is None else (_missing(s) & mask)
    value: object = p["value"]
    if p.get("columnDataType", "string") == "number":
        value = float(p["value"])
    return df.assign(**{p["sourceColumn"]: s.mask(where, value)})


def _lower_case(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    return df.assign(**{p["sourceColumn"]: _str(_col(df, p["sourceColumn"])).str.lower()})


def _categorical_mapping(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    try:
        mapping = json.loads(p["categoryMap"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise RecipeStepError("CATEGORICAL_MAPPING needs categoryMap, a JSON-encoded object") from exc
    src = _str(_col(df, p["sourceColumn"]))
    mapped = src.map(mapping)
    unmapped = mapped.isna()
    if _bool(p, "keepOthers"):
        mapped = mapped.where(~unmapped, src)
    elif "other" in p:
        mapped = mapped.where(~unmapped, p["other"])
    if p.get("mapType", "").upper() == "NUMERIC":
        mapped = _to_int(mapped)
    out = df.assign(**{p.get("targetColumn", p["sourceColumn"]): mapped})
    if _bool(p, "deleteOtherRows"):
        out = out.loc[~unmapped.to_numpy()].reset_index(drop=True)
    return out


def _normalization(df: pd.DataFrame, p: Params, _m: pd.Series | None) -> pd.DataFrame:
    strategy = p.get("strategy", "MIN_MAX")
    x = _numeric(_col(df, p["sourceColumn"])).astype("float64")
    if strategy == "MIN_MAX":
        lo, hi = x.min(), x.max()
        # One distinct value (or none): DataBrew's output is undocumented; 0.0 keeps the column in [0, 1].
        out = (x - lo) / (hi - lo) if pd.notna(lo) and hi > lo else x * 0.0
    elif strategy == "Z_SCORE":
        sd = x.std(ddof=0)
        out = (x - x.mean()) / sd if sd and sd > 0 else x * 0.0
    else:
        raise RecipeStepError(f"NORMALIZATION strategy {strategy!r} is not implemented locally")
    return df.assign(**{p.get("targetColumn", p["sourceColumn"]): out})


@dataclass(frozen=True)
class _Op:
    handler: Handler
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    conditions: bool = False  # whether ConditionExpressions narrow this action (documented "scope of an action")


_FLAG = ("trueString", "falseString")
_OPS: dict[str, _Op] = {
    "FLAG_COLUMN_FROM_NULL": _Op(_flag_from_null, ("sourceColumn", "targetColumn"), ("flagType", *_FLAG)),
    "FLAG_COLUMN_FROM_PATTERN": _Op(
        _flag_from_pattern, ("sourceColumn", "targetColumn", "pattern"), ("flagType", *_FLAG)
    ),
    "FLAG_DUPLICATE_ROWS": _Op(_flag_duplicate_rows, ("targetColumn",), _FLAG),
    "FLAG_DUPLICATES_IN_COLUMN": _Op(_flag_duplicates_in_column, ("sourceColumn", "targetColumn"), _FLAG),
    "MERGE": _Op(_merge, ("sourceColumns", "targetColumn"), ("delimiter",)),
    "REMOVE_COMBINED": _Op(
        _remove_combined,
        ("sourceColumn",),
        (
            "collapseConsecutiveWhitespace",
            "removeAllPunctuation",
            "removeAllQuotes",
            "removeAllWhitespace",
            "customCharacters",
            "customValue",
            "removeCustomCharacters",
            "removeCustomValue",
            "removeLeadingAndTrailingPunctuation",
            "removeLeadingAndTrailingQuotes",
            "removeLeadingAndTrailingWhitespace",
            "removeLetters",
            "removeNumbers",
            "removeSpecialCharacters",
        ),
    ),
    "REMOVE_VALUES": _Op(_remove_values, ("sourceColumn",), conditions=True),
    "DELETE": _Op(_delete, ("sourceColumn",)),
    "DUPLICATE": _Op(_duplicate, ("sourceColumn", "targetColumn")),
    "CHANGE_DATA_TYPE": _Op(_change_data_type, ("sourceColumn", "columnDataType")),
    "UNIX_TIME": _Op(_unix_time, ("sourceColumn", "targetColumn")),
    "UNIX_TIME_FORMAT": _Op(_unix_time_format, ("sourceColumn", "targetColumn"), ("dateTimeFormat",)),
    "COALESCE": _Op(_coalesce, ("sourceColumns", "targetColumn")),
    "FILL_WITH_NULL": _Op(_fill_with_null, ("sourceColumn",), conditions=True),
    "FILL_WITH_CUSTOM": _Op(_fill_with_custom, ("sourceColumn", "value"), ("columnDataType",), conditions=True),
    "LOWER_CASE": _Op(_lower_case, ("sourceColumn",)),
    "CATEGORICAL_MAPPING": _Op(
        _categorical_mapping,
        ("sourceColumn", "categoryMap"),
        ("deleteOtherRows", "other", "keepOthers", "mapType", "targetColumn"),
    ),
    "NORMALIZATION": _Op(_normalization, ("sourceColumn", "strategy"), ("targetColumn",)),
}

SUPPORTED_OPERATIONS: frozenset[str] = frozenset(_OPS)


def validate_step(step: dict) -> None:
    """Check one step's shape and parameters against what the DataBrew guide documents for its operation."""
    action = step.get("Action") if isinstance(step, dict) else None
    if not isinstance(action, dict) or "Operation" not in action:
        raise RecipeStepError(f"a step needs Action.Operation: {step!r}")
    op, params = action["Operation"], action.get("Parameters", {})
    if op not in _OPS:
        raise RecipeStepError(f"operation {op!r} is not in SUPPORTED_OPERATIONS {sorted(SUPPORTED_OPERATIONS)}")
    spec = _OPS[op]
    bad = [k for k, v in params.items() if not isinstance(v, str) or v == ""]
    if bad:
        raise RecipeStepError(f"{op}: parameter values must be non-empty strings (DataBrew API), not {bad}")
    missing = [k for k in spec.required if k not in params]
    unknown = [k for k in params if k not in spec.required + spec.optional]
    if missing or unknown:
        raise RecipeStepError(f"{op}: missing parameters {missing}, undocumented parameters {unknown}")
    conds = step.get("ConditionExpressions")
    if conds and not spec.conditions:
        raise RecipeStepError(f"{op}: ConditionExpressions are only used with {_conditional_ops()}")
    for cond in conds or []:
        if not {"Condition", "TargetColumn"} <= set(cond) or not all(isinstance(v, str) for v in cond.values()):
            raise RecipeStepError(f"{op}: a condition needs string Condition and TargetColumn: {cond!r}")


def _conditional_ops() -> list[str]:
    return sorted(k for k, v in _OPS.items() if v.conditions)


def apply_step(df: pd.DataFrame, step: dict) -> pd.DataFrame:
    """Apply one DataBrew step (CloudFormation RecipeStep shape) and return the new frame."""
    validate_step(step)
    action = step["Action"]
    conds = step.get("ConditionExpressions")
    mask = _condition_mask(df, conds) if conds else None
    try:
        return _OPS[action["Operation"]].handler(df, dict(action.get("Parameters", {})), mask)
    except RecipeStepError as exc:
        raise RecipeStepError(f"{action['Operation']}: {exc}") from exc


def apply_steps(df: pd.DataFrame, steps: Iterable[dict]) -> pd.DataFrame:
    """Apply steps in order, as a DataBrew recipe job does."""
    for step in steps:
        df = apply_step(df, step)
    return df
