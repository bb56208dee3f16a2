"""Every request the synthesized templates make satisfies the AWS API model, limits included (issue 24, item 9).

The requests are those of ``tests/deployed_requests.py`` (pipeline steps and CreatePipeline, Step Functions
tasks, EventBridge rules and targets, ``Custom::AWS`` calls) with representative values for what the templates
leave open; ``tests/aws_api_model.py`` checks each against botocore's model (lengths, list sizes, ranges, enums,
patterns), which ``botocore.validate`` does not. The mutation tests show each check fails for the right reason.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from settings.config import load_project_config
from tests.api_limits.test_aws_api_model import OLD_ENTRYPOINT
from tests.aws_api_model import violations
from tests.deployed_requests import Request, UnknownShape, deployed_requests

pytestmark = pytest.mark.xdist_group("synth")

#: Requests every environment makes: a source that stopped producing them would make the check vacuous.
EXPECTED = {("sagemaker", "CreatePipeline"), ("sagemaker", "CreateProcessingJob"), ("sagemaker", "CreateTrainingJob"),
            ("sagemaker", "CreateModelPackage"), ("sagemaker", "StartPipelineExecution"),
            ("athena", "StartQueryExecution"), ("databrew", "StartJobRun"), ("cloudwatch", "PutMetricData"),
            ("events", "PutRule"), ("events", "PutTargets"), ("databrew", "PublishRecipe")}  # fmt: skip


def _requests(outdir: Path, env_name: str) -> list[Request]:
    return deployed_requests(outdir, load_project_config(env_name).region)


def _problems(requests: list[Request]) -> list[str]:
    return [f"{r.origin}: {r.service} {r.operation}: {v}" for r in requests
            for v in violations(r.service, r.operation, r.params)]  # fmt: skip


def _path_clashes(requests: list[Request]) -> list[str]:
    """Processing jobs whose inputs and outputs share a local path (or nest one in another): SageMaker refuses
    them (sagemaker-python-sdk issues 1950 and 4939), a rule the API model does not state."""
    clashes = []
    for r in requests:
        if r.operation != "CreateProcessingJob":
            continue
        paths = [i["S3Input"]["LocalPath"] for i in r.params.get("ProcessingInputs", []) if "S3Input" in i]
        paths += [o["S3Output"]["LocalPath"] for o in r.params.get("ProcessingOutputConfig", {}).get("Outputs", [])]
        dirs = [p.rstrip("/") + "/" for p in paths]
        for i, a in enumerate(dirs):
            for b in dirs[i + 1 :]:
                if a.startswith(b) or b.startswith(a):
                    clashes.append(f"{r.origin}: local paths {a.rstrip('/')} and {b.rstrip('/')}")
    return clashes


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_every_request_the_templates_make_is_within_the_api_models_limits(synth, env_name):
    outdir, _ = synth(env_name)
    requests = _requests(outdir, env_name)
    expected = EXPECTED
    if load_project_config(env_name).training_engine != "single":  # TrainModel is then a Spark processing job
        expected = EXPECTED - {("sagemaker", "CreateTrainingJob")}
    assert {(r.service, r.operation) for r in requests} >= expected
    problems = _problems(requests)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_no_processing_job_reads_and_writes_one_local_path(synth, env_name):
    outdir, _ = synth(env_name)
    clashes = _path_clashes(_requests(outdir, env_name))
    assert not clashes, "\n".join(clashes)


# ---- the checks fail when the templates are wrong -------------------------------------------


def _mutated(synth, tmp_path: Path, stack: str, change: Callable[[dict], None]) -> Path:
    """A copy of the dev assembly whose ``stack`` template went through ``change``."""
    outdir, _ = synth("dev")
    copy = tmp_path / "cdk.out"
    copy.mkdir()
    for template in outdir.glob("*.template.json"):
        shutil.copy(template, copy / template.name)
    path = copy / f"recsys-dev-{stack}.template.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return copy


def _pipeline_definition(change: Callable[[dict], None]) -> Callable[[dict], None]:
    """``change`` applied to the pipeline definition inside the ml template's ``Fn::Sub``."""

    def apply(template: dict) -> None:
        (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"]
        sub = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        definition = json.loads(sub[0])
        change(definition)
        sub[0] = json.dumps(definition)

    return apply


def _step(definition: dict, name: str) -> dict:
    steps = definition["Steps"] + [s for c in definition["Steps"] if c["Type"] == "Condition"
                                   for s in c["Arguments"]["IfSteps"] + c["Arguments"]["ElseSteps"]]  # fmt: skip
    return next(s for s in steps if s["Name"].split("-")[0] == name)


def test_a_processing_entrypoint_over_256_characters_fails_naming_the_step(synth, tmp_path):
    def old_entrypoint(definition: dict) -> None:
        _step(definition, "BatchRecommend")["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2] = OLD_ENTRYPOINT

    requests = _requests(_mutated(synth, tmp_path, "ml", _pipeline_definition(old_entrypoint)), "dev")
    assert _problems(requests) == [
        "recsys-dev-ml: pipeline recsys-dev-training, step BatchRecommend: sagemaker CreateProcessingJob: "
        "AppSpecification.ContainerEntrypoint[2] (ContainerEntrypointString): length 299 > max 256"
    ]


def test_a_transform_instance_type_outside_the_enum_fails(synth, tmp_path):
    def endpoint_type(definition: dict) -> None:
        spec = _step(definition, "RegisterModel")["Arguments"]["InferenceSpecification"]
        spec["SupportedTransformInstanceTypes"] = ["ml.c5.large"]

    (problem,) = _problems(_requests(_mutated(synth, tmp_path, "ml", _pipeline_definition(endpoint_type)), "dev"))
    assert "CreateModelPackage: InferenceSpecification.SupportedTransformInstanceTypes[0] (TransformInstanceType)" in (
        problem
    )


def test_a_package_step_writing_where_it_reads_fails(synth, tmp_path):
    def same_path(definition: dict) -> None:
        (output,) = _step(definition, "PackageModel")["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        output["S3Output"]["LocalPath"] = "/opt/ml/processing/model"

    clashes = _path_clashes(_requests(_mutated(synth, tmp_path, "ml", _pipeline_definition(same_path)), "dev"))
    assert clashes == [
        "recsys-dev-ml: pipeline recsys-dev-training, step PackageModel: local paths /opt/ml/processing/model "
        "and /opt/ml/processing/model"
    ]


def _definition_parts(template: dict) -> list:
    """The state machine's ``DefinitionString`` pieces (``Fn::Join``) in the data template."""
    (machine,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return machine["Properties"]["DefinitionString"]["Fn::Join"][1]


def _replace_in_definition(old: str, new: str) -> Callable[[dict], None]:
    def apply(template: dict) -> None:
        parts = _definition_parts(template)
        assert any(isinstance(p, str) and old in p for p in parts), old
        parts[:] = [p.replace(old, new) if isinstance(p, str) else p for p in parts]

    return apply


def test_a_state_machine_task_value_breaking_a_pattern_fails_naming_the_state(synth, tmp_path):
    """Athena's WorkGroupName has no length limit in the model, only the pattern [a-zA-Z0-9._-]{1,128}."""
    long_workgroup = _replace_in_definition('"WorkGroup":"recsys-dev-analytics"', '"WorkGroup":"' + "w" * 129 + '"')
    problems = _problems(_requests(_mutated(synth, tmp_path, "data", long_workgroup), "dev"))
    assert problems and all(
        ": athena StartQueryExecution: WorkGroup (WorkGroupName): 'wwww" in p
        and p.endswith(" does not match pattern '[a-zA-Z0-9._-]{1,128}'")
        for p in problems
    )
    assert any(p.startswith("recsys-dev-data: state machine recsys-dev-curation, state 'Count users rows': ")
               for p in problems)  # fmt: skip


def _jsonata(template: dict) -> None:
    parts = _definition_parts(template)
    parts[0] = '{"QueryLanguage":"JSONata",' + parts[0].removeprefix("{")


def _unknown_step(definition: dict) -> None:
    definition["Steps"].append({"Name": "Emr", "Type": "EMR", "Arguments": {}})


def _no_default(definition: dict) -> None:
    definition["Parameters"][0].pop("DefaultValue")


@pytest.mark.parametrize(
    ("stack", "change", "message"),
    [
        ("ml", _pipeline_definition(_unknown_step), "step Emr of type EMR has no API operation"),
        ("ml", _pipeline_definition(_no_default), "Parameters.InputDataUri has no default value"),
        ("data", _jsonata, "uses JSONata"),
        ("data", _replace_in_definition('"$.quality.id"', '"$.quality.other"'),
         r"no representative value for the path '\$.quality.other'"),
        ("data", _replace_in_definition(":states:::databrew:startJobRun.sync", ":states:::batch:submitJob.sync"),
         "the optimised integration batch:submitJob is not mapped"),
    ],
)  # fmt: skip
def test_what_cannot_be_resolved_fails_by_name_never_skipped(synth, tmp_path, stack, change, message):
    with pytest.raises(UnknownShape, match=message):
        _requests(_mutated(synth, tmp_path, stack, change), "dev")
