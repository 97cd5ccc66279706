"""The gateway's core: turn a query into a vector (through the cache), fan out, merge, time it.

Each search takes one snapshot of the active index generation (``services.common.generations``)
and uses its encoder and its shards throughout, so a switch of generations never mixes two models
in one answer; a shard that answers with another model id than the generation's counts as failed.
Knows nothing of gRPC servicers; the servicer maps requests to ``Query`` and results back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from services.common.clip_ids import video_of_clip
from services.common.errors import InvalidInput, NotFound
from services.common.generations import GenerationClients, GenerationPool
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


@dataclass
class ModelInfo:
    """What a generation's encoder said of its model."""

    model_id: str = ""
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS


class SearchCore:
    """Embeds queries (cached), searches every shard within the deadline, merges the hits."""

    def __init__(self, generations: GenerationPool, cache: QueryCache, *,
                 default_timeout_s: float = 10.0, deadline_margin_s: float = 0.05) -> None:
        self.generations = generations
        self.cache = cache
        self.default_timeout_s = default_timeout_s
        self.deadline_margin_s = deadline_margin_s
        # By generation name; a generation's model never changes (a new model is a new generation),
        # but the static one's encoder may be swapped behind the gateway's back.
        self._models: dict[str, ModelInfo] = {}

    def _info(self, clients: GenerationClients) -> ModelInfo:
        return self._models.setdefault(clients.name, ModelInfo(clients.generation.model_id))

    @property
    def model_id(self) -> str:
        """The active generation's model id, as far as it is known."""
        return self._info(self.generations.snapshot()).model_id

    async def refresh_model(self, timeout_s: float = 5.0, clients: GenerationClients | None = None) -> str:
        """Learns the encoder's model and text limit, so queries are checked as the encoder would."""
        clients = clients or self.generations.snapshot()
        reply = await clients.encoder.info(timeout_s=timeout_s)
        clients.check_model(reply.model_id)
        self._models[clients.name] = ModelInfo(reply.model_id, reply.max_text_chars or DEFAULT_MAX_TEXT_CHARS)
        return reply.model_id

    def _validate(self, query: Query, options: SearchOptions, info: ModelInfo) -> str:
        if not 1 <= options.top_k <= MAX_TOP_K:
            raise InvalidInput(f"top_k must be in 1..{MAX_TOP_K}, got {options.top_k}")
        modality = query.modality
        if modality == "text":
            if not query.text or not query.text.strip():
                raise InvalidInput("text query is empty")
            if len(query.text) > info.max_text_chars:
                raise InvalidInput(f"text query has {len(query.text)} characters; the limit is {info.max_text_chars}")
        elif modality == "image" and not query.image:
            raise InvalidInput("image query is empty (0 bytes)")
        elif modality == "video" and not query.video:
            raise InvalidInput("video query is empty (0 bytes)")
        elif modality == "clip_id" and not query.clip_id:
            raise InvalidInput("clip_id query is empty")
        return modality

    async def _clip_vector(self, clients: GenerationClients, clip_id: str, timeout_s: float) -> np.ndarray:
        shard = clients.shards.for_video(video_of_clip(clip_id))
        reply = await shard.get([clip_id], include_vectors=True, timeout_s=timeout_s)
        if not reply.clips:
            raise NotFound(f"no clip {clip_id!r} in the index")
        return np.asarray(reply.clips[0].vector.values, dtype=np.float32)

    async def _encode(self, clients: GenerationClients, query: Query, modality: str,
                      timeout_s: float) -> tuple[np.ndarray, str]:
        encoder = clients.encoder
        if modality == "text":
            vectors, model_id = await encoder.encode_texts([query.text], query.language, timeout_s=timeout_s)
        elif modality == "image":
            vectors, model_id = await encoder.encode_images([query.image], timeout_s=timeout_s)
        else:
            vectors, model_id = await encoder.encode_video(
                query.video, query.video_start_s, query.video_end_s, timeout_s=timeout_s)
        clients.check_model(model_id)
        info = self._info(clients)
        if model_id != info.model_id:
            log.info("encoder model changed: %s -> %s", info.model_id or "(unknown)", model_id)
            info.model_id = model_id
        return vectors[0], model_id

    def _content(self, query: Query, modality: str) -> bytes:
        if modality == "text":
            return normalise_text(query.text).encode()
        if modality == "image":
            return query.image
        return query.video + f"|{query.video_start_s:.3f}|{query.video_end_s:.3f}".encode()

    async def embed(self, query: Query, modality: str, timeout_s: float,
                    clients: GenerationClients | None = None) -> tuple[np.ndarray, bool, float]:
        """The query vector, whether it came from the cache, and the milliseconds spent encoding."""
        clients = clients or self.generations.snapshot()
        if modality == "clip_id":
            return await self._clip_vector(clients, query.clip_id, timeout_s), False, 0.0
        if not self._info(clients).model_id:
            await self.refresh_model(timeout_s, clients)
        content = self._content(query, modality)  # built once: a video query can be megabytes
        cached = await self.cache.get(cache_key(self._info(clients).model_id, modality, content))
        if cached is not None:
            return cached, True, 0.0
        t0 = time.perf_counter()
        vector, model_id = await self._encode(clients, query, modality, timeout_s)
        encode_ms = (time.perf_counter() - t0) * 1000
        await self.cache.put(cache_key(model_id, modality, content), vector)
        return vector, False, encode_ms

    async def search(self, query: Query, options: SearchOptions, timeout_s: float | None = None) -> SearchResult:
        t0 = time.perf_counter()
        deadline = t0 + (timeout_s if timeout_s is not None else self.default_timeout_s)
        clients = self.generations.snapshot()  # one generation for the whole search
        modality = self._validate(query, options, self._info(clients))
        vector, cache_hit, encode_ms = await self.embed(query, modality, deadline - time.perf_counter(), clients)
        t1 = time.perf_counter()
        remaining = deadline - t1 - self.deadline_margin_s
        exclude = frozenset([query.clip_id]) if modality == "clip_id" else frozenset()
        model_id = clients.generation.model_id or self._info(clients).model_id
        result = await fan_out(clients.shards.shards, vector[None, :], options.top_k, options.filter,
                               max(remaining, 0.001), collapse_by_video=options.collapse_by_video, exclude=exclude,
                               model_id=model_id)
        t2 = time.perf_counter()
        return SearchResult(
            hits=result.hits[0], model_id=model_id, failed_shards=result.failed,
            encode_ms=encode_ms, search_ms=(t2 - t1) * 1000, total_ms=(t2 - t0) * 1000, cache_hit=cache_hit,
        )
