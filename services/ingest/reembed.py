"""Re-embedding, the filler of a re-index: a video's clips written into another index generation,
embedded again by that generation's encoder from the video's stored source.

The source generation says what to re-embed: the video's stored clips (a Scan of its shard filtered
to the video, without vectors), whose metadata ``source_uri`` names the video as its ingest job read
it (``media:<key>`` of an upload, or ``file://`` under the allowed roots). The ingest `Pipeline`,
built with the target's encoder and shards, decodes exactly those clips again (`Pipeline.reembed`)
and writes each with its stored id, time range, caption, tags, thumbnail and metadata: the video
comes out clip for clip as it was, with the target model's vectors and model id.

Why this is safe to run while the stack serves and ingests:
- Filling is idempotent: clip ids are deterministic, so filling a video again overwrites.
- A DeleteVideo goes to every generation, but one that lands on the target between this reading
  the source and writing the target would be undone by the write. So after writing, the filler
  reads the source again and removes from the target every clip it wrote that the source no
  longer has. (A delete that comes later reaches the target after the write, and removes it.)
- Without ``prune`` a fill never deletes anything else from the target: after the switch, jobs
  write the target too, and their clips must not be taken for stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

from services.common.encoder_client import EncoderClient
from services.common.errors import InvalidInput, VidsearchError, WrongState
from services.common.index_client import ShardSet
from services.ingest.pipeline import Pipeline
from services.ingest.settings import IngestSettings
from services.media.store import MediaStore
from vidsearch.common.v1 import common_pb2

log = logging.getLogger(__name__)

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

    @property
    def target(self) -> ShardSet:
        return self.pipeline.shards

    async def fill_video(self, video_id: str, *, prune: bool = False) -> int:
        """Re-embeds one video into the target; returns the clips written (0: the source has none).

        ``prune`` also removes the target's clips of the video that the source does not have: use it
        only while no job writes the target (before the switch).
        """
        stored = await clips_of(self.source, video_id)
        if not stored:
            return 0
        uri = _source_uri(video_id, stored)
        try:
            await self.pipeline.reembed(video_id, uri, stored)
        except VidsearchError as exc:  # e.g. the source is gone: say which video it was
            raise type(exc)(f"re-embedding video {video_id}: {exc}", reason=exc.reason) from exc
        written = {c.clip_id for c in stored}
        now = {c.clip_id for c in await clips_of(self.source, video_id)}
        target = self.target.for_video(video_id)
        if gone := sorted(written - now):  # deleted (or cancelled) while this fill ran
            await target.delete(clip_ids=gone)
            log.info("re-embed of %s: %d clips left the source meanwhile; removed from the target",
                     video_id, len(gone))
        if prune and (extra := sorted({c.clip_id for c in await clips_of(self.target, video_id)} - now)):
            await target.delete(clip_ids=extra)
        return len(written & now)

    __call__ = fill_video


def _source_uri(video_id: str, stored: Sequence[common_pb2.ClipRecord]) -> str:
    """The one source all of a video's clips were cut from."""
    uris = sorted({c.metadata.get(SOURCE_URI, "") for c in stored})
    if len(uris) != 1 or not uris[0]:
        raise InvalidInput(f"video {video_id} cannot be re-embedded: its clips name the sources "
                           f"{', '.join(map(repr, uris))} in metadata {SOURCE_URI!r}, not one")
    return uris[0]


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
