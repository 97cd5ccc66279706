"""Async clients of the index shards: one per shard, and the set that routes by video id.

A shard may have several replicas, each with its own address (``"a:1|a:2"`` in a shard list),
each holding every clip of the shard. Writes go to every replica and are acknowledged once
``write_quorum`` of them (all, by default) have stored them; a write that reached fewer fails
UNAVAILABLE and its caller retries it whole (upserts and deletes are idempotent), so an
acknowledged write is on every replica of the quorum. Reads go round-robin to the replicas, and
to the next one when a replica is down. Writes are retried on UNAVAILABLE (the channel's retry
policy); searches are not: a replica that is down is skipped at once (its channel cannot connect,
or its circuit breaker is open), and a shard with no replica left fails at once, so the caller
answers with the other shards' hits, marked partial.

Writes and health probes travel on a second channel that does not wait for SERVING: a replica
that restarted takes writes while it catches up from a peer, before it serves reads
(services/index/catchup.py), so it misses none of the writes made meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.breaker import CircuitBreaker
from services.common.channels import ClientTLS, call, domain_error, open_channel
from services.common.errors import DependencyDown
from services.common.shards import shard_for_video
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

SERVICE = "vidsearch.index.v1.IndexService"
SEARCH = f"{SERVICE}/Search"
REPLICA_SEPARATOR = "|"

T = TypeVar("T")


class ShardSkipped(DependencyDown):
    """The shard was not called: it is known to be down (channel or breaker)."""


class ReplicaClient:
    """One copy of a shard at one address (a DNS name with several addresses is balanced round-robin)."""

    def __init__(self, name: str, target: str, *, timeout_s: float = 30.0, tls: ClientTLS | None = None,
                 probe_timeout_s: float = 0.5) -> None:
        self.name = name
        self.target = target
        self.timeout_s = timeout_s
        self.probe_timeout_s = probe_timeout_s
        # Reads: only while the replica reports SERVING (client-side health checking).
        self._channel = open_channel(target, (SERVICE,), tls, fail_fast=(SEARCH,))
        self.stub = index_pb2_grpc.IndexServiceStub(self._channel)
        # Writes, health probes and calls that must reach a replica that is not SERVING (a peer's
        # catch-up probes): whenever the replica listens.
        self._direct_channel = open_channel(target, (SERVICE,), tls, health_checked=False)
        self.direct_stub = index_pb2_grpc.IndexServiceStub(self._direct_channel)
        self._health = health_pb2_grpc.HealthStub(self._direct_channel)
        self.breaker = CircuitBreaker(f"index {name} at {target}", self.serving)

    @property
    def _what(self) -> str:
        return f"index {self.name} at {self.target}"

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Message, timeout_s: float | None) -> Any:
        return await call(method, request, timeout_s or self.timeout_s, self._what)

    async def serving(self) -> bool:
        """Whether the replica's health service says SERVING (the breaker's probe); raises when it
        does not answer."""
        check: Callable[..., Awaitable[health_pb2.HealthCheckResponse]] = self._health.Check  # type: ignore[attr-defined]
        reply = await check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=self.probe_timeout_s)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _read_or_skip(self, method: Callable[..., Awaitable[Any]], request: Message,
                            timeout_s: float | None) -> Any:
        """A read that fails at once, without touching the network, while the shard is known down."""
        breaker = self.breaker
        if not breaker.allow():
            raise ShardSkipped(f"{self._what} skipped: {breaker.reason}")
        # Sticky TRANSIENT_FAILURE: no connection, or not SERVING to client-side health checking.
        if self._channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            breaker.trip("cannot connect, or not SERVING")
            raise ShardSkipped(f"{self._what} skipped: cannot connect, or not SERVING")
        try:
            reply = await method(request, timeout=timeout_s or self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                breaker.trip(exc.details() or "UNAVAILABLE")
            elif exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                breaker.record_failure("DEADLINE_EXCEEDED")  # three in a row: frozen or overloaded
            raise domain_error(exc, self._what) from None
        breaker.record_success()
        return reply

    async def upsert(self, clips: Sequence[common_pb2.ClipRecord], timeout_s: float | None = None,
                     writer: str = "") -> int:
        request = index_pb2.UpsertRequest(clips=list(clips), writer=writer)
        reply: index_pb2.UpsertResponse = await self._call(self.direct_stub.Upsert, request, timeout_s)
        return reply.upserted

    async def delete(self, clip_ids: Sequence[str] = (), video_ids: Sequence[str] = (),
                     timeout_s: float | None = None, fence_writers: Sequence[str] = ()) -> int:
        request = index_pb2.DeleteRequest(clip_ids=list(clip_ids), video_ids=list(video_ids),
                                          fence_writers=list(fence_writers))
        reply: index_pb2.DeleteResponse = await self._call(self.direct_stub.Delete, request, timeout_s)
        return reply.deleted

    async def search(self, queries: npt.ArrayLike, top_k: int, flt: common_pb2.SearchFilter | None = None,
                     timeout_s: float | None = None, include_vectors: bool = False) -> index_pb2.SearchResponse:
        request = index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=q) for q in np.asarray(queries, np.float32).tolist()],
            top_k=top_k, filter=flt, include_vectors=include_vectors,
        )
        reply: index_pb2.SearchResponse = await self._read_or_skip(self.stub.Search, request, timeout_s)
        return reply

    async def get(self, clip_ids: Sequence[str], include_vectors: bool = False,
                  timeout_s: float | None = None) -> index_pb2.GetResponse:
        request = index_pb2.GetRequest(clip_ids=list(clip_ids), include_vectors=include_vectors)
        reply: index_pb2.GetResponse = await self._call(self.stub.Get, request, timeout_s)
        return reply

    async def stats(self, timeout_s: float | None = None, *, content_checksum: bool = False,
                    serving_or_not: bool = False, include_fences: bool = False) -> index_pb2.StatsResponse:
        """The replica's statistics; with ``serving_or_not`` also from a replica that is not SERVING
        (catching up from a peer), which a plain read would skip."""
        request = index_pb2.StatsRequest(content_checksum=content_checksum, include_fences=include_fences)
        stub = self.direct_stub if serving_or_not else self.stub
        reply: index_pb2.StatsResponse = await self._call(stub.Stats, request, timeout_s)
        return reply

    async def scan(self, after_clip_id: str = "", *, include_vectors: bool = False, page_size: int = 0,
                   video_ids: Sequence[str] = (), limit: int = 0,
                   timeout_s: float | None = None) -> AsyncGenerator[list[common_pb2.ClipRecord], None]:
        """The replica's clips after ``after_clip_id`` in clip-id order, a page at a time.

        ``timeout_s`` bounds each page's wait, not the whole stream.
        """
        request = index_pb2.ScanRequest(after_clip_id=after_clip_id, include_vectors=include_vectors,
                                        page_size=page_size, video_ids=list(video_ids), limit=limit)
        stream = self.stub.Scan(request)
        try:
            while True:
                try:
                    reply = await asyncio.wait_for(stream.read(), timeout_s or self.timeout_s)
                except grpc.aio.AioRpcError as exc:
                    raise domain_error(exc, self._what) from None
                except TimeoutError:
                    raise DependencyDown(f"{self._what}: no scan page within {timeout_s or self.timeout_s} s") from None
                if reply is grpc.aio.EOF:
                    return
                yield list(reply.clips)
        finally:
            stream.cancel()

    async def digest(self, bounds: Sequence[str], timeout_s: float | None = None) -> list[index_pb2.RangeDigest]:
        """SHA-256 and clip count of each clip-id range ``bounds`` define (IndexService.Digest):
        ``len(bounds) + 1`` entries. Unsupported from a replica too old to have the call."""
        request = index_pb2.DigestRequest(bounds=list(bounds))
        reply: index_pb2.DigestResponse = await self._call(self.stub.Digest, request, timeout_s)
        return list(reply.ranges)

    async def close(self) -> None:
        await self.breaker.close()
        await self._channel.close()
        await self._direct_channel.close()


class ShardClient:
    """One shard: its replicas, written together and read in turn (see the module docstring)."""

    def __init__(self, name: str, target: str, *, timeout_s: float = 30.0, tls: ClientTLS | None = None,
                 write_quorum: int = 0) -> None:
        addresses = [t.strip() for t in target.split(REPLICA_SEPARATOR)]
        if not all(addresses):
            raise ValueError(f"{name}: empty replica address in {target!r}")
        self.name = name
        self.target = target
        self.timeout_s = timeout_s
        self.replicas = [ReplicaClient(name if len(addresses) == 1 else f"{name} replica {j}", a,
                                       timeout_s=timeout_s, tls=tls) for j, a in enumerate(addresses)]
        self.write_quorum = write_quorum or len(self.replicas)
        if not 1 <= self.write_quorum <= len(self.replicas):
            raise ValueError(f"{name}: write quorum {write_quorum} with {len(self.replicas)} replicas")
        self._turn = itertools.count()

    async def _read(self, read: Callable[[ReplicaClient, float], Awaitable[T]], timeout_s: float | None) -> T:
        """``read`` on the next replica in turn, then on the others while replicas are down."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        first = next(self._turn) % len(self.replicas)
        failure: DependencyDown | None = None
        for replica in self.replicas[first:] + self.replicas[:first]:
            left = deadline - time.monotonic()
            if failure is not None and left <= 0:
                break
            try:
                return await read(replica, max(left, 0.001))
            except DependencyDown as exc:  # that replica is down or late; any other error is the answer
                failure = exc
        if len(self.replicas) == 1 and failure is not None:
            raise failure
        skipped = isinstance(failure, ShardSkipped)
        raise (ShardSkipped if skipped else DependencyDown)(f"index {self.name}: no replica answered: {failure}")

    async def _write(self, write: Callable[[ReplicaClient], Awaitable[T]]) -> list[T]:
        """``write`` on every replica at once; the replies once ``write_quorum`` of them stored it."""
        replies = await asyncio.gather(*(write(r) for r in self.replicas), return_exceptions=True)
        stored = [r for r in replies if not isinstance(r, BaseException)]
        if len(stored) >= self.write_quorum:
            return stored
        failures = [r for r in replies if isinstance(r, BaseException)]
        # A refusal of the request itself (bad input, wrong model, disk full) is the answer, as with one replica.
        for exc in failures:
            if not isinstance(exc, DependencyDown):
                raise exc
        raise DependencyDown(f"index {self.name}: the write reached {len(stored)} of {len(self.replicas)} "
                             f"replicas, {self.write_quorum} needed: {failures[0]}")

    async def upsert(self, clips: Sequence[common_pb2.ClipRecord], timeout_s: float | None = None,
                     writer: str = "") -> int:
        """Writes ``clips`` to every replica; ``writer`` (an ingest job id) is refused where a delete fenced it."""
        return max(await self._write(lambda r: r.upsert(clips, timeout_s, writer)))

    async def delete(self, clip_ids: Sequence[str] = (), video_ids: Sequence[str] = (),
                     timeout_s: float | None = None, fence_writers: Sequence[str] = ()) -> int:
        """Deletes on every replica, fencing ``fence_writers`` there in the same transaction."""
        return max(await self._write(lambda r: r.delete(clip_ids, video_ids, timeout_s, fence_writers)))

    async def search(self, queries: np.ndarray, top_k: int, flt: common_pb2.SearchFilter | None = None,
                     timeout_s: float | None = None, include_vectors: bool = False) -> index_pb2.SearchResponse:
        return await self._read(lambda r, left: r.search(queries, top_k, flt, left, include_vectors), timeout_s)

    async def get(self, clip_ids: Sequence[str], include_vectors: bool = False,
                  timeout_s: float | None = None) -> index_pb2.GetResponse:
        return await self._read(lambda r, left: r.get(clip_ids, include_vectors, left), timeout_s)

    async def stats(self, timeout_s: float | None = None, *, content_checksum: bool = False,
                    include_fences: bool = False) -> index_pb2.StatsResponse:
        return await self._read(lambda r, left: r.stats(left, content_checksum=content_checksum,
                                                        include_fences=include_fences), timeout_s)

    async def digest(self, bounds: Sequence[str], timeout_s: float | None = None) -> list[index_pb2.RangeDigest]:
        """A SERVING replica's digests of the ranges ``bounds`` define (ReplicaClient.digest)."""
        return await self._read(lambda r, left: r.digest(bounds, left), timeout_s)

    async def scan(self, after_clip_id: str = "", *, include_vectors: bool = False, page_size: int = 0,
                   video_ids: Sequence[str] = (), limit: int = 0, timeout_s: float | None = None
                   ) -> AsyncGenerator[list[common_pb2.ClipRecord], None]:
        """The shard's clips after ``after_clip_id`` (at most ``limit``; 0: all), in clip-id order, a
        page at a time.

        Read from one replica; when it goes down mid-stream the scan resumes on the next one after
        the last clip received, so no clip is skipped or repeated. A caller that stops iterating
        early closes the stream (``contextlib.aclosing``), which cancels the replica's scan.
        """
        after = after_clip_id
        first = next(self._turn) % len(self.replicas)
        order = self.replicas[first:] + self.replicas[:first]
        failure: DependencyDown | None = None
        received = 0
        for replica in order:
            if limit and received >= limit:
                return
            try:
                async with contextlib.aclosing(replica.scan(
                        after, include_vectors=include_vectors, page_size=page_size, video_ids=video_ids,
                        limit=limit - received if limit else 0, timeout_s=timeout_s)) as pages:
                    async for page in pages:
                        if page:
                            after = page[-1].clip_id
                        received += len(page)
                        yield page
                return
            except DependencyDown as exc:
                failure = exc
        raise DependencyDown(f"index {self.name}: no replica finished the scan: {failure}")

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.close()


class ShardSet:
    """Every shard, in shard-number order; a video's clips all live on ``for_video(video_id)``."""

    def __init__(self, targets: Sequence[str], *, timeout_s: float = 30.0, tls: ClientTLS | None = None,
                 write_quorum: int = 0) -> None:
        if not targets:
            raise ValueError("at least one index shard address is required")
        self.shards = [ShardClient(f"shard-{i}", t, timeout_s=timeout_s, tls=tls, write_quorum=write_quorum)
                       for i, t in enumerate(targets)]

    def __len__(self) -> int:
        return len(self.shards)

    def for_video(self, video_id: str) -> ShardClient:
        return self.shards[shard_for_video(video_id, len(self.shards))]

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()
