"""docker-compose.yml: the whole system on one host, started in dependency order, hardened.

No Docker engine runs here, so the file is checked as data; what `docker compose config` would
reject (unknown keys, bad anchors) shows up as a missing or malformed field below.
"""

from __future__ import annotations

import pytest
import yaml

from deploy.tools import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VIDSEARCH = {name: s for name, s in SERVICES.items() if name != "redis"}


def test_compose_runs_the_whole_system() -> None:
    assert set(SERVICES) == {"redis", "index-0", "index-1", "encoder", "ingest", "ingest-worker", "gateway", "web"}
    commands = {name: s["command"][0] for name, s in VIDSEARCH.items()}
    assert commands == {"index-0": "services.index", "index-1": "services.index", "encoder": "services.encoder",
                        "ingest": "services.ingest", "ingest-worker": "services.ingest.worker",
                        "gateway": "services.gateway", "web": "services.web"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD"
    if name in ("redis", "ingest-worker"):
        return
    if name == "web":  # HTTP: ready when gateway and ingest answer
        assert "http://127.0.0.1:8080/readyz" in test[-1]
        return
    assert test[1:] == ["python", "/opt/vidsearch/healthcheck.py", "127.0.0.1:50051"]


@pytest.mark.parametrize("name", ["ingest", "ingest-worker", "gateway"])
def test_clients_of_the_backends_wait_until_they_are_healthy(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert set(depends) == {"redis", "encoder", "index-0", "index-1"}
    assert all(d["condition"] == "service_healthy" for d in depends.values())


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_containers_are_hardened_and_publish_on_loopback_only(name: str) -> None:
    service = SERVICES[name]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"] and "cap_add" not in service
    assert "no-new-privileges:true" in service["security_opt"]
    assert all(p.startswith("127.0.0.1:") for p in service.get("ports", ()))


def test_web_app_waits_for_its_backends_and_binds_without_keys_only_behind_loopback() -> None:
    from services.common.settings import load
    from services.web.settings import WebSettings

    web = SERVICES["web"]
    assert {n: d["condition"] for n, d in web["depends_on"].items()} == {
        "gateway": "service_healthy", "ingest": "service_healthy"}
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    settings = load(WebSettings, "VIDSEARCH_WEB", web["environment"])  # valid as configured
    assert settings.server.port == 8080 and settings.api_keys_file is None and settings.server.allow_without_keys


def test_shards_are_listed_in_order_and_named_by_hostname() -> None:
    from services.index.server import shard_name_from_host

    shards = [f"dns:///{n}:50051" for n in sorted(SERVICES) if n.startswith("index-")]
    assert SERVICES["gateway"]["environment"]["VIDSEARCH_GATEWAY_INDEX_SHARDS"] == ",".join(shards)
    assert SERVICES["ingest"]["environment"]["VIDSEARCH_INGEST_INDEX_SHARDS"] == ",".join(shards)
    for i in range(len(shards)):
        assert shard_name_from_host(SERVICES[f"index-{i}"]["hostname"]) == f"shard-{i}"
        assert "VIDSEARCH_INDEX_SHARD_NAME" not in SERVICES[f"index-{i}"]["environment"]


def test_weights_come_from_a_read_only_volume() -> None:
    encoder = SERVICES["encoder"]
    assert any(v.endswith(":/models:ro") for v in encoder["volumes"])
    assert encoder["environment"]["VIDSEARCH_ENCODER_CHECKPOINT"].startswith("/models/")


def test_redis_persists_the_queue_and_bounds_the_cache() -> None:
    command = SERVICES["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "volatile-lru"
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])


def test_gpu_override_grants_the_encoder_a_gpu() -> None:
    override = yaml.safe_load((ROOT / "docker" / "compose.gpu.yml").read_text())
    device = override["services"]["encoder"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
