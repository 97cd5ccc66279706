"""The gateway's core: turn a query into a vector (through the cache), fan out, merge, time it.

Knows nothing of gRPC servicers; the servicer maps requests to ``Query`` and results back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from services.common.clip_ids import video_of_clip
from services.common.encoder_client import EncoderClient
from services.common.errors import InvalidInput, NotFound
from services.common.index_client import ShardSet
from services.gateway.cache import QueryCache, cache_key, normalise_text
from services.gateway.fanout import fan_out
from vidsearch.common.v1 import common_pb2

log = logging.getLogger(__name__)

MAX_TOP_K = 1000
# Until the encoder's Info says otherwise (an encoder too old to say): its default limit.
DEFAULT_MAX_TEXT_CHARS = 1000


@dataclass(frozen=True)
class Query:
    """One query: exactly one of text, image, video or clip_id is set."""

    text: str | None = None
    language: str = ""
    image: bytes | None = None
    video: bytes | None = None
    video_start_s: float = 0.0
    video_end_s: float = 0.0
    clip_id: str | None = None

    @property
    def modality(self) -> str:
        for name in ("text", "image", "video", "clip_id"):
            if getattr(self, name) is not None:
                return name
        raise InvalidInput("the query is empty: give text, image, video or clip_id")


@dataclass
class SearchResult:
    """Ranked hits plus what a client needs to judge them."""

    hits: list[common_pb2.ScoredClip]
    model_id: str
    failed_shards: list[str] = field(default_factory=list)
    encode_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0
    cache_hit: bool = False


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 10
    filter: common_pb2.SearchFilter = field(default_factory=common_pb2.SearchFilter)
    collapse_by_video: bool = False


class SearchCore:
    """Embeds queries (cached), searches every shard within the deadline, merges the hits."""

    def __init__(self, encoder: EncoderClient, shards: ShardSet, cache: QueryCache, *,
                 default_timeout_s: float = 10.0, deadline_margin_s: float = 0.05) -> None:
        self.encoder = encoder
        self.shards = shards
        self.cache = cache
        self.default_timeout_s = default_timeout_s
        self.deadline_margin_s = deadline_margin_s
        self.model_id = ""
        self.max_text_chars = DEFAULT_MAX_TEXT_CHARS

    async def refresh_model(self, timeout_s: float = 5.0) -> str:
        """Learns the encoder's model and text limit, so queries are checked as the encoder would."""
        info = await self.encoder.info(timeout_s=timeout_s)
        self.model_id = info.model_id
        self.max_text_chars = info.max_text_chars or DEFAULT_MAX_TEXT_CHARS
        return self.model_id

    def _validate(self, query: Query, options: SearchOptions) -> str:
        if not 1 <= options.top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be in 1..{MAX_TOP_K}, got {options.top_k}")
        modality = query.modality
        if modality == "text":
            if not query.text or not query.text.strip():
                raise InvalidInput("text query is empty")
            if len(query.text) > self.max_text_chars:
                raise InvalidInput(f"text query has {len(query.text)} characters; the limit is {self.max_text_chars}")
        elif modality == "image" and not query.image:
            raise InvalidInput("image query is empty (0 bytes)")
        elif modality == "video" and not query.video:
            raise InvalidInput("video query is empty (0 bytes)")
        elif modality == "clip_id" and not query.clip_id:
            raise InvalidInput("clip_id query is empty")
        return modality

    async def _clip_vector(self, clip_id: str, timeout_s: float) -> np.ndarray:
        shard = self.shards.for_video(video_of_clip(clip_id))
        reply = await shard.get([clip_id], include_vectors=True, timeout_s=timeout_s)
        if not reply.clips:
            raise NotFound(f"no clip {clip_id!r} in the index")
        return np.asarray(reply.clips[0].vector.values, dtype=np.float32)

    async def _encode(self, query: Query, modality: str, timeout_s: float) -> tuple[np.ndarray, str]:
        if modality == "text":
            vectors, model_id = await self.encoder.encode_texts([query.text], query.language, timeout_s=timeout_s)
        elif modality == "image":
            vectors, model_id = await self.encoder.encode_images([query.image], timeout_s=timeout_s)
        else:
            vectors, model_id = await self.encoder.encode_video(
                query.video, query.video_start_s, query.video_end_s, timeout_s=timeout_s)
        if model_id != self.model_id:
            log.info("encoder model changed: %s -> %s", self.model_id or "(unknown)", model_id)
            self.model_id = model_id
        return vectors[0], model_id

    def _content(self, query: Query, modality: str) -> bytes:
        if modality == "text":
            return normalise_text(query.text).encode()
        if modality == "image":
            return query.image
        return query.video + f"|{query.video_start_s:.3f}|{query.video_end_s:.3f}".encode()

    async def embed(self, query: Query, modality: str, timeout_s: float) -> tuple[np.ndarray, bool, float]:
        """The query vector, whether it came from the cache, and the milliseconds spent encoding."""
        if modality == "clip_id":
            return await self._clip_vector(query.clip_id, timeout_s), False, 0.0
        if not self.model_id:
            await self.refresh_model(timeout_s)
        content = self._content(query, modality)  # built once: a video query can be megabytes
        cached = await self.cache.get(cache_key(self.model_id, modality, content))
        if cached is not None:
            return cached, True, 0.0
        t0 = time.perf_counter()
        vector, model_id = await self._encode(query, modality, timeout_s)
        encode_ms = (time.perf_counter() - t0) * 1000
        await self.cache.put(cache_key(model_id, modality, content), vector)
        return vector, False, encode_ms

    async def search(self, query: Query, options: SearchOptions, timeout_s: float | None = None) -> SearchResult:
        t0 = time.perf_counter()
        deadline = t0 + (timeout_s if timeout_s is not None else self.default_timeout_s)
        modality = self._validate(query, options)
        vector, cache_hit, encode_ms = await self.embed(query, modality, deadline - time.perf_counter())
        t1 = time.perf_counter()
        remaining = deadline - t1 - self.deadline_margin_s
        exclude = frozenset([query.clip_id]) if modality == "clip_id" else frozenset()
        result = await fan_out(self.shards.shards, vector[None, :], options.top_k, options.filter,
                               max(remaining, 0.001), collapse_by_video=options.collapse_by_video, exclude=exclude)
        t2 = time.perf_counter()
        return SearchResult(
            hits=result.hits[0], model_id=self.model_id, failed_shards=result.failed,
            encode_ms=encode_ms, search_ms=(t2 - t1) * 1000, total_ms=(t2 - t0) * 1000, cache_hit=cache_hit,
        )
