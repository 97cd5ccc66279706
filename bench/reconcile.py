"""A migration's reconcile pass on the driver's side: memory and time of comparing two generations.

``python -m bench.reconcile --json`` starts five index shards in a child process (two for the source
generation, three for the target), writes ``--videos`` videos of ``--clips`` clips into the source and
all but every tenth video into the target, then finds the videos to fill twice, side by side: by
reading every clip id of both generations into memory (``inventory``, how passes worked before) and by
walking both in clip-id order (``clips_in_order`` + ``differences``, how they work now). It prints
the driver's peak traced memory and the seconds of each, and their ratios. The shards run in another
process so that only the driver's own allocations are traced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from services.common.index_client import ShardSet
from services.common.readiness import Pending
from services.common.server import Registration, start_server
from services.common.settings import ServerSettings
from services.index.migrate import clips_in_order, differences, inventory
from services.index.servicer import IndexServicer
from services.index.shard import ShardIndex
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2_grpc

DIM = 8


async def _serve(n: int) -> None:
    """``n`` index shards on loopback in this process; prints their addresses, then serves until killed."""
    root = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    addresses, running_servers = [], []  # held: a dropped server object stops serving
    for i in range(n):
        servicer = IndexServicer(f"shard-{i}", Pending("opening"))
        servicer.shard.set(await asyncio.to_thread(ShardIndex, root / f"shard-{i}"))
        running = await start_server(ServerSettings(port=0, grace_seconds=0), [Registration(
            index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, "vidsearch.index.v1.IndexService")])
        await running.set_serving(True)
        running_servers.append(running)
        addresses.append(f"127.0.0.1:{running.port}")
    print(",".join(addresses), flush=True)
    await asyncio.Event().wait()


async def _load(source: ShardSet, target: ShardSet, videos: int, clips: int) -> None:
    vector = common_pb2.Vector(values=[0.5] * DIM)
    for v in range(videos):
        video = f"video-{v:06d}"
        records = [common_pb2.ClipRecord(clip_id=f"{video}:{i * 1000:09d}", video_id=video, start_seconds=float(i),
                                         end_seconds=i + 1.0, vector=vector, model_id="m") for i in range(clips)]
        await source.for_video(video).upsert(records)
        if v % 10:
            await target.for_video(video).upsert(records)


async def _by_inventory(source: ShardSet, target: ShardSet) -> set[str]:
    found, held = await asyncio.gather(inventory(source), inventory(target))
    return {v for v, ids in found.items() if ids - held.get(v, set())}


async def _by_walk(source: ShardSet, target: ShardSet) -> set[str]:
    missing = set()
    async for only_in_source, clip in differences(clips_in_order(source), clips_in_order(target)):
        if only_in_source:
            missing.add(clip.video_id)
    return missing


async def _measure(find, source: ShardSet, target: ShardSet) -> dict:
    tracemalloc.start()
    started = time.perf_counter()
    missing = await find(source, target)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"peak_mib": round(peak / 2**20, 2), "seconds": round(seconds, 2), "videos_to_fill": len(missing)}


async def _run(args: argparse.Namespace) -> dict:
    child = subprocess.Popen([sys.executable, "-m", "bench.reconcile", "--serve", "5"], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        addresses = child.stdout.readline().strip().split(",")
        source, target = ShardSet(addresses[:2], timeout_s=120), ShardSet(addresses[2:], timeout_s=120)
        try:
            await _load(source, target, args.videos, args.clips)
            walk = await _measure(_by_walk, source, target)
            whole = await _measure(_by_inventory, source, target)
        finally:
            await source.close()
            await target.close()
    finally:
        child.kill()
        child.wait()
    assert walk["videos_to_fill"] == whole["videos_to_fill"]
    return {"clips": args.videos * args.clips, "videos": args.videos,
            "walk_peak_mib": walk["peak_mib"], "inventory_peak_mib": whole["peak_mib"],
            "memory_ratio": round(walk["peak_mib"] / max(whole["peak_mib"], 1e-9), 3),
            "walk_seconds": walk["seconds"], "inventory_seconds": whole["seconds"],
            "time_ratio": round(walk["seconds"] / max(whole["seconds"], 1e-9), 2),
            "videos_to_fill": walk["videos_to_fill"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--clips", type=int, default=100, help="clips per video")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    print(json.dumps(asyncio.run(_run(args)), indent=2))


if __name__ == "__main__":
    main()
