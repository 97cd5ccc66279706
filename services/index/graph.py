"""Graph segments: candidates from an HNSW graph over 8-bit codes of the vectors (faiss).

Besides the files every segment has (see ``services.index.segment``), a graph segment has
``<name>.hnsw``: a faiss ``IndexHNSWSQ`` (inner product on the unit vectors, one byte per
dimension, ``m`` links per node) over local ids 0..n-1. The codes cost a quarter of the float32
vectors and lose little of their order, so a few dozen candidates re-ranked exactly against the
vector file reach the recall target; a graph walk's cost grows with about the log of the rows,
where a tree forest's grows with the rows, which keeps a large segment's queries cheap.

The segment's ``search_k`` is the graph's ``efSearch`` (the walk's candidate list length).
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from services.common.atomic import fsync_path
from services.index.segment import Segment, SegmentCorrupt

_GRAPH = ".hnsw"
# One step of the 8-bit codes is (max - min) / 255 per dimension; a row that decodes further than
# this from its vector is another row.
_CODE_TOLERANCE = 0.05


class GraphSegment(Segment):
    """A segment whose candidates come from a faiss HNSW graph over 8-bit scalar-quantised vectors."""

    engine = "hnsw"
    _ENGINE_FILES = (_GRAPH,)

    def __init__(self, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray,
                 vectors: np.ndarray, manifest: dict, index: faiss.Index) -> None:
        super().__init__(directory, name, clip_ids, seqs, vectors, manifest)
        self._index = index

    @property
    def m(self) -> int:
        return int(self.manifest["m"])

    @classmethod
    def build(cls, directory: str | os.PathLike[str], name: str, clip_ids, vectors: np.ndarray, *,
              m: int = 16, ef_construction: int = 80, n_jobs: int = -1, rerank: int = 32,
              **options: object) -> GraphSegment:
        """A segment whose graph has ``m`` links per node, built with ``ef_construction`` on ``n_jobs``
        threads (-1: all cores); ``rerank`` is the least number of candidates re-ranked exactly.
        Other options as ``Segment.build``."""
        return super().build(directory, name, clip_ids, vectors, m=m, ef_construction=ef_construction,
                             n_jobs=n_jobs, rerank=rerank, **options)

    @classmethod
    def _write_engine(cls, directory: Path, name: str, vectors: np.ndarray, rng: np.random.Generator,
                      seed: int, *, m: int, ef_construction: int, n_jobs: int, rerank: int
                      ) -> tuple[dict, tuple[str, ...]]:
        # Thread-local in OpenMP: sets this build thread's team only, never a searching thread's.
        faiss.omp_set_num_threads(n_jobs if n_jobs > 0 else os.cpu_count() or 1)
        index = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.train(vectors)  # the per-dimension range of the codes
        index.add(vectors)
        path = directory / f"{name}{_GRAPH}"
        faiss.write_index(index, str(path))
        fsync_path(path)
        params = {"metric": "inner_product", "codes": "sq8", "m": m, "ef_construction": ef_construction,
                  "rerank": rerank}
        return params, (_GRAPH,)

    @classmethod
    def _open(cls, directory: Path, name: str, clip_ids: list[str], seqs: np.ndarray, vectors: np.ndarray,
              manifest: dict) -> GraphSegment:
        try:
            index = faiss.read_index(str(directory / f"{name}{_GRAPH}"))
        except RuntimeError as exc:
            raise SegmentCorrupt(f"faiss cannot read segment {name}'s graph: {exc}") from None
        if index.ntotal != len(clip_ids) or index.d != int(manifest["dim"]):
            raise SegmentCorrupt(f"segment {name}: graph has {index.ntotal} items of dim {index.d}, manifest "
                                 f"says {len(clip_ids)} of dim {manifest['dim']}")
        return cls(directory, name, clip_ids, seqs, vectors, manifest, index)

    def _holds(self, row: int) -> bool:
        return bool(np.allclose(self._index.reconstruct(row), self.vectors[row], atol=_CODE_TOLERANCE))

    def _candidates(self, query: np.ndarray, n: int, search_k: int) -> np.ndarray:
        faiss.omp_set_num_threads(1)  # one query: a team of threads only adds start-up cost
        params = faiss.SearchParametersHNSW(efSearch=max(search_k, n))
        _, ids = self._index.search(query[None, :], min(n, self.n_items), params=params)
        ids = ids[0]
        return ids[ids >= 0]

    def _least_effort(self, candidates: int) -> int:
        return min(candidates, self.n_items)

    def effective_search_k(self, n: int, search_k: int | None = None) -> int:
        # A candidate list as long as the segment already reaches every row the graph links to.
        return min(super().effective_search_k(n, search_k), max(self.n_items, 1))

    def visits(self, n: int, search_k: int | None = None) -> int:
        # A walk scores the unseen links of about every node on its candidate list: of the 2m links
        # a node has at layer 0, about half are new.
        return self.effective_search_k(n, search_k) * self.m
