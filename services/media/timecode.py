"""SMPTE timecode: parse a source's start timecode, add seconds of media time, print ``HH:MM:SS:FF``.

Broadcast sources carry the timecode of their first frame (``10:00:00:00``) and a frame rate;
an editor needs every hit in that clock. Drop-frame timecode (29.97 and 59.94 fps, written with
``;`` before the frames) skips frame numbers 0 and 1 (0-3 at 59.94) at the start of every minute
except each tenth, so that the label stays in step with the wall clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, cast

from services.common.errors import InvalidInput

if TYPE_CHECKING:  # PyAV is imported only where a file is probed (see probe_clock)
    from av.container import InputContainer
    from av.sidedata.sidedata import SideDataContainer
    from av.video.stream import VideoStream

_TIMECODE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})")


@dataclass(frozen=True)
class SourceClock:
    """A source's start timecode and frame rate: enough to label any instant of it."""

    start: str  # e.g. "10:00:00:00" or "01:00:00;00"
    rate: Fraction  # frames per second, e.g. 30000/1001

    @property
    def drop_frame(self) -> bool:
        return any(sep in self.start for sep in ";.,")

    @property
    def nominal_fps(self) -> int:
        """The frame count of one timecode second: 30 for 29.97, 25 for 25."""
        return round(self.rate)

    def start_frame(self) -> int:
        """The start timecode as a frame number counted from 00:00:00:00."""
        return frames_of(self.start, self.nominal_fps, self.drop_frame)

    def at(self, seconds: float) -> str:
        """The timecode of the first frame at or after ``seconds`` into the source."""
        offset = max(0, math.ceil(seconds * float(self.rate) - 1e-6))
        return label_of(self.start_frame() + offset, self.nominal_fps, self.drop_frame)


def _drop_per_minute(fps: int) -> int:
    return round(fps / 15)  # 2 at 30 fps, 4 at 60 fps


def frames_of(timecode: str, fps: int, drop_frame: bool) -> int:
    """The frame number a timecode names (``;`` drop-frame counting when ``drop_frame``)."""
    m = _TIMECODE.fullmatch(timecode.strip())
    if m is None:
        raise InvalidInput(f"timecode {timecode!r} is not HH:MM:SS:FF")
    hh, mm, ss, ff = int(m[1]), int(m[2]), int(m[3]), int(m[5])
    if mm > 59 or ss > 59 or ff >= fps:
        raise InvalidInput(f"timecode {timecode!r} is out of range at {fps} fps")
    total_minutes = 60 * hh + mm
    frames = (3600 * hh + 60 * mm + ss) * fps + ff
    if drop_frame:
        frames -= _drop_per_minute(fps) * (total_minutes - total_minutes // 10)
    return frames


def label_of(frame: int, fps: int, drop_frame: bool) -> str:
    """The SMPTE label of a frame number (wrapping at 24 hours, as tape machines do)."""
    sep = ":"
    if drop_frame and fps in (30, 60):
        sep = ";"
        drop = _drop_per_minute(fps)
        per_10_min = fps * 600 - drop * 9
        per_min = fps * 60 - drop
        tens, rem = divmod(frame, per_10_min)
        frame += drop * 9 * tens + (drop * ((rem - drop) // per_min) if rem > drop else 0)
    frame %= fps * 86_400
    ff = frame % fps
    total_s = frame // fps
    return f"{total_s // 3600:02d}:{total_s // 60 % 60:02d}:{total_s % 60:02d}{sep}{ff:02d}"


def gop_timecode(packed: int) -> str:
    """An MPEG-2 GOP header timecode (25 bits, as FFmpeg exports it in frame side data) as a label."""
    drop = (packed >> 24) & 1
    hh, mm, ss, ff = (packed >> 19) & 0x1F, (packed >> 13) & 0x3F, (packed >> 6) & 0x3F, packed & 0x3F
    return f"{hh:02d}:{mm:02d}:{ss:02d}{';' if drop else ':'}{ff:02d}"


def media_timecode(seconds: float) -> str:
    """Seconds into a video as ``HH:MM:SS.mmm`` (media time, for sources without a timecode)."""
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def probe_clock(path: str) -> SourceClock | None:
    """The start timecode and frame rate of a video file; None when its frame rate is unknown.

    Looks where FFmpeg puts it: the container's tags (MXF), any stream's tags (a MOV ``tmcd``
    track, also copied onto the video stream), then the first frame's MPEG-2 GOP header (MPEG-TS
    and MPEG-PS). A source without any starts at 00:00:00:00.
    """
    import av  # the gateway and web processes use the pure functions above without PyAV

    with av.open(path) as container:
        if not container.streams.video:
            return None
        video = container.streams.video[0]
        rate = video.average_rate or video.guessed_rate
        if not rate:
            return None
        found = container.metadata.get("timecode") or next(
            (s.metadata["timecode"] for s in container.streams if "timecode" in s.metadata), None)
        if found is None and video.codec_context.name in ("mpeg2video", "mpeg1video"):
            found = _first_gop_timecode(container, video)
    clock = SourceClock(found or "00:00:00:00", Fraction(rate))
    try:
        clock.start_frame()
    except InvalidInput:
        clock = SourceClock("00:00:00:00", clock.rate)
    return clock


def _first_gop_timecode(container: InputContainer, video: VideoStream) -> str | None:
    for frame in container.decode(video):
        # PyAV's stubs call side_data a TypedDict; it is a SideDataContainer, which iterates its SideData.
        for side in cast("SideDataContainer", frame.side_data):
            if side.type.name == "GOP_TIMECODE":
                return gop_timecode(int.from_bytes(bytes(side), "little"))
        return None
    return None
