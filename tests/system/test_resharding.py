"""Resharding a running local stack (``vidsearch reshard``): a 2-shard stack holding real ingested
videos moves to 3 shards through ``vidsearch up``'s request channel while eight clients search;
no search fails or comes back partial, every clip ends up exactly once, on its new placement, and
the old generation is gone. A DeleteVideo that races a copy of the same video leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench.soak import QueryMix, SearchLoad
from services import cli
from services.common.index_client import ShardSet
from services.common.routing import Generation, RoutingStore, connect
from services.common.shards import shard_for_video
from services.index.migrate import MigrationOptions, copy_factory
from services.local import requests
from services.local.migrations import migrate_stack
from services.local.stack import LocalStack, StackConfig
from tests.media import make_video
from tests.system.stack import expected_clip_ids, ingest_and_wait
from tests.system.test_faults import describe
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.slow

WINDOW_S = 2.0
#: Short waits: the stack's readers poll the routing every second and searches here take < 5 s.
FAST = MigrationOptions(grace_s=4.0, quiet_s=1.0, max_quiet_wait_s=30.0, timeout_s=30.0)


@pytest.fixture(scope="module")
def resharded(tmp_path_factory: pytest.TempPathFactory, system_checkpoint: Path) -> Iterator[tuple[LocalStack, dict]]:
    root = tmp_path_factory.mktemp("reshard")
    library = root / "library"
    library.mkdir()
    config = StackConfig(data_dir=root / "stack", checkpoint=system_checkpoint, n_shards=2,
                         extra_env={"VIDSEARCH_INGEST_ALLOWED_ROOTS": str(library)})
    with LocalStack(config) as stack:
        videos: dict[str, list[str]] = {}
        sources = [make_video(library / f"v-{p}.mp4", seconds=6, fps=5, size=(64, 64), pattern=p)
                   for p in ("testsrc2", "smptebars", "rgbtestsrc")]
        with grpc.insecure_channel(stack.ingest.address) as channel:
            api = ingest_pb2_grpc.IngestServiceStub(channel)
            for n in range(6):
                video_id = f"reshard-{n}"
                job = ingest_and_wait(api, sources[n % 3], video_id, WINDOW_S)
                assert job.state == ingest_pb2.JOB_STATE_SUCCEEDED, job.error
                videos[video_id] = expected_clip_ids(video_id, job.video_seconds, WINDOW_S)
        yield stack, videos


def _scan(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        pages = index_pb2_grpc.IndexServiceStub(channel).Scan(index_pb2.ScanRequest(), timeout=30)
        return [c.clip_id for page in pages for c in page.clips]


def _clips_by_shard(stack: LocalStack) -> list[list[str]]:
    return [_scan(replicas[0].address) for replicas in stack.replicas]


def _routing(stack: LocalStack):
    async def read():
        store = RoutingStore(connect(stack.redis_url), stack.key_prefix)
        try:
            return await store.get()
        finally:
            await store.redis.aclose()

    return asyncio.run(read())


def test_reshard_two_to_three_under_search_load(resharded: tuple[LocalStack, dict],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    stack, videos = resharded
    all_clips = sorted(c for clips in videos.values() for c in clips)
    old = [p for replicas in stack.replicas for p in replicas]
    old_dirs = [stack.root / f"shard-{i}" for i in range(2)]
    assert sorted(c for shard in _clips_by_shard(stack) for c in shard) == all_clips

    inbox = requests.RequestInbox(stack)  # what `vidsearch up` runs
    stop = threading.Event()

    def up_loop() -> None:
        while not stop.wait(0.2):
            inbox.poll()

    mix = QueryMix(("text", "clip"), clip_ids=all_clips, text_pool=32)
    up = threading.Thread(target=up_loop, daemon=True)
    up.start()
    try:
        with SearchLoad(stack.gateway.address, mix, clients=8, timeout_s=5) as load:
            load.wait_for(24)
            rc = cli.main(["reshard", "--shards", "3", "--data-dir", str(stack.root), "--grace-seconds", "4"])
            load.wait_for(24, since=load.calls()[-1].started)
    finally:
        stop.set()
        up.join(10)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    # The phase that lasts long enough for the command's poll (0.5 s) to see it: the grace after the switch.
    for line in ("draining: pass", "done: {"):
        assert f"\n{line}" in printed, printed
    calls = load.calls()
    failed = [c for c in calls if not c.ok]
    assert not failed, f"{len(failed)} of {len(calls)} searches failed: {describe(failed)}"
    partial = [c for c in calls if c.partial]
    assert not partial, f"{len(partial)} of {len(calls)} searches were partial: {describe(partial)}"

    # Every clip exactly once across the three new shards, each on its placement.
    assert stack.active == "g1" and len(stack.replicas) == 3
    by_shard = _clips_by_shard(stack)
    counts = collections.Counter(c for shard in by_shard for c in shard)
    assert sorted(counts) == all_clips and set(counts.values()) == {1}
    for i, clip_ids in enumerate(by_shard):
        for clip_id in clip_ids:
            assert shard_for_video(clip_id.rsplit(":", 1)[0], 3) == i, clip_id
    # The old generation is gone: out of the routing, its processes stopped, its data deleted.
    routing = _routing(stack)
    assert routing is not None and list(routing.generations) == ["g1"] and routing.active == "g1"
    assert routing.current.shards == tuple(stack.shard_targets.split(","))
    assert all(p.proc.poll() is not None for p in old)
    assert not any(d.exists() for d in old_dirs)
    status = json.loads(next((stack.root / "requests").glob("*.status.json")).read_text())
    assert status["state"] == "succeeded" and status["result"]["clips_written"] >= len(all_clips)


def test_a_delete_racing_a_copy_of_the_same_video_leaves_no_clip(resharded: tuple[LocalStack, dict]) -> None:
    stack, videos = resharded
    victim = sorted(videos)[0]
    delete_answers: list[int] = []

    def racing_factory(source: Generation, target: Generation):
        fill, close = copy_factory(source, target)
        source_shards, target_shards = ShardSet(source.shards), ShardSet(target.shards)

        async def racing(video_id: str) -> list[str]:
            if video_id != victim or delete_answers:
                return list(await fill(video_id))
            # Read the video from the source, let DeleteVideo run to the end, and only then write it.
            pages = [p async for p in source_shards.for_video(video_id).scan(include_vectors=True,
                                                                              video_ids=[video_id])]
            delete_answers.append(await asyncio.to_thread(_delete_video, stack, video_id))
            clips = [c for page in pages for c in page]
            await target_shards.for_video(video_id).upsert(clips)
            return [c.clip_id for c in clips]

        async def close_all() -> None:
            await close()
            await source_shards.close()
            await target_shards.close()

        return racing, close_all

    asyncio.run(migrate_stack(stack, checkpoint=None, n_shards=2, replicas=None, make_filler=racing_factory,
                              options=FAST))
    assert delete_answers and delete_answers[0] > 0
    assert stack.active == "g2" and len(stack.replicas) == 2
    remaining = [c for shard in _clips_by_shard(stack) for c in shard]
    assert not [c for c in remaining if c.startswith(f"{victim}:")]
    expected = sorted(c for v, clips in videos.items() if v != victim for c in clips)
    assert sorted(remaining) == expected
    del videos[victim]


def _delete_video(stack: LocalStack, video_id: str) -> int:
    with grpc.insecure_channel(stack.ingest.address) as channel:
        reply = ingest_pb2_grpc.IngestServiceStub(channel).DeleteVideo(
            ingest_pb2.DeleteVideoRequest(video_id=video_id), timeout=60)
    return reply.clips_deleted


def test_videos_ingested_while_resharding_end_up_once_on_the_new_shards(resharded: tuple[LocalStack, dict]) -> None:
    stack, videos = resharded
    library = Path(stack.config.extra_env["VIDSEARCH_INGEST_ALLOWED_ROOTS"])
    source = make_video(library / "live.mp4", seconds=6, fps=5, size=(64, 64), pattern="testsrc2")
    done = threading.Event()
    ingested: dict[str, list[str]] = {}
    failures: list[str] = []

    def ingest_until_done() -> None:
        with grpc.insecure_channel(stack.ingest.address) as channel:
            api = ingest_pb2_grpc.IngestServiceStub(channel)
            n = 0
            while not done.is_set() or n < 2:
                video_id = f"live-{n}"
                job = ingest_and_wait(api, source, video_id, WINDOW_S)
                if job.state == ingest_pb2.JOB_STATE_SUCCEEDED:
                    ingested[video_id] = expected_clip_ids(video_id, job.video_seconds, WINDOW_S)
                else:
                    failures.append(f"{video_id}: {job.error}")
                n += 1

    writer = threading.Thread(target=ingest_until_done, daemon=True)
    writer.start()
    try:
        asyncio.run(migrate_stack(stack, checkpoint=None, n_shards=3, replicas=None, make_filler=copy_factory,
                                  options=FAST))
    finally:
        done.set()
        writer.join(300)
    assert not failures and len(ingested) >= 2
    videos.update(ingested)
    by_shard = _clips_by_shard(stack)
    counts = collections.Counter(c for shard in by_shard for c in shard)
    assert sorted(counts) == sorted(c for clips in videos.values() for c in clips)
    assert set(counts.values()) == {1}
    for i, clip_ids in enumerate(by_shard):
        assert all(shard_for_video(c.rsplit(":", 1)[0], 3) == i for c in clip_ids)


def test_a_restarted_stack_comes_back_on_the_generation_a_migration_left(resharded: tuple[LocalStack, dict]) -> None:
    stack, videos = resharded
    active, n_shards = stack.active, len(stack.replicas)
    expected = sorted(c for clips in videos.values() for c in clips)
    before = sorted(c for shard in _clips_by_shard(stack) for c in shard)
    stack.stop()
    again = LocalStack(stack.config).start()
    try:
        assert (again.active, len(again.replicas)) == (active, n_shards)
        assert sorted(c for shard in _clips_by_shard(again) for c in shard) == before
        assert before == expected
        routing = _routing(again)  # rewritten with this run's ports
        assert routing is not None and routing.current.shards == tuple(again.shard_targets.split(","))
        with grpc.insecure_channel(again.gateway.address) as channel:
            reply = gateway_pb2_grpc.SearchServiceStub(channel).Search(gateway_pb2.SearchRequest(
                clip_id=before[0], top_k=len(before)), timeout=60)
        assert not reply.partial and len(reply.hits) == len(before) - 1
    finally:
        again.stop()
