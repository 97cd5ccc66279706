"""Cut clips held in memory for HTTP Range requests, and the Range header itself.

A ``<video>`` element fetches a clip in several ranged requests (the start, the index, then as it
seeks); cutting the clip again for each would repeat the gateway's work, so recent clips are kept
up to a byte budget, least recently used first out.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.web.errors import ApiError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class CutClip:
    """A clip's MP4 bytes and the source range they cover."""

    data: bytes
    content_type: str
    start_seconds: float
    end_seconds: float


class ClipCache:
    """Recently cut clips by clip id, up to ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._clips: OrderedDict[str, CutClip] = OrderedDict()
        self._size = 0
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, clip_id: str, fetch: Callable[[], AsyncIterator]) -> CutClip:
        """The cached clip, or the one ``fetch()`` (a GetClip stream) yields, cached."""
        lock = self._locks.setdefault(clip_id, asyncio.Lock())
        # One cut per clip at a time: the other requests of a <video> element wait for it.
        async with lock:
            if clip_id in self._clips:
                self._clips.move_to_end(clip_id)
                return self._clips[clip_id]
            chunks, head = [], None
            try:
                async for part in fetch():
                    head = head or part
                    chunks.append(part.data)
                if head is None:
                    raise ApiError(404, f"clip {clip_id!r} gave no video")
            except BaseException:
                self._locks.pop(clip_id, None)  # nothing cached: keep no lock for it (unknown ids add up)
                raise
            clip = CutClip(b"".join(chunks), head.content_type or "video/mp4", head.start_seconds,
                           head.end_seconds)
            self._put(clip_id, clip)
            return clip

    def _put(self, clip_id: str, clip: CutClip) -> None:
        if len(clip.data) > self.max_bytes:
            self._locks.pop(clip_id, None)
            return
        self._clips[clip_id] = clip
        self._size += len(clip.data)
        while self._size > self.max_bytes:
            old_id, old = self._clips.popitem(last=False)
            self._size -= len(old.data)
            self._locks.pop(old_id, None)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range one ``Range: bytes=...`` header asks of ``size`` bytes; None: all.

    Several ranges in one header are answered with the whole body (RFC 9110 allows ignoring Range).
    """
    if not header or "," in header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]):
        raise ApiError(416, f"unsupported Range {header[:60]!r}; expected bytes=FIRST-LAST",
                       headers={"Content-Range": f"bytes */{size}"})
    if not m[1]:  # the last N bytes
        first, last = max(0, size - int(m[2])), size - 1
    else:
        first = int(m[1])
        last = min(int(m[2]), size - 1) if m[2] else size - 1
    if first >= size or first > last:
        raise ApiError(416, f"range {header[:60]!r} is outside the clip's {size} bytes",
                       headers={"Content-Range": f"bytes */{size}"})
    return first, last
