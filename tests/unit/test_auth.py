"""API keys: the key file's format, where a key is read from, and the interceptor on a real gRPC server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from services.common.auth import WRITE_METHODS, ApiKeyInterceptor, load_api_keys, role_of, supplied_key
from tests.unit.loopback import invoke, loopback, method_handler
from vidsearch.common.v1 import common_pb2

READ_KEY = "reader-key-0123456789"
WRITE_KEY = "writer-key-0123456789"
KEY_FILE = f"# who may do what\n\n{READ_KEY} read\n{WRITE_KEY}   write  # the ingest robot\n"


@pytest.fixture
def keys(tmp_path: Path) -> dict[bytes, str]:
    path = tmp_path / "api-keys"
    path.write_text(KEY_FILE)
    return load_api_keys(path)


# --- the key file ------------------------------------------------------------------------------

def test_comments_and_blank_lines_are_skipped(keys) -> None:
    assert sorted(keys.values()) == ["read", "write"]
    assert role_of(keys, READ_KEY) == "read"
    assert role_of(keys, WRITE_KEY) == "write"


def test_the_file_keeps_digests_not_keys(keys) -> None:
    assert all(isinstance(k, bytes) and len(k) == 32 for k in keys)
    assert not any(READ_KEY.encode() in k or WRITE_KEY.encode() in k for k in keys)


def test_a_key_of_exactly_16_characters_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("a" * 16 + " read\n")
    assert role_of(load_api_keys(path), "a" * 16) == "read"


@pytest.mark.parametrize(("text", "where"), [
    ("a" * 15 + " read\n", ":1:"),
    (f"# keys\n\n{READ_KEY} admin\n", ":3:"),
    (f"{READ_KEY} read\n{WRITE_KEY}\n", ":2:"),
    (f"{READ_KEY} read extra\n", ":1:"),
    (f"{READ_KEY} READ\n", ":1:"),
], ids=["short-key", "unknown-role", "no-role", "extra-field", "role-case"])
def test_bad_lines_are_refused_with_their_line_number(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError, match="16\\+ characters") as err:
        load_api_keys(path)
    assert str(err.value).startswith(f"{path}{where}")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   # and another\n"],
                         ids=["empty", "blank", "comments"])
def test_a_file_without_keys_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError, match="no API keys"):
        load_api_keys(path)


# --- where the key comes from ------------------------------------------------------------------

@pytest.mark.parametrize(("metadata", "expected"), [
    ([("x-api-key", READ_KEY)], READ_KEY),
    ([("authorization", f"Bearer {READ_KEY}")], READ_KEY),
    ([("authorization", f"bearer   {READ_KEY} ")], READ_KEY),
    ([("user-agent", "grpc-python"), ("x-api-key", WRITE_KEY)], WRITE_KEY),
    ([("x-api-key", READ_KEY), ("authorization", f"Bearer {WRITE_KEY}")], WRITE_KEY),
    ([("authorization", f"Basic {READ_KEY}")], None),
    ([("authorization", "Bearer ")], None),
    ([("x-api-key", "")], None),
    ([("user-agent", "grpc-python")], None),
    ([], None),
    (None, None),
], ids=["x-api-key", "bearer", "bearer-lower-padded", "among-others", "last-wins", "basic-auth", "empty-bearer",
        "empty-key", "no-key", "no-metadata", "none"])
def test_supplied_key(metadata, expected) -> None:
    assert supplied_key(metadata) == expected


@pytest.mark.parametrize(("supplied", "expected"), [
    (READ_KEY, "read"),
    (WRITE_KEY, "write"),
    (READ_KEY[:-1], None),
    (READ_KEY + "x", None),
    (READ_KEY.upper(), None),
    ("", None),
    (None, None),
], ids=["read", "write", "prefix", "longer", "other-case", "empty", "none"])
def test_role_of(keys, supplied, expected) -> None:
    assert role_of(keys, supplied) == expected


# --- the interceptor on a real server ----------------------------------------------------------

Message = common_pb2.ClipRecord
SEARCH = "/vidsearch.gateway.v1.SearchService/Search"
DELETE = "/vidsearch.ingest.v1.IngestService/DeleteVideo"
UPLOAD = "/vidsearch.ingest.v1.IngestService/UploadVideo"
WATCH = "/vidsearch.ingest.v1.IngestService/WatchJob"
HEALTH = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SHAPES = {SEARCH: "unary_unary", DELETE: "unary_unary", UPLOAD: "stream_unary", WATCH: "unary_stream",
          HEALTH: "unary_unary", HEALTH_WATCH: "unary_stream", REFLECTION: "stream_stream"}

CALLERS = {
    "no-key": [],
    "unknown-key": [("x-api-key", "someone-elses-key-0123")],
    "read": [("x-api-key", READ_KEY)],
    "read-bearer": [("authorization", f"Bearer {READ_KEY}")],
    "write": [("x-api-key", WRITE_KEY)],
}
OK, UNAUTHENTICATED, DENIED = grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED


def test_the_write_methods_are_the_ones_served_here() -> None:
    assert {DELETE, UPLOAD} <= WRITE_METHODS
    assert SEARCH not in WRITE_METHODS and WATCH not in WRITE_METHODS


@pytest.mark.parametrize(("method", "caller", "expected"), [
    pytest.param(method, caller, expected, id=f"{method.rsplit('/', 1)[1]}-{caller}-{expected.name}")
    for method, caller, expected in [
        (SEARCH, "no-key", UNAUTHENTICATED),
        (SEARCH, "unknown-key", UNAUTHENTICATED),
        (SEARCH, "read", OK),
        (SEARCH, "read-bearer", OK),
        (SEARCH, "write", OK),
        (DELETE, "no-key", UNAUTHENTICATED),
        (DELETE, "read", DENIED),
        (DELETE, "read-bearer", DENIED),
        (DELETE, "write", OK),
        (UPLOAD, "no-key", UNAUTHENTICATED),
        (UPLOAD, "read", DENIED),
        (UPLOAD, "write", OK),
        (WATCH, "no-key", UNAUTHENTICATED),
        (WATCH, "unknown-key", UNAUTHENTICATED),
        (WATCH, "read", OK),
        (HEALTH, "no-key", OK),
        (HEALTH, "unknown-key", OK),
        (HEALTH_WATCH, "no-key", OK),
        (REFLECTION, "no-key", OK),
    ]
])
def test_the_interceptor_lets_in_only_the_roles_a_method_needs(keys, method, caller, expected) -> None:
    kind = SHAPES[method]
    ran: list[Message] = []

    async def behaviour(request):
        ran.append(request)
        return request

    async def main():
        async with loopback({method: method_handler(kind, behaviour, Message)}, [ApiKeyInterceptor(keys)]) as ch:
            return await invoke(ch, kind, method, Message(clip_id="vid:000000000"), Message,
                                CALLERS[caller])

    if expected is OK:
        responses = asyncio.run(main())
        assert responses[-1].clip_id == "vid:000000000"
        assert len(ran) == 1
        return
    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(main())
    assert err.value.code() == expected
    if expected is DENIED:
        assert err.value.details() == f"a read key may not call {method}"
    else:
        assert "API key" in err.value.details()
    assert ran == [], "a refused call must never reach its handler"
