"""The typed config: every setting read from cdk.json context, bad values named by key."""

from __future__ import annotations

import copy
import json

import pytest

from settings.config import CDK_JSON, ConfigError, load_config, load_project_config

CONTEXT = json.loads(CDK_JSON.read_text())["context"]


def _with(env: str, **changes):
    context = copy.deepcopy(CONTEXT)
    context["environments"][env].update(changes)
    return context


def test_project_config_loads_default_env_from_cdk_json():
    cfg = load_project_config()
    assert cfg.env_name == CONTEXT["env"]
    assert cfg.glue_database == "recsys_dev"
    assert cfg.bucket_name("source", "123456789012") == "recsys-dev-source-123456789012-ap-south-1"


def test_prod_retains_and_dev_destroys():
    assert load_config(CONTEXT, "prod").retain is True
    assert load_config(CONTEXT, "dev").retain is False


def test_missing_key_is_named():
    context = copy.deepcopy(CONTEXT)
    del context["environments"]["dev"]["quality_threshold_ndcg_at_10"]
    with pytest.raises(ConfigError, match=r"environments\.dev\.quality_threshold_ndcg_at_10"):
        load_config(context)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("quality_threshold_ndcg_at_10", 1.5),
        ("quality_threshold_ndcg_at_10", "high"),
        ("log_retention_days", 31),
        ("removal_policy", "keep"),
        ("training_instance_type", "m5.large"),
        ("transform_instance_type", "ml.c5.large"),  # serves endpoints, runs no Batch Transform
        ("processing_instance_type", "ml.c5.large"),
        ("endpoint_instance_type", 5),
        ("training_instance_type", "ml.p2.xlarge"),  # a GPU too old for the CUDA 12 training image
        ("alarm_email", "not-an-email"),
        ("enable_analytics", "yes"),
        ("athena_bytes_scanned_cutoff_mb", 1),
        ("crawler_schedule", "every day"),
        ("region", "mars-1"),
        ("api_reserved_concurrency", 0),
        ("api_reserved_concurrency", "10"),
        ("experiment_mode", "canary"),
        ("experiment_mode", True),
        ("experiment_challenger_percent", 0),
        ("experiment_challenger_percent", 100),
        ("experiment_challenger_percent", 12.5),
        ("experiment_alpha", 0),
        ("experiment_alpha", 0.5),
        ("experiment_alpha", "0.05"),
        ("training_engine", "emr"),
        ("spark_min_interactions", 0),
        ("spark_instance_type", "ml.c5.large"),  # serves endpoints, runs no processing job
        ("spark_instance_count", 0),
        ("spark_instance_count", 21),
        ("spark_instance_count", 2.5),
    ],
)
def test_invalid_value_is_rejected_with_key_name(key, value):
    with pytest.raises(ConfigError, match=rf"environments\.dev\.{key}"):
        load_config(_with("dev", **{key: value}))


def test_an_instance_type_outside_the_apis_enum_is_refused_with_close_valid_ones():
    with pytest.raises(ConfigError, match=r"TransformInstanceType values, such as 'ml.c5.xlarge'.*got 'ml.c5.larg'"):
        load_config(_with("dev", transform_instance_type="ml.c5.larg"))


def test_a_gpu_training_instance_type_trains_on_the_gpu():
    assert load_config(_with("dev", training_instance_type="ml.g5.2xlarge")).training_on_gpu is True
    assert load_config(_with("dev", training_instance_type="ml.g6.xlarge")).training_on_gpu is True
    assert load_config(CONTEXT, "dev").training_on_gpu is False  # the shipped settings train on CPU


def test_analytics_needs_a_quicksight_principal():
    with pytest.raises(ConfigError, match="quicksight_principal_arn"):
        load_config(_with("dev", enable_analytics=True, quicksight_principal_arn=""))


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match=r"environments\.dev\.typo_key"):
        load_config(_with("dev", typo_key=1))


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match="'dev', 'prod'"):
        load_config(CONTEXT, "staging")


def test_experiment_settings_default_existing_deployments_to_unchanged_and_dev_to_an_ab_test():
    prod, dev = load_config(CONTEXT, "prod"), load_config(CONTEXT, "dev")
    assert prod.experiment_mode == "off"  # prod keeps blue/green to all traffic
    assert dev.experiment_mode == "ab" and 0 < dev.experiment_challenger_percent < 100
    assert isinstance(dev.experiment_alpha, float) and 0 < dev.experiment_alpha <= 0.2


def test_a_synth_time_training_engine_overrides_the_environments():
    """`cdk synth -c training_engine=spark` (how `recsys run --training-engine spark` synthesizes) wins, validated."""
    context = _with("dev")
    assert load_config({**context, "training_engine": "spark"}).training_engine == "spark"
    with pytest.raises(ConfigError, match=r"environments\.dev\.training_engine"):
        load_config({**context, "training_engine": "fast"})


def test_settings_import_nothing_of_the_project_but_settings():
    """settings/ is the bottom layer: everything reads it, so it may read nothing of the project above it."""
    import ast
    from pathlib import Path

    project = {p.name for p in CDK_JSON.parent.iterdir() if p.is_dir() or p.suffix == ".py"}
    found = []
    for path in sorted((CDK_JSON.parent / "settings").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{Path(path).name}: {n}" for n in names if n.split(".")[0] in project - {"settings"}]
    assert "glue_jobs" in project and not found, found
