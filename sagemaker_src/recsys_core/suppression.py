"""The erasure suppression list as the endpoint honours it: a forgotten shopper is answered as a new one.

The erasure function (``lambdas/erasure/core.py``) adds the shopper's keyed hash (HMAC-SHA256) to one
document, ``training/erasure_suppression.json`` in the destination bucket, *before* it touches any store.
The training pipeline's PrepareData drops them from the next model; this module makes the serving model
stop personalising for them at once, without waiting for a re-trained or re-packed model.

Hashed, not plain: the list is read by the endpoint's every worker and kept in its memory, and a plain
list would itself be a store of personal data (exactly the people who asked to be forgotten). The key
sits in the same document, so the list is pseudonymous, not anonymous: it is guarded like the data
(SSE-KMS, read only by the erasure function, the training job and the endpoint's role).

Cheap on the request path: the set of hashes is in memory; a request costs one HMAC (about 1 us) and
only when the list is not empty. Where the list is re-read:

- ``s3://bucket/key`` (AWS): a daemon thread per worker process re-reads it every ``refresh_seconds``
  with ``IfNoneMatch`` on the last ETag (a 304 costs nothing to parse); no request ever waits on S3.
- a file path (the local run, tests): ``os.stat`` on each check, re-read when mtime or size changes.

A list that cannot be read keeps the last one read (a failure never un-suppresses anyone) and is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

#: The endpoint container's variable naming the list (``s3://...`` or a file path); unset = no suppression.
SUPPRESSION_ENV = "RECSYS_SUPPRESSION_URI"
#: How often (seconds) the variable's S3 object is re-read: the longest a forgotten shopper can still be
#: personalised after the erasure function wrote the list.
REFRESH_ENV = "RECSYS_SUPPRESSION_REFRESH_SECONDS"
DEFAULT_REFRESH_SECONDS = 30.0
ALGORITHM = "hmac-sha256"


def parse(doc: dict[str, Any]) -> tuple[bytes, frozenset[str]]:
    """(key, hashes) of a suppression document; ValueError when it is not one."""
    if doc.get("algorithm", ALGORITHM) != ALGORITHM or not isinstance(doc.get("user_keys"), list):
        raise ValueError(f"not a {ALGORITHM} suppression list")
    return bytes.fromhex(doc["key"]), frozenset(str(k) for k in doc["user_keys"])


class Suppression:
    """Answers ``forgotten(user_id)`` from the latest suppression list it could read."""

    def __init__(self, uri: str, refresh_seconds: float = DEFAULT_REFRESH_SECONDS, s3: Any = None) -> None:
        self.uri = uri
        self.refresh_seconds = refresh_seconds
        self._s3 = s3
        self._key, self._hashes = b"", frozenset()
        self._stamp: tuple[Any, ...] | None = None  # file: (mtime_ns, size); S3: (etag,)
        self._lock = threading.Lock()
        self._thread_pid = 0  # the process whose refresher thread runs (a fork gets none: start another)
        self._closed = threading.Event()
        self.loads = 0

    @property
    def size(self) -> int:
        return len(self._hashes)

    def forgotten(self, user_id: str | None) -> bool:
        """True when ``user_id``'s keyed hash is on the list."""
        if user_id is None:
            return False
        self._check()
        key, hashes = self._key, self._hashes  # one consistent pair, swapped together by _install
        if not hashes:
            return False
        return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest() in hashes

    # ---- reading ---------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.uri.startswith("s3://"):
            if self._thread_pid != os.getpid():
                self._start_refresher()
            return
        try:
            stat = os.stat(self.uri)
        except FileNotFoundError:
            if self._stamp is not None:  # the list was deleted: nobody suppressed
                self._install(b"", frozenset(), None)
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        with open(self.uri, "rb") as f:
                            self._install(*parse(json.loads(f.read())), stamp)
                    except (OSError, ValueError, KeyError) as exc:
                        log.error("suppression list %s unreadable (%s); keeping the last one read", self.uri, exc)

    def _install(self, key: bytes, hashes: frozenset[str], stamp: tuple[Any, ...] | None) -> None:
        self._key, self._hashes, self._stamp = key, hashes, stamp
        self.loads += 1

    def _start_refresher(self) -> None:
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
            self.refresh_s3()  # the first read before the first answer: a forgotten shopper is never missed
            threading.Thread(target=self._loop, name="suppression-refresh", daemon=True).start()

    def _loop(self) -> None:
        while not self._closed.wait(self.refresh_seconds):
            self.refresh_s3()

    def close(self) -> None:
        """Stop this process's background re-reads (a worker shutting down; the local endpoint's exit)."""
        self._closed.set()

    def refresh_s3(self) -> bool:
        """Re-read the S3 object if its ETag changed; True when a new list was installed."""
        bucket, _, key = self.uri[len("s3://"):].partition("/")
        if self._s3 is None:
            import boto3  # the serving images ship it; imported only when an S3 list is configured

            self._s3 = boto3.client("s3")
        etag = self._stamp[0] if self._stamp else None
        try:
            answer = self._s3.get_object(Bucket=bucket, Key=key, **({"IfNoneMatch": etag} if etag else {}))
        except Exception as exc:  # noqa: BLE001 - botocore's errors: one log line, the old list stays
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("304", "NotModified"):
                return False
            if code in ("NoSuchKey", "404"):
                self._install(b"", frozenset(), None)
                return False
            log.error("suppression list %s unreadable (%s); keeping the last one read", self.uri, exc)
            return False
        try:
            self._install(*parse(json.loads(answer["Body"].read())), (answer.get("ETag"),))
        except (ValueError, KeyError) as exc:
            log.error("suppression list %s is not one (%s); keeping the last one read", self.uri, exc)
            return False
        return True


_BY_URI: dict[str, Suppression] = {}


def from_environment(environ: Any = None) -> Suppression | None:
    """The process's list for ``RECSYS_SUPPRESSION_URI`` (one per URI, made on first use); None when unset."""
    environ = os.environ if environ is None else environ
    uri = environ.get(SUPPRESSION_ENV, "")
    if not uri:
        return None
    found = _BY_URI.get(uri)
    if found is None:
        refresh = float(environ.get(REFRESH_ENV) or DEFAULT_REFRESH_SECONDS)
        found = _BY_URI.setdefault(uri, Suppression(uri, refresh))
    return found


def restart(environ: Any, s3: Any = None) -> Suppression | None:
    """A new list for ``environ``'s URI in this process, replacing (and closing) any earlier one: what a freshly
    started worker reads before its first answer. ``s3``: the client to read an ``s3://`` list with (the local
    endpoint passes the local AWS's; default boto3's). None when the variable is unset."""
    uri = environ.get(SUPPRESSION_ENV, "")
    if not uri:
        return None
    refresh = float(environ.get(REFRESH_ENV) or DEFAULT_REFRESH_SECONDS)
    old, _BY_URI[uri] = _BY_URI.get(uri), Suppression(uri, refresh, s3)
    if old is not None:
        old.close()
    return _BY_URI[uri]
