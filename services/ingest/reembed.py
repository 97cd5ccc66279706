"""Re-embedding, the filler of a re-index: a video's clips written into another index generation,
embedded again by that generation's encoder from the video's stored source.

The source generation says what to re-embed: the video's stored clips (a Scan of its shard filtered
to the video, without vectors), whose metadata ``source_uri`` names the video as its ingest job read
it (``media:<key>`` of an upload, or ``file://`` under the allowed roots). The ingest `Pipeline`,
built with the target's encoder and shards, decodes exactly those clips again (`Pipeline.reembed`)
and writes each with its stored id, time range, caption, tags, thumbnail and metadata: the video
comes out clip for clip as it was, with the target model's vectors and model id.

Filling is idempotent (clip ids are deterministic: filling a video again overwrites it) and only
ever writes; the migration driver (`services.index.migrate`) decides what to fill and what to
delete, and argues why that is safe while the stack serves and ingests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from services.common import settings
from services.common.errors import InvalidInput, VidsearchError, WrongState
from services.common.generations import GenerationPool, client_factory
from services.common.index_client import ShardSet
from services.common.routing import Generation, Routing
from services.ingest.pipeline import Pipeline
from services.ingest.settings import IngestSettings
from services.media.store import MediaStore
from vidsearch.common.v1 import common_pb2

SOURCE_URI = "source_uri"


async def clips_of(shards: ShardSet, video_id: str, *, include_vectors: bool = False) -> list[common_pb2.ClipRecord]:
    """Every stored clip of a video in one generation, in clip-id order."""
    pages = shards.for_video(video_id).scan(video_ids=[video_id], include_vectors=include_vectors)
    return [clip async for page in pages for clip in page]


class Reembedder:
    """``fill_video`` for a re-index: from the ``source`` generation's shards into the pipeline's
    (the target generation's encoder and shards)."""

    def __init__(self, source: ShardSet, pipeline: Pipeline) -> None:
        self.source = source
        self.pipeline = pipeline

    async def fill_video(self, video_id: str) -> list[str]:
        """Re-embeds one video into the target; returns the clip ids written (none: the source has none)."""
        stored = await clips_of(self.source, video_id)
        for uri, clips in _by_source(video_id, stored).items():
            try:
                await self.pipeline.reembed(video_id, uri, clips)
            except VidsearchError as exc:  # e.g. the source is gone: say which video it was
                raise type(exc)(f"re-embedding video {video_id}: {exc}", reason=exc.reason) from exc
        return [c.clip_id for c in stored]

    __call__ = fill_video


def _by_source(video_id: str, stored: Sequence[common_pb2.ClipRecord]) -> dict[str, list[common_pb2.ClipRecord]]:
    """The clips by the source each was cut from (one, unless the video id was ingested again from another)."""
    groups: dict[str, list[common_pb2.ClipRecord]] = {}
    for clip in stored:
        groups.setdefault(clip.metadata.get(SOURCE_URI, ""), []).append(clip)
    if "" in groups:
        raise InvalidInput(f"video {video_id} cannot be re-embedded: {len(groups[''])} of its clips have no "
                           f"{SOURCE_URI!r} in their metadata")
    return groups


def reembed_filler(cfg: IngestSettings, source: Generation,
                   target: Generation) -> tuple[Reembedder, Callable[[], Awaitable[None]]]:
    """A re-embedding ``fill_video`` from the ``source`` generation into ``target``, and the close of what
    it opened (a `services.index.migrate.FillerFactory` once ``cfg`` is given).

    ``cfg`` gives what ingest workers use (media store, allowed roots, decoding, batching, deadlines,
    write quorum); its own encoder and shards are ignored. Every re-embed checks that the target's
    encoder serves the target's model.
    """
    if source.model_id and source.model_id == target.model_id:
        raise WrongState(f"generations {source.name} and {target.name} both have model {target.model_id}: nothing "
                         "to re-embed (to move clips to new shards with the same model, copy them)")
    open_clients = client_factory(timeout_s=cfg.rpc_timeout_seconds, write_quorum=cfg.index_write_quorum)
    reading = open_clients(source)
    writing = GenerationPool(None, Routing(0, target.name, {target.name: target}), open_clients)
    pipeline = Pipeline.from_settings(cfg, writing, MediaStore(cfg.media_root))

    async def close() -> None:
        await reading.close()
        await writing.close()
        await asyncio.to_thread(pipeline.pool.close)

    return Reembedder(reading.shards, pipeline), close


def from_environment(source: Generation, target: Generation) -> tuple[Reembedder, Callable[[], Awaitable[None]]]:
    """``vidsearch migrate --mode reembed``: decoding and media as the ingest workers' VIDSEARCH_INGEST_* say."""
    return reembed_filler(settings.load(IngestSettings, "VIDSEARCH_INGEST"), source, target)

