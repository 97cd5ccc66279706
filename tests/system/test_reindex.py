"""Re-indexing a running local stack to a second model, online: `vidsearch reindex --checkpoint`
through the request channel of `vidsearch up`, while a client searches without pause.

The stack is this module's own (the session's shared one must keep its model): two index shards,
the tiny-model encoder, ingest with a worker, the gateway and a real redis-server, each its own
process on loopback, holding real videos ingested (by path and by upload) through the real pipeline.
The second model differs in frames per clip and embedding size, and so in model id.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from services import cli
from services.common.shards import shard_for_video
from services.local.requests import RequestInbox
from services.local.stack import LocalStack, StackConfig
from tests.media import make_video
from tests.system.stack import expected_clip_ids, ingest_and_wait
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.slow

QUERIES = ("a red ball moves right", "스튜디오에서 전화를 받는 남자", "colour bars", "뉴스 앵커")
WINDOW_S = 2.0


@dataclass
class Searches:
    """Text searches through the gateway, one after another on a thread, until stopped."""

    address: str
    replies: list[gateway_pb2.SearchResponse] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            gateway = gateway_pb2_grpc.SearchServiceStub(channel)
            n = 0
            while not self.stop.is_set():
                query = gateway_pb2.TextQuery(text=f"{QUERIES[n % len(QUERIES)]} {n}")  # no cache hits
                try:
                    reply = gateway.Search(gateway_pb2.SearchRequest(text=query, top_k=10), timeout=10)
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                else:
                    if reply.partial:
                        self.failures.append(f"partial: shards {list(reply.failed_shards)} failed")
                    self.replies.append(reply)
                n += 1


def _model_id(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        return encoder_pb2_grpc.EncoderServiceStub(channel).Info(encoder_pb2.InfoRequest(), timeout=30).model_id


def _clips(addresses: list[str]) -> list[tuple[str, str, int]]:
    """(clip id, model id, shard number) of every clip of a generation, read from each shard."""
    found = []
    for i, address in enumerate(addresses):
        with grpc.insecure_channel(address.split("|")[0]) as channel:
            for page in index_pb2_grpc.IndexServiceStub(channel).Scan(index_pb2.ScanRequest(), timeout=60):
                found += [(c.clip_id, c.model_id, i) for c in page.clips]
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Path, Path]]:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    root = tmp_path_factory.mktemp("reindex")
    default = save_checkpoint(build_model(tiny()), root / "models" / "default")
    second = save_checkpoint(build_model(dataclasses.replace(tiny(), num_frames=8, embed_dim=32)),
                             root / "models" / "second")
    library = root / "library"
    library.mkdir()
    config = StackConfig(data_dir=root / "stack", checkpoint=default, n_shards=2,
                         extra_env={"VIDSEARCH_INGEST_ALLOWED_ROOTS": str(library)})
    with LocalStack(config) as local:
        ingest = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(local.ingest.address))
        for n, pattern in enumerate(("testsrc2", "smptebars", "rgbtestsrc")):
            video = make_video(library / f"v{n}.mp4", seconds=6 + 2 * n, fps=5, size=(64, 64), pattern=pattern)
            job = ingest_and_wait(ingest, video, f"video-{n}", WINDOW_S)
            assert job.state == ingest_pb2.JOB_STATE_SUCCEEDED, job.error
        uploaded = make_video(root / "upload.mp4", seconds=5, fps=5, size=(64, 64), pattern="testsrc")
        header = ingest_pb2.UploadHeader(video_id="uploaded", filename="upload.mp4",
                                         size_bytes=uploaded.stat().st_size,
                                         segment=ingest_pb2.SegmentOptions(window_seconds=WINDOW_S))
        reply = ingest.UploadVideo(iter([ingest_pb2.UploadVideoRequest(header=header),
                                         ingest_pb2.UploadVideoRequest(chunk=uploaded.read_bytes())]), timeout=60)
        final = [u.job for u in ingest.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=120)][-1]
        assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
        yield local, default, second


def _reindex(stack: LocalStack, checkpoint: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`vidsearch reindex` against the stack, whose requests are carried out as `vidsearch up` does."""
    inbox = RequestInbox(stack)
    stop = threading.Event()

    def serve_requests() -> None:
        while not stop.wait(0.2):
            inbox.poll()

    up = threading.Thread(target=serve_requests, daemon=True)
    up.start()
    try:
        code = cli.main(["reindex", "--checkpoint", str(checkpoint), "--data-dir", str(stack.root),
                         "--grace-seconds", "4"])
    finally:
        stop.set()
        up.join()
        inbox.wait()
    return code, capsys.readouterr().out


def test_reindexing_to_the_model_already_served_is_refused(stack, capsys: pytest.CaptureFixture) -> None:
    local, default, _ = stack
    code, out = _reindex(local, default, capsys)
    assert code == 1
    assert f"which the stack already serves (generation {local.active})" in out


def test_reindex_switches_every_search_to_the_new_model_with_none_failing(stack, capsys) -> None:
    local, _, second = stack
    old_model, new_model = _model_id(local.encoder.address), _model_id_of(second)
    old_shards = local.shard_targets.split(",")
    before = _clips(old_shards)
    assert len(before) >= 12 and {m for _, m, _ in before} == {old_model}
    old_processes = [p.proc for p in (*local.shards, local.encoder)]

    # A video ingested while the re-index runs: its job writes whichever generation is active then.
    late = make_video(local.root.parent / "library" / "late.mp4", seconds=6, fps=5, size=(64, 64), pattern="testsrc")
    ingested: list[ingest_pb2.Job] = []

    def ingest_late() -> None:
        time.sleep(3.0)
        ingest = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(local.ingest.address))
        ingested.append(ingest_and_wait(ingest, late, "late", WINDOW_S))

    searches = Searches(local.gateway.address)
    threads = [threading.Thread(target=searches.run, daemon=True), threading.Thread(target=ingest_late, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        code, out = _reindex(local, second, capsys)
        time.sleep(1.0)
    finally:
        searches.stop.set()
        for thread in threads:
            thread.join(timeout=120)

    assert code == 0, out
    # The command prints the phases its 0.5 s poll of the status file sees; a short one may pass unseen.
    assert f"re-indexing to model {new_model}" in out and "done:" in out
    # No search failed, and none mixed models: each reply's hits all come from the model it names.
    assert searches.failures == []
    models = [r.model_id for r in searches.replies]
    for reply in searches.replies:
        assert reply.hits and {h.model_id for h in reply.hits} == {reply.model_id}
    # The switch is one moment: the old model's replies, then only the new model's.
    assert models[0] == old_model and models[-1] == new_model
    switch = models.index(new_model)
    assert set(models[:switch]) == {old_model} and set(models[switch:]) == {new_model}, "searches went back"

    # Every clip of the old generation is in the new one exactly once, re-embedded, on its video's shard;
    # so is every clip of the video ingested meanwhile.
    (job,) = ingested
    assert job.state == ingest_pb2.JOB_STATE_SUCCEEDED, job.error
    late_clips = expected_clip_ids("late", job.video_seconds, WINDOW_S)
    new_shards = local.shard_targets.split(",")
    assert set(new_shards).isdisjoint(old_shards)
    after = _clips(new_shards)
    assert sorted(c for c, _, _ in after) == sorted([c for c, _, _ in before] + late_clips)
    assert {m for _, m, _ in after} == {new_model}
    assert all(shard_for_video(c.rpartition(":")[0], len(new_shards)) == i for c, _, i in after)
    assert _model_id(local.encoder.address) == new_model

    # The old generation's processes are gone.
    for proc in old_processes:
        assert proc.wait(timeout=30) is not None
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)

    # A later `vidsearch up` on the data directory (its --checkpoint still the old model) serves the new one.
    local.stop()
    with LocalStack(local.config) as restarted:
        assert _model_id(restarted.encoder.address) == new_model
        assert sorted(_clips(restarted.shard_targets.split(","))) == sorted(after)
        with grpc.insecure_channel(restarted.gateway.address) as channel:
            reply = gateway_pb2_grpc.SearchServiceStub(channel).Search(
                gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=QUERIES[1]), top_k=5), timeout=30)
        assert reply.model_id == new_model and {h.model_id for h in reply.hits} == {new_model}


def _model_id_of(checkpoint: Path) -> str:
    from services.model.checkpoint import recorded_model_id

    model_id = recorded_model_id(checkpoint)
    assert model_id
    return model_id
