"""The shard's filter index: the smallest candidate pool of a filter, and removal from every index."""

from __future__ import annotations

from services.index.filters import FilterIndex
from services.index.records import ClipRecord, SearchFilter


def _rec(clip_id: str, video: str, tags=(), **meta: str) -> ClipRecord:
    return ClipRecord(clip_id, video, 0.0, 20.0, None, tags=tuple(tags), metadata=meta)


def test_the_smallest_indexed_pool_is_chosen() -> None:
    index = FilterIndex()
    for i in range(5):
        index.add(_rec(f"v{i}:000000000", f"v{i}", tags=["news"], programme="9시 뉴스" if i == 3 else "other"))
    assert index.smallest_pool(SearchFilter(tags=("news",), metadata={"programme": "9시 뉴스"})) == {"v3:000000000"}
    assert len(index.smallest_pool(SearchFilter(tags=("news",)))) == 5
    assert index.smallest_pool(SearchFilter(min_start_s=0.0)) is None  # a time range alone is not indexed
    assert index.clips_of(["v1", "v9"]) == ["v1:000000000"]


def test_a_removed_clip_leaves_every_index() -> None:
    index = FilterIndex()
    index.add(_rec("a:000000000", "a", tags=["t"], k="x"))
    index.remove("a:000000000")
    index.remove("never-added:000000000")
    assert index.records == {}
    assert index.smallest_pool(SearchFilter(tags=("t",))) == set()
    assert index.smallest_pool(SearchFilter(metadata={"k": "x"})) == set()
    assert index.clips_of(["a"]) == []
