"""Security scan of the rendered overlays and the Dockerfiles, and the Dockerfile linter."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import validate
from tests.deploy.conftest import need


@pytest.fixture(scope="module")
def scan(rendered) -> validate.ScanReport:
    need("checkov")
    # Both overlays and both Dockerfiles in one checkov process: it takes seconds to start.
    return validate.security_scan([r.path for r in rendered.values()])


def test_security_scan_finds_nothing_unexplained(scan: validate.ScanReport) -> None:
    assert scan.failed == [], "\n".join(scan.failed) + scan.stderr


def test_every_suppression_gives_its_reason(scan: validate.ScanReport) -> None:
    unexplained = [(cid, res) for cid, res, why in scan.skipped if len(why) < 20]
    assert unexplained == []


def test_the_scan_covered_every_manifest_and_dockerfile(scan: validate.ScanReport, rendered) -> None:
    documents = sum(len(r.docs) for r in rendered.values())
    assert scan.resources.get("kubernetes", 0) >= documents - 2, scan.resources
    assert scan.resources.get("dockerfile") == len(validate.DOCKERFILES)
    assert scan.passed["kubernetes"] > 500 and scan.passed["dockerfile"] > 100


def test_dockerfiles_pass_hadolint() -> None:
    need("hadolint")
    proc = validate.lint_dockerfiles()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    need("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python app.py\n")
    proc = validate.lint_dockerfiles((bad,))
    assert proc.returncode != 0
    assert {"DL3007", "DL3008", "DL3025"} <= {w for w in proc.stdout.split() if w.startswith("DL")}
