"""Benchmark of the index shard: recall@10, single-query throughput, bytes and start-up, at several sizes.

    python -m bench.index --sizes 50000,200000,800000 --dim 512 --json

Each size is a fresh shard (its own data, queries and exact baseline); all stay open until their
timings, taken in rounds that interleave the sizes, are done. Growth figures compare sizes measured
in the same run: ``qps_ratio_4x`` is the QPS at the largest size over the QPS at a quarter
of it, ``bytes_per_raw_byte`` the worst ratio over all sizes of the shard's bytes on disk (store +
segments) to the raw float32 vectors. Start-up is the time to open the closed shard again, which is
what the service waits for before it reports SERVING.

Data: ``n / 200`` Gaussian clusters of unit vectors (centres uniform on the sphere, per-dimension
noise ``spread / sqrt(dim)``, then normalised), and held-out queries drawn the same way. A
``ShardIndex`` is filled through its public ``upsert`` in batches, sealed into one segment and
searched one query at a time through ``search`` (filters off; hits carry their records, as the
servicer needs). Baselines: a NumPy exact scan (matrix-vector product + argpartition) and faiss
``IndexHNSWFlat`` (inner product on the same unit vectors) whose ``efSearch`` is swept to the
smallest value reaching the shard's recall. ``--engine`` picks the shard's segment engine (the
IVF lists of 8-bit codes, or the Annoy forest), so both are measured by the same code.

Threads: a segment answers a query on one thread; faiss is pinned to one OpenMP thread for search
(one query gains nothing from more) and may use all cores to build. The NumPy baseline is timed
with OpenBLAS on one thread and on all cores and the faster is reported (``exact_threads``), so
the speed-up is against the strongest exact scan this machine offers at that moment. Timings are
interleaved rounds, best round kept, because a shared machine slows whichever method runs while a
neighbour is busy.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from services.index.records import ClipRecord
from services.index.segment import exact_top_k
from services.index.shard import ShardIndex

MODEL = "bench-model"
K = 10


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    """``n`` unit vectors around randomly chosen ``centres``, generated in float32 chunks."""
    dim = centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        v = centres[rng.integers(0, len(centres), size=m)]
        v = v + rng.standard_normal((m, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f[:K]).intersection(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def timed_qps(fn, queries: np.ndarray, min_seconds: float = 1.5) -> tuple[float, list]:
    """Single-query throughput of ``fn(query)`` over ``queries`` (cycled for >= ``min_seconds``)."""
    results: list = []
    done, started = 0, time.perf_counter()
    while True:
        for q in queries:
            out = fn(q)
            if len(results) < len(queries):
                results.append(out)
        done += len(queries)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed, results


def _openblas() -> ctypes.CDLL | None:
    """NumPy's bundled OpenBLAS, to set its thread count (threadpoolctl is not a dependency)."""
    for lib in sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("libscipy_openblas*.so")):
        handle = ctypes.CDLL(str(lib))
        if hasattr(handle, "scipy_openblas_set_num_threads64_"):
            return handle
    return None


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[bool]:
    """Run the block with OpenBLAS on ``n`` threads; yields False if that cannot be controlled."""
    lib = _openblas()
    if lib is None:
        yield False
        return
    before = lib.scipy_openblas_get_num_threads64_()
    lib.scipy_openblas_set_num_threads64_(n)
    try:
        yield True
    finally:
        lib.scipy_openblas_set_num_threads64_(before)


def exact_search(vectors: np.ndarray):
    def search(q: np.ndarray) -> np.ndarray:
        scores = vectors @ q
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]

    return search


def shard_options(args: argparse.Namespace, n: int) -> dict:
    """``--segment-rows`` seals every that many rows and, without ``--merge-factor``, keeps the segments
    that size; with it, the shard merges them in tiers as a serving shard does."""
    rows = args.segment_rows if 0 < args.segment_rows < n else n + 1
    return {"seal_threshold": rows, "max_segment_rows": max(rows, n) if args.merge_factor else rows,
            "merge_factor": args.merge_factor, "search_threads": args.search_threads,
            "segment_engine": args.engine, "n_trees": args.n_trees, "annoy_dim": args.annoy_dim,
            "rerank": args.rerank or None, "recall_target": args.recall_target, "seed": args.seed}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reopen(args: argparse.Namespace, n: int, data_dir: str) -> tuple[ShardIndex, dict]:
    """Open the closed shard again, as the service does at start-up, and time it."""
    rss = _rss_bytes()
    started = time.perf_counter()
    index = ShardIndex(data_dir, **shard_options(args, n))
    return index, {"startup_seconds": round(time.perf_counter() - started, 2),
                   "startup_rss_bytes": _rss_bytes() - rss}


def build_shard(args: argparse.Namespace, vectors: np.ndarray, data_dir: str) -> tuple[ShardIndex, dict]:
    """Fill a shard through its public API (sealing a segment every ``--segment-rows``), seal the rest
    and wait for the builds."""
    n = len(vectors)
    index = ShardIndex(data_dir, model_id=MODEL, dim=args.dim, **shard_options(args, n))
    started = time.perf_counter()
    for start in range(0, n, args.batch):
        index.upsert([
            ClipRecord(f"c{i}", f"v{i // 100}", i % 100 * 2.0, i % 100 * 2.0 + 2, vectors[i], model_id=MODEL)
            for i in range(start, min(n, start + args.batch))
        ])
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    index.seal(wait=True)
    build_s = time.perf_counter() - started
    stats = index.stats()
    segments = [p.segment for p in index._segments]  # the bench inspects the segments it built
    segment = segments[0]
    raw = n * args.dim * 4
    return index, {
        "segments": len(segments),
        "search_k": [s.search_k for s in segments] if len(segments) > 1 else segment.search_k,
        "calibrated_recall": round(min(s.manifest["calibration"]["recall"] for s in segments), 4),
        "engine": segment.engine,
        **{key: segment.manifest[key] for key in ("n_trees", "annoy_dim", "nlist", "list_rows")
           if key in segment.manifest},
        "rerank": segment.rerank,
        "ingest_seconds": round(ingest_s, 2),
        "build_seconds": round(build_s, 2),
        "index_bytes": stats["segment_bytes"],
        "store_bytes": stats["store_bytes"],
        "raw_vector_bytes": raw,
        "bytes_per_raw_byte": round(stats["bytes_on_disk"] / raw, 3),
        "file_bytes": {suffix: sum(s.manifest["file_bytes"][suffix] for s in segments)
                       for suffix in segment.manifest["file_bytes"]},
    }


def build_hnsw(args: argparse.Namespace, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray,
               target: float):
    """faiss HNSW with the smallest efSearch (of a sweep) whose recall@10 reaches ``target``."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.hnsw_ef_construction
    index.add(vectors)
    build_s = time.perf_counter() - started
    chosen, chosen_recall = None, 0.0
    for ef in (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024):
        index.hnsw.efSearch = ef
        _, ids = index.search(queries, K)
        chosen, chosen_recall = ef, recall_at_k(ids.tolist(), truth)
        if chosen_recall >= target:
            break
    index.hnsw.efSearch = chosen
    faiss.omp_set_num_threads(1)  # one query cannot use more; avoids OpenMP start-up per call
    return index, {
        "peer": f"faiss IndexHNSWFlat M={args.hnsw_m} efConstruction={args.hnsw_ef_construction}",
        "peer_ef_search": chosen,
        "peer_recall_at_10": round(chosen_recall, 4),
        "peer_build_seconds": round(build_s, 2),
        "peer_index_bytes": int(faiss.serialize_index(index).size),
    }


def prepare_size(args: argparse.Namespace, n: int, peer: bool, tmp: str) -> tuple[dict, dict, ShardIndex]:
    """Build and reopen a shard of ``n`` clips in ``tmp``; its figures so far, the searches to time
    (name -> (function of one query, queries)) and the open shard."""
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((max(1, n // args.cluster_size), args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(rng, centres, n, args.spread)
    queries = clustered(rng, centres, args.queries, args.spread)
    truth, _ = exact_top_k(queries, vectors, K)

    result: dict = {"n": n, "dim": args.dim, "queries": args.queries, "k": K,
                    "clusters": len(centres), "spread": args.spread, "cpus": os.cpu_count()}
    shard, info = build_shard(args, vectors, tmp)
    result.update(info)
    shard.close()
    shard, startup = reopen(args, n, tmp)
    result.update(startup)
    row = {f"c{i}": i for i in range(n)}

    def shard_search(q: np.ndarray) -> list[int]:
        return [row[h.clip_id] for h in shard.search(q[None, :], K)[0]]

    started = time.perf_counter()
    shard_search(queries[0])
    result["first_query_ms"] = round(1000 * (time.perf_counter() - started), 2)
    _, found = timed_qps(shard_search, queries, min_seconds=0)  # also warms the memory map
    result["recall_at_10"] = round(recall_at_k(found, truth), 4)
    exact = exact_search(vectors)
    cpus = os.cpu_count() or 1

    def exact_1(q: np.ndarray) -> np.ndarray:
        with blas_threads(1):
            return exact(q)

    methods = {"qps": (shard_search, queries), f"exact_qps_{cpus}t": (exact, queries[:200]),
               "exact_qps_1t": (exact_1, queries[:200])}
    if peer:
        hnsw, peer_info = build_hnsw(args, vectors, queries, truth, result["recall_at_10"])
        result.update(peer_info)
        methods["peer_qps"] = (lambda q: hnsw.search(q[None, :], K), queries)
    return result, methods, shard


def time_interleaved(cases: list[tuple[dict, dict]], rounds: int) -> None:
    """Best-round QPS of every method of every size, into each size's figures.

    Rounds interleave the sizes as well as the methods: a shared machine slows whichever runs when a
    neighbour is busy, and the best round is the closest to each method's own speed, so the sizes'
    ratio compares like with like even when the machine's load changes during the run.
    """
    best = [dict.fromkeys(methods, 0.0) for _, methods in cases]
    for _ in range(rounds):
        for (_, methods), best_of in zip(cases, best, strict=True):
            for name, (fn, qs) in methods.items():
                best_of[name] = max(best_of[name], timed_qps(fn, qs)[0])
    cpus = os.cpu_count() or 1
    for (result, _), best_of in zip(cases, best, strict=True):
        result.update({name: round(qps, 1) for name, qps in best_of.items()})
        result["exact_threads"] = 1 if best_of["exact_qps_1t"] >= best_of[f"exact_qps_{cpus}t"] else cpus
        result["exact_qps"] = round(max(best_of["exact_qps_1t"], best_of[f"exact_qps_{cpus}t"]), 1)
        result["speedup_vs_exact"] = round(result["qps"] / result["exact_qps"], 2)
        if "peer_qps" in result:
            result["qps_vs_peer"] = round(result["qps"] / result["peer_qps"], 3)


def run_sizes(args: argparse.Namespace, sizes: list[int]) -> list[dict]:
    """Every figure for one shard per size; all stay open so their timing rounds interleave."""
    prepared: list[tuple[dict, dict]] = []
    with contextlib.ExitStack() as stack:
        for n in sizes:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-index-", dir=args.tmp))
            result, methods, shard = prepare_size(args, n, not args.no_peer and n <= args.peer_max_n, tmp)
            stack.callback(shard.close)
            prepared.append((result, methods))
            print(json.dumps(result), file=sys.stderr, flush=True)
        time_interleaved(prepared, args.rounds)
    return [result for result, _ in prepared]


def growth(cases: list[dict]) -> dict:
    """Ratios between sizes of one run: QPS at the largest size over a quarter of it, worst bytes ratio."""
    by_n = {c["n"]: c for c in cases}
    largest = max(by_n)
    out: dict = {"sizes": sorted(by_n), "bytes_per_raw_byte": max(c["bytes_per_raw_byte"] for c in cases)}
    if largest // 4 in by_n:
        out["qps_ratio_4x"] = round(by_n[largest]["qps"] / by_n[largest // 4]["qps"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="200000", help="comma-separated shard sizes (clips), one shard each")
    p.add_argument("--n", type=int, help="a single size (same as --sizes N)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000, help="held-out queries for recall and QPS")
    p.add_argument("--cluster-size", type=int, default=200, help="mean vectors per Gaussian cluster")
    p.add_argument("--spread", type=float, default=1.0, help="noise norm around a unit cluster centre")
    p.add_argument("--engine", default="ivf", help="segment engine: ivf or annoy")
    p.add_argument("--n-trees", type=int, default=64, help="Annoy trees per segment")
    p.add_argument("--annoy-dim", type=int, default=128, help="dimensions the Annoy forest is built on")
    p.add_argument("--rerank", type=int, default=0,
                   help="least candidates re-ranked exactly per query (0: the engine's default)")
    p.add_argument("--segment-rows", type=int, default=0,
                   help="rows per sealed segment, as seal_threshold and max_segment_rows (0: one segment)")
    p.add_argument("--merge-factor", type=int, default=0,
                   help="with --segment-rows: merge that many segments of a size tier into one (0: never)")
    p.add_argument("--search-threads", type=int, default=1, help="threads one query's segments use")
    p.add_argument("--recall-target", type=float, default=0.95)
    p.add_argument("--batch", type=int, default=5000, help="records per upsert")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--hnsw-ef-construction", type=int, default=80)
    p.add_argument("--no-peer", action="store_true", help="skip the faiss HNSW baseline")
    p.add_argument("--peer-max-n", type=int, default=200_000, help="largest size that also builds HNSW")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best is kept")
    p.add_argument("--tmp", default=None, help="directory for the shards (default: system temp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    args = p.parse_args(argv)
    sizes = [args.n] if args.n else [int(s) for s in args.sizes.split(",") if s]

    cases = run_sizes(args, sizes)
    result = {**cases[-1], **growth(cases), "cases": cases}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "cases":
                print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
