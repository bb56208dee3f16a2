"""Templates of the synthesised environments (the ``synth`` fixture is in ``tests/conftest.py``)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template


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
