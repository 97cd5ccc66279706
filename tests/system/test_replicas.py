"""Replicas on the local stack (`vidsearch up --replicas 2`): one replica of every shard SIGKILLed
while eight clients search costs no search and makes none partial; writes acknowledged by the
surviving replicas alone meanwhile (write quorum 1) are caught up by the restarted ones before they
serve, so each then holds the same clips as its peer (row count and content checksum)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from bench.soak import QueryMix, SearchLoad
from services.common.clip_ids import video_of_clip
from services.common.index_client import ShardSet
from services.common.shards import shard_for_video
from services.local.stack import LocalStack, StackConfig
from tests.system.test_faults import describe
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

pytestmark = pytest.mark.slow

DIM = 64  # the tiny model's embedding size


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, system_checkpoint: Path) -> Iterator[LocalStack]:
    config = StackConfig(data_dir=tmp_path_factory.mktemp("replicas"), checkpoint=system_checkpoint, n_shards=2,
                         replicas=2, with_ingest=False)
    with LocalStack(config) as stack:
        yield stack


def _corpus(stack: LocalStack, model_id: str, videos: range = range(8), write_quorum: int = 0) -> list[str]:
    """Clips written through the services' own shard client: acknowledged by ``write_quorum`` replicas
    of their shard (0: every replica)."""
    rng = np.random.default_rng([7, videos.start])

    async def write() -> list[str]:
        shards = ShardSet(stack.shard_targets.split(","), timeout_s=30, write_quorum=write_quorum)
        ids = []
        try:
            for v in videos:
                video = f"replicated-{v}"
                vectors = rng.normal(size=(20, DIM)).astype(np.float32)
                clips = [common_pb2.ClipRecord(
                    clip_id=f"{video}:{i * 1000:09d}", video_id=video, start_seconds=float(i), end_seconds=i + 1.0,
                    vector=common_pb2.Vector(values=vec), model_id=model_id) for i, vec in enumerate(vectors.tolist())]
                assert await shards.for_video(video).upsert(clips) == 20
                ids += [c.clip_id for c in clips]
        finally:
            await shards.close()
        return ids

    return asyncio.run(write())


def _delete_video(stack: LocalStack, video: str) -> None:
    """Deletes a video acknowledged by one replica of its shard (the other one is down)."""
    async def delete() -> None:
        shards = ShardSet(stack.shard_targets.split(","), timeout_s=30, write_quorum=1)
        try:
            assert await shards.for_video(video).delete(video_ids=[video]) == 20
        finally:
            await shards.close()

    asyncio.run(delete())


def _stats(address: str) -> index_pb2.StatsResponse:
    with grpc.insecure_channel(address) as channel:
        return index_pb2_grpc.IndexServiceStub(channel).Stats(index_pb2.StatsRequest(content_checksum=True),
                                                              timeout=30)


def test_one_replica_of_every_shard_killed_under_search_load(replicated: LocalStack) -> None:
    stack = replicated
    with grpc.insecure_channel(stack.gateway.address) as channel:
        model_id = gateway_pb2_grpc.SearchServiceStub(channel).Search(
            gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="probe"), top_k=1), timeout=60).model_id
    clip_ids = _corpus(stack, model_id)
    victims = [(0, 0), (1, 1)]  # (shard, replica): the first replica of one shard, the second of the other
    deleted = ("replicated-0", "replicated-1")  # while the victims are down; never searched by clip
    mix = QueryMix(("text", "clip"), clip_ids=[c for c in clip_ids if video_of_clip(c) not in deleted], text_pool=32)
    with SearchLoad(stack.gateway.address, mix, clients=8, timeout_s=5) as load:
        load.wait_for(24)
        for shard, replica in victims:
            stack.replicas[shard][replica].kill(signal.SIGKILL)
        down = time.monotonic()
        # Acknowledged by the surviving replica of each shard only: the restarted ones must catch up.
        clip_ids += _corpus(stack, model_id, range(8, 12), write_quorum=1)
        for video in deleted:
            _delete_video(stack, video)
        clip_ids = [c for c in clip_ids if video_of_clip(c) not in deleted]
        load.wait_for(96, since=down, timeout_s=120)
        for shard, replica in victims:
            stack.restart_shard(shard, replica=replica)
        back = time.monotonic()
        load.wait_for(48, since=back + 3.0, timeout_s=120)  # after reconnect backoff and breaker probe
    calls = load.calls()
    failed = [c for c in calls if not c.ok]
    assert not failed, f"{len(failed)} of {len(calls)} searches failed: {describe(failed)}"
    partial = [c for c in calls if c.partial]
    assert not partial, f"{len(partial)} of {len(calls)} searches were partial: {describe(partial)}"
    assert len([c for c in calls if down <= c.started < back]) >= 96
    # The restarted replicas serve the same clips as their peers: every acknowledged write survived,
    # those made while they were down included.
    for shard, replica in victims:
        mine = [c for c in clip_ids if shard_for_video(video_of_clip(c), len(stack.replicas)) == shard]
        restarted = stack.replicas[shard][replica]
        mine_stats, peer_stats = _stats(restarted.address), _stats(stack.replicas[shard][1 - replica].address)
        assert mine_stats.live == peer_stats.live == len(mine) > 0
        assert mine_stats.checksum == peer_stats.checksum
        assert "caught up" in restarted.log_tail(400)
        with grpc.insecure_channel(restarted.address) as channel:
            got = index_pb2_grpc.IndexServiceStub(channel).Get(index_pb2.GetRequest(clip_ids=mine), timeout=30)
        assert not got.missing_ids
