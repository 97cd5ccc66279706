"""The job queue and the worker's settling rules against a real Redis (the pipeline is a stand-in).

These cover what the ingest service promises about jobs: claims are fenced, stalled workers are
taken over, transient errors retry with backoff, permanent ones fail at once, poison jobs end as
dead letters, cancellation removes what was written, and the worker survives all of it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.common.clip_ids import thumbnail_key
from services.common.errors import DependencyDown, InvalidInput, NotFound
from services.common.generations import GenerationPool
from services.ingest import jobs
from services.ingest.jobs import ClaimKind, JobCancelled, JobEvents, JobQueue, Renewal, Superseded
from services.ingest.pipeline import Outcome
from services.ingest.records import JobSpec, JobStage, JobState, VideoMeta
from services.ingest.settings import IngestSettings
from services.ingest.worker import Runtime
from services.media.store import MediaStore

pytestmark = pytest.mark.slow


def _queue(redis_url: str) -> JobQueue:
    return JobQueue(jobs.connect(redis_url), f"test-{uuid.uuid4().hex[:8]}", ttl_s=600)


def _spec(video_id: str = "vid") -> JobSpec:
    return JobSpec(video_id, "file:///archive/x.mp4", VideoMeta(title="t"))


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def test_watch_streams_every_change_and_ends_when_final(redis_url: str) -> None:
    async def scenario() -> None:
        queue = _queue(redis_url)
        await queue.ensure_group()
        events = JobEvents(queue.redis, queue.events)
        hub = asyncio.create_task(events.run())
        job = await queue.submit(_spec())
        seen: list[tuple[str, int]] = []

        async def watch() -> None:
            async for update in queue.watch(job.job_id, events):
                seen.append((update.state.value, update.clips_done))

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.1)
        delivery = await queue.next_delivery("w1", 60_000, 100)
        claim = await queue.claim(delivery, "w1", 3)
        for done in (1, 2, 3):
            await queue.update(job.job_id, claim.token, {"clips_done": done, "clips_total": 3})
            await asyncio.sleep(0.05)
        assert await queue.finish(delivery, claim.token, JobState.SUCCEEDED) is JobState.SUCCEEDED
        await asyncio.wait_for(watcher, 5)
        assert seen[0] == ("QUEUED", 0)
        assert ("RUNNING", 1) in seen and ("RUNNING", 2) in seen and ("RUNNING", 3) in seen
        assert seen[-1] == ("SUCCEEDED", 3)
        # Without the event hub the same stream comes from polling, and a final job ends it at once.
        assert [j.state async for j in queue.watch(job.job_id)] == [JobState.SUCCEEDED]
        assert await queue.redis.xlen(queue.stream) == 0  # settled entries leave the stream
        hub.cancel()
        await queue.redis.aclose()

    run(scenario)


def test_a_stalled_worker_is_taken_over_and_fenced_out(redis_url: str) -> None:
    async def scenario() -> None:
        queue = _queue(redis_url)
        await queue.ensure_group()
        job = await queue.submit(_spec())
        first = await queue.next_delivery("w1", 60_000, 100)
        claim1 = await queue.claim(first, "w1", 5)
        await queue.update(job.job_id, claim1.token, {"clips_total": 4}, ["vid:000000000"])
        # w1 renews its claim: nobody may take the job while it does.
        for _ in range(4):
            await asyncio.sleep(0.1)
            assert await queue.heartbeat(first, claim1.token, "w1") is Renewal.RENEWED
            assert await queue.next_delivery("w2", 300, 10) is None
        # w1 stalls; after the idle timeout w2 takes the same entry over.
        await asyncio.sleep(0.4)
        second = await queue.next_delivery("w2", 300, 10)
        assert second == first
        claim2 = await queue.claim(second, "w2", 5)
        assert claim2.kind is ClaimKind.RUN and claim2.attempts == 2
        assert "stopped mid-job" in claim2.last_error
        # The stalled worker can no longer renew, update, requeue or settle the job.
        assert await queue.heartbeat(first, claim1.token, "w1") is Renewal.LOST
        with pytest.raises(Superseded):
            await queue.update(job.job_id, claim1.token, {"clips_done": 1})
        with pytest.raises(Superseded):
            await queue.requeue(first, claim1.token, 0.0, "late")
        with pytest.raises(Superseded):
            await queue.finish(first, claim1.token, JobState.SUCCEEDED)
        assert (await queue.get(job.job_id)).state is JobState.RUNNING
        assert await queue.finish(second, claim2.token, JobState.SUCCEEDED) is JobState.SUCCEEDED
        assert (await queue.redis.xpending(queue.stream, jobs.GROUP))["pending"] == 0
        assert await queue.written_clips(job.job_id) == []  # success forgets the written set
        await queue.redis.aclose()

    run(scenario)


def test_requeued_jobs_wait_out_their_backoff(redis_url: str) -> None:
    async def scenario() -> None:
        queue = _queue(redis_url)
        await queue.ensure_group()
        job = await queue.submit(_spec())
        delivery = await queue.next_delivery("w1", 60_000, 100)
        claim = await queue.claim(delivery, "w1", 5)
        await queue.requeue(delivery, claim.token, 0.4, "encoder unavailable")
        waiting = await queue.get(job.job_id)
        assert waiting.state is JobState.QUEUED and waiting.attempts == 1
        assert await queue.promote_due() == 0
        assert await queue.next_delivery("w1", 60_000, 10) is None
        await asyncio.sleep(0.45)
        assert await queue.promote_due() == 1
        again = await queue.next_delivery("w1", 60_000, 100)
        assert again is not None and again.job_id == job.job_id and again.entry_id != delivery.entry_id
        claim = await queue.claim(again, "w1", 5)
        assert claim.attempts == 2 and claim.last_error == "encoder unavailable"
        await queue.redis.aclose()

    run(scenario)


def test_attempts_are_bounded_even_when_workers_keep_dying(redis_url: str) -> None:
    async def scenario() -> None:
        queue = _queue(redis_url)
        await queue.ensure_group()
        await queue.submit(_spec())
        claims = []
        for i in range(3):  # each "worker" claims the job and dies without a word
            delivery = await queue.next_delivery(f"w{i}", 300, 100)
            claims.append(await queue.claim(delivery, f"w{i}", 2))
            await asyncio.sleep(0.35)
        assert [c.kind for c in claims] == [ClaimKind.RUN, ClaimKind.RUN, ClaimKind.EXHAUSTED]
        assert claims[-1].attempts == 2 and "w1#2 stopped mid-job" in claims[-1].last_error
        await queue.finish(delivery, "", JobState.FAILED, "gave up", dead_reason="gave up")
        job = await queue.get(delivery.job_id)
        assert job.state is JobState.FAILED and job.attempts == 2
        assert [d["attempts"] for d in await queue.dead_letters()] == ["2"]
        await queue.redis.aclose()

    run(scenario)


def test_cancel(redis_url: str) -> None:
    async def scenario() -> None:
        queue = _queue(redis_url)
        await queue.ensure_group()
        queued = await queue.submit(_spec("a"))
        running = await queue.submit(_spec("b"))
        assert (await queue.cancel(queued.job_id)).state is JobState.CANCELLED
        first = await queue.next_delivery("w1", 60_000, 100)
        claim = await queue.claim(first, "w1", 3)
        assert claim.kind is ClaimKind.FINAL and claim.state is JobState.CANCELLED
        await queue.finish(first, "", JobState.CANCELLED)
        second = await queue.next_delivery("w1", 60_000, 100)
        claim = await queue.claim(second, "w1", 3)
        cancelled = await queue.cancel(running.job_id)
        assert cancelled.state is JobState.CANCELLED and cancelled.stage is JobStage.DONE
        with pytest.raises(JobCancelled):
            await queue.update(running.job_id, claim.token, {"clips_done": 1}, ["b:000000000"])
        # Finishing never overwrites the cancellation.
        assert await queue.finish(second, claim.token, JobState.SUCCEEDED) is JobState.CANCELLED
        assert (await queue.cancel(running.job_id)).state is JobState.CANCELLED  # final: unchanged
        with pytest.raises(NotFound):
            await queue.cancel("no-such-job")
        await queue.redis.aclose()

    run(scenario)


def test_fencing_a_video_stops_its_jobs_and_waits_for_the_worker_to_let_go(redis_url: str) -> None:
    """What DeleteVideo does first: every unfinished job of the video is cancelled (so its worker
    can record no more clip ids, which it must do before every write) and the fence returns once no
    worker holds one; a worker that does not let go (dead, stalled) is named after the timeout."""

    async def scenario() -> None:
        queue = _queue(redis_url)
        await queue.ensure_group()
        running = await queue.submit(_spec("doomed"))
        delivery = await queue.next_delivery("w1", 60_000, 100)
        claim = await queue.claim(delivery, "w1", 5)
        await queue.update(running.job_id, claim.token, {"clips_total": 4}, ["doomed:000000000"])
        queued = await queue.submit(_spec("doomed"))
        other = await queue.submit(_spec("kept"))
        assert await queue.fence_video("doomed", timeout_s=0.3) == [running.job_id]
        assert (await queue.get(running.job_id)).state is JobState.CANCELLED
        assert (await queue.get(queued.job_id)).state is JobState.CANCELLED
        assert (await queue.get(other.job_id)).state is JobState.QUEUED
        with pytest.raises(JobCancelled):  # the check a worker makes before each write
            await queue.update(running.job_id, claim.token, {}, ["doomed:000001000"])
        # The worker settles (after removing what it wrote): the owner is cleared, the fence opens.
        again = await queue.submit(_spec("doomed"))
        fence = asyncio.ensure_future(queue.fence_video("doomed", timeout_s=10))
        await asyncio.sleep(0.2)
        assert not fence.done(), "the fence must wait for the worker still holding its job"
        assert await queue.finish(delivery, claim.token, JobState.CANCELLED) is JobState.CANCELLED
        assert await asyncio.wait_for(fence, 5) == []
        assert (await queue.get(again.job_id)).state is JobState.CANCELLED
        assert await queue.fence_video("never-submitted", timeout_s=1) == []
        await queue.redis.aclose()

    run(scenario)


# -- the worker's settling rules, with a stand-in pipeline ----------------------------------------


class FakeShard:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, clip_ids=(), video_ids=(), timeout_s=None) -> int:
        self.deleted.extend(clip_ids)
        return len(clip_ids)


class FakeShards:
    def __init__(self) -> None:
        self.shard = FakeShard()

    def for_video(self, video_id: str) -> FakeShard:
        return self.shard


class ScriptedPipeline:
    """Runs ``behaviour(job, attempt_number, report)`` for each attempt."""

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.attempts: dict[str, int] = {}

    async def run(self, job, report) -> Outcome:
        n = self.attempts[job.job_id] = self.attempts.get(job.job_id, 0) + 1
        return await self.behaviour(job, n, report)


def _runtime(redis_url: str, tmp_path: Path, pipeline: ScriptedPipeline, **cfg) -> Runtime:
    settings = IngestSettings(redis_url=redis_url, encoder="unused:1", index_shards=("unused:1",),
                              media_root=tmp_path / "media", claim_idle_ms=cfg.pop("claim_idle_ms", 2000),
                              retry_base_seconds=0.05, retry_max_seconds=0.2, **cfg)
    return Runtime(settings, _queue(redis_url), GenerationPool.fixed(None, FakeShards()),
                   MediaStore(settings.media_root), None, pipeline)


async def _final(queue: JobQueue, job_id: str, timeout: float = 20.0):
    await _wait_for(lambda: _is_final(queue, job_id), timeout)
    return await queue.get(job_id)


async def _is_final(queue: JobQueue, job_id: str) -> bool:
    return (await queue.get(job_id)).state.final


async def _ok(job, n, report) -> Outcome:
    await report({"clips_total": 1}, None)
    await report({}, [f"{job.video_id}:000000000"])
    await report({"clips_done": 1}, None)
    return Outcome(1, 10.0)


def test_worker_retries_transient_errors_and_fails_bad_input_at_once(redis_url: str, tmp_path: Path) -> None:
    async def behaviour(job, n, report) -> Outcome:
        if job.video_id == "flaky" and n < 3:
            raise DependencyDown("encoder at e:1 unavailable (UNAVAILABLE)")
        if job.video_id == "broken":
            raise InvalidInput("not a readable video: Invalid data found when processing input")
        return await _ok(job, n, report)

    async def scenario() -> None:
        rt = _runtime(redis_url, tmp_path, ScriptedPipeline(behaviour), max_attempts=5)
        stopping = asyncio.Event()
        worker = asyncio.create_task(rt.worker().run(stopping))
        flaky = await rt.queue.submit(_spec("flaky"))
        broken = await rt.queue.submit(_spec("broken"))
        fine = await rt.queue.submit(_spec("fine"))
        flaky_job = await _final(rt.queue, flaky.job_id)
        assert flaky_job.state is JobState.SUCCEEDED and flaky_job.attempts == 3
        broken_job = await _final(rt.queue, broken.job_id)
        assert broken_job.state is JobState.FAILED and broken_job.attempts == 1
        assert "not a readable video" in broken_job.error
        assert (await _final(rt.queue, fine.job_id)).state is JobState.SUCCEEDED
        dead = await rt.queue.dead_letters()
        assert [d["job_id"] for d in dead] == [broken.job_id]
        assert "not a readable video" in dead[0]["reason"] and dead[0]["attempts"] == "1"
        assert not worker.done()
        stopping.set()
        await asyncio.wait_for(worker, 5)
        await rt.queue.redis.aclose()

    run(scenario)


def test_a_poison_job_is_dead_lettered_and_the_worker_carries_on(redis_url: str, tmp_path: Path) -> None:
    async def behaviour(job, n, report) -> Outcome:
        if job.video_id == "poison":
            await report({}, ["poison:000000000"])
            raise RuntimeError("decoder bug")
        return await _ok(job, n, report)

    async def scenario() -> None:
        rt = _runtime(redis_url, tmp_path, ScriptedPipeline(behaviour), max_attempts=3)
        stopping = asyncio.Event()
        worker = asyncio.create_task(rt.worker().run(stopping))
        poison = await rt.queue.submit(_spec("poison"))
        after = await rt.queue.submit(_spec("after"))
        job = await _final(rt.queue, poison.job_id)
        assert job.state is JobState.FAILED and job.attempts == 3
        assert "failed after 3 attempts: RuntimeError: decoder bug" in job.error
        assert (await _final(rt.queue, after.job_id)).state is JobState.SUCCEEDED
        dead = await rt.queue.dead_letters()
        assert [d["job_id"] for d in dead] == [poison.job_id]
        # A failed job leaves no clips behind.
        assert rt.generations.snapshot().shards.shard.deleted == ["poison:000000000"]
        # Entries that name no job, or a job with no record, are dead-lettered too.
        await rt.queue.redis.xadd(rt.queue.stream, {"garbage": "1"})
        await rt.queue.redis.xadd(rt.queue.stream, {"job_id": "never-submitted"})
        await _wait_for(lambda: _dead_count(rt.queue, 3))
        assert not worker.done()
        stopping.set()
        await asyncio.wait_for(worker, 5)
        assert (await rt.queue.redis.xpending(rt.queue.stream, jobs.GROUP))["pending"] == 0
        await rt.queue.redis.aclose()

    run(scenario)


async def _dead_count(queue: JobQueue, n: int) -> bool:
    return len(await queue.dead_letters()) >= n


def test_cancel_mid_job_removes_the_clips_written(redis_url: str, tmp_path: Path) -> None:
    proceed = asyncio.Event

    async def scenario() -> None:
        gate = proceed()

        async def behaviour(job, n, report) -> Outcome:
            await report({"clips_total": 4}, None)
            for i in range(4):
                ids = [f"{job.video_id}:{i * 1000:09d}"]
                await report({}, ids)  # the check between batches
                rt.media.put(thumbnail_key(job.video_id, float(i)), b"jpeg")
                await report({"clips_done": i + 1}, None)
                if i == 1:
                    await gate.wait()
            return Outcome(4, 4.0)

        rt = _runtime(redis_url, tmp_path, ScriptedPipeline(behaviour))
        stopping = asyncio.Event()
        worker = asyncio.create_task(rt.worker().run(stopping))
        job = await rt.queue.submit(_spec("cancelme"))
        await _wait_for(lambda: _clips_done(rt.queue, job.job_id, 2))
        assert (await rt.queue.cancel(job.job_id)).state is JobState.CANCELLED
        gate.set()
        await _wait_for(lambda: _forgotten(rt.queue, job.job_id))
        assert sorted(rt.generations.snapshot().shards.shard.deleted) == ["cancelme:000000000", "cancelme:000001000"]
        assert not (rt.media.root / "thumbs" / "cancelme").exists() or not any(
            (rt.media.root / "thumbs" / "cancelme").iterdir())
        final = await rt.queue.get(job.job_id)
        assert final.state is JobState.CANCELLED and final.clips_done == 2
        stopping.set()
        await asyncio.wait_for(worker, 5)
        await rt.queue.redis.aclose()

    run(scenario)


async def _clips_done(queue: JobQueue, job_id: str, n: int) -> bool:
    return (await queue.get(job_id)).clips_done >= n


async def _forgotten(queue: JobQueue, job_id: str) -> bool:
    return not await queue.redis.exists(queue.clips_key(job_id))


def test_cancel_reaches_a_job_that_has_not_written_anything_yet(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def behaviour(job, n, report) -> Outcome:
            if job.video_id == "next":
                return await _ok(job, n, report)
            started.set()
            await asyncio.sleep(3600)  # a long plan or decode: no batch, so no check between batches
            raise AssertionError("unreachable")

        rt = _runtime(redis_url, tmp_path, ScriptedPipeline(behaviour), claim_idle_ms=600)
        stopping = asyncio.Event()
        worker = asyncio.create_task(rt.worker().run(stopping))
        job = await rt.queue.submit(_spec("slow"))
        after = await rt.queue.submit(_spec("next"))
        await asyncio.wait_for(started.wait(), 10)
        await rt.queue.cancel(job.job_id)
        # The claim renewal (every 200 ms here) sees the cancellation and frees the worker.
        assert (await _final(rt.queue, after.job_id, timeout=5)).state is JobState.SUCCEEDED
        assert (await rt.queue.get(job.job_id)).state is JobState.CANCELLED
        assert (await rt.queue.redis.xpending(rt.queue.stream, jobs.GROUP))["pending"] == 0
        stopping.set()
        await asyncio.wait_for(worker, 5)
        await rt.queue.redis.aclose()

    run(scenario)


def test_shutdown_hands_the_running_job_back(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def behaviour(job, n, report) -> Outcome:
            started.set()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        rt = _runtime(redis_url, tmp_path, ScriptedPipeline(behaviour))
        stopping = asyncio.Event()
        worker = asyncio.create_task(rt.worker().run(stopping))
        job = await rt.queue.submit(_spec("long"))
        await asyncio.wait_for(started.wait(), 10)
        stopping.set()
        await asyncio.wait_for(worker, 5)
        released = await rt.queue.get(job.job_id)
        assert released.state is JobState.QUEUED and released.attempts == 0  # shutdown is not the job's fault
        assert await rt.queue.promote_due() == 1  # due at once for the next worker
        await rt.queue.redis.aclose()

    run(scenario)
