"""Conversion between the index's wire messages and its domain records."""

from __future__ import annotations

import numpy as np

from services.common.vectors import packed_vector, vector_from_proto
from services.index.records import ClipRecord, Hit, SearchFilter
from vidsearch.common.v1 import common_pb2


def record_from_proto(msg: common_pb2.ClipRecord) -> ClipRecord:
    return ClipRecord(
        clip_id=msg.clip_id,
        video_id=msg.video_id,
        start_s=msg.start_seconds,
        end_s=msg.end_seconds,
        vector=vector_from_proto(msg.vector),
        caption=msg.caption,
        tags=tuple(msg.tags),
        thumbnail_ref=msg.thumbnail_ref,
        model_id=msg.model_id,
        metadata=dict(msg.metadata),
    )


def record_to_proto(record: ClipRecord, include_vector: bool, *, packed: bool = False) -> common_pb2.ClipRecord:
    """The record as a message; its vector (when included) as ``values``, or as ``packed`` bytes."""
    msg = common_pb2.ClipRecord(
        clip_id=record.clip_id,
        video_id=record.video_id,
        start_seconds=record.start_s,
        end_seconds=record.end_s,
        caption=record.caption,
        tags=list(record.tags),
        thumbnail_ref=record.thumbnail_ref,
        model_id=record.model_id,
        metadata=dict(record.metadata),
    )
    if include_vector and record.vector is not None and packed:
        msg.vector.CopyFrom(packed_vector(record.vector))
    elif include_vector and record.vector is not None:
        msg.vector.values.extend(np.asarray(record.vector, dtype=np.float32).tolist())
    return msg


def filter_from_proto(msg: common_pb2.SearchFilter) -> SearchFilter:
    return SearchFilter(
        video_ids=frozenset(msg.video_ids),
        min_start_s=msg.min_start_seconds if msg.HasField("min_start_seconds") else None,
        max_end_s=msg.max_end_seconds if msg.HasField("max_end_seconds") else None,
        tags=frozenset(msg.tags),
        metadata=dict(msg.metadata),
    )


def queries_from_proto(vectors: list[common_pb2.Vector]) -> list[np.ndarray]:
    """Query vectors as float32 arrays; lengths are checked by the shard, not here."""
    return [vector_from_proto(v) for v in vectors]


def hit_to_proto(hit: Hit, shard: str, include_vector: bool) -> common_pb2.ScoredClip:
    return common_pb2.ScoredClip(
        clip=record_to_proto(hit.record, include_vector), score=float(hit.score), shard=shard
    )
