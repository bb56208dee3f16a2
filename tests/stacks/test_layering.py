"""Infrastructure imports infrastructure and shared definitions only: editing the local runtime (recsys/, the
DuckDB Athena, the waitress endpoint) must never break `cdk synth`. (moto is imported at synth time on purpose:
pipeline_steps/definition.py runs the SageMaker SDK inside moto's in-process mock so that producing the
pipeline definition needs no credentials; it is a build tool there, not the local engine.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


#: The local runtime: the engines that serve AWS calls locally, the main job that drives them, and the CLI.
RUNTIME_MODULES = ("recsys.local", "recsys.main_job", "recsys.cli", "recsys.__main__")
#: Where the runtime may be imported from: the runtime itself, and the tests and benchmarks that drive it.
RUNTIME_IMPORTERS = ("recsys/local/", "recsys/main_job.py", "recsys/cli.py", "recsys/__main__.py", "tests/", "bench/")
#: Definitions, deployed code and infrastructure: below the runtime, so none of them imports anything of recsys/.
LOWER_LAYERS = ("settings", "pipeline_steps", "monitoring", "sql", "glue_jobs", "sagemaker_src", "lambdas", "stacks")


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, anywhere (functions and TYPE_CHECKING blocks too), relative ones resolved."""
    import ast

    package = path.relative_to(PROJECT_ROOT).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found += [module] + [f"{module}.{a.name}" for a in node.names]
    return found


def _project_files() -> list[Path]:
    skip = {".venv", "node_modules", "cdk.out", "out", ".git"}
    return [p for p in sorted(PROJECT_ROOT.rglob("*.py")) if not skip & set(p.relative_to(PROJECT_ROOT).parts)]


def _is_runtime(module: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in RUNTIME_MODULES)


def test_nothing_imports_the_local_runtime_but_the_runtime_tests_and_benchmarks():
    """The runtime is at the top: an edit to an emulator or the main job can only break the runtime itself."""
    wrong = [
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path in _project_files()
        if not str(path.relative_to(PROJECT_ROOT)).startswith(RUNTIME_IMPORTERS)
        for module in _imports(path)
        if _is_runtime(module)
    ]
    assert not wrong, wrong


def test_definitions_deployed_code_and_infrastructure_import_nothing_of_recsys():
    """pipeline_steps/ holds definitions, monitoring/ specs, stacks/ infrastructure, lambdas/ and sagemaker_src/ what
    runs on AWS: none of them may reach the local runtime or the generator above them."""
    files = [p for p in _project_files() if p.relative_to(PROJECT_ROOT).parts[0] in LOWER_LAYERS]
    assert {p.relative_to(PROJECT_ROOT).parts[0] for p in files} == set(LOWER_LAYERS)  # every layer was read
    wrong = [
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path in files
        for module in _imports(path)
        if module == "recsys" or module.startswith("recsys.")
    ]
    assert not wrong, wrong


def test_the_layering_check_sees_a_local_import_inside_a_function_and_a_relative_one(tmp_path, monkeypatch):
    """The check must be able to fail: a function-level import of the runtime and a relative one are both found."""
    import tests.stacks.test_layering as layering

    bad = tmp_path / "monitoring" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("def f():\n    from recsys.local.athena import LocalAthena\n")
    rel = tmp_path / "recsys" / "generator_like.py"
    rel.parent.mkdir()
    rel.write_text("from .local import events\nfrom . import main_job\n")
    monkeypatch.setattr(layering, "PROJECT_ROOT", tmp_path)
    assert _imports(bad) == ["recsys.local.athena", "recsys.local.athena.LocalAthena"]
    assert {"recsys.local", "recsys.local.events", "recsys.main_job"} <= set(_imports(rel))
    with pytest.raises(AssertionError, match="monitoring/bad.py"):
        test_nothing_imports_the_local_runtime_but_the_runtime_tests_and_benchmarks()
