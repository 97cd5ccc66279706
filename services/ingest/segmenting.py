"""Cutting a video into clips: fixed windows, or segments aligned to detected shot boundaries.

Boundaries are rounded to the millisecond, the resolution of clip ids (`clip_id_for`), so a
clip's start and its id always agree and re-running a job reproduces the same ids.

Policies:
- Fixed windows start every ``window - overlap`` seconds from 0 and last ``window`` seconds.
  Generation stops at the first window that reaches the end of the video (with overlap, any
  later window would lie inside it). That last window is clamped to the end; when it is shorter
  than ``min_clip`` and not the only window, it is merged into the previous clip, which then runs
  to the end (so a clip is at most ``window + min_clip`` long and never shorter than ``min_clip``
  unless the whole video is).
- Shot segments start at every detected cut. A shot shorter than ``min_shot`` is merged into the
  shot that follows it (the last shot into the one before), and a segment longer than ``window``
  is split into equal parts no longer than ``window``.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import av
import av.error
import numpy as np

from services.common.errors import InvalidInput

#: Frames are shrunk to this size before their colour histogram is taken.
ANALYSIS_SIZE = (64, 36)
#: Histogram levels per colour channel (a joint histogram of BINS**3 bins).
BINS = 4
#: A cut's distance must also be this many times the recent typical one (median of RECENT_FRAMES).
RATIO = 3.0
RECENT_FRAMES = 8
#: Frames after a candidate cut that must still differ from the picture before it (flash rejection).
CONFIRM_FRAMES = 2


@dataclass(frozen=True)
class Segment:
    """One clip's time range in seconds, [start_s, end_s)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _ms(t: float) -> float:
    return round(float(t), 3)


def fixed_windows(duration_s: float, window_s: float, overlap_s: float = 0.0,
                  min_clip_s: float = 2.0) -> list[Segment]:
    """Fixed windows over ``[0, duration_s)``; see the module docstring for the last window."""
    if not duration_s > 0:
        raise InvalidInput(f"video duration must be positive, got {duration_s}")
    if not 0 <= overlap_s < window_s:
        raise InvalidInput(f"overlap {overlap_s}s must be >= 0 and below the window ({window_s}s)")
    step = window_s - overlap_s
    end_ms = _ms(duration_s)
    segments: list[Segment] = []
    k = 0
    while True:
        start = _ms(k * step)
        end = min(_ms(start + window_s), end_ms)
        segments.append(Segment(start, end))
        if end >= end_ms:
            break
        k += 1
    if len(segments) > 1 and segments[-1].duration_s < min_clip_s:
        segments.pop()
        segments[-1] = Segment(segments[-1].start_s, end_ms)
    return segments


def shot_segments(duration_s: float, cuts: Sequence[float], max_len_s: float,
                  min_shot_s: float = 2.0) -> list[Segment]:
    """Segments starting at shot cuts, short shots merged, long ones split; see the module docstring."""
    if not duration_s > 0:
        raise InvalidInput(f"video duration must be positive, got {duration_s}")
    end = _ms(duration_s)
    kept = [0.0]
    for cut in sorted(_ms(c) for c in cuts):
        if 0 < cut < end and cut - kept[-1] >= min_shot_s:
            kept.append(cut)
    if len(kept) > 1 and end - kept[-1] < min_shot_s:
        kept.pop()
    bounds = [*kept, end]
    segments: list[Segment] = []
    for start, stop in itertools.pairwise(bounds):
        parts = max(1, math.ceil((stop - start) / max_len_s - 1e-9))
        edges = [_ms(start + (stop - start) * i / parts) for i in range(parts)] + [stop]
        segments.extend(Segment(a, b) for a, b in itertools.pairwise(edges))
    return segments


def _histogram(rgb: np.ndarray) -> np.ndarray:
    """Joint colour histogram (`BINS` levels per channel) of a small RGB frame, summing to 1.

    Joint rather than per-channel, so a change of hue that moves one channel only (green to
    yellow) moves all of a frame's mass to another bin.
    """
    levels = (rgb.astype(np.intp) * BINS) >> 8
    joint = (levels[..., 0] * BINS + levels[..., 1]) * BINS + levels[..., 2]
    return np.bincount(joint.ravel(), minlength=BINS**3) / joint.size


class _CutFinder:
    """Decides cuts from a stream of (time, histogram), one analysed frame at a time.

    A frame is a candidate when its distance to the previous frame is at least ``threshold`` and
    `RATIO` times the recent typical distance (so fast motion, which moves histograms a little on
    every frame, does not count). A candidate is confirmed only if `CONFIRM_FRAMES` frames later
    the picture still differs from the one before it, which rejects camera flashes.
    """

    def __init__(self, threshold: float, min_gap_s: float) -> None:
        self.threshold = threshold
        self.min_gap_s = min_gap_s
        self.cuts: list[float] = []
        self._previous: np.ndarray | None = None
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT_FRAMES)
        self._candidate: tuple[float, np.ndarray, int] | None = None  # time, histogram before, frames since

    def add(self, t: float, hist: np.ndarray) -> None:
        if self._candidate is not None:
            at, before, seen = self._candidate
            if seen + 1 >= CONFIRM_FRAMES:
                self._candidate = None
                if _distance(hist, before) >= self.threshold:
                    self.cuts.append(at)
            else:
                self._candidate = (at, before, seen + 1)
        if self._previous is not None:
            d = _distance(hist, self._previous)
            typical = float(np.median(self._recent)) if self._recent else 0.0
            last = self.cuts[-1] if self.cuts else -math.inf
            if (d >= self.threshold and d >= RATIO * (typical + 0.02) and self._candidate is None
                    and t - last >= self.min_gap_s):
                self._candidate = (t, self._previous, 0)
            self._recent.append(d)
        self._previous = hist

    def finish(self) -> list[float]:
        if self._candidate is not None:  # too close to the end to confirm: a cut all the same
            self.cuts.append(self._candidate[0])
            self._candidate = None
        return self.cuts


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def detect_cuts(source: str, *, threshold: float = 0.15, min_gap_s: float = 0.5) -> list[float]:
    """Times (seconds from the first frame, the sampler's clock) where a new shot starts.

    Frames are shrunk to `ANALYSIS_SIZE` before conversion and compared by colour histogram (see
    `_CutFinder`). Non-reference frames are not decoded at all, so a cut is reported at the first
    reference frame after it -- a few frames late at most, well inside the half-second tolerance
    clips need -- at about half the cost of decoding everything. Hard cuts only: a slow dissolve
    changes too little between frames to be seen, and is left to the length cap.
    """
    try:
        container = av.open(source, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"not a readable video: {exc.strerror}") from exc
    with container:
        cover_art = av.stream.Disposition.attached_pic
        streams = [s for s in container.streams.video if not s.disposition & cover_art]
        if not streams:
            raise InvalidInput("input has no video stream")
        stream = streams[0]
        stream.thread_type = "AUTO"
        stream.codec_context.skip_frame = "NONREF"
        time_base = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        interval = 1.0 / float(rate) if rate else 0.04
        origin = float(stream.start_time * time_base) if stream.start_time is not None else None
        finder = _CutFinder(threshold, min_gap_s)
        count = 0
        width, height = ANALYSIS_SIZE
        try:
            for frame in container.decode(stream):
                if frame.pts is None:  # elementary stream: count frames at the nominal rate
                    t = count * interval
                else:
                    t = float(frame.pts * time_base)
                    if origin is None:
                        origin = t
                    t -= origin
                count += 1
                finder.add(t, _histogram(frame.reformat(width=width, height=height, format="rgb24").to_ndarray()))
        except av.error.FFmpegError:
            pass  # a damaged tail: the cuts so far stand; sampling reports the damage itself
        return finder.finish()
