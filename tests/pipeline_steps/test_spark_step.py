"""TrainModel on Spark (issue 23): what ``training_engine`` puts in the pipeline definition, and how the local runner
maps the template's Spark step back to ``spark_train.py``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pipeline_steps.definition import (
    SPARK_EVENTS_DIR,
    SPARK_TRAIN,
    STEPS,
    TRAIN,
    definition_json,
    spark_image,
    steps_for,
)
from recsys.local.pipeline import TemplatePipeline
from settings.config import load_project_config
from tests import HEAVY_TIMEOUT_S

pytestmark = pytest.mark.timeout(HEAVY_TIMEOUT_S)  # the SageMaker SDK builds the definition

CFG = load_project_config("dev")
BUCKET = "recsys-dev-curated-123456789012-ap-south-1"
KEY = "arn:aws:kms:ap-south-1:123456789012:key/k"


def _train_step(engine: str) -> dict:
    cfg = replace(CFG, training_engine=engine, spark_instance_count=3, spark_instance_type="ml.r5.2xlarge")
    doc = json.loads(definition_json(cfg, role_arn="arn:aws:iam::123456789012:role/pipeline", bucket=BUCKET,
                                     code_uri="s3://assets/abc.gz", region="ap-south-1", kms_key_arn=KEY))
    return next(s for s in doc["Steps"] if s["Name"] == TRAIN)


@pytest.fixture(scope="module")
def spark_step() -> dict:
    return _train_step("spark")


def test_single_keeps_the_training_job_and_spark_or_auto_swap_in_the_spark_step():
    assert steps_for(CFG) == STEPS
    for engine in ("spark", "auto"):
        graph = steps_for(replace(CFG, training_engine=engine))
        assert [s.name for s in graph] == [s.name for s in STEPS] and SPARK_TRAIN in graph


def test_the_spark_step_runs_spark_train_on_the_sagemaker_spark_container_sized_by_the_settings(spark_step):
    args = spark_step["Arguments"]
    assert spark_step["Type"] == "Processing"
    assert args["AppSpecification"]["ImageUri"] == spark_image("ap-south-1")
    assert "/sagemaker-spark-processing:3.5-cpu-py312" in spark_image("ap-south-1")
    entry = args["AppSpecification"]["ContainerEntrypoint"]
    assert entry[-1] == "spark_train.py" and "exec smspark-submit" in entry[2]
    assert all(len(item) <= 256 for item in entry)  # the API's ContainerEntrypoint item limit
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.r5.2xlarge"
    assert args["Environment"]["RECSYS_SPARK_CONTAINER"] == "1"
    cli = args["AppSpecification"]["ContainerArguments"]
    assert cli[cli.index("--engine") + 1] == "spark"


def test_spark_event_logs_go_to_the_destination_bucket_encrypted_as_they_are_written(spark_step):
    config = spark_step["Arguments"]["ProcessingOutputConfig"]
    events = next(o for o in config["Outputs"] if o["OutputName"] == "events")
    assert events["S3Output"]["LocalPath"] == SPARK_EVENTS_DIR and events["S3Output"]["S3UploadMode"] == "Continuous"
    assert events["S3Output"]["S3Uri"]["Std:Join"]["Values"][0] == f"s3://{BUCKET}/pipeline"
    assert config["KmsKeyId"] == KEY
    assert spark_step["Arguments"]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KEY


def test_auto_passes_its_threshold_to_the_job():
    cli = _train_step("auto")["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert cli[cli.index("--engine") + 1] == "auto"
    assert int(cli[cli.index("--spark-min-interactions") + 1]) == CFG.spark_min_interactions


def test_the_local_pipeline_runs_the_templates_spark_step_with_spark_train(spark_step, tmp_path):
    template = TemplatePipeline(tmp_path / "ml.template.json", "0" * 64, {"Steps": [spark_step]})
    assert template.spec(spark_step) is SPARK_TRAIN
    changed = json.loads(json.dumps(spark_step))
    changed["Arguments"]["AppSpecification"]["ContainerEntrypoint"][-1] = "train.py"
    with pytest.raises(Exception, match="the template runs train.py"):
        template.spec(changed)
