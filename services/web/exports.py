"""A result list as files editing systems read: CSV, and a CMX3600 EDL in source timecode.

The EDL lays the hits one after another on a record timeline starting at 01:00:00:00, each event
naming its source by reel (the video id, cut to the 8 characters CMX3600 allows; the full id and
title follow in ``* FROM CLIP NAME`` and ``* SOURCE FILE`` comments, as Avid and Resolve write them).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from services.media.timecode import SourceClock, frames_of, label_of

CSV_COLUMNS = ("rank", "score", "clip_id", "video_id", "title", "programme", "air_date", "source_timecode",
               "source_end_timecode", "frame_rate", "start_seconds", "end_seconds", "caption", "tags")
RECORD_START = "01:00:00:00"
_REEL = re.compile(r"[^A-Za-z0-9_]")


def to_csv(hits: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for rank, h in enumerate(hits, 1):
        row = {**h, "rank": rank, "tags": ";".join(h.get("tags", ())), "score": f"{h['score']:.4f}"}
        writer.writerow([row.get(c, "") for c in CSV_COLUMNS])
    return out.getvalue()


def _clock(hit: dict[str, Any]) -> SourceClock:
    """The hit's source clock; sources without a known rate are labelled at 25 fps from zero."""
    if hit.get("frame_rate") and hit.get("source_timecode"):
        return SourceClock(hit["source_timecode"], Fraction(hit["frame_rate"]))
    return SourceClock("00:00:00:00", Fraction(25))


def to_edl(hits: Sequence[dict[str, Any]], title: str) -> str:
    """CMX3600 events, one per hit, cut end to end on the record side."""
    record_clock = _clock(hits[0]) if hits else SourceClock("00:00:00:00", Fraction(25))
    fps, drop = record_clock.nominal_fps, record_clock.drop_frame
    record = frames_of(RECORD_START, fps, drop)
    safe_title = re.sub(r"[\r\n]+", " ", title)[:70] or "vidsearch results"
    lines = [f"TITLE: {safe_title}", f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}", ""]
    for n, h in enumerate(hits, 1):
        clock = _clock(h)
        source_in = h.get("source_timecode") or clock.at(h["start_seconds"])
        source_out = h.get("source_end_timecode") or clock.at(h["end_seconds"])
        length = max(1, round((h["end_seconds"] - h["start_seconds"]) * record_clock.rate))
        reel = (_REEL.sub("_", h["video_id"])[:8] or "AX").upper()
        lines.append(f"{n:03d}  {reel:<8} V     C        {source_in} {source_out} "
                     f"{label_of(record, fps, drop)} {label_of(record + length, fps, drop)}")
        name = re.sub(r"[\r\n]+", " ", h.get("title") or h["video_id"])
        lines += [f"* FROM CLIP NAME: {name}", f"* SOURCE FILE: {h['video_id']}", f"* CLIP ID: {h['clip_id']}", ""]
        record += length
    return "\r\n".join(lines) + "\r\n"
