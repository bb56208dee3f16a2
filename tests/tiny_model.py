"""One tiny real model for tests that need to serve one: train.py on a synthetic shop (~3 s).

Users u0..u59, products p0..p49, item_knn only; shared by the endpoint, reload, soak and
reliability tests (and bench_robustness) so they all serve the same kind of model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import CHILD_BOUND_S

SRC = Path(__file__).resolve().parents[1] / "sagemaker_src"


def train_tiny_model(base: Path) -> Path:
    """Write a small synthetic shop under ``base/train`` and train a model into ``base/model``."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    train = base / "train"
    train.mkdir(parents=True, exist_ok=True)
    for name, df in synthetic_tables(SyntheticConfig(n_users=60, n_items=50, events_per_user=8)).items():
        df.to_csv(train / f"{name}.csv", index=False)
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "SM_CHANNEL_TRAIN": str(train),
        "SM_MODEL_DIR": str(base / "model"),
        "SM_OUTPUT_DATA_DIR": str(base / "out"),
    }
    subprocess.run(
        [sys.executable, str(SRC / "train.py"), "--models", "item_knn", "--no-blend", "--time-budget", "3"],
        env=env,
        check=True,
        capture_output=True,
        timeout=CHILD_BOUND_S,
    )
    return base / "model"
