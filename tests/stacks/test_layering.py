"""Infrastructure imports infrastructure and shared definitions only: editing the local runtime (recsys/, the
DuckDB Athena, the waitress endpoint) must never break `cdk synth`. (moto is imported at synth time on purpose:
pipeline_steps/definition.py runs the SageMaker SDK inside moto's in-process mock so that producing the
pipeline definition needs no credentials; it is a build tool there, not the local engine.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from settings.config import PROJECT_ROOT
from tests import CHILD_BOUND_S, HEAVY_TIMEOUT_S

pytestmark = pytest.mark.timeout(HEAVY_TIMEOUT_S)  # builds every stack in a child process

LOCAL_RUNTIME = ("recsys", "duckdb", "waitress")


def test_building_every_stack_imports_no_local_runtime():
    code = (
        "import json, sys, tempfile\n"
        "from stacks.app_builder import build_app, new_app\n"
        "build_app(new_app(tempfile.mkdtemp()))\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(LOCAL_RUNTIME)!r}))))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=CHILD_BOUND_S, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
