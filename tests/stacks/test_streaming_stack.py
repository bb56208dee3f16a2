"""The streaming stack's template: encryption everywhere, DLQ wiring, TTL, partial batch failures, API auth
and throttling, and roles limited to what the code calls."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from lambdas.stream_consumer import handler as consumer
from recsys.local.streaming import CONSUMER_BATCH_SIZE, CONSUMER_RETRY_ATTEMPTS, RECENT_ITEMS_N, streaming_names
from settings.config import CDK_JSON, load_project_config
from stacks.app_builder import build_app
from stacks.factories.erasure import function_name as erasure_function_name
from stacks.streaming_stack import API_BURST_LIMIT, API_RATE_LIMIT
from tests import HEAVY_TIMEOUT_S

# the group's synth of every stack lands on whichever of its tests runs first
pytestmark = [pytest.mark.xdist_group("synth"), pytest.mark.timeout(HEAVY_TIMEOUT_S)]


@pytest.fixture(scope="module")
def template(synth) -> Template:
    _, templates = synth("dev")
    return templates["recsys-dev-streaming"]


def one(template: Template, type_: str) -> dict:
    found = template.find_resources(type_)
    assert len(found) == 1, found
    return next(iter(found.values()))["Properties"]


def logical_id(template: Template, type_: str, **props) -> str:
    found = template.find_resources(type_, {"Properties": props})
    assert len(found) == 1, found
    return next(iter(found))


def statements(template: Template, role_prefix: str) -> list[dict]:
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for lid, p in template.find_resources("AWS::IAM::Policy").items()
        if lid.startswith(role_prefix)
    ]
    assert len(policies) == 1
    return policies[0]


def actions(stmts: list[dict]) -> set[str]:
    return {a for s in stmts for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_stream_is_encrypted_with_the_data_key(template):
    props = one(template, "AWS::Kinesis::Stream")
    assert props["StreamEncryption"]["EncryptionType"] == "KMS"
    assert "DataKey" in json.dumps(props["StreamEncryption"]["KeyId"])


def test_table_has_ttl_pitr_on_demand_and_customer_managed_encryption(template):
    props = one(template, "AWS::DynamoDB::Table")
    assert props["TableName"] == streaming_names(load_project_config()).table
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": consumer.TTL_ATTR, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True and props["SSESpecification"]["SSEType"] == "KMS"
    assert "DataKey" in json.dumps(props["SSESpecification"]["KMSMasterKeyId"])


def test_queues_are_kms_encrypted_and_tls_only(template):
    queues = template.find_resources("AWS::SQS::Queue")
    assert len(queues) == 3  # the consumer's DLQ, the failed-batches queue, the erasure function's DLQ
    assert all("DataKey" in json.dumps(q["Properties"]["KmsMasterKeyId"]) for q in queues.values())
    policies = template.find_resources("AWS::SQS::QueuePolicy")
    denied = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denied) == 3


def test_consumer_reports_batch_item_failures_bisects_retries_and_sends_exhausted_batches_to_a_queue(template):
    props = one(template, "AWS::Lambda::EventSourceMapping")
    failed_queue = logical_id(
        template, "AWS::SQS::Queue", QueueName=streaming_names(load_project_config()).failure_queue
    )
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["MaximumRetryAttempts"] == CONSUMER_RETRY_ATTEMPTS
    assert props["BatchSize"] == CONSUMER_BATCH_SIZE and props["MaximumBatchingWindowInSeconds"] >= 1
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [failed_queue, "Arn"]}


def test_consumer_is_configured_by_environment(template):
    env = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": "handler.handler"}})
    variables = [f["Properties"]["Environment"]["Variables"] for f in env.values()]
    consumer_env = next(v for v in variables if consumer.ENV_DLQ_URL in v)
    assert consumer_env[consumer.ENV_RECENT_N] == str(RECENT_ITEMS_N)
    assert {consumer.ENV_TABLE, consumer.ENV_TTL_DAYS} <= set(consumer_env)


def test_every_api_method_needs_iam_auth_and_validates_parameters(template):
    methods = template.find_resources("AWS::ApiGateway::Method")
    assert methods
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
        assert "RequestValidatorId" in method["Properties"]


def test_api_stage_is_throttled_and_access_logged(template):
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "MethodSettings": Match.array_with(
                [Match.object_like({"ThrottlingRateLimit": API_RATE_LIMIT, "ThrottlingBurstLimit": API_BURST_LIMIT})]
            ),
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "TracingEnabled": True,
        },
    )


def test_firehose_archives_the_stream_encrypted_under_raw_interactions_stream(template):
    props = one(template, "AWS::KinesisFirehose::DeliveryStream")
    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    s3 = props["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"].startswith("raw/clickstream/")
    assert not s3["ErrorOutputPrefix"].startswith("raw/")  # failed deliveries are not training data
    assert "DataKey" in json.dumps(s3["EncryptionConfiguration"]["KMSEncryptionConfig"])


def test_roles_get_only_the_actions_their_code_calls(template):
    everything = [s for p in template.find_resources("AWS::IAM::Policy").values() for s in p["Properties"]
                  ["PolicyDocument"]["Statement"]]  # fmt: skip
    assert all(s["Resource"] != "*" and "*" not in actions([s]) for s in everything)
    consumer_actions = actions(statements(template, "ConsumerRole"))
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "sqs:SendMessage"} <= consumer_actions
    assert {a for a in consumer_actions if a.startswith("dynamodb:")} == {
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    }
    api = statements(template, "RecommendApiRole")
    assert {a for a in actions(api) if not a.startswith("logs:")} == {
        "dynamodb:GetItem",
        "kms:Decrypt",
        "sagemaker:InvokeEndpoint",
    }
    invoke = next(s for s in api if s["Action"] == "sagemaker:InvokeEndpoint")
    assert json.dumps(invoke["Resource"]).endswith(f':endpoint/{load_project_config().endpoint_name}"]]}}')
    archive = statements(template, "ArchiveRole")
    puts = next(s for s in archive if "s3:PutObject" in s["Action"])
    assert all("/raw/clickstream/*" in json.dumps(r) or "/stream-errors/" in json.dumps(r)
               for r in puts["Resource"])  # fmt: skip


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_functions_encrypt_their_environment_with_the_data_key_and_reserve_concurrency(synth, env_name):
    cfg = load_project_config(env_name)
    t = synth(env_name)[1][f"{cfg.prefix}-streaming"]
    found = t.find_resources("AWS::Lambda::Function").values()
    functions = {f["Properties"]["FunctionName"]: f["Properties"] for f in found}
    names = streaming_names(cfg)
    assert set(functions) == {names.consumer_function, names.api_function, erasure_function_name(cfg)}
    for props in functions.values():
        assert "DataKey" in json.dumps(props["KmsKeyArn"])
    # The API function's reservation comes from cdk.json (different per environment); the consumer's is its shards.
    assert functions[names.api_function]["ReservedConcurrentExecutions"] == cfg.api_reserved_concurrency
    assert functions[names.consumer_function]["ReservedConcurrentExecutions"] >= 1


def test_log_groups_have_the_configured_retention(template):
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) == 5  # consumer, API function, API access, Firehose, erasure
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {load_project_config().log_retention_days}


def test_streaming_stack_exists_only_when_enabled(tmp_path):
    context = json.loads(CDK_JSON.read_text())["context"]
    context["environments"]["dev"]["enable_streaming"] = False
    app = cdk.App(outdir=str(tmp_path), context=context)
    build_app(app, "dev", nag=False)
    assert "recsys-dev-streaming" not in {c.node.id for c in app.node.children}
    assert "recsys-dev-data" in {c.node.id for c in app.node.children}
