"""A shard's live clip records (without vectors) and the indexes that narrow a filtered search.

Filters test the records and hits carry them, so a search never reads SQLite (~0.5 KB per clip,
plus the caption). The video, tag and metadata indexes give a filter's smallest candidate pool.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.index.records import ClipRecord, SearchFilter


class FilterIndex:
    """Live records by clip id, with inverted indexes by video, tag and metadata pair."""

    def __init__(self) -> None:
        self.records: dict[str, ClipRecord] = {}
        self._by_video: dict[str, set[str]] = {}
        self._by_tag: dict[str, set[str]] = {}
        self._by_meta: dict[tuple[str, str], set[str]] = {}

    def add(self, record: ClipRecord) -> None:
        """Keeps a live clip's record (vector-less) and enters it in every index."""
        cid = record.clip_id
        self.records[cid] = record
        self._by_video.setdefault(record.video_id, set()).add(cid)
        for tag in record.tags:
            self._by_tag.setdefault(tag, set()).add(cid)
        for kv in record.metadata.items():
            self._by_meta.setdefault(kv, set()).add(cid)

    def remove(self, clip_id: str) -> None:
        record = self.records.pop(clip_id, None)
        if record is None:
            return
        _discard(self._by_video, record.video_id, clip_id)
        for tag in set(record.tags):
            _discard(self._by_tag, tag, clip_id)
        for kv in record.metadata.items():
            _discard(self._by_meta, kv, clip_id)

    def clips_of(self, video_ids: Iterable[str]) -> list[str]:
        """Every live clip of the videos, each video's clips in id order."""
        return [c for v in video_ids for c in sorted(self._by_video.get(v, ()))]

    def smallest_pool(self, flt: SearchFilter) -> set[str] | list[str] | None:
        """The smallest set of clips some indexed condition of the filter allows (a superset of the
        matches); None when the filter has no indexed condition (only a time range)."""
        pools: list[set[str] | list[str]] = []
        if flt.video_ids:
            pools.append([c for v in flt.video_ids for c in self._by_video.get(v, ())])
        pools.extend(self._by_tag.get(t, set()) for t in flt.tags)
        pools.extend(self._by_meta.get(kv, set()) for kv in flt.metadata.items())
        return min(pools, key=len) if pools else None


def _discard(index: dict, key: object, clip_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(clip_id)
        if not members:
            del index[key]
