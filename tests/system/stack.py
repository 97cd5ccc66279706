"""The system tests' view of a running local stack: clients of every service, health, the corpus.

The stack itself is `services.local.stack.LocalStack`; ``conftest.py`` starts one per session.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis

from services.common.clip_ids import clip_id_for
from services.common.shards import shard_for_video
from services.ingest.segmenting import fixed_windows
from services.local.stack import LocalStack
from tests.procs import health_status
from vidsearch.encoder.v1 import encoder_pb2_grpc
from vidsearch.gateway.v1 import gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

N_SHARDS = 4
#: Small limits, so the bad-input corpus can go past them without sending 48 MiB.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_QUERY_VIDEO_BYTES = 2 * 1024 * 1024
CORPUS_WINDOW_S = 2.0


@dataclass
class SystemStack:
    """The running stack, its video library (the only directory ingest may read) and the seed corpus."""

    stack: LocalStack
    library: Path
    model_id: str
    #: video id -> its clip ids, two videos per shard.
    videos: dict[str, list[str]]
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)
    _redis: redis.Redis | None = None

    def channel(self, address: str) -> grpc.Channel:
        """One channel per address for the whole session (a restarted process keeps its port)."""
        if address not in self._channels:
            self._channels[address] = grpc.insecure_channel(address)
        return self._channels[address]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        if self._redis is not None:
            self._redis.close()

    @property
    def clip_ids(self) -> list[str]:
        return [c for clips in self.videos.values() for c in clips]

    def shard_of(self, video_id: str) -> int:
        return shard_for_video(video_id, len(self.stack.shards))

    def index(self, i: int) -> index_pb2_grpc.IndexServiceStub:
        return index_pb2_grpc.IndexServiceStub(self.channel(self.stack.shards[i].address))

    def ingest_api(self, address: str | None = None) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(self.channel(address or self.stack.ingest.address))

    def gateway(self) -> gateway_pb2_grpc.SearchServiceStub:
        return gateway_pb2_grpc.SearchServiceStub(self.channel(self.stack.gateway.address))

    def encoder(self) -> encoder_pb2_grpc.EncoderServiceStub:
        return encoder_pb2_grpc.EncoderServiceStub(self.channel(self.stack.encoder.address))

    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.stack.redis_url, decode_responses=True)
        return self._redis

    def serving(self) -> dict[str, int | None]:
        """The health status of every service process, by log name."""
        return {p.log_path.stem: health_status(p.address) for p in self.stack.processes}


def ids_on_each_shard(prefix: str, per_shard: int, n_shards: int = N_SHARDS) -> list[str]:
    """Video ids ``<prefix>-<n>``, the first ``per_shard`` that land on each shard, shard by shard."""
    found: dict[int, list[str]] = {s: [] for s in range(n_shards)}
    for n in itertools.count():
        video_id = f"{prefix}-{n}"
        shard = shard_for_video(video_id, n_shards)
        if len(found[shard]) < per_shard:
            found[shard].append(video_id)
        if all(len(v) == per_shard for v in found.values()):
            return [v for s in range(n_shards) for v in found[s]]
    raise AssertionError("unreachable")


def ingest_and_wait(api: ingest_pb2_grpc.IngestServiceStub, path: Path, video_id: str, window_s: float,
                    timeout_s: float = 300) -> ingest_pb2.Job:
    reply = api.SubmitVideo(ingest_pb2.SubmitVideoRequest(
        uri=str(path), video_id=video_id, segment=ingest_pb2.SegmentOptions(window_seconds=window_s)), timeout=30)
    return [u.job for u in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=timeout_s)][-1]


def expected_clip_ids(video_id: str, duration_s: float, window_s: float) -> list[str]:
    """The clip ids ingest makes for a video with the service's default min_clip_seconds."""
    return [clip_id_for(video_id, w.start_s) for w in fixed_windows(duration_s, window_s)]
