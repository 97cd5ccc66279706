"""Fixtures for the deployment tests: overlays rendered once, and tools found or failed loudly.

A tool that `make setup` or the README's apt-get line installs fails the test when missing (a broken
set-up must not pass quietly); kustomize, which no registry here offers, skips with how to get it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import tools, validate


@dataclass(frozen=True)
class Rendered:
    """One overlay's manifests: the file kustomize wrote and the parsed documents."""

    overlay: str
    path: Path
    docs: list[dict]


def need(name: str) -> str:
    """The tool's path; a missing tool fails the test with its install command (never a skip)."""
    try:
        return tools.find(name)
    except tools.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    return need


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    out = tmp_path_factory.mktemp("rendered")
    try:
        paths = validate.render_all(out)
    except tools.ToolUnavailable as exc:
        pytest.skip(str(exc))
    except tools.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return {name: Rendered(name, path, validate.load(path.read_text())) for name, path in paths.items()}
