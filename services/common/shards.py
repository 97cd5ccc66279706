"""Which index shard owns a video: the one placement function every service uses.

All clips of a video live on one shard, so "delete this video" and "more like this" touch a
single shard. Placement is Jump Consistent Hash (Lamping & Veach, 2014) over a SHA-256 of the
video id: stable across processes and Python versions, and growing from N to N+1 shards moves
only about 1/(N+1) of the videos.
"""

from __future__ import annotations

import hashlib

from services.common.errors import InvalidInput


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
