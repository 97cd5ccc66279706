"""Inverted-list segments: candidates from a faiss IVF index over 8-bit codes of the vectors.

Besides the files every segment has (see ``services.index.segment``), an IVF segment has
``<name>.ivf``: a faiss ``IndexIVFScalarQuantizer`` (inner product on the unit vectors) whose
k-means lists hold about ``list_rows`` rows each, as one-byte-per-dimension codes of each row's
offset from its list's centroid, found through an HNSW graph over the centroids. A query scores
the rows of its ``nprobe`` nearest lists from their codes and re-ranks the best exactly against
the vector file.

Lists of a fixed size make a query's cost nearly independent of the segment's size: four times
the rows means four times the lists, found in a centroid graph whose walk grows with about the log
of its size, while the rows scored per list stay the same. The segment's ``search_k`` is
``nprobe``, calibrated like any engine's effort.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from services.common.atomic import fsync_path
from services.index.segment import Segment, SegmentCorrupt

_LISTS = ".ivf"
# One step of the 8-bit codes is (max - min) / 255 of a dimension's offsets; a row that decodes
# further than this from its vector is another row.
_CODE_TOLERANCE = 0.05
_CENTROID_LINKS = 32
_KMEANS_ITERATIONS = 10
_KMEANS_SAMPLE_PER_LIST = 64


class IvfSegment(Segment):
    """A segment whose candidates come from a faiss IVF index of 8-bit codes, lists of ``list_rows`` rows."""

    engine = "ivf"
    _ENGINE_FILES = (_LISTS,)

    def __init__(self, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray,
                 vectors: np.ndarray, manifest: dict, index: faiss.IndexIVF) -> None:
        super().__init__(directory, name, clip_ids, seqs, vectors, manifest)
        self._index = index

    @property
    def nlist(self) -> int:
        return int(self.manifest["nlist"])

    @classmethod
    def build(cls, directory: str | os.PathLike[str], name: str, clip_ids: Sequence[str], vectors: np.ndarray,
              *, list_rows: int = 256, n_jobs: int = -1, rerank: int = 32, **options: object) -> IvfSegment:
        """A segment of ``n / list_rows`` lists, built on ``n_jobs`` threads (-1: all cores); ``rerank``
        is the least number of candidates re-ranked exactly. Other options as ``Segment.build``."""
        return super().build(directory, name, clip_ids, vectors, list_rows=list_rows, n_jobs=n_jobs,
                             rerank=rerank, **options)

    @classmethod
    def _write_engine(cls, directory: Path, name: str, vectors: np.ndarray, rng: np.random.Generator,
                      seed: int, *, list_rows: int, n_jobs: int, rerank: int) -> tuple[dict, tuple[str, ...]]:
        n, dim = vectors.shape
        nlist = max(1, n // max(1, list_rows))
        # Thread-local in OpenMP: sets this build thread's team only, never a searching thread's.
        faiss.omp_set_num_threads(n_jobs if n_jobs > 0 else os.cpu_count() or 1)
        centroids = faiss.IndexHNSWFlat(dim, _CENTROID_LINKS, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIVFScalarQuantizer(centroids, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = _KMEANS_ITERATIONS
        index.cp.max_points_per_centroid = _KMEANS_SAMPLE_PER_LIST
        index.cp.min_points_per_centroid = 1
        index.cp.seed = seed
        index.train(vectors)
        index.add(vectors)
        path = directory / f"{name}{_LISTS}"
        faiss.write_index(index, str(path))
        fsync_path(path)
        params = {"metric": "inner_product", "codes": "sq8", "nlist": nlist, "list_rows": list_rows,
                  "rerank": rerank}
        return params, (_LISTS,)

    @classmethod
    def _open(cls, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray, vectors: np.ndarray,
              manifest: dict) -> IvfSegment:
        try:
            # The lists stay memory-mapped: the page cache holds them, not the heap.
            index = faiss.read_index(str(directory / f"{name}{_LISTS}"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:
            raise SegmentCorrupt(f"faiss cannot read segment {name}'s lists: {exc}") from None
        if index.ntotal != len(clip_ids) or index.d != int(manifest["dim"]) or index.nlist != int(manifest["nlist"]):
            raise SegmentCorrupt(f"segment {name}: {index.nlist} lists hold {index.ntotal} items of dim {index.d}, "
                                 f"manifest says {manifest['nlist']} of {len(clip_ids)} of dim {manifest['dim']}")
        return cls(directory, name, clip_ids, seqs, vectors, manifest, index)

    def _differing_row(self) -> int | None:
        # The first row of a few lists: found without a row -> list map, which would touch every list.
        lists = self._index.invlists
        for list_no in np.unique(np.linspace(0, self.nlist - 1, num=min(self.nlist, 8)).astype(int)).tolist():
            if lists.list_size(list_no) == 0:
                continue
            row = int(lists.get_single_id(list_no, 0))
            if not 0 <= row < self.n_items:
                return row
            decoded = np.empty(self.dim, dtype=np.float32)
            self._index.reconstruct_from_offset(list_no, 0, faiss.swig_ptr(decoded))
            if not np.allclose(decoded, self.vectors[row], atol=_CODE_TOLERANCE):
                return row
        return None

    def _candidates(self, query: np.ndarray, n: int, search_k: int) -> np.ndarray:
        faiss.omp_set_num_threads(1)  # one query: a team of threads only adds start-up cost
        nprobe = min(search_k, self.nlist)
        params = faiss.SearchParametersIVF(
            nprobe=nprobe, quantizer_params=faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, _CENTROID_LINKS)))
        _, ids = self._index.search(query[None, :], min(n, self.n_items), params=params)
        ids = ids[0]
        return ids[ids >= 0]

    def _least_effort(self, candidates: int) -> int:
        # Lists enough to hold the candidates wanted.
        return min(self.nlist, math.ceil(candidates * self.nlist / max(1, self.n_items)))

    def _effort_bounds(self, k: int) -> tuple[int, int]:
        return self._least_effort(max(k + 1, self.rerank)), self.nlist

    def effective_search_k(self, n: int, search_k: int | None = None) -> int:
        return min(super().effective_search_k(n, search_k), self.nlist)

    def cost_in_rows(self, n: int, search_k: int | None = None) -> int:
        # The rows of the lists probed (8-bit codes score about as fast as an exact scan's floats),
        # plus about a centroid graph walk.
        return math.ceil(self.effective_search_k(n, search_k) * self.n_items / self.nlist) + 2 * _CENTROID_LINKS
