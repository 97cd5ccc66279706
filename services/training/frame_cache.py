"""Every clip of a manifest sampled once into memory-mapped frames, so epochs never decode video.

This is the role of CLIP4Clip's compression step. A cache is a directory::

    frames.npy   uint8 [n_clips, T, S, S, 3], the FrameSampler's model-ready frames, memory-mapped
    mask.npy     bool [n_clips, T], the FrameSampler's mask (False on a repeated frame)
    index.json   written last, so a directory without it is incomplete: key, settings, clips

Its key hashes exactly what decides the frames: every distinct clip (video path, start, end), each
video's size and modification time, ``num_frames``, ``size`` and the cache format. A changed
range, an added clip or a re-encoded video thus gives a new cache; a caption edit, which changes
no pixel, keeps the old one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.common.errors import VidsearchError
from services.media.frames import FrameSampler

log = logging.getLogger(__name__)

FORMAT = "vidsearch.frame-cache"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
FRAMES_FILE = "frames.npy"
MASK_FILE = "mask.npy"
_KEY_CHARS = 20


class FrameCacheError(VidsearchError):
    """A video of the manifest is missing or cannot be sampled, or the cache cannot be written."""


class HasClip(Protocol):
    """What the cache needs of a manifest entry."""

    video: Path
    start_s: float
    end_s: float


@dataclass(frozen=True, order=True)
class ClipSpan:
    """One distinct clip: a time range of a video (an absolute path)."""

    video: str
    start_s: float
    end_s: float

    @classmethod
    def of(cls, entry: HasClip) -> ClipSpan:
        return cls(str(entry.video), float(entry.start_s), float(entry.end_s))


def clip_spans(entries: Iterable[HasClip]) -> list[ClipSpan]:
    """The distinct clips of ``entries``, sorted by video then time (the cache's row order)."""
    return sorted({ClipSpan.of(e) for e in entries})


def cache_key(spans: Sequence[ClipSpan], num_frames: int, size: int, crop: str = "round") -> str:
    """sha256 over the format, the sampling settings, each video's size and mtime, and the spans."""
    # The crop joined the settings later: left out when it is the default, so earlier keys still hold.
    settings = [FORMAT, FORMAT_VERSION, num_frames, size] + ([crop] if crop != "round" else [])
    digest = hashlib.sha256(json.dumps(settings).encode())
    for video in sorted({s.video for s in spans}):
        try:
            stat = os.stat(video)
        except OSError as exc:
            raise FrameCacheError(f"{video}: cannot read the video: {exc.strerror}") from exc
        digest.update(f"{video}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for span in spans:
        digest.update(f"{span.video}\0{span.start_s!r}\0{span.end_s!r}\n".encode())
    return digest.hexdigest()


class FrameCache:
    """An opened cache: ``frames`` (memory-mapped) and ``mask`` rows in ``spans`` order."""

    def __init__(self, directory: Path, key: str, spans: list[ClipSpan], frames: np.ndarray,
                 mask: np.ndarray, reused: bool) -> None:
        self.directory = directory
        self.key = key
        self.spans = spans
        self.frames = frames
        self.mask = mask
        self.reused = reused  # True when an earlier build was opened, False when built just now
        self._rows = {span: row for row, span in enumerate(spans)}

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    @property
    def size(self) -> int:
        return int(self.frames.shape[2])

    def row(self, entry: HasClip) -> int:
        """The row holding ``entry``'s clip; KeyError if the cache was built without it."""
        return self._rows[ClipSpan.of(entry)]

    def clip(self, rows: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``[b, T, S, S, 3]`` and mask ``[b, T]`` of ``rows``, copied out of the map."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.frames[rows]), np.asarray(self.mask[rows])


def open_frame_cache(
    entries: Iterable[HasClip],
    root: str | os.PathLike[str],
    *,
    num_frames: int,
    size: int,
    crop: str = "round",
    workers: int | None = None,
    label: str | None = None,
    progress: bool = False,
) -> FrameCache:
    """The cache of ``entries``' clips under ``root``, built first if it is missing or stale.

    ``workers`` processes sample videos in parallel (default: one per CPU, at most one per video;
    1 samples in this process). A finished build removes older caches under ``root`` with the
    same ``label`` (the trainer passes the manifest's path) and the same sampling settings, so a
    changing manifest does not fill the disk while models of other frame sizes keep theirs.
    ``crop`` is the model's centre-crop rounding (see `to_model_input`).
    """
    spans = clip_spans(entries)
    if not spans:
        raise FrameCacheError("no clips to cache: the manifest selection is empty")
    key = cache_key(spans, num_frames, size, crop)
    root = Path(root)
    directory = root / key[:_KEY_CHARS]
    cache = _open(directory, key, spans, num_frames, size)
    if cache is not None:
        return cache
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FrameCacheError(f"{root}: cannot create the frame cache directory: {exc.strerror}; "
                              "choose another with --cache-dir") from exc
    staging = root / f".{key[:_KEY_CHARS]}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        _build(staging, key, spans, num_frames, size, crop, workers, label, progress)
        try:
            staging.rename(directory)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_stale(root, directory, label, num_frames, size, crop)
    cache = _open(directory, key, spans, num_frames, size)
    if cache is None:
        raise FrameCacheError(f"{directory}: the cache just built does not open")
    cache.reused = False
    return cache


def _open(directory: Path, key: str, spans: list[ClipSpan], num_frames: int, size: int) -> FrameCache | None:
    try:
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("format") != FORMAT or index.get("key") != key:
            return None
        frames = np.load(directory / FRAMES_FILE, mmap_mode="r")
        mask = np.load(directory / MASK_FILE)
    except (OSError, ValueError):
        return None
    if frames.shape != (len(spans), num_frames, size, size, 3) or mask.shape != frames.shape[:2]:
        log.warning("frame cache %s has the wrong shape %s; rebuilding it", directory, frames.shape)
        return None
    return FrameCache(directory, key, spans, frames, mask, reused=True)


def _build(staging: Path, key: str, spans: list[ClipSpan], num_frames: int, size: int, crop: str,
           workers: int | None, label: str | None, progress: bool) -> None:
    staging.mkdir()
    n = len(spans)
    log.info("sampling %d clips (%d frames at %dpx) into %s", n, num_frames, size, staging)
    # Written by the workers through their own maps; created here so they only open them.
    np.lib.format.open_memmap(staging / FRAMES_FILE, "w+", np.uint8, (n, num_frames, size, size, 3)).flush()
    np.lib.format.open_memmap(staging / MASK_FILE, "w+", np.bool_, (n, num_frames)).flush()
    rows_by_video: dict[str, list[int]] = defaultdict(list)
    for row, span in enumerate(spans):
        rows_by_video[span.video].append(row)
    jobs = [
        (str(staging), video, [(spans[r].start_s, spans[r].end_s) for r in rows], rows)
        for video, rows in rows_by_video.items()
    ]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(workers or cpus, len(jobs)))
    # FFmpeg picks one decoder thread per core by default: split the cores between the workers.
    threads = max(1, cpus // workers)
    bar = _progress_bar(n, progress)
    try:
        if workers == 1:
            for job in jobs:
                bar.update(_sample_video(*job, num_frames, size, crop, threads))
        else:
            # spawn, not fork: the parent may hold torch's thread pools, which do not survive fork.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_sample_video, *job, num_frames, size, crop, threads) for job in jobs]
                for future in as_completed(futures):
                    bar.update(future.result())
    finally:
        bar.close()
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "key": key,
        "label": label,
        "num_frames": num_frames,
        "size": size,
        "crop": crop,
        "clips": [[s.video, s.start_s, s.end_s] for s in spans],
    }
    (staging / INDEX_FILE).write_text(json.dumps(index) + "\n", encoding="utf-8")


def _sample_video(staging: str, video: str, ranges: list[tuple[float, float]], rows: list[int],
                  num_frames: int, size: int, crop: str, threads: int) -> int:
    """Sample one video's clips in one decoding pass into rows of the cache; returns the clip count."""
    frames = np.load(Path(staging) / FRAMES_FILE, mmap_mode="r+")
    mask = np.load(Path(staging) / MASK_FILE, mmap_mode="r+")
    sampler = FrameSampler(num_frames, size, threads=threads, crop=crop)
    try:
        for row, clip in zip(rows, sampler.iter_many(video, ranges), strict=True):
            frames[row] = clip.frames
            mask[row] = clip.mask
    except VidsearchError as exc:
        # Re-raised as a plain message: it crosses the process boundary by pickling.
        raise FrameCacheError(f"{video}: {exc}") from None
    frames.flush()
    mask.flush()
    return len(rows)


def _remove_stale(root: Path, keep: Path, label: str | None, num_frames: int, size: int, crop: str) -> None:
    if label is None:
        return
    for other in root.iterdir():
        if other == keep or not other.is_dir() or other.name.startswith("."):
            continue
        try:
            index = json.loads((other / INDEX_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        same = (index.get("format"), index.get("label"), index.get("num_frames"), index.get("size"),
                index.get("crop", "round"))
        if same == (FORMAT, label, num_frames, size, crop):
            log.info("removing stale frame cache %s", other)
            shutil.rmtree(other, ignore_errors=True)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="frame cache", unit="clip", disable=not enabled, dynamic_ncols=True)
