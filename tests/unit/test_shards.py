"""Shard placement is stable, balanced and moves few videos when shards are added."""

from __future__ import annotations

from collections import Counter

import pytest

from services.common.clip_ids import clip_id_for, video_of_clip
from services.common.errors import InvalidInput
from services.common.shards import shard_for_video


def test_placement_is_stable_and_in_range() -> None:
    # Fixed expectations: a change of the function would silently strand stored clips.
    assert [shard_for_video(f"video{i}", 4) for i in range(8)] == [2, 3, 2, 2, 3, 3, 2, 3]
    assert all(0 <= shard_for_video(f"v{i}", 3) < 3 for i in range(1000))
    assert shard_for_video("anything", 1) == 0


def test_placement_is_balanced_and_moves_little_when_growing() -> None:
    ids = [f"video-{i}" for i in range(20_000)]
    counts = Counter(shard_for_video(v, 8) for v in ids)
    assert min(counts.values()) > 0.85 * 20_000 / 8
    moved = sum(shard_for_video(v, 8) != shard_for_video(v, 9) for v in ids)
    assert moved / len(ids) == pytest.approx(1 / 9, abs=0.02)


def test_clip_ids_round_trip() -> None:
    assert clip_id_for("news:2024-01-01", 40.0) == "news:2024-01-01:000040000"
    assert video_of_clip("news:2024-01-01:000040000") == "news:2024-01-01"
    with pytest.raises(InvalidInput):
        video_of_clip("no-start")
    with pytest.raises(InvalidInput):
        shard_for_video("", 2)
