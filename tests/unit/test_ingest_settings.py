"""Ingest settings: required addresses fail fast, values are checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import SettingsError, load
from services.ingest.settings import IngestSettings

PREFIX = "VIDSEARCH_INGEST"


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        f"{PREFIX}_REDIS_URL": "redis://redis:6379/0",
        f"{PREFIX}_ENCODER": "encoder:50051",
        f"{PREFIX}_INDEX_SHARDS": "index-0:50052, index-1:50052",
        f"{PREFIX}_MEDIA_ROOT": str(tmp_path / "media"),
        f"{PREFIX}_ALLOWED_ROOTS": str(tmp_path),
    }
    env.update({f"{PREFIX}_{k.upper()}": v for k, v in overrides.items()})
    return {k: v for k, v in env.items() if v != "<unset>"}


def test_reads_a_full_configuration(tmp_path: Path) -> None:
    cfg = load(IngestSettings, PREFIX, _env(tmp_path, workers="2", window_seconds="10", overlap_seconds="2.5",
                                            claim_idle_ms="5000"))
    assert cfg.index_shards == ("index-0:50052", "index-1:50052")
    assert cfg.allowed_roots == (tmp_path.resolve(),)
    assert (cfg.workers, cfg.window_seconds, cfg.overlap_seconds, cfg.claim_idle_ms) == (2, 10.0, 2.5, 5000)
    assert cfg.max_attempts == 5 and cfg.key_prefix == "vidsearch"


@pytest.mark.parametrize("name", ["redis_url", "encoder", "index_shards", "media_root"])
def test_required_settings_fail_fast_naming_the_variable(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError, match=f"{PREFIX}_{name.upper()} is required"):
        load(IngestSettings, PREFIX, _env(tmp_path, **{name: "<unset>"}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"redis_url": "http://redis:6379"}, "redis_url must start with"),
        ({"index_shards": ""}, "index_shards must list at least one address"),
        ({"index_shards": "a:1,,b:2"}, None),  # empty items are dropped by the parser: still valid
        ({"encoder": " "}, "encoder address must not be empty"),
        ({"allowed_roots": "relative/dir"}, "must be an absolute path"),
        ({"allowed_roots": "/no/such/dir"}, "not an existing directory"),
        ({"window_seconds": "0"}, "window_seconds must be in"),
        ({"overlap_seconds": "20"}, "overlap_seconds must be in"),
        ({"max_attempts": "0"}, "max_attempts must be >= 1"),
        ({"claim_idle_ms": "10"}, "claim_idle_ms must be >= 300"),
        ({"shot_threshold": "1.5"}, "shot_threshold must be in"),
        ({"workers": "-1"}, "workers and decode_processes must be >= 0"),
        ({"key_prefix": "a b"}, "key_prefix must be a non-empty word"),
    ],
)
def test_bad_values_fail_fast(tmp_path: Path, overrides: dict[str, str], message: str | None) -> None:
    if message is None:
        load(IngestSettings, PREFIX, _env(tmp_path, **overrides))
        return
    with pytest.raises(SettingsError, match=message):
        load(IngestSettings, PREFIX, _env(tmp_path, **overrides))
