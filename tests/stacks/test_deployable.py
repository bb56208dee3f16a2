"""Synth for an environment with analytics on refuses a placeholder QuickSight principal, naming the key."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from settings.config import CDK_JSON, PROJECT_ROOT, ConfigError, check_deployable, load_config, load_project_config
from stacks.app_builder import build_app, new_app
from tests import CHILD_BOUND_S

CONTEXT = json.loads(CDK_JSON.read_text())["context"]
KEY = r"environments\.prod\.quicksight_principal_arn"


def _prod(**changes) -> dict:
    context = copy.deepcopy(CONTEXT)
    context["environments"]["prod"].update(changes)
    return context


def test_prod_as_shipped_is_refused_at_synth_naming_the_key(tmp_path):
    assert load_project_config("prod").enable_analytics  # the case the check is for
    with pytest.raises(ConfigError, match=rf"{KEY}.*account 111111111111 is a placeholder"):
        build_app(new_app(str(tmp_path)), "prod")


@pytest.mark.parametrize("account", ["111111111111", "123456789012", "000000000000"])
def test_every_placeholder_account_is_refused_when_analytics_is_on(account):
    arn = f"arn:aws:quicksight:ap-south-1:{account}:group/default/analysts"
    with pytest.raises(ConfigError, match=KEY):
        check_deployable(load_config(_prod(quicksight_principal_arn=arn), "prod"))


def test_a_real_account_or_analytics_off_passes():
    real = "arn:aws:quicksight:ap-south-1:406781239945:group/default/analysts"
    check_deployable(load_config(_prod(quicksight_principal_arn=real), "prod"))
    check_deployable(load_config(_prod(enable_analytics=False), "prod"))  # placeholder kept, nothing to grant
    check_deployable(load_project_config("dev"))  # the default environment synthesizes as shipped


def test_the_cdk_entry_point_exits_with_the_key_for_prod(tmp_path):
    """What ``npx cdk synth -c env=prod`` runs: app.py with the CLI's context in CDK_CONTEXT_JSON."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"env": "prod"}), "CDK_OUTDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=CHILD_BOUND_S)  # fmt: skip
    assert done.returncode != 0
    assert "prod.quicksight_principal_arn" in done.stderr and "placeholder" in done.stderr
