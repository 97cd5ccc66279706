"""Gateway throughput and latency: cached text queries over 2 and 4 shards, cache hit vs miss, fan-out cost.

``python -m bench.gateway --json`` starts the local stack (separate processes on loopback, a
real redis-server for the cache) with the tiny model, loads ``--per-shard`` clustered vectors
into every shard directly, then measures through the gateway with ``--clients`` concurrent
clients: QPS and p50/p99 of cached text queries, the latency of a cache hit against a miss,
and the fan-out overhead against calling one shard directly with the same vector.

``python -m bench.gateway --kill-shard`` measures instead what one dead shard costs: the same
closed loop (``--clients``, 8 by default there) over 2 shards while both serve, then with one
SIGKILLed (every search ``partial``, none an error), then after it is restarted; it prints the
p50 of each phase and the ratio dead / healthy (the target is at most 1.5). With ``--replicas 2``
each shard has two copies and one copy is killed: the searches should not even be partial.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from grpc import aio as grpc_aio

from services.common.server import client_options
from services.local.stack import LocalStack, StackConfig
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

WORDS = ["빨간", "파란", "공", "남자", "여자", "바다", "숲", "도시", "밤에", "낮에", "움직인다", "전화를", "받는",
         "스튜디오에서", "red", "blue", "ball", "night", "sea", "city"]


def _load(stack: LocalStack, per_shard: int, dim: int, model_id: str, seed: int = 0) -> float:
    """``per_shard`` clustered vectors into every shard, the same ones into each of its replicas."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for s, copies in enumerate(stack.replicas):
        centres = rng.normal(size=(max(1, per_shard // 200), dim)).astype(np.float32)
        channels = [grpc.insecure_channel(p.address, options=client_options()) for p in copies]
        stubs = [index_pb2_grpc.IndexServiceStub(c) for c in channels]
        for start in range(0, per_shard, 5000):
            n = min(5000, per_shard - start)
            vecs = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            clips = [common_pb2.ClipRecord(
                clip_id=f"v{s}-{(start + i) // 90}:{((start + i) % 90) * 20000:09d}",
                video_id=f"v{s}-{(start + i) // 90}", start_seconds=((start + i) % 90) * 20.0,
                end_seconds=((start + i) % 90) * 20.0 + 20, vector=common_pb2.Vector(values=v), model_id=model_id)
                for i, v in enumerate(vecs.tolist())]
            for stub in stubs:
                stub.Upsert(index_pb2.UpsertRequest(clips=clips), timeout=120)
        for stub in stubs:
            stub.Seal(index_pb2.SealRequest(wait=False), timeout=60)
        for channel in channels:
            channel.close()
    for copies in stack.replicas:  # wait for every build
        for proc in copies:
            with grpc.insecure_channel(proc.address) as channel:
                index_pb2_grpc.IndexServiceStub(channel).Seal(index_pb2.SealRequest(wait=True), timeout=1800)
    return time.perf_counter() - t0


def _text(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5)) + f" {i}"


async def _closed_loop(address: str, clients: int, seconds: float, texts: list[str]) -> dict:
    latencies: list[float] = []
    errors = partial = 0
    async with grpc_aio.insecure_channel(address, options=client_options()) as channel:
        stub = gateway_pb2_grpc.SearchServiceStub(channel)
        stop_at = time.perf_counter() + seconds

        async def client(c: int) -> None:
            nonlocal errors, partial
            i = c
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                try:
                    reply = await stub.Search(gateway_pb2.SearchRequest(
                        text=gateway_pb2.TextQuery(text=texts[i % len(texts)]), top_k=10), timeout=10)
                    latencies.append(time.perf_counter() - t)
                    partial += reply.partial
                except grpc_aio.AioRpcError:
                    errors += 1
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"qps": round(len(latencies) / elapsed, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "errors": errors, "requests": len(latencies),
            "partial": partial}


def _serial_ms(call, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def _single_stream(stack: LocalStack, n: int) -> dict:
    with grpc.insecure_channel(stack.gateway.address, options=client_options()) as gch, \
            grpc.insecure_channel(stack.shards[0].address, options=client_options()) as sch:
        gw = gateway_pb2_grpc.SearchServiceStub(gch)
        shard = index_pb2_grpc.IndexServiceStub(sch)

        def search(text: str) -> gateway_pb2.SearchResponse:
            return gw.Search(gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=text), top_k=10), timeout=30)

        miss = _serial_ms(lambda i: search(f"never seen before {i} {time.time_ns()}"), n)
        search("the same query")
        hit = _serial_ms(lambda i: search("the same query"), n)
        v = np.random.default_rng(1).normal(size=64)
        vec = (v / np.linalg.norm(v)).tolist()
        direct = _serial_ms(lambda i: shard.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=vec)], top_k=10), timeout=30), n)
    return {"miss_p50_ms": round(miss, 2), "hit_p50_ms": round(hit, 2), "direct_shard_p50_ms": round(direct, 2)}


def run_case(checkpoint: Path, n_shards: int, per_shard: int, clients: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-gw{n_shards}-") as tmp:
        config = StackConfig(data_dir=Path(tmp), checkpoint=checkpoint, n_shards=n_shards, with_ingest=False,
                             log_level="WARNING")
        with LocalStack(config) as stack:
            with grpc.insecure_channel(stack.gateway.address) as ch:
                probe = gateway_pb2_grpc.SearchServiceStub(ch).Search(
                    gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="probe"), top_k=1), timeout=60)
            load_s = _load(stack, per_shard, 64, probe.model_id)
            texts = [_text(i) for i in range(64)]
            asyncio.run(_closed_loop(stack.gateway.address, clients, 3.0, texts))  # fills the cache, warms up
            loaded = asyncio.run(_closed_loop(stack.gateway.address, clients, seconds, texts))
            single = _single_stream(stack, 40)
    return {"shards": n_shards, "vectors_per_shard": per_shard, "load_and_build_s": round(load_s, 1),
            **loaded, **single}


def kill_shard_case(checkpoint: Path, per_shard: int, clients: int, seconds: float, replicas: int = 1) -> dict:
    """p50 of cached text searches over 2 shards: both serving, one (a replica of one) SIGKILLed, restarted."""
    with tempfile.TemporaryDirectory(prefix="bench-gw-kill-") as tmp:
        config = StackConfig(data_dir=Path(tmp), checkpoint=checkpoint, n_shards=2, replicas=replicas,
                             with_ingest=False, log_level="WARNING")
        with LocalStack(config) as stack:
            with grpc.insecure_channel(stack.gateway.address) as ch:
                probe = gateway_pb2_grpc.SearchServiceStub(ch).Search(
                    gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="probe"), top_k=1), timeout=60)
            _load(stack, per_shard, 64, probe.model_id)
            texts = [_text(i) for i in range(64)]
            asyncio.run(_closed_loop(stack.gateway.address, clients, 3.0, texts))  # fills the cache, warms up
            healthy = asyncio.run(_closed_loop(stack.gateway.address, clients, seconds, texts))
            stack.shards[1].kill()  # SIGKILL: shard 1 (with replicas, its first copy)
            dead = asyncio.run(_closed_loop(stack.gateway.address, clients, seconds, texts))
            stack.restart_shard(1)
            time.sleep(5.0)  # the gateway's reconnect backoff (capped at 2 s) and its breaker's probe cooldown
            back = asyncio.run(_closed_loop(stack.gateway.address, clients, seconds, texts))
    return {"clients": clients, "vectors_per_shard": per_shard, "replicas": replicas, "healthy": healthy,
            "one_shard_dead": dead,
            "restarted": back, "dead_over_healthy_p50": round(dead["p50_ms"] / healthy["p50_ms"], 2),
            "errors": healthy["errors"] + dead["errors"] + back["errors"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--per-shard", type=int, default=100_000)
    parser.add_argument("--shards", default="2,4")
    parser.add_argument("--clients", type=int, default=None, help="16 (8 with --kill-shard)")
    parser.add_argument("--kill-shard", action="store_true",
                        help="measure p50 with one of 2 shards SIGKILLed against both serving")
    parser.add_argument("--replicas", type=int, default=1, help="copies of each shard (with --kill-shard)")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    with tempfile.TemporaryDirectory(prefix="bench-gw-ckpt-") as tmp:
        checkpoint = save_checkpoint(build_model(tiny()), Path(tmp) / "tiny")
        if args.kill_shard:
            print(json.dumps(kill_shard_case(checkpoint, args.per_shard, args.clients or 8, args.seconds,
                                             args.replicas), indent=2))
            return
        cases = [run_case(checkpoint, int(n), args.per_shard, args.clients or 16, args.seconds)
                 for n in args.shards.split(",")]
    main_case = cases[-1]
    result = {
        "clients": args.clients or 16,
        "qps": main_case["qps"], "p50_ms": main_case["p50_ms"], "p99_ms": main_case["p99_ms"],
        "errors": sum(c["errors"] for c in cases),
        "p99_over_p50": round(main_case["p99_ms"] / main_case["p50_ms"], 2),
        "cache_hit_speedup": round(main_case["miss_p50_ms"] / main_case["hit_p50_ms"], 2),
        "fanout_overhead_ms": round(main_case["hit_p50_ms"] - main_case["direct_shard_p50_ms"], 2),
        "cases": cases,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
