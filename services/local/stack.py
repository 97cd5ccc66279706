"""The local stack: every service as its own process on loopback, data under one directory.

Used by ``vidsearch up``, ``make demo``, the system tests and the benchmarks, so all of them run
the same topology: N index shards, the encoder, ingest (API + workers) and the gateway, plus a
local redis-server when one is installed (the gateway then caches in Redis; ingest needs it), and
the web app when asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from services.common.channels import ClientTLS
from services.local.processes import HttpServiceProcess, RedisServer, ServiceProcess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackTLS:
    """TLS of the services users call (gateway, ingest); the hops between services stay plaintext."""

    cert_file: Path
    key_file: Path
    # When set, callers must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None
    # How the stack's own readiness probes reach the TLS services.
    probe: ClientTLS

    def env(self, prefix: str) -> dict[str, str]:
        values = {"CERT_FILE": self.cert_file, "KEY_FILE": self.key_file, "CLIENT_CA_FILE": self.client_ca_file}
        return {f"{prefix}_SERVER_TLS_{k}": str(v) for k, v in values.items() if v is not None}


@dataclass
class StackConfig:
    """What to start and where its data lives."""

    data_dir: Path
    checkpoint: Path
    n_shards: int = 2
    ingest_workers: int = 1
    with_ingest: bool = True
    use_redis: bool = True
    api_keys_file: Path | None = None
    tls: StackTLS | None = None
    seal_threshold: int = 50_000
    extra_env: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    # Fixed ports for the user-facing services (None: any free port).
    gateway_port: int | None = None
    ingest_port: int | None = None
    # The web app (services.web) on loopback, on this port (0: any free port); None: not started.
    web_port: int | None = None


class LocalStack:
    """Starts, stops and restarts the services of one local deployment."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.root = Path(config.data_dir).resolve()
        self.logs = self.root / "logs"
        self.redis: RedisServer | None = None
        self.shards: list[ServiceProcess] = []
        self.encoder: ServiceProcess | None = None
        self.ingest: ServiceProcess | None = None
        self.gateway: ServiceProcess | None = None
        self.web: HttpServiceProcess | None = None

    @property
    def media_root(self) -> Path:
        return self.root / "media"

    @property
    def redis_url(self) -> str | None:
        return self.redis.url if self.redis else None

    @property
    def has_ingest(self) -> bool:
        return (self.config.with_ingest and self.redis is not None
                and importlib.util.find_spec("services.ingest.server") is not None)

    def _env(self, prefix: str, **values: object) -> dict[str, str]:
        env = {f"{prefix}_{k.upper()}": str(v) for k, v in values.items() if v is not None}
        env["VIDSEARCH_LOG_LEVEL"] = self.config.log_level
        return {**env, **self.config.extra_env}

    def _shard(self, i: int) -> ServiceProcess:
        port = self.shards[i].port if i < len(self.shards) else None
        return ServiceProcess("services.index", self._env(
            "VIDSEARCH_INDEX", data_dir=self.root / f"shard-{i}", shard_name=f"shard-{i}",
            seal_threshold=self.config.seal_threshold), self.logs / f"shard-{i}.log", port=port,
            env_prefix="VIDSEARCH_INDEX")

    def _encoder(self) -> ServiceProcess:
        port = self.encoder.port if self.encoder is not None else None
        return ServiceProcess("services.encoder", self._env(
            "VIDSEARCH_ENCODER", checkpoint=self.config.checkpoint), self.logs / "encoder.log", port=port,
            env_prefix="VIDSEARCH_ENCODER")

    def ingest_process(self, module: str = "services.ingest", log_name: str = "ingest",
                       port: int | None = None, **settings: object) -> ServiceProcess:
        """An ingest API server or standalone worker (``services.ingest.worker``) of this stack, not yet
        started; ``settings`` override VIDSEARCH_INGEST_* values (e.g. ``key_prefix``, ``workers``)."""
        assert self.encoder is not None and self.redis is not None, "start the stack first"
        values: dict[str, object] = {
            "redis_url": self.redis_url, "encoder": self.encoder.address,
            "index_shards": ",".join(s.address for s in self.shards), "media_root": self.media_root,
            "allowed_roots": str(self.root.anchor), "workers": self.config.ingest_workers,
            "api_keys_file": self.config.api_keys_file}
        env = {**self._tls_env("VIDSEARCH_INGEST"), **self._env("VIDSEARCH_INGEST", **values)}
        env.update({f"VIDSEARCH_INGEST_{k.upper()}": str(v) for k, v in settings.items()})
        return ServiceProcess(module, env, self.logs / f"{log_name}.log", port=port, env_prefix="VIDSEARCH_INGEST",
                              probe_tls=self._probe_tls)

    def _tls_env(self, prefix: str) -> dict[str, str]:
        return self.config.tls.env(prefix) if self.config.tls else {}

    def _web_tls(self) -> dict[str, object]:
        """The web app calls gateway and ingest as the stack's own probes do: same CA and name."""
        probe = self._probe_tls
        return {"tls_ca_file": probe.ca_file, "tls_server_name": probe.server_name} if probe else {}

    @property
    def _probe_tls(self) -> ClientTLS | None:
        return self.config.tls.probe if self.config.tls else None

    def start(self, timeout_s: float = 180.0) -> LocalStack:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.media_root.mkdir(parents=True, exist_ok=True)
        if self.config.use_redis and shutil.which("redis-server"):
            self.redis = RedisServer(self.root / "redis").start()
        self.shards = [self._shard(i).start() for i in range(self.config.n_shards)]
        self.encoder = self._encoder().start()
        shard_list = ",".join(s.address for s in self.shards)
        if self.has_ingest:
            self.ingest = self.ingest_process(port=self.config.ingest_port).start()
        self.gateway = ServiceProcess("services.gateway", {**self._tls_env("VIDSEARCH_GATEWAY"), **self._env(
            "VIDSEARCH_GATEWAY", encoder=self.encoder.address, index_shards=shard_list,
            redis_url=self.redis_url, media_root=self.media_root, api_keys_file=self.config.api_keys_file)},
            self.logs / "gateway.log", port=self.config.gateway_port, env_prefix="VIDSEARCH_GATEWAY",
            probe_tls=self._probe_tls).start()
        if self.config.web_port is not None:
            self.web = HttpServiceProcess("services.web", self._env(
                "VIDSEARCH_WEB", gateway=self.gateway.address, ingest=self.ingest.address if self.ingest else None,
                api_keys_file=self.config.api_keys_file, **self._web_tls()), self.logs / "web.log",
                port=self.config.web_port or None, env_prefix="VIDSEARCH_WEB").start()
        for proc in self.processes:
            proc.wait_serving(timeout=timeout_s)
        return self

    @property
    def processes(self) -> list[ServiceProcess]:
        return [p for p in (*self.shards, self.encoder, self.ingest, self.gateway, self.web) if p is not None]

    def describe(self) -> dict[str, object]:
        """Addresses of everything running, as ``vidsearch up`` prints and records them."""
        return {
            "gateway": self.gateway.address if self.gateway else None,
            "web": f"{self.web.url}/" if self.web else None,
            "ingest": self.ingest.address if self.ingest else None,
            "encoder": self.encoder.address if self.encoder else None,
            "shards": [s.address for s in self.shards],
            "redis": self.redis_url,
            "data_dir": str(self.root),
            "logs": str(self.logs),
            "pids": [p.proc.pid for p in self.processes if p.proc is not None]
            + ([self.redis.proc.pid] if self.redis and self.redis.proc else []),
        }

    def restart_shard(self, i: int, timeout_s: float = 60.0) -> ServiceProcess:
        """Starts shard ``i`` again on its old port (after a kill), and waits until it serves."""
        self.shards[i] = self._shard(i).start()
        self.shards[i].wait_serving(timeout=timeout_s)
        return self.shards[i]

    def restart_encoder(self, timeout_s: float = 120.0) -> ServiceProcess:
        """Starts the encoder again on its old port (after a stop or kill), and waits until it serves."""
        self.encoder = self._encoder().start()
        self.encoder.wait_serving(timeout=timeout_s)
        return self.encoder

    def stop(self) -> None:
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest whatever one did
                log.warning("stopping %s: %s", proc.module, exc)
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
