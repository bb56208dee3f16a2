"""The erasure workflow in the streaming stack: its Lambda, DLQ and a role scoped to the stores' prefixes."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from lambdas.erasure import core
from lambdas.erasure import handler as erasure_lambda
from settings import erasure as erasure_settings


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, dict]:
    from stacks.app_builder import build_app, new_app

    app, cfg = build_app(new_app(str(tmp_path_factory.mktemp("cdk-erasure"))), "dev", nag=False)
    return {s.stack_name.removeprefix(f"{cfg.prefix}-"): s.template for s in app.synth().stacks}


@pytest.fixture(scope="module")
def streaming_template(templates) -> Template:
    return Template.from_json(templates["streaming"])


def test_every_retention_the_audit_states_is_a_lifecycle_rule_of_the_deployed_buckets(templates) -> None:
    """The retention the erasure states for late copies is enforced, not printed: the data stack's buckets expire
    stream-errors/ and capture/ (and raw/, athena-results/) after raw_expiry_days."""
    from settings.config import load_project_config

    cfg = load_project_config("dev")
    rules = {r["Id"]: r for b in Template.from_json(templates["data"]).find_resources("AWS::S3::Bucket").values()
             for r in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])}  # fmt: skip
    stated = [r for r in erasure_settings.retention(cfg) if r["enforced_by"].startswith("S3 lifecycle")]
    named = {w.strip(" ,") for r in stated for w in r["enforced_by"].split() if w.startswith(("expire-", "tier-"))}
    assert named and named <= set(rules), named - set(rules)
    assert rules["expire-late-copies-stream-errors"]["Prefix"] == "stream-errors/interactions/"
    assert rules["expire-late-copies-capture"]["Prefix"] == f"{erasure_settings.CAPTURE_PREFIX}/"
    assert {rules[n]["ExpirationInDays"] for n in named if n != "expire-noncurrent"} == {cfg.raw_expiry_days}
    _, fn = _one(Template.from_json(templates["streaming"]), "AWS::Lambda::Function", "Erasure")
    retention = json.loads(_joined(fn["Properties"]["Environment"]["Variables"][erasure_settings.ENV_RETENTION]))
    assert retention == erasure_settings.retention(cfg)


def _one(template: Template, type_: str, contains: str) -> tuple[str, dict]:
    found = {k: v for k, v in template.find_resources(type_).items() if contains in k}
    assert len(found) == 1, found.keys()
    return next(iter(found.items()))


def _joined(value) -> str:
    """An Fn::Join of literals and Refs as text, each Ref as ``<LogicalId>`` (its digits dropped)."""
    if isinstance(value, str):
        return value
    _, parts = value["Fn::Join"]
    return "".join(p if isinstance(p, str) else f"<{p['Ref'].rstrip('0123456789ABCDEF')}>" for p in parts)


def test_the_erasure_function_gets_its_store_list_an_encrypted_environment_and_a_dlq(streaming_template) -> None:
    _, fn = _one(streaming_template, "AWS::Lambda::Function", "Erasure")
    props = fn["Properties"]
    assert props["Handler"] == "handler.handler" and props["ReservedConcurrentExecutions"] == 1
    assert "KmsKeyArn" in props and "TargetArn" in props["DeadLetterConfig"]
    stores = json.loads(_joined(props["Environment"]["Variables"][erasure_settings.ENV_STORES]))
    names = {s["name"] for s in stores}
    assert {"raw", "curated", "quarantine", "features", "training sets", "batch outputs", "captured requests",
            "recent items"} <= names  # fmt: skip
    assert next(s for s in stores if s["name"] == "recent items")["table"] == "<RecentItems>"
    _, queue = _one(streaming_template, "AWS::SQS::Queue", "ErasureDlq")
    assert "KmsMasterKeyId" in queue["Properties"]


def test_the_erasure_role_may_touch_only_the_stores_and_its_records(streaming_template) -> None:
    role_id, _ = _one(streaming_template, "AWS::IAM::Role", "ErasureRole")
    _, policy = _one(streaming_template, "AWS::IAM::Policy", "ErasureRoleDefaultPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # the only wildcard actions: the DLQ grant's KMS ones on the data key (acknowledged app-wide, stacks/nag.py)
    assert {a for a in actions if a.endswith("*")} <= {"kms:ReEncrypt*", "kms:GenerateDataKey*"}, actions
    assert "s3:DeleteObject" not in actions and "s3:DeleteObjectVersion" in actions  # deletes name a version
    assert {"dynamodb:Scan", "dynamodb:DeleteItem"} <= actions and "dynamodb:PutItem" not in actions
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert len(writes) == 1
    resources = [_joined(r) for r in writes[0]["Resource"]]
    prefixes = sorted(r.split(":::", 1)[1].split("/", 1)[1] for r in resources)
    assert prefixes == sorted(["raw/*", "stream-errors/interactions/*", "curated/*", "quarantine/*", "features/*",
                               "training/*", "pipeline/*", "batch/*", "capture/*", "athena-results/*",
                               "erasure/*"])  # never a whole bucket  # fmt: skip
    assert all(s["Resource"] != "*" for s in statements)
    assert role_id


def test_the_records_prefix_covers_the_audit_and_progress_keys_and_the_handler_uses_the_settings_names() -> None:
    assert core.AUDIT_PREFIX.startswith(erasure_settings.RECORDS_PREFIX)
    assert core.PROGRESS_PREFIX.startswith(erasure_settings.RECORDS_PREFIX)
    assert (erasure_lambda.ENV_STORES, erasure_lambda.ENV_BUCKET) == (erasure_settings.ENV_STORES,
                                                                      erasure_settings.ENV_BUCKET)  # fmt: skip


def test_the_lambda_bundle_imports_on_its_own_without_the_project() -> None:
    """The asset is the folder alone: the handler must find ``core`` beside it and nothing of the project."""
    import subprocess
    import sys

    from settings.config import PROJECT_ROOT

    project = ("settings", "recsys", "stacks", "lambdas")
    code = ("import sys; sys.path.insert(0, '.'); import handler; "
            f"assert not any(m.split('.')[0] in {project!r} for m in sys.modules)")  # fmt: skip
    run = subprocess.run([sys.executable, "-I", "-c", code], cwd=PROJECT_ROOT / "lambdas" / "erasure",
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
