"""The container images: what they install, what they leave out, and their health check."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from deploy.tools import ROOT


def _docker_module(name: str) -> ModuleType:
    """A script from docker/ (not a package: the images copy the files alone)."""
    spec = importlib.util.spec_from_file_location(f"docker_{name}", ROOT / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _docker_module("healthcheck")
runtime_requirements = _docker_module("runtime_requirements")
MODEL_STACK = runtime_requirements.MODEL_STACK

DOCKERFILES = {p.name: p.read_text() for p in sorted((ROOT / "docker").glob("Dockerfile.*"))}
# What each CPU-image command imports; ingest's modules are the ones `python -m` runs.
CPU_SERVICES = ("services.index.server", "services.gateway.server", "services.ingest.server", "services.ingest.worker")


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


def test_cpu_image_leaves_out_the_model_stack_and_keeps_every_other_pin() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    cpu = runtime_requirements.requirements(ROOT / "pyproject.toml", "cpu")
    model_stack = {p for p in pins if runtime_requirements._name(p) in MODEL_STACK}
    assert len(model_stack) == len(MODEL_STACK), "every excluded name is a real dependency"
    assert set(cpu) == set(pins) - model_stack
    assert runtime_requirements.requirements(ROOT / "pyproject.toml", "encoder") == pins
    assert all("==" in r for r in cpu), "the image installs exact pins only"


@pytest.mark.parametrize("module", CPU_SERVICES)
def test_cpu_services_import_without_the_model_stack(module: str) -> None:
    if module.startswith("services.ingest") and importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} does not exist yet: the CPU image runs `python -m {module.removesuffix('.server')}`;"
                    " this test passes once services/ingest lands", pytrace=False)
    blocked = sorted(m.replace("-", "_").replace("open_clip_torch", "open_clip") for m in MODEL_STACK)
    code = f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\nimport {module}\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"{module} needs the model stack, absent from the CPU image:\n{proc.stderr[-2000:]}"


@pytest.mark.parametrize("command", [["--help"], ["replicas", "--help"], ["migrate", "--help"]])
def test_the_cli_runs_without_the_model_stack(command: list[str]) -> None:
    """The CPU image installs the package, so ``vidsearch replicas`` and ``vidsearch migrate`` must run there."""
    blocked = sorted(m.replace("-", "_").replace("open_clip_torch", "open_clip") for m in MODEL_STACK)
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"from services.cli import main\nsys.exit(main({command!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"the CLI needs the model stack:\n{proc.stderr[-2000:]}"
    assert "usage: vidsearch" in proc.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_multistage_nonroot_and_has_no_build_tools_or_weights(name: str) -> None:
    text = DOCKERFILES[name]
    stages = _stages(text)
    assert len(stages) >= 2, "multi-stage: build in one stage, run in another"
    final = stages[-1]
    assert "USER 10001:10001" in final, "the final stage runs as the numeric non-root user"
    assert not re.search(r"\b(g\+\+|gcc|build-essential|apt-get install)\b", final), "no build tools in the final image"
    assert "HEALTHCHECK" in final and "/opt/vidsearch/healthcheck.py" in final
    without_setting = final.replace("VIDSEARCH_ENCODER_CHECKPOINT=/models", "")
    assert not re.search(r"\.(safetensors|pt|bin|ckpt)\b|/models", without_setting), \
        "model weights must come from a volume, never the image"
    assert ":latest" not in text


def test_encoder_image_has_a_cuda_base_and_the_cpu_image_a_slim_one() -> None:
    assert _stages(DOCKERFILES["Dockerfile.encoder"])[-1].startswith("nvidia/cuda:")
    assert "-slim" in _stages(DOCKERFILES["Dockerfile.cpu"])[-1].splitlines()[0]


def test_dockerignore_sends_only_what_the_images_install() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "an allow-list: everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for text in DOCKERFILES.values():
        for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
            copied |= {s.rstrip("/") for s in src.split()}
    assert copied <= allowed, f"COPY of paths the context excludes: {copied - allowed}"
    assert not allowed & {"tests", ".git", ".venv", "data", "deploy", "clients", "models"}


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_healthcheck_exits_zero_only_when_serving(health_server) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main([address]) == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main([address]) == 0
    assert healthcheck.main(["127.0.0.1:1", "--timeout", "0.5"]) == 1


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def test_healthcheck_speaks_tls_from_its_environment(tmp_path: Path, monkeypatch) -> None:
    """The exec probes of TLS servers: CA and server name from VIDSEARCH_HEALTHCHECK_TLS_*."""
    from concurrent import futures

    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=tmp_path)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=search.example.com",
             "-keyout", "tls.key", "-out", "tls.csr", cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:search.example.com\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.ext", "-out", "tls.crt", cwd=tmp_path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials([((tmp_path / "tls.key").read_bytes(), (tmp_path / "tls.crt").read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        assert healthcheck.main([address, "--timeout", "2"]) == 1, "plaintext against a TLS server must fail"
        monkeypatch.setenv("VIDSEARCH_HEALTHCHECK_TLS_CA", str(tmp_path / "ca.crt"))
        monkeypatch.setenv("VIDSEARCH_HEALTHCHECK_TLS_SERVER_NAME", "search.example.com")
        assert healthcheck.main([address, "--timeout", "5"]) == 0
        monkeypatch.setenv("VIDSEARCH_HEALTHCHECK_TLS_SERVER_NAME", "other.example.com")
        assert healthcheck.main([address, "--timeout", "2"]) == 1, "a wrong server name must fail verification"
    finally:
        server.stop(0)
