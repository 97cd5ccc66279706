"""Clients of every index generation in the routing: its encoder and its shards, kept in step with
the routing document, for the gateway and ingest.

Clients of a generation are opened when it first appears in the routing and closed a while after it
is dropped (``close_delay_s``: calls that took a snapshot before the drop finish on open channels).
A caller takes one ``snapshot()`` per search or job and uses it throughout, so a switch in the
middle never mixes two generations in one answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.common.encoder_client import EncoderClient
from services.common.errors import DependencyDown
from services.common.index_client import ShardSet
from services.common.routing import Generation, Routing, RoutingStore, RoutingWatcher

log = logging.getLogger(__name__)


@dataclass
class GenerationClients:
    """A generation and open clients of its encoder and shards."""

    generation: Generation
    encoder: EncoderClient
    shards: ShardSet

    @property
    def name(self) -> str:
        return self.generation.name

    def check_model(self, model_id: str) -> None:
        """The encoder must speak its generation's model: a generation's shards never mix two models."""
        expected = self.generation.model_id
        if expected and model_id != expected:
            raise DependencyDown(f"the encoder of generation {self.name} at {self.generation.encoder} "
                                 f"serves model {model_id}, not the generation's {expected}")

    async def close(self) -> None:
        await self.encoder.close()
        await self.shards.close()


#: Opens the clients of one generation (timeouts, TLS, write quorum are the service's business).
ClientFactory = Callable[[Generation], GenerationClients]


def client_factory(*, timeout_s: float = 30.0, write_quorum: int = 0) -> ClientFactory:
    """Plain clients of a generation's encoder and shards."""
    def make(generation: Generation) -> GenerationClients:
        return GenerationClients(generation, EncoderClient(generation.encoder, timeout_s=timeout_s),
                                 ShardSet(generation.shards, timeout_s=timeout_s, write_quorum=write_quorum))
    return make


class GenerationPool:
    """Open clients of every generation in the routing, following a ``RoutingWatcher``."""

    def __init__(self, store: RoutingStore | None, fallback: Routing, make: ClientFactory, *,
                 poll_interval_s: float = 1.0, close_delay_s: float = 60.0) -> None:
        self.make = make
        self.close_delay_s = close_delay_s
        self.watcher = RoutingWatcher(store, fallback, poll_interval_s, self._apply)
        self._clients: dict[str, GenerationClients] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: list[GenerationClients] = []
        self._open(fallback)

    @classmethod
    def fixed(cls, encoder: EncoderClient, shards: ShardSet, model_id: str = "") -> GenerationPool:
        """One generation of given clients, never changing: an embedded use, or a test's fakes."""
        generation = Generation("g0", model_id, "in-process", ("in-process",))
        return cls(None, Routing(0, "g0", {"g0": generation}), lambda g: GenerationClients(g, encoder, shards))

    @property
    def routing(self) -> Routing:
        return self.watcher.routing

    def _open(self, routing: Routing) -> None:
        for name, generation in routing.generations.items():
            known = self._clients.get(name)
            if known is not None and known.generation == generation:
                continue
            if known is not None:  # same name, new addresses (a local stack restarted on new ports)
                self._close_later(known)
            self._clients[name] = self.make(generation)

    async def _apply(self, routing: Routing) -> None:
        self._open(routing)
        for name in [n for n in self._clients if n not in routing.generations]:
            log.info("generation %s dropped from the routing; closing its clients in %.0f s", name,
                     self.close_delay_s)
            self._close_later(self._clients.pop(name))

    def _close_later(self, clients: GenerationClients) -> None:
        self._retired.append(clients)

        async def close() -> None:
            await asyncio.sleep(self.close_delay_s)
            self._retired.remove(clients)
            await clients.close()
        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def start(self) -> Routing:
        """Reads the routing now and follows it from then on."""
        return await self.watcher.start()

    def snapshot(self) -> GenerationClients:
        """The active generation's clients, for one search or one job."""
        return self._clients[self.routing.active]

    def get(self, name: str) -> GenerationClients | None:
        """A generation's clients while it is in the routing; None once it is dropped."""
        return self._clients.get(name) if name in self.routing.generations else None

    def oldest_first(self) -> list[GenerationClients]:
        """Clients of every generation in the routing, in creation order."""
        return [self._clients[g.name] for g in self.routing.oldest_first()]

    async def close(self) -> None:
        await self.watcher.close()
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        for clients in [*self._retired, *self._clients.values()]:
            await clients.close()
        self._retired.clear()
        self._clients.clear()
