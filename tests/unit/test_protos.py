"""The committed generated code matches protos/, and the contracts pass buf lint."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    subprocess.run(
        ["bash", "scripts/gen_protos.sh"], cwd=tmp_path, check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    fresh, committed = tmp_path / "vidsearch", ROOT / "vidsearch"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(
        p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh_files == committed_files, "generated file set differs: run `make proto` and commit"
    stale = [str(p) for p in fresh_files if not filecmp.cmp(fresh / p, committed / p, shallow=False)]
    assert not stale, f"stale generated code (run `make proto` and commit): {stale}"


def test_buf_lint_is_clean() -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        pytest.fail("buf CLI missing: it is a dev dependency (buf-bin)")
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_is_importable_with_its_stubs() -> None:
    from vidsearch.encoder.v1 import encoder_pb2_grpc
    from vidsearch.gateway.v1 import gateway_pb2_grpc
    from vidsearch.index.v1 import index_pb2_grpc
    from vidsearch.ingest.v1 import ingest_pb2_grpc

    for module, name in [
        (index_pb2_grpc, "IndexServiceStub"),
        (encoder_pb2_grpc, "EncoderServiceStub"),
        (ingest_pb2_grpc, "IngestServiceStub"),
        (gateway_pb2_grpc, "SearchServiceStub"),
    ]:
        assert hasattr(module, name)
