"""Client settings of the CLIs (flags over VIDSEARCH_CLIENT_* variables) and the ingest CLI's upload decision."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import pytest

from services.common import client_connection
from services.common.interceptors import rich_status
from services.common.settings import SettingsError
from services.ingest import cli as ingest_cli
from services.ingest import sources
from vidsearch.common.v1 import common_pb2


def parse(service: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client_connection.add_arguments(parser, service)
    return parser.parse_args(list(argv))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    names = ["flag.key", "env.key", "old.key", "ca.crt", "client.crt", "client.key"]
    paths = {name: tmp_path / name for name in names}
    for name, path in paths.items():
        path.write_text(f"key-from-{name.removesuffix('.key')}\n" if name.endswith(".key") else "PEM")
    return paths


def test_a_flag_wins_over_its_variable() -> None:
    env = {"VIDSEARCH_CLIENT_GATEWAY_ADDRESS": "env:1", "VIDSEARCH_CLIENT_TLS_SERVER_NAME": "env.example"}
    conn = client_connection.from_args(parse("gateway", "--gateway", "flag:1"), "gateway", env)
    assert conn.address == "flag:1" and conn.tls is not None and conn.tls.server_name == "env.example"
    conn = client_connection.from_args(parse("gateway", "--tls-server-name", "flag.example"), "gateway", env)
    assert conn.address == "env:1" and conn.tls.server_name == "flag.example"


def test_defaults_plaintext_no_key() -> None:
    conn = client_connection.from_args(parse("gateway"), "gateway", {})
    assert conn == client_connection.ClientConnection("127.0.0.1:50051", None, None)
    assert conn.metadata == ()
    with pytest.raises(SettingsError, match="pass --ingest or set VIDSEARCH_CLIENT_INGEST_ADDRESS"):
        client_connection.from_args(parse("ingest"), "ingest", {})


def test_api_key_precedence(files: dict[str, Path]) -> None:
    env = {"VIDSEARCH_CLIENT_API_KEY_FILE": str(files["env.key"]), "VIDSEARCH_CLIENT_API_KEY": "key-itself",
           "VIDSEARCH_API_KEY_FILE": str(files["old.key"])}
    key = client_connection.from_args(parse("gateway", "--api-key-file", str(files["flag.key"])), "gateway", env)
    assert key.metadata == (("x-api-key", "key-from-flag"),)
    assert client_connection.from_args(parse("gateway"), "gateway", env).api_key == "key-from-env"
    del env["VIDSEARCH_CLIENT_API_KEY_FILE"]
    assert client_connection.from_args(parse("gateway"), "gateway", env).api_key == "key-itself"


@pytest.mark.parametrize(("old", "new", "attribute", "values", "expected"), [
    ("VIDSEARCH_GATEWAY_ADDRESS", "VIDSEARCH_CLIENT_GATEWAY_ADDRESS", "address", ("o:1", "n:1"), ("o:1", "n:1")),
    ("VIDSEARCH_API_KEY", "VIDSEARCH_CLIENT_API_KEY", "api_key", ("old-key", "new-key"), ("old-key", "new-key")),
    ("VIDSEARCH_API_KEY_FILE", "VIDSEARCH_CLIENT_API_KEY_FILE", "api_key", ("old.key", "env.key"),
     ("key-from-old", "key-from-env")),
])
def test_old_names_still_work_with_a_warning(files, old: str, new: str, attribute: str, values: tuple[str, str],
                                            expected: tuple[str, str], capsys) -> None:
    old_value, new_value = (str(files.get(v, v)) for v in values)
    env = {old: old_value}
    assert getattr(client_connection.from_args(parse("gateway"), "gateway", env), attribute) == expected[0]
    assert f"{old} is deprecated; set {new} instead" in capsys.readouterr().err
    # The new name wins, and then nothing is said.
    env[new] = new_value
    assert getattr(client_connection.from_args(parse("gateway"), "gateway", env), attribute) == expected[1]
    assert capsys.readouterr().err == ""


def test_tls_settings(files: dict[str, Path]) -> None:
    env = {"VIDSEARCH_CLIENT_TLS_CA_FILE": str(files["ca.crt"]),
           "VIDSEARCH_CLIENT_TLS_CERT_FILE": str(files["client.crt"]),
           "VIDSEARCH_CLIENT_TLS_KEY_FILE": str(files["client.key"])}
    tls = client_connection.from_args(parse("ingest", "--ingest", "a:1"), "ingest", env).tls
    assert tls == client_connection.ClientTLS(files["ca.crt"], files["client.crt"], files["client.key"], None)
    # A server name alone turns TLS on, trusting the default roots.
    tls = client_connection.from_args(parse("gateway", "--tls-server-name", "x.example"), "gateway", {}).tls
    assert tls == client_connection.ClientTLS(None, None, None, "x.example")
    with pytest.raises(SettingsError, match="VIDSEARCH_CLIENT_TLS_CERT_FILE /nope: no such file"):
        client_connection.from_args(parse("gateway"), "gateway", {"VIDSEARCH_CLIENT_TLS_CERT_FILE": "/nope"})


def test_a_keys_table_is_not_a_key(tmp_path: Path) -> None:
    table = tmp_path / "api-keys"
    table.write_text("reader-key-0123456789 read\n")
    with pytest.raises(SettingsError, match="must hold the key alone"):
        client_connection.from_args(parse("gateway", "--api-key-file", str(table)), "gateway", {})


def refusal(code: grpc.StatusCode, message: str, reason: str = "") -> grpc.aio.AioRpcError:
    """A failed call as the client sees it, with the trailers the server's status interceptor sends."""
    trailers = rich_status(code, message, reason).trailing_metadata if reason else ()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=message)


@pytest.mark.parametrize(("error", "upload"), [
    (refusal(grpc.StatusCode.INVALID_ARGUMENT, "x", sources.SOURCE_OUTSIDE_ROOTS), True),
    (refusal(grpc.StatusCode.NOT_FOUND, "x", sources.SOURCE_NOT_FOUND), True),
    (refusal(grpc.StatusCode.INVALID_ARGUMENT, "x", sources.SOURCE_UNREADABLE), True),
    # The old decision read the words; without the structured reason they mean nothing.
    (refusal(grpc.StatusCode.INVALID_ARGUMENT, f"/v.mp4 {sources.OUTSIDE_ROOTS} (/data)"), False),
    (refusal(grpc.StatusCode.NOT_FOUND, "no such file: /v.mp4"), False),
    (refusal(grpc.StatusCode.PERMISSION_DENIED, "a read key may not call SubmitVideo"), False),
    (refusal(grpc.StatusCode.INVALID_ARGUMENT, "bad id", "ERROR_REASON_UNSPECIFIED"), False),
], ids=["outside roots", "not found", "unreadable", "words only", "not found, no reason", "read key", "other reason"])
def test_upload_decision_comes_from_the_error_reason(error: grpc.aio.AioRpcError, upload: bool) -> None:
    assert ingest_cli.should_upload(error) is upload


def test_reasons_are_values_of_the_proto_enum() -> None:
    for reason in ingest_cli.UPLOAD_REASONS:
        assert common_pb2.ErrorReason.Name(common_pb2.ErrorReason.Value(reason)) == reason


def test_the_services_let_through_exactly_the_old_client_names_under_their_prefixes() -> None:
    """Service start-up refuses unknown VIDSEARCH_<SERVICE>_* names except the old client ones; the
    two lists are written in two modules (settings cannot import the client), so they must agree."""
    from services.common import client_connection, settings

    service_prefixes = ("VIDSEARCH_GATEWAY_", "VIDSEARCH_INGEST_", "VIDSEARCH_INDEX_", "VIDSEARCH_ENCODER_",
                        "VIDSEARCH_WEB_")
    old = {name for name in client_connection.DEPRECATED_NAMES.values() if name.startswith(service_prefixes)}
    assert old == settings.CLIENT_VARIABLES
