"""The CPU-heavy part of ingest, run in a pool of processes: planning a video's clips (probe and
shot detection) and sampling each clip's frames with the shared `FrameSampler`, plus its thumbnail.

Each task opens the video itself (through `sources.opened`), so only names and results cross the
process boundary, and a chunk of consecutive clips costs one open and one seek.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from services.common.errors import DependencyDown
from services.ingest import segmenting, sources
from services.ingest.records import SegmentMode, SegmentSpec
from services.ingest.segmenting import Segment
from services.media.frames import FrameSampler, thumbnail_jpeg
from services.media.store import MediaStore
from services.media.timecode import SourceClock, probe_clock

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DecodeContext:
    """What a decode process needs to find and check a source, and how to cut and sample it."""

    allowed_roots: tuple[Path, ...]
    media_root: Path
    threads: int = 1
    min_clip_s: float = 2.0
    min_shot_s: float = 2.0
    shot_threshold: float = 0.15
    thumbnail_max_side: int = 320


@dataclass(frozen=True)
class VideoPlan:
    """A video's duration, the clips it will give, and its clock (start timecode, frame rate)."""

    duration_s: float
    segments: list[Segment]
    clock: SourceClock | None = None


@dataclass(frozen=True)
class DecodedClip:
    """One clip's model-ready frames and its thumbnail."""

    start_s: float
    end_s: float
    frames: np.ndarray  # uint8 [num_frames, size, size, 3]
    thumbnail: bytes  # JPEG


@functools.cache
def _sampler(num_frames: int, size: int, threads: int, crop: str = "round") -> FrameSampler:
    return FrameSampler(num_frames, size, threads=threads, crop=crop)


def plan_video(ctx: DecodeContext, source: str, segment: SegmentSpec) -> VideoPlan:
    """Probes the video (proving it decodes) and cuts it into clips as ``segment`` asks."""
    with sources.opened(source, ctx.allowed_roots, MediaStore(ctx.media_root)) as path:
        duration = _sampler(1, 8, ctx.threads).probe(path).duration_s
        clock = probe_clock(path)
        if segment.mode is SegmentMode.SHOTS:
            cuts = segmenting.detect_cuts(path, threshold=ctx.shot_threshold, min_gap_s=min(0.5, ctx.min_shot_s))
            segments = segmenting.shot_segments(duration, cuts, segment.window_s, ctx.min_shot_s)
        else:
            segments = segmenting.fixed_windows(duration, segment.window_s, segment.overlap_s, ctx.min_clip_s)
    return VideoPlan(duration, segments, clock)


def sample_chunk(ctx: DecodeContext, source: str, segments: Sequence[Segment], num_frames: int,
                 size: int, crop: str = "round") -> list[DecodedClip]:
    """Samples consecutive clips in one decoding pass; the thumbnail is each clip's middle frame.

    ``crop`` is the encoder model's (see `to_model_input`)."""
    sampler = _sampler(num_frames, size, ctx.threads, crop)
    ranges = [(s.start_s, s.end_s) for s in segments]
    with sources.opened(source, ctx.allowed_roots, MediaStore(ctx.media_root)) as path:
        return [
            DecodedClip(seg.start_s, seg.end_s, clip.frames,
                        thumbnail_jpeg(clip.frames[num_frames // 2], max_side=ctx.thumbnail_max_side))
            for seg, clip in zip(segments, sampler.iter_many(path, ranges), strict=True)
        ]


def _die_with_parent() -> None:
    """Runs in each decode process: exit when the worker dies (even by SIGKILL), ignore Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _then_collect(fn: Callable[..., T], *args: Any) -> T:
    """Runs one task in a decode process, then a full garbage collection.

    PyAV's containers, streams and codec contexts reference each other, so only the cycle collector
    frees them, and as they live through many young collections while a video decodes they end up
    in the oldest generation, which Python seldom collects. Their FFmpeg buffers then pile up (some
    5 KB per opened video: +12% RSS of the decode processes in a 10-minute soak). One collection per
    task gives them back at once. Whatever is alive after the first task (modules, the cached
    samplers) is frozen out of later collections, which then cost well under a millisecond.
    """
    try:
        return fn(*args)
    finally:
        gc.collect()
        if not gc.get_freeze_count():
            gc.freeze()


class DecodePool:
    """A pool of ``processes`` decode processes, rebuilt if one of them dies.

    Processes are spawned (never forked: the parent runs gRPC and asyncio threads), and work is
    submitted from the event loop's thread, which also makes it their parent for PDEATHSIG.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # Decoder threads per process, so the pool as a whole uses each core once.
        self.threads = max(1, (os.cpu_count() or 1) // processes)
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_die_with_parent)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, _then_collect, fn, *args)
        except BrokenProcessPool as exc:
            if self._pool is pool:
                log.error("a decode process died; restarting the pool")
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()
            raise DependencyDown(f"a decode process died while decoding ({exc})") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
