"""Re-embedding a video into another generation (the filler of a re-index), end to end: two tiny
models of different shapes, each served by a real encoder process, a source generation of two real
index shards written by the real ingest pipeline, a target generation of one shard, real videos.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from services import cli
from services.common.clip_ids import upload_key
from services.common.encoder_client import EncoderClient
from services.common.errors import DependencyDown, NotFound, WrongState
from services.common.generations import GenerationPool
from services.common.index_client import ShardSet
from services.common.routing import Generation, Routing, routing_key
from services.common.vectors import vector_from_proto
from services.ingest import sources
from services.ingest.pipeline import Pipeline
from services.ingest.records import Job, JobSpec, JobStage, JobState, SegmentMode, SegmentSpec, VideoMeta
from services.ingest.reembed import clips_of, reembed_filler
from services.ingest.settings import IngestSettings
from services.media.frames import FrameSampler
from services.media.store import MediaStore
from tests.media import make_video
from tests.procs import ServiceProcess
from vidsearch.common.v1 import common_pb2

pytestmark = pytest.mark.slow

#: The second model differs from the tiny one in every way the pipeline must follow: frames per
#: clip and embedding size (and, being another random init, its model id).
FRAMES_B, DIM_B = 8, 32


@dataclass
class Generations:
    tmp: Path
    cfg: IngestSettings
    encoder_a: ServiceProcess
    encoder_b: ServiceProcess
    source: list[ServiceProcess]
    target: list[ServiceProcess]
    model_a: str
    model_b: str
    #: video id -> source path of the videos ingested into the source generation
    videos: dict[str, Path]

    @property
    def source_shards(self) -> list[str]:
        return [p.address for p in self.source]

    @property
    def target_shards(self) -> list[str]:
        return [p.address for p in self.target]


def _start(tmp: Path, module: str, prefix: str, log: str, **env: str) -> ServiceProcess:
    values = {f"{prefix}_{k.upper()}": v for k, v in env.items()}
    return ServiceProcess(module, values, tmp / f"{log}.log", env_prefix=prefix).start()


def _index(tmp: Path, name: str) -> ServiceProcess:
    return _start(tmp, "services.index", "VIDSEARCH_INDEX", name, data_dir=str(tmp / name), shard_name=name)


async def _model_id(address: str) -> str:
    client = EncoderClient(address, timeout_s=30)
    try:
        return (await client.info()).model_id
    finally:
        await client.close()


async def _ingest(cfg: IngestSettings, encoder: str, shards: list[str], specs: list[JobSpec]) -> None:
    """Writes the videos into the source generation the way an ingest worker does."""
    encoder_client, shard_set = EncoderClient(encoder, timeout_s=60), ShardSet(shards, timeout_s=60)
    pipeline = Pipeline.from_settings(cfg, GenerationPool.fixed(encoder_client, shard_set), MediaStore(cfg.media_root))

    async def report(fields: dict[str, object], writing: list[str] | None) -> None:
        pass

    try:
        for spec in specs:
            job = Job(f"job-{spec.video_id}", spec, JobState.RUNNING, JobStage.PROBING, 0, 0, "", 1, 0.0, 0.0,
                      0.0, 1)
            await pipeline.run(job, report)
    finally:
        await encoder_client.close()
        await shard_set.close()
        await asyncio.to_thread(pipeline.pool.close)


@pytest.fixture(scope="module")
def gens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generations]:
    from services.model.checkpoint import build_model, save_checkpoint
    from services.model.config import tiny

    tmp = tmp_path_factory.mktemp("reembed")
    save_checkpoint(build_model(tiny()), tmp / "model-a")
    save_checkpoint(build_model(dataclasses.replace(tiny(), num_frames=FRAMES_B, embed_dim=DIM_B)), tmp / "model-b")
    procs = [
        _start(tmp, "services.encoder", "VIDSEARCH_ENCODER", "encoder-a", checkpoint=str(tmp / "model-a"),
               preprocess_workers="1"),
        _start(tmp, "services.encoder", "VIDSEARCH_ENCODER", "encoder-b", checkpoint=str(tmp / "model-b"),
               preprocess_workers="1"),
        _index(tmp, "g1-shard-0"), _index(tmp, "g1-shard-1"), _index(tmp, "g2-shard-0"),
    ]
    library = tmp / "library"
    library.mkdir()
    media = MediaStore(tmp / "media")
    try:
        for proc in procs:
            proc.wait_serving(timeout=180)
        cfg = IngestSettings(redis_url="redis://unused", encoder="unused", index_shards=("unused",),
                             media_root=media.root, allowed_roots=(library,), decode_processes=1,
                             encode_batch_clips=3, rpc_timeout_seconds=60)
        a, b = asyncio.run(_model_id(procs[0].address)), asyncio.run(_model_id(procs[1].address))
        assert a != b
        on_disk = make_video(library / "on-disk.mp4", seconds=9, fps=5, size=(64, 64), pattern="testsrc2")
        uploaded = make_video(tmp / "uploaded.mp4", seconds=7, fps=5, size=(64, 64), pattern="smptebars")
        key = upload_key("uploaded", "0123456789abcdef", ".mp4")
        media.put(key, uploaded.read_bytes())
        gone = make_video(library / "gone.mp4", seconds=4, fps=5, size=(64, 64), pattern="rgbtestsrc")
        specs = [
            # Overlapping windows: a re-embed cannot re-plan them from settings, only keep them.
            JobSpec("on-disk", sources.file_source(on_disk),
                    VideoMeta("제목", "뉴스", "2024-01-02", ("news", "seoul"), {"desk": "culture"}),
                    SegmentSpec(SegmentMode.FIXED, 2.0, 0.5)),
            JobSpec("uploaded", sources.media_source(key), VideoMeta(title="upload"), SegmentSpec(window_s=3.0)),
            JobSpec("gone", sources.file_source(gone), VideoMeta(), SegmentSpec(window_s=2.0)),
        ]
        asyncio.run(_ingest(cfg, procs[0].address, [p.address for p in procs[2:4]], specs))
        yield Generations(tmp, cfg, procs[0], procs[1], procs[2:4], procs[4:], a, b,
                          {"on-disk": on_disk, "uploaded": uploaded, "gone": gone})
    finally:
        for proc in procs:
            proc.stop()


def _scan(shards: list[str], video_id: str) -> list[common_pb2.ClipRecord]:
    async def scan() -> list[common_pb2.ClipRecord]:
        shard_set = ShardSet(shards, timeout_s=30)
        try:
            return await clips_of(shard_set, video_id, include_vectors=True)
        finally:
            await shard_set.close()

    return asyncio.run(scan())


def _fill(gens: Generations, *video_ids: str, model_id: str = "", source_model_id: str = "") -> list[list[str]]:
    source = Generation("g1", source_model_id, gens.encoder_a.address, tuple(gens.source_shards))
    target = Generation("g2", model_id or gens.model_b, gens.encoder_b.address, tuple(gens.target_shards))

    async def fill() -> list[list[str]]:
        fill_video, close = reembed_filler(gens.cfg, source, target)
        try:
            return [await fill_video(v) for v in video_ids]
        finally:
            await close()

    return asyncio.run(fill())


def _without_vector_and_model(clip: common_pb2.ClipRecord) -> common_pb2.ClipRecord:
    copy = common_pb2.ClipRecord()
    copy.CopyFrom(clip)
    copy.ClearField("vector")
    copy.model_id = ""
    return copy


def _set_caption(gens: Generations, clip: common_pb2.ClipRecord, caption: str) -> None:
    async def upsert() -> None:
        shard_set = ShardSet(gens.source_shards, timeout_s=30)
        try:
            shard = shard_set.for_video(clip.video_id)
            (full,) = (await shard.get([clip.clip_id], include_vectors=True)).clips
            full.caption = caption
            await shard.upsert([full])
        finally:
            await shard_set.close()

    asyncio.run(upsert())


def test_a_video_is_reembedded_clip_for_clip_with_the_new_model(gens: Generations) -> None:
    before = _scan(gens.source_shards, "on-disk")
    assert len(before) >= 5 and {c.model_id for c in before} == {gens.model_a}
    _set_caption(gens, before[1], "아나운서가 뉴스를 읽는다")
    source = _scan(gens.source_shards, "on-disk")

    assert _fill(gens, "on-disk", "uploaded") == [[c.clip_id for c in source],
                                                  [c.clip_id for c in _scan(gens.source_shards, "uploaded")]]

    for video_id in ("on-disk", "uploaded"):
        source, target = _scan(gens.source_shards, video_id), _scan(gens.target_shards, video_id)
        # Same clips, ranges, caption, tags, thumbnails and metadata; only the vector and model id change.
        assert [_without_vector_and_model(c) for c in target] == [_without_vector_and_model(c) for c in source]
        assert {c.model_id for c in target} == {gens.model_b}
    target = _scan(gens.target_shards, "on-disk")
    assert target[1].caption == "아나운서가 뉴스를 읽는다"
    assert target[0].metadata["desk"] == "culture" and list(target[0].tags) == ["news", "seoul"]

    # Each vector is the second model's embedding of the clip's own frames, sampled as that model needs.
    async def embed() -> np.ndarray:
        client = EncoderClient(gens.encoder_b.address, timeout_s=60)
        try:
            info = await client.info()
            sampler = FrameSampler(info.frames_per_clip, info.image_size, crop=info.crop or "round")
            frames = [c.frames for c in sampler.iter_many(gens.videos["on-disk"],
                                                          [(c.start_seconds, c.end_seconds) for c in target])]
            assert info.frames_per_clip == FRAMES_B and frames[0].shape[0] == FRAMES_B
            return (await client.encode_frames(frames))[0]
        finally:
            await client.close()

    expected = asyncio.run(embed())
    stored = np.stack([vector_from_proto(c.vector) for c in target])
    assert stored.shape == (len(target), DIM_B)
    np.testing.assert_allclose(np.sum(stored * expected, axis=1), 1.0, atol=1e-4)


def test_filling_again_overwrites_and_a_video_the_source_lacks_writes_nothing(gens: Generations) -> None:
    (first,) = _fill(gens, "uploaded")
    assert _fill(gens, "uploaded", "never-ingested") == [first, []]
    assert [c.clip_id for c in _scan(gens.target_shards, "uploaded")] == first
    assert _scan(gens.target_shards, "never-ingested") == []


def test_a_video_whose_source_is_gone_fails_naming_it(gens: Generations) -> None:
    shutil.move(gens.videos["gone"], gens.tmp / "moved-away.mp4")
    try:
        with pytest.raises(NotFound, match="re-embedding video gone: no such file"):
            _fill(gens, "gone")
        assert _scan(gens.target_shards, "gone") == []
    finally:
        shutil.move(gens.tmp / "moved-away.mp4", gens.videos["gone"])


def test_the_target_encoder_must_serve_the_target_model(gens: Generations) -> None:
    with pytest.raises(DependencyDown, match=f"generation g2 at .* serves model {gens.model_b}, not the generation's "
                                             f"{gens.model_a}"):
        _fill(gens, "uploaded", model_id=gens.model_a)


def test_a_target_of_the_source_model_is_refused(gens: Generations) -> None:
    with pytest.raises(WrongState, match=f"g1 and g2 both have model {gens.model_a}: nothing to re-embed"):
        _fill(gens, "uploaded", model_id=gens.model_a, source_model_id=gens.model_a)


def test_vidsearch_migrate_reembeds_into_a_running_generation_and_switches_to_it(
        gens: Generations, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The Kubernetes procedure: a Job with the ingest workers' settings runs `vidsearch migrate --mode reembed`."""
    prefix = f"reembed{uuid.uuid4().hex[:6]}"
    for name, value in {"REDIS_URL": redis_url, "ENCODER": gens.encoder_a.address,
                        "INDEX_SHARDS": ",".join(gens.source_shards), "MEDIA_ROOT": str(gens.cfg.media_root),
                        "ALLOWED_ROOTS": ",".join(map(str, gens.cfg.allowed_roots)), "DECODE_PROCESSES": "1",
                        "KEY_PREFIX": prefix}.items():
        monkeypatch.setenv(f"VIDSEARCH_INGEST_{name}", value)
    code = cli.main(["migrate", "--redis-url", redis_url, "--key-prefix", prefix,
                     "--from-encoder", gens.encoder_a.address, "--from-shards", ",".join(gens.source_shards),
                     "--to-encoder", gens.encoder_b.address, "--to-shards", ",".join(gens.target_shards),
                     "--mode", "reembed", "--grace-seconds", "0.5"])
    assert code == 0, capsys.readouterr().out

    for video_id in gens.videos:
        source, target = _scan(gens.source_shards, video_id), _scan(gens.target_shards, video_id)
        assert source and [c.clip_id for c in target] == [c.clip_id for c in source]
        assert {c.model_id for c in target} == {gens.model_b}
    client = redis.Redis.from_url(redis_url)
    try:
        routing = Routing.from_json(client.get(routing_key(prefix)))
    finally:
        client.close()
    assert (routing.current.model_id, routing.current.encoder) == (gens.model_b, gens.encoder_b.address)
    assert list(routing.generations) == [routing.active]  # the old generation dropped
