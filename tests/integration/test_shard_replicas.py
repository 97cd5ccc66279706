"""A shard with two replicas, each a real index server on loopback, through the services' shard client:
writes reach both and count only on the quorum, reads take turns and fail over, a replica that is
back (same port, same data directory) is used again and holds every acknowledged write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import DependencyDown
from services.common.index_client import ShardClient
from services.common.readiness import Pending
from services.common.server import Registration, RunningServer, start_server
from services.common.settings import ServerSettings
from services.index.servicer import IndexServicer
from services.index.shard import ShardIndex
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2_grpc

DIM = 8


class CountingServicer(IndexServicer):
    """The real servicer, counting the searches it answers."""

    searches = 0
    scans = 0

    async def Search(self, request, context):
        self.searches += 1
        return await super().Search(request, context)

    async def Scan(self, request, context):
        self.scans += 1
        async for page in super().Scan(request, context):
            yield page


async def _replica(data_dir: Path, port: int = 0) -> tuple[RunningServer, CountingServicer]:
    servicer = CountingServicer("shard-0", Pending("index shard-0 is still opening"))
    servicer.shard.set(await asyncio.to_thread(ShardIndex, data_dir))
    running = await start_server(ServerSettings(port=port, grace_seconds=0), [Registration(
        index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, "vidsearch.index.v1.IndexService")])
    await running.set_serving(True)
    return running, servicer


async def _stop(running: RunningServer, servicer: CountingServicer) -> None:
    await running.server.stop(0)
    servicer.shard.get().close()


def _clips(video: str, n: int) -> list[common_pb2.ClipRecord]:
    vectors = np.random.default_rng(len(video)).normal(size=(n, DIM)).astype(np.float32)
    return [common_pb2.ClipRecord(clip_id=f"{video}:{i * 1000:09d}", video_id=video, start_seconds=float(i),
                                  end_seconds=i + 1.0, vector=common_pb2.Vector(values=v), model_id="m")
            for i, v in enumerate(vectors.tolist())]


def test_two_replicas_of_a_shard(tmp_path: Path) -> None:
    async def scenario() -> None:
        servers = {"a": await _replica(tmp_path / "a"), "b": await _replica(tmp_path / "b")}
        port_a = servers["a"][0].port
        target = f"127.0.0.1:{port_a}|127.0.0.1:{servers['b'][0].port}"
        shard = ShardClient("shard-0", target, timeout_s=5)
        quorum_one = ShardClient("shard-0", target, timeout_s=5, write_quorum=1)
        query = np.ones((1, DIM), np.float32)
        try:
            assert await shard.upsert(_clips("first", 10)) == 10
            assert [(await r.stats()).live for r in shard.replicas] == [10, 10]
            for _ in range(10):
                assert len((await shard.search(query, 5)).results[0].hits) == 5
            assert (servers["a"][1].searches, servers["b"][1].searches) == (5, 5)  # round-robin

            await _stop(*servers.pop("a"))  # one replica gone: reads fail over, writes miss the quorum
            for _ in range(10):
                assert len((await shard.search(query, 5)).results[0].hits) == 5
                assert len((await shard.get(["first:000000000"])).clips) == 1
            assert servers["b"][1].searches == 15
            with pytest.raises(DependencyDown, match="reached 1 of 2 replicas, 2 needed"):
                await shard.upsert(_clips("second", 4))
            assert await quorum_one.upsert(_clips("third", 3)) == 3

            servers["a"] = await _replica(tmp_path / "a", port=port_a)
            # Back on its port with its data: used again once its breaker's probe sees it SERVING.
            for _ in range(100):
                await shard.search(query, 5)
                if servers["a"][1].searches:
                    break
                await asyncio.sleep(0.05)
            assert servers["a"][1].searches, "the replica that came back is never searched"
            got = await shard.replicas[0].get([c.clip_id for c in _clips("first", 10)])
            assert not got.missing_ids, "a replica lost acknowledged writes across its restart"
            # The write that missed the quorum is retried whole, as ingest does, and now succeeds.
            # (The quorum-of-one write is on b only: these replicas have no peers set, so none catches up;
            # tests/integration/test_replica_catchup.py covers replicas that do.)
            assert await shard.upsert(_clips("second", 4)) == 4
            assert [(await r.stats()).live for r in shard.replicas] == [14, 17]
        finally:
            await shard.close()
            await quorum_one.close()
            for server in servers.values():
                await _stop(*server)

    asyncio.run(scenario())


# limit 25: the scan ends after 25 clips in all, 10 from the replica that died and 15 from the other.
@pytest.mark.parametrize("limit", [0, 25])
def test_a_scan_resumes_on_the_other_replica_when_its_replica_dies(tmp_path: Path, limit: int) -> None:
    async def scenario() -> None:
        servers = {"a": await _replica(tmp_path / "a"), "b": await _replica(tmp_path / "b")}
        shard = ShardClient("shard-0", f"127.0.0.1:{servers['a'][0].port}|127.0.0.1:{servers['b'][0].port}",
                            timeout_s=5)
        try:
            written = sorted(c.clip_id for c in _clips("video", 30))
            await shard.upsert(_clips("video", 30))
            seen: list[str] = []
            async for page in shard.scan(page_size=10, include_vectors=True, limit=limit):
                seen += [c.clip_id for c in page]
                assert all(len(c.vector.packed) == 4 * DIM for c in page)
                if len(seen) == 10:  # the replica the scan started on dies after its first page
                    (scanning,) = [name for name, (_, s) in servers.items() if s.scans]
                    await _stop(*servers.pop(scanning))
            assert seen == written[:limit or None]
            (survivor,) = servers.values()
            assert survivor[1].scans == 1, "the scan did not resume on the other replica"
        finally:
            await shard.close()
            for server in servers.values():
                await _stop(*server)

    asyncio.run(scenario())
