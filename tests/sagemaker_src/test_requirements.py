"""Who installs what: the training job gets requirements.txt (the runtime plus JAX), the processing steps
(run.sh) and the endpoint (the packaged model's code/requirements.txt) the runtime alone; every pin agrees
with the repository's lock."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "sagemaker_src"
ROOT = SRC.parent
TRAINING_ONLY = {"jax", "jaxlib"}


def _pins(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version
            for name, version in re.findall(r"^([\w.-]+)(?:\[[^\]]*\])?==(\S+)", path.read_text(), re.M)}


def test_training_gets_the_runtime_plus_jax_and_the_runtime_has_no_jax():
    training = (SRC / "requirements.txt").read_text()
    assert re.search(r"^-r requirements-runtime\.txt$", training, re.M)  # one list of runtime pins, not a copy
    assert set(_pins(SRC / "requirements.txt")) >= TRAINING_ONLY
    runtime = _pins(SRC / "requirements-runtime.txt")
    assert not TRAINING_ONLY & set(runtime)
    assert set(runtime) >= {"numpy", "scipy", "pandas", "pyarrow", "implicit", "faiss-cpu"}
    assert not set(runtime) & set(_pins(SRC / "requirements.txt"))


def test_every_sagemaker_pin_is_the_locked_version():
    lock = _pins(ROOT / "constraints.txt")
    for name in ("requirements.txt", "requirements-runtime.txt"):
        pins = _pins(SRC / name)
        assert pins and {k: v for k, v in pins.items() if lock.get(k) != v} == {}, name


def test_the_processing_bootstrap_installs_the_runtime_requirements(tmp_path):
    """run.sh with a ``python`` on PATH that records its arguments instead of running anything."""
    record = tmp_path / "calls"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\necho "$@" >> {record}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RECSYS_SKIP_INSTALL", None)
    subprocess.run(["bash", str(SRC / "run.sh"), "evaluate.py", "--x"], env=env, check=True)
    install, run = record.read_text().splitlines()
    assert install.split()[:2] == ["-m", "pip"] and install.split()[-1] == str(SRC / "requirements-runtime.txt")
    assert run == f"{SRC / 'evaluate.py'} --x"


def test_the_packaged_model_ships_the_runtime_requirements_as_requirements_txt(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    spec = importlib.util.spec_from_file_location("package_model_for_requirements", SRC / "package_model.py")
    package_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package_model)
    with tarfile.open(package_model.package(tmp_path / "model", SRC, tmp_path / "out")) as tar:
        names = set(tar.getnames())
        shipped = tar.extractfile("code/requirements.txt").read()
    assert shipped == (SRC / "requirements-runtime.txt").read_bytes()
    assert not {"code/requirements-runtime.txt", "code/requirements-gpu.txt"} & names


def test_serving_and_processing_import_without_jax():
    """The runtime requirements suffice: every non-training entry point imports with JAX unavailable."""
    code = ("import sys; sys.modules['jax'] = None; sys.modules['jaxlib'] = None\n"
            "import inference, evaluate, batch_recommend, prepare_data, package_model\n"
            "from recsys_core.models import SASRec\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], cwd=SRC, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
