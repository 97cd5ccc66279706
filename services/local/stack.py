"""The local stack: every service as its own process on loopback, data under one directory.

Used by ``vidsearch up``, ``make demo``, the system tests and the benchmarks, so all of them run
the same topology: N index shards (each with R replicas), the encoder, ingest (API + workers) and
the gateway, plus a local redis-server when one is installed (the gateway then caches in Redis;
ingest needs it), and the web app when asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from services.common.channels import ClientTLS
from services.local.processes import HttpServiceProcess, RedisServer, ServiceProcess, free_port

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
    # Copies of each shard, each its own process and data directory; writes go to all of them, and
    # each replica knows the others as its peers, to catch up from when it (re)starts.
    replicas: int = 1
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
        #: replicas[i][r]: replica r of shard i.
        self.replicas: list[list[ServiceProcess]] = []
        #: replica_ports[i][r]: the port of replica r of shard i, fixed before any starts (they are peers).
        self.replica_ports: list[list[int]] = []
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

    @property
    def shards(self) -> list[ServiceProcess]:
        """The first replica of every shard (the only one unless ``replicas`` > 1)."""
        return [replicas[0] for replicas in self.replicas]

    @property
    def shard_targets(self) -> str:
        """The ``index_shards`` setting of gateway and ingest: shards by comma, replicas by ``|``."""
        return ",".join("|".join(r.address for r in replicas) for replicas in self.replicas)

    def _ports(self) -> list[list[int]]:
        """``replica_ports``, chosen on first use and kept when the stack starts again: the shards'
        addresses, which are each other's peers and the gateway's and ingest's targets, stay the same."""
        if not self.replica_ports:
            self.replica_ports = [[free_port() for _ in range(self.config.replicas)]
                                  for _ in range(self.config.n_shards)]
        return self.replica_ports

    def _shard(self, i: int, replica: int = 0) -> ServiceProcess:
        ports = self._ports()[i]
        peers = "|".join(f"127.0.0.1:{p}" for r, p in enumerate(ports) if r != replica)
        # Replica 0 keeps the single-copy layout, so a data directory works with and without replicas.
        name = f"shard-{i}" if replica == 0 else f"shard-{i}-replica-{replica}"
        return ServiceProcess("services.index", self._env(
            "VIDSEARCH_INDEX", data_dir=self.root / name, shard_name=f"shard-{i}",
            seal_threshold=self.config.seal_threshold, peers=peers or None, replica=replica if peers else None),
            self.logs / f"{name}.log", port=ports[replica], env_prefix="VIDSEARCH_INDEX")

    def _encoder(self) -> ServiceProcess:
        port = self.encoder.port if self.encoder is not None else None
        return ServiceProcess("services.encoder", self._env(
            "VIDSEARCH_ENCODER", checkpoint=self.config.checkpoint), self.logs / "encoder.log", port=port,
            env_prefix="VIDSEARCH_ENCODER")

    def _gateway(self) -> ServiceProcess:
        assert self.encoder is not None, "start the encoder first"
        return ServiceProcess("services.gateway", {**self._tls_env("VIDSEARCH_GATEWAY"), **self._env(
            "VIDSEARCH_GATEWAY", encoder=self.encoder.address, index_shards=self.shard_targets,
            redis_url=self.redis_url, media_root=self.media_root, api_keys_file=self.config.api_keys_file)},
            self.logs / "gateway.log", port=self.config.gateway_port, env_prefix="VIDSEARCH_GATEWAY",
            probe_tls=self._probe_tls)

    def ingest_process(self, module: str = "services.ingest", log_name: str = "ingest",
                       port: int | None = None, **settings: object) -> ServiceProcess:
        """An ingest API server or standalone worker (``services.ingest.worker``) of this stack, not yet
        started; ``settings`` override VIDSEARCH_INGEST_* values (e.g. ``key_prefix``, ``workers``)."""
        assert self.encoder is not None and self.redis is not None, "start the stack first"
        values: dict[str, object] = {
            "redis_url": self.redis_url, "encoder": self.encoder.address,
            "index_shards": self.shard_targets, "media_root": self.media_root,
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
        self.replicas = [[self._shard(i, r).start() for r in range(self.config.replicas)]
                         for i in range(self.config.n_shards)]
        self.encoder = self._encoder().start()
        if self.has_ingest:
            self.ingest = self.ingest_process(port=self.config.ingest_port).start()
        self.gateway = self._gateway().start()
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
        shards = [p for replicas in self.replicas for p in replicas]
        return [p for p in (*shards, self.encoder, self.ingest, self.gateway, self.web) if p is not None]

    def describe(self) -> dict[str, object]:
        """Addresses of everything running, as ``vidsearch up`` prints and records them."""
        return {
            "gateway": self.gateway.address if self.gateway else None,
            "web": f"{self.web.url}/" if self.web else None,
            "ingest": self.ingest.address if self.ingest else None,
            "encoder": self.encoder.address if self.encoder else None,
            "shards": self.shard_targets.split(","),
            "redis": self.redis_url,
            "data_dir": str(self.root),
            "logs": str(self.logs),
            "pids": [p.proc.pid for p in self.processes if p.proc is not None]
            + ([self.redis.proc.pid] if self.redis and self.redis.proc else []),
        }

    def restart_shard(self, i: int, timeout_s: float = 60.0, replica: int = 0) -> ServiceProcess:
        """Starts shard ``i`` (one replica of it) again on its old port (after a kill), and waits until it
        serves (for a replica: until it has caught up from a peer)."""
        self.replicas[i][replica] = self._shard(i, replica).start()
        self.replicas[i][replica].wait_serving(timeout=timeout_s)
        return self.replicas[i][replica]

    def restart_ingest(self, timeout_s: float = 60.0) -> ServiceProcess:
        """Starts the ingest server (and its workers) again on its old port, and waits until it serves."""
        assert self.ingest is not None, "the stack runs no ingest"
        self.ingest = self.ingest_process(port=self.ingest.port).start()
        self.ingest.wait_serving(timeout=timeout_s)
        return self.ingest

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
