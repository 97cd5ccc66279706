#!/usr/bin/env bash
# Builds (or reuses) the virtual environment holding the deployment validation tools pinned in
# deploy/validators/requirements.txt and prints its path. It lives outside the checkout, keyed by the
# pins, so CI reruns and other clones reuse it; `python -m deploy.validate` looks for it there.
set -euo pipefail
cd "$(dirname "$0")/../.."
key=$(sha256sum deploy/validators/requirements.txt | cut -c1-16)
dest=${VIDSEARCH_DEPLOY_TOOLS:-/var/cache/vidsearch/deploy-tools-$key}
if [ ! -e "$dest/.complete" ]; then
  # Built in place (console scripts hard-code the interpreter path); the stamp marks success.
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  python3.11 -m venv "$dest" 2>/dev/null || python3 -m venv "$dest"
  "$dest/bin/python" -m pip install -q --disable-pip-version-check -r deploy/validators/requirements.txt
  touch "$dest/.complete"
fi
echo "$dest"
