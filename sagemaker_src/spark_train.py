"""Spark training (issue 23): the recommender for logs past one instance, as a SageMaker Spark processing job.

Run by ``PySparkProcessor`` on the SageMaker Spark container (Spark 3.5, multi-instance) and, unchanged, by
the local pipeline and the tests with ``pyspark`` in ``local[2]``. It writes the same bundle as ``train.py``
(``model.json`` + ``arrays.npz``, loaded by ``inference.py``), so evaluation, packaging, serving and batch do
not change.

What runs where. Executors do what grows with the raw log or faster: reading and cleaning every event row,
aggregating them per (shopper, product), the contiguous int index (Spark's known trap: MLlib ids must be
ints), the validation split, MLlib's implicit ALS (checkpointed, its per-user/item-scaled regularisation tuned
on validation) and the item-item co-occurrence self-join of RP3beta (each shopper's history capped, top-k
neighbours per item). The driver gets what the bundle holds anyway (one row per (shopper, product), the
factors, k neighbours per item), scores a sample of validation shoppers with ``recsys_core``'s selection
code, and computes the linear-time families (popularity, trending, segment popularity) with the same model
classes ``train.py`` uses. ``recommendForAll*`` is never called: serving scores with the exported factors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
#: Set on the SageMaker Spark container (pipeline_steps/definition.py): the driver installs the training pins first.
IN_CONTAINER = os.environ.get("RECSYS_SPARK_CONTAINER") == "1"
#: ALS checkpoints on a cluster go to the cluster's HDFS (every executor reads them back); locally, a temp folder.
CLUSTER_CHECKPOINTS = "hdfs:///tmp/recsys-als-checkpoints"


def _bootstrap() -> None:
    """Put ``recsys_core`` (beside this file: the step unpacks the source archive) on the path; on the Spark
    container install the training pins first (the image has pyspark, not pandas 3 or implicit; the training
    file, with JAX, because ``auto`` may hand the data to train.py)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    if IN_CONTAINER and not os.environ.get("RECSYS_INSTALLED"):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r",
                        str(HERE / "requirements.txt")], check=True)
        os.environ["RECSYS_INSTALLED"] = "1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-dir", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/processing/train"))
    p.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/processing/model"))
    p.add_argument("--output-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/processing/output"))
    p.add_argument("--event-log-dir", default="", help="Spark's event log (spark.eventLog); on SageMaker "
                   "smspark-submit sets it to the step's events output")
    p.add_argument("--engine", choices=("spark", "auto"), default="spark",
                   help="auto: a training set under --spark-min-interactions rows goes to train.py, before Spark")
    p.add_argument("--spark-min-interactions", type=int, default=5_000_000)
    p.add_argument("--checkpoint-dir", default="",
                   help="ALS checkpoints (without one, ALS's lineage overflows the stack after ~30 iterations); "
                        "default: a temporary folder")
    p.add_argument("--master", default="", help="Spark master; default local[2], or the container's cluster")
    p.add_argument("--driver-memory", default="", help="local runs only (default 1500m)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--als-rank", type=int, default=64)
    p.add_argument("--als-iterations", type=int, default=12)
    p.add_argument("--als-alpha", type=float, default=10.0, help="confidence = 1 + alpha x value")
    p.add_argument("--als-reg-grid", default="0.01,0.05,0.2",
                   help="MLlib regParam values tried on validation (MLlib scales it by each user's/item's count)")
    p.add_argument("--rp3-alpha", type=float, default=0.6)
    p.add_argument("--rp3-beta-grid", default="0.0,0.2,0.4")
    p.add_argument("--neighbours", type=int, default=200, help="top-k neighbours kept per item")
    p.add_argument("--history-cap", type=int, default=200,
                   help="each shopper's most recent products entering the co-occurrence self-join")
    p.add_argument("--seq-window", type=int, default=3, help="sequence neighbours: pairs at most this many "
                   "positions apart in a shopper's own order")
    p.add_argument("--seq-beta-grid", default="0.3,0.5,0.7")
    p.add_argument("--val-max-users", type=int, default=4000)
    p.add_argument("--val-dense-cells", type=int, default=100_000_000,
                   help="validation users x items above which each candidate keeps only its top --val-top-m "
                        "scores per user (a dense matrix per candidate would not fit the driver)")
    p.add_argument("--val-top-m", type=int, default=200)
    p.add_argument("--models", default="auto", help="'auto' or a comma list of: popularity,trending,segment_pop,"
                                                    "als,rp3beta,sequence")
    p.add_argument("--no-blend", action="store_true")
    p.add_argument("--no-recency", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--model-version", default="")
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"[spark] ignoring unknown arguments: {unknown}", flush=True)
    return args


#: Quarantined rows written out (all are counted): a sample for inspection, not a copy of a bad feed.
QUARANTINE_ROWS = 100_000


def count_rows(directory: Path) -> int:
    """Interaction rows without reading them into memory: Parquet's footers, or a CSV's line count."""
    from recsys_core.data import DataError, find_table

    path = find_table(directory, "interactions")
    if path is None:
        raise DataError(f"no interactions.csv/.parquet in {directory}")
    if path.is_dir() or path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    lines = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


def single_instance(args: argparse.Namespace, rows: int) -> int:
    """``auto`` below the threshold: train.py on this instance, into the same folders (no JVM started)."""
    log(f"[spark] engine: single ({rows:,} interactions < spark_min_interactions {args.spark_min_interactions:,}): "
        "train.py on this instance")
    env = {**os.environ, "SM_CHANNEL_TRAIN": args.train_dir, "SM_MODEL_DIR": args.model_dir,
           "SM_OUTPUT_DATA_DIR": args.output_dir}
    t = time.perf_counter()
    code = subprocess.run([sys.executable, str(HERE / "train.py")], env=env, check=False).returncode
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "spark_stages.json").write_text(json.dumps(
        {"engine": "single", "rows": rows, "threshold": args.spark_min_interactions,
         "seconds": round(time.perf_counter() - t, 2), "stages": []}, indent=2))
    return code


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Stages:
    """The job's stages with their wall time, printed as they end and saved beside the selection report."""

    started: float = field(default_factory=time.perf_counter)
    done: list[dict[str, Any]] = field(default_factory=list)
    _t: float = 0.0

    def __post_init__(self) -> None:
        self._t = self.started

    def end(self, name: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.done.append({"stage": name, "seconds": round(now - self._t, 2), "detail": detail})
        log(f"[spark] stage {len(self.done)} {name}: {now - self._t:.1f}s" + (f" ({detail})" if detail else ""))
        self._t = now


# ---------------------------------------------------------------- executors: read, clean, aggregate, index

def read_interactions(spark: Any, directory: Path) -> Any:
    """``interactions.*`` (CSV as text, so ids like "007" survive, or Parquet), as ``train.py`` finds it."""
    from recsys_core.data import DataError, find_table

    path = find_table(directory, "interactions")
    if path is None:
        raise DataError(f"no interactions.csv/.parquet in {directory}")
    if path.is_dir() or path.suffix in (".parquet", ".pq"):
        return spark.read.parquet(str(path))
    return spark.read.csv(str(path), header=True, sep="\t" if path.suffix == ".tsv" else ",", inferSchema=False)


def clean(raw: Any) -> tuple[Any, Any]:
    """(clean rows, quarantined rows with ``quarantine_reason``): ``data.clean_interactions``'s rules in Spark SQL."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from recsys_core.data import EVENT_TYPES

    df = raw
    cols = set(df.columns)
    if "timestamp" not in cols and "event_time" in cols:
        df = df.withColumn("timestamp", F.col("event_time"))
    if "rating" not in cols:
        df = df.withColumn("rating", F.lit(None).cast("string"))
    if "event_type" not in df.columns:
        df = df.withColumn("event_type", F.when(F.col("rating").cast("double").isNotNull(), "rating")
                           .otherwise("purchase"))
    if "timestamp" not in df.columns:  # without time, row order is the only sequence there is
        df = df.withColumn("timestamp", F.monotonically_increasing_id().cast("double"))
    ts_type = df.schema["timestamp"].dataType
    if isinstance(ts_type, T.TimestampType | T.TimestampNTZType | T.DateType):
        ts = F.unix_micros(F.col("timestamp").cast("timestamp")) / 1e6
    else:
        text = F.trim(F.col("timestamp").cast("string"))
        numeric = text.cast("double")
        is_numeric = text.rlike(r"^-?\d+(\.\d*)?$")
        ts = F.when(is_numeric, F.when(numeric > 1e11, numeric / 1000.0).otherwise(numeric)).otherwise(
            F.unix_micros(text.cast("timestamp")) / 1e6)
    user, item = F.trim(F.col("user_id").cast("string")), F.trim(F.col("product_id").cast("string"))
    event = F.lower(F.trim(F.col("event_type").cast("string")))
    rating = F.col("rating").cast("double")
    df = df.withColumn("_u", user).withColumn("_i", item).withColumn("_e", event).withColumn("_ts", ts.cast("double"))
    df = df.withColumn("_r", F.when(F.col("_e") == "rating", rating))
    reason = (F.when(F.col("_u").isNull() | (F.col("_u") == ""), "missing_user_id")
              .when(F.col("_i").isNull() | (F.col("_i") == ""), "missing_product_id")
              .when(~F.col("_e").isin(*EVENT_TYPES) | F.col("_e").isNull(), "unknown_event_type")
              .when(F.col("_ts").isNull() | F.isnan("_ts"), "invalid_timestamp")
              .when((F.col("_e") == "rating") & ~((F.col("_r") >= 1) & (F.col("_r") <= 5)).eqNullSafe(True),
                    "invalid_rating"))
    df = df.withColumn("quarantine_reason", reason)
    good = df.where(F.col("quarantine_reason").isNull()).select(
        F.col("_u").alias("user_id"), F.col("_i").alias("product_id"), F.col("_e").alias("event_type"),
        F.col("_r").alias("rating"), F.col("_ts").alias("ts"))
    good = good.dropDuplicates()  # exact repeats of a clean row: counted below, as train.py quarantines them
    bad = df.where(F.col("quarantine_reason").isNotNull()).drop("_u", "_i", "_e", "_ts", "_r")
    return good, bad


def aggregate(rows: Any, weights: Any) -> Any:
    """One row per (user_id, product_id): summed event weight, owned (purchased/rated), last time."""
    from pyspark.sql import functions as F
    from recsys_core.data import STRONG_EVENTS

    e = F.col("event_type")
    w = (F.when(e == "view", weights.view).when(e == "add_to_cart", weights.add_to_cart)
         .when(e == "purchase", weights.purchase)
         .when(e == "rating", weights.rating_base + weights.rating_step * F.coalesce(F.col("rating"), F.lit(3.0)))
         .otherwise(0.0))
    return rows.groupBy("user_id", "product_id").agg(
        F.sum(w).alias("total"), F.max(e.isin(*STRONG_EVENTS).cast("int")).alias("strong"),
        F.max("ts").alias("last_ts"))


def index_ids(ids: Any, name: str) -> Any:
    """Contiguous int ids (0..n-1) in sorted order, as ``IdMap`` numbers them: a distributed sort, then
    ``zipWithIndex`` (ALS needs ints in Int range; string ids cannot go to MLlib)."""
    ordered = ids.distinct().orderBy(ids.columns[0])
    return ordered.rdd.zipWithIndex().map(lambda r: (r[0][0], int(r[1]))).toDF([ids.columns[0], name])


def holdout(pairs: Any, max_users: int, seed: int, min_rows: int = 4, share: float = 0.1) -> Any:
    """Per sampled shopper with ``min_rows``+ products: the latest ``share`` of them ("what next") and a random
    ``share`` of the older ones ("what else"), as ``split.user_holdout`` carves validation, per (user, item)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    counts = pairs.groupBy("u").agg(F.count("*").alias("n")).where(F.col("n") >= min_rows)
    eligible = counts.count()
    frac = min(1.0, max_users / max(eligible, 1))
    chosen = counts.where(F.rand(seed) < frac) if frac < 1 else counts
    per = F.greatest(F.lit(1), F.round(F.col("n") * share).cast("int"))
    latest = Window.partitionBy("u").orderBy(F.col("last_ts").desc(), F.col("i"))
    ranked = pairs.join(chosen, "u").withColumn("rn", F.row_number().over(latest))
    recent = ranked.where(F.col("rn") <= per).select("u", "i", F.lit("latest").alias("part"))
    older = ranked.where(F.col("rn") > per).withColumn("key", F.rand(seed + 1))
    drawn = older.withColumn("rr", F.row_number().over(Window.partitionBy("u").orderBy("key")))
    rand = drawn.where(F.col("rr") <= per).select("u", "i", F.lit("random").alias("part"))
    return recent.unionByName(rand)


# ---------------------------------------------------------------- executors: the families that scale

def fit_als(pairs: Any, rank: int, iterations: int, reg: float, alpha: float, seed: int) -> Any:
    """MLlib implicit ALS (checkpointed every 5 sweeps: the session has a checkpoint dir)."""
    from pyspark.ml.recommendation import ALS

    blocks = max(2, pairs.sparkSession.sparkContext.defaultParallelism)  # MLlib's default 10 suits a cluster
    als = ALS(rank=rank, maxIter=iterations, regParam=reg, alpha=alpha, implicitPrefs=True, userCol="u",
              itemCol="i", ratingCol="value", seed=seed, checkpointInterval=5, coldStartStrategy="drop",
              numUserBlocks=blocks, numItemBlocks=blocks)
    return als.fit(pairs)


def factors(frame: Any, n: int, rank: int, ids: Any = None) -> Any:
    """MLlib's (id, features) rows as an n x rank float32 matrix (zeros for ids without a factor)."""
    import numpy as np

    if ids is not None:
        frame = frame.join(ids, frame["id"] == ids["u"], "left_semi")
    pdf = frame.toPandas()
    out = np.zeros((n, rank), dtype=np.float32)
    if len(pdf):
        out[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy()).astype(np.float32)
    return out


def cooccurrence(pairs: Any, alpha: float, history_cap: int) -> tuple[Any, Any]:
    """(S, item degree): S[i, j] = sum over shoppers of (x_ui x_uj)^alpha / deg_u^alpha, i != j, on each
    shopper's ``history_cap`` latest products (the self-join grows with the square of a history)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    deg_u = pairs.groupBy("u").agg(F.sum("value").alias("deg_u"))
    deg_i = pairs.groupBy("i").agg(F.sum("value").alias("deg_i"))
    latest = Window.partitionBy("u").orderBy(F.col("last_ts").desc(), F.col("i"))
    capped = pairs.withColumn("rn", F.row_number().over(latest)).where(F.col("rn") <= history_cap)
    side = capped.join(deg_u, "u").select(
        "u", "i", (F.pow("value", alpha) * F.pow("deg_u", -alpha / 2)).alias("s"))
    left, right = side.alias("a"), side.alias("b")
    joined = left.join(right, (F.col("a.u") == F.col("b.u")) & (F.col("a.i") != F.col("b.i")))
    s = joined.groupBy(F.col("a.i").alias("i"), F.col("b.i").alias("j")).agg(F.sum(F.col("a.s") * F.col("b.s"))
                                                                            .alias("s"))
    return s, deg_i


def rp3beta_top(s: Any, deg_i: Any, alpha: float, beta: float, k: int, n_items: int) -> Any:
    """RP3beta's W = S / deg_i^alpha / deg_j^beta, the ``k`` best per item, as a CSR matrix on the driver."""
    from pyspark.sql import functions as F

    di = deg_i.select(F.col("i"), F.col("deg_i").alias("di"))
    dj = deg_i.select(F.col("i").alias("j"), F.col("deg_i").alias("dj"))
    w = s.join(di, "i").join(dj, "j").select(
        "i", "j", (F.col("s") * F.pow("di", -alpha) * F.pow("dj", -beta)).alias("w"))
    return top_per_item(w, k, n_items)


def top_per_item(w: Any, k: int, n_items: int) -> Any:
    """The ``k`` largest ``w`` per item ``i`` (ties by ``j``) of an (i, j, w) frame, as a CSR matrix on the driver."""
    import numpy as np
    import scipy.sparse as sp
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from recsys_core.models.base import drop_diagonal

    best = Window.partitionBy("i").orderBy(F.col("w").desc(), F.col("j"))
    top = w.withColumn("rn", F.row_number().over(best)).where(F.col("rn") <= k).select("i", "j", "w").toPandas()
    m = sp.csr_matrix((top["w"].to_numpy(np.float32), (top["i"].to_numpy(), top["j"].to_numpy())),
                      shape=(n_items, n_items))
    m.sort_indices()
    return drop_diagonal(m)


def sequence_counts(pairs: Any, window: int, decay: float) -> tuple[Any, Any]:
    """(C, item degree) of ``SequenceNeighbours``: C[i, j] = sum over shoppers of decay^(d-1) for i and j at most
    ``window`` positions apart (d) in the shopper's own order, both directions; degree = shoppers per item + 1.
    An equi-join on (shopper, position + d): it grows with rows x window, not with a history's square."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("u").orderBy(F.col("last_ts"), F.col("i"))
    seq = pairs.select("u", "i", "last_ts").withColumn("pos", F.row_number().over(order)).select("u", "i", "pos")
    ahead = seq.withColumn("d", F.explode(F.array(*[F.lit(d) for d in range(1, window + 1)])))
    ahead = ahead.select(F.col("u"), F.col("i").alias("a"), (F.col("pos") + F.col("d")).alias("pos"),
                         F.pow(F.lit(decay), F.col("d") - 1).alias("w"))
    near = ahead.join(seq.withColumnRenamed("i", "b"), ["u", "pos"])
    both = near.select(F.col("a").alias("i"), F.col("b").alias("j"), "w").unionByName(
        near.select(F.col("b").alias("i"), F.col("a").alias("j"), "w"))
    counts = both.groupBy("i", "j").agg(F.sum("w").alias("c"))
    deg = pairs.groupBy("i").agg((F.count("*") + 1.0).alias("deg"))
    return counts, deg


def sequence_top(counts: Any, deg: Any, beta: float, k: int, n_items: int) -> Any:
    """W = C / (deg_i^(1-beta) deg_j^beta), the ``k`` best per item (``SequenceNeighbours.fit``'s formula)."""
    from pyspark.sql import functions as F

    di = deg.select(F.col("i"), F.col("deg").alias("di"))
    dj = deg.select(F.col("i").alias("j"), F.col("deg").alias("dj"))
    w = counts.join(di, "i").join(dj, "j").select(
        "i", "j", (F.col("c") * F.pow("di", beta - 1.0) * F.pow("dj", -beta)).alias("w"))
    return top_per_item(w, k, n_items)


# ---------------------------------------------------------------- driver: the bundle's arrays, selection

def collect_pairs(indexed: Any, n_users: int, n_items: int) -> Any:
    """Every (user, item) row to the driver as a ``History`` (what the bundle stores for profiles and exclusions)."""
    import numpy as np
    from recsys_core.features import history_from_pairs

    pdf = indexed.select("u", "i", "total", "strong", "last_ts").toPandas()
    u, i = pdf["u"].to_numpy(np.int64), pdf["i"].to_numpy(np.int64)
    order = np.lexsort((i, u))
    return history_from_pairs(u[order], i[order].astype(np.int32), pdf["total"].to_numpy(np.float64)[order],
                              pdf["strong"].to_numpy()[order] > 0, pdf["last_ts"].to_numpy(np.float64)[order],
                              n_users, n_items)


def without(hist: Any, held_u: Any, held_i: Any) -> Any:
    """``hist`` minus the held-out (user, item) entries: the fit part, on the same indices."""
    import numpy as np
    from recsys_core.features import History

    rows = np.repeat(np.arange(hist.n_users), np.diff(hist.indptr))
    key = rows.astype(np.int64) * hist.n_items + hist.indices
    keep = ~np.isin(key, held_u.astype(np.int64) * hist.n_items + held_i)
    indptr = np.zeros(hist.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=hist.n_users), out=indptr[1:])
    return History(indptr, hist.indices[keep], hist.value[keep], hist.strong[keep], hist.recency[keep],
                   hist.n_items, last_ts=hist.last_ts[keep])


def top_m_fold(base: type, dense_cells: int, top_m: int) -> type:
    """``base`` (recsys_core's validation fold) where users x items exceed ``dense_cells``: each candidate keeps only
    its ``top_m`` best scores per user (a CSR matrix), and NDCG ranks a blend of them (scores outside a member's top
    ``top_m`` count as 0: only the top 10 is measured). Below the bound, the dense fold unchanged."""
    import numpy as np
    import scipy.sparse as sp
    from recsys_core.ensemble import row_max_normalize, sequences_for, top_k
    from recsys_core.metrics import hit_matrix, ndcg_per_user

    class TopMFold(base):  # type: ignore[misc,valid-type]
        def component(self, model: Any, half_life: float = 0.0, boost: float = 0.0,
                      batch_cells: int = 20_000_000) -> Any:
            if self.cells <= dense_cells:
                return super().component(model, half_life, boost, batch_cells)
            profiles = self.profiles(half_life, boost)
            n_items = self.prep.hist.n_items
            m = min(top_m, n_items)
            batch = max(1, batch_cells // max(n_items, 1))
            blocks = []
            for lo in range(0, len(self.users), batch):
                sl = slice(lo, lo + batch)
                seqs = sequences_for(model, self.prep.hist, self.users[sl])
                dense = row_max_normalize(model.score(profiles[sl], self.users[sl], sequences=seqs))
                cols = np.argpartition(-dense, m - 1, axis=1)[:, :m]
                vals = np.take_along_axis(dense, cols, axis=1)
                rows = np.repeat(np.arange(len(dense)), m)
                blocks.append(sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=dense.shape,
                                            dtype=np.float32))
            return sp.vstack(blocks).tocsr()

        def per_user_ndcg(self, scores: Any, batch_cells: int = 20_000_000) -> list[Any]:
            if not sp.issparse(scores):
                return super().per_user_ndcg(scores, batch_cells)
            batch = max(1, batch_cells // max(scores.shape[1], 1))
            recs: list[Any] = []
            for lo in range(0, scores.shape[0], batch):
                sl = slice(lo, lo + batch)
                recs += top_k(scores[sl].toarray() + 1e-4 * self.pop[None, :], self.k, self.exclude[sl])
            out = []
            for rel, n in zip(self.relevant, self.n_relevant, strict=True):
                has = np.flatnonzero(n > 0)
                out.append(ndcg_per_user(hit_matrix([recs[i] for i in has], [rel[i] for i in has], self.k), n[has]))
            return out

    return TopMFold


def _grid(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _bootstrap()
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.cold_start import choose_cold_start
    from recsys_core.data import DataError, IdMap, load_optional
    from recsys_core.ensemble import Ensemble
    from recsys_core.evaluation import build_targets
    from recsys_core.features import EventWeights, UserFeatures, build_item_features, item_popularity
    from recsys_core.models import FAMILIES
    from recsys_core.models.content import SegmentPopConfig, SegmentPopularity
    from recsys_core.models.mf import MFConfig
    from recsys_core.models.popularity import PopularityConfig
    from recsys_core.models.rp3beta import RP3betaConfig
    from recsys_core.models.sequence import SequenceConfig
    from recsys_core.prepare import Prepared
    from recsys_core.selection import Candidate, Recipe, SelectionConfig, SelectionResult, _Fold, _Validator
    from recsys_core.spark_session import spark_session
    from recsys_core.split import ValidationPlan

    if args.engine == "auto":
        rows = count_rows(Path(args.train_dir))
        if rows < args.spark_min_interactions:
            return single_instance(args, rows)
        log(f"[spark] engine: spark ({rows:,} interactions >= spark_min_interactions {args.spark_min_interactions:,})")
    else:
        log("[spark] engine: spark")
    stages = Stages()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = EventWeights()
    wanted = {"popularity", "trending", "segment_pop", "als", "rp3beta", "sequence"} if args.models == "auto" else {
        m.strip() for m in args.models.split(",") if m.strip()} | {"popularity"}
    conf = {"spark.sql.execution.arrow.pyspark.enabled": "true"}
    if args.event_log_dir and not IN_CONTAINER:  # on SageMaker smspark-submit has set the event log already
        Path(args.event_log_dir).mkdir(parents=True, exist_ok=True)
        conf |= {"spark.eventLog.enabled": "true", "spark.eventLog.dir": Path(args.event_log_dir).resolve().as_uri()}
    spark = spark_session("recsys-spark-train", master=args.master or None, driver_memory=args.driver_memory or None,
                          conf=conf)
    checkpoints = args.checkpoint_dir or (CLUSTER_CHECKPOINTS if IN_CONTAINER
                                          else tempfile.mkdtemp(prefix="recsys-als-checkpoints-"))
    spark.sparkContext.setCheckpointDir(checkpoints)
    log(f"[spark] Spark {spark.version} master {spark.sparkContext.master}, "
        f"{spark.sparkContext.defaultParallelism} cores; ALS checkpoints in {checkpoints}")

    # 1. read, clean, aggregate per (user, item), index.
    good, bad = clean(read_interactions(spark, Path(args.train_dir)))
    pairs = aggregate(good, weights).cache()
    products = load_optional(args.train_dir, "products")
    users_table = load_optional(args.train_dir, "users")
    n_clean = good.count()
    reasons = {r["quarantine_reason"]: r["count"] for r in bad.groupBy("quarantine_reason").count().collect()}
    if reasons:  # through the driver: on a cluster a file:// write would scatter parts over the instances' disks
        bad.limit(QUARANTINE_ROWS).toPandas().to_csv(out_dir / "quarantine_interactions.csv", index=False)
    if not n_clean:
        raise DataError(f"{args.train_dir} has no usable interaction rows ({sum(reasons.values())} quarantined)")
    stages.end("read + clean", f"{n_clean:,} clean rows, {sum(reasons.values()):,} quarantined {reasons}")
    user_index = index_ids(pairs.select("user_id"), "u")
    item_ids = pairs.select("product_id")
    if products is not None:
        item_ids = item_ids.unionByName(spark.createDataFrame(products[["product_id"]].astype(str)))
    item_index = index_ids(item_ids, "i")
    indexed = (pairs.join(user_index, "user_id").join(item_index, "product_id")
               .withColumn("value", F.log1p("total") / float(np.log(2.0))).cache())
    user_map = IdMap(np.asarray([r[0] for r in user_index.orderBy("u").collect()], dtype=str))
    item_map = IdMap(np.asarray([r[0] for r in item_index.orderBy("i").collect()], dtype=str))
    n_users, n_items = len(user_map), len(item_map)
    hist = collect_pairs(indexed, n_users, n_items)
    stages.end("aggregate + index", f"{hist.nnz:,} (user, item) pairs, {n_users:,} users, {n_items:,} items")

    # 2. validation: per sampled shopper, the latest and a random draw of older products.
    held = holdout(indexed, args.val_max_users, args.seed).cache()
    held_pd = held.toPandas()
    fit_pairs = indexed.join(held.select("u", "i"), ["u", "i"], "left_anti").cache()
    fit_hist = without(hist, held_pd["u"].to_numpy(np.int64), held_pd["i"].to_numpy(np.int64))
    item_features = build_item_features(products, item_map)
    user_features = UserFeatures.build(users_table)
    segment = None
    if user_features is not None and len(user_features.segment):
        idx = user_features.user_ids.index(user_map.ids)
        segment = np.where(idx >= 0, user_features.segment[np.maximum(idx, 0)], -1).astype(np.int32)
        segment = segment if (segment >= 0).any() else None

    def prepared(h: Any) -> Prepared:
        from recsys_core.models.base import FitContext

        ctx = FitContext(item_category=item_features.category if item_features.known else None,
                         entry_last_ts=h.last_ts, entry_recency=h.recency, user_segment=segment, seed=args.seed)
        return Prepared(user_map, item_map, h, item_features, user_features, ctx)

    fit_prep = prepared(fit_hist)
    names = ("latest", "random")
    parts = []
    for part in names:
        rows = held_pd[held_pd["part"] == part]
        frame = pd.DataFrame({"user_id": user_map.ids[rows["u"].to_numpy()],
                              "product_id": item_map.ids[rows["i"].to_numpy()]})
        parts.append(build_targets(frame, user_map, item_map, fit_hist))
    fold = top_m_fold(_Fold, args.val_dense_cells, args.val_top_m)(fit_prep, parts, args.k)
    val = _Validator([fold], names)
    stages.end("validation split", f"{val.n_users:,} validation users, {len(held_pd):,} held-out pairs")
    if val.n_users < 20:
        raise DataError(f"only {val.n_users} validation users (need 20): too little data for the Spark path")

    # 3. candidates on the fit part, scored on the validation users.
    table: list[dict[str, Any]] = []
    #: name -> (candidate, score, component matrices, the model fitted on the fit part); only the best of each
    #: family keeps its matrices and model (what blending and recency need): one matrix per candidate would not fit.
    scored: dict[str, tuple[Candidate, Any, list[Any] | None, Any]] = {}
    best_of: dict[str, str] = {}  # family -> name of its best candidate

    def record(cand: Candidate, model: Any, fit_s: float) -> None:
        comp = [fold.component(model)]
        score = val.measure(comp)
        name = model.name
        family = "trending" if name.startswith("trending") else cand.family
        scored[name] = (cand, score, comp, model)
        if family in best_of and scored[best_of[family]][1].value >= score.value:
            scored[name] = (cand, score, None, None)
        else:
            if family in best_of:
                old = best_of[family]
                scored[old] = (scored[old][0], scored[old][1], None, None)
            best_of[family] = name
        table.append({"model": name, "ndcg": round(score.value, 6), "parts": [round(p, 6) for p in score.parts],
                      "fit_s": round(fit_s, 2),
                      "engine": "spark" if cand.family in ("mf", "rp3beta", "sequence") else "driver"})
        detail = ", ".join(f"{n} {p:.4f}" for n, p in zip(names, score.parts, strict=True))
        log(f"[select] {name}: ndcg@{args.k}={score.value:.4f} ({detail}) fit {fit_s:.1f}s")

    X_fit = fit_hist.matrix()
    driver_cands = [Candidate("popularity", PopularityConfig())]
    if "trending" in wanted:
        driver_cands.append(Candidate("popularity", PopularityConfig(half_life_fraction=0.05)))
    if "segment_pop" in wanted and segment is not None:
        driver_cands.append(Candidate("segment_pop", SegmentPopConfig()))
    for cand in driver_cands:
        t = time.perf_counter()
        record(cand, cand.build().fit(X_fit, fit_prep.ctx), time.perf_counter() - t)
    per_user = np.diff(fit_hist.indptr)
    median_items = float(np.median(per_user[per_user > 0])) if (per_user > 0).any() else 1.0
    if "als" in wanted:
        val_users = spark.createDataFrame(pd.DataFrame({"u": fold.users.astype(np.int64)}))
        for reg in _grid(args.als_reg_grid):
            t = time.perf_counter()
            model = fit_als(fit_pairs, args.als_rank, args.als_iterations, reg, args.als_alpha, args.seed)
            state = {"user_factors": factors(model.userFactors, n_users, args.als_rank, val_users),
                     "item_factors": factors(model.itemFactors, n_items, args.als_rank)}
            # Serving folds unknown shoppers in with one regularisation; MLlib's is regParam x the shopper's
            # count, so the stored one is regParam x the median count.
            cand = Candidate("mf", MFConfig("als", factors=args.als_rank, regularization=round(reg * median_items, 6),
                                            alpha=args.als_alpha, iterations=args.als_iterations))
            record(cand, FAMILIES["mf"].from_state(cand.config, state), time.perf_counter() - t)
            table[-1]["spark_reg_param"] = reg
        stages.end("ALS on the fit part", f"rank {args.als_rank}, regParam grid {args.als_reg_grid}")
    if "rp3beta" in wanted:
        t = time.perf_counter()
        s, deg_i = cooccurrence(fit_pairs, args.rp3_alpha, args.history_cap)
        s = s.cache()
        for beta in _grid(args.rp3_beta_grid):  # the first fit's time includes the self-join
            cfg = RP3betaConfig(alpha=args.rp3_alpha, beta=beta, k=args.neighbours)
            model = FAMILIES["rp3beta"](cfg)
            model.W = rp3beta_top(s, deg_i, args.rp3_alpha, beta, args.neighbours, n_items)
            record(Candidate("rp3beta", cfg), model, time.perf_counter() - t)
            t = time.perf_counter()
        s.unpersist()
        stages.end("RP3beta co-occurrence on the fit part",
                   f"history cap {args.history_cap}, top {args.neighbours} per item, beta grid {args.rp3_beta_grid}")
    if "sequence" in wanted:
        t = time.perf_counter()
        counts, deg = sequence_counts(fit_pairs, args.seq_window, SequenceConfig().decay)
        counts = counts.cache()
        for beta in _grid(args.seq_beta_grid):  # the first fit's time includes the join
            cfg = SequenceConfig(window=args.seq_window, beta=beta, k=args.neighbours)
            model = FAMILIES["sequence"](cfg)
            model.W = sequence_top(counts, deg, beta, args.neighbours, n_items)
            record(Candidate("sequence", cfg), model, time.perf_counter() - t)
            t = time.perf_counter()
        counts.unpersist()
        stages.end("sequence neighbours on the fit part",
                   f"window {args.seq_window}, top {args.neighbours} per item, beta grid {args.seq_beta_grid}")

    # 4. choose as train.py's selection does: the best model, then greedy blending rounds with the best of each other
    #    family, then recency weighting of profiles; each step kept only if it beats the best so far by
    #    SelectionConfig's min gain and z (no noise-level complexity).
    rules = SelectionConfig()
    pop_score = scored["popularity"][1].value
    leaders = sorted((scored[n] for n in best_of.values()), key=lambda v: -v[1].value)
    best_cand, chosen_score, current, best_model = leaders[0]
    recipe, members = Recipe([best_cand], [1.0]), [best_model]
    current = current[0]
    partners = [v for v in leaders[1:] if v[1].value >= rules.partner_min_ratio * chosen_score.value]
    while not args.no_blend and partners and len(members) < rules.max_components:
        gain = None
        for other in partners[:rules.partners_per_round]:
            for w in rules.blend_grid:
                trial = val.measure([(1 - w) * current + w * other[2][0]])
                name = " + ".join(f"{x * (1 - w):.3g}*{c.name}" for x, c in zip(
                    recipe.weights, recipe.candidates, strict=True)) + f" + {w:g}*{other[0].name}"
                table.append({"model": name, "ndcg": round(trial.value, 6), "step": "blend"})
                log(f"[select] blend {name}: ndcg@{args.k}={trial.value:.4f}")
                if trial.beats(chosen_score if gain is None else gain[0], rules.min_gain, rules.min_z):
                    gain = (trial, other, w)
        if gain is None:
            break
        chosen_score, other, w = gain
        current = (1 - w) * current + w * other[2][0]
        recipe = Recipe([*recipe.candidates, other[0]], [x * (1 - w) for x in recipe.weights] + [w])
        members.append(other[3])
        partners = [p for p in partners if p is not other]

    def with_recency(half_life: float, boost: float) -> Any:
        return sum(w * fold.component(m, half_life, boost) for m, w in zip(members, recipe.weights, strict=True))

    if not args.no_recency and rules.recency_default is not None:
        no_recency, random_part = chosen_score, names.index("random")
        options = [rules.recency_default] + [o for o in rules.boost_grid if o != rules.recency_default]
        for n, (half_life, boost) in enumerate(options):
            trial = val.measure([with_recency(half_life, boost)])
            name = Ensemble(members, recipe.weights, half_life, recency_boost=boost).name
            table.append({"model": name, "ndcg": round(trial.value, 6), "step": "recency"})
            log(f"[select] recency {name}: ndcg@{args.k}={trial.value:.4f}")
            guarded = trial.costs_part(no_recency, random_part, rules.recency_guard)
            if n == 0:  # the mild default is kept unless validation shows it hurting, as in train.py
                keep = not guarded and not no_recency.beats(trial, 1.0, rules.min_z)
            else:
                keep = not guarded and trial.beats(chosen_score, rules.min_gain, rules.min_z)
            if keep:
                recipe = replace(recipe, decay_half_life=half_life, recency_boost=boost)
                chosen_score = trial
    stages.end("selection", f"chosen {' + '.join(c.name for c in recipe.candidates)}"
                            f"{f', recency boost {recipe.recency_boost:g}' if recipe.recency_boost else ''}: "
                            f"validation ndcg@{args.k} {chosen_score.value:.4f} vs popularity {pop_score:.4f}")

    # 5. refit the chosen families on every row.
    prep = prepared(hist)
    X = hist.matrix()
    models = []
    for cand in recipe.candidates:
        if cand.family == "mf":
            reg = cand.config.regularization / median_items
            model = fit_als(indexed, args.als_rank, args.als_iterations, reg, args.als_alpha, args.seed)
            state = {"user_factors": factors(model.userFactors, n_users, args.als_rank),
                     "item_factors": factors(model.itemFactors, n_items, args.als_rank)}
            models.append(FAMILIES["mf"].from_state(cand.config, state))
        elif cand.family == "rp3beta":
            s, deg_i = cooccurrence(indexed, cand.config.alpha, args.history_cap)
            model = FAMILIES["rp3beta"](cand.config)
            model.W = rp3beta_top(s, deg_i, cand.config.alpha, cand.config.beta, cand.config.k, n_items)
            models.append(model)
        elif cand.family == "sequence":
            counts, deg = sequence_counts(indexed, cand.config.window, cand.config.decay)
            model = FAMILIES["sequence"](cand.config)
            model.W = sequence_top(counts, deg, cand.config.beta, cand.config.k, n_items)
            models.append(model)
        else:
            models.append(cand.build().fit(X, prep.ctx))
    pop = FAMILIES["popularity"]().fit(X, prep.ctx).pop
    ensemble = Ensemble(models, list(recipe.weights), recipe.decay_half_life, popularity=pop,
                        recency_boost=recipe.recency_boost)
    stages.end("refit on all rows", ensemble.name)

    # 6. the bundle, exactly as train.py writes it.
    from train import _build_retrieval, _catalogue_and_trending, _normalised, _write_selection_report

    segments = SegmentPopularity.fit(X, segment) if segment is not None and user_features is not None else None
    catalogue, trending = _catalogue_and_trending(prep, products)
    rows = np.repeat(np.arange(n_users), np.diff(hist.indptr))
    cold = choose_cold_start(pd.DataFrame({"user_id": user_map.ids[rows], "product_id": item_map.ids[hist.indices],
                                           "ts": hist.last_ts}), args.k, has_clock=trending is not None)
    plan = ValidationPlan("user_holdout", "per-user holdout of the latest and a random draw of older products "
                          "(Spark, per (user, item))", fit_hist.nnz, len(held_pd), val.n_users)
    result = SelectionResult(recipe, table, chosen_score.value, pop_score, [], plan, names,
                             dict(zip(names, chosen_score.parts, strict=True)), 0.0, 0.0, val.n_users)
    version = args.model_version or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-spark-{recipe.candidates[0].family}"
    bundle = Bundle(
        model_version=version, users=user_map, items=item_map, hist=hist, ensemble=ensemble,
        recipe=recipe_doc(recipe.candidates, recipe.weights), popularity=_normalised(item_popularity(hist)),
        item_category=item_features.category, category_names=item_features.category_names, segments=segments,
        segment_users=user_features.user_ids if segments is not None else None,
        segment_of=user_features.segment if segments is not None else None,
        meta={"trained_at": datetime.now(UTC).isoformat(), "engine": "spark", "spark_version": spark.version,
              "k": args.k, "rows": n_clean, "quarantined": sum(reasons.values()), "quarantine_reasons": reasons,
              "event_weights": asdict(weights), "validation_ndcg": chosen_score.value,
              "validation_popularity_ndcg": pop_score,
              "selection_summary": result.summary() | {"chosen": ensemble.name},
              "selection": table, "notes": [], "cold_start": {"strategy": cold.strategy, "reason": cold.reason}},
        trending=trending, catalogue=catalogue, cold_start=cold.strategy,
    )
    _build_retrieval(bundle, 0)
    bundle.save(args.model_dir)
    _write_selection_report(out_dir, result, ensemble.name, args.k)
    stages.end("bundle", f"model {version} in {args.model_dir}")
    total = time.perf_counter() - stages.started
    (out_dir / "spark_stages.json").write_text(json.dumps({"engine": "spark", "seconds": round(total, 2),
                                                           "stages": stages.done}, indent=2))
    log(f"[spark] done in {total:.1f}s: {len(stages.done)} stages, chosen {ensemble.name}")
    spark.stop()
    return 0


if __name__ == "__main__":
    _bootstrap()
    from recsys_core.data import run_entry_point

    sys.exit(run_entry_point(main, "spark"))
