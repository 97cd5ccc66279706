#!/usr/bin/env bash
# Validates the deployment as CI does: generated shard addresses current, both overlays render,
# strict schema validation, the rules in deploy/policy.py, checkov (manifests + Dockerfiles) and
# hadolint. Installs the pinned validators on first use (deploy/validators/install.sh, cached).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
VIDSEARCH_DEPLOY_TOOLS=$(bash deploy/validators/install.sh)
export VIDSEARCH_DEPLOY_TOOLS
exec "$PY" -m deploy.validate all "$@"
