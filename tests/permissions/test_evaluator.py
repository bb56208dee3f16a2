"""The permissions test's IAM evaluator on small policies whose answer AWS documents (IAM policy evaluation logic,
condition operators, KMS key policies)."""

from __future__ import annotations

import pytest

from tests.permissions.evaluator import Policy, Principal, Request, UnsupportedPolicy, condition_matches, evaluate

ACCOUNT = "123456789012"
ROLE = Principal("role", ACCOUNT, arn=f"arn:aws:iam::{ACCOUNT}:role/r")
EVENTS = Principal("events", ACCOUNT, service="events.amazonaws.com")
BUCKET = "arn:aws:s3:::b"
KEY = f"arn:aws:kms:ap-south-1:{ACCOUNT}:key/k"


def policy(*statements: dict, source: str = "p") -> Policy:
    return Policy(source, {"Statement": list(statements)})


def allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def request(action: str, resource: str, principal: Principal = ROLE, **context: str) -> Request:
    return Request(principal, action, resource, {"aws:SecureTransport": "true", **context})


def test_nothing_allows_by_default():
    decision = evaluate(request("s3:GetObject", f"{BUCKET}/k"))
    assert not decision.allowed and "implicit deny" in decision.reason


@pytest.mark.parametrize(
    ("pattern", "resource", "allowed"),
    [
        (f"{BUCKET}/curated/*", f"{BUCKET}/curated/users/part-0", True),  # * crosses "/"
        (f"{BUCKET}/curated/*", f"{BUCKET}/quarantine/users/part-0", False),
        (f"{BUCKET}/curated/*", BUCKET, False),  # the bucket is not one of its objects
        ("arn:aws:logs:*:*:log-group:/aws/sm/*", "arn:aws:logs:r:1:log-group:/aws/sm/X:log-stream:s", True),
        (f"{BUCKET}/a?c", f"{BUCKET}/abc", True),
        (f"{BUCKET}/a?c", f"{BUCKET}/abbc", False),
        ("arn:aws:sagemaker:r:1:model/Recsys-*", "arn:aws:sagemaker:r:1:model/recsys-x", False),  # case-sensitive
    ],
)
def test_resource_wildcards(pattern, resource, allowed):
    assert evaluate(request("s3:GetObject", resource), [policy(allow("s3:GetObject", pattern))]).allowed is allowed


def test_actions_match_case_insensitively_with_wildcards():
    granted = [policy(allow(["kms:GenerateDataKey*", "athena:startQueryExecution"], "*"))]
    assert evaluate(request("kms:GenerateDataKeyWithoutPlaintext", "*"), granted).allowed
    assert evaluate(request("athena:StartQueryExecution", "*"), granted).allowed
    assert not evaluate(request("kms:Decrypt", "*"), granted).allowed


def test_an_explicit_deny_anywhere_wins_over_any_allow():
    identity = [policy(allow("s3:*Object", f"{BUCKET}/*"))]
    tls_only = policy({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": f"{BUCKET}/*",
                       "Condition": {"Bool": {"aws:SecureTransport": "false"}}}, source="bucket")  # fmt: skip
    assert evaluate(request("s3:PutObject", f"{BUCKET}/k"), identity, [tls_only]).allowed
    plain = Request(ROLE, "s3:PutObject", f"{BUCKET}/k", {"aws:SecureTransport": "false"})
    decision = evaluate(plain, identity, [tls_only])
    assert not decision.allowed and "explicit Deny in bucket" in decision.reason
    own = [policy(allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"})]
    assert not evaluate(request("s3:DeleteObject", f"{BUCKET}/k"), own).allowed


def test_a_service_principal_is_allowed_only_by_a_resource_policy_naming_it():
    topic = "arn:aws:sns:r:1:t"
    source = {"ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:r:{ACCOUNT}:alarm:recsys-dev-*"}}
    for_alarms = policy({"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
                         "Action": "sns:Publish", "Resource": topic, "Condition": source})  # fmt: skip
    alarm = Principal("cw", ACCOUNT, service="cloudwatch.amazonaws.com")
    ours = f"arn:aws:cloudwatch:r:{ACCOUNT}:alarm:recsys-dev-endpoint-5xx"
    assert evaluate(request("sns:Publish", topic, alarm, **{"aws:SourceArn": ours}), [], [for_alarms]).allowed
    theirs = f"arn:aws:cloudwatch:r:{ACCOUNT}:alarm:other-team"
    assert not evaluate(request("sns:Publish", topic, alarm, **{"aws:SourceArn": theirs}), [], [for_alarms]).allowed
    assert not evaluate(request("sns:Publish", topic, EVENTS, **{"aws:SourceArn": ours}), [], [for_alarms]).allowed


def test_a_key_policy_must_allow_the_principal_or_delegate_to_the_account():
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}
    grant = [policy(allow("kms:Decrypt", KEY))]
    assert evaluate(request("kms:Decrypt", KEY), grant, key_policy=policy(root, source="key")).allowed
    no_root = policy({**root, "Principal": {"AWS": "arn:aws:iam::999999999999:root"}}, source="key")
    decision = evaluate(request("kms:Decrypt", KEY), grant, key_policy=no_root)
    assert not decision.allowed and "neither the principal nor its account" in decision.reason
    decision = evaluate(request("kms:Decrypt", KEY), [], key_policy=policy(root, source="key"))
    assert not decision.allowed and "delegates to IAM" in decision.reason
    for_logs = policy({"Effect": "Allow", "Principal": {"Service": "logs.ap-south-1.amazonaws.com"},
                       "Action": "kms:Encrypt*", "Resource": "*"}, source="key")  # fmt: skip
    logs = Principal("logs", ACCOUNT, service="logs.ap-south-1.amazonaws.com")
    assert evaluate(request("kms:Encrypt", KEY, logs), key_policy=for_logs).allowed


@pytest.mark.parametrize(
    ("conditions", "context", "matches"),
    [
        ({"StringEquals": {"cloudwatch:namespace": "RecSys/MLOps"}}, {"cloudwatch:namespace": "RecSys/MLOps"}, True),
        ({"StringEquals": {"cloudwatch:namespace": "RecSys/MLOps"}}, {"cloudwatch:namespace": "Other"}, False),
        ({"StringEquals": {"cloudwatch:namespace": "RecSys/MLOps"}}, {}, False),  # absent key: no match
        ({"StringEquals": {"s3:prefix": ["a", "b"]}}, {"s3:prefix": "b"}, True),  # values ORed
        ({"StringNotEquals": {"s3:prefix": "a"}}, {}, True),  # negated operator on an absent key matches
        ({"StringLike": {"iam:AWSServiceName": "sagemaker.*"}}, {"iam:AWSServiceName": "sagemaker.aas"}, True),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {"kms:GrantIsForAWSResource": "true"}, True),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {}, False),
        ({"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}, {}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::src*"}}, {"aws:SourceArn": "arn:aws:s3:::src-bucket"}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:events:*:1:rule/r"}}, {"aws:SourceArn": "arn:aws:events:x:2:rule/r"},
         False),
        ({"Null": {"aws:SourceArn": "true"}}, {}, True),
        # two operators, two keys: all must match (AND); keys compare case-insensitively
        ({"StringEquals": {"a:k": "1"}, "Bool": {"b:K": "true"}}, {"A:K": "1", "b:k": "true"}, True),
        ({"StringEquals": {"a:k": "1"}, "Bool": {"b:K": "true"}}, {"a:k": "1"}, False),
    ],
)
def test_conditions(conditions, context, matches):
    assert condition_matches(conditions, context) is matches


def test_what_it_does_not_implement_is_refused_not_guessed():
    with pytest.raises(UnsupportedPolicy):
        condition_matches({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"})
    with pytest.raises(UnsupportedPolicy):
        variable = allow("s3:GetObject", "arn:aws:s3:::${aws:username}")
        evaluate(request("s3:GetObject", f"{BUCKET}/k"), [policy(variable)])
