"""Synthesise each environment once per test session (synth takes ~10 s); tests read the templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from stacks.app_builder import build_app, new_app


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    cache: dict[str, tuple[Path, dict[str, Template]]] = {}

    def _synth(env_name: str = "dev") -> tuple[Path, dict[str, Template]]:
        if env_name not in cache:
            outdir = tmp_path_factory.mktemp(f"cdk-{env_name}")
            app, _ = build_app(new_app(str(outdir)), env_name, placeholders_ok=True)  # prod ships one
            assembly = app.synth()
            templates = {s.stack_name: Template.from_json(s.template) for s in assembly.stacks}
            cache[env_name] = (outdir, templates)
        return cache[env_name]

    return _synth


@pytest.fixture(scope="session")
def data_template(synth) -> Template:
    _, templates = synth("dev")
    return templates["recsys-dev-data"]


@pytest.fixture(scope="session")
def prod_data_template(synth) -> Template:
    _, templates = synth("prod")
    return templates["recsys-prod-data"]


def resources(template: Template, type_: str) -> dict[str, dict]:
    return template.find_resources(type_)


def template_json(template: Template) -> str:
    return json.dumps(template.to_json())
