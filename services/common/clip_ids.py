"""Clip ids and the media keys made from them: the one place their formats are written.

A clip id is ``<video_id>:<start in ms, at least 9 digits>``: deterministic, so re-ingesting a
video overwrites its clips, and the video id (which decides the shard) is its prefix. The media
store keeps a clip's thumbnail at ``thumbs/<video_id>/<start ms>.jpg`` and a video's uploads under
``uploads/<video_id>/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.errors import InvalidInput

#: A video id: usable in clip ids and media keys (letters, digits and ``._:-``).
VIDEO_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}")
_START_MS = re.compile(r"[0-9]{1,12}")
#: Where uploads are written while they arrive, before they get their key.
UPLOADS_INCOMING = "uploads/.incoming"


@dataclass(frozen=True, order=True)
class ClipId:
    """One clip of one video, named by the video and the clip's start."""

    video_id: str
    start_ms: int

    @classmethod
    def at(cls, video_id: str, start_s: float) -> ClipId:
        return cls(video_id, round(start_s * 1000))

    @classmethod
    def parse(cls, text: str, *, strict: bool = False) -> ClipId:
        """Reads a clip id; ``strict`` also refuses video ids that no ingest accepts."""
        video_id, sep, start = text.rpartition(":")
        if strict:
            ok = bool(sep and VIDEO_ID.fullmatch(video_id) and _START_MS.fullmatch(start))
        else:
            ok = bool(sep and video_id and start.isdigit())
        if not ok:
            raise InvalidInput(f"malformed clip id {text[:200]!r}; expected '<video_id>:<start ms>'")
        return cls(video_id, int(start))

    @property
    def start_s(self) -> float:
        return self.start_ms / 1000

    @property
    def thumbnail_key(self) -> str:
        return f"{thumbnails_prefix(self.video_id)}/{self.start_ms:09d}.jpg"

    def __str__(self) -> str:
        return f"{self.video_id}:{self.start_ms:09d}"


def clip_id_for(video_id: str, start_s: float) -> str:
    """The clip id of the clip of ``video_id`` that starts at ``start_s``."""
    return str(ClipId.at(video_id, start_s))


def video_of_clip(clip_id: str) -> str:
    """The video id part of a clip id."""
    return ClipId.parse(clip_id).video_id


def validate_clip_id(clip_id: str) -> str:
    """Refuses a clip id that no ingest could have made, before any lookup."""
    ClipId.parse(clip_id, strict=True)
    return clip_id


def thumbnail_key(video_id: str, start_s: float) -> str:
    """The media key of a clip's thumbnail."""
    return ClipId.at(video_id, start_s).thumbnail_key


def thumbnails_prefix(video_id: str) -> str:
    """The media-key prefix of every thumbnail of a video."""
    return f"thumbs/{video_id}"


def uploads_prefix(video_id: str) -> str:
    """The media-key prefix of every upload of a video."""
    return f"uploads/{video_id}"


def upload_key(video_id: str, digest: str, extension: str) -> str:
    """The media key of an upload: its content hash names it, so the same file is kept once."""
    return f"{uploads_prefix(video_id)}/{digest}{extension}"
