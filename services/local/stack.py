"""The local stack: every service as its own process on loopback, data under one directory.

Used by ``vidsearch up``, ``make demo``, the system tests and the benchmarks, so all of them run
the same topology: N index shards (each with R replicas), the encoder, ingest (API + workers) and
the gateway, plus a local redis-server when one is installed (the gateway then caches in Redis;
ingest needs it), and the web app when asked for.

The shards and encoder started first are index generation ``g0`` (``services.common.routing``);
``start_generation`` starts another one beside it (its shards under
``<data-dir>/generations/<name>/``, and an encoder of its own when its checkpoint differs) for a
migration to fill, ``activate`` makes it the stack's view once the routing has switched to it, and
``stop_generation`` stops the one left behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis

from services.common.channels import ClientTLS
from services.common.routing import STATIC_NAME, Generation, Routing, routing_key
from services.local.processes import HttpServiceProcess, RedisServer, ServiceProcess, free_port
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc

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
    # Copies of the encoder: gateway and ingest spread calls over them (round_robin) and go on with
    # the others while one is down, as with several encoder pods behind a headless Service.
    encoders: int = 1
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


@dataclass
class LocalGeneration:
    """The processes of one index generation on this stack."""

    name: str
    checkpoint: Path
    #: The first copy of its encoder (``spares`` are the others).
    encoder: ServiceProcess
    #: replicas[i][r]: replica r of shard i.
    replicas: list[list[ServiceProcess]]
    #: Where its shards keep their data (the stack's root for g0).
    data_root: Path
    #: The other copies of its encoder.
    spares: list[ServiceProcess] = field(default_factory=list)

    @property
    def encoders(self) -> list[ServiceProcess]:
        return [self.encoder, *self.spares]

    @property
    def encoder_target(self) -> str:
        """The encoder address gateway and ingest use: every copy's, balanced round-robin."""
        return encoder_target(self.encoders)

    @property
    def shard_targets(self) -> str:
        return ",".join("|".join(r.address for r in replicas) for replicas in self.replicas)

    @property
    def shard_processes(self) -> list[ServiceProcess]:
        return [p for replicas in self.replicas for p in replicas]


def encoder_target(copies: list[ServiceProcess]) -> str:
    """One copy's address, or every copy's as one gRPC target (``ipv4:a:1,a:2``) balanced round-robin."""
    if len(copies) == 1:
        return copies[0].address
    return "ipv4:" + ",".join(c.address for c in copies)


def encoder_model_id(address: str, timeout_s: float = 30.0) -> str:
    """The model id an encoder serves (its Info)."""
    with grpc.insecure_channel(address) as channel:
        reply = encoder_pb2_grpc.EncoderServiceStub(channel).Info(encoder_pb2.InfoRequest(), timeout=timeout_s)
    return reply.model_id


class LocalStack:
    """Starts, stops and restarts the services of one local deployment."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.root = Path(config.data_dir).resolve()
        self.logs = self.root / "logs"
        self.redis: RedisServer | None = None
        #: replicas[i][r]: replica r of shard i.
        self.replicas: list[list[ServiceProcess]] = []
        self.encoder: ServiceProcess | None = None
        #: The other copies of the active generation's encoder (``StackConfig.encoders``).
        self.encoder_spares: list[ServiceProcess] = []
        self.ingest: ServiceProcess | None = None
        self.gateway: ServiceProcess | None = None
        self.web: HttpServiceProcess | None = None
        #: The stack's view: the generation whose shards and encoder ``replicas`` and ``encoder`` are.
        self.active = STATIC_NAME
        #: Generations other than the active one (being built, or retiring), by name.
        self.others: dict[str, LocalGeneration] = {}
        self._data_root = self.root
        self._checkpoint = Path(config.checkpoint)
        #: (shards, replicas) of the active generation.
        self._shape = config.n_shards, config.replicas
        self._planned_ports: list[list[int]] = []

    @property
    def media_root(self) -> Path:
        return self.root / "media"

    @property
    def redis_url(self) -> str | None:
        return self.redis.url if self.redis else None

    @property
    def key_prefix(self) -> str:
        """The Redis key prefix of ingest and the gateway (the routing document is under it)."""
        return self.config.extra_env.get("VIDSEARCH_INGEST_KEY_PREFIX", "vidsearch")

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

    def _shard(self, i: int, replica: int = 0) -> ServiceProcess:
        """Replica ``replica`` of the active generation's shard ``i``, on the port it had (or was given)."""
        ports = [r.port for r in self.replicas[i]] if i < len(self.replicas) else self._ports()[i]
        # Replica 0 keeps the single-copy layout, so a data directory works with and without replicas.
        return self._shard_process(self._data_root, self.active, i, replica, ports)

    def _ports(self) -> list[list[int]]:
        """Ports of the active generation's shards before they start, chosen once for all of them, since
        replicas are each other's peers (a restart keeps each process's port, so addresses stay the same)."""
        n_shards, replicas = self._shape
        if [len(p) for p in self._planned_ports] != [replicas] * n_shards:
            self._planned_ports = [[free_port() for _ in range(replicas)] for _ in range(n_shards)]
        return self._planned_ports

    def _shard_process(self, data_root: Path, generation: str, i: int, replica: int,
                       ports: list[int]) -> ServiceProcess:
        """Replica ``replica`` of shard ``i`` of a generation; ``ports`` are that shard's replicas' ports."""
        name = f"shard-{i}" if replica == 0 else f"shard-{i}-replica-{replica}"
        log_name = name if generation == STATIC_NAME else f"{generation}-{name}"
        peers = "|".join(f"127.0.0.1:{p}" for r, p in enumerate(ports) if r != replica)
        return ServiceProcess("services.index", self._env(
            "VIDSEARCH_INDEX", data_dir=data_root / name, shard_name=f"shard-{i}",
            seal_threshold=self.config.seal_threshold, peers=peers or None, replica=replica if peers else None),
            self.logs / f"{log_name}.log", port=ports[replica], env_prefix="VIDSEARCH_INDEX")

    def _encoder(self, copy: int = 0) -> ServiceProcess:
        """Copy ``copy`` of the active generation's encoder, on the port it had."""
        known = self.encoder if copy == 0 else (self.encoder_spares[copy - 1]
                                                if copy <= len(self.encoder_spares) else None)
        port = known.port if known is not None else None
        return self._encoder_process(self._checkpoint, "encoder" if copy == 0 else f"encoder-{copy}", port)

    @property
    def encoder_target(self) -> str:
        """The active encoder as gateway and ingest address it (every copy, when there are several)."""
        assert self.encoder is not None, "start the encoder first"
        return encoder_target([self.encoder, *self.encoder_spares])

    def _encoder_process(self, checkpoint: Path, log_name: str, port: int | None = None) -> ServiceProcess:
        return ServiceProcess("services.encoder", self._env(
            "VIDSEARCH_ENCODER", checkpoint=checkpoint), self.logs / f"{log_name}.log", port=port,
            env_prefix="VIDSEARCH_ENCODER")

    def _gateway(self) -> ServiceProcess:
        assert self.encoder is not None, "start the encoder first"
        return ServiceProcess("services.gateway", {**self._tls_env("VIDSEARCH_GATEWAY"), **self._env(
            "VIDSEARCH_GATEWAY", encoder=self.encoder_target, index_shards=self.shard_targets,
            redis_url=self.redis_url, media_root=self.media_root, api_keys_file=self.config.api_keys_file,
            key_prefix=self.key_prefix)},
            self.logs / "gateway.log", port=self.config.gateway_port, env_prefix="VIDSEARCH_GATEWAY",
            probe_tls=self._probe_tls)

    def ingest_process(self, module: str = "services.ingest", log_name: str = "ingest",
                       port: int | None = None, **settings: object) -> ServiceProcess:
        """An ingest API server or standalone worker (``services.ingest.worker``) of this stack, not yet
        started; ``settings`` override VIDSEARCH_INGEST_* values (e.g. ``key_prefix``, ``workers``)."""
        assert self.encoder is not None and self.redis is not None, "start the stack first"
        values: dict[str, object] = {
            "redis_url": self.redis_url, "encoder": self.encoder_target,
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
        """Starts every process and waits until each serves; when one fails, stops those already
        started (a failed ``__enter__`` gets no ``__exit__``) and raises."""
        try:
            return self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> LocalStack:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.media_root.mkdir(parents=True, exist_ok=True)
        if self.config.use_redis and shutil.which("redis-server"):
            self.redis = RedisServer(self.root / "redis").start()
        self._shape = n_shards, replicas = self._resume_generation()
        ports = self._ports()
        self.replicas = [[self._shard_process(self._data_root, self.active, i, r, ports[i]).start()
                          for r in range(replicas)] for i in range(n_shards)]
        self.encoder = self._encoder().start()
        self.encoder_spares = [self._encoder(k).start() for k in range(1, self.config.encoders)]
        self._publish_routing(timeout_s)
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
    def _active_record(self) -> Path:
        return self.root / "generations" / "active.json"

    def _resume_generation(self) -> tuple[int, int]:
        """The shape to start: the configured one, or that of the generation a migration left active."""
        try:
            record = json.loads(self._active_record.read_text())
        except FileNotFoundError:
            return self.config.n_shards, self.config.replicas
        self.active, self._checkpoint = record["name"], Path(record["checkpoint"])
        self._data_root = self.root / "generations" / self.active
        log.info("starting generation %s (left active by a migration): %d shards", self.active, record["n_shards"])
        return int(record["n_shards"]), int(record["replicas"])

    def _publish_routing(self, timeout_s: float) -> None:
        """A routing document left in Redis by a migration names the ports of the last run: rewrite it with
        this run's, before gateway and ingest read it (without one, their settings are the routing)."""
        if self.redis is None:
            return
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            key = routing_key(self.key_prefix)
            stored = client.get(key)
            if stored is None:
                return
            assert self.encoder is not None
            self.encoder.wait_serving(timeout=timeout_s)
            generation = self.describe_generation()
            client.set(key, Routing(Routing.from_json(stored).version + 1, generation.name,
                                    {generation.name: generation}).to_json())
        finally:
            client.close()

    def _record_active(self) -> None:
        """Remembers the active generation's shape, so the next start of the stack starts it."""
        if self.active == STATIC_NAME:
            self._active_record.unlink(missing_ok=True)
            return
        self._active_record.parent.mkdir(parents=True, exist_ok=True)
        self._active_record.write_text(json.dumps({
            "name": self.active, "checkpoint": str(self._checkpoint), "n_shards": len(self.replicas),
            "replicas": len(self.replicas[0])}))

    @property
    def processes(self) -> list[ServiceProcess]:
        shards = [p for replicas in self.replicas for p in replicas]
        active = [self.encoder, *self.encoder_spares]
        others = [p for g in self.others.values() for p in (*g.shard_processes, *g.encoders) if p not in active]
        return [p for p in (*shards, *others, *active, self.ingest, self.gateway, self.web) if p is not None]

    # --- index generations -----------------------------------------------------------------------

    def generation(self, name: str | None = None) -> LocalGeneration:
        """The processes of a generation (default: the active one)."""
        name = name or self.active
        if name == self.active:
            assert self.encoder is not None, "start the stack first"
            return LocalGeneration(name, self._checkpoint, self.encoder, self.replicas, self._data_root,
                                   self.encoder_spares)
        return self.others[name]

    def describe_generation(self, name: str | None = None) -> Generation:
        """A generation as the routing document names it; its model id asked from its encoder."""
        local = self.generation(name)
        return Generation(local.name, encoder_model_id(local.encoder.address), local.encoder_target,
                          tuple(local.shard_targets.split(",")))

    def start_generation(self, name: str, checkpoint: Path | None, n_shards: int, replicas: int | None = None,
                         timeout_s: float = 180.0) -> Generation:
        """Starts a new generation's shards (empty, under ``generations/<name>/``), and its own encoder when
        ``checkpoint`` differs from the active one's (else it shares that encoder); returns it, serving."""
        if name == self.active or name in self.others:
            raise ValueError(f"generation {name} already runs")
        if n_shards < 1:
            raise ValueError(f"a generation needs at least one shard, got {n_shards}")
        active = self.generation()
        checkpoint = Path(checkpoint).resolve() if checkpoint is not None else active.checkpoint
        data_root = self.root / "generations" / name
        if data_root.exists():
            # Neither active nor running: what a migration left when `vidsearch up` was killed during it.
            # Its shards may be bound to another model (a re-index) or hold clips the source has lost.
            log.warning("removing %s, left by a migration that did not finish", data_root)
            shutil.rmtree(data_root)
        data_root.mkdir(parents=True)
        own_encoder = checkpoint != active.checkpoint
        encoder = self._encoder_process(checkpoint, f"{name}-encoder").start() if own_encoder else active.encoder
        spares = ([self._encoder_process(checkpoint, f"{name}-encoder-{k}").start()
                   for k in range(1, self.config.encoders)] if own_encoder else active.spares)
        replicas = replicas or self.config.replicas
        ports = [[free_port() for _ in range(replicas)] for _ in range(n_shards)]
        shards = [[self._shard_process(data_root, name, i, r, ports[i]).start() for r in range(replicas)]
                  for i in range(n_shards)]
        local = LocalGeneration(name, checkpoint, encoder, shards, data_root, spares)
        self.others[name] = local
        try:
            for proc in (local.encoders if own_encoder else []) + local.shard_processes:
                proc.wait_serving(timeout=timeout_s)
        except BaseException:
            self.stop_generation(name, remove_data=True)
            raise
        return self.describe_generation(name)

    def activate(self, name: str) -> None:
        """Makes ``name`` the stack's view (after the routing switched to it): ``replicas``, ``encoder``,
        ``shard_targets`` and restarts then mean that generation; the one before becomes one of ``others``."""
        if name == self.active:
            return
        before = self.generation()
        local = self.others.pop(name)
        self.others[before.name] = before
        self.active, self.replicas, self.encoder = name, local.replicas, local.encoder
        self.encoder_spares = local.spares
        self._data_root, self._checkpoint = local.data_root, local.checkpoint
        self._record_active()

    def stop_generation(self, name: str, *, remove_data: bool = False) -> None:
        """Stops a generation that is not active (its encoder too, unless another generation uses it)."""
        if name == self.active:
            raise ValueError(f"generation {name} is active; activate another one first")
        local = self.others.pop(name)
        in_use = {self.encoder, *(g.encoder for g in self.others.values())}
        procs = local.shard_processes + ([] if local.encoder in in_use else local.encoders)
        for proc in procs:  # all drain at once, not one after another
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest whatever one did
                log.warning("stopping %s: %s", proc.module, exc)
        if remove_data:
            if local.data_root == self.root:  # g0 keeps its shards at the top of the data directory
                for path in self.root.glob("shard-*"):
                    shutil.rmtree(path, ignore_errors=True)
            else:
                shutil.rmtree(local.data_root, ignore_errors=True)

    def describe(self) -> dict[str, object]:
        """Addresses of everything running, as ``vidsearch up`` prints and records them."""
        return {
            "gateway": self.gateway.address if self.gateway else None,
            "web": f"{self.web.url}/" if self.web else None,
            "ingest": self.ingest.address if self.ingest else None,
            "encoder": self.encoder_target if self.encoder else None,
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

    def restart_encoder(self, timeout_s: float = 120.0, copy: int = 0) -> ServiceProcess:
        """Starts the encoder (copy ``copy`` of it) again on its old port (after a stop or kill), and waits
        until it serves."""
        proc = self._encoder(copy).start()
        if copy == 0:
            self.encoder = proc
        else:
            self.encoder_spares[copy - 1] = proc
        proc.wait_serving(timeout=timeout_s)
        return proc

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
