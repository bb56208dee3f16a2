"""``GET /recommendations/{user_id}?k=10`` behind API Gateway: fresh recommendations from the clickstream.

Reads the user's recent products (written by the stream consumer seconds earlier) and asks the
SageMaker endpoint with ``{"user_id", "k", "recent_product_ids"}`` (CONTRACTS.md §3), so a burst of
views changes what the user sees without retraining. The endpoint call is a parameter (``invoke``)
or the module hook ``INVOKE``, so the local run can point it at the local HTTP endpoint.

Self-contained (stdlib + boto3): the deployment bundle is this folder alone.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

LOG = logging.getLogger(__name__)
LOG.setLevel(logging.INFO)

ENV_TABLE, ENV_ENDPOINT = "RECENT_ITEMS_TABLE", "ENDPOINT_NAME"
RECENT_ATTR = "recent_product_ids"  # written by lambdas/stream_consumer (a test checks they agree)
DEFAULT_K, MAX_K = 10, 100
_USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

Invoke = Callable[[dict[str, Any]], dict[str, Any]]

#: Test/local hook: when set, used instead of sagemaker-runtime.
INVOKE: Invoke | None = None


class EndpointError(RuntimeError):
    """The model endpoint failed or answered something that is not a JSON object."""


def sagemaker_invoke(request: dict[str, Any], *, endpoint_name: str | None = None, client: Any = None) -> dict:
    """The production path: sagemaker-runtime InvokeEndpoint with a JSON body."""
    client = client or _client("sagemaker-runtime")
    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name or os.environ[ENV_ENDPOINT],
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(request).encode(),
        )
        body = json.loads(response["Body"].read())
    except (ClientError, BotoCoreError, ValueError) as exc:
        raise EndpointError(str(exc)) from exc
    if not isinstance(body, dict):
        raise EndpointError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _response(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }


def _bad(message: str) -> dict[str, Any]:
    return _response(400, {"error": message})


def parse_k(params: Mapping[str, Any] | None) -> int:
    raw = (params or {}).get("k")
    if raw is None or raw == "":
        return DEFAULT_K
    text = str(raw).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {raw!r}")
    return int(text)


def recent_product_ids(user_id: str, *, table: str | None = None, dynamodb: Any = None) -> list[str]:
    """The user's recent products, most recent first; [] for a user the stream has not seen."""
    dynamodb = dynamodb or _client("dynamodb")
    item = dynamodb.get_item(
        TableName=table or os.environ[ENV_TABLE],
        Key={"user_id": {"S": user_id}},
        ProjectionExpression="#r",
        ExpressionAttributeNames={"#r": RECENT_ATTR},
    ).get("Item", {})
    return [v["S"] for v in item.get(RECENT_ATTR, {}).get("L", [])]


def handler(
    event: Mapping[str, Any],
    context: Any = None,
    *,
    invoke: Invoke | None = None,
    table: str | None = None,
    dynamodb: Any = None,
) -> dict[str, Any]:
    """API Gateway (REST, proxy integration) entry point."""
    if event.get("httpMethod", "GET") != "GET":
        return _response(405, {"error": "only GET is supported"})
    user_id = (event.get("pathParameters") or {}).get("user_id") or ""
    if not _USER_ID.match(user_id):
        return _bad("user_id must be 1-128 characters of letters, digits, '_', '-', '.', ':' or '@'")
    try:
        k = parse_k(event.get("queryStringParameters"))
    except ValueError as exc:
        return _bad(str(exc))
    try:
        recent = recent_product_ids(user_id, table=table, dynamodb=dynamodb)
    except (ClientError, BotoCoreError) as exc:
        # Degrade, do not fail: the endpoint still answers from the user's history or popularity.
        LOG.warning("recent items unavailable for %s: %s", user_id, exc)
        recent = []
    request = {"user_id": user_id, "k": k, "recent_product_ids": recent}
    call = invoke or INVOKE or sagemaker_invoke
    try:
        answer = call(request)
    except Exception as exc:  # any endpoint failure is the upstream's, reported as 502 with its message
        LOG.error("endpoint failed for %s: %s", user_id, exc)
        return _response(502, {"error": f"recommendation endpoint failed: {exc}"})
    if not isinstance(answer, dict):
        return _response(502, {"error": "recommendation endpoint returned something other than a JSON object"})
    return _response(200, answer)


_CLIENTS: dict[str, Any] = {}


def _client(service: str) -> Any:
    if service not in _CLIENTS:
        _CLIENTS[service] = boto3.client(service)
    return _CLIENTS[service]
