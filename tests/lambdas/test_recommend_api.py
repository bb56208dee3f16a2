"""The serving Lambda: validation, recent items into the endpoint request, endpoint failures as 502."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from botocore.response import StreamingBody

from lambdas.recommend_api import handler as api
from lambdas.stream_consumer import handler as consumer
from recsys.local.streaming import provision_streaming
from settings.config import load_project_config
from tests.permissions.recorder import answering


def event(user_id: str | None = "u1", k: str | None = None, method: str = "GET") -> dict[str, Any]:
    return {
        "httpMethod": method,
        "pathParameters": {"user_id": user_id} if user_id is not None else None,
        "queryStringParameters": {"k": k} if k is not None else None,
    }


class Recorder:
    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.requests: list[dict] = []
        self.answer, self.error = answer, error

    def __call__(self, request: dict) -> Any:
        self.requests.append(request)
        if self.error:
            raise self.error
        return self.answer if self.answer is not None else {"user_id": request["user_id"], "recommendations": []}


class FakeDynamo:
    def __init__(self, items: dict[str, list[str]] | None = None, error: Exception | None = None) -> None:
        self.items, self.error = items or {}, error

    def get_item(self, **kw: Any) -> dict:
        if self.error:
            raise self.error
        ids = self.items.get(kw["Key"]["user_id"]["S"])
        return {"Item": {api.RECENT_ATTR: {"L": [{"S": i} for i in ids]}}} if ids is not None else {}


def call(evt: dict, invoke: Recorder, dynamodb: Any = None) -> tuple[int, dict]:
    response = api.handler(evt, invoke=invoke, table="t", dynamodb=dynamodb or FakeDynamo({"u1": ["p3", "p1"]}))
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def test_passes_recent_items_and_k_to_the_endpoint_and_returns_its_json():
    answer = {"user_id": "u1", "recommendations": [{"product_id": "p42", "score": 0.9}], "strategy": "personalized"}
    invoke = Recorder(answer)
    status, body = call(event(k="5"), invoke)
    assert (status, body) == (200, answer)
    assert invoke.requests == [{"user_id": "u1", "k": 5, "recent_product_ids": ["p3", "p1"]}]


def test_unknown_user_gets_an_empty_recent_list_and_default_k():
    invoke = Recorder()
    status, _ = call(event("new-user"), invoke)
    assert status == 200
    assert invoke.requests == [{"user_id": "new-user", "k": api.DEFAULT_K, "recent_product_ids": []}]


@pytest.mark.parametrize("k", ["0", "-1", "abc", "1.5", str(api.MAX_K + 1)])
def test_bad_k_is_a_400_naming_k(k):
    invoke = Recorder()
    status, body = call(event(k=k), invoke)
    assert status == 400 and "k must be" in body["error"]
    assert invoke.requests == []


@pytest.mark.parametrize("user_id", [None, "", "a" * 129, "u 1", "../x"])
def test_bad_user_id_is_a_400(user_id):
    status, body = call(event(user_id), Recorder())
    assert status == 400 and "user_id" in body["error"]


def test_non_get_is_rejected():
    assert call(event(method="POST"), Recorder())[0] == 405


def test_endpoint_failure_is_a_502_with_the_message():
    status, body = call(event(), Recorder(error=api.EndpointError("model container crashed")))
    assert status == 502 and "model container crashed" in body["error"]


def test_endpoint_answer_that_is_not_an_object_is_a_502():
    assert call(event(), Recorder(answer=["p1"]))[0] == 502


def test_unavailable_table_degrades_to_no_recent_items():
    from botocore.exceptions import ClientError

    invoke = Recorder()
    error = ClientError({"Error": {"Code": "ThrottlingException"}}, "GetItem")
    status, _ = call(event(), invoke, dynamodb=FakeDynamo(error=error))
    assert status == 200 and invoke.requests[0]["recent_product_ids"] == []


def test_module_hook_replaces_sagemaker(monkeypatch):
    hook = Recorder()
    monkeypatch.setattr(api, "INVOKE", hook)
    response = api.handler(event(), table="t", dynamodb=FakeDynamo())
    assert response["statusCode"] == 200 and len(hook.requests) == 1


def test_sagemaker_invoke_sends_json_to_the_named_endpoint():
    """Through a botocore client (answering offline: moto has no InvokeEndpoint), so the call is also recorded."""
    endpoint = load_project_config().endpoint_name
    body = b'{"user_id": "u1", "recommendations": []}'
    invoke = answering("sagemaker-runtime", "invoke_endpoint", {"Body": StreamingBody(io.BytesIO(body), len(body))})
    sent: list[dict[str, Any]] = []

    class Runtime:
        def invoke_endpoint(self, **kw: Any) -> dict:
            sent.append(kw)
            return invoke(**kw)

    answer = api.sagemaker_invoke({"user_id": "u1", "k": 3}, endpoint_name=endpoint, client=Runtime())
    assert answer["user_id"] == "u1"
    assert sent[0]["EndpointName"] == endpoint and json.loads(sent[0]["Body"]) == {"user_id": "u1", "k": 3}


def test_reads_what_the_consumer_writes(aws_env):
    """The two Lambdas agree on the item layout (they share no code in their bundles)."""
    res = provision_streaming(load_project_config(), aws_env)
    views = [{"user_id": "u1", "product_id": p, "event_type": "view", "timestamp": 1_700_000_000 + i} for i, p in
             enumerate(["p1", "p2"])]  # fmt: skip
    records = [
        {
            "kinesis": {"sequenceNumber": str(100 + i), "data": base64.b64encode(json.dumps(v).encode()).decode()},
            "eventID": f"shardId-0:{100 + i}",
        }
        for i, v in enumerate(views)
    ]
    ddb = aws_env.client("dynamodb")
    consumer.process_batch({"Records": records}, settings=res.settings(), dynamodb=ddb, sqs=aws_env.client("sqs"))
    assert api.recent_product_ids("u1", table=res.names.table, dynamodb=ddb) == ["p2", "p1"]
