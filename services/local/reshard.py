"""``vidsearch reshard --shards N``: move the running local stack's index onto N shards, online.

The command asks the ``vidsearch up`` of the data directory (``services.local.requests``), which
starts the new shards, copies every video's clips to their new placement while searches and ingest
go on (``services.index.migrate``), switches, and stops the old shards. Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from services.index.migrate import MigrationOptions, copy_factory
from services.local import requests
from services.local.migrations import migrate_stack
from services.local.stack import LocalStack

KIND = "reshard"


def handle(stack: LocalStack, request: dict[str, Any], report: requests.Report) -> dict[str, Any]:
    """Carries out a reshard request on the running stack."""
    n_shards = int(request["shards"])
    replicas = request.get("replicas")
    options = MigrationOptions(**request.get("options", {}))
    before = stack.active
    result = asyncio.run(migrate_stack(stack, checkpoint=None, n_shards=n_shards,
                                       replicas=int(replicas) if replicas else None, make_filler=copy_factory,
                                       options=options, progress=lambda p: report(p.to_json())))
    return {"from": before, "generation": stack.active, "shards": stack.shard_targets.split(","),
            "clips_written": result.progress.clips_written, "passes": result.progress.passes,
            "seconds": round(result.seconds, 1), "notes": result.notes}


requests.HANDLERS[KIND] = handle


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reshard", help="move the index of a running `vidsearch up` onto N shards, online")
    p.add_argument("--shards", type=int, required=True, help="shards of the new layout")
    p.add_argument("--replicas", type=int, default=0, help="copies of each new shard (default: as now)")
    p.add_argument("--data-dir", type=Path, default=Path(".vidsearch"), help="the data directory `up` runs on")
    p.add_argument("--grace-seconds", type=float, default=MigrationOptions.grace_s,
                   help="after the switch, how long searches still on the old shards may take")
    p.set_defaults(run=run)


def print_status(status: dict[str, Any]) -> None:
    """One line per status change, as ``vidsearch reshard`` and ``vidsearch reindex`` print them."""
    progress = status.get("progress") or {}
    if status["state"] == "running" and progress:
        print(f"{progress.get('phase', '')}: pass {progress.get('passes', 0)}, "
              f"{progress.get('videos_done', 0)}/{progress.get('videos_total', 0)} videos, "
              f"{progress.get('clips_written', 0)} clips written. {progress.get('message', '')}", flush=True)
    elif status["state"] == "queued":
        print("queued: `vidsearch up` carries out another request first", flush=True)
    elif status["state"] == "succeeded":
        print(f"done: {status.get('result')}", flush=True)
    elif status["state"] == "failed":
        print(f"failed: {status.get('error')}", flush=True)


def run(args) -> int:
    if args.shards < 1:
        print("--shards must be at least 1")
        return 2
    options = dataclasses.asdict(MigrationOptions(grace_s=args.grace_seconds))
    request_id = requests.submit(args.data_dir, KIND, shards=args.shards, replicas=args.replicas or None,
                                 options=options)
    print(f"request {request_id} sent to the `vidsearch up` on {args.data_dir}", flush=True)
    final = requests.follow(args.data_dir, request_id, print_status)
    return 0 if final["state"] == "succeeded" else 1
