"""Runs of rows a shard searches together: sealed segments (approximate) and buffers (exact scan).

Also the seq-range arithmetic segments use to record which store rows they cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from services.index.segment import Segment


class Part:
    """A run of rows searched together: a sealed segment (approximate) or a buffer (exact scan).

    Rows are append-only; a row is never changed, only marked dead. A buffer grows by copying into
    a larger array, so a search that captured ``(part, size)`` keeps a consistent view.
    """

    def __init__(self, dim: int, segment: Segment | None = None,
                 seq_ranges: list[list[int]] | None = None) -> None:
        self.segment = segment
        self.seq_ranges: list[list[int]] = seq_ranges or []
        self.building = False
        if segment is not None:
            self.clip_ids: list[str] = segment.clip_ids
            self.seqs = segment.seqs
            # A plain ndarray view of the memory map: same pages, no np.memmap indexing overhead.
            self.vectors: np.ndarray = segment.vectors.view(np.ndarray)
            self.size = segment.n_items
            self.dead = np.zeros(self.size, dtype=bool)
        else:
            self.clip_ids = []
            self.seqs = np.zeros(0, dtype=np.int64)
            self.vectors = np.zeros((0, dim), dtype=np.float32)
            self.size = 0
            self.dead = np.zeros(0, dtype=bool)

    @property
    def exact(self) -> bool:
        return self.segment is None

    def append(self, clip_ids: list[str], seqs: Sequence[int], vectors: np.ndarray) -> int:
        """Append rows to a buffer (caller holds the state lock); returns the first new row."""
        start, end = self.size, self.size + len(clip_ids)
        if end > len(self.vectors):
            capacity = max(end, 2 * len(self.vectors), 1024)
            self.vectors = grow(self.vectors, capacity, start)
            self.seqs = grow(self.seqs, capacity, start)
            self.dead = grow(self.dead, capacity, start)
        self.vectors[start:end] = vectors
        self.seqs[start:end] = seqs
        self.dead[start:end] = False
        self.clip_ids.extend(clip_ids)
        self.size = end
        return start

    def n_dead(self) -> int:
        return int(np.count_nonzero(self.dead[: self.size]))


def grow(array: np.ndarray, capacity: int, used: int) -> np.ndarray:
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


def in_ranges(seq: int, ranges: list[list[int]]) -> bool:
    return any(lo <= seq <= hi for lo, hi in ranges)


def union_ranges(ranges: Iterable[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged

