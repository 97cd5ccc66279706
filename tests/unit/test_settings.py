"""Settings come from the environment and fail fast with a clear message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from services.common.settings import ServerSettings, SettingsError, load


@dataclasses.dataclass(frozen=True)
class _Example:
    data_dir: Path = dataclasses.field(metadata={"help": "where the shard keeps its files"})
    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    seal_threshold: int = 100
    ratio: float = 0.5
    debug: bool = False
    names: tuple[str, ...] = ()
    model_id: str | None = None


def test_reads_typed_values_and_nested_prefixes() -> None:
    env = {
        "X_DATA_DIR": "/srv/shard",
        "X_SERVER_PORT": "5005",
        "X_SERVER_GRACE_SECONDS": "2.5",
        "X_SEAL_THRESHOLD": "7",
        "X_DEBUG": "yes",
        "X_NAMES": "a, b,c",
    }
    s = load(_Example, "x", env)
    assert s.data_dir == Path("/srv/shard")
    assert s.server.port == 5005 and s.server.grace_seconds == 2.5
    assert s.seal_threshold == 7 and s.debug is True and s.names == ("a", "b", "c")
    assert s.ratio == 0.5 and s.model_id is None


def test_missing_required_value_names_the_variable_and_its_meaning() -> None:
    with pytest.raises(SettingsError, match=r"X_DATA_DIR is required: where the shard keeps its files"):
        load(_Example, "x", {})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("X_SEAL_THRESHOLD", "lots", "X_SEAL_THRESHOLD='lots' is not a valid int"),
        ("X_DEBUG", "maybe", "X_DEBUG='maybe' is not a valid bool"),
        ("X_SERVER_PORT", "70000", "port must be 0..65535"),
        ("X_SERVER_TLS_CERT_FILE", "/tmp/cert.pem", "must be set together"),
    ],
)
def test_invalid_values_fail_fast(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(_Example, "x", {"X_DATA_DIR": "/d", key: value})


@pytest.mark.parametrize(
    ("host", "name"), [("index-3", "shard-3"), ("vidsearch-index-12", "shard-12"), ("laptop", "shard-0")]
)
def test_shard_name_comes_from_the_statefulset_ordinal(host: str, name: str) -> None:
    from services.index.server import shard_name_from_host

    assert shard_name_from_host(host) == name
