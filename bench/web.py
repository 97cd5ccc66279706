"""The web app's cost: the same cached text searches through HTTP/JSON and through gRPC directly.

``python -m bench.web --json`` starts the local stack with the web app (separate processes on
loopback, tiny model, a real redis-server for the query cache), loads ``--per-shard`` vectors
into each shard, warms the cache, then runs ``--clients`` concurrent closed-loop clients for
``--seconds`` against the gateway over gRPC and against ``GET /api/v1/search`` over HTTP, in turn.
The two loads take turns in ``--rounds`` slices (ABBA), so drift in what else shares the cores hits
both alike. ``overhead_p50_ms`` is the difference of the two pooled medians: what JSON, HTTP and the
extra hop cost under load (each round's difference is listed too); ``serial_overhead_p50_ms`` the
same one request at a time (the cost per request).
The HTTP load comes from aiohttp (``--http-client httpx`` for the other), whose CPU per request is
that of the gRPC client; ``cpu_ms_per_request`` says where each load's CPU went (this driver, the
web app, the rest of the stack), as every process shares the same cores and a closed loop's latency
is its CPU per request times the clients over the cores it gets.
It also times cutting a 20-second clip for playback: stream copy behind an edit list (H.264
source) against re-encoding (an MPEG-2 MXF source), at 1280x720.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from grpc import aio as grpc_aio

from bench.gateway import _load, _text
from services.common.server import client_options
from services.gateway.playback import cut_clip
from services.local.stack import LocalStack, StackConfig
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc


def _summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    lat = np.array(latencies) * 1000
    return {"qps": round(len(latencies) / elapsed, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "errors": errors, "requests": len(latencies)}


async def _closed_loop(call, clients: int, seconds: float, texts: list[str]) -> dict:
    """``clients`` concurrent callers, each sending its next search as soon as the last returns.
    ``call(text)`` returns True for a good reply; False or an exception counts as an error. The summary
    keeps the raw latencies (``latencies_s``) so rounds can be pooled."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal errors
        i = c
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                ok = await call(texts[i % len(texts)])
            except (TimeoutError, grpc_aio.AioRpcError, httpx.HTTPError, aiohttp.ClientError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1
            i += clients

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - t0
    return {**_summary(latencies, errors, elapsed), "latencies_s": latencies, "elapsed_s": elapsed}


async def _grpc_loop(address: str, clients: int, seconds: float, texts: list[str]) -> dict:
    async with grpc_aio.insecure_channel(address, options=client_options()) as channel:
        stub = gateway_pb2_grpc.SearchServiceStub(channel)

        async def call(text: str) -> bool:
            await stub.Search(gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=text), top_k=10), timeout=10)
            return True

        return await _closed_loop(call, clients, seconds, texts)


Search = Callable[[str], Awaitable[bool]]


@asynccontextmanager
async def _http_search(url: str, clients: int, kind: str) -> AsyncIterator[Search]:
    """``GET /api/v1/search`` through a pool of ``clients`` kept-alive connections; the call returns
    True for a 200 with its JSON read."""
    if kind == "httpx":
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as http:

            async def call(text: str) -> bool:
                reply = await http.get("/api/v1/search", params={"q": text, "k": 10})
                reply.json()
                return reply.status_code == 200

            yield call
        return
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def call(text: str) -> bool:
            async with session.get("/api/v1/search", params={"q": text, "k": 10}) as reply:
                await reply.json()
                return reply.status == 200

        yield call


async def _http_loop(url: str, clients: int, seconds: float, texts: list[str], kind: str) -> dict:
    async with _http_search(url, clients, kind) as call:
        return await _closed_loop(call, clients, seconds, texts)


async def _serial(address: str, url: str, texts: list[str], kind: str, n: int = 200) -> dict:
    """One request at a time: the app's own cost per request, without queueing behind others."""
    grpc_times, http_times = [], []
    async with grpc_aio.insecure_channel(address, options=client_options()) as channel, \
            _http_search(url, 1, kind) as http_call:
        stub = gateway_pb2_grpc.SearchServiceStub(channel)
        for i in range(n):
            text = texts[i % len(texts)]
            t = time.perf_counter()
            await stub.Search(gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=text), top_k=10), timeout=10)
            grpc_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            await http_call(text)
            http_times.append(time.perf_counter() - t)
    g, h = float(np.median(grpc_times)) * 1000, float(np.median(http_times)) * 1000
    return {"serial_grpc_p50_ms": round(g, 2), "serial_http_p50_ms": round(h, 2),
            "serial_overhead_p50_ms": round(h - g, 2)}


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(_cpu_seconds(p) for p in group) for name, group in pids.items()}


def _pooled(runs: list[dict], cpu_s: dict[str, float]) -> dict:
    """Rounds of one kind of load as one run: every latency, every error, and the CPU milliseconds per
    request each group of processes spent on them."""
    result = _summary([x for r in runs for x in r["latencies_s"]], sum(r["errors"] for r in runs),
                      sum(r["elapsed_s"] for r in runs))
    cpu = {name: round(1000 * s / max(1, result["requests"]), 3) for name, s in cpu_s.items()}
    return {**result, "cpu_ms": {**cpu, "total": round(sum(cpu.values()), 3)}}


def _interleaved(loads: dict[str, Callable[[float], dict]], seconds: float, rounds: int,
                 pids: dict[str, list[int]]) -> tuple[dict[str, dict], list[float]]:
    """Each load for ``seconds`` in all, in ``rounds`` slices taken in turn (ABBA order), so a drift in
    what else the shared cores run (another VM, a compaction) falls on both loads alike, not on
    whichever ran second. Returns each load's pooled summary and every round's p50 difference of the
    second load over the first."""
    names = list(loads)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    cpu_s = {name: dict.fromkeys(pids, 0.0) for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            before = _cpu(pids)
            runs[name].append(loads[name](seconds / rounds))
            for group, spent in _cpu(pids).items():
                cpu_s[name][group] += spent - before[group]
    diffs = [round(b["p50_ms"] - a["p50_ms"], 2) for a, b in zip(runs[names[0]], runs[names[1]], strict=True)]
    return {name: _pooled(runs[name], cpu_s[name]) for name in names}, diffs


def _clip_costs(tmp: Path) -> dict:
    from tests.media import ffmpeg

    sources = {}
    for name, codec in (("h264.mp4", ["-c:v", "libx264", "-preset", "veryfast", "-g", "50"]),
                        ("mpeg2.mxf", ["-c:v", "mpeg2video", "-b:v", "20M", "-g", "12"])):
        ffmpeg("-f", "lavfi", "-i", "testsrc2=s=1280x720:r=25:d=45", *codec, str(tmp / name))
        sources[name] = tmp / name
    timings = {}
    for name, path in sources.items():
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            data = cut_clip(path, 20.5, 40.5)  # mid-GOP start
            runs.append(time.perf_counter() - t)
        timings[name] = (round(float(np.median(runs)) * 1000, 1), len(data))
    return {"clip_copy_ms": timings["h264.mp4"][0], "clip_copy_bytes": timings["h264.mp4"][1],
            "clip_reencode_ms": timings["mpeg2.mxf"][0], "clip_reencode_bytes": timings["mpeg2.mxf"][1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--per-shard", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0, help="of each load, over all rounds")
    parser.add_argument("--rounds", type=int, default=6, help="slices each load's time is cut into, taken in turn")
    parser.add_argument("--http-client", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="the HTTP load's client; httpx spends about 4x the CPU per request of gRPC's")
    args = parser.parse_args(argv)
    kind = args.http_client
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp)
        checkpoint = save_checkpoint(build_model(tiny()), root / "tiny")
        config = StackConfig(data_dir=root / "stack", checkpoint=checkpoint, n_shards=2, with_ingest=False,
                             log_level="WARNING", web_port=0)
        with LocalStack(config) as stack:
            with httpx.Client(base_url=stack.web.url, timeout=60) as http:
                model_id = http.get("/api/v1/search", params={"q": "probe", "k": 1}).json()["model_id"]
            _load(stack, args.per_shard, 64, model_id)
            texts = [_text(i) for i in range(64)]
            web_pid = stack.web.proc.pid
            pids = {"driver": [os.getpid()], "web": [web_pid],
                    "stack": [p.proc.pid for p in stack.processes if p.proc.pid != web_pid]
                    + ([stack.redis.proc.pid] if stack.redis else [])}
            asyncio.run(_grpc_loop(stack.gateway.address, args.clients, 3.0, texts))  # fills the cache
            asyncio.run(_http_loop(stack.web.url, args.clients, 3.0, texts, kind))  # warms the web app
            runs, round_overheads = _interleaved({
                "grpc": lambda s: asyncio.run(_grpc_loop(stack.gateway.address, args.clients, s, texts)),
                "http": lambda s: asyncio.run(_http_loop(stack.web.url, args.clients, s, texts, kind)),
            }, args.seconds, args.rounds, pids)
            grpc_run, http_run = runs["grpc"], runs["http"]
            serial = asyncio.run(_serial(stack.gateway.address, stack.web.url, texts, kind))
        clips = _clip_costs(root)
    result = {
        "clients": args.clients, "vectors_per_shard": args.per_shard, "http_client": kind,
        "http_p50_ms": http_run["p50_ms"], "grpc_p50_ms": grpc_run["p50_ms"],
        "overhead_p50_ms": round(http_run["p50_ms"] - grpc_run["p50_ms"], 2),
        "rounds": args.rounds, "overhead_p50_ms_by_round": round_overheads,
        "http_p99_ms": http_run["p99_ms"], "grpc_p99_ms": grpc_run["p99_ms"],
        "http_qps": http_run["qps"], "grpc_qps": grpc_run["qps"],
        "errors": http_run["errors"] + grpc_run["errors"],
        "cpu_ms_per_request": {"grpc": grpc_run["cpu_ms"], "http": http_run["cpu_ms"]},
        "web_cpu_ms_per_request": http_run["cpu_ms"]["web"],
        # What the HTTP path costs beyond gRPC in CPU, whatever share of the cores other jobs take.
        "extra_cpu_ms_per_request": round(http_run["cpu_ms"]["total"] - grpc_run["cpu_ms"]["total"], 3),
        **serial, **clips,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
