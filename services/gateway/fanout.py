"""Fan-out of one batch of query vectors to every shard, and the k-way merge of their hits.

Each shard gets the time left on the request's deadline minus a small margin, so a late shard
is dropped (and named in ``failed``) while the others' hits still go back in time; a shard known
to be down is not called at all (``ShardClient`` skips it at once). A shard whose reply carries
another model id than the one searched (a shard of another generation, or rebuilt with another
model) counts as failed too: its hits are never merged with the others. Only when
every shard failed is the search itself an error: INVALID_ARGUMENT when every shard refused the
request as invalid (a bad filter is the caller's mistake, not an outage), else UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Histogram

from services.common.errors import DependencyDown, InvalidInput, VidsearchError, WrongState
from services.common.index_client import ShardClient, ShardSkipped
from vidsearch.common.v1 import common_pb2

log = logging.getLogger(__name__)

SHARD_LATENCY = Histogram(
    "vidsearch_gateway_shard_search_seconds", "Time of one shard's Search as the gateway sees it, failures included.",
    ["shard"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SHARD_FAILURES = Counter("vidsearch_gateway_shard_failures_total",
                         "Shard searches that failed or ran out of time, by the error's kind.", ["shard", "error"])


@dataclass
class FanoutResult:
    """Merged hits per query, best first, and the shards that failed or were late."""

    hits: list[list[common_pb2.ScoredClip]]
    failed: list[str] = field(default_factory=list)


def merge_ranked(lists: list[list[common_pb2.ScoredClip]], top_k: int,
                 collapse_by_video: bool = False, exclude: frozenset[str] = frozenset()) -> list[common_pb2.ScoredClip]:
    """k-way merge of per-shard lists (each sorted by descending score)."""
    merged = heapq.merge(*lists, key=lambda h: -h.score)
    out: list[common_pb2.ScoredClip] = []
    seen_videos: set[str] = set()
    seen_clips: set[str] = set()
    for hit in merged:
        clip = hit.clip
        if clip.clip_id in exclude or clip.clip_id in seen_clips:
            continue
        if collapse_by_video:
            if clip.video_id in seen_videos:
                continue
            seen_videos.add(clip.video_id)
        seen_clips.add(clip.clip_id)
        out.append(hit)
        if len(out) == top_k:
            break
    return out


async def fan_out(shards: list[ShardClient], queries: np.ndarray, top_k: int, flt: common_pb2.SearchFilter,
                  timeout_s: float, *, collapse_by_video: bool = False,
                  exclude: frozenset[str] = frozenset(), model_id: str = "") -> FanoutResult:
    """Searches every shard concurrently within ``timeout_s`` and merges the ranked hits.

    With ``model_id``, a reply of a shard bound to another model counts as that shard's failure.
    """
    # Over-fetch when results are post-processed, so collapsing or exclusion still fills top_k.
    fetch = min(1000, top_k * 4 if collapse_by_video else top_k + len(exclude))

    async def one(shard: ShardClient):
        t0 = time.perf_counter()
        try:
            return await shard.search(queries, fetch, flt, timeout_s=timeout_s)
        finally:
            SHARD_LATENCY.labels(shard.name).observe(time.perf_counter() - t0)

    replies = await asyncio.gather(*(one(s) for s in shards), return_exceptions=True)
    if model_id:
        replies = [WrongState(f"shard {s.name} holds model {r.model_id}, not {model_id}")
                   if not isinstance(r, BaseException) and r.model_id and r.model_id != model_id else r
                   for s, r in zip(shards, replies, strict=True)]
    failed: list[str] = []
    per_query: list[list[list[common_pb2.ScoredClip]]] = [[] for _ in range(len(queries))]
    for shard, reply in zip(shards, replies, strict=True):
        if isinstance(reply, BaseException):
            if not isinstance(reply, VidsearchError):
                log.error("shard %s failed unexpectedly: %r", shard.name, reply)
            elif isinstance(reply, ShardSkipped):
                log.debug("%s", reply)  # the breaker logged the shard going down once
            else:
                log.warning("shard %s failed: %s", shard.name, reply)
            SHARD_FAILURES.labels(shard.name, type(reply).__name__).inc()
            failed.append(shard.name)
            continue
        for q, result in enumerate(reply.results):
            per_query[q].append(list(result.hits))
    if len(failed) == len(shards):
        if all(isinstance(r, InvalidInput) for r in replies):
            raise InvalidInput(str(replies[0]))
        raise DependencyDown(f"all {len(shards)} index shards failed or timed out: {', '.join(failed)}")
    hits = [merge_ranked(lists, top_k, collapse_by_video, exclude) for lists in per_query]
    return FanoutResult(hits, failed)
