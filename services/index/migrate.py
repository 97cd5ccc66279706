"""Moves the index from one generation to the next (resharding, re-indexing) with no lost clip, no
duplicate and no failed search: register, fill, reconcile, switch, drain, final fill, drop.

``migrate(store, source, target, fill_video)`` drives it; ``fill_video(video_id)`` writes one
video's clips into the target (``copy_filler``: copy them with their vectors from the source, for
resharding; the re-embedding filler of ``vidsearch reindex`` goes through the ingest pipeline) and
returns the clip ids it wrote.

1. Register the target in the routing, not active. Searches and ingest keep using the source.
2. Fill and reconcile in passes: walk every clip id of source and target side by side (Scan of
   every shard, no vectors, merged into clip-id order: memory bounded by the videos to fill, not the
   clips); in the target, delete clips the source no longer has and fill each video whose clips are
   missing there. Repeat until a pass finds nothing to do.
3. Switch: one routing write makes the target active and the source retiring.
4. Drain: wait until every reader has seen the switch (``grace_s``) and no job that started before
   it still writes to the source (the source's Stats stay unchanged for ``quiet_s``); then final
   passes that only *fill* what the source has and the target lacks, until one finds nothing.
5. Drop the source from the routing; the caller stops its processes and removes its data.

Why this is correct:
- Deletes reach every generation in the routing (``DeleteVideo`` visits them oldest first, so the
  source before the target), so a deleted video cannot survive in either by being missed.
- A fill can race a delete: it read the source before the delete and writes the target after it.
  So after each fill the driver reads the video's clips in the source again and deletes from the
  target the ones it wrote that the source no longer has. If the fill's write landed after the
  target's delete, the source's delete (which came first) is done and seen by that read.
- Fills are idempotent: clip ids are deterministic (video id + start time), so writing a clip again
  overwrites it; a repeated pass never duplicates.
- A pass that finds nothing to do saw source == target (as clip-id sets per video) at that moment,
  and from then on every write lands in the source and, after the switch, every new job's write in
  the target. A job that started before the switch stops before its next write once its ingest
  worker sees the switch (one routing poll) and retries into the target; what it wrote to the source
  until then (at most one batch in flight) lands within the grace period, and the final fill passes
  after the drain copy it. After the switch nothing is deleted from the target except what
  a fill itself wrote and the source has lost, so the target never loses a clip a new job wrote.
- Searches use one generation per request; both are complete at the switch, so none fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field

from services.common.errors import WrongState
from services.common.index_client import ShardSet
from services.common.routing import Generation, Routing, RoutingStore
from vidsearch.common.v1 import common_pb2

log = logging.getLogger(__name__)

#: Stale clips found in the target are deleted this many at a time.
CLEAN_BATCH = 1000

#: Writes one video's clips into the target generation; returns the clip ids written.
FillVideo = Callable[[str], Awaitable[Sequence[str]]]
#: Builds the filler of one migration from its (source, target) generations; returns it and its close.
FillerFactory = Callable[[Generation, Generation], tuple[FillVideo, Callable[[], Awaitable[None]]]]


@dataclass(frozen=True)
class MigrationOptions:
    """How hard and how long the driver works (defaults suit a local stack)."""

    # Videos filled at once.
    concurrency: int = 4
    # Reconcile passes before the switch, and final passes after it, before giving up.
    max_passes: int = 10
    # After the switch: every reader's routing poll (2 x its interval) plus the longest search deadline.
    grace_s: float = 12.0
    # The source's Stats unchanged this long: no job that started before the switch still writes it.
    quiet_s: float = 3.0
    # Longest wait for that quiet before the final passes go ahead anyway.
    max_quiet_wait_s: float = 600.0
    # Deadline of each index call.
    timeout_s: float = 60.0
    # Keep the source in the routing after the final passes (the caller drops it later).
    drop: bool = True


@dataclass
class Progress:
    """Where a migration stands, as ``vidsearch reshard`` prints it."""

    phase: str = "registering"  # registering, filling, switching, draining, final, dropping, done
    passes: int = 0
    videos_total: int = 0
    videos_done: int = 0
    clips_written: int = 0
    clips_deleted: int = 0
    message: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class MigrationReport:
    """The outcome: the routing in force at the end and what was done."""

    routing: Routing
    progress: Progress
    seconds: float = 0.0
    pre_switch_passes: int = 0
    post_switch_passes: int = 0
    notes: list[str] = field(default_factory=list)


async def inventory(shards: ShardSet, video_ids: Sequence[str] = (), timeout_s: float = 60.0) -> dict[str, set[str]]:
    """Every video's clip ids across all shards of a generation (Scan without vectors)."""
    found: dict[str, set[str]] = {}

    async def scan(i: int) -> None:
        async for page in shards.shards[i].scan(video_ids=video_ids, page_size=5000, timeout_s=timeout_s):
            for clip in page:
                found.setdefault(clip.video_id, set()).add(clip.clip_id)

    await asyncio.gather(*(scan(i) for i in range(len(shards))))
    return found


async def clips_in_order(shards: ShardSet, timeout_s: float = 60.0, page_size: int = 5000
                         ) -> AsyncGenerator[common_pb2.ClipRecord, None]:
    """Every clip of a generation (no vectors) in clip-id order: each shard's Scan is in that order, and
    their streams are merged. Each shard's next page is fetched while the last one is consumed."""
    pages: list[asyncio.Queue[list[common_pb2.ClipRecord] | BaseException | None]] = [
        asyncio.Queue(maxsize=2) for _ in shards.shards]

    async def feed(i: int) -> None:
        try:
            async for page in shards.shards[i].scan(page_size=page_size, timeout_s=timeout_s):
                if page:
                    await pages[i].put(page)
            await pages[i].put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            await pages[i].put(exc)

    async def clips(i: int) -> AsyncIterator[common_pb2.ClipRecord]:
        while (page := await pages[i].get()) is not None:
            if isinstance(page, BaseException):
                raise page
            for clip in page:
                yield clip

    feeders = [asyncio.create_task(feed(i)) for i in range(len(shards.shards))]
    streams = [clips(i) for i in range(len(shards.shards))]
    try:
        heap: list[tuple[str, int, common_pb2.ClipRecord]] = []
        for i, stream in enumerate(streams):
            if (first := await anext(stream, None)) is not None:
                heap.append((first.clip_id, i, first))
        heapq.heapify(heap)
        while heap:
            _, i, clip = heap[0]
            yield clip
            if (following := await anext(streams[i], None)) is not None:
                heapq.heapreplace(heap, (following.clip_id, i, following))
            else:
                heapq.heappop(heap)
    finally:
        for task in feeders:
            task.cancel()
        await asyncio.gather(*feeders, return_exceptions=True)


async def differences(source: AsyncIterator[common_pb2.ClipRecord], target: AsyncIterator[common_pb2.ClipRecord]
                      ) -> AsyncIterator[tuple[bool, common_pb2.ClipRecord]]:
    """Two clip-id ordered streams walked side by side: ``(True, clip)`` for each clip only the source
    has, ``(False, clip)`` for each only the target has."""
    a, b = await anext(source, None), await anext(target, None)
    while a is not None or b is not None:
        if a is not None and (b is None or a.clip_id < b.clip_id):
            yield True, a
            a = await anext(source, None)
        elif b is not None and (a is None or b.clip_id < a.clip_id):
            yield False, b
            b = await anext(target, None)
        else:  # the same clip on both sides
            a, b = await anext(source, None), await anext(target, None)


async def shard_stats(shards: ShardSet, timeout_s: float = 30.0) -> list[tuple[int, ...]]:
    """What changes on a shard when it is written (records, live, tombstoned, fresh), of every replica:
    replicas are asked each in turn, so a round-robin over them never looks like a change."""
    replicas = [r for shard in shards.shards for r in shard.replicas]
    replies = await asyncio.gather(*(r.stats(timeout_s=timeout_s) for r in replicas))
    return [(r.records, r.live, r.tombstoned, r.fresh) for r in replies]


def copy_filler(source: ShardSet, target: ShardSet, *, page_size: int = 500, timeout_s: float = 60.0) -> FillVideo:
    """The resharding filler: a video's clips, vectors and all, from its source shard to its target shard."""

    async def fill(video_id: str) -> list[str]:
        written: list[str] = []
        destination = target.for_video(video_id)
        async for page in source.for_video(video_id).scan(include_vectors=True, page_size=page_size,
                                                           video_ids=[video_id], timeout_s=timeout_s):
            if page:
                await destination.upsert(page, timeout_s=timeout_s)
                written += [c.clip_id for c in page]
        return written

    return fill


def copy_factory(source: Generation, target: Generation) -> tuple[FillVideo, Callable[[], Awaitable[None]]]:
    """``copy_filler`` over clients of the two generations' shards, and the close of those clients."""
    source_shards, target_shards = ShardSet(source.shards), ShardSet(target.shards)

    async def close() -> None:
        await source_shards.close()
        await target_shards.close()

    return copy_filler(source_shards, target_shards), close




class Migration:
    """One run of the driver (see the module docstring); ``migrate`` is its one-call form."""

    def __init__(self, store: RoutingStore, source: Generation, target: Generation, fill_video: FillVideo,
                 options: MigrationOptions | None = None,
                 progress: Callable[[Progress], None] | None = None) -> None:
        if source.name == target.name:
            raise WrongState(f"source and target are both {source.name}")
        self.store = store
        self.source = source
        self.target = target
        self.fill_video = fill_video
        self.options = options or MigrationOptions()
        self.report_progress = progress
        self.progress = Progress()
        timeout = self.options.timeout_s
        self.source_shards = ShardSet(source.shards, timeout_s=timeout)
        self.target_shards = ShardSet(target.shards, timeout_s=timeout)

    def _tell(self, phase: str | None = None, message: str = "") -> None:
        if phase is not None:
            self.progress.phase = phase
        if message:
            self.progress.message = message
            log.info("migration %s -> %s: %s", self.source.name, self.target.name, message)
        if self.report_progress is not None:
            self.report_progress(self.progress)

    async def register(self) -> Routing:
        """Adds the target to the routing, not active; the source must be the active generation."""
        fallback = Routing(0, self.source.name, {self.source.name: self.source})

        def add(routing: Routing) -> Routing:
            if routing.active != self.source.name:
                raise WrongState(f"generation {self.source.name} is not active ({routing.active} is)")
            known = routing.generations.get(self.target.name)
            if known == self.target:
                return routing  # a rerun of the same migration
            if known is not None:
                raise WrongState(f"generation {self.target.name} exists with other addresses or model")
            return routing.with_generation(self.target)

        self._tell("registering", f"registering generation {self.target.name}")
        return await self.store.update(add, fallback)

    async def _fill(self, video_id: str) -> None:
        """Fills one video, then undoes what it wrote that the source has lost meanwhile (a delete)."""
        written = set(await self.fill_video(video_id))
        now = (await inventory(self.source_shards, [video_id], self.options.timeout_s)).get(video_id, set())
        lost = sorted(written - now)
        if lost:
            await self.target_shards.for_video(video_id).delete(clip_ids=lost, timeout_s=self.options.timeout_s)
            self.progress.clips_deleted += len(lost)
        self.progress.clips_written += len(written)
        self.progress.videos_done += 1
        self._tell()

    async def _fill_all(self, video_ids: list[str]) -> None:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(video_id: str) -> None:
            async with gate:
                await self._fill(video_id)

        await asyncio.gather(*(one(v) for v in video_ids))

    async def reconcile_pass(self, *, delete: bool) -> int:
        """One pass; returns the videos it had to fill or clean (0: source and target agree).

        Streams both generations' clip ids in order (``differences``): stale clips are deleted from the
        target a batch at a time as they are found; only the ids of the videos to fill are kept.
        """
        timeout = self.options.timeout_s
        missing: set[str] = set()
        stale: dict[str, list[str]] = {}
        cleaned: set[str] = set()

        async def clean() -> None:
            for video_id, clip_ids in stale.items():
                await self.target_shards.for_video(video_id).delete(clip_ids=clip_ids, timeout_s=timeout)
                self.progress.clips_deleted += len(clip_ids)
            stale.clear()

        source = clips_in_order(self.source_shards, timeout)
        target = clips_in_order(self.target_shards, timeout)
        async with contextlib.aclosing(source), contextlib.aclosing(target):
            async for only_in_source, clip in differences(source, target):
                if only_in_source:
                    missing.add(clip.video_id)
                elif delete:
                    stale.setdefault(clip.video_id, []).append(clip.clip_id)
                    cleaned.add(clip.video_id)
                    if sum(map(len, stale.values())) >= CLEAN_BATCH:
                        await clean()
        await clean()
        self.progress.passes += 1
        self.progress.videos_total, self.progress.videos_done = len(missing), 0
        self._tell(message=f"pass {self.progress.passes}: {len(missing)} videos of {self.source.name} to fill "
                           f"in {self.target.name}, {len(cleaned)} to clean")
        await self._fill_all(sorted(missing))
        return len(missing) + len(cleaned)

    async def switch(self) -> Routing:
        self._tell("switching", f"switching searches and ingest to {self.target.name}")
        return await self.store.update(lambda r: r.switched_to(self.target.name),
                                       Routing(0, self.source.name, {self.source.name: self.source}))

    async def wait_quiet(self) -> bool:
        """Waits until the source's Stats stay unchanged for ``quiet_s``; False after ``max_quiet_wait_s``."""
        options = self.options
        deadline = time.monotonic() + options.max_quiet_wait_s
        before = await shard_stats(self.source_shards, options.timeout_s)
        while time.monotonic() < deadline:
            await asyncio.sleep(options.quiet_s)
            after = await shard_stats(self.source_shards, options.timeout_s)
            if after == before:
                return True
            before = after
        return False

    async def drop(self) -> Routing:
        self._tell("dropping", f"dropping generation {self.source.name} from the routing")
        routing = await self.store.get()
        assert routing is not None, "the routing was written by register()"
        return await self.store.update(lambda r: r.without(self.source.name), routing)

    async def run(self) -> MigrationReport:
        started = time.monotonic()
        options = self.options
        report = MigrationReport(await self.register(), self.progress)
        try:
            self._tell("filling")
            for n in range(1, options.max_passes + 1):
                report.pre_switch_passes = n
                if await self.reconcile_pass(delete=True) == 0:
                    break
            else:
                # Ingest kept the source moving; the final passes after the switch fill the rest.
                report.notes.append(f"the source still changed after {options.max_passes} passes")
            report.routing = await self.switch()
            self._tell("draining", f"waiting {options.grace_s:.0f} s for every reader to switch")
            await asyncio.sleep(options.grace_s)
            self._tell("final", f"waiting for writes to {self.source.name} to stop, then copying what they wrote")
            for n in range(1, options.max_passes + 1):
                report.post_switch_passes = n
                if not await self.wait_quiet():
                    report.notes.append(f"{self.source.name} was still written after {options.max_quiet_wait_s} s")
                if await self.reconcile_pass(delete=False) == 0:
                    break
            if options.drop:
                report.routing = await self.drop()
            self._tell("done", f"{self.target.name} is active; {self.progress.clips_written} clips written")
        finally:
            await self.source_shards.close()
            await self.target_shards.close()
        report.seconds = time.monotonic() - started
        return report


async def migrate(store: RoutingStore, source: Generation, target: Generation, fill_video: FillVideo,
                  options: MigrationOptions | None = None,
                  progress: Callable[[Progress], None] | None = None) -> MigrationReport:
    """Moves searches and ingest from ``source`` (the active generation) to ``target`` (module docstring)."""
    return await Migration(store, source, target, fill_video, options, progress).run()
