"""Athena workgroup (enforced, encrypted, capped) and the named queries loaded from ``sql/``."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_athena as athena
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from settings.config import Config
from sql.library import ctas_statement, deployed_query, feature_queries, list_queries
from sql.workgroup import workgroup_configuration


def workgroup(scope: Construct, cfg: Config, results: s3.IBucket, key: kms.IKey) -> athena.CfnWorkGroup:
    """Clients cannot override the result location, encryption or the per-query scan cutoff."""
    wg = athena.CfnWorkGroup(
        scope,
        "WorkGroup",
        name=cfg.athena_workgroup,
        description=f"{cfg.prefix}: features, training-set extraction and KPIs",
        state="ENABLED",
        recursive_delete_option=not cfg.retain,
    )
    # CloudFormation takes the API's own shape: the local run creates the workgroup from the same dict.
    wg.add_property_override("WorkGroupConfiguration", workgroup_configuration(cfg, results.bucket_name, key.key_arn))
    return wg


def named_queries(scope: Construct, cfg: Config, wg: athena.CfnWorkGroup) -> dict[str, athena.CfnNamedQuery]:
    """Every ``sql/*.sql`` as a saved query; feature queries also as their CTAS form."""
    queries: dict[str, athena.CfnNamedQuery] = {}
    features = set(feature_queries())
    for name in sorted(list_queries()):
        texts = {name: deployed_query(name, cfg.attribution_window_hours, cfg.experiment_alpha)}
        if name in features:
            texts[f"{name}_ctas"] = ctas_statement(name, location=None)
        for query_name, text in texts.items():
            q = athena.CfnNamedQuery(
                scope,
                f"Query{''.join(p.title() for p in query_name.split('_'))}",
                name=f"{cfg.prefix}-{query_name}",
                database=cfg.glue_database,
                work_group=wg.name,
                query_string=text,
                description=f"sql/{name}.sql" + (" as CTAS" if query_name != name else ""),
            )
            q.node.add_dependency(wg)
            queries[query_name] = q
    return queries


def athena_caller_statements() -> list[iam.PolicyStatement]:
    """What every principal that runs Athena queries needs besides its own database and data (SECURITY.md):
    GetDatabase/CreateDatabase on the catalog and the ``default`` database, which Athena documents as mandatory
    with database-level Glue policies (CreateDatabase on the catalog alone creates nothing: a new database also
    needs its own ARN), and Lake Formation's GetDataAccess, which Athena checks on every query and which has no
    resource form."""
    glue = f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    return [
        iam.PolicyStatement(
            actions=["glue:GetDatabase", "glue:CreateDatabase"],
            resources=[f"{glue}:catalog", f"{glue}:database/default"],
        ),
        iam.PolicyStatement(actions=["lakeformation:GetDataAccess"], resources=["*"]),
    ]
