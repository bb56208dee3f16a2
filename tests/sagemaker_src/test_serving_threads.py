"""model_fn pins its process's BLAS and OpenMP pools to one thread, whoever loaded numpy first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "sagemaker_src"

PROBE = """
import json, sys
import numpy, scipy.linalg  # a server (e.g. SageMaker's model server) that imported numpy before the handler
from threadpoolctl import threadpool_info
before = [p["num_threads"] for p in threadpool_info()]
sys.path.insert(0, sys.argv[1])
import inference
inference.model_fn(sys.argv[2])
print(json.dumps({"before": before, "after": [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]}))
"""


def test_model_fn_pins_blas_and_openmp_to_one_thread(tmp_path):
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.data import clean_interactions
    from recsys_core.features import item_popularity
    from recsys_core.models.mf import MFConfig
    from recsys_core.prepare import prepare
    from recsys_core.selection import Candidate, Recipe, fit_recipe
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    tables = synthetic_tables(SyntheticConfig(n_users=40, n_items=30, events_per_user=6))
    prep = prepare(clean_interactions(tables["interactions"])[0], num_threads=1)
    recipe = Recipe([Candidate("mf", MFConfig("als", factors=4, iterations=2))], [1.0])
    pop = item_popularity(prep.hist)
    Bundle("t", prep.users, prep.items, prep.hist, fit_recipe(recipe, prep), recipe_doc(recipe.candidates,
           recipe.weights), pop / pop.max(), prep.item_features.category,
           prep.item_features.category_names).save(tmp_path)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: every pool starts with one thread, so there is no pin to check")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # pools sized to every core
    out = subprocess.run([sys.executable, "-c", PROBE, str(SRC), str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert max(seen["before"]) > 1  # the pools started with a thread per core: the pin has something to undo
    assert seen["after"] and all(n == 1 for _, n in seen["after"]), seen["after"]
