"""The pipeline run locally against moto: the same steps and scripts, registration only past the gate."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.metrics import DRIFT_SCORE, MODEL_METRICS_PREFIX, NDCG_AT_10, model_metric
from pipeline_steps.definition import SOURCE_DIR, STEPS
from recsys.generator import GeneratorConfig, generate_tables
from recsys.local.pipeline import PipelineStepError, register_model, run_pipeline_locally
from recsys.local.provision import provision
from recsys.local.s3io import split_s3_uri, write_parquet
from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S

pytestmark = [pytest.mark.slow, pytest.mark.timeout(HEAVY_TIMEOUT_S)]
CFG = load_project_config("dev")
FAST = {"models": "popularity,item_knn", "max-eval-users": "300"}  # keep training to a few seconds


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_tables(GeneratorConfig(n_users=120, n_products=60, n_interactions=3000, seed=3))


@pytest.fixture
def loaded(aws_env, tables):
    res = provision(CFG, aws_env)
    write_parquet(aws_env, tables["interactions"], f"s3://{res.destination_bucket}/training/interactions.parquet")
    return aws_env, res


def _object(aws, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_pipeline_runs_every_step_and_registers_an_approved_model(loaded, tmp_path):
    aws, res = loaded
    lines: list[str] = []
    result = run_pipeline_locally(CFG, aws, res, tmp_path, lines.append, hyperparameters=FAST)

    assert result.status == "Succeeded" and result.passed_gate
    assert [s.name for s in result.steps] == [
        "PrepareData",
        "TrainModel",
        "EvaluateModel",
        "PublishMetrics",
        "CheckQuality",
        "PackageModel",
        "RegisterModel",
        "BatchRecommend",
    ]
    assert all(s.status == "Succeeded" for s in result.steps) and len(lines) == len(result.steps)
    ndcg = result.evaluation["metrics"]["ndcg_at_10"]["value"]
    assert ndcg >= CFG.quality_threshold_ndcg_at_10
    assert ndcg > result.evaluation["metrics"]["popularity_ndcg_at_10"]["value"]
    assert (result.model_dir / "model.json").is_file()
    assert result.model_dir.is_relative_to(tmp_path / "pipeline" / result.execution_id)

    with tarfile.open(fileobj=io.BytesIO(_object(aws, result.model_data_uri))) as tar:
        assert {"model.json", "arrays.npz"} <= set(tar.getnames())
    assert json.loads(_object(aws, result.evaluation_uri)) == result.evaluation
    assert result.model_data_uri.startswith(f"s3://{res.destination_bucket}/pipeline/{result.execution_id}/TrainModel/")

    sm = aws.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=result.model_package_arn)
    assert package["ModelPackageGroupName"] == CFG.model_package_group
    assert package["ModelApprovalStatus"] == result.approval_status == "Approved"
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == result.evaluation_uri
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == result.packaged_model_uri
    with tarfile.open(fileobj=io.BytesIO(_object(aws, result.packaged_model_uri))) as tar:  # what serving loads
        names = set(tar.getnames())
    assert {"model.json", "arrays.npz", "code/inference.py", "code/recsys_core/bundle.py"} <= names
    assert not any("__pycache__" in n for n in names)
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    _batch_matches_predict_fn(aws, res.destination_bucket, result.model_dir)


def _batch_matches_predict_fn(aws, bucket: str, model_dir) -> None:
    """BatchRecommend: one list per known user and per product, each what the endpoint answers."""
    inference = _load("inference")  # sagemaker_src/ puts itself on sys.path, as SageMaker runs it
    model = inference.model_fn(str(model_dir))
    users = pd.read_parquet(io.BytesIO(_object(aws, f"s3://{bucket}/batch/user_recommendations/part-00000.parquet")))
    similar = pd.read_parquet(io.BytesIO(_object(aws, f"s3://{bucket}/batch/similar_products/part-00000.parquet")))
    assert set(users["user_id"]) == {str(u) for u in model.users.ids}
    assert set(similar["product_id"]) == {str(i) for i in model.items.ids}
    for user in sorted(set(users["user_id"]))[:: max(1, len(model.users) // 7)]:
        served = inference.predict_fn({"user_id": user, "k": 10}, model)
        batch = users[users["user_id"] == user].sort_values("rank")
        assert batch["product_id"].tolist() == [r["product_id"] for r in served["recommendations"]], user
    product = str(model.items.ids[0])
    served = inference.predict_fn({"product_id": product, "k": 10}, model)
    rows = similar[similar["product_id"] == product].sort_values("rank")
    assert rows["similar_product_id"].tolist() == [r["product_id"] for r in served["recommendations"]]


def test_failed_quality_gate_stops_with_a_message_and_registers_nothing(loaded, tmp_path):
    aws, res = loaded
    strict = replace(CFG, quality_threshold_ndcg_at_10=1.0)
    result = run_pipeline_locally(strict, aws, res, tmp_path, lambda _: None, hyperparameters=FAST)

    assert result.status == "Failed" and not result.passed_gate
    assert [(s.name, s.status) for s in result.steps[-2:]] == [
        ("CheckQuality", "Succeeded"),
        ("QualityGateFailed", "Failed"),
    ]
    assert "threshold 1.0000" in result.gate_message
    assert result.model_package_arn is None and result.approval_status is None
    assert "PackageModel" not in [s.name for s in result.steps]
    groups = aws.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert groups == []


def test_publish_metrics_feeds_the_quality_alarm_and_the_history_even_when_the_gate_fails(loaded, tables, tmp_path):
    """The "model NDCG below gate" alarm exists for exactly this model: the pipeline itself must publish it."""
    aws, res = loaded
    catalogue = tables["products"].drop_duplicates("product_id")[["product_id", "category", "price"]]
    training = tables["interactions"].merge(
        catalogue.assign(price=pd.to_numeric(catalogue["price"], errors="coerce")), on="product_id", how="left"
    )  # the training set's joined columns
    write_parquet(aws, training, f"s3://{res.destination_bucket}/training/interactions.parquet")
    strict = replace(CFG, quality_threshold_ndcg_at_10=1.0)
    result = run_pipeline_locally(strict, aws, res, tmp_path, lambda _: None, hyperparameters=FAST)
    assert not result.passed_gate
    ref = model_metric(CFG.model_package_group, NDCG_AT_10)
    stats = aws.client("cloudwatch").get_metric_statistics(
        Namespace=ref.namespace,
        MetricName=ref.name,
        Dimensions=ref.api_dimensions(),
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [d["Maximum"] for d in stats] == [result.evaluation["metrics"]["ndcg_at_10"]["value"]]
    drift = aws.client("cloudwatch").list_metrics(Namespace=ref.namespace, MetricName=DRIFT_SCORE)["Metrics"]
    assert drift, "the drift score has a producer on AWS too"
    key = f"{MODEL_METRICS_PREFIX}/{result.execution_id}.json"
    row = json.loads(aws.client("s3").get_object(Bucket=res.destination_bucket, Key=key)["Body"].read())
    assert row["model_version"] == result.execution_id
    assert row["ndcg_at_10"] == result.evaluation["metrics"]["ndcg_at_10"]["value"]


def test_a_failing_script_raises_an_error_naming_the_step_and_its_stderr(aws_env, tmp_path):
    res = provision(CFG, aws_env)
    bad = pd.DataFrame({"user_id": ["u1"], "product_id": ["p1"], "event_type": ["view"], "timestamp": ["never"]})
    write_parquet(aws_env, bad, f"s3://{res.destination_bucket}/training/interactions.parquet")
    expected = r"(?s)PrepareData \(prepare_data.py\).*\[prepare\] error: no interaction has"  # one line, no traceback
    with pytest.raises(PipelineStepError, match=expected):
        run_pipeline_locally(CFG, aws_env, res, tmp_path, lambda _: None)


def test_missing_training_data_fails_the_first_step_clearly(aws_env, tmp_path):
    res = provision(CFG, aws_env)
    with pytest.raises(PipelineStepError, match=r"PrepareData: no data for input channel 'input' at s3://.*/training/"):
        run_pipeline_locally(CFG, aws_env, res, tmp_path, lambda _: None)


def test_unknown_parameter_is_refused_before_anything_runs(aws_env, tmp_path):
    res = provision(CFG, aws_env)
    with pytest.raises(ValueError, match="QualityTreshold"):
        run_pipeline_locally(CFG, aws_env, res, tmp_path, lambda _: None, parameters={"QualityTreshold": 0.5})
    assert not (tmp_path / "pipeline").exists()


def test_manual_approval_registers_pending_and_creates_the_group(aws_env):
    arn = register_model(
        aws_env,
        CFG,
        model_data_uri="s3://b/model.tar.gz",
        evaluation_uri="s3://b/evaluation.json",
        approval="PendingManualApproval",
    )
    package = aws_env.client("sagemaker").describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageGroupName"] == CFG.model_package_group


# ---- prepare_data.py, the first step ----------------------------------------------------------


def _load(script: str):
    spec = importlib.util.spec_from_file_location(script, SOURCE_DIR / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_data_cuts_by_time_and_keeps_every_row(tmp_path):
    rows = 200
    raw = pd.DataFrame(
        {
            "user_id": [f"u{i % 20}" for i in range(rows)],
            "product_id": [f"p{i % 13}" for i in range(rows)],
            "event_type": "view",
            "rating": None,
            "timestamp": [str(1_700_000_000 + 3600 * i) for i in range(rows)],
            "category": [f"c{i % 3}" for i in range(rows)],
            "price": np.arange(rows, dtype=float),
            "age": 30,
        }
    )
    raw.loc[5, "timestamp"] = "not a time"
    (tmp_path / "in").mkdir()
    raw.sample(frac=1.0, random_state=0).to_csv(tmp_path / "in" / "interactions.csv", index=False)
    prepare = _load("prepare_data")
    assert (
        prepare.main(
            [
                "--input-dir",
                str(tmp_path / "in"),
                "--train-dir",
                str(tmp_path / "train"),
                "--test-dir",
                str(tmp_path / "test"),
            ]
        )
        == 0
    )

    train = pd.read_parquet(tmp_path / "train" / "interactions.parquet")
    test = pd.read_parquet(tmp_path / "test" / "interactions.parquet")
    assert len(train) + len(test) == rows
    assert "not a time" in set(train["timestamp"])  # kept for train.py to quarantine with a reason
    timed = pd.to_numeric(train["timestamp"], errors="coerce").dropna()
    assert timed.max() < pd.to_numeric(test["timestamp"]).min()
    assert 0.15 * rows <= len(test) <= 0.25 * rows
    products = pd.read_parquet(tmp_path / "train" / "products.parquet")
    assert sorted(products["product_id"]) == sorted(raw["product_id"].unique())
    assert {"category", "price"} <= set(products.columns)
    assert set(pd.read_parquet(tmp_path / "train" / "users.parquet").columns) == {"user_id", "age"}


def test_package_model_puts_serving_code_under_code_and_refuses_a_non_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    (model / "arrays.npz").write_bytes(b"x")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:  # SageMaker's training output form
        for p in model.iterdir():
            tar.add(p, arcname=p.name)
    (tmp_path / "trained").mkdir()
    (tmp_path / "model.tar.gz").rename(tmp_path / "trained" / "model.tar.gz")
    package = _load("package_model")
    out = package.package(tmp_path / "trained", SOURCE_DIR, tmp_path / "out")
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert {"model.json", "arrays.npz", "code/inference.py", "code/requirements.txt"} <= names
    with pytest.raises(FileNotFoundError, match="no model.json"):
        package.package(SOURCE_DIR / "recsys_core", SOURCE_DIR, tmp_path / "bad")


def test_every_script_step_names_a_script_that_exists():
    assert all((SOURCE_DIR / s.script).is_file() for s in STEPS if s.script)
