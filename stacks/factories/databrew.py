"""DataBrew datasets, recipes and recipe jobs built from the recipe JSON in ``glue_jobs/recipes``.

Each table gets two recipes composed from its one JSON file (see ``glue_jobs/recipe.py``):
``<table>-curated`` keeps the rows that pass every check, ``<table>-quarantine`` keeps the rest
with the reason. Both read the same dataset, so together they account for every raw row. The
clickstream archive (JSON lines) gets its own dataset and jobs running the interactions recipes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_databrew as databrew
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from constructs import Construct

from glue_jobs.datasets import dataset_key, path_parameters
from glue_jobs.recipe import recipe_steps
from settings.config import (
    CLICKSTREAM,
    CLICKSTREAM_RECIPE,
    CURATED_PREFIX,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    TABLES,
    Config,
)
from stacks.factories.storage import grant_data_key, log_retention, removal_policy
from stacks.nag import acknowledge_wildcards, arn_token

OUTPUTS = {"curated": CURATED_PREFIX, "quarantine": QUARANTINE_PREFIX}
#: Where DataBrew writes a job's run logs (``LogSubscription: ENABLE``); it creates the group itself, without
#: a retention, unless it exists: the stack creates it first, with the configured retention and the data key.
JOB_LOG_GROUP_PREFIX = "/aws-glue-databrew/jobs/"


@dataclass
class DataBrewJobs:
    role: iam.Role
    job_names: dict[tuple[str, str], str]  # (table, output) -> job name


def _step(step: dict) -> databrew.CfnRecipe.RecipeStepProperty:
    action = step["Action"]
    conditions = [
        databrew.CfnRecipe.ConditionExpressionProperty(
            condition=c["Condition"], target_column=c["TargetColumn"], value=c.get("Value")
        )
        for c in step.get("ConditionExpressions", [])
    ]
    return databrew.CfnRecipe.RecipeStepProperty(
        action=databrew.CfnRecipe.ActionProperty(operation=action["Operation"], parameters=action.get("Parameters")),
        condition_expressions=conditions or None,
    )


def databrew_role(scope: Construct, source: s3.IBucket, destination: s3.IBucket, key: kms.IKey) -> iam.Role:
    """Reads raw/ and writes curated/ and quarantine/ only; logs to its own log group."""
    role = iam.Role(
        scope, "DataBrewRole", assumed_by=iam.ServicePrincipal("databrew.amazonaws.com"), description="DataBrew jobs"
    )
    source.grant_read(role, f"{RAW_PREFIX}/*")
    for prefix in OUTPUTS.values():
        destination.grant_read_write(role, f"{prefix}/*")
    grant_data_key(role, key)
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws-glue-databrew/*"],
        )
    )
    acknowledge_wildcards(
        role,
        {
            f"{arn_token(source)}/{RAW_PREFIX}/*": "Reads every raw file of the dataset, and nothing outside raw/.",
            **{
                f"{arn_token(destination)}/{prefix}/*": f"Writes job output objects under {prefix}/ only."
                for prefix in OUTPUTS.values()
            },
            "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws-glue-databrew/*": (
                "DataBrew creates its job log streams at run time under its fixed /aws-glue-databrew/ group."
            ),
        },
    )
    return role


def publish_recipe(
    scope: Construct, construct_id: str, recipe: databrew.CfnRecipe, steps: list[dict]
) -> cr.AwsCustomResource:
    """Recipe jobs run a *published* version; CloudFormation only creates the working one.

    The physical id is the hash of the steps, so a changed recipe is published again on deploy.
    """
    digest = hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()[:16]
    call = cr.AwsSdkCall(
        service="DataBrew",
        action="publishRecipe",
        parameters={"Name": recipe.name, "Description": f"steps {digest}"},
        physical_resource_id=cr.PhysicalResourceId.of(f"{recipe.name}-{digest}"),
    )
    publisher = cr.AwsCustomResource(
        scope,
        construct_id,
        on_create=call,
        on_update=call,
        policy=cr.AwsCustomResourcePolicy.from_statements(
            [
                iam.PolicyStatement(
                    actions=["databrew:PublishRecipe"],
                    resources=[
                        f"arn:{Aws.PARTITION}:databrew:{Aws.REGION}:{Aws.ACCOUNT_ID}:recipe/{recipe.name}",
                    ],
                )
            ]
        ),
        install_latest_aws_sdk=False,
    )
    publisher.node.add_dependency(recipe)
    return publisher


def _dataset(scope: Construct, cfg: Config, source: s3.IBucket, name: str) -> databrew.CfnDataset:
    """A table's raw folder (CSV with a header), or the clickstream archive's dated folders (gzip JSON lines)."""
    if name == CLICKSTREAM:
        fmt, options = (
            "JSON",
            databrew.CfnDataset.FormatOptionsProperty(json=databrew.CfnDataset.JsonOptionsProperty(multi_line=False)),
        )
    else:
        fmt, options = (
            "CSV",
            databrew.CfnDataset.FormatOptionsProperty(
                csv=databrew.CfnDataset.CsvOptionsProperty(delimiter=",", header_row=True)
            ),
        )
    return databrew.CfnDataset(
        scope,
        f"{name.title()}Dataset",
        name=f"{cfg.prefix}-{name}-raw",
        format=fmt,
        format_options=options,
        input=databrew.CfnDataset.InputProperty(
            s3_input_definition=databrew.CfnDataset.S3LocationProperty(bucket=source.bucket_name, key=dataset_key(name))
        ),
        path_options=_path_options(name),
    )


def _path_options(name: str) -> databrew.CfnDataset.PathOptionsProperty | None:
    """The clickstream archive's ``{year}``/``{month}``/``{day}`` folders as documented path parameters."""
    parameters = path_parameters(name)
    if not parameters:
        return None
    return databrew.CfnDataset.PathOptionsProperty(
        parameters=[
            databrew.CfnDataset.PathParameterProperty(
                path_parameter_name=key,
                dataset_parameter=databrew.CfnDataset.DatasetParameterProperty(name=spec["Name"], type=spec["Type"]),
            )
            for key, spec in parameters.items()
        ]
    )


def databrew_jobs(
    scope: Construct, cfg: Config, source: s3.IBucket, destination: s3.IBucket, key: kms.IKey
) -> DataBrewJobs:
    """Two jobs (curated, quarantine) per raw table, plus two that run the interactions recipes on the clickstream."""
    role = databrew_role(scope, source, destination, key)
    job_names: dict[tuple[str, str], str] = {}
    recipes: dict[tuple[str, str], tuple[databrew.CfnRecipe, cr.AwsCustomResource]] = {}
    for table in TABLES:
        for output in OUTPUTS:
            steps = recipe_steps(table, output)
            recipe = databrew.CfnRecipe(
                scope,
                f"{table.title()}{output.title()}Recipe",
                name=f"{cfg.prefix}-{table}-{output}",
                description=f"{table}: rows that {'pass' if output == 'curated' else 'fail'} the cleaning checks",
                steps=[_step(s) for s in steps],
            )
            publisher = publish_recipe(scope, f"{table.title()}{output.title()}Publish", recipe, steps)
            recipes[(table, output)] = recipe, publisher
    for name, recipe_table in [*((t, t) for t in TABLES), (CLICKSTREAM, CLICKSTREAM_RECIPE)]:
        dataset = _dataset(scope, cfg, source, name)
        for output, prefix in OUTPUTS.items():
            recipe, publisher = recipes[(recipe_table, output)]
            job = databrew.CfnJob(
                scope,
                f"{name.title()}{output.title()}Job",
                name=f"{cfg.prefix}-{name}-{output}",
                type="RECIPE",
                role_arn=role.role_arn,
                dataset_name=dataset.name,
                recipe=databrew.CfnJob.RecipeProperty(name=recipe.name),
                outputs=[
                    databrew.CfnJob.OutputProperty(
                        location=databrew.CfnJob.S3LocationProperty(
                            bucket=destination.bucket_name, key=f"{prefix}/{name}/"
                        ),
                        format="PARQUET",
                        overwrite=True,
                    )
                ],
                encryption_mode="SSE-KMS",
                encryption_key_arn=key.key_arn,
                log_subscription="ENABLE",
                max_capacity=5,
                max_retries=1,
                timeout=120,
            )
            log_group = logs.LogGroup(
                scope,
                f"{name.title()}{output.title()}JobLogs",
                log_group_name=f"{JOB_LOG_GROUP_PREFIX}{job.name}",
                retention=log_retention(cfg),
                encryption_key=key,
                removal_policy=removal_policy(cfg),
            )
            job.node.add_dependency(dataset)
            job.node.add_dependency(recipe)
            job.node.add_dependency(publisher)
            job.node.add_dependency(log_group)  # exists before any run could create it without a retention
            job_names[(name, output)] = job.name
    return DataBrewJobs(role=role, job_names=job_names)
