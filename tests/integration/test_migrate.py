"""The migration driver between two generations of real index servers (2 shards -> 3) with the routing
in a real Redis: the copy lands every clip once on its new placement, clips only the target had are
cleaned before the switch, a write to the old generation by a job that started before the switch is
copied after it, a write of a new job to the new generation is never undone, and the old generation
leaves the routing."""

from __future__ import annotations

import asyncio
import collections
import uuid
from pathlib import Path

import numpy as np

from services.common.index_client import ShardSet
from services.common.readiness import Pending
from services.common.routing import Generation, RoutingStore, connect
from services.common.server import Registration, RunningServer, start_server
from services.common.settings import ServerSettings
from services.common.shards import shard_for_video
from services.index.migrate import (
    MigrationOptions,
    Progress,
    clips_in_order,
    copy_factory,
    differences,
    inventory,
    migrate,
)
from services.index.servicer import IndexServicer
from services.index.shard import ShardIndex
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2_grpc

DIM = 8
FAST = MigrationOptions(concurrency=3, grace_s=0.2, quiet_s=0.3, max_quiet_wait_s=10, timeout_s=10)


async def _shard(data_dir: Path, name: str) -> tuple[RunningServer, IndexServicer]:
    servicer = IndexServicer(name, Pending(f"index {name} is still opening"))
    servicer.shard.set(await asyncio.to_thread(ShardIndex, data_dir))
    running = await start_server(ServerSettings(port=0, grace_seconds=0), [Registration(
        index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, "vidsearch.index.v1.IndexService")])
    await running.set_serving(True)
    return running, servicer


def _clips(video: str, n: int, first: int = 0) -> list[common_pb2.ClipRecord]:
    vectors = np.random.default_rng(len(video)).normal(size=(first + n, DIM)).astype(np.float32)[first:]
    return [common_pb2.ClipRecord(clip_id=f"{video}:{i * 1000:09d}", video_id=video, start_seconds=float(i),
                                  end_seconds=i + 1.0, vector=common_pb2.Vector(values=v), model_id="m")
            for i, v in enumerate(vectors.tolist(), start=first)]


def test_a_copy_migration_moves_every_clip_once_and_keeps_late_writes(tmp_path: Path, redis_url: str) -> None:
    async def scenario() -> None:
        servers = [await _shard(tmp_path / f"old-{i}", f"shard-{i}") for i in range(2)]
        servers += [await _shard(tmp_path / f"new-{i}", f"shard-{i}") for i in range(3)]
        addresses = [f"127.0.0.1:{s.port}" for s, _ in servers]
        source = Generation("g0", "m", "enc:1", tuple(addresses[:2]))
        target = Generation("g1", "m", "enc:1", tuple(addresses[2:]))
        old, new = ShardSet(source.shards), ShardSet(target.shards)
        store = RoutingStore(connect(redis_url), f"test-{uuid.uuid4().hex[:8]}")
        # Video ids that are prefixes of others ("video-1", "video-10", "video-1:0"): their clips
        # interleave in clip-id order, which the reconcile's walk must not take for grouping by video.
        videos = {f"video-{n}": 5 + n for n in range(12)} | {"video-1:0": 2}
        try:
            for video, n in videos.items():
                await old.for_video(video).upsert(_clips(video, n))
            # The target already holds half of one video, and a video the source no longer has.
            await new.for_video("video-3").upsert(_clips("video-3", 4))
            await new.for_video("gone").upsert(_clips("gone", 3))
            late: list[asyncio.Task] = []

            def progress(p: Progress) -> None:
                if p.phase == "draining" and not late:
                    # A job that started before the switch writes the old generation; a new one, the new.
                    late.append(asyncio.get_running_loop().create_task(
                        old.for_video("late").upsert(_clips("late", 4))))
                    late.append(asyncio.get_running_loop().create_task(
                        new.for_video("fresh").upsert(_clips("fresh", 2))))

            fill, close = copy_factory(source, target)
            try:
                report = await migrate(store, source, target, fill, FAST, progress)
            finally:
                await close()
            await asyncio.gather(*late)
            videos |= {"late": 4, "fresh": 2}
            found = await inventory(new)
            assert {v: len(ids) for v, ids in found.items()} == videos
            assert report.pre_switch_passes == 2 and report.post_switch_passes >= 1
            routing = await store.get()
            assert routing is not None and list(routing.generations) == ["g1"] and routing.active == "g1"
            # Every clip once, on its placement among the three.
            counts: collections.Counter[str] = collections.Counter()
            for i, shard in enumerate(new.shards):
                async for page in shard.scan():
                    counts.update(c.clip_id for c in page)
                    assert all(shard_for_video(c.video_id, 3) == i for c in page)
            assert set(counts.values()) == {1} and len(counts) == sum(videos.values())
            merged = [c.clip_id async for c in clips_in_order(new, page_size=7)]
            assert merged == sorted(counts)
        finally:
            await old.close()
            await new.close()
            await store.delete()
            await store.redis.aclose()
            for running, servicer in servers:
                await running.server.stop(0)
                servicer.shard.get().close()

    asyncio.run(scenario())


def test_differences_walks_two_ordered_streams_side_by_side() -> None:
    def stream(ids: list[str]):
        async def gen():
            for i in ids:
                yield common_pb2.ClipRecord(clip_id=i, video_id=i.rsplit(":", 1)[0])
        return gen()

    async def scenario() -> list[tuple[bool, str]]:
        source = stream(["a:1", "a:2", "b:1", "c:1", "c:2"])
        target = stream(["a:2", "a:3", "c:2", "d:1"])
        return [(only_source, c.clip_id) async for only_source, c in differences(source, target)]

    assert asyncio.run(scenario()) == [(True, "a:1"), (False, "a:3"), (True, "b:1"), (True, "c:1"), (False, "d:1")]

    async def empty() -> list:
        return [x async for x in differences(stream([]), stream([]))]

    assert asyncio.run(empty()) == []
