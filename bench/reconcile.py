"""A migration's reconcile pass on the driver's side: memory and time of comparing two generations.

``python -m bench.reconcile --json`` starts five index shards (``python -m services.index``, two for the
source generation, three for the target), writes ``--videos`` videos of ``--clips`` clips into the source and
all but every tenth video into the target, then finds the videos to fill twice, side by side: by
reading every clip id of both generations into memory (``inventory``, how passes worked before) and by
walking both in clip-id order (``clips_in_order`` + ``differences``, how they work now). It prints
the driver's peak traced memory and the seconds of each, and their ratios. The shards run in their own
processes, so only the driver's allocations are traced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from services.common.index_client import ShardSet
from services.index.migrate import clips_in_order, differences, inventory
from services.local.processes import ServiceProcess
from vidsearch.common.v1 import common_pb2

DIM = 8


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


async def _run(args: argparse.Namespace, root: Path) -> dict:
    shards = [ServiceProcess("services.index", {"VIDSEARCH_INDEX_DATA_DIR": str(root / f"shard-{i}"),
                                                "VIDSEARCH_INDEX_SHARD_NAME": f"shard-{i}"},
                             root / f"shard-{i}.log", env_prefix="VIDSEARCH_INDEX").start() for i in range(5)]
    try:
        for shard in shards:
            await asyncio.to_thread(shard.wait_serving, 120)
        addresses = [s.address for s in shards]
        source, target = ShardSet(addresses[:2], timeout_s=120), ShardSet(addresses[2:], timeout_s=120)
        try:
            await _load(source, target, args.videos, args.clips)
            walk = await _measure(_by_walk, source, target)
            whole = await _measure(_by_inventory, source, target)
        finally:
            await source.close()
            await target.close()
    finally:
        for shard in shards:
            shard.stop()
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        print(json.dumps(asyncio.run(_run(args, Path(tmp))), indent=2))


if __name__ == "__main__":
    main()
