"""`vidsearch search` and `vidsearch ingest` against a local stack with mutual TLS and API keys on.

The gateway and ingest serve TLS with a certificate for ``search.vidsearch.test`` from a test CA
and require client certificates from the same CA; both check API keys. The CLIs run in-process
through ``services.cli.main``, so the exit status and the messages are the ones a user sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services import cli
from services.common.channels import ClientTLS
from services.common.client_connection import DEPRECATED_NAMES, TLS_SETTINGS
from services.local.stack import LocalStack, StackConfig, StackTLS
from tests.media import make_video
from tests.pki import LoopbackPKI, make_pki

pytestmark = pytest.mark.slow

READ_KEY = "reader-key-0123456789"
WRITE_KEY = "writer-key-0123456789"
VIDEO_ID = "secured-1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LoopbackPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, pki: LoopbackPKI) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("secured")
    keys = root / "api-keys"
    keys.write_text(f"{READ_KEY} read\n{WRITE_KEY} write\n")
    probe = ClientTLS(pki.ca, pki.client_cert, pki.client_key, pki.server_name)
    tls = StackTLS(pki.server_cert, pki.server_key, client_ca_file=pki.ca, probe=probe)
    with LocalStack(StackConfig(data_dir=root / "stack", checkpoint=tiny_checkpoint, n_shards=1,
                                api_keys_file=keys, tls=tls)) as s:
        yield s


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("client-keys")
    files = {"read": root / "read.key", "write": root / "write.key"}
    files["read"].write_text(READ_KEY + "\n")
    files["write"].write_text(WRITE_KEY + "\n")
    return files


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["VIDSEARCH_CLIENT_GATEWAY_ADDRESS", "VIDSEARCH_CLIENT_INGEST_ADDRESS", "VIDSEARCH_CLIENT_API_KEY_FILE",
             "VIDSEARCH_CLIENT_API_KEY", *TLS_SETTINGS.values(), *DEPRECATED_NAMES.values()]
    for name in names:
        monkeypatch.delenv(name, raising=False)


def tls_flags(pki: LoopbackPKI) -> list[str]:
    return ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key),
            "--tls-server-name", pki.server_name]


def run_cli(capfd: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def ingested(stack: LocalStack, pki: LoopbackPKI, key_files: dict[str, Path], tmp_path_factory) -> str:
    """One video ingested through the CLI with a write key over mutual TLS; its video id."""
    video = make_video(tmp_path_factory.mktemp("videos") / "secured.mp4", seconds=4, fps=5, size=(64, 64))
    code = cli.main(["ingest", str(video), "--video-id", VIDEO_ID, "--window", "2", "--ingest", stack.ingest.address,
                     "--api-key-file", str(key_files["write"]), *tls_flags(pki)])
    assert code == 0
    return VIDEO_ID


def test_ingest_and_search_over_mutual_tls_with_keys(stack: LocalStack, pki: LoopbackPKI, ingested: str,
                                                    key_files: dict[str, Path], capfd) -> None:
    code, out, err = run_cli(capfd, "search", "a secured clip", "--video-id", ingested, "--gateway",
                             stack.gateway.address, "--api-key-file", str(key_files["read"]), *tls_flags(pki))
    assert code == 0, err
    assert f"{ingested}:000000000" in out  # the first clip of the video ingested over TLS


def test_settings_from_the_environment(stack: LocalStack, pki: LoopbackPKI, ingested: str,
                                       monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.setenv("VIDSEARCH_CLIENT_GATEWAY_ADDRESS", stack.gateway.address)
    monkeypatch.setenv("VIDSEARCH_CLIENT_API_KEY", READ_KEY)
    monkeypatch.setenv("VIDSEARCH_CLIENT_TLS_CA_FILE", str(pki.ca))
    monkeypatch.setenv("VIDSEARCH_CLIENT_TLS_CERT_FILE", str(pki.client_cert))
    monkeypatch.setenv("VIDSEARCH_CLIENT_TLS_KEY_FILE", str(pki.client_key))
    monkeypatch.setenv("VIDSEARCH_CLIENT_TLS_SERVER_NAME", pki.server_name)
    code, out, err = run_cli(capfd, "search", "from the environment", "--video-id", ingested)
    assert code == 0, err
    assert f"{ingested}:000000000" in out
    # A flag wins over its variable: a wrong server name on the command line fails.
    code, _, err = run_cli(capfd, "search", "x", "--tls-server-name", "other.vidsearch.test")
    assert code == 1 and "UNAVAILABLE" in err


def test_a_read_key_cannot_ingest(stack: LocalStack, pki: LoopbackPKI, key_files: dict[str, Path],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd) -> None:
    video = make_video(tmp_path / "refused.mp4", seconds=2, fps=5, size=(64, 64))
    monkeypatch.setenv("VIDSEARCH_CLIENT_INGEST_ADDRESS", stack.ingest.address)
    monkeypatch.setenv("VIDSEARCH_CLIENT_API_KEY_FILE", str(key_files["read"]))
    code, out, _ = run_cli(capfd, "ingest", str(video), "--upload", *tls_flags(pki))
    assert code == 1
    assert "PERMISSION_DENIED" in out and "ingested 0 of 1 videos" in out
    # Without the --upload the same refusal must not be taken for "send the file instead".
    code, out, _ = run_cli(capfd, "ingest", str(video), *tls_flags(pki))
    assert code == 1 and "PERMISSION_DENIED" in out


@pytest.mark.parametrize(("change", "expected"), [
    ({"--tls-server-name": "other.vidsearch.test"}, ["UNAVAILABLE", "--tls-server-name", "'other.vidsearch.test'"]),
    ({"--tls-ca": None}, ["UNAVAILABLE", "default trust store", "--tls-ca"]),
    ({"--tls-cert": None, "--tls-key": None}, ["UNAVAILABLE", "--tls-cert and --tls-key"]),
    ({"--api-key-file": None}, ["UNAUTHENTICATED", "missing or unknown API key"]),
], ids=["wrong server name", "no CA", "no client certificate", "no API key"])
def test_a_wrong_connection_fails_with_a_clear_message(stack: LocalStack, pki: LoopbackPKI, key_files,
                                                       change: dict[str, str | None], expected: list[str],
                                                       capfd) -> None:
    flags = {"--gateway": stack.gateway.address, "--api-key-file": str(key_files["read"]),
             "--tls-ca": str(pki.ca), "--tls-cert": str(pki.client_cert), "--tls-key": str(pki.client_key),
             "--tls-server-name": pki.server_name, **change}
    argv = [part for flag, value in flags.items() if value is not None for part in (flag, value)]
    code, _, err = run_cli(capfd, "search", "anything", "--timeout", "10", *argv)
    assert code == 1
    assert "search failed: " in err
    for text in expected:
        assert text in err


def test_plaintext_against_tls_says_how_to_turn_tls_on(stack: LocalStack, key_files, capfd) -> None:
    code, _, err = run_cli(capfd, "search", "anything", "--gateway", stack.gateway.address,
                           "--api-key-file", str(key_files["read"]))
    assert code == 1
    assert "UNAVAILABLE" in err and "give --tls-ca" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--tls-cert", "{pki.client_cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-key", "{pki.client_key}"], "--tls-cert and --tls-key go together"),
    (["--tls-ca", "/nonexistent/ca.crt"], "--tls-ca /nonexistent/ca.crt: no such file"),
    (["--api-key-file", "/nonexistent/key"], "--api-key-file /nonexistent/key: no such file"),
], ids=["cert without key", "key without cert", "missing CA file", "missing key file"])
def test_usage_errors_exit_2_before_any_call(pki: LoopbackPKI, argv: list[str], message: str, capfd) -> None:
    for command in (["search", "x", "--gateway", "127.0.0.1:1"], ["ingest", __file__, "--ingest", "127.0.0.1:1"]):
        code, _, err = run_cli(capfd, *command, *(a.format(pki=pki) for a in argv))
        assert code == 2
        assert message in err
