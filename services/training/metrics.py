"""Retrieval metrics as CLIP4Clip reports them: R@K, median and mean rank of the ground truth.

A query's rank is 1-based: 1 when its ground truth scores highest. Ties count against the
ground truth -- rank = 1 + the number of wrong candidates scoring at least as high as the best
correct one -- so a collapsed model that scores everything alike gets the worst rank, never the
best (CLIP4Clip's ``compute_metrics`` leaves exact ties undefined). When a query has several
correct candidates (video->text: a clip and all its captions), the best-placed one counts, and
the other correct candidates never push it down.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RECALL_KS = (1, 5, 10)


def ranks(scores: np.ndarray, query_labels: np.ndarray, candidate_labels: np.ndarray,
          chunk: int = 1024) -> np.ndarray:
    """1-based rank of each query's best correct candidate in ``scores [q, n]``.

    Candidate ``j`` is correct for query ``i`` when ``candidate_labels[j] == query_labels[i]``
    (e.g. both name the same clip). Every query needs at least one correct candidate.
    """
    scores = np.asarray(scores)
    query_labels, candidate_labels = np.asarray(query_labels), np.asarray(candidate_labels)
    if scores.shape != (len(query_labels), len(candidate_labels)):
        raise ValueError(f"scores {scores.shape} do not match {len(query_labels)} queries x "
                         f"{len(candidate_labels)} candidates")
    out = np.empty(len(query_labels), dtype=np.int64)
    for start in range(0, len(query_labels), chunk):
        block = scores[start : start + chunk].astype(np.float64)
        correct = candidate_labels[None, :] == query_labels[start : start + chunk, None]
        if not correct.any(axis=1).all():
            missing = start + int(np.flatnonzero(~correct.any(axis=1))[0])
            raise ValueError(f"query {missing} has no correct candidate")
        best = np.where(correct, block, -np.inf).max(axis=1)
        out[start : start + chunk] = 1 + ((block >= best[:, None]) & ~correct).sum(axis=1)
    return out


def summarise(rank: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict[str, float | int]:
    """``r1``, ``r5``, ``r10`` (fractions 0..1), ``median_rank``, ``mean_rank`` and ``n`` of ranks."""
    rank = np.asarray(rank)
    if rank.size == 0:
        raise ValueError("no ranks to summarise")
    summary: dict[str, float | int] = {f"r{k}": float(np.mean(rank <= k)) for k in ks}
    # CLIP4Clip: np.median(ind) + 1 over 0-based ranks, i.e. the plain median of 1-based ranks.
    summary["median_rank"] = float(np.median(rank))
    summary["mean_rank"] = float(np.mean(rank))
    summary["n"] = int(rank.size)
    return summary


def recall_curve(rank: np.ndarray, max_k: int) -> list[float]:
    """R@1 .. R@max_k as fractions."""
    rank = np.asarray(rank)
    return [float(np.mean(rank <= k)) for k in range(1, max_k + 1)]


def motion_twins(attributes: Sequence[Mapping[str, Any]], key: str = "motion") -> list[list[int]]:
    """For each clip, the clips whose attributes equal its own except for a different ``key``.

    Clips without ``key`` have no twins. Such a pair shows the same scene moving differently, so
    a model that ignores frame order (meanP) cannot tell the two apart.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, attrs in enumerate(attributes):
        if key in attrs:
            rest = {k: v for k, v in attrs.items() if k != key}
            groups[json.dumps(rest, sort_keys=True, default=str)].append(i)
    twins: list[list[int]] = [[] for _ in attributes]
    for members in groups.values():
        for i in members:
            twins[i] = [j for j in members if attributes[j][key] != attributes[i][key]]
    return twins


def twin_accuracy(scores: np.ndarray, truth: np.ndarray, twins: Sequence[Sequence[int]]) -> float:
    """Fraction of queries whose true clip scores strictly above every one of its motion twins.

    ``scores [q, n_clips]``; ``truth[i]`` is query ``i``'s clip; queries whose clip has no twin
    must be left out by the caller.
    """
    wins = [scores[i, truth[i]] > max(scores[i, j] for j in twins[truth[i]]) for i in range(len(truth))]
    if not wins:
        raise ValueError("no query has a motion twin")
    return float(np.mean(wins))
