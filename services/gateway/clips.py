"""Clips by id for the gateway: their records from the owning shard, thumbnails from the media
store, and playable cuts of their source videos (local files or uploads). Knows nothing of gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import unquote, urlparse

from services.common.clip_ids import video_of_clip
from services.common.errors import InvalidInput, NotFound
from services.common.generations import GenerationPool
from services.gateway.playback import cut_clip
from services.media.store import MEDIA_SCHEME, MediaStore
from vidsearch.common.v1 import common_pb2


def source_path(uri: str, media: MediaStore | None) -> Path:
    """The file a clip's source names: a local path or file:// URI, or an upload in the media store."""
    if uri.startswith(MEDIA_SCHEME):
        if media is None:
            raise NotFound(f"the clip's source {uri!r} is an upload, and this gateway has no media store")
        return media.path(uri[len(MEDIA_SCHEME):])
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise NotFound(f"the clip's source {uri!r} is neither a local file nor an upload")


class ClipLibrary:
    """Looks clips up on the shard that owns their video (in the active generation); serves their
    thumbnails and cuts."""

    def __init__(self, generations: GenerationPool, media: MediaStore | None) -> None:
        self.generations = generations
        self.media = media

    async def clip(self, clip_id: str) -> common_pb2.ClipRecord:
        if not clip_id:
            raise InvalidInput("clip_id is empty")
        reply = await self.generations.snapshot().shards.for_video(video_of_clip(clip_id)).get([clip_id])
        if not reply.clips:
            raise NotFound(f"no clip {clip_id!r} in the index")
        return reply.clips[0]

    async def thumbnail(self, clip_id: str) -> bytes:
        clip = await self.clip(clip_id)
        if not clip.thumbnail_ref or self.media is None:
            raise NotFound(f"clip {clip_id!r} has no thumbnail")
        return await asyncio.to_thread(self.media.get, clip.thumbnail_ref)

    async def cut(self, clip_id: str) -> tuple[common_pb2.ClipRecord, bytes]:
        """The clip's record and an MP4 of exactly its time range of the source video."""
        clip = await self.clip(clip_id)
        uri = clip.metadata.get("source_uri", "")
        if not uri:
            raise NotFound(f"clip {clip_id!r} has no recorded source video")
        path = source_path(uri, self.media)
        return clip, await asyncio.to_thread(cut_clip, path, clip.start_seconds, clip.end_seconds)
