"""``vidsearch migrate``: move searches and ingest onto a new index generation that is already running
(new shards, a new encoder), as a Kubernetes Job does after applying the new workloads.

It registers the new generation in the routing document, fills it (``--mode copy``: clips with
their vectors, for resharding; ``--mode reembed``: re-encoded from their sources, for a new model),
switches, waits for the old generation's readers and writers to finish, and drops it from the
routing; then the operator removes the old workloads. ``vidsearch reshard`` does the same on a
local stack, processes included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from services.common.encoder_client import EncoderClient
from services.common.routing import Generation, Routing, RoutingStore, connect
from services.common.settings import read_secret
from services.index.migrate import FillerFactory, MigrationOptions, copy_factory, migrate
from services.ingest import reembed

#: How each ``--mode`` fills the new generation.
FILLERS: dict[str, FillerFactory] = {"copy": copy_factory, "reembed": reembed.from_environment}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="switch searches and ingest to a new index generation (new shards or model)")
    p.add_argument("--redis-url", required=True, help="the Redis of gateway and ingest (the routing document)")
    p.add_argument("--redis-password-file", type=Path, help="file holding the Redis password (a mounted Secret)")
    p.add_argument("--key-prefix", default="vidsearch", help="key_prefix of gateway and ingest")
    p.add_argument("--from-encoder", help="the active encoder, when no routing document exists yet")
    p.add_argument("--from-shards", help="the active shard list (as index_shards), when no routing document exists")
    p.add_argument("--to-encoder", required=True, help="encoder address of the new generation")
    p.add_argument("--to-shards", required=True,
                   help="shard list of the new generation: shards by comma, replicas by |")
    p.add_argument("--name", help="name of the new generation (default: g<n+1>)")
    p.add_argument("--mode", default="copy", help="copy: clips with their vectors (resharding); reembed: re-encode "
                                                  "each video from its source with the new encoder")
    p.add_argument("--grace-seconds", type=float, default=MigrationOptions.grace_s,
                   help="after the switch: 2 x the readers' routing_poll_s + the longest search deadline")
    p.add_argument("--concurrency", type=int, default=MigrationOptions.concurrency, help="videos filled at once")
    p.set_defaults(run=run)


async def _model_id(address: str) -> str:
    encoder = EncoderClient(address)
    try:
        return (await encoder.info(timeout_s=30)).model_id
    finally:
        await encoder.close()


async def _migrate(args) -> dict[str, object]:
    if args.mode not in FILLERS:
        raise SystemExit(f"unknown --mode {args.mode!r}; known: {', '.join(sorted(FILLERS))}")
    store = RoutingStore(connect(args.redis_url, read_secret(args.redis_password_file)), args.key_prefix)
    try:
        routing = await store.get()
        if routing is None:
            if not (args.from_encoder and args.from_shards):
                raise SystemExit("no routing document yet: give --from-encoder and --from-shards (the settings "
                                 "gateway and ingest run with)")
            shards = tuple(s.strip() for s in args.from_shards.split(","))
            routing = Routing.static(args.from_encoder, shards, await _model_id(args.from_encoder))
        source = routing.current
        if not source.model_id:
            source = Generation(source.name, await _model_id(source.encoder), source.encoder, source.shards)
        shards = tuple(s.strip() for s in args.to_shards.split(","))
        target = Generation(args.name or routing.next_name(), await _model_id(args.to_encoder), args.to_encoder, shards)
        fill, close = FILLERS[args.mode](source, target)
        options = MigrationOptions(grace_s=args.grace_seconds, concurrency=args.concurrency)
        try:
            report = await migrate(store, source, target, fill, options,
                                   lambda p: print(json.dumps(p.to_json()), flush=True))
        finally:
            await close()
        return {"from": source.name, "to": target.name, "routing_version": report.routing.version,
                "clips_written": report.progress.clips_written, "seconds": round(report.seconds, 1),
                "notes": report.notes}
    finally:
        await store.redis.aclose()


def run(args) -> int:
    print(json.dumps({"done": asyncio.run(_migrate(args))}), flush=True)
    return 0
