"""A real headless Chromium for the tests, brought by ``npm ci`` (``tests/browser.mjs``): no root, no system package.

``render(page, wait_for)`` loads the page, waits until the JavaScript expression ``wait_for`` is true (or the
timeout passes), and returns the ``<body>`` element's attributes. A missing Node or ``node_modules`` and a
browser that does not start fail the calling test with one line saying why: the browser test never skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import CHILD_BOUND_S

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "browser.mjs"
PACKAGES = ("@sparticuz/chromium", "puppeteer-core")  # pinned in package.json / package-lock.json
#: Whole-call bound: a hang, not slowness (unpacking the browser on first use takes ~10 s, a page a few; a loaded
#: 2-core machine took over 2 minutes for both).
TIMEOUT_S = CHILD_BOUND_S


@dataclass(frozen=True)
class Rendered:
    attributes: dict[str, str]  # the <body> element's, after the page settled
    done: bool  # ``wait_for`` became true before the timeout
    errors: list[str]  # page errors and console.error lines the browser saw
    executable: Path  # the browser binary the driver started (inside node_modules/, never a system one)
    version: str  # what the browser reports, e.g. "HeadlessChrome/143.0.7499.169"


def render(page: Path, wait_for: str, timeout_s: float = CHILD_BOUND_S / 2) -> Rendered:
    """``page`` rendered in headless Chromium; fails the test (never skips) when the browser cannot run."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("the browser test needs Node.js (`node` on PATH), as `make setup` does for the CDK CLI")
    missing = [p for p in PACKAGES if not (ROOT / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"node_modules lacks {', '.join(missing)} (the test browser): run `make setup` (npm ci)")
    try:
        run = subprocess.run(
            [node, str(DRIVER), page.resolve().as_uri(), wait_for, str(int(timeout_s * 1000))],
            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"headless Chromium ({DRIVER.name}) did not finish within {TIMEOUT_S} s: {exc.stderr!r:.2000}")
    if run.returncode != 0 or not run.stdout.strip():
        pytest.fail(f"headless Chromium could not start or load {page.name} (exit {run.returncode}):\n"
                    f"{run.stderr[-3000:]}")  # fmt: skip
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    executable = Path(doc.get("executable") or "?")
    if not executable.resolve().is_relative_to((ROOT / "node_modules").resolve()):
        pytest.fail(f"the browser started was {executable}, not the one npm ci pinned into node_modules/")
    return Rendered(doc["attributes"], doc["done"], doc["errors"], executable, doc.get("version", ""))
