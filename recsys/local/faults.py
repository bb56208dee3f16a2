"""S3 faults injected on the client side, for rehearsing failures against moto (tests, bench).

moto answers every request it implements; to see what the local run does when S3 throttles
(503 ``SlowDown``), fails (500 ``InternalError``) or refuses (403 ``AccessDenied``), botocore's
``before-send`` event is used: a handler that returns a response short-circuits the HTTP send,
and botocore then parses and retries that response exactly as if S3 had sent it. Nothing in
moto or in the code under test changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from botocore.awsrequest import AWSResponse

from recsys.local import moto_server

#: (HTTP status, S3 error code, message) of the faults the tests and the bench inject.
KINDS: dict[str, tuple[int, str, str]] = {
    "SlowDown": (503, "SlowDown", "Please reduce your request rate."),
    "InternalError": (500, "InternalError", "We encountered an internal error. Please try again."),
    "AccessDenied": (403, "AccessDenied", "Access Denied"),
}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


@dataclass
class S3Fault:
    """Fail ``times`` matching requests (all of them when ``times`` is None) with ``kind``.

    A request matches when its operation is ``operation`` and its URL contains ``key_contains``.
    With ``every=1`` the first ``times`` matching requests fail (consecutive failures of one call);
    with ``every=n`` only the 1st, (n+1)th, ... do, spreading single failures over many calls.
    ``seen`` counts matching requests (retries included), ``injected`` the failed ones.
    """

    operation: str
    kind: str
    times: int | None = 1
    key_contains: str = ""
    every: int = 1
    seen: int = 0
    injected: int = 0

    @property
    def event(self) -> str:
        return f"before-send.s3.{self.operation}"

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.key_contains not in request.url:
            return None
        self.seen += 1
        if (self.times is not None and self.injected >= self.times) or (self.seen - 1) % self.every:
            return None
        self.injected += 1
        status, code, message = KINDS[self.kind]
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Body(body.encode()))


@contextmanager
def inject_s3_faults(*faults: S3Fault) -> Iterator[tuple[S3Fault, ...]]:
    """Register ``faults`` on every S3 client the local run gets from :meth:`LocalAws.client` while
    the block runs (clients already cached and ones built meanwhile, e.g. by the main job's own
    moto server), and remove them afterwards."""
    touched: dict[int, Any] = {}
    original = moto_server._client

    def arm(client: Any) -> Any:
        if id(client) not in touched:
            touched[id(client)] = client
            for i, fault in enumerate(faults):
                client.meta.events.register_first(fault.event, fault, unique_id=f"recsys-fault-{id(fault)}-{i}")
        return client

    def client_with_faults(url: str, region: str, service: str) -> Any:
        client = original(url, region, service)
        return arm(client) if service == "s3" else client

    try:
        with mock.patch.object(moto_server, "_client", client_with_faults):
            yield faults
    finally:
        for client in touched.values():
            for i, fault in enumerate(faults):
                client.meta.events.unregister(fault.event, unique_id=f"recsys-fault-{id(fault)}-{i}")
