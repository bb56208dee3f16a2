"""Wall time and peak memory of the data plane: `cdk synth`, and the main job at growing scales.

Usage: ``.venv/bin/python bench/bench_data_plane.py [--scales small,medium] [--no-synth]``

Each measurement is a separate process (as a user runs it), so peak RSS is that process's own
(``resource.getrusage(RUSAGE_CHILDREN)`` after it exits, in KiB on Linux).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALES = {
    "small": ["--users", "2000", "--products", "500", "--interactions", "60000"],
    "medium": ["--users", "50000", "--products", "10000", "--interactions", "1000000"],
    "large": ["--users", "200000", "--products", "50000", "--interactions", "5000000"],
}


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    peak_mib = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return seconds, peak_mib, run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="small,medium", help=f"comma list of {', '.join(SCALES)}")
    parser.add_argument("--no-synth", action="store_true", help="skip the `npx cdk synth` timing")
    args = parser.parse_args()

    rows: list[tuple[str, float, float, str]] = []
    if not args.no_synth:
        env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
        seconds, _, _ = measure(["npx", "cdk", "synth", "--quiet", "--no-notices"], env)
        rows.append(("npx cdk synth (dev, with cdk-nag)", seconds, float("nan"), ""))
    for scale in args.scales.split(","):
        with tempfile.TemporaryDirectory() as workdir:
            seconds, peak, out = measure([sys.executable, "-m", "recsys", "run", "--workdir", workdir, *SCALES[scale]])
        rows_in = re.search(r"interactions\s+in\s+([\d,]+)", out)
        stages = re.findall(r"^\[\d\] (.{0,28}).*?\n(?:.*\n)*?\s+\(([\d.]+) s\)", out, flags=re.M)
        detail = f"{rows_in.group(1) if rows_in else '?'} interactions; " + ", ".join(
            f"{n.strip()} {s}s" for n, s in stages
        )
        rows.append((f"main job, {scale}", seconds, peak, detail))

    print(f"{'what':<36} {'seconds':>8} {'peak MiB':>9}  stages")
    for what, seconds, peak, detail in rows:
        print(f"{what:<36} {seconds:>8.1f} {peak:>9.0f}  {detail}")


if __name__ == "__main__":
    main()
