"""The index shard's in-process engine: durable writes, approximate + exact search, background builds.

Data directory layout::

    clips.sqlite3      ShardStore: every live record, and the vectors of rows not yet sealed
    segments.json      which sealed segments exist and which store sequence numbers each covers
    segments/          segment files (IVF or Annoy engine); a listed segment's vector file is its
                       rows' one vector copy

New rows land in the *fresh buffer*, searched exactly. At ``seal_threshold`` rows (or on ``seal()``)
the buffer is frozen and a background thread builds a segment from it; until the segment is
swapped in, the frozen buffer keeps being searched exactly, so a search never waits for a build.
Once the segment is durably listed the store releases those rows' vectors, so each vector is kept
once on disk. Overwrites and deletes tombstone the old row wherever it lives. On open, listed
segments are checked; the vectors of one that is unusable (or no longer listed) are taken back into
the store from its vector file and its rows rebuilt, and live rows no segment covers go back into
the fresh buffer, so nothing acknowledged is dropped.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import numpy as np

from services.common.errors import InvalidInput, WrongState
from services.index import manifest
from services.index.engines import ENGINES, load_segment
from services.index.filters import FilterIndex
from services.index.manifest import SegmentEntry
from services.index.metrics import PART_SEARCH
from services.index.parts import Part, in_ranges, union_ranges
from services.index.records import ClipRecord, Hit, SearchFilter, validate_records
from services.index.segment import Segment, SegmentCorrupt, top_k
from services.index.store import ShardStore

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_DIGEST_BOUNDS = 10_000
_STORE = "clips.sqlite3"
_SEGMENT_DIR = "segments"
_QUERY_CHUNK = 256


@dataclass(frozen=True)
class RangeDigest:
    """A clip-id range's content as ``ShardIndex.digests`` sums it up: SHA-256 and clip count."""

    sha256: bytes
    clips: int


class ShardStats(TypedDict):
    """What ``ShardIndex.stats()`` reports.

    ``records`` counts row copies held by segments and buffers, tombstoned ones included; ``fresh``
    counts live rows searched exactly (fresh buffer plus buffers being built). ``bytes_on_disk`` is
    ``store_bytes`` (SQLite file and WAL) plus ``segment_bytes`` (every listed segment's files).
    """

    records: int
    live: int
    tombstoned: int
    segments: int
    building: int
    fresh: int
    largest_segment: int
    model_id: str | None
    dim: int | None
    bytes_on_disk: int
    segment_bytes: int
    store_bytes: int


class ShardIndex:
    """Vector index of one shard. Thread-safe: any number of searching threads and writers.

    Args:
        data_dir: directory holding the store, the segment manifest and segment files.
        model_id, dim: the embedding model the shard is bound to. A shard opened without them
            takes the binding from its store, or, when new, from its first write; opening with a
            model or dimension other than the stored one is WrongState.
        seal_threshold: fresh-buffer rows that trigger a background segment build.
        segment_engine: what proposes a sealed segment's candidates: ``"ivf"`` (faiss k-means lists of
            about 256 rows as 8-bit codes; its cost grows gently with the segment's rows) or
            ``"annoy"`` (a forest on projected vectors). Segments built by the other engine are still
            opened and searched; compaction rebuilds them with this one.
        n_trees: Annoy trees per segment (Annoy engine only). More trees cost build time and ~1-2% index size each but
            cut the nodes a query must inspect for a given recall; at dim 512 and 200k rows, 64
            trees reach recall@10 0.95 with a fraction of the search_k that 16 trees need.
        recall_target: recall@10 each segment's ``search_k`` is calibrated to reach.
        exact_filter_rows, exact_filter_fraction: a filter estimated to match at most this many
            rows, or this fraction of live rows, is answered by an exact scan of the matching rows;
            a broader one by over-fetching from the index and post-filtering.
        annoy_dim: dimensions the Annoy forest of a segment is built on (Annoy engine only; the top principal
            axes of the vectors); candidates are re-ranked exactly, so the forest only has to find them. Below the
            vectors' dimension it cuts the forest's bytes and per-node work by ``dim / annoy_dim``.
        rerank: least candidates a segment re-ranks exactly per query (None: the engine's default,
            200 for a projected Annoy forest, 32 for the IVF lists' 8-bit codes); widened at build time
            when the recall target needs it.
        max_segment_rows: compaction never merges segments into one of more live rows than this
            (nor than ``seal_threshold``, if that is larger), which keeps each segment's calibrated
            ``search_k`` in the range where the engine is fast.
        merge_factor: after each seal, whenever this many segments sit in one size tier (live rows
            in ``[seal_threshold * F^t, seal_threshold * F^(t+1))``), the smallest of them are merged
            into one, up to ``max_segment_rows`` (0: never merge on its own; ``compact`` still does).
            A query visits every segment and each needs about the same search effort for its
            recall, so a shard of many small segments is several times slower than one of a few
            large ones (bench.index ``--segment-rows``); each row is rebuilt about
            log_F(rows / seal_threshold) times.
        search_threads: threads one query's segments are searched on (1: the calling thread only).
        build_jobs: threads a segment build may use (-1: all cores).
        max_store_bytes: optional disk quota for the store (StorageFull beyond it).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        model_id: str | None = None,
        dim: int | None = None,
        seal_threshold: int = 50_000,
        segment_engine: str = "ivf",
        n_trees: int = 64,
        recall_target: float = 0.95,
        exact_filter_rows: int = 20_000,
        exact_filter_fraction: float = 0.05,
        annoy_dim: int = 128,
        rerank: int | None = None,
        max_segment_rows: int = 1_000_000,
        merge_factor: int = 4,
        search_threads: int = 1,
        build_jobs: int = -1,
        max_store_bytes: int | None = None,
        seed: int = 0,
    ) -> None:
        if seal_threshold < 1:
            raise InvalidInput(f"seal_threshold must be >= 1, got {seal_threshold}")
        if not 0.0 < recall_target <= 1.0:
            raise InvalidInput(f"recall_target must be in (0, 1], got {recall_target}")
        if segment_engine not in ENGINES:
            raise InvalidInput(f"segment_engine must be one of {sorted(ENGINES)}, got {segment_engine!r}")
        if merge_factor == 1 or merge_factor < 0:
            raise InvalidInput(f"merge_factor must be 0 (off) or >= 2, got {merge_factor}")
        self._dir = Path(data_dir)
        self._seg_dir = self._dir / _SEGMENT_DIR
        self._seg_dir.mkdir(parents=True, exist_ok=True)
        self._seal_threshold = seal_threshold
        self._engine = segment_engine
        self._n_trees = n_trees
        self._recall_target = recall_target
        self._exact_filter_rows = exact_filter_rows
        self._exact_filter_fraction = exact_filter_fraction
        self._annoy_dim = annoy_dim
        self._rerank = rerank
        self._max_segment_rows = max(max_segment_rows, seal_threshold)
        self._merge_factor = merge_factor
        self._build_jobs = build_jobs
        self._max_store_bytes = max_store_bytes
        self._seed = seed
        self._closed = False

        # _write_lock orders store writes with their in-memory application; _state guards the
        # parts lists, the location map and the filter indexes. Searches hold _state only to
        # snapshot or to read filter indexes, never while scoring.
        self._write_lock = threading.Lock()
        self._state = threading.RLock()
        self._store: ShardStore | None = None
        # Writers fenced while the shard had no store yet (no write bound it): stored with its first write.
        self._unbound_fences: set[str] = set()
        self._model_id: str | None = None
        self._dim: int | None = None
        self._segments: list[Part] = []
        self._frozen: list[Part] = []
        self._fresh = Part(1)
        self._location: dict[str, tuple[Part, int]] = {}
        self._filters = FilterIndex()
        self._records = self._filters.records  # every live clip's record, without its vector
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-build")
        self._search_pool = (ThreadPoolExecutor(max_workers=search_threads, thread_name_prefix="shard-search")
                             if search_threads > 1 else None)

        binding = ShardStore.read_binding(self._dir / _STORE)
        if binding is None and (model_id is None or dim is None):
            self._expected = (model_id, dim)  # checked against the first write
            log.info("opened new shard %s; it binds to a model on its first write", self._dir)
            return
        try:
            self._bind(model_id or binding[0], dim or binding[1])
            self._load()
        except BaseException:
            self.close()
            raise

    # ================================================================== public API

    @property
    def model_id(self) -> str | None:
        """The embedding model the shard is bound to; None until its first write."""
        return self._model_id

    @property
    def dim(self) -> int | None:
        return self._dim

    def upsert(self, records: Iterable[ClipRecord], writer: str = "") -> list[int]:
        """Validate, durably store and index records; overwrites by clip id. Returns their seqs.

        When this returns the records are on disk and visible to searches. ``writer`` (an ingest job
        id, or empty) is refused with WrongState once a delete fenced it, and nothing is written.
        """
        self._check_open()
        records = list(records)
        if not records:
            return []
        if self._store is None:
            with self._write_lock:
                if self._store is None:
                    self._bind_from(records)
                    if self._unbound_fences:
                        self._store.delete((), self._unbound_fences)
                        self._unbound_fences.clear()
        clean = validate_records(records, self._dim, self._model_id)
        vectors = np.stack([r.vector for r in clean])
        ids = [r.clip_id for r in clean]
        with self._write_lock:
            seqs = self._store.upsert(clean, writer)
            with self._state:
                for cid in ids:
                    self._tombstone(cid)
                first = self._fresh.append(ids, seqs, vectors)
                for offset, record in enumerate(clean):
                    self._location[record.clip_id] = (self._fresh, first + offset)
                    self._index_record(record.without_vector())
                if self._fresh.size >= self._seal_threshold:
                    self._seal_locked()
        return seqs

    def delete(self, clip_ids: Iterable[str] = (), video_ids: Iterable[str] = (),
               fence_writers: Iterable[str] = ()) -> int:
        """Durably delete the named clips and every clip of the named videos, and fence the named
        writers in the same transaction (``upsert`` refuses them from then on).

        Unknown ids are ignored. Returns how many clips existed and were deleted.
        """
        self._check_open()
        ids = list(dict.fromkeys(clip_ids))
        videos = list(dict.fromkeys(video_ids))
        fences = [w for w in fence_writers if w]
        with self._write_lock:
            if self._store is None:
                self._unbound_fences.update(fences)
                return 0
            if videos:
                with self._state:
                    ids += self._filters.clips_of(videos)
                ids = list(dict.fromkeys(ids))
            deleted = self._store.delete(ids, fences)
            with self._state:
                for cid in ids:
                    self._tombstone(cid)
        return deleted

    def fenced(self) -> set[str]:
        """The writers deletes have fenced here (kept 7 days, see ShardStore)."""
        self._check_open()
        with self._write_lock:
            return set(self._unbound_fences) if self._store is None else self._store.fenced()

    def get(self, clip_ids: Iterable[str], *, with_vectors: bool = True) -> list[ClipRecord]:
        """Stored records of the named clips, in request order; unknown ids are skipped."""
        self._check_open()
        if self._store is None:
            return []
        return self._segment_vectors(self._store.get(clip_ids, with_vectors=with_vectors), with_vectors)

    def scan(self, after_clip_id: str = "", limit: int = 1000, *, video_ids: Sequence[str] = (),
             with_vectors: bool = True) -> list[ClipRecord]:
        """Up to ``limit`` stored records after ``after_clip_id`` in clip-id order (see ShardStore.page)."""
        self._check_open()
        if self._store is None:
            return []
        records = self._store.page(after_clip_id, limit, video_ids=video_ids, with_vectors=with_vectors)
        return self._segment_vectors(records, with_vectors)

    def clip_ids(self) -> list[str]:
        """Every stored clip's id, in clip-id order (code points, which is the store's UTF-8 byte order)."""
        self._check_open()
        with self._state:
            ids = list(self._location)
        return sorted(ids)

    def checksum(self, page_size: int = 1000) -> str:
        """Hex SHA-256 over every stored clip's ``content_bytes`` in clip-id order: equal on replicas
        that hold the same clips, whatever order they were written in or how they are segmented."""
        digest = hashlib.sha256()
        for record in self._every_record(page_size):
            digest.update(record.content_bytes())
        return digest.hexdigest()

    def digests(self, bounds: Sequence[str], page_size: int = 1000) -> list[RangeDigest]:
        """The ``checksum`` of each clip-id range that ``bounds`` define, with its clip count.

        ``bounds`` are inclusive upper ends, non-empty and strictly increasing: the ranges are
        ("", b0], (b0, b1], ..., (b_last, end), ``len(bounds) + 1`` of them. One pass over the shard.
        """
        bounds = list(bounds)
        if len(bounds) > MAX_DIGEST_BOUNDS:
            raise InvalidInput(f"digests take at most {MAX_DIGEST_BOUNDS} bounds, got {len(bounds)}")
        if any(not b for b in bounds):
            raise InvalidInput("digest bounds must not be empty strings")
        for i, (low, high) in enumerate(itertools.pairwise(bounds)):
            # Python orders str by code point, as SQLite orders the ids' UTF-8 bytes.
            if not low < high:
                raise InvalidInput(f"digest bounds must be strictly increasing: bound {i + 1} {high!r} is not "
                                   f"after bound {i} {low!r}")
        hashes = [hashlib.sha256() for _ in range(len(bounds) + 1)]
        counts = [0] * len(hashes)
        at = 0  # the range of the clip read last; clips come in id order, so it only moves up
        for record in self._every_record(page_size):
            while at < len(bounds) and record.clip_id > bounds[at]:
                at += 1
            hashes[at].update(record.content_bytes())
            counts[at] += 1
        return [RangeDigest(h.digest(), n) for h, n in zip(hashes, counts, strict=True)]

    def _every_record(self, page_size: int) -> Iterator[ClipRecord]:
        """Every stored clip with its vector, in clip-id order, read a page at a time."""
        after = ""
        while True:
            page = self.scan(after, page_size, with_vectors=True)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].clip_id

    def _segment_vectors(self, records: list[ClipRecord], with_vectors: bool) -> list[ClipRecord]:
        """``records`` with the vectors the store released to sealed segments put back."""
        if not with_vectors or all(r.vector is not None for r in records):
            return records
        out = []
        with self._state:
            for record in records:
                loc = self._location.get(record.clip_id) if record.vector is None else None
                if loc is not None:
                    record = replace(record, vector=np.array(loc[0].vectors[loc[1]]))
                out.append(record)
        return out

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter: SearchFilter | None = None,
        search_k: int | None = None,
        candidate_factor: int = 4,
    ) -> list[list[Hit]]:
        """Top-``k`` clips by cosine similarity for each row of ``queries`` ``[q, dim]``, best first.

        ``search_k`` overrides the segments' calibrated value (nodes Annoy inspects, or IVF lists probed);
        ``candidate_factor`` sets how many candidates per wanted hit are fetched from each segment
        before tombstones and the filter are applied (at least 40), grown until ``k`` survive.
        """
        self._check_open()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"top_k must be an integer in 1..{MAX_K}, got {k!r}")
        if candidate_factor < 1:
            raise InvalidInput(f"candidate_factor must be >= 1, got {candidate_factor}")
        if search_k is not None and search_k < 1:
            raise InvalidInput(f"search_k must be >= 1, got {search_k}")
        q = self._check_queries(queries)
        if len(q) == 0 or self._store is None:
            return [[] for _ in q]
        k = int(k)
        flt = None if filter is None or filter.is_empty else filter
        with self._state:
            parts = [(p, p.size) for p in (*self._segments, *self._frozen, self._fresh) if p.size]
            live = len(self._location)
        matching = None if flt is None else self._matching_rows(flt, live)
        accept = self._alive if flt is None else self._accept_filter(flt)
        found: list[tuple[list[str], np.ndarray]] = []
        # Chunked so the exact scores ([chunk, rows]) of buffers and small segments stay small.
        for start in range(0, len(q), _QUERY_CHUNK):
            chunk = q[start : start + _QUERY_CHUNK]
            if matching is not None:
                found += self._search_rows(chunk, k, matching)
            else:
                found += self._search_parts(chunk, k, parts, accept, search_k, candidate_factor)
        return self._hits(found)

    def seal(self, wait: bool = False) -> int:
        """Freeze the fresh buffer and build a segment from it in the background.

        Also retries builds that failed earlier. With ``wait``, returns once every queued build has
        finished (re-raising a build's error). Returns the number of rows sealed (0 if none).
        """
        self._check_open()
        if self._store is None:
            return 0
        with self._state:
            for part in self._frozen:
                if not part.building:
                    self._submit_build(part)
            sealed = self._fresh.size - self._fresh.n_dead()
            future = self._seal_locked()
        if wait:
            if future is not None:
                future.result()
            self.wait_for_builds()
        return sealed

    def compact(self, wait: bool = False, *, max_dead_fraction: float = 0.1,
                small_segment_rows: int | None = None) -> None:
        """Merge small segments and rebuild ones with many tombstones, in the background.

        Segments whose dead fraction exceeds ``max_dead_fraction`` or whose live rows are fewer
        than ``small_segment_rows`` (default: ``seal_threshold``) are rebuilt from their live rows,
        merged in seq order into segments of at most ``max_segment_rows`` live rows, each swapped in
        atomically; searches continue meanwhile.
        """
        self._check_open()
        if self._store is None:
            return
        small = self._seal_threshold if small_segment_rows is None else small_segment_rows
        future = self._executor.submit(self._compact, max_dead_fraction, small)
        if wait:
            future.result()

    def wait_for_builds(self, timeout: float | None = None) -> None:
        """Block until every build and compaction queued so far has finished."""
        self._executor.submit(lambda: None).result(timeout=timeout)

    def stats(self) -> ShardStats:
        """Counts and sizes for health, metrics and capacity planning (see ShardStats)."""
        with self._state:
            parts = [*self._segments, *self._frozen, self._fresh]
            records = sum(p.size for p in parts)
            live = len(self._location)
            segment_bytes = sum(p.segment.bytes_on_disk for p in self._segments)
            stats = ShardStats(
                records=records,
                live=live,
                tombstoned=records - live,
                segments=len(self._segments),
                building=len(self._frozen),
                fresh=sum(p.size - p.n_dead() for p in (*self._frozen, self._fresh)),
                largest_segment=max((p.size for p in self._segments), default=0),
                model_id=self._model_id,
                dim=self._dim,
                bytes_on_disk=0,
                segment_bytes=segment_bytes,
                store_bytes=0,
            )
        stats["store_bytes"] = self._store.bytes_on_disk() if self._store is not None else 0
        stats["bytes_on_disk"] = stats["store_bytes"] + segment_bytes
        return stats

    def close(self) -> None:
        """Wait for running builds, then release the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        if self._search_pool is not None:
            self._search_pool.shutdown(wait=True)
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> ShardIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ================================================================== binding

    def _bind(self, model_id: str, dim: int) -> None:
        self._store = ShardStore.open(self._dir / _STORE, model_id, dim, max_bytes=self._max_store_bytes)
        self._model_id, self._dim = model_id, dim
        self._fresh = Part(dim)

    def _bind_from(self, records: list[ClipRecord]) -> None:
        """Bind a new shard to the model and dimension of its first write (caller holds _write_lock)."""
        models = sorted({r.model_id for r in records if isinstance(r, ClipRecord) and r.model_id})
        if len(models) > 1:
            raise InvalidInput(f"the first write to a new shard mixes models {models}")
        first = records[0]
        if not models:
            raise InvalidInput("the first write to a new shard must name its model_id")
        if not isinstance(first, ClipRecord) or first.vector is None or first.vector.ndim != 1 \
                or first.vector.shape[0] == 0:
            raise InvalidInput("the first write to a new shard needs a non-empty 1-D vector")
        model_id, dim = models[0], int(first.vector.shape[0])
        want_model, want_dim = self._expected
        if (want_model is not None and want_model != model_id) or (want_dim is not None and want_dim != dim):
            raise WrongState(f"shard {self._dir} expects model {want_model!r} with dim {want_dim}; "
                             f"first write has model {model_id!r} with dim {dim}")
        with self._state:
            self._bind(model_id, dim)
        self._write_manifest(self._entries())
        log.info("shard %s bound to model %r, dim %d", self._dir, model_id, dim)

    # ================================================================== search internals

    def _check_open(self) -> None:
        if self._closed:
            raise WrongState(f"shard index {self._dir} is closed")

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        try:
            q = np.asarray(queries, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"queries must be a numeric [q, dim] matrix: {exc}") from None
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or (self._dim is not None and q.shape[1] != self._dim):
            got = q.shape[1] if q.ndim == 2 else f"shape {q.shape}"
            raise InvalidInput(f"query has dimension {got}, shard expects {self._dim}")
        if not np.isfinite(q).all():
            raise InvalidInput("query vector contains NaN or Inf")
        norms = np.linalg.norm(q.astype(np.float64), axis=1)
        if (norms == 0).any():
            raise InvalidInput(f"query {int(np.argmax(norms == 0))} is all zeros; cosine is undefined")
        return (q / norms[:, None]).astype(np.float32)

    @staticmethod
    def _alive(part: Part, rows: np.ndarray) -> np.ndarray:
        return ~part.dead[rows]

    def _accept_filter(self, flt: SearchFilter) -> Callable[[Part, np.ndarray], np.ndarray]:
        records = self._records

        def accept(part: Part, rows: np.ndarray) -> np.ndarray:
            ok = ~part.dead[rows]
            ids = part.clip_ids
            for j in np.flatnonzero(ok).tolist():
                record = records.get(ids[rows[j]])
                ok[j] = record is not None and flt.matches(record)
            return ok

        return accept

    def _search_parts(self, q: np.ndarray, k: int, parts: list[tuple[Part, int]],
                      accept: Callable[[Part, np.ndarray], np.ndarray], search_k: int | None,
                      candidate_factor: int) -> list[tuple[list[str], np.ndarray]]:
        """Candidates from every part, accepted rows only, merged to the global top-k per query."""
        n_cand = max(k * candidate_factor, 40)
        # Buffers, and segments so small that their engine would visit a good share of them anyway,
        # are scored exactly for the whole query chunk in one matrix product.
        full_scores, shared_s = [], []
        for part, size in parts:
            t0 = time.perf_counter()
            full_scores.append(q @ part.vectors[:size].T if self._scan_exactly(part, size, k, search_k) else None)
            shared_s.append((time.perf_counter() - t0) / len(q))
        timers = [PART_SEARCH.labels("buffer" if part.exact else "segment") for part, _ in parts]
        # Annoy and faiss release the GIL while they search, so several segments search at once.
        fan_out = self._search_pool is not None and sum(f is None for f in full_scores) > 1
        results = []
        for qi, query in enumerate(q):
            tops = [
                (self._search_pool.submit if fan_out and full is None else _call)(
                    _timed, timer, shared, self._part_top, part, size, query, None if full is None else full[qi],
                    k, n_cand, accept, search_k)
                for (part, size), full, shared, timer in zip(parts, full_scores, shared_s, timers, strict=True)
            ]
            tops = [t.result() if isinstance(t, Future) else t for t in tops]
            results.append(_merge([s for _, s in tops], [(part, rows) for (part, _), (rows, _) in
                                                        zip(parts, tops, strict=True)], k))
        return results

    @staticmethod
    def _scan_exactly(part: Part, size: int, k: int, search_k: int | None) -> bool:
        if part.exact:
            return True
        # Scan a segment exactly when that costs no more than asking its engine.
        return part.segment.cost_in_rows(k, search_k) >= size

    def _part_top(self, part: Part, size: int, query: np.ndarray, full: np.ndarray | None, k: int,
                  n_cand: int, accept: Callable[[Part, np.ndarray], np.ndarray],
                  search_k: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k accepted rows of one part for one query, widening the candidate pool as needed.

        ``full`` holds the query's exact scores against every row when the part is scanned exactly.
        """
        n = min(n_cand, size) if full is not None else n_cand
        while True:
            if n >= size:
                scores = full if full is not None else part.vectors[:size] @ query
                rows = np.arange(size)
            elif full is not None:
                rows, scores = _top1(full, n)
            else:
                seg = part.segment
                # Tombstones and filters shrink the pool, so once widened ask for recall on all n.
                sk = seg.effective_search_k(k if n == n_cand else n, search_k)
                # Scored exactly against the segment's vectors, whatever the forest's own arithmetic.
                rows, scores = seg.search_one(query, n, sk)
            ok = accept(part, rows)
            if n >= size or np.count_nonzero(ok) >= k:
                rows, scores = rows[ok], scores[ok]
                best = _top1(scores, k)[0]
                return rows[best], scores[best]
            n *= 4

    def _matching_rows(self, flt: SearchFilter, live: int) -> list[tuple[Part, np.ndarray]] | None:
        """Rows matching a selective filter, grouped by part; None when the filter is broad."""
        with self._state:
            pool = self._filters.smallest_pool(flt)
            if pool is None:
                return None  # only a time range: no index narrows it; post-filter
            if len(pool) > max(self._exact_filter_rows, self._exact_filter_fraction * live):
                return None
            by_part: dict[int, tuple[Part, list[int]]] = {}
            for cid in pool:
                if flt.matches(self._records[cid]):
                    part, row = self._location[cid]
                    by_part.setdefault(id(part), (part, []))[1].append(row)
        return [(part, np.asarray(rows, dtype=np.int64)) for part, rows in by_part.values()]

    def _search_rows(self, q: np.ndarray, k: int, matching: list[tuple[Part, np.ndarray]]
                     ) -> list[tuple[list[str], np.ndarray]]:
        """Exact search restricted to the given rows (the selective-filter path)."""
        if not matching:
            return [([], np.zeros(0, dtype=np.float32)) for _ in q]
        vectors = np.concatenate([part.vectors[rows] for part, rows in matching])
        best, best_scores = top_k(q @ vectors.T, k)
        return [(_clip_ids(matching, idx), sc) for idx, sc in zip(best, best_scores, strict=True)]

    def _hits(self, found: list[tuple[list[str], np.ndarray]]) -> list[list[Hit]]:
        records = self._records
        hits = []
        for ids, scores in found:
            row: dict[str, Hit] = {}
            for cid, score in zip(ids, scores.tolist(), strict=True):
                # A clip deleted since it was scored is dropped, never returned stale; setdefault
                # guards against a copy seen twice while an overwrite races the search.
                record = records.get(cid)
                if record is not None:
                    row.setdefault(cid, Hit(cid, score, record))
            hits.append(list(row.values()))
        return hits

    # ================================================================== write internals

    def _tombstone(self, clip_id: str) -> None:
        loc = self._location.pop(clip_id, None)
        if loc is not None:
            loc[0].dead[loc[1]] = True
        self._filters.remove(clip_id)

    def _index_record(self, record: ClipRecord) -> None:
        """Keep a live clip's record (vector-less) and enter it in the filter indexes."""
        self._filters.add(record)

    def _seal_locked(self) -> Future | None:
        part = self._fresh
        if part.size == 0:
            return None
        part.seq_ranges = [[int(part.seqs[0]), int(part.seqs[part.size - 1])]]
        self._fresh = Part(self._dim)
        self._frozen.append(part)
        return self._submit_build(part)

    def _submit_build(self, part: Part) -> Future:
        part.building = True
        return self._executor.submit(self._build_frozen, part)

    def _build_frozen(self, part: Part) -> None:
        try:
            with self._state:
                rows = np.flatnonzero(~part.dead[: part.size])
            new = self._build_segment([(part, rows)], part.seq_ranges) if len(rows) else None
            with self._state:
                if new is not None:
                    self._adopt(new, [(part, rows)])
                    self._segments.append(new)
                self._frozen.remove(part)
                entries = self._entries()
            self._write_manifest(entries)
            if new is not None:
                # Listed durably: the segment's vector file is now these rows' one copy.
                self._store.release_vectors(new.seq_ranges)
        except BaseException:
            part.building = False
            log.exception("building a segment from %d buffered rows failed; they stay searchable "
                          "exactly and the build is retried on the next seal()", part.size)
            raise
        self._merge_tiers()

    def _merge_tiers(self) -> None:
        """Merges segments while some size tier holds ``merge_factor`` of them (see ``__init__``).

        Runs on the build thread after each seal, so merges and builds never overlap; rows stay
        searchable throughout (``_merge_segments`` swaps the new segment in atomically).
        """
        while (chosen := self._tier_to_merge()) is not None:
            self._merge_segments(chosen)

    def _tier_to_merge(self) -> list[Part] | None:
        """The smallest ``merge_factor`` segments of the lowest tier that has that many, if they fit."""
        factor = self._merge_factor
        if factor < 2:
            return None
        tiers: dict[int, list[tuple[int, Part]]] = {}
        with self._state:
            for part in self._segments:
                live = part.size - part.n_dead()
                tier = 0
                while live >= self._seal_threshold * factor ** (tier + 1):
                    tier += 1
                tiers.setdefault(tier, []).append((live, part))
        for tier in sorted(tiers):
            members = sorted(tiers[tier], key=lambda m: (m[0], m[1].seq_ranges[0][0]))[:factor]
            if len(members) == factor and sum(live for live, _ in members) <= self._max_segment_rows:
                return sorted((part for _, part in members), key=lambda p: p.seq_ranges[0][0])
        return None

    def _compact(self, max_dead_fraction: float, small_rows: int) -> None:
        with self._state:
            chosen = [
                p for p in self._segments
                if p.n_dead() > max_dead_fraction * p.size or p.size - p.n_dead() < small_rows
            ]
        # Consecutive chosen segments, packed while their live rows fit in max_segment_rows.
        groups: list[list[Part]] = []
        for part in chosen:
            live = part.size - part.n_dead()
            if groups and sum(p.size - p.n_dead() for p in groups[-1]) + live <= self._max_segment_rows:
                groups[-1].append(part)
            else:
                groups.append([part])
        for group in groups:
            if len(group) > 1 or group[0].n_dead():
                self._merge_segments(group)

    def _merge_segments(self, chosen: list[Part]) -> None:
        """Rebuild ``chosen`` segments from their live rows into one, swapped in atomically."""
        with self._state:
            sources = [(p, np.flatnonzero(~p.dead[: p.size])) for p in chosen]
        ranges = union_ranges(r for p in chosen for r in p.seq_ranges)
        n_live = sum(len(rows) for _, rows in sources)
        new = self._build_segment(sources, ranges) if n_live else None
        with self._state:
            if new is not None:
                self._adopt(new, sources)
            kept = [p for p in self._segments if p not in chosen]
            self._segments = sorted(kept + ([new] if new else []), key=lambda p: p.seq_ranges[0][0])
            entries = self._entries()
        self._write_manifest(entries)
        for p in chosen:
            p.segment.remove()
        log.info("compacted %d segments (%d rows, %d live) into %s", len(chosen),
                 sum(p.size for p in chosen), n_live, new.segment.name if new else "nothing")

    def _build_segment(self, sources: list[tuple[Part, np.ndarray]], seq_ranges: list[list[int]]) -> Part:
        """Build a segment from the given rows (outside the state lock; rows are immutable)."""
        clip_ids = [part.clip_ids[r] for part, rows in sources for r in rows]
        seqs = np.concatenate([part.seqs[rows] for part, rows in sources])
        vectors = np.concatenate([part.vectors[rows] for part, rows in sources])
        name = f"seg-{max(hi for _, hi in seq_ranges):012d}-{uuid.uuid4().hex[:8]}"
        options: dict = {"n_jobs": self._build_jobs}
        if self._engine == "annoy":
            options.update(n_trees=self._n_trees, annoy_dim=self._annoy_dim)
        if self._rerank is not None:
            options["rerank"] = self._rerank
        segment = ENGINES[self._engine].build(
            self._seg_dir, name, clip_ids, vectors, seqs=seqs, recall_target=self._recall_target,
            seed=self._seed, **options,
        )
        return Part(self._dim, segment, seq_ranges)

    def _adopt(self, new: Part, sources: list[tuple[Part, np.ndarray]]) -> None:
        """Point live clips at their rows in ``new``; rows whose source died meanwhile start dead.

        Caller holds the state lock, so no write interleaves with the swap.
        """
        dead = np.ones(new.size, dtype=bool)
        location = self._location
        j = 0
        for part, rows in sources:
            for row in rows.tolist():
                cid = new.clip_ids[j]
                loc = location.get(cid)
                if loc is not None and loc[0] is part and loc[1] == row:
                    location[cid] = (new, j)
                    dead[j] = False
                j += 1
        new.dead = dead

    # ================================================================== persistence

    def _entries(self) -> list[SegmentEntry]:
        return [SegmentEntry(p.segment.name, p.seq_ranges, p.size) for p in self._segments]

    def _write_manifest(self, entries: list[SegmentEntry]) -> None:
        manifest.write(self._dir, self._model_id, self._dim, entries)

    def _load(self) -> None:
        """Rebuild in-memory state from the store and the persisted segments."""
        live_seq: dict[str, int] = {}
        for seq, record in self._store.iter_records(with_vectors=False):
            live_seq[record.clip_id] = seq
            self._index_record(record)
        to_rebuild: list[SegmentEntry] = []
        for entry in manifest.read(self._dir):
            try:
                segment = load_segment(self._seg_dir, entry.name, dim=self._dim)
            except SegmentCorrupt as exc:
                log.warning("segment %s is unusable (%s); rebuilding its rows from the store",
                            entry.name, exc)
                to_rebuild.append(entry)
                continue
            part = Part(self._dim, segment, entry.seq_ranges)
            for row, (cid, seq) in enumerate(zip(segment.clip_ids, segment.seqs.tolist(), strict=True)):
                if live_seq.get(cid) == seq and cid not in self._location:
                    self._location[cid] = (part, row)
                else:
                    part.dead[row] = True
            self._segments.append(part)
        self._segments.sort(key=lambda p: p.seq_ranges[0][0])
        keep = {p.segment.name for p in self._segments}
        self._salvage({path.name.split(".", 1)[0] for path in self._seg_dir.iterdir()} - keep, live_seq)
        for entry in to_rebuild:
            part = self._buffer_from_store(
                [cid for cid, seq in live_seq.items() if cid not in self._location
                 and in_ranges(seq, entry.seq_ranges)],
                live_seq,
            )
            part.seq_ranges = entry.seq_ranges
            self._frozen.append(part)
        uncovered = sorted((seq, cid) for cid, seq in live_seq.items() if cid not in self._location)
        self._fresh = self._buffer_from_store([cid for _, cid in uncovered], live_seq)
        for path in self._seg_dir.iterdir():
            if path.name.split(".", 1)[0] not in keep:
                path.unlink()
        self._write_manifest(self._entries())
        # Covers a crash between listing a segment and releasing its rows' vectors, and shards
        # written before the store released vectors at all (schema 1).
        self._store.release_vectors([r for p in self._segments for r in p.seq_ranges])
        for part in self._frozen:
            self._submit_build(part)
        if self._fresh.size >= self._seal_threshold:
            self._seal_locked()
        log.info("opened shard %s: %d live clips, %d segments, %d fresh, %d segments to rebuild",
                 self._dir, len(self._location), len(self._segments), self._fresh.size, len(to_rebuild))

    def _salvage(self, names: set[str], live_seq: dict[str, int]) -> None:
        """Take the vectors of live rows back into the store from segments that will not be used
        (unusable, or no longer listed), before their files are deleted."""
        for name in sorted(names):
            rows = Segment.read_rows(self._seg_dir, name, dim=self._dim)
            if rows is None:
                continue
            clip_ids, seqs, vectors = rows
            wanted = [i for i, (cid, seq) in enumerate(zip(clip_ids, seqs.tolist(), strict=True))
                      if live_seq.get(cid) == seq and cid not in self._location]
            if wanted:
                restored = self._store.restore_vectors(seqs[wanted].tolist(), np.asarray(vectors[wanted]))
                log.warning("took %d vectors back into the store from segment %s", restored, name)

    def _buffer_from_store(self, clip_ids: list[str], live_seq: dict[str, int]) -> Part:
        part = Part(self._dim)
        lost = 0
        for start in range(0, len(clip_ids), 4096):
            blobs = self._store.held_vectors(clip_ids[start : start + 4096])
            chunk = [c for c in clip_ids[start : start + 4096] if c in blobs]
            lost += len(clip_ids[start : start + 4096]) - len(chunk)
            if not chunk:
                continue
            vectors = np.frombuffer(b"".join(blobs[c] for c in chunk), dtype="<f4").reshape(len(chunk), -1)
            first = part.append(chunk, [live_seq[c] for c in chunk], vectors)
            for offset, cid in enumerate(chunk):
                self._location[cid] = (part, first + offset)
        if lost:
            log.error("%d stored clips have no vector left: their segment's vector file was lost; they "
                      "stay readable but cannot be found by search until written again", lost)
        return part


def _timed(timer, shared_s: float, fn: Callable, *args: object) -> object:
    """Runs one part's search and records its time, plus its share of the batch's exact scan."""
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        timer.observe(shared_s + time.perf_counter() - t0)


def _call(fn: Callable, *args: object) -> object:
    return fn(*args)


def _top1(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one score vector, best first (plain argsort below a few hundred: less overhead)."""
    small = len(scores) <= 256
    idx = np.argsort(-scores, kind="stable")[:k] if small else top_k(scores[None, :], k)[0][0]
    return idx, scores[idx]


def _merge(scores: list[np.ndarray], owners: list[tuple[Part, np.ndarray]], k: int
           ) -> tuple[list[str], np.ndarray]:
    """Global top-k over per-part candidate lists; returns (clip ids, scores)."""
    if not scores:
        return [], np.zeros(0, dtype=np.float32)
    if len(scores) == 1:
        part, rows = owners[0]
        return [part.clip_ids[r] for r in rows.tolist()], scores[0]
    best, best_scores = _top1(np.concatenate(scores), k)
    return _clip_ids(owners, best), best_scores


def _clip_ids(owners: list[tuple[Part, np.ndarray]], positions: np.ndarray) -> list[str]:
    """Clip ids at ``positions`` of the concatenation of each owner's rows."""
    bounds = np.cumsum([0] + [len(rows) for _, rows in owners])
    which = np.searchsorted(bounds, positions, side="right") - 1
    return [
        owners[w][0].clip_ids[owners[w][1][i - bounds[w]]]
        for w, i in zip(which.tolist(), positions.tolist(), strict=True)
    ]
