"""``vidsearch replicas``: whether the replicas of every shard hold the same clips (live rows and content
checksum), and which are still catching up; exits 1 when any shard's replicas differ or one catches up."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import VidsearchError
from services.common.index_client import ReplicaClient, ShardClient

DEFAULT_STACK = Path(".vidsearch/stack.json")


@dataclass(frozen=True)
class ReplicaReport:
    """One replica as its Stats answered (``error`` when it did not)."""

    shard: int
    target: str
    live: int = 0
    checksum: str = ""
    catching_up: bool = False
    error: str = ""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replicas", help="compare the replicas of every index shard (row counts and content "
                                        "checksums); exit 1 when they differ")
    p.add_argument("--shards", help="shard addresses as gateway and ingest take them: shards by comma, replicas "
                                    "by |; default: the shards of the stack `vidsearch up` runs (--stack)")
    p.add_argument("--stack", type=Path, default=DEFAULT_STACK, help="stack.json written by `vidsearch up`")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per replica (a checksum reads every clip)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(run=run)


async def _report(shard: int, replica: ReplicaClient, timeout_s: float) -> ReplicaReport:
    try:
        stats = await replica.stats(timeout_s, content_checksum=True, serving_or_not=True)
    except VidsearchError as exc:
        return ReplicaReport(shard, replica.target, error=str(exc))
    return ReplicaReport(shard, replica.target, stats.live, stats.checksum, stats.catching_up)


async def compare(shards: list[str], timeout_s: float) -> list[ReplicaReport]:
    """Every replica's live rows and checksum, shard by shard, the replicas of a shard at once."""
    reports: list[ReplicaReport] = []
    for i, target in enumerate(shards):
        client = ShardClient(f"shard-{i}", target, timeout_s=timeout_s)
        try:
            reports += await asyncio.gather(*(_report(i, r, timeout_s) for r in client.replicas))
        finally:
            await client.close()
    return reports


def agree(reports: list[ReplicaReport]) -> bool:
    """Whether every replica answered, none is catching up, and each shard's replicas match."""
    by_shard: dict[int, set[tuple[int, str]]] = {}
    for r in reports:
        if r.error or r.catching_up:
            return False
        by_shard.setdefault(r.shard, set()).add((r.live, r.checksum))
    return all(len(states) == 1 for states in by_shard.values())


def run(args) -> int:
    if args.shards:
        shards = [s.strip() for s in args.shards.split(",") if s.strip()]
    elif args.stack.is_file():
        shards = json.loads(args.stack.read_text())["shards"]
    else:
        print(f"no --shards and no {args.stack}: start the stack with `vidsearch up` or pass --shards")
        return 2
    reports = asyncio.run(compare(shards, args.timeout))
    if args.json:
        print(json.dumps([r.__dict__ for r in reports], indent=2))
    else:
        for r in reports:
            state = r.error or ("catching up" if r.catching_up else f"{r.live} live, checksum {r.checksum[:16]}")
            print(f"shard-{r.shard}  {r.target:<28} {state}")
    same = agree(reports)
    print("replicas agree" if same else "replicas DIFFER (or one is down or still catching up)")
    return 0 if same else 1
