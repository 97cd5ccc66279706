"""The query-embedding cache: Redis when configured, an in-process LRU otherwise.

Keys are ``vidsearch:qemb:<model id>:<modality>:<sha256 of the normalised content>``, so a new
model never reads an old model's vectors. A slow or dead Redis must never fail or stall a
search: every call has a short socket timeout, errors count as misses, and a circuit breaker
stops calling Redis for a while after repeated failures.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections import OrderedDict
from typing import Protocol

import numpy as np
import redis.asyncio as aioredis
from prometheus_client import Counter

from services.common.breaker import CircuitBreaker

log = logging.getLogger(__name__)

CACHE_EVENTS = Counter("vidsearch_query_cache_total", "Query-cache lookups and errors.", ["event"])


def normalise_text(text: str) -> str:
    """NFC, trimmed, inner whitespace collapsed, case-folded: equal queries share a cache entry."""
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def cache_key(model_id: str, modality: str, content: bytes) -> str:
    return f"vidsearch:qemb:{model_id}:{modality}:{hashlib.sha256(content).hexdigest()}"


class QueryCache(Protocol):
    """Both caches: ``get`` returns None on a miss or any failure; ``put`` never raises."""

    async def get(self, key: str) -> np.ndarray | None: ...

    async def put(self, key: str, vector: np.ndarray) -> None: ...

    async def close(self) -> None: ...


class LocalLRUCache:
    """The embedded default: a bounded in-process LRU with a TTL."""

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 86_400.0) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()

    async def get(self, key: str) -> np.ndarray | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            CACHE_EVENTS.labels("miss").inc()
            return None
        self._items.move_to_end(key)
        CACHE_EVENTS.labels("hit").inc()
        return item[1]

    async def put(self, key: str, vector: np.ndarray) -> None:
        self._items[key] = (time.monotonic() + self.ttl_s, vector.astype(np.float32))
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    async def close(self) -> None:
        self._items.clear()


class RedisQueryCache:
    """Redis-backed cache shared by every gateway replica."""

    def __init__(self, url: str, ttl_s: float = 86_400.0, socket_timeout_s: float = 0.05,
                 breaker: CircuitBreaker | None = None, password: str | None = None) -> None:
        self.ttl_s = ttl_s
        self.breaker = breaker or CircuitBreaker("the Redis query cache", cooldown_s=5.0, max_cooldown_s=5.0)
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
            retry_on_timeout=False, health_check_interval=0, **({"password": password} if password else {}),
        )

    async def get(self, key: str) -> np.ndarray | None:
        if not self.breaker.allow():
            CACHE_EVENTS.labels("bypass").inc()
            return None
        try:
            raw = await self._redis.get(key)
        except (aioredis.RedisError, OSError) as exc:
            self.breaker.record_failure(repr(exc))
            CACHE_EVENTS.labels("error").inc()
            log.debug("cache get failed: %s", exc)
            return None
        self.breaker.record_success()
        if raw is None:
            CACHE_EVENTS.labels("miss").inc()
            return None
        CACHE_EVENTS.labels("hit").inc()
        return np.frombuffer(raw, dtype=np.float32).copy()

    async def put(self, key: str, vector: np.ndarray) -> None:
        if not self.breaker.allow():
            return
        try:
            await self._redis.set(key, vector.astype(np.float32).tobytes(), ex=max(1, int(self.ttl_s)))
        except (aioredis.RedisError, OSError) as exc:
            self.breaker.record_failure(repr(exc))
            CACHE_EVENTS.labels("error").inc()
            log.debug("cache put failed: %s", exc)
            return
        self.breaker.record_success()

    async def close(self) -> None:
        await self._redis.aclose()
