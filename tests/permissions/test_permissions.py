"""Least privilege that still works: every call each principal makes is allowed by the synthesized templates.

For dev and prod, every call of ``calls.CallModel`` (state machine tasks and what their integration patterns need,
the pipeline's steps and what SageMaker does as the job role, each Lambda's recorded boto3 calls and its runtime's,
EventBridge targets, Firehose, crawlers, DataBrew jobs, alarm notifications, encrypted log groups, API Gateway) is
evaluated against the identity policies and the bucket, topic, queue, key policies and Lambda permissions of the
templates. The other direction, grants no call uses, must each be in :data:`UNUSED_OK` with a reason.

What this cannot see (SCPs, permission boundaries, Lake Formation grants, account settings): docs/deploying.md.
"""

from __future__ import annotations

import copy
import re

import pytest

from tests.permissions import check
from tests.permissions.calls import Call, service
from tests.permissions.recorder import load_record
from tests.permissions.requirements import REQUIREMENTS
from tests.permissions.templates import Json

pytestmark = pytest.mark.xdist_group("synth")
ENVS = ["dev", "prod"]

# ---- granted but used by no enumerated call: each (role without CDK's hash, action) with why it stays ------------

_ABORT = ("ends a failed multipart upload: large outputs (Parquet, model artefacts, CTAS results, capture files) go up "
          "in parts, and only a failure path aborts them, which no enumerated call takes")
_CDK_PUT = ("comes with aws-cdk-lib's Bucket.grant_put/grant_read_write on the same prefix; the buckets have no Object "
            "Lock and nothing tags objects, so it can change nothing here")
_CDK_READ = ("comes with aws-cdk-lib's Bucket.grant_read on the same bucket and prefix (GetBucketLocation, ListBucket "
             "and the Get/List variants): reads of what the role may read already")
_CDK_KEY = ("added by aws-cdk-lib with a bucket or queue grant for that store's key; our own key grants are "
            "Decrypt/GenerateDataKey only (storage.grant_data_key)")
_CDK_QUEUE = "comes with aws-cdk-lib's Queue.grant_send_messages: read-only metadata of the one dead-letter queue"
_CDK_STREAM = ("comes with aws-cdk-lib's Stream.grant_read: read-only metadata and enhanced fan-out reads of the one "
               "clickstream it already reads")
_PARTITIONS = ("Athena reads a partitioned table's partitions and lists tables of the database; the call model "
               "treats the project's tables as unpartitioned, which a crawled year=/month=/day= folder is not")
_CRAWLER = ("a crawler reads and updates partitions of partitioned folders and lists the database's tables (Glue's "
            "crawler permissions); the call model enumerates its table-level calls only")
_APIGW = ("AWS managed AmazonAPIGatewayPushToCloudWatchLogs on API Gateway's account-level logging role, attached by "
          "aws-cdk-lib; an AWS managed policy is not ours to trim")
_REGISTER = ("no enumerated call uses it; AWS does not document whether the RegisterModel step describes or tags the "
             "new package as the pipeline role, so it stays until CloudTrail on a real run shows it unused")
_LIST_404 = ("without s3:ListBucket, GetObject of a missing key answers 403 instead of 404 (S3 GetObject "
             "permissions); the erasure reads its request and suppression records, which may not exist yet")
_LOG_GROUP = ("the stack creates each job's log group, so DataBrew finds it; creating it again only happens if someone "
              "deleted it, and then the job still logs")

UNUSED_OK: dict[tuple[str, str], str] = {
    **{(role, "s3:Abort*"): _ABORT for role in ("CurationWorkflowRole", "DataBrewRole", "ModelExecutionRole",
                                               "PipelineRole")},
    ("QuickSightAthenaRole", "s3:AbortMultipartUpload"): _ABORT,
    **{(role, action): _CDK_PUT
       for role in ("CurationWorkflowRole", "DataBrewRole", "ModelExecutionRole", "PipelineRole")
       for action in ("s3:PutObjectLegalHold", "s3:PutObjectRetention", "s3:PutObjectTagging",
                      "s3:PutObjectVersionTagging")},
    **{(role, "s3:GetBucket*"): _CDK_READ for role in ("CrawlerRole", "DataBrewRole", "ModelExecutionRole",
                                                      "PipelineRole")},
    ("DataBrewRole", "s3:GetObject*"): _CDK_READ,
    ("ModelExecutionRole", "s3:List*"): _CDK_READ,
    **{(role, action): _CDK_KEY
       for role in ("ConsumerRole", "CurationWorkflowRole", "DataBrewRole", "DeployerRole", "ErasureRole")
       for action in ("kms:Encrypt", "kms:ReEncrypt*")},
    ("CrawlerRole", "kms:ReEncrypt*"): _CDK_KEY,
    **{(role, "kms:DescribeKey"): _CDK_KEY for role in ("CrawlerRole", "CurationWorkflowRole", "DataBrewRole")},
    **{(role, action): _CDK_QUEUE for role in ("ConsumerRole", "DeployerRole", "ErasureRole")
       for action in ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")},
    **{(role, action): _CDK_STREAM for role in ("ArchiveRole", "ConsumerRole")
       for action in ("kinesis:DescribeStreamConsumer", "kinesis:ListStreams", "kinesis:SubscribeToShard")},
    ("ArchiveRole", "kinesis:DescribeStreamSummary"): _CDK_STREAM,
    **{(role, action): _PARTITIONS for role in ("CurationWorkflowRole", "QuickSightAthenaRole")
       for action in ("glue:GetPartitions", "glue:GetTables")},
    **{("CrawlerRole", action): _CRAWLER for action in ("glue:BatchGetPartition", "glue:BatchUpdatePartition",
                                                       "glue:GetPartition", "glue:GetTables", "glue:UpdatePartition")},
    **{("RecommendationsApiCloudWatchRole", f"logs:{action}"): _APIGW
       for action in ("DescribeLogGroups", "DescribeLogStreams", "FilterLogEvents", "GetLogEvents")},
    **{("PipelineRole", action): _REGISTER for action in ("sagemaker:AddTags", "sagemaker:DescribeModelPackage")},
    ("ErasureRole", "s3:ListBucket"): _LIST_404,
    ("DataBrewRole", "logs:CreateLogGroup"): _LOG_GROUP,
}  # fmt: skip


@pytest.fixture(scope="module")
def reports(synth) -> dict[str, check.Report]:
    record = load_record()
    return {env: check.run(synth(env)[0], env, record) for env in ENVS}


@pytest.mark.parametrize("env", ENVS)
def test_every_call_of_every_principal_is_allowed(reports, env):
    report = reports[env]
    assert len(report.decisions) > 500
    assert report.denied_text() == []


@pytest.mark.parametrize("env", ENVS)
def test_every_principal_in_the_templates_makes_calls(reports, env):
    """Every role, and every service a resource policy admits, has calls in the model: none is left unchecked."""
    report = reports[env]
    callers = {c.principal.arn or c.principal.service for c in report.model.calls}
    roles = set(report.model.roles)
    assert roles - callers == set()
    admitted = set()
    for policy in [p for _, p in report.model.t.resource_policies()] + list(report.model.t.key_policies().values()):
        for statement in policy.statements:
            services = statement.get("Principal", {}) if isinstance(statement.get("Principal"), dict) else {}
            admitted |= set(_listify(services.get("Service", [])))
    assert admitted - callers == set()


@pytest.mark.parametrize("env", ENVS)
def test_granted_but_unused_permissions_are_trimmed_or_explained(reports, env):
    unused = {(role, action) for role, action, _ in check.unused_grants(reports[env])}
    assert sorted(unused - set(UNUSED_OK)) == []


def test_every_unused_grant_reason_is_still_needed_and_says_why(reports):
    unused = {(role, action) for env in ENVS for role, action, _ in check.unused_grants(reports[env])}
    assert sorted(set(UNUSED_OK) - unused) == []
    assert all(len(reason.split()) >= 8 for reason in UNUSED_OK.values())


def test_every_requirement_row_is_used_and_cites_aws_documentation(reports):
    used = {c.rule for env in ENVS for c in reports[env].model.calls}
    assert sorted(set(REQUIREMENTS) - used) == []
    assert all(r.url.startswith("https://docs.aws.amazon.com/") for r in REQUIREMENTS.values())


# ---- the test can fail: remove one needed statement ------------------------------------------------------------------

#: (stack suffix, resource logical id prefix, action in the statement to delete) -> the call that must then be denied.
NEEDED = {
    ("ml", "PipelineRoleDefaultPolicy", "kms:CreateGrant"): ("PipelineRole", "kms:CreateGrant"),
    ("data", "CurationWorkflowRoleDefaultPolicy", "glue:CreateDatabase"): (
        "CurationWorkflowRole", "glue:CreateDatabase"),
    ("monitoring", "AlarmTopicPolicy", "sns:Publish@cloudwatch"): ("cloudwatch.amazonaws.com", "sns:Publish"),
    ("deploy", "DeployerRoleDefaultPolicy", "sagemaker:UpdateEndpointWeightsAndCapacities"): (
        "DeployerRole", "sagemaker:UpdateEndpointWeightsAndCapacities"),
    ("streaming", "ConsumerRoleDefaultPolicy", "dynamodb:PutItem"): ("ConsumerRole", "dynamodb:PutItem"),
    ("data", "DataBrewRoleDefaultPolicy", "s3:PutObject"): ("DataBrewRole", "s3:PutObject"),
}  # fmt: skip


def remove_statement(raw: dict[str, Json], stack_suffix: str, logical_prefix: str, action: str) -> None:
    """Delete the one statement of ``logical_prefix*`` (an IAM or topic policy) that grants ``action``
    (``action@service`` picks the statement admitting that service principal)."""
    action, _, principal = action.partition("@")
    stack = next(name for name in raw if name.endswith(f"-{stack_suffix}"))
    for logical_id, resource in raw[stack]["Resources"].items():
        if not logical_id.startswith(logical_prefix):
            continue
        document = resource["Properties"]["PolicyDocument"]
        statements = document["Statement"]
        hits = [s for s in statements if action in _listify(s["Action"]) and s["Effect"] == "Allow"
                and (not principal or principal in str(s.get("Principal")))]  # fmt: skip
        assert len(hits) == 1, f"{logical_id}: {len(hits)} statements grant {action}"
        statements.remove(hits[0])
        return
    raise AssertionError(f"no {logical_prefix}* in {stack}")


@pytest.mark.parametrize("case", sorted(NEEDED), ids=lambda c: f"{c[1]}-{c[2]}")
def test_removing_a_needed_statement_fails_naming_the_principal_and_the_call(synth, case):
    principal, action = NEEDED[case]
    report = check.run(synth("dev")[0], "dev", load_record(), lambda raw: remove_statement(raw, *case))
    denied = [c for c, _ in report.denied]
    assert any(principal in c.principal.name and c.action == action for c in denied), report.denied_text()[:5]
    text = "\n".join(report.denied_text())
    assert re.search(rf"{re.escape(principal)}\S* -> {re.escape(action)} on arn:", text)
    assert "https://docs.aws.amazon.com/" in text


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def test_a_call_names_its_principal_action_resource_and_the_page_requiring_it():
    call = Call(service("events.amazonaws.com"), "sqs:SendMessage",
                "arn:aws:sqs:ap-south-1:123456789012:q", "rule r: failed events", "events-dlq")  # fmt: skip
    assert call.describe() == (
        "events.amazonaws.com -> sqs:SendMessage on arn:aws:sqs:ap-south-1:123456789012:q (rule r: failed events; "
        f"{REQUIREMENTS['events-dlq'].url})"
    )
    with pytest.raises(KeyError):
        Call(call.principal, "a:B", "*", "why", "no-such-row")


def test_mutations_copy_the_templates(synth):
    """The mutated run must not change the session's templates (other tests read them)."""
    outdir = synth("dev")[0]
    before = copy.deepcopy({p.name: p.read_text() for p in outdir.glob("*.template.json")})
    check.run(outdir, "dev", load_record(), lambda raw: remove_statement(raw, *sorted(NEEDED)[0]))
    assert {p.name: p.read_text() for p in outdir.glob("*.template.json")} == before
