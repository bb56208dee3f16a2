#!/bin/bash
# Bootstrap of every processing step of the training pipeline.
#
#   bash run.sh <script> [arguments...]
#
# 1. pip-installs requirements-runtime.txt from this folder (pinned; the framework image lacks some of them;
#    not requirements.txt, the training job's, which adds JAX: no processing step imports it).
#    RECSYS_SKIP_INSTALL=1 skips it, for an interpreter that already has these pins (the project's .venv);
# 2. runs `python <this folder>/<script> [arguments...]` in place of this shell, so the script's exit
#    code is the job's.
#
# Nothing else. It reads no path but its own folder, so it runs the same from /opt/ml/processing/source
# on SageMaker (where the step's ContainerEntrypoint unpacks the source archive and calls it, see
# pipeline_steps/definition.py: processing_entrypoint) and from an unpacked archive anywhere locally.
# `python` is the first one on PATH.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -lt 1 ]; then
  echo "usage: bash $0 <script> [arguments...]" >&2
  exit 2
fi
script=$1
shift
if [ "${RECSYS_SKIP_INSTALL:-0}" != 1 ]; then
  python -m pip install --quiet --no-cache-dir -r "$here/requirements-runtime.txt"
fi
exec python "$here/$script" "$@"
