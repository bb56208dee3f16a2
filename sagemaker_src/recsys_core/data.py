"""Loading raw tables (CONTRACTS §1), quarantining dirty rows, and mapping string ids to indices.

Everything downstream works on integer indices; ids stay strings end to end so that any public
log (numeric MovieLens ids, hashed Amazon ids) round-trips unchanged. Id maps are *sorted* arrays
so that a lookup is a binary search and loading a model needs no dict building.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase", "rating")
#: Events that mean "the user owns / has judged this item": excluded from recommendations by default.
STRONG_EVENTS: tuple[str, ...] = ("purchase", "rating")
INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "product_id", "event_type", "rating", "timestamp")
_EXTENSIONS = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")


class DataError(ValueError):
    """The input cannot be used at all (no interactions file, no usable rows)."""


def run_entry_point(main: Callable[[], int], name: str) -> int:
    """Run a script's ``main``; input it cannot use ends in one line on stderr (exit 2), not a traceback,
    so the job's log (and the pipeline runner's "stderr tail") says what is wrong with the data."""
    try:
        return main()
    except (DataError, FileNotFoundError) as exc:
        print(f"[{name}] error: {exc}", file=sys.stderr, flush=True)
        return 2


def find_table(directory: str | Path, name: str) -> Path | None:
    """Return the file (or parquet folder) holding table ``name`` in ``directory``, if any."""
    directory = Path(directory)
    for ext in _EXTENSIONS:
        candidate = directory / f"{name}{ext}"
        if candidate.is_file():
            return candidate
    folder = directory / name
    if folder.is_dir() and any(p.is_file() and not p.name.startswith(("_", ".")) for p in folder.iterdir()):
        return folder  # a Parquet dataset; Athena's UNLOAD names its files without an extension
    return None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet table; CSV columns are read as strings so nothing is coerced silently."""
    path = Path(path)
    if path.is_dir() or path.suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(delimiter="\t" if path.suffix == ".tsv" else ",")
    # Every column as text (ids like "007" must survive); pyarrow's reader is multi-threaded.
    with pacsv.open_csv(path, parse_options=parse) as reader:
        names = reader.schema.names
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True,
                                   null_values=[""])
    table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    return table.to_pandas()


def parse_timestamps(values: pd.Series) -> np.ndarray:
    """Epoch seconds (float64, NaN when unparseable) from ISO-8601 strings or epoch seconds/ms."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return _epoch_seconds(pd.to_datetime(values, utc=True))
    if pd.api.types.is_numeric_dtype(values):
        numeric = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        # to_numeric(errors="coerce") is slow on non-numeric strings: only convert what looks numeric.
        text = pa.array(values.astype("str"), type=pa.string(), from_pandas=True)
        looks_numeric = pc.match_substring_regex(text, r"^\s*-?\d+(\.\d*)?\s*$").fill_null(False)
        looks_numeric = looks_numeric.to_numpy(zero_copy_only=False)
        numeric = np.full(len(values), np.nan)
        if looks_numeric.any():
            numeric[looks_numeric] = pd.to_numeric(values[looks_numeric]).to_numpy(dtype=np.float64)
    out = numeric.copy()
    # Epoch milliseconds are common in event logs; seconds would put them thousands of years ahead.
    out[out > 1e11] /= 1000.0
    todo = np.isnan(numeric)
    if todo.any():
        parsed = pd.to_datetime(values[todo].astype(str), utc=True, errors="coerce", format="ISO8601")
        out[todo] = _epoch_seconds(parsed)
    return out


def _epoch_seconds(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Seconds since 1970 whatever the datetime resolution (pandas 3 defaults to microseconds)."""
    delta = (ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.asarray(delta, dtype=np.float64)


def clean_interactions(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw interactions into clean rows and quarantined rows (with a ``quarantine_reason``).

    Clean columns: user_id, product_id, event_type, rating (float, NaN unless a rating event), ts
    (epoch seconds). Tolerates logs from elsewhere: ``event_time`` for ``timestamp``, and a missing
    ``event_type`` column means "rating" when ratings are present, else "purchase".
    """
    df = raw.copy()
    if "timestamp" not in df.columns and "event_time" in df.columns:
        df["timestamp"] = df["event_time"]
    for col in ("user_id", "product_id"):
        if col not in df.columns:
            raise DataError(f"interactions table has no {col!r} column (columns: {list(raw.columns)})")
    if "rating" not in df.columns:
        df["rating"] = np.nan
    if "event_type" not in df.columns:
        has_rating = pd.to_numeric(df["rating"], errors="coerce").notna()
        df["event_type"] = np.where(has_rating, "rating", "purchase")
    if "timestamp" not in df.columns:
        # Without time, row order is the only notion of sequence we have.
        df["timestamp"] = np.arange(len(df), dtype=np.float64)
    n = len(df)
    df = df.reset_index(drop=True)
    user = df["user_id"].astype("str").str.strip()
    item = df["product_id"].astype("str").str.strip()
    event = df["event_type"].astype("str").str.strip().str.lower()
    rating = np.full(n, np.nan)
    has_value = df["rating"].notna().to_numpy(dtype=bool)
    if has_value.any():  # most rows have no rating: convert only those that do
        rating[has_value] = pd.to_numeric(df["rating"][has_value], errors="coerce").to_numpy(dtype=np.float64)
    ts = parse_timestamps(df["timestamp"])

    reason = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, why: str) -> None:
        reason[(reason == "") & mask] = why

    flag((user.isna() | (user == "")).to_numpy(dtype=bool), "missing_user_id")
    flag((item.isna() | (item == "")).to_numpy(dtype=bool), "missing_product_id")
    flag(~event.isin(EVENT_TYPES).to_numpy(dtype=bool), "unknown_event_type")
    flag(np.isnan(ts), "invalid_timestamp")
    is_rating = (event == "rating").to_numpy(dtype=bool, na_value=False)
    flag(is_rating & ~((rating >= 1) & (rating <= 5)), "invalid_rating")
    clean = pd.DataFrame(
        {
            "user_id": user,
            "product_id": item,
            "event_type": event,
            "rating": np.where(is_rating, rating, np.nan),
            "ts": ts,
        }
    )
    dup = clean.duplicated(keep="first").to_numpy()
    flag(dup, "duplicate_row")
    bad = reason != ""
    quarantine = raw.loc[bad].astype(str).copy()
    quarantine["quarantine_reason"] = reason[bad]
    return clean.loc[~bad].reset_index(drop=True), quarantine.reset_index(drop=True)


def load_interactions(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Find, read and clean ``interactions.*`` in ``directory``; returns (clean, quarantine)."""
    path = find_table(directory, "interactions")
    if path is None:
        raise DataError(f"no interactions.csv/.parquet in {directory}")
    clean, quarantine = clean_interactions(read_table(path))
    if clean.empty:
        raise DataError(f"{path} has no usable interaction rows ({len(quarantine)} quarantined)")
    return clean, quarantine


def load_optional(directory: str | Path, name: str) -> pd.DataFrame | None:
    """Read ``products``/``users`` when present, deduplicated on their id; None when absent."""
    path = find_table(directory, name)
    if path is None:
        return None
    df = read_table(path)
    key = "product_id" if name == "products" else "user_id"
    if key not in df.columns:
        return None
    df[key] = df[key].astype(str).str.strip()
    return df.drop_duplicates(subset=[key], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class IdMap:
    """Sorted string ids <-> dense int indices (lookup by binary search, -1 when unknown)."""

    ids: np.ndarray

    @classmethod
    def from_values(cls, *values: np.ndarray | pd.Series) -> IdMap:
        """Build from one or more arrays of ids (unique, sorted)."""
        joined = pd.unique(np.concatenate([np.asarray(v, dtype=str) for v in values]))
        return cls(np.sort(np.asarray(joined, dtype=str)))

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, values: np.ndarray | pd.Series | list[str]) -> np.ndarray:
        """Indices of ``values`` (int64), -1 for ids not in the map."""
        if len(values) > 50_000:
            # Long columns repeat ids: hash them once, binary-search only the distinct ones.
            codes, uniques = pd.factorize(pd.Series(values, copy=False).astype(str))
            pos = self._search(np.asarray(uniques, dtype=str))
            return np.where(codes >= 0, pos[np.maximum(codes, 0)], -1).astype(np.int64)
        return self._search(np.asarray(values, dtype=str))

    def _search(self, values: np.ndarray) -> np.ndarray:
        if len(self.ids) == 0 or len(values) == 0:
            return np.full(len(values), -1, dtype=np.int64)
        # Search in the map's own string width: a wider query would make numpy copy the whole map.
        # Truncated queries may land on a prefix; the equality check against the original rejects it.
        pos = np.searchsorted(self.ids, values.astype(self.ids.dtype))
        pos = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[pos] == values, pos, -1).astype(np.int64)

    def index_one(self, value: str) -> int:
        return int(self.index([value])[0])
