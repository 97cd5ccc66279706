"""ShardIndex: durable writes, exact + approximate search, filters, background builds, recovery."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import InvalidInput, StorageFull, WrongState
from services.index.records import ClipRecord, SearchFilter, validate_records
from services.index.segment import AnnoySegment, Segment, exact_top_k
from services.index.shard import RangeDigest, ShardIndex

DIM = 32
MODEL = "clip4clip-test"


def unit_clusters(rng: np.random.Generator, n: int, centres: np.ndarray, spread: float = 1.0) -> np.ndarray:
    v = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, DIM)) * spread / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def make_centres(rng: np.random.Generator, n: int) -> np.ndarray:
    c = rng.normal(size=(n, DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def clip_id(i: int) -> str:
    return f"v{i % 40}:{i:07d}"


def records(vectors: np.ndarray, offset: int = 0, model: str = MODEL) -> list[ClipRecord]:
    out = []
    for j, v in enumerate(vectors):
        i = offset + j
        out.append(ClipRecord(
            clip_id=clip_id(i), video_id=f"v{i % 40}", start_s=float(i % 100), end_s=float(i % 100) + 5.0,
            vector=v, caption=f"clip {i}", tags=("news",) if i % 2 else ("drama", "night") if i % 5 else (),
            model_id=model, metadata={"programme": f"p{i % 7}", "air_date": f"2001-01-{1 + i % 28:02d}"},
        ))
    return out


def brute_force(vectors: dict[str, np.ndarray], query: np.ndarray, k: int,
                keep=lambda cid: True) -> list[tuple[str, float]]:
    ids = [c for c in vectors if keep(c)]
    if not ids:
        return []
    scores = np.stack([vectors[c] for c in ids]) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in order]


def assert_same_hits(hits, expected, atol: float = 1e-5) -> None:
    assert [h.clip_id for h in hits] == [c for c, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=atol)


def assert_recall_and_exact_scores(shard: ShardIndex, corpus: dict) -> None:
    """Recall@10 of the corpus queries >= 0.95 against exact search, and hits scored by exact cosines."""
    truth, _ = exact_top_k(corpus["queries"], corpus["vectors"], 10)
    results = shard.search(corpus["queries"], 10)
    by_id = {clip_id(i): i for i in range(len(corpus["vectors"]))}
    found = sum(len({by_id[h.clip_id] for h in hits} & set(t.tolist()))
                for hits, t in zip(results, truth, strict=True))
    assert found / truth.size >= 0.95
    q = corpus["queries"][5]
    np.testing.assert_allclose([h.score for h in results[5]],
                               [corpus["vectors"][by_id[h.clip_id]] @ q for h in results[5]], atol=1e-6)


@pytest.fixture(scope="module")
def corpus() -> dict:
    rng = np.random.default_rng(11)
    centres = make_centres(rng, 60)
    vectors = unit_clusters(rng, 12000, centres)
    queries = unit_clusters(rng, 100, centres)
    return {"vectors": vectors, "queries": queries, "records": records(vectors)}


def loaded_shard(path: Path, corpus: dict, seal_threshold: int = 4000, batch: int = 1000, **kw) -> ShardIndex:
    """The corpus written ``batch`` records at a time, sealed every ``seal_threshold`` rows; segments are
    not merged on their own unless ``merge_factor`` is given (the tiered merge has its own tests)."""
    kw.setdefault("merge_factor", 0)
    shard = ShardIndex(path, model_id=MODEL, dim=DIM, seal_threshold=seal_threshold, n_trees=8, **kw)
    recs = corpus["records"]
    for start in range(0, len(recs), batch):
        shard.upsert(recs[start : start + batch])
    shard.wait_for_builds()
    return shard


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, corpus: dict):
    """12000 clips in three 4000-row segments."""
    # Filters matching over 1000 rows take the over-fetch + post-filter path.
    shard = loaded_shard(tmp_path_factory.mktemp("sealed"), corpus, exact_filter_rows=1000)
    yield shard
    shard.close()


# ---------------------------------------------------------------------------- search quality


def test_segments_give_high_recall_against_exact_search(sealed: ShardIndex, corpus: dict) -> None:
    stats = sealed.stats()
    assert stats["segments"] == 3 and stats["fresh"] == 0
    # Large enough that Annoy, not the small-segment exact scan, answers.
    assert all(p.segment.cost_in_rows(10) < p.size for p in sealed._segments)
    truth, _ = exact_top_k(corpus["queries"], corpus["vectors"], 10)
    results = sealed.search(corpus["queries"], 10)
    found = sum(len({h.clip_id for h in hits} & {clip_id(i) for i in t}) for hits, t in zip(results, truth,
                                                                                           strict=True))
    assert found / truth.size >= 0.95


def test_scores_are_exact_cosines_best_first(sealed: ShardIndex, corpus: dict) -> None:
    q = corpus["queries"][:5]
    by_id = {clip_id(i): v for i, v in enumerate(corpus["vectors"])}
    for hits, query in zip(sealed.search(q, 20), q, strict=True):
        assert len(hits) == 20
        exact = [by_id[h.clip_id] @ query for h in hits]
        np.testing.assert_allclose([h.score for h in hits], exact, atol=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert hits[0].record.vector is None and hits[0].record.caption.startswith("clip ")


def test_stored_clip_is_its_own_nearest_neighbour(sealed: ShardIndex, corpus: dict) -> None:
    picks = [0, 4321, 11999]
    results = sealed.search(corpus["vectors"][picks], 1)
    assert [r[0].clip_id for r in results] == [clip_id(i) for i in picks]


def test_exhaustive_search_k_equals_brute_force(sealed: ShardIndex, corpus: dict) -> None:
    by_id = {clip_id(i): v for i, v in enumerate(corpus["vectors"])}
    q = corpus["queries"][7]
    (hits,) = sealed.search(q[None], 15, search_k=12000 * 8)
    assert_same_hits(hits, brute_force(by_id, q, 15))


# ---------------------------------------------------------------------------- filters

FILTERS = {
    "video": SearchFilter(video_ids=frozenset({"v3", "v17"})),
    "tag": SearchFilter(tags=frozenset({"news"})),
    "two tags": SearchFilter(tags=frozenset({"drama", "night"})),
    "metadata": SearchFilter(metadata={"programme": "p2"}),
    "time": SearchFilter(min_start_s=10.0, max_end_s=40.0),
    "combined": SearchFilter(video_ids=frozenset({"v1", "v5", "v9"}), tags=frozenset({"news"}),
                             min_start_s=20.0, metadata={"programme": "p3"}),
    "nothing": SearchFilter(video_ids=frozenset({"no-such-video"})),
}


@pytest.mark.parametrize("path", ["selective", "post-filter"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_match_brute_force(tmp_path: Path, corpus: dict, path: str, name: str) -> None:
    """Both filter strategies return exactly the brute-force answer (exhaustive search_k)."""
    threshold = {"selective": 10**9, "post-filter": 0}[path]
    recs = corpus["records"][:3000]
    shard = ShardIndex(tmp_path, model_id=MODEL, dim=DIM, seal_threshold=1200, n_trees=4,
                       exact_filter_rows=threshold, exact_filter_fraction=0.0 if threshold == 0 else 1.0)
    with shard:
        for start in range(0, 3000, 1200):
            shard.upsert(recs[start : start + 1200])  # 2 segments of 1200 rows + 600 fresh
        shard.wait_for_builds()
        assert shard.stats()["segments"] == 2
        flt = FILTERS[name]
        by_id = {r.clip_id: r.vector for r in recs}
        attrs = {r.clip_id: r for r in recs}
        for q in corpus["queries"][:4]:
            (hits,) = shard.search(q[None], 25, filter=flt, search_k=10**7)
            assert_same_hits(hits, brute_force(by_id, q, 25, lambda c: flt.matches(attrs[c])))


def test_post_filter_path_with_calibrated_search_k_keeps_recall(sealed: ShardIndex, corpus: dict) -> None:
    flt = SearchFilter(tags=frozenset({"news"}))  # half the rows: over-fetch and post-filter
    assert sealed._matching_rows(flt, 12000) is None
    by_id = {clip_id(i): v for i, v in enumerate(corpus["vectors"])}
    attrs = {r.clip_id: r for r in corpus["records"]}
    found = total = 0
    for q, hits in zip(corpus["queries"], sealed.search(corpus["queries"], 10, filter=flt), strict=True):
        assert len(hits) == 10 and all("news" in h.record.tags for h in hits)
        expected = {c for c, _ in brute_force(by_id, q, 10, lambda c: "news" in attrs[c].tags)}
        found += len(expected & {h.clip_id for h in hits})
        total += 10
    assert found / total >= 0.95


def test_filter_semantics() -> None:
    rec = records(np.ones((8, DIM), np.float32))[7]  # v7, start 7, end 12, tags (news,), programme p0
    assert SearchFilter().is_empty and SearchFilter().matches(rec)
    assert SearchFilter(min_start_s=7.0, max_end_s=12.0).matches(rec)  # lies within the closed range
    assert not SearchFilter(min_start_s=7.5).matches(rec)
    assert not SearchFilter(max_end_s=11.0).matches(rec)  # overlapping is not enough
    assert not SearchFilter(tags=frozenset({"news", "drama"})).matches(rec)  # needs ALL tags
    assert SearchFilter(metadata={"programme": "p0"}).matches(rec)
    assert not SearchFilter(metadata={"programme": "p0", "title": "x"}).matches(rec)
    with pytest.raises(InvalidInput, match="before"):
        SearchFilter(min_start_s=10.0, max_end_s=5.0)


# ---------------------------------------------------------------------------- writes


def test_new_shard_binds_on_first_write_and_keeps_binding(tmp_path: Path, corpus: dict) -> None:
    with ShardIndex(tmp_path) as shard:
        assert shard.model_id is None and shard.stats()["dim"] is None
        assert shard.search(corpus["queries"][:2], 5) == [[], []]
        shard.upsert(corpus["records"][:10])
        assert (shard.model_id, shard.dim) == (MODEL, DIM)
    with ShardIndex(tmp_path) as shard:
        assert (shard.model_id, shard.dim) == (MODEL, DIM) and shard.stats()["live"] == 10
    with pytest.raises(WrongState, match="other-model"):
        ShardIndex(tmp_path, model_id="other-model", dim=DIM)
    with pytest.raises(WrongState, match="dim 64"):
        ShardIndex(tmp_path, model_id=MODEL, dim=64)


def test_acknowledged_writes_are_searchable_after_reopen(tmp_path: Path, corpus: dict) -> None:
    recs = corpus["records"][:900]
    with ShardIndex(tmp_path, seal_threshold=500, n_trees=4) as shard:
        shard.upsert(recs[:600])  # seals 600 rows
        shard.upsert(recs[600:])  # stays in the fresh buffer
        shard.delete([recs[0].clip_id, recs[700].clip_id])
    with ShardIndex(tmp_path, seal_threshold=500) as shard:
        stats = shard.stats()
        assert stats["live"] == 898 and stats["segments"] == 1 and stats["fresh"] == 299
        picks = [1, 599, 601, 899]
        results = shard.search(np.stack([recs[i].vector for i in picks]), 1)
        assert [r[0].clip_id for r in results] == [recs[i].clip_id for i in picks]
        assert shard.get([recs[0].clip_id, recs[1].clip_id], with_vectors=False)[0].clip_id == recs[1].clip_id


def test_overwrite_in_a_segment_moves_the_clip(sealed_copy: ShardIndex, corpus: dict) -> None:
    shard = sealed_copy
    old = corpus["records"][5]
    new_vec = -old.vector
    shard.upsert([ClipRecord(old.clip_id, old.video_id, 0.0, 1.0, new_vec, caption="moved", model_id=MODEL)])
    (hits,) = shard.search(old.vector[None], 3)
    assert old.clip_id not in [h.clip_id for h in hits]
    (hits,) = shard.search(new_vec[None], 1)
    assert hits[0].clip_id == old.clip_id and hits[0].record.caption == "moved"
    stats = shard.stats()
    assert stats["live"] == 12000 and stats["tombstoned"] == 1


def test_delete_by_clip_and_video(sealed_copy: ShardIndex, corpus: dict) -> None:
    shard = sealed_copy
    victim = corpus["records"][42]
    assert shard.delete([victim.clip_id, "missing"]) == 1
    (hits,) = shard.search(victim.vector[None], 5)
    assert victim.clip_id not in {h.clip_id for h in hits}
    assert shard.get([victim.clip_id]) == []
    n_v3 = sum(1 for r in corpus["records"] if r.video_id == "v3")
    assert shard.delete(video_ids=["v3"]) == n_v3
    results = shard.search(corpus["queries"], 50)
    assert all(h.record.video_id != "v3" for hits in results for h in hits)
    assert shard.search(corpus["queries"][:1], 5, filter=SearchFilter(video_ids=frozenset({"v3"}))) == [[]]
    assert shard.stats()["live"] == 12000 - 1 - n_v3


def test_a_delete_fences_its_writers_even_on_a_shard_not_yet_written(tmp_path: Path) -> None:
    """A fence sent before the shard's first write (no store yet) still refuses that writer, and is
    kept once the first write of another writer creates the store."""
    rng = np.random.default_rng(5)
    first, late = records(rng.normal(size=(2, DIM)).astype(np.float32))
    with ShardIndex(tmp_path) as shard:
        assert shard.delete(video_ids=[late.video_id], fence_writers=["stalled-job"]) == 0
        with pytest.raises(WrongState, match="fenced"):
            shard.upsert([late], writer="stalled-job")
        assert shard.upsert([first], writer="next-job") and shard.stats()["live"] == 1
    with ShardIndex(tmp_path) as shard:
        with pytest.raises(WrongState, match="fenced"):
            shard.upsert([late], writer="stalled-job")
        assert shard.get([late.clip_id]) == [] and shard.stats()["live"] == 1


@pytest.fixture
def sealed_copy(tmp_path: Path, corpus: dict):
    shard = loaded_shard(tmp_path, corpus)
    yield shard
    shard.close()


def test_search_does_not_wait_for_a_build(tmp_path: Path, corpus: dict, monkeypatch) -> None:
    started, release = threading.Event(), threading.Event()
    real_build = Segment.build.__func__

    def slow_build(cls, *args, **kwargs):
        started.set()
        assert release.wait(timeout=30)
        return real_build(cls, *args, **kwargs)

    monkeypatch.setattr(Segment, "build", classmethod(slow_build))
    recs = corpus["records"][:2000]
    by_id = {r.clip_id: r.vector for r in recs}
    q = corpus["queries"][0]
    with ShardIndex(tmp_path, model_id=MODEL, dim=DIM, seal_threshold=10**6, n_trees=4) as shard:
        shard.upsert(recs)
        assert shard.seal() == 2000
        assert started.wait(timeout=10)
        # The build is blocked: searches answer from the frozen buffer, exactly, and writes go on.
        assert shard.stats()["building"] == 1 and shard.stats()["segments"] == 0
        (hits,) = shard.search(q[None], 10)
        assert_same_hits(hits, brute_force(by_id, q, 10))
        shard.delete([hits[0].clip_id])
        shard.upsert(records(corpus["vectors"][2000:2010], offset=2000))
        release.set()
        shard.wait_for_builds()
        stats = shard.stats()
        assert stats["segments"] == 1 and stats["building"] == 0 and stats["live"] == 2009
        (after,) = shard.search(q[None], 9, search_k=10**6)
        assert [h.clip_id for h in after] == [h.clip_id for h in hits[1:]]


def test_searches_and_writes_race_a_compaction(tmp_path: Path, corpus: dict) -> None:
    shard = loaded_shard(tmp_path, corpus, seal_threshold=3000)
    stop = threading.Event()

    def searcher() -> int:
        rounds = 0
        while not stop.is_set():
            for hits in shard.search(corpus["queries"][:8], 10):
                assert len(hits) == 10 and len({h.clip_id for h in hits}) == 10
            rounds += 1
        return rounds

    with shard, ThreadPoolExecutor(max_workers=2) as pool:
        shard.delete([r.clip_id for r in corpus["records"][:2000]])
        searchers = [pool.submit(searcher) for _ in range(2)]
        shard.compact()
        shard.delete([r.clip_id for r in corpus["records"][2000:2100]])
        shard.upsert(records(corpus["vectors"][:50]))
        shard.wait_for_builds()
        stop.set()
        assert all(f.result() > 0 for f in searchers)  # .result() re-raises a searcher's error
        stats = shard.stats()
        assert stats["live"] == 12000 - 2100 + 50
        # Deleted while the merged segment was being built: still gone after the swap.
        gone = corpus["records"][2050]
        assert gone.clip_id not in {h.clip_id for h in shard.search(gone.vector[None], 5)[0]}


def test_seals_merge_in_tiers_into_few_segments_with_the_same_results(tmp_path: Path, corpus: dict) -> None:
    """16 seals of 750 rows, four to a tier: 4 x 750 -> 3000, 4 x 3000 -> 12000, one segment in the
    end, holding every row once, searching as the unmerged shard does, and listed durably."""
    recs = corpus["records"]
    flat = loaded_shard(tmp_path / "flat", corpus, seal_threshold=750, batch=750)
    with loaded_shard(tmp_path / "tiered", corpus, seal_threshold=750, batch=750, merge_factor=4) as tiered, flat:
        assert flat.stats()["segments"] == 16
        stats = tiered.stats()
        assert stats["segments"] == 1 and stats["live"] == 12000 and stats["fresh"] == 0
        exact = [brute_force({r.clip_id: r.vector for r in recs}, q, 10) for q in corpus["queries"][:20]]
        for got, want in zip(tiered.search(corpus["queries"][:20], 10, search_k=10**7), exact, strict=True):
            assert_same_hits(got, want)
        victim = recs[123]
        assert tiered.get([victim.clip_id])[0] == victim
    with ShardIndex(tmp_path / "tiered") as reopened:
        assert reopened.stats()["segments"] == 1 and reopened.stats()["live"] == 12000


def test_a_tier_is_not_merged_past_max_segment_rows(tmp_path: Path, corpus: dict) -> None:
    with loaded_shard(tmp_path, corpus, seal_threshold=750, batch=750, merge_factor=4,
                      max_segment_rows=6000) as shard:
        # 4 x 750 -> 3000 four times; four 3000s would make 12000 > 6000, so they stay.
        assert shard.stats()["segments"] == 4 and shard.stats()["live"] == 12000


def test_merge_factor_must_be_0_or_at_least_2(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="merge_factor"):
        ShardIndex(tmp_path, merge_factor=1)


def test_compaction_drops_tombstones_and_preserves_results(tmp_path: Path, corpus: dict) -> None:
    shard = loaded_shard(tmp_path, corpus, seal_threshold=3000)
    recs = corpus["records"]
    with shard:
        assert shard.stats()["segments"] == 4
        shard.delete([r.clip_id for r in recs[::3]])
        live = {r.clip_id: r.vector for i, r in enumerate(recs) if i % 3}
        before = shard.search(corpus["queries"][:10], 10, search_k=10**7)
        assert shard.stats()["tombstoned"] == 4000
        shard.compact(wait=True)
        stats = shard.stats()
        assert stats["segments"] == 1 and stats["tombstoned"] == 0 and stats["records"] == 8000
        after = shard.search(corpus["queries"][:10], 10, search_k=10**7)
        for b, a, q in zip(before, after, corpus["queries"][:10], strict=True):
            assert [h.clip_id for h in a] == [h.clip_id for h in b]
            assert_same_hits(a, brute_force(live, q, 10))
        files = {p.name.split(".")[0] for p in (tmp_path / "segments").iterdir()}
        assert len(files) == 1  # the merged-away segments' files are gone
    with ShardIndex(tmp_path) as reopened:
        assert reopened.stats()["segments"] == 1 and reopened.stats()["live"] == 8000
        assert [h.clip_id for h in reopened.search(corpus["queries"][:1], 10, search_k=10**7)[0]] == \
            [h.clip_id for h in after[0]]


# ---------------------------------------------------------------------------- recovery


def _damage_first_segment(path: Path, how: str, engine_file: str) -> None:
    manifest = json.loads((path / "segments.json").read_text())
    name = manifest["segments"][0]["name"]
    target = path / "segments" / f"{name}{engine_file}"
    if how == "delete":
        target.unlink()
    elif how == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    elif how == "manifest":
        (path / "segments.json").write_text("{ broken")


@pytest.mark.parametrize(("engine", "engine_file"), [("annoy", ".ann"), ("ivf", ".ivf")])
@pytest.mark.parametrize("how", ["delete", "truncate", "manifest"])
def test_damaged_segments_are_rebuilt_from_the_store(tmp_path: Path, corpus: dict, how: str, engine: str,
                                                      engine_file: str, caplog) -> None:
    recs = corpus["records"][:6000]
    shard = ShardIndex(tmp_path, model_id=MODEL, dim=DIM, seal_threshold=3000, n_trees=4, segment_engine=engine)
    shard.upsert(recs[:3000])
    shard.upsert(recs[3000:])
    shard.delete([recs[10].clip_id])
    shard.close()
    _damage_first_segment(tmp_path, how, engine_file)
    by_id = {r.clip_id: r.vector for r in recs if r.clip_id != recs[10].clip_id}
    with caplog.at_level(logging.WARNING, logger="services.index.shard"):
        reopened = ShardIndex(tmp_path, seal_threshold=3000, n_trees=4, segment_engine=engine)
    with reopened:
        assert any("rebuild" in r.getMessage() for r in caplog.records)
        assert reopened.stats()["live"] == 5999  # nothing dropped, even before the rebuild lands
        q = corpus["queries"][3]
        assert_same_hits(reopened.search(q[None], 10, search_k=10**7)[0], brute_force(by_id, q, 10))
        reopened.wait_for_builds()
        stats = reopened.stats()
        # A lost manifest puts every row back in the fresh buffer, sealed as one new segment.
        assert stats["live"] == 5999 and stats["fresh"] == 0
        assert stats["segments"] == (1 if how == "manifest" else 2)
        assert {p.segment.engine for p in reopened._segments} == {engine}
        assert_same_hits(reopened.search(q[None], 10, search_k=10**7)[0], brute_force(by_id, q, 10))


# ---------------------------------------------------------------------------- bad input


def _rec(**kw) -> ClipRecord:
    fields = {"clip_id": "v1:000020000", "video_id": "v1", "start_s": 20.0, "end_s": 40.0,
              "vector": np.ones(DIM, np.float32), "model_id": MODEL}
    fields.update(kw)
    return ClipRecord(**fields)


NAN_VEC = np.ones(DIM, np.float32)
NAN_VEC[3] = np.nan


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        ([_rec(clip_id="")], InvalidInput, "clip_id"),
        ([_rec(video_id="")], InvalidInput, "empty video_id"),
        ([_rec(vector=np.ones(256, np.float32))], InvalidInput,
         "vector for clip 'v1:000020000' has dimension 256, shard expects 32"),
        ([_rec(vector=np.ones((2, 16), np.float32))], InvalidInput, "shape"),
        ([_rec(vector=NAN_VEC)], InvalidInput, "NaN"),
        ([_rec(vector=np.full(DIM, np.inf, np.float32))], InvalidInput, "Inf"),
        ([_rec(vector=np.zeros(DIM, np.float32))], InvalidInput, "all zeros"),
        ([_rec(vector=None)], InvalidInput, "no vector"),
        ([_rec(start_s=50.0)], InvalidInput, "before it starts"),
        ([_rec(start_s=float("nan"))], InvalidInput, "start_s"),
        ([_rec(), _rec()], InvalidInput, "duplicate"),
        ([_rec(model_id="model-b")], WrongState, "'model-b'.*'clip4clip-test'"),
    ],
)
def test_bad_records_are_rejected_and_nothing_is_written(tmp_path: Path, batch, error, message) -> None:
    with ShardIndex(tmp_path, model_id=MODEL, dim=DIM) as shard:
        shard.upsert([_rec(clip_id="ok")])
        with pytest.raises(error, match=message):
            shard.upsert([_rec(clip_id="first"), *batch])
        assert shard.stats()["live"] == 1 and shard.get(["first"]) == []


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [
        (np.ones((1, DIM)), 0, "top_k"),
        (np.ones((1, DIM)), 1001, "top_k"),
        (np.ones((1, DIM)), True, "top_k"),
        (np.ones((1, DIM)), 2.5, "top_k"),
        (np.ones((1, 7)), 5, "dimension 7, shard expects 32"),
        (np.ones((1, 2, DIM)), 5, "dimension"),
        (np.full((1, DIM), np.nan), 5, "NaN"),
        (np.zeros((2, DIM)), 5, "all zeros"),
    ],
)
def test_bad_queries_are_rejected(sealed: ShardIndex, query, k, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        sealed.search(query, k)


def test_validate_records_normalises_and_fills_the_model(corpus: dict) -> None:
    raw = ClipRecord("c", "v", 0.0, 1.0, np.full(DIM, 3.0, np.float32))
    (clean,) = validate_records([raw], DIM, MODEL)
    assert clean.model_id == MODEL
    np.testing.assert_allclose(np.linalg.norm(clean.vector), 1.0, rtol=1e-6)
    assert clean.vector.dtype == np.float32


def test_normalising_a_stored_vector_again_keeps_its_bytes() -> None:
    """What lets a replica or another shard store a copied clip byte for byte (equal checksums)."""
    raw = np.random.default_rng(5).normal(size=(500, DIM)).astype(np.float32) * 3
    once = validate_records([ClipRecord(f"c{i}", "v", 0.0, 1.0, v) for i, v in enumerate(raw)], DIM, MODEL)
    twice = validate_records(once, DIM, MODEL)
    assert all(a.vector.tobytes() == b.vector.tobytes() for a, b in zip(once, twice, strict=True))
    assert not all(np.array_equal(r.vector, v) for r, v in zip(once, raw, strict=True))  # the first one did scale


def test_the_checksum_covers_content_not_write_order_or_segments(tmp_path: Path, corpus: dict) -> None:
    recs = corpus["records"][:300]
    with ShardIndex(tmp_path / "a", seal_threshold=100, n_trees=2) as a, ShardIndex(tmp_path / "b") as b:
        a.upsert(recs)
        a.wait_for_builds()  # a's vectors now live in segments, b's in its store
        for start in range(300, 0, -50):  # b: another order, in other batches, and a clip deleted and re-added
            b.upsert(recs[start - 50 : start])
        b.delete([recs[7].clip_id])
        b.upsert([recs[7]])
        assert a.stats()["segments"] >= 1 and b.stats()["segments"] == 0
        assert a.checksum() == b.checksum(page_size=7)
        changes = [
            ("caption", {"caption": "other"}), ("tags", {"tags": ("other",)}), ("end", {"end_s": 99.0}),
            ("metadata", {"metadata": {"programme": "x"}}), ("vector", {"vector": -recs[7].vector}),
        ]
        for what, change in changes:
            b.upsert([replace(recs[7], **change)])
            assert a.checksum() != b.checksum(), f"a different {what} left the checksum unchanged"
        b.delete([recs[7].clip_id])
        assert a.checksum() != b.checksum()
        b.upsert([recs[7]])
        assert a.checksum() == b.checksum()


def test_range_digests_sum_up_each_id_range_like_the_checksum(tmp_path: Path, corpus: dict) -> None:
    recs = sorted(corpus["records"][:300], key=lambda r: r.clip_id)
    ids = [r.clip_id for r in recs]
    with ShardIndex(tmp_path / "a", seal_threshold=100, n_trees=2) as a, ShardIndex(tmp_path / "b") as b:
        a.upsert(recs)
        a.wait_for_builds()
        for start in range(300, 0, -50):  # b: the same clips in another order and batches, unsealed
            b.upsert(recs[start - 50 : start][::-1])
        # Bounds that are stored ids, ids between stored ones, and ranges with no clip in them.
        bounds = [ids[9], ids[10] + "~", ids[10] + "~~", ids[150], ids[299], ids[299] + "~"]
        digests = a.digests(bounds)
        assert digests == b.digests(bounds, page_size=7)
        assert [d.clips for d in digests] == [10, 1, 0, 140, 149, 0, 0]
        with ShardIndex(tmp_path / "part") as part:  # one range's digest is the checksum of its clips
            part.upsert(recs[11:151])
            assert digests[3].sha256.hex() == part.checksum()
        empty = hashlib.sha256().digest()
        assert digests[2].sha256 == digests[5].sha256 == digests[6].sha256 == empty
        assert a.digests([]) == [RangeDigest(bytes.fromhex(a.checksum()), 300)]

        b.upsert([replace(recs[200], caption="other")])
        b.delete([recs[5].clip_id])
        changed = [i for i, (x, y) in enumerate(zip(a.digests(bounds), b.digests(bounds), strict=True)) if x != y]
        assert changed == [0, 4]


def test_clip_ids_and_range_digests_order_ids_as_the_store_does(tmp_path: Path) -> None:
    """Python compares ids by code point, SQLite by UTF-8 bytes: the same order, astral characters included."""
    ids = ["Z:1", "a:1", "가:1", "\ufffd:1", "\U0001f600:1", "a:10", "a:1~"]
    with ShardIndex(tmp_path, model_id=MODEL, dim=DIM) as shard:
        shard.upsert([_rec(clip_id=cid, video_id=cid[:-2]) for cid in ids])
        stored = [r.clip_id for r in shard.scan(limit=100, with_vectors=False)]
        assert shard.clip_ids() == stored == sorted(ids)
        assert [d.clips for d in shard.digests(stored)] == [1] * len(ids) + [0]


@pytest.mark.parametrize(("bounds", "message"), [
    (["b", "a"], "strictly increasing"),
    (["a", "a"], "strictly increasing"),
    (["a", ""], "must not be empty"),
    ([f"{i:06d}" for i in range(10_001)], "at most 10000"),
])
def test_range_digests_refuse_bounds_that_do_not_define_ranges(tmp_path: Path, bounds: list[str],
                                                                message: str) -> None:
    with ShardIndex(tmp_path) as shard, pytest.raises(InvalidInput, match=message):
        shard.digests(bounds)


def test_first_write_must_name_a_model(tmp_path: Path) -> None:
    with ShardIndex(tmp_path) as shard, pytest.raises(InvalidInput, match="model_id"):
        shard.upsert([_rec(model_id="")])


def test_full_disk_is_storage_full_and_acknowledges_nothing(tmp_path: Path, corpus: dict) -> None:
    with ShardIndex(tmp_path, model_id=MODEL, dim=DIM, max_store_bytes=200 * 1024) as shard:
        shard.upsert(corpus["records"][:10])
        with pytest.raises(StorageFull):
            shard.upsert(corpus["records"][10:3000])
        assert shard.stats()["live"] == 10
        unwritten = corpus["records"][20]
        assert shard.search(unwritten.vector[None], 1)[0][0].clip_id != unwritten.clip_id


def test_closed_shard_refuses_work(tmp_path: Path, corpus: dict) -> None:
    shard = ShardIndex(tmp_path, model_id=MODEL, dim=DIM)
    shard.upsert(corpus["records"][:5])
    shard.close()
    shard.close()
    with pytest.raises(WrongState, match="closed"):
        shard.search(corpus["queries"][:1], 5)


# ---------------------------------------------------------------------------- one copy of each vector


def test_sealed_vectors_live_once_in_their_segment(tmp_path: Path, corpus: dict) -> None:
    recs = corpus["records"][:5000]
    with ShardIndex(tmp_path, model_id=MODEL, dim=DIM, seal_threshold=4000) as shard:
        shard.upsert(recs[:4000])
        shard.upsert(recs[4000:])
        shard.wait_for_builds()
        store = shard._store
        # 4000 sealed rows: their vectors are in the segment only; the 1000 fresh ones in the store.
        assert shard.stats()["segments"] == 1 and store.held_vector_count() == 1000
        assert store.get([recs[0].clip_id])[0].vector is None
        assert shard.get([recs[0].clip_id, recs[4500].clip_id]) == [recs[0], recs[4500]]
        stats = shard.stats()
        assert stats["bytes_on_disk"] == stats["store_bytes"] + stats["segment_bytes"]
        assert stats["largest_segment"] == 4000
    with ShardIndex(tmp_path) as shard:
        assert shard.get([recs[1].clip_id]) == [recs[1]]
        q = corpus["queries"][0]
        assert_same_hits(shard.search(q[None], 10, search_k=10**7)[0],
                         brute_force({r.clip_id: r.vector for r in recs}, q, 10))


def test_projected_segments_keep_recall_and_exact_scores(tmp_path: Path, corpus: dict) -> None:
    with loaded_shard(tmp_path, corpus, annoy_dim=16, segment_engine="annoy") as shard:
        assert all(p.segment.annoy_dim == 16 for p in shard._segments)
        assert_recall_and_exact_scores(shard, corpus)


def test_compaction_keeps_segments_within_max_segment_rows(tmp_path: Path, corpus: dict) -> None:
    with loaded_shard(tmp_path, corpus, seal_threshold=2000, max_segment_rows=5000) as shard:
        assert shard.stats()["segments"] == 6
        shard.compact(wait=True, small_segment_rows=10**6)
        sizes = sorted(p.size for p in shard._segments)
        assert sizes == [4000, 4000, 4000] and shard.stats()["live"] == 12000
        assert shard.get([clip_id(11999)])[0].vector is not None


def test_a_shard_written_before_vectors_were_kept_once_opens_and_migrates(tmp_path: Path, corpus: dict) -> None:
    """Schema-1 store (vector in every row) plus a version-1 segment, as the previous release wrote them."""
    from tests.unit.test_index_store import write_v1_store

    recs = corpus["records"][:3000]
    write_v1_store(tmp_path / "clips.sqlite3", recs, DIM)
    seg = AnnoySegment.build(tmp_path / "segments", "seg-000000002000-old", [r.clip_id for r in recs[:2000]],
                             np.stack([r.vector for r in recs[:2000]]), seqs=np.arange(1, 2001), n_trees=4)
    manifest_path = tmp_path / "segments" / f"{seg.name}.json"
    old = json.loads(manifest_path.read_text())
    for key in ("annoy_dim", "rerank"):
        old.pop(key)
    manifest_path.write_text(json.dumps({**old, "version": 1}))
    (tmp_path / "segments.json").write_text(json.dumps({"version": 1, "model_id": MODEL, "dim": DIM, "segments": [
        {"name": seg.name, "seq_ranges": [[1, 2000]], "n_items": 2000}]}))
    with ShardIndex(tmp_path, seal_threshold=5000) as shard:
        stats = shard.stats()
        assert stats["live"] == 3000 and stats["segments"] == 1 and stats["fresh"] == 1000
        assert shard._store.held_vector_count() == 1000  # the segment's rows were released
        assert shard.get([recs[5].clip_id, recs[2500].clip_id]) == [recs[5], recs[2500]]
        q = corpus["queries"][1]
        assert_same_hits(shard.search(q[None], 10, search_k=10**7)[0],
                         brute_force({r.clip_id: r.vector for r in recs}, q, 10))


def test_segments_searched_on_threads_give_the_same_hits(tmp_path: Path, corpus: dict) -> None:
    loaded_shard(tmp_path, corpus).close()
    with ShardIndex(tmp_path) as one, ShardIndex(tmp_path, search_threads=3) as three:
        assert three.stats()["segments"] == 3
        for a, b in zip(one.search(corpus["queries"], 10), three.search(corpus["queries"], 10), strict=True):
            assert [(h.clip_id, h.score) for h in a] == [(h.clip_id, h.score) for h in b]


# ---------------------------------------------------------------------------- IVF engine


def test_ivf_segments_give_high_recall_and_exact_scores(tmp_path: Path, corpus: dict) -> None:
    with loaded_shard(tmp_path, corpus, seal_threshold=6000, segment_engine="ivf") as shard:
        assert [p.segment.engine for p in shard._segments] == ["ivf"] * 2
        # Large enough that the lists, not the small-segment exact scan, answer.
        assert all(p.segment.cost_in_rows(10) < p.size for p in shard._segments)
        assert_recall_and_exact_scores(shard, corpus)


def test_a_shard_switched_to_the_ivf_engine_keeps_its_forests_until_compaction(tmp_path: Path,
                                                                               corpus: dict) -> None:
    recs = corpus["records"][:8000]
    live = {r.clip_id: r.vector for r in recs if r.clip_id != recs[3].clip_id}
    with ShardIndex(tmp_path, model_id=MODEL, dim=DIM, seal_threshold=4000, n_trees=4,
                    segment_engine="annoy") as shard:
        shard.upsert(recs[:4000])
        shard.upsert(recs[4000:])
        shard.delete([recs[3].clip_id])
        shard.wait_for_builds()
    with ShardIndex(tmp_path, seal_threshold=4000, segment_engine="ivf") as shard:
        assert [p.segment.engine for p in shard._segments] == ["annoy", "annoy"]
        q = corpus["queries"][2]
        assert_same_hits(shard.search(q[None], 10, search_k=10**7)[0], brute_force(live, q, 10))
        shard.compact(wait=True, max_dead_fraction=0.0)
        assert [p.segment.engine for p in shard._segments] == ["ivf", "annoy"]
        assert shard.stats()["live"] == 7999 and shard._store.held_vector_count() == 0
        assert_same_hits(shard.search(q[None], 10, search_k=10**7)[0], brute_force(live, q, 10))
    with ShardIndex(tmp_path, segment_engine="ivf") as reopened:
        assert [p.segment.engine for p in reopened._segments] == ["ivf", "annoy"]
        assert reopened.get([recs[5].clip_id]) == [recs[5]]


def test_unknown_segment_engine_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="segment_engine"):
        ShardIndex(tmp_path, model_id=MODEL, dim=DIM, segment_engine="hnsw")
