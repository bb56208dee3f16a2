"""Throughput and peak memory of the data generator at a given scale.

Usage: ``.venv/bin/python bench/bench_generate.py --scale small|medium|large [--fmt csv|parquet] [--out DIR]``

Peak RSS comes from ``resource.getrusage`` (Linux reports KiB), so it includes the interpreter
and imported libraries (~150 MB); the point is that it stays flat as interactions grow, because
interactions are simulated and written chunk by chunk.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.generator import GeneratorConfig, generate_to_dir  # noqa: E402

SCALES: dict[str, GeneratorConfig] = {
    "small": GeneratorConfig(),
    "medium": GeneratorConfig(n_users=10_000, n_products=5_000, n_interactions=1_000_000),
    "large": GeneratorConfig(n_users=1_000_000, n_products=100_000, n_interactions=10_000_000),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--fmt", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--out", type=Path, help="keep the files here (default: a temporary directory)")
    args = parser.parse_args(argv)
    cfg = GeneratorConfig(**{**SCALES[args.scale].__dict__, "fmt": args.fmt})

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        summary = generate_to_dir(out, cfg, progress=lambda msg: print(f"  [{time.perf_counter() - t0:6.1f}s] {msg}"))
        seconds = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in summary.paths.values()) / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = summary.rows["interactions"]
    print(f"scale={args.scale} fmt={args.fmt} users={cfg.n_users:,} products={cfg.n_products:,}")
    print(f"interactions={n:,} rows  seconds={seconds:.1f}  rows/s={n / seconds:,.0f}")
    print(f"files={size_mb:,.0f} MB  peak_rss={peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
