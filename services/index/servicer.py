"""The IndexService servicer: validates request shape, calls the shard core, maps results.

The core (``ShardIndex``) is synchronous and CPU- or disk-bound, so every call runs in a
worker thread and the event loop stays free for health checks and other RPCs.
"""

from __future__ import annotations

import asyncio

import numpy as np

from services.common.errors import InvalidInput
from services.common.readiness import Pending
from services.index import convert
from services.index.shard import ShardIndex
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

MAX_CLIPS_PER_REQUEST = 10_000
MAX_QUERIES_PER_REQUEST = 1_024


class IndexServicer(index_pb2_grpc.IndexServiceServicer):
    """Serves one shard once start-up has opened its index."""

    def __init__(self, name: str, shard: Pending[ShardIndex]) -> None:
        self.name = name
        self.shard = shard

    async def Upsert(self, request, context):
        shard = self.shard.get()
        if not request.clips:
            raise InvalidInput("Upsert needs at least one clip")
        if len(request.clips) > MAX_CLIPS_PER_REQUEST:
            raise InvalidInput(f"Upsert takes at most {MAX_CLIPS_PER_REQUEST} clips, got {len(request.clips)}")
        records = [convert.record_from_proto(c) for c in request.clips]
        await asyncio.to_thread(shard.upsert, records)
        return index_pb2.UpsertResponse(upserted=len(records))

    async def Delete(self, request, context):
        shard = self.shard.get()
        if not request.clip_ids and not request.video_ids:
            raise InvalidInput("Delete needs clip_ids or video_ids")
        if any(not i for i in request.clip_ids) or any(not v for v in request.video_ids):
            raise InvalidInput("Delete ids must not be empty strings")
        deleted = await asyncio.to_thread(shard.delete, list(request.clip_ids), list(request.video_ids))
        return index_pb2.DeleteResponse(deleted=deleted)

    async def Search(self, request, context):
        shard = self.shard.get()
        if not request.queries:
            raise InvalidInput("Search needs at least one query vector")
        if len(request.queries) > MAX_QUERIES_PER_REQUEST:
            raise InvalidInput(f"Search takes at most {MAX_QUERIES_PER_REQUEST} queries, got {len(request.queries)}")
        if request.search_k < 0:
            raise InvalidInput(f"search_k must be >= 0, got {request.search_k}")
        vectors = convert.queries_from_proto(request.queries)
        lengths = {len(v) for v in vectors}
        if len(lengths) != 1:
            raise InvalidInput(f"query vectors have different lengths: {sorted(lengths)}")
        queries = np.stack(vectors)
        results = await asyncio.to_thread(
            shard.search,
            queries,
            request.top_k,
            convert.filter_from_proto(request.filter),
            request.search_k or None,
        )
        return index_pb2.SearchResponse(
            results=[
                index_pb2.QueryHits(
                    hits=[convert.hit_to_proto(h, self.name, request.include_vectors) for h in hits]
                )
                for hits in results
            ],
            model_id=shard.model_id or "",
        )

    async def Get(self, request, context):
        shard = self.shard.get()
        if len(request.clip_ids) > MAX_CLIPS_PER_REQUEST:
            raise InvalidInput(f"Get takes at most {MAX_CLIPS_PER_REQUEST} ids, got {len(request.clip_ids)}")
        records = await asyncio.to_thread(shard.get, list(request.clip_ids))
        found = {r.clip_id for r in records}
        return index_pb2.GetResponse(
            clips=[convert.record_to_proto(r, request.include_vectors) for r in records],
            missing_ids=[i for i in request.clip_ids if i not in found],
        )

    async def Seal(self, request, context):
        shard = self.shard.get()
        sealed = await asyncio.to_thread(shard.seal, request.wait)
        return index_pb2.SealResponse(sealed=sealed, segments=shard.stats()["segments"])

    async def Compact(self, request, context):
        shard = self.shard.get()
        await asyncio.to_thread(shard.compact, request.wait)
        return index_pb2.CompactResponse(segments=shard.stats()["segments"])

    async def Stats(self, request, context):
        shard = self.shard.get()
        s = await asyncio.to_thread(shard.stats)
        return index_pb2.StatsResponse(
            records=s["records"],
            live=s["live"],
            tombstoned=s["tombstoned"],
            segments=s["segments"],
            fresh=s["fresh"],
            bytes_on_disk=s["bytes_on_disk"],
            model_id=s["model_id"] or "",
            dimension=s["dim"] or 0,
            shard=self.name,
        )
