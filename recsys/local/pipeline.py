"""The training pipeline run locally: the same step specs (``definition.STEPS``), the same scripts.

Each processing/training step runs its ``sagemaker_src`` script as a subprocess with SageMaker's
layout recreated under ``<workdir>/pipeline/<execution_id>/<step>/`` (``processing/<channel>`` for
processing jobs; ``input/data/<channel>``, ``model``, ``output/data`` plus the ``SM_*`` variables
for training). Inputs are downloaded from and outputs uploaded to the moto S3 at the same
``s3://<destination>/pipeline/<execution>/<step>/<channel>`` locations the SageMaker pipeline
uses, the model as ``model.tar.gz``. The quality gate is :func:`definition.gate_passes` with the
threshold from the same pipeline parameter; on pass the model package is registered in moto's
SageMaker with the same container, metrics and approval status as the register step.

Re-running is safe (see ``pipeline_steps/README.md``, "Interrupted runs"): every execution writes
under its own ``pipeline/<execution_id>/`` prefix; a step starts from an empty local folder and
replaces its S3 output prefix; and a model whose training fingerprint (training data, test data,
hyperparameters, ``sagemaker_src`` code) is already registered in the group is not registered again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from pipeline_steps.definition import (
    APPROVAL_PARAM,
    CODE_CHANNEL,
    CONTENT_TYPES,
    GATE,
    MODEL_ARCHIVE,
    PROCESSING_ROOT,
    SOURCE_DIR,
    SPARK_TRAIN,
    STEPS,
    TRAIN,
    TRAINING_HYPERPARAMETERS,
    StepSpec,
    argument_values,
    framework_image,
    gate_passes,
    json_path_get,
    output_prefix,
    pack_source,
    parameter_specs,
    serving_environment,
    step,
    step_arguments,
)
from recsys.local.moto_server import LocalAws
from recsys.local.provision import LocalResources
from recsys.local.s3io import split_s3_uri
from settings.config import PIPELINE_PREFIX, Config

STDERR_TAIL_LINES = 25
#: CustomerMetadataProperties key of a registered package: what it was trained from (see training_fingerprint).
FINGERPRINT_KEY = "training-fingerprint"
#: Job environment that says "you are in SageMaker's container" (spark_train.py then leaves the master, memory and
#: event log to smspark-submit, which the local run has no equivalent of): kept out of the local processes.
CONTAINER_ONLY_ENV = frozenset({"RECSYS_SPARK_CONTAINER"})


class PipelineStepError(RuntimeError):
    """A step's script exited non-zero; the message names the step and ends with its stderr."""


class StepRun(NamedTuple):
    name: str
    status: str  # "Succeeded" or "Failed", as SageMaker reports step statuses
    seconds: float


@dataclass
class LocalPipelineResult:
    execution_id: str
    status: str  # "Succeeded", or "Failed" when the quality gate stopped the run
    steps: list[StepRun] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    passed_gate: bool = False
    gate_message: str = ""
    model_dir: Path | None = None  # the unpacked model artefacts (model.json, arrays.npz)
    model_data_uri: str = ""  # the training output, s3://.../TrainModel/model/model.tar.gz
    packaged_model_uri: str | None = None  # the registered, deployable archive (model + code/)
    evaluation_uri: str = ""  # s3://.../evaluation.json
    model_package_arn: str | None = None
    approval_status: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    training_fingerprint: str = ""  # sha256 of what the model was trained from (see training_fingerprint)
    registration: str | None = None  # "created", or "already registered" when the fingerprint was found


def new_execution_id() -> str:
    """Sortable and unique: a UTC timestamp plus a random suffix."""
    return f"local-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


# ---- S3 <-> local directories, as SageMaker moves channel data -------------------------------


def download(aws: LocalAws, uri: str, dest: Path) -> int:
    """Every object under the S3 prefix ``uri`` into ``dest`` (relative keys kept), or one object."""
    bucket, key = split_s3_uri(uri)
    s3 = aws.client("s3")
    prefix = key if key.endswith("/") else f"{key}/"
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
        if not o["Key"].endswith("/")
    ]
    dest.mkdir(parents=True, exist_ok=True)
    if not keys:  # a single object (e.g. model.tar.gz) lands in dest under its own name
        target = dest / key.rsplit("/", 1)[-1]
        try:
            s3.download_file(bucket, key, str(target))
        except ClientError as exc:
            raise FileNotFoundError(f"nothing at {uri}") from exc
        return 1
    for k in keys:
        target = dest / k[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, k, str(target))
    return len(keys)


def upload(aws: LocalAws, src: Path, uri: str) -> int:
    """Every file under ``src`` to the S3 prefix ``uri`` (what a processing output does at job end).

    The prefix ends up holding exactly these files: objects left there by an interrupted earlier
    attempt of the same execution are deleted after the upload, so a retried step never mixes outputs.
    """
    bucket, key = split_s3_uri(uri)
    prefix = key.rstrip("/")
    s3 = aws.client("s3")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    written = {f"{prefix}/{path.relative_to(src).as_posix()}" for path in files}
    for path in files:
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(src).as_posix()}")
    stale = [
        {"Key": o["Key"]}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for o in page.get("Contents", [])
        if o["Key"] not in written
    ]
    if stale:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": stale, "Quiet": True})
    return len(files)


def _file_digests(root: Path) -> list[tuple[str, str]]:
    return [
        (p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def training_fingerprint(channels: Mapping[str, Path], hyperparameters: Mapping[str, str], code: Path) -> str:
    """sha256 of what a model is trained from: the channels' files, the hyperparameters and the code.

    Training is seeded, so the same fingerprint means the same model: the register step uses it to
    tell a re-run of the same training (not registered again) from a new model (a new version).
    """
    payload = {
        "channels": {name: _file_digests(path) for name, path in sorted(channels.items())},
        "hyperparameters": dict(sorted(hyperparameters.items())),
        "code": _file_digests(code),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def pack_model(model_dir: Path, archive: Path) -> Path:
    """``model.tar.gz`` of the model directory's contents, as SageMaker packs ``/opt/ml/model``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    return archive


# ---- running one script ---------------------------------------------------------------------


def run_script(
    spec: StepSpec, args: list[str], env: Mapping[str, str], log_dir: Path, script_dir: Path = SOURCE_DIR
) -> None:
    """Run ``sagemaker_src/<script>`` as a process; raise :class:`PipelineStepError` if it fails."""
    assert spec.script is not None
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(script_dir / spec.script), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    (log_dir / "stdout.log").write_text(proc.stdout)
    (log_dir / "stderr.log").write_text(proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-STDERR_TAIL_LINES:]) or "(no stderr)"
        raise PipelineStepError(
            f"pipeline step {spec.name} ({spec.script}) failed with exit code {proc.returncode}; "
            f"logs in {log_dir}; stderr tail:\n{tail}"
        )


def unpack_source(dest: Path) -> Path:
    """The jobs' code as SageMaker gets it: :func:`definition.pack_source`'s archive, unpacked.

    Running the scripts from here (not from ``sagemaker_src/``) means a module the archive lacks fails
    locally exactly as it would fail on AWS.
    """
    shutil.rmtree(dest, ignore_errors=True)
    archive = pack_source(dest)
    src = dest / "src"
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # the filter exists from 3.11.4
    with tarfile.open(archive) as tar:
        tar.extractall(src, **safe)  # noqa: S202 - the archive was just built from the repository
    return src


# ---- the runner -----------------------------------------------------------------------------


@dataclass
class _Run:
    cfg: Config
    aws: LocalAws
    bucket: str
    root: Path
    execution_id: str
    params: dict[str, Any]
    env: dict[str, str]
    hyperparameters: dict[str, str]
    script_dir: Path  # the unpacked source archive: the files the SageMaker jobs run
    tokens: dict[str, str]  # values of the {name} tokens in StepSpec.arguments
    outputs: dict[str, str] = field(default_factory=dict)  # "<Step>.<channel>" -> S3 URI
    fingerprint: str = ""  # set by the training step
    #: ``Steps.<Step>.PropertyFiles.<Name>`` -> the S3 URI of the file, as the step's ``PropertyFiles`` declare
    property_files: dict[str, str] = field(default_factory=dict)

    def source_uri(self, source: str) -> str:
        kind, _, value = source.partition(":")
        return str(self.params[value]) if kind == "param" else self.outputs[source]

    def out_uri(self, spec: StepSpec, channel: str) -> str:
        fixed = next((c.destination for c in spec.outputs if c.name == channel and c.destination), "")
        if fixed:  # a stable place that Glue tables read (Channel.destination), as on AWS
            return f"s3://{self.bucket}/{fixed}"
        return output_prefix(self.bucket, self.execution_id, spec.name, channel)

    def fetch(self, spec: StepSpec, channel: str, uri: str, dest: Path) -> None:
        """Download a channel's data as SageMaker does before the job starts; nothing there fails the step."""
        try:
            download(self.aws, uri, dest)
        except FileNotFoundError as exc:
            message = f"pipeline step {spec.name}: no data for input channel '{channel}' at {uri}"
            raise PipelineStepError(message) from exc

    def fresh_step_dir(self, spec: StepSpec) -> Path:
        """Each job starts in an empty container: nothing left by an interrupted attempt is re-uploaded."""
        shutil.rmtree(self.root / spec.name, ignore_errors=True)
        return self.root / spec.name

    def processing(self, spec: StepSpec) -> None:
        base = self.fresh_step_dir(spec) / "processing"
        args: list[str] = []
        for c in spec.inputs:
            self.fetch(spec, c.name, self.source_uri(c.source), base / c.name)
            args += [c.flag, str(base / c.name)]
        for c in spec.outputs:
            (base / c.name).mkdir(parents=True, exist_ok=True)
            args += [c.flag, str(base / c.name)]
        args += [str(a) for a in step_arguments(spec, self.tokens)]
        run_script(spec, args, self.env, self.root / spec.name / "logs", self.script_dir)
        for c in spec.outputs:
            upload(self.aws, base / c.name, self.out_uri(spec, c.name))
            self.outputs[f"{spec.name}.{c.name}"] = self.out_uri(spec, c.name)

    def local_path(self, base: Path, container_path: str) -> Path:
        return base / Path(container_path).relative_to(PROCESSING_ROOT)

    def processing_job(self, spec: StepSpec, node: Mapping[str, Any], template: TemplatePipeline) -> None:
        """A processing step as the template's job request says: its inputs (the code aside: the unpacked
        archive is already here), outputs and container arguments, with /opt/ml/processing under the step's
        folder. Outputs land where the request's S3 URIs say and are what later steps' references read."""
        base = self.fresh_step_dir(spec) / "processing"
        args = node["Arguments"]
        for item in args.get("ProcessingInputs", []):
            if item["InputName"] == CODE_CHANNEL:
                continue
            where = f"{spec.name} ProcessingInputs['{item['InputName']}'].S3Uri"
            uri = str(template.resolve(item["S3Input"]["S3Uri"], self, where))
            self.fetch(spec, item["InputName"], uri, self.local_path(base, item["S3Input"]["LocalPath"]))
        outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            self.local_path(base, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        argv = [str(template.resolve(a, self, f"{spec.name} ContainerArguments"))
                for a in args["AppSpecification"].get("ContainerArguments", [])]
        argv = [str(self.local_path(base, a)) if a.startswith(PROCESSING_ROOT + "/") else a for a in argv]
        if spec is SPARK_TRAIN:  # what the model is trained from, as the training step fingerprints it
            self.fingerprint = training_fingerprint({c.name: self.local_path(base, c.container_path)
                                                     for c in spec.inputs}, {}, SOURCE_DIR)
        env = self.env | {k: v for k, v in template.resolve_all(args.get("Environment", {}), self,
                                                                 f"{spec.name} Environment").items()
                           if k not in CONTAINER_ONLY_ENV}  # fmt: skip
        run_script(spec, argv, env, self.root / spec.name / "logs", self.script_dir)
        for item in outputs:
            uri = str(template.resolve(item["S3Output"]["S3Uri"], self, f"{spec.name} Outputs['{item['OutputName']}']"))
            upload(self.aws, self.local_path(base, item["S3Output"]["LocalPath"]), uri)
            self.outputs[f"{spec.name}.{item['OutputName']}"] = uri
        for prop in node.get("PropertyFiles", []):  # what a condition's JsonGet reads, as the step declares it
            output = self.outputs.get(f"{spec.name}.{prop['OutputName']}")
            if output is None:
                raise PipelineStepError(f"pipeline step {spec.name} PropertyFiles: no output {prop['OutputName']!r}")
            self.property_files[f"Steps.{spec.name}.PropertyFiles.{prop['PropertyFileName']}"] = (
                f"{output}/{prop['FilePath']}"
            )

    def training(self, spec: StepSpec, node: Mapping[str, Any] | None = None,
                 template: TemplatePipeline | None = None) -> Path:  # fmt: skip
        base = self.fresh_step_dir(spec)
        env = dict(self.env)
        channels = {c.name: c.source for c in spec.inputs}
        if node is not None and template is not None:  # the job request's channels, S3 URIs and environment
            channels = {c["ChannelName"]: str(template.resolve(c["DataSource"]["S3DataSource"]["S3Uri"], self,
                                                               f"{spec.name} InputDataConfig['{c['ChannelName']}']"))
                        for c in node["Arguments"]["InputDataConfig"]}  # fmt: skip
            env |= template.resolve_all(node["Arguments"].get("Environment", {}), self, f"{spec.name} Environment")
        for name, source in channels.items():
            channel_dir = base / "input" / "data" / name
            uri = source if source.startswith("s3://") else self.source_uri(source)
            self.fetch(spec, name, uri, channel_dir)
            env[f"SM_CHANNEL_{name.upper()}"] = str(channel_dir)
        self.fingerprint = training_fingerprint(
            {name: base / "input" / "data" / name for name in channels}, self.hyperparameters, SOURCE_DIR
        )
        model_dir, output_dir = base / "model", base / "output" / "data"
        model_dir.mkdir(parents=True, exist_ok=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        (base / "input" / "config").mkdir(parents=True, exist_ok=True)  # as SageMaker writes the job's request
        (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(self.hyperparameters, indent=1))
        env.update(
            {
                "SM_MODEL_DIR": str(model_dir),
                "SM_OUTPUT_DATA_DIR": str(output_dir),
                "SM_HPS": json.dumps(self.hyperparameters),
                "TRAINING_JOB_NAME": f"{self.cfg.prefix}-train-{self.execution_id}",
            }
        )
        args = [a for k, v in self.hyperparameters.items() for a in (f"--{k}", str(v))]
        run_script(spec, args, env, base / "logs", self.script_dir)
        archive = pack_model(model_dir, base / "output" / MODEL_ARCHIVE)
        model_prefix = self.out_uri(spec, "model")
        if node is not None and template is not None:  # AWS adds <job name>/output/ below it; here it is flat
            model_prefix = str(template.resolve(node["Arguments"]["OutputDataConfig"]["S3OutputPath"], self,
                                                f"{spec.name} OutputDataConfig.S3OutputPath"))
        uri = f"{model_prefix}/{MODEL_ARCHIVE}"
        bucket, key = split_s3_uri(uri)
        self.aws.client("s3").upload_file(str(archive), bucket, key)
        upload(self.aws, output_dir, self.out_uri(spec, "output"))
        self.outputs[f"{spec.name}.model"] = uri
        return model_dir


def _ensure_group(aws: LocalAws, cfg: Config, group: str | None = None) -> None:
    sm = aws.client("sagemaker")
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group or cfg.model_package_group)
    except ClientError:
        sm.create_model_package_group(
            ModelPackageGroupName=group or cfg.model_package_group,
            ModelPackageGroupDescription=f"{cfg.prefix} recommender models (pipeline {cfg.pipeline_name})",
        )


def find_registered(aws: LocalAws, cfg: Config, fingerprint: str, group: str | None = None) -> dict[str, Any] | None:
    """The group's package (newest first) registered with this training fingerprint, if any."""
    sm = aws.client("sagemaker")
    pages = sm.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group or cfg.model_package_group, SortBy="CreationTime", SortOrder="Descending"
    )
    for page in pages:
        for summary in page.get("ModelPackageSummaryList", []):
            package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            if (package.get("CustomerMetadataProperties") or {}).get(FINGERPRINT_KEY) == fingerprint:
                return package
    return None


def create_model_package(aws: LocalAws, request: Mapping[str, Any]) -> str:
    """Send the definition's CreateModelPackage request as the pipeline does; the new package's ARN."""
    return aws.client("sagemaker").create_model_package(**request)["ModelPackageArn"]


def register_model(
    aws: LocalAws,
    cfg: Config,
    *,
    model_data_uri: str,
    evaluation_uri: str,
    approval: str,
    fingerprint: str = "",
) -> str:
    """The register step's CreateModelPackage call (same container, metrics and approval); returns the ARN.

    ``fingerprint`` (see :func:`training_fingerprint`) is kept as customer metadata on the package.
    """
    _ensure_group(aws, cfg)
    container = {
        "Image": framework_image(aws.region, "inference"),
        "ModelDataUrl": model_data_uri,
        "Environment": serving_environment(aws.region, model_data_uri.removeprefix("s3://").split("/", 1)[0]),
    }
    return aws.client("sagemaker").create_model_package(
        ModelPackageGroupName=cfg.model_package_group,
        ModelPackageDescription=step("RegisterModel").description,
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": [cfg.endpoint_instance_type],
            "SupportedTransformInstanceTypes": [cfg.transform_instance_type],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}}},
        ModelApprovalStatus=approval,
        **({"CustomerMetadataProperties": {FINGERPRINT_KEY: fingerprint}} if fingerprint else {}),
    )["ModelPackageArn"]


#: A SageMaker pipeline step type -> the local StepSpec kind that runs it.
_STEP_KINDS = {"Processing": "processing", "Training": "training", "Condition": "condition",
               "RegisterModel": "register", "Fail": "fail"}  # fmt: skip
_CONDITIONS = {
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
    "LessThan": lambda a, b: a < b,
    "Equals": lambda a, b: a == b,
}
_SYMBOLS = {"GreaterThanOrEqualTo": ">=", "GreaterThan": ">", "LessThanOrEqualTo": "<=", "LessThan": "<",
            "Equals": "=="}  # fmt: skip


def _template_script(template_step: Mapping[str, Any]) -> str | None:
    """The script a step's job runs: a processing container's ``$0`` argument, a training job's program."""
    args = template_step.get("Arguments", {})
    if template_step["Type"] == "Processing":
        return args["AppSpecification"]["ContainerEntrypoint"][-1]
    if template_step["Type"] == "Training":
        return json.loads(args["HyperParameters"]["sagemaker_program"])
    return None


@dataclass
class TemplatePipeline:
    """The pipeline definition the ml stack synthesized (``AWS::SageMaker::Pipeline``), as the local run reads it."""

    path: Path
    sha256: str
    definition: dict[str, Any]

    @classmethod
    def load(cls, path: Path, pipeline_name: str) -> TemplatePipeline:
        doc = json.loads(Path(path).read_text())
        for resource in doc["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::SageMaker::Pipeline" and props.get("PipelineName") == pipeline_name:
                body = props["PipelineDefinition"]["PipelineDefinitionBody"]
                digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
                text = body["Fn::Sub"][0] if isinstance(body, dict) else body
                return cls(Path(path), digest, json.loads(text))  # ${Var}s stay: resolve() fills the ones jobs use
        raise PipelineStepError(f"{path}: no pipeline {pipeline_name!r}")

    def spec(self, template_step: Mapping[str, Any]) -> StepSpec:
        """The local spec that runs a template step; the step collection's ``<name>-RegisterModel`` included."""
        name, kind = template_step["Name"], _STEP_KINDS.get(template_step["Type"])
        if kind is None:
            raise PipelineStepError(f"pipeline step {name}: type {template_step['Type']} is not run locally")
        candidates = [n for n in (name, name.split("-", 1)[0]) if n in {s.name for s in STEPS}]
        if not candidates:
            raise PipelineStepError(f"pipeline step {name} ({template_step['Type']}) has no local spec")
        spec = step(candidates[0])
        if spec.name == TRAIN and kind == SPARK_TRAIN.kind:  # training_engine spark/auto: the Spark step
            spec = SPARK_TRAIN
        if spec.kind != kind:
            raise PipelineStepError(f"pipeline step {name}: {template_step['Type']} in the template, {spec.kind} here")
        script = _template_script(template_step)
        if script is not None and script != spec.script:
            raise PipelineStepError(f"pipeline step {name}: the template runs {script}, the local spec {spec.script}")
        return spec

    def resolve(self, node: Any, run: _Run, where: str = "") -> Any:
        """A request's value as SageMaker fills it in: ``Get`` of parameters, the execution id, earlier steps' outputs
        (``ProcessingOutputConfig.Outputs['x'].S3Output.S3Uri``, ``ModelArtifacts``) and property files
        (``Std:JsonGet``), ``Std:Join``, and the stack's ``${DataBucket}``. Anything else is refused with the step
        and field (``where``), never passed through."""
        refused = PipelineStepError(f"pipeline step {where or '?'}: value {json.dumps(node)[:120]} "
                                    "is not interpreted locally")  # fmt: skip
        if isinstance(node, str):
            return _substitute(node, run.bucket, where)
        if isinstance(node, bool | int | float):
            return node
        if isinstance(node, dict) and set(node) == {"Std:Join"}:
            join = node["Std:Join"]
            return join["On"].join(str(self.resolve(v, run, where)) for v in join["Values"])
        if isinstance(node, dict) and set(node) == {"Std:JsonGet"}:
            ref = node["Std:JsonGet"].get("PropertyFile", {})
            uri = run.property_files.get(ref.get("Get", "") if isinstance(ref, dict) else "")
            if uri is None:  # only files a step's PropertyFiles declared can be read
                raise refused
            try:
                return json_path_get(_read_json(run, uri), node["Std:JsonGet"]["Path"])
            except KeyError as exc:
                raise PipelineStepError(f"pipeline step {where}: {exc.args[0]} ({uri})") from None
        if isinstance(node, dict) and set(node) == {"Get"}:
            ref = node["Get"]
            if ref == "Execution.PipelineExecutionId":
                return run.execution_id
            if ref.startswith("Parameters.") and ref.removeprefix("Parameters.") in run.params:
                return run.params[ref.removeprefix("Parameters.")]
            output = re.fullmatch(r"Steps\.(\w+)\.ProcessingOutputConfig\.Outputs\['(\w+)'\]\.S3Output\.S3Uri", ref)
            if output and f"{output[1]}.{output[2]}" in run.outputs:
                return run.outputs[f"{output[1]}.{output[2]}"]
            model = re.fullmatch(r"Steps\.(\w+)\.ModelArtifacts\.S3ModelArtifacts", ref)
            if model and f"{model[1]}.model" in run.outputs:
                return run.outputs[f"{model[1]}.model"]
        raise refused

    def resolve_all(self, node: Any, run: _Run, where: str) -> Any:
        """:meth:`resolve` applied through a whole request (dicts that are not expressions are walked)."""
        if isinstance(node, list):
            return [self.resolve_all(v, run, f"{where}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, dict) and not ({"Get", "Std:Join", "Std:JsonGet"} & set(node)):
            return {k: self.resolve_all(v, run, f"{where}.{k}") for k, v in node.items()}
        return self.resolve(node, run, where)

    def parameter_defaults(self, bucket: str) -> dict[str, Any]:
        """The definition's ``Parameters``: name -> ``DefaultValue`` (typed as declared, ``${DataBucket}`` filled)."""
        types: dict[str, Callable[[Any], Any]] = {"String": str, "Float": float, "Integer": int, "Boolean": bool}
        out: dict[str, Any] = {}
        for p in self.definition.get("Parameters", []):
            if p.get("Type") not in types or "DefaultValue" not in p:
                raise PipelineStepError(f"pipeline parameter {p.get('Name')}: {json.dumps(p)[:120]} is not run locally")
            value = p["DefaultValue"]
            out[p["Name"]] = types[p["Type"]](_substitute(value, bucket, f"Parameters.{p['Name']}")
                                              if isinstance(value, str) else value)  # fmt: skip
        return out

    def all_steps(self) -> list[dict[str, Any]]:
        """Every step, the condition steps' branches included."""
        found, queue = [], list(self.definition["Steps"])
        while queue:
            node = queue.pop(0)
            found.append(node)
            if node["Type"] == "Condition":
                queue += [*node["Arguments"].get("IfSteps", []), *node["Arguments"].get("ElseSteps", [])]
        return found

    def hyperparameters(self, run: _Run) -> dict[str, str]:
        """The training job request's ``HyperParameters`` (the SDK JSON-encodes each value), without the framework's
        own ``sagemaker_*`` keys (the local run starts the program itself)."""
        out: dict[str, str] = {}
        for node in (n for n in self.all_steps() if n["Type"] == "Training"):
            for key, raw in node["Arguments"].get("HyperParameters", {}).items():
                if key.startswith("sagemaker_"):
                    continue
                value = self.resolve(raw, run, f"{node['Name']} HyperParameters.{key}")
                try:
                    decoded = json.loads(value) if isinstance(value, str) else value
                except json.JSONDecodeError:
                    decoded = value
                out[key] = decoded if isinstance(decoded, str) else json.dumps(decoded)
        return out

    def condition(self, template_step: Mapping[str, Any], run: _Run) -> tuple[bool, str, list[str]]:
        """The template's own condition: whether all of its ``Conditions`` hold, a sentence saying each comparison,
        and the property files it read (``Std:JsonGet``; ``Get`` of parameters; literals)."""
        name, read = template_step["Name"], []
        parts, passed = [], True
        for i, c in enumerate(template_step["Arguments"]["Conditions"]):
            kind = c.get("Type")
            if kind not in _CONDITIONS or not {"LeftValue", "RightValue"} <= set(c):
                raise PipelineStepError(f"pipeline step {name} Conditions[{i}]: {json.dumps(c)[:120]} "
                                        "is not interpreted locally")  # fmt: skip
            sides = []
            for side in ("LeftValue", "RightValue"):
                node = c[side]
                value = float(self.resolve(node, run, f"{name} Conditions[{i}].{side}"))
                if isinstance(node, dict) and "Std:JsonGet" in node:
                    label = node["Std:JsonGet"]["Path"]
                    read.append(run.property_files[node["Std:JsonGet"]["PropertyFile"]["Get"]])
                elif isinstance(node, dict):
                    label = str(node["Get"]).removeprefix("Parameters.")
                else:
                    label = "value"
                sides.append((label, value))
            holds = _CONDITIONS[kind](sides[0][1], sides[1][1])
            passed = passed and holds
            parts.append(f"{sides[0][0]} {sides[0][1]:.4f} {_SYMBOLS[kind]} {sides[1][0]} {sides[1][1]:.4f}"
                         f"{'' if holds else ' (no)'}")  # fmt: skip
        return passed, f"quality gate {'passed' if passed else 'failed'}: {'; '.join(parts)}", read


def _substitute(text: str, bucket: str, where: str) -> str:
    """The stack's ``Fn::Sub`` variables a job's data can use locally: ``${DataBucket}``; any other is refused."""

    def one(match: re.Match[str]) -> str:
        if match[1] != "DataBucket":
            raise PipelineStepError(f"pipeline step {where or '?'}: ${{{match[1]}}} in {text[:120]!r} "
                                    "is not interpreted locally")  # fmt: skip
        return bucket

    return re.sub(r"\$\{([^}]*)\}", one, text)


def _read_json(run: _Run, uri: str) -> Any:
    bucket, key = split_s3_uri(uri)
    try:
        return json.loads(run.aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        raise PipelineStepError(f"property file {uri} is missing") from exc


def run_pipeline_locally(
    cfg: Config,
    aws: LocalAws,
    res: LocalResources,
    workdir: Path,
    progress: Callable[[str], None] = print,
    *,
    parameters: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, str] | None = None,
    execution_id: str | None = None,
    template: TemplatePipeline | None = None,
) -> LocalPipelineResult:
    """Walk :data:`definition.STEPS` in order against the local AWS; see the module docstring.

    ``parameters`` override pipeline parameters by name (as ``StartPipelineExecution`` would);
    ``hyperparameters`` are extra train.py flags (tests use them to keep training short).
    Raises :class:`PipelineStepError` when a script fails; a failed quality gate is a normal
    result with ``status == "Failed"`` and nothing registered.
    ``template``: the synthesized pipeline definition; its steps, their order, the condition's branches and
    the condition itself are then taken from it (each step run by the local spec of that name), so a step the
    template lacks is not run locally either.
    """
    if template is None:
        defaults = {p.name: p.default for p in parameter_specs(cfg, res.destination_bucket)}
    else:  # the definition's Parameters, as StartPipelineExecution fills the ones not given
        defaults = template.parameter_defaults(res.destination_bucket)
    unknown = sorted(set(parameters or {}) - set(defaults))
    if unknown:
        raise ValueError(f"unknown pipeline parameter(s) {unknown}; known: {sorted(defaults)}")
    params = defaults | dict(parameters or {})
    execution_id = execution_id or new_execution_id()
    root = Path(workdir) / PIPELINE_PREFIX / execution_id
    root.mkdir(parents=True, exist_ok=True)
    env = aws.subprocess_env() | {"OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    run = _Run(
        cfg,
        aws,
        res.destination_bucket,
        root,
        execution_id,
        params,
        env,
        {**TRAINING_HYPERPARAMETERS, **(hyperparameters or {})},
        unpack_source(root / "code"),
        argument_values(cfg, res.destination_bucket, aws.region) | {"execution_id": execution_id},
    )
    if template is not None:  # the training job request's hyperparameters; ``hyperparameters`` override them
        run.hyperparameters = template.hyperparameters(run) | dict(hyperparameters or {})
    result = LocalPipelineResult(execution_id=execution_id, status="Executing", parameters=params)

    if template is None:
        branches = {n for s in STEPS for n in (*s.if_steps, *s.else_steps)}
        queue: list[Any] = [s for s in STEPS if s.name not in branches]
    else:
        queue = list(template.definition["Steps"])
        progress(f"definition from {template.path.name} (sha256 {template.sha256[:12]}): "
                 f"{', '.join(s['Name'] for s in queue)}")  # fmt: skip
    while queue:
        node = queue.pop(0)
        spec = node if template is None else template.spec(node)
        t0 = time.perf_counter()
        label = f"{spec.name:<18} {spec.kind:<10} {spec.script or '-':<18}"
        try:
            if spec.kind == "processing":
                run.processing(spec) if template is None else run.processing_job(spec, node, template)
                if spec is SPARK_TRAIN:  # the model it wrote: a folder (model.json, arrays.npz), not an archive
                    result.model_dir = run.root / TRAIN / "processing" / "model"
                    result.model_data_uri = run.outputs[f"{TRAIN}.model"]
                    result.training_fingerprint = run.fingerprint
            elif spec.kind == "training":
                result.model_dir = run.training(spec) if template is None else run.training(spec, node, template)
                result.model_data_uri = run.outputs[f"{TRAIN}.model"]
                result.training_fingerprint = run.fingerprint
            elif spec.kind == "condition" and template is None:
                # Like the PropertyFile: the report as uploaded by the evaluation step, read from S3.
                report = run.outputs[f"{GATE.report_step}.{GATE.report_output}"]
                result.evaluation_uri = f"{report}/{GATE.report_file}"
                result.evaluation = _read_json(run, result.evaluation_uri)
                threshold = float(params[GATE.threshold_parameter])
                result.passed_gate, result.gate_message = gate_passes(result.evaluation, threshold)
                queue = [step(n) for n in (spec.if_steps if result.passed_gate else spec.else_steps)] + queue
            elif spec.kind == "condition":  # the template's condition decides and says why; its branch runs next
                result.passed_gate, result.gate_message, read = template.condition(node, run)
                if read:
                    result.evaluation_uri = read[0]
                    result.evaluation = _read_json(run, read[0])
                queue = list(node["Arguments"]["IfSteps" if result.passed_gate else "ElseSteps"]) + queue
            elif spec.kind == "register" and template is not None:
                request = template.resolve_all(node["Arguments"], run, node["Name"])
                result.packaged_model_uri = request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
                group = request["ModelPackageGroupName"]
                existing = find_registered(aws, cfg, run.fingerprint, group) if run.fingerprint else None
                if existing is not None:  # the same training re-run (e.g. after an interruption)
                    result.model_package_arn = existing["ModelPackageArn"]
                    result.packaged_model_uri = existing["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
                    result.approval_status = existing.get("ModelApprovalStatus")
                    result.registration = "already registered"
                else:  # the definition's CreateModelPackage request, as the pipeline sends it
                    _ensure_group(aws, cfg, group)
                    if run.fingerprint:
                        request["CustomerMetadataProperties"] = {FINGERPRINT_KEY: run.fingerprint}
                    result.model_package_arn = create_model_package(aws, request)
                    result.approval_status = request.get("ModelApprovalStatus")
                    result.registration = "created"
            elif spec.kind == "register":
                channel = {c.name: run.source_uri(c.source) for c in spec.inputs}
                approval = str(params[APPROVAL_PARAM])
                result.packaged_model_uri = f"{channel['model']}/{MODEL_ARCHIVE}"
                existing = find_registered(aws, cfg, run.fingerprint) if run.fingerprint else None
                if existing is not None:  # the same training re-run (e.g. after an interruption)
                    result.model_package_arn = existing["ModelPackageArn"]
                    result.packaged_model_uri = existing["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
                    result.approval_status = existing.get("ModelApprovalStatus")
                    result.registration = "already registered"
                else:
                    result.model_package_arn = register_model(
                        aws,
                        cfg,
                        model_data_uri=result.packaged_model_uri,
                        evaluation_uri=f"{channel['evaluation']}/{GATE.report_file}",
                        approval=approval,
                        fingerprint=run.fingerprint,
                    )
                    result.approval_status = approval
                    result.registration = "created"
            elif spec.kind == "fail":
                result.steps.append(StepRun(spec.name, "Failed", time.perf_counter() - t0))
                result.status = "Failed"
                message = result.gate_message
                if template is not None:  # the Fail step's own ErrorMessage, as the execution reports it
                    message = str(template.resolve(node["Arguments"].get("ErrorMessage", ""), run,
                                                   f"{node['Name']} ErrorMessage")) or message  # fmt: skip
                progress(f"{label} Failed: {message}")
                return result
        except Exception:
            result.steps.append(StepRun(spec.name, "Failed", time.perf_counter() - t0))
            progress(f"{label} Failed")
            raise
        seconds = time.perf_counter() - t0
        result.steps.append(StepRun(spec.name, "Succeeded", seconds))
        detail = {
            "condition": result.gate_message,
            "register": f"{result.model_package_arn} ({result.approval_status}, {result.registration})",
        }.get(spec.kind, "")
        progress(f"{label} Succeeded {seconds:5.1f} s {detail}".rstrip())
    result.status = "Succeeded"
    return result


# ---- the training engine's report, and the single-instance path on the same split --------------------------


def engine_report(result: LocalPipelineResult, workdir: Path) -> dict[str, Any] | None:
    """What a Spark TrainModel said about its run (``spark_stages.json``: engine, seconds, stages); None when
    TrainModel was train.py's training job."""
    path = Path(workdir) / PIPELINE_PREFIX / result.execution_id / TRAIN / "processing" / "output" / "spark_stages.json"
    return json.loads(path.read_text()) if path.is_file() else None


def single_path_ndcg(result: LocalPipelineResult, workdir: Path, env: Mapping[str, str]) -> dict[str, float]:
    """train.py and evaluate.py on the run's own PrepareData split (what ``training_engine: single`` would have
    trained and scored), for the Spark path's NDCG to stand beside: ``{"ndcg_at_10", "popularity_ndcg_at_10"}``."""
    root = Path(workdir) / PIPELINE_PREFIX / result.execution_id
    split = root / "PrepareData" / "processing"
    side = root / "single-path"
    shutil.rmtree(side, ignore_errors=True)
    script_dir = root / "code" / "src"
    base = {**env, "OPENBLAS_NUM_THREADS": "1"}
    train = {**base, "SM_CHANNEL_TRAIN": str(split / "train"), "SM_MODEL_DIR": str(side / "model"),
             "SM_OUTPUT_DATA_DIR": str(side / "output")}
    for script, args, run_env in (
        ("train.py", [], train),
        ("evaluate.py", ["--model-dir", str(side / "model"), "--test-dir", str(split / "test"),
                         "--output-dir", str(side / "evaluation")], base),
    ):
        spec = StepSpec(f"single-path {script}", "processing", "", script=script)
        run_script(spec, args, run_env, side / "logs", script_dir)
    metrics = json.loads((side / "evaluation" / GATE.report_file).read_text())["metrics"]
    return {name: float(metrics[name]["value"]) for name in ("ndcg_at_10", "popularity_ndcg_at_10")}
