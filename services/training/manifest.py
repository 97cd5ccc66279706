"""The clip manifest shared by corpus generators, the trainer and evaluation.

A manifest is JSON Lines, one object per (clip, caption)::

    {"clip_id": "film_0003:000040000", "video": "videos/film_0003.mp4", "start_s": 40.0, "end_s": 60.0,
     "caption": "...", "language": "ko", "split": "test", "attributes": {...}, "template": "ko-3"}

``video`` is relative to the manifest's directory, or absolute. ``clip_id`` is the project-wide
deterministic clip id ``<video id>:<start in ms, 9 digits>``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.atomic import replacing
from services.common.clip_ids import ClipId, video_of_clip
from services.common.errors import InvalidInput

SPLITS = ("train", "val", "test")
LANGUAGES = ("ko", "en")
FIELDS = ("clip_id", "video", "start_s", "end_s", "caption", "language", "split", "attributes", "template")


@dataclass(frozen=True)
class ManifestEntry:
    """One captioned clip: a time range of a video, a caption in one language, and its split."""

    clip_id: str
    video: Path  # absolute
    start_s: float
    end_s: float
    caption: str
    language: str
    split: str
    attributes: dict[str, Any] = field(hash=False)  # what the clip shows; {} when unknown
    template: str | None  # the caption template's id, None for human captions

    @property
    def video_id(self) -> str:
        return video_of_clip(self.clip_id)

    def to_json(self, base_dir: str | os.PathLike[str]) -> str:
        """The manifest line for this entry, ``video`` relative to ``base_dir`` when inside it."""
        video = Path(self.video)
        try:
            video_text = video.relative_to(Path(base_dir).absolute()).as_posix()
        except ValueError:
            video_text = str(video)
        record = {
            "clip_id": self.clip_id,
            "video": video_text,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "caption": self.caption,
            "language": self.language,
            "split": self.split,
            "attributes": self.attributes,
            "template": self.template,
        }
        return json.dumps(record, ensure_ascii=False)


def write_manifest(path: str | os.PathLike[str], entries: Iterable[ManifestEntry]) -> Path:
    """Write a manifest atomically: readers see the old file or the complete new one."""
    path = Path(path)
    base_dir = path.absolute().parent
    with replacing(path) as partial, open(partial, "w", encoding="utf-8", newline="\n") as out:
        for entry in entries:
            out.write(entry.to_json(base_dir) + "\n")
    return path


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestEntry]:
    """Read and validate a manifest; a bad line raises ``ValueError`` naming the file and line number.

    Blank lines are skipped and unknown fields ignored, so the format can grow.
    """
    path = Path(path)
    base_dir = path.absolute().parent
    entries = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(_parse(line, base_dir))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return entries


def _parse(line: str, base_dir: Path) -> ManifestEntry:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    for name in ("clip_id", "video", "caption"):
        if not isinstance(record[name], str) or not record[name].strip():
            raise ValueError(f"{name} must be a non-empty string, got {record[name]!r}")
    start_s, end_s = _seconds(record, "start_s"), _seconds(record, "end_s")
    if start_s < 0:
        raise ValueError(f"start_s must not be negative, got {start_s}")
    if end_s <= start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    try:
        parsed = ClipId.parse(record["clip_id"])
    except InvalidInput:
        raise ValueError(f"clip_id must be '<video id>:<start ms, 9 digits>', got {record['clip_id']!r}") from None
    if parsed.start_ms != round(start_s * 1000):
        raise ValueError(f"clip_id {record['clip_id']!r} does not match start_s {start_s}")
    if record["language"] not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {record['language']!r}")
    if record["split"] not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {record['split']!r}")
    if not isinstance(record["attributes"], dict):
        raise ValueError(f"attributes must be an object, got {type(record['attributes']).__name__}")
    if record["template"] is not None and not isinstance(record["template"], str):
        raise ValueError(f"template must be a string or null, got {record['template']!r}")
    video = Path(record["video"])
    return ManifestEntry(
        clip_id=record["clip_id"],
        video=video if video.is_absolute() else base_dir / video,
        start_s=start_s,
        end_s=end_s,
        caption=record["caption"],
        language=record["language"],
        split=record["split"],
        attributes=record["attributes"],
        template=record["template"],
    )


def _seconds(record: dict[str, Any], name: str) -> float:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)
