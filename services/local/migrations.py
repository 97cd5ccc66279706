"""Migrations of the local stack's index to a new generation: start it beside the active one, run the
migration driver (``services.index.migrate``), then stop and delete the old generation.

``migrate_stack`` is the one sequence; what fills the new generation is the caller's: ``reshard``
copies clips (same encoder, N shards), ``vidsearch reindex`` re-embeds them with a new checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

from services.common.routing import Routing, RoutingStore, connect
from services.index.migrate import FillerFactory, MigrationOptions, MigrationReport, Progress, migrate
from services.local.stack import LocalStack

log = logging.getLogger(__name__)

#: How often the stack's gateway and ingest read the routing (their routing_poll_s default).
ROUTING_POLL_S = 1.0


def routing_store(stack: LocalStack) -> RoutingStore:
    if stack.redis_url is None:
        raise RuntimeError("migrations need the stack's Redis (the routing document lives there)")
    return RoutingStore(connect(stack.redis_url), stack.key_prefix)


async def current_routing(stack: LocalStack, store: RoutingStore) -> Routing:
    """The stored routing, or the stack's active generation as version 0 when none is stored yet."""
    stored = await store.get()
    if stored is not None:
        return stored
    source = await asyncio.to_thread(stack.describe_generation)
    return Routing(0, source.name, {source.name: source})


async def migrate_stack(stack: LocalStack, *, checkpoint: Path | None, n_shards: int, replicas: int | None,
                        make_filler: FillerFactory, options: MigrationOptions | None = None,
                        progress: Callable[[Progress], None] | None = None) -> MigrationReport:
    """Starts a new generation on the stack, migrates to it, then stops and deletes the old one.

    On failure before the switch the new generation is dropped again and the old one stays active.
    """
    options = options or MigrationOptions()
    store = routing_store(stack)
    try:
        routing = await current_routing(stack, store)
        if routing.active != stack.active:
            raise RuntimeError(f"the routing's active generation is {routing.active}, the stack's {stack.active}")
        if routing.building or routing.retiring:
            raise RuntimeError(f"a migration is under way (generations {', '.join(routing.generations)})")
        source = routing.current
        name = routing.next_name()
        target = await asyncio.to_thread(stack.start_generation, name, checkpoint, n_shards, replicas)
        try:
            fill, close = make_filler(source, target)
        except BaseException:
            await _abandon(stack, store, name)
            raise

        def tell(state: Progress) -> None:
            if state.phase == "draining" and stack.active != name:
                stack.activate(name)  # switched: a restart of the stack from now on starts the new generation
            if progress is not None:
                progress(state)

        try:
            report = await migrate(store, source, target, fill, options, tell)
        except BaseException:
            await _abandon(stack, store, name)
            raise
        finally:
            await close()
        stack.activate(name)
        # A reader one poll behind still sends a delete to the old generation: keep it up until it follows.
        await asyncio.sleep(3 * ROUTING_POLL_S)
        await asyncio.to_thread(stack.stop_generation, source.name, remove_data=True)
        record = stack.root / "stack.json"
        if record.exists():  # what `vidsearch up` printed at start, now with the new shards
            record.write_text(json.dumps(stack.describe(), indent=2))
        return report
    finally:
        await store.redis.aclose()


async def _abandon(stack: LocalStack, store: RoutingStore, name: str) -> None:
    """Drops a generation whose migration failed, unless it became active (then it stays)."""
    routing = await store.get()
    if routing is not None and routing.active == name:
        log.error("migration to %s failed after the switch; %s stays active, the old generation is kept", name, name)
        stack.activate(name)
        return
    if routing is not None:
        await store.update(lambda r: r.without(name), routing)
    await asyncio.to_thread(stack.stop_generation, name, remove_data=True)
