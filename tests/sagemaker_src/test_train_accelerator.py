"""train.py on a GPU instance installs the pinned JAX CUDA plugin before anything imports JAX; elsewhere nothing."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "sagemaker_src"


@pytest.fixture(scope="module")
def train_module():
    spec = importlib.util.spec_from_file_location("train_for_accelerator_test", SRC / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_instances_and_the_local_run_install_nothing(train_module, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    assert train_module.prepare_accelerator({}) == 0
    assert train_module.prepare_accelerator({"SM_NUM_GPUS": "0"}) == 0
    assert calls == []


def test_a_gpu_instance_installs_the_gpu_requirements(train_module, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    assert train_module.prepare_accelerator({"SM_NUM_GPUS": "1"}) == 1
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "install"] and cmd[-1] == str(SRC / "requirements-gpu.txt")


def test_the_gpu_plugin_matches_the_pinned_jax():
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (SRC / "requirements.txt").read_text(), re.M))
    gpu = dict(re.findall(r"^([\w-]+)==(\S+)", (SRC / "requirements-gpu.txt").read_text(), re.M))
    assert gpu == {"jax-cuda12-plugin": pins["jax"], "jax-cuda12-pjrt": pins["jax"]}
    assert pins["jax"] == pins["jaxlib"]
