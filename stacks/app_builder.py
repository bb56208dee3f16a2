"""Assembles the stacks of one environment; shared by ``app.py`` and the tests so both synth the same app."""

from __future__ import annotations

import json

import aws_cdk as cdk

from settings.config import CDK_JSON, Config, check_deployable, load_config
from stacks.analytics_stack import AnalyticsStack
from stacks.data_stack import DataStack
from stacks.deploy_stack import DeployStack
from stacks.ml_stack import MlStack
from stacks.monitoring_stack import MonitoringStack
from stacks.nag import register_nag
from stacks.streaming_stack import StreamingStack


def new_app(outdir: str | None = None) -> cdk.App:
    """An App with cdk.json's context (settings and feature flags) even when run as plain ``python app.py``.

    The CDK CLI passes the same context too (plus any ``-c key=value``, which wins).
    """
    return cdk.App(outdir=outdir, context=json.loads(CDK_JSON.read_text())["context"])


def build_app(
    app: cdk.App, env_name: str | None = None, nag: bool = True, placeholders_ok: bool = False
) -> tuple[cdk.App, Config]:
    """The environment's stacks. ``placeholders_ok`` lets tests read templates of an environment whose
    settings still hold placeholders (cdk.json's prod); a synth for deploying refuses them."""
    context = {"env": app.node.try_get_context("env"), "environments": app.node.try_get_context("environments")}
    if (engine := app.node.try_get_context("training_engine")) is not None:  # `cdk synth -c training_engine=...`
        context["training_engine"] = engine
    cfg = load_config(context, env_name)
    if not placeholders_ok:
        check_deployable(cfg)
    env = cdk.Environment(region=cfg.region)
    data_stack = DataStack(app, f"{cfg.prefix}-data", cfg=cfg, env=env, description="recsys-mlops data plane")
    MlStack(app, f"{cfg.prefix}-ml", cfg=cfg, data=data_stack, env=env, description="recsys-mlops training pipeline")
    DeployStack(app, f"{cfg.prefix}-deploy", cfg=cfg, data=data_stack, env=env, description="recsys-mlops deployment")
    if cfg.enable_streaming:
        StreamingStack(
            app, f"{cfg.prefix}-streaming", cfg=cfg, data=data_stack, env=env, description="recsys-mlops clickstream"
        )
    MonitoringStack(
        app,
        f"{cfg.prefix}-monitoring",
        cfg=cfg,
        data=data_stack,
        env=env,
        description="recsys-mlops alarms and dashboard",
    )
    if cfg.enable_analytics:
        AnalyticsStack(
            app, f"{cfg.prefix}-analytics", cfg=cfg, data=data_stack, env=env, description="recsys-mlops QuickSight"
        )
    for key, value in {"project": cfg.project_name, "environment": cfg.env_name}.items():
        cdk.Tags.of(app).add(key, value)
    if nag:
        register_nag(app)
    return app, cfg
