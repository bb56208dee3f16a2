"""Processing-job entry point: the training-set extraction in, a temporal train/test split out.

Input (``--input-dir``, default ``/opt/ml/processing/input``): ``interactions.{csv,parquet}`` in the
raw schema of CONTRACTS §1 (extra columns pass through), optional ``products.*`` / ``users.*``.
Output: ``train/interactions.parquet`` (+ ``products.parquet``, ``users.parquet``) for train.py and
``test/interactions.parquet`` (the later period) for evaluate.py.

Why a global time cut: the model is judged on what happened *after* what it learned from, as it
will be when serving. Rows whose timestamp cannot be parsed stay in ``train`` so that train.py
counts and quarantines them with a reason instead of this step dropping them silently. When no
products/users files are given, they are derived from the joined columns of the training-set
extraction (``sql/training_set.sql`` adds category, price, age, gender, location).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from recsys_core.data import DataError, find_table, parse_timestamps, read_table, run_entry_point  # noqa: E402
from recsys_core.split import SplitConfig, split  # noqa: E402

#: Columns of the optional tables that the training-set extraction carries per interaction.
DERIVED_COLUMNS = {
    "products": ("product_id", ("category", "sub_category", "price")),
    "users": ("user_id", ("age", "gender", "location")),
}
_ROW = "__row"
#: The erasure requests' suppression list (``lambdas/erasure/core.py``), delivered with the training set
#: (``training/erasure_suppression.json``): keyed hashes of forgotten shoppers, never their ids.
SUPPRESSION_FILE = "erasure_suppression.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input-dir", default="/opt/ml/processing/input")
    p.add_argument("--train-dir", default="/opt/ml/processing/train")
    p.add_argument("--test-dir", default="/opt/ml/processing/test")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of rows at or after the time cut")
    return p.parse_args(argv)


def temporal_train_test(raw: pd.DataFrame, test_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(train, test, unparseable) over the raw rows, cut by ``recsys_core.split`` on parsed time."""
    if "timestamp" not in raw.columns:
        raise DataError(f"interactions have no 'timestamp' column (columns: {list(raw.columns)})")
    ts = parse_timestamps(raw["timestamp"])
    ok = ~np.isnan(ts)
    timed = pd.DataFrame({_ROW: np.nonzero(ok)[0], "ts": ts[ok]})
    if timed.empty:
        raise DataError("no interaction has a parseable timestamp: nothing to split")
    train_rows, test_rows = split(timed, SplitConfig("temporal", test_fraction))
    test_mask = np.zeros(len(raw), dtype=bool)
    test_mask[test_rows[_ROW].to_numpy()] = True
    assert len(train_rows) + len(test_rows) == int(ok.sum())
    return raw.loc[~test_mask].reset_index(drop=True), raw.loc[test_mask].reset_index(drop=True), int((~ok).sum())


def side_table(input_dir: Path, interactions: pd.DataFrame, name: str) -> tuple[pd.DataFrame | None, str]:
    """The given ``products``/``users`` file, else one derived from the joined columns, else None."""
    path = find_table(input_dir, name)
    if path is not None:
        return read_table(path), f"from {path.name}"
    key, columns = DERIVED_COLUMNS[name]
    present = [c for c in columns if c in interactions.columns]
    if key not in interactions.columns or not present:
        return None, "absent"
    table = interactions[[key, *present]].dropna(subset=present, how="all")
    return table.drop_duplicates(subset=[key], keep="last").reset_index(drop=True), "derived from interactions"


def erased_users(input_dir: Path, user_ids: pd.Series) -> set[str]:
    """The ids among ``user_ids`` whose keyed hash is on the suppression list.

    Why here: every training run, on AWS and locally, passes through this step, and a forgotten shopper can
    come back (a later export, the generator's same seed); dropping them here keeps every next model free of
    them whatever the raw data says. Same hash as ``lambdas.erasure.core.user_key`` (a test keeps them equal).
    """
    path = input_dir / SUPPRESSION_FILE
    if not path.is_file():
        return set()
    doc = json.loads(path.read_text())
    keys, secret = set(doc.get("user_keys", [])), bytes.fromhex(doc["key"])
    return {
        u for u in user_ids.dropna().astype(str).unique()
        if hmac.new(secret, u.encode("utf-8"), hashlib.sha256).hexdigest() in keys
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    input_dir, train_dir, test_dir = Path(args.input_dir), Path(args.train_dir), Path(args.test_dir)
    path = find_table(input_dir, "interactions")
    if path is None:
        raise DataError(f"no interactions.csv/.parquet or interactions/ folder (the curation workflow's UNLOAD) "
                        f"in {input_dir}")
    raw = read_table(path)
    rows_in = len(raw)
    erased = erased_users(input_dir, raw["user_id"]) if "user_id" in raw.columns else set()
    if erased:
        raw = raw.loc[~raw["user_id"].astype(str).isin(erased)].reset_index(drop=True)
    train, test, unparseable = temporal_train_test(raw, args.test_fraction)
    for d in (train_dir, test_dir):
        d.mkdir(parents=True, exist_ok=True)
    train.to_parquet(train_dir / "interactions.parquet", index=False)
    test.to_parquet(test_dir / "interactions.parquet", index=False)
    counts: dict[str, object] = {
        "input_rows": rows_in,
        "train_rows": len(train),
        "test_rows": len(test),
        "unparseable_timestamps_kept_in_train": unparseable,
        "erased_users_dropped": len(erased),
        "erased_rows_dropped": rows_in - len(raw),
    }
    for name in DERIVED_COLUMNS:
        table, origin = side_table(input_dir, raw, name)
        if table is not None and name == "users" and erased:
            table = table.loc[~table["user_id"].astype(str).isin(erased)].reset_index(drop=True)
        if table is not None:
            table.to_parquet(train_dir / f"{name}.parquet", index=False)
        counts[name] = f"{len(table)} rows {origin}" if table is not None else origin
    if len(test) == 0:
        print("[prepare] warning: every row shares one timestamp, so the test split is empty", flush=True)
    print(f"[prepare] {json.dumps(counts)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, "prepare"))
