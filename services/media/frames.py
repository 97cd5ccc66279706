"""Frame sampling and image decoding shared by ingest, training and the gateway.

A clip becomes ``num_frames`` RGB frames taken uniformly over a time range (CLIP4Clip style), and
every frame -- from a video or from a query image -- goes through the same `to_model_input`, so
video and image embeddings see identically preprocessed pixels.
"""

from __future__ import annotations

import bisect
import functools
import io
import math
import os
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, cast

import av
import av.error
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.errors import InvalidInput, NotFound

Source = str | os.PathLike[str] | bytes

#: A seek flushes the decoder and refills its frame-thread pipeline; it only pays off when it
#: skips more frames than this.
SEEK_COST_FRAMES = 4
#: A decoder that fails on more packets than this has a corrupt stream, not a glitch.
MAX_BAD_PACKETS = 32
#: What reading a damaged container raises. PyAV raises IndexError when a damaged MPEG-TS
#: announces a new stream in the middle of the file.
_READ_ERRORS = (av.error.FFmpegError, IndexError)
#: Still-image demuxers: a PNG renamed to .mp4 opens as a one-frame "video"; it is not one.
_IMAGE_FORMATS = ("image2",)


@dataclass(frozen=True)
class VideoInfo:
    """What `FrameSampler.probe` learns about a video's first usable video stream."""

    duration_s: float
    fps: float | None  # average rate; None when the container does not say
    width: int  # coded size, before rotation
    height: int
    rotation: int  # degrees counter-clockwise that make a frame upright: 0, 90, 180 or 270
    codec: str
    pix_fmt: str
    n_frames: int | None  # None when neither the header nor the index says
    keyframe_interval_s: float | None  # median spacing; the duration if there is one keyframe
    container: str

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as the video is meant to be watched, after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


@dataclass(frozen=True)
class SampledClip:
    """``num_frames`` model-ready frames of one time range of a video.

    Slot ``i`` holds the frame on screen at ``start_s + (i + 0.5) * (end_s - start_s) / N``.
    A range holding fewer distinct frames than slots repeats frames rather than padding with black:
    a consumer that ignores `mask` still pools real frames (weighted by how long each is shown),
    and one that honours it pools each distinct frame once, as CLIP4Clip's ``video_mask`` does.
    """

    frames: npt.NDArray[np.uint8]  # uint8 [N, size, size, 3] RGB
    timestamps_s: npt.NDArray[np.float64]  # float64 [N]: presentation time of the frame in each slot
    mask: npt.NDArray[np.bool_]  # bool [N]: True where the slot holds a frame not in an earlier slot
    start_s: float
    end_s: float  # after clamping to the video's duration
    frames_decoded: int  # frames the decoder produced for this clip (the cost; N is what was kept)

    @property
    def n_valid(self) -> int:
        """How many distinct frames the clip holds."""
        return int(self.mask.sum())


class _Frame(NamedTuple):
    time_s: float  # on the video's clock: 0 is the first frame
    pts: int
    frame: av.VideoFrame


class _Target(NamedTuple):
    time_s: float
    clip: int
    slot: int


#: (target, presentation time of the frame on screen at it, that frame as model input)
_Assignment = tuple[_Target, float, npt.NDArray[np.uint8]]


def to_model_input(image: npt.NDArray[np.uint8], size: int = 224, *, pixel_aspect: float = 1.0,
                   crop: str = "round") -> npt.NDArray[np.uint8]:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop to ``size`` x ``size``.

    Matches torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image -- the CLIP
    preprocessing -- but resamples only the cropped box. ``pixel_aspect`` (width / height of one
    pixel) stretches anamorphic video to its display shape. ``crop`` says how an odd margin is
    split: "round" as torchvision (open_clip, OpenAI), "floor" as Hugging Face image processors.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    display_width = width * pixel_aspect
    if display_width <= height:
        new_w, new_h = size, int(size * height / display_width)
    else:
        new_w, new_h = int(size * display_width / height), size
    if crop == "floor":
        left, top = (new_w - size) // 2, (new_h - size) // 2
    else:
        left, top = round((new_w - size) / 2.0), round((new_h - size) / 2.0)
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(resized)


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> npt.NDArray[np.uint8]:
    """Decode an uploaded image to an upright uint8 [H, W, 3] RGB array.

    The pixel count is checked from the header before any pixel is decoded, so a small file that
    claims to be 50000 x 50000 is refused without allocating it.
    """
    if not data:
        raise InvalidInput("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InvalidInput(
                        f"image is {width}x{height} ({width * height} pixels), over the limit of {max_pixels}"
                    )
                upright = ImageOps.exif_transpose(image)
                return np.asarray(upright.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"image is too large to decode safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"not a readable image: {exc}") from exc


def thumbnail_jpeg(frame: npt.NDArray[np.uint8], max_side: int = 320, quality: int = 85) -> bytes:
    """Encode an RGB frame as a JPEG whose longer side is at most ``max_side``."""
    image = Image.fromarray(frame)
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class FrameSampler:
    """Samples clips of ``num_frames`` frames at ``size`` x ``size`` from video files or bytes.

    Decodes only what the targets need. Before each target it either keeps decoding forward or
    seeks. With a full sample index (MP4/MOV) it seeks exactly when a keyframe lies more than
    `SEEK_COST_FRAMES` past the decoder's position and at or before the target: decoding from that
    keyframe is less work than decoding up to it. Without one (Matroska, MPEG-TS, elementary
    streams) it seeks when the gap exceeds the keyframe interval measured from the first packets.
    Frames not kept are never converted to RGB, and non-reference frames well before the next
    target are not decoded at all (``skip_frame=NONREF``).

    Stateless between calls, so one instance may serve many threads.
    """

    def __init__(
        self, num_frames: int = 12, size: int = 224, *, threads: int = 0, max_pixels: int = 8192 * 8192,
        crop: str = "round",
    ) -> None:
        if num_frames < 1 or size < 1:
            raise ValueError("num_frames and size must be positive")
        self.num_frames = num_frames
        self.size = size
        self.crop = crop  # see to_model_input
        self.threads = threads  # decoder threads; 0 lets FFmpeg pick one per core
        self.max_pixels = max_pixels

    def probe(self, source: Source) -> VideoInfo:
        """Describe a video without sampling it (decodes one frame, to prove it decodes)."""
        with _Video(source, self.threads, self.max_pixels) as video:
            return video.info()

    def sample(self, source: Source, start_s: float = 0.0, end_s: float | None = None) -> SampledClip:
        """Sample one clip over [start_s, end_s); ``end_s`` None or past the end means the end."""
        return self.sample_many(source, [(start_s, end_s)])[0]

    def sample_many(self, source: Source, ranges: Sequence[tuple[float, float | None]]) -> list[SampledClip]:
        """Sample several clips of one video, opening and decoding it once; same order as ``ranges``."""
        return list(self.iter_many(source, ranges))

    def iter_many(self, source: Source, ranges: Sequence[tuple[float, float | None]]) -> Iterator[SampledClip]:
        """Like `sample_many`, but yields each clip as soon as it is complete (bounded memory)."""
        with _Video(source, self.threads, self.max_pixels) as video:
            yield from self._clips(video, [video.clamp(start, end) for start, end in ranges])

    def _clips(self, video: _Video, ranges: list[tuple[float, float]]) -> Iterator[SampledClip]:
        n, size = self.num_frames, self.size
        targets = sorted(
            _Target(start + (slot + 0.5) * (end - start) / n, clip, slot)
            for clip, (start, end) in enumerate(ranges)
            for slot in range(n)
        )
        frames: dict[int, npt.NDArray[np.uint8]] = {}
        times: dict[int, npt.NDArray[np.float64]] = {}
        missing = [n] * len(ranges)
        decoded = [0] * len(ranges)
        finished: dict[int, SampledClip] = {}
        next_clip = 0
        walk = _FrameWalk(video, targets, decoded, functools.partial(self._model_input, video))
        for target, time_s, pixels in walk:
            clip = target.clip
            if clip not in frames:
                frames[clip], times[clip] = np.empty((n, size, size, 3), np.uint8), np.empty(n)
            frames[clip][target.slot] = pixels
            times[clip][target.slot] = time_s
            missing[clip] -= 1
            if missing[clip]:
                continue
            clip_times = times.pop(clip)
            mask = np.zeros(n, bool)
            mask[np.unique(clip_times, return_index=True)[1]] = True
            start, end = ranges[clip]
            finished[clip] = SampledClip(frames.pop(clip), clip_times, mask, start, end, decoded[clip])
            while next_clip in finished:
                yield finished.pop(next_clip)
                next_clip += 1

    def _model_input(self, video: _Video, frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
        # libswscale honours the frame's colour matrix and range; rgb24 is one byte a channel.
        rgb = cast("npt.NDArray[np.uint8]", frame.to_ndarray(format="rgb24"))
        pixel_aspect = video.pixel_aspect
        if video.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=video.rotation // 90))
            if video.rotation in (90, 270):
                pixel_aspect = 1.0 / pixel_aspect
        return to_model_input(rgb, self.size, pixel_aspect=pixel_aspect, crop=self.crop)


class _FrameWalk:
    """One pass of the decoder over a video, giving each target the frame on screen at its time.

    Iterating yields (target, frame time, model input) for every target, in time order. The frame
    for time t is the last one with a presentation time <= t, so it is known once a later frame
    arrives. Each decoded frame takes one of the transitions below; ``decoded`` counts decoder
    output per clip.
    """

    def __init__(
        self,
        video: _Video,
        targets: list[_Target],
        decoded: list[int],
        model_input: Callable[[av.VideoFrame], npt.NDArray[np.uint8]],
    ) -> None:
        self.video = video
        self.targets = targets  # sorted by time
        self.decoded = decoded
        self.model_input = model_input
        self.next_target = 0  # index of the first target not yet given its frame
        self.prev: _Frame | None = None  # the last frame decoded at or before targets[next_target]
        self.at_start = True  # decoding from the stream's first frame: a target before it gets that frame
        self.retries = 0  # seeks in a row that landed after the target
        self.counted = 0  # video.frames_decoded already charged to a clip

    def __iter__(self) -> Iterator[_Assignment]:
        video, targets = self.video, self.targets
        if targets and video.worth_seeking(video.first_time_s, targets[0].time_s):
            self._seek(targets[0].time_s)
        while self.next_target < len(targets):
            target = targets[self.next_target]
            frame = self._decode_toward(target)
            if frame is None:
                break
            if frame.time_s <= target.time_s:
                self._on_frame_before_target(frame)
                continue
            shown = self.prev
            if shown is None and self.at_start:
                shown = frame  # the stream starts after the target: the target gets its first frame
            elif shown is None:
                self._on_seek_overshoot(target)
                continue
            elif video.skipped_between(shown.pts, target.time_s):
                self._on_skipped_frame_on_screen(target)
                continue
            yield from self._emit_until(shown, frame)
        yield from self._finish_at_end_of_stream()

    def _decode_toward(self, target: _Target) -> _Frame | None:
        """Decode one frame, letting the decoder drop what lies well before ``target``; charge its clip."""
        video = self.video
        video.skip_before_s = target.time_s - video.skip_guard_s if video.skip_enabled else None
        frame = video.next_frame()
        self.decoded[target.clip] += video.frames_decoded - self.counted
        self.counted = video.frames_decoded
        return frame

    def _seek(self, time_s: float) -> None:
        """Jump to the keyframe before ``time_s``; the frames decoded so far no longer lead up to it."""
        self.video.seek(time_s)
        self.prev, self.at_start = None, False

    def _on_frame_before_target(self, frame: _Frame) -> None:
        """A frame at or before the target may be the one on screen then: keep it and decode on."""
        self.prev = frame

    def _on_seek_overshoot(self, target: _Target) -> None:
        """The seek landed after the target (B-frame reordering, imprecise container seeking): back off further."""
        self.retries += 1
        video = self.video
        back_off = (2**self.retries) * max(video.keyframe_interval_s or 1.0, 1.0)
        if self.retries > 4 or target.time_s - back_off <= video.first_time_s:
            video.rewind()
            self.at_start = True
        else:
            video.seek(target.time_s - back_off)

    def _on_skipped_frame_on_screen(self, target: _Target) -> None:
        """A skipped frame was on screen at the target (a hold longer than the guard): decode again, skip no more."""
        self.video.skip_enabled = False
        self._seek(target.time_s)

    def _emit_until(self, shown: _Frame, frame: _Frame) -> Iterator[_Assignment]:
        """``shown`` is on screen until ``frame`` arrives: it is the frame of every target before then."""
        targets, video = self.targets, self.video
        pixels = self.model_input(shown.frame)
        while self.next_target < len(targets) and targets[self.next_target].time_s < frame.time_s:
            yield targets[self.next_target], shown.time_s, pixels
            self.next_target += 1
        self.prev, self.retries = frame, 0
        video.forget_skipped(frame.pts)
        if self.next_target < len(targets) and video.worth_seeking(frame.time_s, targets[self.next_target].time_s):
            self._seek(targets[self.next_target].time_s)

    def _finish_at_end_of_stream(self) -> Iterator[_Assignment]:
        """The last frame stays on screen for its duration; a target past that means the file is short of its header."""
        targets, video, last = self.targets, self.video, self.prev
        if self.next_target == len(targets):
            return
        if last is not None:
            shown_until = last.time_s + video.frame_span_s(last.frame) + 0.5
            pixels: npt.NDArray[np.uint8] | None = None
            while self.next_target < len(targets) and targets[self.next_target].time_s < shown_until:
                if pixels is None:
                    pixels = self.model_input(last.frame)
                yield targets[self.next_target], last.time_s, pixels
                self.next_target += 1
        if self.next_target < len(targets):
            stopped_at = "no frame" if last is None else f"the last frame at {last.time_s:.3f}s"
            reason = f" ({video.read_error})" if video.read_error else ""
            raise InvalidInput(
                f"video is truncated or corrupt: needed a frame at {targets[self.next_target].time_s:.3f}s of a "
                f"{video.duration_s:.3f}s video but decoding stopped at {stopped_at}{reason}"
            )


def _open_container(source: Source) -> av.container.InputContainer:
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise InvalidInput("video is empty (0 bytes)")
        handle: io.BytesIO | str
        name, handle = "<bytes>", io.BytesIO(source)
    else:
        name = os.fspath(source)
        try:
            if os.path.getsize(name) == 0:
                raise InvalidInput(f"video file is empty (0 bytes): {name}")
        except FileNotFoundError as exc:
            raise NotFound(f"video file not found: {name}") from exc
        handle = name
    try:
        return av.open(handle, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"not a readable video ({name}): {exc.strerror}") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read video ({name}): {exc}") from exc


class _Video:
    """One opened video stream: its clock, its keyframe map and a seekable frame iterator."""

    def __init__(self, source: Source, threads: int, max_pixels: int) -> None:
        self._source = source
        self.container = _open_container(source)
        try:
            self._setup(threads, max_pixels)
        except BaseException:
            self.container.close()
            raise

    def __enter__(self) -> _Video:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    def _setup(self, threads: int, max_pixels: int) -> None:
        container = self.container
        if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
            raise InvalidInput(f"input is a still image ({container.format.name}), not a video")
        cover_art = av.stream.Disposition.attached_pic  # an MP3's album art is no video
        streams = [s for s in container.streams.video if not s.disposition & cover_art]
        if not streams:
            kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
            raise InvalidInput(f"input has no video stream (streams: {', '.join(kinds)})")
        self.stream = stream = streams[0]
        codec = stream.codec_context
        if codec.width * codec.height > max_pixels:
            raise InvalidInput(f"video is {codec.width}x{codec.height}, over the {max_pixels} pixel limit")
        stream.thread_type = "AUTO"
        codec.thread_count = threads
        if stream.time_base is None:  # PyAV's None for a zero time base: no timestamp could be read
            raise InvalidInput("video stream has no time base")
        self.time_base: Fraction = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.nominal_s = 1 / (self.fps or 25.0)  # one frame interval, for streams without timestamps
        sar = stream.sample_aspect_ratio
        self.pixel_aspect = float(sar) if sar else 1.0
        self.read_error: str | None = None
        self.skip_before_s: float | None = None
        self.skip_enabled = True
        self._skipping = False
        self._skipped: set[int] = set()
        self._bad_packets = 0
        self.frames_decoded = 0
        self._next_time_s = 0.0
        origin_s = float(stream.start_time * self.time_base) if stream.start_time is not None else None
        self._frames = self._decode()
        first = next(self._frames, None)
        if first is None:
            raise InvalidInput(f"video stream has no decodable frames{self._reason()}")
        if origin_s is None:
            origin_s = float(first.pts * self.time_base) if first.pts is not None else 0.0
        self.origin_s = origin_s
        self._first: _Frame | None = self._wrap(first)
        self.first_time_s = self._first.time_s
        self.rotation = _rotation(first, stream)
        self.duration_s = self._duration()
        self.keyframes_s, self.keyframe_interval_s, self._indexed = self._keyframes()
        self.skip_guard_s = 2 * self.nominal_s

    def _reason(self) -> str:
        return f": {self.read_error}" if self.read_error else ""

    # -- clock ------------------------------------------------------------------------------------

    def _duration(self) -> float:
        stream, container = self.stream, self.container
        if stream.duration:
            duration = float(stream.duration * self.time_base)
        elif container.duration:
            start = (container.start_time or 0) / av.time_base
            duration = start + container.duration / av.time_base - self.origin_s
        else:
            duration = self._scan_duration()
        if not duration > 0 or not math.isfinite(duration):
            raise InvalidInput("cannot determine the video's duration")
        return duration

    def _scan_duration(self) -> float:
        """Demux (without decoding) every packet; for streams whose header carries no duration."""
        end: float | None = None
        elapsed = 0.0  # elementary streams carry no timestamps: add up frame durations instead
        with _open_container(self._source) as container:
            stream = container.streams[self.stream.index]
            try:
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    span = float(packet.duration * self.time_base) if packet.duration else self.nominal_s
                    elapsed += span
                    if packet.pts is not None:
                        stop = float(packet.pts * self.time_base) + span - self.origin_s
                        end = stop if end is None else max(end, stop)
            except _READ_ERRORS:
                pass  # a damaged tail: what was read so far is the duration
        return elapsed if end is None else end

    def clamp(self, start_s: float, end_s: float | None) -> tuple[float, float]:
        """Validate a requested range and clamp its end to the duration."""
        end = self.duration_s if end_s is None else min(float(end_s), self.duration_s)
        start = float(start_s)
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
            raise InvalidInput(f"bad time range [{start_s}, {end_s}): times must be finite and >= 0")
        if start >= self.duration_s:
            raise InvalidInput(f"start {start:.3f}s is not before the video's end ({self.duration_s:.3f}s)")
        if end <= start:
            raise InvalidInput(f"bad time range [{start_s}, {end_s}): end must be after start")
        return start, end

    def frame_span_s(self, frame: av.VideoFrame) -> float:
        if frame.duration:
            return float(frame.duration * self.time_base)
        return self.nominal_s

    # -- keyframes and seeking --------------------------------------------------------------------

    def _keyframes(self) -> tuple[list[float] | None, float | None, bool]:
        """Keyframe times from a full sample index (MP4/MOV), else a keyframe spacing estimate.

        Matroska cues and the like list only some keyframes, so they only bound the estimate.
        """
        entries = self.stream.index_entries
        tb, origin = self.time_base, self.origin_s
        keyframes = sorted(float(e.timestamp * tb) - origin for e in entries if e.is_keyframe)
        if keyframes and len(keyframes) < len(entries):
            interval = float(np.median(np.diff(keyframes))) if len(keyframes) > 1 else self.duration_s
            return keyframes, interval, True
        estimate = self._estimate_keyframe_interval()
        if len(keyframes) > 1:
            estimate = min(estimate or math.inf, float(np.median(np.diff(keyframes))))
        return None, estimate, False

    def _estimate_keyframe_interval(self, max_packets: int = 1000) -> float | None:
        """Median keyframe spacing over the first packets (demuxed, not decoded)."""
        times: list[float] = []
        elapsed = 0.0
        with _open_container(self._source) as container:
            stream = container.streams[self.stream.index]
            try:
                for count, packet in enumerate(container.demux(stream)):
                    if not packet.size:
                        continue
                    if packet.pts is not None:
                        elapsed = float(packet.pts * self.time_base) - self.origin_s
                    if packet.is_keyframe:
                        times.append(elapsed)
                    if packet.pts is None:  # no timestamps: count frames at the nominal rate
                        elapsed += self.nominal_s
                    if len(times) >= 5 or count >= max_packets:
                        break
            except _READ_ERRORS:
                pass  # damaged: estimate from what was read
        if len(times) >= 2:
            return float(np.median(np.diff(times)))
        # One keyframe in everything read: the spacing is at least that long.
        return max(elapsed - (times[0] if times else 0.0), 0.0) or None

    def worth_seeking(self, position_s: float, target_s: float) -> bool:
        """Whether seeking to ``target_s`` decodes fewer frames than decoding on from ``position_s``."""
        cost_s = SEEK_COST_FRAMES * self.nominal_s
        if self.keyframes_s is not None:
            k = bisect.bisect_right(self.keyframes_s, target_s - self._seek_margin_s()) - 1
            return k >= 0 and self.keyframes_s[k] > position_s + cost_s
        if self.keyframe_interval_s is None:
            return False
        return target_s - position_s > self.keyframe_interval_s + cost_s

    def _seek_margin_s(self) -> float:
        # Index timestamps are decode times; a keyframe shows up to has_b_frames frames later.
        return (self.stream.codec_context.has_b_frames + 1) * self.nominal_s

    def seek(self, time_s: float) -> None:
        """Position the demuxer at the keyframe at or before ``time_s`` (the decoder is flushed)."""
        offset = math.floor((time_s - self._seek_margin_s() + self.origin_s) / self.time_base)
        try:
            self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise InvalidInput(f"video cannot be seeked: {exc.strerror}") from exc
        self._restart_decoding()

    def rewind(self) -> None:
        """Decode again from the first frame."""
        try:
            self.container.seek(self.stream.start_time or 0, stream=self.stream, backward=True)
        except av.error.FFmpegError as exc:
            raise InvalidInput(f"video cannot be rewound: {exc.strerror}") from exc
        self._restart_decoding()

    def _restart_decoding(self) -> None:
        self._frames.close()
        self._frames = self._decode()
        self._first = None
        self._next_time_s = 0.0
        self._skipped.clear()
        self.read_error = None

    # -- decoding ---------------------------------------------------------------------------------

    def next_frame(self) -> _Frame | None:
        """The next decoded frame in presentation order, or None at the end of the stream."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        frame = next(self._frames, None)
        return None if frame is None else self._wrap(frame)

    def _wrap(self, frame: av.VideoFrame) -> _Frame:
        if frame.pts is None:  # elementary streams carry no timestamps: count frames at the nominal rate
            time_s = self._next_time_s
            pts = round((time_s + self.origin_s) / self.time_base)
        else:
            pts = frame.pts
            time_s = float(pts * self.time_base) - self.origin_s
        self._next_time_s = time_s + self.frame_span_s(frame)
        self._skipped.discard(pts)
        return _Frame(time_s, pts, frame)

    def _decode(self) -> Generator[av.VideoFrame]:
        codec = self.stream.codec_context
        try:
            for packet in self.container.demux(self.stream):
                self._skip_if_unneeded(packet)
                try:
                    frames = codec.decode(packet)
                except av.error.EOFError:
                    return
                except av.error.FFmpegError as exc:
                    self._bad_packets += 1
                    if self._bad_packets > MAX_BAD_PACKETS:
                        raise InvalidInput(f"video is corrupt: {self._bad_packets} packets failed to decode") from exc
                    self.read_error = f"decoding failed: {exc.strerror}"
                    continue
                self.frames_decoded += len(frames)
                yield from frames
        except _READ_ERRORS as exc:  # the container itself is damaged: keep what decodes
            self.read_error = f"reading failed: {getattr(exc, 'strerror', None) or exc}"
            try:
                yield from codec.decode(None)
            except av.error.FFmpegError:
                return

    def _skip_if_unneeded(self, packet: av.Packet[av.video.stream.VideoStream]) -> None:
        """Let the decoder drop non-reference frames that lie well before the next target."""
        skip = (
            self.skip_before_s is not None
            and packet.pts is not None
            and float(packet.pts * self.time_base) - self.origin_s < self.skip_before_s
        )
        if skip != self._skipping:
            self.stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self._skipping = skip
        if skip and packet.pts is not None:  # skip implies a pts
            self._skipped.add(packet.pts)

    def skipped_between(self, after_pts: int, until_s: float) -> bool:
        """Whether a frame that may have been skipped would be on screen at ``until_s`` instead.

        Only frames too far before a target are skipped, so this is rare (variable frame rate gaps).
        """
        until = (until_s + self.origin_s) / self.time_base
        return any(after_pts < pts <= until for pts in self._skipped)

    def forget_skipped(self, up_to_pts: int) -> None:
        self._skipped = {pts for pts in self._skipped if pts > up_to_pts}

    def info(self) -> VideoInfo:
        codec = self.stream.codec_context
        n_frames = self.stream.frames or (len(self.stream.index_entries) if self._indexed else None)
        return VideoInfo(
            duration_s=self.duration_s,
            fps=self.fps,
            width=codec.width,
            height=codec.height,
            rotation=self.rotation,
            codec=codec.name,
            pix_fmt=codec.pix_fmt or "",
            n_frames=n_frames or None,
            keyframe_interval_s=self.keyframe_interval_s,
            container=self.container.format.name,
        )


def _rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Degrees counter-clockwise that make frames upright, from the display matrix side data.

    Older files may carry only a ``rotate`` tag, which counts clockwise.
    """
    degrees = frame.rotation
    if not degrees and "rotate" in stream.metadata:
        try:
            degrees = -int(stream.metadata["rotate"])
        except ValueError:
            degrees = 0
    return round(degrees / 90) % 4 * 90
