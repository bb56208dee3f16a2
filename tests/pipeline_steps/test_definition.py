"""The SDK pipeline built from ``definition.STEPS``: steps, wiring, parameters and gate, produced offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline_steps.definition import (
    GATE,
    SESSION_BUCKET,
    SOURCE_DIR,
    STEPS,
    approval_status,
    framework_image,
    gate_passes,
    json_path_get,
    pack_source,
    parameter_specs,
    processing_entrypoint,
)
from settings.config import PROJECT_ROOT, load_project_config
from tests import CHILD_BOUND_S, HEAVY_TIMEOUT_S

pytestmark = pytest.mark.timeout(HEAVY_TIMEOUT_S)  # the SageMaker SDK builds the definition

CFG = load_project_config("dev")
BUCKET = "recsys-dev-curated-123456789012-ap-south-1"
ROLE = "arn:aws:iam::123456789012:role/pipeline"
CODE = "s3://cdk-assets-bucket/abc123.gz"
KEY = "arn:aws:kms:ap-south-1:123456789012:key/k"

_GENERATE = f"""
import sys
from dataclasses import replace
from pipeline_steps.definition import definition_json
from settings.config import load_project_config
cfg = load_project_config("dev")
if len(sys.argv) > 2:
    cfg = replace(cfg, training_instance_type=sys.argv[2])
open(sys.argv[1], "w").write(definition_json(cfg, role_arn={ROLE!r}, bucket={BUCKET!r},
                                 code_uri={CODE!r}, region="ap-south-1", kms_key_arn={KEY!r}))
"""


@pytest.fixture(scope="module")
def definition(tmp_path_factory) -> dict:
    """Generated in a process with no AWS credentials or config, and every proxy pointing nowhere."""
    return _generate(tmp_path_factory)


def _generate(tmp_path_factory, *extra: str) -> dict:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
        PYTHONPATH=".",
    )
    out = home / "definition.json"
    run = subprocess.run(
        [sys.executable, "-c", _GENERATE, str(out), *extra],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_BOUND_S,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def _steps(definition: dict) -> dict[str, dict]:
    found = {}
    for s in definition["Steps"]:
        found[s["Name"]] = s
        for branch in ("IfSteps", "ElseSteps"):
            found.update({b["Name"]: b for b in s.get("Arguments", {}).get(branch, [])})
    return found


def _sdk_name(definition: dict, spec_name: str) -> str:
    """ModelStep appends '-RegisterModel' to its name; everything else keeps the spec's name."""
    names = [n for n in _steps(definition) if n == spec_name or n.startswith(f"{spec_name}-")]
    assert len(names) == 1, (spec_name, names)
    return names[0]


def test_every_spec_step_is_in_the_definition_with_its_kind(definition):
    kinds = {
        "processing": "Processing",
        "training": "Training",
        "condition": "Condition",
        "register": "RegisterModel",
        "fail": "Fail",
    }
    steps = _steps(definition)
    for spec in STEPS:
        assert steps[_sdk_name(definition, spec.name)]["Type"] == kinds[spec.kind]
    assert len(steps) == len(STEPS)


def test_top_level_order_follows_the_data_dependencies_and_branches_hang_off_the_gate(definition):
    order = [s["Name"] for s in definition["Steps"]]
    assert order == ["PrepareData", "TrainModel", "EvaluateModel", "PublishMetrics", "CheckQuality"]
    for spec in STEPS:
        for upstream in spec.upstream():
            assert [s.name for s in STEPS].index(upstream) < [s.name for s in STEPS].index(spec.name)
    gate = _steps(definition)["CheckQuality"]["Arguments"]
    assert [s["Name"] for s in gate["IfSteps"]] == [
        "PackageModel", _sdk_name(definition, "RegisterModel"), "BatchRecommend"
    ]
    assert [s["Name"] for s in gate["ElseSteps"]] == ["QualityGateFailed"]


def test_steps_read_the_outputs_of_the_steps_they_depend_on(definition):
    text = {name: json.dumps(s) for name, s in _steps(definition).items()}
    assert "Parameters.InputDataUri" in text["PrepareData"]
    assert "Steps.PrepareData.ProcessingOutputConfig.Outputs['train']" in text["TrainModel"]
    assert "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts" in text["EvaluateModel"]
    assert "Steps.PrepareData.ProcessingOutputConfig.Outputs['test']" in text["EvaluateModel"]
    assert "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts" in text["PackageModel"]
    register = text[_sdk_name(definition, "RegisterModel")]
    assert "Steps.PackageModel.ProcessingOutputConfig.Outputs['packaged']" in register
    assert "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation']" in register
    assert "Steps.PackageModel.ProcessingOutputConfig.Outputs['packaged']" in text["BatchRecommend"]


def test_batch_output_goes_to_the_stable_prefix_its_glue_tables_read(definition):
    (out,) = _steps(definition)["BatchRecommend"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert out["S3Output"]["S3Uri"] == f"s3://{BUCKET}/batch"


def test_parameters_default_to_the_config(definition):
    params = {p["Name"]: p for p in definition["Parameters"]}
    expected = {p.name: p.default for p in parameter_specs(CFG, BUCKET)}
    assert {n: p["DefaultValue"] for n, p in params.items()} == expected
    assert expected["QualityThreshold"] == CFG.quality_threshold_ndcg_at_10
    assert expected["InputDataUri"] == f"s3://{BUCKET}/training/"
    assert params["QualityThreshold"]["Type"] == "Float"


def test_approval_status_follows_model_approval():
    assert approval_status(replace(CFG, model_approval="auto")) == "Approved"
    assert approval_status(replace(CFG, model_approval="manual")) == "PendingManualApproval"
    assert approval_status(load_project_config("prod")) == "PendingManualApproval"


def test_gate_requires_the_threshold_and_beating_popularity(definition):
    conditions = _steps(definition)["CheckQuality"]["Arguments"]["Conditions"]
    by_type = {c["Type"]: c for c in conditions}
    assert set(by_type) == {"GreaterThanOrEqualTo", "GreaterThan"}
    ge, gt = by_type["GreaterThanOrEqualTo"], by_type["GreaterThan"]
    assert ge["LeftValue"]["Std:JsonGet"]["Path"] == "metrics.ndcg_at_10.value"
    assert ge["RightValue"] == {"Get": "Parameters.QualityThreshold"}
    assert gt["RightValue"]["Std:JsonGet"]["Path"] == "metrics.popularity_ndcg_at_10.value"
    evaluate = _steps(definition)["EvaluateModel"]
    assert evaluate["PropertyFiles"] == [
        {"FilePath": "evaluation.json", "OutputName": "evaluation", "PropertyFileName": "EvaluationReport"}
    ]


def test_gate_paths_are_keys_evaluate_py_writes():
    sys.path.insert(0, str(SOURCE_DIR))
    try:
        from evaluate import to_model_quality
    finally:
        sys.path.remove(str(SOURCE_DIR))
    metrics = {m: 0.5 for m in ("precision", "recall", "f1", "ndcg", "map", "hit_rate", "coverage", "novelty")}
    doc = to_model_quality({"model": {**metrics, "users": 3}, "popularity": {**metrics, "ndcg": 0.2}}, k=10)
    assert json_path_get(doc, GATE.metric) == 0.5
    assert json_path_get(doc, GATE.baseline) == 0.2


@pytest.mark.parametrize(
    ("ndcg", "popularity", "threshold", "passed"),
    [(0.30, 0.20, 0.05, True), (0.04, 0.01, 0.05, False), (0.20, 0.20, 0.05, False), (0.05, 0.01, 0.05, True)],
)
def test_local_gate_verdict(ndcg, popularity, threshold, passed):
    doc = {"metrics": {"ndcg_at_10": {"value": ndcg}, "popularity_ndcg_at_10": {"value": popularity}}}
    assert gate_passes(doc, threshold)[0] is passed


def test_processing_steps_run_existing_scripts_from_the_code_archive(definition):
    steps = _steps(definition)
    for spec in STEPS:
        if spec.script:
            assert (SOURCE_DIR / spec.script).is_file()
        if spec.kind == "processing":
            args = steps[spec.name]["Arguments"]
            assert args["AppSpecification"]["ContainerEntrypoint"] == processing_entrypoint(spec.script)
            assert {"InputName": "code", "S3Uri": CODE} in [
                {"InputName": i["InputName"], "S3Uri": i["S3Input"]["S3Uri"]} for i in args["ProcessingInputs"]
            ]
            fixed = {c.name: c.destination for c in spec.outputs if c.destination}
            for out in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
                uri = out["S3Output"]["S3Uri"]
                if out["OutputName"] in fixed:  # a stable prefix that Glue tables read
                    assert uri == f"s3://{BUCKET}/{fixed[out['OutputName']]}"
                else:  # per execution
                    assert uri["Std:Join"]["Values"][0] == f"s3://{BUCKET}/pipeline"
    hyper = steps["TrainModel"]["Arguments"]["HyperParameters"]
    assert json.loads(hyper["sagemaker_program"]) == "train.py"
    assert json.loads(hyper["sagemaker_submit_directory"]) == CODE


def _run_entrypoint(tmp_path: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A processing step's ContainerEntrypoint as written, with /opt/ml/processing under ``tmp_path``: the archive
    in the code channel, the job's arguments after it, ``python`` the one running the tests."""
    src = tmp_path / "src"
    src.mkdir(parents=True)
    for name in ("run.sh", "requirements-runtime.txt"):
        (src / name).write_bytes((SOURCE_DIR / name).read_bytes())
    (src / "echo_args.py").write_text("import sys\nprint(sys.argv[1:])\nsys.exit(int(sys.argv[-1]))\n")
    root = tmp_path / "opt_ml_processing"
    pack_source(root / "code", src=src).rename(root / "code" / "0a1b2c.gz")  # a CDK asset keeps its hashed name
    entrypoint = [part.replace("/opt/ml/processing", str(root)) for part in processing_entrypoint(script)]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run([*entrypoint, *args], capture_output=True, text=True, env={**os.environ, "PATH": path, **env})


def test_the_processing_entrypoint_unpacks_the_archive_and_runs_the_script_through_the_bootstrap(tmp_path):
    ok = _run_entrypoint(tmp_path / "ok", "echo_args.py", "--flag", "a b", "0", RECSYS_SKIP_INSTALL="1")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "['--flag', 'a b', '0']"
    failed = _run_entrypoint(tmp_path / "failed", "echo_args.py", "3", RECSYS_SKIP_INSTALL="1")
    assert failed.returncode == 3  # the script's exit code is the job's
    assert max(len(item) for item in processing_entrypoint("batch_recommend.py")) <= 256


def test_a_gpu_training_instance_type_gets_the_gpu_training_image(tmp_path_factory):
    """cdk.json's training_instance_type chooses the processor: ml.g5 -> the PyTorch image's GPU build for
    training only (processing and serving stay on CPU); train.py then adds the JAX CUDA plugin."""
    gpu = _steps(_generate(tmp_path_factory, "ml.g5.2xlarge"))
    training = gpu["TrainModel"]["Arguments"]
    assert training["AlgorithmSpecification"]["TrainingImage"] == framework_image("ap-south-1", "training", gpu=True)
    assert training["AlgorithmSpecification"]["TrainingImage"].endswith("-gpu-py312")
    assert gpu["PrepareData"]["Arguments"]["AppSpecification"]["ImageUri"].endswith("-cpu-py312")
    assert json.loads(training["HyperParameters"]["sagemaker_program"]) == "train.py"  # the same code as on CPU


def test_images_and_encryption(definition):
    steps = _steps(definition)
    training = steps["TrainModel"]["Arguments"]
    assert training["AlgorithmSpecification"]["TrainingImage"] == framework_image("ap-south-1", "training")
    assert training["OutputDataConfig"]["KmsKeyId"] == KEY
    container = steps[_sdk_name(definition, "RegisterModel")]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == framework_image("ap-south-1", "inference")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"  # packaged in the model
    assert container["ModelDataUrl"]["Std:Join"]["Values"][-1] == "model.tar.gz"


def test_definition_uses_no_implicit_bucket_and_names_the_group(definition):
    text = json.dumps(definition)
    assert SESSION_BUCKET not in text and "sagemaker-ap-south-1" not in text
    register = _steps(definition)[_sdk_name(definition, "RegisterModel")]["Arguments"]
    assert register["ModelPackageGroupName"] == CFG.model_package_group
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    stats = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"


def test_source_archive_is_reproducible_and_complete(tmp_path):
    first = pack_source(tmp_path / "a").read_bytes()
    second = pack_source(tmp_path / "b").read_bytes()
    assert first == second
    with tarfile.open(tmp_path / "a" / "sourcedir.tar.gz") as tar:
        names = set(tar.getnames())
    assert {
        "train.py",
        "evaluate.py",
        "inference.py",
        "prepare_data.py",
        "requirements.txt",
        "requirements-runtime.txt",
        "recsys_core/split.py",
    } <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert all(not Path(n).is_absolute() for n in names)


def test_publish_metrics_gets_the_group_the_execution_and_the_history_location(definition):
    args = _steps(definition)["PublishMetrics"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    value = dict(zip(args[::2], args[1::2], strict=True))
    assert value["--model-group"] == CFG.model_package_group
    assert value["--model-version"] == {"Get": "Execution.PipelineExecutionId"}
    assert value["--history-uri"] == f"s3://{BUCKET}/monitoring/model_metrics"
    assert value["--evaluation-dir"] == "/opt/ml/processing/evaluation"


def test_the_source_archive_carries_the_shared_metric_definitions(tmp_path):
    with tarfile.open(pack_source(tmp_path)) as tar:
        names = set(tar.getnames())
    assert {"publish_metrics.py", "monitoring/metrics.py", "monitoring/drift.py", "inference.py"} <= names
