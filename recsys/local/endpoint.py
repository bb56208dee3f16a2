"""A local stand-in for a SageMaker real-time endpoint: ``sagemaker_src/inference.py`` served over HTTP.

SageMaker's model server calls the handler's ``model_fn`` once and then ``input_fn`` ->
``predict_fn`` -> ``output_fn`` per request on ``POST /invocations``, with ``GET /ping`` as the
health check. This module does the same with waitress (a multi-threaded, production WSGI server)
and a tiny WSGI app, so the main job, the tests and the benchmark exercise the exact handler that
ships, over real sockets, without Docker or an AWS account.

Status codes: client mistakes (the handler's ``BadRequest``, anything with ``status_code`` 4xx,
an empty, oversize (> 1 MiB) or too deeply nested body) -> 400 ``{"error": "..."}``; unknown
path -> 404; wrong method -> 405 (with ``Allow``); anything else -> 500 ``{"error": "internal
error"}`` with the traceback only in the log. One exception: a body larger than
``HARD_BODY_LIMIT`` (16 MiB) is refused by waitress itself with 413 before it is buffered, so a
huge upload cannot fill memory; between 1 MiB and 16 MiB the app answers 400 as CONTRACTS §3 says.

The SageMaker Runtime API is answered too: ``POST /endpoints/<name>/invocations`` (what boto3's
``sagemaker-runtime`` ``invoke_endpoint`` and ``aws sagemaker-runtime invoke-endpoint`` send), so a
client pointed at this server with ``endpoint_url`` runs unchanged. Any endpoint name is accepted (one
model is served). As on AWS, a model's 4xx/5xx reaches such a client as HTTP 424 ``ModelError`` with
the original status and message.

Hot reload (issue #8): ``LocalEndpoint.reload(model_dir)`` loads a model with ``model_fn`` off to
the side, checks that it answers one probe request, and only then swaps it in with a single
attribute assignment; a request reads that attribute once, so in-flight requests finish on the
model they started with. If anything fails the error is logged, ``reload`` returns False and the
previous model keeps serving (``/ping`` still shows its ``model_version``). SageMaker has no reload
route, so none is exposed over HTTP: ``serve_forever`` (``python -m recsys serve``) reloads from
``--model-dir``'s current contents on SIGHUP, and ``serve_endpoint`` yields a URL string whose
``.endpoint`` is the app, for callers (tests) that want to call ``reload`` directly.

Every answer names who gave it: ``X-Recsys-Worker`` (the serving process's pid) and ``X-Recsys-Model-Version``
(the model that answered, also on errors and ``/ping``), so a client can tell that each pre-forked worker
reloaded, not just the one it happened to reach. Local only: SageMaker's own containers add no such header.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import importlib.util
import io
import itertools
import json
import logging
import multiprocessing
import os
import random
import signal
import socket
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from waitress.server import create_server

from settings.erasure import SUPPRESSION_ENV

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HANDLER = REPO / "sagemaker_src" / "inference.py"
MAX_BODY = 1 << 20  # CONTRACTS: larger bodies are a client error (400)
HARD_BODY_LIMIT = 16 << 20  # waitress refuses (413) above this without buffering
JSON = "application/json"

log = logging.getLogger("recsys.local.endpoint")
access_log = logging.getLogger("recsys.local.endpoint.access")  # one line per request; off separately

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 405: "405 Method Not Allowed",
           406: "406 Not Acceptable", 413: "413 Content Too Large", 415: "415 Unsupported Media Type",
           424: "424 Failed Dependency",
           500: "500 Internal Server Error", 503: "503 Service Unavailable"}
_ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}
#: Response headers naming the answering process and its model (see the module docstring).
WORKER_HEADER, VERSION_HEADER = "X-Recsys-Worker", "X-Recsys-Model-Version"
#: The SageMaker Runtime API's path for InvokeEndpoint.
_RUNTIME_PREFIX, _RUNTIME_SUFFIX = "/endpoints/", "/invocations"


class ClientError(Exception):
    """A request refused by the serving layer itself (before or around the handler)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def load_handler(handler_path: Path) -> ModuleType:
    """Import the handler file by path, with its folder on ``sys.path`` as SageMaker's container does.

    Registered under a private module name so it never clashes with a test's ``import inference``.
    """
    handler_path = Path(handler_path).resolve()
    folder = str(handler_path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_recsys_endpoint_handler_{abs(hash(str(handler_path))):x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, handler_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load an inference handler from {handler_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    missing = [fn for fn in ("model_fn", "input_fn", "predict_fn", "output_fn") if not hasattr(module, fn)]
    if missing:
        raise ImportError(f"{handler_path} lacks {', '.join(missing)}")
    return module


class _Loaded(NamedTuple):
    """One loaded model and what is derived from it: swapped as a whole, so readers never see a mix."""

    model: Any
    model_version: str
    model_dir: Path
    ping_body: bytes
    version_header: str  # model_version as a header value may carry it: printable ASCII only


# An unknown user is answered by every valid model (CONTRACTS §3), so it proves a new model can serve.
RELOAD_PROBE: dict[str, Any] = {"user_id": "__reload_probe__", "k": 1}


class LocalEndpoint:
    """The WSGI app: the model is loaded in the constructor, then shared read-only by every thread.

    No lock on the request path: ``Bundle.recommend`` only reads state built at load time (the
    concurrency test compares concurrent answers with sequential ones), a lock would serialise
    numpy work that releases the GIL, and ``reload`` replaces the whole ``_Loaded`` tuple in one
    assignment, which each request reads once.
    """

    def __init__(self, model_dir: Path, handler_path: Path = DEFAULT_HANDLER,
                 capture: Callable[[bytes, str, bytes], None] | None = None) -> None:
        self.handler = load_handler(handler_path)
        #: Data capture (``recsys/local/capture.py``): called with (request, content type, response) per 200 answer.
        self.capture = capture
        # Exceptions the handler means as "your request is wrong" (CONTRACTS §3: BadRequest -> 400).
        bad = getattr(self.handler, "BadRequest", None)
        self._client_errors: tuple[type[BaseException], ...] = (ClientError,) + ((bad,) if bad else ())
        self._reload_lock = threading.Lock()  # one reload at a time; never taken by requests
        #: The erasure suppression list's reader the container environment started (``serve_endpoint``), if any.
        self.suppression: Any = None
        self._state = self._load(Path(model_dir), probe=None)

    @property
    def model(self) -> Any:
        return self._state.model

    @property
    def model_version(self) -> str:
        return self._state.model_version

    @property
    def model_dir(self) -> Path:
        return self._state.model_dir

    def _load(self, model_dir: Path, probe: dict[str, Any] | None) -> _Loaded:
        t0 = time.perf_counter()
        model = self.handler.model_fn(str(model_dir))
        if probe is not None:  # a model that loads but cannot answer must not replace one that can
            self.handler.output_fn(self.handler.predict_fn(dict(probe), model), JSON)
        version = str(getattr(model, "model_version", ""))
        ping = json.dumps({"status": "healthy", "model_version": version}).encode()
        log.info("loaded model %s from %s in %.2fs", version, model_dir, time.perf_counter() - t0)
        header = "".join(c if " " <= c <= "~" else "?" for c in version)
        return _Loaded(model, version, model_dir, ping, header)

    def reload(self, model_dir: Path | None = None, probe: dict[str, Any] | None = RELOAD_PROBE) -> bool:
        """Load ``model_dir`` (default: the current one, re-read) and swap it in only if it loads and answers ``probe``.

        Returns False, logging why, when the new model fails: the previous one keeps serving.
        Requests already running finish on the model they started with.
        """
        with self._reload_lock:
            old = self._state
            target = Path(model_dir) if model_dir is not None else old.model_dir
            try:
                new = self._load(target, probe)
            except Exception:
                log.exception("reload from %s failed; still serving model %s", target, old.model_version)
                return False
            self._state = new  # the swap: one attribute assignment
            log.info("reloaded: model %s -> %s", old.model_version, new.model_version)
            return True

    # ------------------------------------------------------------------ WSGI
    def wsgi_app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        t0 = time.perf_counter()
        state = self._state  # read once: a concurrent reload cannot change the model mid-request
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        extra: list[tuple[str, str]] = []
        runtime = _is_runtime_path(path)
        try:
            allowed = _ROUTES["/invocations"] if runtime else _ROUTES.get(path)
            if allowed is None:
                status, body = 404, _error(
                    f"no route {path!r}; use GET /ping, POST /invocations or POST /endpoints/<name>/invocations"
                )
            elif method not in allowed:
                status, body = 405, _error(f"{method} not allowed on {path}; use {' or '.join(allowed)}")
                extra.append(("Allow", ", ".join(allowed)))
            elif path == "/ping":
                status, body = (200, state.ping_body) if state.model is not None else (503, _error("model not loaded"))
            else:
                status, body = 200, self._invoke(environ, state.model)
        except Exception as exc:
            if isinstance(exc, self._client_errors) or _is_4xx(getattr(exc, "status_code", None)):
                status, body = _client_status(exc), _error(str(exc))
            else:
                log.exception("internal error on %s %s", method, path)
                status, body = 500, _error("internal error")
        if runtime and status >= 400 and status != 405:
            status, body, extra = _model_error(status, body)
        payload = b"" if method == "HEAD" else body
        served_by = [(WORKER_HEADER, str(os.getpid())), (VERSION_HEADER, state.version_header)]
        start_response(_STATUS.get(status, f"{status} Error"),
                       [("Content-Type", JSON), ("Content-Length", str(len(body))), *served_by] + extra)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %d %.2fms in=%sB out=%dB", method, path, status, (time.perf_counter() - t0) * 1000,
                            environ.get("CONTENT_LENGTH") or 0, len(body))
        return [payload]

    __call__ = wsgi_app

    def _invoke(self, environ: dict[str, Any], model: Any) -> bytes:
        raw = _read_body(environ)
        h = self.handler
        try:
            data = h.input_fn(raw, environ.get("CONTENT_TYPE", ""))
        except RecursionError as exc:  # json's C parser gives up on very deep nesting
            raise ClientError("request JSON is nested too deeply") from exc
        prediction = h.predict_fn(data, model)
        out = h.output_fn(prediction, environ.get("HTTP_ACCEPT") or JSON)
        body = out.encode() if isinstance(out, str) else bytes(out)
        if self.capture is not None:
            self.capture(raw, environ.get("CONTENT_TYPE", ""), body)
        return body


def _freeze_heap() -> None:
    """Move everything alive now (the model, imports) out of the cyclic GC's reach.

    Only for a process that is nothing but the server (``serve_forever``): a full collection would
    otherwise walk the model's objects again in the middle of requests, and in pre-forked workers
    touch their pages (copy-on-write copies). Frozen objects are still freed by reference counting
    when a reload drops the old model.
    """
    gc.collect()
    gc.freeze()


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _is_runtime_path(path: str) -> bool:
    name = path[len(_RUNTIME_PREFIX) : -len(_RUNTIME_SUFFIX)]
    return path.startswith(_RUNTIME_PREFIX) and path.endswith(_RUNTIME_SUFFIX) and bool(name) and "/" not in name


def _model_error(status: int, body: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
    """What SageMaker Runtime answers when the container does not return 200: 424 ModelError."""
    try:
        message = json.loads(body).get("error", "")
    except ValueError:
        message = body.decode(errors="replace")
    kind = "client" if _is_4xx(status) else "server"
    doc = {
        "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
        "OriginalStatusCode": status,
        "OriginalMessage": message,
        "message": f"Received {kind} error ({status}) from primary with message \"{message}\".",
    }
    return 424, json.dumps(doc).encode(), [("x-amzn-ErrorType", "ModelError")]


def _is_4xx(status: object) -> bool:
    return isinstance(status, int) and 400 <= status < 500


def _client_status(exc: BaseException) -> int:
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return status if _is_4xx(status) else 400


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, refusing empty and oversize ones before the handler sees them."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise ClientError("invalid Content-Length") from exc
    if length > MAX_BODY:
        raise ClientError(f"request body is {length} bytes; the limit is {MAX_BODY}")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    if not body:
        raise ClientError("request body is empty; send a JSON object")
    return body


# ---------------------------------------------------------------------- serving
# Each waitress worker has an I/O thread and task threads sharing one GIL; with Python's default
# 5 ms switch interval a thread that wakes for a ready socket can wait up to 5 ms behind a
# CPU-bound handler, several times per request. 1 ms trimmed the tail at concurrency 8 in
# bench/bench_endpoint.py (README); it only affects the dedicated process of serve_forever.
SWITCH_INTERVAL = 0.001
#: Task threads per pre-forked worker of ``serve_forever``. The handler is CPU-bound under one GIL, so more
#: threads add no throughput; they share the core among a worker's in-flight requests, stretching each
#: one. bench/bench_serving.py (8 connections, 2 workers, wrk), p99 with 8 -> 2 threads: generated shop
#: 16-21 -> 11 ms, wholesale 12-15 -> 9.5-10 ms, wholesale EASE+ALS 14-22 -> 11-12 ms, at the same req/s.
#: Two, not one: a long request (a big cart) still leaves the worker's other connections a thread.
WORKER_THREADS = 2
_GONE = 1 << 30  # the open-connection count of a dead worker: never the least busy
#: Signals held while the workers are forked (see ``serve_forever``).
_FORK_BLOCKED = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
_SERVER_OPTIONS = {"ident": "recsys-local-endpoint", "max_request_body_size": HARD_BODY_LIMIT,
                   "channel_timeout": 30, "connection_limit": 256, "clear_untrusted_proxy_headers": True}


def _make_server(app: LocalEndpoint, host: str, port: int, threads: int):  # noqa: ANN202 - waitress server type
    return create_server(app, host=host, port=port, threads=threads, **_SERVER_OPTIONS)


def _url(server: Any) -> str:
    host, port = server.getsockname()[:2]
    return f"http://{host}:{port}"


class EndpointURL(str):
    """The base URL (a plain ``str`` to every existing caller) that also carries the served app.

    ``url.endpoint.reload(new_dir)`` hot-swaps the model of a ``serve_endpoint`` server in-process
    (SageMaker has no reload route, so there is none over HTTP).
    """

    endpoint: LocalEndpoint

    def __new__(cls, url: str, endpoint: LocalEndpoint) -> EndpointURL:
        self = super().__new__(cls, url)
        self.endpoint = endpoint
        return self


@contextmanager
def container_environment(environment: Mapping[str, str] | None, s3: Any = None) -> Iterator[Any]:
    """The deployed Model's container ``Environment`` as this process's variables while an endpoint serves in it
    (the handler reads them from ``os.environ``, as in its container), restored on exit.

    With the erasure suppression list (``RECSYS_SUPPRESSION_URI``) among them, a fresh reader of that list is
    started, as a newly started container's worker reads it before its first answer; an ``s3://`` list is read
    with the client ``s3`` (the local AWS's). Yields the reader (None without a list), closed on exit. It re-reads
    an S3 list every 30 s in the background as on AWS; ``reader.refresh_s3()`` is that re-read now (the local
    clock moved past it)."""
    env = {str(k): str(v) for k, v in (environment or {}).items()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reader = None
    try:
        uri = env.get(SUPPRESSION_ENV, "")
        if uri:  # the handler's own module: load_handler put its folder (sagemaker_src) on sys.path
            module = importlib.import_module("recsys_core.suppression")
            reader = module.restart(env, s3 if uri.startswith("s3://") else None)
        yield reader
    finally:
        if reader is not None:
            reader.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def serve_endpoint(model_dir: Path, host: str = "127.0.0.1", port: int = 0, threads: int = 8, *,
                   handler_path: Path = DEFAULT_HANDLER,
                   capture: Callable[[bytes, str, bytes], None] | None = None,
                   environment: Mapping[str, str] | None = None, s3: Any = None) -> Iterator[EndpointURL]:
    """Serve on a background thread and yield the base URL (port 0 = a free one); always stopped on exit.

    The URL is an ``EndpointURL``: a ``str`` whose ``.endpoint`` is the ``LocalEndpoint`` (for ``reload``).
    ``environment``: the deployed Model's container variables (:func:`deployed_model`), applied by
    :func:`container_environment` with the client ``s3`` for its S3 reads; ``.endpoint.suppression`` is the list's
    reader.
    """
    app = LocalEndpoint(model_dir, handler_path, capture)
    with container_environment(environment, s3) as reader:
        app.suppression = reader
        server = _make_server(app, host, port, threads)
        loop = threading.Thread(target=server.run, name="endpoint-loop", daemon=True)
        loop.start()
        try:
            yield EndpointURL(_url(server), app)
        finally:
            _stop(server, loop)


class VariantRouter:
    """An endpoint with several production variants, as SageMaker routes them: each request goes to one
    variant drawn by weight (a seeded RNG here, so a run is repeatable), and the answer names it in
    ``X-Amzn-Invoked-Production-Variant`` (InvokeEndpoint's ``InvokedProductionVariant``). A shadow
    variant gets a copy of a share of the requests; its answer is captured and dropped, never returned.
    Each variant is its own ``LocalEndpoint``, so its data capture is its own (``capture/<endpoint>/<variant>/``).
    ``/ping`` is the first variant's."""

    def __init__(self, variants: Mapping[str, tuple[LocalEndpoint, float]],
                 shadow: tuple[str, LocalEndpoint, float] | None = None, seed: int = 0) -> None:
        if not variants or any(w <= 0 for _, w in variants.values()):
            raise ValueError("an endpoint needs at least one production variant, each with a positive weight")
        self.variants = dict(variants)
        self.shadow = shadow
        total = sum(w for _, w in self.variants.values())
        self._names = list(self.variants)
        self._cumulative = list(itertools.accumulate(w / total for _, w in self.variants.values()))
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # the RNG's draws, in request order
        self.invoked: dict[str, int] = dict.fromkeys(self._names, 0)

    def _draw(self) -> tuple[str, bool]:
        with self._lock:
            u = self._rng.random()
            name = next((n for n, c in zip(self._names, self._cumulative, strict=True) if u < c), self._names[-1])
            copy = self.shadow is not None and self._rng.random() < self.shadow[2]
            self.invoked[name] += 1
        return name, copy

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not (path == "/invocations" or _is_runtime_path(path)):
            return next(iter(self.variants.values()))[0](environ, start_response)
        name, copy = self._draw()
        length = environ.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:  # the variant refuses it, as a single endpoint does
            return self.variants[name][0](environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        if copy and self.shadow is not None:
            shadow_environ = {**environ, "wsgi.input": io.BytesIO(body)}
            self.shadow[1](shadow_environ, lambda *_: None)  # captured by the shadow's own writer; dropped
        chosen = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}

        def named(status: str, headers: list[tuple[str, str]]) -> Any:
            return start_response(status, [*headers, ("X-Amzn-Invoked-Production-Variant", name)])

        return self.variants[name][0](chosen, named)


@contextmanager
def serve_variants(variants: Mapping[str, tuple[Path, float]], *, shadow: tuple[str, Path, float] | None = None,
                   captures: Mapping[str, Callable[[bytes, str, bytes], None]] | None = None, seed: int = 0,
                   host: str = "127.0.0.1", port: int = 0, threads: int = 8,
                   handler_path: Path = DEFAULT_HANDLER, environment: Mapping[str, str] | None = None,
                   s3: Any = None) -> Iterator[EndpointURL]:
    """Serve a multi-variant endpoint (``name -> (model_dir, weight)``, optionally a shadow ``(name, model_dir,
    share)``), each variant's answers captured by ``captures[name]``; yields the URL, whose ``.endpoint`` is the
    ``VariantRouter`` (``invoked`` counts the requests each production variant answered). ``environment``/``s3``:
    the variants' container variables, as :func:`serve_endpoint` applies them (one process serves them all)."""
    captures = captures or {}
    endpoints = {name: (LocalEndpoint(d, handler_path, captures.get(name)), w) for name, (d, w) in variants.items()}
    copy = None
    if shadow is not None:
        copy = (shadow[0], LocalEndpoint(shadow[1], handler_path, captures.get(shadow[0])), shadow[2])
    router = VariantRouter(endpoints, copy, seed)
    with container_environment(environment, s3):
        server = _make_server(router, host, port, threads)  # type: ignore[arg-type]
        loop = threading.Thread(target=server.run, name="endpoint-variants-loop", daemon=True)
        loop.start()
        try:
            yield EndpointURL(_url(server), router)  # type: ignore[arg-type]
        finally:
            _stop(server, loop)


def one_environment(models: Iterable[DeployedModel]) -> dict[str, str]:
    """The container variables of models served in one local process: the same in each, or a one-line error."""
    merged: dict[str, str] = {}
    for model in models:
        for key, value in model.environment.items():
            if merged.setdefault(key, value) != value:
                raise ValueError(f"the deployed variants' containers set {key} differently ({merged[key]!r} and "
                                 f"{value!r}); the local endpoint serves them in one process")  # fmt: skip
    return merged


class DeployedModel(NamedTuple):
    """A variant's Model as SageMaker starts it: the unpacked ``ModelDataUrl`` archive and the container's
    ``Environment`` (the registered package's, which the deploy function's CreateModel copies)."""

    model_dir: Path
    environment: dict[str, str]


def deployed_model(aws: Any, endpoint_name: str, folder: Path) -> DeployedModel:
    """The first production variant of the endpoint's current config, as :func:`deployed_containers` gives it."""
    config = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    return next(iter(deployed_containers(aws, config, folder).values()))


def deployed_models(aws: Any, config_name: str, folder: Path) -> dict[str, Path]:
    """Each variant of an endpoint config -> its unpacked model folder (:func:`deployed_containers`)."""
    return {name: deployed.model_dir for name, deployed in deployed_containers(aws, config_name, folder).items()}


def unpack_model_archive(archive: Path, target: Path) -> None:
    """``archive`` (a ``model.tar.gz``) unpacked into ``target`` with the serving code's own checks
    (``recsys_core.artifacts.safe_extract``: regular files and folders inside ``target`` only), which hold on
    every Python 3.11: ``extractall(filter="data")`` exists from 3.11.4, and Debian 12 ships 3.11.2."""
    folder = str(DEFAULT_HANDLER.parent)
    if folder not in sys.path:  # as load_handler does: recsys_core sits beside the handler
        sys.path.insert(0, folder)
    from recsys_core.artifacts import safe_extract

    with tarfile.open(archive) as tar:
        safe_extract(tar, Path(target))


def deployed_containers(aws: Any, config_name: str, folder: Path) -> dict[str, DeployedModel]:
    """Each variant of an endpoint config (production and shadow) -> its model as SageMaker loads it: the
    Model's ``ModelDataUrl`` archive (the registered package: the model with ``code/``), downloaded from the
    (local) bucket and unpacked under ``folder/<model name>/`` (an unpacked folder is reused), and the
    container's ``Environment``."""
    from recsys.local.s3io import split_s3_uri

    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    out: dict[str, DeployedModel] = {}
    for variant in [*config.get("ProductionVariants", []), *config.get("ShadowProductionVariants", [])]:
        model = sm.describe_model(ModelName=variant["ModelName"])
        container = model.get("PrimaryContainer") or model["Containers"][0]
        url = container["ModelDataUrl"]
        target = Path(folder) / variant["ModelName"]
        if not (target / ".unpacked").is_file():
            target.mkdir(parents=True, exist_ok=True)
            bucket, key = split_s3_uri(url)
            archive = target.with_suffix(".tar.gz")
            s3.download_file(bucket, key, str(archive))
            unpack_model_archive(archive, target)
            archive.unlink()
            (target / ".unpacked").write_text(url)
        out[variant["VariantName"]] = DeployedModel(target, dict(container.get("Environment") or {}))
    return out


def _stop(server: Any, loop: threading.Thread) -> None:
    """Close every socket from inside the event loop (asyncore is not thread-safe), then the workers, then the trigger.

    The trigger's pipe leaves the loop with the sockets but is closed last: the loop can run the closing thunk
    (woken by a worker's byte) before ``pull_trigger`` here has written its own, and a worker finishing a request
    pulls the trigger too. Closed inside the thunk, those writes failed with EBADF, or could land in whatever
    file reused the descriptor.
    """
    from waitress import wasyncore

    trigger = server.trigger

    def close_sockets() -> None:
        trigger.del_channel()  # out of the loop's map (so the loop ends), still open for late writers
        wasyncore.dispatcher.close(server)  # the listening socket alone: the server's close() shuts the trigger too
        wasyncore.close_all(server._map)  # the connections

    trigger.pull_trigger(close_sockets)
    loop.join(timeout=5)
    server.task_dispatcher.shutdown(timeout=5)
    if loop.is_alive():  # pragma: no cover - only if the loop is wedged
        log.warning("endpoint event loop did not stop within 5 s")
        return
    trigger.close()


def serve_forever(model_dir: Path, host: str = "127.0.0.1", port: int = 8080, threads: int = WORKER_THREADS, *,
                  workers: int = 1, handler_path: Path = DEFAULT_HANDLER,
                  switch_interval: float | None = SWITCH_INTERVAL) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (``python -m recsys serve``).

    ``workers`` > 1 pre-forks that many processes sharing one listening socket, each with its own
    waitress thread pool: the handler is CPU-bound Python, so one process uses about one core
    however many threads it has (SageMaker's model servers likewise run a worker per vCPU). The
    model is loaded once, before the fork, and shared copy-on-write.

    SIGHUP reloads the model from ``model_dir``'s current contents (write the new model elsewhere
    and rename it into place, so a reload never sees half a model): each serving process loads it
    on a side thread and swaps it in only if it loads and answers a probe request; otherwise it logs
    the error and keeps the previous model. With several workers the parent forwards SIGHUP to each,
    and each loads its own copy (no longer shared copy-on-write).

    ``switch_interval`` (s) sets this process's GIL switch interval (None: leave Python's 5 ms).
    """
    app = LocalEndpoint(model_dir, handler_path)
    _freeze_heap()
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_exit) if on_main else None
    previous_hup = signal.getsignal(signal.SIGHUP) if on_main else None
    if workers <= 1:
        server = _make_server(app, host, port, threads)
        if on_main:
            signal.signal(signal.SIGHUP, lambda *_: _reload_in_background(app))
        _announce(_url(server), model_dir, threads, 1)
        try:
            server.run()  # waitress turns KeyboardInterrupt/SystemExit into a clean stop of its threads
        finally:
            server.close()
            if on_main:
                signal.signal(signal.SIGTERM, previous)
                signal.signal(signal.SIGHUP, previous_hup)
            print("endpoint stopped", flush=True)
        return
    sock = socket.create_server((host, port), backlog=1024)
    _announce(f"http://{host}:{sock.getsockname()[1]}", model_dir, threads, workers)
    open_conns = multiprocessing.RawArray("i", workers)  # shared: each worker's open connections
    children: list[int] = []
    if on_main:  # blocked while forking: a child never runs the parent's handlers, and a stop that lands
        # inside os.fork() (whose at-fork hooks swallow exceptions, SystemExit included) waits until every
        # child is listed, instead of being lost and leaving the server running
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORK_BLOCKED)
        signal.signal(signal.SIGHUP, lambda *_: _forward(children, signal.SIGHUP))
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child process, measured by the benchmark
                _run_child(app, sock, threads, open_conns, index)
            children.append(pid)
        sock.close()  # the children hold it
        if on_main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_BLOCKED)
        running = dict(zip(children, range(workers), strict=True))
        while running:  # polled, not os.wait(): that could reap a child the caller owns
            for pid in [pid for pid in running if os.waitpid(pid, os.WNOHANG)[0]]:
                open_conns[running.pop(pid)] = _GONE  # a dead worker must not look like the least busy
            time.sleep(0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGHUP, previous_hup)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_BLOCKED)
        _forward(children, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        print("endpoint stopped", flush=True)


def _forward(children: list[int], signum: int) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reload_in_background(app: LocalEndpoint) -> None:
    """SIGHUP: reload on a side thread, so the event loop (where the signal lands) keeps serving."""

    def run() -> None:
        if app.reload():
            _freeze_heap()

    threading.Thread(target=run, name="endpoint-reload", daemon=True).start()


def _raise_exit(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    raise SystemExit(0)


def _run_child(app: LocalEndpoint, sock: socket.socket, threads: int, open_conns: Any,
               index: int) -> None:  # pragma: no cover - child
    """One pre-forked worker: its own waitress loop and threads on the shared socket; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, lambda *_: _reload_in_background(app))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORK_BLOCKED)
        server = create_server(app, sockets=[sock], threads=threads, **_SERVER_OPTIONS)
        _accept_least_connections(server, open_conns, index)
        server.run()
    except BaseException:  # noqa: BLE001 - a child must never fall back into the parent's code
        code = 1
    finally:
        open_conns[index] = _GONE
        os._exit(code)




def _accept_least_connections(server: Any, open_conns: Any, index: int) -> None:  # pragma: no cover - child
    """Let a worker accept only while it holds no more open connections than any other worker.

    Workers share one listening socket and whichever wakes first accepts, so a client's few
    keep-alive connections could land 6 on one worker and 2 on the other: that worker's queue,
    and so the latency tail, is three times as long while the other core idles. Waitress asks
    ``readable()`` before each poll of its loop; a worker above the minimum leaves the socket to
    the others (it re-checks at the latest after ``asyncore_loop_timeout``, 1 s). Relies on
    waitress's ``readable``/``active_channels`` (waitress is pinned).
    """
    base = server.readable

    def readable() -> bool:
        mine = len(server.active_channels)
        open_conns[index] = mine
        return base() and mine <= min(open_conns)

    server.readable = readable


def _announce(url: str, model_dir: Path, threads: int, workers: int) -> None:
    print(f"Serving {model_dir} at {url} ({workers} worker(s) x {threads} threads); Ctrl-C to stop.\n"
          f"  curl -s {url}/ping\n"
          f"  curl -s -H 'Content-Type: application/json' -d '{{\"user_id\": \"u1\", \"k\": 10}}' {url}/invocations",
          flush=True)


# ---------------------------------------------------------------------- client
#: How long a local client waits for an answer before giving up: a dead server, not a slow one (a request takes
#: milliseconds, but seconds on a loaded 2-core machine running a test suite beside it).
CLIENT_TIMEOUT_S = 30.0


class EndpointError(RuntimeError):
    """A non-2xx answer from the endpoint; ``status`` and the server's ``error`` message are kept."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error


def request(url: str, method: str = "GET", path: str = "/ping", body: bytes | None = None,
            headers: dict[str, str] | None = None,
            timeout: float = CLIENT_TIMEOUT_S) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange on a fresh connection: (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def invoke(url: str, payload: dict, timeout: float = CLIENT_TIMEOUT_S) -> dict:
    """POST ``payload`` as JSON to ``/invocations`` on the endpoint at ``url`` (base URL; any path is ignored).

    Returns the parsed answer; a non-200 answer raises ``EndpointError`` carrying the server's message.
    """
    status, _, body = request(url, "POST", "/invocations", json.dumps(payload).encode(),
                              {"Content-Type": JSON, "Accept": JSON}, timeout)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {"error": body.decode("utf-8", "replace")}
    if status != 200:
        raise EndpointError(status, str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc))
    return doc
