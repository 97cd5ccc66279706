"""Replica catch-up with real index servers: a replica that missed writes copies its SERVING peer
before it serves, live writes made during the copy are never overwritten by the peer's older
copies, and a replica killed mid-catch-up still ends equal to its peer (row count and checksum)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY

from services import cli
from services.common.errors import Unsupported, WrongState
from services.common.index_client import ShardClient
from services.common.readiness import Pending
from services.common.server import Registration, RunningServer, start_server
from services.common.settings import ServerSettings
from services.index import convert
from services.index.catchup import CatchUp, IdRange, Reconciler, catch_up, fences_at_open
from services.index.servicer import IndexServicer
from services.index.shard import ShardIndex
from tests.procs import ServiceProcess, free_port, health_status
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

DIM = 8
SERVICE = "vidsearch.index.v1.IndexService"


def _clips(video: str, n: int, seed: int = 0, caption: str = "") -> list[common_pb2.ClipRecord]:
    vectors = np.random.default_rng([seed, len(video)]).normal(size=(n, DIM)).astype(np.float32)
    return [common_pb2.ClipRecord(clip_id=f"{video}:{i * 1000:09d}", video_id=video, start_seconds=float(i),
                                  end_seconds=i + 1.0, vector=common_pb2.Vector(values=v), model_id="m",
                                  caption=caption, tags=["t"], metadata={"k": video})
            for i, v in enumerate(vectors.tolist())]


class GatedPeer(IndexServicer):
    """A SERVING peer whose Scan, once armed, holds each page it has read until the test lets it go:
    the window in which a live write makes that page stale."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.page_read = asyncio.Event()
        self.release = asyncio.Event()
        self.armed = False

    async def Scan(self, request, context):
        async for page in super().Scan(request, context):
            if self.armed:
                self.armed = False
                self.page_read.set()
                await self.release.wait()
            yield page


class _WithoutDigest:
    """What ``add_IndexServiceServicer_to_server`` registers on, passing on every method but Digest: the
    IndexService as a replica of an older version serves it (a call of Digest gets UNIMPLEMENTED)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the same methods come by name below

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        older = {method: handler for method, handler in handlers.items() if method != "Digest"}
        assert len(older) == len(handlers) - 1
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, older),))
        self.server.add_registered_method_handlers(service, older)


def _add_older_index(servicer: IndexServicer, server: grpc.aio.Server) -> None:
    index_pb2_grpc.add_IndexServiceServicer_to_server(servicer, _WithoutDigest(server))


async def _server(servicer: IndexServicer, serving: bool, add=index_pb2_grpc.add_IndexServiceServicer_to_server
                  ) -> RunningServer:
    running = await start_server(ServerSettings(grace_seconds=0), [Registration(add, servicer, SERVICE)])
    await running.set_serving(serving)
    return running


def test_live_writes_during_catch_up_win_over_the_peers_older_copies(tmp_path: Path) -> None:
    async def scenario() -> None:
        peer = GatedPeer("shard-0", Pending("opening", ShardIndex(tmp_path / "a")))
        a = await _server(peer, serving=True)
        # Replica b as services/index/server.py starts it: open, take writes, catch up, then serve.
        b_shard = ShardIndex(tmp_path / "b")
        # What b held from before it went down: a clip a has deleted since, and an older copy of v2.
        b_shard.upsert([convert.record_from_proto(c) for c in _clips("v0", 2) + _clips("v2", 5, seed=9)])
        catchup = CatchUp("shard-0")
        b_servicer = IndexServicer("shard-0", Pending("opening", b_shard), catchup)
        b = await _server(b_servicer, serving=False)
        both = ShardClient("shard-0", f"127.0.0.1:{a.port}|127.0.0.1:{b.port}", timeout_s=10)
        peers = ShardClient("peers", f"127.0.0.1:{a.port}", timeout_s=10)
        try:
            for video in ("v1", "v2", "v3"):  # written while b was down
                await both.replicas[0].upsert(_clips(video, 5))
            peer.armed = True
            task = asyncio.create_task(catch_up("shard-0", b_servicer.shard.get(), catchup, peers, replica=1,
                                                alone_after_s=1, page_size=8))
            await asyncio.wait_for(peer.page_read.wait(), 10)
            # The first page (v0 is not on a: v1's 5 clips and 3 of v2's) is read, not yet applied.
            # Live writes now reach both replicas (b takes writes while it is NOT_SERVING):
            new_v1 = _clips("v1", 5, seed=1, caption="re-encoded")[:2]
            await both.upsert(new_v1)  # overwrite two clips of the stale page
            await both.delete(clip_ids=["v1:000004000"])  # delete one clip of the stale page
            await both.delete(video_ids=["v2"])  # delete a video, some clips on the stale page
            await both.upsert(_clips("v15", 1))  # a new clip in the page's id range (v1 < v15 < v2)
            wrong_model = _clips("v3", 1)
            wrong_model[0].model_id = "another-model"
            with pytest.raises(WrongState):  # refused by both, so it must not keep b from copying v3:0
                await both.upsert(wrong_model)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as plain:
                stub = index_pb2_grpc.IndexServiceStub(plain)
                with pytest.raises(grpc.aio.AioRpcError) as refused:  # b serves no read yet
                    await stub.Get(index_pb2.GetRequest(clip_ids=["v1:000000000"]), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "catching up" in refused.value.details()
                with pytest.raises(grpc.aio.AioRpcError) as refused:  # nor a digest, which a peer would use
                    await stub.Digest(index_pb2.DigestRequest(bounds=["v2"]), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert (await stub.Stats(index_pb2.StatsRequest(), timeout=5)).catching_up
            peer.release.set()
            progress = await asyncio.wait_for(task, 30)
            await b.set_serving(True)

            assert (progress.skipped, progress.deleted) == (7, 2), progress
            sample = REGISTRY.get_sample_value
            assert sample("vidsearch_index_catching_up", {"shard": "shard-0"}) == 0
            assert sample("vidsearch_index_catchup_clips_total", {"shard": "shard-0", "action": "skipped"}) >= 7
            stats = [await r.stats(content_checksum=True) for r in both.replicas]
            assert stats[0].live == stats[1].live == 4 + 1 + 5  # v1 (2 new, 2 old), v15, v3
            assert stats[0].checksum == stats[1].checksum and len(stats[0].checksum) == 64
            assert not stats[1].catching_up
            got = await both.replicas[1].get([c.clip_id for c in new_v1] + ["v1:000004000", "v2:000000000",
                                                                             "v0:000000000", "v15:000000000"])
            assert [c.caption for c in got.clips] == ["re-encoded", "re-encoded", ""]
            assert sorted(got.missing_ids) == ["v0:000000000", "v1:000004000", "v2:000000000"]
        finally:
            await both.close()
            await peers.close()
            for running, servicer in ((a, peer), (b, b_servicer)):
                await running.server.stop(0)
                servicer.shard.get().close()

    asyncio.run(scenario())


# ---------------------------------------------------------------- reconciling only the ranges that differ

PER_RANGE = 10  # catch-up page size: b's ranges are then one video each (10 clips, ids v00..v19)


async def _pair_in_process(tmp: Path, add_peer=index_pb2_grpc.add_IndexServiceServicer_to_server):
    """a SERVING with 200 clips (20 videos of 10), and b holding the same clips, about to catch up
    from a: (a's servicer, a's server, b's servicer, b's server, a client of a as b's peer)."""
    a_servicer = IndexServicer("shard-0", Pending("opening", ShardIndex(tmp / "a")))
    a = await _server(a_servicer, serving=True, add=add_peer)
    b_servicer = IndexServicer("shard-0", Pending("opening", ShardIndex(tmp / "b")), CatchUp("shard-0"))
    b = await _server(b_servicer, serving=False)
    clips = [c for v in range(20) for c in _clips(f"v{v:02d}", PER_RANGE, seed=v)]
    for servicer in (a_servicer, b_servicer):
        servicer.shard.get().upsert([convert.record_from_proto(c) for c in clips])
    return a_servicer, a, b_servicer, b, ShardClient("peers", f"127.0.0.1:{a.port}", timeout_s=10)


async def _close(*pairs) -> None:
    for running, servicer in pairs:
        await running.server.stop(0)
        servicer.shard.get().close()


def _ranges_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("vidsearch_index_catchup_ranges_total",
                                     {"shard": "shard-0", "outcome": outcome}) or 0.0


def test_a_replica_that_missed_writes_reads_only_the_ranges_that_differ(tmp_path: Path) -> None:
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, peers = await _pair_in_process(tmp_path)
        shard_a, shard_b = a_servicer.shard.get(), b_servicer.shard.get()
        try:
            # Written to a alone while b was down; b's ranges are ("", v00:9000], (v00:9000, v01:9000], ...
            shard_a.upsert([convert.record_from_proto(c) for c in _clips("v02", 4, seed=7, caption="new")[3:]])
            shard_a.delete(clip_ids=["v07:000004000"])
            shard_a.delete(video_ids=["v05"])  # every clip of range 5: the peer has none left there
            shard_a.upsert([convert.record_from_proto(c) for c in _clips("v06", 3, seed=8, caption="new")[2:]])
            shard_a.upsert([convert.record_from_proto(c) for c in _clips("v10x", 1) + _clips("v99", 1)])
            before = _ranges_counted("equal"), _ranges_counted("differing")
            progress = await catch_up("shard-0", shard_b, b_servicer.catchup, peers, replica=1,
                                      alone_after_s=1, page_size=PER_RANGE,
                                      range_clips=PER_RANGE)

            assert shard_a.checksum() == shard_b.checksum()
            assert shard_b.stats()["live"] == 200 - 1 - 10 + 2
            # Ranges 2 and 6 (an overwrite), 5 (emptied), 7 (a delete), 11 (v10x sorts after v10:000009000)
            # and the open last one (v99) differ; 15 of 21 were not read.
            assert (progress.ranges_compared, progress.ranges_reconciled, progress.full_scan) == (21, 6, False)
            assert (_ranges_counted("equal") - before[0], _ranges_counted("differing") - before[1]) == (15, 6)
            # Each scan: the peer's clips in its ranges and the first one after them; ranges 5, 6 and 7 are
            # next to each other and read in one scan; the open range: v99 alone.
            assert progress.scanned == (10 + 1) + (0 + 10 + 9 + 1) + (11 + 1) + 1
            assert (progress.upserted, progress.deleted, progress.skipped) == (4, 11, 0)
            assert b_servicer.catchup.done
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


# Ranges of 10 clips, or by default as many as one Digest takes: here one per clip.
@pytest.mark.parametrize(("range_clips", "ranges"), [(PER_RANGE, 21), (0, 201)])
def test_a_replica_that_missed_nothing_reads_no_clip_of_its_peer(tmp_path: Path, range_clips: int,
                                                                 ranges: int) -> None:
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, peers = await _pair_in_process(tmp_path)
        try:
            b_servicer.shard.get().seal(wait=True)  # segmented otherwise than a: the content is what counts
            progress = await catch_up("shard-0", b_servicer.shard.get(), b_servicer.catchup, peers, replica=1,
                                      alone_after_s=1, range_clips=range_clips)
            assert (progress.ranges_compared, progress.ranges_reconciled, progress.scanned) == (ranges, 0, 0)
            assert a_servicer.shard.get().checksum() == b_servicer.shard.get().checksum()
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


# 13: the peer's count of the range's clips; 3: a count taken before live writes added 10 more.
@pytest.mark.parametrize("peer_clips", [13, 3])
def test_a_range_reconcile_touches_nothing_outside_its_range(tmp_path: Path, peer_clips: int) -> None:
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, peers = await _pair_in_process(tmp_path)
        shard_a, shard_b = a_servicer.shard.get(), b_servicer.shard.get()
        try:
            shard_a.delete(video_ids=["v03", "v04", "v06"])
            shard_a.upsert([convert.record_from_proto(c) for c in _clips("v04", 12, seed=5, caption="longer")])
            reconciler = Reconciler("shard-0", shard_b, b_servicer.catchup)
            # (v03:000009000, v05:000000000]: v04's 12 clips and v05's first one.
            await reconciler.reconcile(peers, IdRange("v03:000009000", "v05:000000000", peer_clips), page_size=5)

            assert reconciler.progress.after == "v05:000000000"
            assert (reconciler.progress.upserted, reconciler.progress.deleted) == (12, 0)  # v04's 10 over, 2 new
            assert reconciler.progress.scanned == 13 + 1  # and the first clip after the range
            assert [r.caption for r in shard_b.scan("v03:000009000", 12, with_vectors=False)] == ["longer"] * 12
            assert shard_b.stats()["live"] == 200 + 2  # v03 and v06, outside the range, are still there
            assert shard_b.digests(["v03:000009000", "v05:000000000"])[1] == \
                shard_a.digests(["v03:000009000", "v05:000000000"])[1]
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


def test_a_peer_without_digest_is_read_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, peers = await _pair_in_process(tmp_path, add_peer=_add_older_index)
        shard_a, shard_b = a_servicer.shard.get(), b_servicer.shard.get()
        try:
            with pytest.raises(Unsupported):
                await peers.digest(["v05"])
            shard_a.delete(video_ids=["v05"])
            progress = await catch_up("shard-0", shard_b, b_servicer.catchup, peers, replica=1,
                                      alone_after_s=1, page_size=PER_RANGE,
                                      range_clips=PER_RANGE)
            assert progress.full_scan and progress.ranges_compared == 0
            assert (progress.scanned, progress.deleted) == (190, 10)
            assert shard_a.checksum() == shard_b.checksum()
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


def test_a_replica_copies_the_writers_its_peer_fenced_while_it_was_down(tmp_path: Path) -> None:
    """A delete that fenced a stalled job reached a alone; once b caught up, b refuses that job's upsert too."""
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, peers = await _pair_in_process(tmp_path)
        shard_a, shard_b = a_servicer.shard.get(), b_servicer.shard.get()
        try:
            shard_a.delete(video_ids=["v03"], fence_writers=["stalled-job"])
            shard_b.delete(video_ids=[], fence_writers=["older-job"])  # b's own fences stay
            progress = await catch_up("shard-0", shard_b, b_servicer.catchup, peers, replica=1, alone_after_s=1,
                                      page_size=PER_RANGE, range_clips=PER_RANGE)
            assert progress.fences_copied == 1 and shard_b.fenced() == {"stalled-job", "older-job"}
            assert (await peers.stats(include_fences=True)).fenced_writers == ["stalled-job"]
            late = [convert.record_from_proto(c) for c in _clips("v03", 1, seed=3)]
            with pytest.raises(WrongState, match="'stalled-job' was fenced"):
                shard_b.upsert(late, writer="stalled-job")
            assert shard_a.checksum() == shard_b.checksum()
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


def test_at_open_a_replica_fences_what_any_answering_peer_fenced(tmp_path: Path) -> None:
    """Before its first write, a replica takes the fences of every peer that answers, SERVING or not
    (here b, itself catching up), and skips one that does not."""
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, _ = await _pair_in_process(tmp_path)
        shard_a, shard_b = a_servicer.shard.get(), b_servicer.shard.get()
        peers = ShardClient("peers", f"127.0.0.1:{b.port}|127.0.0.1:{free_port()}", timeout_s=10)
        try:
            shard_b.delete(video_ids=["v03"], fence_writers=["stalled-job"])
            assert await fences_at_open(shard_a, peers, timeout_s=2) == 1
            assert shard_a.fenced() == {"stalled-job"}
            assert await fences_at_open(shard_a, peers, timeout_s=2) == 0  # nothing new
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


def test_a_replica_that_holds_no_clip_reads_its_peer_whole_without_comparing(tmp_path: Path) -> None:
    async def scenario() -> None:
        a_servicer, a, b_servicer, b, peers = await _pair_in_process(tmp_path)
        shard_b = b_servicer.shard.get()
        try:
            shard_b.delete(video_ids=[f"v{v:02d}" for v in range(20)])  # as a lost volume holds nothing
            progress = await catch_up("shard-0", shard_b, b_servicer.catchup, peers, replica=1, alone_after_s=1)
            assert (progress.full_scan, progress.ranges_compared, progress.scanned) == (True, 0, 200)
            assert a_servicer.shard.get().checksum() == shard_b.checksum()
        finally:
            await peers.close()
            await _close((a, a_servicer), (b, b_servicer))

    asyncio.run(scenario())


# ---------------------------------------------------------------- replicas as processes

def _replica(tmp: Path, name: str, peer_port: int, port: int, replica: int, **env: str) -> ServiceProcess:
    return ServiceProcess("services.index", {
        "VIDSEARCH_INDEX_DATA_DIR": str(tmp / name), "VIDSEARCH_INDEX_SHARD_NAME": "shard-0",
        "VIDSEARCH_INDEX_PEERS": f"127.0.0.1:{peer_port}", "VIDSEARCH_INDEX_REPLICA": str(replica),
        "VIDSEARCH_INDEX_ALONE_AFTER_S": "1", **env,
    }, tmp / f"{name}.log", port=port, env_prefix="VIDSEARCH_INDEX").start()


def _pair(tmp: Path, **env_b: str) -> tuple[ServiceProcess, ServiceProcess]:
    port_a, port_b = free_port(), free_port()
    a = _replica(tmp, "a", port_b, port_a, 0)
    b = _replica(tmp, "b", port_a, port_b, 1, **env_b)
    a.wait_serving()
    b.wait_serving()
    return a, b


def _stats(address: str) -> index_pb2.StatsResponse:
    with grpc.insecure_channel(address) as channel:
        return index_pb2_grpc.IndexServiceStub(channel).Stats(index_pb2.StatsRequest(content_checksum=True), timeout=60)


def _write(target: str, quorum: int, write) -> None:
    async def go() -> None:
        shard = ShardClient("shard-0", target, timeout_s=30, write_quorum=quorum)
        try:
            await write(shard)
        finally:
            await shard.close()

    asyncio.run(go())


def _restart(proc: ServiceProcess, **env: str) -> ServiceProcess:
    """The same replica (port, data directory) started again, with ``env`` on top of its settings."""
    return ServiceProcess(proc.module, {**proc.env, **env}, proc.log_path, port=proc.port,
                          env_prefix="VIDSEARCH_INDEX").start()


def _missed_by_b(b: ServiceProcess, target: str, write, page_size: int) -> ServiceProcess:
    """Kills b, lets a alone take ``write`` (quorum 1), and restarts b, to catch up a Scan page of
    ``page_size`` clips at a time; returns the new b."""
    b.kill(signal.SIGKILL)
    _write(target, 1, write)
    return _restart(b, VIDSEARCH_INDEX_CATCHUP_PAGE_SIZE=str(page_size))


def _wait_catching_up(b: ServiceProcess, timeout: float = 60) -> None:
    """Until b has opened its shard and takes writes (it is catching up, not serving yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health_status(b.address, SERVICE, timeout=1) is not None:
            try:
                if _stats(b.address).catching_up:
                    return
            except grpc.RpcError:  # still opening its shard
                pass
        time.sleep(0.02)
    raise TimeoutError(f"b never started catching up:\n{b.log_tail()}")


def _wait_caught_up(b: ServiceProcess, timeout: float = 120) -> list[int | None]:
    """b's health until it reports SERVING, checking on the way that it never serves a read before."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = health_status(b.address, SERVICE, timeout=1)
        seen.append(status)
        if status == health_pb2.HealthCheckResponse.SERVING:
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"b never caught up:\n{b.log_tail()}")


@pytest.mark.slow
def test_a_replica_that_was_down_catches_up_before_it_serves(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    target = f"{a.address}|{b.address}"
    try:
        _write(target, 0, lambda s: s.upsert(_clips("both", 50)))
        b.kill(signal.SIGKILL)

        async def while_b_is_down(shard: ShardClient) -> None:
            await shard.upsert([c for v in range(20) for c in _clips(f"only-a-{v:02d}", 50)])
            await shard.upsert(_clips("both", 10, seed=3, caption="overwritten"))
            await shard.delete(video_ids=["only-a-05"])
            await shard.delete(clip_ids=["both:000049000"])

        _write(target, 1, while_b_is_down)  # acknowledged by a alone
        assert cli.main(["replicas", "--shards", target, "--timeout", "5"]) == 1  # b is down
        # One page per Scan message: the catch-up of ~1,000 clips takes long enough to watch.
        b = _restart(b, VIDSEARCH_INDEX_CATCHUP_PAGE_SIZE="5")
        seen = _wait_caught_up(b)
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen, "b served before catching up"
        sa, sb = _stats(a.address), _stats(b.address)
        assert sa.live == sb.live == 50 + 19 * 50 - 1
        assert sa.checksum == sb.checksum
        with grpc.insecure_channel(b.address) as channel:
            got = index_pb2_grpc.IndexServiceStub(channel).Get(index_pb2.GetRequest(
                clip_ids=["both:000000000", "only-a-05:000000000", "both:000049000", "only-a-19:000049000"]),
                timeout=10)
        assert [c.caption for c in got.clips] == ["overwritten", ""]
        assert sorted(got.missing_ids) == ["both:000049000", "only-a-05:000000000"]
        assert "caught up" in b.log_tail(200)
        assert "id ranges reconciled" in b.log_tail(200)  # by digests, not by a full scan
        assert cli.main(["replicas", "--shards", target]) == 0
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_a_replica_killed_mid_catch_up_ends_equal_after_restart(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    target = f"{a.address}|{b.address}"
    try:
        b = _missed_by_b(b, target, lambda s: s.upsert([c for v in range(40)
                                                        for c in _clips(f"video-{v:02d}", 50, seed=v)]), 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill b once it has copied part of a's 2,000 clips
            if health_status(b.address, timeout=1) is not None and _stats(b.address).live >= 200:
                break
            time.sleep(0.05)
        stats = _stats(b.address)
        assert stats.catching_up and stats.live < 2000, "b finished before it could be killed mid-catch-up"
        b = _missed_by_b(b, target, lambda s: s.delete(video_ids=["video-00", "video-39"]), 500)
        _wait_caught_up(b)
        sa, sb = _stats(a.address), _stats(b.address)
        assert sa.live == sb.live == 38 * 50
        assert sa.checksum == sb.checksum
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_a_shard_restarted_whole_after_replica_0_lost_its_volume_keeps_replica_1s_clips(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    try:
        _write(f"{a.address}|{b.address}", 0, lambda s: s.upsert(_clips("kept", 300)))
        checksum = _stats(b.address).checksum
        a.kill(signal.SIGKILL)
        b.kill(signal.SIGKILL)
        shutil.rmtree(tmp_path / "a")  # replica 0 comes back on an empty volume
        a, b = _restart(a), _restart(b)
        _wait_caught_up(a)
        b.wait_serving()
        for proc in (a, b):
            stats = _stats(proc.address)
            assert (stats.live, stats.checksum) == (300, checksum)
        # b served first (a had opened empty), and a copied b rather than b emptying itself from a.
        assert b.log_tail(400).count("serving without catching up") == 1
        assert a.log_tail(400).count("serving without catching up") == 1  # the first start only
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_writes_to_every_replica_go_on_while_one_catches_up_and_both_end_equal(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    target = f"{a.address}|{b.address}"
    try:
        b = _missed_by_b(b, target, lambda s: s.upsert([c for v in range(20)
                                                        for c in _clips(f"video-{v:02d}", 50, seed=v)]), 3)
        _wait_catching_up(b)

        async def live_writes(shard: ShardClient) -> int:
            """Overwrites, deletes and new clips across the whole id range, acknowledged by both
            replicas (the default quorum) while b copies a, until b serves."""
            acknowledged = 0
            for round_ in range(1000):
                if health_status(b.address, SERVICE, timeout=1) == health_pb2.HealthCheckResponse.SERVING:
                    break
                v = round_ % 20
                await shard.upsert(_clips(f"video-{v:02d}", 50, seed=100 + round_, caption=f"round {round_}")[::7])
                await shard.delete(clip_ids=[f"video-{(v + 7) % 20:02d}:{round_ % 50 * 1000:09d}"])
                await shard.upsert(_clips(f"new-{round_:03d}", 1))
                acknowledged += 3
            return acknowledged

        acknowledged = asyncio.run(_written(target, live_writes))
        assert acknowledged >= 30, "b caught up before the live writes could race it"
        _wait_caught_up(b)
        sa, sb = _stats(a.address), _stats(b.address)
        assert sa.live == sb.live and sa.checksum == sb.checksum
    finally:
        a.stop()
        b.stop()


async def _written(target: str, write):
    shard = ShardClient("shard-0", target, timeout_s=30)
    try:
        return await write(shard)
    finally:
        await shard.close()
