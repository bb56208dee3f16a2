"""Pipeline step BatchRecommend: top-k for every known user and similar products for every product, as Parquet.

Runs after RegisterModel on the packaged model. Each row is what ``predict_fn`` answers for that user
(``{"user_id": u, "k": k}``) or product (``{"product_id": p, "k": k}``): the batch calls the same
``Bundle.recommend``, so an e-mail campaign, a cache or an analyst reads exactly what the endpoint serves.
A processing step rather than Batch Transform: the model's whole user list is inside the artefacts, so
there is no input file to split, and one job writes both tables with a fixed layout that the Glue
tables ``batch_user_recommendations`` / ``batch_similar_products`` (columns in
``glue_jobs/schema.py``, packed beside this script) point at.

    python batch_recommend.py --model-dir DIR --output-dir DIR [--k 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from recsys_core.artifacts import resolve_model_dir  # noqa: E402
from recsys_core.bundle import Bundle  # noqa: E402
from recsys_core.data import run_entry_point  # noqa: E402

from glue_jobs.schema import BATCH_COLUMNS, BATCH_FOLDERS  # noqa: E402 - packed beside this script

CHUNK = 20_000  # rows per Parquet row group


def _write(path: Path, table: str, rows) -> int:  # noqa: ANN001 - an iterator of row dicts
    """Stream ``rows`` into one Parquet file with exactly the table's declared schema; returns the row count."""
    schema = pa.schema(list(BATCH_COLUMNS[table].items()))
    path.mkdir(parents=True, exist_ok=True)
    n, buffer = 0, []
    with pq.ParquetWriter(path / "part-00000.parquet", schema) as writer:
        for row in rows:
            buffer.append(row)
            if len(buffer) >= CHUNK:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                n, buffer = n + len(buffer), []
        if buffer or n == 0:
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
            n += len(buffer)
    return n


def user_rows(bundle: Bundle, k: int, generated_at: datetime):  # noqa: ANN201 - a generator of dicts
    for user_id in bundle.users.ids:
        answer = bundle.recommend(str(user_id), k)
        for rank, rec in enumerate(answer["recommendations"], start=1):
            yield {"user_id": str(user_id), "rank": rank, "product_id": rec["product_id"], "score": rec["score"],
                   "strategy": answer["strategy"], "model_version": bundle.model_version, "generated_at": generated_at}


def product_rows(bundle: Bundle, k: int, generated_at: datetime):  # noqa: ANN201 - a generator of dicts
    for product_id in bundle.items.ids:
        answer = bundle.recommend(None, k, product_id=str(product_id))
        for rank, rec in enumerate(answer["recommendations"], start=1):
            yield {"product_id": str(product_id), "rank": rank, "similar_product_id": rec["product_id"],
                   "score": rec["score"], "model_version": bundle.model_version, "generated_at": generated_at}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=Path("/opt/ml/processing/model"))
    p.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/batch"))
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    bundle = Bundle.load(resolve_model_dir(args.model_dir))
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    for table, rows, n, noun in (
        ("batch_user_recommendations", user_rows(bundle, args.k, now), len(bundle.users), "users"),
        ("batch_similar_products", product_rows(bundle, args.k, now), len(bundle.items), "products"),
    ):
        t0 = time.perf_counter()
        written = _write(args.output_dir / BATCH_FOLDERS[table], table, rows)
        seconds = time.perf_counter() - t0
        print(f"{BATCH_FOLDERS[table]}: {n:,} {noun}, {written:,} rows in {seconds:.1f} s "
              f"({n / max(seconds, 1e-9):,.0f} {noun}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, "batch_recommend"))
