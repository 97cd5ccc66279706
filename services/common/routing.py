"""Index generations and the routing document that says which one searches and writes use.

A *generation* is one embedding model (its id), the encoder that speaks it and the shards that
hold its clips (shards by comma, a shard's replicas by ``|``); a generation's shards never mix
models. Re-indexing to a new model and resharding are both "build a new generation, switch to it,
drop the old one" (``services.index.migrate``). The routing document is one JSON value in Redis
under ``<prefix>:routing``, always written whole with one SET, so a switch is atomic for every
reader::

    {"version": 3, "active": "g2", "retiring": ["g1"],
     "generations": {"g1": {"model_id": "...", "encoder": "...", "shards": ["a:1", "b:1|b:2"]},
                     "g2": {...}}}

``generations`` keeps creation order (oldest first), which ``DeleteVideo`` relies on. Without the
key, or without Redis, the routing is the static settings: one generation ``g0`` of the configured
encoder and shards, version 0. So a stack that never re-indexes or reshards behaves as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

import redis.asyncio as aioredis
import redis.exceptions

from services.common.errors import InvalidInput, WrongState

log = logging.getLogger(__name__)

#: The generation of a stack configured only by its settings.
STATIC_NAME = "g0"

#: Redis errors after which a reader keeps what it knew (fail-open) and a writer fails.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass(frozen=True)
class Generation:
    """One index generation: a model id, its encoder's address and its shard list (in shard order)."""

    name: str
    # Empty only for the static generation before anyone asked its encoder: then the encoder's
    # answer is the model id.
    model_id: str
    encoder: str
    shards: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise InvalidInput(f"a generation's name must be a non-empty word, got {self.name!r}")
        if not self.encoder.strip():
            raise InvalidInput(f"generation {self.name}: the encoder address is empty")
        if not self.shards or any(not s.strip() for s in self.shards):
            raise InvalidInput(f"generation {self.name}: the shard list is empty or has an empty address")
        object.__setattr__(self, "shards", tuple(self.shards))

    def to_json(self) -> dict[str, object]:
        return {"model_id": self.model_id, "encoder": self.encoder, "shards": list(self.shards)}

    @classmethod
    def from_json(cls, name: str, value: dict[str, object]) -> Generation:
        shards = value.get("shards")
        if not isinstance(shards, list):
            raise InvalidInput(f"generation {name}: shards must be a list")
        return cls(name, str(value.get("model_id", "")), str(value.get("encoder", "")), tuple(map(str, shards)))


@dataclass(frozen=True)
class Routing:
    """Every generation in the system, which one is active, and which are on their way out."""

    version: int
    active: str
    # Creation order, oldest first.
    generations: dict[str, Generation]
    retiring: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.active not in self.generations:
            raise InvalidInput(f"the active generation {self.active!r} is not among {sorted(self.generations)}")
        for name in self.retiring:
            if name not in self.generations or name == self.active:
                raise InvalidInput(f"retiring generation {name!r} is unknown or active")
        for name, generation in self.generations.items():
            if generation.name != name:
                raise InvalidInput(f"generation listed as {name!r} is named {generation.name!r}")
        object.__setattr__(self, "retiring", tuple(self.retiring))

    @property
    def current(self) -> Generation:
        """The active generation: where searches go and new ingest jobs write."""
        return self.generations[self.active]

    @property
    def building(self) -> list[str]:
        """Generations being filled: neither active nor retiring."""
        return [n for n in self.generations if n != self.active and n not in self.retiring]

    def next_name(self) -> str:
        """``g<n+1>`` after the highest ``g<n>`` in the routing: the name of the next generation."""
        numbers = [int(n[1:]) for n in self.generations if n[:1] == "g" and n[1:].isdigit()]
        return f"g{max(numbers, default=0) + 1}"

    def oldest_first(self) -> list[Generation]:
        """Every generation in creation order (the order a delete visits them, see ``services.ingest.core``)."""
        return list(self.generations.values())

    # Each change returns the next version; ``RoutingStore.put`` writes it only over its predecessor.
    def with_generation(self, generation: Generation) -> Routing:
        """Registers a new, not yet active generation (it is filled, then switched to)."""
        if generation.name in self.generations:
            raise WrongState(f"generation {generation.name} already exists")
        return replace(self, version=self.version + 1, generations={**self.generations, generation.name: generation})

    def switched_to(self, name: str) -> Routing:
        """Makes ``name`` active; the previously active generation starts retiring."""
        if name not in self.generations:
            raise WrongState(f"no generation {name} to switch to")
        if name == self.active:
            return self
        retiring = tuple(n for n in (*self.retiring, self.active) if n != name)
        return replace(self, version=self.version + 1, active=name, retiring=retiring)

    def without(self, name: str) -> Routing:
        """Drops a generation that is not active (retired, or a build given up)."""
        if name == self.active:
            raise WrongState(f"generation {name} is active; switch away from it first")
        if name not in self.generations:
            return self
        generations = {n: g for n, g in self.generations.items() if n != name}
        return replace(self, version=self.version + 1, generations=generations,
                       retiring=tuple(n for n in self.retiring if n != name))

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "active": self.active, "retiring": list(self.retiring),
                           "generations": {n: g.to_json() for n, g in self.generations.items()}})

    @classmethod
    def from_json(cls, text: str | bytes) -> Routing:
        try:
            value = json.loads(text)
            generations = {n: Generation.from_json(n, g) for n, g in value["generations"].items()}
            return cls(int(value["version"]), str(value["active"]), generations,
                       tuple(map(str, value.get("retiring", ()))))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"malformed routing document: {exc}") from None

    @classmethod
    def static(cls, encoder: str, shards: Sequence[str], model_id: str = "") -> Routing:
        """The routing of a stack configured by its settings alone: generation ``g0``, version 0."""
        generation = Generation(STATIC_NAME, model_id, encoder, tuple(shards))
        return cls(0, STATIC_NAME, {STATIC_NAME: generation})


# KEYS: routing key. ARGV: expected version (0: the key must not exist), new document.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
local version = 0
if current then version = tonumber(cjson.decode(current)['version']) end
if version ~= tonumber(ARGV[1]) then return version end
redis.call('SET', KEYS[1], ARGV[2])
return -1
"""


class RoutingConflict(WrongState):
    """Someone else wrote the routing since it was read; read it again and redo the change."""


def routing_key(prefix: str) -> str:
    """The Redis key of the routing document under a deployment's key prefix (default ``vidsearch``)."""
    return f"{prefix}:routing"


def connect(url: str, password: str | None = None) -> aioredis.Redis:
    """A Redis client for the routing document: short timeouts, so a dead Redis never stalls a poll."""
    extra = {"password": password} if password is not None else {}
    return aioredis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=2, **extra)


class RoutingStore:
    """Reads and writes the routing document; every write is a compare-and-set on its version."""

    def __init__(self, client: aioredis.Redis, prefix: str = "vidsearch") -> None:
        self.redis = client
        self.key = routing_key(prefix)
        self._cas = client.register_script(_COMPARE_AND_SET)

    async def get(self) -> Routing | None:
        """The stored routing, or None when there is none (the static settings apply)."""
        text = await self.redis.get(self.key)
        return None if text is None else Routing.from_json(text)

    async def put(self, routing: Routing) -> None:
        """Writes ``routing`` over version ``routing.version - 1``; ``RoutingConflict`` if that is not stored."""
        found = int(await self._cas(keys=[self.key], args=[routing.version - 1, routing.to_json()]))
        if found != -1:
            raise RoutingConflict(f"routing version {found} is stored; version {routing.version} was written "
                                  f"over {routing.version - 1}")

    async def update(self, change: Callable[[Routing], Routing], fallback: Routing) -> Routing:
        """Applies ``change`` to the stored routing (``fallback`` when none) in one write, retrying on conflicts."""
        while True:
            before = await self.get() or fallback
            after = change(before)
            if after == before:
                return before
            # Several changes composed are still one write, one version on.
            after = replace(after, version=before.version + 1)
            try:
                await self.put(after)
            except RoutingConflict as exc:
                log.info("routing changed under us (%s); redoing the change", exc)
                continue
            log.info("routing version %d: active %s, generations %s, retiring %s", after.version, after.active,
                     ", ".join(after.generations), ", ".join(after.retiring) or "none")
            return after

    async def delete(self) -> None:
        await self.redis.delete(self.key)


@dataclass
class RoutingWatcher:
    """Polls the routing document and tells ``on_change`` when its version changes.

    Fail-open: while Redis is down (or the document is malformed) the last known routing stays.
    Before the first successful read that is ``fallback``, the static settings.
    """

    store: RoutingStore | None
    fallback: Routing
    interval_s: float = 1.0
    on_change: Callable[[Routing], Awaitable[None]] | None = None
    routing: Routing = field(init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.routing = self.fallback

    async def poll(self) -> Routing:
        """Reads the document once; returns the routing now in force."""
        if self.store is None:
            return self.routing
        try:
            found = await self.store.get()
        except (*REDIS_DOWN, InvalidInput) as exc:
            log.warning("routing not read (%s); keeping version %d", exc, self.routing.version)
            return self.routing
        if found is not None and found.version != self.routing.version:
            self.routing = found
            if self.on_change is not None:
                await self.on_change(found)
        return self.routing

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception:  # a watcher outlives any one bad poll
                log.exception("routing poll failed")

    async def start(self) -> Routing:
        """One poll now, then one every ``interval_s`` in the background."""
        routing = await self.poll()
        if self.store is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="routing-watcher")
        return routing

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stops polling; a poll that does not finish within ``timeout_s`` of its cancellation is left
        behind (logged), so a stuck Redis call can never hold a service's shutdown."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                log.warning("routing watcher did not stop within %.0f s of its cancellation; left behind", timeout_s)
            elif not task.cancelled() and task.exception() is not None:
                log.warning("routing watcher ended with %r", task.exception())
