"""The IndexService servicer: validates request shape, calls the shard core, maps results.

The core (``ShardIndex``) is synchronous and CPU- or disk-bound, so every call runs in a
worker thread and the event loop stays free for health checks and other RPCs. While a replica
catches up from a peer (``CatchUp``), writes are recorded and applied, and reads are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import numpy as np

from services.common.errors import InvalidInput
from services.common.readiness import Pending
from services.index import convert
from services.index.catchup import CatchUp
from services.index.shard import ShardIndex
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

MAX_CLIPS_PER_REQUEST = 10_000
MAX_QUERIES_PER_REQUEST = 1_024
MAX_SCAN_PAGE = 10_000
DEFAULT_SCAN_PAGE = 1_000
MAX_SCAN_VIDEOS = 500
#: An ingest job id is far shorter; the bound keeps a fence table row small.
MAX_WRITER_CHARS = 128
MAX_FENCE_WRITERS = 1_000


class IndexServicer(index_pb2_grpc.IndexServiceServicer):
    """Serves one shard once start-up has opened its index (and, for a replica, caught it up)."""

    def __init__(self, name: str, shard: Pending[ShardIndex], catchup: CatchUp | None = None) -> None:
        self.name = name
        self.shard = shard
        self.catchup = catchup

    def _live_write(self, clip_ids: Iterable[str] = (), video_ids: Iterable[str] = ()
                    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Marks the clips a write touches for a catch-up under way (CatchUp.writing)."""
        if self.catchup is None:
            return contextlib.nullcontext()
        return self.catchup.writing(clip_ids, video_ids)

    def _readable(self) -> ShardIndex:
        shard = self.shard.get()
        if self.catchup is not None:
            self.catchup.check_readable()
        return shard

    async def Upsert(self, request, context):
        shard = self.shard.get()
        if not request.clips:
            raise InvalidInput("Upsert needs at least one clip")
        if len(request.clips) > MAX_CLIPS_PER_REQUEST:
            raise InvalidInput(f"Upsert takes at most {MAX_CLIPS_PER_REQUEST} clips, got {len(request.clips)}")
        if len(request.writer) > MAX_WRITER_CHARS:
            raise InvalidInput(f"writer is {len(request.writer)} characters, at most {MAX_WRITER_CHARS}")
        records = [convert.record_from_proto(c) for c in request.clips]
        async with self._live_write(clip_ids=[r.clip_id for r in records]):
            await asyncio.to_thread(shard.upsert, records, request.writer)
        return index_pb2.UpsertResponse(upserted=len(records))

    async def Delete(self, request, context):
        shard = self.shard.get()
        if not request.clip_ids and not request.video_ids:
            raise InvalidInput("Delete needs clip_ids or video_ids")
        if any(not i for i in request.clip_ids) or any(not v for v in request.video_ids):
            raise InvalidInput("Delete ids must not be empty strings")
        fences = list(request.fence_writers)
        if len(fences) > MAX_FENCE_WRITERS:
            raise InvalidInput(f"Delete fences at most {MAX_FENCE_WRITERS} writers, got {len(fences)}")
        if any(not w or len(w) > MAX_WRITER_CHARS for w in fences):
            raise InvalidInput(f"fence_writers must be 1..{MAX_WRITER_CHARS} characters each")
        async with self._live_write(clip_ids=request.clip_ids, video_ids=request.video_ids):
            deleted = await asyncio.to_thread(shard.delete, list(request.clip_ids), list(request.video_ids), fences)
        return index_pb2.DeleteResponse(deleted=deleted)

    async def Search(self, request, context):
        shard = self._readable()
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
        shard = self._readable()
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
        checksum = await asyncio.to_thread(shard.checksum) if request.content_checksum else ""
        fenced = sorted(await asyncio.to_thread(shard.fenced)) if request.include_fences else []
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
            checksum=checksum,
            catching_up=self.catchup is not None and not self.catchup.done,
            live_at_open=self.catchup.live_at_open if self.catchup is not None and not self.catchup.done else 0,
            fenced_writers=fenced,
        )

    async def Scan(self, request, context):
        shard = self._readable()
        if not 0 <= request.page_size <= MAX_SCAN_PAGE:
            raise InvalidInput(f"page_size must be 0..{MAX_SCAN_PAGE}, got {request.page_size}")
        if request.limit < 0:
            raise InvalidInput(f"limit must be >= 0, got {request.limit}")
        if len(request.video_ids) > MAX_SCAN_VIDEOS:
            raise InvalidInput(f"Scan takes at most {MAX_SCAN_VIDEOS} video ids, got {len(request.video_ids)}")
        if any(not v for v in request.video_ids):
            raise InvalidInput("Scan video ids must not be empty strings")
        page_size = request.page_size or DEFAULT_SCAN_PAGE
        after, left = request.after_clip_id, request.limit or None
        while left is None or left > 0:
            size = page_size if left is None else min(page_size, left)
            # Each page is its own read, so a long scan holds no transaction and writes go on meanwhile.
            records = await asyncio.to_thread(shard.scan, after, size, video_ids=list(request.video_ids),
                                              with_vectors=request.include_vectors)
            if not records:
                return
            yield index_pb2.ScanResponse(
                clips=[convert.record_to_proto(r, request.include_vectors, packed=True) for r in records],
                model_id=shard.model_id or "")
            after = records[-1].clip_id
            if left is not None:
                left -= len(records)
            if len(records) < size:
                return

    async def Digest(self, request, context):
        shard = self._readable()
        ranges = await asyncio.to_thread(shard.digests, list(request.bounds))
        return index_pb2.DigestResponse(ranges=[index_pb2.RangeDigest(sha256=r.sha256, clips=r.clips)
                                                for r in ranges])
