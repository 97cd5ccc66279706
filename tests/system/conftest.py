"""One local stack for the system tests: four index shards, the tiny-model encoder, ingest with one
in-process worker, the gateway and a real redis-server, each its own process on loopback, holding a
small corpus ingested through the real pipeline (two videos on every shard).

The fault tests kill and restart its processes; each one leaves the stack whole again, so the
session shares one start-up (half a minute on two busy cores) instead of paying it per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.local.stack import LocalStack, StackConfig
from tests.media import make_video
from tests.system.stack import (
    CORPUS_WINDOW_S,
    MAX_QUERY_VIDEO_BYTES,
    MAX_UPLOAD_BYTES,
    N_SHARDS,
    SystemStack,
    expected_clip_ids,
    ids_on_each_shard,
    ingest_and_wait,
)
from vidsearch.encoder.v1 import encoder_pb2
from vidsearch.ingest.v1 import ingest_pb2


@pytest.fixture(scope="session")
def system_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    return save_checkpoint(build_model(tiny()), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, system_checkpoint: Path) -> Iterator[SystemStack]:
    root = tmp_path_factory.mktemp("system")
    library = root / "library"
    library.mkdir()
    config = StackConfig(
        data_dir=root / "stack", checkpoint=system_checkpoint, n_shards=N_SHARDS, log_level="INFO",
        extra_env={
            "VIDSEARCH_INGEST_ALLOWED_ROOTS": str(library),
            "VIDSEARCH_INGEST_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            "VIDSEARCH_GATEWAY_MAX_VIDEO_BYTES": str(MAX_QUERY_VIDEO_BYTES),
        })
    with LocalStack(config) as stack:
        system = SystemStack(stack, library, "", {})
        clips = [make_video(library / f"corpus-{p}.mp4", seconds=8, fps=5, size=(64, 64), pattern=p)
                 for p in ("testsrc2", "smptebars")]
        for n, video_id in enumerate(ids_on_each_shard("corpus", 2)):
            job = ingest_and_wait(system.ingest_api(), clips[n % 2], video_id, CORPUS_WINDOW_S)
            assert job.state == ingest_pb2.JOB_STATE_SUCCEEDED, job.error
            system.videos[video_id] = expected_clip_ids(video_id, job.video_seconds, CORPUS_WINDOW_S)
        system.model_id = system.encoder().Info(encoder_pb2.InfoRequest(), timeout=10).model_id
        try:
            yield system
        finally:
            system.close()
