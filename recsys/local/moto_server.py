"""A moto server on 127.0.0.1: the local run's stand-in for an AWS account.

The local flow talks to AWS through real HTTP (boto3, awswrangler, subprocesses), so the same
code paths run locally and on AWS; only the endpoint differs. Clients are built with an explicit
endpoint and fake credentials, so nothing here mutates ``os.environ``; subprocesses get the same
settings through :meth:`LocalAws.env`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

LOCAL_HOST = "127.0.0.1"
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"

#: Variables that would make boto3 look for a real profile or mix real and fake credentials.
_CONFLICTING_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

#: Attempts per AWS call (the first one included) for every client of the local run and, through
#: ``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE`` in :meth:`LocalAws.env`, its subprocesses. Standard mode
#: retries throttling (``SlowDown``), 500/502/503/504 and connection errors with jittered backoff;
#: an AccessDenied or NoSuchKey is never retried.
MAX_ATTEMPTS = 4
RETRY_MODE = "standard"
# Path-style S3 addressing: virtual-host style would resolve <bucket>.127.0.0.1, which fails.
# ``total_max_attempts`` counts the first call, as AWS_MAX_ATTEMPTS does (``max_attempts`` would count retries).
_BOTO_CONFIG = BotoConfig(
    s3={"addressing_style": "path"}, retries={"total_max_attempts": MAX_ATTEMPTS, "mode": RETRY_MODE}
)


@dataclass(frozen=True)
class LocalAws:
    """Where the local AWS answers and how to reach it."""

    url: str
    port: int
    region: str

    def env(self) -> dict[str, str]:
        """Variables pointing boto3/botocore (and so awswrangler, SageMaker SDK) at the server.

        ``AWS_ENDPOINT_URL`` is honoured by botocore for every service. Merge over ``os.environ``
        with :meth:`subprocess_env` so a developer's real profile cannot leak in.
        """
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "AWS_RETRY_MODE": RETRY_MODE,
        }

    def subprocess_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) without real-profile variables, plus :meth:`env`."""
        merged = {k: v for k, v in (os.environ if base is None else base).items() if k not in _CONFLICTING_ENV}
        merged.update(self.env())
        return merged

    def session(self) -> boto3.Session:
        """A boto3 session with the fake credentials and region (endpoint still per client)."""
        return boto3.Session(
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
            region_name=self.region,
        )

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` pointed at the server (cached: building one takes ~0.1 s)."""
        return _client(self.url, self.region, service)

    def reset(self) -> None:
        """Forget every resource (moto's reset API): a clean account without a restart."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


_CLIENT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=128)
def _client_unlocked(url: str, region: str, service: str) -> Any:
    session = boto3.Session(
        aws_access_key_id=FAKE_ACCESS_KEY_ID, aws_secret_access_key=FAKE_SECRET_ACCESS_KEY, region_name=region
    )
    client = session.client(service, endpoint_url=url, config=_BOTO_CONFIG)
    if service == "s3":
        name_s3_object_in_errors(client)
    return client


def _remember_s3_target(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if isinstance(params, dict) and params.get("Bucket"):
        context["s3_target"] = f"s3://{params['Bucket']}/{params.get('Key') or params.get('Prefix') or ''}"


def _append_s3_target(http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    target = context.get("s3_target")
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if target and http_response is not None and http_response.status_code >= 300 and isinstance(error, dict):
        error["Message"] = f"{error.get('Message') or error.get('Code', 'error')} ({target})"


def name_s3_object_in_errors(client: Any) -> None:
    """Make an S3 ``ClientError`` name its object: botocore's message names the operation and the
    error code only ("AccessDenied when calling the PutObject operation"); this appends
    ``(s3://bucket/key)``, so a failed run says what it could not read or write."""
    client.meta.events.register("before-parameter-build.s3", _remember_s3_target, unique_id="recsys-s3-target")
    client.meta.events.register("after-call.s3", _append_s3_target, unique_id="recsys-s3-target-error")


def _client(url: str, region: str, service: str) -> Any:
    """boto3 sessions are not thread-safe; clients are, so build under a lock and share."""
    with _CLIENT_LOCK:
        return _client_unlocked(url, region, service)


def _answers(url: str, wait_s: float = 60.0) -> bool:
    """True once the server replies to its own API (it is up and it is moto), within ``wait_s``: a bound for a
    server that never comes up, not an expectation (its first answer imports moto's backends: seconds, and many
    more on a loaded machine)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=wait_s) as response:
                json.loads(response.read() or b"{}")
                return True
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _check_port_free(port: int) -> None:
    """Fail fast on a busy port: moto's server thread would die and ``start()`` would wait forever."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            probe.bind((LOCAL_HOST, port))
        except OSError as exc:
            raise OSError(f"cannot start the local AWS (moto) on {LOCAL_HOST}:{port}: {exc.strerror}") from exc


@contextmanager
def local_aws(region: str, port: int | None = None) -> Iterator[LocalAws]:
    """Run a moto server on 127.0.0.1 (a free port when ``port`` is None) and always stop it.

    Port 0 lets the OS pick, read back after binding, so two runs never race for a port.
    moto keeps its resources in module globals: two servers in one process share one account.
    """
    from moto.server import ThreadedMotoServer  # heavy import: only when a server is needed

    # werkzeug logs every request at INFO to stderr; the local run's output is for humans.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if port:
        _check_port_free(port)
    server = ThreadedMotoServer(ip_address=LOCAL_HOST, port=port or 0, verbose=False)
    server.start()
    _, bound_port = server.get_host_and_port()
    try:
        aws = LocalAws(url=f"http://{LOCAL_HOST}:{bound_port}", port=bound_port, region=region)
        if not _answers(aws.url):
            raise RuntimeError(f"moto server on {aws.url} started but does not answer")
        yield aws
    finally:
        _stop(server, bound_port)


def _stop(server: Any, port: int) -> None:
    """Stop the server without the HTTP loop's 0.5 s poll wait: connect until the loop notices."""

    def stop() -> None:
        with suppress(Exception):
            server.stop()

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    deadline = time.monotonic() + 10
    while stopper.is_alive() and time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection((LOCAL_HOST, port), timeout=0.2):
            pass
        stopper.join(0.02)
