"""The index shard over real gRPC: a shard subprocess on a free loopback port."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.common.vectors import packed_vector, vector_from_proto
from tests.procs import ServiceProcess
from vidsearch.common.v1 import common_pb2
from vidsearch.index.v1 import index_pb2, index_pb2_grpc

DIM = 16
MODEL = "model-a"


def start_shard(tmp: Path, name: str = "shard-0", **env: str) -> ServiceProcess:
    return ServiceProcess(
        "services.index",
        {"VIDSEARCH_INDEX_DATA_DIR": str(tmp / name), "VIDSEARCH_INDEX_SHARD_NAME": name, **env},
        tmp / f"{name}.log",
        env_prefix="VIDSEARCH_INDEX",
    ).start()


def clip(i: int, vec: np.ndarray, video: str = "v1", model: str = MODEL, **kw) -> common_pb2.ClipRecord:
    return common_pb2.ClipRecord(
        clip_id=f"{video}:{i * 20000:09d}", video_id=video, start_seconds=i * 20.0, end_seconds=i * 20.0 + 20,
        vector=common_pb2.Vector(values=vec.tolist()), model_id=model, **kw,
    )


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = start_shard(tmp_path_factory.mktemp("index"), VIDSEARCH_INDEX_SEAL_THRESHOLD="64")
    proc.wait_serving()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(shard: ServiceProcess) -> Iterator[index_pb2_grpc.IndexServiceStub]:
    with grpc.insecure_channel(shard.address) as channel:
        yield index_pb2_grpc.IndexServiceStub(channel)


@pytest.fixture(scope="module")
def loaded(stub: index_pb2_grpc.IndexServiceStub) -> np.ndarray:
    rng = np.random.default_rng(0)
    vecs = unit(rng, 200)
    clips = [
        clip(i, vecs[i], video=f"vid{i % 4}", caption=f"caption {i}", tags=["news"] if i % 2 else ["drama"],
             metadata={"programme": "nine o'clock" if i % 3 == 0 else "morning"})
        for i in range(200)
    ]
    for start in range(0, 200, 50):
        assert stub.Upsert(index_pb2.UpsertRequest(clips=clips[start:start + 50]), timeout=30).upserted == 50
    stub.Seal(index_pb2.SealRequest(wait=True), timeout=60)
    return vecs


def test_stored_clip_is_its_own_nearest_neighbour(stub, loaded) -> None:
    queries = [common_pb2.Vector(values=loaded[i].tolist()) for i in (3, 150, 199)]
    reply = stub.Search(index_pb2.SearchRequest(queries=queries, top_k=5), timeout=10)
    assert len(reply.results) == 3
    for i, result in zip((3, 150, 199), reply.results, strict=True):
        top = result.hits[0]
        assert top.clip.clip_id == f"vid{i % 4}:{i * 20000:09d}"
        assert top.score == pytest.approx(1.0, abs=1e-4)
        assert top.shard == "shard-0"
        assert top.clip.caption == f"caption {i}"
        assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert reply.model_id == MODEL


def test_scores_are_exact_cosines(stub, loaded) -> None:
    q = loaded[10] + 0.3 * loaded[11]
    q /= np.linalg.norm(q)
    reply = stub.Search(index_pb2.SearchRequest(queries=[common_pb2.Vector(values=q.tolist())], top_k=10), timeout=10)
    exact = loaded @ q
    expected = np.sort(exact)[::-1][:10]
    got = [h.score for h in reply.results[0].hits]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_filters_restrict_hits(stub, loaded) -> None:
    f = common_pb2.SearchFilter(video_ids=["vid1"], tags=["news"], min_start_seconds=100.0, max_end_seconds=2000.0)
    reply = stub.Search(
        index_pb2.SearchRequest(queries=[common_pb2.Vector(values=loaded[0].tolist())], top_k=100, filter=f),
        timeout=10,
    )
    hits = reply.results[0].hits
    expected = {f"vid1:{i * 20000:09d}" for i in range(200) if i % 4 == 1 and i % 2 == 1 and i * 20 >= 100
                and i * 20 + 20 <= 2000}
    assert {h.clip.clip_id for h in hits} == expected
    meta = common_pb2.SearchFilter(metadata={"programme": "nine o'clock"})
    reply = stub.Search(
        index_pb2.SearchRequest(queries=[common_pb2.Vector(values=loaded[0].tolist())], top_k=1000, filter=meta),
        timeout=10,
    )
    assert len(reply.results[0].hits) == len([i for i in range(200) if i % 3 == 0])


def test_get_returns_records_and_missing_ids(stub, loaded) -> None:
    reply = stub.Get(index_pb2.GetRequest(clip_ids=["vid2:000040000", "nope"], include_vectors=True), timeout=10)
    assert [c.clip_id for c in reply.clips] == ["vid2:000040000"]
    assert list(reply.missing_ids) == ["nope"]
    np.testing.assert_allclose(reply.clips[0].vector.values, loaded[2], atol=1e-6)
    assert reply.clips[0].metadata["programme"] == "morning"


def test_delete_and_overwrite(stub, loaded) -> None:
    rng = np.random.default_rng(5)
    fresh = unit(rng, 3)
    extra = [clip(1000 + i, fresh[i], video="tmp") for i in range(3)]
    stub.Upsert(index_pb2.UpsertRequest(clips=extra), timeout=10)
    # Overwrite one with a new vector: the old vector no longer finds it.
    moved = clip(1000, -fresh[0], video="tmp")
    stub.Upsert(index_pb2.UpsertRequest(clips=[moved]), timeout=10)
    reply = stub.Search(index_pb2.SearchRequest(queries=[common_pb2.Vector(values=fresh[0].tolist())], top_k=1,
                                                filter=common_pb2.SearchFilter(video_ids=["tmp"])), timeout=10)
    assert reply.results[0].hits[0].clip.clip_id != "tmp:020000000"
    deleted = stub.Delete(index_pb2.DeleteRequest(video_ids=["tmp"]), timeout=10).deleted
    assert deleted == 3
    reply = stub.Get(index_pb2.GetRequest(clip_ids=[c.clip_id for c in extra]), timeout=10)
    assert len(reply.missing_ids) == 3
    stats = stub.Stats(index_pb2.StatsRequest(), timeout=10)
    assert stats.live == 200 and stats.model_id == MODEL and stats.dimension == DIM and stats.segments >= 1


def test_packed_vectors_store_and_search_like_repeated_floats(stub, loaded) -> None:
    vec = unit(np.random.default_rng(9), 1)[0]
    packed = clip(2000, vec, video="packed")
    packed.vector.CopyFrom(packed_vector(vec))
    stub.Upsert(index_pb2.UpsertRequest(clips=[packed]), timeout=10)
    got = stub.Get(index_pb2.GetRequest(clip_ids=[packed.clip_id], include_vectors=True), timeout=10).clips[0]
    np.testing.assert_allclose(got.vector.values, vec, atol=1e-6)  # readers of values still read it
    hit = stub.Search(index_pb2.SearchRequest(queries=[packed_vector(vec)], top_k=1), timeout=10).results[0].hits[0]
    assert hit.clip.clip_id == packed.clip_id and hit.score == pytest.approx(1.0, abs=1e-5)
    stub.Delete(index_pb2.DeleteRequest(video_ids=["packed"]), timeout=10)


def test_scan_pages_every_clip_in_id_order_and_resumes(stub, loaded) -> None:
    def scan(**kw) -> list[common_pb2.ClipRecord]:
        return [c for page in stub.Scan(index_pb2.ScanRequest(**kw), timeout=30) for c in page.clips]

    everything = scan(page_size=7)
    ids = [c.clip_id for c in everything]
    assert len(ids) == 200 and ids == sorted(ids) and len(set(ids)) == 200
    assert not any(c.HasField("vector") for c in everything)
    pages = list(stub.Scan(index_pb2.ScanRequest(page_size=64), timeout=30))
    assert [len(p.clips) for p in pages] == [64, 64, 64, 8] and pages[0].model_id == MODEL
    # Resuming after the 50th id yields exactly the rest, and a limit stops early.
    assert [c.clip_id for c in scan(after_clip_id=ids[49])] == ids[50:]
    assert [c.clip_id for c in scan(after_clip_id=ids[9], limit=5, page_size=2)] == ids[10:15]
    # Vectors come back, sealed rows' from their segment.
    with_vectors = scan(include_vectors=True, video_ids=["vid2"])
    assert {c.video_id for c in with_vectors} == {"vid2"} and len(with_vectors) == 50
    for c in with_vectors:
        i = int(c.clip_id.split(":")[1]) // 20000
        np.testing.assert_allclose(vector_from_proto(c.vector), loaded[i], atol=1e-6)
        assert c.caption == f"caption {i}"


NAN = [math.nan] + [0.1] * (DIM - 1)


@pytest.mark.parametrize(
    ("name", "call", "code", "message"),
    [
        ("empty upsert", lambda s: s.Upsert(index_pb2.UpsertRequest()), "INVALID_ARGUMENT", "at least one clip"),
        ("wrong dimension", lambda s: s.Upsert(index_pb2.UpsertRequest(clips=[clip(1, np.ones(7, np.float32))])),
         "INVALID_ARGUMENT", "dimension"),
        ("nan vector", lambda s: s.Upsert(index_pb2.UpsertRequest(clips=[clip(1, np.array(NAN, np.float32))])),
         "INVALID_ARGUMENT", "NaN"),
        ("empty clip id", lambda s: s.Upsert(index_pb2.UpsertRequest(clips=[common_pb2.ClipRecord(
            video_id="v", model_id=MODEL, vector=common_pb2.Vector(values=[0.25] * DIM))])),
         "INVALID_ARGUMENT", "clip_id"),
        ("duplicate ids", lambda s: s.Upsert(index_pb2.UpsertRequest(clips=[clip(1, np.ones(DIM, np.float32))] * 2)),
         "INVALID_ARGUMENT", "duplicate"),
        ("other model", lambda s: s.Upsert(index_pb2.UpsertRequest(
            clips=[clip(1, np.ones(DIM, np.float32), model="model-b")])), "FAILED_PRECONDITION", "model-b"),
        ("top_k zero", lambda s: s.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=[0.25] * DIM)], top_k=0)), "INVALID_ARGUMENT", "top_k"),
        ("top_k too big", lambda s: s.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=[0.25] * DIM)], top_k=1001)), "INVALID_ARGUMENT", "top_k"),
        ("query dimension", lambda s: s.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=[0.25] * 3)], top_k=5)), "INVALID_ARGUMENT", "dimension"),
        ("nan query", lambda s: s.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=NAN)], top_k=5)), "INVALID_ARGUMENT", "NaN"),
        ("no queries", lambda s: s.Search(index_pb2.SearchRequest(top_k=5)), "INVALID_ARGUMENT", "at least one"),
        ("ragged queries", lambda s: s.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(values=[0.25] * DIM), common_pb2.Vector(values=[0.5] * 4)], top_k=5)),
         "INVALID_ARGUMENT", "different lengths"),
        ("empty delete", lambda s: s.Delete(index_pb2.DeleteRequest()), "INVALID_ARGUMENT", "clip_ids or video_ids"),
        ("packed and values", lambda s: s.Upsert(index_pb2.UpsertRequest(clips=[common_pb2.ClipRecord(
            clip_id="v:000000000", video_id="v", model_id=MODEL,
            vector=common_pb2.Vector(values=[0.25] * DIM, packed=b"\0" * 4 * DIM))])),
         "INVALID_ARGUMENT", "both values and packed"),
        ("scan page too big", lambda s: list(s.Scan(index_pb2.ScanRequest(page_size=10_001))),
         "INVALID_ARGUMENT", "page_size"),
        ("scan negative limit", lambda s: list(s.Scan(index_pb2.ScanRequest(limit=-1))), "INVALID_ARGUMENT", "limit"),
        ("scan empty video id", lambda s: list(s.Scan(index_pb2.ScanRequest(video_ids=[""]))),
         "INVALID_ARGUMENT", "empty"),
        ("packed ragged", lambda s: s.Search(index_pb2.SearchRequest(
            queries=[common_pb2.Vector(packed=b"\0" * (4 * DIM - 1))], top_k=5)), "INVALID_ARGUMENT", "whole number"),
    ],
)
def test_bad_input_gets_a_clear_status(stub, loaded, name, call, code, message) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(stub)
    assert err.value.code().name == code, (name, err.value.details())
    assert message.lower() in err.value.details().lower(), err.value.details()
    # Nothing stored changed and the shard still answers.
    assert stub.Stats(index_pb2.StatsRequest(), timeout=10).live >= 200


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    proc = start_shard(tmp_path, "shard-t")
    proc.wait_serving()
    assert proc.kill(signal.SIGTERM) == 0, proc.log_tail()


def test_acknowledged_upserts_survive_sigkill(tmp_path: Path) -> None:
    """SIGKILL in the middle of a stream of upserts: every acknowledged clip is there after restart."""
    proc = start_shard(tmp_path, "shard-d", VIDSEARCH_INDEX_SEAL_THRESHOLD="300")
    proc.wait_serving()
    rng = np.random.default_rng(1)
    acked: dict[str, np.ndarray] = {}
    stop = threading.Event()

    def writer() -> None:
        with grpc.insecure_channel(proc.address) as channel:
            s = index_pb2_grpc.IndexServiceStub(channel)
            batch_no = 0
            while not stop.is_set():
                vecs = unit(rng, 20)
                clips = [clip(batch_no * 20 + j, vecs[j], video="dur") for j in range(20)]
                try:
                    s.Upsert(index_pb2.UpsertRequest(clips=clips), timeout=5)
                except grpc.RpcError:
                    return
                acked.update({c.clip_id: vecs[j] for j, c in enumerate(clips)})
                batch_no += 1

    thread = threading.Thread(target=writer)
    thread.start()
    import time

    deadline = time.monotonic() + 30
    while len(acked) < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill(signal.SIGKILL)
    stop.set()
    thread.join(timeout=30)
    assert len(acked) >= 1000, "too few upserts acknowledged before the kill"

    restarted = start_shard(tmp_path, "shard-d", VIDSEARCH_INDEX_SEAL_THRESHOLD="300")
    try:
        restarted.wait_serving()
        with grpc.insecure_channel(restarted.address) as channel:
            s = index_pb2_grpc.IndexServiceStub(channel)
            ids = sorted(acked)
            got = s.Get(index_pb2.GetRequest(clip_ids=ids), timeout=30)
            assert not got.missing_ids, f"{len(got.missing_ids)} acknowledged clips lost"
            sample = ids[:: max(1, len(ids) // 50)]
            reply = s.Search(index_pb2.SearchRequest(
                queries=[common_pb2.Vector(values=acked[i].tolist()) for i in sample], top_k=1), timeout=30)
            assert [r.hits[0].clip.clip_id for r in reply.results] == sample
    finally:
        restarted.stop()
