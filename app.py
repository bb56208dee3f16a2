#!/usr/bin/env python3
"""CDK entry point: builds the stacks from the typed config in cdk.json context; nothing else."""

from __future__ import annotations

import os
import sys

from settings.config import ConfigError
from stacks.app_builder import build_app, new_app

try:
    app, _ = build_app(new_app(os.environ.get("CDK_OUTDIR")))
except ConfigError as err:
    sys.exit(f"recsys-mlops: invalid configuration: {err}")
app.synth()
