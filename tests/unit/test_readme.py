"""The README's first code block is the whole set-up: one apt-get line, `make demo`, `make test`.

`.ci/run` executes exactly that block, so these checks keep CI and a newcomer's machine the same.
"""

from __future__ import annotations

import re
from pathlib import Path

from deploy import tools

ROOT = Path(__file__).resolve().parents[2]


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert match, "README.md has no code block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def _apt_packages(line: str) -> set[str]:
    install = line.split("apt-get install", 1)[1]
    return {word for word in install.split() if not word.startswith("-")}


def test_readme_starts_with_the_set_up_line_and_two_commands() -> None:
    setup, demo, test = _first_block()
    assert setup.startswith("apt-get update && apt-get install -y ")
    assert (demo, test) == ("make demo", "make test")


def test_every_system_package_a_missing_tool_names_is_in_the_set_up_line() -> None:
    named = _apt_packages(_first_block()[0])
    for tool, hint in tools.HINTS.items():
        if hint.startswith("apt-get install"):
            wanted = _apt_packages(hint)
            assert wanted <= named, f"{tool}: {sorted(wanted - named)} missing from the README's set-up line"


def test_ci_runs_the_readme_block_and_installs_nothing_of_its_own() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in script
    code = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"apt-get|pip install|npm (ci|install)", line)]
