"""Async clients of the index shards: one per shard, and the set that routes by video id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from services.common.channels import ClientTLS, call, open_channel
from services.common.shards import shard_for_video
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

SERVICE = "vidsearch.index.v1.IndexService"


class ShardClient:
    """One shard (possibly several replicas behind one DNS name, balanced round-robin)."""

    def __init__(self, name: str, target: str, *, timeout_s: float = 30.0, tls: ClientTLS | None = None) -> None:
        self.name = name
        self.target = target
        self.timeout_s = timeout_s
        self._channel = open_channel(target, (SERVICE,), tls)
        self.stub = index_pb2_grpc.IndexServiceStub(self._channel)

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Message, timeout_s: float | None) -> Any:
        return await call(method, request, timeout_s or self.timeout_s, f"index {self.name} at {self.target}")

    async def upsert(self, clips: Sequence[common_pb2.ClipRecord], timeout_s: float | None = None) -> int:
        request = index_pb2.UpsertRequest(clips=list(clips))
        reply: index_pb2.UpsertResponse = await self._call(self.stub.Upsert, request, timeout_s)
        return reply.upserted

    async def delete(self, clip_ids: Sequence[str] = (), video_ids: Sequence[str] = (),
                     timeout_s: float | None = None) -> int:
        request = index_pb2.DeleteRequest(clip_ids=list(clip_ids), video_ids=list(video_ids))
        reply: index_pb2.DeleteResponse = await self._call(self.stub.Delete, request, timeout_s)
        return reply.deleted

    async def search(self, queries: npt.ArrayLike, top_k: int, flt: common_pb2.SearchFilter | None = None,
                     timeout_s: float | None = None, include_vectors: bool = False) -> index_pb2.SearchResponse:
        request = index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=q) for q in np.asarray(queries, np.float32).tolist()],
            top_k=top_k, filter=flt, include_vectors=include_vectors,
        )
        reply: index_pb2.SearchResponse = await self._call(self.stub.Search, request, timeout_s)
        return reply

    async def get(self, clip_ids: Sequence[str], include_vectors: bool = False,
                  timeout_s: float | None = None) -> index_pb2.GetResponse:
        request = index_pb2.GetRequest(clip_ids=list(clip_ids), include_vectors=include_vectors)
        reply: index_pb2.GetResponse = await self._call(self.stub.Get, request, timeout_s)
        return reply

    async def stats(self, timeout_s: float | None = None) -> index_pb2.StatsResponse:
        reply: index_pb2.StatsResponse = await self._call(self.stub.Stats, index_pb2.StatsRequest(), timeout_s)
        return reply

    async def close(self) -> None:
        await self._channel.close()


class ShardSet:
    """Every shard, in shard-number order; a video's clips all live on ``for_video(video_id)``."""

    def __init__(self, targets: Sequence[str], *, timeout_s: float = 30.0, tls: ClientTLS | None = None) -> None:
        if not targets:
            raise ValueError("at least one index shard address is required")
        self.shards = [ShardClient(f"shard-{i}", t, timeout_s=timeout_s, tls=tls) for i, t in enumerate(targets)]

    def __len__(self) -> int:
        return len(self.shards)

    def for_video(self, video_id: str) -> ShardClient:
        return self.shards[shard_for_video(video_id, len(self.shards))]

    async def close(self) -> None:
        for shard in self.shards:
            await shard.close()
