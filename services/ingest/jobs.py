"""Ingest jobs on Redis: job records (hashes), the work queue (a stream with a consumer group),
retries with backoff (a sorted set of due times), dead letters (a stream) and change events.

Nothing here knows gRPC. Every change a worker makes is fenced by its claim token: a worker that
has lost its job to another one (it stalled past the claim timeout and its entry was taken over)
can no longer update, finish, requeue or acknowledge it; its next attempt to do so raises
`Superseded`. Keys, under a configurable prefix (default ``vidsearch``):

- ``<p>:job:<id>``          hash: the job record
- ``<p>:job:<id>:clips``    set: clip ids the job has started writing (removed again on cancel/failure)
- ``<p>:video:<id>:jobs``   set: ids of the jobs submitted for a video, so deleting it can fence them
- ``<p>:ingest:jobs``       stream, consumer group ``workers``: one entry per delivery of a job
- ``<p>:ingest:delayed``    sorted set: jobs waiting out a retry backoff, scored by due time (ms)
- ``<p>:ingest:dead``       stream: dead letters (job id, video id, reason, attempts)
- ``<p>:ingest:events``     pub/sub channel: the id of every job that changed
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions

from services.common.errors import Cancelled, InvalidInput, NotFound, VidsearchError
from services.ingest.records import Job, JobSpec, JobStage, JobState

log = logging.getLogger(__name__)

GROUP = "workers"
DEAD_LETTERS_KEPT = 10_000


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to a worker: which job, and the entry to acknowledge."""

    entry_id: str
    job_id: str | None  # None for a malformed entry


class ClaimKind(enum.Enum):
    RUN = "run"  # process it with the token
    FINAL = "final"  # already final (e.g. cancelled while queued): clean up and acknowledge
    MISSING = "missing"  # no such job record (expired or never written)
    EXHAUSTED = "exhausted"  # max_attempts used up (``attempts``): fail it as a dead letter


class Renewal(enum.Enum):
    RENEWED = "renewed"
    CANCELLED = "cancelled"  # still ours, but cancelled: stop and clean up
    LOST = "lost"  # another worker has taken the job over


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    attempts: int = 0
    token: str = ""
    state: JobState | None = None
    last_error: str = ""


class JobCancelled(Cancelled):
    """The job was cancelled while this worker ran it."""


class Superseded(VidsearchError):
    """Another worker has taken this job over; this one must stop without touching it."""


def _now() -> float:
    return time.time()


_FINAL_STATES = "state == 'SUCCEEDED' or state == 'FAILED' or state == 'CANCELLED'"

# KEYS: job, events. ARGV: job_id, token prefix, now, max_attempts.
_CLAIM = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {{'missing', 0, '', ''}} end
local state = redis.call('HGET', KEYS[1], 'state')
if {_FINAL_STATES} then return {{'final', 0, '', state}} end
local previous = redis.call('HGET', KEYS[1], 'owner') or ''
if state == 'RUNNING' and previous ~= '' then
  redis.call('HSET', KEYS[1], 'last_error', 'worker ' .. previous .. ' stopped mid-job')
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
local last_error = redis.call('HGET', KEYS[1], 'last_error') or ''
if attempts > tonumber(ARGV[4]) then return {{'exhausted', attempts - 1, '', last_error}} end
local token = ARGV[2] .. '#' .. attempts
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'stage', 'PROBING', 'owner', token, 'clips_done', 0,
           'attempts', attempts, 'updated_at', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return {{'run', attempts, token, last_error}}
"""

# KEYS: job, clips, events. ARGV: job_id, token, now, n field pairs, fields..., clip ids...
_UPDATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'MISSING' end
if state ~= 'RUNNING' or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return state end
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 5 + 2 * n, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
if n > 0 then
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('PUBLISH', KEYS[3], ARGV[1])
end
return 'OK'
"""

# KEYS: job, clips, stream, dead, events.
# ARGV: job_id, token ('' = unfenced), now, state, error, entry_id, ttl, dead reason ('' = none), group.
_FINISH = f"""
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 'SUPERSEDED' end
local state = redis.call('HGET', KEYS[1], 'state') or 'MISSING'
local result = ARGV[4]
if state == 'MISSING' or {_FINAL_STATES} then
  result = state
  -- Final already (cancelled mid-run): the owner letting go is what a DeleteVideo waits for.
  if state ~= 'MISSING' and ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'owner', '') end
else
  redis.call('HSET', KEYS[1], 'state', ARGV[4], 'stage', 'DONE', 'error', ARGV[5], 'owner', '',
             'updated_at', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('PUBLISH', KEYS[5], ARGV[1])
end
if ARGV[6] ~= '' then
  redis.call('XACK', KEYS[3], ARGV[9], ARGV[6])
  redis.call('XDEL', KEYS[3], ARGV[6])
end
if ARGV[8] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', {DEAD_LETTERS_KEPT}, '*', 'job_id', ARGV[1],
             'video_id', redis.call('HGET', KEYS[1], 'video_id') or '', 'reason', ARGV[8],
             'attempts', redis.call('HGET', KEYS[1], 'attempts') or '0', 'at', ARGV[3])
end
if state ~= 'MISSING' then
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  if result == 'SUCCEEDED' then redis.call('DEL', KEYS[2]) else redis.call('EXPIRE', KEYS[2], ARGV[7]) end
end
return result
"""

# KEYS: job, stream, delayed, events. ARGV: job_id, token, now, entry_id, due_ms, error, undo_attempt, group.
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 'SUPERSEDED' end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'RUNNING' then return state end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'stage', 'UNSPECIFIED', 'owner', '', 'last_error', ARGV[6],
           'updated_at', ARGV[3])
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('XACK', KEYS[2], ARGV[8], ARGV[4])
redis.call('XDEL', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('PUBLISH', KEYS[4], ARGV[1])
return 'OK'
"""

# KEYS: job, stream. ARGV: token, group, consumer, entry_id.
_HEARTBEAT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'lost' end
redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4], 'JUSTID')
if redis.call('HGET', KEYS[1], 'state') == 'CANCELLED' then return 'cancelled' end
return 'renewed'
"""

# KEYS: delayed, stream. ARGV: now_ms, limit.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job_id in ipairs(due) do
  redis.call('ZREM', KEYS[1], job_id)
  redis.call('XADD', KEYS[2], '*', 'job_id', job_id)
end
return #due
"""

# KEYS: job, events. ARGV: job_id, now, ttl.
_CANCEL = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'MISSING' end
if {_FINAL_STATES} then return state end
redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'stage', 'DONE', 'error', 'cancelled on request',
           'updated_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 'OK'
"""


def connect(url: str, password: str | None = None) -> aioredis.Redis:
    """A Redis client for the job queue; every reply decoded as UTF-8 text."""
    extra = {"password": password} if password is not None else {}
    return aioredis.from_url(url, decode_responses=True, socket_connect_timeout=5, health_check_interval=30,
                             **extra)


@dataclass(frozen=True)
class Backlog:
    """How far the workers are behind: what waits, what runs, and for how long the oldest has waited."""

    lag_entries: int  # stream entries not yet read by the worker group: jobs waiting for a worker
    running: int  # entries read but not acknowledged: jobs a worker holds
    delayed: int  # jobs waiting out a retry backoff
    oldest_waiting_s: float  # age of the oldest entry no worker has read yet (0 when none waits)


class JobQueue:
    """Job records and the work queue in one Redis, under ``prefix``."""

    def __init__(self, client: aioredis.Redis, prefix: str = "vidsearch", *, ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.stream = f"{prefix}:ingest:jobs"
        self.delayed = f"{prefix}:ingest:delayed"
        self.dead = f"{prefix}:ingest:dead"
        self.events = f"{prefix}:ingest:events"
        self._claim = client.register_script(_CLAIM)
        self._update = client.register_script(_UPDATE)
        self._finish = client.register_script(_FINISH)
        self._requeue = client.register_script(_REQUEUE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._promote = client.register_script(_PROMOTE)
        self._cancel = client.register_script(_CANCEL)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def clips_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:clips"

    def video_jobs_key(self, video_id: str) -> str:
        return f"{self.prefix}:video:{video_id}:jobs"

    # -- API side -------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self.redis.ping()

    async def ensure_group(self) -> None:
        """Creates the stream and its consumer group if missing (idempotent)."""
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def submit(self, spec: JobSpec) -> Job:
        """Writes the job record and queues it, atomically."""
        job_id = uuid.uuid4().hex
        now = _now()
        record = {
            "job_id": job_id, "video_id": spec.video_id, "source": spec.source, "spec": spec.to_json(),
            "state": JobState.QUEUED.value, "stage": JobStage.UNSPECIFIED.value, "clips_done": 0,
            "clips_total": 0, "error": "", "last_error": "", "attempts": 0, "created_at": now, "updated_at": now,
            "video_seconds": 0.0, "owner": "", "version": 1,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.job_key(job_id), mapping=record)
            pipe.xadd(self.stream, {"job_id": job_id})
            pipe.sadd(self.video_jobs_key(spec.video_id), job_id)
            pipe.expire(self.video_jobs_key(spec.video_id), self.ttl_s)
            await pipe.execute()
        return await self.get(job_id)

    async def get(self, job_id: str) -> Job:
        if not job_id:
            raise InvalidInput("job_id must not be empty")
        raw = await self.redis.hgetall(self.job_key(job_id))
        if not raw:
            raise NotFound(f"no job {job_id!r} (unknown, or expired after finishing)")
        return Job.from_hash(raw)

    async def cancel(self, job_id: str) -> Job:
        """Marks a queued or running job cancelled; a final job is returned unchanged."""
        if not job_id:
            raise InvalidInput("job_id must not be empty")
        result = await self._cancel(keys=[self.job_key(job_id), self.events], args=[job_id, _now(), self.ttl_s])
        if result == "MISSING":
            raise NotFound(f"no job {job_id!r}")
        return await self.get(job_id)

    async def fence_video(self, video_id: str, timeout_s: float, poll_s: float = 0.05) -> list[str]:
        """Stops every job of the video from writing again, for a delete of the video to follow.

        Cancels each unfinished job (a worker's next ``update`` with clip ids then raises, so it
        starts no new write) and waits until no worker holds any of them any more: a worker lets go
        only once the write it had in flight has returned and it has removed what the job wrote.
        Returns the ids still held after ``timeout_s`` (their worker died or stalled; the worker that
        takes a dead one's job over finds it cancelled and removes its clips).
        """
        key = self.video_jobs_key(video_id)
        job_ids = sorted(await self.redis.smembers(key))
        for job_id in job_ids:
            await self._cancel(keys=[self.job_key(job_id), self.events], args=[job_id, _now(), self.ttl_s])
        held = job_ids
        deadline = time.monotonic() + timeout_s
        while held:
            owners = await asyncio.gather(*(self.redis.hget(self.job_key(j), "owner") for j in held))
            held = [j for j, owner in zip(held, owners, strict=True) if owner]
            if not held or time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_s)
        if settled := [j for j in job_ids if j not in held]:
            await self.redis.srem(key, *settled)  # those held stay, for the next delete to wait on
        return held

    async def watch(self, job_id: str, events: JobEvents | None = None, poll_s: float = 0.2) -> AsyncIterator[Job]:
        """The job now, then after every change, ending with its first final state.

        With ``events`` a change is seen as soon as it is published; the job is re-read at least
        every second regardless, so a missed message only delays an update.
        """
        with contextlib.ExitStack() as stack:
            changed = stack.enter_context(events.subscribe(job_id)) if events else None
            job = await self.get(job_id)
            yield job
            while not job.state.final:
                if changed is None:
                    await asyncio.sleep(poll_s)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), 1.0)
                    changed.clear()
                current = await self.get(job_id)
                if current.version != job.version:
                    job = current
                    yield job

    async def backlog(self) -> Backlog:
        groups = {g["name"]: g for g in await self.redis.xinfo_groups(self.stream)}
        group = groups.get(GROUP)
        if group is None:
            return Backlog(await self.redis.xlen(self.stream), 0, await self.redis.zcard(self.delayed), 0.0)
        last = group["last-delivered-id"]
        oldest = await self.redis.xrange(self.stream, min=f"({last}", count=1)
        oldest_s = max(0.0, _now() - int(oldest[0][0].split("-")[0]) / 1000) if oldest else 0.0
        lag = group.get("lag")
        if lag is None:  # Redis cannot tell after deletions from the middle of the stream: count them
            lag = len(await self.redis.xrange(self.stream, min=f"({last}"))
        return Backlog(int(lag), int(group["pending"]), await self.redis.zcard(self.delayed), oldest_s)

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The newest dead letters first."""
        return [fields for _, fields in await self.redis.xrevrange(self.dead, count=count)]

    # -- worker side ----------------------------------------------------------------------------

    async def promote_due(self, limit: int = 100) -> int:
        """Moves jobs whose retry backoff has passed back onto the stream."""
        return int(await self._promote(keys=[self.delayed, self.stream], args=[int(_now() * 1000), limit]))

    async def seconds_to_next_retry(self) -> float | None:
        """How long until the next backed-off job is due; None when none is waiting."""
        first = await self.redis.zrange(self.delayed, 0, 0, withscores=True)
        return max(0.0, first[0][1] / 1000 - _now()) if first else None

    async def next_delivery(self, consumer: str, claim_idle_ms: int, block_ms: int) -> Delivery | None:
        """An entry abandoned by a dead worker (idle past ``claim_idle_ms``), else a new one."""
        _, claimed, *_ = await self.redis.xautoclaim(self.stream, GROUP, consumer, claim_idle_ms, "0-0", count=1)
        entries = claimed
        if not entries:
            reply = await self.redis.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=1, block=block_ms)
            entries = reply[0][1] if reply else []
        if not entries:
            return None
        entry_id, fields = entries[0]
        if claimed:
            log.info("took over entry %s (job %s) from a stalled worker", entry_id, (fields or {}).get("job_id"))
        return Delivery(entry_id, (fields or {}).get("job_id") or None)

    async def claim(self, delivery: Delivery, consumer: str, max_attempts: int) -> Claim:
        """Starts an attempt at the delivered job: counts it and makes this worker its owner."""
        assert delivery.job_id is not None
        kind, attempts, token, extra = await self._claim(
            keys=[self.job_key(delivery.job_id), self.events],
            args=[delivery.job_id, consumer, _now(), max_attempts],
        )
        kind = ClaimKind(kind)
        if kind is ClaimKind.FINAL:
            return Claim(kind, state=JobState(extra))
        return Claim(kind, int(attempts), token, last_error=extra)

    async def heartbeat(self, delivery: Delivery, token: str, consumer: str) -> Renewal:
        """Renews the claim so no other worker takes the job over, and reports a cancellation."""
        assert delivery.job_id is not None
        result = await self._heartbeat(
            keys=[self.job_key(delivery.job_id), self.stream], args=[token, GROUP, consumer, delivery.entry_id]
        )
        return Renewal(result)

    async def update(self, job_id: str, token: str, fields: Mapping[str, object] | None = None,
                     writing: list[str] | None = None) -> None:
        """Records progress and the clips about to be written; raises if cancelled or superseded."""
        pairs = [str(x) for kv in (fields or {}).items() for x in kv]
        result = await self._update(
            keys=[self.job_key(job_id), self.clips_key(job_id), self.events],
            args=[job_id, token, _now(), len(pairs) // 2, *pairs, *(writing or [])],
        )
        if result == "OK":
            return
        if result == JobState.CANCELLED.value:
            raise JobCancelled(f"job {job_id} was cancelled")
        raise Superseded(f"job {job_id} is no longer this worker's (state {result})")

    async def finish(self, delivery: Delivery, token: str, state: JobState, error: str = "",
                     dead_reason: str = "") -> JobState | None:
        """Sets a final state (unless the job already has one), acknowledges the delivery and
        optionally writes a dead letter; returns the job's final state (None if it has no record).

        ``token`` '' acts without fencing, for deliveries whose job no worker owns.
        """
        assert delivery.job_id is not None
        result = await self._finish(
            keys=[self.job_key(delivery.job_id), self.clips_key(delivery.job_id), self.stream, self.dead,
                  self.events],
            args=[delivery.job_id, token, _now(), state.value, error, delivery.entry_id, self.ttl_s, dead_reason,
                  GROUP],
        )
        if result == "SUPERSEDED":
            raise Superseded(f"job {delivery.job_id} is no longer this worker's")
        return None if result == "MISSING" else JobState(result)

    async def requeue(self, delivery: Delivery, token: str, delay_s: float, error: str,
                      count_attempt: bool = True) -> None:
        """Puts a running job back in the queue after ``delay_s`` (a retry, or a worker shutting down)."""
        assert delivery.job_id is not None
        result = await self._requeue(
            keys=[self.job_key(delivery.job_id), self.stream, self.delayed, self.events],
            args=[delivery.job_id, token, _now(), delivery.entry_id, int((_now() + delay_s) * 1000), error,
                  "0" if count_attempt else "1", GROUP],
        )
        if result == JobState.CANCELLED.value:
            raise JobCancelled(f"job {delivery.job_id} was cancelled")
        if result != "OK":
            raise Superseded(f"job {delivery.job_id} is no longer this worker's ({result})")

    async def ack_malformed(self, delivery: Delivery, reason: str) -> None:
        """Acknowledges an entry that names no job, leaving a dead letter for it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, delivery.entry_id)
            pipe.xdel(self.stream, delivery.entry_id)
            pipe.xadd(self.dead, {"job_id": delivery.job_id or "", "video_id": "", "reason": reason,
                                  "attempts": "0", "at": str(_now())}, maxlen=DEAD_LETTERS_KEPT)
            await pipe.execute()

    async def prune_consumers(self, idle_ms: int) -> int:
        """Removes consumers of dead workers: idle that long, and holding no pending entries."""
        removed = 0
        for consumer in await self.redis.xinfo_consumers(self.stream, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > idle_ms:
                removed += await self.redis.xgroup_delconsumer(self.stream, GROUP, consumer["name"]) == 0
        return removed

    async def written_clips(self, job_id: str) -> list[str]:
        return sorted(await self.redis.smembers(self.clips_key(job_id)))

    async def forget_written(self, job_id: str) -> None:
        await self.redis.delete(self.clips_key(job_id))


class JobEvents:
    """One pub/sub subscription per process, fanned out to every WatchJob waiting on a job."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.redis = client
        self.channel = channel
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiting.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[job_id]

    async def run(self) -> None:
        """Forwards change messages until cancelled; reconnects after Redis errors."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        for event in self._waiting.get(message["data"], ()):
                            event.set()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                log.warning("job events subscription lost (%s); resubscribing", exc)
                for waiting in self._waiting.values():  # let watchers re-read while we are away
                    for event in waiting:
                        event.set()
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

