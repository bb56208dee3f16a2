"""cdk-nag registration and the project's reviewed suppressions.

Registered through ``Validations`` (``Aspects.of(app).add(AwsSolutionsChecks())`` crashes with this
aws-cdk-lib, see TOOLCHAIN.md). Each acknowledgement names one finding, as narrowly as cdk-nag
reports it, with the reason a reviewer accepted; anything else fails synth.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

#: Findings true of every stack: caused by Lambdas that aws-cdk-lib itself provides.
APP_WIDE: dict[str, str] = {
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]": (
        "Only aws-cdk-lib's own provider Lambdas (S3 EventBridge notification, AwsCustomResource) use it; it grants "
        "writing their own logs and nothing else."
    ),
    "AwsSolutions-L1": "The runtime of aws-cdk-lib's provider Lambdas is chosen by the library and moves with its pin.",
}

#: Wildcard *actions* produced by CDK grant helpers; always on resources scoped by the grant.
GRANT_ACTIONS: dict[str, str] = {
    "Action::s3:GetObject*": "grant_read on one bucket/prefix: GetObject, GetObjectVersion, tagging, ACL reads.",
    "Action::s3:GetBucket*": "grant_read: bucket location/versioning reads on this project's buckets only.",
    "Action::s3:List*": "grant_read: listing this project's buckets only (crawlers and jobs enumerate prefixes).",
    "Action::s3:DeleteObject*": "grant_read_write on an output prefix: jobs overwrite their previous output.",
    "Action::s3:Abort*": "grant_read_write: lets a job abort its own unfinished multipart uploads.",
    "Action::kms:ReEncrypt*": "grant_encrypt_decrypt on this project's one data key only.",
    "Action::kms:GenerateDataKey*": "grant_encrypt(_decrypt) on this project's one data key only (SSE-KMS writes).",
}


def register_nag(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True))
    for rule, reason in APP_WIDE.items():
        acknowledge(app, rule, reason)
    for finding, reason in GRANT_ACTIONS.items():
        acknowledge(app, f"AwsSolutions-IAM5[{finding}]", reason)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag finding on ``scope`` and everything below it."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason))


def ref_token(scope: IConstruct) -> str:
    """How cdk-nag prints a resource's Ref (e.g. a bucket name) in a finding: ``<LogicalId>``."""
    return f"<{cdk.Stack.of(scope).get_logical_id(scope.node.default_child)}>"  # type: ignore[arg-type]


def partition_text(scope: IConstruct) -> str:
    """``aws`` when the stack's region is known (partition literals flag), else ``<AWS::Partition>``."""
    partition = cdk.Stack.of(scope).partition
    return "<AWS::Partition>" if cdk.Token.is_unresolved(partition) else partition


def arn_token(scope: IConstruct) -> str:
    """How cdk-nag prints a resource's ARN in a finding: ``<LogicalId.Arn>``."""
    return f"{ref_token(scope)[:-1]}.Arn>"


def acknowledge_wildcards(scope: IConstruct, resources: dict[str, str]) -> None:
    """Accept IAM5 wildcard *resource* findings on one role: resource pattern -> reason."""
    for resource, reason in resources.items():
        acknowledge(scope, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
