"""Immutable, memory-mapped segments: the approximate part of a shard's index.

A segment is a set of files named after it in one directory:

- ``<name>.vectors.npy``     the unit vectors as float32, memory-mapped: exact scores come from
                             here, and once the segment is listed it is the rows' only vector copy
- ``<name>.ids.json``        local id -> clip id and the store sequence number of that row
- the engine's own files     the index that proposes candidates (an Annoy forest here, faiss
                             inverted lists in ``services.index.ivf``)
- ``<name>.json``            manifest, written last: engine, counts, sizes, build parameters and
                             the calibrated ``search_k``; a segment without it does not exist

A query takes ``max(n, rerank)`` candidates from the engine and re-ranks them exactly against the
vectors, so the engine only has to bring the true neighbours into the candidate set: its own copy
of the vectors may be coarse (projected, quantised) and cost a fraction of the bytes.

``search_k`` (the engine's search effort) is measured at build time, not guessed: a sample of the
segment's own vectors, each held out of its own answer, is searched (engine + re-rank) at
increasing effort and compared with exact search; the least effort whose recall reaches the target
(with 95% confidence) is kept.
"""

from __future__ import annotations

import abc
import errno
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from annoy import AnnoyIndex

from services.common.atomic import fsync_path, write_atomic
from services.common.errors import InvalidInput, StorageFull, WrongState

log = logging.getLogger(__name__)

_MANIFEST_VERSION = 2
_SUFFIXES = (".vectors.npy", ".ids.json")  # every engine's
_PROJECTION = ".projection.npy"
_PCA_SAMPLE = 20_000


class SegmentCorrupt(WrongState):
    """A segment's files are missing, truncated or inconsistent; the shard rebuilds it from the store."""


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a score matrix ``[q, n]``: (indices, scores), best first, ``k`` clipped to n."""
    k = min(k, scores.shape[1])
    if k == 0:
        empty = np.zeros((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(scores.dtype)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int, chunk: int = 256
                ) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of unit ``queries`` against unit ``vectors``, in query chunks."""
    ids, sims = [], []
    for start in range(0, len(queries), chunk):
        i, s = top_k(queries[start : start + chunk] @ vectors.T, k)
        ids.append(i)
        sims.append(s)
    return np.concatenate(ids), np.concatenate(sims)


class Segment(abc.ABC):
    """One immutable segment: the vectors and clip ids it holds, and a candidate generator over them.

    Subclasses are the engines that propose candidates (``engine`` names one in the manifest);
    files, checks, calibration and the exact re-rank are shared.
    """

    engine: ClassVar[str] = ""
    _ENGINE_FILES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray,
                 vectors: np.ndarray, manifest: dict) -> None:
        self.directory = directory
        self.name = name
        self.clip_ids = clip_ids
        self.seqs = seqs
        self.vectors = vectors
        # A plain ndarray view of the memory map for gathers: same pages, no np.memmap overhead.
        self._rows = vectors.view(np.ndarray)
        self.manifest = manifest
        self.rerank = int(manifest.get("rerank", 0))

    # ------------------------------------------------------------------ properties

    @property
    def n_items(self) -> int:
        return len(self.clip_ids)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def search_k(self) -> int:
        """Calibrated search effort for recall@``calibration_k`` >= the recall target (the engine's
        unit: nodes Annoy inspects, or the IVF lists probed)."""
        return int(self.manifest["search_k"])

    @property
    def calibration_k(self) -> int:
        return int(self.manifest["calibration"]["k"])

    @property
    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.files() if p.exists())

    def files(self) -> list[Path]:
        return [self.directory / f"{self.name}{s}" for s in (*self.manifest["file_bytes"], ".json")]

    # ------------------------------------------------------------------ build and load

    @classmethod
    def build(
        cls,
        directory: str | os.PathLike[str],
        name: str,
        clip_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        seqs: np.ndarray | Sequence[int] | None = None,
        recall_target: float = 0.95,
        calibration_k: int = 10,
        calibration_queries: int = 500,
        seed: int = 0,
        **engine_options: object,
    ) -> Segment:
        """Build, persist, reload memory-mapped and calibrate a segment over unit ``vectors``.

        ``engine_options`` are the engine's own build parameters (see its ``_write_engine``).
        """
        directory = Path(directory)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        clip_ids = list(clip_ids)
        n = len(clip_ids)
        if vectors.ndim != 2 or vectors.shape[0] != n or n == 0:
            raise InvalidInput(f"segment {name}: need a non-empty [n, dim] matrix for {n} clip ids, "
                               f"got shape {vectors.shape}")
        if not 0.0 < recall_target <= 1.0:
            raise InvalidInput(f"recall_target must be in (0, 1], got {recall_target}")
        seqs_arr = np.zeros(n, dtype=np.int64) if seqs is None else np.asarray(seqs, dtype=np.int64)
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            params, suffixes = cls._write_engine(directory, name, vectors, rng, seed, **engine_options)
            _save_npy(directory / f"{name}.vectors.npy", vectors)
            _write_json(directory / f"{name}.ids.json", {"clip_ids": clip_ids, "seqs": seqs_arr.tolist()})
            build_s = time.perf_counter() - started
            manifest = {
                "version": _MANIFEST_VERSION,
                "name": name,
                "engine": cls.engine,
                "n_items": n,
                "dim": vectors.shape[1],
                **params,
                "seed": seed,
                "build_seconds": round(build_s, 3),
                "file_bytes": {s: (directory / f"{name}{s}").stat().st_size for s in (*suffixes, *_SUFFIXES)},
            }
            vectors_map = np.load(directory / f"{name}.vectors.npy", mmap_mode="r")
            segment = cls._open(directory, name, clip_ids, seqs_arr, vectors_map, manifest)
            while True:
                search_k, recall, sample = _calibrate(
                    segment, vectors, calibration_k, recall_target, calibration_queries, rng
                )
                # Candidates too coarse for their pool miss neighbours at any search effort:
                # widen the pool until the re-rank reaches the target.
                if recall >= recall_target or segment.rerank == 0 or segment.rerank >= n:
                    break
                segment.rerank = manifest["rerank"] = min(n, 2 * segment.rerank)
            manifest.update({
                "search_k": search_k,
                "calibration": {"k": calibration_k, "recall_target": recall_target,
                                "recall": recall, "queries": sample},
                "calibrate_seconds": round(time.perf_counter() - started - build_s, 3),
            })
            _write_json(directory / f"{name}.json", manifest)
            fsync_path(directory)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFull(f"no space left on device writing segment {name} in {directory}") from exc
            raise
        log.info("built %s segment %s: %d items, search_k=%d, rerank=%d (recall@%d %.3f) in %.1fs", cls.engine,
                 name, n, search_k, segment.rerank, calibration_k, recall, time.perf_counter() - started)
        return segment

    @classmethod
    def load(cls, directory: str | os.PathLike[str], name: str, *, dim: int | None = None) -> Segment:
        """Open a persisted segment, checking its files; raises SegmentCorrupt if anything is off."""
        directory = Path(directory)
        manifest = read_manifest(directory, name)
        try:
            n, seg_dim = int(manifest["n_items"]), int(manifest["dim"])
            expected_sizes = dict(manifest["file_bytes"])
            int(manifest["search_k"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SegmentCorrupt(f"segment {name} in {directory} has an unreadable manifest: {exc}") from None
        if manifest.get("engine", AnnoySegment.engine) != cls.engine:
            raise SegmentCorrupt(f"segment {name} is a {manifest.get('engine')!r} segment, not {cls.engine!r}")
        if dim is not None and seg_dim != dim:
            raise SegmentCorrupt(f"segment {name} has dim {seg_dim}, shard expects {dim}")
        for suffix in dict.fromkeys((*_SUFFIXES, *cls._ENGINE_FILES, *expected_sizes)):
            path = directory / f"{name}{suffix}"
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise SegmentCorrupt(f"segment {name} is missing {path.name}") from None
            # Checked before the engine maps the file: a truncated index can crash the process.
            if size != expected_sizes.get(suffix):
                raise SegmentCorrupt(f"segment {name}: {path.name} has {size} bytes, manifest says "
                                     f"{expected_sizes.get(suffix)}")
        try:
            clip_ids, seqs, vectors = _read_rows(directory, name)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise SegmentCorrupt(f"segment {name}: unreadable ids or vectors: {exc}") from None
        if len(clip_ids) != n or len(seqs) != n:
            raise SegmentCorrupt(f"segment {name}: id map has {len(clip_ids)} ids, manifest says {n} items")
        if vectors.shape != (n, seg_dim) or vectors.dtype != np.float32:
            raise SegmentCorrupt(f"segment {name}: vectors are {vectors.dtype}{vectors.shape}, "
                                 f"expected float32({n}, {seg_dim})")
        segment = cls._open(directory, name, clip_ids, seqs, vectors, manifest)
        differing = segment._differing_row()
        if differing is not None:
            raise SegmentCorrupt(f"segment {name}: item {differing} differs between the {cls.engine} index and vectors")
        return segment

    @staticmethod
    def read_rows(directory: str | os.PathLike[str], name: str, *, dim: int
                  ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """``(clip_ids, seqs, vectors)`` of a segment whose index may be lost, or None if its id map
        or vector file is unusable too. Used to take a broken segment's vectors back into the store."""
        directory = Path(directory)
        try:
            manifest = json.loads((directory / f"{name}.json").read_text())
            expected = dict(manifest["file_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            expected = {}
        try:
            for suffix in (".vectors.npy", ".ids.json"):
                size = (directory / f"{name}{suffix}").stat().st_size
                if suffix in expected and size != expected[suffix]:
                    return None
            clip_ids, seqs, vectors = _read_rows(directory, name)
        except (ValueError, KeyError, TypeError, OSError):
            return None
        if len(seqs) != len(clip_ids) or vectors.shape != (len(clip_ids), dim) or vectors.dtype != np.float32:
            return None
        return clip_ids, seqs, vectors

    def remove(self) -> None:
        """Delete the segment's files (manifest first, so a crash leaves no half-valid segment).

        The index stays mapped until this object is garbage-collected, so searches that still
        hold it finish safely.
        """
        for path in reversed(self.files()):
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ engine hooks

    @classmethod
    @abc.abstractmethod
    def _write_engine(cls, directory: Path, name: str, vectors: np.ndarray, rng: np.random.Generator,
                      seed: int, **options: object) -> tuple[dict, tuple[str, ...]]:
        """Build and durably write the engine's files; returns manifest entries (``rerank`` among
        them) and the suffixes of the files written."""

    @classmethod
    @abc.abstractmethod
    def _open(cls, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray, vectors: np.ndarray,
              manifest: dict) -> Segment:
        """The segment with its engine's files opened (SegmentCorrupt if they do not fit the manifest)."""

    @abc.abstractmethod
    def _differing_row(self) -> int | None:
        """A row of a spot-check whose copy in the engine is not the vector file's, or None: the engine
        and the re-rank vectors must hold the same data."""

    @abc.abstractmethod
    def _candidates(self, probe: np.ndarray, n: int, search_k: int) -> np.ndarray:
        """Up to ``n`` local ids near unit ``query`` found with ``search_k`` effort, as int64."""

    def _least_effort(self, candidates: int) -> int:
        """Least search effort that can return ``candidates`` ids."""
        return candidates

    def _effort_resolution(self, k: int) -> int:
        """The calibration stops narrowing the effort within this many units."""
        return 1

    def _effort_bounds(self, k: int) -> tuple[int, int]:
        """(first, exhaustive) effort tried by the calibration for recall@``k``."""
        return self._least_effort(max(k + 1, self.rerank)), self.n_items

    def cost_in_rows(self, n: int, search_k: int | None = None) -> int:
        """About how many rows an exact scan scores for the price of one query for ``n`` here (a
        segment with no more rows than that is cheaper to scan exactly)."""
        return self.effective_search_k(n, search_k)

    # ------------------------------------------------------------------ search

    def effective_search_k(self, n: int, search_k: int | None = None) -> int:
        """Search effort for a query wanting its top ``n`` right: the calibrated value scaled by
        ``n / calibration_k``, never less than the candidates taken need."""
        if search_k is None:
            search_k = math.ceil(self.search_k * max(1.0, n / self.calibration_k))
        return max(int(search_k), self._least_effort(max(n, self.rerank)))

    def search_one(self, query: np.ndarray, n: int, search_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` nearest rows to one unit query: (local ids, exact cosine), best first.

        The engine proposes ``max(n, rerank)`` candidates; their scores come from the vectors.
        """
        ids = self._candidates(query, max(n, self.rerank), search_k)
        scores = self._rows[ids] @ query
        order = np.argsort(-scores, kind="stable")[:n] if len(ids) <= 256 else top_k(scores[None], n)[0][0]
        return ids[order], scores[order]

    def search(self, queries: np.ndarray, k: int, search_k: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` candidates of each unit query ``[q, dim]``: local ids and cosine, ``[q, k]`` each.

        Rows with fewer than ``k`` results are padded with id -1 and score -inf.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise InvalidInput(f"query has dimension {queries.shape[1]}, segment {self.name} has {self.dim}")
        sk = self.effective_search_k(k, search_k)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row, query in enumerate(queries):
            i, s = self.search_one(query, k, sk)
            ids[row, : len(i)] = i
            scores[row, : len(s)] = s
        return ids, scores


class AnnoySegment(Segment):
    """A segment whose candidates come from an Annoy forest, optionally on projected vectors.

    Files besides the shared ones: ``<name>.ann`` (the forest, metric 'angular', over local ids
    0..n-1, built on the vectors projected to ``annoy_dim`` dimensions) and ``<name>.projection.npy``
    (the ``[dim, annoy_dim]`` projection onto the top principal axes of a sample; absent in
    version-1 segments and when ``annoy_dim >= dim``).
    """

    engine = "annoy"
    _ENGINE_FILES = (".ann",)

    def __init__(self, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray,
                 vectors: np.ndarray, manifest: dict, index: AnnoyIndex,
                 projection: np.ndarray | None = None) -> None:
        super().__init__(directory, name, clip_ids, seqs, vectors, manifest)
        self._index = index
        self.projection = projection

    @property
    def n_trees(self) -> int:
        return int(self.manifest["n_trees"])

    @property
    def annoy_dim(self) -> int:
        return int(self.manifest.get("annoy_dim", self.manifest["dim"]))

    @classmethod
    def build(cls, directory: str | os.PathLike[str], name: str, clip_ids: Sequence[str], vectors: np.ndarray,
              *, n_trees: int = 64, n_jobs: int = -1, annoy_dim: int | None = None, rerank: int = 200,
              **options: object) -> AnnoySegment:
        """A segment with ``n_trees`` trees (built on ``n_jobs`` threads, -1: all cores).

        ``annoy_dim`` below the vectors' dimension builds the forest on a projection to that many
        principal axes; ``rerank`` is then the least number of candidates re-ranked exactly. Other
        options as ``Segment.build``.
        """
        return super().build(directory, name, clip_ids, vectors, n_trees=n_trees, n_jobs=n_jobs,
                             annoy_dim=annoy_dim, rerank=rerank, **options)

    @classmethod
    def _write_engine(cls, directory: Path, name: str, vectors: np.ndarray, rng: np.random.Generator,
                      seed: int, *, n_trees: int, n_jobs: int, annoy_dim: int | None, rerank: int
                      ) -> tuple[dict, tuple[str, ...]]:
        n, dim = vectors.shape
        projection = _principal_axes(vectors, annoy_dim, rng) if annoy_dim and annoy_dim < dim else None
        forest_dim = dim if projection is None else projection.shape[1]
        ann_path = directory / f"{name}.ann"
        index = AnnoyIndex(forest_dim, "angular")
        index.set_seed(seed)
        for start in range(0, n, 8192):
            block = vectors[start : start + 8192]
            if projection is not None:
                block = block @ projection
            for i, row in enumerate(block, start):
                index.add_item(i, row)
        index.build(n_trees, n_jobs=n_jobs)
        if not index.save(str(ann_path)):
            raise OSError(f"annoy could not save {ann_path}")
        index.unload()
        fsync_path(ann_path)
        suffixes: tuple[str, ...] = (".ann",)
        if projection is not None:
            _save_npy(directory / f"{name}{_PROJECTION}", projection)
            suffixes = (".ann", _PROJECTION)
        params = {"metric": "angular", "annoy_dim": forest_dim, "rerank": rerank if projection is not None else 0,
                  "n_trees": n_trees}
        return params, suffixes

    @classmethod
    def _open(cls, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray, vectors: np.ndarray,
              manifest: dict) -> AnnoySegment:
        seg_dim = int(manifest["dim"])
        forest_dim = int(manifest.get("annoy_dim", seg_dim))
        projection = None
        if _PROJECTION in manifest["file_bytes"]:
            try:
                projection = np.load(directory / f"{name}{_PROJECTION}")
            except (ValueError, OSError) as exc:
                raise SegmentCorrupt(f"segment {name}: unreadable projection: {exc}") from None
            if projection.shape != (seg_dim, forest_dim):
                raise SegmentCorrupt(f"segment {name}: projection is {projection.shape}, "
                                     f"expected ({seg_dim}, {forest_dim})")
        index = _load_annoy(directory / f"{name}.ann", forest_dim)
        if index.get_n_items() != len(clip_ids):
            raise SegmentCorrupt(f"segment {name}: forest has {index.get_n_items()} items, "
                                 f"manifest says {len(clip_ids)}")
        return cls(directory, name, clip_ids, seqs, vectors, manifest, index, projection)

    def _differing_row(self) -> int | None:
        for row in np.unique(np.linspace(0, self.n_items - 1, num=min(self.n_items, 8)).astype(int)).tolist():
            if not self._holds(row):
                return row
        return None

    def _holds(self, row: int) -> bool:
        """Whether the forest's copy of ``row`` matches the vector file's (projected, when it is)."""
        item = np.asarray(self._index.get_item_vector(row), dtype=np.float32)
        if self.projection is None:
            return np.array_equal(item, self.vectors[row])
        return np.allclose(item, self.vectors[row] @ self.projection, atol=1e-4)

    def _candidates(self, query: np.ndarray, n: int, search_k: int) -> np.ndarray:
        probe = query if self.projection is None else query @ self.projection
        return np.asarray(self._index.get_nns_by_vector(probe, n, search_k=search_k), dtype=np.int64)

    def _least_effort(self, candidates: int) -> int:
        return 2 * candidates

    def _effort_resolution(self, k: int) -> int:
        return k

    def cost_in_rows(self, n: int, search_k: int | None = None) -> int:
        # A contiguous matrix-vector product scores a row for a fraction of Annoy's per-node work.
        return 4 * self.effective_search_k(n, search_k)

    def _effort_bounds(self, k: int) -> tuple[int, int]:
        # A projected forest re-ranks at least ``rerank`` candidates, so it starts from what that needs.
        first = 2 * max(k + 1, self.rerank) if self.rerank else max(k * self.n_trees, 2 * (k + 1))
        return first, self.n_items * self.n_trees


def _calibrate(segment: AnnoySegment, vectors: np.ndarray, k: int, target: float, sample: int,
               rng: np.random.Generator) -> tuple[int, float, int]:
    """Smallest ``search_k`` whose recall@k on held-out queries reaches ``target`` with 95% confidence.

    The queries are ``sample`` of the segment's own vectors, each held out of its own answer
    (leave-one-out): the segment is asked for k+1 and the query's own id is dropped, the truth is the
    exact top-k of the other vectors. They stand for queries distributed like the data. A ``search_k``
    passes when the mean recall minus 1.645 standard errors is at least ``target``, so the figure
    holds on fresh queries rather than only on this sample.
    """
    n = len(vectors)
    first, exhaustive = segment._effort_bounds(k)
    if n <= k + 1:
        return max(exhaustive, 1), 1.0, 0
    m = min(sample, n)
    picks = rng.choice(n, size=m, replace=False)
    queries = vectors[picks]
    truth = np.empty((m, k), dtype=np.int64)
    for start in range(0, m, 128):
        scores = queries[start : start + 128] @ vectors.T
        scores[np.arange(len(scores)), picks[start : start + 128]] = -np.inf
        truth[start : start + 128] = top_k(scores, k)[0]
    del scores

    def recall(search_k: int) -> tuple[bool, float]:
        per_query = np.empty(m)
        for j, (query, own, expected) in enumerate(zip(queries, picks.tolist(), truth, strict=True)):
            ids = segment.search_one(query, k + 1, search_k)[0].tolist()
            got = [i for i in ids if i != own][:k]
            per_query[j] = len(set(got).intersection(expected.tolist())) / k
        mean = float(per_query.mean())
        lower = mean - 1.645 * float(per_query.std(ddof=1)) / math.sqrt(m)
        return lower >= target, mean

    lo, hi = 0, min(first, exhaustive)
    ok, hi_recall = recall(hi)
    while not ok and hi < exhaustive:
        lo, hi, before = hi, min(hi * 2, exhaustive), hi_recall
        ok, hi_recall = recall(hi)
        if not ok and segment.rerank and hi_recall < before + 0.002:
            return hi, hi_recall, m  # the candidate pool, not search_k, limits recall: caller widens it
    # Narrow the last doubling step down to ~10% so we do not inspect up to twice the nodes needed.
    while lo and hi - lo > max(segment._effort_resolution(k), hi // 10):
        mid = (lo + hi) // 2
        mid_ok, mid_recall = recall(mid)
        if mid_ok:
            hi, hi_recall = mid, mid_recall
        else:
            lo = mid
    return hi, hi_recall, m


def read_manifest(directory: Path, name: str) -> dict:
    """A segment's manifest; SegmentCorrupt if it is missing or not JSON."""
    try:
        manifest = json.loads((Path(directory) / f"{name}.json").read_text())
    except FileNotFoundError:
        raise SegmentCorrupt(f"segment {name} in {directory} has no manifest") from None
    except (ValueError, OSError) as exc:
        raise SegmentCorrupt(f"segment {name} in {directory} has an unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise SegmentCorrupt(f"segment {name} in {directory} has an unreadable manifest")
    return manifest


def _load_annoy(path: Path, dim: int) -> AnnoyIndex:
    index = AnnoyIndex(dim, "angular")
    try:
        index.load(str(path), prefault=False)
    except OSError as exc:
        raise SegmentCorrupt(f"annoy cannot load {path}: {exc}") from None
    return index


def _principal_axes(vectors: np.ndarray, dims: int, rng: np.random.Generator) -> np.ndarray:
    """``[dim, dims]`` float32 matrix of the top principal axes of a sample of ``vectors``."""
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), _PCA_SAMPLE), replace=False)]
    sample = sample.astype(np.float64)
    _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    return np.ascontiguousarray(vt[:dims].T, dtype=np.float32)


def _read_rows(directory: Path, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = json.loads((directory / f"{name}.ids.json").read_text())
    clip_ids = [str(c) for c in ids["clip_ids"]]
    seqs = np.asarray(ids["seqs"], dtype=np.int64)
    return clip_ids, seqs, np.load(directory / f"{name}.vectors.npy", mmap_mode="r")


def _save_npy(path: Path, array: np.ndarray) -> None:
    np.save(path, array)
    fsync_path(path)


def _write_json(path: Path, payload: dict) -> None:
    write_atomic(path, json.dumps(payload))
