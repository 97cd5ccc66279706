"""The shard's Prometheus metrics: its size, read from ``ShardIndex.stats`` at every scrape, search
time per part (sealed segment or exactly scanned buffer), and a replica's catch-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

PART_SEARCH = Histogram(
    "vidsearch_index_part_search_seconds",
    "Search time of one query in one part of a shard: a sealed segment (IVF lists or Annoy forest), or a "
    "buffer of fresh rows (and segments small enough to scan exactly) searched exactly.",
    ["part"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)

CATCHING_UP = Gauge(
    "vidsearch_index_catching_up",
    "1 while this replica catches up from a peer (or waits for one to serve): NOT_SERVING, taking writes.",
    ["shard"],
)
CATCHUP_CLIPS = Counter(
    "vidsearch_index_catchup_clips",
    "Clips a replica's catch-up copied from its peer, deleted (the peer no longer has them), or left to "
    "the live writes that touched them meanwhile.",
    ["shard", "action"],
)
CATCHUP_RANGES = Counter(
    "vidsearch_index_catchup_ranges",
    "Clip-id ranges a replica's catch-up compared with its peer by digest: equal (not read from the peer) or "
    "differing (reconciled).",
    ["shard", "outcome"],
)

#: (metric name, help, key of ShardIndex.stats())
_GAUGES = (
    ("vidsearch_index_vectors", "Live vectors (clips) in the shard.", "live"),
    ("vidsearch_index_tombstoned_rows", "Deleted or replaced rows still held until compaction.", "tombstoned"),
    ("vidsearch_index_segments", "Sealed segments.", "segments"),
    ("vidsearch_index_segments_building", "Buffers being built into segments.", "building"),
    ("vidsearch_index_fresh_rows", "Live rows searched exactly (fresh buffer and buffers being built).", "fresh"),
    ("vidsearch_index_disk_bytes", "Bytes of the clip store and segments on disk.", "bytes_on_disk"),
)


class ShardCollector(Collector):
    """One ``stats()`` call per scrape, so the gauges always agree with each other."""

    def __init__(self, shard_name: str, stats: Callable[[], dict]) -> None:
        self.shard_name = shard_name
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        for name, help_text, key in _GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["shard"])
            family.add_metric([self.shard_name], float(stats[key]))
            yield family


def export_shard(shard_name: str, stats: Callable[[], dict]) -> ShardCollector:
    collector = ShardCollector(shard_name, stats)
    REGISTRY.register(collector)
    return collector
