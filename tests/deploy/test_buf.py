"""buf: Go and Java stubs generate from buf.gen.yaml, and `buf breaking` guards the wire contract."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.tools import ROOT
from tests.deploy.conftest import need

SCRIPT = ROOT / "scripts" / "buf_breaking.sh"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def test_buf_gen_yaml_generates_go_and_java_stubs(tmp_path: Path) -> None:
    buf = need("buf")
    for plugin in ("protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        need(plugin)
    # Debian names grpc-java's plugin grpc_java_plugin; buf.gen.yaml uses the usual name.
    java_plugin = shutil.which("protoc-gen-grpc-java") or shutil.which("grpc_java_plugin")
    if java_plugin is None:
        need("protoc-gen-grpc-java")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "protoc-gen-grpc-java").symlink_to(java_plugin)
    out = tmp_path / "out"
    proc = _run([buf, "generate", "--template", "buf.gen.yaml", "-o", str(out)], ROOT,
                {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    go = out / "clients" / "go" / "gen" / "vidsearch" / "gateway" / "v1"
    assert (go / "gateway.pb.go").is_file() and (go / "gateway_grpc.pb.go").is_file()
    assert "package gatewayv1" in (go / "gateway.pb.go").read_text()
    java = out / "clients" / "java" / "src" / "main" / "java" / "io" / "vidsearch"
    assert (java / "gateway" / "v1" / "SearchServiceGrpc.java").is_file()
    assert (java / "ingest" / "v1" / "IngestServiceGrpc.java").is_file()


def test_protos_keep_the_contract_of_the_last_release() -> None:
    need("buf")
    proc = _run(["bash", str(SCRIPT)], ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def release_repo(tmp_path: Path) -> Path:
    """A git repository holding this module's buf.yaml and protos, released as v0.1.0."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", repo / "protos")
    shutil.copy(ROOT / "buf.yaml", repo / "buf.yaml")
    (repo / "scripts").mkdir()
    shutil.copy(SCRIPT, repo / "scripts" / SCRIPT.name)
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "v0.1.0"], ["tag", "v0.1.0"]):
        assert _run([*git, *cmd], repo).returncode == 0
    return repo


def test_buf_breaking_fails_on_a_removed_field_against_the_release_tag(release_repo: Path) -> None:
    need("buf")
    proto = release_repo / "protos" / "vidsearch" / "gateway" / "v1" / "gateway.proto"
    text = proto.read_text()
    proto.write_text(text.replace("  // Return at most one hit (the best clip) per video.\n"
                                  "  bool collapse_by_video = 7;\n", ""))
    assert proto.read_text() != text
    env = {"BUF": need("buf")}
    proc = _run(["bash", "scripts/buf_breaking.sh"], release_repo, env)
    assert "against .git#tag=v0.1.0" in proc.stdout
    assert proc.returncode != 0 and "collapse_by_video" in proc.stdout + proc.stderr


def test_buf_breaking_uses_main_before_the_first_release(release_repo: Path) -> None:
    _run(["git", "tag", "-d", "v0.1.0"], release_repo)
    proc = _run(["bash", "scripts/buf_breaking.sh"], release_repo, {"BUF": need("buf")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "against .git#ref=refs/heads/main" in proc.stdout
