"""What the security tests and ``bench/bench_security.py`` check in synthesised templates, written once.

Plain functions over template JSON (no CDK import), so the tests, the bench script and a reviewer
read the same rules: the IAM ``Resource: "*"`` allow-list with its reasons, the encryption rule per
resource type (with the few stores allowed a service-owned key, each with why), the TLS-only bucket
policy, and the secret patterns. SECURITY.md describes them and points here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Template = dict[str, Any]

# ---- IAM -------------------------------------------------------------------------------------------

#: Actions allowed on ``Resource: "*"``: AWS offers no resource-level permission for them (Service
#: Authorization Reference), or the resource does not exist until the call creates it. Anything
#: else on "*" fails ``tests/stacks/test_iam.py``.
RESOURCE_STAR_OK: dict[str, str] = {
    "xray:PutTraceSegments": "X-Ray trace submission (Step Functions tracing) has no resource-level permission.",
    "xray:PutTelemetryRecords": "X-Ray telemetry submission (Step Functions tracing) has no resource-level permission.",
    "xray:GetSamplingRules": "X-Ray sampling rules are read account-wide; the action has no resource-level form.",
    "xray:GetSamplingTargets": "X-Ray sampling targets are read account-wide; the action has no resource-level form.",
    "logs:CreateLogDelivery": "Vended-log delivery (Step Functions execution logs) takes no resource ARN.",
    "logs:GetLogDelivery": "Vended-log delivery (Step Functions execution logs) takes no resource ARN.",
    "logs:UpdateLogDelivery": "Vended-log delivery (Step Functions execution logs) takes no resource ARN.",
    "logs:DeleteLogDelivery": "Vended-log delivery (Step Functions execution logs) takes no resource ARN.",
    "logs:ListLogDeliveries": "Vended-log delivery (Step Functions execution logs) takes no resource ARN.",
    "logs:PutResourcePolicy": "The account's CloudWatch Logs resource policy (vended logs) is not a resource ARN.",
    "logs:DescribeResourcePolicies": "Lists the account's CloudWatch Logs resource policies; no resource-level form.",
    "logs:DescribeLogGroups": "A list call over the account's log groups; it has no resource-level form.",
    "lakeformation:GetDataAccess": "Athena checks it on every query; Lake Formation defines no resource for it.",
    "ecr:GetAuthorizationToken": "Returns a registry login token account-wide; the image pulls are scoped to repos.",
    "application-autoscaling:DescribeScalableTargets": "Describe calls of Application Auto Scaling take no resource.",
    "cloudwatch:DescribeAlarms": "Read-only; the deploy Lambda reads its rollback alarms' state by name.",
    "cloudwatch:PutMetricData": "No resource-level form; held to the project namespace by a namespace condition.",
}

#: Actions that change something, allowed on ``Resource: "*"`` with no ``Condition``: the service offers neither
#: a resource-level permission nor a condition key that could narrow them. aws-cdk-lib writes these statements
#: for Step Functions tracing and execution logging. Any other non-read action on "*" must carry a condition
#: (``tests/stacks/test_iam.py``), e.g. ``cloudwatch:PutMetricData`` with ``cloudwatch:namespace``.
UNCONDITIONED_STAR_WRITES_OK: dict[str, str] = {
    "xray:PutTraceSegments": "Sends trace segments of this role's own executions; X-Ray defines no condition key.",
    "xray:PutTelemetryRecords": "Sends the X-Ray daemon's telemetry; X-Ray defines no resource or condition key.",
    "logs:CreateLogDelivery": "Vended-log delivery takes no resource ARN; the destination log group is this stack's.",
    "logs:UpdateLogDelivery": "Vended-log delivery takes no resource ARN; the destination log group is this stack's.",
    "logs:DeleteLogDelivery": "Vended-log delivery takes no resource ARN; the destination log group is this stack's.",
    "logs:PutResourcePolicy": "The account's Logs resource policy lets the delivery write; it has no resource ARN.",
}
#: Access levels that only read: an action whose name starts with one of these is not a write.
READ_ACTION_PREFIXES = ("Describe", "Get", "List", "BatchGet")

_IAM_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) for every Allow statement of an IAM policy or a role's inline policy."""
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource["Type"] in _IAM_TYPES:
            docs = [props["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        else:
            continue
        for doc in docs:
            for statement in as_list(doc["Statement"]):
                if statement.get("Effect") == "Allow":
                    yield logical_id, statement


def wildcard_actions(template: Template) -> list[str]:
    """Allowed actions that are ``*`` or a whole service (``s3:*``)."""
    return [
        f"{logical_id}: {action}"
        for logical_id, statement in iam_statements(template)
        for action in as_list(statement.get("Action", []))
        if action == "*" or action.endswith(":*")
    ]


def resource_star_actions(template: Template) -> list[tuple[str, str]]:
    """(logical id, action) for every action allowed on ``Resource: "*"``."""
    return [
        (logical_id, action)
        for logical_id, statement in iam_statements(template)
        if "*" in as_list(statement.get("Resource", []))
        for action in as_list(statement["Action"])
    ]


def unjustified_resource_star(template: Template) -> list[str]:
    return [f"{lid}: {action}" for lid, action in resource_star_actions(template) if action not in RESOURCE_STAR_OK]


def is_read_action(action: str) -> bool:
    return action.partition(":")[2].startswith(READ_ACTION_PREFIXES)


def unconstrained_star_writes(template: Template) -> list[str]:
    """Non-read actions allowed on ``Resource: "*"`` by a statement without a ``Condition``, unless listed in
    UNCONDITIONED_STAR_WRITES_OK (no resource-level permission and no condition key exists for them)."""
    return [
        f"{logical_id}: {action}"
        for logical_id, statement in iam_statements(template)
        if "*" in as_list(statement.get("Resource", [])) and not statement.get("Condition")
        for action in as_list(statement["Action"])
        if not is_read_action(action) and action not in UNCONDITIONED_STAR_WRITES_OK
    ]


def _is_account_root(principal: Any) -> bool:
    """``arn:<partition>:iam::<account>:root``, as CDK writes it (an Fn::Join ending in ``:root``)."""
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    if isinstance(aws, str):
        return aws.endswith(":root")
    if isinstance(aws, dict) and "Fn::Join" in aws:
        parts = aws["Fn::Join"][1]
        return isinstance(parts[-1], str) and parts[-1].endswith(":root")
    return False


def key_policy_offenders(template: Template) -> list[str]:
    """Key-policy statements granting every KMS action to anyone but the account root.

    ``kms:*`` to the root is the default statement that hands the key's access to IAM policies;
    service principals (CloudWatch Logs, EventBridge) must get named actions.
    """
    return [
        f"{logical_id}: {statement.get('Principal')}"
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] == "AWS::KMS::Key"
        for statement in as_list(resource["Properties"]["KeyPolicy"]["Statement"])
        if statement.get("Effect") == "Allow"
        and any(a in ("*", "kms:*") for a in as_list(statement.get("Action", [])))
        and not _is_account_root(statement.get("Principal"))
    ]


# ---- encryption at rest ----------------------------------------------------------------------------

#: How each kind of data store is encrypted: "kms" (a customer-managed key), "service" (a key the
#: service owns), or None (not encrypted).
Encryption = str | None


def _bucket(p: dict) -> Encryption:
    rules = p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
    algos = {r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
    return "kms" if algos & {"aws:kms", "aws:kms:dsse"} else "service" if "AES256" in algos else None


def _table(p: dict) -> Encryption:
    sse = p.get("SSESpecification", {})
    if not sse.get("SSEEnabled"):
        return "service"  # DynamoDB always encrypts; without SSEEnabled it uses an AWS-owned key
    return "kms" if sse.get("KMSMasterKeyId") else "service"


def _queue(p: dict) -> Encryption:
    return "kms" if p.get("KmsMasterKeyId") else "service" if p.get("SqsManagedSseEnabled") else None


def _stream(p: dict) -> Encryption:
    enc = p.get("StreamEncryption", {})
    if enc.get("EncryptionType") != "KMS":
        return None
    return "service" if enc.get("KeyId") == "alias/aws/kinesis" else "kms"


def _kms_key_id(p: dict) -> Encryption:
    return "kms" if p.get("KmsKeyId") or p.get("KmsMasterKeyId") else None


def _firehose(p: dict) -> Encryption:
    if p.get("DeliveryStreamEncryptionConfigurationInput", {}).get("KeyType") == "CUSTOMER_MANAGED_CMK":
        return "kms"
    s3 = p.get("ExtendedS3DestinationConfiguration") or p.get("S3DestinationConfiguration") or {}
    return "kms" if s3.get("EncryptionConfiguration", {}).get("KMSEncryptionConfig") else None


def _workgroup(p: dict) -> Encryption:
    result = p.get("WorkGroupConfiguration", {}).get("ResultConfiguration", {})
    option = result.get("EncryptionConfiguration", {}).get("EncryptionOption")
    return "kms" if option in ("SSE_KMS", "CSE_KMS") else "service" if option == "SSE_S3" else None


def _databrew_job(p: dict) -> Encryption:
    return "kms" if p.get("EncryptionMode") == "SSE-KMS" else "service" if p.get("EncryptionMode") else None


def _crawler(p: dict) -> Encryption:
    return "kms" if p.get("CrawlerSecurityConfiguration") else None


#: Data-bearing resource types and how to read their encryption.
ENCRYPTION: dict[str, Callable[[dict], Encryption]] = {
    "AWS::S3::Bucket": _bucket,
    "AWS::DynamoDB::Table": _table,
    "AWS::SQS::Queue": _queue,
    "AWS::Kinesis::Stream": _stream,
    "AWS::SNS::Topic": _kms_key_id,
    "AWS::Logs::LogGroup": _kms_key_id,
    "AWS::KinesisFirehose::DeliveryStream": _firehose,
    "AWS::SageMaker::EndpointConfig": _kms_key_id,
    "AWS::SageMaker::NotebookInstance": _kms_key_id,
    "AWS::Athena::WorkGroup": _workgroup,
    "AWS::DataBrew::Job": _databrew_job,
    "AWS::Glue::Crawler": _crawler,
}

#: Types of the same services that hold no data of their own (so the check need not read them).
NOT_DATA_STORES: frozenset[str] = frozenset(
    {
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::Subscription",
        "AWS::SNS::TopicPolicy",
        "AWS::Logs::LogStream",
        "AWS::Logs::ResourcePolicy",
        "AWS::SageMaker::Pipeline",
        "AWS::SageMaker::ModelPackageGroup",
        "AWS::Athena::NamedQuery",
        "AWS::DataBrew::Dataset",
        "AWS::DataBrew::Recipe",
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::Glue::SecurityConfiguration",
        "AWS::DynamoDB::ResourcePolicy",
        "AWS::Kinesis::StreamConsumer",
    }
)

#: Services whose resources must each be in ENCRYPTION or NOT_DATA_STORES: a new type fails the test.
DATA_SERVICES = ("S3", "DynamoDB", "SQS", "Kinesis", "SNS", "Logs", "KinesisFirehose", "SageMaker", "Athena")
DATA_SERVICES += ("DataBrew", "Glue", "EFS", "RDS", "Redshift", "OpenSearchService", "ElastiCache", "SecretsManager")

#: Stores allowed a service-owned key instead of a customer key: logical-id prefix -> why.
SERVICE_KEY_OK: dict[str, str] = {
    "AccessLogsBucket": "S3 server access logging delivers only to SSE-S3 target buckets, not SSE-KMS.",
}


def is_data_store(type_: str) -> bool:
    return type_.split("::")[1] in DATA_SERVICES if type_.startswith("AWS::") else False


def unknown_store_types(template: Template) -> set[str]:
    """Types of data services the encryption check does not know (neither a store it reads nor exempt)."""
    types = {r["Type"] for r in template.get("Resources", {}).values()}
    return {t for t in types if is_data_store(t) and t not in ENCRYPTION and t not in NOT_DATA_STORES}


def encryption_of(template: Template) -> dict[str, tuple[str, Encryption]]:
    """logical id -> (type, encryption) for every data store in the template."""
    return {
        lid: (r["Type"], ENCRYPTION[r["Type"]](r.get("Properties", {})))
        for lid, r in template.get("Resources", {}).items()
        if r["Type"] in ENCRYPTION
    }


def encryption_offenders(template: Template) -> list[str]:
    """Stores not encrypted, or on a service-owned key without a listed reason."""
    offenders = []
    for lid, (type_, enc) in encryption_of(template).items():
        if enc is None:
            offenders.append(f"{lid} ({type_}): not encrypted")
        elif enc == "service" and not any(lid.startswith(prefix) for prefix in SERVICE_KEY_OK):
            offenders.append(f"{lid} ({type_}): service-owned key, not the customer key")
    return offenders


def lambdas_with_unencrypted_environment(template: Template) -> list[str]:
    """Lambda functions whose environment variables are not encrypted with a customer key (no ``KmsKeyArn``);
    Lambda would use its AWS-managed key. Functions without variables (aws-cdk-lib's providers) have nothing
    to encrypt."""
    return [
        lid
        for lid, r in template.get("Resources", {}).items()
        if r["Type"] == "AWS::Lambda::Function"
        and r.get("Properties", {}).get("Environment", {}).get("Variables")
        and not r["Properties"].get("KmsKeyArn")
    ]


def unrotated_keys(template: Template) -> list[str]:
    return [
        lid
        for lid, r in template.get("Resources", {}).items()
        if r["Type"] == "AWS::KMS::Key" and not r["Properties"].get("EnableKeyRotation")
    ]


# ---- encryption in transit -------------------------------------------------------------------------


def _denies_plain_http(statement: dict) -> bool:
    return (
        statement.get("Effect") == "Deny"
        and "s3:*" in as_list(statement.get("Action", []))
        and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    )


def buckets_without_tls_policy(template: Template) -> list[str]:
    """Buckets with no bucket policy that denies every request made without TLS."""
    resources = template.get("Resources", {})
    tls_only = {
        r["Properties"]["Bucket"].get("Ref")
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
        and isinstance(r["Properties"]["Bucket"], dict)
        and any(_denies_plain_http(s) for s in as_list(r["Properties"]["PolicyDocument"]["Statement"]))
    }
    return [lid for lid, r in resources.items() if r["Type"] == "AWS::S3::Bucket" and lid not in tls_only]


# ---- secrets ---------------------------------------------------------------------------------------

#: What a leaked credential looks like. moto's fake ``testing`` keys match none of them.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
    ),
    "private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
}
#: Larger files are data, not code or templates.
MAX_SCAN_BYTES = 2_000_000


def find_secrets(text: str) -> list[str]:
    """The kinds of secret found in ``text`` (empty when clean)."""
    return [kind for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def repository_files(root: Path) -> list[Path]:
    """Files git would commit (tracked and untracked, minus .gitignore'd ones: no .venv, cdk.out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    return [root / name for name in listed.split("\0") if name and (root / name).is_file()]


def scan_files(paths: list[Path]) -> dict[str, list[str]]:
    """path -> kinds of secret found, over text files up to MAX_SCAN_BYTES."""
    found = {}
    for path in paths:
        if path.stat().st_size > MAX_SCAN_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        kinds = find_secrets(data.decode("utf-8", errors="replace"))
        if kinds:
            found[str(path)] = kinds
    return found
