"""The routing document of index generations in a real Redis: its JSON round trip, compare-and-set
writes, the watcher that keeps the last known routing while Redis is down, and the static
generation of the settings when there is no document (or no Redis)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.common.errors import InvalidInput, WrongState
from services.common.generations import GenerationClients, GenerationPool
from services.common.routing import (
    STATIC_NAME,
    Generation,
    Routing,
    RoutingConflict,
    RoutingStore,
    RoutingWatcher,
    connect,
)
from services.local.processes import free_port

G1 = Generation("g1", "model-a", "enc:1", ("a:1", "b:1|b:2"))
G2 = Generation("g2", "model-a", "enc:1", ("a:2", "b:2", "c:2"))


def _store(redis_url: str) -> RoutingStore:
    return RoutingStore(connect(redis_url), f"test-{uuid.uuid4().hex[:8]}")


def test_a_routing_survives_its_json_and_keeps_creation_order() -> None:
    routing = Routing.static("enc:0", ["s:1", "s:2"]).with_generation(G2).with_generation(G1).switched_to("g2")
    back = Routing.from_json(routing.to_json())
    assert back == routing
    assert list(back.generations) == [STATIC_NAME, "g2", "g1"]
    assert (back.version, back.active, back.retiring, back.building) == (3, "g2", (STATIC_NAME,), ["g1"])
    assert back.current.shards == ("a:2", "b:2", "c:2")


@pytest.mark.parametrize("text", [
    '{"version": 1}', "not json", '{"version": 1, "active": "gx", "generations": {}}',
    '{"version": 1, "active": "g1", "generations": {"g1": {"encoder": "e", "shards": []}}}'])
def test_a_malformed_document_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        Routing.from_json(text)


def test_the_active_generation_cannot_be_dropped() -> None:
    routing = Routing.static("enc:0", ["s:1"]).with_generation(G1)
    with pytest.raises(WrongState):
        routing.without(STATIC_NAME)
    with pytest.raises(WrongState):
        routing.with_generation(G1)
    dropped = routing.switched_to("g1").without(STATIC_NAME)
    assert (list(dropped.generations), dropped.retiring, dropped.version) == (["g1"], (), 3)


def test_writes_are_compare_and_set_on_the_version(redis_url: str) -> None:
    async def scenario() -> None:
        store = _store(redis_url)
        try:
            assert await store.get() is None
            first = Routing.static("enc:0", ["s:1"]).with_generation(G1)
            await store.put(first)
            assert await store.get() == first
            with pytest.raises(RoutingConflict):  # a writer that read version 0 too
                await store.put(Routing.static("enc:0", ["s:1"]).with_generation(G2))
            with pytest.raises(RoutingConflict):  # skipping a version
                await store.put(first.switched_to("g1").without(STATIC_NAME))
            assert await store.get() == first
            # update() reads again and redoes its change on top of what is stored.
            stale = Routing.static("enc:0", ["s:1"])
            after = await store.update(lambda r: r.switched_to("g1"), stale)
            assert (after.version, after.active, after.retiring) == (2, "g1", (STATIC_NAME,))
            assert await store.get() == after
        finally:
            await store.delete()
            await store.redis.aclose()

    asyncio.run(scenario())


def test_two_writers_racing_both_land_one_after_the_other(redis_url: str) -> None:
    async def scenario() -> None:
        store = _store(redis_url)
        try:
            base = Routing.static("enc:0", ["s:1"])
            names = [f"g{i}" for i in range(1, 9)]
            await asyncio.gather(*(store.update(
                lambda r, n=n: r.with_generation(Generation(n, "m", "enc:1", ("x:1",))), base) for n in names))
            stored = await store.get()
            assert stored is not None and stored.version == len(names)
            assert sorted(stored.generations) == sorted([STATIC_NAME, *names])
        finally:
            await store.delete()
            await store.redis.aclose()

    asyncio.run(scenario())


def test_without_a_document_or_without_redis_the_settings_rule(redis_url: str) -> None:
    static = Routing.static("enc:0", ["s:1", "s:2"])

    async def scenario() -> None:
        empty = _store(redis_url)
        dead = RoutingStore(connect(f"redis://127.0.0.1:{free_port()}/0"), "vidsearch")
        try:
            assert await RoutingWatcher(empty, static).start() == static
            assert await RoutingWatcher(dead, static).poll() == static
            assert await RoutingWatcher(None, static).start() == static
        finally:
            await empty.redis.aclose()
            await dead.redis.aclose()

    asyncio.run(scenario())


def test_the_watcher_follows_changes_and_keeps_the_last_routing_while_redis_is_down(redis_url: str) -> None:
    async def scenario() -> None:
        store = _store(redis_url)
        seen: list[int] = []

        async def changed(routing: Routing) -> None:
            seen.append(routing.version)

        watcher = RoutingWatcher(store, Routing.static("enc:0", ["s:1"]), interval_s=0.05, on_change=changed)
        try:
            await watcher.start()
            first = await store.update(lambda r: r.with_generation(G1), watcher.fallback)
            second = await store.update(lambda r: r.switched_to("g1"), watcher.fallback)
            for _ in range(100):
                if watcher.routing == second:
                    break
                await asyncio.sleep(0.05)
            assert watcher.routing == second
            assert seen[-1] == second.version and set(seen) <= {first.version, second.version}
            # Redis gone: polls fail, the routing stays.
            await store.redis.connection_pool.disconnect()
            store.redis.connection_pool.connection_kwargs["port"] = free_port()
            assert await watcher.poll() == second
        finally:
            await watcher.close()
            await store.redis.aclose()
        cleanup = _store(redis_url)
        cleanup.key = store.key
        await cleanup.delete()
        await cleanup.redis.aclose()

    asyncio.run(scenario())


class _Closing:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def test_the_pool_opens_clients_of_new_generations_and_closes_dropped_ones(redis_url: str) -> None:
    async def scenario() -> None:
        store = _store(redis_url)
        opened: dict[str, GenerationClients] = {}

        def make(generation: Generation) -> GenerationClients:
            clients = GenerationClients(generation, _Closing(), _Closing())  # type: ignore[arg-type]
            opened[generation.name] = clients
            return clients

        static = Routing.static("enc:0", ["s:1"])
        pool = GenerationPool(store, static, make, poll_interval_s=0.05, close_delay_s=0.0)
        try:
            await pool.start()
            assert pool.snapshot().name == STATIC_NAME
            await store.update(lambda r: r.with_generation(G1), static)
            await pool.watcher.poll()
            assert pool.snapshot().name == STATIC_NAME  # registered, not active
            assert [c.name for c in pool.oldest_first()] == [STATIC_NAME, "g1"]
            await store.update(lambda r: r.switched_to("g1").without(STATIC_NAME), static)
            await pool.watcher.poll()
            assert pool.snapshot().name == "g1"
            assert pool.get(STATIC_NAME) is None
            await asyncio.sleep(0.05)
            assert opened[STATIC_NAME].encoder.closed and not opened["g1"].encoder.closed
        finally:
            await pool.close()
            await store.delete()
            await store.redis.aclose()
        assert opened["g1"].shards.closed

    asyncio.run(scenario())
