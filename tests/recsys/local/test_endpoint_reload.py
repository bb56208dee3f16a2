"""Hot model reload of the local endpoint (issue #8): a bad new model never replaces a good one.

The real handler and a real train.py model are served over HTTP on 127.0.0.1; "new" models are
copies of it with another ``model_version`` (a good one) or damaged on purpose (bad ones).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from recsys.local.endpoint import (
    VERSION_HEADER,
    WORKER_HEADER,
    EndpointURL,
    LocalEndpoint,
    _make_server,
    _stop,
    _url,
    invoke,
    request,
    serve_endpoint,
)
from tests.responses import without_recommendation_ids
from tests.tiny_model import train_tiny_model

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "sagemaker_src"
pytestmark = pytest.mark.xdist_group("endpoint-reload")
JSON_HEADERS = {"Content-Type": "application/json"}
QUERIES = [
    {"user_id": "u1", "k": 5},
    {"user_id": "u7", "k": 3, "exclude": "none"},
    {"user_id": "nobody", "k": 4},
    {"user_id": "nobody", "k": 4, "recent_product_ids": ["p1", "p2"]},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model from train.py on a small synthetic shop (users u0..u59, products p0..p49)."""
    return train_tiny_model(tmp_path_factory.mktemp("reload"))


def versioned_copy(model_dir: Path, dest: Path, version: str) -> Path:
    """The same model under another ``model_version``: a good new model whose swap is visible."""
    shutil.copytree(model_dir, dest)
    doc = json.loads((dest / "model.json").read_text())
    doc["model_version"] = version
    (dest / "model.json").write_text(json.dumps(doc))
    return dest


def _missing_arrays(d: Path) -> None:
    (d / "arrays.npz").unlink()


def _truncated_arrays(d: Path) -> None:
    data = (d / "arrays.npz").read_bytes()
    (d / "arrays.npz").write_bytes(data[: len(data) // 2])


def _bad_model_json(d: Path) -> None:
    (d / "model.json").write_text('{"model_version": "broken", ')


def _unknown_format(d: Path) -> None:
    doc = json.loads((d / "model.json").read_text())
    doc["format_version"] = 999
    (d / "model.json").write_text(json.dumps(doc))


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "missing arrays.npz": _missing_arrays,
    "truncated arrays.npz": _truncated_arrays,
    "model.json not JSON": _bad_model_json,
    "unknown model format": _unknown_format,
}


@pytest.fixture()
def served(model_dir: Path) -> Iterator[EndpointURL]:
    with serve_endpoint(model_dir, threads=4) as url:
        yield url


def ping_version(url: str) -> str:
    status, _, body = request(url, "GET", "/ping")
    assert status == 200
    return json.loads(body)["model_version"]


def test_serve_endpoint_still_yields_a_plain_url_string(served: EndpointURL) -> None:
    """Existing callers format and split the yielded value as a str; it must stay one."""
    assert isinstance(served, str) and served.startswith("http://127.0.0.1:")
    assert f"{served}/ping" == str(served) + "/ping"
    assert served.endpoint.model_version == ping_version(served)


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_model_that_fails_to_load_is_refused_and_the_old_one_keeps_answering(
    served: EndpointURL,
    model_dir: Path,
    tmp_path: Path,
    corrupt: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = [invoke(served, q) for q in QUERIES]
    old_version = ping_version(served)
    bad = versioned_copy(model_dir, tmp_path / "bad", "should-never-serve")
    corrupt(bad)
    assert served.endpoint.reload(bad) is False
    assert "reload from" in caplog.text and "failed" in caplog.text
    assert ping_version(served) == old_version
    assert [without_recommendation_ids(invoke(served, q)) for q in QUERIES] == [
        without_recommendation_ids(a) for a in before
    ]


def test_a_missing_model_dir_is_refused(served: EndpointURL, tmp_path: Path) -> None:
    old_version = ping_version(served)
    assert served.endpoint.reload(tmp_path / "no-such-model") is False
    assert ping_version(served) == old_version


def test_a_good_new_model_is_swapped_in_and_ping_shows_its_version(
    served: EndpointURL, model_dir: Path, tmp_path: Path
) -> None:
    old_version = ping_version(served)
    new = versioned_copy(model_dir, tmp_path / "new", "v2-reloaded")
    assert served.endpoint.reload(new) is True
    assert ping_version(served) == "v2-reloaded" != old_version
    assert all(invoke(served, q)["model_version"] == "v2-reloaded" for q in QUERIES)
    assert served.endpoint.model_dir == new


def test_requests_during_reloads_never_fail_and_see_one_model_or_the_other(
    served: EndpointURL, model_dir: Path, tmp_path: Path
) -> None:
    """Clients hammer the endpoint while good and bad reloads alternate: every answer is a 200 from a whole model."""
    old_version = ping_version(served)
    expected = {json.dumps(q): invoke(served, q)["recommendations"] for q in QUERIES}
    good = versioned_copy(model_dir, tmp_path / "good", "v3")
    bad = versioned_copy(model_dir, tmp_path / "bad", "never")
    _truncated_arrays(bad)
    stop = threading.Event()
    answered = itertools.count()  # answers so far, all clients (next() is atomic under the GIL)
    per_phase = 10  # answers between two reloads: counted, not timed, so a slow machine only takes longer

    def client(n: int) -> list[str]:
        seen = []
        while not stop.is_set():
            q = QUERIES[n % len(QUERIES)]
            answer = invoke(served, q)  # raises on any non-200
            assert answer["recommendations"] == expected[json.dumps(q)]
            seen.append(answer["model_version"])
            next(answered)
            n += 1
        return seen

    def answers_go_on() -> None:
        start = next(answered)
        _poll(lambda: next(answered) - start > per_phase, f"{per_phase} answers between two reloads")

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(client, n) for n in range(4)]
        results = []
        for target in [good, bad, model_dir, bad, good]:
            answers_go_on()
            results.append(served.endpoint.reload(target))
        answers_go_on()
        stop.set()
        seen = [v for f in futures for v in f.result()]
    assert results == [True, False, True, False, True]
    assert set(seen) == {old_version, "v3"}
    assert len(seen) > 6 * per_phase


GATED_HANDLER = """
import threading
from pathlib import Path
ENTERED, GATE = threading.Event(), threading.Event()
class Model:
    def __init__(self, version):
        self.model_version = version
def model_fn(model_dir):
    return Model((Path(model_dir) / "version").read_text())
def input_fn(body, content_type):
    import json
    return json.loads(body)
def predict_fn(data, model):
    if model.model_version == "cannot-answer":
        raise RuntimeError("loads but cannot predict")
    if data.get("wait"):
        ENTERED.set()
        GATE.wait(5)
    return {"model_version": model.model_version}
def output_fn(prediction, accept):
    import json
    return json.dumps(prediction)
"""


def _version_dir(path: Path, version: str) -> Path:
    path.mkdir()
    (path / "version").write_text(version)
    return path


def test_a_request_in_flight_during_a_swap_finishes_on_the_model_it_started_with(tmp_path: Path) -> None:
    handler = tmp_path / "gated_inference.py"
    handler.write_text(GATED_HANDLER)
    with serve_endpoint(_version_dir(tmp_path / "a", "old"), threads=2, handler_path=handler) as url:
        module = url.endpoint.handler
        with ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(invoke, url, {"user_id": "u1", "wait": True})
            assert module.ENTERED.wait(5)
            assert url.endpoint.reload(_version_dir(tmp_path / "b", "new")) is True
            assert invoke(url, {"user_id": "u1"})["model_version"] == "new"
            module.GATE.set()
            assert slow.result(timeout=5)["model_version"] == "old"


def test_a_model_that_loads_but_cannot_answer_the_probe_is_refused(tmp_path: Path) -> None:
    handler = tmp_path / "probed_inference.py"
    handler.write_text(GATED_HANDLER)
    with serve_endpoint(_version_dir(tmp_path / "a", "old"), threads=2, handler_path=handler) as url:
        assert url.endpoint.reload(_version_dir(tmp_path / "b", "cannot-answer")) is False
        assert ping_version(url) == "old"
        assert invoke(url, {"user_id": "u1"})["model_version"] == "old"


#: Bounds, not expectations: a check polls until its condition holds and only fails after this long, so a
#: loaded machine makes a test slower, never red.
PATIENCE_S = 60.0


def _poll(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = PATIENCE_S) -> None:
    """Wait until ``condition()`` holds; after ``timeout`` fail naming ``what`` (a text, or a function giving it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what() if callable(what) else what}"
        time.sleep(0.02)


def _answers_per_worker(url: str, workers: set[int], version: str) -> dict[int, str]:
    """Ask on fresh connections (any worker may accept each) until every worker in ``workers`` answered with
    ``version``; returns each worker's last answer's model version. The pid comes from the answer's header."""
    last: dict[int, str] = {}
    on_version: set[int] = set()

    def every_worker_answered() -> bool:
        status, headers, body = request(url, "POST", "/invocations", b'{"user_id": "u1", "k": 2}', JSON_HEADERS)
        assert status == 200, body
        pid, answered = int(headers[WORKER_HEADER]), headers[VERSION_HEADER]
        assert pid in workers, f"an answer from {pid}, not one of the workers {sorted(workers)}"
        assert json.loads(body)["model_version"] == answered
        assert not (pid in on_version and answered != version), f"worker {pid} went back to {answered}"
        last[pid] = answered
        if answered == version:
            on_version.add(pid)
        return on_version == workers

    _poll(every_worker_answered, lambda: f"every worker {sorted(workers)} answers with model {version} (last: {last})")
    return last


class _Lines:
    """A child's stderr read on a thread, so a test can wait for a line without a fixed sleep."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def join(self) -> str:
        self._thread.join(15)
        return "".join(self.lines)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_the_served_model_dir_and_a_broken_one_is_refused(
    model_dir: Path, tmp_path: Path, workers: int
) -> None:
    """`python -m recsys serve`: SIGHUP re-reads --model-dir in every worker (each answer names its pid and model
    version, and the test asks until it has seen every worker on the new model); a broken one is refused by each
    worker, which logs the error and keeps serving."""
    live = versioned_copy(model_dir, tmp_path / "live", "v1")
    cmd = [sys.executable, "-m", "recsys", "serve", "--model-dir", str(live), "--port", "0", "--threads", "2",
           "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    errors = _Lines(proc.stderr)
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        if workers == 1:
            pids = {proc.pid}
        else:
            _poll(lambda: len(_children(proc.pid)) == workers, f"{workers} workers forked")
            pids = set(_children(proc.pid))
        assert set(_answers_per_worker(url, pids, "v1").values()) == {"v1"}
        staged = versioned_copy(model_dir, tmp_path / "staged", "v2")
        shutil.rmtree(live)
        staged.rename(live)  # the documented way: write elsewhere, rename into place
        proc.send_signal(signal.SIGHUP)
        _answers_per_worker(url, pids, "v2")
        assert ping_version(url) == "v2"
        _bad_model_json(live)
        proc.send_signal(signal.SIGHUP)
        _poll(lambda: errors.count("still serving model v2") == workers, f"each of {workers} workers refused it")
        assert proc.poll() is None
        assert set(_answers_per_worker(url, pids, "v2").values()) == {"v2"}
        assert ping_version(url) == "v2"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        err = errors.join()
    assert proc.returncode == 0, err
    assert err.count("reload from") == workers and err.count("still serving model v2") == workers, err


def _tcp_sockets(pid: int) -> int:
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_prefork_workers_split_keep_alive_connections_evenly(model_dir: Path) -> None:
    """Keep-alive connections stick to the worker that accepted them: an uneven split is a long queue on one core."""
    code = (
        "import sys; from pathlib import Path; from recsys.local.endpoint import serve_forever\n"
        "serve_forever(Path(sys.argv[1]), '127.0.0.1', 0, 2, workers=2)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(model_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    conns: list[http.client.HTTPConnection] = []
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        assert ping_version(url)
        _poll(lambda: len(_children(proc.pid)) == 2, "2 workers forked")
        workers = _children(proc.pid)
        for n in range(8):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE_S)
            conn.request("POST", "/invocations", json.dumps({"user_id": f"u{n}", "k": 2}), JSON_HEADERS)
            assert conn.getresponse().read()
            conns.append(conn)

        def held_by_each() -> list[int]:  # each worker also holds the listening socket
            return sorted(_tcp_sockets(pid) - 1 for pid in workers)

        # the ping's closed connection may linger briefly in a worker
        _poll(lambda: sum(held_by_each()) == 8, lambda: f"the 8 connections held (now {held_by_each()})")
        held = held_by_each()
    finally:
        for conn in conns:
            conn.close()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert sum(held) == 8
    assert held[-1] - held[0] <= 1, held


def _identities(fds: Iterable[int]) -> set[tuple[int, int, int]]:
    """(fd, device, inode) of each open descriptor: a number reused by another file after a close is not a match."""
    out = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            out.add((fd, st.st_dev, st.st_ino))
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_stopping_keeps_the_trigger_open_for_wake_ups_that_arrive_after_the_loop_closed_the_sockets(
    tmp_path: Path,
) -> None:
    """The loop can run the closing thunk before the stopper's own wake-up byte is written (another byte woke it),
    and a worker finishing a request pulls the trigger once more: both writes must find the pipe open (they hit
    EBADF, as a teardown error, when the thunk closed it), and the pipe is still closed in the end."""
    handler = tmp_path / "stop_inference.py"
    handler.write_text(GATED_HANDLER)
    app = LocalEndpoint(_version_dir(tmp_path / "a", "old"), handler)
    server = _make_server(app, "127.0.0.1", 0, 2)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    assert invoke(_url(server), {"user_id": "u1"})["model_version"] == "old"
    trigger, dispatcher = server.trigger, server.task_dispatcher
    write, shutdown = trigger._physical_pull, dispatcher.shutdown
    # the server's own descriptors (listening socket, connections, the trigger's pipe), not the whole process's:
    # other threads of a test worker open and close files of their own meanwhile
    owned = _identities([*server._map, *trigger._fds])
    assert len(owned) >= 3

    def stopper_writes_late() -> None:
        write()  # a byte already in the pipe wakes the loop, which runs the closing thunk...
        loop.join(PATIENCE_S)
        write()  # ...before the stopper's own byte is written

    def worker_pulls_then_shutdown(timeout: float) -> bool:
        server.pull_trigger()  # a request finishing after the loop is gone
        return shutdown(timeout=timeout)

    trigger._physical_pull = stopper_writes_late
    dispatcher.shutdown = worker_pulls_then_shutdown
    _stop(server, loop)
    assert not loop.is_alive() and trigger._closed
    assert _identities(fd for fd, _, _ in owned) & owned == set()  # every one closed
