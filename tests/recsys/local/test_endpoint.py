"""The local SageMaker-style endpoint over real HTTP on 127.0.0.1, serving a model that train.py made.

One tiny model is trained per module (the train.py subprocess, ~3 s) and one server is shared by
the tests that do not need their own.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.local.endpoint import (
    CLIENT_TIMEOUT_S,
    MAX_BODY,
    EndpointError,
    LocalEndpoint,
    invoke,
    request,
    serve_endpoint,
)
from tests.responses import without_recommendation_ids
from tests.tiny_model import train_tiny_model

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "sagemaker_src"
JSON_HEADERS = {"Content-Type": "application/json"}
pytestmark = pytest.mark.xdist_group("endpoint")  # one xdist worker trains the module's model once


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model from train.py on a small synthetic shop (users u0..u59, products p0..p49)."""
    return train_tiny_model(tmp_path_factory.mktemp("endpoint"))


@pytest.fixture(scope="module")
def url(model_dir: Path):
    with serve_endpoint(model_dir, threads=8) as base:
        yield base


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    status, _, raw = request(url, "POST", "/invocations", body, JSON_HEADERS if headers is None else headers)
    return status, json.loads(raw)


def ids(response: dict) -> list[str]:
    return [r["product_id"] for r in response["recommendations"]]


# ------------------------------------------------------------------ happy paths
def test_ping_is_200_once_the_model_is_loaded(url: str) -> None:
    status, headers, body = request(url, "GET", "/ping")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "healthy"
    assert json.loads(body)["model_version"]


def test_single_request_returns_k_scored_recommendations_for_a_known_user(url: str) -> None:
    answer = invoke(url, {"user_id": "u1", "k": 5})
    assert answer["user_id"] == "u1"
    assert answer["strategy"].startswith("personalized")
    assert len(ids(answer)) == 5 == len(set(ids(answer)))
    scores = [r["score"] for r in answer["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert answer["model_version"]


def test_batch_instances_are_answered_in_order(url: str) -> None:
    answer = invoke(url, {"instances": [{"user_id": "u1"}, {"user_id": "u2", "k": 3}, {"user_id": "nobody"}]})
    preds = answer["predictions"]
    assert [p["user_id"] for p in preds] == ["u1", "u2", "nobody"]
    assert [len(p["recommendations"]) for p in preds] == [10, 3, 10]
    assert without_recommendation_ids(preds[0]) == without_recommendation_ids(invoke(url, {"user_id": "u1"}))
    assert len({p["recommendation_id"] for p in preds}) == 3  # each answer of a batch is its own list


def test_unknown_user_gets_a_fallback_named_in_strategy(url: str) -> None:
    answer = invoke(url, {"user_id": "never-seen", "k": 4})
    assert answer["strategy"].startswith("popular")
    assert len(answer["recommendations"]) == 4


def test_recent_product_ids_steer_an_unknown_user_to_session_recommendations(url: str) -> None:
    answer = invoke(url, {"user_id": "never-seen", "k": 5, "recent_product_ids": ["p1", "p2"],
                          "exclude": "interacted"})
    assert answer["strategy"] == "session"
    assert not {"p1", "p2"} & set(ids(answer))


def test_one_keep_alive_connection_serves_many_requests(url: str) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_S)
    try:
        for n in range(20):
            conn.request("POST", "/invocations", json.dumps({"user_id": f"u{n}", "k": 2}), JSON_HEADERS)
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            assert json.loads(resp.read())["user_id"] == f"u{n}"
    finally:
        conn.close()


def test_chunked_request_body_is_accepted(url: str) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_S)
    try:
        chunks = iter([b'{"user_id": ', b'"u3", "k": 2}'])
        conn.request("POST", "/invocations", body=chunks, headers=JSON_HEADERS, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200
        assert len(json.loads(resp.read())["recommendations"]) == 2
    finally:
        conn.close()


def test_concurrent_requests_all_succeed_with_the_sequential_answers(url: str) -> None:
    payloads = [{"user_id": f"u{n % 40}" if n % 4 else f"new{n}", "k": 1 + n % 10} for n in range(32)]
    expected = [invoke(url, p) for p in payloads]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda p: invoke(url, p), payloads))
    assert [without_recommendation_ids(a) for a in got] == [without_recommendation_ids(a) for a in expected]


# ------------------------------------------------------------------ refusals
BAD_REQUESTS = {
    "not JSON": (b"{user_id: u1", JSON_HEADERS),
    "not UTF-8": (b'{"user_id": "\xff"}', JSON_HEADERS),
    "missing user_id": (b'{"k": 3}', JSON_HEADERS),
    "empty user_id": (b'{"user_id": "  "}', JSON_HEADERS),
    "k zero": (b'{"user_id": "u1", "k": 0}', JSON_HEADERS),
    "k negative": (b'{"user_id": "u1", "k": -2}', JSON_HEADERS),
    "k string": (b'{"user_id": "u1", "k": "10"}', JSON_HEADERS),
    "k float": (b'{"user_id": "u1", "k": 2.5}', JSON_HEADERS),
    "k bool": (b'{"user_id": "u1", "k": true}', JSON_HEADERS),
    "a list, not an object": (b'[{"user_id": "u1"}]', JSON_HEADERS),
    "empty instances": (b'{"instances": []}', JSON_HEADERS),
    "bad instance": (b'{"instances": [{"user_id": "u1"}, {"k": 1}]}', JSON_HEADERS),
    "wrong content type": (b'{"user_id": "u1"}', {"Content-Type": "text/csv"}),
    "no content type": (b'{"user_id": "u1"}', {}),
    "unsupported accept": (b'{"user_id": "u1"}', {**JSON_HEADERS, "Accept": "text/csv"}),
    "empty body": (b"", JSON_HEADERS),
    "oversize body": (b'{"user_id": "u1", "pad": "' + b"x" * MAX_BODY + b'"}', JSON_HEADERS),
    "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, JSON_HEADERS),
    "deeply nested inside an object": (b'{"user_id": "u1", "category": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                        JSON_HEADERS),
}


@pytest.mark.parametrize("body,headers", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_input_is_400_with_an_error_message(url: str, body: bytes, headers: dict[str, str]) -> None:
    status, doc = post(url, body, headers)
    assert status == 400
    assert set(doc) == {"error"}
    assert isinstance(doc["error"], str) and doc["error"]


def test_invoke_raises_endpoint_error_carrying_the_server_message(url: str) -> None:
    with pytest.raises(EndpointError) as info:
        invoke(url, {"user_id": "u1", "k": 0})
    assert info.value.status == 400
    assert "'k'" in info.value.error


@pytest.mark.parametrize("method,path", [("GET", "/"), ("POST", "/predict"), ("GET", "/invocations/extra")])
def test_unknown_path_is_404_json(url: str, method: str, path: str) -> None:
    status, _, body = request(url, method, path, b"{}" if method == "POST" else None)
    assert status == 404
    assert "error" in json.loads(body)


@pytest.mark.parametrize("method,path,allow", [("GET", "/invocations", "POST"), ("PUT", "/invocations", "POST"),
                                               ("POST", "/ping", "GET, HEAD"), ("DELETE", "/ping", "GET, HEAD")])
def test_wrong_method_is_405_json_with_allow_header(url: str, method: str, path: str, allow: str) -> None:
    status, headers, body = request(url, method, path)
    assert status == 405
    assert headers["Allow"] == allow
    assert "error" in json.loads(body)


STUB_HANDLER = (
    "class Refused(Exception):\n    status_code = 400\n"
    "def model_fn(model_dir):\n    return object()\n"
    "def input_fn(body, content_type):\n    return {}\n"
    "def predict_fn(data, model):\n    raise EXC\n"
    "def output_fn(prediction, accept):\n    return ''\n"
)


def test_unexpected_handler_exception_is_500_with_the_traceback_only_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = tmp_path / "broken_inference.py"
    handler.write_text(STUB_HANDLER.replace("EXC", "KeyError('secret-internal-detail')"))
    with caplog.at_level(logging.INFO, logger="recsys.local.endpoint"), \
            serve_endpoint(tmp_path, handler_path=handler) as base:
        status, _, body = request(base, "POST", "/invocations", b'{"user_id": "u1"}', JSON_HEADERS)
    assert status == 500
    assert json.loads(body) == {"error": "internal error"}
    assert b"secret" not in body
    assert "secret-internal-detail" in caplog.text and "Traceback" in caplog.text


def test_any_handler_exception_with_a_4xx_status_code_is_a_client_error(tmp_path: Path) -> None:
    handler = tmp_path / "strict_inference.py"
    handler.write_text(STUB_HANDLER.replace("EXC", "Refused('no such shop')"))
    with serve_endpoint(tmp_path, handler_path=handler) as base:
        status, _, body = request(base, "POST", "/invocations", b'{"user_id": "u1"}', JSON_HEADERS)
    assert (status, json.loads(body)) == (400, {"error": "no such shop"})


def test_each_request_is_logged_once_with_method_path_status_latency_and_bytes(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recsys.local.endpoint"), serve_endpoint(model_dir, threads=2) as base:
        request(base, "GET", "/ping")
        post(base, b'{"user_id": "u1", "k": 1}')
        request(base, "GET", "/nope")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("GET", "POST"))]
    assert len(lines) == 3
    assert lines[0].startswith("GET /ping 200 ") and lines[2].startswith("GET /nope 404 ")
    method, path, status, latency, bytes_in, bytes_out = lines[1].split()
    assert (method, path, status) == ("POST", "/invocations", "200")
    assert latency.endswith("ms") and float(latency[:-2]) > 0
    assert bytes_in == "in=25B" and int(bytes_out[4:-1]) > 0


def test_server_is_stopped_when_the_context_exits(model_dir: Path) -> None:
    with serve_endpoint(model_dir, threads=2) as base:
        assert request(base, "GET", "/ping")[0] == 200
    parts = urlsplit(base)
    with pytest.raises(OSError), socket.create_connection((parts.hostname, parts.port), timeout=1):
        pass


def test_wsgi_app_needs_no_server(model_dir: Path) -> None:
    """The app is plain WSGI, so the lead can mount it anywhere (e.g. wsgiref in a debugger)."""
    import io
    from wsgiref.util import setup_testing_defaults

    app = LocalEndpoint(model_dir)
    environ: dict = {"REQUEST_METHOD": "POST", "PATH_INFO": "/invocations", "CONTENT_TYPE": "application/json",
                     "CONTENT_LENGTH": "17", "wsgi.input": io.BytesIO(b'{"user_id": "u1"}')}
    setup_testing_defaults(environ)
    seen: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["200 OK"]
    assert json.loads(body)["user_id"] == "u1"


# ------------------------------------------------------------------ property: no input is a server error
KEYS = ["user_id", "k", "instances", "recent_product_ids", "exclude_product_ids", "exclude", "category",
        # issue 13's fields, and the keys inside their objects
        "product_id", "cart_product_ids", "strategy", "filters", "promotion", "exploration", "price_min", "price_max",
        "categories", "exclude_categories", "in_stock_only", "product_ids", "slots", "percent", "share", "name"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["u1", "u2", "p1", "purchased", "interacted", "none", "cat1", "trending", "auto"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=15,
)
requests_ = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=7)
bodies = (
    requests_.map(lambda d: json.dumps(d).encode())
    | st.lists(requests_, max_size=4).map(lambda items: json.dumps({"instances": items}).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_random_json_bodies_never_cause_a_server_error(url: str, body: bytes) -> None:
    status, doc = post(url, body)
    assert status in (200, 400), (status, doc, body[:200])
    assert ("error" in doc) == (status == 400)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_forever_announces_its_url_serves_and_stops_on_sigterm(model_dir: Path, workers: int) -> None:
    code = ("import sys; from pathlib import Path; from recsys.local.endpoint import serve_forever\n"
            "serve_forever(Path(sys.argv[1]), '127.0.0.1', 0, 2, workers=int(sys.argv[2]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir), str(workers)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        base = first.split(" at ")[1].split()[0]
        assert "curl" in proc.stdout.readline()
        answers = [invoke(base, {"user_id": f"u{n}", "k": 2}) for n in range(6)]
        assert all(len(a["recommendations"]) == 2 for a in answers)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = _stopped(proc)
    assert proc.returncode == 0
    assert "endpoint stopped" in rest
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=1):
        pass


def test_serve_forever_stops_on_a_sigterm_that_lands_while_it_forks_its_workers(model_dir: Path) -> None:
    """A SIGTERM delivered inside os.fork() (here from an at-fork hook, as a test runner's stop landed on a
    loaded machine) used to raise SystemExit in a hook whose exceptions Python ignores: the signal was lost and
    the server ran on. Held until every worker is listed, it stops them all."""
    code = ("import os, signal, sys; from pathlib import Path; from recsys.local.endpoint import serve_forever\n"
            "os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM))\n"
            "serve_forever(Path(sys.argv[1]), '127.0.0.1', 0, 2, workers=2)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    rest = _stopped(proc)
    assert proc.returncode == 0
    assert "endpoint stopped" in rest


def _stopped(proc: subprocess.Popen, bound_s: float = 120.0) -> str:
    """The server's remaining output once it has exited; a server still running after ``bound_s`` (a stop
    takes well under a second) fails the test and its whole process group is killed, workers included."""
    try:
        return proc.communicate(timeout=bound_s)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the server (pid {proc.pid}) still ran {bound_s:.0f} s after SIGTERM")


def test_boto3_sagemaker_runtime_invoke_endpoint_works_against_the_local_endpoint(url: str) -> None:
    """A user's own client (and the recommendation API Lambda) talks to the local endpoint unchanged."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="ap-south-1"
    ).client("sagemaker-runtime", endpoint_url=url, config=Config(retries={"max_attempts": 1}))
    response = client.invoke_endpoint(
        EndpointName="recsys-dev-endpoint", ContentType="application/json", Accept="application/json",
        Body=json.dumps({"user_id": "u1", "k": 3}).encode(),
    )  # fmt: skip
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(json.loads(response["Body"].read())["recommendations"]) == 3
    with pytest.raises(ClientError) as err:  # as on AWS: the model's 400 arrives as 424 ModelError
        client.invoke_endpoint(EndpointName="recsys-dev-endpoint", ContentType="application/json", Body=b'{"k": 0}')
    assert err.value.response["Error"]["Code"] == "ModelError"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "Received client error (400)" in str(err.value)


@pytest.mark.parametrize("python", ["3.11.4+ (data filter)", "3.11.2 (Debian 12, no data filter)"])
def test_a_model_archive_unpacks_on_every_311_and_a_member_escaping_the_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: str
) -> None:
    import io
    import tarfile

    from recsys.local.endpoint import unpack_model_archive

    if "no data filter" in python:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def archive(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    unpack_model_archive(archive("good.tar.gz", {"model.json": b"{}", "code/inference.py": b"#"}), tmp_path / "good")
    assert (tmp_path / "good" / "code" / "inference.py").read_bytes() == b"#"
    with pytest.raises(Exception, match=r"\.\./escaped|outside"):
        unpack_model_archive(archive("bad.tar.gz", {"../escaped": b"x"}), tmp_path / "bad")
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize(("argv", "threads"), [([], 2), (["--threads", "5"], 5)])
def test_recsys_serve_runs_two_threads_per_worker_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              argv: list[str], threads: int) -> None:
    """The handler is CPU-bound: more threads per worker only stretch each request (bench_serving's p99)."""
    import recsys.local.endpoint as endpoint
    from recsys.cli import main

    calls: list[dict] = []
    monkeypatch.setattr(endpoint, "serve_forever", lambda model_dir, **kw: calls.append(kw))
    assert main(["serve", "--model-dir", str(tmp_path), *argv]) == 0
    assert calls[0]["threads"] == threads


def test_recsys_serve_help_names_the_endpoint_s_default_thread_count() -> None:
    """The CLI does not import the endpoint (waitress) to build its parser, so its help repeats the number."""
    import recsys.local.endpoint as endpoint
    from recsys.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    threads = next(a for a in serve._actions if "--threads" in a.option_strings)
    assert f"default {endpoint.WORKER_THREADS}:" in threads.help
