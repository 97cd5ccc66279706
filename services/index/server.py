"""Index shard process: settings, start-up (open the shard, rebuild what is missing, catch a replica up
from its peers) and serving."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import socket
from pathlib import Path

from services.common import logs, settings
from services.common.index_client import REPLICA_SEPARATOR, ShardClient
from services.common.readiness import Pending
from services.common.server import Registration, ServiceHooks, serve
from services.common.settings import setting
from services.index.catchup import CatchUp, catch_up, fences_at_open
from services.index.engines import ENGINES
from services.index.metrics import export_shard
from services.index.servicer import IndexServicer
from services.index.shard import ShardIndex
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """Settings of one shard, from VIDSEARCH_INDEX_* variables."""

    data_dir: Path = setting(doc="Directory of the shard's store (clips.sqlite3) and sealed segments.")
    shard_name: str = setting(
        "", "Name of this shard; empty: from the pod's ordinal in a StatefulSet (HOSTNAME index-3 -> shard-3).")
    seal_threshold: int = setting(
        50_000, "Rows in the exactly-searched fresh buffer before it is built into a segment.")
    segment_engine: str = setting(
        "ivf", "What proposes a sealed segment's candidates: ivf (faiss k-means lists of about 256 rows as 8-bit "
        "codes; query cost grows gently with the segment's rows) or annoy (forest on annoy_dim projected dimensions). "
        "Segments of the other engine stay searchable; compaction rebuilds them with this one.")
    recall_target: float = setting(0.95, "Recall the per-segment search_k is calibrated for at build time.")
    annoy_dim: int = setting(
        128, "Annoy engine only: dimensions a segment's Annoy forest is built on (top principal axes); candidates "
        "are re-ranked exactly against the full vectors. Lower: smaller forest and faster nodes, more re-ranking.")
    max_segment_rows: int = setting(
        1_000_000, "Compaction never merges segments beyond this many live rows (or seal_threshold, if larger).")
    merge_factor: int = setting(
        4, "After each seal, this many segments of one size tier are merged into one (up to max_segment_rows), so "
        "a shard keeps a few large segments: a query visits every segment, and 4 segments of 50,000 rows answered "
        "4.4 times slower than one of 200,000 (bench.index). 0: merge only on Compact.")
    max_store_bytes: int = setting(
        0, "Disk quota of the clip store in bytes (0: none). Past it, upserts get RESOURCE_EXHAUSTED and nothing "
        "is written, as on a full disk; deletes still free space.")
    peers: str = setting(
        "", "Addresses of the other replicas of this shard in replica order, separated by |. A replica with "
        "peers takes writes but reports SERVING only once it has caught up from a SERVING peer "
        "(services/index/catchup.py). Empty: no replicas.")
    replica: int = setting(
        0, "This replica's number within its shard. When no peer is SERVING (the whole shard restarted), the "
        "lowest-numbered replica that opened with clips (replica 0 if none did) serves without catching up "
        "and the others catch up from it.")
    alone_after_s: float = setting(
        10.0, "How long replica 0, opened with clips, looks for a SERVING peer, while some peer does not "
        "answer, before it serves without catching up.")
    catchup_page_size: int = setting(1000, "Clips per Scan page read from the peer while catching up.")
    catchup_range_clips: int = setting(
        0, "Clips per id range a replica catching up compares with its peer by digest; only ranges that differ "
        "are read from the peer. 0: the shard's clips / 10,000 (at least 1), the finest one Digest request takes.")
    server: settings.ServerSettings = dataclasses.field(default_factory=settings.ServerSettings)

    def __post_init__(self) -> None:
        if self.seal_threshold < 1:
            raise settings.SettingsError(f"seal_threshold must be >= 1, got {self.seal_threshold}")
        if not 0.0 < self.recall_target <= 1.0:
            raise settings.SettingsError(f"recall_target must be in (0, 1], got {self.recall_target}")
        if self.segment_engine not in ENGINES:
            raise settings.SettingsError(
                f"segment_engine must be one of {sorted(ENGINES)}, got {self.segment_engine!r}")
        if self.annoy_dim < 1:
            raise settings.SettingsError(f"annoy_dim must be >= 1, got {self.annoy_dim}")
        if self.max_segment_rows < 1:
            raise settings.SettingsError(f"max_segment_rows must be >= 1, got {self.max_segment_rows}")
        if self.merge_factor == 1 or self.merge_factor < 0:
            raise settings.SettingsError(f"merge_factor must be 0 (off) or >= 2, got {self.merge_factor}")
        if self.max_store_bytes < 0:
            raise settings.SettingsError(f"max_store_bytes must be >= 0, got {self.max_store_bytes}")
        if self.peers.strip() and not all(self.peer_addresses):
            raise settings.SettingsError(f"peers has an empty address: {self.peers!r}")
        if self.replica < 0:
            raise settings.SettingsError(f"replica must be >= 0, got {self.replica}")
        if not 1 <= self.catchup_page_size <= 10_000:
            raise settings.SettingsError(f"catchup_page_size must be 1..10000, got {self.catchup_page_size}")
        if self.catchup_range_clips < 0:
            raise settings.SettingsError(f"catchup_range_clips must be >= 0, got {self.catchup_range_clips}")

    @property
    def peer_addresses(self) -> list[str]:
        return [a.strip() for a in self.peers.split(REPLICA_SEPARATOR)] if self.peers.strip() else []


def shard_name_from_host(hostname: str) -> str:
    """"shard-N" from a StatefulSet pod name ending in "-N"; "shard-0" otherwise."""
    match = re.search(r"-(\d+)$", hostname)
    return f"shard-{int(match.group(1))}" if match else "shard-0"


async def run(cfg: IndexSettings) -> None:
    name = cfg.shard_name or shard_name_from_host(os.environ.get("HOSTNAME", socket.gethostname()))
    shard_slot: Pending[ShardIndex] = Pending(f"index {name} is still opening")
    # Created before the shard opens: every write it takes is recorded from its first one.
    catchup = CatchUp(name) if cfg.peer_addresses else None
    servicer = IndexServicer(name, shard_slot, catchup)

    async def start() -> None:
        shard = await asyncio.to_thread(
            ShardIndex, cfg.data_dir, seal_threshold=cfg.seal_threshold, segment_engine=cfg.segment_engine,
            recall_target=cfg.recall_target,
            annoy_dim=cfg.annoy_dim, max_segment_rows=cfg.max_segment_rows, merge_factor=cfg.merge_factor,
            max_store_bytes=cfg.max_store_bytes or None,
        )

        def take_requests() -> None:
            shard_slot.set(shard)
            log.info("shard %s open: %s", name, shard.stats())
            export_shard(name, shard.stats)

        if catchup is None:
            take_requests()
            return
        catchup.live_at_open = shard.stats()["live"]
        peers = ShardClient(f"{name} peers", REPLICA_SEPARATOR.join(cfg.peer_addresses), timeout_s=60)
        try:
            # Before the first write is taken: a fenced job's late upsert must not land here first.
            if fenced := await fences_at_open(shard, peers):
                log.info("shard %s: fenced %d writers its peers had fenced", name, fenced)
            take_requests()
            await catch_up(name, shard, catchup, peers, replica=cfg.replica, alone_after_s=cfg.alone_after_s,
                           page_size=cfg.catchup_page_size, range_clips=cfg.catchup_range_clips)
        finally:
            await peers.close()

    async def stop() -> None:
        shard = shard_slot.take()
        if shard is not None:
            await asyncio.to_thread(shard.close)

    registration = Registration(
        index_pb2_grpc.add_IndexServiceServicer_to_server,
        servicer,
        index_pb2.DESCRIPTOR.services_by_name["IndexService"].full_name,
    )
    await serve(cfg.server, [registration], ServiceHooks(start=start, stop=stop))


def main() -> None:
    logs.configure("index")
    cfg = settings.load_or_exit(IndexSettings, "VIDSEARCH_INDEX")
    asyncio.run(run(cfg))
