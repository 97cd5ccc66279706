"""Cuts a clip's time range out of its source video as an MP4 a browser can play.

A source in a codec browsers play (H.264, HEVC, VP9, AV1) is cut without re-encoding: packets are
copied from the keyframe at or before the start up to the end (stream copy, as ``ffmpeg -ss -to
-c copy`` does). The packets before the clip's start are kept with negative timestamps, so the
MP4 muxer writes an edit list that hides them: a player decodes from the keyframe but shows the
clip's own first frame at time 0. That costs no encoding, only the bytes of up to one GOP of
preroll. The MP4 has its index first (``faststart``), so playback can begin before the last byte
arrives.

Broadcast masters (MPEG-2 in MXF or MPEG-TS, DNxHD, ProRes) play in no browser; their range is
decoded and encoded again as H.264 (``libx264``, ``veryfast``), starting exactly at the clip's
first frame. That costs one decode and one encode of the clip (see ``bench.web`` for figures).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import av

from services.common.errors import InvalidInput, NotFound

#: Codecs every current browser plays in MP4; anything else is re-encoded.
BROWSER_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
#: How far before a clip's start to seek, so that its keyframe is found even in formats that seek
#: imprecisely; longer than any GOP an archive is likely to hold.
PREROLL_S = 5.0


def cut_clip(source: Path, start_s: float, end_s: float) -> bytes:
    """The video stream of ``source`` from ``start_s`` to ``end_s`` as MP4 bytes (time 0 = ``start_s``)."""
    if not source.is_file():
        raise NotFound(f"the source video of this clip is no longer at {source}")
    with tempfile.TemporaryDirectory(prefix="vidsearch-clip-") as tmp:
        target = Path(tmp) / "clip.mp4"
        try:
            with av.open(str(source)) as probe:
                if not probe.streams.video:
                    raise InvalidInput(f"{source.name} has no video stream")
                codec = probe.streams.video[0].codec_context.name
            cut = _copy_range if codec in BROWSER_CODECS else _transcode_range
            cut(source, target, max(start_s, 0.0), end_s)
        except av.FFmpegError as exc:
            raise InvalidInput(f"cannot cut {source.name}: {exc}") from exc
        return target.read_bytes()


def _copy_range(source: Path, target: Path, start_s: float, end_s: float) -> None:
    with av.open(str(source)) as inp:
        if not inp.streams.video:
            raise InvalidInput(f"{source.name} has no video stream")
        vin = inp.streams.video[0]
        with av.open(str(target), "w", format="mp4", options={"movflags": "faststart"}) as dst:
            vout = dst.add_stream_from_template(vin)
            tb = vin.time_base
            origin = round(start_s / tb) + (vin.start_time or 0)
            # Seek well before the start (seeking in MPEG-TS lands only near the asked time), then
            # keep packets from the last keyframe at or before the start.
            inp.seek(max(vin.start_time or 0, origin - round(PREROLL_S / tb)), stream=vin, backward=True)
            kept: list[av.Packet] = []
            for packet in inp.demux(vin):
                if packet.dts is None or packet.pts is None:
                    continue
                if packet.is_keyframe and packet.pts <= origin:
                    kept = []
                if not kept and not packet.is_keyframe:
                    continue
                # Decode order: stop at the first packet decoded after the end. A reference frame
                # shown just after the end may still come along, as the B-frames before it need it.
                if (packet.dts - origin) * tb >= end_s - start_s:
                    break
                kept.append(packet)
            last_dts = None
            for packet in kept:
                # Some demuxers guess the first dts after a seek (MXF repeats it); the muxer needs
                # them strictly increasing.
                dts = packet.dts if last_dts is None else max(packet.dts, last_dts + 1)
                if packet.pts < dts:
                    continue
                last_dts = dts
                packet.pts -= origin
                packet.dts = dts - origin
                packet.stream = vout
                dst.mux(packet)


def _transcode_range(source: Path, target: Path, start_s: float, end_s: float) -> None:
    with av.open(str(source)) as inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        tb = vin.time_base
        first = vin.start_time or 0
        inp.seek(max(first, first + round((start_s - PREROLL_S) / tb)), stream=vin, backward=True)
        rate = vin.average_rate or vin.guessed_rate or 25
        with av.open(str(target), "w", format="mp4", options={"movflags": "faststart"}) as dst:
            out = dst.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "20"})
            out.width = vin.codec_context.width // 2 * 2
            out.height = vin.codec_context.height // 2 * 2
            out.pix_fmt = "yuv420p"
            out.time_base = tb
            for frame in inp.decode(vin):
                if frame.pts is None:
                    continue
                t = (frame.pts - first) * tb
                if t < start_s - 1e-6:
                    continue
                if t >= end_s - 1e-6:
                    break
                image = frame.reformat(width=out.width, height=out.height, format="yuv420p")
                image.pts = frame.pts - first - round(start_s / tb)
                image.time_base = tb
                dst.mux(out.encode(image))
            dst.mux(out.encode(None))
