"""Segments: immutable memory-mapped Annoy and IVF segments with a measured search effort."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.index.engines import load_segment
from services.index.ivf import IvfSegment
from services.index.segment import AnnoySegment, SegmentCorrupt, exact_top_k, top_k

DIM = 32


def clustered(rng: np.random.Generator, n: int, n_clusters: int, spread: float = 1.0,
              centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    if centres is None:
        centres = rng.normal(size=(n_clusters, DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    v = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, DIM)) * spread / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), centres


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    vectors, centres = clustered(rng, 4000, 20)
    queries, _ = clustered(rng, 200, 20, centres=centres)
    return vectors, queries


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, data) -> AnnoySegment:
    vectors, _ = data
    ids = [f"c{i}" for i in range(len(vectors))]
    return AnnoySegment.build(tmp_path_factory.mktemp("seg"), "s1", ids, vectors, seqs=np.arange(1, 4001),
                              n_trees=8, seed=3)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)) / truth.size


def test_recall_on_held_out_queries_meets_target(built: AnnoySegment, data) -> None:
    vectors, queries = data
    truth, _ = exact_top_k(queries, vectors, 10)
    ids, _ = built.search(queries, 10)
    assert recall(ids, truth) >= 0.95
    # A fraction of the forest is inspected, so the calibration bought speed, not exhaustive search.
    assert built.search_k < built.n_items * built.n_trees


def test_search_k_is_measured_for_the_recall_target(tmp_path: Path, data) -> None:
    vectors, _ = data
    ids = [str(i) for i in range(len(vectors))]
    loose = AnnoySegment.build(tmp_path, "loose", ids, vectors, n_trees=8, recall_target=0.5)
    strict = AnnoySegment.build(tmp_path, "strict", ids, vectors, n_trees=8, recall_target=0.995)
    assert loose.search_k < strict.search_k
    for seg, target in ((loose, 0.5), (strict, 0.995)):
        manifest = json.loads((tmp_path / f"{seg.name}.json").read_text())
        assert manifest["search_k"] == seg.search_k
        assert manifest["calibration"]["recall"] >= target
        assert manifest["calibration"]["recall_target"] == target


def test_scores_are_cosines_and_sorted(built: AnnoySegment, data) -> None:
    vectors, queries = data
    ids, scores = built.search(queries[:20], 5)
    for row_ids, row_scores, q in zip(ids, scores, queries[:20], strict=True):
        np.testing.assert_allclose(row_scores, vectors[row_ids] @ q, atol=1e-5)
        assert list(row_scores) == sorted(row_scores, reverse=True)


def test_load_gives_the_same_answers_memory_mapped(built: AnnoySegment, data) -> None:
    _, queries = data
    loaded = AnnoySegment.load(built.directory, built.name, dim=DIM)
    assert isinstance(loaded.vectors, np.memmap)
    assert loaded.n_items == 4000 and loaded.search_k == built.search_k
    assert loaded.clip_ids[17] == "c17" and loaded.seqs[17] == 18
    a, sa = built.search(queries[:30], 10)
    b, sb = loaded.search(queries[:30], 10)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb)
    assert loaded.bytes_on_disk == sum(p.stat().st_size for p in loaded.files())


def _copy(src: AnnoySegment, dst: Path) -> None:
    for p in src.files():
        (dst / p.name).write_bytes(p.read_bytes())


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _edit_manifest(key: str, value):
    def edit(p: Path) -> None:
        m = json.loads(p.read_text())
        m[key] = value
        p.write_text(json.dumps(m))

    return edit


@pytest.mark.parametrize(
    ("suffix", "damage", "message"),
    [
        (".ann", Path.unlink, "missing s1.ann"),
        (".vectors.npy", Path.unlink, "missing"),
        (".ids.json", Path.unlink, "missing"),
        (".json", Path.unlink, "no manifest"),
        (".ann", _truncate, "bytes"),
        (".vectors.npy", _truncate, "bytes"),
        (".json", lambda p: p.write_text("{not json"), "unreadable manifest"),
        (".json", _edit_manifest("n_items", 3999), "items"),
        (".json", _edit_manifest("dim", 16), "dim 16"),
    ],
)
def test_load_rejects_damaged_segments(tmp_path: Path, built: AnnoySegment, suffix, damage, message) -> None:
    _copy(built, tmp_path)
    damage(tmp_path / f"s1{suffix}")
    with pytest.raises(SegmentCorrupt, match=message):
        AnnoySegment.load(tmp_path, "s1", dim=DIM)


def test_load_rejects_id_map_of_wrong_length(tmp_path: Path, built: AnnoySegment) -> None:
    _copy(built, tmp_path)
    ids_path = tmp_path / "s1.ids.json"
    ids = json.loads(ids_path.read_text())
    ids["clip_ids"].pop()
    ids["seqs"].pop()
    ids_path.write_text(json.dumps(ids))
    manifest = json.loads((tmp_path / "s1.json").read_text())
    manifest["file_bytes"][".ids.json"] = ids_path.stat().st_size  # sizes agree; the count does not
    (tmp_path / "s1.json").write_text(json.dumps(manifest))
    with pytest.raises(SegmentCorrupt, match="3999 ids"):
        AnnoySegment.load(tmp_path, "s1")


def test_load_rejects_other_dimension(built: AnnoySegment) -> None:
    with pytest.raises(SegmentCorrupt, match="expects 64"):
        AnnoySegment.load(built.directory, built.name, dim=64)


def test_tiny_segment_returns_everything(tmp_path: Path) -> None:
    v = np.eye(DIM, dtype=np.float32)[:3]
    seg = AnnoySegment.build(tmp_path, "tiny", ["a", "b", "c"], v)
    ids, scores = seg.search(v[1], 10)
    assert sorted(ids[0][:3].tolist()) == [0, 1, 2] and ids[0][0] == 1
    assert (ids[0][3:] == -1).all() and np.isneginf(scores[0][3:]).all()


def test_remove_deletes_all_files(tmp_path: Path, data) -> None:
    vectors, _ = data
    seg = AnnoySegment.build(tmp_path, "gone", [str(i) for i in range(100)], vectors[:100])
    seg.remove()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("ids", "vectors"),
    [([], np.zeros((0, DIM), np.float32)), (["a", "b"], np.ones((3, DIM), np.float32)),
     (["a"], np.ones(DIM, np.float32))],
)
def test_build_rejects_mismatched_input(tmp_path: Path, ids, vectors) -> None:
    with pytest.raises(InvalidInput):
        AnnoySegment.build(tmp_path, "bad", ids, vectors)


def test_search_rejects_wrong_query_dimension(built: AnnoySegment) -> None:
    with pytest.raises(InvalidInput, match="dimension 5"):
        built.search(np.ones((1, 5), np.float32), 3)


def test_top_k_sorts_and_clips() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, -1.0, 0.0, 0.2]], dtype=np.float32)
    idx, vals = top_k(scores, 2)
    np.testing.assert_array_equal(idx, [[1, 3], [0, 3]])
    np.testing.assert_allclose(vals, [[0.9, 0.7], [1.0, 0.2]])
    idx, _ = top_k(scores, 10)
    assert idx.shape == (2, 4)


# ---------------------------------------------------------------------------- projected forest


@pytest.fixture(scope="module")
def projected(tmp_path_factory: pytest.TempPathFactory, data) -> AnnoySegment:
    vectors, _ = data
    ids = [f"c{i}" for i in range(len(vectors))]
    return AnnoySegment.build(tmp_path_factory.mktemp("proj"), "p1", ids, vectors, seqs=np.arange(1, 4001),
                              n_trees=8, seed=3, annoy_dim=8, rerank=60)


def test_projected_forest_with_exact_rerank_meets_the_recall_target(projected: AnnoySegment, built: AnnoySegment,
                                                                   data) -> None:
    vectors, queries = data
    assert projected.annoy_dim == 8 and projected.projection.shape == (DIM, 8)
    # The forest holds 8 of 32 dimensions: fewer bytes than a full-dimension forest of as many trees.
    assert (projected.directory / "p1.ann").stat().st_size < 0.7 * (built.directory / "s1.ann").stat().st_size
    truth, _ = exact_top_k(queries, vectors, 10)
    ids, scores = projected.search(queries, 10)
    assert recall(ids, truth) >= 0.95
    # Scores are the exact cosines, best first, whatever the projected forest measured.
    for q, row_ids, row_scores in zip(queries, ids, scores, strict=True):
        np.testing.assert_allclose(row_scores, vectors[row_ids] @ q, atol=1e-6)
        assert (np.diff(row_scores) <= 0).all()


def test_projected_segment_loads_and_checks_its_projection(tmp_path: Path, projected: AnnoySegment, data) -> None:
    _, queries = data
    loaded = AnnoySegment.load(projected.directory, "p1", dim=DIM)
    np.testing.assert_array_equal(loaded.search(queries[:20], 10)[0], projected.search(queries[:20], 10)[0])
    assert any(p.name == "p1.projection.npy" for p in loaded.files())
    _copy(projected, tmp_path)
    np.save(tmp_path / "p1.projection.npy", np.ones((DIM, 8), np.float32))  # same size, other numbers
    with pytest.raises(SegmentCorrupt, match="differs"):
        AnnoySegment.load(tmp_path, "p1", dim=DIM)


def test_rows_are_readable_without_the_forest(tmp_path: Path, projected: AnnoySegment, data) -> None:
    vectors, _ = data
    _copy(projected, tmp_path)
    (tmp_path / "p1.ann").unlink()
    clip_ids, seqs, got = AnnoySegment.read_rows(tmp_path, "p1", dim=DIM)
    assert clip_ids[5] == "c5" and seqs[5] == 6
    np.testing.assert_array_equal(got, vectors)
    _truncate(tmp_path / "p1.vectors.npy")
    assert AnnoySegment.read_rows(tmp_path, "p1", dim=DIM) is None


# ---------------------------------------------------------------------------- IVF engine


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory, data) -> IvfSegment:
    vectors, _ = data
    ids = [f"c{i}" for i in range(len(vectors))]
    return IvfSegment.build(tmp_path_factory.mktemp("ivf"), "g1", ids, vectors, seqs=np.arange(1, 4001), seed=3,
                            list_rows=100)


def test_ivf_segment_meets_the_recall_target_with_exact_scores(lists: IvfSegment, data) -> None:
    vectors, queries = data
    truth, _ = exact_top_k(queries, vectors, 10)
    ids, scores = lists.search(queries, 10)
    assert recall(ids, truth) >= 0.95
    for q, row_ids, row_scores in zip(queries, ids, scores, strict=True):
        np.testing.assert_allclose(row_scores, vectors[row_ids] @ q, atol=1e-6)
        assert (np.diff(row_scores) <= 0).all()
    # The calibrated lists are a fraction of the segment: not an exhaustive scan.
    assert lists.nlist == 40 and lists.cost_in_rows(10) < lists.n_items // 2


def test_ivf_segment_reopens_by_its_manifests_engine(lists: IvfSegment, built: AnnoySegment, data) -> None:
    _, queries = data
    loaded = load_segment(lists.directory, "g1", dim=DIM)
    assert isinstance(loaded, IvfSegment) and isinstance(loaded.vectors, np.memmap)
    assert loaded.search_k == lists.search_k and loaded.seqs[17] == 18
    np.testing.assert_array_equal(loaded.search(queries[:30], 10)[0], lists.search(queries[:30], 10)[0])
    assert isinstance(load_segment(built.directory, "s1", dim=DIM), AnnoySegment)
    with pytest.raises(SegmentCorrupt, match="'ivf' segment, not 'annoy'"):
        AnnoySegment.load(lists.directory, "g1", dim=DIM)


@pytest.mark.parametrize(
    ("suffix", "damage", "message"),
    [
        (".ivf", Path.unlink, "missing g1.ivf"),
        (".ivf", _truncate, "bytes"),
        (".json", _edit_manifest("engine", "hnsw"), "needs engine 'hnsw'"),
    ],
)
def test_ivf_segment_load_rejects_damage(tmp_path: Path, lists: IvfSegment, suffix, damage, message) -> None:
    _copy(lists, tmp_path)
    damage(tmp_path / f"g1{suffix}")
    with pytest.raises(SegmentCorrupt, match=message):
        load_segment(tmp_path, "g1", dim=DIM)


def test_ivf_segment_load_rejects_lists_of_other_vectors(tmp_path: Path, lists: IvfSegment, data) -> None:
    _copy(lists, tmp_path)
    vectors, _ = data
    np.save(tmp_path / "g1.vectors.npy", vectors[::-1].copy())  # same size, rows in another order
    with pytest.raises(SegmentCorrupt, match="differs"):
        load_segment(tmp_path, "g1", dim=DIM)


def test_tiny_ivf_segment_returns_everything(tmp_path: Path) -> None:
    v = np.eye(DIM, dtype=np.float32)[:3]
    seg = IvfSegment.build(tmp_path, "tiny", ["a", "b", "c"], v)
    ids, scores = seg.search(v[1], 10)
    assert sorted(ids[0][:3].tolist()) == [0, 1, 2] and ids[0][0] == 1
    assert (ids[0][3:] == -1).all() and np.isneginf(scores[0][3:]).all()
