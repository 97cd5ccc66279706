"""Retrieval metrics on hand-made similarity matrices whose ranks are known, and the eval report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.training import metrics
from services.training.evaluate import EvalSet, format_table, retrieval_report, write_report


def test_rank_is_one_plus_wrong_candidates_scoring_higher() -> None:
    scores = np.array([
        [0.9, 0.1, 0.5, 0.2],  # truth 0 is best: rank 1
        [0.9, 0.1, 0.5, 0.2],  # truth 2 is second: rank 2
        [0.9, 0.1, 0.5, 0.2],  # truth 1 is last: rank 4
    ])
    rank = metrics.ranks(scores, np.array([0, 2, 1]), np.arange(4))
    assert rank.tolist() == [1, 2, 4]


def test_ties_count_against_the_ground_truth() -> None:
    # A collapsed model scoring everything alike must get the worst rank, not R@1 = 100%.
    scores = np.full((3, 3), 0.5)
    assert metrics.ranks(scores, np.arange(3), np.arange(3)).tolist() == [3, 3, 3]
    tied_with_one = np.array([[0.7, 0.7, 0.1]])
    assert metrics.ranks(tied_with_one, np.array([0]), np.arange(3)).tolist() == [2]


def test_several_correct_candidates_best_one_counts_and_others_do_not_push_it_down() -> None:
    # Candidates are captions labelled by their clip: clip 5 has captions 0 and 2.
    candidate_labels = np.array([5, 7, 5, 8])
    scores = np.array([
        [0.2, 0.9, 0.8, 0.1],  # best correct (0.8) is beaten by one wrong caption: rank 2
        [0.9, 0.1, 0.9, 0.3],  # two correct captions tie at the top: rank 1
    ])
    assert metrics.ranks(scores, np.array([5, 5]), candidate_labels).tolist() == [2, 1]


def test_ranks_are_computed_the_same_in_chunks() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 20))
    truth = rng.integers(0, 20, size=50)
    whole = metrics.ranks(scores, truth, np.arange(20), chunk=1000)
    assert np.array_equal(whole, metrics.ranks(scores, truth, np.arange(20), chunk=7))
    # Against a direct count with a stable descending sort (no ties in continuous scores).
    order = np.argsort(-scores, axis=1, kind="stable")
    expected = np.array([int(np.flatnonzero(order[i] == truth[i])[0]) + 1 for i in range(50)])
    assert np.array_equal(whole, expected)


def test_query_without_a_correct_candidate_is_refused() -> None:
    with pytest.raises(ValueError, match="query 1 has no correct candidate"):
        metrics.ranks(np.zeros((2, 2)), np.array([0, 9]), np.arange(2))


def test_summary_matches_clip4clip_definitions() -> None:
    summary = metrics.summarise(np.array([1, 2, 6, 11]))
    assert summary == {"r1": 0.25, "r5": 0.5, "r10": 0.75, "median_rank": 4.0, "mean_rank": 5.0, "n": 4}
    assert metrics.recall_curve(np.array([1, 3, 3]), 4) == [1 / 3, 1 / 3, 1.0, 1.0]


def test_motion_twins_differ_only_in_motion() -> None:
    attributes = [
        {"shape": "square", "colour": "red", "motion": "left"},
        {"shape": "square", "colour": "red", "motion": "right"},
        {"shape": "square", "colour": "blue", "motion": "left"},  # another colour: no twin
        {"shape": "square", "colour": "red", "motion": "left"},  # same motion as 0: twin of 1 only
        {"shape": "square", "colour": "red"},  # no motion at all
    ]
    assert metrics.motion_twins(attributes) == [[1], [0, 3], [], [1], []]


def _evalset() -> tuple[EvalSet, np.ndarray, np.ndarray]:
    """Clips A, B (motion twins) and C on the unit axes; captions aimed at known ranks."""
    e0, e1, e2 = np.eye(3, dtype=np.float32)
    unit = lambda v: (v / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    captions = [
        ("en", 0, e0),  # A: rank 1
        ("en", 1, unit(0.99 * e0 + 0.1 * e1)),  # B: A scores higher, rank 2
        ("en", 2, e2),  # C: rank 1
        ("ko", 0, unit(e1 + 0.1 * e0)),  # A: B scores higher, rank 2
        ("ko", 0, e0),  # A: rank 1
        ("ko", 2, unit(e0 + e2)),  # C: tied with A, which counts against it: rank 2
    ]
    evalset = EvalSet(
        clip_ids=["f:000000000", "f:000010000", "f:000020000"],
        rows=np.arange(3),
        attributes=[{"colour": "red", "motion": "left"}, {"colour": "red", "motion": "right"},
                    {"colour": "blue", "motion": "left"}],
        captions=[f"caption {i}" for i in range(len(captions))],
        caption_clip=np.array([c for _, c, _ in captions]),
        caption_language=np.array([lang for lang, _, _ in captions]),
    )
    return evalset, np.stack([v for _, _, v in captions]), np.stack([e0, e1, e2])


def test_report_per_language_and_direction() -> None:
    evalset, text_emb, clip_emb = _evalset()
    report = retrieval_report(text_emb, clip_emb, evalset)
    assert set(report) == {"en", "ko"}
    en, ko = report["en"], report["ko"]
    assert en["t2v"]["r1"] == pytest.approx(2 / 3)
    assert (en["t2v"]["median_rank"], en["t2v"]["mean_rank"]) == (1.0, pytest.approx(4 / 3))
    assert ko["t2v"]["r1"] == pytest.approx(1 / 3)
    assert (ko["t2v"]["median_rank"], ko["t2v"]["mean_rank"]) == (2.0, pytest.approx(5 / 3))
    assert ko["t2v"]["r5"] == 1.0 and ko["t2v"]["n"] == 3
    # Video->text: every clip finds one of its captions first; B has no Korean caption to query with.
    assert en["v2t"]["r1"] == 1.0 and en["v2t"]["n"] == 3
    assert ko["v2t"]["r1"] == 1.0 and ko["v2t"]["n"] == 2
    # Motion subset: the queries of A and B only; each language wins one twin comparison of two.
    assert en["t2v_motion"]["n"] == 2 and en["t2v_motion"]["r1"] == 0.5
    assert en["t2v_motion"]["twin_accuracy"] == 0.5
    assert ko["t2v_motion"]["n"] == 2 and ko["t2v_motion"]["twin_accuracy"] == 0.5
    assert "t2v_index" not in en


def test_no_motion_subset_without_motion_attributes() -> None:
    evalset, text_emb, clip_emb = _evalset()
    report = retrieval_report(text_emb, clip_emb, evalset, motion_key="speed")
    assert "t2v_motion" not in report["en"]


@pytest.mark.parametrize(("engine", "structure"), [("ivf", "nlist"), ("annoy", "n_trees")])
def test_recall_through_the_index_matches_exact_search_on_easy_data(engine: str, structure: str) -> None:
    rng = np.random.default_rng(1)
    clip_emb = rng.normal(size=(400, 16)).astype(np.float32)
    clip_emb /= np.linalg.norm(clip_emb, axis=1, keepdims=True)
    evalset = EvalSet([f"v:{i:09d}" for i in range(400)], np.arange(400), [{}] * 400,
                      [str(i) for i in range(400)], np.arange(400), np.array(["en"] * 400))
    report = retrieval_report(clip_emb.copy(), clip_emb, evalset, index_engine=engine)
    index = report["en"]["t2v_index"]
    assert report["en"]["t2v"]["r1"] == 1.0
    assert index["engine"] == engine and index["n"] == 400
    assert index["r1"] == 1.0 and index["recall_lost"] == {"r1": 0.0, "r5": 0.0, "r10": 0.0}
    assert index[structure] > 0 and index["search_k"] > 0


def test_an_unknown_index_engine_is_refused() -> None:
    evalset, text_emb, clip_emb = _evalset()
    with pytest.raises(ValueError, match="no index engine 'hnsw'"):
        retrieval_report(text_emb, clip_emb, evalset, index_engine="hnsw")


def test_report_files_and_table(tmp_path) -> None:
    evalset, text_emb, clip_emb = _evalset()
    report = {"model_id": "0123456789abcdef", "temporal": "seqTransf", "split": "test", "n_clips": 3,
              "languages": retrieval_report(text_emb, clip_emb, evalset)}
    json_path, png_path = write_report(report, tmp_path / "report")
    written = json.loads(json_path.read_text())
    for language in ("en", "ko"):
        for direction in ("t2v", "v2t"):
            assert {"r1", "r5", "r10", "median_rank", "mean_rank"} <= set(written["languages"][language][direction])
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(report)
    assert "Text -> Video" in table and "Video -> Text" in table
    # Percentages as in the paper: en text->video R@1 is 2 of 3.
    row = next(line for line in table.splitlines() if line.startswith("CLIP4Clip-seqTransf (en)"))
    assert row.split()[2:7] == ["66.7", "100.0", "100.0", "1.0", "1.3"]
