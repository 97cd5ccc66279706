"""Which index shard owns a video: the one placement function every service uses.

All clips of a video live on one shard, so "delete this video" and "more like this" touch a
single shard. Placement is Jump Consistent Hash (Lamping & Veach, 2014) over a SHA-256 of the
video id: stable across processes and Python versions, and growing from N to N+1 shards moves
only about 1/(N+1) of the videos.
"""

from __future__ import annotations

import hashlib
import re

from services.common.errors import InvalidInput

#: A video id: usable in clip ids and media keys (letters, digits and ``._:-``).
VIDEO_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}")
_START_MS = re.compile(r"[0-9]{1,12}")


def _key(video_id: str) -> int:
    return int.from_bytes(hashlib.sha256(video_id.encode("utf-8")).digest()[:8], "big")


def shard_for_video(video_id: str, n_shards: int) -> int:
    """The shard number (0..n_shards-1) that stores every clip of ``video_id``."""
    if not video_id:
        raise InvalidInput("video_id must not be empty")
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    key, b, j = _key(video_id), -1, 0
    while j < n_shards:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def clip_id_for(video_id: str, start_s: float) -> str:
    """The deterministic clip id: "<video_id>:<start in ms, 9 digits>", so re-ingest overwrites."""
    return f"{video_id}:{round(start_s * 1000):09d}"


def video_of_clip(clip_id: str) -> str:
    """The video id part of a clip id."""
    video_id, sep, start = clip_id.rpartition(":")
    if not sep or not video_id or not start.isdigit():
        raise InvalidInput(f"malformed clip id {clip_id!r}; expected '<video_id>:<start ms>'")
    return video_id


def validate_clip_id(clip_id: str) -> str:
    """Refuses a clip id that no ingest could have made, before any lookup."""
    video_id, sep, start = clip_id.rpartition(":")
    if not sep or not VIDEO_ID.fullmatch(video_id) or not _START_MS.fullmatch(start):
        raise InvalidInput(f"malformed clip id {clip_id[:200]!r}; expected '<video_id>:<start ms>'")
    return clip_id
