#!/usr/bin/env bash
# Fails when protos/ breaks the wire contract of the last release (buf breaking, FILE rules).
# Against: $BUF_BREAKING_AGAINST if set; else the newest release tag v* reachable from HEAD;
# else, before the first release, the main branch's committed protos (local main, then
# origin/main); else HEAD (the working tree's uncommitted changes only).
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
command -v "$BUF" >/dev/null || BUF=buf

against=${BUF_BREAKING_AGAINST:-}
if [ -z "$against" ]; then
  if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null); then
    against=".git#tag=$tag"
  else
    for ref in refs/heads/main refs/remotes/origin/main HEAD; do
      if git rev-parse -q --verify "$ref^{commit}" >/dev/null; then
        against=".git#ref=$ref"
        break
      fi
    done
  fi
fi
echo "buf breaking against $against"
exec "$BUF" breaking --against "$against"
