"""Shared fixtures for the reliability tests: one tiny real model per xdist worker, trained by train.py.

Same recipe as ``tests/recsys/local/test_endpoint.py`` (synthetic shop, users u0..u59, products
p0..p49, item_knn only, ~3 s), but session-scoped so the in-process and HTTP fuzz modules share it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from recsys.local.endpoint import serve_endpoint
from tests.tiny_model import train_tiny_model

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "sagemaker_src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("reliability"))


@pytest.fixture(scope="session")
def inference() -> ModuleType:
    """The handler module, imported as SageMaker does (its folder on sys.path)."""
    import inference as handler

    return handler


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path, inference: ModuleType) -> Any:
    return inference.model_fn(str(tiny_model_dir))


@pytest.fixture(scope="session")
def shop(tiny_model_dir: Path) -> dict[str, Any]:
    """Facts about the training data, read from the CSVs (not from the model) to check answers against."""
    log = pd.read_csv(tiny_model_dir.parent / "train" / "interactions.csv", dtype=str)
    products = pd.read_csv(tiny_model_dir.parent / "train" / "products.csv", dtype=str)
    strong = log[log["event_type"].isin(["purchase", "rating"])]
    return {
        "users": sorted(log["user_id"].unique()),
        "items": sorted(log["product_id"].unique()),
        "categories": sorted(products["category"].unique()),
        "category_of": dict(zip(products["product_id"], products["category"], strict=True)),
        "owned": strong.groupby("user_id")["product_id"].agg(set).to_dict(),
        "interacted": log.groupby("user_id")["product_id"].agg(set).to_dict(),
    }


@pytest.fixture(scope="session")
def endpoint_url(tiny_model_dir: Path) -> Iterator[str]:
    with serve_endpoint(tiny_model_dir, threads=4) as base:
        yield base
