"""Online resharding: how long ``vidsearch reshard`` takes and what searches see meanwhile.

``python -m bench.reshard --json`` starts the local stack (separate processes, a real redis-server)
with the tiny model and ``--from`` shards, loads ``--videos`` videos of ``--clips`` clips each into
them directly, then runs searches from ``--clients`` closed-loop clients: for ``--seconds`` before,
during the migration to ``--to`` shards (the same ``migrate_stack`` that ``vidsearch reshard`` runs),
and after it. It prints the migration's duration, clips copied per second, and per phase the
searches, errors, partial results and p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.soak import QueryMix, SearchLoad, summarise
from services.common.index_client import ShardSet
from services.index.migrate import MigrationOptions, copy_factory
from services.local.migrations import migrate_stack
from services.local.stack import LocalStack, StackConfig, encoder_model_id
from vidsearch.common.v1 import common_pb2


async def _load(stack: LocalStack, videos: int, clips: int, dim: int, model_id: str) -> list[str]:
    rng = np.random.default_rng(0)
    shards = ShardSet(stack.shard_targets.split(","), timeout_s=120)
    ids: list[str] = []
    try:
        for v in range(videos):
            video = f"bench-{v}"
            vectors = rng.normal(size=(clips, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            records = [common_pb2.ClipRecord(
                clip_id=f"{video}:{i * 20000:09d}", video_id=video, start_seconds=i * 20.0, end_seconds=i * 20.0 + 20,
                vector=common_pb2.Vector(values=vec), model_id=model_id) for i, vec in enumerate(vectors.tolist())]
            await shards.for_video(video).upsert(records)
            ids += [r.clip_id for r in records]
    finally:
        await shards.close()
    return ids


def run(args: argparse.Namespace) -> dict:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(build_model(tiny()), Path(tmp) / "tiny")
        config = StackConfig(data_dir=Path(tmp) / "stack", checkpoint=checkpoint, n_shards=args.from_shards,
                             with_ingest=False)
        with LocalStack(config) as stack:
            model_id = encoder_model_id(stack.encoder.address)
            clip_ids = asyncio.run(_load(stack, args.videos, args.clips, tiny().embed_dim, model_id))
            mix = QueryMix(("text", "clip"), clip_ids=clip_ids, text_pool=64)
            with SearchLoad(stack.gateway.address, mix, clients=args.clients, timeout_s=5) as load:
                time.sleep(args.seconds)
                t0 = time.monotonic()
                report = asyncio.run(migrate_stack(
                    stack, checkpoint=None, n_shards=args.to_shards, replicas=None, make_filler=copy_factory,
                    options=MigrationOptions(concurrency=args.concurrency, grace_s=args.grace_seconds)))
                t1 = time.monotonic()
                time.sleep(args.seconds)
                t2 = time.monotonic()
            calls = load.calls()
    before = [c for c in calls if c.started < t0]
    during = [c for c in calls if t0 <= c.started < t1]
    after = [c for c in calls if t1 <= c.started < t2]
    return {
        "from_shards": args.from_shards, "to_shards": args.to_shards, "clips": len(clip_ids),
        "migration_s": round(report.seconds, 1), "with_stop_s": round(t1 - t0, 1),
        "grace_s": args.grace_seconds,
        "clips_copied_per_s": round(report.progress.clips_written / max(report.seconds - args.grace_seconds, 1e-9)),
        "passes": {"before_switch": report.pre_switch_passes, "after_switch": report.post_switch_passes},
        "searches": {"before": summarise(before, t0 - before[0].started if before else 1.0),
                     "during": summarise(during, t1 - t0), "after": summarise(after, t2 - t1)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--from", dest="from_shards", type=int, default=2)
    parser.add_argument("--to", dest="to_shards", type=int, default=3)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--clips", type=int, default=90, help="clips per video")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=MigrationOptions.concurrency)
    parser.add_argument("--grace-seconds", type=float, default=MigrationOptions.grace_s)
    parser.add_argument("--seconds", type=float, default=10.0, help="search load before and after the migration")
    args = parser.parse_args(argv)
    result = run(args)
    for phase in result["searches"].values():
        phase.pop("by_kind", None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
