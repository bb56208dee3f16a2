"""Shared fixtures: one moto server for the whole session, a clean account per test.

Starting a server costs about a second, a reset a few milliseconds, so every moto-backed test
shares one server (``moto_endpoint``) and asks for ``aws_env`` to get an empty account with the
process environment pointed at it (boto3, awswrangler and subprocesses then reach moto only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.local.moto_server import _CONFLICTING_ENV, LocalAws, local_aws
from settings.config import load_project_config


def pytest_report_header(config: pytest.Config) -> str | None:
    """One line when the repository's ``cdk.out`` (which the whole-flow tests execute) is missing or older than the
    code it is synthesized from: ``make test`` synthesizes first, a direct ``pytest`` does not."""
    from recsys.local.curation import cdk_out
    from recsys.local.synth_check import synth_problem

    problem = synth_problem(cdk_out(), load_project_config().prefix)
    return f"WARNING: {problem} (the tests that run the local flow read it)" if problem else None


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[LocalAws]:
    """The session's moto server on 127.0.0.1 (free port), in the project's configured region."""
    with local_aws(region=load_project_config().region) as aws:
        yield aws


@pytest.fixture
def aws_env(moto_endpoint: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    """A reset moto account, with AWS_* variables set for this test only (undone afterwards). Reset again after
    the test: moto keeps its resources in module globals, so a later test's own local AWS in this worker (a
    ``main(["run", ...])``) would otherwise start with this test's endpoint, packages and buckets."""
    moto_endpoint.reset()
    for name in _CONFLICTING_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_endpoint.env().items():
        monkeypatch.setenv(name, value)
    yield moto_endpoint
    moto_endpoint.reset()


@pytest.fixture(scope="session")
def data_template_path(tmp_path_factory: pytest.TempPathFactory):
    """The dev data stack's template, synthesized once per session (never a stale ``cdk.out``): what the local
    curation run executes (``recsys.local.curation.run_curation(..., template=...)``)."""
    from stacks.app_builder import build_app, new_app

    out = tmp_path_factory.mktemp("cdk-data")
    app, cfg = build_app(new_app(str(out)), "dev", nag=False)
    app.synth()
    return out / f"{cfg.prefix}-data.template.json"


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """Each environment synthesised once per session (~10 s each), with its templates: ``synth(env) -> (outdir,
    {stack: Template})``. Tests that use it share one worker (``xdist_group("synth")``)."""
    from aws_cdk.assertions import Template

    from stacks.app_builder import build_app, new_app

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
def synth_with(tmp_path_factory):
    """An environment synthesised with some settings changed, e.g. prod with ``experiment_mode`` ab (no shipped
    environment runs an experiment on an instance endpoint): ``synth_with("prod", experiment_mode="ab")``."""
    import json

    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from settings.config import CDK_JSON
    from stacks.app_builder import build_app

    cache: dict[tuple, dict[str, Template]] = {}

    def _synth(env_name: str, **settings) -> dict[str, Template]:
        key = (env_name, *sorted(settings.items()))
        if key not in cache:
            context = json.loads(CDK_JSON.read_text())["context"]
            context["environments"][env_name] |= settings
            app = cdk.App(outdir=str(tmp_path_factory.mktemp(f"cdk-{env_name}-changed")), context=context)
            build_app(app, env_name, placeholders_ok=True)
            cache[key] = {s.stack_name: Template.from_json(s.template) for s in app.synth().stacks}
        return cache[key]

    return _synth
