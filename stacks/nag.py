"""cdk-nag registration and the project's reviewed suppressions.

Two packs run on every synth: AwsSolutions and NIST 800-53 rev 5. They are registered through
``Validations`` (``Aspects.of(app).add(AwsSolutionsChecks())`` crashes with this aws-cdk-lib, see
TOOLCHAIN.md). Each acknowledgement names one finding, as narrowly as cdk-nag reports it, with the
reason a reviewer accepted; anything else fails synth.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import custom_resources as cr
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks
from constructs import IConstruct

#: Rule-id prefix of each registered pack; it is also the pack's plugin name, which namespaces an
#: acknowledgement (``<pack>::<pack>-<rule>``).
AWS_SOLUTIONS, NIST = "AwsSolutions", "NIST.800.53.R5"
PACKS: tuple[str, ...] = (AWS_SOLUTIONS, NIST)

#: Findings true of every stack. The AwsSolutions ones come from Lambdas that aws-cdk-lib itself
#: provides; NIST's inline-policy rule fires on every role, because CDK's grants write inline policies.
APP_WIDE: dict[str, str] = {
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]": (
        "Only aws-cdk-lib's own provider Lambdas (S3 EventBridge notification, AwsCustomResource) use it; it grants "
        "writing their own logs and nothing else."
    ),
    "AwsSolutions-L1": "The runtime of aws-cdk-lib's provider Lambdas is chosen by the library and moves with its pin.",
    "NIST.800.53.R5-IAMNoInlinePolicy": (
        "Every role's permissions are CDK's per-role inline DefaultPolicy: attached to exactly one role, created and "
        "deleted with it, and reviewed in the template; a customer-managed policy could be attached elsewhere."
    ),
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

#: The singleton Lambda behind every ``AwsCustomResource`` (publishes DataBrew recipes): aws-cdk-lib's code.
CDK_CUSTOM_RESOURCE_PROVIDER: dict[str, str] = {
    "NIST.800.53.R5-LambdaConcurrency": (
        "aws-cdk-lib's AwsCustomResource provider runs only during deployments, once per changed recipe; "
        "CloudFormation is its only caller."
    ),
    "NIST.800.53.R5-LambdaDLQ": (
        "CloudFormation invokes aws-cdk-lib's AwsCustomResource provider asynchronously and then waits for its answer "
        "at a presigned callback URL; a run that fails or never answers fails the deployment, which CloudFormation "
        "reports and rolls back. A DLQ would only keep a request whose callback has expired."
    ),
    "NIST.800.53.R5-LambdaInsideVPC": (
        "aws-cdk-lib's AwsCustomResource provider calls one AWS API (databrew:PublishRecipe); the project has no VPC."
    ),
}

#: Why the project's own Lambdas run outside a VPC (acknowledged on each function, not app-wide).
LAMBDA_OUTSIDE_VPC = (
    "The project defines no VPC: the function reaches only regional AWS APIs (TLS, SigV4, scoped by its role); a "
    "VPC would add NAT or interface endpoints without narrowing any data path."
)


def register_nag(app: cdk.App) -> None:
    """Both packs on the whole app, plus the app-wide and CDK-provider acknowledgements."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True), NIST80053R5Checks(verbose=True))
    for rule, reason in APP_WIDE.items():
        acknowledge(app, rule, reason)
    for finding, reason in GRANT_ACTIONS.items():
        acknowledge(app, f"AwsSolutions-IAM5[{finding}]", reason)
    provider_id = "AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
    for construct in app.node.find_all():
        if construct.node.id == provider_id:
            for rule, reason in CDK_CUSTOM_RESOURCE_PROVIDER.items():
                acknowledge(construct, rule, reason)


def pack_of(rule: str) -> str:
    """``NIST.800.53.R5-LambdaDLQ`` -> ``NIST.800.53.R5``; a rule of no registered pack is a mistake."""
    pack = rule.partition("-")[0]
    if pack not in PACKS:
        raise ValueError(f"{rule!r}: not a rule of a registered cdk-nag pack {PACKS}")
    return pack


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag finding (of either pack) on ``scope`` and everything below it."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{pack_of(rule)}::{rule}", reason=reason))


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
