"""Imported published models served by the encoder over real gRPC: text, image and video queries
match the reference library that built them, and a still clip keeps its image's embedding."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from services.media.frames import decode_image, to_model_input
from services.model.importers import import_model
from tests.procs import ServiceProcess
from tests.published_models import BUILDERS, SENTENCES, Published, photo_paths, photos
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc

MIN_COSINE = 0.9999
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def served(request, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Published, encoder_pb2_grpc.EncoderServiceStub]]:
    root = tmp_path_factory.mktemp(request.param)
    published = BUILDERS[request.param](root / "source")
    import_model(root / "model", **published.import_kwargs)
    proc = ServiceProcess("services.encoder", {"VIDSEARCH_ENCODER_CHECKPOINT": str(root / "model")},
                          root / "encoder.log", env_prefix="VIDSEARCH_ENCODER").start()
    try:
        proc.wait_serving(timeout=120)
        with grpc.insecure_channel(proc.address) as channel:
            yield published, encoder_pb2_grpc.EncoderServiceStub(channel)
    finally:
        proc.stop()


def _rows(reply) -> np.ndarray:
    return np.array([list(v.values) for v in reply.embeddings], dtype=np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_text_and_image_queries_match_the_reference_library(served) -> None:
    published, stub = served
    texts = _rows(stub.EncodeText(encoder_pb2.EncodeTextRequest(texts=list(SENTENCES)), timeout=60))
    assert _cosines(texts, published.texts(list(SENTENCES))).min() >= MIN_COSINE
    files = [p.read_bytes() for p in photo_paths()]
    images = _rows(stub.EncodeImages(encoder_pb2.EncodeImagesRequest(images=files), timeout=120))
    assert _cosines(images, published.images(photos())).min() >= MIN_COSINE


def test_a_still_clip_is_served_with_the_image_embedding(served) -> None:
    published, stub = served
    info = stub.Info(encoder_pb2.InfoRequest(), timeout=10)
    assert info.temporal == "meanP"
    # Clients that sample frames themselves (ingest) crop as Info says the model does.
    assert info.crop == ("floor" if published.name == "hf-clipmodel" else "round")
    size, count = info.image_size, info.frames_per_clip
    frame = to_model_input(decode_image(photo_paths()[0].read_bytes()), size, crop=info.crop)
    still = np.repeat(frame[None], count, axis=0)
    clip = encoder_pb2.VideoClip(frames=encoder_pb2.RawFrames(count=count, height=size, width=size,
                                                               rgb=still.tobytes()))
    video = _rows(stub.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[clip]), timeout=60))
    assert _cosines(video, published.images(photos()[:1]))[0] >= MIN_COSINE
