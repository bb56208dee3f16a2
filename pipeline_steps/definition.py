"""The training pipeline, described once: the step graph both runtimes walk.

:data:`STEPS` says which script each step runs, which channels it reads and writes and what
follows what; :func:`parameter_specs` gives the pipeline parameters with defaults from the
config; :data:`GATE` is the quality gate. :func:`build_pipeline` turns this into a SageMaker
Pipeline (sagemaker SDK 2.x ``sagemaker.workflow``) for the CDK stack, and
``recsys/local/pipeline.py`` (the local runtime) executes the same specs as processes against moto. Nothing
about the graph is written anywhere else.

Graph::

    PrepareData (processing, prepare_data.py)  input -> train, test
      -> TrainModel (training, train.py)       train -> model
      -> EvaluateModel (processing, evaluate.py)  model, test -> evaluation (evaluation.json)
      -> PublishMetrics (processing, publish_metrics.py)  evaluation, input -> CloudWatch model quality
           and drift, a model_metrics row (runs whether or not the gate passes: the alarms need both)
      -> CheckQuality (condition: ndcg_at_10 >= QualityThreshold AND ndcg_at_10 > popularity's)
           true  -> PackageModel (processing, package_model.py)  model -> packaged (model + code/)
                 -> RegisterModel (model package group, metrics, ModelApprovalStatus)
                 -> BatchRecommend (processing, batch_recommend.py)  model -> batch/ (top-k per user,
                    similar products per product; Glue tables batch_user_recommendations, batch_similar_products)
           false -> QualityGateFailed (fail)

Step code is not uploaded by the SDK: every job reads one ``sourcedir.tar.gz`` of ``sagemaker_src/``
plus the shared metric definitions (:data:`SHARED_MODULES`; built by :func:`pack_source`, uploaded
by the stack as an asset), so producing the definition
needs no credentials and no S3 writes.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import operator
import os
import tarfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from monitoring.metrics import MODEL_METRICS_PREFIX
from settings.config import BATCH_PREFIX, PIPELINE_PREFIX, PROJECT_ROOT, TRAINING_PREFIX, Config
from settings.erasure import SUPPRESSION_ENV, SUPPRESSION_KEY

SOURCE_DIR = PROJECT_ROOT / "sagemaker_src"
SOURCE_ARCHIVE = "sourcedir.tar.gz"
#: Framework image for training, processing and serving. pandas 3 (requirements.txt) needs Python >= 3.11,
#: which rules out the scikit-learn images; the PyTorch CPU images ship Python 3.12 and pip.
FRAMEWORK, FRAMEWORK_VERSION, PY_VERSION = "pytorch", "2.6.0", "py312"
PROCESSING_ROOT = "/opt/ml/processing"
#: Where processing jobs find and unpack the source archive (outside every data channel).
CODE_CHANNEL, CODE_DIR = "code", f"{PROCESSING_ROOT}/source"
#: The processing steps' bootstrap in the source archive (``sagemaker_src/run.sh``; its header says what it does).
BOOTSTRAP = "run.sh"

#: Project modules packed into the source archive beside the scripts (same relative paths), so the
#: PublishMetrics step names metrics exactly as the alarms that watch them (monitoring/metrics.py).
SHARED_MODULES: tuple[str, ...] = (
    "monitoring/__init__.py", "monitoring/metrics.py", "monitoring/drift.py",
    "glue_jobs/__init__.py", "glue_jobs/schema.py",
)

#: The SDK session insists on a default bucket; every S3 location is explicit, so this one never
#: appears in the definition (a test checks) and ``bucket`` may be a ``${...}`` placeholder.
SESSION_BUCKET = "sagemaker-definition-only-unused"

#: Explicit SDK defaults: no telemetry call at synth time, and no developer's ``~/.config/sagemaker``
#: defaults (VPC, tags, keys) leaking into the definition.
SDK_CONFIG: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}

StepKind = Literal["processing", "training", "condition", "register", "fail"]


@dataclass(frozen=True)
class Channel:
    """A named input or output of a step.

    ``source`` (inputs only): ``param:<Name>`` for a pipeline parameter or ``<Step>.<channel>`` for
    another step's output. ``flag``: the script option that receives the channel's path
    (processing jobs; training channels arrive as ``SM_CHANNEL_<NAME>``).
    """

    name: str
    source: str = ""
    flag: str = ""
    #: Outputs only: a fixed prefix in the destination bucket (e.g. ``batch``) instead of the run's own
    #: ``pipeline/<execution>/<step>/<channel>``, for outputs that Glue tables read at a stable place.
    destination: str = ""

    @property
    def container_path(self) -> str:
        return f"{PROCESSING_ROOT}/{self.name}"


@dataclass(frozen=True)
class StepSpec:
    name: str
    kind: StepKind
    description: str
    script: str | None = None  # file under sagemaker_src/
    inputs: tuple[Channel, ...] = ()
    outputs: tuple[Channel, ...] = ()
    if_steps: tuple[str, ...] = ()  # condition steps only
    else_steps: tuple[str, ...] = ()
    #: Extra script arguments (processing steps). ``{name}`` tokens are filled by both runtimes from
    #: :func:`argument_values`: ``{model_group}``, ``{region}``, ``{history_uri}``, ``{execution_id}``.
    arguments: tuple[str, ...] = ()

    def upstream(self) -> set[str]:
        """Steps whose outputs this step reads (the data dependencies that order the graph)."""
        return {c.source.split(".", 1)[0] for c in self.inputs if c.source and not c.source.startswith("param:")}


@dataclass(frozen=True)
class QualityGate:
    """ndcg@10 must reach the threshold parameter AND beat the popularity baseline on the same users."""

    step: str
    report_step: str
    report_output: str
    report_file: str
    metric: str  # JSON path in the report (SageMaker JsonGet syntax: dotted keys)
    baseline: str
    threshold_parameter: str
    property_file: str = "EvaluationReport"
    #: Every condition must hold: (SageMaker condition type, left operand, right operand); operands are
    #: "metric" and "baseline" (JsonGet on the report) and "threshold" (the pipeline parameter). The SDK
    #: builder and the local runner both read this tuple, so the two gates cannot differ.
    conditions: tuple[tuple[str, str, str], ...] = (
        ("GreaterThanOrEqualTo", "metric", "threshold"),
        ("GreaterThan", "metric", "baseline"),
    )


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: Literal["String", "Float"]
    default: str | float
    description: str


PREPARE, TRAIN, EVALUATE, PUBLISH, CHECK, PACKAGE, REGISTER, BATCH, FAIL = (
    "PrepareData",
    "TrainModel",
    "EvaluateModel",
    "PublishMetrics",
    "CheckQuality",
    "PackageModel",
    "RegisterModel",
    "BatchRecommend",
    "QualityGateFailed",
)
#: Name of the model archive in a model channel (SageMaker's training output and PackageModel's).
MODEL_ARCHIVE = "model.tar.gz"
INPUT_PARAM, PROCESSING_TYPE_PARAM, TRAINING_TYPE_PARAM, THRESHOLD_PARAM, APPROVAL_PARAM = (
    "InputDataUri",
    "ProcessingInstanceType",
    "TrainingInstanceType",
    "QualityThreshold",
    "ModelApprovalStatus",
)

STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        PREPARE,
        "processing",
        "Temporal train/test split of the training-set extraction",
        script="prepare_data.py",
        inputs=(Channel("input", source=f"param:{INPUT_PARAM}", flag="--input-dir"),),
        outputs=(Channel("train", flag="--train-dir"), Channel("test", flag="--test-dir")),
    ),
    StepSpec(
        TRAIN,
        "training",
        "Select and fit the recommender on the train split (CONTRACTS §2)",
        script="train.py",
        inputs=(Channel("train", source=f"{PREPARE}.train"),),
        outputs=(Channel("model"),),
    ),
    StepSpec(
        EVALUATE,
        "processing",
        "Score the model and the popularity baseline on the later test period",
        script="evaluate.py",
        inputs=(
            Channel("model", source=f"{TRAIN}.model", flag="--model-dir"),
            Channel("test", source=f"{PREPARE}.test", flag="--test-dir"),
        ),
        outputs=(Channel("evaluation", flag="--output-dir"),),
    ),
    StepSpec(
        PUBLISH,
        "processing",
        "Publish model quality and drift to CloudWatch and append the model-metrics row",
        script="publish_metrics.py",
        inputs=(
            Channel("evaluation", source=f"{EVALUATE}.evaluation", flag="--evaluation-dir"),
            Channel("input", source=f"param:{INPUT_PARAM}", flag="--data-dir"),
        ),
        arguments=(
            "--model-group", "{model_group}", "--model-version", "{execution_id}",
            "--history-uri", "{history_uri}", "--region", "{region}",
        ),
    ),
    StepSpec(
        CHECK,
        "condition",
        "Quality gate on evaluation.json",
        inputs=(Channel("evaluation", source=f"{EVALUATE}.evaluation"),),
        if_steps=(PACKAGE, REGISTER, BATCH),
        else_steps=(FAIL,),
    ),
    StepSpec(
        PACKAGE,
        "processing",
        "Put the serving code under code/ in the model archive (what PyTorch serving containers load)",
        script="package_model.py",
        inputs=(Channel("model", source=f"{TRAIN}.model", flag="--model-dir"),),
        # Not "model" again: SageMaker rejects a processing job whose input and output share a local path.
        outputs=(Channel("packaged", flag="--output-dir"),),
    ),
    StepSpec(
        REGISTER,
        "register",
        "Register the model package with its metrics",
        inputs=(Channel("model", source=f"{PACKAGE}.packaged"), Channel("evaluation", source=f"{EVALUATE}.evaluation")),
    ),
    StepSpec(
        BATCH,
        "processing",
        "Top-k for every known user and similar products for every product, as predict_fn answers (Parquet)",
        script="batch_recommend.py",
        inputs=(Channel("model", source=f"{PACKAGE}.packaged", flag="--model-dir"),),
        outputs=(Channel("batch", flag="--output-dir", destination=BATCH_PREFIX),),
    ),
    StepSpec(FAIL, "fail", "Stop: the model did not pass the quality gate"),
)

#: The Spark version of the SageMaker Spark container (its newest, 3.5; ``pyspark`` is pinned to a 3.5.x) and
#: the Python of its image (pandas 3 needs >= 3.11).
SPARK_VERSION, SPARK_PY_VERSION = "3.5", "py312"
#: TrainModel when ``training_engine`` is ``spark`` or ``auto`` (issue 23): spark_train.py on the SageMaker Spark
#: container, writing the same bundle; same name and channels, so every later step reads it unchanged. Its
#: ``events`` output is Spark's event log (``spark.eventLog``), kept beside the model in the destination bucket.
SPARK_TRAIN = StepSpec(
    TRAIN,
    "processing",
    "Train on Spark (spark_train.py): the same bundle as train.py, for training sets past one instance",
    script="spark_train.py",
    inputs=(Channel("train", source=f"{PREPARE}.train", flag="--train-dir"),),
    outputs=(Channel("model", flag="--model-dir"), Channel("output", flag="--output-dir"),
             Channel("events", flag="--event-log-dir")),
    arguments=("--engine", "{training_engine}", "--spark-min-interactions", "{spark_min_interactions}"),
)


def steps_for(cfg: Config) -> tuple[StepSpec, ...]:
    """The step graph of ``cfg``'s training engine: :data:`STEPS`, TrainModel on Spark unless it is ``single``."""
    if cfg.training_engine == "single":
        return STEPS
    return tuple(SPARK_TRAIN if s.name == TRAIN else s for s in STEPS)

GATE = QualityGate(
    step=CHECK,
    report_step=EVALUATE,
    report_output="evaluation",
    report_file="evaluation.json",
    metric="metrics.ndcg_at_10.value",
    baseline="metrics.popularity_ndcg_at_10.value",
    threshold_parameter=THRESHOLD_PARAM,
)

#: Training hyperparameters (train.py flags without "--"); empty = train.py's defaults.
TRAINING_HYPERPARAMETERS: dict[str, str] = {}
#: What the registered model answers (CONTRACTS §3).
CONTENT_TYPES = ("application/json",)


def step(name: str) -> StepSpec:
    """The spec named ``name`` (KeyError names the known steps)."""
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"no pipeline step {name!r}; steps are {[s.name for s in STEPS]}")


def approval_status(cfg: Config) -> str:
    """``auto`` approval registers models ready to deploy; ``manual`` waits for a reviewer."""
    return "Approved" if cfg.model_approval == "auto" else "PendingManualApproval"


def training_input_uri(bucket: str) -> str:
    """Where the data workflow writes the training-set extraction (``sql/training_set.sql``)."""
    return f"s3://{bucket}/{TRAINING_PREFIX}/"


def parameter_specs(cfg: Config, bucket: str) -> tuple[ParameterSpec, ...]:
    return (
        ParameterSpec(INPUT_PARAM, "String", training_input_uri(bucket), "S3 prefix of the training-set extraction"),
        ParameterSpec(PROCESSING_TYPE_PARAM, "String", cfg.processing_instance_type, "Processing instance type"),
        ParameterSpec(TRAINING_TYPE_PARAM, "String", cfg.training_instance_type, "Training instance type"),
        ParameterSpec(THRESHOLD_PARAM, "Float", cfg.quality_threshold_ndcg_at_10, "Minimum ndcg@10 to register"),
        ParameterSpec(APPROVAL_PARAM, "String", approval_status(cfg), "Approval status of registered models"),
    )


def argument_values(cfg: Config, bucket: str, region: str) -> dict[str, str]:
    """What ``{name}`` tokens in :attr:`StepSpec.arguments` stand for (``execution_id`` is the runtime's own)."""
    return {
        "model_group": cfg.model_package_group,
        "region": region,
        "history_uri": f"s3://{bucket}/{MODEL_METRICS_PREFIX}",
        "training_engine": cfg.training_engine,
        "spark_min_interactions": str(cfg.spark_min_interactions),
    }


def step_arguments(spec: StepSpec, values: Mapping[str, Any]) -> list[Any]:
    """``spec.arguments`` with every ``{name}`` token replaced by ``values[name]`` (a whole-token match)."""
    out: list[Any] = []
    for arg in spec.arguments:
        if arg.startswith("{") and arg.endswith("}"):
            name = arg[1:-1]
            if name not in values:
                raise KeyError(f"step {spec.name}: no value for argument {arg} (known: {sorted(values)})")
            out.append(values[name])
        else:
            out.append(arg)
    return out


def output_prefix(bucket: str, execution_id: str, step_name: str, channel: str) -> str:
    """``s3://<bucket>/pipeline/<execution>/<step>/<channel>``: one place per run, step and output."""
    return f"s3://{bucket}/{PIPELINE_PREFIX}/{execution_id}/{step_name}/{channel}"


def json_path_get(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted JSON path, as SageMaker's ``JsonGet`` reads it (KeyError when absent)."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(f"{path!r} not found in the evaluation report (missing {part!r})")
        value = value[part]
    return value


#: How each condition type of :attr:`QualityGate.conditions` compares (SageMaker's semantics).
GATE_COMPARISONS = {
    "GreaterThanOrEqualTo": operator.ge,
    "GreaterThan": operator.gt,
    "LessThanOrEqualTo": operator.le,
    "LessThan": operator.lt,
}


def gate_passes(evaluation: Mapping[str, Any], threshold: float) -> tuple[bool, str]:
    """The condition step's verdict on a report, from :attr:`QualityGate.conditions`, and a sentence saying why."""
    value, baseline = float(json_path_get(evaluation, GATE.metric)), float(json_path_get(evaluation, GATE.baseline))
    operands = {"metric": value, "baseline": baseline, "threshold": float(threshold)}
    passed = all(GATE_COMPARISONS[kind](operands[left], operands[right]) for kind, left, right in GATE.conditions)
    verdict = "passed" if passed else "failed"
    return passed, (
        f"quality gate {verdict}: ndcg@10 {value:.4f} (threshold {threshold:.4f}, popularity baseline {baseline:.4f})"
    )


def framework_image(region: str, scope: Literal["training", "inference"], gpu: bool = False) -> str:
    """The CPU (or ``gpu``) framework image, read from the SDK's own image table (importing the SDK takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("sagemaker")
    assert spec is not None and spec.submodule_search_locations, "the sagemaker SDK is not installed"
    table = Path(next(iter(spec.submodule_search_locations))) / "image_uri_config" / f"{FRAMEWORK}.json"
    version = json.loads(table.read_text())[scope]["versions"][FRAMEWORK_VERSION]
    registry = version["registries"][region]
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    processor = "gpu" if gpu else "cpu"
    return f"{registry}.dkr.ecr.{region}.{domain}/{version['repository']}:{FRAMEWORK_VERSION}-{processor}-{PY_VERSION}"


def spark_image(region: str) -> str:
    """The SageMaker Spark processing image (``sagemaker-spark-processing``), from the SDK's own image table."""
    import importlib.util

    spec = importlib.util.find_spec("sagemaker")
    assert spec is not None and spec.submodule_search_locations, "the sagemaker SDK is not installed"
    table = Path(next(iter(spec.submodule_search_locations))) / "image_uri_config" / "spark.json"
    version = json.loads(table.read_text())["processing"]["versions"][SPARK_VERSION]
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return (f"{version['registries'][region]}.dkr.ecr.{region}.{domain}/{version['repository']}:"
            f"{SPARK_VERSION}-cpu-{SPARK_PY_VERSION}")


def serving_environment(region: str, bucket: str) -> dict[str, str]:
    """The registered container's variables: the inference toolkit runs ``code/inference.py`` (CONTRACTS §3);
    the endpoint answers shoppers on ``bucket``'s erasure suppression list as new ones (docs/erasure.md)."""
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_REGION": region,
        "OPENBLAS_NUM_THREADS": "1",
        SUPPRESSION_ENV: f"s3://{bucket}/{SUPPRESSION_KEY}",
    }


# ---- source archive -------------------------------------------------------------------------


def _source_files(src: Path) -> Iterator[Path]:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        hidden = any(p.startswith(".") or p == "__pycache__" for p in rel.parts)
        if path.is_file() and not hidden and path.suffix not in (".pyc", ".pyo"):
            yield path


def pack_source(dest_dir: Path, src: Path = SOURCE_DIR) -> Path:
    """``dest_dir/sourcedir.tar.gz`` of ``sagemaker_src`` and :data:`SHARED_MODULES` (SageMaker's source-dir format).

    Byte-for-byte reproducible (sorted entries, zero mtimes and owners), so the CDK asset hash
    changes only when the code does.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    entries = [(str(path.relative_to(src)), path) for path in _source_files(src)]
    entries += [(rel, PROJECT_ROOT / rel) for rel in SHARED_MODULES]
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in entries:
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    target = dest_dir / SOURCE_ARCHIVE
    with open(target, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    return target


# ---- the SageMaker SDK pipeline ---------------------------------------------------------------


def processing_entrypoint(script: str) -> list[str]:
    """``bash -c`` that unpacks the source archive and hands over to its :data:`BOOTSTRAP` with ``script``.

    Only the unpacking is inline (the archive arrives as one file, so nothing in it can run before it is
    unpacked); installing the requirements and running the script is :data:`BOOTSTRAP`'s job. The line
    stays well under the API's 256 characters per ``ContainerEntrypoint`` item (``tests/stacks/
    test_api_limits.py`` checks the synthesized request). ``script`` is ``$0`` and stays the last item,
    where the local runner reads it. No ``${...}`` here: the stack substitutes those.
    """
    # The archive keeps its S3 object's name (a CDK asset is "<hash>.gz"), so take whatever arrived.
    command = (
        f"set -eu; mkdir -p {CODE_DIR}; "
        f'for a in {PROCESSING_ROOT}/{CODE_CHANNEL}/*; do tar -xzf "$a" -C {CODE_DIR}; done; '
        f'exec bash {CODE_DIR}/{BOOTSTRAP} "$0" "$@"'
    )
    return ["/bin/bash", "-c", command, script]


#: Where the Spark container's ``smspark-submit`` writes Spark's event log (the ``events`` output uploads it).
SPARK_EVENTS_DIR = f"{PROCESSING_ROOT}/events"


def spark_entrypoint(script: str) -> list[str]:
    """``bash -c`` that unpacks the source archive and submits ``script`` with the container's ``smspark-submit``.

    ``smspark-submit`` is what ``PySparkProcessor`` runs: it starts YARN across the job's instances and
    ``spark-submit``s the app; ``--local-spark-event-logs-dir`` turns ``spark.eventLog`` on into that folder.
    ``PySparkProcessor`` itself is not used because it uploads the app (and any configuration) to S3 while the
    definition is produced; like :func:`processing_entrypoint` this reads the one source archive instead.
    ``script`` is ``$0``, the last item, where the local runner reads it.
    """
    command = (
        f"set -eu; mkdir -p {CODE_DIR}; "
        f'for a in {PROCESSING_ROOT}/{CODE_CHANNEL}/*; do tar -xzf "$a" -C {CODE_DIR}; done; '
        f'exec smspark-submit --local-spark-event-logs-dir {SPARK_EVENTS_DIR} {CODE_DIR}/"$0" "$@"'
    )
    return ["/bin/bash", "-c", command, script]


def build_pipeline(
    cfg: Config, *, role_arn: str, bucket: str, code_uri: str, region: str, kms_key_arn: str | None = None
) -> Any:
    """The SageMaker ``Pipeline`` of :data:`STEPS` (returns ``sagemaker.workflow.pipeline.Pipeline``).

    ``bucket`` holds the training data and the run outputs; ``code_uri`` is the S3 URI of
    ``sourcedir.tar.gz``; ``kms_key_arn`` encrypts job outputs. Calling ``.definition()`` contacts
    AWS for session set-up only: :func:`definition_json` does it inside moto with fake credentials.
    """
    import boto3
    from sagemaker.model import Model
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
    from sagemaker.pytorch import PyTorch
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThan, ConditionGreaterThanOrEqualTo
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import ParameterFloat, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import PipelineSession
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.steps import ProcessingStep, TrainingStep

    session = PipelineSession(
        boto_session=boto3.Session(region_name=region), default_bucket=SESSION_BUCKET, sagemaker_config=SDK_CONFIG
    )
    params = {
        p.name: (ParameterString if p.type == "String" else ParameterFloat)(name=p.name, default_value=p.default)
        for p in parameter_specs(cfg, bucket)
    }

    def out_uri(step_name: str, channel: str) -> Any:
        return Join(
            on="/",
            values=[f"s3://{bucket}/{PIPELINE_PREFIX}", ExecutionVariables.PIPELINE_EXECUTION_ID, step_name, channel],
        )

    built: dict[str, Any] = {}  # step name -> SDK step
    outputs: dict[str, Any] = {}  # "<Step>.<channel>" -> S3 URI (property reference)

    def source(channel: Channel) -> Any:
        kind, _, value = channel.source.partition(":")
        return params[value] if kind == "param" else outputs[channel.source]

    report = PropertyFile(name=GATE.property_file, output_name=GATE.report_output, path=GATE.report_file)
    metric = JsonGet(step_name=GATE.report_step, property_file=report, json_path=GATE.metric)
    baseline = JsonGet(step_name=GATE.report_step, property_file=report, json_path=GATE.baseline)
    processing_image = framework_image(region, "training")
    token_values = argument_values(cfg, bucket, region)

    graph = steps_for(cfg)
    for spec in graph:
        if spec.kind == "processing":
            assert spec.script is not None
            spark = spec is SPARK_TRAIN
            processor = Processor(
                role=role_arn,
                image_uri=spark_image(region) if spark else processing_image,
                instance_count=cfg.spark_instance_count if spark else 1,
                instance_type=cfg.spark_instance_type if spark else params[PROCESSING_TYPE_PARAM],
                entrypoint=spark_entrypoint(spec.script) if spark else processing_entrypoint(spec.script),
                base_job_name=f"{cfg.prefix}-{'spark' if spark else spec.name.lower()}",
                sagemaker_session=session,
                output_kms_key=kms_key_arn,
                volume_kms_key=kms_key_arn,
                env={"OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
                | ({"RECSYS_SPARK_CONTAINER": "1"} if spark else {}),
            )
            inputs = [
                ProcessingInput(
                    source=code_uri, destination=f"{PROCESSING_ROOT}/{CODE_CHANNEL}", input_name=CODE_CHANNEL
                )
            ]
            inputs += [
                ProcessingInput(source=source(c), destination=c.container_path, input_name=c.name) for c in spec.inputs
            ]
            outs = [
                ProcessingOutput(
                    source=c.container_path,
                    destination=f"s3://{bucket}/{c.destination}" if c.destination else out_uri(spec.name, c.name),
                    output_name=c.name,
                    # Spark's event log is written while the job runs: upload it as it grows (and on a failure)
                    s3_upload_mode="Continuous" if spark and c.container_path == SPARK_EVENTS_DIR else "EndOfJob",
                )
                for c in spec.outputs
            ]
            arguments = [a for c in (*spec.inputs, *spec.outputs) for a in (c.flag, c.container_path)]
            arguments += step_arguments(spec, token_values | {"execution_id": ExecutionVariables.PIPELINE_EXECUTION_ID})
            property_files = [report] if spec.name == GATE.report_step else None
            built[spec.name] = ProcessingStep(
                spec.name,
                step_args=processor.run(inputs=inputs, outputs=outs, arguments=arguments),
                property_files=property_files,
                description=spec.description,
            )
            for c in spec.outputs:
                outputs[f"{spec.name}.{c.name}"] = (
                    built[spec.name].properties.ProcessingOutputConfig.Outputs[c.name].S3Output.S3Uri
                )
        elif spec.kind == "training":
            from sagemaker.inputs import TrainingInput

            assert spec.script is not None
            estimator = PyTorch(
                # The settings choose the processor: a GPU instance type gets the image's GPU build (the SDK
                # would derive it from the parameter's default too; explicit, so the definition says so).
                image_uri=framework_image(region, "training", gpu=cfg.training_on_gpu),
                entry_point=spec.script,
                source_dir=code_uri,
                framework_version=FRAMEWORK_VERSION,
                py_version=PY_VERSION,
                role=role_arn,
                instance_count=1,
                instance_type=params[TRAINING_TYPE_PARAM],
                output_path=out_uri(spec.name, "model"),
                base_job_name=f"{cfg.prefix}-train",
                hyperparameters=dict(TRAINING_HYPERPARAMETERS),
                sagemaker_session=session,
                output_kms_key=kms_key_arn,
                volume_kms_key=kms_key_arn,
                disable_profiler=True,
                debugger_hook_config=False,
                environment={"OPENBLAS_NUM_THREADS": "1"},
            )
            channels = {c.name: TrainingInput(source(c)) for c in spec.inputs}
            built[spec.name] = TrainingStep(
                spec.name, step_args=estimator.fit(inputs=channels), description=spec.description
            )
            outputs[f"{spec.name}.model"] = built[spec.name].properties.ModelArtifacts.S3ModelArtifacts
        elif spec.kind == "register":
            channel = {c.name: c for c in spec.inputs}
            model = Model(
                image_uri=framework_image(region, "inference"),
                model_data=Join(on="/", values=[source(channel["model"]), MODEL_ARCHIVE]),
                role=role_arn,
                sagemaker_session=session,
                env=serving_environment(region, bucket),
            )
            report_uri = Join(on="/", values=[source(channel["evaluation"]), GATE.report_file])
            step_args = model.register(
                content_types=list(CONTENT_TYPES),
                response_types=list(CONTENT_TYPES),
                inference_instances=[cfg.endpoint_instance_type],
                transform_instances=[cfg.transform_instance_type],
                model_package_group_name=cfg.model_package_group,
                approval_status=params[APPROVAL_PARAM],
                model_metrics=ModelMetrics(
                    model_statistics=MetricsSource(content_type="application/json", s3_uri=report_uri)
                ),
                description=spec.description,
            )
            built[spec.name] = ModelStep(spec.name, step_args=step_args)
        elif spec.kind == "fail":
            built[spec.name] = FailStep(
                spec.name,
                description=spec.description,
                error_message=Join(
                    on=" ",
                    values=[
                        "Quality gate failed: ndcg_at_10",
                        metric,
                        "must be >=",
                        params[THRESHOLD_PARAM],
                        "and > popularity baseline",
                        baseline,
                    ],
                ),
            )
    from sagemaker.workflow.conditions import ConditionLessThan, ConditionLessThanOrEqualTo

    conditions = {
        "GreaterThanOrEqualTo": ConditionGreaterThanOrEqualTo,
        "GreaterThan": ConditionGreaterThan,
        "LessThanOrEqualTo": ConditionLessThanOrEqualTo,
        "LessThan": ConditionLessThan,
    }
    operands = {"metric": metric, "baseline": baseline, "threshold": params[GATE.threshold_parameter]}
    for spec in graph:  # conditions last: their branches must exist
        if spec.kind == "condition":
            built[spec.name] = ConditionStep(
                spec.name,
                description=spec.description,
                conditions=[
                    conditions[kind](left=operands[left], right=operands[right])
                    for kind, left, right in GATE.conditions
                ],
                if_steps=[built[n] for n in spec.if_steps],
                else_steps=[built[n] for n in spec.else_steps],
            )
    branch_steps = {n for s in graph for n in (*s.if_steps, *s.else_steps)}
    return Pipeline(
        name=cfg.pipeline_name,
        parameters=list(params.values()),
        steps=[built[s.name] for s in graph if s.name not in branch_steps],
        sagemaker_session=session,
        pipeline_experiment_config=None,  # no Experiments/Trials: the role need not manage them
    )


#: Credentials and region for the SDK's session set-up inside moto (never a real account).
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "definition-only",
    "AWS_SECRET_ACCESS_KEY": "definition-only",
    "AWS_SESSION_TOKEN": "definition-only",
    "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
}
_DROP_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS")


@contextmanager
def _offline(region: str) -> Iterator[None]:
    """moto's in-process mock with fake credentials: the SDK's set-up calls never leave the process."""
    from moto import mock_aws

    saved = dict(os.environ)
    # The SDK narrates what it does (telemetry notice, popped job names, a bucket it "creates" in
    # moto, found credentials): none of it is the user's business when only a definition is made.
    loggers = {name: logging.getLogger(name) for name in ("sagemaker", "botocore", "boto3")}
    levels = {name: lg.level for name, lg in loggers.items()}
    try:
        for key in _DROP_ENV:
            os.environ.pop(key, None)
        os.environ.update({**_FAKE_ENV, "AWS_DEFAULT_REGION": region, "AWS_REGION": region})
        for lg in loggers.values():
            lg.setLevel(logging.ERROR)
        with mock_aws(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for name, lg in loggers.items():
            lg.setLevel(levels[name])
        os.environ.clear()
        os.environ.update(saved)


def definition_json(
    cfg: Config, *, role_arn: str, bucket: str, code_uri: str, region: str, kms_key_arn: str | None = None
) -> str:
    """The pipeline definition JSON, produced offline (no credentials, no network, no uploads)."""
    with _offline(region):
        pipeline = build_pipeline(
            cfg, role_arn=role_arn, bucket=bucket, code_uri=code_uri, region=region, kms_key_arn=kms_key_arn
        )
        definition = pipeline.definition()
    return json.dumps(json.loads(definition), indent=None, sort_keys=True, separators=(",", ":"))
