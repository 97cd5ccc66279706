"""Replica catch-up: the full scan of the peer's shard against comparing range digests and reading only
the ranges that differ.

    python -m bench.catchup --clips 100000 --dim 512 --missed 100 --json

A shard of ``--clips`` clips (videos of 100 clips, unit vectors of ``--dim``) is built once and
copied: one copy is the peer, served by ``python -m services.index`` in its own process (SERVING, no
peers); the peer then takes ``--missed`` single-clip writes at ids spread uniformly over the shard
(40% new clips, 30% overwrites, 30% deletes), the worst case for ranges since nearly every write
falls in a range of its own. Each catch-up is ``services.index.catchup.catch_up`` in this process on
a fresh copy of the shard from before those writes, against the peer over loopback gRPC:

- ``full_scan``: the peer answers Digest UNIMPLEMENTED (as an older version does), so the whole
  shard is scanned, the path every catch-up took before range digests;
- ``digest``: the default ranges (as many as one Digest request takes: 10 clips each at 100,000),
  and ``digest_ranges_of_page`` with ranges of ``--page-size`` clips, one Scan page each, which
  many more clips share with a missed write;
- ``missed_nothing``: a copy equal to the peer (a rolling restart with no write meanwhile).

Each reports its seconds (from the start of catch-up to caught up, start-up of the shard excluded),
the peer's clips scanned, and the ranges compared and reconciled; every copy ends with the peer's
checksum (checked after the timing). Each kind runs ``--rounds`` times, interleaved with the others,
and its fastest round is kept (the machine is shared). ``local_digest_s`` and ``peer_digest_s`` time the two digests
of the default ranges on their own (one after the other; catch-up runs them at once). Ratios are full
scan over digest. The peer and this process share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from services.common.errors import Unsupported
from services.common.index_client import ReplicaClient, ShardClient
from services.index import convert
from services.index.catchup import CatchUp, catch_up, range_bounds
from services.index.records import ClipRecord
from services.index.shard import MAX_DIGEST_BOUNDS, ShardIndex
from services.local.processes import ServiceProcess

MODEL = "bench-catchup"
CLIPS_PER_VIDEO = 100


def _clip(i: int, vector: np.ndarray, caption: str = "") -> ClipRecord:
    video = f"video-{i // CLIPS_PER_VIDEO:06d}"
    return ClipRecord(f"{video}:{i % CLIPS_PER_VIDEO * 10_000:09d}", video, i % CLIPS_PER_VIDEO * 10.0,
                      i % CLIPS_PER_VIDEO * 10.0 + 10, vector, caption=caption, tags=("bench",), model_id=MODEL)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _build(path: Path, clips: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    with ShardIndex(path, model_id=MODEL, dim=dim) as shard:
        for start in range(0, clips, 5000):
            n = min(5000, clips - start)
            shard.upsert([_clip(start + j, v) for j, v in enumerate(_unit(rng, n, dim))])
        shard.wait_for_builds()


async def _miss_writes(address: str, clips: int, missed: int, dim: int) -> None:
    """``missed`` single-clip writes to the peer alone, at ids spread over the whole shard."""
    peer = ReplicaClient("peer", address, timeout_s=120)
    try:
        await _write(peer, clips, missed, dim)
    finally:
        await peer.close()


async def _write(peer: ReplicaClient, clips: int, missed: int, dim: int) -> None:
    rng = np.random.default_rng(1)
    at = rng.choice(clips, size=missed, replace=False)
    vectors = _unit(rng, missed, dim)
    for n, (i, vector) in enumerate(zip(at.tolist(), vectors, strict=True)):
        kind = n % 10
        if kind < 4:  # a new clip next to clip i (an id between i's and the next one's)
            record = _clip(i, vector, caption="new")
            record = ClipRecord(record.clip_id + "-new", record.video_id, record.start_s, record.end_s, vector,
                                caption="new", tags=("bench",), model_id=MODEL)
            await peer.upsert([convert.record_to_proto(record, True)])
        elif kind < 7:  # an overwrite of clip i
            await peer.upsert([convert.record_to_proto(_clip(i, vector, caption="overwritten"), True)])
        else:
            await peer.delete(clip_ids=[_clip(i, vector).clip_id])


class _OlderPeer(ShardClient):
    """The peer as a version without Digest answers it: UNIMPLEMENTED, so catch-up scans it whole."""

    async def digest(self, bounds, timeout_s=None):
        raise Unsupported("the peer answered UNIMPLEMENTED")


async def _catch_up(copy: Path, peer_address: str, page_size: int, older_peer: bool = False,
                    range_clips: int = 0) -> dict:
    shard = await asyncio.to_thread(ShardIndex, copy)
    catchup = CatchUp("bench")
    peers = (_OlderPeer if older_peer else ShardClient)("peer", peer_address, timeout_s=120)
    try:
        t0 = time.perf_counter()
        p = await catch_up("bench", shard, catchup, peers, replica=1, alone_after_s=1, page_size=page_size,
                           range_clips=range_clips)
        seconds = time.perf_counter() - t0
        checksum = (await peers.stats(120, content_checksum=True)).checksum
        assert await asyncio.to_thread(shard.checksum) == checksum, "the copy does not end equal to its peer"
    finally:
        await peers.close()
        shard.close()
    return {"range_clips": None if older_peer else range_clips or "auto", "seconds": round(seconds, 2),
            "peer_clips_scanned": p.scanned, "ranges_compared": p.ranges_compared,
            "ranges_reconciled": p.ranges_reconciled, "copied": p.upserted, "deleted": p.deleted}


async def _digest_times(copy: Path, peer_address: str) -> dict:
    shard = await asyncio.to_thread(ShardIndex, copy)
    peers = ShardClient("peer", peer_address, timeout_s=120)
    try:
        t0 = time.perf_counter()
        clips_per_range = max(1, -(-shard.stats()["live"] // MAX_DIGEST_BOUNDS))  # catch_up's default
        bounds = await asyncio.to_thread(range_bounds, shard, clips_per_range)
        await asyncio.to_thread(shard.digests, bounds)
        t1 = time.perf_counter()
        await peers.digest(bounds, 120)
        t2 = time.perf_counter()
    finally:
        await peers.close()
        shard.close()
    return {"ranges": len(bounds) + 1, "local_digest_s": round(t1 - t0, 2), "peer_digest_s": round(t2 - t1, 2)}


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        _build(root / "base", args.clips, args.dim)
        build_s = time.perf_counter() - t0
        shutil.copytree(root / "base", root / "peer")
        peer = ServiceProcess("services.index", {
            "VIDSEARCH_INDEX_DATA_DIR": str(root / "peer"), "VIDSEARCH_INDEX_SHARD_NAME": "shard-0",
        }, root / "peer.log", env_prefix="VIDSEARCH_INDEX").start()
        try:
            peer.wait_serving(timeout=300)
            asyncio.run(_miss_writes(peer.address, args.clips, args.missed, args.dim))
            best: dict[str, dict] = {}
            for round_ in range(args.rounds):  # interleaved, best round kept: the machine is shared
                for mode, older_peer, range_clips, source in (
                        ("full_scan", True, 0, "base"), ("digest", False, 0, "base"),
                        ("digest_ranges_of_page", False, args.page_size, "base"),
                        ("missed_nothing", False, 0, "digest")):  # the digest copy, caught up: equal to the peer
                    copy = root / f"{mode}-{round_}"
                    shutil.copytree(root / (source if source == "base" else f"{source}-{round_}"), copy)
                    result = asyncio.run(_catch_up(copy, peer.address, args.page_size, older_peer, range_clips))
                    if mode not in best or result["seconds"] < best[mode]["seconds"]:
                        best[mode] = result
                for mode in ("full_scan", "digest_ranges_of_page", "missed_nothing", "digest"):
                    shutil.rmtree(root / f"{mode}-{round_}")
            best["digest"].update(asyncio.run(_digest_times(root / "base", peer.address)))
        finally:
            peer.stop()
    full, digest, of_page, nothing = (best[m] for m in ("full_scan", "digest", "digest_ranges_of_page",
                                                          "missed_nothing"))
    return {
        "clips": args.clips, "dim": args.dim, "missed_writes": args.missed, "rounds": args.rounds,
        "build_s": round(build_s, 1),
        "full_scan": full, "digest": digest, "digest_ranges_of_page": of_page, "missed_nothing": nothing,
        "speedup": round(full["seconds"] / digest["seconds"], 2),
        "speedup_missed_nothing": round(full["seconds"] / nothing["seconds"], 2),
        "speedup_ranges_of_page": round(full["seconds"] / of_page["seconds"], 2),
        "scanned_ratio": round(full["peer_clips_scanned"] / max(digest["peer_clips_scanned"], 1), 2),
        "scanned_ratio_ranges_of_page": round(full["peer_clips_scanned"] / max(of_page["peer_clips_scanned"], 1),
                                              2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--missed", type=int, default=100, help="writes the restarted replica missed")
    parser.add_argument("--page-size", type=int, default=1000, help="clips per Scan page")
    parser.add_argument("--rounds", type=int, default=3, help="catch-ups of each kind; the fastest is kept")
    args = parser.parse_args(argv)
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
