"""Fault tests: services killed, stopped, restarted or out of disk while clients and ingest use them.

Every test runs against the session's local stack (tests/system/conftest.py: separate processes on
loopback, a real redis-server) and leaves it whole again, which its last assertion checks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from bench.soak import Call, QueryMix, SearchLoad, noise_images
from services.common.errors import DependencyDown
from services.common.index_client import ShardClient, ShardSkipped
from services.common.readiness import Pending
from services.common.server import Registration, start_server
from services.common.settings import ServerSettings
from services.index.servicer import IndexServicer
from services.index.shard import ShardIndex
from services.media.frames import FrameSampler
from tests.media import make_video
from tests.procs import ServiceProcess
from tests.system.stack import SystemStack, expected_clip_ids, ids_on_each_shard
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.05) -> object:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)
    return result


def assert_whole(system: SystemStack) -> None:
    """Every service reports SERVING and a search over all shards is complete again."""
    wait_until(lambda: set(system.serving().values()) == {SERVING}, 60, "every service to be SERVING")
    gateway = system.gateway()

    def whole() -> bool:
        reply = gateway.Search(gateway_pb2.SearchRequest(clip_id=system.clip_ids[0], top_k=5), timeout=10)
        return not reply.partial

    wait_until(whole, 15, "complete (not partial) search results", poll_s=0.2)


def describe(calls: list[Call]) -> str:
    return "; ".join(f"{c.kind} {c.code} {c.seconds:.2f}s {c.details[:120]}" for c in calls[:5])


# ------------------------------------------------------------------------ index shard killed mid-ingest


def test_a_shard_killed_mid_ingest_loses_no_acknowledged_clip(system: SystemStack) -> None:
    """SIGKILL the shard an ingest of 2,000+ clips is writing to, then restart it: what the shard had
    acknowledged is still there and searchable, the worker's retry finishes the job, and every clip
    is stored exactly once."""
    stack = system.stack
    video_id = ids_on_each_shard("big", 1)[1]
    shard = system.shard_of(video_id)
    # 1 fps and 1 s windows: one decoded frame per clip, so 2,000 clips decode and encode in seconds.
    path = make_video(system.library / "big.mp4", seconds=2010, fps=1, size=(32, 32), gop=2, pattern="testsrc")
    expected = expected_clip_ids(video_id, FrameSampler().probe(path).duration_s, 1.0)
    assert len(expected) >= 2000
    index, api = system.index(shard), system.ingest_api()
    live_before = index.Stats(index_pb2.StatsRequest(), timeout=10).live
    job_id = api.SubmitVideo(ingest_pb2.SubmitVideoRequest(
        uri=str(path), video_id=video_id, segment=ingest_pb2.SegmentOptions(window_seconds=1.0)), timeout=30).job_id

    wait_until(lambda: index.Stats(index_pb2.StatsRequest(), timeout=10).live - live_before >= 600, 180,
               "600 clips to be written")
    acked = [c.clip_id for c in index.Get(index_pb2.GetRequest(clip_ids=expected), timeout=30).clips]
    stack.shards[shard].kill(signal.SIGKILL)
    assert 600 <= len(acked) < len(expected), "the kill must land in the middle of the ingest"

    def attempt_failed() -> bool:
        job = api.GetJob(ingest_pb2.GetJobRequest(job_id=job_id), timeout=10).job
        assert job.state != ingest_pb2.JOB_STATE_FAILED, job.error
        return job.state == ingest_pb2.JOB_STATE_QUEUED or job.attempts >= 2

    wait_until(attempt_failed, 60, "the worker to see its write fail and requeue the job")
    stack.restart_shard(shard)

    # Straight after the restart (the retry starts over from the first clip): all acknowledged
    # clips are back, and a search for each sampled clip's own vector finds it.
    got = index.Get(index_pb2.GetRequest(clip_ids=acked, include_vectors=True), timeout=30)
    assert not got.missing_ids, f"{len(got.missing_ids)} of {len(acked)} acknowledged clips were lost"
    for clip in got.clips[:: max(1, len(got.clips) // 20)]:
        hits = index.Search(index_pb2.SearchRequest(
            queries=[clip.vector], top_k=1, filter=common_pb2.SearchFilter(
                video_ids=[video_id], min_start_seconds=clip.start_seconds, max_end_seconds=clip.end_seconds)),
            timeout=10).results[0].hits
        assert [h.clip.clip_id for h in hits] == [clip.clip_id]

    final = [u.job for u in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), timeout=300)][-1]
    assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.attempts >= 2, "the job must have been finished by a retry"
    assert final.clips_done == final.clips_total == len(expected)
    assert not index.Get(index_pb2.GetRequest(clip_ids=expected), timeout=30).missing_ids
    # Exactly once: the retry overwrote what the first attempt wrote, nothing is stored twice.
    assert index.Stats(index_pb2.StatsRequest(), timeout=10).live - live_before == len(expected)
    reply = system.gateway().Search(gateway_pb2.SearchRequest(clip_id=acked[0], top_k=5), timeout=10)
    assert len(reply.hits) == 5 and not reply.partial
    assert_whole(system)


# ------------------------------------------------------------------------------ redis killed under load


def test_redis_killed_while_eight_clients_search(system: SystemStack) -> None:
    """The query cache is an optimisation: without Redis every search still succeeds, and once Redis
    is back the gateway caches again without a restart."""
    stack = system.stack
    assert stack.redis is not None
    mix = QueryMix(images=noise_images(16, seed=2), clip_ids=system.clip_ids, text_pool=32)
    with SearchLoad(stack.gateway.address, mix, clients=8, timeout_s=10) as load:
        load.wait_for(48)
        stack.redis.stop(signal.SIGKILL)
        killed = time.monotonic()
        try:
            load.wait_for(96, timeout_s=120, since=killed)
        finally:
            stack.redis.start()
        restarted = time.monotonic()
        load.wait_for(48, since=restarted)
    calls = load.calls()
    failed = [c for c in calls if not c.ok]
    assert not failed, f"{len(failed)} of {len(calls)} searches failed: {describe(failed)}"
    assert len([c for c in calls if killed <= c.started < restarted]) >= 96
    assert not any(c.partial for c in calls)

    gateway = system.gateway()
    query = gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="cached once redis is back"), top_k=3)

    def cached() -> bool:
        gateway.Search(query, timeout=10)
        return gateway.Search(query, timeout=10).timings.cache_hit

    wait_until(cached, 30, "the gateway to cache in Redis again", poll_s=0.5)
    assert_whole(system)


# ----------------------------------------------------------------------------- encoder restarted under load


def test_encoder_restart_fails_only_searches_in_its_window_with_unavailable(system: SystemStack) -> None:
    """A rolling restart of the encoder: searches that need it fail with UNAVAILABLE (retryable) only
    while it is away, clip-id searches never fail, and the same gateway encodes again afterwards."""
    stack = system.stack
    # Every text and image is new, so each of those searches has to reach the encoder.
    mix = QueryMix(images=noise_images(3000, seed=3), clip_ids=system.clip_ids, text_pool=None)
    # The gateway's channel seeing the new process SERVING: its next reconnect attempt comes within the
    # 2 s backoff cap (services.common.server.client_options), plus the health check's answer.
    slack_s = 2.5
    with SearchLoad(stack.gateway.address, mix, clients=8, timeout_s=10, think_s=0.01) as load:
        load.wait_for(48)
        stopped = time.monotonic()
        stack.encoder.stop()  # SIGTERM: NOT_SERVING, in-flight calls finish, the process exits
        stack.restart_encoder()
        serving = time.monotonic()
        after = load.wait_for(48, since=serving + slack_s, timeout_s=120)
    calls = load.calls()
    failed = [c for c in calls if not c.ok]
    assert {c.code for c in failed} <= {"UNAVAILABLE"}, describe([c for c in failed if c.code != "UNAVAILABLE"])
    assert all(c.kind != "clip" for c in failed), describe(failed)
    outside = [c for c in failed if c.ended < stopped or c.started > serving + slack_s]
    assert not outside, f"failures outside the restart window: {describe(outside)}"
    assert all(c.ok for c in after), describe([c for c in after if not c.ok])
    assert any(c.kind == "text" and not c.cache_hit for c in after), "no search reached the new encoder"
    assert stack.gateway.proc.poll() is None
    assert_whole(system)


def test_a_service_up_but_not_serving_gets_no_calls_from_its_clients(tmp_path: Path) -> None:
    """The window the restart test above can only hit by chance, made deterministic: a shard that
    listens but is not SERVING yet (still opening; a restarted encoder still loading its model is
    the same) is reached by a plain channel, which gets UNAVAILABLE "still opening" (retryable,
    never FAILED_PRECONDITION), but the services' own clients make no call until it reports
    SERVING, and then use it at once."""

    async def scenario() -> None:
        servicer = IndexServicer("shard-x", Pending("index shard-x is still opening"))
        running = await start_server(ServerSettings(grace_seconds=0), [Registration(
            index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, "vidsearch.index.v1.IndexService")])
        address = f"127.0.0.1:{running.port}"
        client = ShardClient("shard-x", address, timeout_s=5)
        try:
            async with grpc.aio.insecure_channel(address) as plain:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await index_pb2_grpc.IndexServiceStub(plain).Stats(index_pb2.StatsRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "still opening" in err.value.details()
            with pytest.raises(DependencyDown, match="UNAVAILABLE") as down:
                await client.stats()
            assert "still opening" not in str(down.value), "the call reached a server that is not SERVING"
            servicer.shard.set(await asyncio.to_thread(ShardIndex, tmp_path / "shard"))
            await running.set_serving(True)
            assert (await client.stats()).shard == "shard-x"
            # Draining on SIGTERM looks the same: once health says NOT_SERVING, calls stop going there.
            await running.set_serving(False)
            for _ in range(40):
                try:
                    await client.stats()
                except DependencyDown as exc:
                    assert "UNAVAILABLE" in str(exc)
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the client kept calling a server that is not SERVING")
        finally:
            await client.close()
            await running.server.stop(0)
            if servicer.shard.ready:
                servicer.shard.get().close()

    asyncio.run(scenario())


def test_a_shard_that_went_away_is_skipped_without_a_call_and_used_again_once_back(tmp_path: Path) -> None:
    """The gateway's shard client after its shard stops: the search in flight fails UNAVAILABLE, the
    next ones are skipped without a call (``ShardSkipped``: channel down, breaker open) instead of
    being retried, and once a server listens on the port again the breaker's probe closes it."""

    async def open_shard(port: int) -> tuple:
        servicer = IndexServicer("shard-y", Pending("index shard-y is still opening"))
        servicer.shard.set(await asyncio.to_thread(ShardIndex, tmp_path / "shard"))
        running = await start_server(ServerSettings(port=port, grace_seconds=0), [Registration(
            index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, "vidsearch.index.v1.IndexService")])
        await running.set_serving(True)
        return running, servicer

    async def scenario() -> None:
        running, servicer = await open_shard(0)
        port = running.port
        client = ShardClient("shard-y", f"127.0.0.1:{port}", timeout_s=5)
        query = np.ones((1, 8), np.float32)
        try:
            assert len((await client.search(query, 3)).results) == 1
            await running.server.stop(0)
            servicer.shard.get().close()
            skipped = 0
            for _ in range(50):
                try:
                    await client.search(query, 3)
                except ShardSkipped:
                    skipped += 1
                except DependencyDown as exc:
                    assert "UNAVAILABLE" in str(exc)
                await asyncio.sleep(0.01)
            assert skipped >= 45, f"only {skipped} of 50 searches skipped the stopped shard"
            running, servicer = await open_shard(port)
            for _ in range(200):  # reconnect backoff (<= 2 s) plus the breaker's cooldown (<= 2 s)
                try:
                    await client.search(query, 3)
                    break
                except ShardSkipped:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the shard was never used again after it came back")
        finally:
            await client.close()
            await running.server.stop(0)
            servicer.shard.get().close()

    asyncio.run(scenario())


def submit_forty_clips(system: SystemStack, api, prefix: str) -> tuple[str, list[str], int]:
    """Submits a 40 s video as ``<prefix>-video`` in 1 s clips: the job id, the clip ids it must make,
    and how many clips its shard held before."""
    video_id = f"{prefix}-video"
    path = make_video(system.library / f"{prefix}.mp4", seconds=40, fps=4, size=(64, 64))
    expected = expected_clip_ids(video_id, FrameSampler().probe(path).duration_s, 1.0)
    live_before = system.index(system.shard_of(video_id)).Stats(index_pb2.StatsRequest(), timeout=10).live
    job_id = api.SubmitVideo(ingest_pb2.SubmitVideoRequest(
        uri=str(path), video_id=video_id, segment=ingest_pb2.SegmentOptions(window_seconds=1.0)), timeout=30).job_id
    return job_id, expected, live_before


# ------------------------------------------------------------------------------- ingest worker killed


def test_an_ingest_worker_killed_mid_job_completes_the_job_exactly_once(system: SystemStack) -> None:
    """SIGKILL a standalone worker half-way through a job: a second worker takes it over after the
    claim timeout and the job ends SUCCEEDED once, with every clip stored once."""
    stack = system.stack
    prefix = f"killed{uuid.uuid4().hex[:6]}"
    # Its own queue (key prefix), an API server without worker tasks, and standalone workers that
    # encode one clip per call, so the job is slow enough to be caught half-way.
    settings = {"key_prefix": prefix, "workers": 0, "claim_idle_ms": 1500, "encode_batch_clips": 1,
                "decode_chunk_clips": 2, "decode_processes": 1}
    server = stack.ingest_process(log_name=f"{prefix}-api", **settings).start()
    first = stack.ingest_process("services.ingest.worker", log_name=f"{prefix}-worker-1", **settings)
    second = stack.ingest_process("services.ingest.worker", log_name=f"{prefix}-worker-2", **settings)
    index = system.index(system.shard_of(f"{prefix}-video"))
    try:
        server.wait_serving(timeout=60)
        first.start()
        api = system.ingest_api(server.address)
        job_id, expected, live_before = submit_forty_clips(system, api, prefix)
        watch = api.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), timeout=120)
        for update in watch:
            if update.job.clips_done >= 4:
                break
        first.kill(signal.SIGKILL)
        watch.cancel()
        job = api.GetJob(ingest_pb2.GetJobRequest(job_id=job_id), timeout=10).job
        assert job.state == ingest_pb2.JOB_STATE_RUNNING and 4 <= job.clips_done < len(expected)
        second.start()
        updates = [u.job for u in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), timeout=180)]
    finally:
        for proc in (first, second, server):
            proc.stop()
    final = updates[-1]
    assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.attempts == 2 and final.clips_done == final.clips_total == len(expected)
    assert [u.state for u in updates].count(ingest_pb2.JOB_STATE_SUCCEEDED) == 1
    assert not index.Get(index_pb2.GetRequest(clip_ids=expected), timeout=10).missing_ids
    assert index.Stats(index_pb2.StatsRequest(), timeout=10).live - live_before == len(expected)
    client = system.redis()
    assert client.xpending(f"{prefix}:ingest:jobs", "workers")["pending"] == 0
    assert not [d for _, d in client.xrange(f"{prefix}:ingest:dead") if d.get("job_id") == job_id]
    # Settled exactly once: only the second worker logged the job's success.
    logs = {p.log_path.name: p.log_path.read_text(errors="replace") for p in (first, second)}
    settled = {name: text.count(f"job {job_id} succeeded") for name, text in logs.items()}
    assert settled == {first.log_path.name: 0, second.log_path.name: 1}, settled
    assert_whole(system)


# ----------------------------------------------------------------------------- redis killed mid-job


def test_redis_killed_mid_ingest_job_finishes_it_exactly_once(system: SystemStack) -> None:
    """SIGKILL Redis (AOF on, fsync always) while a job is writing clips, start it again: the job
    record and the queue come back from the AOF, the job is taken up again and ends SUCCEEDED once,
    with every clip stored once."""
    stack = system.stack
    assert stack.redis is not None
    prefix = f"redis{uuid.uuid4().hex[:6]}"
    server = stack.ingest_process(log_name=f"{prefix}-api", key_prefix=prefix, workers=1, claim_idle_ms=1500,
                                  encode_batch_clips=1, decode_chunk_clips=2, decode_processes=1)
    index = system.index(system.shard_of(f"{prefix}-video"))
    try:
        server.start().wait_serving(timeout=60)
        api = system.ingest_api(server.address)
        job_id, expected, live_before = submit_forty_clips(system, api, prefix)

        def job() -> ingest_pb2.Job:
            return api.GetJob(ingest_pb2.GetJobRequest(job_id=job_id), timeout=10).job

        wait_until(lambda: job().clips_done >= 4, 120, "the job to write its first clips")
        stack.redis.stop(signal.SIGKILL)
        time.sleep(1.0)  # the worker's progress reports (and the API) fail meanwhile
        stack.redis.start()

        def final() -> ingest_pb2.Job | None:
            try:
                current = job()
            except grpc.RpcError:
                return None
            return current if current.state in (ingest_pb2.JOB_STATE_SUCCEEDED, ingest_pb2.JOB_STATE_FAILED) else None

        done = wait_until(final, 180, "the job to finish after Redis came back", poll_s=0.5)
    finally:
        server.stop()
    assert done.state == ingest_pb2.JOB_STATE_SUCCEEDED, done.error
    assert done.clips_done == done.clips_total == len(expected)
    assert not index.Get(index_pb2.GetRequest(clip_ids=expected), timeout=10).missing_ids
    assert index.Stats(index_pb2.StatsRequest(), timeout=10).live - live_before == len(expected)
    assert server.log_path.read_text(errors="replace").count(f"job {job_id} succeeded") == 1
    assert_whole(system)


# --------------------------------------------------------------------------- one of four shards stopped


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_one_of_four_shards_down_gives_partial_results_within_the_deadline(system: SystemStack, how: str) -> None:
    """A dead shard (SIGKILL: connections refused) or a frozen one (SIGSTOP: connections open, no
    answers): every search still returns before its deadline, flagged partial and naming the shard.
    The gateway skips the shard instead of waiting for it (searches are not retried, its breaker
    opens): at most the searches in flight when it froze and the next wave wait out their deadline.
    Once the shard is back, the breaker's probe lets searches use it again (``assert_whole``)."""
    stack = system.stack
    victim = 2
    deadline_s = 2.0
    # A clip-id search reads the clip's vector from its own shard, so it cannot be answered while
    # that shard is down (UNAVAILABLE); the mix uses clips that live on the other three.
    others = [c for v, clips in system.videos.items() if system.shard_of(v) != victim for c in clips]
    mix = QueryMix(images=noise_images(16, seed=4), clip_ids=others, text_pool=32)
    proc = stack.shards[victim].proc
    with SearchLoad(stack.gateway.address, mix, clients=8, timeout_s=deadline_s) as load:
        load.wait_for(24)
        if how == "killed":
            stack.shards[victim].kill(signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGSTOP)
        down = time.monotonic()
        try:
            load.wait_for(64, since=down, timeout_s=120)
        finally:
            if how == "killed":
                stack.restart_shard(victim)
            else:
                os.kill(proc.pid, signal.SIGCONT)
            back = time.monotonic()
    calls = load.calls()
    failed = [c for c in calls if not c.ok]
    assert not failed, f"{len(failed)} searches failed: {describe(failed)}"
    assert all(c.seconds < deadline_s for c in calls)
    during = [c for c in calls if down <= c.started and c.ended <= back]
    assert len(during) >= 64
    assert all(c.partial and c.failed_shards == (f"shard-{victim}",) for c in during), describe(during)
    waited = [c for c in during if c.seconds > deadline_s / 2]
    assert len(waited) <= 2 * load.clients, f"{len(waited)} of {len(during)} searches waited for the dead shard"
    assert_whole(system)


# --------------------------------------------------------------------------------------- shard disk full


def _clips(video: str, n: int, start: int, rng: np.random.Generator, model: str) -> list[common_pb2.ClipRecord]:
    vecs = rng.normal(size=(n, 64)).astype(np.float32)
    return [common_pb2.ClipRecord(
        clip_id=f"{video}:{(start + i) * 1000:09d}", video_id=video, start_seconds=float(start + i),
        end_seconds=float(start + i + 1), vector=common_pb2.Vector(values=v), model_id=model,
        caption="x" * 200, metadata={"source_uri": f"file:///library/{video}.mp4"})
        for i, v in enumerate(vecs.tolist())]


def _start_full_shard(tmp: Path, quota: int) -> ServiceProcess:
    proc = ServiceProcess("services.index", {
        "VIDSEARCH_INDEX_DATA_DIR": str(tmp / "shard"), "VIDSEARCH_INDEX_SHARD_NAME": "shard-quota",
        "VIDSEARCH_INDEX_MAX_STORE_BYTES": str(quota)}, tmp / "shard.log", env_prefix="VIDSEARCH_INDEX").start()
    proc.wait_serving()
    return proc


def test_a_full_disk_refuses_upserts_loses_nothing_and_recovers(tmp_path: Path) -> None:
    """The shard's store hits its disk quota: the write that does not fit is refused whole with
    RESOURCE_EXHAUSTED, everything acknowledged stays (also across a SIGKILL), reads go on, and
    writes succeed again once space is freed or the quota is raised."""
    rng = np.random.default_rng(0)
    proc = _start_full_shard(tmp_path, 256 * 1024)
    acked: list[str] = []
    try:
        with grpc.insecure_channel(proc.address) as channel:
            shard = index_pb2_grpc.IndexServiceStub(channel)
            refused = None
            for batch in range(200):
                clips = _clips(f"fill{batch}", 20, 0, rng, "model-quota")
                try:
                    shard.Upsert(index_pb2.UpsertRequest(clips=clips), timeout=30)
                except grpc.RpcError as err:
                    refused = (err, clips)
                    break
                acked += [c.clip_id for c in clips]
            assert refused is not None, "the quota was never reached"
            err, lost = refused
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
            assert "full" in err.details() and "nothing was written" in err.details()
            assert len(acked) >= 100
            # The refused batch left no trace; everything before it is stored and searchable.
            got = shard.Get(index_pb2.GetRequest(clip_ids=acked + [c.clip_id for c in lost]), timeout=30)
            assert list(got.missing_ids) == [c.clip_id for c in lost]
            stats = shard.Stats(index_pb2.StatsRequest(), timeout=10)
            assert stats.live == stats.records == len(acked)
            query = common_pb2.Vector(values=rng.normal(size=64).tolist())
            assert len(shard.Search(index_pb2.SearchRequest(queries=[query], top_k=3), timeout=10).results[0].hits) == 3
            with pytest.raises(grpc.RpcError) as again:
                shard.Upsert(index_pb2.UpsertRequest(clips=lost), timeout=30)
            assert again.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Space comes back when clips are deleted: the refused batch now fits.
            freed = shard.Delete(index_pb2.DeleteRequest(video_ids=["fill0", "fill1", "fill2"]), timeout=30).deleted
            assert freed == 60
            assert shard.Upsert(index_pb2.UpsertRequest(clips=lost), timeout=30).upserted == len(lost)
            acked = acked[60:] + [c.clip_id for c in lost]
        proc.kill(signal.SIGKILL)
        # The operator grows the volume: the restarted shard has everything and takes new writes.
        proc = _start_full_shard(tmp_path, 4 * 1024 * 1024)
        with grpc.insecure_channel(proc.address) as channel:
            shard = index_pb2_grpc.IndexServiceStub(channel)
            assert not shard.Get(index_pb2.GetRequest(clip_ids=acked), timeout=30).missing_ids
            assert shard.Stats(index_pb2.StatsRequest(), timeout=10).live == len(acked)
            more = _clips("after", 100, 0, rng, "model-quota")
            assert shard.Upsert(index_pb2.UpsertRequest(clips=more), timeout=30).upserted == 100
    finally:
        proc.stop()


# ------------------------------------------------------------------- one of two encoder copies killed


def test_with_two_encoder_copies_killing_one_fails_no_search(tmp_path: Path, system_checkpoint: Path) -> None:
    """Gateway and ingest address every copy of the encoder (round-robin); SIGKILL of one copy while
    eight clients send text searches that all need the encoder (no text repeats) fails none of them."""
    from services.local.stack import LocalStack, StackConfig

    config = StackConfig(data_dir=tmp_path / "stack", checkpoint=system_checkpoint, n_shards=1, encoders=2,
                         with_ingest=False, use_redis=False, log_level="WARNING")
    with LocalStack(config) as stack:
        assert stack.describe()["encoder"] == f"ipv4:{stack.encoder.address},{stack.encoder_spares[0].address}"
        mix = QueryMix(kinds=("text",), text_pool=None)
        with SearchLoad(stack.gateway.address, mix, clients=8, timeout_s=10, think_s=0.01) as load:
            load.wait_for(48)
            stack.encoder.kill()
            killed = time.monotonic()
            during = load.wait_for(96, since=killed)
            stack.restart_encoder(copy=0)
            back = time.monotonic()
            load.wait_for(48, since=back)
        calls = load.calls()
        failed = [c for c in calls if not c.ok]
        assert not failed, describe(failed)
        assert all(not c.cache_hit for c in during), "text searches during the kill came from the cache"
