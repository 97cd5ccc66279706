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
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence

from services.common.encoder_client import EncoderClient
from services.common.errors import InvalidInput, VidsearchError, WrongState
from services.common.index_client import ShardSet
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


@contextlib.asynccontextmanager
async def reembedding(cfg: IngestSettings, source_shards: Sequence[str], target_encoder: str,
                      target_shards: Sequence[str], *, model_id: str = "") -> AsyncIterator[Reembedder]:
    """A `Reembedder` from ``source_shards`` into the generation at ``target_encoder`` + ``target_shards``.

    ``cfg`` gives what ingest workers use (media store, allowed roots, decoding, batching, deadlines);
    its own encoder and shards are ignored. With ``model_id`` the target encoder must serve that model.
    """
    cfg = dataclasses.replace(cfg, encoder=target_encoder, index_shards=tuple(target_shards))
    timeout = cfg.rpc_timeout_seconds
    source = ShardSet(source_shards, timeout_s=timeout, write_quorum=cfg.index_write_quorum)
    target = ShardSet(target_shards, timeout_s=timeout, write_quorum=cfg.index_write_quorum)
    encoder = EncoderClient(target_encoder, timeout_s=timeout)
    pipeline = Pipeline.from_settings(cfg, encoder, target, MediaStore(cfg.media_root))
    try:
        serving = (await encoder.info()).model_id
        if model_id and serving != model_id:
            raise WrongState(f"the encoder at {target_encoder} serves model {serving}, not {model_id}")
        yield Reembedder(source, pipeline)
    finally:
        await encoder.close()
        await source.close()
        await target.close()
        await asyncio.to_thread(pipeline.pool.close)
