"""``vidsearch demo``: runs what the system has end to end on loopback and prints the results.

Starts an index shard as its own process, loads clip embeddings of a synthetic archive over
gRPC, seals them into an Annoy segment, and runs "more like this" searches with filters.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import client_options
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

DIM = 512
PROGRAMMES = ["9시 뉴스", "아침 드라마", "다큐멘터리 3일", "가요무대"]


def timecode(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def _wait_serving(address: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"shard exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError("shard did not become SERVING")


def _archive(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[common_pb2.ClipRecord]]:
    """Clips of 20 s from ~n/90 videos; clips of one video share a scene-like cluster of embeddings."""
    centres = rng.normal(size=(max(4, n // 90), DIM)).astype(np.float32)
    records, vectors = [], []
    for i in range(n):
        video = i // 90
        vec = centres[video % len(centres)] + 0.35 * rng.normal(size=DIM).astype(np.float32)
        vec /= np.linalg.norm(vec)
        vectors.append(vec)
        start = (i % 90) * 20.0
        records.append(common_pb2.ClipRecord(
            clip_id=f"video{video:04d}:{int(start * 1000):09d}", video_id=f"video{video:04d}",
            start_seconds=start, end_seconds=start + 20.0, vector=common_pb2.Vector(values=vec.tolist()),
            model_id="demo-random-512", tags=["news"] if video % 2 == 0 else ["drama"],
            metadata={"programme": PROGRAMMES[video % len(PROGRAMMES)]},
        ))
    return np.stack(vectors), records


def _print_hits(title: str, hits) -> None:
    print(f"\n{title}")
    print(f"  {'rank':>4}  {'clip':<22} {'start':>12}  {'score':>6}  {'shard':<8} programme")
    for rank, hit in enumerate(hits, 1):
        c = hit.clip
        print(f"  {rank:>4}  {c.clip_id:<22} {timecode(c.start_seconds):>12}  {hit.score:6.3f}  "
              f"{hit.shard:<8} {c.metadata.get('programme', '')}")


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="start the system locally, load an archive, search it, print the hits")
    p.add_argument("--data-dir", default=".demo", help="where the demo keeps its data")
    p.add_argument("--clips", type=int, default=20_000, help="clips to load")
    p.set_defaults(run=lambda args: run_demo(args.data_dir, args.clips))


def run_demo(data_dir: str, n_clips: int) -> int:
    root = Path(data_dir)
    shutil.rmtree(root / "shard-0", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    port_file = root / "shard-0.port"
    port_file.unlink(missing_ok=True)
    env = {**os.environ, "VIDSEARCH_INDEX_DATA_DIR": str(root / "shard-0"), "VIDSEARCH_INDEX_SERVER_PORT": "0",
           "VIDSEARCH_INDEX_SHARD_NAME": "shard-0",
           "VIDSEARCH_INDEX_SERVER_PORT_FILE": str(port_file), "VIDSEARCH_LOG_LEVEL": "WARNING"}
    print(f"starting index shard (data in {root / 'shard-0'}) ...")
    proc = subprocess.Popen([sys.executable, "-m", "services.index"], env=env)
    try:
        while not port_file.exists():
            if proc.poll() is not None:
                raise RuntimeError("shard failed to start")
            time.sleep(0.05)
        address = f"127.0.0.1:{port_file.read_text()}"
        _wait_serving(address, proc)
        rng = np.random.default_rng(7)
        _, records = _archive(n_clips, rng)
        with grpc.insecure_channel(address, options=client_options()) as channel:
            stub = index_pb2_grpc.IndexServiceStub(channel)
            t0 = time.perf_counter()
            for start in range(0, len(records), 2000):
                stub.Upsert(index_pb2.UpsertRequest(clips=records[start:start + 2000]), timeout=120)
            t1 = time.perf_counter()
            stub.Seal(index_pb2.SealRequest(wait=True), timeout=600)
            t2 = time.perf_counter()
            stats = stub.Stats(index_pb2.StatsRequest(), timeout=10)
            print(f"loaded {stats.live} clips in {t1 - t0:.1f}s (durable), sealed into {stats.segments} "
                  f"Annoy segment(s) in {t2 - t1:.1f}s; {stats.bytes_on_disk / 1e6:.1f} MB on disk")
            probe = records[12345 % len(records)]
            query = common_pb2.Vector(values=probe.vector.values)
            t3 = time.perf_counter()
            reply = stub.Search(index_pb2.SearchRequest(queries=[query], top_k=5), timeout=10)
            t4 = time.perf_counter()
            _print_hits(f"more like {probe.clip_id} ({(t4 - t3) * 1000:.1f} ms):", reply.results[0].hits)
            other = "drama" if "news" in probe.tags else "news"
            reply = stub.Search(index_pb2.SearchRequest(
                queries=[query], top_k=5,
                filter=common_pb2.SearchFilter(tags=[other], min_start_seconds=600.0)), timeout=10)
            _print_hits(f"same query, only '{other}' clips starting after 00:10:00:", reply.results[0].hits)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print("\nshard stopped cleanly.")
    return 0
