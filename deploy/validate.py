"""Validates the deployment: renders every overlay, then checks schemas, policy, security, Dockerfiles.

    python -m deploy.validate addresses          # rewrite overlays/*/generated/addresses.env
    python -m deploy.validate all [--out DIR]    # what CI runs (scripts/validate_deploy.sh)

Each step is a function tests/deploy calls too. Missing tools fail with the install command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deploy import addresses, policy, tools
from deploy.tools import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes the manifests support (native gRPC probes are GA from 1.27, the
# StatefulSet PVC retention policy is on by default from 1.27) and a current one.
K8S_VERSIONS = ("1.29.0", "1.34.0")
DOCKERFILES = tuple(sorted((ROOT / "docker").glob("Dockerfile.*")))
SCAN_TIMEOUT_S = 300


def _run(cmd: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False, **kw)


def render(overlay: str) -> str:
    """The overlay's manifests as kustomize renders them."""
    proc = _run([*tools.kustomize(), str(K8S / "overlays" / overlay)])
    if proc.returncode != 0:
        raise RuntimeError(f"kustomize failed for {overlay}:\n{proc.stderr}")
    return proc.stdout


def load(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render_all(out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for overlay in OVERLAYS:
        paths[overlay] = out_dir / f"{overlay}.yaml"
        paths[overlay].write_text(render(overlay))
    return paths


def check_schemas(paths: list[Path], version: str) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate in strict mode: unknown fields are errors, not warnings."""
    return _run([tools.find("kubernetes-validate"), "--strict", "--quiet", "-k", version, *map(str, paths)])


@dataclass
class ScanReport:
    """What checkov found: failures, and suppressions with the reason each one gives."""

    returncode: int
    passed: dict[str, int] = field(default_factory=dict)
    resources: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    stderr: str = ""


def security_scan(manifests: list[Path], dockerfiles: tuple[Path, ...] = DOCKERFILES) -> ScanReport:
    """checkov over the rendered manifests and the Dockerfiles, in one process (it starts slowly)."""
    cmd = [tools.find("checkov"), "--skip-download", "--output", "json",
           "--framework", "kubernetes", "dockerfile"]
    for path in [*manifests, *dockerfiles]:
        cmd += ["--file", str(path)]
    # No network: checkov would otherwise look for newer versions and remote policies.
    env = {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "ENABLE_DEFINITIONS_CACHE": "false"}
    proc = _run(cmd, timeout=SCAN_TIMEOUT_S, env={**os.environ, **env})
    report = ScanReport(proc.returncode, stderr=proc.stderr[-4000:])
    try:
        results = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report.failed.append(f"checkov printed no JSON report:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return report
    for result in results if isinstance(results, list) else [results]:
        kind = result["check_type"]
        report.passed[kind] = result["summary"]["passed"]
        report.resources[kind] = result["summary"]["resource_count"]
        checks = result.get("results", {})
        for item in checks.get("failed_checks", ()):
            report.failed.append(f"{item['check_id']} {item['check_name']}: {item['resource']} "
                                 f"({item['file_path']}:{item['file_line_range']})")
        for item in checks.get("skipped_checks", ()):
            reason = (item.get("check_result", {}) or {}).get("suppress_comment", "") or ""
            report.skipped.append((item["check_id"], item["resource"], reason.strip()))
    return report


def lint_dockerfiles(dockerfiles: tuple[Path, ...] = DOCKERFILES) -> subprocess.CompletedProcess[str]:
    return _run([tools.find("hadolint"), "--no-color", *map(str, dockerfiles)])


def _report(title: str, problems: list[str]) -> bool:
    print(f"{'ok  ' if not problems else 'FAIL'} {title}")
    for problem in problems:
        print(f"     {problem}")
    return not problems


def validate_all(out_dir: Path) -> bool:
    ok = _report("generated addresses are current",
                 [f"{p} is stale: run python -m deploy.validate addresses" for p in addresses.sync(check=True)])
    paths = render_all(out_dir)
    print(f"ok   rendered {', '.join(str(p) for p in paths.values())}")
    for version in K8S_VERSIONS:
        proc = check_schemas(list(paths.values()), version)
        ok &= _report(f"schemas (Kubernetes {version}, strict)",
                      [] if proc.returncode == 0 else (proc.stdout + proc.stderr).splitlines())
    for overlay, path in paths.items():
        for rule, problems in policy.check(load(path.read_text())).items():
            ok &= _report(f"{overlay}: {rule}", problems)
    scan = security_scan(list(paths.values()))
    unexplained = [f"{cid} on {res} is suppressed without a reason" for cid, res, why in scan.skipped if not why]
    ok &= _report(f"security scan (checkov; passed {scan.passed}, {len(scan.skipped)} suppressed with reasons)",
                  scan.failed + unexplained)
    lint = lint_dockerfiles()
    ok &= _report("Dockerfiles (hadolint)", [] if lint.returncode == 0 else lint.stdout.splitlines())
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("all", "addresses", "render"))
    parser.add_argument("--check", action="store_true", help="addresses: fail instead of rewriting stale files")
    parser.add_argument("--out", type=Path, help="where rendered manifests go (default: a temporary directory)")
    args = parser.parse_args(argv)
    try:
        if args.step == "addresses":
            stale = addresses.sync(check=args.check)
            for path in stale:
                print(f"{'stale' if args.check else 'wrote'} {path.relative_to(ROOT)}")
            return 1 if (args.check and stale) else 0
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            if args.step == "render":
                for path in render_all(out).values():
                    print(path)
                return 0
            return 0 if validate_all(out) else 1
    except tools.ToolMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
