"""Replica catch-up: a shard replica that missed writes copies a SERVING peer's clips before it serves.

Why this is correct without sequence numbers shared between replicas. Every client writes to every
replica, so from the moment this replica accepts writes (the moment its shard opens, before any
catch-up starts) it receives the same live writes as its peer. It then streams the peer's clips with
``Scan`` in clip-id order and reconciles each page against its own store: a clip the peer holds that
it lacks or holds differently (any field, or the vector's bytes) is upserted with the peer's copy, a
clip it holds in the page's id range that the peer does not is deleted. A clip touched by a live write
since catch-up began (an upsert or delete of its id, or a delete of its video) is left alone: that
write reached this replica too and is newer than, or equal to, the scanned copy. Live writes record
what they touch under the same lock a page holds while it is compared and applied, so a live write
is either seen by the page (and the page skips its clip) or applied after the page (and wins).

Only the clip-id ranges where the replicas differ are read from the peer. The replica cuts its own
clip ids into ranges of ``range_clips`` clips (every ``range_clips``-th id is a bound, the last range
is open; by default as many ranges as one Digest request takes, 10,000), sums each range up
(``ShardIndex.digests``: SHA-256 over its clips' content and their count) while the peer does the
same for the same ranges (``Digest``), and reconciles, as above, only the ranges whose digest or
count differ: it scans the peer from the range's lower end and stops past its upper end, one scan
for adjacent differing ranges. A replica that missed nothing reads no clip of the peer's; one that
missed a write reads about ``range_clips`` clips for it. Small ranges cost little: both replicas
read their whole shard for the digests whatever the range size, and only differing ranges cost a
scan. A peer too old to have ``Digest`` (UNIMPLEMENTED) is scanned whole, the range ("", end), as is
the peer of a replica that holds no clip (a new or lost volume), which has nothing to compare.

Why digests taken at slightly different moments (each replica's read page by page, at about the
same time, while writes go on) may still be compared: take one clip. If no live write touches it during
catch-up, neither replica changes it (the peer serves and is not catching up, and this replica
changes nothing before the comparison), so both digests saw its one value on each side. If a live
write touches it, that write reaches both replicas and upserts and deletes are idempotent, so both
end with the last write's value whatever each digest saw; and in a range reconciled, the clip is
left to that write (the rule above). So a range whose digests are equal ends equal without being
read (SHA-256 over self-delimiting clip encodings makes equal digests mean equal clips), and a
range that differs is reconciled with the rules above. The same holds for a digest answered by one
SERVING peer and a range scanned from another (failover): SERVING replicas hold the same clips.
It does not hold when a write does not reach both replicas alike, which the full scan does not
repair for sure either: a write acknowledged by the peer alone (a ``write_quorum`` below the replica
count) that lands on it after it answered ``Digest`` is not copied, as the full scan misses one that
lands after its page was read (the digest is taken earlier than the later pages of a full scan, so
the window is wider, not new); and two clients writing one clip at once may land in different orders
on the two replicas, with or without catch-up.

A replica killed mid-catch-up starts over on restart: its own writes are durable and the reconcile
is idempotent. A peer that dies mid-stream is replaced by the next SERVING one, resuming after the
last clip reconciled, with the ranges not yet reconciled. Until catch-up is done the replica is
NOT_SERVING and refuses reads, while writes are accepted (clients write to it on a channel that does
not wait for SERVING).

When no peer is SERVING (the whole shard restarted), one replica must serve as it is and the
others catch up from it. Each waiting replica tells its peers (Stats) how many clips it held when
it opened (``live_at_open``, before any write of this run), and the lowest-numbered replica that
held any serves: replica 0 when it held clips (once every peer answers NOT_SERVING, or after
``alone_after_s``), replica 1 when replica 0 answers that it opened empty (a lost volume), and so
on; replica 0 when every replica answers empty (a new deployment). A replica that opened empty
never serves alone while a peer that may hold clips has not answered, so a replica whose volume was
lost never becomes the source that empties the others. Caveat with a ``write_quorum`` below the
replica count: a write acknowledged by replica 1 alone, while replica 0 was down, is lost if the
whole shard then restarts before replica 0 caught up (replica 0 is taken as the truth). With the
default quorum (all) every acknowledged write is on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import grpc

from services.common.errors import DependencyDown, NotReady, Unsupported, VidsearchError
from services.common.index_client import ReplicaClient, ShardClient
from services.index import convert
from services.index.metrics import CATCHING_UP, CATCHUP_CLIPS, CATCHUP_RANGES
from services.index.records import ClipRecord
from services.index.shard import MAX_DIGEST_BOUNDS, ShardIndex
from vidsearch.index.v1 import index_pb2

log = logging.getLogger(__name__)

_LOCAL_PAGE = 1000
_POLL_S = 0.5


class CatchUp:
    """A replica's catch-up state: live writes recorded while it runs, reads refused until it is done."""

    def __init__(self, name: str) -> None:
        self._name = name
        # The live clips when the shard opened: set before it takes its first write.
        self.live_at_open = 0
        self.lock = asyncio.Lock()
        # How many live writes touched each clip and video (a count, so that one refused write does not
        # unmark a clip another write changed).
        self._clips: Counter[str] = Counter()
        self._videos: Counter[str] = Counter()
        self.done = False

    @contextlib.asynccontextmanager
    async def writing(self, clip_ids: Iterable[str] = (), video_ids: Iterable[str] = ()) -> AsyncIterator[None]:
        """Around a live write: marks what it touches before it is applied (module docstring), and
        unmarks it when the shard refused the write, which then changed nothing."""
        if self.done:
            yield
            return
        clips, videos = Counter(clip_ids), Counter(video_ids)
        async with self.lock:
            self._clips.update(clips)
            self._videos.update(videos)
        try:
            yield
        except VidsearchError:  # refused whole (bad input, wrong model, disk full); not a cancellation,
            async with self.lock:  # after which the write may still land
                self._clips.subtract(clips)
                self._videos.subtract(videos)
            raise

    def touched(self, record: ClipRecord) -> bool:
        """Whether a live write since catch-up began has touched this clip (read under ``lock``)."""
        return self._clips[record.clip_id] > 0 or self._videos[record.video_id] > 0

    def finish(self) -> None:
        self.done = True
        self._clips.clear()
        self._videos.clear()

    def check_readable(self) -> None:
        if not self.done:
            raise NotReady(f"index {self._name} is catching up from a peer replica")


@dataclass
class Progress:
    """What a catch-up has done so far; ``after`` is the last peer clip id reconciled. ``scanned``
    counts the peer's clips read; ``ranges_compared`` the id ranges whose digests were compared,
    ``ranges_reconciled`` those that differed and were reconciled since (adjacent ones in one scan);
    ``full_scan`` is set when the peer was read whole: it had no ``Digest``, or this replica held no clip."""

    after: str = ""
    scanned: int = 0
    upserted: int = 0
    deleted: int = 0
    skipped: int = 0
    ranges_compared: int = 0
    ranges_reconciled: int = 0
    full_scan: bool = False
    fences_copied: int = 0


@dataclass(frozen=True)
class IdRange:
    """Clip ids in (``after``, ``upto``]; ``upto`` None: to the end of the shard. ``peer_clips``: how many
    the peer counted in it when it was compared (None: not known); ``compared``: how many adjacent
    compared ranges it joins (0: none were compared)."""

    after: str
    upto: str | None
    peer_clips: int | None = None
    compared: int = 0


WHOLE_SHARD = IdRange("", None)


class Reconciler:
    """Applies a peer's pages, in clip-id order, to the local shard."""

    def __init__(self, name: str, shard: ShardIndex, catchup: CatchUp) -> None:
        self.shard = shard
        self.catchup = catchup
        self.progress = Progress()
        self._counted = {action: CATCHUP_CLIPS.labels(name, action) for action in ("copied", "deleted", "skipped")}

    def _count(self, copied: int = 0, deleted: int = 0, skipped: int = 0) -> None:
        self.progress.upserted += copied
        self.progress.deleted += deleted
        self.progress.skipped += skipped
        for action, n in (("copied", copied), ("deleted", deleted), ("skipped", skipped)):
            self._counted[action].inc(n)

    async def apply(self, page: Sequence[ClipRecord]) -> None:
        """Reconciles the id range (last page's end, this page's end] with the peer's ``page``.

        Local clips are read a bounded page at a time, so a range the peer no longer has any of
        (a mass delete while this replica was down) never sits in memory whole.
        """
        if not page:
            return
        upto = page[-1].clip_id
        peer_ids = {r.clip_id for r in page}
        held: dict[str, ClipRecord] = {}
        after = self.progress.after
        # About as many as the peer has in the range (a short page, from a small id range, reads few).
        limit = min(_LOCAL_PAGE, len(page) + 1)
        while True:
            local = await asyncio.to_thread(self.shard.scan, after, limit, with_vectors=True)
            in_range = [r for r in local if r.clip_id <= upto]
            held.update((r.clip_id, r) for r in in_range if r.clip_id in peer_ids)
            await self._delete([r for r in in_range if r.clip_id not in peer_ids])
            if len(local) < limit or local[-1].clip_id >= upto:
                break
            after = local[-1].clip_id
            limit = _LOCAL_PAGE
        await self._copy(page, held)
        self.progress.after = upto
        self.progress.scanned += len(page)

    async def finish(self, upto: str | None = None) -> None:
        """Deletes local clips after the peer's last one, up to ``upto`` (None: to the end), a page at a
        time: the peer has none of them."""
        after = self.progress.after
        limit = _LOCAL_PAGE if upto is None else 16  # a range's end is usually near: read few at first
        while True:
            local = await asyncio.to_thread(self.shard.scan, after, limit, with_vectors=False)
            in_range = local if upto is None else [r for r in local if r.clip_id <= upto]
            await self._delete(in_range)
            if len(in_range) < limit:
                break
            after = local[-1].clip_id
            limit = _LOCAL_PAGE
        if upto is not None:
            self.progress.after = upto

    async def reconcile(self, peers: ShardClient, id_range: IdRange, page_size: int) -> None:
        """Reconciles one id range with the peer's clips in it, resuming after ``progress.after``
        when that is inside the range (a peer lost mid-range).

        A bounded range is scanned with a ``limit`` of the clips the peer counted in it plus one,
        so the peer reads about no clip past it; the stream stops at the first clip past its end.
        """
        p = self.progress
        p.after = max(p.after, id_range.after)
        if id_range.upto is None:
            async for page in peers.scan(p.after, include_vectors=True, page_size=page_size):
                await self.apply([convert.record_from_proto(c) for c in page])
            await self.finish()
            return
        upto = id_range.upto
        limit = (id_range.peer_clips if id_range.peer_clips is not None else page_size) + 1
        while True:
            received, past_end = 0, False
            async with contextlib.aclosing(peers.scan(p.after, include_vectors=True, page_size=min(page_size, limit),
                                                      limit=limit)) as pages:
                async for page in pages:
                    received += len(page)
                    inside = [convert.record_from_proto(c) for c in page if c.clip_id <= upto]
                    p.scanned += len(page) - len(inside)  # read past the range's end (apply counts the rest)
                    await self.apply(inside)
                    if len(inside) < len(page):
                        past_end = True
                        break
            if past_end or received < limit:  # past the range's end, or the peer has no clip after it
                break
            limit = page_size  # live writes added clips to the range since the peer counted them
        await self.finish(upto)

    async def _copy(self, page: Sequence[ClipRecord], held: dict[str, ClipRecord]) -> None:
        """Upserts the peer's clips this replica lacks or holds differently, bar those live writes touched."""
        changed = [r for r in page if held.get(r.clip_id) != r]
        if not changed:
            return
        async with self.catchup.lock:
            fresh = [r for r in changed if not self.catchup.touched(r)]
            # Applied under the lock: a live write to these clips waits, then lands after the copy.
            if fresh:
                await asyncio.to_thread(self.shard.upsert, fresh)
        self._count(copied=len(fresh), skipped=len(changed) - len(fresh))

    async def _delete(self, missing: Sequence[ClipRecord]) -> None:
        """Deletes local clips the peer does not have, bar those live writes touched."""
        if not missing:
            return
        async with self.catchup.lock:
            gone = [r.clip_id for r in missing if not self.catchup.touched(r)]
            if gone:
                await asyncio.to_thread(self.shard.delete, gone)
        self._count(deleted=len(gone), skipped=len(missing) - len(gone))


@dataclass(frozen=True)
class PeerState:
    """What a peer answers: ``serving`` None when it does not answer; ``live_at_open`` None unless it
    is waiting to catch up and said how many clips it opened with."""

    number: int
    serving: bool | None
    live_at_open: int | None = None


async def _peer_state(number: int, peer: ReplicaClient) -> PeerState:
    try:
        if await peer.serving():
            return PeerState(number, True)
    except grpc.aio.AioRpcError:
        return PeerState(number, None)
    try:  # Stats answers while catching up; it is UNAVAILABLE while the peer's shard still opens.
        stats = await peer.stats(peer.probe_timeout_s, serving_or_not=True)
    except VidsearchError:
        return PeerState(number, False)
    return PeerState(number, False, stats.live_at_open if stats.catching_up else None)


def serves_alone(replica: int, live_at_open: int, peers: Sequence[PeerState], waited_s: float,
                 alone_after_s: float) -> bool:
    """With no peer SERVING: whether this replica is the one that serves as it is (module docstring)."""
    lower = [p for p in peers if p.number < replica]
    if live_at_open > 0:
        if replica == 0:
            return all(p.serving is False for p in peers) or waited_s >= alone_after_s
        return all(p.live_at_open == 0 for p in lower)
    return replica == 0 and all(p.live_at_open == 0 for p in peers)


async def _wait_for_source(name: str, peers: ShardClient, replica: int, live_at_open: int,
                           alone_after_s: float) -> bool:
    """Whether to catch up (a peer serves) or not (this replica serves first, see ``serves_alone``).

    Peers are listed in replica order, without this one: the j-th is replica j, or j + 1 from ours on.
    """
    started = time.monotonic()
    last_log = started
    numbers = [j if j < replica else j + 1 for j in range(len(peers.replicas))]
    while True:
        states = list(await asyncio.gather(*(_peer_state(n, p) for n, p in zip(numbers, peers.replicas,
                                                                                strict=True))))
        if any(s.serving for s in states):
            return True
        if serves_alone(replica, live_at_open, states, time.monotonic() - started, alone_after_s):
            log.warning("index %s replica %d (opened with %d clips): no peer is SERVING (%s); serving "
                        "without catching up", name, replica, live_at_open, ", ".join(
                            f"replica {s.number} serving={s.serving} live_at_open={s.live_at_open}"
                            for s in states))
            return False
        if time.monotonic() - last_log >= 30:
            log.info("index %s replica %d: waiting for a SERVING peer to catch up from (%s)", name, replica,
                     states)
            last_log = time.monotonic()
        await asyncio.sleep(_POLL_S)


def range_bounds(shard: ShardIndex, clips_per_range: int) -> list[str]:
    """Upper bounds of ranges of ``clips_per_range`` of the shard's clips (every ``clips_per_range``-th
    clip id), fewer when that would be more than a Digest request takes."""
    bounds = shard.clip_ids()[clips_per_range - 1::clips_per_range]
    step = -(-len(bounds) // MAX_DIGEST_BOUNDS)
    return bounds[step - 1::step] if step > 1 else bounds


async def differing_ranges(name: str, shard: ShardIndex, peers: ShardClient, progress: Progress,
                           clips_per_range: int, timeout_s: float) -> list[IdRange]:
    """The id ranges where this replica's digests and a SERVING peer's differ (module docstring);
    the whole shard when the peer has no Digest."""
    bounds = await asyncio.to_thread(range_bounds, shard, clips_per_range)
    # Both replicas read their whole shard for these: at once, each on its own machine.
    local_digests = asyncio.create_task(asyncio.to_thread(shard.digests, bounds))
    try:
        remote = await peers.digest(bounds, timeout_s)
    except Unsupported as exc:
        log.warning("index %s: the peer has no Digest (%s); reading its whole shard", name, exc)
        progress.full_scan = True
        return [WHOLE_SHARD]
    finally:
        local = await local_digests  # also when the peer failed: no thread left reading behind
    if len(remote) != len(local):
        raise DependencyDown(f"index {name}: the peer answered {len(remote)} digests for {len(local)} ranges")
    lows, highs = ["", *bounds], [*bounds, None]
    ranges: list[IdRange] = []
    differing = 0
    for low, high, ours, theirs in zip(lows, highs, local, remote, strict=True):
        if (ours.sha256, ours.clips) == (theirs.sha256, theirs.clips):
            continue
        differing += 1
        if ranges and ranges[-1].upto == low:  # next to the last one: one scan reads both
            last = ranges.pop()
            ranges.append(IdRange(last.after, high, (last.peer_clips or 0) + theirs.clips, last.compared + 1))
        else:
            ranges.append(IdRange(low, high, theirs.clips, 1))
    progress.ranges_compared += len(local)
    CATCHUP_RANGES.labels(name, "equal").inc(len(local) - differing)
    CATCHUP_RANGES.labels(name, "differing").inc(differing)
    log.info("index %s: %d of %d id ranges differ from the peer", name, differing, len(local))
    return ranges


async def fences_at_open(shard: ShardIndex, peers: ShardClient, timeout_s: float = 2.0) -> int:
    """Run once the shard is open and before it takes its first write: fences here every writer that
    any peer answering within ``timeout_s`` has fenced, SERVING or not, so that no upsert of a fenced
    job can land here before catch-up (a peer that does not answer is skipped; ``copy_fences`` asks a
    SERVING one again later). Returns how many it fenced."""
    replies = await asyncio.gather(*(r.stats(timeout_s, serving_or_not=True, include_fences=True)
                                     for r in peers.replicas), return_exceptions=True)
    return await _fence(shard, {w for r in replies if isinstance(r, index_pb2.StatsResponse)
                                for w in r.fenced_writers})


async def copy_fences(shard: ShardIndex, peers: ShardClient) -> int:
    """Fences here the writers a SERVING peer has fenced and this replica has not (a delete that fenced
    them came while it was down), before it reconciles: a fenced job's late upsert is refused here too
    from then on. Returns how many it fenced. One sent before this, once the shard opened, counts as a
    live write and stays, which ``fences_at_open`` prevents whenever a peer answered at open."""
    return await _fence(shard, set((await peers.stats(include_fences=True)).fenced_writers))


async def _fence(shard: ShardIndex, writers: set[str]) -> int:
    """Fences those of ``writers`` the shard has not fenced yet; returns how many."""
    missing = sorted(writers - await asyncio.to_thread(shard.fenced))
    if missing:
        await asyncio.to_thread(shard.delete, (), (), missing)
    return len(missing)


async def catch_up(name: str, shard: ShardIndex, catchup: CatchUp, peers: ShardClient, *, replica: int,
                   alone_after_s: float, page_size: int = 1000, range_clips: int = 0) -> Progress:
    """Brings ``shard`` to a SERVING peer's content (see the module docstring), then opens it for reads.

    ``page_size``: clips per Scan page read from the peer. ``range_clips``: clips per id range compared
    by digest; 0: as many ranges as one Digest request takes (10,000), of at least one clip each.
    """
    reconciler = Reconciler(name, shard, catchup)
    t0 = time.monotonic()
    CATCHING_UP.labels(name).set(1)
    pending: list[IdRange] | None = None  # the ranges still to reconcile, once compared
    while await _wait_for_source(name, peers, replica, catchup.live_at_open, alone_after_s):
        try:
            if pending is None:
                reconciler.progress.fences_copied = await copy_fences(shard, peers)
                live = shard.stats()["live"]
                clips_per_range = range_clips or max(1, -(-live // MAX_DIGEST_BOUNDS))
                # The peer reads its whole shard for the digests: allow a second per 10,000 clips on top.
                timeout_s = peers.timeout_s + live / 10_000
                if live == 0:  # nothing to compare: every clip of the peer's is to be copied
                    reconciler.progress.full_scan = True
                    pending = [WHOLE_SHARD]
                else:
                    pending = await differing_ranges(name, shard, peers, reconciler.progress, clips_per_range,
                                                     timeout_s)
            while pending:
                await reconciler.reconcile(peers, pending[0], page_size)
                reconciler.progress.ranges_reconciled += pending.pop(0).compared
            break
        except DependencyDown as exc:
            log.warning("index %s: catch-up interrupted after %s (%s); resuming", name,
                        reconciler.progress.after or "the start", exc)
            await asyncio.sleep(_POLL_S)
    catchup.finish()
    CATCHING_UP.labels(name).set(0)
    p = reconciler.progress
    ranges = "the peer's whole shard" if p.full_scan else f"{p.ranges_reconciled} of {p.ranges_compared} id ranges"
    log.info("index %s caught up in %.1f s: %s reconciled, %d peer clips scanned, %d copied, %d deleted, %d left "
             "to live writes, %d fenced writers copied", name, time.monotonic() - t0, ranges, p.scanned, p.upserted,
             p.deleted, p.skipped, p.fences_copied)
    return p
