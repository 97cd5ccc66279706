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


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"X_SEAL_THRESHHOLD": "7"}, r"unknown setting X_SEAL_THRESHHOLD \(did you mean X_SEAL_THRESHOLD\?\)"),
        ({"X_SERVER_PROT": "5005"}, r"X_SERVER_PROT \(did you mean X_SERVER_PORT\?\)"),
        ({"X_NOTHING_LIKE_IT": "1", "X_DEBUGG": "1"}, r"unknown settings X_DEBUGG .*, X_NOTHING_LIKE_IT;"),
    ],
)
def test_a_misspelt_variable_fails_and_lists_the_known_names(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as err:
        load(_Example, "x", {"X_DATA_DIR": "/d", **env})
    assert "the known ones are X_DATA_DIR, X_DEBUG, X_MODEL_ID, X_NAMES, X_RATIO, X_SEAL_THRESHOLD, " \
           "X_SERVER_GRACE_SECONDS" in str(err.value)


def test_other_prefixes_and_the_clients_addresses_are_not_settings_of_the_service() -> None:
    env = {"X_DATA_DIR": "/d", "XY_ANYTHING": "1", "Y_SEAL_THRESHHOLD": "1", "X": "1"}
    assert load(_Example, "x", env).data_dir == Path("/d")
    from services.gateway.server import GatewaySettings

    gateway = {"VIDSEARCH_GATEWAY_ENCODER": "e:1", "VIDSEARCH_GATEWAY_INDEX_SHARDS": "s:1",
               "VIDSEARCH_GATEWAY_ADDRESS": "127.0.0.1:50051"}  # read by `vidsearch search` only
    assert load(GatewaySettings, "VIDSEARCH_GATEWAY", gateway).encoder == "e:1"


def test_the_local_stack_sets_only_names_its_services_read(tmp_path: Path) -> None:
    """Every variable `vidsearch up` (and so the demo, the benchmarks and the system tests) gives a
    service is one that service reads, so the check above never stops the local stack."""
    from services.common.settings import known_names
    from services.encoder.server import EncoderSettings
    from services.gateway.server import GatewaySettings
    from services.index.server import IndexSettings
    from services.ingest.settings import IngestSettings
    from services.local.processes import RedisServer
    from services.local.stack import LocalStack, StackConfig

    stack = LocalStack(StackConfig(data_dir=tmp_path, checkpoint=tmp_path / "ckpt", api_keys_file=tmp_path / "k",
                                   replicas=2))
    stack.redis = RedisServer(tmp_path / "redis")  # built, not started: only its URL is needed
    stack.replicas = [[stack._shard(0), stack._shard(0, replica=1)]]
    stack.encoder = stack._encoder()
    processes = [(stack.replicas[0][0], IndexSettings, "VIDSEARCH_INDEX"),
                 (stack.replicas[0][1], IndexSettings, "VIDSEARCH_INDEX"),
                 (stack.encoder, EncoderSettings, "VIDSEARCH_ENCODER"),
                 (stack._gateway(), GatewaySettings, "VIDSEARCH_GATEWAY"),
                 (stack.ingest_process(), IngestSettings, "VIDSEARCH_INGEST"),
                 (stack.ingest_process("services.ingest.worker", key_prefix="p", workers=0), IngestSettings,
                  "VIDSEARCH_INGEST")]
    for proc, cls, prefix in processes:
        given = {k for k in proc.env if k.startswith(f"{prefix}_")}
        assert len(given) >= 2 and given <= set(known_names(cls, prefix)), given - set(known_names(cls, prefix))
    # Each replica knows the other as its peer, and its own number.
    a, b = stack.replicas[0]
    assert (a.env["VIDSEARCH_INDEX_PEERS"], a.env["VIDSEARCH_INDEX_REPLICA"]) == (b.address, "0")
    assert (b.env["VIDSEARCH_INDEX_PEERS"], b.env["VIDSEARCH_INDEX_REPLICA"]) == (a.address, "1")


def test_the_redis_password_comes_from_a_file_once(tmp_path: Path) -> None:
    from services.common.settings import read_secret
    from services.gateway.server import GatewaySettings

    secret = tmp_path / "password"
    secret.write_text("s3cret-from-a-secret\n")
    base = {"VIDSEARCH_GATEWAY_ENCODER": "e:1", "VIDSEARCH_GATEWAY_INDEX_SHARDS": "s:1",
            "VIDSEARCH_GATEWAY_REDIS_URL": "redis://vidsearch@redis:6379/0"}
    cfg = load(GatewaySettings, "VIDSEARCH_GATEWAY", {**base, "VIDSEARCH_GATEWAY_REDIS_PASSWORD_FILE": str(secret)})
    assert read_secret(cfg.redis_password_file) == "s3cret-from-a-secret"
    bad = [({"VIDSEARCH_GATEWAY_REDIS_URL": "redis://:inline@redis:6379/0"}, "give it once, in the file"),
           ({"VIDSEARCH_GATEWAY_REDIS_PASSWORD_FILE": str(tmp_path / "missing")}, "not a readable file")]
    for change, message in bad:
        with pytest.raises(SettingsError, match=message):
            load(GatewaySettings, "VIDSEARCH_GATEWAY",
                 {**base, "VIDSEARCH_GATEWAY_REDIS_PASSWORD_FILE": str(secret), **change})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        read_secret(tmp_path / "empty")
