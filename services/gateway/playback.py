"""Cuts a clip's time range out of its source video as a playable MP4, without re-encoding.

Packets are copied from the keyframe at or before the start up to the end (stream copy, as
``ffmpeg -ss -to -c copy`` does), into a fragmented MP4 so it can be streamed as it is written.
"""

from __future__ import annotations

import io
from pathlib import Path

import av

from services.common.errors import InvalidInput, NotFound


def cut_clip(source: Path, start_s: float, end_s: float) -> bytes:
    """The video stream of ``source`` from the keyframe before ``start_s`` to ``end_s``, as MP4 bytes."""
    if not source.is_file():
        raise NotFound(f"the source video of this clip is no longer at {source}")
    out = io.BytesIO()
    try:
        with av.open(str(source)) as inp:
            if not inp.streams.video:
                raise InvalidInput(f"{source.name} has no video stream")
            vin = inp.streams.video[0]
            with av.open(out, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as dst:
                vout = dst.add_stream_from_template(vin)
                tb = vin.time_base
                inp.seek(int(max(start_s, 0.0) / tb), stream=vin, backward=True, any_frame=False)
                first_pts = None
                for packet in inp.demux(vin):
                    if packet.dts is None or packet.pts is None:
                        continue
                    if packet.pts * tb >= end_s:
                        break
                    if first_pts is None:
                        first_pts = packet.dts
                    packet.pts -= first_pts
                    packet.dts -= first_pts
                    packet.stream = vout
                    dst.mux(packet)
    except av.FFmpegError as exc:
        raise InvalidInput(f"cannot cut {source.name}: {exc}") from exc
    return out.getvalue()
