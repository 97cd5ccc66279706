from vidsearch.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpsertRequest(_message.Message):
    __slots__ = ("clips", "writer")
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    clips: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClipRecord]
    writer: str
    def __init__(self, clips: _Optional[_Iterable[_Union[_common_pb2.ClipRecord, _Mapping]]] = ..., writer: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("clip_ids", "video_ids", "fence_writers")
    CLIP_IDS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    FENCE_WRITERS_FIELD_NUMBER: _ClassVar[int]
    clip_ids: _containers.RepeatedScalarFieldContainer[str]
    video_ids: _containers.RepeatedScalarFieldContainer[str]
    fence_writers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, clip_ids: _Optional[_Iterable[str]] = ..., video_ids: _Optional[_Iterable[str]] = ..., fence_writers: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("queries", "top_k", "filter", "search_k", "include_vectors")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SEARCH_K_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    top_k: int
    filter: _common_pb2.SearchFilter
    search_k: int
    include_vectors: bool
    def __init__(self, queries: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.SearchFilter, _Mapping]] = ..., search_k: _Optional[int] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class QueryHits(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_common_pb2.ScoredClip]
    def __init__(self, hits: _Optional[_Iterable[_Union[_common_pb2.ScoredClip, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "model_id")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryHits]
    model_id: str
    def __init__(self, results: _Optional[_Iterable[_Union[QueryHits, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("clip_ids", "include_vectors")
    CLIP_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    clip_ids: _containers.RepeatedScalarFieldContainer[str]
    include_vectors: bool
    def __init__(self, clip_ids: _Optional[_Iterable[str]] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("clips", "missing_ids")
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    clips: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClipRecord]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, clips: _Optional[_Iterable[_Union[_common_pb2.ClipRecord, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SealRequest(_message.Message):
    __slots__ = ("wait",)
    WAIT_FIELD_NUMBER: _ClassVar[int]
    wait: bool
    def __init__(self, wait: _Optional[bool] = ...) -> None: ...

class SealResponse(_message.Message):
    __slots__ = ("sealed", "segments")
    SEALED_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    sealed: int
    segments: int
    def __init__(self, sealed: _Optional[int] = ..., segments: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("wait",)
    WAIT_FIELD_NUMBER: _ClassVar[int]
    wait: bool
    def __init__(self, wait: _Optional[bool] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: int
    def __init__(self, segments: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("content_checksum", "include_fences")
    CONTENT_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FENCES_FIELD_NUMBER: _ClassVar[int]
    content_checksum: bool
    include_fences: bool
    def __init__(self, content_checksum: _Optional[bool] = ..., include_fences: _Optional[bool] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("records", "live", "tombstoned", "segments", "fresh", "bytes_on_disk", "model_id", "dimension", "shard", "checksum", "catching_up", "live_at_open", "fenced_writers")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONED_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    FRESH_FIELD_NUMBER: _ClassVar[int]
    BYTES_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CATCHING_UP_FIELD_NUMBER: _ClassVar[int]
    LIVE_AT_OPEN_FIELD_NUMBER: _ClassVar[int]
    FENCED_WRITERS_FIELD_NUMBER: _ClassVar[int]
    records: int
    live: int
    tombstoned: int
    segments: int
    fresh: int
    bytes_on_disk: int
    model_id: str
    dimension: int
    shard: str
    checksum: str
    catching_up: bool
    live_at_open: int
    fenced_writers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, records: _Optional[int] = ..., live: _Optional[int] = ..., tombstoned: _Optional[int] = ..., segments: _Optional[int] = ..., fresh: _Optional[int] = ..., bytes_on_disk: _Optional[int] = ..., model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., shard: _Optional[str] = ..., checksum: _Optional[str] = ..., catching_up: _Optional[bool] = ..., live_at_open: _Optional[int] = ..., fenced_writers: _Optional[_Iterable[str]] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("after_clip_id", "include_vectors", "page_size", "video_ids", "limit")
    AFTER_CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_clip_id: str
    include_vectors: bool
    page_size: int
    video_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, after_clip_id: _Optional[str] = ..., include_vectors: _Optional[bool] = ..., page_size: _Optional[int] = ..., video_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("clips", "model_id")
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    clips: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClipRecord]
    model_id: str
    def __init__(self, clips: _Optional[_Iterable[_Union[_common_pb2.ClipRecord, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class DigestRequest(_message.Message):
    __slots__ = ("bounds",)
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    bounds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bounds: _Optional[_Iterable[str]] = ...) -> None: ...

class RangeDigest(_message.Message):
    __slots__ = ("sha256", "clips")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    clips: int
    def __init__(self, sha256: _Optional[bytes] = ..., clips: _Optional[int] = ...) -> None: ...

class DigestResponse(_message.Message):
    __slots__ = ("ranges",)
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[RangeDigest]
    def __init__(self, ranges: _Optional[_Iterable[_Union[RangeDigest, _Mapping]]] = ...) -> None: ...
